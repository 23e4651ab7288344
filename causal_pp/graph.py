"""The causal graph: an immutable DAG whose latent (never observed) nodes are marked.

A :class:`CausalGraph` is the causal claim a model makes. Latent confounders are written as
explicit nodes (``U -> X; U -> Y``) or, as shorthand, as a bidirected edge ``X <-> Y`` which
adds a latent parent of both. Identification works on the *latent projection* of the graph
(:meth:`CausalGraph.to_admg`), a y0 ``NxMixedGraph`` over the observed nodes.
"""

from __future__ import annotations

import itertools as itt
import re
from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import networkx as nx

from .errors import (
    CyclicGraphError,
    DuplicateNodeError,
    GraphError,
    GraphParseError,
    InvalidNodeNameError,
    SelfLoopError,
    UnknownVariableError,
)

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.axes
    from y0.dsl import Variable
    from y0.graph import NxMixedGraph

__all__ = ["CausalGraph"]

# Names a graph string can carry: no whitespace, no arrows, no separators.
_NAME_RE = re.compile(r"^[^\s;,<>\-]+(?:-[^\s;,<>\-]+)*$")
# Names y0's Variable refuses or its DSL treats specially (y0-pitfalls #10).
_Y0_RESERVED = frozenset({"P", "Q", "PP"})
_ARROW_RE = re.compile(r"\s*(<->|->|<-)\s*")


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise InvalidNodeNameError(
            f"node names must be strings; got {name!r} ({type(name).__name__}) in {where}. "
            "Use the Pyro site name of the variable."
        )
    if not name or name != name.strip():
        raise InvalidNodeNameError(
            f"node name {name!r} in {where} is empty or has leading/trailing whitespace; "
            "use the exact Pyro site name."
        )
    if not _NAME_RE.match(name):
        raise InvalidNodeNameError(
            f"node name {name!r} in {where} contains whitespace or one of ';', ',', '<', '>' or "
            "a dangling '-'; rename the variable (e.g. with underscores)."
        )
    return name


class CausalGraph:
    """An immutable causal DAG with a set of latent (never observed) nodes.

    Parameters
    ----------
    edges
        Directed edges ``(parent, child)`` between node names (Pyro site names).
    latent
        Names of nodes that are never observed. Each must be a node of the graph.
    nodes
        Extra nodes, e.g. isolated ones; nodes named in ``edges`` need not be repeated.

    Raises
    ------
    CyclicGraphError
        The edges contain a directed cycle (named in the message).
    SelfLoopError, DuplicateNodeError, InvalidNodeNameError, UnknownVariableError
        A self-loop, a node listed twice in ``nodes``, a bad name, or a latent name that is
        not a node.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> g = CausalGraph([("U", "X"), ("U", "Y"), ("X", "Z"), ("Z", "Y")], latent=["U"])
    >>> g.observed
    ('X', 'Y', 'Z')
    >>> g.parents("Y")
    ('U', 'Z')
    >>> g == CausalGraph.parse("U -> X; U -> Y; X -> Z -> Y", latent=["U"])
    True
    """

    __slots__ = ("__dict__", "_edges", "_latent", "_nodes")

    def __init__(
        self,
        edges: Iterable[tuple[str, str]] = (),
        latent: Iterable[str] = (),
        nodes: Iterable[str] = (),
    ) -> None:
        if isinstance(latent, str):
            latent = [latent]
        if isinstance(nodes, str):
            nodes = [nodes]
        order: dict[str, None] = {}
        seen_explicit: set[str] = set()
        for n in nodes:
            _check_name(n, "nodes")
            if n in seen_explicit:
                raise DuplicateNodeError(f"node {n!r} is listed twice in nodes=; list each node once.")
            seen_explicit.add(n)
            order[n] = None
        edge_list: dict[tuple[str, str], None] = {}
        if isinstance(edges, str):
            raise GraphError(
                f"edges must be (parent, child) pairs; got the string {edges!r}. "
                "Use CausalGraph.parse() to read a graph string."
            )
        for e in edges:
            try:
                if isinstance(e, str):  # "XY" would unpack into ("X", "Y")
                    raise TypeError
                a, b = e
            except (TypeError, ValueError):
                raise GraphError(f"an edge must be a (parent, child) pair; got {e!r}.") from None
            _check_name(a, f"edge {e!r}")
            _check_name(b, f"edge {e!r}")
            if a == b:
                raise SelfLoopError(
                    f"edge {a!r} -> {b!r} is a self-loop; a causal DAG cannot have a variable cause "
                    "itself. Remove the edge (model dynamics by unrolling time: X_t -> X_t1)."
                )
            order.setdefault(a, None)
            order.setdefault(b, None)
            edge_list[(a, b)] = None
        latent_set = []
        for u in latent:
            _check_name(u, "latent")
            if u not in order:
                raise UnknownVariableError(
                    f"latent variable {u!r} is not a node of the graph (nodes: {sorted(order)}). "
                    "Add its edges, or list it in nodes= if it is isolated."
                )
            if u not in latent_set:
                latent_set.append(u)
        g = nx.DiGraph()
        g.add_nodes_from(order)
        g.add_edges_from(edge_list)
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = (*(a for a, _ in cycle), cycle[0][0])
            raise CyclicGraphError(
                f"the graph has a directed cycle {' -> '.join(path)}; a causal DAG must be acyclic. "
                "Remove one of these edges.",
                cycle=path[:-1],
            )
        self._nodes = tuple(sorted(order))
        self._edges = tuple(sorted(edge_list))
        self._latent = frozenset(latent_set)

    # --- constructors -------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, latent: Iterable[str] = ()) -> CausalGraph:
        """Build a graph from a string such as ``"U -> X; U -> Y; X -> Z -> Y"``.

        Statements are separated by ``;``, ``,`` or newlines. A statement is a chain of names
        joined by ``->`` (or ``<-``), or a single name (an isolated node). ``A <-> B`` is
        shorthand for a latent common cause: it adds a latent node ``U_A_B`` with edges to both.

        Examples
        --------
        >>> g = CausalGraph.parse("X -> Y; X <-> Y")
        >>> g.latent
        ('U_X_Y',)
        """
        if not isinstance(text, str):
            raise GraphParseError(f"parse() takes a string; got {type(text).__name__}.")
        edges: list[tuple[str, str]] = []
        nodes: list[str] = []
        latent = [latent] if isinstance(latent, str) else list(latent)
        for raw in re.split(r"[;,\n]", text):
            stmt = raw.strip()
            if not stmt:
                continue
            parts = _ARROW_RE.split(stmt)
            names, arrows = parts[0::2], parts[1::2]
            for nm in names:
                if not nm or not _NAME_RE.match(nm):
                    raise GraphParseError(
                        f"cannot read {stmt!r}: {nm!r} is not a node name. Write edges as "
                        "'A -> B', chains as 'A -> B -> C', and separate statements with ';'."
                    )
            if len(names) == 1 and names[0] not in nodes:
                nodes.append(names[0])
            for (a, b), arrow in zip(itt.pairwise(names), arrows, strict=True):
                if arrow == "->":
                    edges.append((a, b))
                elif arrow == "<-":
                    edges.append((b, a))
                else:
                    u = f"U_{a}_{b}"
                    taken = {x for e in edges for x in e} | set(nodes) | set(latent)
                    k = 1
                    while u in taken and u not in latent:
                        k += 1
                        u = f"U_{a}_{b}_{k}"
                    edges.extend([(u, a), (u, b)])
                    if u not in latent:
                        latent.append(u)
        if not edges and not nodes:
            raise GraphParseError("the graph string is empty; write edges like 'X -> Y'.")
        return cls(edges, latent=latent, nodes=[n for n in nodes if not any(n in e for e in edges)])

    @classmethod
    def from_networkx(cls, graph: nx.DiGraph, latent: Iterable[str] | None = None) -> CausalGraph:
        """Build from a ``networkx.DiGraph``; ``latent`` defaults to nodes with ``hidden=True``.

        Examples
        --------
        >>> import networkx as nx
        >>> g = CausalGraph.from_networkx(nx.DiGraph([("U", "X"), ("U", "Y"), ("X", "Y")]), latent=["U"])
        >>> g.observed
        ('X', 'Y')
        """
        if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
            raise GraphError(f"from_networkx() takes a networkx.DiGraph; got {type(graph).__name__}.")
        if latent is None:
            latent = [n for n, d in graph.nodes(data=True) if d.get("hidden") or d.get("latent")]
        return cls(list(graph.edges), latent=latent, nodes=list(graph.nodes))

    @classmethod
    def from_admg(cls, admg: NxMixedGraph) -> CausalGraph:
        """Build from a y0 ``NxMixedGraph`` (an ADMG over observed variables).

        Directed edges are kept. Each bidirected edge ``A <-> B`` becomes a latent common cause
        named ``U_A_B`` (the two names sorted), as :meth:`parse` names the ``A <-> B``
        shorthand; a name already taken gets ``_2``, ``_3``, ... appended. Node names are the y0
        variables' names. The latent projection of the result is ``admg`` again:
        ``CausalGraph.from_admg(g.to_admg()).to_admg()`` has the edges of ``g.to_admg()``, so
        identification decides every query the same way; a graph written with the ``<->``
        shorthand (names sorted) comes back equal.

        Raises
        ------
        GraphError
            ``admg`` is not an ``NxMixedGraph`` (or has a cycle, a bad name...).

        Examples
        --------
        >>> from y0.graph import NxMixedGraph
        >>> from y0.dsl import X, Y, Z
        >>> g = CausalGraph.from_admg(NxMixedGraph.from_edges(directed=[(X, Z), (Z, Y)], undirected=[(X, Y)]))
        >>> g.latent, g.parents("Y")
        (('U_X_Y',), ('U_X_Y', 'Z'))
        >>> g == CausalGraph.parse("X -> Z -> Y; X <-> Y")
        True
        >>> CausalGraph.from_admg(g.to_admg()) == g
        True
        """
        directed = getattr(admg, "directed", None)
        undirected = getattr(admg, "undirected", None)
        if not isinstance(directed, nx.DiGraph) or not isinstance(undirected, nx.Graph):
            raise GraphError(
                f"from_admg() takes a y0 NxMixedGraph; got {type(admg).__name__}. "
                "Use from_networkx() for a networkx.DiGraph."
            )

        def name(v: Any) -> str:
            return str(getattr(v, "name", v))

        nodes = sorted({name(v) for v in admg.nodes()} | {name(v) for e in directed.edges for v in e})
        edges = [(name(a), name(b)) for a, b in directed.edges]
        taken = set(nodes)
        latent = []
        for a, b in sorted(tuple(sorted((name(x), name(y)))) for x, y in undirected.edges):
            u, k = f"U_{a}_{b}", 1
            while u in taken:
                k += 1
                u = f"U_{a}_{b}_{k}"
            taken.add(u)
            latent.append(u)
            edges.extend([(u, a), (u, b)])
        return cls(edges, latent=latent, nodes=nodes)

    # --- basic structure ----------------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        """All node names, sorted."""
        return self._nodes

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """Directed edges ``(parent, child)``, sorted."""
        return self._edges

    @property
    def latent(self) -> tuple[str, ...]:
        """Latent (never observed) node names, sorted."""
        return tuple(sorted(self._latent))

    @property
    def observed(self) -> tuple[str, ...]:
        """Observed node names, sorted."""
        return tuple(n for n in self._nodes if n not in self._latent)

    def is_latent(self, name: str) -> bool:
        """Whether ``name`` is a latent node (raises for unknown names)."""
        self._require(name)
        return name in self._latent

    def __contains__(self, name: object) -> bool:
        return name in self._nx

    @cached_property
    def _nx(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for n in self._nodes:
            g.add_node(n, hidden=n in self._latent)
        g.add_edges_from(self._edges)
        return g

    def _require(self, name: str, role: str = "variable") -> None:
        if name not in self._nx:
            raise UnknownVariableError(
                f"{role} {name!r} is not a node of the graph; nodes are {list(self._nodes)}."
            )

    def parents(self, v: str) -> tuple[str, ...]:
        """Parents of ``v``, sorted."""
        self._require(v)
        return tuple(sorted(self._nx.predecessors(v)))

    def children(self, v: str) -> tuple[str, ...]:
        """Children of ``v``, sorted."""
        self._require(v)
        return tuple(sorted(self._nx.successors(v)))

    def ancestors(self, v: str) -> tuple[str, ...]:
        """Proper ancestors of ``v``, sorted."""
        self._require(v)
        return tuple(sorted(nx.ancestors(self._nx, v)))

    def descendants(self, v: str) -> tuple[str, ...]:
        """Proper descendants of ``v``, sorted."""
        self._require(v)
        return tuple(sorted(nx.descendants(self._nx, v)))

    @cached_property
    def topological_order(self) -> tuple[str, ...]:
        """Nodes in a deterministic topological order (ties broken by name)."""
        return tuple(nx.lexicographical_topological_sort(self._nx))

    def to_networkx(self) -> nx.DiGraph:
        """A fresh ``networkx.DiGraph`` copy; latent nodes carry ``hidden=True``."""
        return self._nx.copy()

    def mutilate(self, targets: Iterable[str]) -> CausalGraph:
        """The graph of ``do(targets)``: every incoming edge of each target removed.

        All nodes are kept (a mutilation never drops a node).

        Examples
        --------
        >>> CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"]).mutilate(["X"]).edges
        (('U', 'Y'), ('X', 'Y'))
        """
        targets = [targets] if isinstance(targets, str) else list(targets)
        for t in targets:
            self._require(t, "intervention target")
        cut = set(targets)
        return CausalGraph(
            [(a, b) for a, b in self._edges if b not in cut],
            latent=self._latent,
            nodes=self._nodes,
        )

    def with_latent(self, latent: Iterable[str]) -> CausalGraph:
        """The same DAG with a different latent set."""
        return CausalGraph(self._edges, latent=latent, nodes=self._nodes)

    # --- latent projection --------------------------------------------------------------

    @cached_property
    def _y0_names(self) -> dict[str, str]:
        """Site name -> y0 variable name; y0-reserved names get a unique suffix (pitfall #10)."""
        taken = set(self._nodes)
        mapping = {}
        for n in self._nodes:
            safe = n
            if safe in _Y0_RESERVED or not safe.isidentifier():
                base = re.sub(r"\W", "_", safe)
                safe = f"{base}_"
                while safe in taken or safe in _Y0_RESERVED:
                    safe += "_"
                taken.add(safe)
            mapping[n] = safe
        return mapping

    @cached_property
    def _y0_inverse(self) -> dict[str, str]:
        return {v: k for k, v in self._y0_names.items()}

    def to_y0(self, name: str) -> Variable:
        """The y0 ``Variable`` standing for node ``name`` (names y0 reserves are mapped)."""
        from y0.dsl import Variable

        self._require(name)
        return Variable(self._y0_names[name])

    def from_y0(self, variable: Variable | str) -> str:
        """The node name of a y0 ``Variable`` made by :meth:`to_y0`."""
        key = getattr(variable, "name", variable)
        try:
            return self._y0_inverse[key]
        except KeyError:
            raise UnknownVariableError(f"y0 variable {key!r} is not a node of this graph.") from None

    @cached_property
    def _projection(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        """The latent projection in node names: (directed edges, bidirected pairs), sorted.

        Computed here rather than with y0's ``simplify_latent_dag`` +
        ``from_latent_variable_dag``: besides dropping isolated observed nodes (pitfall #1),
        that route renames a latent ``U`` that has parents to ``U_prime`` and silently merges
        it with an existing node of that name, turning an observed ``U_prime`` into a latent
        and inventing directed edges.
        """
        g = self._nx
        latent = self._latent

        def reach(v: str) -> set[str]:
            # Observed nodes reached from v along directed paths whose intermediates are latent.
            out: set[str] = set()
            seen: set[str] = set()
            stack = list(g.successors(v))
            while stack:
                w = stack.pop()
                if w in seen:
                    continue
                seen.add(w)
                if w in latent:
                    stack.extend(g.successors(w))
                else:
                    out.add(w)
            return out

        directed = sorted((a, b) for a in self.observed for b in reach(a))
        bidirected: set[tuple[str, str]] = set()
        for u in latent:
            # A latent with a latent parent reaches a subset of what that parent reaches.
            if any(p in latent for p in g.predecessors(u)):
                continue
            bidirected.update(itt.combinations(sorted(reach(u)), 2))
        return tuple(directed), tuple(sorted(bidirected))

    @cached_property
    def _admg(self) -> NxMixedGraph:
        from y0.graph import NxMixedGraph

        directed, bidirected = self._projection
        to_y0 = self.to_y0
        return NxMixedGraph.from_edges(
            nodes=[to_y0(n) for n in self.observed],
            directed=[(to_y0(a), to_y0(b)) for a, b in directed],
            undirected=[(to_y0(a), to_y0(b)) for a, b in bidirected],
        )

    def to_admg(self) -> NxMixedGraph:
        """The latent projection as a y0 ``NxMixedGraph`` over the observed nodes.

        ``A -> B`` is kept when a directed path from observed ``A`` to observed ``B`` passes
        only through latent nodes; ``A <-> B`` is added when some latent node reaches both
        along latent-only paths (Verma & Pearl). Every observed node is kept, isolated ones
        included. Names that y0 reserves (``P``, ``Q``, ``PP``) appear with a trailing
        underscore; use :meth:`from_y0` to map back. Each call returns a fresh copy.

        Examples
        --------
        >>> g = CausalGraph.parse("U -> X; U -> Y; X -> Z -> Y; W", latent=["U"])
        >>> sorted(v.name for v in g.to_admg().nodes())
        ['W', 'X', 'Y', 'Z']
        """
        a = self._admg
        return type(a)(directed=a.directed.copy(), undirected=a.undirected.copy())

    @cached_property
    def _projected_edges(self) -> tuple[frozenset[tuple[str, str]], frozenset[frozenset[str]]]:
        directed, bidirected = self._projection
        return frozenset(directed), frozenset(frozenset(p) for p in bidirected)

    def projected_edges(self) -> tuple[frozenset[tuple[str, str]], frozenset[frozenset[str]]]:
        """The latent projection as plain names: (directed edges, bidirected pairs).

        Examples
        --------
        >>> d, b = CausalGraph.parse("X -> M -> Y; X <-> Y").projected_edges()
        >>> sorted(d), [sorted(p) for p in b]
        ([('M', 'Y'), ('X', 'M')], [['X', 'Y']])
        """
        return self._projected_edges

    # --- display ------------------------------------------------------------------------

    def to_string(self) -> str:
        """The graph as a string that :meth:`parse` reads back (latent set not included)."""
        parts = [f"{a} -> {b}" for a, b in self._edges]
        connected = {x for e in self._edges for x in e}
        parts += [n for n in self._nodes if n not in connected]
        return "; ".join(parts)

    def draw(self, ax: matplotlib.axes.Axes | None = None, **kwargs: Any) -> matplotlib.axes.Axes:
        """Draw the DAG with matplotlib; latent nodes are dashed, grey circles.

        Nodes are laid out in layers by topological generation, causes above effects.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> ax = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"]).draw()
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=kwargs.pop("figsize", (5, 4)))
        g = self._nx
        pos: dict[str, tuple[float, float]] = {}
        for depth, layer in enumerate(nx.topological_generations(g)):
            layer = sorted(layer)
            for i, n in enumerate(layer):
                pos[n] = (i - (len(layer) - 1) / 2, -depth)
        observed = [n for n in self._nodes if n not in self._latent]
        latent = self.latent
        nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=15, node_size=900)
        nx.draw_networkx_nodes(
            g, pos, nodelist=observed, ax=ax, node_color="#cfe2f3", edgecolors="black", node_size=900
        )
        if latent:
            coll = nx.draw_networkx_nodes(
                g,
                pos,
                nodelist=list(latent),
                ax=ax,
                node_color="white",
                edgecolors="grey",
                node_size=900,
            )
            coll.set_linestyle("--")
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=9)
        ax.set_title(kwargs.pop("title", "causal graph (dashed: latent)"))
        ax.set_axis_off()
        return ax

    # --- value semantics ----------------------------------------------------------------

    @cached_property
    def _key(self) -> tuple[Any, ...]:
        return (self._nodes, self._edges, tuple(sorted(self._latent)))

    @cached_property
    def _hash(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalGraph):
            return NotImplemented
        return self is other or self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        lat = f", latent={list(self.latent)}" if self._latent else ""
        return f"CausalGraph.parse({self.to_string()!r}{lat})"

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CausalGraph.__slots__ and not hasattr(self, name):
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"CausalGraph is immutable; cannot set {name!r}. Build a new graph.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"CausalGraph is immutable; cannot delete {name!r}.")

    def __reduce__(self) -> tuple[Any, ...]:
        return (CausalGraph, (self._edges, tuple(sorted(self._latent)), self._nodes))
