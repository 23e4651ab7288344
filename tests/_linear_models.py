"""Linear-Gaussian test models with a latent confounder U (the paper's Examples 1 and 2).

* front-door: U -> X -> M -> Y, U -> Y (identified; ATE = theta_XM * theta_MY)
* back-door:  U -> Z -> X -> Y, Z -> Y, U -> Y (identified by adjusting for Z; ATE = theta_XY)
* bow:        U -> X -> Y, U -> Y (NOT identified; ATE = theta_XY)

All noise terms are N(0, 1), U ~ N(mu, 1); priors follow the paper's Example 2 (mu ~ N(0, 10),
loadings on U and X -> M ~ N(0, 1), the rest ~ N(0, 10)). :func:`simulate` draws data from the
model itself with the global parameters fixed at the true values.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch

from causal_pp.graph import CausalGraph
from causal_pp.model import CausalModel, units

FRONTDOOR_GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"])
BACKDOOR_GRAPH = CausalGraph.parse("U -> Z; U -> Y; Z -> X; Z -> Y; X -> Y", latent=["U"])
BOW_GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"])

FRONTDOOR_TRUTH = {"mu": 1.0, "theta_UX": 0.8, "theta_XM": -0.7, "theta_MY": 1.2, "theta_UY": -1.5}
BACKDOOR_TRUTH = {
    "mu": 1.0,
    "theta_UZ": 0.9,
    "theta_ZX": 0.8,
    "theta_XY": -0.6,
    "theta_ZY": 0.5,
    "theta_UY": 1.2,
}
BOW_TRUTH = {"mu": 1.0, "theta_UX": 0.8, "theta_XY": 0.5, "theta_UY": -1.5}


def frontdoor_fn(n: int) -> None:
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


def backdoor_fn(n: int) -> None:
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    a = pyro.sample("theta_UZ", dist.Normal(0.0, 1.0))
    b = pyro.sample("theta_ZX", dist.Normal(0.0, 10.0))
    c = pyro.sample("theta_XY", dist.Normal(0.0, 10.0))
    e = pyro.sample("theta_ZY", dist.Normal(0.0, 10.0))
    f = pyro.sample("theta_UY", dist.Normal(0.0, 10.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(mu, 1.0))
        z = pyro.sample("Z", dist.Normal(a * u, 1.0))
        x = pyro.sample("X", dist.Normal(b * z, 1.0))
        pyro.sample("Y", dist.Normal(c * x + e * z + f * u, 1.0))


def bow_fn(n: int) -> None:
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    a = pyro.sample("theta_UX", dist.Normal(0.0, 1.0))
    c = pyro.sample("theta_XY", dist.Normal(0.0, 10.0))
    d = pyro.sample("theta_UY", dist.Normal(0.0, 10.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(mu, 1.0))
        x = pyro.sample("X", dist.Normal(a * u, 1.0))
        pyro.sample("Y", dist.Normal(c * x + d * u, 1.0))


frontdoor = CausalModel(frontdoor_fn, FRONTDOOR_GRAPH)
backdoor = CausalModel(backdoor_fn, BACKDOOR_GRAPH)
bow = CausalModel(bow_fn, BOW_GRAPH)

MODELS = {
    "frontdoor": (frontdoor, FRONTDOOR_TRUTH),
    "backdoor": (backdoor, BACKDOOR_TRUTH),
    "bow": (bow, BOW_TRUTH),
}


def true_ate(name: str, params: Mapping[str, float] | None = None) -> float:
    """Analytic ATE of X on Y (per unit change of X)."""
    p = dict(params or MODELS[name][1])
    if name == "frontdoor":
        return p["theta_XM"] * p["theta_MY"]
    return p["theta_XY"]


def simulate(model: CausalModel, params: Mapping[str, float], n: int, seed: int) -> dict[str, torch.Tensor]:
    """Observed columns of ``n`` units drawn from ``model`` with its globals fixed at ``params``."""
    fixed = {k: torch.tensor(float(v)) for k, v in params.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tr = pyro.poutine.trace(pyro.condition(model.fn, data=fixed)).get_trace(n)
    return {v: tr.nodes[v]["value"].detach().clone() for v in model.graph.observed}
