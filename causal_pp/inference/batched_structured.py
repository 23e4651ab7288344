"""A batch of structured Gaussian guides: the globals jointly, each unit's latents given them.

The posterior of a latent variable model has a known shape: given the global parameters, the
units' latents are independent, and each unit's latents depend on the globals. The family

    g     ~ N(mu_g, L L^T)                           (full covariance over the G global dimensions)
    z_u | g ~ N(mu_u + A_u (g - mu_g), L_u L_u^T)    (unit u's latents, all sites together)

follows it: a full-rank Gaussian over the globals and, per unit, a linear-Gaussian regression of
its latents on them with a full covariance of its own (Pyro's ``AutoStructured`` with ``"linear"``
dependencies, row by row, and the units' conditionals block-diagonal). It is parametrised as
the low-rank family is, each factor scaled by its rows' SDs ``s``: ``g - mu_g = s_g (I + T) e_g``,
``z - mu_z = s_z (B e_g + (I + T_u) e_u)`` with ``T``, ``T_u`` strictly lower-triangular. Its
entropy is ``sum log s`` -- no determinant over all per-unit latents, which makes a step cheaper
than the low-rank family's for models with many latents per unit (the low-rank entropy's
capacitance matrix costs dims x rank^2 per row).

``B`` is sparse where the model is: a unit's latent regresses only on the noise of the globals it
shares a term of the log density with (:func:`unit_coupling`), which is where its posterior
conditional depends on the globals at all. For SARS-CoV-2 that is 7-10 of 54 globals per latent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence

import torch
import torch.nn.functional as F

from .batched_guide import Layout, RowGuide
from .guides import Moments

__all__ = ["BatchedStructuredGuide"]


def unit_blocks(layout: Layout, globals_: Collection[str], n: int) -> tuple[torch.Tensor, bool]:
    """The flat positions of each unit's latents, ``(n, d)``, and whether they are grouped by unit:
    per-unit sites have the unit first (their unconstrained shape ``(n, ...)``). A site that does
    not (another plate outside the units') makes every latent element its own block (``False``):
    the family is then diagonal given ``g``."""
    unit = [s for s in layout.slots if s.name not in globals_]
    if not unit:
        return torch.zeros((0, 0), dtype=torch.long), True
    if any(not s.unconstrained_shape or s.unconstrained_shape[0] != n for s in unit):
        flat = [i for s in unit for i in range(s.start, s.stop)]
        return torch.tensor(flat, dtype=torch.long).unsqueeze(1), False
    per = [torch.arange(s.start, s.stop).reshape(n, -1) for s in unit]
    return torch.cat(per, dim=1), True


def unit_coupling(
    log_joint: Callable[[torch.Tensor], torch.Tensor],
    at: torch.Tensor,
    g_index: torch.Tensor,
    blocks: torch.Tensor,
    probes: int = 2,
) -> torch.Tensor:
    """Which globals each of a unit's ``d`` latents is coupled to in the log joint: ``(d, G)`` bool.

    A unit's latents depend on a global in the posterior only through the terms of the log
    density they share, i.e. where the cross second derivative is not zero. It is read off
    ``probes`` random points around ``at`` ``(rows, dim)`` (a pattern that vanishes at a generic
    point vanishes everywhere), summed over the units with random weights (one backward pass per
    latent, for all units and rows at once), and NaN counts as coupled.

    Examples
    --------
    >>> def lj(z):  # z0 ~ N(b0, 1): the unit's latent is coupled to global 0, not to global 1
    ...     return -0.5 * (z[..., 2] - z[..., 0]) ** 2 - 0.5 * z[..., 1] ** 2
    >>> unit_coupling(lj, torch.zeros(1, 3), torch.tensor([0, 1]), torch.tensor([[2]]))
    tensor([[ True, False]])
    """
    units, d = blocks.shape
    gen = torch.Generator().manual_seed(0)  # fixed probes: the pattern is the model's, not a row's
    found = torch.zeros((d, len(g_index)), dtype=torch.bool, device=at.device)
    for _ in range(probes):
        with torch.enable_grad():
            z = (at + torch.randn(at.shape, generator=gen, dtype=at.dtype).to(at.device)).requires_grad_(True)
            (grad,) = torch.autograd.grad(log_joint(z.unsqueeze(0)).sum(), z, create_graph=True)
            w = torch.rand((at.shape[0], units), generator=gen, dtype=at.dtype).to(at.device) + 0.5
            for j in range(d):
                (h,) = torch.autograd.grad(
                    (grad[:, blocks[:, j]] * w).sum(), z, retain_graph=True, allow_unused=True
                )
                if h is not None:
                    found[j] |= (h[:, g_index] != 0).any(0)
    return found


class BatchedStructuredGuide(RowGuide):
    """``rows`` independent structured Gaussians (see the module docstring) over each row's latents.

    Parameters
    ----------
    layout
        The per-row latent layout.
    init_loc
        ``(rows, dim)`` initial locations.
    globals_
        The names of the global sites (the others in ``layout`` are per-unit latents).
    n
        The number of units (per-unit sites have the unit first).
    generators
        One ``torch.Generator`` per row: all of a row's randomness comes from it.
    init_scale
        Initial standard deviation of every unconstrained latent (the globals uncorrelated and
        every per-unit latent independent of the others at the start).

    Examples
    --------
    >>> import pyro.distributions as dist
    >>> from causal_pp.inference.batched_guide import Slot
    >>> real = dist.Normal(0, 1).support
    >>> lay = Layout((Slot("b", (), (2, 1), 0, 1, real), Slot("z", (3,), (2, 3), 1, 4, real, (3,))), rows=2)
    >>> gens = [torch.Generator().manual_seed(i) for i in range(2)]
    >>> g = BatchedStructuredGuide(lay, torch.zeros(2, 4), globals_=["b"], n=3, generators=gens)
    >>> g.sample(5).shape, g.noise_sizes
    (torch.Size([5, 2, 4]), (1, 3))
    """

    names = ("loc", "raw_scale", "tril", "dep", "unit_tril")

    def __init__(
        self,
        layout: Layout,
        init_loc: torch.Tensor,
        *,
        globals_: Collection[str],
        n: int,
        generators: Sequence[torch.Generator],
        init_scale: float = 0.1,
        log_joint: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        rows, dim = init_loc.shape
        self.layout, self.generators = layout, list(generators)
        dtype, device = init_loc.dtype, init_loc.device
        g_pos = [i for s in layout.slots if s.name in globals_ for i in range(s.start, s.stop)]
        blocks, self.grouped = unit_blocks(layout, globals_, n)
        self.g_index = torch.tensor(g_pos, dtype=torch.long).to(device)
        self.z_index = blocks.reshape(-1).to(device)  # unit by unit
        self.block = tuple(blocks.shape)
        # draws are made globals first, then the units' latents, and put back in the layout's order
        self.order = torch.argsort(torch.cat([self.g_index, self.z_index]))
        # globals first in the layout, as programs usually have them: the draws need no reordering
        self.in_order = bool((self.order == torch.arange(len(self.order), device=device)).all())
        G, (units, d) = len(g_pos), self.block
        # each latent regresses on the globals it is coupled to (all of them without log_joint),
        # padded to one width with a column of zeros at G: a dense einsum over (units, d, k)
        # is cheap where a gather per unit was not, and SARS-CoV-2's latents read 15 of 62
        if log_joint is None or not self.grouped or d == 0:
            coupled = torch.ones((d, G), dtype=torch.bool)
        else:
            coupled = unit_coupling(log_joint, init_loc.detach(), self.g_index, blocks.to(device)).cpu()
        k = max(1, int(coupled.sum(1).max())) if d else 1
        self.reads = torch.full((d, k), G, dtype=torch.long)
        for j in range(d):
            on = torch.nonzero(coupled[j]).flatten()
            self.reads[j, : len(on)] = on
        self.reads = self.reads.to(device)
        self.loc = init_loc.detach().clone().requires_grad_(True)
        start = torch.full((rows, dim), float(init_scale), dtype=dtype, device=device)
        self.raw_scale = (start + torch.log(-torch.expm1(-start))).requires_grad_(True)  # softplus^-1
        self.tril = torch.zeros((rows, G, G), dtype=dtype, device=device, requires_grad=True)
        self.dep = torch.zeros((rows, units, d, k), dtype=dtype, device=device, requires_grad=True)
        self.unit_tril = torch.zeros((rows, units, d, d), dtype=dtype, device=device, requires_grad=True)

    @property
    def noise_sizes(self) -> tuple[int, ...]:
        return (len(self.g_index), len(self.z_index))

    def drawer(self) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        g_index, z_index, reads = self.g_index, self.z_index, self.reads
        order = None if self.in_order else self.order  # no full-size gather where none is needed
        # strictly lower triangles by a constant mask: ``tril`` loops over the (rows x units) small
        # matrices, and was the slowest operation of a step with many rows (0.5 ms at 100 x 200)
        G, (_, d) = len(g_index), self.block
        lower_g = torch.ones((G, G), dtype=self.loc.dtype, device=self.loc.device).tril(-1)
        lower_u = torch.ones((d, d), dtype=self.loc.dtype, device=self.loc.device).tril(-1)

        def structured_draw(
            loc: torch.Tensor,
            raw_scale: torch.Tensor,
            tril: torch.Tensor,
            dep: torch.Tensor,
            unit_tril: torch.Tensor,
            e_g: torch.Tensor,
            e_z: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            scale = F.softplus(raw_scale)
            s_g, s_z = scale[:, g_index], scale[:, z_index]
            # every factor is scaled by its rows' SDs, as the low-rank family's is: its entries are
            # then correlation-like, O(1) whatever the latents' scales, and an optimiser's step
            # moves a draw in proportion to its SD (unscaled, a step of the regression weights
            # of thousands of per-unit latents made the loss noisier by thousands of nats)
            dg = s_g * (e_g + torch.einsum("rgh,nrh->nrg", tril * lower_g, e_g))
            # the latents regress on the noise of the globals they read, not on the globals
            # themselves: through (I + T) every unit's term would also pull on T, and T's own
            # signal (the globals' correlations) then drowned in thousands of units' -- the
            # guide's SD of the back-door ATE came out 13% narrower (calibration protocol)
            e_read = F.pad(e_g, (0, 1))[..., reads]  # (num, rows, d, k)
            e_u = e_z.reshape(*e_z.shape[:2], *dep.shape[1:3])
            # the noise first: the result then has the units innermost in memory (the other order
            # put the draws innermost, and every elementwise pass over it ran several times slower);
            # the same bits
            reg = torch.einsum("nrdk,rudk->nrud", e_read, dep)
            if d > 1:  # one latent per unit: its own triangle is empty
                reg = reg + torch.einsum("rude,nrue->nrud", unit_tril * lower_u, e_u)
            dz = s_z * reg.reshape(e_z.shape) + s_z * e_z
            dz_all = torch.cat([dg, dz], dim=-1)
            z = loc + (dz_all if order is None else dz_all[..., order])
            dim = scale.shape[-1]
            # the map from the noise to z is block lower-triangular with diagonal ``scale``
            return z, 0.5 * dim * (1.0 + math.log(2 * math.pi)) + torch.log(scale).sum(-1)

        return structured_draw

    def describe(self) -> str:
        """The family's shape in words, and whether a unit's latents were grouped.

        Examples
        --------
        >>> import pyro.distributions as dist
        >>> from causal_pp.inference.batched_guide import Slot
        >>> lay = Layout((Slot("b", (), (1, 1), 0, 1, dist.Normal(0, 1).support),), rows=1)
        >>> BatchedStructuredGuide(lay, torch.zeros(1, 1), globals_=["b"], n=3,
        ...                        generators=[torch.Generator()]).describe()
        'full-covariance normal over 1 global dimensions; no per-unit latents'
        """
        (units, d), G = self.block, len(self.g_index)
        head = f"full-covariance normal over {G} global dimensions"
        if units == 0:
            return f"{head}; no per-unit latents"
        if not self.grouped:
            return (
                f"{head}; each of {units} per-unit latent elements normal given them, alone (a "
                "per-unit site does not have the unit first, so a unit's latents are not grouped)"
            )
        k = self.reads.shape[1]
        sparse = f" (a latent's mean on the at most {k} of them it is coupled to)" if k < G else ""
        return f"{head}; each of {units} units' {d} latent(s) jointly normal given them{sparse}"

    def moments(self, row: int) -> Moments:
        """The joint Gaussian: the factor ``[L; B]`` on the globals' noise, plus the units' own
        block-diagonal ``L_u L_u^T`` (in the layout's order)."""
        with torch.no_grad():
            (units, d), dim = self.block, self.loc.shape[1]
            scale = F.softplus(self.raw_scale[row])
            s_g, s_z = scale[self.g_index], scale[self.z_index]
            G = len(self.g_index)
            lower = torch.eye(G, dtype=scale.dtype, device=scale.device) + self.tril[row].tril(-1)
            dep = self.dep[row]  # (units, d, k) -> the dense (units * d, G) regression
            dense = dep.new_zeros((units, d, G + 1))
            dense.scatter_(2, self.reads.expand(units, d, -1), dep)
            regression = dense[..., :G].reshape(units * d, G)
            factor = torch.cat([s_g[:, None] * lower, s_z[:, None] * regression])
            factor = factor[self.order]
            eye_u = torch.eye(d, dtype=scale.dtype, device=scale.device)
            Lu = s_z.reshape(units, d, 1) * (eye_u + self.unit_tril[row].tril(-1))
            own = torch.zeros((dim, d), dtype=scale.dtype, device=scale.device)
            own[self.z_index] = Lu.reshape(units * d, d)
            unit = torch.full((dim,), -1, dtype=torch.long, device=scale.device)
            unit[self.z_index] = torch.arange(units, device=scale.device).repeat_interleave(d)

        def cov(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            same = (unit[a].unsqueeze(1) == unit[b].unsqueeze(0)) & (unit[a] >= 0).unsqueeze(1)
            return factor[a] @ factor[b].T + same * (own[a] @ own[b].T)

        return self.loc[row].detach().clone(), cov, (factor * factor).sum(-1) + (own * own).sum(-1)
