"""The importance correction's target: the globals' log prior plus each unit's log integral.

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
Carlo error. The log joint is checked at points either side of every unit's mode for every draw;
a chunk of draws where any unit deviates from the quadratic uses the particles. The diagnostics
say which (``is_unit_integral``).

The closed form is tried first without derivatives (:meth:`GlobalsTarget.stencil_gaussian`): the
log joint at three points about the guide's conditional mean fixes the quadratic by central
differences, and two probes at 2 Laplace SDs either side of its mode check it, in two program
runs. Where they find no quadratic, the Newton steps follow, and the probes at 1 and 2 Laplace SDs
either side of the mode they reach; once a data set's units have taken particles, its later
chunks of draws go straight to the Newton steps.

:mod:`.importance` draws the globals, weighs them by this target and resamples.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import pyro
import torch
from pyro import poutine
from torch.distributions import biject_to
from torch.distributions.transforms import identity_transform

from ..log_density import site_log_density
from .guides import guide_gaussian

if TYPE_CHECKING:  # pragma: no cover
    from ..program import ProgramStructure

__all__ = [
    "GAUSSIAN_TOL",
    "ROWS_ELEMENTS",
    "UNIT_INFLATION",
    "UNIT_NEWTON_STEPS",
    "Exact",
    "GaussianView",
    "GlobalsTarget",
    "Programs",
    "log_targets",
    "view_of",
]

UNIT_INFLATION = 1.1
"""Importance correction: per-unit proposals are widened by this factor."""
UNIT_NEWTON_STEPS = 3
"""Importance correction: Newton steps from the guide's conditional mean towards each unit's
conditional mode, for every draw of the globals."""
GAUSSIAN_TOL = 1e-4
"""Importance correction: a unit's integral is done in closed form where its log joint differs from
its quadratic (Laplace) expansion by at most this many nats at +-1 and +-2 Laplace SDs about its
mode (+-2 only after the stencil's three points; float32 rounding is ~1e-6 to ~1e-5 there, and a
departure this small moves a unit's log integral by about as much)."""
_PROBES = (-2.0, -1.0, 1.0, 2.0)
_STENCIL = 2.5
"""The closed form's first try (:meth:`GlobalsTarget.stencil_gaussian`) fits each unit's quadratic
through its log joint at the guide conditional's mean and +-2.5 of its SDs: wide enough that the
float32 rounding of the log joint is small against the differences (the curvature is a second
difference over the spacing squared), and a quadratic has the same fit at any spacing."""

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
        noise = {
            u: torch.randn((1, self.K, self.N), generator=self.gen, dtype=torch.float64, device="cpu").to(dev)
            for u in unit_latent
        }
        # in the program's dtype, as the particles and their log joints are: a unit's simulated
        # likelihood has a Monte Carlo error far above float32's rounding
        self.crn = {u: e.to(self.dtype) for u, e in noise.items()}
        # a particle z = mean + sd * e has log q(z) = -e^2 / 2 - log sd - log sqrt(2 pi): the part
        # without the sd is the same for every draw of the globals, (1, K, N), summed over latents
        self.crn_log_q = sum(
            (-0.5 * e * e - 0.5 * math.log(2 * math.pi) for e in noise.values()),
            torch.zeros((1, self.K, self.N), dtype=torch.float64, device=dev),
        ).to(self.dtype)

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

    def log_joint(
        self, glob: Latents, z: Latents, particles: int, widen: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For one chunk of m draws of the globals and ``particles`` values of each unit's latents
        (unconstrained): per-unit log p(unit's data, unit's latents | globals) + Jacobians,
        shape (m, particles, N), and the log prior of the globals, shape (m,)."""
        m, N, dev, values = next(iter(glob.values())).shape[0], self.N, self.dev, dict(glob)
        # a unit's terms are summed in the program's dtype (each is only as exact), then widened
        # once; in place, as the probes' and particles' terms are many values each
        unit = torch.zeros(m, particles, N, dtype=self.dtype, device=dev)
        for u in self.unit_latent:
            t = biject_to(self.view.supports[u])
            zu_f = z[u].to(self.dtype)
            x = t(zu_f)
            if t is not identity_transform:  # whose Jacobian term is a pass of zeros
                unit.add_(t.log_abs_det_jacobian(zu_f, x))
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
                unit.add_(lp)
            else:
                prior = prior + lp[:, 0].reshape(m, -1).double().sum(-1)
        return (unit.double() if widen else unit), prior

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
        self,
        glob: Latents,
        z: torch.Tensor,
        f: torch.Tensor,
        g: torch.Tensor | None,
        h: torch.Tensor,
        probes: tuple[float, ...] = _PROBES,
    ) -> Exact:
        """Each unit's log integral over its one scalar latent in closed form, ``(m, 1, N)``, the
        globals' log prior ``(m,)``, from the expansion (log joint ``f``, gradient ``g``, curvature
        ``h < 0``) at ``z``, and per draw whether the log joint is that quadratic in every unit
        (see :data:`GAUSSIAN_TOL`; where it is not, the integral is not used). ``g=None``: ``z`` is
        the quadratic's maximum (a zero gradient, without its passes over the probes).
        ``probes``: a subset of :data:`_PROBES` tells only where the log joint is *not* quadratic."""
        sd, dt = torch.rsqrt(-h), self.dtype
        c = torch.tensor(probes, dtype=dt, device=z.device).view(1, -1, 1)
        with torch.no_grad():
            at = z.to(dt) + c * sd.to(dt)
            probe, prior = self.log_joint(glob, {self.unit_latent[0]: at}, len(probes), widen=False)
        # the quadratic at z + c sd is f + c g sd - c^2 / 2 (h sd^2 = -1): few passes over the
        # probes, in the program's dtype as the log joint is (a check, not a term of the integral)
        off = probe - f.to(dt)
        if g is not None:
            off.sub_(c * (g * sd).to(dt))
            f = f - 0.5 * g * g / h
        ok = (off.add_(0.5 * c * c).abs_() <= GAUSSIAN_TOL).flatten(1).all(1)
        # log of the integral of exp(f + g t + h t^2 / 2) over t
        return Exact(f + 0.5 * torch.log(2 * math.pi / -h), prior, ok)

    def stencil_gaussian(
        self, glob: Latents, z: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, Exact] | None:
        """The units' integrals in closed form from the log joint at three points about the guide's
        conditional (mean ``z``, SD ``s``, each ``(m, 1, N)``): ``z`` and ``z +- c s``, ``c`` =
        :data:`_STENCIL`. They fix each unit's quadratic by central differences (gradient,
        curvature, so its mode and Laplace SD); the log joint at +-2 Laplace SDs about that mode must
        lie on it (:meth:`gaussian` with two probes). Returns each unit's mode, its Laplace SD and
        :class:`Exact` -- or None unless, for every unit of every draw, the quadratic is concave and
        both probes are on it. Two program runs without gradients, where the expansion at ``z``
        took a forward and two backward passes and its check a run over four probes."""
        u, z0, s0 = self.unit_latent[0], z[:, 0].to(self.dtype), s[:, 0].to(self.dtype)
        d = _STENCIL * s0
        with torch.no_grad():
            f, _ = self.log_joint(glob, {u: torch.stack([z0 - d, z0, z0 + d], 1)}, 3, widen=False)
            fm, f0, fp = f.unbind(1)
            # in float32, as the log joint is (and as differences first: neighbouring values are
            # close, so their differences are exact, and each formula below rounds once or twice)
            a, b = f0 - fm, fp - f0
            g = (a + b) / (2 * d)
            h = (b - a) / (d * d)
            if not bool((h < 0).all()):  # False for NaN too
                return None
        # the quadratic's maximum and curvature in float64 from the float32 differences (no
        # rounding at the log joint's magnitude), checked at +-2 Laplace SDs about its mode
        g, h = g.double(), h.double()
        mode = z[:, 0] - g / h
        exact = self.gaussian(
            glob,
            mode.unsqueeze(1),
            (f0.double() - 0.5 * g * g / h).unsqueeze(1),
            None,
            h.unsqueeze(1),
            probes=(-2.0, 2.0),
        )
        if not bool(exact.ok.all()):
            return None
        return mode.unsqueeze(1), torch.rsqrt(-h).unsqueeze(1), exact

    def laplace(
        self, glob: Latents, mean: Latents, sd: Latents, rows: int = 1, direct: bool = True
    ) -> tuple[Latents, Latents, Exact | None]:
        """Per-unit proposals N(mode, -1/h) for one chunk of draws of the globals, starting
        from the guide's conditional (mean, sd), each (m, 1, N). Units where the log joint is
        not finite or not concave at the start keep the guide's conditional. Third: the units'
        integrals in closed form (:meth:`stencil_gaussian`, or :meth:`gaussian` after the Newton
        steps; per draw, whether they hold), or None where they cannot be (several latents per
        unit).

        ``rows``: the draws are that many data sets' chunks one after another (see
        :func:`log_targets`); each stops its Newton steps by its own draws, as it would alone.
        ``direct``: try :meth:`stencil_gaussian` first (one scalar latent per unit)."""
        units = self.unit_latent
        if not units:
            return mean, sd, None
        try:
            if direct and len(units) == 1:
                (u,) = units
                found = self.stencil_gaussian(glob, mean[u], sd[u])
                if found is not None:
                    return {u: found[0]}, {u: UNIT_INFLATION * found[1]}, found[2]
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
            # one probe first: where it finds every draw off the quadratic already (a model whose
            # units take particles: this pass came every chunk), the other three cannot change that
            exact = self.gaussian(glob, best_z[u], best_f, best_g[u], h, probes=(1.0,))
            if bool(exact.ok.any()):
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
            # the closed form straight away, until a data set's units have taken particles
            direct = not any(ts[r].chunks[0] for r in rows)
            prop_mean, prop_sd, exact = ev.laplace(values, mean, sd, rows=len(rows), direct=direct)
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
                S, K, N = len(some), t0.K, t0.N
                # each data set's draws (S, m, 1, N) against its own particles' noise (S, 1, K, N):
                # broadcast, not the noise copied out to every draw first; in the program's dtype
                # up to each unit's log mean (see ``crn``)
                crn = {u: torch.stack([ts[rows[i]].crn[u] for i in some]) for u in units}
                pm = {u: prop_mean[u][pick].to(t0.dtype).view(S, m, 1, N) for u in units}
                ps = {u: prop_sd[u][pick].to(t0.dtype).view(S, m, 1, N) for u in units}
                z = {u: (pm[u] + ps[u] * crn[u]).view(S * m, K, N) for u in units}
                ev.target = programs([keys[rows[i]] for i in some], m)
                with torch.no_grad():
                    unit, prior = ev.log_joint({k: v[pick] for k, v in values.items()}, z, K, widen=False)
                # minus log q of the particles, from their noise (see ``crn_log_q``), in place
                unit = unit.view(S, m, K, N).sub_(torch.stack([ts[rows[i]].crn_log_q for i in some]))
                unit.add_(sum(ps[u].log() for u in units))
                total = prior + (torch.logsumexp(unit, dim=2).double() - math.log(K)).sum(-1).view(S * m)
                for j, i in enumerate(some):
                    out[rows[i]][a:b] = total[j * m : (j + 1) * m]
    return out
