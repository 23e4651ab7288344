"""Calibration of the fast SVI path against NUTS references, beyond Gaussian models (issue #15).

Subcommands; each prints its table and writes CSV + JSON (machine, command, date, settings,
wall time, summary) under ``benchmarks/results/``, row by row as fits finish (an interrupted run
keeps its rows in ``*.csv.part``).

``compare``
    Per case, N and data seed: SVI against a NUTS reference on the same data. Reported per data
    set and method: posterior mean and SD of the ATE, its 94% interval and whether it covers the
    truth, the mean shift in reference posterior SDs and the SD ratio, the importance
    correction's ESS and Pareto k. Methods (:data:`METHODS`): ``library`` (what
    ``fit(method="svi")`` returns, defaults throughout: the vectorised path), ``guide``
    (``fit(..., importance=False)`` with the same seed: the same fitted guide's own draws,
    uncorrected), ``loop`` (``batched=False``: Pyro's own SVI loop), ``starts150``
    (``restart_steps=150``: the starts ranked after 150 steps, the default before 0.2.0), ``explore``
    (``restart_init="prior", restart_steps=1000``: starts from prior draws of the globals),
    ``r15`` (``restarts=15``: three times the default starts), ``structured`` and
    ``structured_guide`` (``guide="structured"``, with and without the correction).
``protocol``
    The calibration protocol of issue #15: many replicate data sets at one N (default: front-door
    and back-door at N = 200, 200 replicates), fitted with :func:`causal_pp.fit_many` (one batch
    per chunk of up to ``--chunk`` = 50 data sets; ``--one-by-one``: ``fit`` per replicate);
    coverage of the 94% interval against the binomial 99% band around 0.94, and a rank histogram
    of the truth among posterior draws (simulation-based-calibration style) with its chi-square
    p-value. ``--reference`` adds the NUTS reference per replicate (its coverage and ranks are the
    baseline: a posterior with a *fixed* truth is calibrated only approximately, by
    Bernstein-von Mises); ``--exact-reference`` adds the same exact posterior by importance
    sampling instead (``is_reference``: a Student-t proposal at the Laplace approximation, a few
    seconds per replicate, so all 200 replicates get one).
``crosscheck``
    Validates the NUTS reference (below) against the library's own NUTS on the full latent model
    (``method="nuts"``, 4 chains, U sampled) on small data sets.
``summarise``
    Pools CSV files of earlier runs (e.g. two halves of a protocol, or compare runs per case) and
    prints and writes their summary.

The ATE is computed *exactly* per posterior draw from the model's global parameters
(:data:`FUNCTIONALS`; the non-Gaussian cases' ``ate_functional``), not by simulating units: this
measures the fit, free of the Monte Carlo error of ``estimate`` (issue #13).

Only public APIs of causal_pp are used. An earlier version of this script (written against the
package layout before the inference package was split into modules) also evaluated research
prototypes of the importance correction (population Monte Carlo ``pmc``/``pmc_gh``, by wrapping
a private function of the library) and a fit variant (an ``AutoStructured`` guide in Pyro's
loop, superseded by the batched ``guide="structured"``); they are not kept here.

The NUTS reference
------------------
Every case here has one scalar latent per unit (U), so its marginal likelihood given the globals
is a product of one-dimensional integrals; :class:`MarginalModel` computes them by adaptive
Gauss-Hermite quadrature (20 nodes per unit, centred and scaled at the posterior mean and SD of
U_i; checked at 8 reference draws against a trapezoid rule on a fine grid, the error is recorded)
and NUTS samples the globals alone (dense mass matrix, float64). This is the model the library
fits, with U integrated out instead of sampled; it mixes far better than NUTS on thousands of
per-unit latents. Starts: the posterior mode is searched by L-BFGS from the SVI mean, the
simulation's true parameters and prior draws; the best optimum is kept, and the optimum reached
from the SVI mean is recorded as ``svi_mode_gap`` (how far, in log posterior density, SVI's basin
lies below the best one). A pilot chain from the mode recentres the quadrature; then
``--ref-chains`` chains start from dispersed pilot draws. A reference is *used* only if it mixed:
split R-hat of every global and the ATE <= :data:`REF_MAX_RHAT`, ESS of the ATE >=
:data:`REF_MIN_ESS`, no divergent transition, a quadrature error spread <= :data:`REF_MAX_QUAD_ERR`
nats, and no rival optimum with another ATE within :data:`REF_MIN_RIVAL_GAP` nats of the best one
(the chains explore one basin). Rows whose reference failed are kept in the CSV (``ref_ok``
False) and left out of the summaries.

Usage::

    python benchmarks/calibration.py protocol --cases frontdoor,backdoor --n 200 --replicates 200
    python benchmarks/calibration.py protocol --replicates 100 --first-seed 100   # a second half
    python benchmarks/calibration.py protocol --replicates 20 --one-by-one        # fit per replicate
    python benchmarks/calibration.py compare --cases frontdoor_logit,frontdoor_count,backdoor_count \\
        --sizes 1000,5000 --seeds 0,1,2
    python benchmarks/calibration.py compare --cases frontdoor_logit --sizes 5000 --seeds 0,1,2,3,4,5 \\
        --methods library,explore --no-reference      # how often the default misses the basin
    python benchmarks/calibration.py summarise benchmarks/results/calibration-protocol-*.csv
    python benchmarks/calibration.py crosscheck --cases frontdoor_logit --n 300 --seeds 0
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch.distributions import biject_to

from causal_pp import CausalPosterior, fit_many
from causal_pp.cases import Case, get_case
from causal_pp.cases.backdoor_count import ate_functional as backdoor_count_ate
from causal_pp.cases.frontdoor_count import ate_functional as frontdoor_count_ate
from causal_pp.cases.frontdoor_logit import ate_functional as frontdoor_logit_ate
from causal_pp.errors import InferenceError
from causal_pp.runtime import released_jit_traces

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fit_speed import machine_info  # noqa: E402

#: The ATE (X = 1 vs X = 0) of each case's model, exactly, per draw of its global parameters.
FUNCTIONALS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "frontdoor": lambda p: p["theta_XM"] * p["theta_MY"],
    "backdoor": lambda p: p["theta_XY"],
    "frontdoor_logit": frontdoor_logit_ate,
    "frontdoor_count": frontdoor_count_ate,
    "backdoor_count": backdoor_count_ate,
}
#: The SVI methods compared, ``name -> options of fit(method="svi")`` (defaults otherwise).
METHODS: dict[str, dict[str, Any]] = {
    "library": {},
    "guide": {"importance": False},
    # Pyro's own SVI loop (the same algorithm, other random streams)
    "loop": {"batched": False},
    # the starts ranked after 150 steps (the default before they became the run's first 500)
    "starts150": {"restart_steps": 150},
    # starts from prior draws of the globals, long enough to be ranked fairly against the median
    "explore": {"restart_init": "prior", "restart_steps": 1000},
    # more of the default (median) starts: three times the restarts, no longer
    "r15": {"restarts": 15},
    # the structured family (the globals jointly, each unit's latents given them), and its own draws
    "structured": {"guide": "structured"},
    "structured_guide": {"guide": "structured", "importance": False},
}
LEVEL = 0.94
REF_MAX_RHAT = 1.02
REF_MIN_ESS = 400.0
REF_MAX_QUAD_ERR = 0.01
REF_MIN_RIVAL_GAP = 10.0
RANK_DRAWS = 99  # the truth's rank among this many posterior draws: 0..99, 100 values
RANK_BINS = 10


# --- the exact marginal model and its NUTS reference -------------------------------------------


class MarginalModel:
    """A case's model with its one scalar per-unit latent integrated out by adaptive
    Gauss-Hermite quadrature; a function of the global parameters only.

    Examples
    --------
    >>> case = get_case("frontdoor")
    >>> df = case.simulate(50, seed=0)
    >>> m = MarginalModel(case, {c: df[c].to_numpy() for c in df.columns})
    >>> theta = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in case.model_truth.items()}
    >>> _ = m.centre(theta)
    >>> abs(float(m.log_density(theta)) - m.grid_log_density(theta)) < 1e-6
    True
    """

    def __init__(self, case: Case, data: Mapping[str, np.ndarray], nodes: int = 20) -> None:
        if len(case.graph.latent) != 1:
            raise ValueError(f"case {case.name!r}: the marginal reference needs exactly one latent node.")
        self.case, self.fn, self.latent = case, case.fn, case.graph.latent[0]
        self.data = {k: torch.tensor(np.array(v, dtype=float), dtype=torch.float64) for k, v in data.items()}
        self.n = len(next(iter(self.data.values())))
        with torch.no_grad(), pyro.validation_enabled(False):
            tr = poutine.trace(self.fn).get_trace(self.n)
        self.unit_sites = set(case.graph.nodes)
        self.globals = [
            k
            for k, s in tr.nodes.items()
            if s["type"] == "sample" and k not in self.unit_sites and k != "units"
        ]
        if any(tr.nodes[k]["value"].shape != () for k in self.globals):
            raise ValueError(f"case {case.name!r}: the marginal reference needs scalar global parameters.")
        self.transforms = {k: biject_to(tr.nodes[k]["fn"].support) for k in self.globals}
        x, w = np.polynomial.hermite.hermgauss(nodes)
        self.x = torch.tensor(x * math.sqrt(2.0), dtype=torch.float64)  # standard-normal nodes
        # log of (weight / standard-normal density) at each node
        self.log_w = torch.tensor(np.log(w / math.sqrt(math.pi)) + x**2 + 0.5 * math.log(2 * math.pi))
        self.mu = torch.zeros(self.n, dtype=torch.float64)
        self.sd = torch.ones(self.n, dtype=torch.float64)
        self.adaptive = False

    def constrain(self, z: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Constrained globals and the log-Jacobian of the map from unconstrained ``z``."""
        theta, log_jac = {}, torch.zeros((), dtype=torch.float64)
        for k in self.globals:
            theta[k] = self.transforms[k](z[k])
            log_jac = log_jac + self.transforms[k].log_abs_det_jacobian(z[k], theta[k])
        return theta, log_jac

    def unconstrain(self, theta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {
            k: self.transforms[k].inv(torch.as_tensor(float(theta[k]), dtype=torch.float64))
            for k in self.globals
        }

    def _log_joint(
        self, theta: Mapping[str, torch.Tensor], u: torch.Tensor, draws: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log prior of the globals and the per-unit log joint at latent values ``u`` (Q, N).

        ``draws``: ``theta``'s values hold that many draws ``(P,)`` (without gradients, the
        results then lead with a draws dimension: ``(P,)`` and ``(P, Q, N)``)."""
        q = u.shape[0]
        lead = () if draws is None else (draws,)
        with contextlib.ExitStack() as stack:
            if draws is not None:
                theta = {k: v.reshape(-1, 1, 1) for k, v in theta.items()}
                stack.enter_context(pyro.plate("_draws", draws, dim=-3))
            stack.enter_context(pyro.plate("_nodes", q, dim=-2))
            stack.enter_context(pyro.validation_enabled(False))
            tr = poutine.trace(
                poutine.condition(self.fn, data={**theta, **self.data, self.latent: u})
            ).get_trace(self.n)
        prior = torch.zeros(lead, dtype=torch.float64)
        unit = torch.zeros(*lead, q, self.n, dtype=torch.float64)
        for k, s in tr.nodes.items():
            if s["type"] != "sample" or k == "units":
                continue
            lp = s["fn"].log_prob(s["value"])
            if k in self.unit_sites:
                unit = unit + lp.expand(*lead, q, self.n)
            else:
                # a global site sits in the plates too: one value per draw, repeated over the nodes
                prior = prior + lp.expand(*lead, *lp.shape[len(lead) :]).reshape(*lead, -1)[..., 0]
        return prior, unit

    def log_density(self, theta: Mapping[str, torch.Tensor], adapt: bool | None = None) -> torch.Tensor:
        """log p(globals) + sum_i log p(data_i | globals), U integrated out by quadrature.

        With ``adapt`` (default: :attr:`adaptive`) each unit's nodes are first moved to the mode
        of its U given ``theta`` and scaled by the curvature there (Newton steps; the centring is
        not differentiated, it only places the nodes): accurate wherever ``theta`` is. Otherwise
        the nodes stay where :meth:`centre` put them (accurate near that ``theta`` only)."""
        mu, sd = self.mu, self.sd
        if self.adaptive if adapt is None else adapt:
            mu, sd = self._newton(theta)
        u = mu + sd * self.x.unsqueeze(1)
        prior, unit = self._log_joint(theta, u)
        return prior + torch.logsumexp(unit + self.log_w.unsqueeze(1), 0).sum() + sd.log().sum()

    def log_density_many(self, theta: Mapping[str, torch.Tensor], chunk: int = 500) -> torch.Tensor:
        """:meth:`log_density` of ``P`` draws at once (``theta[k]`` of shape ``(P,)``), with the
        nodes where :meth:`centre` put them (accurate near that ``theta``: check it)."""
        u = self.mu + self.sd * self.x.unsqueeze(1)  # (Q, N)
        P = next(iter(theta.values())).shape[0]
        out = []
        for a in range(0, P, chunk):
            b = min(P, a + chunk)
            with torch.no_grad():
                prior, unit = self._log_joint({k: v[a:b] for k, v in theta.items()}, u, draws=b - a)
            out.append(prior + torch.logsumexp(unit + self.log_w.view(1, -1, 1), 1).sum(-1))
        return torch.cat(out) + self.sd.log().sum()

    def _newton(self, theta: Mapping[str, torch.Tensor], steps: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-unit mode and Laplace SD of U given ``theta``, from the current centres (detached)."""
        th = {k: v.detach() for k, v in theta.items()}
        u, sd = self.mu.clone(), self.sd.clone()
        best = None
        with torch.enable_grad():
            for i in range(steps + 1):
                z = u.clone().requires_grad_(True)
                _, f = self._log_joint(th, z.unsqueeze(0))
                (g,) = torch.autograd.grad(f.sum(), z, create_graph=True)
                (h,) = torch.autograd.grad(g.sum(), z)
                f, g = f.detach()[0], g.detach()
                if best is not None:  # keep a step only where it raised the unit's log joint
                    worse = ~(f >= best[0])
                    u = torch.where(worse, best[1], u)
                    g, h, f = (
                        torch.where(worse, best[2], g),
                        torch.where(worse, best[3], h),
                        torch.where(worse, best[0], f),
                    )
                best = (f, u, g, h)
                if i == steps:
                    break
                step = torch.where(h < 0, -g / h, 0.0).clamp(-3.0, 3.0)
                u = u + torch.nan_to_num(step)
        sd = torch.where(h < 0, torch.rsqrt(-h), sd).clamp(1e-4, 10.0)
        return u.detach(), sd.detach()

    def centre(self, theta: Mapping[str, torch.Tensor], grid: int = 801, lim: float = 9.0) -> None:
        """Place each unit's nodes at the posterior mean and SD of its U at ``theta`` (fine grid)."""
        with torch.no_grad():
            g = torch.linspace(-lim, lim, grid, dtype=torch.float64).unsqueeze(1)
            _, unit = self._log_joint({k: v.detach() for k, v in theta.items()}, g.expand(grid, self.n))
            w = torch.softmax(unit, 0)
            self.mu = (w * g).sum(0)
            self.sd = (w * (g - self.mu) ** 2).sum(0).sqrt().clamp_min(1e-3)

    def grid_log_density(self, theta: Mapping[str, torch.Tensor], chunk: int = 500) -> float:
        """The same by a brute-force trapezoid rule (the quadrature's check), unit by unit on the
        union of a fixed grid (1601 points on [-8, 8]) and a fine one around the unit's mode
        (401 points within 10 Laplace SDs): a narrow or a second peak is not missed."""
        theta = {k: v.detach() for k, v in theta.items()}
        mu, sd = self._newton(theta)
        data, n = self.data, self.n
        fixed = torch.linspace(-8.0, 8.0, 1601, dtype=torch.float64)
        local = torch.linspace(-10.0, 10.0, 401, dtype=torch.float64)
        total, prior = 0.0, None
        try:
            with torch.no_grad():
                for a in range(0, n, chunk):
                    b = min(n, a + chunk)
                    self.data, self.n = {k: v[a:b] for k, v in data.items()}, b - a
                    g = torch.cat(
                        [fixed.unsqueeze(1).expand(-1, b - a), mu[a:b] + sd[a:b] * local.unsqueeze(1)]
                    )
                    g = g.sort(0).values
                    p, unit = self._log_joint(theta, g)
                    prior = p if prior is None else prior
                    # trapezoid on a non-uniform grid, in log space
                    lo = torch.logaddexp(unit[1:], unit[:-1]) + torch.log(
                        0.5 * (g[1:] - g[:-1]).clamp_min(1e-300)
                    )
                    total += float(torch.logsumexp(lo, 0).sum())
        finally:
            self.data, self.n = data, n
        return float(prior) + total

    def potential(self, z: Mapping[str, torch.Tensor]) -> torch.Tensor:
        theta, log_jac = self.constrain(z)
        return -(self.log_density(theta) + log_jac)

    def optimise(self, theta0: Mapping[str, Any], rounds: int = 4) -> tuple[dict[str, torch.Tensor], float]:
        """A posterior mode near ``theta0`` (L-BFGS in unconstrained space, nodes recentred
        between rounds) and its log density (unconstrained, i.e. with the Jacobian)."""
        z = {k: v.clone().requires_grad_(True) for k, v in self.unconstrain(theta0).items()}
        opt = torch.optim.LBFGS(list(z.values()), max_iter=60, line_search_fn="strong_wolfe")
        for _ in range(rounds):
            self.centre(self.constrain(z)[0])

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = self.potential(z)
                if torch.isfinite(loss):
                    loss.backward()
                return loss

            # a start far in the tails can make the line search fail (non-finite values):
            # keep the point reached so far
            with contextlib.suppress(RuntimeError, ValueError, IndexError):
                opt.step(closure)
        z = {k: v.detach() for k, v in z.items()}
        self.centre(self.constrain(z)[0])
        value = -float(self.potential(z))
        return self.constrain(z)[0], value if math.isfinite(value) else -math.inf


def prior_draws(case: Case, k: int, seed: int) -> list[dict[str, float]]:
    """``k`` draws of the case model's global parameters from their prior."""
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(k):
            tr = poutine.trace(case.fn).get_trace(1)
            out.append(
                {
                    n: float(s["value"])
                    for n, s in tr.nodes.items()
                    if s["type"] == "sample" and n not in case.graph.nodes and n != "units"
                }
            )
    return out


def nuts_reference(
    case: Case,
    data: Mapping[str, np.ndarray],
    *,
    svi_mean: Mapping[str, float],
    chains: int,
    warmup: int,
    samples: int,
    seed: int,
    starts: int = 6,
) -> dict[str, Any]:
    """NUTS on the exact marginal model; returns ATE draws, diagnostics and the mode search."""
    t0 = time.perf_counter()
    m = MarginalModel(case, data)
    fn = FUNCTIONALS[case.name]
    candidates = {"svi": dict(svi_mean), "truth": dict(case.model_truth)}
    candidates.update({f"prior{i}": p for i, p in enumerate(prior_draws(case, starts, seed))})
    modes = {}
    for label, theta0 in candidates.items():
        try:
            theta, value = m.optimise(theta0)
        except (RuntimeError, ValueError, IndexError):  # a hopeless start is skipped
            continue
        if not all(torch.isfinite(v) for v in theta.values()):
            continue
        modes[label] = (value, theta)
    best = max(modes, key=lambda k: modes[k][0])
    best_value, best_theta = modes[best]
    # pilot chain from the mode: recentres the quadrature at the posterior mean
    m.centre(best_theta)
    gen = torch.Generator().manual_seed(seed)
    pilot = _run_chain(m, m.unconstrain(best_theta), warmup=max(200, warmup // 2), samples=200, seed=seed)
    pilot.pop("_divergences")
    z_pilot = {k: m.transforms[k].inv(v) for k, v in pilot.items()}
    m.centre({k: v.mean() for k, v in pilot.items()})
    per_chain, divergences = [], 0
    for c in range(chains):
        i = int(torch.randint(0, 200, (), generator=gen))
        sd = {k: v.std() for k, v in z_pilot.items()}
        init = {
            k: z_pilot[k][i] + 2.0 * sd[k] * torch.randn((), generator=gen, dtype=torch.float64)
            for k in m.globals
        }
        draws = _run_chain(m, init, warmup=warmup, samples=samples, seed=seed * 1000 + c + 1)
        divergences += int(draws.pop("_divergences"))
        per_chain.append(draws)
    stacked = {k: torch.stack([d[k] for d in per_chain]) for k in m.globals}  # (chains, samples)
    ate = fn(stacked)
    rhat = {k: _rhat(v) for k, v in {**stacked, "ATE": ate}.items()}
    ess = _ess(ate)
    flat = {k: v.reshape(-1) for k, v in stacked.items()}
    picks = np.linspace(0, chains * samples - 1, 8).astype(int)
    errs = []
    for i in picks:
        th = {k: v[i] for k, v in flat.items()}
        errs.append(float(m.log_density(th)) - m.grid_log_density(th))
    quad_spread = max(errs) - min(errs)
    ok = max(rhat.values()) <= REF_MAX_RHAT and ess >= REF_MIN_ESS and divergences == 0
    ok = ok and quad_spread <= REF_MAX_QUAD_ERR
    svi_gap = modes["svi"][0] - best_value if "svi" in modes else float("nan")
    # the chains explore the best mode's basin only: a rival optimum with another ATE (more
    # than 2 posterior SDs away) within REF_MIN_RIVAL_GAP nats of the best would hold mass they miss
    sd_ate = float(ate.std())
    rivals = [v for v, th in modes.values() if abs(float(fn(th)) - float(fn(best_theta))) > 2 * sd_ate]
    rival_gap = best_value - max(rivals) if rivals else float("inf")
    ok = ok and rival_gap >= REF_MIN_RIVAL_GAP
    return {
        "ate": ate.reshape(-1),
        "rhat": max(rhat.values()),
        "ess": ess,
        "divergences": divergences,
        "quad_err_spread": quad_spread,
        "quad_err_max": max(abs(e) for e in errs),
        "ok": bool(ok),
        "mode_from": best,
        "svi_mode_gap": svi_gap,
        "rival_gap": rival_gap,
        "mode_ates": {k: float(fn(v[1])) for k, v in modes.items()},
        "mode_values": {k: v[0] for k, v in modes.items()},
        "time_s": time.perf_counter() - t0,
    }


def is_reference(
    case: Case,
    data: Mapping[str, np.ndarray],
    *,
    svi_mean: Mapping[str, float],
    seed: int,
    proposals: int = 4000,
) -> dict[str, Any]:
    """The exact marginal posterior by importance sampling (no chain to mix): a Student-t proposal
    (5 degrees of freedom, 1.2 x the Laplace covariance at the mode found from the SVI mean, or
    from the truth if that fails), the quadrature centred at that mode and checked at 4 draws
    against the trapezoid rule. Returns 4000 resampled ATE draws and the weights' ESS, as
    :func:`nuts_reference` returns its chains' (``ok``: ESS and quadrature within bounds)."""
    t0 = time.perf_counter()
    m = MarginalModel(case, data)
    fn = FUNCTIONALS[case.name]
    theta_hat = None
    for theta0 in (dict(svi_mean), dict(case.model_truth)):
        with contextlib.suppress(RuntimeError, ValueError, IndexError):
            theta, value = m.optimise(theta0)
            if all(torch.isfinite(v) for v in theta.values()) and math.isfinite(value):
                theta_hat = theta
                break
    if theta_hat is None:
        raise InferenceError(f"no posterior mode found from the SVI mean or the truth ({case.name})")
    m.centre(theta_hat)
    z_hat = torch.stack([m.unconstrain(theta_hat)[k] for k in m.globals])

    def potential(z: torch.Tensor) -> torch.Tensor:
        return m.potential({k: z[i] for i, k in enumerate(m.globals)})

    H = torch.autograd.functional.hessian(potential, z_hat)
    cov = torch.linalg.inv(0.5 * (H + H.T)) * 1.2**2
    q = torch.distributions.MultivariateNormal(z_hat, covariance_matrix=cov)
    gen = torch.Generator().manual_seed(seed)
    df = 5.0
    eps = torch.randn((proposals, len(z_hat)), generator=gen, dtype=torch.float64) @ q.scale_tril.T
    chi = torch.distributions.Chi2(torch.tensor(df, dtype=torch.float64)).sample((proposals,))
    z = z_hat + eps / torch.sqrt(chi / df).unsqueeze(1)
    # the multivariate t density, up to a constant
    maha = torch.linalg.solve_triangular(q.scale_tril, (z - z_hat).T, upper=False).pow(2).sum(0)
    log_q = -0.5 * (df + len(z_hat)) * torch.log1p(maha / df)
    zs = {k: z[:, i] for i, k in enumerate(m.globals)}
    theta = {k: m.transforms[k](v) for k, v in zs.items()}
    log_jac = sum(m.transforms[k].log_abs_det_jacobian(zs[k], theta[k]) for k in m.globals)
    log_w = torch.nan_to_num(m.log_density_many(theta) + log_jac - log_q, nan=-math.inf)
    w = torch.exp(log_w - log_w.max())
    ess = float(w.sum() ** 2 / (w * w).sum())
    picks = torch.multinomial(w, 4, replacement=True, generator=gen)
    at = [{k: v[i] for k, v in theta.items()} for i in picks]
    errs = [float(m.log_density(th)) - m.grid_log_density(th) for th in at]
    idx = torch.multinomial(w, 4000, replacement=True, generator=gen)
    ate = fn({k: v[idx] for k, v in theta.items()})
    spread = max(errs) - min(errs)
    return {
        "ate": ate.reshape(-1),
        "rhat": float("nan"),
        "ess": ess,
        "quad_err_spread": spread,
        "ok": bool(ess >= REF_MIN_ESS and spread <= REF_MAX_QUAD_ERR),
        "time_s": time.perf_counter() - t0,
    }


def _run_chain(
    m: MarginalModel, init: Mapping[str, torch.Tensor], *, warmup: int, samples: int, seed: int
) -> dict[str, torch.Tensor]:
    kernel = NUTS(
        potential_fn=m.potential,
        full_mass=True,
        target_accept_prob=0.9,
        jit_compile=True,
        ignore_jit_warnings=True,
    )
    mcmc = MCMC(
        kernel, num_samples=samples, warmup_steps=warmup, initial_params=dict(init), disable_progbar=True
    )
    # released_jit_traces: each jitted kernel would otherwise leak its TorchScript function
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings(), released_jit_traces():
        warnings.simplefilter("ignore")
        pyro.set_rng_seed(seed)
        mcmc.run()
    z = mcmc.get_samples()
    theta, _ = m.constrain(z)
    out = {k: v.detach() for k, v in theta.items()}
    out["_divergences"] = torch.tensor(
        sum(len(v) for v in mcmc.diagnostics().get("divergences", {}).values())
    )
    return out


def _rhat(x: torch.Tensor) -> float:
    return float(split_gelman_rubin(x.double().unsqueeze(-1), chain_dim=0, sample_dim=1))


def _ess(x: torch.Tensor) -> float:
    return float(effective_sample_size(x.double().unsqueeze(-1), chain_dim=0, sample_dim=1))


# --- SVI: the library's fit and the guide's own draws -----------------------------------------


def fit_record(case: Case, post: CausalPosterior | Exception, time_s: float | None = None) -> dict[str, Any]:
    """ATE draws and diagnostics of one SVI posterior (or the error of a failed fit); ``time_s``
    defaults to the fit's own (for :func:`causal_pp.fit_many`: its share of the batch, plus its
    importance correction)."""
    if isinstance(post, Exception):
        return {"ate": None, "note": f"fit failed: {post}"[:300], "time_s": "" if time_s is None else time_s}
    d = post.diagnostics
    mean = {k: float(v.double().mean()) for k, v in post.samples.items()}
    return {
        "ate": torch.as_tensor(FUNCTIONALS[case.name](post.samples)).double().reshape(-1),
        "corrected": bool(d.get("is_corrected", False)),
        "is_ess": float(d.get("is_ess", float("nan"))),
        "pareto_k": float(d.get("is_pareto_k", float("nan"))),
        "converged": bool(d.get("converged", False)),
        "loss_trend": str(d.get("loss_trend", "")),
        "num_steps": int(d.get("num_steps", 0)),
        "time_s": float(d["time_s"]) if time_s is None else time_s,
        "final_loss": float(d["final_loss"]),
        "svi_mean": mean,
        "svi_globals": json.dumps({k: round(v, 4) for k, v in mean.items()}),
        # the short restarts' final losses: a spread of many nats means several basins
        "restart_losses": json.dumps([round(float(x), 1) for x in d.get("restart_losses", [])]),
        "note": str(d.get("is_skipped", "")),
    }


def svi_fits(case: Case, data: Any, seed: int, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One ``fit(method="svi")`` per method in ``methods`` (:data:`METHODS`) on one data set, all
    with the same seed: ``guide`` is the same fitted guide as ``library``, without the correction."""
    out = {}
    for method in methods:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                post = case.model.fit(data, method="svi", seed=seed, progress_bar=False, **METHODS[method])
        except InferenceError as err:
            out[method] = fit_record(case, err, time.perf_counter() - t0)
            continue
        out[method] = fit_record(case, post, time.perf_counter() - t0)
    return out


def protocol_fits(
    case: Case, datasets: Sequence[Any], seeds: Sequence[int], method: str, one_by_one: bool
) -> list[dict[str, Any]]:
    """One SVI fit per data set (data set ``i`` with seed ``seeds[i]``): by :func:`causal_pp.fit_many`
    in one batch, or (``one_by_one``) by ``fit`` per data set."""
    opts = METHODS[method]
    posts: list[CausalPosterior | Exception] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not one_by_one:
            posts = list(
                fit_many(case.model, datasets, seeds=list(seeds), progress_bar=False, errors="return", **opts)
            )
        else:
            for df, seed in zip(datasets, seeds, strict=True):
                try:
                    posts.append(case.model.fit(df, method="svi", seed=seed, progress_bar=False, **opts))
                except InferenceError as err:
                    posts.append(err)
    return [fit_record(case, p) for p in posts]


def reference_record(
    case: Case, df: Any, seed: int, svi_mean: Mapping[str, float], args: Any
) -> dict[str, Any]:
    """The NUTS reference of one data set, as a method's record."""
    ref = nuts_reference(
        case,
        {c: df[c].to_numpy() for c in df.columns},
        svi_mean=svi_mean,
        chains=args.ref_chains,
        warmup=args.ref_warmup,
        samples=args.ref_samples,
        seed=seed,
    )
    return {**ref, "corrected": False, "note": f"rhat {ref['rhat']:.3f} ess {ref['ess']:.0f}"}


# --- posterior summaries ----------------------------------------------------------------------


def summarise_draws(draws: torch.Tensor, truth: float, seed: int) -> dict[str, float]:
    """Mean, SD, central 94% interval, coverage and the truth's rank among RANK_DRAWS draws."""
    x = draws.double().reshape(-1)
    lo, hi = (
        float(v) for v in torch.quantile(x, torch.tensor([(1 - LEVEL) / 2, (1 + LEVEL) / 2], dtype=x.dtype))
    )
    rng = np.random.default_rng(seed)
    sub = rng.choice(x.numpy(), RANK_DRAWS, replace=False)
    # ties (resampled importance draws repeat) are broken at random
    rank = int((sub < truth).sum() + rng.integers(0, (sub == truth).sum() + 1))
    return {
        "mean": float(x.mean()),
        "sd": float(x.std()),
        "lo": lo,
        "hi": hi,
        "covers": bool(lo <= truth <= hi),
        "rank": rank,
    }


def binomial_band(r: int, p: float = LEVEL, level: float = 0.99) -> tuple[float, float]:
    """The central ``level`` band of a Binomial(r, p) proportion."""
    from scipy import stats

    a = (1 - level) / 2
    return float(stats.binom.ppf(a, r, p) / r), float(stats.binom.ppf(1 - a, r, p) / r)


def rank_test(ranks: Sequence[int]) -> tuple[list[int], float]:
    """Histogram of ranks (0..RANK_DRAWS) in RANK_BINS equal bins, and the chi-square p-value
    of uniformity."""
    from scipy import stats

    counts = np.bincount(np.asarray(ranks, dtype=int) * RANK_BINS // (RANK_DRAWS + 1), minlength=RANK_BINS)
    if len(ranks) == 0:
        return counts.tolist(), float("nan")
    return counts.tolist(), float(stats.chisquare(counts).pvalue)


# --- output -----------------------------------------------------------------------------------

DIAGNOSTIC_COLS = ["corrected", "is_ess", "pareto_k", "converged", "loss_trend", "num_steps", "time_s"]
COMPARE_COLS = [
    "case", "n", "seed", "method", "truth", "mean", "sd", "lo", "hi", "covers", "shift_sd", "sd_ratio",
    *DIAGNOSTIC_COLS, "ref_mean", "ref_sd", "ref_lo", "ref_hi", "ref_covers", "ref_rhat", "ref_ess",
    "ref_divergences", "ref_quad_err_spread", "ref_ok", "ref_mode_from", "svi_mode_gap", "ref_rival_gap",
    "ref_time_s", "rank", "ref_rank", "final_loss", "restart_losses", "svi_globals", "note",
]  # fmt: skip
PROTOCOL_COLS = [
    "case", "n", "seed", "method", "batched", "truth", "mean", "sd", "lo", "hi", "covers", "rank",
    *DIAGNOSTIC_COLS, "ref_ok", "ref_rhat", "ref_ess", "final_loss", "restart_losses", "svi_globals", "note",
]  # fmt: skip


class RowWriter:
    """CSV rows written and flushed one by one (``.csv.part`` until :meth:`close`)."""

    def __init__(self, path: Path, cols: Sequence[str]) -> None:
        self.path, self.cols = path, list(cols)
        self.tmp = path.with_suffix(".csv.part")
        self.f = self.tmp.open("w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=self.cols)
        self.w.writeheader()
        self.rows: list[dict[str, Any]] = []

    def add(self, row: Mapping[str, Any]) -> None:
        row = {c: row.get(c, "") for c in self.cols}
        self.rows.append(row)
        self.w.writerow(row)
        self.f.flush()

    def close(self) -> None:
        self.f.close()
        self.tmp.replace(self.path)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _show(row: Mapping[str, Any], cols: Sequence[str]) -> str:
    return " ".join(f"{_fmt(row.get(c, '')):>10.10s}" for c in cols)


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _meta(argv: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *argv]),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("func", "out")},
    }


def _jsonable(v: Any) -> Any:
    """``v`` with non-finite floats as None (strict JSON has no NaN)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _write_json(path: Path, meta: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(_jsonable(meta), indent=2, default=str, allow_nan=False))


def _finish(writer: RowWriter, meta: dict[str, Any], summary: Any, t0: float) -> None:
    writer.close()
    meta.update(wall_s=time.perf_counter() - t0, csv=writer.path.name, summary=summary)
    _write_json(writer.path.with_suffix(".json"), meta)
    print(f"\nwrote {writer.path} and {writer.path.with_suffix('.json').name}")


def _bool(v: Any) -> bool:
    return v is True or str(v) in ("True", "true", "1", "yes")


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _method_row(res: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: res.get(k, "") for k in (*DIAGNOSTIC_COLS, "final_loss", "restart_losses", "svi_globals", "note")
    }


# --- compare ----------------------------------------------------------------------------------


def compare_one(case_name: str, n: int, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    case = get_case(case_name)
    truth = case.queries["ate"].truth
    df = case.simulate(n, seed=seed)
    svi = svi_fits(case, df, seed, args.methods)
    svi_mean = next((r["svi_mean"] for r in svi.values() if "svi_mean" in r), dict(case.model_truth))
    if args.no_reference:  # the fits against the truth alone (e.g. how often a basin is missed)
        rows = []
        for method, res in svi.items():
            row = {"case": case_name, "n": n, "seed": seed, "method": method, "truth": truth, "ref_ok": False}
            if res["ate"] is not None:
                row.update(summarise_draws(res["ate"], truth, seed))
            row.update(_method_row(res))
            rows.append(row)
        return rows
    ref = nuts_reference(
        case,
        {c: df[c].to_numpy() for c in df.columns},
        svi_mean=svi_mean,
        chains=args.ref_chains,
        warmup=args.ref_warmup,
        samples=args.ref_samples,
        seed=seed,
    )
    r = summarise_draws(ref["ate"], truth, seed)
    rows = []
    for method, res in svi.items():
        row: dict[str, Any] = {"case": case_name, "n": n, "seed": seed, "method": method, "truth": truth}
        if res["ate"] is not None:
            s = summarise_draws(res["ate"], truth, seed)
            row.update(s)
            row["shift_sd"] = (s["mean"] - r["mean"]) / r["sd"]
            row["sd_ratio"] = s["sd"] / r["sd"]
        row.update(_method_row(res))
        row.update({f"ref_{k}": r[k] for k in ("mean", "sd", "lo", "hi", "covers", "rank")})
        row.update(
            ref_rhat=ref["rhat"],
            ref_ess=ref["ess"],
            ref_divergences=ref["divergences"],
            ref_quad_err_spread=ref["quad_err_spread"],
            ref_ok=ref["ok"],
            ref_mode_from=ref["mode_from"],
            svi_mode_gap=ref["svi_mode_gap"],
            ref_rival_gap=ref["rival_gap"],
            ref_time_s=ref["time_s"],
        )
        rows.append(row)
    return rows


def summarise_compare(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for case, n, method in sorted({(r["case"], int(r["n"]), r["method"]) for r in rows}):
        sel = [r for r in rows if r["case"] == case and int(r["n"]) == n and r["method"] == method]
        ok = [r for r in sel if _bool(r["ref_ok"]) and r["mean"] not in ("", None)]
        fitted = [r for r in sel if r["covers"] != ""]
        entry: dict[str, Any] = {
            "case": case,
            "n": n,
            "method": method,
            "data_sets": len(sel),
            "with_mixed_reference": len(ok),
            # a reference that was run and refused (not one skipped by --no-reference)
            "seeds_reference_refused": [
                int(r["seed"]) for r in sel if not _bool(r["ref_ok"]) and r["ref_mean"] not in ("", None)
            ],
            "seeds_fit_failed": [int(r["seed"]) for r in sel if r["covers"] == ""],
            "coverage_all": float(np.mean([_bool(r["covers"]) for r in fitted])) if fitted else float("nan"),
            "reference_coverage_all": float(np.mean([_bool(r["ref_covers"]) for r in sel]))
            if sel
            else float("nan"),
            "is_ess": [round(_float(r["is_ess"]), 1) for r in sel],
            "pareto_k": [round(_float(r["pareto_k"]), 2) for r in sel],
            "mean_fit_s": float(np.nanmean([_float(r["time_s"]) for r in sel])) if sel else float("nan"),
            "mean_abs_error_all": float(np.mean([abs(float(r["mean"]) - float(r["truth"])) for r in fitted]))
            if fitted
            else float("nan"),
        }
        if ok:
            shifts = np.array([float(r["shift_sd"]) for r in ok])
            ratios = np.array([float(r["sd_ratio"]) for r in ok])
            entry.update(
                shift_sd=[round(float(v), 3) for v in shifts],
                mean_abs_shift_sd=float(np.abs(shifts).mean()),
                max_abs_shift_sd=float(np.abs(shifts).max()),
                sd_ratio_mean=float(ratios.mean()),
                sd_ratio_range=[float(ratios.min()), float(ratios.max())],
                coverage=float(np.mean([_bool(r["covers"]) for r in ok])),
                reference_coverage=float(np.mean([_bool(r["ref_covers"]) for r in ok])),
                mean_abs_error=float(np.mean([abs(float(r["mean"]) - float(r["truth"])) for r in ok])),
                holds=bool(np.abs(shifts).max() < 0.5),
            )
        out.append(entry)
    return out


def cmd_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    meta = _meta(argv, args)
    writer = RowWriter(args.out / f"calibration-compare-{_stamp()}.csv", COMPARE_COLS)
    shown = ["case", "n", "seed", "method", "mean", "sd", "covers", "shift_sd", "sd_ratio", "is_ess"]
    shown += ["pareto_k", "time_s", "ref_mean", "ref_sd", "ref_rhat", "ref_ok", "svi_mode_gap"]
    print(" ".join(f"{c:>10.10s}" for c in shown), flush=True)
    t0 = time.perf_counter()
    for case_name in args.cases:
        for n in args.sizes:
            for seed in args.seeds:
                for row in compare_one(case_name, n, seed, args):
                    writer.add(row)
                    print(_show(row, shown), flush=True)
    summary = summarise_compare(writer.rows)
    _print_compare_summary(summary)
    _finish(writer, meta, summary, t0)
    return 0


def _print_compare_summary(summary: Sequence[Mapping[str, Any]]) -> None:
    print(
        "\nsummary over data sets whose reference mixed: |mean shift| in reference SDs (mean, max), "
        "SD ratio (mean), 94% coverage of the truth (method | reference), IS ESS per data set"
    )
    for s in summary:
        line = f"  {s['case']:>16s} N={s['n']:<5d} {s['method']:>8s} ({s['with_mixed_reference']}/{s['data_sets']})"
        if "max_abs_shift_sd" in s:
            line += (
                f" shift {s['mean_abs_shift_sd']:.2f}/{s['max_abs_shift_sd']:.2f}  ratio {s['sd_ratio_mean']:.2f}"
                f"  coverage {s['coverage']:.2f} | {s['reference_coverage']:.2f}"
                f"  {'holds' if s['holds'] else 'FAILS'} (< 0.5 SD)"
            )
        else:  # no reference (--no-reference, or none mixed): against the truth alone
            line += f" coverage {s['coverage_all']:.2f}  mean |error| {s['mean_abs_error_all']:.3f}"
        if s["method"] == "library":
            line += f"  ESS {s['is_ess']}"
        line += f"  fit {s['mean_fit_s']:.1f} s"
        if s["seeds_reference_refused"]:
            line += f"  reference refused: seeds {s['seeds_reference_refused']}"
        if s["seeds_fit_failed"]:
            line += f"  fit failed: seeds {s['seeds_fit_failed']}"
        print(line)


# --- protocol ---------------------------------------------------------------------------------


def cmd_protocol(args: argparse.Namespace, argv: Sequence[str]) -> int:
    meta = _meta(argv, args)
    writer = RowWriter(args.out / f"calibration-protocol-{_stamp()}.csv", PROTOCOL_COLS)
    shown = ["case", "seed", "method", "mean", "sd", "covers", "rank", "is_ess", "converged", "time_s"]
    print(" ".join(f"{c:>10.10s}" for c in shown), flush=True)
    t0 = time.perf_counter()
    walls: dict[str, dict[str, float]] = {}
    for case_name in args.cases:
        case = get_case(case_name)
        truth = case.queries["ate"].truth
        walls[case_name] = wall = dict.fromkeys([*args.methods, "total"], 0.0)
        t_case = time.perf_counter()
        seeds = list(range(args.first_seed, args.first_seed + args.replicates))
        for a in range(0, len(seeds), args.chunk):
            chunk = seeds[a : a + args.chunk]
            dfs = [case.simulate(args.n, seed=seed) for seed in chunk]
            results: dict[str, list[dict[str, Any]]] = {}
            for method in args.methods:
                t_fit = time.perf_counter()
                results[method] = protocol_fits(case, dfs, chunk, method, args.one_by_one)
                wall[method] += time.perf_counter() - t_fit
            if args.reference:
                first = results[args.methods[0]]
                results["nuts_reference"] = [
                    reference_record(case, df, seed, first[i].get("svi_mean", case.model_truth), args)
                    for i, (df, seed) in enumerate(zip(dfs, chunk, strict=True))
                ]
            if args.exact_reference:
                first = results[args.methods[0]]
                results["is_reference"] = []
                for i, (df, seed) in enumerate(zip(dfs, chunk, strict=True)):
                    ref = is_reference(
                        case,
                        {c: df[c].to_numpy() for c in df.columns},
                        svi_mean=first[i].get("svi_mean", case.model_truth),
                        seed=seed,
                    )
                    note = f"ess {ref['ess']:.0f} quad spread {ref['quad_err_spread']:.1e}"
                    results["is_reference"].append({**ref, "corrected": False, "note": note})
            for i, seed in enumerate(chunk):
                for method, recs in results.items():
                    res = recs[i]
                    row: dict[str, Any] = {"case": case_name, "n": args.n, "seed": seed, "method": method}
                    row.update(truth=truth, batched=method in METHODS and not args.one_by_one)
                    if res["ate"] is not None:
                        row.update(summarise_draws(res["ate"], truth, seed))
                    row.update(_method_row(res))
                    row.update({f"ref_{k}": res[k] for k in ("ok", "rhat", "ess") if k in res})
                    writer.add(row)
                    print(_show(row, shown), flush=True)
        wall["total"] = time.perf_counter() - t_case
    summary = summarise_protocol(writer.rows)
    _print_protocol_summary(summary, walls)
    meta["wall_s_per_case"] = walls
    _finish(writer, meta, summary, t0)
    return 0


def summarise_protocol(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for case, n, method in sorted({(r["case"], int(r["n"]), r["method"]) for r in rows}):
        sel = [r for r in rows if r["case"] == case and int(r["n"]) == n and r["method"] == method]
        failed = [int(r["seed"]) for r in sel if r["covers"] == ""]
        sel = [r for r in sel if r["covers"] != ""]
        if method in ("nuts_reference", "is_reference"):
            sel = [r for r in sel if _bool(r["ref_ok"])]
        if not sel:
            continue
        covers = [_bool(r["covers"]) for r in sel]
        counts, p = rank_test([int(r["rank"]) for r in sel])
        lo, hi = binomial_band(len(sel))
        cov = float(np.mean(covers))
        ess = [_float(r["is_ess"]) for r in sel]
        out.append(
            {
                "case": case,
                "n": n,
                "method": method,
                "replicates": len(sel),
                "seeds_fit_failed": failed,
                "coverage": cov,
                "band_99": [lo, hi],
                "coverage_in_band": bool(lo <= cov <= hi),
                "rank_histogram": counts,
                "rank_chi2_p": p,
                "mean_sd": float(np.mean([float(r["sd"]) for r in sel])),
                "rmse": float(np.sqrt(np.mean([(float(r["mean"]) - float(r["truth"])) ** 2 for r in sel]))),
                "mean_fit_s": float(np.nanmean([_float(r["time_s"]) for r in sel])),
                "corrected_fraction": float(np.mean([_bool(r["corrected"]) for r in sel])),
                "converged_fraction": float(np.mean([_bool(r["converged"]) for r in sel])),
                "median_is_ess": float(np.nanmedian(ess)) if np.isfinite(ess).any() else float("nan"),
                **_against_reference(rows, sel),
            }
        )
    return out


def _against_reference(rows: Sequence[Mapping[str, Any]], sel: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per data set, a method's posterior against the reference's on the same data (the exact
    one if run, else NUTS; only where it is ok): the mean's shift in reference SDs and the SD
    ratio, summarised over the data sets."""
    if not sel or sel[0]["method"] in ("nuts_reference", "is_reference"):
        return {}
    for ref_name in ("is_reference", "nuts_reference"):
        refs = {
            (r["case"], int(r["n"]), r["seed"]): r
            for r in rows
            if r["method"] == ref_name and _bool(r["ref_ok"]) and r["covers"] != ""
        }
        pairs = [(r, refs.get((r["case"], int(r["n"]), r["seed"]))) for r in sel]
        pairs = [(r, ref) for r, ref in pairs if ref is not None]
        if pairs:
            shift = [(float(r["mean"]) - float(ref["mean"])) / float(ref["sd"]) for r, ref in pairs]
            ratio = [float(r["sd"]) / float(ref["sd"]) for r, ref in pairs]
            return {
                "reference": ref_name,
                "shift_sd_mean": float(np.mean(shift)),
                "shift_sd_abs_max": float(np.max(np.abs(shift))),
                "sd_ratio_mean": float(np.mean(ratio)),
                "sd_ratio_range": [float(np.min(ratio)), float(np.max(ratio))],
            }
    return {}


def _print_protocol_summary(
    summary: Sequence[Mapping[str, Any]], walls: Mapping[str, Mapping[str, float]] | None = None
) -> None:
    print(
        f"\ncoverage of the {LEVEL:.0%} interval (binomial 99% band around {LEVEL}); rank of the truth among "
        f"{RANK_DRAWS} posterior draws in {RANK_BINS} bins, chi-square p-value of uniformity"
    )
    for s in summary:
        print(
            f"  {s['case']:>16s} N={s['n']:<5d} {s['method']:>14s} R={s['replicates']:<4d} coverage {s['coverage']:.3f} "
            f"band [{s['band_99'][0]:.3f}, {s['band_99'][1]:.3f}] {'in' if s['coverage_in_band'] else 'OUT'}  "
            f"ranks {s['rank_histogram']} p={s['rank_chi2_p']:.3g}  mean SD {s['mean_sd']:.3g} RMSE {s['rmse']:.3g}"
            f"  corrected {s['corrected_fraction']:.2f} converged {s['converged_fraction']:.2f}"
            f" median ESS {s['median_is_ess']:.0f}"
            + (f"  FAILED fits: seeds {s['seeds_fit_failed']}" if s["seeds_fit_failed"] else "")
        )
        if "reference" in s:
            print(
                f"  {'':>16s} vs {s['reference']} on the same data: mean shift {s['shift_sd_mean']:+.3f} "
                f"reference SDs (max |{s['shift_sd_abs_max']:.2f}|), SD ratio {s['sd_ratio_mean']:.3f} "
                f"(range {s['sd_ratio_range'][0]:.2f}-{s['sd_ratio_range'][1]:.2f})"
            )
    for case, wall in (walls or {}).items():
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in wall.items())
        print(f"  wall time {case}: {parts}")


def cmd_summarise(args: argparse.Namespace, argv: Sequence[str]) -> int:
    unique: dict[tuple[str, ...], dict[str, Any]] = {}
    for p in args.files:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):  # a data set and method measured twice counts once
                unique[(r["case"], r["n"], r["seed"], r["method"])] = r
    rows = list(unique.values())
    meta = _meta(argv, args)
    meta["inputs"] = [Path(p).name for p in args.files]
    if rows and "ref_mode_from" in rows[0]:
        summary = summarise_compare(rows)
        _print_compare_summary(summary)
        kind = "compare"
    else:
        summary = summarise_protocol(rows)
        _print_protocol_summary(summary)
        kind = "protocol"
    meta["summary"] = summary
    path = args.out / f"calibration-{kind}-summary-{_stamp()}.json"
    _write_json(path, meta)
    print(f"\nwrote {path}")
    return 0


# --- crosscheck -------------------------------------------------------------------------------

CROSSCHECK_COLS = [
    "case", "n", "seed", "full_mean", "full_sd", "full_max_rhat", "full_min_ess", "full_divergences",
    "full_time_s", "ref_mean", "ref_sd", "ref_rhat", "ref_ess", "ref_ok", "ref_time_s", "diff_in_se",
]  # fmt: skip


def cmd_crosscheck(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """The reference against the library's own NUTS on the full latent model (U sampled, not
    integrated out) on the same data: both target the same posterior, so their ATE means must
    agree within their Monte Carlo error (``diff_in_se``, from the ESS of both)."""
    meta = _meta(argv, args)
    writer = RowWriter(args.out / f"calibration-crosscheck-{_stamp()}.csv", CROSSCHECK_COLS)
    t_all = time.perf_counter()
    for case_name in args.cases:
        for seed in args.seeds:
            case = get_case(case_name)
            df = case.simulate(args.n, seed=seed)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                post = case.model.fit(
                    df,
                    method="nuts",
                    num_chains=4,
                    warmup_steps=1000,
                    num_samples=1000,
                    seed=seed,
                    progress_bar=False,
                )
            full_s = time.perf_counter() - t0
            a = torch.as_tensor(FUNCTIONALS[case_name](post.samples)).double()
            d = post.diagnostics
            ref = nuts_reference(
                case,
                {c: df[c].to_numpy() for c in df.columns},
                svi_mean={k: float(v.double().mean()) for k, v in post.samples.items()},
                chains=args.ref_chains,
                warmup=args.ref_warmup,
                samples=args.ref_samples,
                seed=seed,
            )
            r = ref["ate"]
            # the full model's ESS of its globals (its ATE's ESS is not recorded by fit)
            se = float(r.std()) * math.sqrt(1.0 / max(d["min_ess"], 1.0) + 1.0 / ref["ess"])
            row = {
                "case": case_name,
                "n": args.n,
                "seed": seed,
                "full_mean": float(a.mean()),
                "full_sd": float(a.std()),
                "full_max_rhat": d["max_r_hat"],
                "full_min_ess": d["min_ess"],
                "full_divergences": d["divergences"],
                "full_time_s": full_s,
                "ref_mean": float(r.mean()),
                "ref_sd": float(r.std()),
                "ref_rhat": ref["rhat"],
                "ref_ess": ref["ess"],
                "ref_ok": ref["ok"],
                "ref_time_s": ref["time_s"],
                "diff_in_se": (float(a.mean()) - float(r.mean())) / se,
            }
            writer.add(row)
            print(" ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    _finish(writer, meta, None, t_all)
    return 0


# --- main -------------------------------------------------------------------------------------


def _csv_list(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda s: [kind(v) for v in s.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser, cases: str) -> None:
        p.add_argument("--cases", type=_csv_list(str), default=_csv_list(str)(cases))
        p.add_argument("--methods", type=_csv_list(str), default=list(METHODS), help=f"of {sorted(METHODS)}")
        p.add_argument("--ref-chains", type=int, default=4)
        p.add_argument("--ref-warmup", type=int, default=400)
        p.add_argument("--ref-samples", type=int, default=400)

    p = sub.add_parser("compare", help="SVI vs NUTS reference per case, N and data seed")
    common(p, "frontdoor_logit,frontdoor_count,backdoor_count,frontdoor,backdoor")
    p.add_argument("--sizes", type=_csv_list(int), default=[1000, 5000])
    p.add_argument("--seeds", type=_csv_list(int), default=[0, 1, 2])
    p.add_argument("--no-reference", action="store_true", help="skip the NUTS references (truth only)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("protocol", help="coverage and rank histogram over many replicates at one N")
    common(p, "frontdoor,backdoor")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=50, help="data sets per fit_many batch")
    p.add_argument("--one-by-one", action="store_true", help="fit per replicate instead of fit_many")
    p.add_argument("--reference", action="store_true", help="also run the NUTS reference per replicate")
    p.add_argument(
        "--exact-reference",
        action="store_true",
        help="also the exact posterior by importance sampling per replicate (is_reference; fast)",
    )
    p.set_defaults(func=cmd_protocol)
    p = sub.add_parser("crosscheck", help="the reference vs the library's NUTS on the full latent model")
    common(p, "frontdoor_logit,frontdoor_count,backdoor_count")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seeds", type=_csv_list(int), default=[0])
    p.set_defaults(func=cmd_crosscheck)
    p = sub.add_parser("summarise", help="pool the CSV files of earlier runs")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=cmd_summarise)
    args = parser.parse_args(argv)
    for name in getattr(args, "cases", []):
        if name not in FUNCTIONALS:
            parser.error(f"no exact ATE functional for case {name!r}; known: {sorted(FUNCTIONALS)}")
    for name in getattr(args, "methods", []):
        if name not in METHODS:
            parser.error(f"unknown method {name!r}; known: {sorted(METHODS)}")
    if getattr(args, "methods", None) == []:
        parser.error("--methods needs at least one method")
    if getattr(args, "chunk", 1) < 1:
        parser.error("--chunk must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    return int(args.func(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
