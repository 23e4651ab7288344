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
        Fresh units simulated per draw.
    seed
        Seed of the simulation.
    allow_unidentified
        Estimate a query the gate refuses (flagged ``identified=False``).
    assume_monotonic
        Counterfactual queries: passed to the gate (PN/PS/PNS need it).
    """

    num_samples: int | None = None
    num_units: int = 1000
    seed: int = 0
    allow_unidentified: bool = False
    assume_monotonic: bool = False


def make_options(
    *,
    num_samples: int | None = None,
    num_units: int = 1000,
    seed: int = 0,
    allow_unidentified: bool = False,
    assume_monotonic: bool = False,
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
    """
    return EstimateOptions(
        num_samples=None if num_samples is None else check.positive_int("num_samples", num_samples),
        num_units=check.positive_int("num_units", num_units),
        seed=check.seed(seed),
        allow_unidentified=check.boolean("allow_unidentified", allow_unidentified),
        assume_monotonic=check.boolean("assume_monotonic", assume_monotonic),
    )


@functools.singledispatch
def estimator(query: Any, posterior: CausalPosterior, options: EstimateOptions) -> Estimate:
    """Estimate ``query`` from ``posterior``; dispatches on the query's type.

    Examples
    --------
    >>> import causal_pp  # registers every query type
    >>> sorted(t.__name__ for t in estimator.registry if t is not object)
    ['ATE', 'Counterfactual', 'ETT', 'Interventional', 'PN', 'PNS', 'PS']
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
