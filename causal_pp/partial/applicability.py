"""Whether bounds apply to a query on a graph, decided from the graph alone (for the gate's messages).

:func:`bounds_apply` is what :func:`causal_pp.identify` and ``CausalPosterior.estimate`` can
call when they refuse a query, to say whether :func:`causal_pp.bounds` is the next
step: the query type is supported, it names one outcome and gives values to what it
conditions on, and the response-function model is small enough -- assuming binary variables,
since the data are not known yet (more categories mean more response types).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import CausalPPError
from ..graph import CausalGraph
from .canonical import MAX_RESPONSE_TYPES, CanonicalModel, relevant_variables
from .causation import Causation
from .functionals import Contrast
from .queries import spec as _spec

__all__ = ["Applicability", "bounds_apply"]


@dataclass(frozen=True)
class Applicability:
    """Whether :func:`causal_pp.bounds` can answer a query, and how well.

    ``applies``: it can (for discrete data); ``sharp``: the bounds would be sharp;
    ``reason``: one plain sentence either way.

    Examples
    --------
    >>> Applicability(True, True, "sharp bounds apply").applies
    True
    """

    applies: bool
    sharp: bool
    reason: str


def _values(spec: Contrast | Causation) -> list[tuple[str, float]]:
    """The values a query sets or conditions on, by variable."""
    if isinstance(spec, Causation):
        return [(spec.treatment, spec.treated), (spec.treatment, spec.control)]
    return [pair for arm in spec.arms for pair in (*arm.do, *arm.given)]


def bounds_apply(
    graph: CausalGraph, query: Any, *, max_response_types: int = MAX_RESPONSE_TYPES
) -> Applicability:
    """Whether bounds apply to ``query`` on ``graph`` (binary variables assumed).

    Never raises for an unsupported query: it says why in ``reason``.

    Examples
    --------
    >>> from causal_pp import ATE, ETT, CausalGraph
    >>> bow = CausalGraph.parse("X -> Y; X <-> Y")
    >>> bounds_apply(bow, ATE("X", "Y")).sharp
    True
    >>> bounds_apply(bow, ETT("X", "Y")).applies
    False
    """
    try:
        spec = _spec(query, structure_only=True)
        query.validate(graph)
        variables = relevant_variables(graph, spec.mentioned)
        domains = {v: {0, 1} for v in variables}
        for name, value in _values(spec):
            if float(value).is_integer():
                domains[name].add(int(value))
        model = CanonicalModel(
            graph, variables, {v: tuple(sorted(d)) for v, d in domains.items()}, max_types=max_response_types
        )
        model.codimension()  # the size checks of the posterior's set-up
        exact = spec.target(model, None).exact
    except CausalPPError as err:
        return Applicability(False, False, f"bounds do not apply: {err}")
    given_names = [k for arm in getattr(spec, "arms", ()) for k, _ in arm.given]  # values needed by bounds()
    sharp = model.sharp and exact
    how = "sharp" if sharp else "valid but possibly loose"
    call = "causal_pp.bounds(graph, query, data)"
    extra = f" (with values for {sorted(set(given_names))})" if given_names else ""
    return Applicability(
        True,
        sharp,
        f"{how} bounds apply for discrete data{extra}: {call} gives their posterior.",
    )
