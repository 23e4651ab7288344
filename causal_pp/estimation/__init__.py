"""Estimating causal queries from a fitted posterior, by simulating the rewritten model.

=====================================  ========================================================  =====================
concept                                what                                                      module
=====================================  ========================================================  =====================
:func:`estimate`                       validate options, gate, dispatch on the query type        here
the tables                             query type -> estimator; -> the outcome draws a study     :mod:`.dispatch`
                                       plots
``Interventional``, ``ATE``            simulate the intervened model; likelihood weighting        :mod:`.interventional`
                                       for ``given``; common random numbers across arms
``Counterfactual``, ``ETT``, ``PN``,   abduction, action, prediction in twin worlds with          :mod:`.counterfactual`
``PS``, ``PNS``                        shared noise
vectorised simulation                  every posterior draw at once, in chunks; keyed noise;     :mod:`.simulate`
                                       Rao-Blackwellised outcome means
Monte Carlo error                      per-draw MC variance from unit contributions; how many    :mod:`.montecarlo`
                                       units are enough (stopping rule, caps)
weights                                per-unit log-weights, ESS, resampling                     :mod:`.weighting`
=====================================  ========================================================  =====================

Adding a query type: register its estimator with ``dispatch.estimator`` (one new module,
imported here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyro
import torch
from pyro import poutine

from ..errors import InvalidArgumentError
from . import counterfactual as _counterfactual  # noqa: F401  (registers the counterfactual queries)
from . import interventional as _interventional  # noqa: F401  (registers Interventional and ATE)
from .counterfactual import estimate_counterfactual
from .dispatch import EstimateOptions, estimator, make_options, outcome_predictive
from .interventional import arm_key
from .montecarlo import DEFAULT_MC_FRACTION, MAX_UNITS, MAX_WORK

if TYPE_CHECKING:  # pragma: no cover
    from ..posterior import CausalPosterior, Estimate

__all__ = [
    "DEFAULT_MC_FRACTION",
    "MAX_UNITS",
    "MAX_WORK",
    "EstimateOptions",
    "arm_key",
    "estimate",
    "estimate_counterfactual",
    "estimator",
    "outcome_predictive",
]


def estimate(
    posterior: CausalPosterior,
    query: Any,
    *,
    num_samples: int | None = None,
    num_units: int | None = None,
    seed: int = 0,
    allow_unidentified: bool = False,
    assume_monotonic: bool = False,
    mc_fraction: float = DEFAULT_MC_FRACTION,
    max_units: int | None = None,
) -> Estimate:
    """Estimate a causal query from a fitted posterior; see :meth:`causal_pp.CausalPosterior.estimate`.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import ATE, CausalGraph, CausalModel, CausalPosterior
    >>> def linear(n):
    ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
    ...     with pyro.plate("units", n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(b * x, 1.0))
    >>> post = CausalPosterior(model=CausalModel(linear, CausalGraph.parse("X -> Y")),
    ...                        samples={"b": torch.tensor([0.9, 1.1])},
    ...                        data={"X": torch.zeros(2), "Y": torch.zeros(2)}, diagnostics={}, method="given", seed=0)
    >>> est = estimate(post, ATE("X", "Y"))
    >>> [round(v, 3) for v in est.samples.tolist()], est.mc_fraction  # exact per draw: no MC error
    ([0.9, 1.1], 0.0)
    """
    options = make_options(
        num_samples=num_samples,
        num_units=num_units,
        seed=seed,
        allow_unidentified=allow_unidentified,
        assume_monotonic=assume_monotonic,
        mc_fraction=mc_fraction,
        max_units=max_units,
    )
    _check_new_units(posterior)
    return estimator(query, posterior, options)


def _check_new_units(posterior: CausalPosterior) -> None:
    """Refuse, before any work, a model whose arguments tie it to the data's units: estimates
    simulate new units, so the program must run with any number of them."""
    if not (posterior.model_args or posterior.model_kwargs):
        return
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
            poutine.trace(posterior.model.fn).get_trace(1, *posterior.model_args, **posterior.model_kwargs)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidArgumentError(
            f"estimate simulates new units, but {posterior.model.name!r} does not run with another "
            f"number of units than the data's with its model_args/model_kwargs ({type(err).__name__}: "
            f"{first}). Model arguments that hold per-unit data (a covariate of length n) tie the model "
            "to the data's units: make such a covariate a DAG node, an observed column of the data."
        ) from err
