"""causal_pp's own estimands: the formula that computes an identified query from P(V).

:func:`derive_estimand` runs the same c-component recursion as the identification gate's hedge
criterion (Tian & Pearl 2002; Shpitser & Pearl 2006) on the latent projection, but instead of
only deciding, it builds the formula:

* **ID**, P(y | do(x)): restrict to the ancestors H of Y (a marginal of P(V) is the observational
  distribution of the ancestral subgraph); with D the ancestors of Y once X is removed,
  ``P(y | do(x)) = Σ_{D∖Y} Π_i Q[D_i]`` over the districts D_i of G[D].
* Each Q[D_i] starts from the district S of G[H] that holds it, ``Q[S] = Π_{v∈S} P(v | pillow(v))``
  with ``pillow(v)`` the district of ``v`` and its parents in the subgraph of the nodes up to ``v``
  in a topological order (the ordered local Markov property of the latent projection).
* Tian's recursion from Q[T] to Q[C]: ``A = An(C)`` in G[T]; ``A = C`` gives ``Σ_{T∖C} Q[T]``;
  ``A = T`` is a hedge (not identified, ``None``); otherwise ``Q[A] = Σ_{T∖A} Q[T]`` (the
  ancestral-set step) and the district T' of G[A] that holds C is
  ``Q[T'] = Π_{v∈T'} Q[A](v | a_{<v})``, each conditional a ratio of prefix marginals of Q[A]
  (ID's "line 7"), then recurse on T'.
* **IDC**, P(y | do(x), z): conditions move to interventions while do-calculus rule 2 allows,
  then ``P(y | do(x'), z') = P(y, z' | do(x')) / Σ_y P(y, z' | do(x'))``.

The result is an expression tree of small frozen dataclasses (:class:`Probability`,
:class:`Product`, :class:`Sum`, :class:`Ratio`, :class:`One`), simplified as it is built:
a summed variable that appears only as an outcome of one conditional is marginalised away,
``P(a | b, c) P(b | c)`` becomes ``P(a, b | c)`` (the chain rule, applied only when the
conditioning sets line up exactly), factors that do not depend on a summed variable move out of
its sum, common factors of a ratio cancel, and ``P(a, b | c) / P(b | c)`` becomes
``P(a | b, c)`` (in a last pass also inside a sum whose indices the denominator does not use).
Every step is an identity, so the simplified formula equals the raw recursion; the tests check
every formula against exact interventional distributions of random discrete SCMs.

Notation: a variable name stands for that variable at its value in the query (``X`` is the value
x set by ``do``, ``Y`` the outcome's value); a summation index that would clash with a visible
name gets a prime (``X'``). A formula may mention a variable that is not in the query (``Z`` in
the napkin): the formula takes the same value for every value of it (a Verma constraint), and
:meth:`Estimand.evaluate` uses any value at which it is defined.
"""

from __future__ import annotations

import itertools as itt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

# The only imports of causal_pp internals (the identification package is being split; keep them here).
from ..errors import (
    DataError,
    GraphError,
    InvalidArgumentError,
    LatentVariableQueryError,
    OverlappingQueryError,
    QueryError,
    UnknownVariableError,
)
from ..graph import CausalGraph
from .expression import Expression, JointTable, Var, align_table, evaluate_expression
from .hedge import ADMG, idc_reduce
from .simplify import Simplifier, rename_indices

__all__ = ["Estimand", "derive_estimand"]


@dataclass(frozen=True)
class Estimand:
    """causal_pp's formula for an identified query, as a functional of the observational P(V).

    Attributes
    ----------
    outcomes, treatments, conditions
        The query P(outcomes | do(treatments), conditions), each in topological order.
    expression
        The simplified formula (a tree of :class:`Probability`, :class:`Product`, :class:`Sum`,
        :class:`Ratio`, :class:`One`).
    algorithm
        ``"ID"`` or ``"IDC"``.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.identification.estimand import derive_estimand
    >>> est = derive_estimand(CausalGraph.parse("Z -> X -> Y; Z -> Y"), ["X"], ["Y"])
    >>> print(est.equation())
    P(Y | do(X)) = Σ_{Z} P(Y | X, Z) P(Z)
    >>> est.to_latex()
    '\\\\sum_{Z} P(Y \\\\mid X, Z) \\\\, P(Z)'
    """

    outcomes: tuple[str, ...]
    treatments: tuple[str, ...]
    conditions: tuple[str, ...]
    expression: Expression
    algorithm: str

    @property
    def query_text(self) -> str:
        """The query in the formula's notation, e.g. ``P(Y | do(X), Z)``."""
        cond = "".join(f", {c}" for c in self.conditions)
        do = f" | do({', '.join(self.treatments)})" if self.treatments else ""
        if not self.treatments and self.conditions:
            return f"P({', '.join(self.outcomes)} | {', '.join(self.conditions)})"
        return f"P({', '.join(self.outcomes)}{do}{cond})"

    @property
    def variables(self) -> tuple[str, ...]:
        """The query's variables: outcomes, treatments, conditions (the axes of :meth:`table`)."""
        return (*self.outcomes, *self.treatments, *self.conditions)

    @property
    def extra(self) -> tuple[str, ...]:
        """Variables the formula mentions outside the query; its value does not depend on them."""
        return tuple(sorted({v.name for v in self.expression.free} - set(self.variables)))

    def to_text(self, ascii: bool = False) -> str:
        """The formula as text (``ascii=True``: ``sum_{..}`` for ``Σ_{..}``)."""
        return self.expression.to_text(ascii)

    def __str__(self) -> str:
        return self.to_text()

    def equation(self, ascii: bool = False) -> str:
        """``query = formula`` as text."""
        return f"{self.query_text} = {self.to_text(ascii)}"

    def to_latex(self) -> str:
        """The formula as LaTeX (math mode, without delimiters)."""
        return self.expression.to_latex()

    def table(self, joint: JointTable) -> np.ndarray:
        """The formula at every value of the query's variables, axes in :attr:`variables` order.

        Variables of :attr:`extra` are set to the first value at which the whole table is defined.

        Raises
        ------
        DataError
            If no such value exists (``joint`` is not positive where the formula conditions).

        Examples
        --------
        >>> import numpy as np
        >>> from causal_pp import CausalGraph
        >>> from causal_pp.identification.estimand import JointTable, derive_estimand
        >>> est = derive_estimand(CausalGraph.parse("X -> Y"), ["X"], ["Y"])
        >>> est.table(JointTable(np.array([[0.1, 0.4], [0.3, 0.2]]), ("X", "Y"))).round(2).tolist()
        [[0.2, 0.6], [0.8, 0.4]]
        """
        arr, vs = evaluate_expression(self.expression, joint)
        names = self.variables
        extra = tuple(v for v in vs if v.name not in names)
        for combo in itt.product(*(range(joint.size(v.name)) for v in extra)):
            sub = arr[tuple(combo[extra.index(v)] if v in extra else slice(None) for v in vs)]
            if np.all(np.isfinite(sub)):
                return self._expand(sub, tuple(v.name for v in vs if v not in extra), joint)
        raise DataError(
            f"{self.query_text} = {self} is undefined on this joint distribution: it conditions on "
            "or divides by an event of probability 0 (the formula needs positivity there)."
        )

    def _expand(self, arr: np.ndarray, names: tuple[str, ...], joint: JointTable) -> np.ndarray:
        target = self.variables
        aligned = align_table(arr, tuple(Var(n) for n in names), tuple(Var(n) for n in target))
        return np.broadcast_to(aligned, tuple(joint.size(n) for n in target)).copy()

    def evaluate(self, joint: JointTable, values: Mapping[str, int]) -> float:
        """The formula's value on ``joint`` at the query's ``values`` (positions on each axis).

        Parameters
        ----------
        joint
            The exact observational distribution.
        values
            A value for every outcome, treatment and condition; variables of :attr:`extra` may be
            given too (otherwise any value where the formula is defined is used).

        Raises
        ------
        InvalidArgumentError
            A query variable has no value, or a value is not a position on its axis.
        DataError
            The formula is undefined there (a conditional on an event of probability 0).

        Examples
        --------
        >>> import numpy as np
        >>> from causal_pp import CausalGraph
        >>> from causal_pp.identification.estimand import JointTable, derive_estimand
        >>> est = derive_estimand(CausalGraph.parse("X -> Y"), ["X"], ["Y"])
        >>> est.evaluate(JointTable(np.array([[0.1, 0.4], [0.3, 0.2]]), ("X", "Y")), {"X": 1, "Y": 1})
        0.4
        """
        if not isinstance(joint, JointTable):
            raise InvalidArgumentError(f"evaluate() needs a JointTable; got {type(joint).__name__}.")
        if not isinstance(values, Mapping):
            raise InvalidArgumentError(f"values must be a mapping {{name: position}}; got {values!r}.")
        missing = [n for n in self.variables if n not in values]
        if missing:
            raise InvalidArgumentError(f"give a value for {missing} to evaluate {self.query_text}.")
        index: dict[str, int] = {}
        for name, value in values.items():
            size = joint.size(name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float)):
                raise InvalidArgumentError(f"values[{name!r}] must be a position on the axis; got {value!r}.")
            if value != int(value) or not 0 <= int(value) < size:
                raise InvalidArgumentError(f"values[{name!r}] = {value!r} is not one of 0..{size - 1}.")
            index[name] = int(value)
        arr, vs = evaluate_expression(self.expression, joint)
        extra = [v for v in vs if v.name not in self.variables and v.name not in index]
        for combo in itt.product(*(range(joint.size(v.name)) for v in extra)):
            pick = dict(zip(extra, combo, strict=True))
            out = float(arr[tuple(pick[v] if v in pick else index[v.name] for v in vs)])
            if math.isfinite(out):
                return out
        raise DataError(
            f"{self.query_text} = {self} is undefined at {dict(values)}: it conditions on or divides "
            "by an event of probability 0 (the formula needs positivity there)."
        )


def _names(value: Any, role: str) -> frozenset[str]:
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise QueryError(f"{role} must be a variable name or a list of names; got {value!r}.") from None
    for n in names:
        if not isinstance(n, str) or not n:
            raise QueryError(f"{role} must hold non-empty variable names; got {n!r}.")
    return frozenset(names)


def _topological(admg: ADMG) -> tuple[str, ...]:
    g = nx.DiGraph()
    g.add_nodes_from(admg.nodes)
    g.add_edges_from(admg.directed)
    return tuple(nx.lexicographical_topological_sort(g))


class _Derivation:
    """Tian's c-component recursion on one ancestral subgraph, emitting expressions."""

    def __init__(self, admg: ADMG, order: tuple[str, ...], simp: Simplifier) -> None:
        self.admg = admg
        self.order = order
        self.simp = simp
        self.position = {v: i for i, v in enumerate(order)}

    def sorted(self, nodes: Iterable[str]) -> list[str]:
        return sorted(nodes, key=self.position.__getitem__)

    def district_factor(self, s: frozenset[str]) -> Expression:
        """Q[S] for a district S of the (ancestral) graph: Π_{v∈S} P(v | pillow(v))."""
        parents: dict[str, set[str]] = {}
        for a, b in self.admg.directed:
            parents.setdefault(b, set()).add(a)
        factors = []
        for v in self.sorted(s):
            prefix = self.admg.restrict(self.order[: self.position[v] + 1])
            dis = next(d for d in prefix.districts() if v in d)
            pillow = (set(dis) | {p for d in dis for p in parents.get(d, ())}) - {v}
            factors.append(self.simp.prob([Var(v)], [Var(p) for p in pillow]))
        return self.simp.product(factors)

    def marginalise(self, q: Expression, over: Iterable[str]) -> Expression:
        return self.simp.sum([Var(v) for v in over], q)

    def tian(self, c: frozenset[str], t: frozenset[str], q: Expression) -> Expression | None:
        """Q[C] from Q[T] (C ⊆ T, T a c-component), or None at a hedge."""
        while True:
            a = self.admg.restrict(t).ancestors(c) & t
            if a == c:
                return self.marginalise(q, t - c)
            if a == t:
                return None
            q_a = self.marginalise(q, t - a)  # A is ancestral in G[T]: Q[A] = Σ_{T∖A} Q[T]
            t2 = next(d for d in self.admg.restrict(a).districts() if c <= d)
            # Line 7: Q[T'] = Π_{v∈T'} Q[A](v | a_{<v}), a ratio of prefix marginals of Q[A].
            in_order = self.sorted(a)
            factors = []
            for v in self.sorted(t2):
                i = in_order.index(v)
                num = self.marginalise(q_a, in_order[i + 1 :])
                den = self.marginalise(q_a, in_order[i:])
                factors.append(self.simp.ratio([num], [den]))
            q, t = self.simp.product(factors), t2


def _id_expression(admg: ADMG, x: frozenset[str], y: frozenset[str], simp: Simplifier) -> Expression | None:
    """P(y | do(x)) as an (unrenamed) expression, or None if not identifiable."""
    h = admg.ancestors(y)  # the ancestral subgraph's distribution is the marginal P(h)
    g = admg.restrict(h)
    x = x & h
    order = _topological(g)
    run = _Derivation(g, order, simp)
    d = g.restrict(h - x).ancestors(y)
    districts = g.districts()
    factors = []
    for c in sorted(g.restrict(d).districts(), key=lambda s: sorted(s)):
        s = next(s for s in districts if c <= s)
        q = run.tian(c, s, run.district_factor(s))
        if q is None:
            return None
        factors.append(q)
    return run.marginalise(simp.product(factors), d - y)


def derive_estimand(
    graph: CausalGraph,
    treatments: str | Iterable[str],
    outcomes: str | Iterable[str],
    conditions: str | Iterable[str] = (),
) -> Estimand | None:
    """causal_pp's formula for P(outcomes | do(treatments), conditions), or None if not identified.

    Parameters
    ----------
    graph
        The causal DAG with its latent nodes marked; the formula is derived on its latent
        projection.
    treatments, outcomes, conditions
        Observed variable names (one name or several). ``treatments`` may be empty (then the
        query is observational).

    Returns
    -------
    Estimand or None
        The simplified formula in observational probabilities, or None when the query is not
        identifiable (a hedge blocks it) — the same verdict as the gate's hedge criterion.

    Raises
    ------
    GraphError
        ``graph`` is not a :class:`~causal_pp.CausalGraph`.
    QueryError, UnknownVariableError, LatentVariableQueryError, OverlappingQueryError
        No outcome, a name that is not a node, a latent name, or a name in two roles.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.identification.estimand import derive_estimand
    >>> frontdoor = CausalGraph.parse("X -> M -> Y; X <-> Y")
    >>> print(derive_estimand(frontdoor, "X", "Y"))
    Σ_{M} P(M | X) Σ_{X'} P(Y | M, X') P(X')
    >>> napkin = CausalGraph.parse("W -> Z -> X -> Y; W <-> X; W <-> Y")
    >>> print(derive_estimand(napkin, "X", "Y"))
    [Σ_{W} P(Y, X | Z, W) P(W)] / [Σ_{W} P(X | Z, W) P(W)]
    >>> derive_estimand(CausalGraph.parse("X -> Y; X <-> Y"), "X", "Y") is None
    True
    """
    if not isinstance(graph, CausalGraph):
        raise GraphError(f"derive_estimand() needs a CausalGraph; got {type(graph).__name__}.")
    x = _names(treatments, "treatments")
    y = _names(outcomes, "outcomes")
    z = _names(conditions, "conditions")
    if not y:
        raise QueryError("outcomes is empty; name the variable(s) whose distribution you want.")
    for role, names in (("treatment", x), ("outcome", y), ("condition", z)):
        for n in sorted(names):
            if n not in graph:
                raise UnknownVariableError(
                    f"{role} {n!r} is not a node of the graph; nodes are {list(graph.nodes)}."
                )
            if graph.is_latent(n):
                raise LatentVariableQueryError(
                    f"{role} {n!r} is latent (never observed); no formula uses it."
                )
    for a, b in ((x, y), (x, z), (y, z)):
        if a & b:
            raise OverlappingQueryError(f"{sorted(a & b)} plays two roles in the query; give it one.")

    admg = ADMG.of(graph)
    simp = Simplifier({v: i for i, v in enumerate(_topological(admg))})
    if z:
        # IDC: rule 2 turns conditions into interventions; the rest is a conditional of ID.
        x2, z2, _ = idc_reduce(admg, x, y, z)
    else:
        x2, z2 = x, frozenset()
    joint = _id_expression(admg, x2, y | z2, simp)
    if joint is None:
        return None
    expr = simp.ratio([joint], [simp.sum([Var(v) for v in y], joint)]) if z2 else joint
    expr = simp.polish(expr)
    expr = rename_indices(expr, expr.free, {})

    def order(names: frozenset[str]) -> tuple[str, ...]:
        return tuple(sorted(names, key=lambda n: (simp.rank[n], n)))

    return Estimand(order(y), order(x), order(z), expr, "IDC" if z else "ID")
