"""The variational families SVI fits: Pyro autoguides, and their Gaussian in closed form."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import torch
from pyro.distributions import LowRankMultivariateNormal, MultivariateNormal
from pyro.infer.autoguide import (
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    init_to_median,
    init_to_sample,
)

from ..errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from ..program import ProgramStructure

__all__ = [
    "GUIDES",
    "INIT_DRAWS",
    "RESTART_INITS",
    "Moments",
    "global_dims",
    "guide_gaussian",
    "lowrank_moments",
    "make_guide",
    "start_init",
]


GUIDES = ("auto", "lowrank_mvn", "mvn", "normal", "structured")


def global_dims(s: ProgramStructure, globals_: list[str]) -> int:
    return sum(math.prod(s.sites[g].shape) for g in globals_)


#: Prior draws whose median is the first start's initial location (Pyro's ``init_to_median``).
INIT_DRAWS = 15


#: How restarts after the first are initialised (``SVI(restart_init=...)``).
RESTART_INITS = ("median", "prior")


def sampled_globals(start: int, globals_: Collection[str], restart_init: str = "median") -> frozenset[str]:
    """The global sites that restart ``start`` initialises at one prior draw; the others start at
    the median of :data:`INIT_DRAWS` prior draws (Pyro's ``init_to_median``).

    ``"median"``: every start at the median (of its own draws). ``"prior"``: the first start at
    the median, later ones with the globals at a prior draw. The median lies near the prior's
    centre, often a symmetry point of the likelihood (a confounder's effect of 0: U's sign is
    free), from which starts fall into different basins (front-door with a logit treatment at
    N = 5000: on some data sets most median starts end in a basin hundreds of nats worse); the best
    start is found only if the starts are ranked late enough (``restart_steps``). Prior-draw
    starts explore further, and need longer still: after a few hundred steps they still lie far
    above their optimum. Per-unit latents always start at the median: their multimodality
    follows the globals'.
    """
    return frozenset(globals_) if restart_init == "prior" and start > 0 else frozenset()


def start_init(start: int, globals_: Collection[str], restart_init: str = "median") -> Callable[..., Any]:
    """Pyro ``init_loc_fn`` of restart ``start`` (see :func:`sampled_globals`)."""
    median = init_to_median(num_samples=INIT_DRAWS)
    sampled = sampled_globals(start, globals_, restart_init)

    def init(site: dict[str, Any]) -> torch.Tensor:
        return init_to_sample(site) if site["name"] in sampled else median(site)

    return init


def make_guide(
    guide: str | Callable[[Callable[..., Any]], Any],
    model: Callable[..., Any],
    rank: int,
    latent_dim: int,
    init: Callable[..., Any] | None = None,
) -> Any:
    if callable(guide):
        return guide(model)
    if guide == "structured":  # only batched (causal_pp.inference.batched_structured)
        raise InvalidArgumentError(
            "guide='structured' has only a batched form, which enumerated discrete latents and "
            "SVI(batched=False) do not use; choose guide='auto' for this model."
        )
    init = init or init_to_median(num_samples=INIT_DRAWS)
    if guide in ("auto", "lowrank_mvn"):
        if latent_dim < 2:
            return AutoMultivariateNormal(model, init_loc_fn=init, init_scale=0.1)
        return AutoLowRankMultivariateNormal(
            model, init_loc_fn=init, init_scale=0.1, rank=max(1, min(rank, latent_dim - 1))
        )
    if guide == "mvn":
        return AutoMultivariateNormal(model, init_loc_fn=init, init_scale=0.1)
    return AutoNormal(model, init_loc_fn=init, init_scale=0.1)


#: A Gaussian's ``(loc, cov(rows, cols), marginal variances)``: ``cov`` gives a block of the
#: covariance matrix for two index tensors, without forming the whole matrix.
Moments = tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor]


def lowrank_moments(loc: torch.Tensor, W: torch.Tensor, d: torch.Tensor) -> Moments:
    """The :data:`Moments` of ``N(loc, W W^T + diag(d))``.

    Examples
    --------
    >>> _, cov, var = lowrank_moments(torch.zeros(2), torch.ones(2, 1), torch.ones(2))
    >>> cov(torch.arange(2), torch.arange(2)).tolist(), var.tolist()
    ([[2.0, 1.0], [1.0, 2.0]], [2.0, 2.0])
    """

    def cov(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return W[a] @ W[b].T + (a.unsqueeze(1) == b.unsqueeze(0)) * d[a].unsqueeze(1)

    return loc, cov, (W * W).sum(-1) + d


def guide_gaussian(g: Any) -> Moments | None:
    """(loc, cov(rows, cols), diag of cov) of an AutoContinuous guide's Gaussian, or None."""
    if not isinstance(g, (AutoLowRankMultivariateNormal, AutoMultivariateNormal)):
        return None
    post = g.get_posterior()
    loc = post.loc.detach()
    if isinstance(post, LowRankMultivariateNormal):
        return lowrank_moments(loc, post.cov_factor.detach(), post.cov_diag.detach())
    if isinstance(post, MultivariateNormal):
        L = post.scale_tril.detach()

        def cov_full(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return L[a] @ L[b].T

        return loc, cov_full, (L * L).sum(-1)
    return None  # pragma: no cover
