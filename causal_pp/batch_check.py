"""The batch check: does a Pyro program broadcast over batch dimensions left of its own plates?

causal_pp runs a model with leading batch dimensions: SVI's particles and data sets
(:func:`~causal_pp.fit_many`), the importance correction's draws, and ``estimate``'s posterior
draws. Pyro's convention for such programs is to index and reduce from the right
(``w[..., 0]``, ``w.sum(-1)``); a program that indexes from the left (``w[0]``) either fails with
a shape error deep inside a fit, or -- worse -- broadcasts silently and mixes the draws.

:func:`batch_problem` runs the program twice, then once more with both runs' values stacked along
a plate left of every plate it uses, and requires every site's log density in the stacked run to
be each run's own. :meth:`causal_pp.CausalModel.check` runs it (and so does every fit) before any
work, and raises :class:`~causal_pp.errors.UnbatchableModelError` naming the site.

Examples
--------
>>> import pyro, pyro.distributions as dist
>>> from causal_pp.model import units
>>> def left(n):  # with a batch, w[0] is the first draw's w, not w's first entry
...     w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
...     with units(n):
...         pyro.sample("Y", dist.Normal(w[0] + w[1], 1.0))
>>> batch_problem(left, 3, max_plate_nesting=1).detail.startswith("it fails")
True
>>> def pooled(n):  # w.sum() adds up every draw's w: no error, and wrong
...     w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
...     with units(n):
...         pyro.sample("Y", dist.Normal(w.sum(), 1.0))
>>> batch_problem(pooled, 3, max_plate_nesting=1).site
'Y'
>>> def right(n):
...     w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
...     with units(n):
...         pyro.sample("Y", dist.Normal(w[..., 0] + w[..., 1], 1.0))
>>> batch_problem(right, 3, max_plate_nesting=1) is None
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro import poutine

from .log_density import site_log_density
from .program import sample_sites

__all__ = ["BATCH_CHECK_DRAWS", "BatchProblem", "batch_problem"]

BATCH_CHECK_DRAWS = 2
"""Runs stacked in the check (two tell a draw's own values from another draw's)."""

HINT = (
    "causal_pp runs a model with leading batch dimensions (posterior draws, SVI particles, data "
    "sets). Index vector-valued parameters from the right (w[..., 0], not w[0]; by a per-unit "
    "variable g, pyro.ops.indexing.Vindex(w)[..., g], not w[g]), reduce over dimensions counted "
    "from the right (w.sum(-1)), and keep values in torch (no .item(), float() or Python branching "
    "on a parameter)"
)


@dataclass(frozen=True)
class BatchProblem:
    """Why a program does not broadcast: the first site whose log density is not each draw's own
    (None if the stacked run fails outright), and the details."""

    site: str | None
    detail: str

    def message(self, name: str) -> str:
        where = f"site {self.site!r}" if self.site else "the program"
        return f"{name!r} does not broadcast over a batch of draws: {where}: {self.detail}. {HINT}."


def _stack(msgs: list[dict[str, Any]], P: int) -> torch.Tensor:
    """The runs' values of one site along a new dimension left of the site's P plate dimensions."""
    fn = msgs[0]["fn"]
    shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
    pad = (1,) * (P - len(fn.batch_shape))
    return torch.stack([m["value"].expand(shape).reshape(pad + shape) for m in msgs])


def _per_draw(lp: torch.Tensor, draws: int, P: int) -> torch.Tensor:
    lp = lp.expand(torch.broadcast_shapes(lp.shape, (draws,) + (1,) * P))
    return lp.reshape(draws, -1).sum(-1)


def batch_problem(
    fn: Callable[..., Any],
    n: int,
    *,
    max_plate_nesting: int,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> BatchProblem | None:
    """None if the program broadcasts over a batch of draws of its sites; else the first problem.

    The program runs :data:`BATCH_CHECK_DRAWS` times with ``n`` units (forked random stream, prior
    draws), then once conditioned on all runs' latent values at once, stacked along a plate at
    dimension ``-(max_plate_nesting + 1)``. Each site's log density there must equal its log
    density in each run (relative tolerance 1e-4). A program whose sites differ between runs
    (stochastic control flow) is not checked.
    """
    kwargs = dict(model_kwargs or {})
    P = max_plate_nesting
    with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
        runs = []
        for seed in range(BATCH_CHECK_DRAWS):
            torch.manual_seed(seed)
            runs.append(sample_sites(poutine.trace(fn).get_trace(n, *model_args, **kwargs)))
        if any(list(r) != list(runs[0]) for r in runs):
            return None
        free = [s for s, msg in runs[0].items() if not msg["is_observed"]]
        data = {s: _stack([r[s] for r in runs], P) for s in free}
        try:
            with pyro.plate("_batch_check", BATCH_CHECK_DRAWS, dim=-(P + 1)):
                stacked = sample_sites(
                    poutine.trace(poutine.condition(fn, data=data)).get_trace(n, *model_args, **kwargs)
                )
        except Exception as err:  # the shape error a fit would meet later, deep inside it
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return BatchProblem(
                None, f"it fails when run with a batch of draws ({type(err).__name__}: {first})"
            )
        for s in runs[0]:
            if s not in stacked:
                return BatchProblem(s, "the site is missing when the program runs with a batch of draws")
            alone = torch.stack([site_log_density(r[s]).double().sum() for r in runs])
            try:
                batched = _per_draw(site_log_density(stacked[s]).double(), BATCH_CHECK_DRAWS, P)
            except RuntimeError:
                return BatchProblem(s, "its log density does not have a batch dimension for the draws")
            if not torch.allclose(batched, alone, rtol=1e-4, atol=1e-4 * float(alone.abs().max()) + 1e-6):
                return BatchProblem(
                    s,
                    f"its log density with a batch of draws is {batched.tolist()}, but each draw alone "
                    f"gives {alone.tolist()}: it reads another draw's values",
                )
    return None
