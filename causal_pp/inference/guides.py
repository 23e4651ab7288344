"""The variational families SVI fits: Pyro autoguides, and their Gaussian in closed form."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from pyro.distributions import LowRankMultivariateNormal, MultivariateNormal
from pyro.infer.autoguide import (
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    init_to_median,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..program import ProgramStructure

__all__ = ["GUIDES", "global_dims", "guide_gaussian", "make_guide"]


GUIDES = ("auto", "lowrank_mvn", "mvn", "normal")


def global_dims(s: ProgramStructure, globals_: list[str]) -> int:
    return sum(math.prod(s.sites[g].shape) for g in globals_)


def make_guide(
    guide: str | Callable[[Callable[..., Any]], Any], model: Callable[..., Any], rank: int, latent_dim: int
) -> Any:
    if callable(guide):
        return guide(model)
    init = init_to_median(num_samples=15)
    if guide in ("auto", "lowrank_mvn"):
        if latent_dim < 2:
            return AutoMultivariateNormal(model, init_loc_fn=init, init_scale=0.1)
        return AutoLowRankMultivariateNormal(
            model, init_loc_fn=init, init_scale=0.1, rank=max(1, min(rank, latent_dim - 1))
        )
    if guide == "mvn":
        return AutoMultivariateNormal(model, init_loc_fn=init, init_scale=0.1)
    return AutoNormal(model, init_loc_fn=init, init_scale=0.1)


def guide_gaussian(
    g: Any,
) -> tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor] | None:
    """(loc, cov(rows, cols), diag of cov) of an AutoContinuous guide's Gaussian, or None."""
    if not isinstance(g, (AutoLowRankMultivariateNormal, AutoMultivariateNormal)):
        return None
    post = g.get_posterior()
    loc = post.loc.detach()
    if isinstance(post, LowRankMultivariateNormal):
        W, d = post.cov_factor.detach(), post.cov_diag.detach()

        def cov(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            out = W[a] @ W[b].T
            same = a.unsqueeze(1) == b.unsqueeze(0)
            return out + same * d[a].unsqueeze(1)

        return loc, cov, (W * W).sum(-1) + d
    if isinstance(post, MultivariateNormal):
        L = post.scale_tril.detach()

        def cov_full(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return L[a] @ L[b].T

        return loc, cov_full, (L * L).sum(-1)
    return None  # pragma: no cover
