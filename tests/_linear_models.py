"""Linear-Gaussian test models with a latent confounder U (the paper's Examples 1 and 2).

* front-door: U -> X -> M -> Y, U -> Y (identified; ATE = theta_XM * theta_MY)
* back-door:  U -> Z -> X -> Y, Z -> Y, U -> Y (identified by adjusting for Z; ATE = theta_XY)
* bow:        U -> X -> Y, U -> Y (NOT identified; ATE = theta_XY)

All noise terms are N(0, 1), U ~ N(mu, 1); priors follow the paper's Example 2 (mu ~ N(0, 10),
loadings on U and X -> M ~ N(0, 1), the rest ~ N(0, 10)). :func:`simulate` draws data from the
model itself with the global parameters fixed at the true values.
"""

from __future__ import annotations

import math
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


# The exact posterior of the linear-Gaussian test models: U ~ N(mu, 1) is a root with unit-noise
# linear children, so (observed columns) is multivariate normal given the globals and U can be
# integrated out analytically; NUTS on that marginal model is the reference. Edges are
# (parent, child, global); priors are those of the models above.
MARGINAL_SEM = {
    "frontdoor": (
        ["U", "X", "M", "Y"],
        [("U", "X", "theta_UX"), ("X", "M", "theta_XM"), ("M", "Y", "theta_MY"), ("U", "Y", "theta_UY")],
        {"mu": 10.0, "theta_UX": 1.0, "theta_XM": 1.0, "theta_MY": 10.0, "theta_UY": 10.0},
        lambda p: p["theta_XM"] * p["theta_MY"],
    ),
    "backdoor": (
        ["U", "Z", "X", "Y"],
        [
            ("U", "Z", "theta_UZ"),
            ("Z", "X", "theta_ZX"),
            ("X", "Y", "theta_XY"),
            ("Z", "Y", "theta_ZY"),
            ("U", "Y", "theta_UY"),
        ],
        {"mu": 10.0, "theta_UZ": 1.0, "theta_ZX": 10.0, "theta_XY": 10.0, "theta_ZY": 10.0, "theta_UY": 10.0},
        lambda p: p["theta_XY"],
    ),
}


def exact_ate_posterior(
    name: str, data: Mapping[str, torch.Tensor], seed: int = 0, chains: int = 2, samples: int = 400
) -> tuple[torch.Tensor, float, float]:
    """Draws of the ATE from NUTS on the model with U integrated out (``chains`` chains, one
    after another, pooled), their ESS and split R-hat.

    Callers must check the R-hat and use the ESS: at small N these posteriors can have
    separated modes with different ATEs (back-door, N = 300, data seed 2: chains settle at
    -0.63 and -0.70, with theta_UZ -0.76 and 1.20), and a chain does not leave the one it
    finds; even at N = 2000 the chains mix slowly (back-door, data seed 2: ESS ~120 of 1600
    draws with a dense mass matrix).
    """
    nodes, edges, prior_sd, ate = MARGINAL_SEM[name]
    y = torch.stack([data[v].double() for v in nodes[1:]], -1)
    # the Gaussian likelihood of iid rows depends on the data only through their mean and
    # scatter: O(1) per NUTS step instead of O(N)
    n, ybar = len(y), y.mean(0)
    scatter = (y - ybar).T @ (y - ybar) / len(y)

    def marginal():
        p = {
            k: pyro.sample(k, dist.Normal(0.0, torch.tensor(sd, dtype=torch.float64)))
            for k, sd in prior_sd.items()
        }
        B = torch.zeros(4, 4, dtype=torch.float64)
        for parent, child, k in edges:
            B = B.index_put((torch.tensor(nodes.index(child)), torch.tensor(nodes.index(parent))), p[k])
        T = torch.linalg.inv(torch.eye(4, dtype=torch.float64) - B)  # V = T noise, noise ~ N((mu,0,0,0), I)
        mean, cov = T[1:, 0] * p["mu"], T[1:] @ T[1:].T
        r = (ybar - mean).unsqueeze(-1)
        quad = torch.linalg.solve(cov, scatter + r @ r.T).diagonal().sum()
        loglik = -0.5 * n * (torch.logdet(2 * math.pi * cov) + quad)
        pyro.factor("obs", loglik)

    per_chain = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(chains):
            mcmc = pyro.infer.MCMC(
                pyro.infer.NUTS(marginal, jit_compile=True, ignore_jit_warnings=True, full_mass=True),
                num_samples=samples,
                warmup_steps=300,
                disable_progbar=True,
            )
            mcmc.run()
            per_chain.append(ate(mcmc.get_samples()))
    draws = torch.stack(per_chain)
    ess = float(pyro.ops.stats.effective_sample_size(draws))
    r_hat = float(pyro.ops.stats.split_gelman_rubin(draws))
    return draws.reshape(-1), ess, r_hat
