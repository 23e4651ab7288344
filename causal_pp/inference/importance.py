"""Importance correction of an SVI guide's draws of the global parameters.

Units are independent given the global parameters, so the marginal likelihood of a draw of the
globals is a product over units of one-unit integrals over that unit's latents; each is
estimated by importance sampling with ``num_particles`` draws from a Laplace approximation to
the unit's conditional posterior given that draw: Newton steps from the guide's conditional
mean (a diagonal Hessian per unit; a step is kept only where it raises the unit's log joint),
widened by :data:`UNIT_INFLATION`. The proposal has to follow the globals: with the guide's
conditional alone (linear in the globals, fitted around the guide's mean) the simulated
likelihood's error grows away from the guide's mean and, with common random numbers, is a
fixed random surface over the globals whose summed slope over thousands of units moved the
posterior mean of the back-door ATE by 1.1 posterior SDs at N = 2000 (16 particles; 0.2 SD
with 128; see ``test_svi_with_importance_correction_matches_the_exact_posterior``).

Where the model has one scalar latent per unit and its log joint is quadratic in it (a Gaussian
conditional, as in linear-Gaussian models), the one-unit integral is done in closed form from the
Laplace expansion instead (:data:`GAUSSIAN_TOL`): exact there, with no particles and no Monte
Carlo error. The log joint is checked at 1 and 2 Laplace SDs either side of every unit's
expansion point for every draw; a chunk of draws where any unit deviates from the quadratic uses
the particles. The diagnostics say which (``is_unit_integral``).

Proposals for the globals (in unconstrained space) come in two rounds: the guide's Gaussian
marginal widened by ``inflation``, then a Gaussian fitted to the weighted first round
(adaptive importance sampling). Self-normalised weights (truncated at mean * sqrt(M), Ionides
2008) of the second round pick ``num_samples`` of its ``num_proposals`` draws by systematic
resampling. This removes most of the variational overconfidence of the guide; the weights'
effective sample size is the diagnostic.

Where the weights degenerate (a posterior of the globals too far from Gaussian for one
Gaussian proposal: ESS below :data:`IS_MIN_ESS`), ``temper=True`` (off by default: see
``SVI(tempering=...)``) walks draws of the guide's Gaussian, widened, to the posterior by
tempered sequential Monte Carlo (:mod:`.tempered`), with the same target; ``is_method`` says
which correction was used.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import pyro
import torch
from pyro import poutine
from torch.distributions import biject_to

from ..inference_data import pareto_k
from ..log_density import site_log_density
from .guides import guide_gaussian
from .tempered import TEMPER_INFLATION, Start, systematic, temper_rows

if TYPE_CHECKING:  # pragma: no cover
    from ..program import ProgramStructure

__all__ = [
    "DEGENERATE",
    "GAUSSIAN_TOL",
    "IS_MIN_ESS",
    "IS_ROUND1_MIN_ESS",
    "UNIT_INFLATION",
    "UNIT_NEWTON_STEPS",
    "GaussianView",
    "GlobalsTarget",
    "importance_correct",
    "importance_correct_rows",
    "view_of",
]

UNIT_INFLATION = 1.1
"""Importance correction: per-unit proposals are widened by this factor."""
UNIT_NEWTON_STEPS = 3
"""Importance correction: Newton steps from the guide's conditional mean towards each unit's
conditional mode, for every draw of the globals."""
GAUSSIAN_TOL = 1e-4
"""Importance correction: a unit's integral is done in closed form where its log joint differs from
its quadratic (Laplace) expansion by at most this many nats at +-1 and +-2 Laplace SDs (float32
rounding is ~1e-6 there; a departure this small moves a unit's log integral by about as much)."""
_PROBES = (-2.0, -1.0, 1.0, 2.0)
DEGENERATE = "importance weights degenerate"
"""How ``is_skipped`` begins where the weights degenerated (tempering, if asked for, takes those rows)."""
IS_MIN_ESS = 100.0
"""SVI keeps the raw guide draws (and warns) when the importance correction's ESS is below this."""
IS_ROUND1_MIN_ESS = IS_MIN_ESS / 4
"""The correction stops after its first round when that round's ESS is below this: the second
round (twice the draws, adapted proposal) multiplied it by at most about 4 on the paper protocol's
cells, short of :data:`IS_MIN_ESS` from there (SARS-CoV-2 fits spent ~1 s each on it, all wasted)."""

Latents = dict[str, torch.Tensor]


class Exact(NamedTuple):
    """The units' integrals in closed form for a chunk of draws: each unit's log integral
    ``(m, 1, N)``, the globals' log prior ``(m,)`` and, per draw, whether they hold ``(m,)``."""

    unit: torch.Tensor
    prior: torch.Tensor
    ok: torch.Tensor


@dataclass(frozen=True)
class GaussianView:
    """A Gaussian over the flat unconstrained latent vector of one data set, with its site layout.

    Attributes
    ----------
    loc, var
        Mean and marginal variances, ``(D,)``.
    cov
        ``cov(rows, cols)``: a block of the covariance matrix.
    positions
        Site -> its ``(start, stop)`` slice of the vector.
    shapes
        Site -> its unconstrained shape.
    supports
        Site -> the support of its distribution (the vector lives in ``biject_to(support)``'s domain).
    """

    loc: torch.Tensor
    cov: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    var: torch.Tensor
    positions: dict[str, tuple[int, int]]
    shapes: dict[str, tuple[int, ...]]
    supports: dict[str, Any]


def view_of(g: Any) -> GaussianView | None:
    """The Gaussian of a multivariate-normal autoguide (None for another guide)."""
    gauss = guide_gaussian(g)
    if gauss is None:
        return None
    loc, cov, var = gauss
    pos: dict[str, tuple[int, int]] = {}
    shapes, supports = {}, {}
    start = 0
    for name, site in g.prototype_trace.iter_stochastic_nodes():
        shapes[name] = tuple(g._unconstrained_shapes[name])
        size = math.prod(shapes[name])
        pos[name] = (start, start + size)
        supports[name] = site["fn"].support
        start += size
    return GaussianView(loc, cov, var, pos, shapes, supports)


def _skip_reason(
    view: GaussianView | None, globals_: list[str], unit_latent: list[str], s: ProgramStructure
) -> str | None:
    """Why the correction cannot apply to this guide and model (None if it can)."""
    if view is None:
        return "the guide is not a multivariate normal autoguide"
    if s.max_plate_nesting != 1 or any(
        s.sites[u].event_ndim or len(s.sites[u].shape) != 1 for u in unit_latent
    ):
        return "per-unit latents are not scalars in a single units plate"
    if set(view.positions) != set(globals_) | set(unit_latent) or not globals_:
        return "the guide does not cover exactly the model's latent sites"
    return None


class GlobalsTarget:
    """The importance target for the globals: prior times the per-unit simulated likelihood.

    Holds the guide's Gaussian (marginal of the globals and per-unit conditionals), the
    common random numbers of the per-unit particles and the random generator; every random
    draw of the correction comes from ``gen``, in a fixed order.
    """

    def __init__(
        self,
        target: Callable[[], Any],
        view: GaussianView,
        globals_: list[str],
        unit_latent: list[str],
        s: ProgramStructure,
        *,
        num_particles: int,
        seed: int,
    ) -> None:
        loc, cov, var, pos = view.loc, view.cov, view.var, view.positions
        self.target, self.view, self.s = target, view, s
        self.globals_, self.unit_latent = globals_, unit_latent
        self.dtype, self.dev = loc.dtype, loc.device
        dev = self.dev
        G = torch.cat([torch.arange(*pos[k], device=dev) for k in globals_])
        self.gen = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
        self.mu_t = loc[G].double()
        S_tt = cov(G, G).double()
        self.S_tt = 0.5 * (S_tt + S_tt.T)
        # per-unit conditionals q(z_u | z_theta) = N(mu_u + A (z_theta - mu_theta), v)
        self.cond: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        S_inv = torch.linalg.inv(self.S_tt)
        for u in unit_latent:
            J = torch.arange(*pos[u], device=dev)
            S_ut = cov(J, G).double()
            A = S_ut @ S_inv
            v = (var[J].double() - (A * S_ut).sum(-1)).clamp_min(1e-12)
            self.cond[u] = (loc[J].double(), A, v.sqrt())
        self.N, self.K = s.n, num_particles
        self.chunks = [0, 0]  # chunks of draws whose unit integrals took particles, closed form
        self.chunk = max(1, (2**22) // (self.K * self.N * max(1, len(s.unit_sites))))
        # common random numbers: the same standard-normal draws for every proposal, so the
        # simulated likelihood is a smooth function of the globals and its error largely cancels
        # in the self-normalised weights
        self.crn = {
            u: torch.randn((1, self.K, self.N), generator=self.gen, dtype=torch.float64, device="cpu").to(dev)
            for u in unit_latent
        }

    def constrain(self, z_t: torch.Tensor) -> tuple[Latents, torch.Tensor]:
        """Unconstrained draws of the globals -> constrained values and log |Jacobian|."""
        M = z_t.shape[0]
        theta, log_jac = {}, torch.zeros(M, dtype=torch.float64, device=self.dev)
        offset = 0
        for name in self.globals_:
            ushape = self.view.shapes[name]
            size = math.prod(ushape)
            zu = z_t[:, offset : offset + size].reshape(M, *ushape).to(self.dtype)
            offset += size
            t = biject_to(self.view.supports[name])
            x = t(zu)
            log_jac += t.log_abs_det_jacobian(zu, x).reshape(M, -1).sum(-1).double()
            theta[name] = x
        return theta, log_jac

    def log_joint(self, glob: Latents, z: Latents, particles: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For one chunk of m draws of the globals and ``particles`` values of each unit's latents
        (unconstrained): per-unit log p(unit's data, unit's latents | globals) + Jacobians,
        shape (m, particles, N), and the log prior of the globals, shape (m,)."""
        m, N, dev, values = next(iter(glob.values())).shape[0], self.N, self.dev, dict(glob)
        # a unit's terms are summed in the program's dtype (each is only as exact), then widened once
        unit = torch.zeros(m, particles, N, dtype=self.dtype, device=dev)
        for u in self.unit_latent:
            t = biject_to(self.view.supports[u])
            zu_f = z[u].to(self.dtype)
            x = t(zu_f)
            unit = unit + t.log_abs_det_jacobian(zu_f, x)
            values[u] = x
        with pyro.plate("_is_draws", m, dim=-3), pyro.plate("_is_particles", particles, dim=-2):
            tr = poutine.trace(poutine.condition(self.target, data=values)).get_trace()
        prior = torch.zeros(m, dtype=torch.float64, device=dev)
        for site in tr.nodes.values():
            if site["type"] != "sample":
                continue
            lp = site_log_density(site)
            lp = lp.expand(*torch.broadcast_shapes(lp.shape, (m, particles, 1)))
            if any(f.name == "units" for f in site["cond_indep_stack"]):
                unit = unit + lp
            else:
                prior = prior + lp[:, 0].reshape(m, -1).double().sum(-1)
        return unit.double(), prior

    def _curvature(self, glob: Latents, z: Latents) -> tuple[torch.Tensor, Latents, Latents]:
        """Per-unit log joint, its gradient and diagonal Hessian in each unit's latents."""
        with torch.enable_grad():
            zz = {u: z[u].detach().clone().requires_grad_(True) for u in self.unit_latent}
            f, _ = self.log_joint(glob, zz, 1)
            grads = torch.autograd.grad(f.sum(), list(zz.values()), create_graph=True, allow_unused=True)
            g, h = {}, {}
            for u, gr in zip(self.unit_latent, grads, strict=True):
                # no curvature (log joint constant or linear in it): this latent keeps the
                # guide's conditional (h = -inf gives a zero step and a Laplace SD of 0)
                if gr is None or not gr.requires_grad:
                    g[u] = torch.zeros_like(zz[u])
                    h[u] = torch.full_like(zz[u], -math.inf)
                    continue
                g[u] = gr.detach()
                (hu,) = torch.autograd.grad(gr.sum(), zz[u], retain_graph=True, allow_unused=True)
                h[u] = hu.detach() if hu is not None else torch.full_like(zz[u], -math.inf)
        return f.detach(), g, h

    def _slack(self, f: torch.Tensor) -> torch.Tensor:  # a unit's log joint's rounding: a few terms in dtype
        return 8 * torch.finfo(self.dtype).eps * (1.0 + f.abs())

    def _concave(self, f: torch.Tensor, h: Latents) -> torch.Tensor:
        good = torch.isfinite(f)
        for u in self.unit_latent:
            good &= h[u] < 0  # False for NaN and +inf; -inf marks "no curvature" (above)
        return good

    def gaussian(
        self, glob: Latents, z: torch.Tensor, f: torch.Tensor, g: torch.Tensor, h: torch.Tensor
    ) -> Exact:
        """Each unit's log integral over its one scalar latent in closed form, ``(m, 1, N)``, the
        globals' log prior ``(m,)``, from the expansion (log joint ``f``, gradient ``g``, curvature
        ``h < 0``) at ``z``, and per draw whether the log joint is that quadratic in every unit
        (see :data:`GAUSSIAN_TOL`; where it is not, the integral is not used)."""
        sd = torch.rsqrt(-h)
        c = torch.tensor(_PROBES, dtype=z.dtype, device=z.device).view(1, -1, 1)
        with torch.no_grad():
            probe, prior = self.log_joint(glob, {self.unit_latent[0]: z + c * sd}, len(_PROBES))
        # the quadratic at z + c sd is f + c g sd - c^2 / 2 (h sd^2 = -1): few passes over the probes
        ok = ((probe - f).sub_(c * (g * sd)).add_(0.5 * c * c).abs_() <= GAUSSIAN_TOL).flatten(1).all(1)
        # log of the integral of exp(f + g t + h t^2 / 2) over t
        return Exact(f - 0.5 * g * g / h + 0.5 * torch.log(2 * math.pi / -h), prior, ok)

    def laplace(
        self, glob: Latents, mean: Latents, sd: Latents, rows: int = 1
    ) -> tuple[Latents, Latents, Exact | None]:
        """Per-unit proposals N(mode, -1/h) for one chunk of draws of the globals, starting
        from the guide's conditional (mean, sd), each (m, 1, N). Units where the log joint is
        not finite or not concave at the start keep the guide's conditional. Third: the units'
        integrals in closed form (:meth:`gaussian`; per draw, whether they hold), or None where
        they cannot be (several latents per unit).

        ``rows``: the draws are that many data sets' chunks one after another (see
        :func:`log_targets`); each stops its Newton steps by its own draws, as it would alone."""
        units = self.unit_latent
        if not units:
            return mean, sd, None
        try:
            best_z = {u: mean[u].clone() for u in units}
            best_f, best_g, best_h = self._curvature(glob, best_z)
            active = self._concave(best_f, best_h)
            damp = torch.ones_like(best_f)
            for _ in range(UNIT_NEWTON_STEPS):
                # a data set stops where none of its units would move by more than 1/1000 of its
                # conditional SD (a Gaussian conditional is exact after one step)
                moving = torch.zeros_like(active)
                for u in units:
                    moving |= active & (best_g[u].abs() * torch.rsqrt(-best_h[u]) > 1e-3)
                live = moving.reshape(rows, -1).any(1)
                if not live.any():
                    break
                live = live.repeat_interleave(active.shape[0] // rows).view(-1, *[1] * (active.dim() - 1))
                step = {u: torch.where(active & live, -damp * best_g[u] / best_h[u], 0.0) for u in units}
                z = {u: best_z[u] + torch.nan_to_num(step[u], nan=0.0) for u in units}
                f, g, h = self._curvature(glob, z)
                # a step that leaves the log joint where it was up to rounding is kept: near the mode a
                # step gains less than float32's rounding, and a rejected one kept the unit moving
                better = active & live & self._concave(f, h) & (f >= best_f - self._slack(best_f))
                for u in units:
                    best_z[u] = torch.where(better, z[u], best_z[u])
                    best_g[u] = torch.where(better, g[u], best_g[u])
                    best_h[u] = torch.where(better, h[u], best_h[u])
                best_f = torch.where(better, f, best_f)
                damp = torch.where(better, damp, 0.5 * damp)
        except RuntimeError:  # a program that cannot be differentiated in its latents
            return mean, {u: UNIT_INFLATION * sd[u] for u in units}, None
        exact = None
        if len(units) == 1:
            u = units[0]
            # a unit without curvature here has no closed form: a stand-in keeps the probes
            # finite, and its draw is marked as not holding
            h = torch.where(active, best_h[u], -1.0)
            exact = self.gaussian(glob, best_z[u], best_f, best_g[u], h)
            exact = Exact(exact.unit, exact.prior, exact.ok & active.flatten(1).all(1))
        out_mean, out_sd = {}, {}
        for u in units:
            lap_sd = torch.rsqrt(-best_h[u]).nan_to_num(nan=0.0)
            use = active & (lap_sd > 0)
            out_mean[u] = torch.where(use, best_z[u], mean[u])
            out_sd[u] = UNIT_INFLATION * torch.where(use, lap_sd, sd[u])
        return out_mean, out_sd, exact

    def chunk_inputs(
        self, z_t: torch.Tensor, theta: Latents, a: int, b: int
    ) -> tuple[Latents, Latents, Latents]:
        """Draws ``a:b``: the globals' values shaped for the program, and each unit's conditional
        under the guide (mean, sd), each ``(m, 1, N)``."""
        m, s = b - a, self.s
        values: Latents = {}
        for name in self.globals_:
            si = s.sites[name]
            values[name] = theta[name][a:b].reshape(m, 1, *([1] * (1 - si.batch_ndim)), *si.shape)
        dz = z_t[a:b] - self.mu_t
        mean = {u: (c[0] + dz @ c[1].T).unsqueeze(1) for u, c in self.cond.items()}
        sd = {u: c[2].expand(m, 1, self.N) for u, c in self.cond.items()}
        return values, mean, sd

    def unit_integral(self) -> str:
        """How the units' integrals were done so far: ``"closed form"`` (Gaussian), ``"particles"``,
        ``"mixed: k of n chunks in closed form"`` (or ``"none"`` without per-unit latents)."""
        particles, closed = self.chunks
        if not self.unit_latent:
            return "none"
        if not particles or not closed:
            return "closed form" if closed else "particles"
        return f"mixed: {closed} of {closed + particles} chunks in closed form"

    def propose(
        self, mean: torch.Tensor, scale_tril: torch.Tensor, M: int
    ) -> tuple[torch.Tensor, Latents, torch.Tensor]:
        """``M`` draws of the globals from N(mean, LL^T) (from this target's generator), their
        constrained values, and log |Jacobian| - log proposal density."""
        proposal = torch.distributions.MultivariateNormal(mean, scale_tril=scale_tril)
        eps = torch.randn((M, mean.numel()), generator=self.gen, dtype=torch.float64, device="cpu").to(
            self.dev
        )
        z_t = mean + eps @ scale_tril.T
        theta, log_jac = self.constrain(z_t)
        return z_t, theta, log_jac - proposal.log_prob(z_t)


Programs = Callable[[list[int], int], Callable[[], Any]]
"""``programs(rows, m)``: the model conditioned on the data sets ``rows`` (indices into a list of
targets), each repeated ``m`` times along the draws (a data set's columns ``(m * len(rows), 1, N)``,
row by row); for one data set, its own program (its columns broadcast)."""

ROWS_ELEMENTS = 2**18
"""Several data sets' chunks of draws go through the program together up to this many per-unit
values (draws x units x latents). Batching saves the program's fixed cost per call, which is
what a small model's correction is made of; past this size the probes' values (4 per unit)
outgrow a core's cache (2**20 was slower than 2**18 for 20 front-door data sets) and contend with
other processes for the memory bus (2**24 made a study with two worker processes slower)."""


def log_targets(
    ts: list[GlobalsTarget],
    programs: Programs,
    zs: list[torch.Tensor],
    thetas: list[Latents],
    keys: list[int] | None = None,
) -> list[torch.Tensor]:
    """``log p(theta) + sum_units log p-hat(unit | theta)`` per draw (without the Jacobian) of several data sets' draws (one target each, one
    model), evaluated together: each chunk of draws of a group of data sets is one run of the
    program, in which each data set's units take their own Newton steps and integrals.
    ``keys``: the data sets' indices for ``programs`` (default: their positions)."""
    keys = list(range(len(ts))) if keys is None else keys
    t0 = ts[0]
    M, units, R = zs[0].shape[0], t0.unit_latent, len(ts)
    chunk, per_draw = t0.chunk, t0.N * max(1, len(units))
    group = max(1, ROWS_ELEMENTS // (min(chunk, M) * per_draw))
    out = [torch.empty(M, dtype=torch.float64, device=t0.dev) for _ in ts]
    for g0 in range(0, R, group):
        rows = list(range(g0, min(R, g0 + group)))
        for a in range(0, M, chunk):
            b = min(M, a + chunk)
            m = b - a
            parts = [ts[r].chunk_inputs(zs[r], thetas[r], a, b) for r in rows]
            values, mean, sd = (
                {k: torch.cat([p[i][k] for p in parts]) for k in parts[0][i]} for i in range(3)
            )
            ev = copy.copy(t0)
            ev.target = programs([keys[r] for r in rows], m)
            prop_mean, prop_sd, exact = ev.laplace(values, mean, sd, rows=len(rows))
            rest = []
            for i, r in enumerate(rows):
                here = slice(i * m, (i + 1) * m)
                closed = exact is not None and bool(exact.ok[here].all())
                ts[r].chunks[closed] += 1
                if closed:
                    out[r][a:b] = exact.prior[here] + exact.unit[here].sum((1, 2))
                else:
                    rest.append(i)
            # the particles: K times the values, so as many data sets at a time as one data set's
            # chunk alone would hold (``chunk``)
            step = max(1, chunk // m)
            for k0 in range(0, len(rest), step):
                some = rest[k0 : k0 + step]
                pick = torch.cat([torch.arange(i * m, (i + 1) * m, device=t0.dev) for i in some])
                crn = {u: torch.cat([ts[rows[i]].crn[u].expand(m, -1, -1) for i in some]) for u in units}
                pm, ps = {u: prop_mean[u][pick] for u in units}, {u: prop_sd[u][pick] for u in units}
                z = {u: pm[u] + ps[u] * crn[u] for u in units}
                ev.target = programs([keys[rows[i]] for i in some], m)
                with torch.no_grad():
                    unit, prior = ev.log_joint({k: v[pick] for k, v in values.items()}, z, t0.K)
                for u in units:
                    unit = unit - torch.distributions.Normal(pm[u], ps[u]).log_prob(z[u])
                total = prior + (torch.logsumexp(unit, dim=1) - math.log(t0.K)).sum(-1)
                for j, i in enumerate(some):
                    out[rows[i]][a:b] = total[j * m : (j + 1) * m]
    return out


def weigh_rows(
    ts: list[GlobalsTarget],
    programs: Programs,
    proposals: list[tuple[torch.Tensor, torch.Tensor]],
    M: int,
    keys: list[int] | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor, Latents]]:
    """``M`` draws of the globals per data set from its proposal N(mean, LL^T), their log weights
    and constrained values, for several data sets at once."""
    if not ts:
        return []
    drawn = [t.propose(mean, L, M) for t, (mean, L) in zip(ts, proposals, strict=True)]
    log_p = log_targets(ts, programs, [d[0] for d in drawn], [d[1] for d in drawn], keys)
    return [
        (z_t, torch.nan_to_num(lp + corr, nan=-math.inf), theta)
        for (z_t, theta, corr), lp in zip(drawn, log_p, strict=True)
    ]


def _truncated(log_w: torch.Tensor) -> torch.Tensor:
    """Weights truncated at mean * sqrt(M) (Ionides 2008)."""
    w = torch.exp(log_w - log_w.max())
    return torch.minimum(w, w.mean() * math.sqrt(len(w)))


def importance_correct(
    target: Callable[[], Any],
    g: Any,
    globals_: list[str],
    unit_latent: list[str],
    s: ProgramStructure,
    *,
    num_samples: int,
    num_proposals: int,
    num_particles: int,
    inflation: float,
    seed: int,
    temper: bool = False,
) -> tuple[Latents | None, dict[str, Any]]:
    """Importance-resample the global parameters, with the fitted guide as proposal.

    ``g`` is a multivariate-normal autoguide or a :class:`GaussianView` (one row of a batched
    fit). Returns the corrected draws (None where the correction does not apply or does not hold)
    and its diagnostics (``is_corrected``, ``is_method``, ``is_ess``, ``is_skipped`` ...). See
    the module docstring, and :func:`importance_correct_rows` for several data sets at once.
    """
    return importance_correct_rows(
        lambda rows, m: target,
        [g],
        globals_,
        unit_latent,
        s,
        num_samples=num_samples,
        num_proposals=num_proposals,
        num_particles=num_particles,
        inflation=inflation,
        seeds=[seed],
        temper=temper,
    )[0]


def importance_correct_rows(
    programs: Programs,
    guides: list[Any],
    globals_: list[str],
    unit_latent: list[str],
    s: ProgramStructure,
    *,
    num_samples: int,
    num_proposals: int,
    num_particles: int,
    inflation: float,
    seeds: list[int],
    temper: bool = False,
) -> list[tuple[Latents | None, dict[str, Any]]]:
    """:func:`importance_correct` of several data sets of one model (a batched fit's rows), each
    with its guide and seed: the same result per data set as alone (up to the rounding of
    batched kernels), with the model run once per chunk of draws for all of them.

    ``programs`` conditions the model on data sets by their index in ``guides`` (see
    :data:`Programs`). With ``temper``, rows whose weights degenerate (ESS below
    :data:`IS_MIN_ESS`) are walked to the posterior by :mod:`.tempered` instead (together), and
    their draws returned if the walk reached it; without, such rows' draws are None.
    """
    out: list[tuple[Latents | None, dict[str, Any]]] = []
    keys, ts = [], []
    for r, g in enumerate(guides):
        info: dict[str, Any] = {"is_corrected": False}
        view = g if isinstance(g, GaussianView) else view_of(g)
        skip = _skip_reason(view, globals_, unit_latent, s)
        out.append((None, info))
        if skip is not None:
            info["is_skipped"] = skip
            continue
        assert view is not None
        keys.append(r)
        ts.append(
            GlobalsTarget(
                programs([r], 1), view, globals_, unit_latent, s, num_particles=num_particles, seed=seeds[r]
            )
        )
    # round 1: each guide's marginal, widened
    first = [(t.mu_t, inflation * torch.linalg.cholesky(t.S_tt)) for t in ts]
    weighed1 = weigh_rows(ts, programs, first, max(500, num_proposals // 2), keys)
    second, pos2, degenerate = [], [], []
    for i, (r, t, (z1, lw1, _)) in enumerate(zip(keys, ts, weighed1, strict=True)):
        info = out[r][1]
        info["is_unit_integral"] = t.unit_integral()
        proposal = _round2_proposal(t, z1, lw1, info, inflation)
        if proposal is not None:
            second.append(proposal)
            pos2.append(i)
        elif info["is_skipped"].startswith(DEGENERATE):
            degenerate.append(i)
    # round 2: a Gaussian fitted to round 1, slightly widened
    weighed = weigh_rows([ts[i] for i in pos2], programs, second, num_proposals, [keys[i] for i in pos2])
    for i, (_, lw2, theta) in zip(pos2, weighed, strict=True):
        r, t = keys[i], ts[i]
        info = out[r][1]
        info["is_unit_integral"] = t.unit_integral()
        draws = _resampled(t, lw2, theta, info, num_samples)
        if draws is not None and info["is_ess"] < IS_MIN_ESS:
            info["is_skipped"] = f"{DEGENERATE} (ESS {info['is_ess']:.0f} < {IS_MIN_ESS:.0f})"
            degenerate.append(i)
        elif draws is not None:
            info.update(
                is_corrected=True,
                is_method="importance",
                is_ess_fraction=info["is_ess"] / num_proposals,
                is_num_proposals=num_proposals,
                is_particles=num_particles,
                is_inflation=inflation,
            )
            out[r] = (draws, info)
    if temper and degenerate:
        degenerate.sort()
        walked = _tempered(programs, keys, ts, degenerate, out, num_samples, len(weighed1[0][1]))
        for i, draws in zip(degenerate, walked, strict=True):
            if draws is not None:
                out[keys[i]] = (draws, out[keys[i]][1])
    return out


def _tempered(
    programs: Programs,
    keys: list[int],
    ts: list[GlobalsTarget],
    rows: list[int],
    out: list[tuple[Latents | None, dict[str, Any]]],
    num_samples: int,
    M: int,
) -> list[Latents | None]:
    """The rows ``rows`` (positions in ``ts``) tempered from ``M`` draws of their guide's Gaussian,
    widened, to the posterior (:func:`~.tempered.temper_rows`, all together); their draws, or
    None where the walk gave up."""
    t_start = time.perf_counter()
    # wider than the guide: reweighting contracts a cloud at once, moves widen it step by step
    wide = [(ts[i].mu_t, TEMPER_INFLATION * torch.linalg.cholesky(ts[i].S_tt)) for i in rows]
    drawn = weigh_rows([ts[i] for i in rows], programs, wide, M, [keys[i] for i in rows])
    starts = [Start.weighed(z, lw, *q) for (z, lw, _), q in zip(drawn, wide, strict=True)]

    def log_target(idx: list[int], zs: list[torch.Tensor]) -> list[torch.Tensor]:
        sub = [ts[rows[j]] for j in idx]
        constrained = [t.constrain(z) for t, z in zip(sub, zs, strict=True)]
        lps = log_targets(sub, programs, zs, [c[0] for c in constrained], [keys[rows[j]] for j in idx])
        return [lp + c[1] for lp, c in zip(lps, constrained, strict=True)]

    walks = temper_rows(log_target, starts, [ts[i].gen for i in rows])
    each = (time.perf_counter() - t_start) / len(rows)
    result: list[Latents | None] = []
    for i, walk in zip(rows, walks, strict=True):
        t, info = ts[i], out[keys[i]][1]
        info.update(is_importance_skipped=info.pop("is_skipped"), is_temper_time_s=each, **walk.diagnostics())
        if not walk.finished or walk.distinct < IS_MIN_ESS:
            how = "did not reach the posterior" if not walk.finished else "kept too few distinct particles"
            info["is_skipped"] = (
                f"{DEGENERATE} ({info['is_importance_skipped']}), and tempering {how} "
                f"({walk.stages} stages, {walk.distinct} distinct particles)"
            )
            result.append(None)
            continue
        theta, _ = t.constrain(walk.pick(num_samples, t.gen))
        info.update(is_corrected=True, is_method="tempered")
        result.append({name: theta[name].reshape(num_samples, *t.s.sites[name].shape) for name in t.globals_})
    return result


def _round2_proposal(
    t: GlobalsTarget, z1: torch.Tensor, lw1: torch.Tensor, info: dict[str, Any], inflation: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The second round's proposal from the first round's weighted draws, or None (with the
    reason in ``info``) where the first round's weights are all zero or degenerate."""
    if not torch.isfinite(lw1).any():
        info["is_skipped"] = "all importance weights are zero"
        return None
    w1 = _truncated(lw1)
    w1 = w1 / w1.sum()
    m1 = (w1.unsqueeze(1) * z1).sum(0)
    c1 = ((z1 - m1).T * w1) @ (z1 - m1)
    c1 = 0.5 * (c1 + c1.T) + 1e-9 * torch.eye(len(m1), dtype=c1.dtype, device=t.dev)
    ess1 = float(1.0 / (w1 * w1).sum())
    info["is_ess_round1"] = ess1
    if ess1 < IS_ROUND1_MIN_ESS:
        info["is_ess"] = ess1
        info["is_pareto_k"] = pareto_k(lw1)  # ArviZ's PSIS diagnostic of the weights used
        info["is_skipped"] = (
            f"{DEGENERATE} (ESS {ess1:.0f} of {len(w1)} first-round draws < "
            f"{IS_ROUND1_MIN_ESS:.0f}; no second round)"
        )
        return None
    try:
        L2 = 1.1 * torch.linalg.cholesky(c1)
    except RuntimeError:
        L2 = inflation * torch.linalg.cholesky(t.S_tt)
        m1 = t.mu_t
    if ess1 < 2 * len(m1) + 2:  # too few effective draws to fit a covariance
        L2, m1 = inflation * torch.linalg.cholesky(t.S_tt), t.mu_t
    return m1, L2


def _resampled(
    t: GlobalsTarget, lw2: torch.Tensor, theta: Latents, info: dict[str, Any], num_samples: int
) -> Latents | None:
    """``num_samples`` draws resampled by the second round's weights (None if they are all zero)."""
    if not torch.isfinite(lw2).any():
        info["is_skipped"] = "all importance weights are zero"
        return None
    w = _truncated(lw2)
    info["is_ess"] = float(w.sum() ** 2 / (w * w).sum())
    info["is_pareto_k"] = pareto_k(lw2)  # ArviZ's PSIS diagnostic of the (untruncated) weights
    info["is_log_weights"] = lw2.cpu().numpy()
    idx = systematic(w, num_samples, t.gen)
    idx = idx[torch.randperm(num_samples, generator=t.gen, device="cpu")].to(t.dev)
    return {name: theta[name][idx].reshape(num_samples, *t.s.sites[name].shape) for name in t.globals_}
