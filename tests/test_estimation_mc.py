"""The Monte Carlo error of estimates: measured per draw, controlled, and kept out of the posterior.

Acceptance checks of issue #13 on cases whose functional is analytic per posterior draw: the
posterior SD that ``estimate`` reports equals the SD of the exact per-draw functional within 10%,
and the posterior means agree within 3 Monte Carlo standard errors. Posteriors are fixed draws
around the cases' true parameters with the spread of a fitted posterior (the functional per draw
is then known exactly); the count-mediator case is in ``test_estimation_count.py``.
"""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from causal_pp import ATE, PN, PNS, CausalGraph, CausalModel, CausalPosterior, Interventional
from causal_pp.cases import get_case
from causal_pp.estimation import EstimateOptions, estimator
from causal_pp.estimation.montecarlo import FIRST_BATCH, Plan, Tally, fraction_of, next_batch

FLOAT32 = 1e-5  # models compute in float32: a floor under "exact" comparisons, relative to the value


def fixed(
    model: CausalModel, center: dict, spread: float, draws: int = 200, seed: int = 0
) -> CausalPosterior:
    """A posterior of ``draws`` draws around ``center`` (Gaussian spread; positive stays positive)."""
    g = torch.Generator().manual_seed(seed)
    samples = {}
    for k, v in center.items():
        x = torch.full((draws,), float(v)) + spread * torch.randn(draws, generator=g)
        samples[k] = x.abs() if v > 0 and k.startswith("theta_U") else x
    data = {v: torch.zeros(4) for v in model.graph.observed}
    return CausalPosterior(model=model, samples=samples, data=data, diagnostics={}, method="given", seed=0)


FRONTDOOR, BACKDOOR = get_case("frontdoor"), get_case("backdoor")


def fd_ate(s):
    return s["theta_XM"] * s["theta_MY"]


def fd_y1(s):
    return s["a_Y"] + s["theta_MY"] * (s["a_M"] + s["theta_XM"])


def bd_ate(s):
    return s["theta_XY"]


def bd_y1(s):
    return s["a_Y"] + s["theta_XY"] + s["theta_ZY"] * s["a_Z"]


def bd_y1_given(z):
    def f(s):
        e_u = s["theta_UZ"] * (z - s["a_Z"]) / (s["theta_UZ"] ** 2 + 1)  # E[U | Z = z]
        return s["a_Y"] + s["theta_XY"] + s["theta_ZY"] * z + s["theta_UY"] * e_u

    return f


CASES = {
    "frontdoor/ate": (FRONTDOOR, ATE("X", "Y"), fd_ate),
    "frontdoor/y_do_x1": (FRONTDOOR, Interventional("Y", do={"X": 1.0}), fd_y1),
    "backdoor/ate": (BACKDOOR, ATE("X", "Y"), bd_ate),
    "backdoor/y_do_x1": (BACKDOOR, Interventional("Y", do={"X": 1.0}), bd_y1),
    "backdoor/y_do_x1_given_z": (
        BACKDOOR,
        Interventional("Y", do={"X": 1.0}, given={"Z": 1.5}),
        bd_y1_given(1.5),
    ),
}


def check_acceptance(est, exact: torch.Tensor) -> None:
    exact = exact.double()
    assert abs(est.std / float(exact.std()) - 1) < 0.10, (est.std, float(exact.std()))
    tol = 3 * est.mean_mc_se + FLOAT32 * (1 + abs(float(exact.mean())))
    assert abs(est.mean - float(exact.mean())) <= tol, (est.mean, float(exact.mean()), est.mean_mc_se)


@pytest.mark.parametrize("name", list(CASES))
def test_posterior_sd_is_the_sd_of_the_exact_functional(name) -> None:
    case, query, functional = CASES[name]
    post = fixed(case.model, case.model_truth, spread=0.03)
    est = post.estimate(query, seed=0)
    check_acceptance(est, functional(post.samples))
    assert est.mc_fraction <= 0.01 and not est.mc_capped and est.mc_target == 0.01


@pytest.mark.parametrize("name", ["frontdoor/y_do_x1", "backdoor/y_do_x1_given_z"])
def test_the_old_scheme_fails_the_same_check(name) -> None:
    # 1000 units per draw, sampled outcomes, independent units (issue #13's "before"): the draws'
    # SD is far from the functional's -- the acceptance check above has power
    case, query, functional = CASES[name]
    post = fixed(case.model, case.model_truth, spread=0.03)
    opts = EstimateOptions(num_units=1000, rao_blackwell=False, stratify=False)
    est = estimator(query, post, opts)
    assert float(est.samples.std()) / float(functional(post.samples).double().std()) > 1.15
    assert est.mc_fraction > 0.3 and est.mc_target is None


@pytest.mark.parametrize(
    ("name", "stratify"), [("backdoor/y_do_x1_given_z", True), ("backdoor/y_do_x1_given_z", False)]
)
def test_reported_mc_error_matches_the_actual_error(name, stratify) -> None:
    # With few units the MC error is large; the reported per-draw MC SE (self-normalised
    # importance sampling, from unit contributions) must match the actual RMS error.
    case, query, functional = CASES[name]
    post = fixed(case.model, case.model_truth, spread=0.03, draws=400)
    est = estimator(query, post, EstimateOptions(num_units=160, stratify=stratify, seed=1))
    err = (est.samples - functional(post.samples).double()).pow(2).mean().sqrt()
    rms_se = est.mc_se.pow(2).mean().sqrt()
    assert 0.8 < float(err / rms_se) < 1.25, (float(err), float(rms_se))
    assert est.ess is not None and float(est.ess.mean()) < 160  # the weights cost units ...
    assert float(rms_se) > float(est.samples.std()) / 10  # ... and the MC SE shows it


# --- counterfactual queries: twin worlds -----------------------------------------------------------


def binary_fn(n: int) -> None:
    p1 = pyro.sample("p1", dist.Beta(1.0, 1.0))
    p0 = pyro.sample("p0", dist.Beta(1.0, 1.0))
    with pyro.plate("units", n):
        x = pyro.sample("X", dist.Bernoulli(0.4))
        pyro.sample("Y", dist.Bernoulli(x * p1 + (1 - x) * p0))


BINARY = CausalModel(binary_fn, CausalGraph.parse("X -> Y"))


@pytest.mark.parametrize(
    ("query", "functional"),
    [(PNS("X", "Y"), lambda s: s["p1"] - s["p0"]), (PN("X", "Y"), lambda s: (s["p1"] - s["p0"]) / s["p1"])],
    ids=["PNS", "PN"],
)
def test_counterfactual_posterior_sd_is_the_functional_sd(query, functional) -> None:
    # uniform-threshold noise: PNS = p1 - p0 and PN = (p1 - p0) / p1 for every draw
    post = fixed(BINARY, {"p1": 0.8, "p0": 0.3}, spread=0.02)
    est = post.estimate(query, seed=0, assume_monotonic=True)
    check_acceptance(est, functional(post.samples))
    assert est.mc_fraction <= 0.01 and not est.mc_capped


def test_ett_is_exact_per_draw_in_a_linear_model() -> None:
    post = fixed(BACKDOOR.model, BACKDOOR.model_truth, spread=0.03, draws=50)
    est = post.estimate(BACKDOOR.queries["ett"].query)
    assert torch.allclose(est.samples, bd_ate(post.samples).double(), atol=1e-4)
    assert est.num_units == FIRST_BATCH and est.mc_fraction < 1e-6


# --- the stopping rule and its caps ------------------------------------------------------------------


def test_explicit_num_units_is_one_batch_and_reports_its_mc_error() -> None:
    post = fixed(BACKDOOR.model, BACKDOOR.model_truth, spread=0.03)
    est = post.estimate(CASES["backdoor/y_do_x1_given_z"][1], num_units=300)
    assert est.num_units == 300 and est.mc_target is None and not est.mc_capped
    assert est.mc_se.shape == est.samples.shape and bool((est.mc_se > 0).all())
    assert "mc_fraction=" in repr(est)


def test_a_cap_stops_the_growth_and_the_result_says_so() -> None:
    # identical draws: the functional has no posterior variance, so no number of units is enough
    post = fixed(BACKDOOR.model, BACKDOOR.model_truth, spread=0.0, draws=20)
    q = CASES["backdoor/y_do_x1_given_z"][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = post.estimate(q, max_units=3000)
    assert est.mc_capped and 3000 <= est.num_units < 3000 + 16
    assert est.mc_fraction > 0.01 and "(capped)" in repr(est)
    with pytest.raises(ValueError, match="mc_fraction"):
        post.estimate(q, mc_fraction=1.5)
    with pytest.raises(ValueError, match="max_units"):
        post.estimate(q, max_units=1)


def test_adaptive_estimate_is_reproducible_and_leaves_caller_stream_alone() -> None:
    post = fixed(BACKDOOR.model, BACKDOOR.model_truth, spread=0.03, draws=60)
    q = CASES["backdoor/y_do_x1_given_z"][1]
    state = torch.get_rng_state()
    a, b, c = post.estimate(q, seed=3), post.estimate(q, seed=3), post.estimate(q, seed=4)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a.samples, b.samples) and torch.equal(a.mc_se, b.mc_se) and a.num_units == b.num_units
    assert not torch.equal(a.samples, c.samples)


def test_next_batch_projects_from_the_fraction_reached() -> None:
    t = Tally(4, signs=(1.0,))
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([0.0, 1.0, 2.0, 3.0]).reshape(1, 4, 1, 1)
    t.add(centers + 10.0 * torch.randn(1, 4, 1000, 1, generator=g, dtype=torch.float64), None, slice(0, 4))
    plan = Plan.make(None, 0.01, None, draws=4, arms=1)
    frac = float(fraction_of(t.functional, t.mc_var)[0])  # about 0.1 / 1.57
    add, capped = next_batch(t, plan)
    assert not capped and add % 16 == 0 and 1000 + add >= 1000 * min(8.0, frac / 0.01)
    assert next_batch(t, Plan.make(1000, 0.01, None, draws=4, arms=1)) == (0, False)  # explicit
    assert next_batch(t, Plan(None, 0.01, cap=1000)) == (0, True)


# --- the tally: MC variance from unit contributions -------------------------------------------------


def delta_method(c: torch.Tensor, logw: torch.Tensor, signs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per draw: the functional and its self-normalised-IS variance, unit by unit (the definition)."""
    w = torch.softmax(logw, dim=2)  # (A, S, n)
    theta = (w * c[..., 0]).sum(2)  # (A, S)
    psi = sum(s * w[a] * (c[a, ..., 0] - theta[a].unsqueeze(-1)) for a, s in enumerate(signs))
    n = c.shape[2]
    f = sum(s * theta[a] for a, s in enumerate(signs))
    return f, psi.pow(2).sum(-1) * n / (n - 1)


def test_tally_is_the_delta_method_variance_and_batches_add_up() -> None:
    g = torch.Generator().manual_seed(1)
    A, S, n = 2, 3, 400
    c = torch.randn(A, S, n, 1, generator=g, dtype=torch.float64) + torch.tensor([2.0, 1.0]).reshape(
        2, 1, 1, 1
    )
    logw = 3 * torch.randn(A, S, n, generator=g, dtype=torch.float64)
    f, var = delta_method(c, logw, (1.0, -1.0))
    one = Tally(S, (1.0, -1.0))
    one.add(c, logw, slice(0, S))
    assert torch.allclose(one.functional[:, 0], f) and torch.allclose(one.mc_var[:, 0], var)
    two = Tally(S, (1.0, -1.0))  # the same units in two batches, and two chunks of draws
    lw = logw + 800.0  # weights beyond exp's range: only their ratios count
    lw[:, :, 150:] += 5.0 * (torch.arange(250) % 2)  # a later batch with larger weights: rescaled
    c2 = c.clone()
    two.add(c2[:, :2, :150], lw[:, :2, :150], slice(0, 2))
    two.add(c2[:, 2:, :150], lw[:, 2:, :150], slice(2, 3))
    two.add(c2[:, :, 150:], lw[:, :, 150:], slice(0, S))
    f, var = delta_method(c, lw - 800.0, (1.0, -1.0))
    assert torch.allclose(two.functional[:, 0], f) and torch.allclose(two.mc_var[:, 0], var)
    ess = torch.exp(2 * torch.logsumexp(logw, 2) - torch.logsumexp(2 * logw, 2)).min(0).values
    assert torch.allclose(one.ess, ess)


def test_tally_blocks_use_block_means() -> None:
    c = torch.tensor([1.0, 3.0, 2.0, 2.0, 5.0, 7.0], dtype=torch.float64).reshape(1, 1, 6, 1)
    t = Tally(1, (1.0,))
    t.add(c, None, slice(0, 1), blocks=3, compare=True)  # block means 2, 2, 6
    assert float(t.mc_var) == pytest.approx(torch.tensor([2.0, 2.0, 6.0]).var().item() / 3)
    assert float(t.mc_var_units) == pytest.approx(c.var().item() / 6)
