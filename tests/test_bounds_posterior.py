"""The posterior of the bounds: convergence to the sharp bounds, rejection, the three samplers.

Data are simulated from exact discrete SCMs (:class:`test_bounds_validity.ExactSCM`); the true
sharp bounds come from the exact observational distribution. Tolerances are multiples of the
posterior standard deviation of each end (which estimates its sampling error).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_bounds_validity import ExactSCM

from causal_pp import ATE, PN, PNS, CausalGraph, DataError, Interventional
from causal_pp.partial import Bounds, IncompatibleDataError, bounds, bounds_from_distribution, tian_pearl
from causal_pp.partial.canonical import CanonicalModel
from causal_pp.partial.posterior import factored_dirichlet

IV = CausalGraph.parse("Z -> X -> Y; X <-> Y")
BOW = CausalGraph.parse("X -> Y; X <-> Y")


def _sample(scm: ExactSCM, n: int, seed: int) -> pd.DataFrame:
    table = scm.distribution()
    rows = np.random.default_rng(seed).choice(len(table), size=n, p=table["p"] / table["p"].sum())
    return table.drop(columns="p").iloc[rows].reset_index(drop=True)


def _iv_scm() -> ExactSCM:
    """An instrument with compliers and always-takers (latent U in {0, 1, 2}) and a noisy outcome.

    Its Balke-Pearl bounds on the ATE, about [0.23, 0.67], are far narrower than the natural
    width 1, and the true ATE (0.33) lies strictly inside.
    """
    tx = np.zeros((3, 2, 2), dtype=int)  # X[u, z, noise]
    ty = np.zeros((3, 2, 2), dtype=int)  # Y[u, x, noise]
    for u in range(3):
        for v in range(2):
            tx[u, v] = [v, 1 - v] if u < 2 else [1, 1]  # compliers (10% flipped) and always-takers
            ty[u, v] = {0: [v, 1], 1: [0, v], 2: [1, 1]}[u]
    cards = {"Z": 2, "X": 2, "Y": 2, "U_X_Y": 3}
    noise_p = {"Z": [0.5, 0.5], "X": [0.9, 0.1], "Y": [0.7, 0.3], "U_X_Y": [0.3, 0.4, 0.3]}
    tables = {"Z": np.array([0, 1]), "U_X_Y": np.array([0, 1, 2]), "X": tx, "Y": ty}
    scm = ExactSCM(IV, cards, dict(cards), {k: np.array(v) for k, v in noise_p.items()}, tables)
    lo, hi = bounds_from_distribution(IV, ATE("X", "Y"), scm.distribution())
    assert hi - lo < 0.5 and lo < scm.expectation("Y", {"X": 1}) - scm.expectation("Y", {"X": 0}) < hi
    return scm


def test_posterior_bounds_converge_to_the_sharp_bounds_like_one_over_root_n() -> None:
    scm = _iv_scm()
    true_lo, true_hi = bounds_from_distribution(IV, ATE("X", "Y"), scm.distribution())
    effect = scm.expectation("Y", {"X": 1}) - scm.expectation("Y", {"X": 0})
    sds = []
    for n in (1_000, 16_000):
        b = bounds(IV, ATE("X", "Y"), _sample(scm, n, seed=n), num_samples=400, seed=1)
        (m_lo, m_hi), (s_lo, s_hi) = b.mean, b.std
        assert abs(m_lo - true_lo) <= 4 * s_lo and abs(m_hi - true_hi) <= 4 * s_hi, (n, b, true_lo, true_hi)
        lo, hi = b.identified_set(0.94)
        assert lo <= effect <= hi
        sds.append((s_lo, s_hi))
    for end in range(2):  # 16 times the data: a quarter of the spread
        assert 2.5 < sds[0][end] / sds[1][end] < 6.5, sds


def test_same_seed_same_numbers() -> None:
    data = _sample(_iv_scm(), 500, seed=3)
    a = bounds(IV, PN("X", "Y"), data, num_samples=50, seed=7)
    b = bounds(IV, PN("X", "Y"), data, num_samples=50, seed=7)
    c = bounds(IV, PN("X", "Y"), data, num_samples=50, seed=8)
    assert np.array_equal(a.lower, b.lower) and np.array_equal(a.upper, b.upper)
    assert not np.array_equal(a.lower, c.lower)


def test_data_that_violate_the_instrumental_inequality_are_refused() -> None:
    # Z decides Y directly while X ignores Z: no IV model produces this.
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, 500)
    data = pd.DataFrame({"Z": z, "X": (rng.random(500) < 0.8).astype(int), "Y": z})
    with pytest.raises(IncompatibleDataError, match="contradict the graph") as info:
        bounds(IV, ATE("X", "Y"), data, num_samples=50)
    assert info.value.acceptance < 0.01


def test_draws_on_the_boundary_are_partly_rejected_and_the_share_reported() -> None:
    # X independent of Z with P(X = 1) = 1/2 and Y = Z: the instrumental inequality holds with equality.
    rng = np.random.default_rng(1)
    z = rng.integers(0, 2, 2000)
    data = pd.DataFrame({"Z": z, "X": rng.integers(0, 2, 2000), "Y": z})
    b = bounds(IV, ATE("X", "Y"), data, num_samples=100, seed=0)
    assert 0.01 < b.acceptance < 1.0
    assert "rejected" in b.note and b.lower.shape == (100,)


def test_exclusions_are_drawn_exactly_and_checked_against_the_data() -> None:
    graph = CausalGraph.parse("Z -> X -> Y; W -> Y; X <-> Y")  # W affects Y, not X
    scm = ExactSCM.random(graph, np.random.default_rng(5))
    data = _sample(scm, 4000, seed=0)
    assert (data.nunique() == 2).all()
    b = bounds(graph, ATE("X", "Y"), data, num_samples=200)
    assert b.posterior == "dirichlet" and b.sharp and "equality constraint" in b.note
    effect = scm.expectation("Y", {"X": 1}) - scm.expectation("Y", {"X": 0})
    lo, hi = b.identified_set(0.94)
    assert lo <= effect <= hi
    # Data in which W drives X contradict the exclusion: refused by the likelihood-ratio check.
    rng = np.random.default_rng(2)
    w, z = rng.integers(0, 2, 2000), rng.integers(0, 2, 2000)
    x = np.where(rng.random(2000) < 0.9, w, z)
    bad = pd.DataFrame({"Z": z, "W": w, "X": x, "Y": (rng.random(2000) < 0.3 + 0.4 * x).astype(int)})
    with pytest.raises(IncompatibleDataError, match="likelihood ratio"):
        bounds(graph, ATE("X", "Y"), bad, num_samples=20)


def test_experiments_tied_to_observations_use_the_response_type_posterior() -> None:
    # X -> Y unconfounded: P(y | do(x)) = P(y | x), an equality between the two data sets.
    graph = CausalGraph.parse("X -> Y")
    rng = np.random.default_rng(3)
    x = (rng.random(3000) < 0.4).astype(int)
    obs = pd.DataFrame({"X": x, "Y": (rng.random(3000) < 0.2 + 0.5 * x).astype(int)})
    xe = rng.integers(0, 2, 3000)
    exp = pd.DataFrame({"X": xe, "Y": (rng.random(3000) < 0.2 + 0.5 * xe).astype(int)})
    b = bounds(graph, PN("X", "Y"), obs, experimental=exp, num_samples=150, seed=0)
    assert b.posterior == "canonical-gibbs" and "Gibbs" in b.note
    truth = tian_pearl(np.array([[0.6 * 0.8, 0.6 * 0.2], [0.4 * 0.3, 0.4 * 0.7]]), np.array([0.2, 0.7])).pn
    (m_lo, m_hi), (s_lo, s_hi) = b.mean, b.std
    assert abs(m_lo - truth[0]) <= 4 * s_lo + 1e-3 and abs(m_hi - truth[1]) <= 4 * s_hi + 1e-3


def test_experimental_data_narrow_the_probability_of_necessity_and_sufficiency() -> None:
    scm = ExactSCM.random(BOW, np.random.default_rng(4))
    obs = _sample(scm, 3000, seed=1)
    arm = np.random.default_rng(2).integers(0, 2, 3000)
    y_do = {x: scm.expectation("Y", {"X": x}) for x in (0, 1)}
    exp = pd.DataFrame(
        {"X": arm, "Y": (np.random.default_rng(3).random(3000) < np.choose(arm, [y_do[0], y_do[1]]))}
    )
    plain = bounds(BOW, PNS("X", "Y"), obs, num_samples=150)
    tight = bounds(BOW, PNS("X", "Y"), obs, experimental=exp, num_samples=150)
    assert tight.posterior == "dirichlet" and tight.acceptance > 0.05
    width = lambda b: b.mean[1] - b.mean[0]  # noqa: E731
    assert width(tight) < width(plain)
    truth = scm.causation("PNS", "X", "Y")
    for b in (plain, tight):
        lo, hi = b.identified_set(0.94)
        assert lo <= truth <= hi


def test_conditional_and_counterfactual_queries_on_the_instrument() -> None:
    scm = _iv_scm()
    data = _sample(scm, 2000, seed=9)
    for query, truth in (
        (Interventional("Y", do={"X": 1}, given={"Z": 1}), scm.expectation("Y", {"X": 1}, {"Z": 1})),
        (PN("X", "Y"), scm.causation("PN", "X", "Y")),
    ):
        b = bounds(IV, query, data, num_samples=200)
        lo, hi = b.identified_set(0.94)
        assert b.sharp and lo <= truth <= hi


def test_manski_posterior_is_centred_on_the_plug_in_bounds() -> None:
    rng = np.random.default_rng(6)
    x = rng.integers(0, 2, 800)
    y = np.clip(rng.normal(x, 1.0), -4, 4)
    data = pd.DataFrame({"X": x, "Y": y})
    b = bounds(BOW, ATE("X", "Y"), data, outcome_range=(-4, 4), num_samples=300)
    plug = bounds_from_distribution(BOW, ATE("X", "Y"), data.assign(p=1.0), outcome_range=(-4, 4))
    assert b.method == "manski" and b.posterior == "bayesian-bootstrap" and b.sharp
    for end in range(2):
        assert abs(b.mean[end] - plug[end]) <= 4 * b.std[end]
    assert np.allclose(b.upper - b.lower, 8.0)  # (high - low) for a binary treatment, every draw


def test_the_result_object() -> None:
    b = bounds(IV, ATE("X", "Y"), _sample(_iv_scm(), 1000, seed=4), num_samples=200, seed=2)
    assert isinstance(b, Bounds) and b.num_samples == 200 and b.seed == 2 and b.method == "canonical-lp"
    assert b.query == ATE("X", "Y") and b.label == "E[Y | do(X=1)] - E[Y | do(X=0)]"
    with pytest.raises(ValueError):
        b.lower[0] = 1.0  # read-only draws
    (a, c), (d, e) = b.interval(0.9)
    assert a < c and d < e and np.mean(b.lower <= c) >= 0.9
    for prob in (0.5, 0.9, 0.99):
        lo, hi = b.identified_set(prob)
        assert np.mean((b.lower >= lo) & (b.upper <= hi)) >= prob
    idata = b.to_arviz()
    assert idata.posterior["lower"].shape == (1, 200) and idata.posterior.attrs["method"] == "canonical-lp"
    text = repr(b)
    assert "identified set" in text and "sharp" in text and "E[Y | do(X=1)] - E[Y | do(X=0)]" in text


def test_a_continuous_outcome_needs_its_range() -> None:
    rng = np.random.default_rng(7)
    data = pd.DataFrame({"X": rng.integers(0, 2, 50), "Y": rng.normal(size=50)})
    with pytest.raises(DataError, match="outcome_range"):
        bounds(BOW, ATE("X", "Y"), data, num_samples=10)


@pytest.mark.slow
def test_identified_set_covers_the_effect_and_error_falls_like_one_over_root_n() -> None:
    scm = _iv_scm()
    true_lo, true_hi = bounds_from_distribution(IV, ATE("X", "Y"), scm.distribution())
    effect = scm.expectation("Y", {"X": 1}) - scm.expectation("Y", {"X": 0})
    errors, covered = {}, []
    for n in (500, 8_000):
        errs = []
        for rep in range(40):
            b = bounds(IV, ATE("X", "Y"), _sample(scm, n, seed=1000 * rep + n), num_samples=300, seed=rep)
            errs.append(np.abs(np.array(b.mean) - (true_lo, true_hi)))
            lo, hi = b.identified_set(0.94)
            covered.append(lo <= effect <= hi)
        errors[n] = np.mean(errs, axis=0)
    assert np.mean(covered) >= 0.94
    ratio = errors[500] / errors[8_000]  # 16 times the data: about 4 times smaller errors
    assert np.all((ratio > 2.0) & (ratio < 8.0)), ratio


def test_factor_by_factor_draws_are_the_joint_dirichlet_when_nothing_is_excluded() -> None:
    # The aggregation property: P(z) P(x | z) P(y | x, z), each factor Dirichlet with pooled
    # pseudo-counts, has the law of Dirichlet(counts + prior) over the joint cells.
    model = CanonicalModel(IV, ("Z", "X", "Y"), {v: (0, 1) for v in "ZXY"})
    counts = np.arange(1.0, 9.0).reshape(2, 2, 2)
    draws = factored_dirichlet(model, counts, 0.5, np.random.default_rng(0), 40_000).reshape(40_000, 8)
    alpha = counts.ravel() + 0.5
    mean = alpha / alpha.sum()
    var = mean * (1 - mean) / (alpha.sum() + 1)
    se_mean = np.sqrt(var / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * se_mean)
    # The variance of a sample variance from 40000 draws is known to about 1%; allow 5%.
    assert np.allclose(draws.var(0), var, rtol=0.05)
