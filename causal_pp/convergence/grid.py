"""Running a study grid: key the cells, reuse the stored ones, run the rest on an executor.

Every target of a grid gets :class:`~causal_pp.convergence.keys.Settings` -- target name, its
code's fingerprint, query, method, seed, fit keywords, ``num_units``, ``prob``, device, the cell
layout and causal_pp's version -- and its cells live in the results store
(:class:`~causal_pp.convergence.store.ResultStore`) under that key: a rerun with the same
settings reuses them, a rerun with other settings computes its own (and says which settings the
cells already in the folder differ in). Each (N, replicate) task is claimed in the store before
it is handed to the executor and its cells are appended by this process, the only writer, as
they come back; two runs sharing a folder split the grid between them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import os
import platform
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import validation
from ..cases.case import BOUNDS
from ..errors import CausalPPError, InvalidArgumentError, warn
from ..identification import identify
from ..inference.batched import batch_fallback_reason
from ..inference.methods import make_method
from .bounds_cells import BOUNDS_COLUMNS, bounds_options
from .cells import CELL_FORMAT, DRAW_KEYS, NESTED_KEYS, BatchTask, CellTask, compute_task
from .claims import Claim, ClaimInfo
from .executors import Executor, make_executor
from .identity import code_identity
from .result import Study
from .store import ResultStore, Settings
from .targets import Target, outcome_label

__all__ = ["CELL_SCHEMA", "GridSpec", "run_grid", "run_grids", "target_settings"]

#: What every stored cell must have; a line without it is reported and skipped.
CELL_SCHEMA: dict[str, Any] = {
    "target": str,
    "n": int,
    "replicate": int,
    "flagged": bool,
    "failed": bool,
    "mean": (float, type(None)),
}

Notify = Callable[[str], None]

#: Replicates of one N fitted as one batch by default (the paper's 20 replicates: one batch per N).
DEFAULT_BATCH = 20


@dataclass(frozen=True)
class GridSpec:
    """The settings of a grid run, checked on construction (before anything is fitted or written).

    Examples
    --------
    >>> spec = GridSpec(sizes=(50, 200), replicates=20, replicate_range=(10, 20))
    >>> spec.cells[:2]
    [(50, 10), (50, 11)]
    >>> GridSpec(sizes=(50,), replicates=2, replicate_range=(1, 3))
    Traceback (most recent call last):
    ...
    causal_pp.errors.InvalidArgumentError: replicate_range must be (start, stop) with 0 <= start < stop <= replicates (2); got (1, 3).
    """

    sizes: tuple[int, ...]
    replicates: int
    replicate_range: tuple[int, int] | None = None
    method: str = "svi"
    seed: int = 0
    device: str = "cpu"
    prob: float = 0.94
    num_units: int | None = None
    allow_unidentified: bool = False
    fit_kwargs: Mapping[str, Any] | None = None
    batch_size: int | None = DEFAULT_BATCH

    def __post_init__(self) -> None:
        try:
            sizes = tuple(operator.index(n) for n in self.sizes)
        except TypeError:
            raise CausalPPError(f"sizes must be integer sample sizes >= 2; got {self.sizes!r}.") from None
        if not sizes or any(n < 2 or isinstance(n, bool) for n in sizes):
            raise CausalPPError(f"sizes must be sample sizes >= 2; got {list(sizes)}.")
        object.__setattr__(self, "sizes", sizes)
        if isinstance(self.replicates, bool) or not isinstance(self.replicates, int) or self.replicates < 1:
            raise CausalPPError(f"replicates must be >= 1; got {self.replicates!r}.")
        rng = self.replicate_range
        if rng is not None:
            ok = len(rng) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in rng)
            if not ok or not 0 <= rng[0] < rng[1] <= self.replicates:
                raise InvalidArgumentError(
                    "replicate_range must be (start, stop) with 0 <= start < stop <= replicates "
                    f"({self.replicates}); got {tuple(rng) if ok else rng!r}."
                )
            object.__setattr__(self, "replicate_range", (int(rng[0]), int(rng[1])))
        validation.seed(self.seed)
        validation.probability("prob", self.prob)
        if self.num_units is not None:  # None: as many units as the Monte Carlo error needs
            validation.positive_int("num_units", self.num_units)
        validation.boolean("allow_unidentified", self.allow_unidentified)
        if self.batch_size is not None:  # None (or 1): every cell fitted on its own
            validation.positive_int("batch_size", self.batch_size)
            if self.batch_size == 1:
                object.__setattr__(self, "batch_size", None)
        object.__setattr__(self, "device", str(self.device))
        object.__setattr__(self, "fit_kwargs", dict(self.fit_kwargs or {}))
        if isinstance(self.method, str):  # options checked by the method itself, before any work
            make_method(self.method, self.fit_kwargs)

    @property
    def replicate_ids(self) -> range:
        """The replicates this run computes (a shard's range, or all of them)."""
        return range(*self.replicate_range) if self.replicate_range else range(self.replicates)

    @property
    def cells(self) -> list[tuple[int, int]]:
        """The (N, replicate) cells of this run, in table order."""
        return [(n, r) for n in self.sizes for r in self.replicate_ids]

    def batches(self, cells: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """Cells fitted together: replicates of one N, ``batch_size`` at a time (or one by one).

        The grouping depends on the grid alone, never on the executor or its workers, so every
        executor fits the same batches and stores the same cells.

        Examples
        --------
        >>> GridSpec(sizes=(50, 200), replicates=3, batch_size=2).batches([(50, 0), (50, 1), (50, 2), (200, 0)])
        [[(50, 0), (50, 1)], [(50, 2)], [(200, 0)]]
        """
        if self.batch_size is None:
            return [[c] for c in cells]
        by_n: dict[int, list[tuple[int, int]]] = {}
        for c in cells:
            by_n.setdefault(c[0], []).append(c)
        k = self.batch_size
        return [group[i : i + k] for group in by_n.values() for i in range(0, len(group), k)]


def _keyable(value: Any) -> Any:
    # A fit option that is code (a guide function, an optimiser class) is keyed by its code.
    if callable(value):
        return {"code": code_identity(value)}
    if isinstance(value, Mapping):
        return {str(k): _keyable(v) for k, v in value.items()}
    return value


def target_settings(target: Target, spec: GridSpec) -> Settings:
    """The settings key space of a target's cells under a grid's settings.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> from causal_pp.convergence.targets import resolve_target
    >>> t = resolve_target(get_case("frontdoor"), "ate", None, None, None)
    >>> a = target_settings(t, GridSpec(sizes=(50,), replicates=1))
    >>> b = target_settings(t, GridSpec(sizes=(50,), replicates=1, fit_kwargs={"num_steps": 40}))
    >>> a.key == b.key
    False
    """
    extra = {"cell_format": CELL_FORMAT, "batch_size": spec.batch_size}
    if target.kind == BOUNDS:  # what changes a bounds cell: its posterior draws and prior
        extra["bounds"] = bounds_options(spec.fit_kwargs)
    return Settings(
        case=target.name,
        fingerprint=target.fingerprint,
        query=repr(target.query),
        method=str(spec.method),
        seed=spec.seed,
        fit_kwargs=_keyable(dict(spec.fit_kwargs or {})),
        num_units=spec.num_units,
        prob=spec.prob,
        device=spec.device,
        # A batch's fits equal a lone fit's in distribution, not bit for bit: batched cells are
        # their own key space (and the batch size with them: rounding differs with the batch shape).
        extra=extra,
    )


def _notify_default(message: str) -> None:
    warn(f"causal_pp: {message}")


def _waiting(notify: Notify) -> Callable[[list[ClaimInfo]], None]:
    def on_wait(holders: list[ClaimInfo]) -> None:
        who = sorted({f"pid {h.pid} on {h.host}" for h in holders if h.pid is not None})
        notify(
            f"waiting for {len(holders)} cell(s) that another process sharing the folder is computing"
            + (f" ({', '.join(who)})" if who else "")
            + "; cells it does not finish are computed here."
        )

    return on_wait


class _Driver:
    """Claims tasks, hands them to the executor, stores the cells that come back."""

    def __init__(
        self,
        targets: Sequence[Target],
        settings: Sequence[Settings],
        spec: GridSpec,
        store: ResultStore | None,
    ) -> None:
        self.targets, self.settings, self.spec, self.store = list(targets), list(settings), spec, store
        self.done: dict[str, dict[tuple[int, int], dict[str, Any]]] = {t.name: {} for t in targets}
        if store is not None:
            for t, s in zip(targets, settings, strict=True):
                cells = store.read(s)
                for n, r in spec.cells:
                    cell = cells.get((t.name, n, r))
                    if cell is not None:
                        self.done[t.name][(n, r)] = cell
        self.claims: dict[int, Claim] = {}
        self.blocked: list[tuple[int, int]] = []

    def pairs(self, cell: tuple[int, int]) -> list[tuple[Settings, tuple[str, int, int]]]:
        n, r = cell
        return [(s, (t.name, n, r)) for t, s in zip(self.targets, self.settings, strict=True)]

    def todo(self) -> list[tuple[int, int]]:
        return [c for c in self.spec.cells if any(c not in self.done[t.name] for t in self.targets)]

    def _task(self, cells: Sequence[tuple[int, int]], targets: Sequence[Target]) -> CellTask | BatchTask:
        spec = self.spec
        common = dict(
            seed=spec.seed, method=spec.method, device=spec.device, prob=spec.prob,
            num_units=spec.num_units, allow_unidentified=spec.allow_unidentified,
            fit_kwargs=dict(spec.fit_kwargs or {}),
        )  # fmt: skip
        if spec.batch_size is None:
            ((n, r),) = cells
            return CellTask(tuple(targets), n, r, **common)
        return BatchTask(tuple(targets), cells[0][0], tuple(r for _, r in cells), **common)

    def _missing(self, cells: Sequence[tuple[int, int]]) -> list[Target]:
        return [t for t in self.targets if any(c not in self.done[t.name] for c in cells)]

    def claim(self, group: list[tuple[int, int]]) -> CellTask | BatchTask | None:
        """The task of one batch of cells, claimed in the store; None where another process
        holds it (set aside in ``blocked``) or finished it meanwhile."""
        if self.store is None:
            return self._task(group, self._missing(group))
        claim = self.store.claim_many([p for c in group for p in self.pairs(c)])
        if not claim.acquired:
            self.blocked.extend(group)
            return None
        todo = {cell_id for _, cell_id in claim.todo}
        if not todo:  # finished by another process meanwhile
            claim.release()
            for c in group:
                self.reread(c)
            return None
        for c in group:  # what another process finished meanwhile
            self.reread(c)
        group = [c for c in group if any((t.name, *c) in todo for t in self.targets)]
        task = self._task(group, [t for t in self.targets if any((t.name, *c) in todo for c in group)])
        self.claims[id(task)] = claim
        return task

    def cost(self, n: int) -> float:
        """A batch's relative cost for scheduling: N times the nodes of the model's graph."""
        graph = getattr(self.targets[0].model, "graph", None)
        return float(n) * max(1, len(getattr(graph, "nodes", ()) or ()))

    def reread(self, cell: tuple[int, int]) -> None:
        assert self.store is not None
        for t, s in zip(self.targets, self.settings, strict=True):
            stored = self.store.read(s).get((t.name, *cell))
            if stored is not None:
                self.done[t.name][cell] = stored

    def finish(self, task: CellTask | BatchTask, cells: list[dict[str, Any]]) -> None:
        """Store a task's cells (this process is the store's only writer), then release its claim."""
        by_name = {t.name: s for t, s in zip(self.targets, self.settings, strict=True)}
        try:
            for cell in cells:
                where = (cell["n"], cell["replicate"])
                if where in self.done[cell["target"]]:  # a batch refits a replicate another target needed
                    continue
                if self.store is not None:
                    self.store.append(by_name[cell["target"]], {(cell["target"], *where): cell})
                self.done[cell["target"]][where] = cell
        finally:
            claim = self.claims.pop(id(task), None)
            if claim is not None:
                claim.release()

    def release_all(self) -> None:
        for claim in self.claims.values():
            claim.release()
        self.claims.clear()


def _run(
    drivers: Sequence[_Driver],
    executor: Executor,
    progress: Callable[[dict[str, Any] | None, int], None],
    notify: Notify,
) -> None:
    """Every driver's missing cells on one executor, as one stream of tasks."""
    pending = [d.todo() for d in drivers]
    tried: list[set[tuple[int, int]]] = [set() for _ in drivers]
    owner: dict[int, int] = {}

    def feed() -> Iterator[CellTask | BatchTask]:
        groups = [(i, g) for i, d in enumerate(drivers) for g in d.spec.batches(pending[i])]
        if executor.workers > 1:
            # The costliest batches first (longest-processing-time first), across every grid: a
            # large batch started last runs on one worker while the others idle. One worker
            # keeps table order, so progress reads in it.
            groups.sort(key=lambda ig: -drivers[ig[0]].cost(ig[1][0][0]))
        for i, group in groups:
            task = drivers[i].claim(group)
            if task is not None:
                owner[id(task)] = i
                yield task

    try:
        while any(pending):
            for d in drivers:
                d.blocked = []
            # closing(): a failure here stops the executor at once (pending work is cancelled)
            with contextlib.closing(executor.imap(compute_task, feed())) as results:
                for task, cells in results:
                    i = owner.pop(id(task))
                    tried[i].update(task.cells)
                    drivers[i].finish(task, cells)
                    progress(cells[0] if cells else None, len(task.cells))
            for i, d in enumerate(drivers):
                if not d.blocked or d.store is None:
                    pending[i] = []
                    continue
                d.store.wait([p for c in d.blocked for p in d.pairs(c)], on_wait=_waiting(notify))
                for cell in d.blocked:
                    d.reread(cell)
                    if cell not in tried[i] and all(cell in d.done[t.name] for t in d.targets):
                        progress(None, 1)
                pending[i] = [c for c in d.blocked if c not in tried[i] and c in d.todo()]
    finally:
        for d in drivers:
            d.release_all()
            if d.store is not None:
                d.store.prune_claims()


def run_grid(
    targets: Sequence[Target],
    spec: GridSpec,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    executor: str | Executor = "serial",
    workers: int | None = None,
    on_notice: Notify | None = None,
) -> dict[str, Study]:
    """Run (or resume) a grid of cells for targets sharing a model and simulator; a Study per target.

    Every argument is checked before anything is fitted or written. See :func:`~causal_pp.convergence.study`.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> from causal_pp.convergence.targets import resolve_target
    >>> t = resolve_target(get_case("frontdoor"), "ate", None, None, None)
    >>> run_grid([t], GridSpec(sizes=(30, 60), replicates=1, num_units=50,
    ...          fit_kwargs={"num_steps": 8, "restarts": 1}), progress=False)  # doctest: +SKIP
    """
    (found,) = run_grids(
        [(targets, spec, out)], progress=progress, executor=executor, workers=workers, on_notice=on_notice
    )
    return found


def run_grids(
    grids: Sequence[tuple[Sequence[Target], GridSpec, str | Path | None]],
    *,
    progress: bool = True,
    executor: str | Executor = "serial",
    workers: int | None = None,
    on_notice: Notify | None = None,
) -> list[dict[str, Study]]:
    """Several grids (``(targets, spec, out)``, e.g. one per case) on one executor: their tasks
    are one stream, the costliest first, so no worker idles at the end of each grid. Each grid's
    studies are what :func:`run_grid` gives it alone. Every argument of every grid is checked
    before anything is fitted or written."""
    from tqdm.auto import tqdm

    notify = on_notice or _notify_default
    ready = [_prepare(targets, spec, out, notify) for targets, spec, out in grids]
    runner = make_executor(executor, workers)
    if runner.name != "serial":
        runner.check_payload(tuple(t for targets, *_ in ready for t in targets))
    drivers = []
    for targets, spec, out, settings in ready:
        store = None
        if out is not None:
            store = ResultStore(out, schema=CELL_SCHEMA)
            for s in settings:
                for other in store.others(s):
                    notify(f"{store.folder}: {other.message()}")
        drivers.append(_Driver(targets, settings, spec, store))
    total = sum(len(d.spec.cells) for d in drivers)
    names = sorted({d.targets[0].name.split("/")[0] for d in drivers})
    desc = drivers[0].targets[0].name if len(drivers) == 1 == len(drivers[0].targets) else ", ".join(names)
    bar = tqdm(
        total=total, initial=total - sum(len(d.todo()) for d in drivers), desc=desc, disable=not progress
    )

    def advance(cell: dict[str, Any] | None, count: int) -> None:
        if cell is not None and cell.get("abs_error") is not None:
            bar.set_postfix(n=cell["n"], err=f"{cell['abs_error']:.3g}")
        bar.update(count)

    try:
        _run(drivers, runner, advance, notify)
    finally:
        bar.close()
        if runner is not executor:  # made here from a name: ours to close; an object is the caller's
            runner.close()
    found = []
    for d, (_, _, out, settings) in zip(drivers, ready, strict=True):
        missing = d.todo()
        if missing:  # only if another process holds cells past our wait (it cannot: wait has no timeout)
            raise CausalPPError(f"{len(missing)} cell(s) of the grid were not computed: {missing[:3]} ...")
        meta = _meta(d.spec, runner, out, settings)
        if any(t.kind == BOUNDS for t in d.targets):
            meta["bounds"] = bounds_options(d.spec.fit_kwargs) | {
                "batching": "none: bounds cells fit no model"
            }
        found.append({t.name: _study(t, d.done[t.name], d.spec.cells, d.spec, meta) for t in d.targets})
    return found


def _prepare(
    targets: Sequence[Target], spec: GridSpec, out: str | Path | None, notify: Notify
) -> tuple[Sequence[Target], GridSpec, str | Path | None, list[Settings]]:
    """One grid's checks (identification, batching) and settings, before any work."""
    for target in targets:
        if target.kind != BOUNDS and not target.identified and not spec.allow_unidentified:
            identify(target.model.graph, target.query)  # raises NotIdentifiableError with the reason
    if any(t.kind == BOUNDS for t in targets):  # a bounds cell fits no model: nothing to batch
        spec = dataclasses.replace(spec, batch_size=None)
    if spec.batch_size is not None:
        reason = batch_fallback_reason(
            targets[0].model, min(spec.sizes), method=spec.method, **dict(spec.fit_kwargs or {})
        )
        if reason is not None:  # NUTS, another guide, enumerated latents: one fit per cell
            notify(f"{reason}: every cell is fitted on its own.")
            spec = dataclasses.replace(spec, batch_size=None)
    return targets, spec, out, [target_settings(t, spec) for t in targets]


def _meta(
    spec: GridSpec, runner: Executor, out: str | Path | None, settings: Sequence[Settings]
) -> dict[str, Any]:
    return {
        "method": spec.method,
        "seed": spec.seed,
        "device": spec.device,
        "sizes": list(spec.sizes),
        "replicates": spec.replicates,
        "replicate_range": list(spec.replicate_range) if spec.replicate_range else None,
        "fit_kwargs": dict(spec.fit_kwargs or {}),
        "num_units": spec.num_units,
        "prob": spec.prob,
        "batch_size": spec.batch_size,
        "executor": runner.describe(),
        "out": None if out is None else str(out),
        "settings_keys": {s.case: s.key for s in settings},
        "command": " ".join(sys.argv),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def _row(cell: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in cell.items() if k not in DRAW_KEYS and k not in NESTED_KEYS}
    row["flags"] = "; ".join(cell.get("flags") or [])
    for prefix, key in (("fit_", "fit_diagnostics"), ("est_", "estimate_diagnostics")):
        for name, value in (cell.get(key) or {}).items():
            if value is None or isinstance(value, (bool, int, float, str)):
                row[prefix + name] = value
    return row


def _study(
    target: Target,
    cells: Mapping[tuple[int, int], dict[str, Any]],
    grid: list[tuple[int, int]],
    spec: GridSpec,
    meta: dict[str, Any],
) -> Study:
    table = pd.DataFrame([_row(cells[c]) for c in grid])
    for col in (
        "mean",
        "sd",
        "lo",
        "hi",
        "abs_error",
        "plugin",
        "plugin_abs_error",
        "wasserstein",
        *BOUNDS_COLUMNS,
    ):
        if col in table.columns:  # failed cells hold None: NaN in a float column
            table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    return Study(
        table=table,
        target=target.name,
        identified=target.identified,
        truth=target.truth,
        prob=spec.prob,
        predictive={c: cells[c].get("predictive", []) for c in grid},
        truth_predictive=[v for c in grid for v in cells[c].get("truth_predictive", [])],
        outcome_label=outcome_label(target.query),
        meta=dict(meta),
        cells={c: cells[c] for c in grid},
        kind=target.kind,
        true_bounds=target.true_bounds,
    )
