"""Small models and fits shared by the ecosystem tests (ArviZ output, save/load, compare).

Module-level, so that the models pickle by reference.
"""

from __future__ import annotations

import functools
import warnings

import pyro
import pyro.distributions as dist

from causal_pp import CausalGraph, CausalPosterior, causal_model, units
from causal_pp.cases import get_case

FRONTDOOR = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"])
NO_MEDIATION = CausalGraph.parse("U -> X; U -> Y; M -> Y", latent=["U"])


@causal_model(FRONTDOOR)
def frontdoor(n):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    a = pyro.sample("theta_UX", dist.Normal(0.0, 1.0))
    b = pyro.sample("theta_XM", dist.Normal(0.0, 1.0))
    c = pyro.sample("theta_MY", dist.Normal(0.0, 10.0))
    d = pyro.sample("theta_UY", dist.Normal(0.0, 10.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(mu, 1.0))
        x = pyro.sample("X", dist.Normal(a * u, 1.0))
        m = pyro.sample("M", dist.Normal(b * x, 1.0))
        pyro.sample("Y", dist.Normal(c * m + d * u, 1.0))


@causal_model(NO_MEDIATION)
def no_mediation(n):
    """The front-door model without X -> M: a wrong DAG for front-door data (M ignores X)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    a = pyro.sample("theta_UX", dist.Normal(0.0, 1.0))
    c = pyro.sample("theta_MY", dist.Normal(0.0, 10.0))
    d = pyro.sample("theta_UY", dist.Normal(0.0, 10.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(mu, 1.0))
        pyro.sample("X", dist.Normal(a * u, 1.0))
        m = pyro.sample("M", dist.Normal(0.0, 1.0))
        pyro.sample("Y", dist.Normal(c * m + d * u, 1.0))


@functools.cache
def data(n: int = 80):
    return get_case("frontdoor").simulate(n, seed=1)


def quiet_fit(model, method: str, n: int, **options) -> CausalPosterior:
    """A small seeded fit; its reliability warnings are expected at these budgets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return model.fit(data(n), method=method, seed=0, progress_bar=False, **options)


@functools.cache
def nuts_fit() -> CausalPosterior:
    """Two chains of 40 draws on 40 units (about 10 s on one core)."""
    return quiet_fit(frontdoor, "nuts", 40, num_samples=40, warmup_steps=40, num_chains=2)


@functools.cache
def svi_fit(model_name: str = "frontdoor") -> CausalPosterior:
    """500 steps on 60 units (a few seconds)."""
    model = {"frontdoor": frontdoor, "no_mediation": no_mediation}[model_name]
    return quiet_fit(model, "svi", 60, num_steps=500, restarts=1, num_samples=300)
