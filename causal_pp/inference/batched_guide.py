"""A batch of independent low-rank Gaussian guides, one per row (data set, or start of a data set).

Fitting many data sets of one model at once puts every data set in a row of an outer plate
(see :mod:`causal_pp.inference.batched`). Each row needs its own variational family, independent
of the others: Pyro's :class:`~pyro.infer.autoguide.AutoLowRankMultivariateNormal` would put one
joint Gaussian over all rows. :class:`BatchedLowRankGuide` is its row-wise twin -- the same
parametrisation (``loc``; ``scale`` softplus-positive; ``cov_factor`` scaled by ``scale``; rank =
global dimensions + 2), in the same unconstrained space (``biject_to`` of each site's support),
initialised the same way (prior medians of 15 draws, ``init_scale`` 0.1) -- with a leading row
dimension on every parameter. Every random number a row uses comes from that row's own
generator, so a row's fit does not depend on which other rows share its batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import LowRankMultivariateNormal
from torch.distributions import biject_to
from torch.distributions.transforms import identity_transform

from ..program import sample_sites
from .guides import Moments, lowrank_moments
from .importance_target import GaussianView

__all__ = [
    "BatchedLowRankGuide",
    "Layout",
    "RowGuide",
    "Slot",
    "draw",
    "entropy",
    "median_init",
    "prototype",
]


@dataclass(frozen=True)
class Slot:
    """One latent site in the flat per-row vector.

    Attributes
    ----------
    name
        Site name.
    shape
        The site's value shape in the single-data-set program (what a posterior draw has).
    batched_shape
        Its value shape in the batched program, rows first (e.g. ``(rows, 1)`` for a scalar global).
    start, stop
        Its slice of the flat unconstrained vector of one row.
    """

    name: str
    shape: tuple[int, ...]
    batched_shape: tuple[int, ...]
    start: int
    stop: int
    support: Any
    unconstrained_shape: tuple[int, ...] = ()

    @property
    def transform(self) -> Any:
        return biject_to(self.support)


@dataclass(frozen=True)
class Layout:
    """Where each latent site lives in a row's flat unconstrained vector, and how to unpack it."""

    slots: tuple[Slot, ...]
    rows: int

    @property
    def dim(self) -> int:
        """Unconstrained dimensions per row."""
        return self.slots[-1].stop if self.slots else 0

    @classmethod
    def of(
        cls, single: Mapping[str, Any], batched: Mapping[str, Any], names: Sequence[str], rows: int
    ) -> Layout:
        """From one trace of the single program and one of the batched program (both sites by name)."""
        slots, start = [], 0
        for name in names:
            site = single[name]
            t = biject_to(site["fn"].support)
            ushape = tuple(t.inv.forward_shape(tuple(site["value"].shape)))
            size = math.prod(ushape)
            slots.append(
                Slot(
                    name,
                    tuple(site["value"].shape),
                    tuple(batched[name]["value"].shape),
                    start,
                    start + size,
                    site["fn"].support,
                    ushape,
                )
            )
            start += size
        return cls(tuple(slots), rows)

    def unpack(self, z: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``z`` (num, rows, dim) -> constrained values ``(num, *batched_shape)`` and log |J| (num, rows)."""
        num, rows = z.shape[0], z.shape[1]
        values, log_j = {}, torch.zeros(num, rows, dtype=z.dtype, device=z.device)
        # one split, not a slice per site: a slice's gradient is a zero-filled copy of the whole
        # of ``z``, one per site, summed; the split's is one concatenation
        parts = z.split([s.stop - s.start for s in self.slots], dim=-1)
        for s, part in zip(self.slots, parts, strict=True):
            t = s.transform
            u = part.reshape(num, rows, *s.unconstrained_shape)
            x = t(u)
            if t is not identity_transform:  # whose term is a pass of zeros, and a sum of them
                log_j = log_j + t.log_abs_det_jacobian(u, x).reshape(num, rows, -1).sum(-1)
            values[s.name] = x.reshape(num, rows, *s.batched_shape[1:])
        return values, log_j

    def per_row(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """``z`` (num, rows, dim) -> constrained values per row, ``(num, rows, *shape)``."""
        num, rows = z.shape[0], z.shape[1]
        out = {}
        for s in self.slots:
            out[s.name] = s.transform(z[..., s.start : s.stop].reshape(num, rows, *s.unconstrained_shape))
        return out


def median_init(
    conditioned: Callable[[], Any],
    layout: Layout,
    seed: int,
    max_plate_nesting: int,
    num_samples: int = 15,
    sampled: Collection[str] = (),
) -> torch.Tensor:
    """One row's initial location: the median of ``num_samples`` prior draws per latent element,
    in unconstrained space (Pyro's ``init_to_median``), drawn with this row's own seed in one
    vectorised run of the program; the sites in ``sampled`` start at one prior draw instead
    (Pyro's ``init_to_sample``; see :func:`~causal_pp.inference.guides.sampled_globals`)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
        torch.manual_seed(int(seed))
        with pyro.plate("_init", num_samples, dim=-(max_plate_nesting + 1)):
            tr = poutine.trace(conditioned).get_trace()
    parts = []
    for s in layout.slots:
        value = tr.nodes[s.name]["value"].detach()
        value = value.expand(num_samples, *value.shape[1:]) if value.shape[0] == 1 else value
        value = value.reshape(num_samples, *s.shape)
        start = value[0] if s.name in sampled else value.median(0).values
        parts.append(s.transform.inv(start).reshape(-1))
    return torch.cat(parts) if parts else torch.zeros(0)


class RowGuide:
    """What every batched family shares: ``rows`` independent Gaussians over each row's flat
    unconstrained latent vector, their parameters with the row first, and each row's own noise.

    A family sets ``names`` (its parameter attributes, in :attr:`params` order) and ``noise_sizes``
    (the standard-normal inputs of one draw), and implements :meth:`drawer`, :meth:`moments` and
    :meth:`describe`.
    """

    names: tuple[str, ...] = ()
    layout: Layout
    generators: list[torch.Generator]
    loc: torch.Tensor

    @property
    def params(self) -> list[torch.Tensor]:
        return [getattr(self, k) for k in self.names]

    @property
    def noise_sizes(self) -> tuple[int, ...]:
        raise NotImplementedError

    def drawer(self) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        """``f(*params, *noise)`` -> draws ``(num, rows, dim)`` and entropies ``(rows,)``: tensors
        only, so that the ELBO around it can be traced once (:func:`torch.jit.trace`)."""
        raise NotImplementedError

    def moments(self, row: int) -> Moments:
        """Row ``row``'s Gaussian (detached), as :data:`~causal_pp.inference.guides.Moments`."""
        raise NotImplementedError

    def gaussian(self, row: int) -> GaussianView:
        """Row ``row``'s Gaussian with its site layout: what the importance correction needs."""
        slots = self.layout.slots
        return GaussianView(
            *self.moments(row),
            {s.name: (s.start, s.stop) for s in slots},
            {s.name: tuple(s.transform.inv.forward_shape(s.shape)) for s in slots},
            {s.name: s.support for s in slots},
        )

    def describe(self) -> str:
        """The family's shape in words (a fit's ``diagnostics["guide_family"]``)."""
        raise NotImplementedError

    def noise(self, num: int, size: int) -> torch.Tensor:
        """Standard normal draws ``(num, rows, size)``, each row from its own generator."""
        dtype, device = self.loc.dtype, self.loc.device
        return torch.stack(
            [torch.randn((num, size), generator=g, dtype=dtype).to(device) for g in self.generators], dim=1
        )

    def sample(self, num: int) -> torch.Tensor:
        """``num`` reparametrised draws per row ``(num, rows, dim)``."""
        noise = [self.noise(num, size) for size in self.noise_sizes]
        return self.drawer()(*self.params, *noise)[0]

    def noise_bank(
        self, num: int, steps: int, live: Sequence[bool] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Standard normal noise for ``steps`` steps of ``num`` draws, one tensor
        ``(steps, num, rows, size)`` per entry of :attr:`noise_sizes`, each row from its own
        generator (drawn in one call per row).

        Rows that are not ``live`` (default: all are) get zeros and leave their generator as it
        was: a row that has stopped draws nothing more while the others go on, so its later draws
        (its posterior) do not depend on how long its batch mates run."""
        out = []
        for size in self.noise_sizes:
            per_row = [
                torch.randn((steps, num, size), generator=g, dtype=self.loc.dtype)
                if live is None or live[i]
                else torch.zeros((steps, num, size), dtype=self.loc.dtype)
                for i, g in enumerate(self.generators)
            ]
            out.append(torch.stack(per_row, dim=2).to(self.loc.device))
        return tuple(out)

    def put(self, index: torch.Tensor, rows: RowGuide) -> None:
        """Write the parameters of ``rows`` (a :meth:`select` of this guide) back into rows ``index``."""
        with torch.no_grad():
            for mine, theirs in zip(self.params, rows.params, strict=True):
                mine[index] = theirs.detach()

    def select(self, index: torch.Tensor) -> RowGuide:
        """A guide made of the given rows (e.g. the best start of each data set), detached."""
        out = copy.copy(self)
        out.layout = Layout(self.layout.slots, len(index))
        out.generators = [self.generators[int(i)] for i in index]
        for k in self.names:
            setattr(out, k, getattr(self, k).detach()[index].clone().requires_grad_(True))
        return out


class BatchedLowRankGuide(RowGuide):
    """``rows`` independent low-rank-plus-diagonal Gaussians over each row's latent vector.

    Parameters
    ----------
    layout
        The per-row latent layout.
    init_loc
        ``(rows, dim)`` initial locations.
    rank
        Rank of the low-rank part.
    generators
        One ``torch.Generator`` per row: all of a row's randomness (initial factor, particles,
        draws) comes from it.
    init_scale
        Initial standard deviation of every unconstrained latent.

    Examples
    --------
    >>> import pyro.distributions as dist
    >>> lay = Layout((Slot("b", (), (2, 1), 0, 1, dist.Normal(0, 1).support),), rows=2)
    >>> gens = [torch.Generator().manual_seed(i) for i in range(2)]
    >>> g = BatchedLowRankGuide(lay, torch.zeros(2, 1), rank=1, generators=gens)
    >>> g.sample(3).shape
    torch.Size([3, 2, 1])
    """

    names = ("loc", "raw_scale", "cov_factor")

    def __init__(
        self,
        layout: Layout,
        init_loc: torch.Tensor,
        *,
        rank: int,
        generators: Sequence[torch.Generator],
        init_scale: float = 0.1,
    ) -> None:
        rows, dim = init_loc.shape
        self.layout, self.rank, self.generators = layout, rank, list(generators)
        dtype, device = init_loc.dtype, init_loc.device
        self.loc = init_loc.detach().clone().requires_grad_(True)
        # the softplus-positive scale of AutoLowRankMultivariateNormal, stored unconstrained
        start = torch.full((rows, dim), 0.5**0.5 * init_scale, dtype=dtype, device=device)
        self.raw_scale = (start + torch.log(-torch.expm1(-start))).requires_grad_(True)
        factor = torch.stack(
            [
                torch.randn((dim, rank), generator=g, dtype=dtype).to(device) / rank**0.5
                for g in self.generators
            ]
        )
        self.cov_factor = factor.requires_grad_(True)

    @property
    def noise_sizes(self) -> tuple[int, ...]:
        return (self.rank, self.loc.shape[1])

    def drawer(self) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        return draw

    def describe(self) -> str:
        return f"low-rank normal over all {self.loc.shape[1]} latent dimensions, rank {self.rank}"

    def moments(self, row: int) -> Moments:
        q = self.posterior()
        return lowrank_moments(q.loc[row].detach(), q.cov_factor[row].detach(), q.cov_diag[row].detach())

    def posterior(self) -> LowRankMultivariateNormal:
        """The rows' Gaussians, batch shape ``(rows,)``."""
        scale = F.softplus(self.raw_scale)
        return LowRankMultivariateNormal(self.loc, self.cov_factor * scale.unsqueeze(-1), scale * scale)


def draw(
    loc: torch.Tensor, raw_scale: torch.Tensor, cov_factor: torch.Tensor, e_w: torch.Tensor, e_d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparametrised draws ``loc + (W * scale) e_w + scale e_d`` and the rows' Gaussian entropies.

    ``e_w`` ``(num, rows, rank)``, ``e_d`` ``(num, rows, dim)`` standard normal; returns
    ``(num, rows, dim)`` and ``(rows,)``. The ELBO uses the entropy in closed form rather than
    ``-log q`` at the draws: the same expectation, with less noise in its gradient and its value.
    """
    scale = F.softplus(raw_scale)
    # scale * (W e_w + e_d) = (W * scale) e_w + scale e_d, without forming W * scale: for a model
    # with thousands of per-unit latents W is (rows, dim, rank) and each pass over it counts
    z = loc + scale * (torch.einsum("rdk,nrk->nrd", cov_factor, e_w) + e_d)
    return z, entropy(cov_factor, scale)


def entropy(cov_factor: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Entropy of N(., (W*scale)(W*scale)^T + diag(scale^2)) per row, by the matrix determinant lemma:
    log det = log det(I + W^T W) + 2 sum log scale.

    Examples
    --------
    >>> W, s = torch.zeros(1, 2, 1), torch.ones(1, 2)
    >>> round(float(entropy(W, s)[0]), 4)  # a standard bivariate normal: log(2 pi e)
    2.8379
    """
    dim, rank = cov_factor.shape[-2], cov_factor.shape[-1]
    capacitance = (
        torch.eye(rank, dtype=cov_factor.dtype, device=cov_factor.device)
        + cov_factor.transpose(-1, -2) @ cov_factor
    )
    logdet = 2 * torch.log(torch.diagonal(torch.linalg.cholesky(capacitance), dim1=-2, dim2=-1)).sum(-1)
    logdet = logdet + 2 * torch.log(scale).sum(-1)
    return 0.5 * (dim * (1.0 + math.log(2 * math.pi)) + logdet)


def prototype(fn: Callable[[], Any]) -> dict[str, Any]:
    """One run of a program: its sample sites by name (no subsample or factor sites)."""
    with torch.no_grad(), pyro.validation_enabled(False):
        return sample_sites(poutine.trace(fn).get_trace())
