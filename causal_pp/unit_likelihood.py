"""Each unit's marginal log-likelihood, its latents integrated out by adaptive importance sampling.

For unit ``i`` and a draw of the global parameters theta, :func:`pointwise_log_likelihood`
estimates ``log p(v_i | v_{<i}, theta)`` for every observed site ``v`` (the DAG's topological
order), the unit's latents integrated over; the sites of a unit sum to ``log p(unit | theta)``
(why ArviZ's ``log_likelihood`` group holds this: :mod:`causal_pp.inference_data`).

The integral is an importance-sampling average over ``particles`` draws of the unit's latents.
A first round draws them from their prior given the unit's observed values. That proposal is
poor for a unit whose observations sit in the tail: the few prior draws near its latents'
posterior carry all the weight, and the estimate is biased low, by nats, and noisy
(``benchmarks/log_likelihood.py`` measures it on the built-in cases). So :data:`ADAPT_ROUNDS`
further rounds each draw from a Gaussian per unit and draw, fitted to the previous round's
weighted particles in the latents' unconstrained space (widened by :data:`WIDEN`), mixed with
the prior (a share :data:`DEFENSIVE` of the particles). The last round gives the estimate.
Every round's average is unbiased for ``p(v_{<=k,i} | theta)`` at every prefix ``k`` (a
deterministic mixture of the two proposals, each particle weighed by the mixture's density),
and the prior's share bounds each weight by ``p(v_{<=k,i} | latents, theta) / DEFENSIVE``, so a
poor fit of the Gaussian costs efficiency, never correctness. The log of an average is biased
low by half its relative variance, ``(1 / ESS - 1 / particles) / 2`` to first order (the delta
method, ESS the particles' effective number), which is added back.

Discrete per-unit latents have no Gaussian form. Where every per-unit latent is discrete with
one finite support, at most ``particles`` joint values in all (a Bernoulli, a few categories),
the particles are those values, each weighed by its prior probability: the sum over them,
exact. Otherwise a model with discrete latents keeps the prior's particles.
``return_ess=True`` says how well the particles did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from torch.distributions import biject_to

from . import validation as check
from .handlers import UNITS
from .log_density import site_log_density
from .runtime import on_device, seeded

if TYPE_CHECKING:  # pragma: no cover
    from .posterior import CausalPosterior

__all__ = [
    "ADAPT_ROUNDS",
    "DEFENSIVE",
    "LOG_LIKELIHOOD_PARTICLES",
    "LOG_LIKELIHOOD_SEED_OFFSET",
    "WIDEN",
    "pointwise_log_likelihood",
]

LOG_LIKELIHOOD_PARTICLES = 64
"""Default importance-sampling particles per unit (and round) for the pointwise log-likelihood."""
LOG_LIKELIHOOD_SEED_OFFSET = 7919
"""The log-likelihood's particles are seeded with the fit's seed plus this (fixed, so repeated
conversions agree and models fitted with the same seed share their random numbers)."""
MAX_ELEMENTS = 2**22
"""The log-likelihood is computed in chunks of draws holding about this many values per site."""
ADAPT_ROUNDS = 2
"""Rounds of adapted proposals after the prior's round."""
DEFENSIVE = 0.25
"""Share of an adapted round's particles drawn from the prior."""
WIDEN = 1.5
"""The adapted Gaussian's SD, as a multiple of the weighted particles' SD: heavier than the
target, as an importance proposal should be."""
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class _Dims:
    """A chunk's sizes: ``m`` draws, ``k`` particles, ``n`` units, ``P`` plate dimensions."""

    m: int
    k: int
    n: int
    P: int


def _unit_dim(site: dict[str, Any], ndim: int, event: int) -> int:
    """Where the unit dimension sits in a tensor of ``ndim`` dims with ``event`` trailing ones."""
    frames = [f for f in site["cond_indep_stack"] if f.name == UNITS]
    return ndim - event + frames[0].dim if frames else ndim - event - 1


def _per_unit(x: torch.Tensor, site: dict[str, Any], d: _Dims, event: int = 0) -> torch.Tensor:
    """``x`` (the site's batch shape, then ``event`` dims) as ``(m, k, n, rest)``: the unit first."""
    x = x.expand(torch.broadcast_shapes(x.shape, (d.m, d.k, *([1] * (d.P + event)))))
    x = x.movedim(_unit_dim(site, x.dim(), event), 2)
    return x.reshape(d.m, d.k, x.shape[2], -1).expand(d.m, d.k, d.n, -1)


def _site_log_prob(site: dict[str, Any], d: _Dims) -> torch.Tensor:
    """One site's log density per (draw, particle, unit), other plates summed out (its
    ``poutine.scale`` and ``poutine.mask`` applied, as in the fit)."""
    return _per_unit(site_log_density(site).double(), site, d).sum(-1)


class _Latent:
    """One per-unit latent site of a trace, in the unconstrained space of its support."""

    def __init__(self, site: dict[str, Any], d: _Dims) -> None:
        self.site, self.d = site, d
        self.transform = biject_to(site["fn"].support)
        self.event = site["fn"].event_dim
        self.u_event = self.event - self.transform.codomain.event_dim + self.transform.domain.event_dim
        u = self.transform.inv(site["value"])
        self.u_shape = u.shape
        # a value on its support's edge in float32 (exp underflowing to 0) is -inf here: kept
        # finite, so the weighted moments stay numbers (the value it maps back to is the same)
        u = torch.nan_to_num(u.double(), nan=0.0, posinf=1e6, neginf=-1e6)
        self.flat = _per_unit(u, site, d, self.u_event)  # (m, k, n, size)

    def values(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unconstrained ``z`` ``(m, K, n, size)``, any number ``K`` of particles -> the site's
        values and ``log |dx/dz|`` ``(m, K, n)``."""
        dim = _unit_dim(self.site, len(self.u_shape), self.u_event)
        shape = [self.d.m, z.shape[1], *self.u_shape[2:]]
        shape.insert(2, shape.pop(dim))
        u = z.to(self.site["value"].dtype).reshape(shape).movedim(2, dim)
        x = self.transform(u)
        ladj = self.transform.log_abs_det_jacobian(u, x)
        ladj = sum_rightmost(ladj, self.event - self.transform.codomain.event_dim)
        return x, _per_unit(ladj.double(), self.site, replace(self.d, k=z.shape[1])).sum(-1)


@dataclass(frozen=True)
class _Round:
    """One round's ``k`` particles: each latent's unconstrained values ``(m, k, n, size)``, each
    particle's ``log p(latents) - log q(latents)`` ``(m, k, n)``, and the trace at them."""

    trace: Any
    latents: dict[str, torch.Tensor]
    shift: torch.Tensor
    k: int
    exact: bool = False  # every latent value enumerated: a sum, not an estimate


def _proposal(
    rnd: _Round, full: torch.Tensor, prior_var: dict[str, torch.Tensor]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per latent, the next round's Gaussian ``(mean, sd)``, each ``(m, 1, n, size)``, from the
    round's particles weighed at the unit's full likelihood ``full`` ``(m, k, n)``."""
    w = torch.softmax(full, dim=1).unsqueeze(-1)
    ess = (1.0 / (w**2).sum(1, keepdim=True)).clamp_min(1.0)
    out = {}
    for name, z in rnd.latents.items():
        mean = (w * z).sum(1, keepdim=True)
        var = (w * (z - mean) ** 2).sum(1, keepdim=True)
        # a round whose weight sits on few particles measures little spread: keep some of the
        # prior's, fading as the effective number of particles grows
        out[name] = mean, WIDEN * (var + prior_var[name] / (ess + 1.0)).sqrt()
    return out


def pointwise_log_likelihood(
    post: CausalPosterior,
    draws: Mapping[str, torch.Tensor] | None = None,
    *,
    particles: int = LOG_LIKELIHOOD_PARTICLES,
    seed: int | None = None,
    adapt: int = ADAPT_ROUNDS,
    return_ess: bool = False,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], np.ndarray]:
    """Per observed site, ``log p(v_i | v_{<i}, theta)`` with the unit's latents integrated out.

    See the module docstring for the estimator, and :mod:`causal_pp.inference_data` for why the
    latents are integrated out.

    Parameters
    ----------
    post
        The fitted posterior (its model, data and structure).
    draws
        Draws of the global parameters, each ``(S, *shape)`` (default: all of ``post``'s).
    particles
        Importance-sampling draws of each unit's latents per draw of the globals, per round.
    seed
        Seed of the particles (default: the fit's seed plus a fixed offset).
    adapt
        Rounds of adapted proposals after the prior's (0: the prior's particles alone).
    return_ess
        Also return the effective number of particles of each unit's last round at its full
        likelihood, ``(S, n)``: near ``particles`` where the proposal fits, near 1 where one
        particle carries the estimate, infinite where discrete latents were summed exactly.

    Returns
    -------
    dict
        Observed site -> array ``(S, n)``, in the DAG's topological order; the sites of a unit
        sum to its marginal log-likelihood. With ``return_ess``, a pair ``(dict, ess)``.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, CausalPosterior, causal_model, units
    >>> @causal_model(CausalGraph.parse("X"))
    ... def m(n):
    ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     with units(n):
    ...         pyro.sample("X", dist.Normal(mu, 1.0))
    >>> post = CausalPosterior(model=m, samples={"mu": torch.zeros(2)}, data={"X": torch.zeros(3)},
    ...                        diagnostics={}, method="given", seed=0)
    >>> ll = pointwise_log_likelihood(post)
    >>> ll["X"].shape, round(float(ll["X"][0, 0]), 4)  # log N(0 | 0, 1)
    ((2, 3), -0.9189)
    """
    particles = check.positive_int("particles", particles)
    adapt = check.non_negative_int("adapt", adapt)
    draws = dict(post.samples if draws is None else draws)
    s = post.structure
    P = s.max_plate_nesting
    n = int(next(iter(post.data.values())).shape[0])
    S = int(next(iter(draws.values())).shape[0]) if draws else 1
    order = [v for v in post.graph.topological_order if v in post.data]
    dev = post.device
    data = {k: v.to(dev) for k, v in post.data.items()}
    m_max = max(1, MAX_ELEMENTS // (particles * n * max(1, len(s.unit_sites))))
    out = {v: np.empty((S, n)) for v in order}
    ess = np.empty((S, n))
    seed = post.seed + LOG_LIKELIHOOD_SEED_OFFSET if seed is None else check.seed(seed)
    for a in range(0, S, m_max):
        m = min(m_max, S - a)
        cond: dict[str, torch.Tensor] = dict(data)
        for k, v in draws.items():
            info = s.sites[k]
            cond[k] = v[a : a + m].reshape(m, 1, *([1] * (P - info.batch_ndim)), *info.shape).to(dev)
        # the same particles for every chunk of draws (and every model with this seed)
        chunk, chunk_ess = _chunk(post, cond, order, _Dims(m, particles, n, P), seed, adapt)
        for v in order:
            out[v][a : a + m] = chunk[v]
        ess[a : a + m] = chunk_ess
    return (out, ess) if return_ess else out


def _chunk(
    post: CausalPosterior, cond: Mapping[str, torch.Tensor], order: list[str], d: _Dims, seed: int, adapt: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The estimate for one chunk of draws: the prior's round, then ``adapt`` adapted ones."""
    dev = post.device

    def run(values: Mapping[str, torch.Tensor], r: int, k: int) -> Any:
        """The program, conditioned on ``cond`` and ``values``, its unconditioned sites drawn with
        ``k`` particles per draw and unit (round ``r``'s random stream)."""
        with (
            seeded(seed + 104729 * r, dev),
            on_device(dev),
            torch.no_grad(),
            pyro.validation_enabled(False),
            pyro.plate("_ll_draws", d.m, dim=-(d.P + 2)),
            pyro.plate("_ll_particles", k, dim=-(d.P + 1)),
            poutine.condition(data={**cond, **values}),
        ):
            return poutine.trace(post.model.fn).get_trace(d.n, *post.model_args, **post.model_kwargs)

    tr = run({}, 0, d.k)
    unit_sites = post.structure.sites
    names = [
        name
        for name, site in tr.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and name in unit_sites
        and unit_sites[name].per_unit
    ]
    discrete = bool(names) and all(tr.nodes[name]["fn"].support.is_discrete for name in names)
    enumerated = _enumerated(run, tr, names, d) if discrete else None
    if not names or discrete:
        adapt = 0  # nothing to integrate, or no Gaussian form: the prior's particles, or the sum
    latents = {name: _Latent(tr.nodes[name], d).flat for name in names} if adapt else {}
    rnd = enumerated or _Round(tr, latents, torch.zeros(d.m, d.k, d.n, dtype=torch.float64, device=dev), d.k)
    prior_var = {name: z.var(1, keepdim=True) for name, z in latents.items()}
    full = rnd.shift  # each round's log weights at the unit's full likelihood
    for r in range(adapt + 1):
        if r:
            rnd = _adapted(run, rnd, full, prior_var, d, r, seed)
        running, chunk = rnd.shift, {}
        previous = torch.zeros(d.m, d.n, dtype=torch.float64, device=dev)
        for v in order:
            running = running + _site_log_prob(rnd.trace.nodes[v], replace(d, k=rnd.k))
            lse = torch.logsumexp(running, dim=1)
            # the log of an average is biased low by half its relative variance; the weights
            # estimate that as 1 / ESS - 1 / K (the delta method), which is added back
            inv_ess = torch.exp(torch.logsumexp(2 * running, dim=1) - 2 * lse)
            current = lse - math.log(rnd.k) + (0.0 if rnd.exact else 0.5 * (inv_ess - 1.0 / rnd.k))
            chunk[v] = (current - previous).cpu().numpy()
            previous = current
        full = running
    if rnd.exact:
        return chunk, np.full((d.m, d.n), np.inf)
    w = torch.softmax(full, dim=1)
    return chunk, (1.0 / (w**2).sum(1)).cpu().numpy()


def _adapted(
    run: Callable[..., Any],
    last: _Round,
    full: torch.Tensor,
    prior_var: dict[str, torch.Tensor],
    d: _Dims,
    r: int,
    seed: int,
) -> _Round:
    """Round ``r``: the prior's particles (a :data:`DEFENSIVE` share) and the rest from each unit's
    Gaussian fitted to round ``r - 1``, every particle weighed by the two proposals' mixture."""
    gauss = _proposal(last, full, prior_var)
    k0 = max(1, round(DEFENSIVE * d.k))
    prior = run({}, r, k0)  # fresh draws: the Gaussian was fitted to the last round's
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + 15485863 * r)
    values, zs, log_gauss, log_jac = {}, {}, 0.0, 0.0
    for name, (mean, sd) in gauss.items():
        lat = _Latent(prior.nodes[name], replace(d, k=k0))
        size = (d.m, d.k - k0, d.n, lat.flat.shape[-1])
        eps = torch.randn(size, generator=gen, dtype=torch.float64).to(mean.device)
        z = torch.cat([lat.flat, mean + sd * eps], dim=1)
        values[name], ladj = lat.values(z)
        zs[name] = z
        log_gauss = log_gauss + (-0.5 * ((z - mean) / sd) ** 2 - sd.log() - _HALF_LOG_2PI).sum(-1)
        log_jac = log_jac + ladj
    tr = run(values, 0, d.k)
    log_prior = sum(_site_log_prob(tr.nodes[name], d) for name in gauss)
    share = k0 / d.k  # a deterministic mixture: exactly this share of the particles is the prior's
    log_q = torch.logaddexp(math.log(share) + log_prior, math.log1p(-share) + log_gauss - log_jac)
    return _Round(tr, zs, log_prior - log_q, d.k)


def _enumerated(run: Callable[..., Any], tr: Any, names: list[str], d: _Dims) -> _Round | None:
    """Where every per-unit latent is discrete with one finite support, at most ``d.k`` joint
    values in all: those values as the particles, each weighed by its prior probability, so that
    the average is the sum over them, exactly. None where they are not (the prior's particles then)."""
    supports = []
    for name in names:
        fn = tr.nodes[name]["fn"]
        if not fn.has_enumerate_support:
            return None
        try:
            support = fn.enumerate_support(expand=False)  # the same for every draw and unit
        except NotImplementedError:  # e.g. a Binomial whose total count varies
            return None
        supports.append(support.reshape(support.shape[0], *fn.event_shape))
    sizes = [len(support) for support in supports]
    k = math.prod(sizes)
    if k > d.k:
        return None
    grid = torch.meshgrid(*[torch.arange(size) for size in sizes], indexing="ij")
    index = torch.stack(grid, -1).reshape(k, len(sizes))
    values = {}
    for j, (name, support) in enumerate(zip(names, supports, strict=True)):
        shape = (d.m, k, *tr.nodes[name]["value"].shape[2:])
        event = support.dim() - 1
        picked = support[index[:, j].to(support.device)]
        values[name] = picked.reshape(1, k, *([1] * (len(shape) - 2 - event)), *picked.shape[1:]).expand(
            shape
        )
    trace = run(values, 0, k)
    log_prior = sum(_site_log_prob(trace.nodes[name], replace(d, k=k)) for name in names)
    return _Round(trace, {}, log_prior + math.log(k), k, exact=True)
