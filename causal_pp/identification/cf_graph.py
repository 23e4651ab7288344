"""The counterfactual graph (Shpitser & Pearl's make-cg) and the events it is built from.

Parallel worlds -- one copy of the latent projection per intervention, sharing the exogenous
noise and latent confounders -- with copies merged where they are provably one random
variable (same mechanism, parents equal as nodes or in value; Lemma 24), restricted to the
ancestors of the event. :mod:`.id_star` factorises the event over its c-components.
"""

from __future__ import annotations

import functools
import itertools as itt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from ..errors import CausalPPError
from ..graph import CausalGraph
from ..queries import ETT, PN, PNS, PS, Counterfactual, CounterfactualQuery
from ..queries.base import cf_text, generic_value

__all__ = [
    "CounterfactualGraph",
    "Event",
    "Problem",
    "Sym",
    "counterfactual_graph",
    "normalize",
    "problem_of",
]

Public = float | str  # a value shown in a result: a number, or the name of a symbol


def public_value(v: Any) -> Public:
    return v if isinstance(v, float) else str(v)


@dataclass(frozen=True, order=True)
class Sym:
    """A symbolic value: a summation index (``kind="sum"``) or an outcome's free value."""

    name: str
    kind: str = "sum"

    def __str__(self) -> str:
        return self.name


Value = float | Sym


def vtext(v: Value) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Event:
    """One counterfactual event var_{world} = value."""

    var: str
    world: tuple[tuple[str, float], ...]
    value: Value

    def __str__(self) -> str:
        return f"{cf_text(self.var, self.world)}={vtext(self.value)}"


@dataclass(frozen=True)
class Problem:
    """P(gamma | delta) for conjunctions of counterfactual events."""

    gamma: tuple[Event, ...]
    delta: tuple[Event, ...] = ()

    def __str__(self) -> str:
        g = ", ".join(str(e) for e in self.gamma)
        d = ", ".join(str(e) for e in self.delta)
        return f"P({g}{' | ' + d if d else ''})"


@dataclass(frozen=True)
class Projection:
    """The latent projection in plain names."""

    nodes: tuple[str, ...]
    parents: Mapping[str, tuple[str, ...]]
    bidirected: frozenset[frozenset[str]]
    order: tuple[str, ...]

    def effective(self, var: str, world: Iterable[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
        """The interventions of ``world`` that can affect ``var`` (a directed path avoiding the others)."""
        w = dict(world)
        hit: set[str] = set()
        seen, stack = {var}, [var]
        while stack:
            v = stack.pop()
            for p in self.parents[v]:
                if p in w:
                    hit.add(p)
                elif p not in seen:
                    seen.add(p)
                    stack.append(p)
        return tuple(sorted((k, w[k]) for k in hit))


@functools.lru_cache(maxsize=1024)
def projection(graph: CausalGraph) -> Projection:
    directed, bidirected = graph.projected_edges()
    nodes = graph.observed
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in directed:
        parents[b].append(a)
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(directed)
    order = tuple(nx.lexicographical_topological_sort(g))
    return Projection(nodes, {k: tuple(sorted(v)) for k, v in parents.items()}, frozenset(bidirected), order)


def resolve(v: Value | None, subst: Mapping[Sym, Value]) -> Value | None:
    while isinstance(v, Sym) and v in subst:
        v = subst[v]
    return v


def unify(a: Value | None, b: Value | None, subst: dict[Sym, Value]) -> tuple[bool, Value | None]:
    """Values of one random variable seen twice: (consistent?, the common value). Updates ``subst``."""
    a, b = resolve(a, subst), resolve(b, subst)
    if a is None:
        return True, b
    if b is None or a == b:
        return True, a
    if isinstance(a, float) and isinstance(b, float):
        return False, None
    if isinstance(a, Sym) and isinstance(b, Sym):
        keep, drop = (b, a) if (a.kind == "sum" and b.kind != "sum") else (a, b)
        subst[drop] = keep
        return True, keep
    sym, num = (a, b) if isinstance(a, Sym) else (b, a)
    subst[sym] = num  # type: ignore[index]
    return True, num


Node = tuple[str, tuple[tuple[str, float], ...]]  # (variable, world of the representative copy)


Parent = tuple[str, Any]  # ("c", value) set by intervention, ("o", value) fixed by rule 2, ("n", node)


@dataclass(frozen=True)
class Zero:
    """The event is inconsistent: its probability is 0. ``reason`` says why."""

    reason: str


@dataclass
class CFGraphBuilder:
    """A counterfactual graph under construction (mutable; private)."""

    proj: Projection
    nodes: set[Node]
    parents: dict[Node, dict[str, Parent]]
    label: dict[Node, str]

    def ancestors(self, of: Iterable[Node]) -> set[Node]:
        seen, stack = set(of), list(of)
        while stack:
            for kind, p in self.parents[stack.pop()].values():
                if kind == "n" and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    def linked(self, a: Node, b: Node) -> bool:
        """Whether two random nodes share an exogenous cause (a bidirected edge)."""
        return a[0] == b[0] or frozenset((a[0], b[0])) in self.proj.bidirected

    def districts(self, nodes: Iterable[Node]) -> list[list[Node]]:
        nodes = sorted(nodes, key=self.label.__getitem__)
        g = nx.Graph()
        g.add_nodes_from(nodes)
        g.add_edges_from((a, b) for a, b in itt.combinations(nodes, 2) if self.linked(a, b))
        comps = [sorted(c, key=self.label.__getitem__) for c in nx.connected_components(g)]
        return sorted(comps, key=lambda c: self.label[c[0]])

    def fix(self, n: Node, value: Value) -> None:
        """Rule 2 made concrete: ``n`` becomes a constant; its children now see ``value``."""
        self.nodes.discard(n)
        for ps in self.parents.values():
            for p, (kind, q) in list(ps.items()):
                if kind == "n" and q == n:
                    ps[p] = ("o", value)


def node_label(proj: Projection, n: Node) -> str:
    return cf_text(n[0], proj.effective(n[0], n[1]))


def make_cg(
    proj: Projection, events: Sequence[Event], subst: dict[Sym, Value]
) -> tuple[CFGraphBuilder, list[Node], dict[Node, Value]] | Zero:
    """Shpitser & Pearl's make-cg: parallel worlds, then merge copies that are one random variable.

    Copies of a variable in different worlds share its exogenous noise and latent confounders.
    In topological order, copies whose parents are the same node, or take the same known value
    (set by an intervention, or observed in the event), are merged (Lemma 24); a merge whose
    events disagree makes the whole event inconsistent. Returns the graph restricted to the
    ancestors of the event nodes, the node standing for each event (in order), and the event
    values keyed by node.
    """
    worlds = tuple(sorted({e.world for e in events} | {()}, key=lambda w: (len(w), w)))
    find: dict[Node, Node] = {}
    members: dict[Node, list[Node]] = {}
    value: dict[Node, Value] = {}
    for w in worlds:
        wd = dict(w)
        for v in proj.nodes:
            if v not in wd:
                find[(v, w)] = (v, w)
                members[(v, w)] = [(v, w)]
    for e in events:
        n = (e.var, e.world)
        ok, val = unify(value.get(n), e.value, subst)
        if not ok:
            return Zero(f"{node_label(proj, n)} cannot equal both {vtext(value[n])} and {vtext(e.value)}")
        value[n] = val  # type: ignore[assignment]
    for v in proj.order:
        groups: dict[tuple[Any, ...], list[Node]] = {}
        for w in worlds:
            wd = dict(w)
            if v in wd:
                continue
            sig: list[tuple[Any, ...]] = []
            for p in proj.parents[v]:
                if p in wd:
                    sig.append((p, "v", wd[p]))
                    continue
                r = find[(p, w)]
                pv = resolve(value.get(r), subst)
                sig.append((p, "v", pv) if isinstance(pv, float) else (p, "n", r))
            groups.setdefault(tuple(sig), []).append((v, w))
        for group in groups.values():
            keep = group[0]
            for other in group[1:]:
                ok, val = unify(value.get(keep), value.get(other), subst)
                if not ok:
                    a, b = node_label(proj, keep), node_label(proj, other)
                    return Zero(
                        f"{a} and {b} are the same random variable here (same mechanism, same exogenous "
                        f"noise, parents equal in value), yet the event asks for {a}="
                        f"{vtext(value[keep])} and {b}={vtext(value[other])}"
                    )
                find[other] = keep
                members[keep] += members.pop(other)
                value.pop(other, None)
                if val is not None:
                    value[keep] = val
    parents: dict[Node, dict[str, Parent]] = {}
    for r, ms in members.items():
        v, rep = r[0], r[1]
        ps: dict[str, Parent] = {}
        for p in proj.parents[v]:
            fixed = [dict(w)[p] for _, w in ms if p in dict(w)]
            ps[p] = ("c", fixed[0]) if fixed else ("n", find[(p, rep)])
        parents[r] = ps
    roots = [find[(e.var, e.world)] for e in events]
    event_nodes: dict[Node, Value] = {r: resolve(value[r], subst) for r in roots}  # type: ignore[misc]
    cg = CFGraphBuilder(proj, set(), parents, {})
    cg.nodes = cg.ancestors(event_nodes)
    labels: dict[str, int] = {}
    for n in sorted(cg.nodes, key=lambda n: (n[0], len(n[1]), n[1])):
        text = node_label(proj, n)
        labels[text] = labels.get(text, 0) + 1
        cg.label[n] = text if labels[text] == 1 else f"{text}#{labels[text]}"
    return cg, roots, event_nodes


@dataclass(frozen=True)
class CounterfactualGraph:
    """The counterfactual graph of an event (make-cg): merged parallel worlds, ancestors only.

    Attributes
    ----------
    nodes
        Labels of the random nodes, e.g. ``"Y_{X=0}"`` (Y in the world do(X=0)) and ``"X"``
        (factual). Copies that are provably one random variable are merged into one node.
    directed
        ``(parent, child)`` edges between random nodes.
    fixed
        ``(node, parent variable, value)``: parents set by an intervention in that node's world.
    bidirected
        Pairs sharing an exogenous cause: a latent confounder of the latent projection, or
        the same variable's own noise (one unit's Y in two worlds).
    event
        ``(node, value)`` pairs of the event.
    inconsistency
        If the event is impossible, why (then the graph is empty).

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp import Counterfactual, counterfactual_graph
    >>> g = counterfactual_graph(CausalGraph.parse("X -> Y; X <-> Y"), Counterfactual("Y", {"X": 0}, {"X": 1}))
    >>> g.nodes, g.bidirected
    (('X', 'Y_{X=0}'), (('X', 'Y_{X=0}'),))
    """

    nodes: tuple[str, ...]
    directed: tuple[tuple[str, str], ...]
    fixed: tuple[tuple[str, str, Public], ...]
    bidirected: tuple[tuple[str, str], ...]
    event: tuple[tuple[str, Public], ...]
    inconsistency: str | None = None

    def districts(self) -> tuple[frozenset[str], ...]:
        """The c-components (bidirected-connected sets of nodes), sorted."""
        g = nx.Graph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(self.bidirected)
        return tuple(sorted((frozenset(c) for c in nx.connected_components(g)), key=sorted))

    def __str__(self) -> str:
        if self.inconsistency:
            return f"inconsistent event: {self.inconsistency}"
        edges = [f"{a} -> {b}" for a, b in self.directed]
        edges += [f"{p}={vtext(v) if not isinstance(v, str) else v} -> {n}" for n, p, v in self.fixed]
        edges += [f"{a} <-> {b}" for a, b in self.bidirected]
        lone = [n for n in self.nodes if not any(n in e[:2] for e in (*self.directed, *self.bidirected))]
        return "; ".join(edges + [n for n in lone if not any(f[0] == n for f in self.fixed)])


def snapshot(cg: CFGraphBuilder, events: Mapping[Node, Value]) -> CounterfactualGraph:
    nodes = sorted(cg.nodes, key=cg.label.__getitem__)
    directed, fixed = [], []
    for n in nodes:
        for p, (kind, q) in sorted(cg.parents[n].items()):
            if kind == "n" and q in cg.nodes:
                directed.append((cg.label[q], cg.label[n]))
            elif kind in ("c", "o"):
                fixed.append((cg.label[n], p, public_value(q)))
    bidirected = [(cg.label[a], cg.label[b]) for a, b in itt.combinations(nodes, 2) if cg.linked(a, b)]
    return CounterfactualGraph(
        tuple(cg.label[n] for n in nodes),
        tuple(sorted(directed)),
        tuple(fixed),
        tuple(sorted(tuple(sorted(e)) for e in bidirected)),  # type: ignore[misc]
        tuple(
            (cg.label[n], public_value(v)) for n, v in sorted(events.items(), key=lambda kv: cg.label[kv[0]])
        ),
    )


def normalize(events: Iterable[Event], subst: dict[Sym, Value]) -> list[Event] | Zero:
    """ID* lines 2-3: X_{x..}=x' is impossible (effectiveness); X_{x..}=x always holds."""
    out = []
    for e in events:
        w = dict(e.world)
        if e.var not in w:
            out.append(e)
            continue
        ok, _ = unify(e.value, w[e.var], subst)
        if not ok:
            return Zero(
                f"{cf_text(e.var, e.world)}={vtext(e.value)} is impossible: a variable set to "
                f"{w[e.var]:g} by intervention takes the value {w[e.var]:g} (effectiveness)"
            )
    return out


def problem_of_counterfactual(query: Counterfactual) -> Problem:
    world = query.do
    gamma = tuple(
        Event(k, world, Sym(generic_value(k), "free") if v is None else v) for k, v in query.outcome
    )
    delta = tuple(Event(k, (), v) for k, v in query.factual)
    return Problem(gamma, delta)


@functools.singledispatch
def problem_of(query: Any) -> Problem:
    """The counterfactual event P(gamma | delta) a query asks about (one table entry per query type)."""
    raise CausalPPError(f"no counterfactual graph for a {type(query).__name__}; pass a Counterfactual query.")


@problem_of.register(Problem)
def _(query: Problem) -> Problem:
    return query


@problem_of.register(Counterfactual)
def _(query: Counterfactual) -> Problem:
    return problem_of_counterfactual(query)


@problem_of.register(PN)
@problem_of.register(PS)
def _(query: PN | PS) -> Problem:
    return problem_of_counterfactual(query.as_counterfactual())


@problem_of.register(ETT)
def _(query: ETT) -> Problem:
    return problem_of_counterfactual(query.terms()[1])


@problem_of.register(PNS)
def _(query: PNS) -> Problem:
    x, y = query.treatment, query.outcome
    return Problem(
        (
            Event(y, ((x, query.treated),), query.outcome_value),
            Event(y, ((x, query.control),), 1.0 - query.outcome_value),
        )
    )


def counterfactual_graph(graph: CausalGraph, query: CounterfactualQuery) -> CounterfactualGraph:
    """The counterfactual graph (Shpitser & Pearl's make-cg) of a query's outcome and evidence.

    Parallel worlds -- one copy of the graph per intervention, all sharing the exogenous
    noise and latent confounders -- with copies merged where they are provably one random
    variable (same mechanism, parents equal as nodes or in value), restricted to the ancestors
    of the event. For an :class:`ETT` it is the graph of P(Y_{control} | X=treated).

    Parameters
    ----------
    graph
        The causal DAG with latent nodes marked.
    query
        A :class:`Counterfactual`, :class:`ETT`, :class:`PN`, :class:`PS` or :class:`PNS`.

    Returns
    -------
    CounterfactualGraph
        With ``inconsistency`` set (and no nodes) if the event is impossible.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp import Counterfactual, counterfactual_graph
    >>> g = CausalGraph.parse("Z -> X -> Y; Z -> Y")
    >>> cg = counterfactual_graph(g, Counterfactual("Y", do={"X": 0}, factual={"X": 1}))
    >>> cg.nodes
    ('X', 'Y_{X=0}', 'Z')
    >>> cg.fixed
    (('Y_{X=0}', 'X', 0.0),)
    """
    if hasattr(query, "validate"):  # a Query; an internal Problem has nothing to validate
        query.validate(graph)
    problem = problem_of(query)
    subst: dict[Sym, Value] = {}
    events = normalize([*problem.gamma, *problem.delta], subst)
    if isinstance(events, Zero):
        return CounterfactualGraph((), (), (), (), (), events.reason)
    built = make_cg(projection(graph), events, subst)
    if isinstance(built, Zero):
        return CounterfactualGraph((), (), (), (), (), built.reason)
    cg, _, values = built
    return snapshot(cg, values)
