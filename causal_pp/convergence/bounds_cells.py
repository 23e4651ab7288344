"""Cells of bounds targets: the posterior of a refused query's sharp bounds on one data set.

A case query of ``kind="bounds"`` (:class:`~causal_pp.cases.CaseQuery`) is not identified, so
no model is fitted for it: each (N, replicate) cell simulates N rows with the cell's seed,
computes the posterior of the query's sharp bounds with :func:`causal_pp.bounds` (a Dirichlet
posterior over the observed distribution, two linear programs per draw) and scores it against
the truths the case knows exactly -- the true sharp bounds and the true value.

A bounds cell holds the fields every cell has (``target``, ``method`` = ``"bounds"``, ``seed``,
``n``, ``replicate``, ``cell_seed``, ``truth``, ``identified``, ``flagged``, ``failed``,
``error``, ``flags``, ``covered``) and:

=========================================  ===================================================
``lower``, ``upper``                        posterior means of the two ends
``lower_sd``, ``upper_sd``                  their posterior SDs
``true_lower``, ``true_upper``              the true sharp bounds
``lower_abs_error``, ``upper_abs_error``    ``|lower - true_lower|``, ``|upper - true_upper|``
``width``, ``true_width``                   ``upper - lower`` and ``true_upper - true_lower``
``lo``, ``hi``                              the credible region for the identified interval,
                                            ``Bounds.identified_set(prob)``
``covered``                                 the true value lies in ``[lo, hi]``
``set_covered``                             the true sharp bounds lie in ``[lo, hi]``
``sharp``, ``acceptance``, ``posterior``    from the :class:`~causal_pp.partial.Bounds`
``num_samples``, ``fit_seconds``            posterior draws; seconds to compute them
=========================================  ===================================================

``mean``, ``sd`` and ``abs_error`` are None: an interval has no point estimate, and its
midpoint is no estimator of the true value. A cell whose bounds raise a
:class:`~causal_pp.errors.CausalPPError` (data the graph cannot produce, ...) is a failed,
flagged cell (:func:`~.cells.failed_record`), not a crash of the study.

Bounds cells take one option from the grid's fit options: ``num_samples``, the posterior draws
(default :data:`DEFAULT_DRAWS`); the others are for fits and are not used. The options a bounds
cell uses are part of its settings key (:func:`bounds_options`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from .. import validation
from ..cases.case import BOUNDS
from ..errors import CausalPPError
from ..partial import Bounds, bounds
from ..runtime import num_threads
from .cells import CELL_RUNNERS, cell_identity, failed_record
from .targets import Target, derive_cell_seed

__all__ = [
    "BOUNDS_COLUMNS",
    "DEFAULT_DRAWS",
    "bounds_options",
    "bounds_record",
    "run_bounds_cells",
]

#: Posterior draws of the bounds per cell unless the fit options say ``num_samples``.
DEFAULT_DRAWS = 1000
#: Dirichlet concentration per cell of the observed distribution (that of :func:`causal_pp.bounds`).
PRIOR = 1.0
#: The numeric columns a bounds cell adds (None in a failed cell).
BOUNDS_COLUMNS = (
    "lower",
    "upper",
    "lower_sd",
    "upper_sd",
    "true_lower",
    "true_upper",
    "lower_abs_error",
    "upper_abs_error",
    "width",
    "true_width",
    "acceptance",
)


def bounds_options(fit_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options of a bounds cell under a grid's fit options (part of its settings key).

    Examples
    --------
    >>> bounds_options({"num_steps": 100, "num_samples": 400})
    {'num_samples': 400, 'prior': 1.0}
    >>> bounds_options(None)["num_samples"]
    1000
    """
    draws = (fit_kwargs or {}).get("num_samples", DEFAULT_DRAWS)
    return {"num_samples": validation.positive_int("num_samples", draws), "prior": PRIOR}


def bounds_record(
    target: Target, b: Bounds, n: int, replicate: int, *, seed: int, cell_seed: int, prob: float
) -> dict[str, Any]:
    """The cell of a posterior of bounds: each end against the true sharp bounds, coverage.

    Examples
    --------
    >>> import numpy as np
    >>> from causal_pp.cases import get_case
    >>> from causal_pp.convergence.targets import resolve_target
    >>> from causal_pp.partial import Bounds
    >>> t = resolve_target(get_case("pn_bounds"), "pn", None, None, None)
    >>> b = Bounds(t.query, np.full(9, 0.45), np.full(9, 0.8), True, "canonical-lp", "", 1.0, 9, 0)
    >>> cell = bounds_record(t, b, 100, 0, seed=0, cell_seed=1, prob=0.94)
    >>> round(cell["lower_abs_error"], 6), round(cell["upper_abs_error"], 6), cell["covered"]
    (0.05, 0.05, True)
    """
    assert target.true_bounds is not None, "a bounds target carries its true sharp bounds"
    true_lo, true_hi = target.true_bounds
    lower, upper = b.mean
    lower_sd, upper_sd = b.std
    lo, hi = b.identified_set(prob)
    ident = cell_identity(target, n, replicate, seed=seed, cell_seed=cell_seed, method=BOUNDS)
    return ident | {
        "mean": None,
        "sd": None,
        "lo": lo,
        "hi": hi,
        "abs_error": None,
        "plugin": None,
        "plugin_abs_error": None,
        "wasserstein": None,
        "lower": lower,
        "upper": upper,
        "lower_sd": lower_sd,
        "upper_sd": upper_sd,
        "true_lower": true_lo,
        "true_upper": true_hi,
        "lower_abs_error": abs(lower - true_lo),
        "upper_abs_error": abs(upper - true_hi),
        "width": upper - lower,
        "true_width": true_hi - true_lo,
        "covered": bool(lo <= target.truth <= hi),
        "set_covered": bool(lo <= true_lo and true_hi <= hi),
        "sharp": bool(b.sharp),
        "acceptance": float(b.acceptance),
        "posterior": b.posterior,
        "bounds_method": b.method,
        "num_samples": int(b.num_samples),
        "predictive": [],
        "truth_predictive": [],
        "failed": False,
        "error": None,
        "flags": [],
        "flagged": False,
    }


def run_bounds_cells(
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
    fit_kwargs: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Simulate one data set and compute every bounds target's cell on it (the ``"bounds"`` runner).

    ``method``, ``device``, ``num_units`` and ``allow_unidentified`` are the grid's, for fits:
    unused here. The posterior of the bounds is seeded by the cell's seed.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> from causal_pp.convergence.targets import resolve_target
    >>> t = resolve_target(get_case("iv_bounds"), "ate", None, None, None)
    >>> (cell,) = run_bounds_cells([t], 200, 0, seed=0, method="svi", device="cpu", prob=0.94,
    ...                            num_units=None, allow_unidentified=False, fit_kwargs={"num_samples": 50})
    >>> cell["method"], cell["failed"], cell["sharp"], cell["num_samples"]
    ('bounds', False, True, 50)
    """
    options = bounds_options(fit_kwargs)
    cell_seed = derive_cell_seed(seed, n, replicate)
    data = targets[0].simulate(n, seed=cell_seed)
    cells = []
    for target in targets:
        case = target.case
        domains = dict(getattr(case, "domains", None) or {}) or None
        graph = case.graph if case is not None else target.model.graph
        t0 = time.perf_counter()
        with num_threads(1), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                b = bounds(
                    graph, target.query, data, num_samples=options["num_samples"],
                    seed=cell_seed, prior=options["prior"], domains=domains,
                )  # fmt: skip
                error = None
            except CausalPPError as err:
                b, error = None, f"{type(err).__name__}: {err}"
        messages = [str(w.message)[:500] for w in caught if issubclass(w.category, UserWarning)][:10]
        if b is None:
            assert error is not None
            record = failed_record(
                target, n, replicate, seed=seed, cell_seed=cell_seed, method=BOUNDS, error=error
            )
            record |= dict.fromkeys(BOUNDS_COLUMNS) | {"set_covered": None, "sharp": None}
            if target.true_bounds is not None:
                true_lo, true_hi = target.true_bounds
                record |= {"true_lower": true_lo, "true_upper": true_hi, "true_width": true_hi - true_lo}
        else:
            record = bounds_record(target, b, n, replicate, seed=seed, cell_seed=cell_seed, prob=prob)
            record["flags"] = [f"bounds: {m}" for m in messages if m.startswith("causal_pp")]
            record["flagged"] = bool(record["flags"])
        record["warnings"] = messages
        record["fit_seconds"] = time.perf_counter() - t0
        record["shared_fit"] = False
        cells.append(record)
    return cells


CELL_RUNNERS[BOUNDS] = run_bounds_cells
