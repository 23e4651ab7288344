"""Our own identification criterion: hedges in the latent projection (independent of y0).

* :func:`hedge_criterion` -- P(Y | do(X)) by Tian's c-component recursion (Tian & Pearl 2002;
  Shpitser & Pearl 2006): the query is identified iff no hedge exists; the hedge found is
  the witness a refusal names.
* :func:`idc_reduce` -- IDC's rule-2 reduction (Shpitser & Pearl 2006b): conditions that can be
  exchanged for interventions move to ``do``; the rest make the query a conditional.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

from ..graph import CausalGraph

__all__ = [
    "ADMG",
    "Hedge",
    "confounding_path",
    "hedge_criterion",
    "idc_reduce",
    "rule2_applies",
    "tian_identify",
]


@dataclass(frozen=True)
class ADMG:
    """A latent projection in plain names: directed edges and bidirected pairs."""

    nodes: frozenset[str]
    directed: frozenset[tuple[str, str]]
    bidirected: frozenset[frozenset[str]]

    @classmethod
    def of(cls, graph: CausalGraph) -> ADMG:
        directed, bidirected = graph.projected_edges()
        return cls(frozenset(graph.observed), directed, bidirected)

    def restrict(self, keep: Iterable[str]) -> ADMG:
        keep = frozenset(keep)
        return ADMG(
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
class Hedge:
    """Witness of non-identifiability: c-component ``big`` (F) over ``small`` (F')."""

    big: frozenset[str]
    small: frozenset[str]
    path: tuple[str, ...]


def tian_identify(admg: ADMG, c: frozenset[str], t: frozenset[str]) -> Hedge | None:
    """Can Q[c] be computed from Q[t] (c ⊆ t, t a c-component)? ``None`` if yes, else a hedge."""
    while True:
        sub = admg.restrict(t)
        a = sub.ancestors(c) & t
        if a == c:
            return None
        if a == t:
            return Hedge(big=t, small=c, path=())
        t = next(d for d in admg.restrict(a).districts() if c <= d)


def hedge_criterion(admg: ADMG, treatments: Iterable[str], outcomes: Iterable[str]) -> Hedge | None:
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
        hedge = tian_identify(admg, c, t)
        if hedge is not None:
            return Hedge(hedge.big, hedge.small, confounding_path(admg, hedge, x, y))
    return None


def confounding_path(
    admg: ADMG, hedge: Hedge, x: frozenset[str], y: frozenset[str] = frozenset()
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


def rule2_applies(admg: ADMG, x: frozenset[str], y: frozenset[str], z: frozenset[str], zi: str) -> bool:
    """(Y ⊥ Zi | X, Z - Zi) in G with edges into X and out of Zi removed (do-calculus rule 2)."""
    g = admg.as_dag()
    g.remove_edges_from([(u, v) for u, v in list(g.edges) if v in x])
    g.remove_edges_from([(u, v) for u, v in list(g.edges) if u == zi])
    return nx.is_d_separator(g, set(y), {zi}, set(x | (z - {zi})))


def idc_reduce(
    admg: ADMG, x: frozenset[str], y: frozenset[str], z: frozenset[str]
) -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
    """Move conditions to interventions while rule 2 allows (IDC); returns (X', Z', moved)."""
    moved: list[str] = []
    changed = True
    while changed:
        changed = False
        for zi in sorted(z):
            if rule2_applies(admg, x, y, z, zi):
                x, z = x | {zi}, z - {zi}
                moved.append(zi)
                changed = True
                break
    return x, z, tuple(moved)
