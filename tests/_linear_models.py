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


def marginal_log_posterior(name: str, data: Mapping[str, torch.Tensor]) -> tuple[list[str], object]:
    """The log posterior of the globals with U integrated out, vectorised over rows of ``theta``
    (float64; ``theta`` columns in the order of the returned names)."""
    nodes, edges, prior_sd, _ = MARGINAL_SEM[name]
    names = list(prior_sd)
    y = torch.stack([data[v].double() for v in nodes[1:]], -1)
    n, ybar = len(y), y.mean(0)
    scatter = (y - ybar).T @ (y - ybar) / len(y)
    sds = torch.tensor([prior_sd[k] for k in names], dtype=torch.float64)
    where = [(nodes.index(child), nodes.index(parent), names.index(k)) for parent, child, k in edges]

    def log_post(theta: torch.Tensor) -> torch.Tensor:
        m = theta.shape[0]
        B = torch.zeros(m, 4, 4, dtype=torch.float64)
        for row, col, k in where:
            B[:, row, col] = theta[:, k]
        T = torch.linalg.inv(torch.eye(4, dtype=torch.float64) - B)
        mean = T[:, 1:, 0] * theta[:, names.index("mu")].unsqueeze(-1)
        cov = T[:, 1:] @ T[:, 1:].transpose(-1, -2)
        r = (ybar - mean).unsqueeze(-1)
        quad = torch.linalg.solve(cov, scatter + r @ r.transpose(-1, -2)).diagonal(dim1=-2, dim2=-1).sum(-1)
        loglik = -0.5 * n * (torch.logdet(2 * math.pi * cov) + quad)
        prior = torch.distributions.Normal(0.0, sds).log_prob(theta).sum(-1)
        return loglik + prior

    return names, log_post


def exact_ate_reference(
    name: str, data: Mapping[str, torch.Tensor], seed: int = 0, proposals: int = 20000, starts: int = 16
) -> tuple[float, float, float]:
    """The exact posterior mean and SD of the ATE, by importance sampling (no Markov chain to mix).

    U is integrated out analytically (the observed columns are Gaussian given the globals). The
    proposal is a mixture of Student-t distributions (5 degrees of freedom, scale 1.2 x the
    Laplace covariance) at every distinct mode that ``starts`` optimisations from prior draws
    find: it covers the sign-flip twins and any separated mode, and its heavy tails cover the
    posterior's. Returns (mean, SD, effective sample size of the weights); deterministic for a
    seed, and the ESS makes its own Monte Carlo error known.
    """
    names, log_post = marginal_log_posterior(name, data)
    prior_sd = torch.tensor([MARGINAL_SEM[name][2][k] for k in names], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    modes: list[torch.Tensor] = []
    for _ in range(starts):
        x = (
            torch.randn(len(names), generator=g, dtype=torch.float64) * prior_sd.clamp(max=2.0)
        ).requires_grad_(True)
        opt = torch.optim.LBFGS(
            [x], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe"
        )

        def closure(opt: torch.optim.LBFGS = opt, x: torch.Tensor = x) -> torch.Tensor:
            opt.zero_grad()
            loss = -log_post(x.unsqueeze(0))[0]
            loss.backward()
            return loss

        opt.step(closure)
        x = x.detach()
        if torch.isfinite(log_post(x.unsqueeze(0))).all() and all(torch.norm(x - m) > 1e-3 for m in modes):
            modes.append(x)
    best = max(float(log_post(m.unsqueeze(0))) for m in modes)
    modes = [m for m in modes if float(log_post(m.unsqueeze(0))) > best - 20.0]  # negligible mass otherwise
    comps = []
    for m in modes:
        H = torch.autograd.functional.hessian(lambda t: log_post(t.unsqueeze(0))[0], m)
        cov = torch.linalg.inv(-0.5 * (H + H.T)) * 1.2**2
        comps.append((m, torch.linalg.cholesky(cov)))
    k = len(comps)
    which = torch.randint(0, k, (proposals,), generator=g)
    eps = _student_t(proposals, len(names), g)
    locs = torch.stack([m for m, _ in comps])[which]
    chols = torch.stack([L for _, L in comps])[which]
    theta = locs + (chols @ eps.unsqueeze(-1)).squeeze(-1)
    log_q = torch.logsumexp(torch.stack([_mvt_log_prob(theta, m, L) for m, L in comps]) - math.log(k), dim=0)
    with torch.no_grad():
        log_w = log_post(theta) - log_q
    w = torch.softmax(torch.nan_to_num(log_w, nan=-math.inf), 0)
    ate = MARGINAL_SEM[name][3]({k_: theta[:, i] for i, k_ in enumerate(names)})
    mean = float((w * ate).sum())
    sd = float(torch.sqrt((w * (ate - mean) ** 2).sum()))
    return mean, sd, float(1.0 / (w * w).sum())


def _student_t(num: int, dim: int, g: torch.Generator, df: int = 5) -> torch.Tensor:
    """Standard multivariate t draws (integer df) from ``g``: normal / sqrt(chi2 / df)."""
    z = torch.randn((num, dim), generator=g, dtype=torch.float64)
    chi2 = (torch.randn((num, df), generator=g, dtype=torch.float64) ** 2).sum(-1)
    return z / torch.sqrt(chi2 / df).unsqueeze(-1)


def _mvt_log_prob(x: torch.Tensor, loc: torch.Tensor, L: torch.Tensor, df: float = 5.0) -> torch.Tensor:
    d = x.shape[-1]
    sol = torch.linalg.solve_triangular(L, (x - loc).T, upper=False).T
    maha = (sol * sol).sum(-1)
    return (
        math.lgamma((df + d) / 2)
        - math.lgamma(df / 2)
        - 0.5 * d * math.log(df * math.pi)
        - torch.log(torch.diagonal(L)).sum()
        - 0.5 * (df + d) * torch.log1p(maha / df)
    )
