"""The table from query type to the algorithm that decides it.

:func:`identifier` is a :func:`functools.singledispatch` function: each query type registers the
function that decides it (``causal_pp.identification.interventional`` registers
:class:`~causal_pp.Interventional` and :class:`~causal_pp.ATE`;
``causal_pp.identification.counterfactual`` the counterfactual queries). A registered function
returns the verdict (identified or not); it never raises for a refusal -- :func:`causal_pp.identify`
does that when asked to be strict.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    from ..graph import CausalGraph

__all__ = ["Assumptions", "identifier"]


@dataclass(frozen=True)
class Assumptions:
    """Assumptions beyond the graph that widen what is identified (each named by the user).

    Attributes
    ----------
    monotonic
        PN/PS/PNS: the outcome is monotone in the treatment (Tian & Pearl 2000).
    binary_treatment
        P(outcome_{X=x} | X=x') with X taking only the values x and x' (Shpitser & Pearl 2009).
    """

    monotonic: bool = False
    binary_treatment: bool = False


@functools.singledispatch
def identifier(query: Any, graph: CausalGraph, assumptions: Assumptions) -> Any:
    """Decide ``query`` on ``graph``; dispatches on the query's type.

    Examples
    --------
    >>> import causal_pp  # registers every query type
    >>> sorted(t.__name__ for t in identifier.registry if t is not object)
    ['ATE', 'Counterfactual', 'ETT', 'Expression', 'Interventional', 'PN', 'PNS', 'PS']
    """
    known = ", ".join(sorted(t.__name__ for t in identifier.registry if t is not object))
    raise QueryError(f"identify() takes one of the queries {known}; got {type(query).__name__}.")
