"""causal_pp's own estimands (causal_pp.identification.estimand; issue #12).

Layout:

1. the textbook table: each formula as printed, written out by hand from the literature, and
   checked numerically on random discrete SCMs over the same graph;
2. the paper's case graphs (IGF, SARS-CoV-2): the formula equals the hand-derived front-door /
   back-door formula and the exact interventional distribution;
3. numerical soundness: on >= 500 random discrete SCMs with latent confounders, every identified
   ID and IDC query's formula, evaluated on the exact observational distribution, equals the
   exact P(y | do(x)) (resp. P(y | do(x), z)) computed from the SCM; the formula exists exactly
   when the gate identifies the query;
4. y0's formula as a cross-check (never shown as the answer): where it is numerically wrong;
5. the API: the expression tree, JointTable, evaluate, errors.
"""

from __future__ import annotations

import doctest
import itertools as itt
from collections import Counter
from dataclasses import FrozenInstanceError
from typing import Any

import numpy as np
import pytest
from _discrete_scm import ExactSCM, random_graph

import causal_pp.identification.simplify as simplify_mod
from causal_pp import CausalGraph, Interventional, identify
from causal_pp.cases.igf import GRAPH as IGF
from causal_pp.cases.sars_cov2 import GRAPH as SARS_COV2
from causal_pp.errors import (
    CausalPPError,
    DataError,
    GraphError,
    InvalidArgumentError,
    LatentVariableQueryError,
    OverlappingQueryError,
    QueryError,
    UnknownVariableError,
)
from causal_pp.identification.estimand import Estimand, derive_estimand
from causal_pp.identification.expression import (
    Expression,
    JointTable,
    One,
    Probability,
    Product,
    Ratio,
    Sum,
    Var,
)

GRAPHS = {
    "backdoor": CausalGraph.parse("Z -> X -> Y; Z -> Y"),
    "frontdoor": CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"]),
    "napkin": CausalGraph.parse("W -> Z -> X -> Y; W <-> X; W <-> Y"),
    "m_graph": CausalGraph.parse("X -> Y; X <-> Z; Y <-> Z"),
    "m_bias": CausalGraph.parse("U1 -> X; U1 -> Z; U2 -> Z; U2 -> Y; X -> Y", latent=["U1", "U2"]),
    "figure_6a": CausalGraph.parse("X -> Z -> Y; X <-> Z"),
    "iv": CausalGraph.parse("Z -> X -> Y; X <-> Y"),
    "bow": CausalGraph.parse("X -> Y; X <-> Y"),
    "cancer": CausalGraph.parse("S -> T -> C; S -> C; S <-> T; T <-> C"),
    "chain": CausalGraph.parse("X -> Y"),
    "igf": IGF,
    "sars_cov2": SARS_COV2,
}

IGF_FORMULA = (
    "Σ_{Mek, Raf, AKT, PI3K, Ras} P(Erk | Mek) P(Mek | Raf) P(Raf | AKT, Ras) P(AKT | PI3K) "
    "P(Ras | SOS) Σ_{SOS'} P(PI3K | Ras, SOS') P(SOS')"
)

# (graph, treatments, outcomes, conditions, formula or None when not identified). The notation:
# a name is the variable at its query value, a primed name a summation index that would clash.
TEXTBOOK: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None]] = [
    # back-door adjustment (Pearl 2009, eq. 3.19)
    ("backdoor", ("X",), ("Y",), (), "Σ_{Z} P(Y | X, Z) P(Z)"),
    # front-door adjustment (Pearl 1995; Pearl 2009, eq. 3.29)
    ("frontdoor", ("X",), ("Y",), (), "Σ_{M} P(M | X) Σ_{X'} P(Y | M, X') P(X')"),
    # the napkin (Pearl & Mackenzie 2018): a ratio, the same for every z (y0 0.2.11 says P(Y | X))
    ("napkin", ("X",), ("Y",), (), "[Σ_{W} P(Y, X | Z, W) P(W)] / [Σ_{W} P(X | Z, W) P(W)]"),
    # M-bias: the collider Z must not be adjusted for; the effect is the plain conditional
    ("m_graph", ("X",), ("Y",), (), "P(Y | X)"),
    ("m_bias", ("X",), ("Y",), (), "P(Y | X)"),
    # conditional IV-type queries: y0's figure 6a (Shpitser & Pearl 2006b): conditioning on Z equals
    # intervening on it (rule 2), and Z -> Y is unconfounded
    ("figure_6a", ("X",), ("Y",), ("Z",), "P(Y | Z)"),
    ("figure_6a", ("X",), ("Y",), (), None),
    ("backdoor", ("X",), ("Y",), ("Z",), "P(Y | X, Z)"),
    ("iv", ("X",), ("Y",), ("Z",), None),
    ("iv", ("X",), ("Y",), (), None),
    # the instrument's own effect is the plain conditional (Z is unconfounded)
    ("iv", ("Z",), ("Y",), (), "P(Y | Z)"),
    ("bow", ("X",), ("Y",), (), None),
    ("cancer", ("S",), ("C",), (), None),
    # truncated factorisation of a joint outcome: P(y, z | do(x)) = P(z | x) P(y | z) in a chain
    ("figure_6a", ("X",), ("Y", "Z"), (), None),
    ("chain", ("X",), ("Y",), (), "P(Y | X)"),
    # a treatment that is no ancestor of the outcome drops out
    ("chain", ("Y",), ("X",), (), "P(X)"),
    # IGF signalling: c-components {SOS, PI3K} (latent EGF, IGF) and singletons; Q[PI3K] sums SOS
    ("igf", ("SOS",), ("Erk",), (), IGF_FORMULA),
]


def _check_numerically(graph: CausalGraph, estimand: Estimand, seeds: range, max_levels: int = 3) -> None:
    for seed in seeds:
        scm = ExactSCM(graph, np.random.default_rng(seed), max_levels=max_levels)
        got = estimand.table(scm.observational())
        x, y, z = estimand.treatments, estimand.outcomes, estimand.conditions
        truth = scm.conditional(y, x, z) if z else scm.interventional(y, x)
        np.testing.assert_allclose(got, truth, rtol=0, atol=1e-9, err_msg=f"seed {seed}: {estimand}")


def test_docstring_examples_run() -> None:
    import causal_pp.identification.estimand as estimand_mod
    import causal_pp.identification.expression as expression_mod

    attempted = failed = 0
    for module in (estimand_mod, expression_mod, simplify_mod):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        attempted, failed = attempted + result.attempted, failed + result.failed
    assert attempted >= 15 and failed == 0


# --- 1. the textbook table --------------------------------------------------------------


@pytest.mark.parametrize(
    ("graph", "x", "y", "z", "formula"),
    TEXTBOOK,
    ids=[
        f"{g}-{','.join(y)}|do({','.join(x)}){',' + ','.join(z) if z else ''}" for g, x, y, z, _ in TEXTBOOK
    ],
)
def test_textbook_formulas(
    graph: str, x: tuple[str, ...], y: tuple[str, ...], z: tuple[str, ...], formula: str | None
) -> None:
    g = GRAPHS[graph]
    estimand = derive_estimand(g, x, y, z)
    gate = identify(g, Interventional(list(y), {v: 0.0 for v in x}, given=list(z) or None), strict=False)
    assert gate.identified == (formula is not None)
    if formula is None:
        assert estimand is None
        return
    assert estimand is not None
    assert str(estimand) == formula
    assert estimand.algorithm == ("IDC" if z else "ID")
    _check_numerically(g, estimand, range(3))


def test_textbook_structure_and_latex() -> None:
    front = derive_estimand(GRAPHS["frontdoor"], "X", "Y")
    assert front is not None
    x, xp, m, y = Var("X"), Var("X", 1), Var("M"), Var("Y")
    assert front.expression == Sum(
        (m,),
        Product(
            (Probability((m,), (x,)), Sum((xp,), Product((Probability((y,), (m, xp)), Probability((xp,))))))
        ),
    )
    assert front.equation() == "P(Y | do(X)) = Σ_{M} P(M | X) Σ_{X'} P(Y | M, X') P(X')"
    assert front.to_text(ascii=True) == "sum_{M} P(M | X) sum_{X'} P(Y | M, X') P(X')"
    assert front.to_latex() == r"\sum_{M} P(M \mid X) \, \sum_{X'} P(Y \mid M, X') \, P(X')"
    napkin = derive_estimand(GRAPHS["napkin"], "X", "Y")
    assert napkin is not None and isinstance(napkin.expression, Ratio)
    assert napkin.to_latex() == (
        r"\frac{\sum_{W} P(Y, X \mid Z, W) \, P(W)}{\sum_{W} P(X \mid Z, W) \, P(W)}"
    )
    assert napkin.extra == ("Z",)  # the Verma constraint: the ratio is the same for every z
    cond = derive_estimand(GRAPHS["figure_6a"], "X", "Y", "Z")
    assert cond is not None and cond.equation() == "P(Y | do(X), Z) = P(Y | Z)"
    igf = derive_estimand(IGF, "SOS", "Erk")
    assert igf is not None
    assert r"\mathrm{PI3K}" in igf.to_latex() and r"\mathrm{SOS}'" in igf.to_latex()


def test_napkin_is_the_same_for_every_value_of_the_extra_variable_and_y0_is_wrong() -> None:
    g = GRAPHS["napkin"]
    napkin = derive_estimand(g, "X", "Y")
    assert napkin is not None
    y0_formula = Estimand(("Y",), ("X",), (), Probability((Var("Y"),), (Var("X"),)), "ID")  # y0 0.2.11's
    wrong = 0
    for seed in range(5):
        scm = ExactSCM(g, np.random.default_rng(seed), max_levels=2)
        joint, truth = scm.observational(), scm.interventional(("Y",), ("X",))
        for xv, yv, zv in itt.product(range(2), range(2), range(joint.size("Z"))):
            got = napkin.evaluate(joint, {"X": xv, "Y": yv, "Z": zv})
            assert got == pytest.approx(truth[yv, xv], abs=1e-12)
        wrong += not np.allclose(y0_formula.table(joint), truth, atol=1e-6)
    assert wrong == 5


# --- 2. the paper's case graphs ---------------------------------------------------------


def _case_scms(graph: CausalGraph, seeds: range) -> list[ExactSCM]:
    return [ExactSCM(graph, np.random.default_rng(s), max_levels=2) for s in seeds]


def test_igf_formula_equals_the_front_door_formula_through_ras() -> None:
    """IGF: Ras intercepts SOS -> Erk and SOS blocks Ras's back-door paths (via SOS <-> PI3K)."""
    igf = derive_estimand(IGF, "SOS", "Erk")
    assert igf is not None and str(igf) == IGF_FORMULA
    ras, sos, sos1, erk = Var("Ras"), Var("SOS"), Var("SOS", 1), Var("Erk")
    front = Sum(
        (ras,),
        Product(
            (
                Probability((ras,), (sos,)),
                Sum((sos1,), Product((Probability((erk,), (ras, sos1)), Probability((sos1,))))),
            )
        ),
    )
    textbook = Estimand(("Erk",), ("SOS",), (), front, "ID")
    assert str(textbook) == "Σ_{Ras} P(Ras | SOS) Σ_{SOS'} P(Erk | Ras, SOS') P(SOS')"
    for scm in _case_scms(IGF, range(3)):
        joint, truth = scm.observational(), scm.interventional(("Erk",), ("SOS",))
        np.testing.assert_allclose(igf.table(joint), truth, atol=1e-9)
        np.testing.assert_allclose(textbook.table(joint), truth, atol=1e-9)


def test_sars_cov2_formulas_equal_the_truth_and_the_back_door_formula() -> None:
    sil6r = derive_estimand(SARS_COV2, "Sil6r", "cytok")
    egfr = derive_estimand(SARS_COV2, "EGFR", "cytok")
    assert sil6r is not None and egfr is not None
    # do(Sil6r): Sil6r <-> ADAM17 only, so a sum-product with Sil6r at its do value, never summed
    for e in (sil6r, egfr):
        assert not isinstance(e.expression, Ratio) and "/" not in str(e)
        assert str(e).startswith("Σ_{IL6AMP, ") and "P(cytok | IL6AMP)" in str(e)
    assert "Sil6r'" not in str(sil6r) and "P(IL6STAT3 | Sil6r, " in str(sil6r)
    # do(EGFR): EGFR <-> EGF, TNF, IL6STAT3, so Q[IL6STAT3] sums EGFR out of its c-component
    assert "Σ_{TNF', EGFR', EGF}" in str(egfr) and "P(NFKB | TNF, PRR, EGFR, SARS)" in str(egfr)
    # the back-door formula for do(Sil6r), by hand: {ADAM17, AGTR1} blocks Sil6r <- ADAM17 and
    # Sil6r <-> ADAM17 <- AGTR1 (ADAM17 is a collider there, so AGTR1 is needed too)
    s, c, a, g = Var("Sil6r"), Var("cytok"), Var("ADAM17"), Var("AGTR1")
    backdoor = Estimand(
        ("cytok",),
        ("Sil6r",),
        (),
        Sum((a, g), Product((Probability((c,), (s, a, g)), Probability((a, g))))),
        "ID",
    )
    for scm in _case_scms(SARS_COV2, range(2)):
        joint = scm.observational()
        truth = scm.interventional(("cytok",), ("Sil6r",))
        np.testing.assert_allclose(sil6r.table(joint), truth, atol=1e-9)
        np.testing.assert_allclose(backdoor.table(joint), truth, atol=1e-9)
        np.testing.assert_allclose(egfr.table(joint), scm.interventional(("cytok",), ("EGFR",)), atol=1e-9)


# --- 3. numerical soundness on random discrete SCMs -------------------------------------


def _random_query(
    rng: np.random.Generator, g: CausalGraph, conditional: bool
) -> tuple[list[str], list[str], list[str]] | None:
    obs = list(rng.permutation(list(g.observed)))
    ny = 1 if len(obs) < 3 else int(rng.integers(1, 3))
    y, rest = obs[:ny], obs[ny:]
    if not rest:
        return None
    nx_ = int(rng.integers(1, min(2, len(rest)) + 1))
    x, rest = rest[:nx_], rest[nx_:]
    z = rest[: int(rng.integers(1, min(2, len(rest)) + 1))] if conditional and rest else []
    return [str(v) for v in x], [str(v) for v in y], [str(v) for v in z]


def _sweep(seeds: range, n_max: int, queries: int = 4) -> Counter[str]:
    """Random SCMs x random queries: the formula exists iff the gate identifies the query, and
    then equals the exact interventional (conditional) distribution on every value."""
    counts: Counter[str] = Counter()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        g = random_graph(rng, 2, n_max)
        scm = ExactSCM(g, rng)
        joint = scm.observational()
        verified = False
        for k in range(queries):
            q = _random_query(rng, g, conditional=k >= queries // 2)
            if q is None:
                continue
            x, y, z = q
            gate = identify(g, Interventional(y, {v: 0.0 for v in x}, given=z or None), strict=False)
            estimand = derive_estimand(g, x, y, z)
            assert (estimand is not None) == gate.identified, (seed, g, x, y, z, gate.reason)
            if estimand is None:
                counts["refused " + gate.algorithm] += 1
                continue
            got = estimand.table(joint)
            xs, ys, zs = estimand.treatments, estimand.outcomes, estimand.conditions
            truth = scm.conditional(ys, xs, zs) if zs else scm.interventional(ys, xs)
            np.testing.assert_allclose(
                got, truth, rtol=0, atol=1e-9, err_msg=f"seed {seed}: {g!r} {estimand}"
            )
            counts[estimand.algorithm] += 1
            counts["ratio"] += isinstance(estimand.expression, Ratio)
            verified = True
        counts["SCMs verified"] += verified
    return counts


def test_formulas_equal_the_exact_interventional_distribution_on_random_scms() -> None:
    counts = _sweep(range(560), n_max=5)
    assert counts["SCMs verified"] >= 500, counts
    assert counts["ID"] >= 1200 and counts["IDC"] >= 300 and counts["ratio"] >= 40, counts
    assert counts["refused ID"] >= 100 and counts["refused IDC"] >= 50, counts


@pytest.mark.slow
def test_formulas_equal_the_exact_interventional_distribution_on_many_random_scms() -> None:
    counts = _sweep(range(10_000, 13_000), n_max=6)
    assert counts["SCMs verified"] >= 2500, counts


def test_a_formula_exists_exactly_when_the_gate_identifies_on_larger_graphs() -> None:
    counts: Counter[tuple[str, bool]] = Counter()
    for seed in range(150):
        rng = np.random.default_rng(50_000 + seed)
        g = random_graph(rng, 5, 8, p_edge=0.35, p_bi=0.25)
        for conditional in (False, True):
            q = _random_query(rng, g, conditional)
            if q is None:
                continue
            x, y, z = q
            gate = identify(g, Interventional(y, {v: 0.0 for v in x}, given=z or None), strict=False)
            estimand = derive_estimand(g, x, y, z)
            assert (estimand is not None) == gate.identified, (seed, g, x, y, z)
            counts[(gate.algorithm, gate.identified)] += 1
    assert min(counts.values()) >= 20, counts


# --- 4. y0's formula, as a cross-check --------------------------------------------------


def _from_y0(expr: Any, graph: CausalGraph) -> Expression:
    """y0's estimand in our tree; y0 reuses a name for a sum's index, which is lexical shadowing."""
    import y0.dsl as d

    def var(v: Any) -> Var:
        return Var(graph.from_y0(v))

    if isinstance(expr, d.Probability):
        return Probability(tuple(map(var, expr.children)), tuple(map(var, expr.parents)))
    if isinstance(expr, d.Sum):
        return Sum(tuple(map(var, expr.ranges)), _from_y0(expr.expression, graph))
    if isinstance(expr, d.Product):
        return Product(tuple(_from_y0(f, graph) for f in expr.expressions))
    if isinstance(expr, d.Fraction):
        return Ratio(_from_y0(expr.numerator, graph), _from_y0(expr.denominator, graph))
    if isinstance(expr, d.One):
        return One()
    raise TypeError(f"unexpected y0 expression {type(expr).__name__}")


def _y0_agreement(seeds: range, n_max: int) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    examples = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        g = random_graph(rng, 2, n_max)
        joint = ExactSCM(g, rng).observational()
        for k in range(4):
            q = _random_query(rng, g, conditional=k >= 2)
            if q is None:
                continue
            x, y, z = q
            gate = identify(g, Interventional(y, {v: 0.0 for v in x}, given=z or None), strict=False)
            ours = derive_estimand(g, x, y, z)
            if ours is None:
                continue
            theirs = Estimand(
                ours.outcomes, ours.treatments, ours.conditions, _from_y0(gate.y0_estimand, g), "y0"
            )
            agree = np.allclose(theirs.table(joint), ours.table(joint), rtol=0, atol=1e-9)
            counts[f"{ours.algorithm} {'agree' if agree else 'y0 wrong'}"] += 1
            if not agree:
                examples.append(f"{g!r}: {ours.query_text}: ours {ours}; y0 {gate.y0_estimand.to_text()}")
    return counts, examples


def test_y0_formula_agrees_on_textbook_graphs_except_the_napkin() -> None:
    for name in ("backdoor", "frontdoor", "m_graph", "igf"):
        g = GRAPHS[name]
        x, y = {"igf": ("SOS", "Erk")}.get(name, ("X", "Y"))
        ours = derive_estimand(g, x, y)
        assert ours is not None
        theirs = Estimand(
            ours.outcomes,
            ours.treatments,
            (),
            _from_y0(identify(g, Interventional(y, {x: 0})).y0_estimand, g),
            "y0",
        )
        joint = ExactSCM(g, np.random.default_rng(0), max_levels=2).observational()
        np.testing.assert_allclose(theirs.table(joint), ours.table(joint), atol=1e-9)
    assert str(
        _from_y0(identify(GRAPHS["napkin"], Interventional("Y", {"X": 0})).y0_estimand, GRAPHS["napkin"])
    ) == ("P(Y | X)")


@pytest.mark.slow
def test_y0_formula_is_wrong_on_a_few_random_queries() -> None:
    counts, examples = _y0_agreement(range(3000), n_max=5)
    assert counts["ID agree"] >= 5000 and counts["ID y0 wrong"] + counts["IDC y0 wrong"] >= 1, (
        counts,
        examples,
    )


# --- 5. the API -------------------------------------------------------------------------


def test_expression_nodes_are_frozen_values() -> None:
    p = Probability((Var("Y"),), (Var("X"),))
    assert p == Probability((Var("Y"),), (Var("X"),)) and hash(p) == hash(
        Probability((Var("Y"),), (Var("X"),))
    )
    with pytest.raises(FrozenInstanceError):
        p.given = ()  # type: ignore[misc]
    assert str(Product(())) == "1" and str(One()) == "1" and str(Var("X", 2)) == "X''"
    assert p.free == frozenset({Var("X"), Var("Y")})
    s = Sum((Var("X"),), p)
    assert s.free == frozenset({Var("Y")})
    assert str(Sum((Var("W"),), Ratio(p, Probability((Var("W"),))))) == "Σ_{W} (P(Y | X) / P(W))"
    with pytest.raises(InvalidArgumentError):
        Probability(())
    with pytest.raises(InvalidArgumentError):
        Probability((Var("X"),), (Var("X", 1),))


def test_simplification_rules() -> None:
    simp = simplify_mod.Simplifier({"Z": 0, "X": 1, "Y": 2})
    x, y, z = Var("X"), Var("Y"), Var("Z")
    # a summed variable in one normalised conditional disappears; Σ over everything is 1
    assert simp.sum([y], simp.product([simp.prob([y], [x, z]), simp.prob([z])])) == Probability((z,))
    assert simp.sum([x, z], simp.prob([x, z])) == One()
    # the chain rule where the conditioning sets line up, not otherwise
    assert simp.product([simp.prob([y], [x, z]), simp.prob([x], [z])]) == Probability((y, x), (z,))
    assert simp.product([simp.prob([y], [x, z]), simp.prob([z])]) == Product(
        (Probability((y,), (x, z)), Probability((z,)))
    )
    # Σ_z P(y | z) P(z) = P(y) by the chain rule, then marginalisation
    assert simp.sum([z], simp.product([simp.prob([y], [z]), simp.prob([z])])) == Probability((y,))
    # ratios: common factors cancel; P(A | E) / P(B | E) = P(A ∖ B | B, E)
    assert simp.ratio([simp.prob([y, x], [z])], [simp.prob([x], [z])]) == Probability((y,), (x, z))
    assert simp.ratio([simp.prob([z]), simp.prob([y])], [simp.prob([z])]) == Probability((y,))
    # empty sums vanish; a sum with a denominator free of its index moves into the numerator
    assert simp.sum([], simp.prob([y])) == Probability((y,))
    r = simp.sum([z], Ratio(simp.product([simp.prob([y], [z]), simp.prob([z], [x])]), simp.prob([x])))
    assert isinstance(r, Ratio) and isinstance(r.numerator, Sum)


def test_joint_table_and_evaluate_validate_their_input() -> None:
    with pytest.raises(DataError):
        JointTable(np.array([0.5, 0.6]), ("X",))
    with pytest.raises(DataError):
        JointTable(np.array([[0.5, 0.5]]), ("X",))
    with pytest.raises(DataError):
        JointTable(np.array([-0.5, 1.5]), ("X",))
    with pytest.raises(DataError):
        JointTable(np.full((2, 2), 0.25), ("X", "X"))
    joint = JointTable(np.array([[0.1, 0.4], [0.3, 0.2]]), ("X", "Y"))
    with pytest.raises(UnknownVariableError):
        joint.marginal(["Q"])
    est = derive_estimand(GRAPHS["chain"], "X", "Y")
    assert est is not None
    assert est.evaluate(joint, {"X": 0, "Y": 1}) == pytest.approx(0.8)
    assert est.evaluate(joint, {"X": np.int64(0), "Y": 1.0}) == pytest.approx(0.8)
    for values, error in [
        ({"X": 0}, InvalidArgumentError),
        ({"X": 0, "Y": 2}, InvalidArgumentError),
        ({"X": 0, "Y": True}, InvalidArgumentError),
        ({"X": 0, "Y": 0.5}, InvalidArgumentError),
        ({"X": 0, "Y": "a"}, InvalidArgumentError),
        ({"X": 0, "Y": 0, "Q": 0}, UnknownVariableError),
        ([("X", 0)], InvalidArgumentError),
    ]:
        with pytest.raises(error):
            est.evaluate(joint, values)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        est.evaluate(np.ones((2, 2)) / 4, {"X": 0, "Y": 0})  # type: ignore[arg-type]
    # positivity: a conditional on an event of probability 0 is refused, never returned as nan
    null = JointTable(np.array([[0.5, 0.5], [0.0, 0.0]]), ("X", "Y"))
    assert est.evaluate(null, {"X": 0, "Y": 0}) == pytest.approx(0.5)
    with pytest.raises(DataError, match="probability 0"):
        est.evaluate(null, {"X": 1, "Y": 0})
    with pytest.raises(DataError):
        est.table(null)


def test_evaluation_without_einsum_gives_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Formulas over more than 52 variables fall back to broadcasting; forced here on small ones."""
    cases = []
    for g, x, y, levels in ((GRAPHS["sars_cov2"], "EGFR", "cytok", 2), (GRAPHS["napkin"], "X", "Y", 3)):
        estimand = derive_estimand(g, x, y)
        assert estimand is not None
        cases.append((estimand, ExactSCM(g, np.random.default_rng(3), max_levels=levels).observational()))
    before = [e.table(j) for e, j in cases]
    import causal_pp.identification.expression as expression_mod

    monkeypatch.setattr(expression_mod, "EINSUM_LABELS", 0)
    after = [e.table(j) for e, j in cases]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("X -> Y", "X", "Y"), GraphError),
        ((GRAPHS["chain"], "X", "Q"), UnknownVariableError),
        ((GRAPHS["frontdoor"], "U", "Y"), LatentVariableQueryError),
        ((GRAPHS["frontdoor"], "X", "Y", ["U"]), LatentVariableQueryError),
        ((GRAPHS["chain"], "X", "X"), OverlappingQueryError),
        ((GRAPHS["backdoor"], "X", "Y", ["X"]), OverlappingQueryError),
        ((GRAPHS["chain"], "X", []), QueryError),
        ((GRAPHS["chain"], 5, "Y"), QueryError),
        ((GRAPHS["chain"], [""], "Y"), QueryError),
    ],
    ids=["not-a-graph", "unknown", "latent-treatment", "latent-condition", "overlap", "overlap-z",
         "no-outcome", "not-names", "empty-name"],
)  # fmt: skip
def test_derive_estimand_refuses_bad_queries(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        derive_estimand(*args)
    assert isinstance(info.value, CausalPPError)


def test_empty_do_is_the_observational_distribution() -> None:
    est = derive_estimand(GRAPHS["backdoor"], [], "Y", "Z")
    assert est is not None and est.equation() == "P(Y | Z) = P(Y | Z)"
    est = derive_estimand(GRAPHS["bow"], (), ["X", "Y"])
    assert est is not None and str(est) == "P(Y, X)"
