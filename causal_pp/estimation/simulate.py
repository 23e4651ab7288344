"""Simulating fresh units from a model under every posterior draw at once.

Draws are simulated together under a plate over draws placed left of the model's own plates,
the global parameters carrying a leading draws dimension (shape ``(draws, 1, ...)``). The model
must broadcast over it, as for Pyro's ``Predictive(parallel=True)``. Long simulations are split
into chunks of draws (:func:`chunks`), each chunk still vectorised.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyro
import torch
from pyro import poutine

from ..errors import QueryError
from ..handlers import intervene
from .weighting import log_weight

if TYPE_CHECKING:  # pragma: no cover
    from ..posterior import CausalPosterior
    from ..program import ProgramStructure

__all__ = ["MAX_ELEMENTS", "chunks", "per_unit", "run_program", "select_draws", "vectorized"]

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


def run_program(
    post: CausalPosterior,
    actions: Mapping[str, float],
    evidence: Mapping[str, float],
    draws: Mapping[str, torch.Tensor],
    num: int,
    num_units: int,
    outcomes: tuple[str, ...],
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """One vectorised run of the interventional program for ``num`` draws at once.

    The evidence sites are clamped at their values (so their descendants see them); returns
    the outcomes per unit and the summed log-weights of the evidence (None without evidence).
    """
    s = post.structure
    P = s.max_plate_nesting
    program = intervene(post.model.fn, {**actions, **evidence})
    cond = vectorized(post, draws, num)
    with (
        torch.no_grad(),
        pyro.validation_enabled(False),
        pyro.plate("_draws", num, dim=-(P + 1)),
        poutine.condition(data=cond),
    ):
        tr = poutine.trace(program).get_trace(num_units, *post.model_args, **post.model_kwargs)
    values = {y: per_unit(s, y, tr.nodes[y]["value"], num, num_units) for y in outcomes}
    logw = None
    for z in evidence:
        lw = per_unit(s, z, log_weight(tr.nodes[z]), num, num_units)
        lw = lw.reshape(num, num_units, -1).sum(-1)
        logw = lw if logw is None else logw + lw
    return values, logw
