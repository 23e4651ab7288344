"""Likelihood weighting: per-unit weights of evidence, their effective size, and resampling.

Conditional queries (``given``) and counterfactual evidence weigh every simulated unit by the
density (or mass) of the evidence given its parents; functionals are self-normalised weighted
means, and unit-level draws are resampled by the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..handlers.internals import base_dist

__all__ = ["ess", "log_weight", "resample", "weighted_mean"]


def log_weight(site: Mapping[str, Any]) -> torch.Tensor:
    """Log-density of a trace site's (reported) value under its distribution, per unit.

    Event dimensions are summed; used for likelihood weighting of clamped evidence.

    Examples
    --------
    >>> import math, pyro, pyro.distributions as dist
    >>> tr = pyro.poutine.trace(lambda: pyro.sample("z", dist.Normal(0.0, 1.0))).get_trace()
    >>> bool(log_weight(tr.nodes["z"]) <= -0.5 * math.log(2 * math.pi))
    True
    """
    return base_dist(site["fn"]).log_prob(site["value"])


def ess(logw: torch.Tensor) -> torch.Tensor:
    """Per draw (row): the effective sample size of the weights ``exp(logw)``.

    Examples
    --------
    >>> ess(torch.zeros(1, 4))
    tensor([4.], dtype=torch.float64)
    """
    lw = logw.double()
    return torch.exp(2 * torch.logsumexp(lw, 1) - torch.logsumexp(2 * lw, 1)).nan_to_num(0.0)


def weighted_mean(v: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
    """Per draw: the self-normalised weighted mean of ``v`` ``(draws, units)``.

    Examples
    --------
    >>> weighted_mean(torch.tensor([[1.0, 3.0]]), torch.zeros(1, 2))
    tensor([2.], dtype=torch.float64)
    """
    w = torch.softmax(logw, dim=1)
    return (w * v.double()).sum(1)


def resample(
    values: Mapping[str, torch.Tensor], logw: torch.Tensor | None, seed: int
) -> dict[str, torch.Tensor]:
    """Resample every unit of every draw by its weight (multinomial, with replacement).

    Draws whose weights are all zero keep their units with equal weight.
    """
    if logw is None:
        return dict(values)
    w = torch.softmax(logw.double(), dim=1).nan_to_num(0.0)
    g = torch.Generator().manual_seed(int(seed))
    S, n = w.shape
    ok = w.sum(1) > 0
    w = torch.where(ok.unsqueeze(1), w, torch.full_like(w, 1.0 / n))
    idx = torch.multinomial(w, n, replacement=True, generator=g)
    out = {}
    for k, v in values.items():
        gather = idx.reshape(S, n, *([1] * (v.dim() - 2))).expand(S, n, *v.shape[2:])
        out[k] = torch.gather(v, 1, gather)
    return out
