"""Which queries the bounds answer: a dispatch table from query type to a bounds specification.

The only place in :mod:`causal_pp.partial` that imports the query classes. Each registered type
becomes a :class:`~.functionals.Contrast` (interventional expectations and their contrasts) or
a :class:`~.causation.Causation` (probabilities of causation); a new query type is supported by
registering one more function with :func:`spec` (``functools.singledispatch``).
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import ArgumentTypeError, QueryError
from ..queries import ATE, PN, PNS, PS, Interventional
from .causation import Causation
from .functionals import Arm, Contrast

__all__ = ["spec"]

SUPPORTED = "Interventional, ATE, PN, PS and PNS"


@functools.singledispatch
def spec(query: Any, *, structure_only: bool = False) -> Contrast | Causation:
    """The bounds specification of ``query``.

    With ``structure_only``, a conditioning variable given without a value (enough for
    identification) gets a placeholder value: the result is only fit for questions about the
    graph (which variables matter, how large the model is), not for computing bounds.

    Raises
    ------
    ArgumentTypeError
        The query's type has no bounds (the message names the type and the supported ones).
    QueryError
        The query cannot be bounded as asked (several outcomes, a conditioning variable
        without a value).

    Examples
    --------
    >>> from causal_pp import ATE
    >>> spec(ATE("X", "Y")).label
    'E[Y | do(X=1)] - E[Y | do(X=0)]'
    """
    raise ArgumentTypeError(f"bounds answer {SUPPORTED} queries; got {query!r} ({type(query).__name__}).")


def _given(query: Any, structure_only: bool = False) -> tuple[tuple[str, float], ...]:
    if structure_only:
        return tuple((k, 0.0 if v is None else float(v)) for k, v in query.given)
    missing = [k for k, v in query.given if v is None]
    if missing:
        raise QueryError(
            f"{query} conditions on {missing} without a value; bounds need the value, e.g. given={{'{missing[0]}': 1}}."
        )
    return tuple((k, float(v)) for k, v in query.given)


@spec.register(Interventional)
def _interventional(query: Interventional, *, structure_only: bool = False) -> Contrast:
    if len(query.outcome) != 1:
        raise QueryError(
            f"{query} has the joint outcome {list(query.outcome)}; bounds are for one outcome's expectation "
            "(ask about each outcome separately)."
        )
    return Contrast(query.outcome[0], (Arm(1.0, tuple(query.do), _given(query, structure_only)),))


@spec.register(ATE)
def _ate(query: ATE, *, structure_only: bool = False) -> Contrast:
    given = _given(query, structure_only)
    return Contrast(
        query.outcome,
        (
            Arm(1.0, ((query.treatment, query.treated),), given),
            Arm(-1.0, ((query.treatment, query.control),), given),
        ),
    )


def _causation(kind: str, query: Any) -> Causation:
    return Causation(
        kind, query.treatment, query.outcome, query.treated, query.control, query.outcome_value, str(query)
    )


@spec.register(PN)
def _pn(query: PN, *, structure_only: bool = False) -> Causation:
    return _causation("PN", query)


@spec.register(PS)
def _ps(query: PS, *, structure_only: bool = False) -> Causation:
    return _causation("PS", query)


@spec.register(PNS)
def _pns(query: PNS, *, structure_only: bool = False) -> Causation:
    return _causation("PNS", query)
