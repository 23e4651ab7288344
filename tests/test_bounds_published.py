"""Bounds against published and analytic values.

* Balke & Pearl (1997), JASA 92:1171-1176, Table 1 (vitamin A supplementation, Sommer et al.):
  -0.1946 <= ACE <= 0.0054; the arms as printed by the ``bpbounds`` R package (Palmer,
  Ramsahai, Didelez & Sheehan, Stata Journal 11, 2011) for the same data.
* Pearl, *Causality* (2nd ed., 2009), section 8.2.6 (cholestyramine): 0.39 <= ACE <= 0.78.
* Palmer et al. (2011), a three-category instrument (Meleady et al. 2003), as in ``bpbounds``:
  ACE in [-0.09, 0.74], P(Y | do(X=0)) in [0.06, 0.12], P(Y | do(X=1)) in [0.03, 0.80].
* Pearl, *Causality*, section 9.3.4 (Table 9.2): experimental and observational deaths give a
  lower bound of 1 on the probability of necessity.
* Natural bounds in the bow, Tian & Pearl's (2000) closed forms, Manski's no-assumption bounds:
  analytic expressions evaluated here from the distribution.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from causal_pp import ATE, PN, PNS, PS, CausalGraph, Interventional
from causal_pp.partial import bounds_from_distribution, tian_pearl

IV = CausalGraph.parse("Z -> X -> Y; X <-> Y")
BOW = CausalGraph.parse("X -> Y; X <-> Y")


def _table(cells: dict[tuple[int, ...], float], names: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame([(*k, v) for k, v in cells.items()], columns=[*names, "p"])


VITAMIN_A = _table(  # counts (z, x, y) of Balke & Pearl's Table 1; weights are normalised
    {(0, 0, 0): 74, (0, 0, 1): 11514, (1, 0, 0): 34, (1, 0, 1): 2385, (1, 1, 0): 12, (1, 1, 1): 9663},
    ("Z", "X", "Y"),
)


@pytest.mark.parametrize(
    ("query", "published", "digits"),
    [
        (ATE("X", "Y"), (-0.1946, 0.0054), 4),  # Balke & Pearl (1997)
        (Interventional("Y", do={"X": 0}), (0.9936, 0.9936), 4),  # bpbounds: 0.9936141, 0.993614084
        (Interventional("Y", do={"X": 1}), (0.7990, 0.9990), 4),  # bpbounds: 0.7989912, 0.999007772
    ],
    ids=["ace", "do_x0", "do_x1"],
)
def test_balke_pearl_vitamin_a(query: object, published: tuple[float, float], digits: int) -> None:
    lo, hi = bounds_from_distribution(IV, query, VITAMIN_A)
    half = 0.5 * 10.0**-digits
    assert lo == pytest.approx(published[0], abs=half) and hi == pytest.approx(published[1], abs=half)


def test_pearl_cholestyramine() -> None:
    p_xy_given_z = {  # (z, x, y): P(x, y | z), Causality section 8.2.6
        (0, 0, 0): 0.919, (0, 1, 0): 0.000, (0, 0, 1): 0.081, (0, 1, 1): 0.000,
        (1, 0, 0): 0.315, (1, 1, 0): 0.139, (1, 0, 1): 0.073, (1, 1, 1): 0.473,
    }  # fmt: skip
    lo, hi = bounds_from_distribution(IV, ATE("X", "Y"), _table(p_xy_given_z, ("Z", "X", "Y")))
    assert lo == pytest.approx(0.39, abs=0.005) and hi == pytest.approx(0.78, abs=0.005)


def test_palmer_three_category_instrument() -> None:
    # P(x, y | z) for z = 0, 1, 2, each panel in the order (x, y) = 00, 01, 10, 11 (Palmer et
    # al.'s order; bpbounds' own source documents it when it reorders its input).
    values = [0.83, 0.05, 0.11, 0.01, 0.88, 0.06, 0.05, 0.01, 0.72, 0.05, 0.20, 0.03]
    cells = {}
    for i, v in enumerate(values):
        y, x, z = i % 2, (i // 2) % 2, i // 4
        cells[(z, x, y)] = v / 3  # any P(z): the bounds condition on the instrument
    table = _table(cells, ("Z", "X", "Y"))
    published = {
        ATE("X", "Y"): (-0.09, 0.74),
        Interventional("Y", do={"X": 0}): (0.06, 0.12),
        Interventional("Y", do={"X": 1}): (0.03, 0.80),
    }
    for query, (a, b) in published.items():
        lo, hi = bounds_from_distribution(IV, query, table)
        assert lo == pytest.approx(a, abs=0.005) and hi == pytest.approx(b, abs=0.005), query


def test_pearl_legal_responsibility_probability_of_necessity_is_one() -> None:
    # Deaths per 1000: experiment do(x) 16, do(x') 14; observation x 2, x' 28 (1000 units each).
    obs = _table({(1, 1): 2, (1, 0): 998, (0, 1): 28, (0, 0): 972}, ("X", "Y"))
    exp = _table({(1, 1): 16, (1, 0): 984, (0, 1): 14, (0, 0): 986}, ("X", "Y"))
    lo, hi = bounds_from_distribution(BOW, PN("X", "Y"), obs, experimental=exp)
    assert lo == pytest.approx(1.0, abs=1e-9) and hi == pytest.approx(1.0, abs=1e-9)


def _random_bow(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """P(x, y) and (P(y_x'), P(y_x)) of a random model of the bow: r_X free, r_Y any of 4 functions."""
    q = rng.dirichlet(np.full(8, 0.7)).reshape(2, 4)  # q[x, k]: X = x, Y's function k
    funcs = [(0, 0), (1, 0), (0, 1), (1, 1)]  # (Y at x=0, Y at x=1)
    joint, do = np.zeros((2, 2)), np.zeros(2)
    for x in range(2):
        for k, f in enumerate(funcs):
            joint[x, f[x]] += q[x, k]
            do += q[x, k] * np.array(f)
    return joint, do


def test_natural_bounds_in_the_bow() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        joint, _ = _random_bow(rng)
        table = _table({(x, y): joint[x, y] for x in range(2) for y in range(2)}, ("X", "Y"))
        for x in range(2):
            lo, hi = bounds_from_distribution(BOW, Interventional("Y", do={"X": x}), table)
            p_x = joint[x].sum()
            assert lo == pytest.approx(joint[x, 1], abs=1e-9)
            assert hi == pytest.approx(joint[x, 1] + 1 - p_x, abs=1e-9)
        lo, hi = bounds_from_distribution(BOW, ATE("X", "Y"), table)
        assert hi - lo == pytest.approx(1.0, abs=1e-9)
        assert lo == pytest.approx(joint[1, 1] - (joint[0, 1] + joint[1].sum()), abs=1e-9)


def test_natural_bounds_for_a_categorical_outcome_value() -> None:
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(6)).reshape(2, 3)  # P(X = x, Y = y), Y in {0, 1, 2}
    table = _table({(x, y): p[x, y] for x in range(2) for y in range(3)}, ("X", "Y"))
    lo, hi = bounds_from_distribution(BOW, Interventional("Y", do={"X": 1}), table, outcome_value=2)
    assert lo == pytest.approx(p[1, 2]) and hi == pytest.approx(p[1, 2] + p[0].sum())
    lo, hi = bounds_from_distribution(BOW, Interventional("Y", do={"X": 1}), table)  # E[Y]: Y in [0, 2]
    assert lo == pytest.approx(p[1, 1] + 2 * p[1, 2]) and hi == pytest.approx(lo + 2 * p[0].sum())


def test_tian_pearl_when_treatment_and_outcome_are_unconfounded() -> None:
    # X -> Y: P(y_x) = P(y | x), and the programs reproduce Tian & Pearl's closed forms.
    rng = np.random.default_rng(2)
    graph = CausalGraph.parse("X -> Y")
    for _ in range(10):
        joint = rng.dirichlet(np.ones(4)).reshape(2, 2)
        table = _table({(x, y): joint[x, y] for x in range(2) for y in range(2)}, ("X", "Y"))
        closed = tian_pearl(joint, joint[:, 1] / joint.sum(1))
        for query, ref in ((PN("X", "Y"), closed.pn), (PS("X", "Y"), closed.ps), (PNS("X", "Y"), closed.pns)):
            assert bounds_from_distribution(graph, query, table) == pytest.approx(ref, abs=1e-9), query


def test_tian_pearl_with_experimental_data() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        joint, do = _random_bow(rng)
        obs = _table({(x, y): joint[x, y] for x in range(2) for y in range(2)}, ("X", "Y"))
        exp = _table({(x, y): (do[x] if y else 1 - do[x]) for x in range(2) for y in range(2)}, ("X", "Y"))
        closed = tian_pearl(joint, do)
        for query, ref in ((PN("X", "Y"), closed.pn), (PS("X", "Y"), closed.ps), (PNS("X", "Y"), closed.pns)):
            got = bounds_from_distribution(BOW, query, obs, experimental=exp)
            assert got == pytest.approx(ref, abs=1e-9), query


def test_probabilities_of_causation_in_the_bow_from_observation_alone() -> None:
    # Without experiments P(y_x) only lies in [P(x, y), 1 - P(x, y')]: PN and PS are
    # uninformative and PNS <= P(x, y) + P(x', y') (Tian & Pearl's bounds over that range).
    rng = np.random.default_rng(4)
    for _ in range(5):
        joint, _ = _random_bow(rng)
        table = _table({(x, y): joint[x, y] for x in range(2) for y in range(2)}, ("X", "Y"))
        assert bounds_from_distribution(BOW, PN("X", "Y"), table) == pytest.approx((0.0, 1.0), abs=1e-9)
        assert bounds_from_distribution(BOW, PS("X", "Y"), table) == pytest.approx((0.0, 1.0), abs=1e-9)
        pns = bounds_from_distribution(BOW, PNS("X", "Y"), table)
        assert pns == pytest.approx((0.0, joint[1, 1] + joint[0, 0]), abs=1e-9)


def test_manski_bounds_for_a_bounded_outcome() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, 50)
    y = rng.uniform(-1.0, 3.0, 50)
    w = rng.dirichlet(np.ones(50))
    table = pd.DataFrame({"X": x, "Y": y, "p": w})
    lo, hi = bounds_from_distribution(BOW, ATE("X", "Y"), table, outcome_range=(-1.0, 3.0))
    p1 = w[x == 1].sum()
    m1, m0 = np.sum(w * y * (x == 1)), np.sum(w * y * (x == 0))
    assert lo == pytest.approx((m1 - 1.0 * (1 - p1)) - (m0 + 3.0 * p1))
    assert hi == pytest.approx((m1 + 3.0 * (1 - p1)) - (m0 - 1.0 * p1))
    assert hi - lo == pytest.approx(4.0)  # (b - a) for a binary treatment
