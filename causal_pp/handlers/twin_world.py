"""Twin-world counterfactual programs: ChiRho's ``TwinWorldCounterfactual`` with shared noise."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
from chirho.counterfactual.handlers import TwinWorldCounterfactual

from ..errors import UnknownVariableError
from .intervene import intervene
from .shared_noise import SharedNoise

if TYPE_CHECKING:  # pragma: no cover
    from ..model import CausalModel

__all__ = ["WORLD", "TwinWorldProgram", "twin_world"]


WORLD = "__fresh_split__"
"""Name of ChiRho's twin-world index: 0 factual, 1 counterfactual."""


class TwinWorldProgram:
    """The twin-world program of a :class:`~causal_pp.CausalModel`: call it like the model.

    Values downstream of the intervention carry a world dimension of size 2 at
    :attr:`world_dim` (index 0 factual, 1 counterfactual); the rest are shared. Read worlds with
    :meth:`worlds` on a trace.

    Attributes
    ----------
    model, actions, factual
        The model, the hypothetical intervention, and the factual evidence.
    world_dim
        The (negative) dimension of the world index.
    """

    def __init__(
        self,
        model: CausalModel,
        actions: Mapping[str, Any],
        factual: Mapping[str, Any],
        world_dim: int,
    ) -> None:
        self.model = model
        self.actions = MappingProxyType(dict(actions))
        self.factual = MappingProxyType(dict(factual))
        self.world_dim = world_dim
        self._program = SharedNoise(self.factual)(intervene(model.fn, self.actions))

    def __call__(self, n: int, *args: Any, **kwargs: Any) -> Any:
        with TwinWorldCounterfactual(first_available_dim=self.world_dim):
            return self._program(n, *args, **kwargs)

    def worlds(self, value: torch.Tensor, event_dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(factual, counterfactual) parts of a traced value; the world dimension and the size-1
        dimensions left of the model's plates are dropped (a value without a world dimension is
        the same in both worlds).

        Examples
        --------
        >>> import torch
        >>> p = TwinWorldProgram.__new__(TwinWorldProgram); p.world_dim = -3
        >>> [t.tolist() for t in p.worlds(torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]]))]
        [[1.0, 2.0], [3.0, 4.0]]
        """
        keep = -self.world_dim - 2 + event_dim  # the model's plate dimensions and the event dimensions
        d = value.dim() - event_dim + self.world_dim
        parts = [value.select(d, 0), value.select(d, 1)] if d >= 0 and value.shape[d] > 1 else [value, value]
        out = []
        for v in parts:
            while v.dim() > keep and v.shape[0] == 1:
                v = v[0]
            out.append(v)
        return out[0], out[1]

    def __repr__(self) -> str:
        return f"TwinWorldProgram({self.model.name}, do={dict(self.actions)}, factual={dict(self.factual)})"


def _check_names(model: CausalModel, names: Mapping[str, Any], role: str) -> None:
    for k in names:
        if k not in model.graph:
            raise UnknownVariableError(
                f"{role} {k!r} is not a node of the DAG (nodes: {list(model.graph.nodes)})."
            )


def twin_world(
    model: CausalModel,
    do: Mapping[str, Any],
    factual: Mapping[str, Any] | None = None,
    *,
    world_dim: int | None = None,
) -> TwinWorldProgram:
    """The twin-world counterfactual program of ``model`` under ``do``, given ``factual``.

    Every per-unit site is rewritten by :class:`SharedNoise` (exogenous noise shared between
    the worlds), ``do`` is applied with ChiRho under ``TwinWorldCounterfactual``, and the
    factual evidence is conditioned *in the factual world only*, by abduction of the noise
    (see the module docstring): the factor sites ``<name>__evidence`` carry
    ``log p(evidence | parents)``.

    Parameters
    ----------
    model
        The :class:`~causal_pp.CausalModel`.
    do
        ``{node: value}``: the hypothetical intervention.
    factual
        ``{node: value}`` observed in the actual world.
    world_dim
        Dimension of the world index; default ``-(max_plate_nesting + 2)``, left of the model's
        plates and of one vectorising plate (e.g. over posterior draws).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, causal_model, units
    >>> @causal_model(CausalGraph.parse("X -> Y"))
    ... def m(n):
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(2 * x, 1.0))
    >>> prog = m.twin_world(do={"X": 0.0}, factual={"X": 1.0, "Y": 3.0})
    >>> tr = pyro.poutine.trace(prog).get_trace(1)
    >>> [round(float(v), 3) for v in prog.worlds(tr.nodes["Y"]["value"])]  # y - 2*1 + 2*0
    [3.0, 1.0]
    """
    acts = dict(model.intervene(do).actions)  # validated against the DAG there
    factual = dict(factual or {})
    _check_names(model, factual, "factual variable")
    P = model.inspect().max_plate_nesting
    return TwinWorldProgram(model, acts, factual, world_dim if world_dim is not None else -(P + 2))
