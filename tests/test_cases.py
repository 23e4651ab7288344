"""The case library: simulators, truths, identification verdicts, models and the registry.

Every statistical check is seeded and its tolerance derived from standard errors (4 combined
SEs). Exact checks (determinism, mutilation, shapes, verdicts) are separate from the Monte
Carlo ones. The whole file runs in well under a minute.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from causal_pp import ATE, ETT, PN, PNS, PS, CausalGraph, Interventional, identify
from causal_pp.cases import (
    SCM,
    Case,
    CaseError,
    CaseQuery,
    DuplicateCaseError,
    Equation,
    Truth,
    UnknownCaseError,
    get_case,
    make_sars_cov2,
    monte_carlo_truth,
    register,
    registry,
    unregister,
)
from causal_pp.errors import (
    CausalPPError,
    InterventionError,
    LatentVariableQueryError,
    UnknownVariableError,
)

CASES = registry()
CASE_NAMES = list(CASES)
QUERIES = [(c, q) for c in CASE_NAMES for q in CASES[c].queries]
QUERY_IDS = [f"{c}/{q}" for c, q in QUERIES]
BUILTIN = ["frontdoor", "bow", "backdoor", "multicause", "napkin", "napkin_strong", "igf", "sars_cov2"]

CHECK_DRAWS = 200_000
Z = 4.0  # tolerance in combined standard errors


def _case_query(case_name: str, query_name: str) -> tuple[Case, CaseQuery]:
    case = get_case(case_name)
    return case, case.queries[query_name]


# --- registry -----------------------------------------------------------------------------


def test_registry_holds_the_builtin_cases_in_order():
    assert CASE_NAMES[: len(BUILTIN)] == BUILTIN
    assert registry() is not registry()  # a copy: callers cannot corrupt the registry


def test_get_case_unknown_name_lists_available_cases():
    with pytest.raises(UnknownCaseError) as info:
        get_case("frontdor")
    err = info.value
    assert isinstance(err, CausalPPError) and isinstance(err, KeyError)
    msg = str(err)
    assert "'frontdor'" in msg and all(name in msg for name in BUILTIN)
    assert not msg.startswith('"')  # printed plainly, not as a KeyError repr


def test_register_refuses_duplicates_unless_replace():
    mine = dataclasses.replace(get_case("bow"), name="test_bow_copy")
    try:
        assert register(mine) is mine
        assert get_case("test_bow_copy") is mine
        with pytest.raises(DuplicateCaseError, match="replace=True"):
            register(dataclasses.replace(mine))
        other = dataclasses.replace(mine, description="another")
        assert register(other, replace=True) is other
        assert get_case("test_bow_copy") is other
        assert list(registry())[-1] == "test_bow_copy"
    finally:
        unregister("test_bow_copy")
    assert "test_bow_copy" not in registry()
    with pytest.raises(UnknownCaseError):
        unregister("test_bow_copy")
    with pytest.raises(CaseError):
        register("bow")  # type: ignore[arg-type]


def test_user_case_gets_a_monte_carlo_truth_from_its_simulator():
    scm = SCM(
        [
            Equation("U", (), lambda: 0.0),
            Equation("X", ("U",), lambda u: u),
            Equation("Y", ("X", "U"), lambda x, u: 3.0 * x + u),
        ]
    )
    case = Case(
        name="mine",
        description="A user's own case.",
        graph=CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"]),
        fn=lambda n: None,
        sampler=scm,
        queries={
            "q": CaseQuery(Interventional("Y", do={"X": 2.0}), identified=False, mc_draws=50_000, mc_seed=3)
        },
    )
    q = case.queries["q"]
    assert q.truth_method == "monte-carlo (50000 draws, seed 3)"
    assert abs(q.truth - 6.0) < Z * q.truth_se and 0 < q.truth_se < 0.01
    assert q.truth == monte_carlo_truth(case, q.query, n=50_000, seed=3).value  # same seed, same value


def test_case_and_query_validation():
    g = CausalGraph.parse("U -> X; X -> Y", latent=["U"])
    base = dict(name="bad", description="", graph=g, fn=lambda n: None, sampler=lambda n, do, seed: {})
    with pytest.raises(UnknownVariableError):
        Case(**base, queries={"q": CaseQuery(Interventional("Y", do={"W": 1.0}), identified=True, truth=0.0)})
    with pytest.raises(LatentVariableQueryError):
        Case(**base, queries={"q": CaseQuery(Interventional("Y", do={"U": 1.0}), identified=True, truth=0.0)})
    with pytest.raises(CaseError):
        Case(**base, queries={})
    with pytest.raises(CaseError):
        CaseQuery(Interventional(["X", "Y"], do={"U": 0.0}), identified=True)
    with pytest.raises(CaseError):
        CaseQuery("Y", identified=True)  # type: ignore[arg-type]
    with pytest.raises(CaseError, match="not bound"):
        _ = CaseQuery(ATE("X", "Y"), identified=True).truth


def test_truth_specs_and_laziness():
    calls = []

    def slow() -> Truth:
        calls.append(1)
        return Truth(2.5, 0.1, "monte-carlo (10 draws, seed 0)")

    q = CaseQuery(ATE("X", "Y"), identified=True, truth=slow, naive=lambda: 7.0)
    assert calls == []  # nothing computed at construction
    assert (q.truth, q.truth_se, q.truth_method) == (2.5, 0.1, "monte-carlo (10 draws, seed 0)")
    assert q.truth == 2.5 and calls == [1]  # computed once, cached
    assert q.naive == 7.0
    a = CaseQuery(ATE("X", "Y"), identified=True, truth=1.5)
    assert (a.truth, a.truth_se, a.truth_method, a.naive, a.published) == (1.5, 0.0, "analytic", None, None)


# --- simulators ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_simulate_returns_exactly_the_observed_columns(name):
    case = get_case(name)
    df = case.simulate(64, seed=3)
    assert list(df.columns) == list(case.observed)
    assert set(df.columns) == set(case.graph.observed)
    assert df.shape == (64, len(case.graph.observed))
    assert all(df[c].dtype == np.float64 for c in df.columns)
    assert np.isfinite(df.to_numpy()).all()
    order = case.graph.topological_order
    assert [order.index(c) for c in df.columns] == sorted(order.index(c) for c in df.columns)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_simulate_is_deterministic_per_seed(name):
    case = get_case(name)
    a, b, c = case.simulate(50, seed=11), case.simulate(50, seed=11), case.simulate(50, seed=12)
    assert a.equals(b)
    assert not a.equals(c)
    assert case.simulate(50).equals(case.simulate(50, seed=0))


def _targets(case: Case) -> list[dict[str, float]]:
    out = []
    for cq in case.queries.values():
        q = cq.query
        if isinstance(q, (ETT, PN, PS, PNS)):  # counterfactual contrasts: both treatment values
            out += [{q.treatment: q.treated}, {q.treatment: q.control}]
        else:
            out += [dict(a.do) for a in q.arms()] if isinstance(q, ATE) else [dict(q.do)]
    return out


@pytest.mark.parametrize("name", CASE_NAMES)
def test_do_mutilates_the_scm(name):
    case = get_case(name)
    obs = case.simulate(300, seed=5)
    for do in _targets(case):
        df = case.simulate(300, do=do, seed=5)
        for t, v in do.items():
            assert (df[t] == v).all(), f"{t} is not held at {v}"
        downstream = set().union(*(case.graph.descendants(t) for t in do)) | set(do)
        upstream = [c for c in df.columns if c not in downstream]
        parents = {p for t in do for p in case.graph.parents(t) if not case.graph.is_latent(p)}
        assert parents <= set(upstream)
        for c in upstream:  # the intervention leaves its parents (and all non-descendants) alone
            np.testing.assert_array_equal(df[c].to_numpy(), obs[c].to_numpy(), err_msg=c)
        changed = [c for c in downstream - set(do) if c in df.columns and not np.array_equal(df[c], obs[c])]
        assert changed, f"do({do}) changed none of its observed descendants"


def test_do_refuses_latent_unknown_and_bad_values():
    case = get_case("frontdoor")
    with pytest.raises(InterventionError, match="latent"):
        case.simulate(5, do={"U": 0.0})
    with pytest.raises(UnknownVariableError):
        case.simulate(5, do={"Q": 0.0})
    with pytest.raises(InterventionError):
        case.simulate(5, do={"X": "high"})
    with pytest.raises(CaseError):
        case.simulate(0)
    with pytest.raises(CaseError, match="non-negative"):
        case.simulate(5, seed=-1)
    with pytest.raises(UnknownVariableError):
        case.sampler.sample(5, do={"Q": 0.0})


@pytest.mark.parametrize("name", CASE_NAMES)
def test_simulator_equations_match_the_graph(name):
    case = get_case(name)
    if not isinstance(case.sampler, SCM):
        pytest.skip("not an SCM sampler")
    parents = case.sampler.parents()
    assert set(parents) == set(case.graph.nodes)
    for node, ps in parents.items():
        assert set(ps) == set(case.graph.parents(node)), node


# --- queries and truths -------------------------------------------------------------------


@pytest.mark.parametrize(("case_name", "query_name"), QUERIES, ids=QUERY_IDS)
def test_identified_flag_agrees_with_identify(case_name, query_name):
    case, cq = _case_query(case_name, query_name)
    assert cq.identified == identify(case.graph, cq.query, strict=False).identified


@pytest.mark.parametrize(("case_name", "query_name"), QUERIES, ids=QUERY_IDS)
def test_truth_is_reproduced_by_the_simulator(case_name, query_name):
    case, cq = _case_query(case_name, query_name)
    truth, se = cq.truth, cq.truth_se
    assert math.isfinite(truth) and se >= 0
    if isinstance(cq.query, ETT):
        _check_ett_truth(case, cq)
        return
    if cq.truth_method.startswith("monte-carlo"):
        assert cq.truth_method == f"monte-carlo ({cq.mc_draws} draws, seed {cq.mc_seed})"
        assert cq.mc_draws >= 10**6 and 0 < se < 1e-3 * max(1.0, abs(truth))
    else:
        assert cq.truth_method.startswith("analytic") and se == 0
    # 1) Rao-Blackwellised Monte Carlo with a different seed.
    check = monte_carlo_truth(case, cq.query, n=CHECK_DRAWS, seed=7)
    assert abs(check.value - truth) <= Z * math.hypot(check.se, se) + 1e-9, (check, truth, se)
    # 2) Raw outcome draws from truth_samples (independent of the conditional-mean shortcut);
    #    with common random numbers a linear ATE is the same for every unit (SE 0): 1e-9 slack.
    #    A probability of causation has no interventional draws: its worlds are read directly.
    if isinstance(cq.query, (PN, PS, PNS)):
        _check_causation_truth(case, cq)
        return
    if isinstance(cq.query, ATE):
        treated, control = case.truth_samples(query_name, CHECK_DRAWS, seed=8, arm="both")
        d = treated - control
    else:
        d = case.truth_samples(query_name, CHECK_DRAWS, seed=8)
    raw_se = d.std(ddof=1) / math.sqrt(d.size)
    assert abs(d.mean() - truth) <= Z * math.hypot(raw_se, se) + 1e-9, (d.mean(), truth)


def _check_ett_truth(case: Case, cq: CaseQuery) -> None:
    """An ETT truth from the simulator's own worlds: factual draw and both arms on the same noise.

    The treatment is continuous here, so 'treated' units are those whose factual treatment is
    within a narrow window of the treated value (exact for a linear SCM, whose unit-level
    effect is the same for every unit).
    """
    q = cq.query
    n, seed = CHECK_DRAWS, 11
    factual = case.sample_all(n, {}, seed)
    y1 = case.sample_all(n, {q.treatment: q.treated}, seed)[q.outcome]
    y0 = case.sample_all(n, {q.treatment: q.control}, seed)[q.outcome]
    sd_x = float(np.std(factual[q.treatment]))
    treated = np.abs(factual[q.treatment] - q.treated) < 0.05 * sd_x
    assert treated.sum() > 1000
    d = (y1 - y0)[treated]
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert cq.truth_method == "analytic"
    assert abs(d.mean() - cq.truth) <= Z * se + 1e-9, (d.mean(), cq.truth, se)
    # Shared noise is what makes this a counterfactual: unit by unit, not only on average.
    assert abs(np.median(d) - cq.truth) < 1e-6


def _check_causation_truth(case: Case, cq: CaseQuery) -> None:
    """PN / PS / PNS from the simulator's factual and counterfactual worlds (same seed, same noise)."""
    q, n, seed = cq.query, CHECK_DRAWS, 12
    factual = case.sample_all(n, {}, seed)
    x, y = factual[q.treatment], factual[q.outcome]
    y1 = case.sample_all(n, {q.treatment: q.treated}, seed)[q.outcome]
    y0 = case.sample_all(n, {q.treatment: q.control}, seed)[q.outcome]
    yes = q.outcome_value
    if isinstance(q, PN):
        d = y0[(x == q.treated) & (y == yes)] != yes
    elif isinstance(q, PS):
        d = y1[(x == q.control) & (y != yes)] == yes
    else:
        d = (y1 == yes) & (y0 != yes)
    d = d.astype(float)
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert d.size > 1000 and abs(d.mean() - cq.truth) <= Z * math.hypot(se, cq.truth_se) + 1e-9, (
        d.mean(),
        cq,
    )


def test_ett_monte_carlo_truth_needs_a_discrete_treatment():
    bd = get_case("backdoor")
    with pytest.raises(CaseError, match="discrete treatment"):
        monte_carlo_truth(bd, bd.queries["ett"].query, n=1000)
    with pytest.raises(CausalPPError, match="counterfactual contrast"):
        bd.truth_samples("ett", 10)
    # A binary treatment: E[Y_1 - Y_0 | X1..X5 = 1] in multicause by Monte Carlo, vs ATE-style draws.
    mc = get_case("multicause")
    ett = ETT("X1", "Y", treated=1.0, control=0.0)
    t = monte_carlo_truth(mc, ett, n=100_000, seed=3)
    assert t.se > 0 and -1.0 <= t.value <= 1.0


@pytest.mark.parametrize(
    ("case_name", "query_name"),
    [cq for cq, i in zip(QUERIES, QUERY_IDS, strict=True) if get_case(cq[0]).queries[cq[1]].outcome_sd],
    ids=[i for cq, i in zip(QUERIES, QUERY_IDS, strict=True) if get_case(cq[0]).queries[cq[1]].outcome_sd],
)
def test_analytic_interventional_distribution(case_name, query_name):
    case, cq = _case_query(case_name, query_name)
    draws = case.truth_samples(query_name, CHECK_DRAWS, seed=9)
    sd = cq.outcome_sd
    # SE of a sample SD of Gaussian draws: sd / sqrt(2 (n - 1)).
    assert abs(draws.std(ddof=1) - sd) <= Z * sd / math.sqrt(2 * (draws.size - 1))
    if isinstance(cq.query, Interventional):
        assert abs(draws.mean() - cq.truth) <= Z * sd / math.sqrt(draws.size)


@pytest.mark.parametrize("name", ["frontdoor", "bow", "backdoor"])
def test_linear_naive_answer_is_the_observational_regression_slope(name):
    case = get_case(name)
    df = case.simulate(CHECK_DRAWS, seed=10)
    x, y = df["X"].to_numpy(), df["Y"].to_numpy()
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    se = resid.std() / (x.std() * math.sqrt(x.size))
    cq = case.queries["ate"]
    assert abs(slope - cq.naive) <= Z * se
    assert abs(cq.naive - cq.truth) > 0.5  # strong confounding: naive and causal answers differ
    y1 = case.queries["y_do_x1"]
    assert abs((intercept + slope) - y1.naive) <= Z * resid.std() * math.sqrt(2.0 / x.size) + 0.02


def test_naive_contrasts_show_the_intended_confounding():
    assert abs(get_case("multicause").queries["y_do_x0"].naive - 0.0097) < 0.001  # published 0.0097
    weak, strong = get_case("napkin").queries["ate"], get_case("napkin_strong").queries["ate"]
    assert abs(weak.naive - weak.truth) < 0.1  # the paper's setting: naive close to the truth
    assert abs(strong.naive - strong.truth) > 1.0


# --- published values ---------------------------------------------------------------------


def test_multicause_matches_the_published_truth():
    cq = get_case("multicause").queries["y_do_x0"]
    assert cq.published == 0.218
    assert abs(cq.truth - cq.published) < 5e-4  # the paper's generator, rounded to 3 digits


def test_napkin_matches_the_published_values_by_construction():
    qs = get_case("napkin").queries
    assert (qs["y_do_x1"].truth, qs["y_do_x1"].published) == pytest.approx((1.4, 1.4))
    assert (qs["ate"].truth, qs["ate"].published) == pytest.approx((0.4, 0.4))


def test_sars_noiseless_generator_reproduces_the_published_values():
    # Our case adds noise (its truths are not asserted against the paper); without it the
    # generator is the paper's and must give E[cytok | do(.)] = 0.211 and 0.311.
    paper = make_sars_cov2(noise=0.0)
    for qname in ("cytok_do_sil6r20", "cytok_do_egfr20"):
        cq = paper.queries[qname]
        est = monte_carlo_truth(paper, cq.query, n=CHECK_DRAWS, seed=4)
        assert abs(est.value - cq.published) <= Z * est.se + 5e-4, (qname, est)
    noisy = get_case("sars_cov2").queries["cytok_do_sil6r20"]
    assert "not asserted" in noisy.note


def test_igf_truth_is_in_the_published_ballpark():
    # Different generator (steady state, not the paper's Gillespie SDE): only a sanity check.
    cq = get_case("igf").queries["erk_do_sos70"]
    assert abs(cq.truth - cq.published) < 0.5


# --- truth samples ------------------------------------------------------------------------


def test_truth_samples_shapes_and_arms():
    case = get_case("frontdoor")
    assert case.truth_samples("y_do_x1", 10, seed=1).shape == (10,)
    treated = case.truth_samples("ate", 10, seed=1)
    both = case.truth_samples("ate", 10, seed=1, arm="both")
    assert treated.shape == (10,) and both.shape == (2, 10)
    np.testing.assert_array_equal(both[0], treated)
    np.testing.assert_array_equal(both[1], case.truth_samples("ate", 10, seed=1, arm="control"))
    np.testing.assert_array_equal(treated, case.truth_samples("ate", 10, seed=1))
    with pytest.raises(CaseError):
        case.truth_samples("ate", 10, arm="placebo")
    with pytest.raises(CaseError, match="no query"):
        case.truth_samples("nope", 10)


# --- models -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_model_passes_the_program_vs_dag_check(name):
    case = get_case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unused DAG edge would only warn: make it fail here
        structure = case.model.check()
    assert set(structure.edges) == set(case.graph.edges)  # every edge used, no other dependency
    assert set(structure.unit_sites) >= set(case.graph.nodes)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_prior_predictive_has_every_node_with_unit_shape(name):
    import pyro
    import torch
    from pyro import poutine
    from pyro.infer import Predictive
    from pyro.poutine.util import site_is_subsample

    case = get_case(name)
    pyro.set_rng_seed(0)
    trace = poutine.trace(case.fn).get_trace(7)
    for node in case.graph.nodes:
        site = trace.nodes.get(node)
        assert site is not None and site["type"] == "sample", f"no sample site for DAG node {node!r}"
        assert tuple(site["value"].shape) == (7,), (node, site["value"].shape)
        assert torch.isfinite(site["value"]).all(), node
    globals_ = [
        k
        for k, s in trace.nodes.items()
        if s["type"] == "sample" and not site_is_subsample(s) and k not in case.graph.nodes
    ]
    assert globals_ and all(trace.nodes[k]["value"].shape[:1] != (7,) for k in globals_)
    draws = Predictive(case.fn, num_samples=3, parallel=True)(7)  # vectorisation-safe
    for node in case.observed:
        assert tuple(draws[node].shape) == (3, 7), (node, draws[node].shape)


def test_replacing_the_sampler_rebinds_monte_carlo_truths():
    igf = get_case("igf")
    shifted = dataclasses.replace(igf, sampler=_ShiftedErk(igf.sampler))
    q_old, q_new = igf.queries["erk_do_sos70"], shifted.queries["erk_do_sos70"]
    assert q_new is not q_old
    assert abs(q_new.truth - (q_old.truth + 5.0)) <= Z * math.hypot(q_new.truth_se, q_old.truth_se)


class _ShiftedErk:
    """A user sampler (not an SCM): the IGF simulator with Erk shifted by +5."""

    def __init__(self, scm: SCM) -> None:
        self.scm = scm

    def __call__(self, n, do, seed):
        v = dict(self.scm(n, do, seed))
        v["Erk"] = v["Erk"] + 5.0
        return v


def test_bow_truth_and_its_reflection_are_observationally_identical():
    # The negative control's mechanism: the reflected parameters (theta_UY -> -theta_UY,
    # theta_XY -> theta_XY + 2 * bias) give the same distribution of (X, Y) -- a Gaussian
    # with the same mean and covariance -- but a different causal effect.
    from causal_pp.cases import make_bow

    def moments(p):
        v = p["theta_UX"] ** 2 + 1
        cov = p["theta_XY"] * v + p["theta_UY"] * p["theta_UX"]
        var_y = (
            p["theta_XY"] ** 2 * v
            + 2 * p["theta_XY"] * p["theta_UY"] * p["theta_UX"]
            + p["theta_UY"] ** 2
            + 1
        )
        return np.array([v, cov, var_y])

    truth = get_case("bow")
    bias = truth.queries["ate"].naive - truth.queries["ate"].truth
    mirror = make_bow(
        theta_UY=-truth.parameters["theta_UY"], theta_XY=truth.parameters["theta_XY"] + 2 * bias
    )
    np.testing.assert_allclose(moments(truth.parameters), moments(mirror.parameters))
    assert mirror.queries["ate"].naive == pytest.approx(truth.queries["ate"].naive)
    assert mirror.queries["ate"].truth - truth.queries["ate"].truth == pytest.approx(2 * bias)
    assert bias == pytest.approx(1.0)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_model_contains_the_simulator(name):
    # Correct specification, checked mechanically: at `model_truth` (latents standardised by
    # `latent_scale`), every observed site's conditional mean given its parents equals the
    # simulator's, unit by unit.
    import torch
    from pyro import poutine

    case = get_case(name)
    if not case.model_truth or not isinstance(case.sampler, SCM):
        pytest.skip("no model_truth recorded")
    values, means = case.sampler.sample(40, {}, 123, means=True)
    cond = {k: torch.as_tensor(np.asarray(v), dtype=torch.float64) for k, v in case.model_truth.items()}
    for u in case.graph.latent:
        m, s = case.latent_scale[u]
        cond[u] = torch.as_tensor((values[u] - m) / s, dtype=torch.float64)
    for v in case.observed:
        cond[v] = torch.as_tensor(values[v], dtype=torch.float64)
    trace = poutine.trace(poutine.condition(case.fn, cond)).get_trace(40)
    globals_ = {k for k, s in trace.nodes.items() if s["type"] == "sample" and k not in case.graph.nodes}
    assert globals_ - {"units"} == set(case.model_truth)
    for v in case.observed:
        model_mean = trace.nodes[v]["fn"].mean.detach().numpy()
        np.testing.assert_allclose(model_mean, means[v], rtol=1e-6, atol=1e-6, err_msg=v)
