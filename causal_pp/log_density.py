"""A sample site's log density, as Pyro's trace counts it, in fewer full-size operations.

:func:`site_log_density` is what ``Trace.compute_log_prob`` stores for a site: the distribution's
``log_prob`` at the site's value, times the site's ``scale`` (``poutine.scale``, subsampling) and
zero where its ``mask`` (``poutine.mask``, ``obs_mask``) is False. The fitting programs that sum
log densities themselves (the batched ELBO, the importance correction, the pointwise
log-likelihood of :func:`~causal_pp.inference_data.pointwise_log_likelihood`) read it here, so a user's
``poutine.scale`` or ``poutine.mask`` counts in every fit as it does in Pyro's own ELBO and NUTS.

:func:`log_density` is ``fn.log_prob(value)``, dispatched on the distribution's type
(``functools.singledispatch``) for the few families where ``log_prob`` wastes work in a
vectorised fit: a model's ``Normal(loc, 1.0)`` under plates of rows, particles and units holds its
scale broadcast to the full shape, and torch then takes the logarithm and the square of every copy.
The registered forms compute those on the distinct values of the parameters and are equal to
``log_prob`` up to float rounding, in a shape that broadcasts to ``log_prob``'s (it may lack the
dimensions the parameters and the value are all expanded along). A distribution subclass that
overrides ``log_prob`` keeps its own. Argument validation is not repeated here: values come from a
guide's support transforms or from data that :func:`~causal_pp.inference.validate_data` checked.

Examples
--------
>>> import pyro, pyro.distributions as dist, torch
>>> from pyro import poutine
>>> def model():
...     with poutine.mask(mask=torch.tensor([True, False])):
...         pyro.sample("y", dist.Normal(0.0, 2.0).expand([2]), obs=torch.tensor([1.0, 5.0]))
>>> site = poutine.trace(model).get_trace().nodes["y"]
>>> lp = site_log_density(site)
>>> bool(torch.allclose(lp, site["fn"].log_prob(site["value"]) * torch.tensor([1.0, 0.0])))
True
>>> float(lp[1])  # the masked value does not count
0.0
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from pyro.distributions.util import scale_and_mask, sum_rightmost
from torch.distributions import Distribution, Independent, Normal

from .runtime import ignore_jit_warnings

__all__ = ["distinct", "log_density", "site_log_density"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def distinct(t: torch.Tensor) -> torch.Tensor:
    """``t`` without its broadcast copies: size 1 along every dimension it is expanded over
    (stride 0), so that an elementwise function of it broadcasts back to ``t``'s shape.

    >>> s = torch.tensor(2.0).expand(3, 4)
    >>> distinct(s).shape
    torch.Size([1, 1])
    """
    if all(stride != 0 or size == 1 for stride, size in zip(t.stride(), t.shape, strict=True)):
        return t
    return t[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in t.stride())]


@functools.singledispatch
def log_density(fn: Distribution, value: torch.Tensor) -> torch.Tensor:
    """``fn.log_prob(value)``; cheaper for the registered families (see the module docstring).

    >>> import pyro.distributions as dist
    >>> d = dist.Normal(torch.zeros(3), 1.0)
    >>> v = torch.tensor([0.0, 1.0, -2.0])
    >>> bool(torch.allclose(log_density(d, v), d.log_prob(v)))
    True
    """
    return fn.log_prob(value)


@log_density.register
def _normal(fn: Normal, value: torch.Tensor) -> torch.Tensor:
    if type(fn).log_prob is not Normal.log_prob:  # a subclass with a density of its own
        return fn.log_prob(value)
    # the loc's distinct values too: an observed site whose mean does not read a unit's latents
    # (data and globals only) is the same for every particle of the importance correction, and was
    # computed once per particle. The result broadcasts to log_prob's shape; it is not expanded to
    # it, as a sum over an expanded tensor can round differently from one over the distinct values
    scale, loc = distinct(fn.scale), distinct(fn.loc)
    # value - 0 and t / 1 are exact no-ops, but each is a pass over the full (rows, particles,
    # units) shape, forward and backward: skipped for a standard normal prior or unit noise
    t = value if _constant(loc, 0.0) else value - loc
    t = t if _constant(scale, 1.0) else t / scale
    return -0.5 * t**2 - (scale.log() + _HALF_LOG_2PI)


def _constant(t: torch.Tensor, number: float) -> bool:
    """Whether ``t`` is the one number ``number``, fixed by the program (no gradient flows into it).

    Under ``torch.jit.trace`` the answer is baked into the trace. That is sound because a tensor
    with no gradient there does not depend on the trace's inputs (the guide's parameters, which
    every latent value depends on, and the noise that draws them), so it is the same number in
    every call. Off a trace only CPU tensors are checked: on a GPU the check would wait for the
    device at every site.
    """
    if t.requires_grad or t.numel() != 1:
        return False
    if torch.jit.is_tracing():
        with warnings.catch_warnings():
            ignore_jit_warnings()
            return bool(t == number)
    return t.device.type == "cpu" and bool(t == number)


@log_density.register
def _independent(fn: Independent, value: torch.Tensor) -> torch.Tensor:
    if type(fn).log_prob is not Independent.log_prob:
        return fn.log_prob(value)
    return sum_rightmost(log_density(fn.base_dist, value), fn.reinterpreted_batch_ndims)


def site_log_density(site: Mapping[str, Any]) -> torch.Tensor:
    """A sample site's log density at its value, scaled and masked as Pyro's trace counts it."""
    lp = log_density(site["fn"], site["value"])
    return scale_and_mask(lp, site.get("scale", 1.0), site.get("mask"))
