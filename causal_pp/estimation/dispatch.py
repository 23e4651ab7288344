"""The tables from query type to its estimator, and to the unit-level draws a study plots.

:func:`estimator` is a :func:`functools.singledispatch` function: each query type registers the
function that estimates it from a fitted posterior (``causal_pp.estimation.interventional``
registers :class:`~causal_pp.Interventional` and :class:`~causal_pp.ATE`;
``causal_pp.estimation.counterfactual`` the counterfactual queries).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import validation as check
from ..errors import QueryError
from .montecarlo import DEFAULT_MC_FRACTION

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..posterior import CausalPosterior, Estimate

__all__ = ["EstimateOptions", "estimator", "make_options", "outcome_predictive"]


@dataclass(frozen=True)
class EstimateOptions:
    """The options of :func:`~causal_pp.estimation.estimate`, validated.

    Attributes
    ----------
    num_samples
        Posterior draws to use (evenly thinned; None: all).
    num_units
        Fresh units simulated per draw; None (the default): as many as needed for ``mc_fraction``.
    seed
        Seed of the simulation.
    allow_unidentified
        Estimate a query the gate refuses (flagged ``identified=False``).
    assume_monotonic
        Counterfactual queries: passed to the gate (PN/PS/PNS need it).
    mc_fraction
        Target of the adaptive simulation: the mean Monte Carlo variance of a draw's functional
        at most this fraction of the functional's posterior variance.
    max_units
        Cap on the units per draw of the adaptive simulation (None: :data:`~.montecarlo.MAX_UNITS`,
        and at most :data:`~.montecarlo.MAX_WORK` unit-simulations in all).
    rao_blackwell, stratify
        Variance reduction (both exact, on by default; switches for measuring what they buy):
        average the outcome's conditional mean given its parents rather than its sampled value
        (mean queries of the interventional program), and simulate units as stratified
        antithetic replicates (:class:`~causal_pp.handlers.KeyedNoise`).
    """

    num_samples: int | None = None
    num_units: int | None = None
    seed: int = 0
    allow_unidentified: bool = False
    assume_monotonic: bool = False
    mc_fraction: float = DEFAULT_MC_FRACTION
    max_units: int | None = None
    rao_blackwell: bool = True
    stratify: bool = True


def make_options(
    *,
    num_samples: int | None = None,
    num_units: int | None = None,
    seed: int = 0,
    allow_unidentified: bool = False,
    assume_monotonic: bool = False,
    mc_fraction: float = DEFAULT_MC_FRACTION,
    max_units: int | None = None,
) -> EstimateOptions:
    """Validated :class:`EstimateOptions`: every option checked for type and range before any work.

    Examples
    --------
    >>> make_options(num_units=100).num_units
    100
    >>> make_options(num_units=0)
    Traceback (most recent call last):
    ...
    causal_pp.errors.InvalidArgumentError: num_units must be a positive integer; got 0.
    >>> make_options(mc_fraction=0.0)
    Traceback (most recent call last):
    ...
    causal_pp.errors.InvalidArgumentError: mc_fraction must be a finite number in (0, 1); got 0.0.
    """
    return EstimateOptions(
        num_samples=None if num_samples is None else check.positive_int("num_samples", num_samples),
        num_units=None if num_units is None else check.positive_int("num_units", num_units),
        seed=check.seed(seed),
        allow_unidentified=check.boolean("allow_unidentified", allow_unidentified),
        assume_monotonic=check.boolean("assume_monotonic", assume_monotonic),
        mc_fraction=check.probability("mc_fraction", mc_fraction),
        max_units=None if max_units is None else check.positive_int("max_units", max_units, minimum=2),
    )


@functools.singledispatch
def estimator(query: Any, posterior: CausalPosterior, options: EstimateOptions) -> Estimate:
    """Estimate ``query`` from ``posterior``; dispatches on the query's type.

    Examples
    --------
    >>> import causal_pp  # registers every query type
    >>> {"ATE", "Counterfactual", "ETT", "Interventional", "PN", "PNS", "PS"} <= {t.__name__ for t in estimator.registry}
    True
    """
    known = ", ".join(sorted(t.__name__ for t in estimator.registry if t is not object))
    raise QueryError(f"estimate() takes one of the queries {known}; got {type(query).__name__}.")


@functools.singledispatch
def outcome_predictive(query: Any, estimate: Estimate) -> torch.Tensor | None:
    """Unit-level posterior-predictive draws of the outcome a study compares with the truth.

    The treated arm for an ATE; None where there is no single outcome distribution (an ETT:
    a contrast of two counterfactual worlds).
    """
    return None
