"""Model comparison across causal assumptions: which DAGs fit the data, and which identify my query.

:func:`compare` ranks posteriors of different causal models fitted to the same data by ArviZ's
leave-one-unit-out cross-validation (PSIS-LOO, ``az.compare``) and puts each model's verdict of
the identification gate for a query beside its rank.

The two columns answer different questions. LOO measures how well a DAG (with its Pyro model)
predicts a new unit's *observations*; identification says whether the *causal* query is a
function of the observational distribution under that DAG. DAGs that imply the same
observational distributions -- the front-door graph and a "bow" with a direct confounded edge,
say -- fit equally well, whatever the data, yet may disagree on identification: the data
cannot choose between them, so a query should be trusted only if every DAG that fits
identifies it (and they agree on its value). A DAG that fits clearly worse can be set aside.

The pointwise log-likelihood integrates each unit's latent variables out (see
:mod:`causal_pp.inference_data`), with the same random numbers for every model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from . import validation as check
from .errors import ArgumentTypeError, InvalidArgumentError
from .identification import identify
from .inference_data import LOG_LIKELIHOOD_PARTICLES, posterior_to_inference_data
from .posterior import CausalPosterior

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["compare"]


def _same_data(posteriors: Mapping[str, CausalPosterior]) -> None:
    """LOO compares models only on the same observations: same variables, same values."""
    (first_name, first), *rest = posteriors.items()
    for name, post in rest:
        if set(post.data) != set(first.data):
            raise InvalidArgumentError(
                f"compare() needs every model fitted to the same data: {name!r} observes {sorted(post.data)}, "
                f"{first_name!r} observes {sorted(first.data)}. Models over different variables cannot be "
                "compared by their likelihoods."
            )
        for k, v in post.data.items():
            if v.shape != first.data[k].shape or not torch.equal(v.double(), first.data[k].double()):
                raise InvalidArgumentError(
                    f"compare() needs every model fitted to the same data: column {k!r} of {name!r} differs "
                    f"from {first_name!r}'s. Refit them on one data set."
                )


def _first_sentence(text: str) -> str:
    head = text.split(". ")[0].strip()
    return head if head.endswith(".") else head + "."


def compare(
    posteriors: Mapping[str, CausalPosterior],
    query: Any = None,
    *,
    ic: str = "loo",
    method: str = "stacking",
    particles: int = LOG_LIKELIHOOD_PARTICLES,
    seed: int = 0,
    assume_monotonic: bool = False,
) -> pd.DataFrame:
    """ArviZ's comparison table of posteriors fitted to the same data, with each DAG's verdict on ``query``.

    Parameters
    ----------
    posteriors
        Model name -> fitted :class:`~causal_pp.CausalPosterior` (at least two, same data).
    query
        A causal query (an :class:`~causal_pp.Interventional`, :class:`~causal_pp.ATE`, a
        counterfactual query, or a y0 probability such as ``P(Y @ X)``) to gate on every DAG;
        None: no identification columns.
    ic, method
        ``az.compare``'s information criterion (``"loo"`` or ``"waic"``) and weighting method.
    particles
        Importance-sampling particles per unit for the marginal log-likelihood.
    seed
        Seed of those particles (the same for every model: common random numbers).
    assume_monotonic
        Passed to the gate (PN/PS/PNS).

    Returns
    -------
    pandas.DataFrame
        ``az.compare``'s table (rank, elpd, p, elpd_diff, weight, se, dse, warning, scale), best
        model first, plus ``identified`` (bool), ``verdict`` (the first sentence of the gate's
        reason) and ``graph`` (the DAG).

    Raises
    ------
    InvalidArgumentError
        Fewer than two posteriors, or posteriors fitted to different data.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, CausalModel, CausalPosterior, Interventional, units
    >>> def linear(n):
    ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(b * x, 1.0))
    >>> x = torch.linspace(-2, 2, 40)
    >>> def posterior(graph, b):
    ...     draws = b + 0.05 * torch.randn(200, generator=torch.Generator().manual_seed(0))
    ...     return CausalPosterior(model=CausalModel(linear, CausalGraph.parse(graph)), samples={"b": draws},
    ...                            data={"X": x, "Y": x}, diagnostics={}, method="given", seed=0)
    >>> table = compare({"unconfounded": posterior("X -> Y", 1.0), "confounded": posterior("X -> Y; X <-> Y", 1.0),
    ...                  "wrong sign": posterior("X -> Y", -1.0)}, Interventional("Y", do={"X": 1.0}))
    >>> table.index[-1], bool(table.loc["wrong sign", "elpd_diff"] > 50)  # the misfit ranks last, far behind
    ('wrong sign', True)
    >>> table.loc[["unconfounded", "confounded"], "identified"].tolist()  # equal fits, different verdicts
    [True, False]
    """
    if not isinstance(posteriors, Mapping):
        raise ArgumentTypeError(
            f"compare() takes a mapping {{name: CausalPosterior}}; got {type(posteriors).__name__}."
        )
    if len(posteriors) < 2:
        raise InvalidArgumentError(f"compare() needs at least two posteriors; got {len(posteriors)}.")
    for name, post in posteriors.items():
        if not isinstance(post, CausalPosterior):
            raise ArgumentTypeError(f"compare(): {name!r} is a {type(post).__name__}, not a CausalPosterior.")
    check.choice("ic", ic, ("loo", "waic"))
    check.seed(seed)
    _same_data(posteriors)
    import arviz as az

    idatas = {
        name: posterior_to_inference_data(post, log_likelihood="joint", particles=particles, seed=seed)
        for name, post in posteriors.items()
    }
    with warnings.catch_warnings():
        # ArviZ 0.23 sorts with pandas' deprecated inplace=True (a pandas 3.1 deprecation warning)
        warnings.filterwarnings("ignore", message="The inplace keyword")
        table = az.compare(idatas, ic=ic, method=method, var_name="joint")  # type: ignore[arg-type]
    table["graph"] = [posteriors[name].graph.to_string() for name in table.index]
    if query is not None:
        verdicts = {
            name: identify(post.graph, query, strict=False, assume_monotonic=assume_monotonic)
            for name, post in posteriors.items()
        }
        table["identified"] = [bool(verdicts[name].identified) for name in table.index]
        table["verdict"] = [_first_sentence(verdicts[name].reason) for name in table.index]
    return table
