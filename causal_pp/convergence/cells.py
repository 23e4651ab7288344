"""One cell of a convergence study: simulate a data set, fit once, estimate every target on it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import CausalPPError
from ..estimation import outcome_predictive
from .targets import Target, derive_cell_seed

__all__ = ["DRAW_KEYS", "PREDICTIVE_KEEP", "cell_record", "predictive_outcome", "run_cell", "wasserstein1"]


PREDICTIVE_KEEP = 400  # posterior-predictive draws kept per cell for density plots


DRAW_KEYS = ("predictive", "truth_predictive")


def wasserstein1(a: Iterable[float], b: Iterable[float]) -> float:
    """Wasserstein-1 distance between two empirical 1-d distributions (scipy's).

    Examples
    --------
    >>> round(wasserstein1([0.0, 1.0], [1.0, 2.0]), 6)
    1.0
    """
    from scipy.stats import wasserstein_distance

    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.size == 0 or b.size == 0:
        raise CausalPPError("wasserstein1 needs two non-empty samples.")
    return float(wasserstein_distance(a, b))


def predictive_outcome(estimate: Any, query: Any) -> np.ndarray | None:
    """Unit-level posterior-predictive draws of the outcome (treated arm for an ATE; none for an ETT)."""
    if not getattr(estimate, "predictive", None):
        return None
    value = outcome_predictive(query, estimate)
    if value is None:
        return None
    return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=float).ravel()


def run_cell(
    targets: Sequence[Target],
    n: int,
    replicate: int,
    *,
    seed: int,
    method: str,
    device: str,
    prob: float,
    num_units: int,
    allow_unidentified: bool,
    fit_kwargs: dict[str, Any],
) -> list[dict[str, Any]]:
    """Simulate one data set, fit the model once, and estimate every target's query on it."""
    import warnings

    cell_seed = derive_cell_seed(seed, n, replicate)
    data = targets[0].simulate(n, seed=cell_seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # Per-cell diagnostics are recorded in the table; a warning per cell would drown the bar.
        warnings.simplefilter("ignore")
        posterior = targets[0].model.fit(
            data, method=method, seed=cell_seed, device=device, progress_bar=False, **fit_kwargs
        )
    fit_time = time.perf_counter() - t0
    cells = []
    for target in targets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = posterior.estimate(
                target.query, num_units=num_units, seed=cell_seed, allow_unidentified=allow_unidentified
            )
        cells.append(
            cell_record(target, est, n, replicate, seed=seed, cell_seed=cell_seed, method=method, prob=prob)
            | {"fit_seconds": fit_time, "shared_fit": len(targets) > 1}
        )
    return cells


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
    lo, hi = est.interval(prob)
    pred = predictive_outcome(est, target.query)
    w1 = None
    if pred is not None and target.truth_samples is not None:
        truth_draws = target.truth_samples(max(20_000, pred.size), cell_seed + 1)
        w1 = wasserstein1(pred, truth_draws)
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
    return {
        "target": target.name,
        "method": method,
        "seed": seed,
        "n": n,
        "replicate": replicate,
        "cell_seed": cell_seed,
        "truth": target.truth,
        "identified": target.identified,
        "mean": float(est.mean),
        "sd": float(est.std),
        "lo": float(lo),
        "hi": float(hi),
        "abs_error": abs(float(est.mean) - target.truth),
        "plugin": None if plugin is None else float(plugin),
        "plugin_abs_error": None if plugin is None else abs(float(plugin) - target.truth),
        "wasserstein": w1,
        "covered": bool(lo <= target.truth <= hi),
        "predictive": keep,
        "truth_predictive": keep_truth,
    }
