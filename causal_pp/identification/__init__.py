"""The identification gate: can a causal query be computed from the observed variables?

:func:`identify` decides P(Y | do(X)) with the ID algorithm and P(Y | do(X), Z) with IDC
(Shpitser & Pearl 2006, 2008) on the latent projection of the graph. Two independent methods
decide every query and must agree:

1. y0's ``identify_outcomes`` (0.2.11), called with its node-dropping bug in
   ``NxMixedGraph.remove_in_edges`` patched for the duration of the call;
2. our own hedge criterion: Tian's c-component recursion for ID, and Rule-2 reduction by
   d-separation followed by the same recursion for IDC.

The verdict is the conjunction: a query is identified only if both say so (a disagreement
refuses the query and says so, since estimating a non-identified query is the failure this
library exists to prevent). The plain-words reason for a refusal comes from the hedge found
by method 2. y0's returned formula is kept as :attr:`Identification.estimand`, labelled as
y0's: it is known to be numerically wrong on some graphs (e.g. the napkin).
"""

from __future__ import annotations

import contextlib
import itertools as itt
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import networkx as nx

from ..errors import GraphError, NotIdentifiableError, QueryError
from ..graph import CausalGraph
from ..queries import ATE, Interventional

if TYPE_CHECKING:  # pragma: no cover
    from y0.dsl import Expression
    from y0.graph import NxMixedGraph

    from ..counterfactual import CounterfactualIdentification, CounterfactualQuery

__all__ = ["Identification", "identify"]

_Y0_VERSION = "0.2.11"


# --- y0, with its bugs worked around -----------------------------------------------------

_PATCH_LOCK = threading.RLock()


def _remove_in_edges_keeping_nodes(self: NxMixedGraph, vertices: Any) -> NxMixedGraph:
    from y0.graph import _ensure_set

    vertices = _ensure_set(vertices)
    return self.from_edges(
        nodes=self.nodes(),
        directed=[(u, v) for u, v in self.directed.edges() if v not in vertices],
        undirected=[(u, v) for u, v in self.undirected.edges() if u not in vertices and v not in vertices],
    )


def _m_separated(graph: NxMixedGraph, a: Any, b: Any, *, conditions: Iterable[Any] = ()) -> bool:
    """Whether ``a`` and ``b`` are m-separated given ``conditions`` in an ADMG.

    Replaces y0 0.2.11's ``are_d_separated`` inside IDC: y0 moralises only along directed
    edges, so it misses collider paths through bidirected edges (``Y -> C <-> Z`` given ``C``)
    and lets rule 2 fire where it does not hold. Here: the augmented (moral) graph of the
    ancestral set of ``{a, b} ∪ conditions`` joins every two nodes of ``D ∪ pa(D)`` for each
    district ``D`` (Richardson 2003), then ``a`` and ``b`` are separated iff no path avoids
    ``conditions``.
    """
    conditions = set(conditions)
    keep = graph.ancestors_inclusive({a, b} | conditions)
    sub = graph.subgraph(keep)
    moral = nx.Graph()
    moral.add_nodes_from(sub.nodes())
    moral.add_edges_from(sub.directed.edges())
    moral.add_edges_from(sub.undirected.edges())
    for district in sub.districts():
        closure = set(district)
        for v in district:
            closure.update(sub.directed.predecessors(v))
        moral.add_edges_from(itt.combinations(closure, 2))
    moral.remove_nodes_from(conditions - {a, b})
    return not nx.has_path(moral, a, b)


@contextlib.contextmanager
def _y0_mutilation_keeps_nodes() -> Iterator[None]:
    """Patch two y0 0.2.11 bugs for the duration of one call, under a lock, always restoring.

    1. ``NxMixedGraph.remove_in_edges`` builds the mutilated graph from the intervened nodes
       plus the edges that remain, so nodes left without edges vanish and ID/IDC crash with
       KeyError (y0 pitfall #3). y0 re-creates plain ``NxMixedGraph`` objects inside its
       algorithms, so a subclass cannot carry the fix; the method is swapped.
    2. IDC's rule-2 test calls ``are_d_separated``, which ignores collider paths through
       bidirected edges; it is swapped for :func:`_m_separated` in ``y0.algorithm.identify.id_c``.
       Unpatched, IDC wrongly refuses some identifiable conditional queries and (masked by
       our own check) wrongly accepts some that are not identifiable.
    """
    from y0.algorithm.identify import id_c
    from y0.graph import NxMixedGraph

    with _PATCH_LOCK:
        original = NxMixedGraph.remove_in_edges
        original_dsep = id_c.are_d_separated
        NxMixedGraph.remove_in_edges = _remove_in_edges_keeping_nodes
        id_c.are_d_separated = _m_separated
        try:
            yield
        finally:
            NxMixedGraph.remove_in_edges = original
            id_c.are_d_separated = original_dsep


def _y0_identify(
    admg: NxMixedGraph, treatments: Iterable[Any], outcomes: Iterable[Any], conditions: Iterable[Any]
) -> Expression | None:
    from y0.algorithm.identify import identify_outcomes

    conditions = set(conditions)
    with _y0_mutilation_keeps_nodes():
        return identify_outcomes(admg, set(treatments), set(outcomes), conditions=conditions or None)


# --- our own criterion (independent of y0) ----------------------------------------------


@dataclass(frozen=True)
class _ADMG:
    """A latent projection in plain names: directed edges and bidirected pairs."""

    nodes: frozenset[str]
    directed: frozenset[tuple[str, str]]
    bidirected: frozenset[frozenset[str]]

    @classmethod
    def of(cls, graph: CausalGraph) -> _ADMG:
        directed, bidirected = graph.projected_edges()
        return cls(frozenset(graph.observed), directed, bidirected)

    def restrict(self, keep: Iterable[str]) -> _ADMG:
        keep = frozenset(keep)
        return _ADMG(
            keep,
            frozenset(e for e in self.directed if e[0] in keep and e[1] in keep),
            frozenset(b for b in self.bidirected if b <= keep),
        )

    def ancestors(self, of: Iterable[str]) -> frozenset[str]:
        """Ancestors of ``of`` including ``of`` itself."""
        parents: dict[str, set[str]] = {}
        for a, b in self.directed:
            parents.setdefault(b, set()).add(a)
        seen, stack = set(of), list(of)
        while stack:
            for p in parents.get(stack.pop(), ()):
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return frozenset(seen)

    def bidirected_graph(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(tuple(b) for b in self.bidirected)
        return g

    def districts(self) -> list[frozenset[str]]:
        return [frozenset(c) for c in nx.connected_components(self.bidirected_graph())]

    def as_dag(self) -> nx.DiGraph:
        """Each bidirected edge a <-> b becomes a fresh latent parent of a and b."""
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(self.directed)
        for i, pair in enumerate(sorted(tuple(sorted(b)) for b in self.bidirected)):
            u = ("__latent__", i)
            g.add_edges_from([(u, pair[0]), (u, pair[1])])
        return g


@dataclass(frozen=True)
class _Hedge:
    """Witness of non-identifiability: c-component ``big`` (F) over ``small`` (F')."""

    big: frozenset[str]
    small: frozenset[str]
    path: tuple[str, ...]


def _tian_identify(admg: _ADMG, c: frozenset[str], t: frozenset[str]) -> _Hedge | None:
    """Can Q[c] be computed from Q[t] (c ⊆ t, t a c-component)? ``None`` if yes, else a hedge."""
    while True:
        sub = admg.restrict(t)
        a = sub.ancestors(c) & t
        if a == c:
            return None
        if a == t:
            return _Hedge(big=t, small=c, path=())
        t = next(d for d in admg.restrict(a).districts() if c <= d)


def hedge_criterion(admg: _ADMG, treatments: Iterable[str], outcomes: Iterable[str]) -> _Hedge | None:
    """Decide P(outcomes | do(treatments)) by the hedge criterion; returns a hedge or None.

    Implements the c-component factorisation of Tian & Pearl (2002) / Shpitser & Pearl (2006):
    with D the ancestors of the outcomes once the treatments are removed, the query is
    identified iff every district of G[D] is identifiable from its district in G.
    """
    x = frozenset(treatments)
    y = frozenset(outcomes)
    d = admg.restrict(admg.nodes - x).ancestors(y)
    big_districts = admg.districts()
    for c in admg.restrict(d).districts():
        t = next(s for s in big_districts if c <= s)
        hedge = _tian_identify(admg, c, t)
        if hedge is not None:
            return _Hedge(hedge.big, hedge.small, _confounding_path(admg, hedge, x, y))
    return None


def _confounding_path(
    admg: _ADMG, hedge: _Hedge, x: frozenset[str], y: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """A shortest bidirected path inside the hedge from a treatment to the outcome-side
    component, ending at an outcome when the hedge holds one."""
    g = admg.restrict(hedge.big).bidirected_graph()
    sources = sorted(hedge.big & x) or sorted(hedge.big - hedge.small)
    targets = sorted(hedge.small & y) or sorted(hedge.small)
    best: tuple[str, ...] = ()
    for s in sources:
        for target in targets:
            with contextlib.suppress(nx.NetworkXNoPath, nx.NodeNotFound):
                p = tuple(nx.shortest_path(g, s, target))
                if not best or len(p) < len(best):
                    best = p
    return best


def _rule2_applies(admg: _ADMG, x: frozenset[str], y: frozenset[str], z: frozenset[str], zi: str) -> bool:
    """(Y ⊥ Zi | X, Z - Zi) in G with edges into X and out of Zi removed (do-calculus rule 2)."""
    g = admg.as_dag()
    g.remove_edges_from([(u, v) for u, v in list(g.edges) if v in x])
    g.remove_edges_from([(u, v) for u, v in list(g.edges) if u == zi])
    return nx.is_d_separator(g, set(y), {zi}, set(x | (z - {zi})))


def _idc_reduce(
    admg: _ADMG, x: frozenset[str], y: frozenset[str], z: frozenset[str]
) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
    """Move conditions to interventions while rule 2 allows (IDC); returns (X', Z', moved)."""
    moved: list[str] = []
    changed = True
    while changed:
        changed = False
        for zi in sorted(z):
            if _rule2_applies(admg, x, y, z, zi):
                x, z = x | {zi}, z - {zi}
                moved.append(zi)
                changed = True
                break
    return x, z, tuple(moved)


# --- the gate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Identification:
    """The verdict of :func:`identify` on one query.

    Attributes
    ----------
    query
        The query asked.
    graph
        The causal graph it was asked of.
    identified
        The verdict: True if the query is a functional of the observed distribution.
    algorithm
        ``"ID"`` (unconditional) or ``"IDC"`` (with ``given``).
    reason
        Plain-words justification of the verdict.
    estimand
        **y0's** estimand expression (a y0 ``Expression``), or None when refused. It is *not*
        verified by causal_pp: y0 0.2.11 returns numerically wrong formulas on some
        identifiable graphs (e.g. the napkin). causal_pp never evaluates it; estimation goes
        through the fitted latent variable model.
    admg
        The latent projection (y0 ``NxMixedGraph``) the verdict was decided on (built on
        first access).
    """

    query: Interventional | ATE
    graph: CausalGraph
    identified: bool
    algorithm: str
    reason: str
    estimand: Any = field(default=None, compare=False, repr=False)

    @cached_property
    def admg(self) -> NxMixedGraph:
        """The latent projection (y0 ``NxMixedGraph``) the verdict was decided on.

        Built on first access (a private copy per result), so a cached verdict costs no graph copy.
        """
        return self.graph.to_admg()

    @property
    def latex(self) -> str | None:
        """y0's estimand as LaTeX (unverified; see :attr:`estimand`)."""
        if self.estimand is None:
            return None
        return self.estimand.to_latex()

    @property
    def estimand_source(self) -> str:
        """Where :attr:`estimand` comes from."""
        return f"y0 {_Y0_VERSION} (not verified by causal_pp)"

    def __str__(self) -> str:
        verdict = "identified" if self.identified else "NOT identified"
        lines = [f"{self.query}: {verdict} ({self.algorithm} on the latent projection)", self.reason]
        if self.estimand is not None:
            lines.append(f"estimand [y0 {_Y0_VERSION}'s formula, unverified]: {self.estimand.to_text()}")
        return "\n".join(lines)


def _fmt(names: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def _query_text(x: Iterable[str], y: Iterable[str], z: Iterable[str] = ()) -> str:
    z = sorted(z)
    return f"P({', '.join(sorted(y))} | do({', '.join(sorted(x))}){', ' + ', '.join(z) if z else ''})"


@lru_cache(maxsize=8192)
def _decide(
    graph: CausalGraph, x: frozenset[str], y: frozenset[str], z: frozenset[str]
) -> tuple[bool, str, str, Any]:
    """Verdict, algorithm, reason, y0 estimand — cached per (graph, query variables)."""
    admg = _ADMG.of(graph)
    algorithm = "IDC" if z else "ID"
    asked = _query_text(x, y, z)
    observed = _fmt(graph.observed)

    x2, z2, moved = _idc_reduce(admg, x, y, z) if z else (x, z, ())
    hedge = hedge_criterion(admg, x2, y | z2)

    y0_graph = graph.to_admg()
    try:
        estimand = _y0_identify(
            y0_graph, [graph.to_y0(v) for v in x], [graph.to_y0(v) for v in y], [graph.to_y0(v) for v in z]
        )
    except Exception as err:  # y0 crashing must not crash the gate: it refuses below
        estimand, y0_error = None, err
    else:
        y0_error = None

    ours = hedge is None
    theirs = estimand is not None
    reduction = ""
    if moved:
        reduction = (
            f" By do-calculus rule 2, conditioning on {_fmt(moved)} equals intervening on it here, "
            f"so the query reduces to {_query_text(x2, y, z2)}."
        )

    if ours and theirs:
        if z:
            tail = (
                f"{_query_text(x2, y | z2)} has no hedge, so {asked} is its conditional"
                if z2
                else f"{_query_text(x2, y)} has no hedge"
            )
            reason = (
                f"{asked} is identified from the observed variables {observed}.{reduction} "
                f"{tail}: a functional of the observed distribution."
            )
        else:
            reason = (
                f"{asked} is identified from the observed variables {observed}: no hedge exists "
                "for it in the latent projection (every c-component of the outcome's ancestors is "
                "computable from the observed distribution)."
            )
        return True, algorithm, reason, estimand

    if not ours:
        treat_in = sorted(hedge.big & x2)
        path = " <-> ".join(hedge.path)
        conf = (
            f"the treatment {_fmt(treat_in)} and {_fmt(hedge.small)} are confounded: they lie in one "
            f"c-component {_fmt(hedge.big)} of the latent projection"
            if treat_in
            else f"the variables {_fmt(hedge.big)} form one c-component of the latent projection"
        )
        if path:
            conf += f", joined by the bidirected (latent-confounder) path {path}"
        target = _query_text(x2, y | z2) if z else asked
        reason = (
            f"{asked} is not identifiable from the observed variables {observed}.{reduction} "
            f"For {target}, {conf}. This is a hedge (F = {_fmt(hedge.big)}, F' = "
            f"{_fmt(hedge.small)}): two models agree on every observed distribution yet differ on "
            "this query, so no amount of observational data determines it."
        )
        if theirs:
            reason += (
                f" (y0 {_Y0_VERSION} returned a formula for it anyway; causal_pp's hedge check "
                "refuses it. Please report this graph.)"
            )
        return False, algorithm, reason, None

    why = (
        f"y0 {_Y0_VERSION} crashed ({type(y0_error).__name__}: {y0_error})"
        if y0_error
        else f"y0 {_Y0_VERSION}'s {algorithm} found it not identifiable"
    )
    reason = (
        f"{asked} is refused: causal_pp's hedge check finds no hedge, but {why}. The two methods "
        "disagree, so causal_pp refuses rather than risk estimating a non-identified query. "
        "Please report this graph and query."
    )
    return False, algorithm, reason, None


def identify(
    graph: CausalGraph,
    query: Interventional | ATE | CounterfactualQuery,
    *,
    strict: bool = True,
    assume_monotonic: bool = False,
    assume_binary_treatment: bool = False,
) -> Identification | CounterfactualIdentification:
    """Decide whether ``query`` can be computed from the observed variables of ``graph``.

    Parameters
    ----------
    graph
        The causal DAG with its latent nodes marked.
    query
        An :class:`~causal_pp.Interventional` or :class:`~causal_pp.ATE` query (queries with
        ``given`` use IDC, others ID; an ATE is identified iff its interventional arms are), or
        a counterfactual query (:class:`~causal_pp.Counterfactual`, ``ETT``, ``PN``, ``PS``,
        ``PNS``), decided by :func:`~causal_pp.identify_counterfactual` (ID*/IDC* from the
        observational distribution).
    strict
        If True (default), a refused query raises :class:`~causal_pp.NotIdentifiableError`;
        if False, the refusal is returned with ``identified=False``.
    assume_monotonic, assume_binary_treatment
        Counterfactual queries only: assumptions under which PN/PS/PNS (monotonicity) or some
        ETTs (a two-valued treatment) become identified. See
        :func:`~causal_pp.identify_counterfactual`.

    Returns
    -------
    Identification or CounterfactualIdentification
        The verdict, the algorithm used, the reason, and the estimand (y0's, unverified, for
        interventional queries).

    Raises
    ------
    NotIdentifiableError
        If ``strict`` and the query is not identifiable; the message names the query, the
        observed set and the confounding that blocks identification.
    UnknownVariableError, LatentVariableQueryError
        If the query names a variable that is not in the graph, or a latent one.
    GraphError, QueryError
        If ``graph`` is not a :class:`~causal_pp.CausalGraph` or ``query`` not a query.

    Notes
    -----
    Verdicts are cached per (graph, query variables): a repeated call costs a dictionary look-up.

    Examples
    --------
    >>> from causal_pp import CausalGraph, Interventional, identify, NotIdentifiableError
    >>> frontdoor = CausalGraph.parse("U -> X; U -> Y; X -> Z -> Y", latent=["U"])
    >>> identify(frontdoor, Interventional("Y", do={"X": 1.0})).identified
    True
    >>> bow = CausalGraph.parse("X -> Y; X <-> Y")
    >>> try:
    ...     identify(bow, Interventional("Y", do={"X": 1.0}))
    ... except NotIdentifiableError as err:
    ...     print(err.reason.split(".")[0])
    P(Y | do(X)) is not identifiable from the observed variables {X, Y}
    """
    if not isinstance(graph, CausalGraph):
        raise GraphError(
            f"identify() needs a CausalGraph as its first argument; got {type(graph).__name__}. "
            "Build one with CausalGraph.parse('X -> Y; ...', latent=[...])."
        )
    from ..counterfactual import ETT, PN, PNS, PS, Counterfactual, identify_counterfactual

    if isinstance(query, (Counterfactual, ETT, PN, PS, PNS)):
        return identify_counterfactual(
            graph,
            query,
            strict=strict,
            assume_monotonic=assume_monotonic,
            assume_binary_treatment=assume_binary_treatment,
        )
    if not isinstance(query, (Interventional, ATE)):
        raise QueryError(
            "identify() takes an Interventional, ATE or counterfactual (Counterfactual, ETT, PN, PS, "
            f"PNS) query; got {type(query).__name__}."
        )
    query.validate(graph)
    identified, algorithm, reason, estimand = _decide(
        graph, frozenset(query.treatments), frozenset(query.outcomes), frozenset(query.conditions)
    )
    result = Identification(
        query=query,
        graph=graph,
        identified=identified,
        algorithm=algorithm,
        reason=reason,
        estimand=estimand,
    )
    if strict and not identified:
        raise NotIdentifiableError(
            f"{query} cannot be estimated: {reason}",
            query=query,
            graph=graph,
            admg=graph.to_admg(),
            reason=reason,
        )
    return result
