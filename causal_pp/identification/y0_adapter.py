"""y0's ID and IDC, with the bugs of y0 0.2.11 worked around for the duration of each call.

causal_pp decides every interventional query twice; y0's ``identify_outcomes`` is one of the
two methods (the other is :mod:`causal_pp.identification.hedge`). y0 0.2.11 needs two patches
(``shared/notes/y0-pitfalls.md`` #3 and #13), applied under a lock and always restored.
y0's formula is kept only as a cross-check: it is wrong on some graphs (the napkin).
"""

from __future__ import annotations

import contextlib
import itertools as itt
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:  # pragma: no cover
    from y0.dsl import Expression
    from y0.graph import NxMixedGraph

__all__ = ["Y0_VERSION", "m_separated", "patched_y0", "remove_in_edges_keeping_nodes", "y0_identify"]


Y0_VERSION = "0.2.11"


_PATCH_LOCK = threading.RLock()


def remove_in_edges_keeping_nodes(self: NxMixedGraph, vertices: Any) -> NxMixedGraph:
    from y0.graph import _ensure_set

    vertices = _ensure_set(vertices)
    return self.from_edges(
        nodes=self.nodes(),
        directed=[(u, v) for u, v in self.directed.edges() if v not in vertices],
        undirected=[(u, v) for u, v in self.undirected.edges() if u not in vertices and v not in vertices],
    )


def m_separated(graph: NxMixedGraph, a: Any, b: Any, *, conditions: Iterable[Any] = ()) -> bool:
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
def patched_y0() -> Iterator[None]:
    """Patch two y0 0.2.11 bugs for the duration of one call, under a lock, always restoring.

    1. ``NxMixedGraph.remove_in_edges`` builds the mutilated graph from the intervened nodes
       plus the edges that remain, so nodes left without edges vanish and ID/IDC crash with
       KeyError (y0 pitfall #3). y0 re-creates plain ``NxMixedGraph`` objects inside its
       algorithms, so a subclass cannot carry the fix; the method is swapped.
    2. IDC's rule-2 test calls ``are_d_separated``, which ignores collider paths through
       bidirected edges; it is swapped for :func:`m_separated` in ``y0.algorithm.identify.id_c``.
       Unpatched, IDC wrongly refuses some identifiable conditional queries and (masked by
       our own check) wrongly accepts some that are not identifiable.
    """
    from y0.algorithm.identify import id_c
    from y0.graph import NxMixedGraph

    with _PATCH_LOCK:
        original = NxMixedGraph.remove_in_edges
        original_dsep = id_c.are_d_separated
        NxMixedGraph.remove_in_edges = remove_in_edges_keeping_nodes
        id_c.are_d_separated = m_separated
        try:
            yield
        finally:
            NxMixedGraph.remove_in_edges = original
            id_c.are_d_separated = original_dsep


def y0_identify(
    admg: NxMixedGraph, treatments: Iterable[Any], outcomes: Iterable[Any], conditions: Iterable[Any]
) -> Expression | None:
    from y0.algorithm.identify import identify_outcomes

    conditions = set(conditions)
    with patched_y0():
        return identify_outcomes(admg, set(treatments), set(outcomes), conditions=conditions or None)
