"""One cell of a convergence study: simulate a data set, fit once, estimate every target on it.

A cell records the estimate against the truth, the fit's diagnostics and the estimate's own,
and why it is flagged (``flags``): what the fitting method itself calls a problem (an SVI loss
still falling, a degenerate importance correction, NUTS R-hat, ESS or divergences -- see
``FitMethod.problems``) and every causal_pp warning of the estimate (e.g. a small likelihood-
weighting ESS). A fit that raises :class:`~causal_pp.errors.InferenceError` is recorded as a
failed cell (flagged, no estimate), not a crash of the study.

A cell runs on one torch thread whatever executor runs it, so its numbers do not depend on the
executor, the number of workers or the machine's core count.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cases.case import MODEL
from ..errors import CausalPPError, InferenceError
from ..estimation import outcome_predictive
from ..inference.batched import BATCH_WARNING, fit_many
from ..inference.methods import make_method
from ..runtime import num_threads
from .targets import Target, derive_cell_seed

__all__ = [
    "CELL_FORMAT",
    "CELL_RUNNERS",
    "DRAW_KEYS",
    "NESTED_KEYS",
    "PREDICTIVE_KEEP",
    "TIMING_KEYS",
    "BatchTask",
    "CellTask",
    "TaskSettings",
    "cell_record",
    "compute_task",
    "estimate_diagnostics",
    "failed_record",
    "plain_diagnostics",
    "predictive_outcome",
    "run_batch",
    "run_cell",
    "wasserstein1",
]


PREDICTIVE_KEEP = 400  # posterior-predictive draws kept per cell for density plots

#: Version of the cell layout; part of the settings key, so cells of another layout are not reused.
CELL_FORMAT = 2

DRAW_KEYS = ("predictive", "truth_predictive")
#: Fields that hold the cell as nested data, not table columns.
NESTED_KEYS = ("fit_diagnostics", "estimate_diagnostics", "warnings", "flags")
#: Wall-clock fields: the only ones that differ between two runs of the same cell.
TIMING_KEYS = ("fit_seconds", "batch_seconds", "time_s", "is_time_s", "batch_time_s")

_MAX_LIST = 32  # longer lists (loss curves, per-draw values) are not kept in a cell
_MAX_WARNINGS = 10
_MC_FIELDS = ("mc_se", "mc_fraction", "mc_sd", "mc_error", "mc_draws", "mc_units")


def wasserstein1(a: Iterable[float], b: Iterable[float]) -> float:
    """Wasserstein-1 distance between two empirical 1-d distributions.

    scipy's ``wasserstein_distance`` computed the same way (the integral of the CDFs' absolute
    difference over the merged sample), with each sample sorted only if it is not already: a
    study compares every cell's ~10^5-10^6 predictive draws with one set of truth draws, kept
    sorted (:func:`_truth_draws`), and scipy's own sorting of both was a third of a small cell's
    time. Merging two sorted runs is a linear-time stable sort.

    Examples
    --------
    >>> round(wasserstein1([0.0, 1.0], [1.0, 2.0]), 6)
    1.0
    >>> from scipy.stats import wasserstein_distance
    >>> x, y = np.random.default_rng(0).normal(size=(2, 1000))
    >>> bool(abs(wasserstein1(x, y) - wasserstein_distance(x, y)) < 1e-15)
    True
    """
    u, v = (np.asarray(x, dtype=float).ravel() for x in (a, b))
    if u.size == 0 or v.size == 0:
        raise CausalPPError("wasserstein1 needs two non-empty samples.")
    u, v = (x if bool(np.all(x[1:] >= x[:-1])) else np.sort(x) for x in (u, v))
    both = np.sort(np.concatenate([u, v]), kind="stable")
    cdf_u = np.searchsorted(u, both[:-1], side="right") / u.size
    cdf_v = np.searchsorted(v, both[:-1], side="right") / v.size
    return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(both)))


def predictive_outcome(estimate: Any, query: Any) -> np.ndarray | None:
    """Unit-level posterior-predictive draws of the outcome (treated arm for an ATE; none for an ETT)."""
    if not getattr(estimate, "predictive", None):
        return None
    value = outcome_predictive(query, estimate)
    if value is None:
        return None
    return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=float).ravel()


def _scalar(value: Any) -> tuple[bool, Any]:
    """(is it a scalar, its plain value): tensors and numpy values of one element become numbers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, np.generic):
        return True, value.item()
    numel = getattr(value, "numel", None)
    if callable(numel) and numel() == 1 and hasattr(value, "item"):
        return True, value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        return True, value.item()
    return False, None


def plain_diagnostics(diagnostics: Mapping[str, Any]) -> dict[str, Any]:
    """Diagnostics as plain data for a cell: scalars, short lists and per-site tables of scalars.

    Long arrays (a loss curve, per-draw values) are left out: a cell stays a line of a few kB.

    Examples
    --------
    >>> import torch
    >>> plain_diagnostics({"converged": True, "final_loss": torch.tensor(1.5), "loss": list(range(500)),
    ...                    "r_hat": {"a": 1.01}, "restart_losses": (3.0, 2.0)})
    {'converged': True, 'final_loss': 1.5, 'r_hat': {'a': 1.01}, 'restart_losses': [3.0, 2.0]}
    """
    out: dict[str, Any] = {}
    for key, value in diagnostics.items():
        ok, plain = _scalar(value)
        if ok:
            out[str(key)] = plain
        elif isinstance(value, (list, tuple)) and len(value) <= _MAX_LIST:
            items = [_scalar(v) for v in value]
            if all(ok for ok, _ in items):
                out[str(key)] = [v for _, v in items]
        elif isinstance(value, Mapping) and len(value) <= 4 * _MAX_LIST:
            items = {str(k): _scalar(v) for k, v in value.items()}
            if all(ok for ok, _ in items.values()):
                out[str(key)] = {k: v for k, (_, v) in items.items()}
    return out


def estimate_diagnostics(est: Any) -> dict[str, Any]:
    """The estimate's own diagnostics: R-hat/ESS of its draws, likelihood-weight ESS, Monte Carlo error.

    Reads whatever the estimate has (``diagnostics``, ``ess``, ``mc_*`` fields); none is required.

    Examples
    --------
    >>> import torch
    >>> from causal_pp import ATE
    >>> from causal_pp.posterior import Estimate
    >>> est = Estimate(ATE("X", "Y"), samples=torch.zeros(2), predictive={}, identified=True,
    ...                identification=None, plugin=0.0, num_units=10, seed=0, ess=torch.tensor([4.0, 6.0]))
    >>> {k: v for k, v in estimate_diagnostics(est).items() if k.startswith("weights")}
    {'weights_ess_mean': 5.0, 'weights_ess_min': 4.0}
    """
    out: dict[str, Any] = {}
    try:
        diag = getattr(est, "diagnostics", None)
    except (CausalPPError, RuntimeError, ValueError):  # a diagnostic that cannot be computed is left out
        diag = None
    if isinstance(diag, Mapping):
        out.update(plain_diagnostics(diag))
    ess = getattr(est, "ess", None)
    if ess is not None and hasattr(ess, "double") and ess.numel():
        out["weights_ess_mean"] = float(ess.double().mean())
        out["weights_ess_min"] = float(ess.double().min())
    names = list(_MC_FIELDS)
    if dataclasses.is_dataclass(est):
        names += [f.name for f in dataclasses.fields(est) if f.name.startswith("mc_") and f.name not in names]
    for name in names:
        ok, value = _scalar(getattr(est, name, None))
        if ok and value is not None:
            out[name] = value
    return out


@dataclass(frozen=True, kw_only=True)
class TaskSettings:
    """What every task of a grid shares: seeds, fitting method and options, how to estimate."""

    seed: int
    method: str
    device: str
    prob: float
    num_units: int | None
    allow_unidentified: bool
    fit_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The settings as the keyword arguments of the cell runners."""
        return {
            "seed": self.seed, "method": self.method, "device": self.device, "prob": self.prob,
            "num_units": self.num_units, "allow_unidentified": self.allow_unidentified,
            "fit_kwargs": dict(self.fit_kwargs),
        }  # fmt: skip


@dataclass(frozen=True)
class CellTask(TaskSettings):
    """One (N, replicate) cell of a grid and every target estimated from its fit: what a worker runs.

    Examples
    --------
    >>> task = CellTask((), 50, 0, seed=0, method="svi", device="cpu", prob=0.94, num_units=100,
    ...                 allow_unidentified=False)
    >>> task.cells
    [(50, 0)]
    """

    targets: tuple[Target, ...]
    n: int
    replicate: int

    @property
    def cells(self) -> list[tuple[int, int]]:
        """The (N, replicate) cells this task computes."""
        return [(self.n, self.replicate)]

    def compute(self) -> list[dict[str, Any]]:
        """Simulate, fit and estimate: one record per target, each kind by its runner (:data:`CELL_RUNNERS`)."""
        cells = []
        for kind in dict.fromkeys(t.kind for t in self.targets):
            of_kind = tuple(t for t in self.targets if t.kind == kind)
            cells += CELL_RUNNERS[kind](of_kind, self.n, self.replicate, **self.options())
        return cells


@dataclass(frozen=True)
class BatchTask(TaskSettings):
    """Replicates of one N fitted together by :func:`~causal_pp.inference.fit_many`: one batch.

    Every replicate keeps its own data seed and fit seed (those of its cell), so its cell does
    not depend on which other replicates share the batch.

    Examples
    --------
    >>> task = BatchTask((), 50, (0, 1, 2), seed=0, method="svi", device="cpu", prob=0.94,
    ...                  num_units=100, allow_unidentified=False)
    >>> task.cells
    [(50, 0), (50, 1), (50, 2)]
    """

    targets: tuple[Target, ...]
    n: int
    replicates: tuple[int, ...]

    @property
    def cells(self) -> list[tuple[int, int]]:
        """The (N, replicate) cells this task computes."""
        return [(self.n, r) for r in self.replicates]

    def compute(self) -> list[dict[str, Any]]:
        """Simulate every replicate, fit them in one batch, estimate: one record per target and cell."""
        return run_batch(self.targets, self.n, self.replicates, **self.options())


def compute_task(task: CellTask | BatchTask) -> list[dict[str, Any]]:
    """Run a :class:`CellTask` or :class:`BatchTask` (in this process or a worker): its cells.

    Examples
    --------
    >>> compute_task(CellTask((), 50, 0, seed=0, method="svi", device="cpu", prob=0.94,
    ...                       num_units=100, allow_unidentified=False))
    []
    """
    if not task.targets:
        return []
    return task.compute()


def _messages(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    return [str(w.message)[:500] for w in caught if issubclass(w.category, UserWarning)][:_MAX_WARNINGS]


def _fit_flags(
    method: str, fit_kwargs: Mapping[str, Any], diagnostics: Mapping[str, Any], fit_warnings: list[str]
) -> list[str]:
    """What the fitting method itself calls a problem in these diagnostics."""
    if diagnostics:
        try:
            problems, _ = make_method(method, fit_kwargs).problems(diagnostics)
            return [f"fit: {p}" for p in problems]
        except (KeyError, TypeError, ValueError, CausalPPError):
            pass  # diagnostics of another shape: fall back on the fit's own warnings
    return [f"fit: {m}" for m in fit_warnings if "unreliable" in m]


def run_cell(
    targets: Sequence[Target],
    n: int,
    replicate: int,
    *,
    seed: int,
    method: str,
    device: str,
    prob: float,
    num_units: int | None,
    allow_unidentified: bool,
    fit_kwargs: dict[str, Any],
) -> list[dict[str, Any]]:
    """Simulate one data set, fit the model once, and estimate every target's query on it.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> from causal_pp.convergence.targets import resolve_target
    >>> t = resolve_target(get_case("frontdoor"), "ate", None, None, None)
    >>> (cell,) = run_cell([t], 30, 0, seed=0, method="svi", device="cpu", prob=0.94, num_units=50,
    ...                    allow_unidentified=False, fit_kwargs={"num_steps": 8, "restarts": 1,
    ...                    "num_samples": 20})  # doctest: +SKIP
    >>> cell["flagged"]  # doctest: +SKIP
    True
    """
    cell_seed = derive_cell_seed(seed, n, replicate)
    data = targets[0].simulate(n, seed=cell_seed)
    t0 = time.perf_counter()
    with num_threads(1), warnings.catch_warnings(record=True) as caught:
        # Warnings are recorded in the cell (a warning per cell would drown the progress bar).
        warnings.simplefilter("always")
        try:
            posterior = targets[0].model.fit(
                data, method=method, seed=cell_seed, device=device, progress_bar=False, **fit_kwargs
            )
        except InferenceError as err:
            posterior = err
    common = {"fit_seconds": time.perf_counter() - t0, "shared_fit": len(targets) > 1}
    return _cells_of_fit(
        targets, posterior, _messages(caught), n, replicate, common, seed=seed, cell_seed=cell_seed,
        method=method, prob=prob, num_units=num_units, allow_unidentified=allow_unidentified,
        fit_kwargs=fit_kwargs,
    )  # fmt: skip


#: The cells of a target, by its kind (:attr:`Target.kind`): ``runner(targets, n, replicate, *, seed,
#: method, device, prob, num_units, allow_unidentified, fit_kwargs) -> cells``. A module adding a
#: kind registers its runner here (:mod:`.bounds_cells`: ``"bounds"``).
CELL_RUNNERS: dict[str, Callable[..., list[dict[str, Any]]]] = {MODEL: run_cell}


def run_batch(
    targets: Sequence[Target],
    n: int,
    replicates: Sequence[int],
    *,
    seed: int,
    method: str,
    device: str,
    prob: float,
    num_units: int | None,
    allow_unidentified: bool,
    fit_kwargs: dict[str, Any],
) -> list[dict[str, Any]]:
    """Simulate each replicate's data set, fit all of them with one :func:`fit_many`, estimate.

    A replicate whose fit fails is a failed cell; the others are unaffected. ``fit_seconds`` of
    each cell is its share of the batch (``batch_seconds`` / ``batch_size``).

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> from causal_pp.convergence.targets import resolve_target
    >>> t = resolve_target(get_case("frontdoor"), "ate", None, None, None)
    >>> cells = run_batch([t], 30, [0, 1], seed=0, method="svi", device="cpu", prob=0.94,
    ...                   num_units=50, allow_unidentified=False,
    ...                   fit_kwargs={"num_steps": 8, "restarts": 1})  # doctest: +SKIP
    >>> [c["replicate"] for c in cells]  # doctest: +SKIP
    [0, 1]
    """
    cell_seeds = [derive_cell_seed(seed, n, r) for r in replicates]
    datasets = [targets[0].simulate(n, seed=s) for s in cell_seeds]
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # One thread, as a single cell: the numbers do not depend on the executor or the machine.
        posteriors = fit_many(
            targets[0].model, datasets, method=method, seeds=cell_seeds, device=device,
            progress_bar=False, threads=1, errors="return", **fit_kwargs,
        )  # fmt: skip
    elapsed = time.perf_counter() - t0
    common = {
        "fit_seconds": elapsed / len(cell_seeds),
        "batch_seconds": elapsed,
        "batch_size": len(cell_seeds),
        "shared_fit": len(targets) > 1,
    }
    # fit_many's summary of the batch ("data sets [0, 3] of 20 ...") names rows, not cells; each
    # cell's own fit problems are read from its diagnostics (its flags).
    fit_warnings = [m for m in _messages(caught) if not m.startswith(BATCH_WARNING)]
    cells: list[dict[str, Any]] = []
    for r, cell_seed, posterior in zip(replicates, cell_seeds, posteriors, strict=True):
        cells += _cells_of_fit(
            targets, posterior, fit_warnings, n, r, common, seed=seed, cell_seed=cell_seed,
            method=method, prob=prob, num_units=num_units, allow_unidentified=allow_unidentified,
            fit_kwargs=fit_kwargs,
        )  # fmt: skip
    return cells


def _cells_of_fit(
    targets: Sequence[Target],
    posterior: Any,
    fit_warnings: list[str],
    n: int,
    replicate: int,
    common: Mapping[str, Any],
    *,
    seed: int,
    cell_seed: int,
    method: str,
    prob: float,
    num_units: int | None,
    allow_unidentified: bool,
    fit_kwargs: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Every target's cell from one fit (a posterior, or the InferenceError of a failed fit)."""
    if isinstance(posterior, InferenceError):
        error = f"{type(posterior).__name__}: {posterior}"
        return [
            failed_record(t, n, replicate, seed=seed, cell_seed=cell_seed, method=method, error=error)
            | dict(common)
            | {"warnings": fit_warnings}
            for t in targets
        ]
    fit_diag = plain_diagnostics(getattr(posterior, "diagnostics", None) or {})
    fit_flags = _fit_flags(method, fit_kwargs, getattr(posterior, "diagnostics", None) or {}, fit_warnings)
    cells = []
    for target in targets:
        with num_threads(1), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                est = posterior.estimate(
                    target.query, num_units=num_units, seed=cell_seed, allow_unidentified=allow_unidentified
                )
            except InferenceError as err:
                est, error = None, f"{type(err).__name__}: {err}"
        est_warnings = _messages(caught)
        if est is None:
            record = failed_record(
                target, n, replicate, seed=seed, cell_seed=cell_seed, method=method, error=error
            )
        else:
            record = cell_record(
                target, est, n, replicate, seed=seed, cell_seed=cell_seed, method=method, prob=prob
            )
            # The notice that a query is not identified is the cell's `identified`, not a flag.
            est_flags = [
                f"estimate: {m}"
                for m in est_warnings
                if m.startswith("causal_pp") and "NOT identifiable" not in m
            ]
            record["flags"] = fit_flags + est_flags
            record["flagged"] = bool(record["flags"])
            record["estimate_diagnostics"] = estimate_diagnostics(est)
        record["fit_diagnostics"] = fit_diag
        record["warnings"] = fit_warnings + est_warnings
        cells.append(record | dict(common))
    return cells


def cell_identity(
    target: Target, n: int, replicate: int, *, seed: int, cell_seed: int, method: str
) -> dict[str, Any]:
    return {
        "target": target.name,
        "method": method,
        "seed": seed,
        "n": n,
        "replicate": replicate,
        "cell_seed": cell_seed,
        "truth": target.truth,
        "identified": target.identified,
    }


def failed_record(
    target: Target, n: int, replicate: int, *, seed: int, cell_seed: int, method: str, error: str
) -> dict[str, Any]:
    """The cell of a failed fit or estimate: flagged, with the error and no estimate.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> from causal_pp.convergence.targets import resolve_target
    >>> t = resolve_target(get_case("bow"), "ate", None, None, None)
    >>> cell = failed_record(t, 50, 0, seed=0, cell_seed=1, method="svi", error="InferenceError: no")
    >>> cell["failed"], cell["flagged"], cell["mean"]
    (True, True, None)
    """
    out = cell_identity(target, n, replicate, seed=seed, cell_seed=cell_seed, method=method)
    nothing = ("mean", "sd", "lo", "hi", "abs_error", "plugin", "plugin_abs_error", "wasserstein")
    return (
        out
        | dict.fromkeys(nothing)
        | {
            "covered": None,
            "predictive": [],
            "truth_predictive": [],
            "failed": True,
            "error": error,
            "flags": [f"failed: {error}"],
            "flagged": True,
            "fit_diagnostics": {},
            "estimate_diagnostics": {},
        }
    )


#: Truth draws of the last few (target, size, seed, N), reused by every cell of one N: a cell
#: compares ~10^5-10^6 posterior-predictive draws with as many truth draws, and simulating these
#: from the SCM anew for every cell was a third of a small cell's time.
_TRUTH_CACHE: dict[tuple[Any, ...], np.ndarray] = {}
_TRUTH_CACHE_SIZE = 4
_TRUTH_STREAM = 7_919  # tells the truth draws' seed apart from the cells' (seed, N, replicate)


def _truth_draws(target: Target, size: int, seed: int, n: int) -> np.ndarray:
    """At least ``max(20_000, size)`` truth draws (a power of two, sorted), one set per (study seed, N).

    The draws depend only on the target, the study seed and N -- not on the cell -- so a cell's
    numbers do not depend on which cells ran before it in the same process."""
    draws = 1 << max(20_000, int(size) - 1).bit_length()
    key = (target.name, target.fingerprint, draws, seed, n)
    if key not in _TRUTH_CACHE:
        if len(_TRUTH_CACHE) >= _TRUTH_CACHE_SIZE:
            _TRUTH_CACHE.pop(next(iter(_TRUTH_CACHE)))
        stream = int(np.random.SeedSequence([seed, n, _TRUTH_STREAM]).generate_state(1)[0] % (2**31 - 1))
        # kept sorted: each cell's W1 then sorts only its own draws (see wasserstein1)
        _TRUTH_CACHE[key] = np.sort(np.asarray(target.truth_samples(draws, stream), dtype=float).ravel())
    return _TRUTH_CACHE[key]


def cell_record(
    target: Target,
    est: Any,
    n: int,
    replicate: int,
    *,
    seed: int,
    cell_seed: int,
    method: str,
    prob: float,
) -> dict[str, Any]:
    """The cell of an estimate: errors against the truth, coverage, W1, kept predictive draws."""
    lo, hi = est.interval(prob)
    pred = predictive_outcome(est, target.query)
    w1 = None
    if pred is not None and target.truth_samples is not None:
        truth_draws = _truth_draws(target, pred.size, seed, n)
        # 12 significant digits: the truth draws' last bit depends on the BLAS thread count,
        # and a cell must read the same from every executor (serial, process, Ray).
        w1 = float(f"{wasserstein1(pred, truth_draws):.12g}")
    rng = np.random.default_rng(cell_seed)
    keep = (
        rng.choice(pred, size=min(PREDICTIVE_KEEP, pred.size), replace=False).round(5).tolist()
        if pred is not None
        else []
    )
    keep_truth = (
        rng.choice(truth_draws, size=min(PREDICTIVE_KEEP, truth_draws.size), replace=False).round(5).tolist()
        if w1 is not None
        else []
    )
    plugin = getattr(est, "plugin", None)
    return cell_identity(target, n, replicate, seed=seed, cell_seed=cell_seed, method=method) | {
        "mean": float(est.mean),
        "sd": float(est.std),
        "lo": float(lo),
        "hi": float(hi),
        "abs_error": abs(float(est.mean) - target.truth),
        "plugin": None if plugin is None else float(plugin),
        "units": None if getattr(est, "num_units", None) is None else int(est.num_units),
        "mc_fraction": getattr(est, "mc_fraction", None),
        "mc_capped": bool(getattr(est, "mc_capped", False)),
        "plugin_abs_error": None if plugin is None else abs(float(plugin) - target.truth),
        "wasserstein": w1,
        "covered": bool(lo <= target.truth <= hi),
        "predictive": keep,
        "truth_predictive": keep_truth,
        "failed": False,
        "error": None,
        "flags": [],
        "flagged": False,
    }
