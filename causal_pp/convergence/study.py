"""Convergence studies: does the posterior predictive approach the truth as data grows?

For each sample size N and replicate, :func:`study` simulates N rows from the ground-truth SCM,
fits the model, estimates the query, and records the error against the known truth and the
fit's diagnostics. With ``out=`` every finished cell is stored in ``out/cells.jsonl`` under the
key of everything that changes it (:mod:`.grid`, :mod:`.store`): an interrupted study resumes
where it stopped and ends with the same table as an uninterrupted one, a rerun with other
settings never reuses a cell, and several processes -- or a pool of workers, or a Ray cluster
(``executor=``) -- can share the folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cases import get_case
from ..errors import CausalPPError
from ..queries import Query
from .executors import Executor
from .grid import DEFAULT_BATCH, GridSpec, run_grid, run_grids
from .result import Study
from .targets import resolve_target

__all__ = ["Study", "case_studies", "studies", "study"]


def study(
    case_or_model: Any,
    query: str | Query | None = None,
    *,
    sizes: Sequence[int] = (50, 200, 800),
    replicates: int = 5,
    method: str = "svi",
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    prob: float = 0.94,
    num_units: int | None = None,
    allow_unidentified: bool = False,
    progress: bool = True,
    simulate: Callable[..., Any] | None = None,
    truth: float | None = None,
    truth_samples: Callable[[int, int], np.ndarray] | None = None,
    fit_kwargs: dict[str, Any] | None = None,
    executor: str | Executor = "serial",
    workers: int | None = None,
    replicate_range: tuple[int, int] | None = None,
    batch_size: int | None = DEFAULT_BATCH,
    on_notice: Callable[[str], None] | None = None,
) -> Study:
    """Run a convergence study: simulate, fit and estimate over a grid of sizes × replicates.

    Parameters
    ----------
    case_or_model
        A case from :mod:`causal_pp.cases` (it brings its simulator and truths), or your own
        :class:`~causal_pp.CausalModel` together with ``query``, ``simulate`` and ``truth``.
    query
        A query name of the case (default: its first) or a query object.
    sizes, replicates
        The grid: each size N is simulated ``replicates`` times with independent seeds.
    method, device, fit_kwargs
        Passed to :meth:`CausalModel.fit`.
    seed
        Master seed; each cell's seed is derived from (seed, N, replicate).
    out
        A folder: cells are stored in ``out/cells.jsonl`` as they finish, keyed by every setting
        that changes them (case or model code, query, method, ``fit_kwargs``, ``num_units``,
        ``prob``, device, seed, causal_pp version). A rerun with the same settings reuses them
        (resume after an interruption); one with other settings computes its own cells and says
        (``on_notice``) which settings the cells already there differ in.
    allow_unidentified
        Estimate a non-identified query anyway (the negative control); otherwise it is refused
        by the identification gate.
    executor, workers
        Where cells run: ``"serial"`` (default, this process), ``"process"`` (a local pool of
        ``workers`` processes), ``"ray"`` (Ray tasks; a local Ray with ``workers`` CPUs, or the
        cluster at ``RAY_ADDRESS``), or an :class:`~causal_pp.convergence.executors.Executor`
        object (e.g. ``RayExecutor(address="auto")``). Results are identical whichever runs them.
    replicate_range
        ``(start, stop)``: compute only replicates ``start .. stop-1`` of ``replicates`` (a
        shard); shards run anywhere merge into one table (``causal-pp merge``).
    batch_size
        Replicates of one N fitted together by :func:`~causal_pp.inference.fit_many` (one
        vectorised SVI program; each replicate keeps its own seeds, restarts and convergence).
        ``None`` fits every cell on its own. NUTS, guides without a batched form and
        enumerated discrete latents are always fitted cell by cell (``on_notice`` says so).
    on_notice
        Called with each notice (other settings' cells in ``out``, waiting for another process);
        default: a warning.

    Returns
    -------
    Study
        Its table holds each cell's diagnostics; ``summary()`` counts the flagged cells per N.

    Examples
    --------
    >>> from causal_pp import cases, convergence
    >>> s = convergence.study(cases.get_case("frontdoor"), sizes=[50, 100], replicates=1,
    ...                       progress=False, fit_kwargs={"num_steps": 200})  # doctest: +SKIP
    >>> s.summary()  # doctest: +SKIP
    """
    target = resolve_target(case_or_model, query, simulate, truth, truth_samples)
    return _run([target], locals())[target.name]


def studies(
    case: Any,
    queries: Sequence[str] | None = None,
    *,
    sizes: Sequence[int] = (50, 200, 800),
    replicates: int = 5,
    method: str = "svi",
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    prob: float = 0.94,
    num_units: int | None = None,
    allow_unidentified: bool = False,
    progress: bool = True,
    fit_kwargs: dict[str, Any] | None = None,
    executor: str | Executor = "serial",
    workers: int | None = None,
    replicate_range: tuple[int, int] | None = None,
    batch_size: int | None = DEFAULT_BATCH,
    on_notice: Callable[[str], None] | None = None,
) -> dict[str, Study]:
    """Convergence studies of several queries of one case, sharing one fit per cell.

    Each cell (N, replicate) simulates one data set and fits the model once; every query is
    estimated from that posterior. The result per query is exactly what :func:`study` with
    the same arguments returns (same cell seeds, same data, same fit), at the cost of one
    study instead of one per query. Cells of all queries go to one ``out/cells.jsonl``.

    Parameters
    ----------
    case
        A case from :mod:`causal_pp.cases`.
    queries
        Query names of the case (default: all of them).
    sizes, replicates, method, seed, device, out, prob, num_units, allow_unidentified, progress, fit_kwargs
        As for :func:`study`.
    executor, workers, replicate_range, batch_size, on_notice
        As for :func:`study`.

    Returns
    -------
    dict
        Query name -> :class:`Study`.

    Examples
    --------
    >>> from causal_pp import cases, convergence
    >>> both = convergence.studies(cases.get_case("sars_cov2"), sizes=[50], replicates=1,
    ...                            progress=False)  # doctest: +SKIP
    >>> sorted(both)  # doctest: +SKIP
    ['cytok_do_egfr20', 'cytok_do_sil6r20']
    """
    if not hasattr(case, "queries") or not hasattr(case, "simulate"):
        raise CausalPPError(
            f"studies() takes a case from causal_pp.cases; got {type(case).__name__}. "
            "For your own model, call study() once per query."
        )
    names = list(case.queries) if queries is None else list(queries)
    if not names:
        raise CausalPPError(f"queries must name at least one of case {case.name!r}'s queries.")
    targets = [resolve_target(case, q, None, None, None) for q in names]
    grids = _run(targets, locals())
    return {q: grids[t.name] for q, t in zip(names, targets, strict=True)}


def case_studies(
    plan: Mapping[Any, Sequence[str] | None],
    *,
    sizes: Sequence[int] | Mapping[str, Sequence[int]] = (50, 200, 800),
    replicates: int = 5,
    method: str = "svi",
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    prob: float = 0.94,
    num_units: int | None = None,
    allow_unidentified: bool = False,
    progress: bool = True,
    fit_kwargs: dict[str, Any] | None = None,
    executor: str | Executor = "serial",
    workers: int | None = None,
    replicate_range: tuple[int, int] | None = None,
    batch_size: int | None = DEFAULT_BATCH,
    on_notice: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Study]]:
    """:func:`studies` of several cases on one executor, their batches scheduled together.

    Run one case after another and every worker but one idles at the end of each case, while
    its last batch finishes. Here the batches of every case are one stream, the costliest first
    (N times the model's nodes), so the workers stay busy to the end. Each case's studies are
    what :func:`studies` gives it alone with the same arguments (its cells in ``out/<case>``).

    Parameters
    ----------
    plan
        Case (a case object or its name in :mod:`causal_pp.cases`) -> its query names (None: all).
    sizes
        One list of sizes for every case, or case name -> its sizes.
    replicates, method, seed, device, out, prob, num_units, allow_unidentified, progress, fit_kwargs
        As for :func:`study`; ``out`` holds one folder per case.
    executor, workers, replicate_range, batch_size, on_notice
        As for :func:`study`.

    Returns
    -------
    dict
        Case name -> query name -> :class:`Study`.

    Examples
    --------
    >>> from causal_pp import convergence
    >>> found = convergence.case_studies({"frontdoor": None, "napkin": ["y_do_x1"]},
    ...     sizes={"frontdoor": [100], "napkin": [60]}, replicates=2, executor="process",
    ...     workers=2, progress=False)  # doctest: +SKIP
    >>> sorted(found), sorted(found["napkin"])  # doctest: +SKIP
    (['frontdoor', 'napkin'], ['y_do_x1'])
    """
    if not isinstance(plan, Mapping) or not plan:
        raise CausalPPError(f"plan must map cases to their query names (None: all); got {plan!r}.")
    arguments = dict(locals())
    cases = [get_case(c) if isinstance(c, str) else c for c in plan]
    specs = []
    for case in cases:  # every case's settings checked before any truth is computed
        if not hasattr(case, "queries") or not hasattr(case, "simulate"):
            raise CausalPPError(
                f"case_studies() takes cases from causal_pp.cases; got {type(case).__name__}."
            )
        if isinstance(sizes, Mapping) and case.name not in sizes:
            raise CausalPPError(f"sizes has no entry for case {case.name!r}; it has {sorted(sizes)}.")
        own = {**arguments, "sizes": sizes[case.name] if isinstance(sizes, Mapping) else sizes}
        specs.append(GridSpec(**{k: own[k] for k in _SPEC}))
    names = [list(case.queries if qs is None else qs) for case, qs in zip(cases, plan.values(), strict=True)]
    grids = [
        (
            [resolve_target(case, q, None, None, None) for q in qs],
            spec,
            None if out is None else Path(out) / case.name,
        )
        for case, qs, spec in zip(cases, names, specs, strict=True)
    ]
    found = run_grids(grids, **{k: arguments[k] for k in _RUN if k != "out"})
    return {
        case.name: {q: by_target[t.name] for q, t in zip(qs, targets, strict=True)}
        for case, qs, (targets, _, _), by_target in zip(cases, names, grids, found, strict=True)
    }


_SPEC = tuple(f.name for f in dataclasses.fields(GridSpec))
_RUN = ("out", "progress", "executor", "workers", "on_notice")


def _run(targets: Sequence[Any], arguments: Mapping[str, Any]) -> dict[str, Study]:
    """The grid of ``study``/``studies`` from their arguments: its settings, then where and how it runs."""
    spec = GridSpec(**{k: arguments[k] for k in _SPEC})
    return run_grid(targets, spec, **{k: arguments[k] for k in _RUN})
