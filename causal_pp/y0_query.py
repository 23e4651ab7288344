"""y0 DSL queries: ``identify(graph, P(Y @ X))`` and ``posterior.estimate(P(Y @ X))``.

y0 writes an interventional distribution as a probability of counterfactual variables,
``P(Y @ X)`` (P(Y | do(X))), ``P(Y @ X | Z)`` (P(Y | do(X), Z)), ``P(Y @ X, Z @ X)`` (a joint
outcome). :func:`query_from_y0` translates such a probability into an
:class:`~causal_pp.Interventional`; this module registers y0's ``Probability`` on the tables of
:func:`~causal_pp.identify` and :func:`~causal_pp.estimate`, which translate, then decide or
estimate the translated query.

**Values.** y0's interventions are symbolic: ``X`` sets X to x, ``~X`` to another value x*. The
gate needs no values; estimation does, and by default ``x`` is 1 and ``x*`` is 0 (the coding of
:class:`~causal_pp.ATE`'s defaults). Pass ``values={"X": 2.5}`` to :func:`query_from_y0` for
other values, then estimate the :class:`~causal_pp.Interventional` it returns. Conditioning
variables get no values from y0 (``given`` names only): enough for the gate; estimation asks for
them (translate with ``given={"Z": 0.3}``).

**Not translated** (a :class:`~causal_pp.QueryError` says which): formulas (sums, products,
fractions -- estimands, not queries), observational probabilities (no intervention), and
counterfactual probabilities whose variables live in different worlds (``P(Y @ X, Z @ ~X)``,
``P(Y @ X | Z @ ~X)``): use :class:`~causal_pp.Counterfactual` / :class:`~causal_pp.ETT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from y0.dsl import CounterfactualVariable, Expression, Probability

from .errors import QueryError
from .estimation.dispatch import estimator
from .identification.dispatch import identifier
from .queries import Interventional

if TYPE_CHECKING:  # pragma: no cover
    from .estimation.dispatch import EstimateOptions
    from .graph import CausalGraph
    from .identification import Identification
    from .identification.dispatch import Assumptions
    from .posterior import CausalPosterior, Estimate

__all__ = ["STAR_VALUE", "UNSTARRED_VALUE", "query_from_y0"]

UNSTARRED_VALUE = 1.0
"""The value an intervention ``X`` (y0's x) sets by default."""
STAR_VALUE = 0.0
"""The value an intervention ``~X`` (y0's x*) sets by default."""


def _world(variable: Any) -> frozenset[tuple[str, bool]]:
    """The interventions of a y0 variable as (name, starred) pairs; empty for a plain variable."""
    if isinstance(variable, CounterfactualVariable):
        return frozenset((i.name, bool(i.star)) for i in variable.interventions)
    return frozenset()


def query_from_y0(
    expression: Any,
    graph: CausalGraph | None = None,
    *,
    values: Mapping[str, float] | None = None,
    given: Mapping[str, float] | None = None,
) -> Interventional:
    """The :class:`~causal_pp.Interventional` query a y0 probability expression asks.

    Parameters
    ----------
    expression
        A y0 ``Probability`` of variables in one interventional world, e.g. ``P(Y @ X)``,
        ``P(Y @ X | Z)``, ``P(Y @ (X, W))``.
    graph
        Maps y0 variable names back to node names (:meth:`CausalGraph.from_y0`, for names y0
        reserves); without it names are taken as they are.
    values
        Values of the interventions by name (default: x = 1, x* = 0, see the module docstring).
    given
        Values of the conditioning variables (default: names only, enough for identification).

    Raises
    ------
    QueryError
        The expression is not a single interventional probability (see the module docstring).

    Examples
    --------
    >>> from y0.dsl import P, X, Y, Z
    >>> query_from_y0(P(Y @ X))
    Interventional(outcome='Y', do={'X': 1.0})
    >>> query_from_y0(P(Y @ ~X | Z), values={"X": 2.0})
    Interventional(outcome='Y', do={'X': 2.0}, given=['Z'])
    >>> query_from_y0(P(Y))
    Traceback (most recent call last):
    ...
    causal_pp.errors.QueryError: y0 expression P(Y) has no intervention: it is an observational probability, not a causal query. Write the intervention with @, e.g. P(Y @ X).
    """
    if not isinstance(expression, Probability):
        kind = type(expression).__name__
        raise QueryError(
            f"y0 expression {expression} is a {kind}, a formula over probabilities (an estimand), not "
            "a query; pass one probability such as P(Y @ X)."
        )
    text = expression.to_text()
    outcomes, conditions = list(expression.children), list(expression.parents)
    worlds = {_world(v) for v in outcomes}
    if len(worlds) != 1:
        raise QueryError(
            f"y0 expression {text} asks about variables under different interventions (a counterfactual "
            "joint, across worlds); causal_pp translates one interventional world. Use causal_pp's "
            "Counterfactual query for cross-world questions."
        )
    world = worlds.pop()
    if not world:
        raise QueryError(
            f"y0 expression {text} has no intervention: it is an observational probability, not a causal "
            "query. Write the intervention with @, e.g. P(Y @ X)."
        )
    if any(_world(v) not in (frozenset(), world) for v in conditions):
        raise QueryError(
            f"y0 expression {text} conditions on a variable under another intervention (a counterfactual "
            "conditional, like the effect of treatment on the treated); use causal_pp's ETT or "
            "Counterfactual query."
        )
    if any(getattr(v, "star", None) is not None for v in [*outcomes, *conditions]):
        raise QueryError(
            f"y0 expression {text} gives a variable a value (a star); causal_pp asks about distributions."
        )
    names = {n for n, _ in world}
    if len(names) != len(world):
        raise QueryError(f"y0 expression {text} sets one variable to two values in one world.")

    def node(name: str) -> str:
        return graph.from_y0(name) if graph is not None else name

    vals = dict(values or {})
    do = {
        node(n): vals.get(node(n), vals.get(n, STAR_VALUE if star else UNSTARRED_VALUE)) for n, star in world
    }
    unknown = sorted(set(vals) - set(do) - names)
    if unknown:
        raise QueryError(
            f"values names {unknown}, which {text} does not intervene on (it sets {sorted(do)})."
        )
    cond_names = [node(v.name) for v in conditions]
    if given is not None:
        extra = sorted(set(given) - set(cond_names))
        if extra:
            raise QueryError(f"given names {extra}, which {text} does not condition on ({cond_names}).")
        cond: Any = {z: given.get(z) for z in cond_names}
    else:
        cond = cond_names or None
    return Interventional([node(v.name) for v in outcomes], do=do, given=cond)


@identifier.register(Expression)
def _(query: Expression, graph: CausalGraph, assumptions: Assumptions) -> Identification:
    translated = query_from_y0(query, graph).validate(graph)
    return identifier(translated, graph, assumptions)  # type: ignore[no-any-return]


@estimator.register(Expression)
def _(query: Expression, posterior: CausalPosterior, options: EstimateOptions) -> Estimate:
    return estimator(query_from_y0(query, posterior.graph), posterior, options)
