"""Property-based tests of the identification gate (hypothesis; issue #12).

1. Random DAGs with latent nodes (latent confounders, latent chains, latent mediators, names y0
   reserves or cannot spell) and random queries (names not in the graph, latent names,
   overlapping roles, empty ``do``, non-numeric values) never make :func:`causal_pp.identify`
   (or :func:`derive_estimand`) raise anything but a :class:`~causal_pp.errors.CausalPPError`.
2. On small graphs the gate's verdict equals an independent brute-force criterion written here:
   an exhaustive search for a hedge (Shpitser & Pearl 2006: P(y | do(x)) is identifiable iff no
   hedge exists for it) over every pair of node sets of our own latent projection, after IDC's
   rule-2 reduction decided by d-separation in the original DAG (latents included, never
   conditioned on).
3. Random graph strings never make :meth:`CausalGraph.parse` raise anything but our errors, and a
   parsed graph reads back from its own :meth:`~CausalGraph.to_string`.

The examples are derandomised (a fixed seed per test) and bounded: the ``causal_pp-ci`` profile
below. ``CAUSAL_PP_HYPOTHESIS=thorough`` runs random seeds and 20x the examples.
"""

from __future__ import annotations

import contextlib
import itertools as itt
import os
from collections.abc import Iterable
from typing import Any

import networkx as nx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from causal_pp import ATE, CausalGraph, Interventional, identify
from causal_pp.errors import CausalPPError
from causal_pp.identification.estimand import derive_estimand

# Registered here, not in conftest.py: only this module uses hypothesis. No example database,
# so a run writes nothing into the repository.
settings.register_profile(
    "causal_pp-ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("causal_pp-thorough", settings.get_profile("causal_pp-ci"), derandomize=False)
_THOROUGH = os.environ.get("CAUSAL_PP_HYPOTHESIS") == "thorough"
_BASE = settings.get_profile("causal_pp-thorough" if _THOROUGH else "causal_pp-ci")


def profile(max_examples: int) -> settings:
    """The module's profile with a per-test number of examples."""
    return settings(_BASE, max_examples=max_examples * (20 if _THOROUGH else 1))


# Node names: plain ones, names y0 reserves (P, Q, PP), names that are not Python identifiers
# (y0 must get mapped names), a name that maps onto another one, and the parser's own latent names.
NAMES = ("A", "B", "C", "D", "X", "Y", "Z", "P", "Q", "PP", "a-b", "a_b", "Ü", "x1", "U_A_B")


@st.composite
def graphs(draw: st.DrawFn, max_observed: int = 5, max_latent: int = 3) -> CausalGraph:
    """A random DAG: observed nodes from NAMES and latent nodes. Latent confounders C0, C1, ...
    each cause two or three observed nodes; latents L0, L1, ... take part in the random edges,
    which go forward in a random order of all nodes, so they may have observed or latent parents,
    mediate edges, confound any number of nodes, or stand alone."""
    observed = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=max_observed, unique=True))
    latent = [f"L{i}" for i in range(draw(st.integers(0, max_latent)))]
    order = draw(st.permutations(observed + latent))
    pairs = list(itt.combinations(order, 2))
    p = draw(st.sampled_from((0.2, 0.4, 0.6)))
    keep = draw(st.lists(st.floats(0, 1), min_size=len(pairs), max_size=len(pairs)))
    edges = [pair for pair, u in zip(pairs, keep, strict=True) if u < p]
    if len(observed) >= 2:
        groups = draw(
            st.lists(st.lists(st.sampled_from(observed), min_size=2, max_size=3, unique=True), max_size=3)
        )
        for i, group in enumerate(groups):
            latent.append(f"C{i}")
            edges += [(f"C{i}", v) for v in group]
    return CausalGraph(edges, latent=latent, nodes=order)


def mostly(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], one_in: int = 6
) -> st.SearchStrategy[Any]:
    """``good``, except about one draw in ``one_in`` from ``bad`` (so most queries reach the gate)."""
    return st.integers(0, one_in - 1).flatmap(lambda k: bad if k == 0 else good)


def _names_of(graph: CausalGraph) -> st.SearchStrategy[str]:
    """Mostly observed names, sometimes latent or unknown ones or the empty string."""
    return mostly(
        st.sampled_from(graph.observed), st.sampled_from(sorted({*graph.nodes, "nope", "", "L9"})), 4
    )


_values = mostly(
    st.sampled_from((0.0, 1.0, -2.5, 3)),
    st.one_of(
        st.sampled_from((float("nan"), float("inf"), 1e300, True, None, "1", 0)),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=2),
    ),
)


@st.composite
def any_query(draw: st.DrawFn, graph: CausalGraph) -> tuple[str, Any]:
    """A query built from arbitrary names and values; building it may itself raise (our errors).

    Two draws in three give each observed name one role at most (so they reach the gate); the
    rest mix names, roles and values freely.
    """
    name = _names_of(graph)
    kind = draw(st.sampled_from(("interventional", "ate")))
    if len(graph.observed) >= 2 and draw(st.integers(0, 2)) > 0:
        obs = draw(st.permutations(graph.observed))
        k = draw(st.integers(1, len(obs) - 1))
        roles = obs[:k], obs[k:]
        z = roles[1][draw(st.integers(1, len(roles[1]))) :]
        x = roles[1][: len(roles[1]) - len(z)]
        given_ = draw(st.one_of(st.none(), st.just(list(z)), st.just(dict.fromkeys(z, 1.0))))
        if kind == "ate":
            return kind, (roles[0][0], x[0], 1.0, 0.0, given_)
        return kind, (list(roles[0][:2]), dict.fromkeys(x, 0.0), given_)
    if kind == "ate":
        given_ = draw(st.one_of(st.none(), st.lists(name, max_size=2)))
        treated, control = draw(mostly(st.sampled_from(((1.0, 0.0), (2, -1.5))), st.tuples(_values, _values)))
        return kind, (draw(name), draw(name), treated, control, given_)
    outcome = draw(st.one_of(name, st.lists(name, min_size=1, max_size=3)))
    do = draw(mostly(st.dictionaries(name, _values, min_size=1, max_size=3), st.just({})))
    given_ = draw(
        st.one_of(
            st.none(),
            st.none(),
            st.lists(name, max_size=3),
            st.dictionaries(name, st.one_of(st.none(), _values), max_size=3),
        )
    )
    return kind, (outcome, do, given_)


@profile(600)
@given(data=st.data())
def test_identify_raises_only_our_errors(data: st.DataObject) -> None:
    graph = data.draw(graphs(max_observed=6, max_latent=4))
    kind, args = data.draw(any_query(graph))
    strict = data.draw(st.booleans())
    try:
        query = ATE(*args) if kind == "ate" else Interventional(*args)
        result = identify(graph, query, strict=strict)
        assert isinstance(result.identified, bool) and result.reason
        if result.identified:
            estimand = derive_estimand(graph, query.treatments, query.outcomes, query.conditions)
            assert estimand is not None and str(estimand)
        event(f"{kind}: {'identified' if result.identified else 'refused'}")
    except CausalPPError as err:
        event(f"{kind}: {type(err).__name__}")


@profile(200)
@given(data=st.data())
def test_derive_estimand_raises_only_our_errors(data: st.DataObject) -> None:
    graph = data.draw(graphs())
    name = _names_of(graph)
    roles = [data.draw(st.one_of(name, st.lists(name, max_size=3), st.integers())) for _ in range(3)]
    with contextlib.suppress(CausalPPError):
        derive_estimand(graph, *roles)


# --- an independent brute-force criterion -----------------------------------------------


def _projection(graph: CausalGraph) -> tuple[set[tuple[str, str]], set[frozenset[str]]]:
    """Verma & Pearl's latent projection, computed here from the definition: a -> b when a directed
    path from a to b has only latent intermediates; a <-> b when some latent reaches both along
    latent-only directed paths."""
    g = graph.to_networkx()
    latent = set(graph.latent)

    def reach(v: str) -> set[str]:
        sub = g.subgraph(latent | {v})
        inner = nx.descendants(sub, v) | {v}
        return {w for u in inner for w in g.successors(u) if w not in latent}

    directed = {(a, b) for a in graph.observed for b in reach(a)}
    bidirected = {frozenset(p) for u in latent for p in itt.combinations(sorted(reach(u)), 2)}
    return directed, bidirected


def _subsets(items: Iterable[str], nonempty: bool = True) -> list[frozenset[str]]:
    items = sorted(items)
    return [
        frozenset(c) for r in range(1 if nonempty else 0, len(items) + 1) for c in itt.combinations(items, r)
    ]


def hedge_exists(graph: CausalGraph, x: frozenset[str], y: frozenset[str]) -> bool:
    """Is there a hedge for P(y | do(x)) (Shpitser & Pearl 2006)?

    A hedge is a pair of R-rooted C-forests F' ⊂ F with F ∩ X ≠ ∅, F' ∩ X = ∅ and
    R ⊆ An(Y)_{G_{\\bar X}}; P(y | do(x)) is identifiable iff there is none. A node set carries
    an R-rooted C-forest iff its bidirected edges connect it and each of its nodes has a directed
    path to R inside it (the forest keeps one out-edge per non-root node along such paths); the
    largest admissible R, F' ∩ An(Y)_{G_{\\bar X}}, is the easiest to reach, so only it is tried.

    (Hedges for P(y' | do(x')) with X' ⊂ X do not count: in X -> Z -> Y, X <-> Z, the pair
    F = {X, Z}, F' = {Z} is a hedge for P(y | do(x)), yet P(y | do(x, z)) = P(y | z).)
    """
    directed, bidirected = _projection(graph)
    nodes = set(graph.observed)

    def c_component(s: frozenset[str]) -> bool:
        b = nx.Graph()
        b.add_nodes_from(s)
        b.add_edges_from(tuple(p) for p in bidirected if p <= s)
        return nx.is_connected(b)

    def reaches(s: frozenset[str], roots: frozenset[str]) -> bool:
        d = nx.DiGraph()
        d.add_nodes_from(s)
        d.add_edges_from((a, b) for a, b in directed if a in s and b in s)
        back = set(roots).union(*(nx.ancestors(d, r) for r in roots))
        return back == s

    cut = nx.DiGraph()
    cut.add_nodes_from(nodes)
    cut.add_edges_from((a, b) for a, b in directed if b not in x)
    anc = set(y).union(*(nx.ancestors(cut, v) for v in y))
    components = [s for s in _subsets(nodes) if c_component(s)]
    for f in components:
        if not f & x:
            continue
        for f1 in components:
            roots = f1 & anc
            if f1 < f and not f1 & x and roots and reaches(f1, roots) and reaches(f, roots):
                return True
    return False


def rule2_reduce(
    graph: CausalGraph, x: frozenset[str], y: frozenset[str], z: frozenset[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """IDC's reduction: move Zi into do() while (Y ⊥ Zi | X, Z ∖ Zi) in G with the edges into X and
    out of Zi removed, decided by d-separation in the original DAG (latents never conditioned on)."""
    changed = True
    while changed:
        changed = False
        for zi in sorted(z):
            g = graph.to_networkx()
            g.remove_edges_from([(a, b) for a, b in list(g.edges) if b in x or a == zi])
            if nx.is_d_separator(g, set(y), {zi}, set(x | (z - {zi}))):
                x, z = x | {zi}, z - {zi}
                changed = True
                break
    return x, z


def brute_force_identified(
    graph: CausalGraph, x: frozenset[str], y: frozenset[str], z: frozenset[str]
) -> bool:
    x2, z2 = rule2_reduce(graph, x, y, z) if z else (x, z)
    return not hedge_exists(graph, x2, y | z2)


@st.composite
def valid_queries(
    draw: st.DrawFn, graph: CausalGraph
) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    obs = draw(st.permutations(graph.observed))
    ny = draw(st.integers(1, min(2, len(obs) - 1)))
    nx_ = draw(st.integers(1, min(2, len(obs) - ny)))
    nz = draw(st.integers(0, min(2, len(obs) - ny - nx_)))
    return frozenset(obs[ny : ny + nx_]), frozenset(obs[:ny]), frozenset(obs[ny + nx_ : ny + nx_ + nz])


@profile(1000)
@given(data=st.data())
def test_verdict_agrees_with_an_exhaustive_hedge_search(data: st.DataObject) -> None:
    graph = data.draw(graphs(max_observed=5, max_latent=3).filter(lambda g: len(g.observed) >= 2))
    x, y, z = data.draw(valid_queries(graph))
    query = Interventional(sorted(y), {v: 0.0 for v in x}, given=sorted(z) or None)
    verdict = identify(graph, query, strict=False).identified
    assert verdict == brute_force_identified(graph, x, y, z), (graph, query)
    event(f"{'IDC' if z else 'ID'}: {'identified' if verdict else 'refused'}")
    assert (derive_estimand(graph, x, y, z) is not None) == verdict


def test_brute_force_criterion_on_textbook_graphs() -> None:
    """The criterion itself, on the notes' table of correct verdicts (y0-pitfalls.md)."""
    cases = [
        ("Z -> X -> Y; Z -> Y", "X", "Y", "", True),
        ("U -> X; U -> Y; X -> Z -> Y", "X", "Y", "", True),
        ("W -> Z -> X -> Y; W <-> X; W <-> Y", "X", "Y", "", True),
        ("X -> Y; X <-> Z; Y <-> Z", "X", "Y", "", True),
        ("X -> Y; X <-> Y", "X", "Y", "", False),
        ("Z -> X -> Y; X <-> Y", "X", "Y", "", False),
        ("Z -> X -> Y; X <-> Y", "X", "Y", "Z", False),
        ("S -> T -> C; S -> C; S <-> T; T <-> C", "S", "C", "", False),
        ("X -> Z -> Y; X <-> Z", "X", "Y", "", False),
        ("X -> Z -> Y; X <-> Z", "X", "Y", "Z", True),
    ]
    for text, x, y, z, identified in cases:
        g = CausalGraph.parse(text, latent=["U"] if "U ->" in text else [])
        fz = frozenset([z]) if z else frozenset()
        assert brute_force_identified(g, frozenset([x]), frozenset([y]), fz) == identified, text


# --- graph strings ----------------------------------------------------------------------

_NAME_TOKENS = st.sampled_from(["X", "Y", "Z", "U", "P", "a-b", "x1", "é", "U_X_Y"])
_NOISE = st.sampled_from(
    ["X", "->", "<-", "<->", "-", "--", "<", ">", "->->", ";", ",", "\n", " ", "\t", "", "-X", "X-", "<-->"]
)
# Mostly well-formed statements (chains of names and arrows), sometimes with noise spliced in.
_CHAINS = st.builds(
    lambda first, rest: first + "".join(f" {arrow} {name}" for arrow, name in rest),
    _NAME_TOKENS,
    st.lists(st.tuples(st.sampled_from(["->", "<-", "<->"]), _NAME_TOKENS), max_size=3),
)
_GRAPH_TEXT = st.builds(
    lambda parts, sep: sep.join(parts),
    st.lists(mostly(_CHAINS, _NOISE, 8), min_size=1, max_size=5),
    st.sampled_from(["; ", ",", "\n", " ; ", ";;"]),
)


@profile(500)
@given(
    text=_GRAPH_TEXT,
    latent=mostly(
        st.lists(st.sampled_from(["X", "U", "U_X_Y"]), max_size=2),
        st.one_of(st.lists(st.sampled_from(["nope", "", "a b", 3]), max_size=2), st.text(max_size=3)),
    ),
)
def test_parse_raises_only_our_errors_and_round_trips(text: str, latent: Any) -> None:
    try:
        g = CausalGraph.parse(text, latent=latent)
    except CausalPPError as err:
        event(type(err).__name__)
        return
    event("parsed")
    assert CausalGraph.parse(g.to_string(), latent=g.latent) == g


@profile(200)
@given(text=st.text(max_size=30))
def test_parse_of_arbitrary_text_raises_only_our_errors(text: str) -> None:
    with contextlib.suppress(CausalPPError):
        CausalGraph.parse(text)
