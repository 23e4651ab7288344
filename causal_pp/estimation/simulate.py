"""Simulating fresh units from a model under every posterior draw at once.

Draws are simulated together under a plate over draws placed left of the model's own plates,
the global parameters carrying a leading draws dimension (shape ``(draws, 1, ...)``). The model
must broadcast over it, as for Pyro's ``Predictive(parallel=True)``. Long simulations are split
into chunks of draws (:func:`chunks`), each chunk still vectorised.

Every per-unit site draws from its own random stream, keyed by (run key, site name)
(:class:`~causal_pp.handlers.KeyedNoise`: inverse-CDF draws for discrete sites, stratified
antithetic replicates of units on request), and each run reports, beside the sampled outcomes, their conditional means
given their parents (:func:`expected_outcome`, the Rao-Blackwellised contributions).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyro
import torch
from pyro import poutine

from ..errors import InferenceError, QueryError
from ..handlers import KeyedNoise, intervene
from ..handlers.internals import base_dist
from ..handlers.keyed_noise import replicates_for
from .weighting import log_weight

if TYPE_CHECKING:  # pragma: no cover
    from ..posterior import CausalPosterior
    from ..program import ProgramStructure

__all__ = [
    "MAX_ELEMENTS",
    "Run",
    "check_finite",
    "check_query_values",
    "chunks",
    "expected_outcome",
    "per_unit",
    "run_program",
    "select_draws",
    "vectorized",
]

MAX_ELEMENTS = 2**23
"""Simulations are chunked over draws so that one chunk holds about this many values per site."""


def select_draws(post: CausalPosterior, num_samples: int | None) -> tuple[torch.Tensor | None, int]:
    """Indices of ``num_samples`` evenly thinned draws (None: all), and the chains they keep."""
    total, c = post.num_draws, post.num_chains
    if num_samples is None or num_samples >= total:
        if num_samples is not None and num_samples > total:
            warnings.warn(
                f"causal_pp: num_samples={num_samples} but the posterior has {total} draws; using all.",
                UserWarning,
                stacklevel=4,
            )
        return None, c
    d = total // c
    if num_samples % c == 0:
        per = num_samples // c
        within = torch.linspace(0, d - 1, per).round().long()
        return torch.cat([within + i * d for i in range(c)]), c
    return torch.linspace(0, total - 1, num_samples).round().long(), 1


def chunks(total: int, num_units: int, structure: ProgramStructure, budget: int | None = None) -> list[int]:
    """Start indices of chunks of draws, each holding about ``budget`` (default :data:`MAX_ELEMENTS`) values per site."""
    budget = MAX_ELEMENTS if budget is None else budget
    n_sites = max(1, len(structure.unit_sites))
    size = max(1, budget // (num_units * n_sites))
    return list(range(0, total, size))


def vectorized(post: CausalPosterior, draws: Mapping[str, torch.Tensor], num: int) -> dict[str, torch.Tensor]:
    """Global draws reshaped for a plate over draws at dim -(max_plate_nesting + 1)."""
    s = post.structure
    P = s.max_plate_nesting
    out = {}
    for k, v in draws.items():
        info = s.sites[k]
        out[k] = v.reshape((num, *([1] * (P - info.batch_ndim)), *info.shape)).to(post.device)
    return out


def per_unit(structure: ProgramStructure, name: str, value: Any, num: int, n: int) -> torch.Tensor:
    """A per-unit site's value in a vectorised run as ``(num, n, *event)``."""
    info = structure.sites[name]
    P = structure.max_plate_nesting
    event = info.shape[len(info.shape) - info.event_ndim :] if info.event_ndim else ()
    full = (num, *([1] * (P - 1)), n, *event)
    value = torch.as_tensor(value)
    try:
        return torch.broadcast_to(value, full).reshape(num, n, *event)
    except RuntimeError:
        raise QueryError(
            f"site {name!r} has shape {tuple(value.shape)} in the simulation, which is not one value "
            "per unit; only per-unit variables of the units plate can be outcomes or evidence."
        ) from None


def expected_outcome(site: Mapping[str, Any]) -> torch.Tensor:
    """A site's conditional mean given its parents, ``site["fn"].mean``, where it is exact.

    Rao-Blackwellisation: E[Y] = E[E[Y | pa(Y)]], and averaging the conditional mean over units
    has no more variance than averaging sampled values. The sampled value is kept where the mean
    does not exist or is not known (Cauchy, Categorical, a transformed distribution), and where
    the value was set rather than drawn (an intervened or clamped site).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> tr = pyro.poutine.trace(lambda: pyro.sample("y", dist.Poisson(torch.tensor([2.0, 5.0])))).get_trace()
    >>> expected_outcome(tr.nodes["y"]).tolist()
    [2.0, 5.0]
    """
    value = torch.as_tensor(site["value"])
    if site["infer"].get("intervened", False) or site.get("is_observed", False):
        return value
    try:
        mean = base_dist(site["fn"]).mean
        mean = torch.broadcast_to(mean, value.shape)
    except (NotImplementedError, AttributeError, RuntimeError):
        return value
    dtype = torch.promote_types(mean.dtype, torch.float32)
    return torch.where(torch.isfinite(mean), mean.to(dtype), value.to(dtype))


@dataclass(frozen=True)
class Run:
    """One vectorised run of a program over ``num`` draws: per outcome ``(num, units, *event)``.

    Attributes
    ----------
    values
        The sampled outcomes (unit-level draws of the interventional distribution).
    means
        The Rao-Blackwellised contributions: each outcome's conditional mean given its parents
        (:func:`expected_outcome`), where the functional is a mean.
    logw
        Summed log-likelihood weights of the evidence per unit ``(num, units)`` (None without).
    replicates
        The units are this many independent replicates of consecutive units (stratified
        antithetic sampling), or None: independent units.
    """

    values: dict[str, torch.Tensor]
    means: dict[str, torch.Tensor]
    logw: torch.Tensor | None
    replicates: int | None


def run_program(
    post: CausalPosterior,
    actions: Mapping[str, float],
    evidence: Mapping[str, float],
    draws: Mapping[str, torch.Tensor],
    num: int,
    num_units: int,
    outcomes: tuple[str, ...],
    key: int = 0,
    stratify: bool = False,
    placeholders: frozenset[str] = frozenset(),
    memo: dict[Any, torch.Tensor] | None = None,
) -> Run:
    """One vectorised run of the interventional program for ``num`` draws at once.

    The evidence sites are clamped at their values (so their descendants see them); every per-unit
    site draws from a stream keyed by ``(key, site name)`` (:class:`~causal_pp.handlers.KeyedNoise`),
    so runs with the same key under different actions share their random numbers site by site.
    The intervened and clamped sites are not drawn (their natural values are never used), nor
    are ``placeholders`` (outcomes whose values are not needed: their ``values`` are then means).
    Runs that share ``memo`` (a dict) and ``key`` generate each site's random numbers once.
    """
    s = post.structure
    P = s.max_plate_nesting
    program = intervene(post.model.fn, {**actions, **evidence})
    cond = vectorized(post, draws, num)
    replicates = replicates_for(num_units) if stratify else None
    with (
        torch.no_grad(),
        pyro.validation_enabled(False),
        KeyedNoise(
            key,
            replicates=replicates,
            device=post.device,
            placeholders=frozenset(actions) | frozenset(evidence) | placeholders,
            memo=memo,
        ),
        pyro.plate("_draws", num, dim=-(P + 1)),
        poutine.condition(data=cond),
    ):
        tr = poutine.trace(program).get_trace(num_units, *post.model_args, **post.model_kwargs)
    values = {y: per_unit(s, y, tr.nodes[y]["value"], num, num_units) for y in outcomes}
    means = {y: per_unit(s, y, expected_outcome(tr.nodes[y]), num, num_units) for y in outcomes}
    logw = None
    for z in evidence:
        lw = per_unit(s, z, log_weight(tr.nodes[z]), num, num_units)
        lw = lw.reshape(num, num_units, -1).sum(-1)
        logw = lw if logw is None else logw + lw
    return Run(values, means, logw, replicates)


def check_query_values(post: CausalPosterior, pairs: Sequence[tuple[str, str, float]]) -> None:
    """Refuse a value a query gives a site it cannot take (outside its support, or overflowing
    the model's floating-point type), before any simulation: the model would extrapolate.

    ``pairs`` are ``(role, site, value)``, e.g. ``("do", "X", 2.0)``; the supports are read from one
    run of the program at the posterior-mean globals.
    """
    if not pairs:
        return
    means = {k: v.double().mean(0).to(v.dtype) for k, v in post.samples.items()}
    for role, name, value in pairs:
        post.model.check_values(
            {name: value}, role=role, params=means, model_args=post.model_args, model_kwargs=post.model_kwargs
        )


def check_finite(query: Any, samples: torch.Tensor) -> None:
    """An estimate that comes out non-finite is refused, naming the query."""
    bad = ~torch.isfinite(samples)
    if bad.any():
        rows = int(bad.reshape(bad.shape[0], -1).any(-1).sum())
        raise InferenceError(
            f"the estimate of {query} is not finite for {rows} of {bad.shape[0]} posterior draws: the "
            "model overflows or divides by zero at these values (check the query's values and the "
            "priors' scale)."
        )
