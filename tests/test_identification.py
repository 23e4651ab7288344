"""The identification gate (issue #2 acceptance).

Three methods decide every query here and must agree:

1. y0 0.2.11's ID/IDC with causal_pp's in-scope patches (``y0_identify``);
2. causal_pp's own hedge criterion with the Rule-2 IDC reduction (``hedge_criterion``);
3. a brute-force hedge search written in this file from the definition (Shpitser & Pearl 2006),
   on a latent projection and a do-calculus Rule-2 reduction also written here (d-separation by
   moralising the ancestral set of the *latent* DAG, not the projection).

Textbook graphs have hand-checked verdicts; >= 200 seeded random DAGs with latents cross-check
the three methods, and deliberately broken criteria show the cross-check can fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools as itt
import random
import threading
from collections.abc import Iterable

import networkx as nx
import pytest
import y0.examples
from y0.algorithm import conditional_independencies
from y0.algorithm.identify import id_c, identify_outcomes
from y0.graph import NxMixedGraph

from causal_pp import (
    ATE,
    CausalGraph,
    CausalPPError,
    GraphError,
    Identification,
    Interventional,
    LatentVariableQueryError,
    NotIdentifiableError,
    QueryError,
    UnknownVariableError,
    identify,
)
from causal_pp.identification import interventional as gate_module
from causal_pp.identification import y0_adapter
from causal_pp.identification.hedge import ADMG, hedge_criterion, idc_reduce
from causal_pp.identification.interventional import decide
from causal_pp.identification.y0_adapter import y0_identify

ORIGINAL_REMOVE_IN_EDGES = NxMixedGraph.__dict__["remove_in_edges"]
ORIGINAL_ARE_D_SEPARATED = conditional_independencies.are_d_separated


# =========================================================================================
# The third method: written from the definitions, independent of causal_pp and y0
# =========================================================================================


def project(
    nodes: Iterable[str], edges: Iterable[tuple[str, str]], latent: set[str]
) -> tuple[list[str], set[tuple[str, str]], set[frozenset[str]]]:
    """Verma-Pearl latent projection: A -> B iff a directed path A -> ... -> B has only latent
    intermediates; A <-> B iff a latent L has such paths to A and to B."""
    nodes = list(nodes)
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        children[a].append(b)

    def reach(v: str) -> set[str]:
        out, stack, seen = set(), list(children[v]), set()
        while stack:
            w = stack.pop()
            if w not in seen:
                seen.add(w)
                if w in latent:
                    stack.extend(children[w])
                else:
                    out.add(w)
        return out

    observed = sorted(n for n in nodes if n not in latent)
    directed = {(a, b) for a in observed for b in reach(a)}
    bidirected = {frozenset(p) for u in latent for p in itt.combinations(sorted(reach(u)), 2)}
    return observed, directed, bidirected


def d_separated(edges: Iterable[tuple[str, str]], xs: set[str], ys: set[str], zs: set[str]) -> bool:
    """Lauritzen's criterion: X and Y are d-separated by Z in a DAG iff they are separated by Z
    in the moral graph of the ancestral set of X ∪ Y ∪ Z."""
    edges = list(edges)
    parents: dict[str, set[str]] = {}
    for a, b in edges:
        parents.setdefault(b, set()).add(a)
    ancestral, stack = set(xs | ys | zs), list(xs | ys | zs)
    while stack:
        for p in parents.get(stack.pop(), ()):
            if p not in ancestral:
                ancestral.add(p)
                stack.append(p)
    adjacent: dict[str, set[str]] = {v: set() for v in ancestral}
    for b in ancestral:
        ps = sorted(parents.get(b, set()) & ancestral)
        for p in ps:
            adjacent[p].add(b)
            adjacent[b].add(p)
        for p, q in itt.combinations(ps, 2):  # marry the parents
            adjacent[p].add(q)
            adjacent[q].add(p)
    seen, stack = set(xs), list(xs)
    while stack:
        for w in adjacent[stack.pop()]:
            if w in ys:
                return False
            if w not in seen and w not in zs:
                seen.add(w)
                stack.append(w)
    return True


def rule2_reduce(
    edges: list[tuple[str, str]], x: frozenset[str], y: frozenset[str], z: frozenset[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """IDC's reduction on the latent DAG: while some Zi has (Y ⊥ Zi | X, Z - Zi) in the graph
    with edges into X and out of Zi removed, replace 'given Zi' by 'do(Zi)'."""
    moved = True
    while moved:
        moved = False
        for zi in sorted(z):
            cut = [(a, b) for a, b in edges if b not in x and a != zi]
            if d_separated(cut, set(y), {zi}, set(x | (z - {zi}))):
                x, z, moved = x | {zi}, z - {zi}, True
                break
    return x, z


def brute_force_hedge(
    observed: list[str],
    directed: set[tuple[str, str]],
    bidirected: set[frozenset[str]],
    x: Iterable[str],
    y: Iterable[str],
) -> tuple[frozenset[str], frozenset[str]] | None:
    """Search every pair F' ⊆ F of observed node sets for a hedge for P(y | do(x)).

    Shpitser & Pearl (2006), Def. 5: F and F' form a hedge if both are R-rooted c-forests,
    F ∩ X ≠ ∅, F' ∩ X = ∅, F' ⊆ F and R ⊆ An(Y) in G with edges into X removed. An R-rooted
    c-forest is a subgraph that is bidirected-connected and whose nodes each have a directed
    path (inside it) to its root set R, the nodes without children in it. A node set carries
    such a subgraph for a given R iff its induced subgraph is bidirected-connected and every
    node reaches R inside it (keep a spanning in-forest of directed edges towards R, drop the
    edges out of R); R must lie in F', and a larger R only helps, so R = F' ∩ An(Y)_{G_X̄}.
    Returns (F, F') for the first hedge found, or None.
    """
    n = len(observed)
    bit = {v: 1 << i for i, v in enumerate(observed)}
    children = [0] * n
    spouses = [0] * n
    for a, b in directed:
        children[observed.index(a)] |= bit[b]
    for pair in bidirected:
        a, b = sorted(pair)
        spouses[observed.index(a)] |= bit[b]
        spouses[observed.index(b)] |= bit[a]
    xmask = sum(bit[v] for v in x)
    # An(Y) in G_{X̄}: follow edges a -> b backwards unless b is a treatment.
    an_y = sum(bit[v] for v in y)
    grew = True
    while grew:
        grew = False
        for i in range(n):
            if not an_y >> i & 1 and children[i] & an_y & ~xmask:
                an_y |= 1 << i
                grew = True

    def members(s: int) -> list[int]:
        return [i for i in range(n) if s >> i & 1]

    def connected(s: int) -> bool:
        first = s & -s
        seen, frontier = first, [first.bit_length() - 1]
        while frontier:
            new = spouses[frontier.pop()] & s & ~seen
            seen |= new
            frontier += members(new)
        return seen == s

    def reaches(s: int, roots: int) -> bool:
        got = roots
        grew = True
        while grew:
            grew = False
            for i in members(s & ~got):
                if children[i] & got:
                    got |= 1 << i
                    grew = True
        return got == s

    full = (1 << n) - 1
    connected_sets = {s for s in range(1, full + 1) if connected(s)}
    names = lambda s: frozenset(observed[i] for i in members(s))  # noqa: E731
    for f_small in range(1, full + 1):
        if f_small & xmask or f_small not in connected_sets:
            continue
        roots = f_small & an_y
        if not roots or not reaches(f_small, roots):
            continue
        rest = full & ~f_small
        extra = rest
        while extra:  # every non-empty superset F = F' ∪ extra
            f_big = f_small | extra
            if f_big & xmask and f_big in connected_sets and reaches(f_big, roots):
                return names(f_big), names(f_small)
            extra = (extra - 1) & rest
    return None


def brute_force_verdict(
    graph: CausalGraph, x: frozenset[str], y: frozenset[str], z: frozenset[str] = frozenset()
) -> bool:
    """The third method: Rule-2 reduction on the latent DAG, then the brute-force hedge search."""
    latent = set(graph.latent)
    x2, z2 = rule2_reduce(list(graph.edges), x, y, z) if z else (x, z)
    observed, directed, bidirected = project(graph.nodes, graph.edges, latent)
    return brute_force_hedge(observed, directed, bidirected, x2, y | z2) is None


def y0_verdict(graph: CausalGraph, x: Iterable[str], y: Iterable[str], z: Iterable[str] = ()) -> bool:
    est = y0_identify(
        graph.to_admg(), [graph.to_y0(v) for v in x], [graph.to_y0(v) for v in y], [graph.to_y0(v) for v in z]
    )
    return est is not None


def hedge_verdict(
    graph: CausalGraph, x: frozenset[str], y: frozenset[str], z: frozenset[str] = frozenset()
) -> bool:
    admg = ADMG.of(graph)
    x2, z2, _ = idc_reduce(admg, x, y, z) if z else (x, z, ())
    return hedge_criterion(admg, x2, y | z2) is None


def _y0_graph(example) -> NxMixedGraph:  # type: ignore[no-untyped-def]
    """y0.examples holds some graphs bare and some wrapped in an ``Example``."""
    return getattr(example, "graph", example)


def causal_graph_of(admg: NxMixedGraph) -> CausalGraph:
    """A y0 ADMG as a DAG with explicit latent nodes: each A <-> B becomes U_A_B -> A, B."""
    edges = [(a.name, b.name) for a, b in admg.directed.edges]
    latent = []
    for a, b in admg.undirected.edges:
        a, b = sorted((a.name, b.name))
        latent.append(f"U_{a}_{b}")
        edges += [(f"U_{a}_{b}", a), (f"U_{a}_{b}", b)]
    return CausalGraph(edges, latent=latent, nodes=[v.name for v in admg.nodes()])


# =========================================================================================
# Textbook graphs
# =========================================================================================

IGF = CausalGraph.parse(
    "EGF -> SOS; EGF -> PI3K; IGF -> SOS; IGF -> PI3K; SOS -> Ras -> PI3K -> AKT -> Raf; "
    "Ras -> Raf -> Mek -> Erk",
    latent=["EGF", "IGF"],
)
SARS = CausalGraph.parse(
    "SARS -> ACE2 -> Ang -> AGTR1 -> ADAM17; ADAM17 -> EGF; ADAM17 -> TNF; ADAM17 -> Sil6r; "
    "SARS -> PRR -> NFKB; EGF -> EGFR; Gefi -> EGFR; EGFR -> NFKB; TNF -> NFKB; Toci -> Sil6r; "
    "Sil6r -> IL6STAT3; NFKB -> IL6AMP; IL6STAT3 -> IL6AMP; IL6AMP -> cytok; "
    "U1 -> SARS; U1 -> Ang; U2 -> SARS; U2 -> Ang; U1A -> ADAM17; U1A -> Sil6r; U2A -> ADAM17; "
    "U2A -> Sil6r; U1P -> PRR; U1P -> NFKB; U2P -> PRR; U2P -> NFKB; U_EE -> EGF; U_EE -> EGFR; "
    "U_ET -> EGFR; U_ET -> TNF; U_EI -> EGFR; U_EI -> IL6STAT3",
    latent=["U1", "U2", "U1A", "U2A", "U1P", "U2P", "U_EE", "U_ET", "U_EI"],
)
MULTI_CAUSE_FRONTDOOR = CausalGraph(
    [(u, v) for u in ("U1", "U2", "U3") for v in ("X1", "X2", "X3", "X4", "X5", "Y")]
    + [(f"X{i}", "M") for i in range(1, 6)]
    + [("M", "Y")],
    latent=["U1", "U2", "U3"],
)
FIGURE_6A = causal_graph_of(_y0_graph(y0.examples.figure_6a))


def _g(text: str, latent: Iterable[str] = ()) -> CausalGraph:
    return CausalGraph.parse(text, latent=list(latent))


# (id, graph, outcomes, treatments, conditions, identified)
TEXTBOOK = [
    ("backdoor", _g("Z -> X; Z -> Y; X -> Y"), "Y", "X", "", True),
    (
        "backdoor-latent-mediator-of-confounding",
        _g("Z -> X; L -> Z; L -> Y; X -> Y", ["L"]),
        "Y",
        "X",
        "",
        True,
    ),
    ("frontdoor", _g("U -> X; U -> Y; X -> M -> Y", ["U"]), "Y", "X", "", True),
    ("napkin", _g("W -> R -> X -> Y; U1 -> W; U1 -> X; U2 -> W; U2 -> Y", ["U1", "U2"]), "Y", "X", "", True),
    ("m-graph-y0", causal_graph_of(_y0_graph(y0.examples.m_graph)), "Y", "X", "", True),
    ("m-bias", _g("U1 -> X; U1 -> M; U2 -> M; U2 -> Y; X -> Y", ["U1", "U2"]), "Y", "X", "", True),
    (
        "m-bias-given-collider",
        _g("U1 -> X; U1 -> M; U2 -> M; U2 -> Y; X -> Y", ["U1", "U2"]),
        "Y",
        "X",
        "M",
        False,
    ),
    ("bow", _g("U -> X; U -> Y; X -> Y", ["U"]), "Y", "X", "", False),
    ("bow-shorthand", _g("X -> Y; X <-> Y"), "Y", "X", "", False),
    ("instrumental-variable", _g("Z -> X -> Y; U -> X; U -> Y", ["U"]), "Y", "X", "", False),
    ("instrumental-variable-given-Z", _g("Z -> X -> Y; U -> X; U -> Y", ["U"]), "Y", "X", "Z", False),
    ("cancer-S-on-C", _g("S -> T -> C; S -> C; S <-> T"), "C", "S", "", False),
    ("cancer-T-on-C", _g("S -> T -> C; S -> C; S <-> T"), "C", "T", "", True),
    ("cancer-S-on-C-given-T", _g("S -> T -> C; S -> C; S <-> T"), "C", "S", "T", True),
    ("figure-6a", FIGURE_6A, "Y", "X", "", False),
    ("figure-6a-given-Z", FIGURE_6A, "Y", "X", "Z", True),
    ("figure-6a-Z", FIGURE_6A, "Z", "X", "", False),
    # multiple treatments
    ("two-treatments-confounded-with-each-other", _g("X1 -> Y; X2 -> Y; X1 <-> X2"), "Y", "X1,X2", "", True),
    ("two-treatments-one-confounded-with-Y", _g("X1 -> Y; X2 -> Y; X2 <-> Y"), "Y", "X1,X2", "", False),
    ("two-treatments-chain", _g("X1 -> X2 -> Y; X1 <-> Y"), "Y", "X1,X2", "", True),
    ("multi-cause-frontdoor", MULTI_CAUSE_FRONTDOOR, "Y", "X1,X2,X3,X4,X5", "", True),
    ("multi-cause-frontdoor-one-cause", MULTI_CAUSE_FRONTDOOR, "Y", "X1", "", True),
    # multiple outcomes
    ("two-outcomes-confounded-with-each-other", _g("X -> Y1; X -> Y2; Y1 <-> Y2"), "Y1,Y2", "X", "", True),
    ("two-outcomes-frontdoor", _g("X -> M -> Y; X <-> Y"), "M,Y", "X", "", True),
    ("two-outcomes-one-confounded-with-X", _g("X -> Y1; X -> Y2; X <-> Y2"), "Y1,Y2", "X", "", False),
    (
        "two-outcomes-two-treatments",
        _g("X1 -> Y1; X2 -> Y2; X1 <-> Y2; X2 <-> Y1"),
        "Y1,Y2",
        "X1,X2",
        "",
        True,
    ),
    # isolated observed node (y0 pitfall #3: unpatched IDC crashes)
    ("isolated-node-given", _g("X -> Y; W"), "Y", "X", "W", True),
    ("isolated-node-is-treatment", _g("X -> Y; X <-> Y; W"), "Y", "W", "", True),
    ("isolated-node-bow-given", _g("X -> Y; X <-> Y; W"), "Y", "X", "W", False),
    (
        "isolated-node-is-condition-and-treatment-isolated",
        _g("Z1 -> Y; Z1 <-> Z2; Z2 <-> Y; X"),
        "Y",
        "X",
        "Z1,Z2",
        True,
    ),
    (
        "iv-given-Z-explicit",
        causal_graph_of(_y0_graph(y0.examples.instrumental_variable)),
        "Y",
        "X",
        "Z",
        False,
    ),
    # names y0 reserves
    ("reserved-names-frontdoor", _g("P -> Q -> PP; P <-> PP"), "PP", "P", "", True),
    ("reserved-names-bow", _g("P -> Q; P <-> Q"), "Q", "P", "", False),
    ("reserved-names-given", _g("PP -> P -> Q; PP -> Q; P <-> PP"), "Q", "P", "PP", True),
    # unpatched y0 IDC gets these wrong (it moralises only along directed edges)
    ("y0-dsep-false-refusal", _g("Z1 -> Y; Z1 <-> Z2; Z2 <-> Y; X"), "Y", "X", "Z1,Z2", True),
    ("y0-dsep-false-identification", _g("X -> Y; Z1 <-> Z2; Z1 <-> X; Z2 <-> Y"), "Y", "X", "Z1,Z2", False),
    # the paper's case studies
    ("igf-erk-do-sos", IGF, "Erk", "SOS", "", True),
    ("igf-erk-do-pi3k", IGF, "Erk", "PI3K", "", True),
    ("sars-cytok-do-sil6r", SARS, "cytok", "Sil6r", "", True),
    ("sars-cytok-do-egfr", SARS, "cytok", "EGFR", "", True),
]
BRUTE_FORCE_MAX_OBSERVED = 9  # 3^9 candidate pairs; the SARS graph (16 observed) is skipped


def _split(names: str) -> frozenset[str]:
    return frozenset(n for n in names.split(",") if n)


def _query(outcomes: str, treatments: str, conditions: str) -> Interventional:
    return Interventional(
        sorted(_split(outcomes)),
        do=dict.fromkeys(sorted(_split(treatments)), 1.0),
        given=sorted(_split(conditions)),
    )


@pytest.mark.parametrize(
    ("graph", "outcomes", "treatments", "conditions", "expected"),
    [case[1:] for case in TEXTBOOK],
    ids=[case[0] for case in TEXTBOOK],
)
def test_textbook_verdicts(
    graph: CausalGraph, outcomes: str, treatments: str, conditions: str, expected: bool
) -> None:
    x, y, z = _split(treatments), _split(outcomes), _split(conditions)
    query = _query(outcomes, treatments, conditions)
    result = identify(graph, query, strict=False)
    assert result.identified is expected
    assert result.algorithm == ("IDC" if z else "ID")
    # each method on its own gives the textbook verdict, not just their conjunction
    assert y0_verdict(graph, x, y, z) is expected, "y0 (patched)"
    assert hedge_verdict(graph, x, y, z) is expected, "causal_pp hedge criterion"
    if len(graph.observed) <= BRUTE_FORCE_MAX_OBSERVED:
        assert brute_force_verdict(graph, x, y, z) is expected, "brute-force hedge search"
    if expected:
        assert result.estimand is not None and "identified from the observed" in result.reason
        assert identify(graph, query).identified  # strict does not raise
    else:
        assert result.estimand is None and "not identifiable" in result.reason
        with pytest.raises(NotIdentifiableError):
            identify(graph, query)


def test_figure_6a_is_the_y0_example_graph() -> None:
    """y0.examples.figure_6a is X -> Z -> Y with X <-> Z: conditioning on Z (the mediator
    confounded with X) identifies the effect, by rule 2 (P(Y | do(X), Z) = P(Y | Z))."""
    assert _g("X -> Z -> Y; U_X_Z -> X; U_X_Z -> Z", ["U_X_Z"]) == FIGURE_6A
    r = identify(FIGURE_6A, Interventional("Y", do={"X": 1}, given=["Z"]))
    assert "rule 2" in r.reason and "{Z}" in r.reason


@pytest.mark.parametrize(
    ("graph", "example", "rename"),
    [(IGF, y0.examples.igf_example, {}), (SARS, y0.examples.sars_large_example, {"SARS": "SARS_COV2"})],
    ids=["igf", "sars-cov-2"],
)
def test_case_study_graphs_project_to_the_y0_examples(graph: CausalGraph, example, rename: dict) -> None:
    directed, bidirected = graph.projected_edges()
    theirs = _y0_graph(example)
    assert {(rename.get(a, a), rename.get(b, b)) for a, b in directed} == {
        (a.name, b.name) for a, b in theirs.directed.edges
    }
    assert {frozenset(rename.get(v, v) for v in p) for p in bidirected} == {
        frozenset((a.name, b.name)) for a, b in theirs.undirected.edges
    }
    assert len(graph.observed) == len(list(theirs.nodes()))


def test_sars_graph_matches_the_notes() -> None:
    assert len(SARS.observed) == 16 and len(SARS.latent) == 9


# =========================================================================================
# Random DAGs: three methods agree
# =========================================================================================


def random_case(rng: random.Random) -> tuple[CausalGraph, list[tuple[frozenset, frozenset, frozenset]]]:
    while True:
        n = rng.randint(4, 8)
        names = [f"V{i}" for i in range(n)]
        rng.shuffle(names)
        p = rng.uniform(0.25, 0.8)
        edges = [(names[i], names[j]) for i in range(n) for j in range(i + 1, n) if rng.random() < p]
        latent = [v for v in names if rng.random() < 0.45]
        graph = CausalGraph(edges, latent=latent, nodes=names)
        if len(graph.observed) >= 2:
            break
    observed = list(graph.observed)
    queries = []
    for k in range(3):
        order = rng.sample(observed, len(observed))
        nx_ = rng.randint(1, max(1, min(2, len(order) - 1)))
        ny = rng.randint(1, max(1, min(2, len(order) - nx_)))
        x, y, rest = order[:nx_], order[nx_ : nx_ + ny], order[nx_ + ny :]
        # one query in two is conditional when there is something left to condition on
        z = [v for v in rest if rng.random() < 0.6] if k != 1 else []
        if k == 0 and rest and not z:
            z = [rest[0]]
        queries.append((frozenset(x), frozenset(y), frozenset(z)))
    return graph, queries


def _random_cases(count: int, seed: int) -> list[tuple[CausalGraph, list]]:
    rng = random.Random(seed)
    return [random_case(rng) for _ in range(count)]


RANDOM_CASES = _random_cases(240, seed=2)


@pytest.fixture(scope="module")
def random_verdicts() -> list[tuple[CausalGraph, frozenset, frozenset, frozenset, bool]]:
    """The agreed verdict of every random query (the cross-check runs once per session)."""
    out = []
    for graph, queries in RANDOM_CASES:
        for x, y, z in queries:
            theirs = y0_verdict(graph, x, y, z)
            ours = hedge_verdict(graph, x, y, z)
            brute = brute_force_verdict(graph, x, y, z)
            assert theirs == ours == brute, (graph, sorted(x), sorted(y), sorted(z), theirs, ours, brute)
            gate = identify(graph, Interventional(sorted(y), dict.fromkeys(x, 0.0), sorted(z)), strict=False)
            assert gate.identified == ours
            out.append((graph, x, y, z, ours))
    return out


def test_random_dags_three_methods_agree(random_verdicts: list) -> None:
    assert len(RANDOM_CASES) >= 200
    refused = [v for v in random_verdicts if not v[4]]
    conditional = [v for v in random_verdicts if v[3]]
    moved = [v for v in conditional if idc_reduce(ADMG.of(v[0]), v[1], v[2], v[3])[2]]
    joint = [v for v in random_verdicts if len(v[1]) > 1 or len(v[2]) > 1]
    # the random set is informative: both verdicts, conditional queries where rule 2 moves a
    # condition and where it does not, multi-treatment / multi-outcome queries
    assert len(refused) >= 40, len(refused)
    assert len(random_verdicts) - len(refused) >= 40
    assert len(conditional) >= 200 and len(moved) >= 30 and len(conditional) - len(moved) >= 30
    assert len(joint) >= 200
    assert sum(1 for v in conditional if not v[4]) >= 20


def _mutant_no_idc_reduction(graph: CausalGraph, x, y, z) -> bool:  # type: ignore[no-untyped-def]
    """Treat P(y | do(x), z) as identified iff P(y, z | do(x)) is (skips rule 2)."""
    return hedge_criterion(ADMG.of(graph), x, y | z) is None


def _mutant_rule2_keeps_edges_into_x(graph: CausalGraph, x, y, z) -> bool:  # type: ignore[no-untyped-def]
    edges = list(graph.edges)
    moved = True
    while moved:
        moved = False
        for zi in sorted(z):
            cut = [(a, b) for a, b in edges if a != zi]  # wrong: edges into X are kept
            if d_separated(cut, set(y), {zi}, set(x | (z - {zi}))):
                x, z, moved = x | {zi}, z - {zi}, True
                break
    observed, directed, bidirected = project(graph.nodes, graph.edges, set(graph.latent))
    return brute_force_hedge(observed, directed, bidirected, x, y | z) is None


def _mutant_rule2_keeps_edges_out_of_zi(graph: CausalGraph, x, y, z) -> bool:  # type: ignore[no-untyped-def]
    """Rule 2 tested in G with only edges into X cut (that is rule 3's graph for a do(Zi))."""
    edges = list(graph.edges)
    moved = True
    while moved:
        moved = False
        for zi in sorted(z):
            cut = [(a, b) for a, b in edges if b not in x]  # wrong: edges out of Zi are kept
            if d_separated(cut, set(y), {zi}, set(x | (z - {zi}))):
                x, z, moved = x | {zi}, z - {zi}, True
                break
    observed, directed, bidirected = project(graph.nodes, graph.edges, set(graph.latent))
    return brute_force_hedge(observed, directed, bidirected, x, y | z) is None


def _mutant_one_step_tian(graph: CausalGraph, x, y, z) -> bool:  # type: ignore[no-untyped-def]
    """Tian's recursion cut after its first step: identified unless An(C) fills its district."""
    admg = ADMG.of(graph)
    x2, z2, _ = idc_reduce(admg, x, y, z) if z else (x, z, ())
    d = admg.restrict(admg.nodes - x2).ancestors(y | z2)
    big = admg.districts()
    for c in admg.restrict(d).districts():
        t = next(s for s in big if c <= s)
        if admg.restrict(t).ancestors(c) & t == t and c != t:
            return False
    return True


def _mutant_no_bidirected(graph: CausalGraph, x, y, z) -> bool:  # type: ignore[no-untyped-def]
    return True


@pytest.mark.parametrize(
    "mutant",
    [
        _mutant_no_idc_reduction,
        _mutant_rule2_keeps_edges_into_x,
        _mutant_rule2_keeps_edges_out_of_zi,
        _mutant_one_step_tian,
        _mutant_no_bidirected,
    ],
    ids=lambda f: f.__name__.removeprefix("_mutant_"),
)
def test_a_wrong_criterion_disagrees_on_the_random_set(random_verdicts: list, mutant) -> None:
    """The cross-check can fail: each deliberately broken criterion gets some verdict wrong."""
    wrong = sum(mutant(g, x, y, z) != verdict for g, x, y, z, verdict in random_verdicts)
    assert wrong >= 1, f"{mutant.__name__} agreed with every verdict: the random set cannot catch it"


def test_brute_force_finds_the_textbook_hedges() -> None:
    observed, directed, bidirected = project(["X", "Y", "U"], [("U", "X"), ("U", "Y"), ("X", "Y")], {"U"})
    assert brute_force_hedge(observed, directed, bidirected, {"X"}, {"Y"}) == ({"X", "Y"}, {"Y"})
    observed, directed, bidirected = project(
        ["X", "M", "Y", "U"], [("U", "X"), ("U", "Y"), ("X", "M"), ("M", "Y")], {"U"}
    )
    assert brute_force_hedge(observed, directed, bidirected, {"X"}, {"Y"}) is None
    # d-separation helper: a collider opens when conditioned on
    assert d_separated([("A", "C"), ("B", "C")], {"A"}, {"B"}, set())
    assert not d_separated([("A", "C"), ("B", "C")], {"A"}, {"B"}, {"C"})
    assert not d_separated([("A", "C"), ("B", "C"), ("C", "D")], {"A"}, {"B"}, {"D"})
    assert d_separated([("A", "C"), ("C", "B")], {"A"}, {"B"}, {"C"})


# =========================================================================================
# The y0 workarounds
# =========================================================================================


def test_unpatched_y0_crashes_where_the_gate_does_not() -> None:
    """y0 pitfall #3: IDC on the instrumental-variable graph conditioned on Z crashes unpatched."""
    from y0.dsl import X, Y, Z

    with pytest.raises((KeyError, nx.NetworkXError)):
        identify_outcomes(_y0_graph(y0.examples.instrumental_variable), X, Y, conditions={Z})
    graph = causal_graph_of(_y0_graph(y0.examples.instrumental_variable))
    assert not identify(graph, Interventional("Y", do={"X": 1}, given=["Z"]), strict=False).identified


def test_unpatched_y0_d_separation_misses_bidirected_colliders() -> None:
    """y0's are_d_separated moralises only directed edges: Y <-> Z2 <-> Z1 given Z2 is open."""
    from y0.dsl import Variable

    y, z1, z2 = Variable("Y"), Variable("Z1"), Variable("Z2")
    g = NxMixedGraph.from_edges(nodes=[y, z1, z2], directed=[], undirected=[(z1, z2), (z2, y)])
    assert bool(conditional_independencies.are_d_separated(g, y, z1, conditions={z2}))  # y0: wrong
    assert not y0_adapter.m_separated(g, y, z1, conditions={z2})  # ours: open collider path
    assert y0_adapter.m_separated(g, y, z1, conditions=set())  # the collider blocks when unobserved


def _assert_y0_unpatched() -> None:
    assert NxMixedGraph.__dict__["remove_in_edges"] is ORIGINAL_REMOVE_IN_EDGES
    assert id_c.are_d_separated is ORIGINAL_ARE_D_SEPARATED


def test_y0_patch_is_restored_after_a_call() -> None:
    _assert_y0_unpatched()
    decide.cache_clear()
    graph = _g("X -> Y; X <-> Y; W")
    identify(graph, Interventional("Y", do={"X": 1}, given=["W"]), strict=False)
    identify(FIGURE_6A, Interventional("Y", do={"X": 1}, given=["Z"]))
    _assert_y0_unpatched()


def test_y0_patch_is_restored_when_y0_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import y0.algorithm.identify as y0_algorithm

    seen = []

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(
            NxMixedGraph.__dict__["remove_in_edges"] is y0_adapter.remove_in_edges_keeping_nodes
            and id_c.are_d_separated is y0_adapter.m_separated
        )
        raise RuntimeError("boom")

    monkeypatch.setattr(y0_algorithm, "identify_outcomes", boom)
    graph = _g("X -> M -> Y; X <-> Y")
    with pytest.raises(RuntimeError, match="boom"):
        y0_identify(graph.to_admg(), [graph.to_y0("X")], [graph.to_y0("Y")], [])
    _assert_y0_unpatched()
    # through the gate: a y0 crash refuses the query (our check alone would identify it)
    decide.cache_clear()
    result = identify(graph, Interventional("Y", do={"X": 1}), strict=False)
    assert not result.identified
    assert "crashed (RuntimeError: boom)" in result.reason and "disagree" in result.reason
    with pytest.raises(NotIdentifiableError, match="crashed"):
        identify(graph, Interventional("Y", do={"X": 2}))
    _assert_y0_unpatched()
    assert seen and all(seen)
    decide.cache_clear()


def test_disagreements_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate is the conjunction: either method refusing refuses, and the reason says so."""
    frontdoor, bow = _g("X -> M -> Y; X <-> Y"), _g("X -> Y; X <-> Y")
    q = Interventional("Y", do={"X": 1})
    decide.cache_clear()
    monkeypatch.setattr(gate_module, "y0_identify", lambda *a, **k: None)
    r = identify(frontdoor, q, strict=False)
    assert not r.identified and "found it not identifiable" in r.reason and "disagree" in r.reason
    decide.cache_clear()
    monkeypatch.setattr(gate_module, "y0_identify", lambda *a, **k: frontdoor.to_y0("X"))
    r = identify(bow, q, strict=False)
    assert not r.identified and "returned a formula for it anyway" in r.reason
    assert r.estimand is None
    decide.cache_clear()


def test_concurrent_calls_agree_with_sequential_ones() -> None:
    cases = [(g, qs[0]) for g, qs in RANDOM_CASES[:40]]
    queries = [Interventional(sorted(y), dict.fromkeys(x, 1.0), sorted(z)) for _, (x, y, z) in cases]
    decide.cache_clear()
    expected = [identify(g, q, strict=False).identified for (g, _), q in zip(cases, queries, strict=True)]
    decide.cache_clear()
    got: dict[int, bool] = {}

    def work(offset: int) -> None:
        for i in range(offset, len(cases), 4):
            got[i] = identify(
                CausalGraph(cases[i][0].edges, cases[i][0].latent, cases[i][0].nodes),
                queries[i],
                strict=False,
            ).identified

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(cases))] == expected
    _assert_y0_unpatched()


# =========================================================================================
# The gate's behaviour
# =========================================================================================

BOW = _g("U -> X; U -> Y; X -> Y; W -> X", ["U"])
FRONTDOOR = _g("U -> X; U -> Y; X -> M -> Y", ["U"])


def test_refusal_is_a_causal_pp_error_naming_query_observed_set_and_path() -> None:
    query = Interventional("Y", do={"X": 1.0})
    with pytest.raises(NotIdentifiableError) as info:
        identify(BOW, query)
    err = info.value
    assert isinstance(err, CausalPPError)
    msg = str(err)
    assert str(query) in msg  # the query: P(Y | do(X=1))
    assert "{W, X, Y}" in msg  # the observed set
    assert "X <-> Y" in msg  # the confounding (bidirected) path
    assert "U" not in msg.replace("U_", "")  # latent names do not leak: the projection is shown
    assert err.query is query and err.graph is BOW
    assert isinstance(err.admg, NxMixedGraph)
    assert {BOW.from_y0(v) for v in err.admg.nodes()} == {"W", "X", "Y"}
    assert err.reason and err.reason in msg and "hedge" in err.reason


def test_refusal_names_a_longer_confounding_path() -> None:
    g = _g("X -> Y; X <-> W; W <-> Y; W -> Y")
    with pytest.raises(NotIdentifiableError, match="X <-> W <-> Y"):
        identify(g, Interventional("Y", do={"X": 1}))


def test_conditional_refusal_and_rule_2_explanation() -> None:
    iv = _g("Z -> X -> Y; U -> X; U -> Y", ["U"])
    with pytest.raises(NotIdentifiableError) as info:
        identify(iv, Interventional("Y", do={"X": 1}, given=["Z"]))
    assert "P(Y | do(X), Z)" in info.value.reason and "X <-> Y" in info.value.reason
    cancer = _g("S -> T -> C; S -> C; S <-> T")
    r = identify(cancer, Interventional("C", do={"S": 1}, given=["T"]))
    assert r.algorithm == "IDC" and "rule 2" in r.reason and "P(C | do(S, T))" in r.reason


def test_strict_false_returns_the_refusal() -> None:
    r = identify(BOW, Interventional("Y", do={"X": 1.0}), strict=False)
    assert isinstance(r, Identification)
    assert r.identified is False and r.algorithm == "ID"
    assert r.estimand is None and r.latex is None
    assert "NOT identified" in str(r) and "X <-> Y" in str(r)
    assert r.query == Interventional("Y", do={"X": 1.0}) and r.graph is BOW


def test_identified_result_is_frozen_and_carries_our_estimand_and_y0s_as_a_cross_check() -> None:
    r = identify(FRONTDOOR, Interventional("Y", do={"X": 1.0}))
    assert r.identified and r.algorithm == "ID"
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.identified = False  # type: ignore[misc]
    assert r.estimand is not None
    assert isinstance(r.latex, str) and r.latex
    assert r.estimand_source.startswith("causal_pp's ID/IDC recursion")
    assert "estimand: P(Y | do(X)) = Σ_{M} P(M | X) Σ_{X'} P(Y | M, X') P(X')" in str(r)
    assert "y0" not in str(r) and r.y0_estimand is not None  # y0's formula: a cross-check, never shown
    assert isinstance(r.admg, NxMixedGraph) and r.admg is r.admg  # built once per result
    assert {FRONTDOOR.from_y0(v) for v in r.admg.nodes()} == {"M", "X", "Y"}


def test_verdicts_are_cached_per_graph_and_query_variables() -> None:
    decide.cache_clear()
    first = identify(_g("U -> X; U -> Y; X -> M -> Y", ["U"]), Interventional("Y", do={"X": 1.0}))
    info = decide.cache_info()
    assert info.misses == 1 and info.hits == 0
    # an equal graph built afresh, other intervention values: served from the cache
    second = identify(_g("X -> M -> Y; U -> Y; U -> X", ["U"]), Interventional("Y", do={"X": 7.0}))
    assert decide.cache_info().hits == info.hits + 1
    assert decide.cache_info().misses == 1
    assert (second.identified, second.reason, second.algorithm) == (
        first.identified,
        first.reason,
        first.algorithm,
    )
    assert second.estimand == first.estimand
    # the refusal path is cached too, strict or not
    for strict in (False, True):
        with pytest.raises(NotIdentifiableError) if strict else contextlib.nullcontext():
            identify(BOW, Interventional("Y", do={"X": 0.0}), strict=strict)
    assert decide.cache_info().hits == info.hits + 2


@pytest.mark.parametrize(
    ("graph", "treatment", "outcome", "given"),
    [
        (FRONTDOOR, "X", "Y", None),
        (BOW, "X", "Y", None),
        (_g("Z -> X -> Y; U -> X; U -> Y", ["U"]), "X", "Y", ["Z"]),
        (_g("S -> T -> C; S -> C; S <-> T"), "S", "C", None),
        (_g("S -> T -> C; S -> C; S <-> T"), "S", "C", ["T"]),
        (_g("Z -> X; Z -> Y; X -> Y"), "X", "Y", ["Z"]),
    ],
    ids=["frontdoor", "bow", "iv-given-Z", "cancer", "cancer-given-T", "backdoor-given-Z"],
)
def test_ate_identification_equals_its_arms(
    graph: CausalGraph, treatment: str, outcome: str, given: list[str] | None
) -> None:
    ate = ATE(treatment, outcome, treated=2.0, control=-1.0, given=given)
    r = identify(graph, ate, strict=False)
    arms = [identify(graph, arm, strict=False) for arm in ate.arms()]
    assert r.identified == all(a.identified for a in arms) == arms[0].identified
    assert r.reason == arms[0].reason and r.algorithm == arms[0].algorithm
    assert r.query is ate
    if not r.identified:
        with pytest.raises(NotIdentifiableError) as info:
            identify(graph, ate)
        assert info.value.query is ate and str(ate) in str(info.value)


@pytest.mark.parametrize("bad", ["X -> Y", nx.DiGraph([("X", "Y")]), None, _y0_graph(y0.examples.frontdoor)])
def test_non_graph_is_a_graph_error(bad: object) -> None:
    with pytest.raises(GraphError, match="needs a CausalGraph"):
        identify(bad, Interventional("Y", do={"X": 1}))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["P(Y | do(X))", ("Y", {"X": 1}), None, {"Y": 1}])
def test_non_query_is_a_query_error(bad: object) -> None:
    with pytest.raises(QueryError, match=r"takes one of the queries ATE, .*Interventional.*PNS.*; got"):
        identify(FRONTDOOR, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (Interventional("Q", do={"X": 1}), UnknownVariableError),
        (Interventional("Y", do={"Q": 1}), UnknownVariableError),
        (Interventional("Y", do={"X": 1}, given=["Q"]), UnknownVariableError),
        (ATE("X", "Q"), UnknownVariableError),
        (Interventional("U", do={"X": 1}), LatentVariableQueryError),
        (Interventional("Y", do={"U": 1}), LatentVariableQueryError),
        (Interventional("Y", do={"X": 1}, given=["U"]), LatentVariableQueryError),
        (ATE("U", "Y"), LatentVariableQueryError),
    ],
    ids=[
        "unknown-outcome",
        "unknown-do",
        "unknown-given",
        "unknown-ate",
        "latent-outcome",
        "latent-do",
        "latent-given",
        "latent-ate",
    ],
)
def test_bad_variables_are_refused_before_identification(query, error: type[Exception]) -> None:
    with pytest.raises(error):
        identify(FRONTDOOR, query)
    with pytest.raises(error):
        identify(FRONTDOOR, query, strict=False)  # bad input is never a verdict
