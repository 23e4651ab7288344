"""ArviZ output (issue #17): every group, ArviZ's functions on it, its diagnostics and its numbers."""

from __future__ import annotations

import math
import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from _ecosystem_models import nuts_fit, svi_fit

from causal_pp import ATE, CausalGraph, CausalPosterior, Estimate, Interventional, causal_model, units
from causal_pp.inference_data import pointwise_log_likelihood, rhat_ess

FITS = {"nuts": nuts_fit, "svi": svi_fit}


@pytest.fixture(scope="module", params=sorted(FITS))
def posterior(request: pytest.FixtureRequest) -> CausalPosterior:
    return FITS[request.param]()


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's Pareto-k warnings at these tiny sizes
        return fn(*args, **kwargs)


def test_groups_dims_and_arviz_functions(posterior: CausalPosterior, tmp_path) -> None:
    idata = posterior.to_arviz()
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(idata.groups())
    n = posterior.data["X"].shape[0]
    for v in ("X", "M", "Y"):
        assert idata.observed_data[v].dims == ("unit",)
        assert idata.log_likelihood[v].dims == ("chain", "draw", "unit")
        assert idata.log_likelihood[v].shape[-1] == n
    summary = az.summary(idata, var_names=["theta_XM", "theta_MY"])
    assert list(summary.index) == ["theta_XM", "theta_MY"]
    loo = _quiet(az.loo, idata, var_name="Y")
    assert np.isfinite(loo.elpd_loo)
    assert np.isfinite(_quiet(az.waic, idata, var_name="M").elpd_waic)
    joint = posterior.to_arviz(log_likelihood="joint")
    assert list(joint.log_likelihood.data_vars) == ["joint"]
    total = sum(idata.log_likelihood[v].values for v in ("X", "M", "Y"))
    np.testing.assert_allclose(joint.log_likelihood["joint"].values, total)
    table = _quiet(az.compare, {"a": joint, "b": joint})
    assert set(table.index) == {"a", "b"}
    axes = az.plot_trace(idata, var_names=["theta_XM"])
    assert axes.shape == (1, 2)
    plt.close("all")
    path = tmp_path / "idata.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        for name, var in idata[group].data_vars.items():
            np.testing.assert_array_equal(back[group][name].values, var.values)


def test_nuts_sample_stats_per_draw() -> None:
    post = nuts_fit()
    stats = post.to_arviz(log_likelihood=False).sample_stats
    for name in ("diverging", "energy", "tree_depth", "step_size", "lp"):
        assert stats[name].dims == ("chain", "draw"), name
        assert stats[name].shape == (2, 40)
    assert stats["diverging"].dtype == bool
    assert int(stats["diverging"].sum()) == post.diagnostics["divergences"]
    assert (stats["tree_depth"].values >= 1).all() and (stats["tree_depth"].values <= 10).all()
    # one step size per chain after adaptation, as the fit reports it
    np.testing.assert_allclose(stats["step_size"].values[:, 0], post.diagnostics["step_size"])
    # the Hamiltonian exceeds the potential by the kinetic energy, about half the dimension on average
    dim = 5 + 40  # five globals and one latent per unit
    kinetic = stats["energy"].values + stats["lp"].values
    assert abs(kinetic.mean() - dim / 2) < 4 * math.sqrt(dim / 2 / kinetic.size) + 3
    assert np.isfinite(az.bfmi(post.to_arviz(log_likelihood=False))).all()


def test_svi_sample_stats_hold_the_loss_and_the_importance_weights() -> None:
    post = svi_fit()
    stats = post.to_arviz(log_likelihood=False).sample_stats
    np.testing.assert_array_equal(stats["loss"].values, post.diagnostics["loss"])
    assert stats["importance_log_weight"].dims == ("importance_proposal",)
    assert float(stats["importance_ess"]) == pytest.approx(post.diagnostics["is_ess"])
    k = float(stats["importance_pareto_k"])
    assert k == post.diagnostics["is_pareto_k"] and np.isfinite(k)
    _, k_arviz = az.psislw(stats["importance_log_weight"].values.copy())
    assert k == pytest.approx(float(k_arviz))


def test_unit_latents_on_request() -> None:
    post = nuts_fit()
    assert "U" not in post.to_arviz(log_likelihood=False).posterior
    u = post.to_arviz(log_likelihood=False, unit_latents=True).posterior["U"]
    assert u.dims == ("chain", "draw", "unit") and u.shape == (2, 40, 40)
    np.testing.assert_array_equal(u.values.reshape(80, 40), post.unit_samples["U"].numpy())


def test_diagnostics_are_arviz_rank_normalised() -> None:
    post = nuts_fit()
    idata = post.to_arviz(log_likelihood=False)
    summary = az.summary(idata, var_names=["theta_XM"], round_to="none")
    assert post.diagnostics["r_hat"]["theta_XM"] == pytest.approx(summary.loc["theta_XM", "r_hat"])
    assert post.diagnostics["ess"]["theta_XM"] == pytest.approx(summary.loc["theta_XM", "ess_bulk"])
    assert post.diagnostics["ess_tail"]["theta_XM"] == pytest.approx(summary.loc["theta_XM", "ess_tail"])
    est = post.estimate(ATE("X", "Y"), num_units=100, seed=0)
    functional = az.summary(est.to_arviz(log_likelihood=False), var_names=["functional"], round_to="none")
    assert est.diagnostics["r_hat"] == pytest.approx(functional.loc["functional", "r_hat"])
    assert est.diagnostics["ess"] == pytest.approx(functional.loc["functional", "ess_bulk"])
    assert est.diagnostics["ess_tail"] == pytest.approx(functional.loc["functional", "ess_tail"])


def test_single_chain_r_hat_still_sees_drift() -> None:
    rng = np.random.default_rng(1)
    stationary = rng.normal(size=(1, 400))
    drifting = stationary + np.linspace(0, 4, 400)
    assert rhat_ess(stationary)["r_hat"] < 1.02
    assert rhat_ess(drifting)["r_hat"] > 1.3


def test_estimate_predictions_have_an_arm_coordinate() -> None:
    post = svi_fit()
    est = post.estimate(ATE("X", "Y", treated=1.0, control=0.0), num_samples=100, num_units=50, seed=0)
    idata = est.to_arviz(log_likelihood=False)
    pred = idata.predictions["Y"]
    assert pred.dims == ("chain", "draw", "arm", "new_unit")
    assert pred["arm"].values.tolist() == ["do(X=1)", "do(X=0)"]
    np.testing.assert_array_equal(
        pred.sel(arm="do(X=0)").values.reshape(100, 50), est.predictive["Y | do(X=0)"]
    )
    np.testing.assert_array_equal(idata.posterior["functional"].values.reshape(-1), est.samples.numpy())
    assert idata.posterior["theta_XM"].shape == (1, 100)
    one = post.estimate(Interventional(["M", "Y"], do={"X": 2.0}), num_samples=10, num_units=7, seed=0)
    preds = one.to_arviz(log_likelihood=False).predictions
    assert sorted(preds.data_vars) == ["M", "Y"] and preds["arm"].values.tolist() == ["do(X=2)"]


# --- the pointwise log-likelihood against the exact one -------------------------------------------

GAUSS = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"])


@causal_model(GAUSS)
def confounded(n):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(0.0, 1.0))
        x = pyro.sample("X", dist.Normal(mu + a * u, 1.0))
        pyro.sample("Y", dist.Normal(x + 2.0 * u, 0.5))


def confounded_exact(
    x: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, a: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """``confounded``'s log p(X) and log p(Y | X) in closed form, ``(draws, units)``."""
    mu, a = mu[:, None], a[:, None]
    var_x = a**2 + 1.0
    # Y - X = 2U + e'; given X, U ~ N(a (X - mu) / var_x, 1 / var_x)
    mean_u, var_u = a * (x - mu) / var_x, 1.0 / var_x
    exact_x = torch.distributions.Normal(mu, var_x.sqrt()).log_prob(x)
    exact_y = torch.distributions.Normal(x + 2.0 * mean_u, (4.0 * var_u + 0.25).sqrt()).log_prob(y)
    return exact_x.numpy(), exact_y.numpy()


def unbiased(err: np.ndarray) -> np.ndarray:
    """Per unit, whether errors ``(seeds, ...)`` average to 0 within 4 s.e. (their spread over
    seeds), allowing the log of an average its low bias of about half its variance."""
    sd = err.std(0, ddof=1)
    return np.abs(err.mean(0)) <= 4.0 * sd / np.sqrt(len(err)) + sd**2 / 2


def given(model, samples, data):  # type: ignore[no-untyped-def]
    return CausalPosterior(model=model, samples=samples, data=data, diagnostics={}, method="given", seed=0)


def test_log_likelihood_integrates_the_latents_out_exactly() -> None:
    """X = mu + aU + e, Y = X + 2U + e': log p(X) and log p(Y | X) are Gaussian in closed form."""
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    y = torch.tensor([0.0, -1.0, 1.5, 4.0])
    mu, a = torch.tensor([0.3, -0.2]), torch.tensor([0.8, 1.5])
    ll = pointwise_log_likelihood(given(confounded, {"mu": mu, "a": a}, {"X": x, "Y": y}), particles=20000)
    exact_x, exact_y = confounded_exact(x, y, mu, a)
    np.testing.assert_allclose(ll["X"], exact_x, atol=0.03)
    np.testing.assert_allclose(ll["Y"], exact_y, atol=0.05)
    # conditioning on a latent draw instead would make Y's log density far higher (sd 0.5, not ~1)
    assert list(ll) == ["X", "Y"]


def test_a_unit_in_the_tail_gets_its_log_likelihood_at_the_default_particles() -> None:
    """A unit 4 SDs out: prior particles rarely reach its latent, adapted ones do. Over 8 seeds,
    each unit's mean error is within 4 standard errors of the closed form (:func:`unbiased`)."""
    x = torch.tensor([0.0, 8.0, -0.5])
    y = torch.tensor([0.5, 14.0, -1.0])
    mu, a = torch.tensor([0.3, -0.2]), torch.tensor([0.8, 1.5])
    post = given(confounded, {"mu": mu, "a": a}, {"X": x, "Y": y})
    exact = sum(confounded_exact(x, y, mu, a))

    def errors(**kwargs: int) -> np.ndarray:
        runs = [pointwise_log_likelihood(post, seed=seed, **kwargs) for seed in range(8)]
        return np.stack([ll["X"] + ll["Y"] - exact for ll in runs])

    def tail_as_good(err: np.ndarray) -> np.ndarray:  # the tail unit's spread against the others'
        sd = err.std(0, ddof=1)
        return sd[:, 1] <= 3.0 * sd[:, [0, 2]].max(1)

    adapted = errors()
    assert unbiased(adapted).all() and tail_as_good(adapted).all()
    prior_only = errors(adapt=0)  # 64 prior particles: the tail unit nats too low, and noisy
    assert not tail_as_good(prior_only).any() and (prior_only[:, :, 1].mean(0) < -1.0).all()


@causal_model(CausalGraph.parse("U -> X", latent=["U"]))
def gamma_latent(n):  # type: ignore[no-untyped-def]
    r = pyro.sample("r", dist.HalfNormal(2.0))
    with units(n):
        u = pyro.sample("U", dist.Gamma(2.0, r))
        pyro.sample("X", dist.Normal(u, 0.5))


def test_a_positive_latent_is_integrated_in_its_unconstrained_space() -> None:
    """A Gamma latent (the adapted Gaussian lives on log U, the Jacobian taken): against the
    marginal by quadrature, over 8 seeds, the mean error is within 4 s.e. (:func:`unbiased`);
    the prior's particles miss the tail unit (X = 9) by nats."""
    integrate, stats = pytest.importorskip("scipy.integrate"), pytest.importorskip("scipy.stats")
    x = torch.tensor([0.5, 2.0, 9.0])
    rates = (1.0, 1.5)
    post = given(gamma_latent, {"r": torch.tensor(rates)}, {"X": x})

    def marginal(xi: float, r: float) -> float:
        def f(u: float) -> float:
            return stats.gamma.pdf(u, 2.0, scale=1 / r) * stats.norm.pdf(xi, u, 0.5)

        return float(np.log(integrate.quad(f, 0.0, 60.0, points=[xi])[0]))

    exact = np.array([[marginal(float(xi), r) for xi in x] for r in rates])

    def errors(**kwargs: int) -> np.ndarray:
        return np.stack(
            [pointwise_log_likelihood(post, seed=seed, **kwargs)["X"] - exact for seed in range(8)]
        )

    assert unbiased(errors()).all()
    assert (errors(adapt=0)[:, :, 2].mean(0) < -1.0).all()


@causal_model(CausalGraph.parse("U -> X; V -> X; U -> Y; X -> Y", latent=["U", "V"]))
def discrete_latents(n):  # type: ignore[no-untyped-def]
    p = pyro.sample("p", dist.Beta(2.0, 2.0))
    with units(n):
        u = pyro.sample("U", dist.Bernoulli(p))
        v = pyro.sample("V", dist.Categorical(torch.tensor([0.2, 0.3, 0.5])))
        x = pyro.sample("X", dist.Normal(2.0 * u + v, 1.0))
        pyro.sample("Y", dist.Normal(x + u, 1.0))


def test_discrete_latents_are_summed_exactly() -> None:
    """A Bernoulli and a three-way categorical latent per unit: their 6 joint values are summed
    over, so the log-likelihood is exact (and its ESS reported as infinite); with fewer particles
    than joint values the prior's particles are used, and are not exact."""
    x, y = torch.tensor([0.0, 2.0, 5.0]), torch.tensor([0.0, 3.0, 7.0])
    ps = (0.3, 0.6)
    post = given(discrete_latents, {"p": torch.tensor(ps)}, {"X": x, "Y": y})
    normal = torch.distributions.Normal
    exact_x, exact = np.zeros((2, 3)), np.zeros((2, 3))
    for i, p in enumerate(ps):
        for u, pu in ((0, 1 - p), (1, p)):
            for v, pv in enumerate((0.2, 0.3, 0.5)):
                px = normal(2.0 * u + v, 1.0).log_prob(x).exp().numpy()
                exact_x[i] += pu * pv * px
                exact[i] += pu * pv * px * normal(x + u, 1.0).log_prob(y).exp().numpy()
    ll, ess = pointwise_log_likelihood(post, return_ess=True)
    np.testing.assert_allclose(ll["X"], np.log(exact_x), atol=1e-5)
    np.testing.assert_allclose(ll["X"] + ll["Y"], np.log(exact), atol=1e-5)
    assert np.isinf(ess).all()
    sampled, sampled_ess = pointwise_log_likelihood(post, particles=5, return_ess=True)
    assert np.isfinite(sampled_ess).all() and not np.allclose(sampled["X"], np.log(exact_x), atol=1e-5)


def test_the_log_of_the_average_is_corrected_for_its_bias() -> None:
    """4000 units with the same values, so the same exact log-likelihood: their mean error is the
    estimator's bias, to within 4 of its standard errors. The log of an importance average is
    biased low by half its relative variance; the correction added back removes that (the raw
    log-average, the correction taken off, is many standard errors low at 16 particles)."""
    n, particles = 4000, 16
    x, y = torch.zeros(n), torch.full((n,), 0.5)
    mu, a = torch.tensor([0.3]), torch.tensor([0.8])
    post = given(confounded, {"mu": mu, "a": a}, {"X": x, "Y": y})
    exact = sum(confounded_exact(x, y, mu, a))
    ll, ess = pointwise_log_likelihood(post, particles=particles, return_ess=True)
    err = (ll["X"] + ll["Y"] - exact)[0]
    se = err.std() / np.sqrt(n)
    assert abs(err.mean()) < 4.0 * se
    raw = err - 0.5 * (1.0 / ess[0] - 1.0 / particles)
    assert raw.mean() < -4.0 * se


def test_log_likelihood_is_reproducible_and_seeded() -> None:
    post = svi_fit()
    a = post.to_arviz().log_likelihood["Y"].values
    b = post.to_arviz().log_likelihood["Y"].values
    np.testing.assert_array_equal(a, b)
    draws = {k: v[:5] for k, v in post.samples.items()}
    other = pointwise_log_likelihood(post, draws, seed=123)["Y"]
    assert not np.array_equal(other, a.reshape(-1, a.shape[-1])[:5])


def test_an_estimate_without_posterior_converts() -> None:
    est = Estimate(
        ATE("X", "Y"),
        samples=torch.zeros(6),
        predictive={},
        identified=True,
        identification=None,
        plugin=0.0,
        num_units=3,
        seed=0,
        chains=2,
    )
    idata = est.to_arviz()
    assert idata.posterior["functional"].shape == (2, 3)
