"""CausalGraph: construction, parsing, structure, value semantics, drawing, validation errors,
and the latent projection checked against a textbook (Verma & Pearl) projection written here."""

from __future__ import annotations

import itertools as itt
import pickle
import random

import matplotlib
import networkx as nx
import pytest

from causal_pp import (
    CausalGraph,
    CausalPPError,
    CyclicGraphError,
    DuplicateNodeError,
    GraphError,
    GraphParseError,
    InvalidNodeNameError,
    SelfLoopError,
    UnknownVariableError,
)

matplotlib.use("Agg")

FRONTDOOR = [("U", "X"), ("U", "Y"), ("X", "M"), ("M", "Y")]


# --- construction -----------------------------------------------------------------------


def test_construction_sorts_and_splits_observed_and_latent() -> None:
    g = CausalGraph(FRONTDOOR, latent=["U"])
    assert g.nodes == ("M", "U", "X", "Y")
    assert g.edges == (("M", "Y"), ("U", "X"), ("U", "Y"), ("X", "M"))
    assert g.latent == ("U",)
    assert g.observed == ("M", "X", "Y")
    assert g.is_latent("U") and not g.is_latent("X")
    assert "U" in g and "X" in g and "nope" not in g and 3 not in g and [] not in g


def test_construction_accepts_a_single_latent_name_dedupes_edges_and_keeps_isolated_nodes() -> None:
    g = CausalGraph([("X", "Y"), ("X", "Y"), ("U", "Y")], latent="U", nodes=["W"])
    assert g.edges == (("U", "Y"), ("X", "Y"))
    assert g.latent == ("U",)
    assert g.nodes == ("U", "W", "X", "Y")
    assert g.parents("W") == () and g.children("W") == ()
    # an isolated latent node is allowed when listed in nodes=
    assert CausalGraph([("X", "Y")], latent=["L"], nodes=["L"]).latent == ("L",)
    assert CausalGraph(nodes=["A"]).nodes == ("A",)


def test_structure_queries() -> None:
    g = CausalGraph(FRONTDOOR, latent=["U"])
    assert g.parents("Y") == ("M", "U")
    assert g.children("U") == ("X", "Y")
    assert g.ancestors("Y") == ("M", "U", "X")
    assert g.descendants("X") == ("M", "Y")
    assert g.topological_order == ("U", "X", "M", "Y")
    for method in (g.parents, g.children, g.ancestors, g.descendants, g.is_latent):
        with pytest.raises(UnknownVariableError, match="'Q' is not a node"):
            method("Q")


def test_to_networkx_is_a_copy_with_hidden_flags() -> None:
    g = CausalGraph(FRONTDOOR, latent=["U"])
    nxg = g.to_networkx()
    assert nx.get_node_attributes(nxg, "hidden") == {"M": False, "U": True, "X": False, "Y": False}
    nxg.add_edge("Y", "Z")
    assert "Z" not in g and g.edges == CausalGraph(FRONTDOOR, latent=["U"]).edges


# --- parse ------------------------------------------------------------------------------


def test_parse_chains_and_reverse_arrows() -> None:
    g = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"])
    assert g == CausalGraph(FRONTDOOR, latent=["U"])
    assert CausalGraph.parse("Y <- X") == CausalGraph([("X", "Y")])
    assert CausalGraph.parse("A -> B <- C -> D") == CausalGraph([("A", "B"), ("C", "B"), ("C", "D")])
    assert CausalGraph.parse("A->B->C") == CausalGraph([("A", "B"), ("B", "C")])


def test_parse_bidirected_shorthand_adds_a_latent_parent_of_both() -> None:
    g = CausalGraph.parse("X -> Y; X <-> Y")
    assert g.latent == ("U_X_Y",)
    assert g.observed == ("X", "Y")
    assert set(g.edges) == {("X", "Y"), ("U_X_Y", "X"), ("U_X_Y", "Y")}
    # the same pair twice reuses the latent node; a chain of <-> adds one latent per link
    assert CausalGraph.parse("X <-> Y; X <-> Y").latent == ("U_X_Y",)
    assert CausalGraph.parse("A <-> B <-> C").latent == ("U_A_B", "U_B_C")
    # a name clash with an observed node picks a fresh latent name
    clash = CausalGraph.parse("U_X_Y -> X; X <-> Y")
    assert clash.latent == ("U_X_Y_2",)
    assert not clash.is_latent("U_X_Y")


def test_parse_isolated_nodes_and_separators() -> None:
    expected = CausalGraph([("X", "Y"), ("Z", "Y")], nodes=["W"])
    for text in ("X -> Y; Z -> Y; W", "X -> Y, Z -> Y, W", "X -> Y\nZ -> Y\n\nW\n", "  X->Y ;Z->Y;; W ;"):
        assert CausalGraph.parse(text) == expected, text
    assert CausalGraph.parse("W").nodes == ("W",)
    # a node that is isolated in one statement and has edges in another is just a node
    assert CausalGraph.parse("X; X -> Y") == CausalGraph([("X", "Y")])


def test_parse_latent_argument_and_hyphenated_names() -> None:
    g = CausalGraph.parse("U -> a-b -> c", latent="U")
    assert g.latent == ("U",)
    assert g.edges == (("U", "a-b"), ("a-b", "c"))


def test_to_string_and_repr_round_trip() -> None:
    g = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y; W", latent=["U"])
    assert CausalGraph.parse(g.to_string(), latent=g.latent) == g
    assert eval(repr(g), {"CausalGraph": CausalGraph}) == g
    assert repr(CausalGraph([("X", "Y")])) == "CausalGraph.parse('X -> Y')"


# --- from_networkx ----------------------------------------------------------------------


def test_from_networkx_reads_hidden_and_latent_attributes() -> None:
    d = nx.DiGraph()
    d.add_node("U", hidden=True)
    d.add_node("L", latent=True)
    d.add_node("W")  # isolated observed node
    d.add_edges_from([("U", "X"), ("U", "Y"), ("X", "Y"), ("L", "X"), ("L", "Y")])
    g = CausalGraph.from_networkx(d)
    assert g.latent == ("L", "U")
    assert g.observed == ("W", "X", "Y")
    # an explicit latent list overrides the attributes
    assert CausalGraph.from_networkx(d, latent=["U"]).latent == ("U",)
    assert CausalGraph.from_networkx(d, latent=[]).latent == ()
    # round trip through to_networkx
    assert CausalGraph.from_networkx(g.to_networkx()) == g


@pytest.mark.parametrize("bad", [nx.Graph([("X", "Y")]), nx.MultiDiGraph([("X", "Y")]), [("X", "Y")]])
def test_from_networkx_rejects_non_digraphs(bad: object) -> None:
    with pytest.raises(GraphError, match=r"networkx\.DiGraph"):
        CausalGraph.from_networkx(bad)  # type: ignore[arg-type]


def test_from_networkx_rejects_cycles() -> None:
    with pytest.raises(CyclicGraphError):
        CausalGraph.from_networkx(nx.DiGraph([("A", "B"), ("B", "A")]))


# --- mutilation -------------------------------------------------------------------------


def test_mutilate_removes_in_edges_and_keeps_every_node() -> None:
    g = CausalGraph(FRONTDOOR, latent=["U"], nodes=["W"])
    m = g.mutilate(["X"])
    assert m.nodes == g.nodes  # U, W and X stay, even though X now has no parents
    assert m.edges == (("M", "Y"), ("U", "Y"), ("X", "M"))
    assert m.latent == g.latent
    # a string target, and a target whose only edge is cut leaves an isolated node
    m2 = CausalGraph([("X", "Y")]).mutilate("Y")
    assert m2.nodes == ("X", "Y") and m2.edges == ()
    # intervening on several targets; the original is unchanged
    assert g.mutilate(["X", "Y"]).edges == (("X", "M"),)
    assert g.edges == CausalGraph(FRONTDOOR, latent=["U"]).edges
    with pytest.raises(UnknownVariableError, match="intervention target 'Q'"):
        g.mutilate(["Q"])


def test_with_latent() -> None:
    g = CausalGraph(FRONTDOOR, latent=["U"])
    h = g.with_latent(["U", "M"])
    assert h.latent == ("M", "U") and h.edges == g.edges and g.latent == ("U",)


# --- value semantics --------------------------------------------------------------------


def test_graphs_are_immutable() -> None:
    g = CausalGraph(FRONTDOOR, latent=["U"])
    for name in ("_nodes", "_edges", "_latent", "nodes", "foo"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(g, name, ())
    with pytest.raises(AttributeError, match="immutable"):
        del g._edges
    with pytest.raises(AttributeError):
        g.nodes = ("A",)  # type: ignore[misc]
    assert g.edges == (("M", "Y"), ("U", "X"), ("U", "Y"), ("X", "M"))


def test_equality_hash_and_pickle() -> None:
    a = CausalGraph(FRONTDOOR, latent=["U"])
    b = CausalGraph.parse("X -> M; M -> Y; U -> Y; U -> X", latent=["U"])
    c = CausalGraph(FRONTDOOR)  # same DAG, U observed
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert a != CausalGraph(FRONTDOOR, latent=["U"], nodes=["W"])
    assert (a == "U -> X") is False
    assert len({a, b, c}) == 2
    for g in (a, c, CausalGraph.parse("P -> Q; W")):
        g.to_admg()  # populate cached properties; they must not break pickling
        clone = pickle.loads(pickle.dumps(g))
        assert clone == g and hash(clone) == hash(g)
        assert clone.latent == g.latent and clone.nodes == g.nodes
        assert clone.projected_edges() == g.projected_edges()


# --- drawing ----------------------------------------------------------------------------


def test_draw_returns_axes_with_latent_nodes_dashed() -> None:
    import matplotlib.axes
    import matplotlib.pyplot as plt

    g = CausalGraph([*FRONTDOOR, ("V", "M"), ("V", "Y")], latent=["U", "V"])
    ax = g.draw()
    try:
        assert isinstance(ax, matplotlib.axes.Axes)
        node_sets = [c for c in ax.collections if len(c.get_offsets()) in (2, 3)]
        dashed = [c for c in node_sets if any(dash is not None for _, dash in c.get_linestyle())]
        solid = [c for c in node_sets if all(dash is None for _, dash in c.get_linestyle())]
        assert [len(c.get_offsets()) for c in dashed] == [2]  # the two latent nodes
        assert 3 in [len(c.get_offsets()) for c in solid]  # the three observed nodes
        labels = sorted(t.get_text() for t in ax.texts)
        assert labels == ["M", "U", "V", "X", "Y"]
        assert "latent" in ax.get_title()
    finally:
        plt.close(ax.figure)
    # drawing onto a given Axes returns that Axes; a graph without latents draws too
    fig, given = plt.subplots()
    try:
        assert CausalGraph([("X", "Y")]).draw(ax=given, title="t") is given
        assert given.get_title() == "t"
    finally:
        plt.close(fig)


# --- validation errors ------------------------------------------------------------------


def test_cycle_is_named() -> None:
    with pytest.raises(CyclicGraphError) as info:
        CausalGraph([("A", "B"), ("B", "C"), ("C", "A"), ("C", "D")])
    err = info.value
    assert set(err.cycle) == {"A", "B", "C"} and len(err.cycle) == 3
    # the message spells the cycle as a closed walk
    walk = " -> ".join((*err.cycle, err.cycle[0]))
    assert walk in str(err)
    assert isinstance(err, GraphError) and isinstance(err, CausalPPError) and isinstance(err, ValueError)
    with pytest.raises(CyclicGraphError, match=r"X -> Y -> X|Y -> X -> Y"):
        CausalGraph.parse("X -> Y -> X")


def test_self_loop() -> None:
    with pytest.raises(SelfLoopError, match="'X' -> 'X' is a self-loop"):
        CausalGraph([("X", "X")])
    with pytest.raises(SelfLoopError):
        CausalGraph.parse("A -> B; B -> B")


def test_duplicate_node_in_nodes() -> None:
    with pytest.raises(DuplicateNodeError, match="'W' is listed twice"):
        CausalGraph([("X", "Y")], nodes=["W", "W"])


@pytest.mark.parametrize(
    "bad",
    ["", " ", " X", "X ", "a b", "x;y", "a,b", "a<b", "a>b", "-a", "a-", 1, None, ("X",), b"X"],
    ids=repr,
)
def test_invalid_node_names(bad: object) -> None:
    with pytest.raises(InvalidNodeNameError):
        CausalGraph([(bad, "Y")])  # type: ignore[list-item]
    with pytest.raises(InvalidNodeNameError):
        CausalGraph(nodes=[bad])  # type: ignore[list-item]
    with pytest.raises(InvalidNodeNameError):
        CausalGraph([("X", "Y")], latent=[bad])  # type: ignore[list-item]


def test_invalid_name_error_is_both_value_and_type_error() -> None:
    with pytest.raises(TypeError):
        CausalGraph([(1, "Y")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        CausalGraph([("", "Y")])


def test_unknown_latent() -> None:
    with pytest.raises(UnknownVariableError, match="latent variable 'V' is not a node"):
        CausalGraph([("X", "Y")], latent=["V"])
    with pytest.raises(UnknownVariableError):
        CausalGraph.parse("X -> Y", latent=["V"])


@pytest.mark.parametrize("edge", [("X",), ("X", "Y", "Z"), "XY", 3])
def test_malformed_edge(edge: object) -> None:
    with pytest.raises(GraphError, match="pair"):
        CausalGraph([edge])  # type: ignore[list-item]


def test_edges_must_not_be_a_string_or_a_bare_pair_of_names() -> None:
    with pytest.raises(GraphError, match="parse"):
        CausalGraph("X -> Y")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="pair"):
        CausalGraph(("AB", "CD"))  # a single edge not wrapped in a list


@pytest.mark.parametrize(
    "text",
    ["", "  ;; \n", "X ->", "-> Y", "X -> -> Y", "X => Y", "X - > Y", "X -> Y Z", "X <> Y"],
    ids=repr,
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(GraphParseError):
        CausalGraph.parse(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(GraphParseError, match="takes a string"):
        CausalGraph.parse([("X", "Y")])  # type: ignore[arg-type]


def test_parse_error_names_the_statement() -> None:
    with pytest.raises(GraphParseError, match="'X -> -> Y'"):
        CausalGraph.parse("A -> B; X -> -> Y")


# --- y0 names ---------------------------------------------------------------------------


def test_y0_reserved_names_are_mapped_both_ways() -> None:
    g = CausalGraph.parse("P -> Q -> PP; P_ -> PP; a-b -> PP")
    names = {n: g.to_y0(n).name for n in g.nodes}
    assert names["P_"] == "P_"
    assert len(set(names.values())) == len(names)  # no clash with the existing P_
    assert {names["P"], names["Q"], names["PP"]}.isdisjoint({"P", "Q", "PP"})
    assert all(v.isidentifier() for v in names.values())
    for n in g.nodes:
        assert g.from_y0(g.to_y0(n)) == n
        assert g.from_y0(g.to_y0(n).name) == n
    assert {g.from_y0(v) for v in g.to_admg().nodes()} == set(g.observed)
    with pytest.raises(UnknownVariableError):
        g.from_y0("nope")
    with pytest.raises(UnknownVariableError):
        g.to_y0("nope")


# --- latent projection ------------------------------------------------------------------


def textbook_projection(
    nodes: list[str], edges: list[tuple[str, str]], latent: set[str]
) -> tuple[set[str], set[tuple[str, str]], set[frozenset[str]]]:
    """Verma & Pearl's latent projection, written independently of causal_pp.

    Over the observed nodes (all of them, isolated ones included): ``A -> B`` iff there is a
    directed path A -> ... -> B whose intermediate nodes are all latent; ``A <-> B`` iff some
    latent L has directed paths L -> ... -> A and L -> ... -> B whose intermediate nodes are
    all latent.
    """
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        children[a].append(b)

    def latent_paths(start: str) -> set[str]:
        """Nodes reachable from ``start`` by a directed path with only latent intermediates."""
        found: set[str] = set()
        frontier = list(children[start])
        visited: set[str] = set()
        while frontier:
            v = frontier.pop()
            if v in visited:
                continue
            visited.add(v)
            found.add(v)
            if v in latent:  # may be continued only through a latent node
                frontier.extend(children[v])
        return {v for v in found if v not in latent}

    observed = {n for n in nodes if n not in latent}
    directed = {(a, b) for a in observed for b in latent_paths(a)}
    bidirected = {frozenset(pair) for u in latent for pair in itt.combinations(sorted(latent_paths(u)), 2)}
    return observed, directed, bidirected


def random_latent_dag(rng: random.Random) -> tuple[list[str], list[tuple[str, str]], set[str]]:
    n = rng.randint(3, 9)
    names = [f"V{i}" for i in range(n)]
    rng.shuffle(names)  # the causal order is not the name order
    p = rng.uniform(0.15, 0.7)
    edges = [(names[i], names[j]) for i in range(n) for j in range(i + 1, n) if rng.random() < p]
    latent = {v for v in names if rng.random() < rng.choice((0.2, 0.4, 0.6))}
    return names, edges, latent


def _random_dags(count: int, seed: int) -> list[tuple[list[str], list[tuple[str, str]], set[str]]]:
    rng = random.Random(seed)
    return [random_latent_dag(rng) for _ in range(count)]


RANDOM_DAGS = _random_dags(400, seed=20260523)


def _ours(nodes, edges, latent):  # type: ignore[no-untyped-def]
    g = CausalGraph(edges, latent=latent, nodes=nodes)
    directed, bidirected = g.projected_edges()
    admg = g.to_admg()
    y0_directed = {(g.from_y0(a), g.from_y0(b)) for a, b in admg.directed.edges}
    y0_bidirected = {frozenset((g.from_y0(a), g.from_y0(b))) for a, b in admg.undirected.edges}
    assert (y0_directed, y0_bidirected) == (set(directed), set(bidirected))  # both views agree
    return {g.from_y0(v) for v in admg.nodes()}, set(directed), set(bidirected)


def test_projection_matches_textbook_on_random_dags() -> None:
    chains = isolated = 0
    for nodes, edges, latent in RANDOM_DAGS:
        expected = textbook_projection(nodes, edges, latent)
        assert _ours(nodes, edges, latent) == expected, (edges, sorted(latent))
        chains += any(a in latent and b in latent for a, b in edges)
        observed, directed, bidirected = expected
        touched = {v for e in directed for v in e} | {v for p in bidirected for v in p}
        isolated += bool(observed - touched)
    # the random set exercises latent chains and observed nodes left isolated by the projection
    assert chains >= 50 and isolated >= 50, (chains, isolated)


def test_a_broken_projection_is_caught_by_the_random_set() -> None:
    """The comparison above can fail: projections that skip latent chains or drop isolated
    observed nodes disagree with the textbook on the random set."""

    def one_step(nodes, edges, latent):  # type: ignore[no-untyped-def]
        observed = {n for n in nodes if n not in latent}
        directed = {(a, b) for a, b in edges if a in observed and b in observed}
        for a, u, b in itt.product(observed, latent, observed):
            if (a, u) in edges and (u, b) in edges:
                directed.add((a, b))
        bidirected = {
            frozenset(p)
            for u in latent
            for p in itt.combinations(sorted(b for a, b in edges if a == u and b in observed), 2)
        }
        return observed, directed, bidirected

    def drops_isolated(nodes, edges, latent):  # type: ignore[no-untyped-def]
        _, directed, bidirected = textbook_projection(nodes, edges, latent)
        touched = {v for e in directed for v in e} | {v for p in bidirected for v in p}
        return touched, directed, bidirected

    for broken in (one_step, drops_isolated):
        wrong = sum(
            broken(nodes, edges, latent) != textbook_projection(nodes, edges, latent)
            for nodes, edges, latent in RANDOM_DAGS
        )
        assert wrong >= 10, broken.__name__


def test_projection_by_y0_route_agrees_except_for_its_name_clash() -> None:
    """y0's own route (simplify_latent_dag + from_latent_variable_dag, isolated nodes re-added)
    agrees with the textbook on the random set, so our projection matches y0's semantics."""
    from y0.algorithm.simplify_latent import simplify_latent_dag
    from y0.dsl import Variable
    from y0.graph import DEFAULT_TAG, NxMixedGraph

    for nodes, edges, latent in RANDOM_DAGS[:200]:
        dag = nx.DiGraph()
        for n in nodes:
            dag.add_node(Variable(n), **{DEFAULT_TAG: n in latent})
        dag.add_edges_from((Variable(a), Variable(b)) for a, b in edges)
        simplify_latent_dag(dag, tag=DEFAULT_TAG)
        admg = NxMixedGraph.from_latent_variable_dag(dag, tag=DEFAULT_TAG)
        observed = {n for n in nodes if n not in latent}
        got = (
            observed,
            {(a.name, b.name) for a, b in admg.directed.edges},
            {frozenset((a.name, b.name)) for a, b in admg.undirected.edges},
        )
        assert got == textbook_projection(nodes, edges, latent)


def test_projection_regression_latent_with_parents_and_a_node_named_like_its_y0_rename() -> None:
    """y0's simplify_latent_dag renames a latent U that has parents to ``U_prime`` and merges it
    with an existing node of that name: D -> U_prime became D -> B and D -> C. Ours must not."""
    g = CausalGraph([("A", "U"), ("U", "B"), ("U", "C"), ("D", "U_prime")], latent=["U"])
    directed, bidirected = g.projected_edges()
    assert directed == {("A", "B"), ("A", "C"), ("D", "U_prime")}
    assert bidirected == {frozenset({"B", "C"})}
    assert {g.from_y0(v) for v in g.to_admg().nodes()} == {"A", "B", "C", "D", "U_prime"}


@pytest.mark.parametrize(
    ("text", "latent", "directed", "bidirected", "observed"),
    [
        ("U -> X; U -> Y; X -> Y", ["U"], {("X", "Y")}, {("X", "Y")}, "XY"),
        ("X -> L -> Y", ["L"], {("X", "Y")}, set(), "XY"),
        ("L1 -> L2 -> X; L2 -> Y; L1 -> Z", ["L1", "L2"], set(), {("X", "Y"), ("X", "Z"), ("Y", "Z")}, "XYZ"),
        ("U -> X; W", ["U"], set(), set(), "WX"),  # U has one child: no edge; W isolated
        ("X -> Y; U -> Y; Z", ["U"], {("X", "Y")}, set(), "XYZ"),  # pitfall #1 graph
        ("A -> L -> B; L -> C; M -> A", ["L", "M"], {("A", "B"), ("A", "C")}, {("B", "C")}, "ABC"),
    ],
    ids=[
        "bow",
        "latent-mediator",
        "latent-chain",
        "single-child-latent",
        "isolated-node",
        "latent-with-parents",
    ],
)
def test_projection_hand_cases(
    text: str, latent: list[str], directed: set, bidirected: set, observed: str
) -> None:
    g = CausalGraph.parse(text, latent=latent)
    d, b = g.projected_edges()
    assert d == directed
    assert b == {frozenset(p) for p in bidirected}
    assert sorted(g.from_y0(v) for v in g.to_admg().nodes()) == list(observed)


def test_to_admg_returns_a_fresh_copy() -> None:
    from y0.dsl import Variable

    g = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"])
    a = g.to_admg()
    a.add_directed_edge(Variable("Y"), Variable("Z"))
    b = g.to_admg()
    assert a is not b and Variable("Z") not in b.nodes()
    assert g.projected_edges() == ({("X", "Y")}, {frozenset({"X", "Y"})})
