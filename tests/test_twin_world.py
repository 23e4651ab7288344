"""Twin-world counterfactual programs (shared noise) and counterfactual estimation."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from _linear_models import BACKDOOR_TRUTH, backdoor, simulate
from chirho.counterfactual.handlers import TwinWorldCounterfactual

from causal_pp import (
    ETT,
    PN,
    PNS,
    PS,
    CausalGraph,
    CausalModel,
    CausalPosterior,
    Counterfactual,
    NotIdentifiableError,
    units,
)
from causal_pp.errors import CounterfactualError
from causal_pp.handlers import SharedNoise, intervene, twin_world

# --- a bow model U -> X -> Y, U -> Y with known parameters ------------------------------

MU, A, C, D = 0.5, 0.8, 1.5, -1.0  # U ~ N(MU, 1); X = A U + e_X; Y = C X + D U + e_Y


def bow_fn(n: int) -> None:
    c = pyro.sample("c", dist.Normal(0.0, 10.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(MU, 1.0))
        x = pyro.sample("X", dist.Normal(A * u, 1.0))
        pyro.sample("Y", dist.Normal(c * x + D * u, 1.0))


BOW = CausalModel(bow_fn, CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"]))


def given(model: CausalModel, draws: int, **params: float) -> CausalPosterior:
    """A posterior whose draws are all the known parameter values."""
    n = 3
    return CausalPosterior(
        model=model,
        samples={k: torch.full((draws,), float(v)) for k, v in params.items()},
        data={v: torch.zeros(n) for v in model.graph.observed},
        diagnostics={},
        method="given",
        seed=0,
    )


def test_unit_counterfactual_with_full_evidence_is_exact() -> None:
    # Y_{x} = y + C (x - x') whatever the (latent) U: the noise of Y is shared
    post = given(BOW, 4, c=C)
    q = Counterfactual("Y", do={"X": -1.0}, factual={"X": 2.0, "Y": 0.7})
    with pytest.warns(UserWarning, match="NOT identifiable"):
        est = post.estimate(q, num_units=200, seed=1, allow_unidentified=True)
    assert est.identified is False
    assert est.samples.shape == (4,)
    assert torch.allclose(
        est.samples, torch.full((4,), 0.7 + C * (-1.0 - 2.0), dtype=torch.float64), atol=1e-4
    )
    assert list(est.predictive) == ["Y_{X=-1}"]


def test_counterfactual_with_latent_abduction_matches_analytic() -> None:
    # E[Y_{x} | X=x'] = C x + D E[U | X=x'], U | X=x' ~ N(MU + A (x' - A MU) / (A^2 + 1), 1 / (A^2 + 1))
    x_cf, x_obs = 1.0, 2.0
    truth = C * x_cf + D * (MU + A * (x_obs - A * MU) / (A**2 + 1))
    post = given(BOW, 16, c=C)
    q = Counterfactual("Y", do={"X": x_cf}, factual={"X": x_obs})
    with pytest.warns(UserWarning, match="NOT identifiable"):
        est = post.estimate(q, num_units=2000, seed=3, allow_unidentified=True)
    se = float(est.samples.std()) / math.sqrt(16)
    assert abs(est.mean - truth) < 4 * se + 1e-3, (est.mean, truth, se)
    assert se < 0.05
    assert float(est.ess.min()) > 500


def test_twin_program_shares_noise_between_worlds() -> None:
    prog = twin_world(BOW, do={"X": 0.0})
    cond = pyro.condition(prog, data={"c": torch.tensor(C)})
    tr = pyro.poutine.trace(cond).get_trace(50)
    y_f, y_cf = prog.worlds(tr.nodes["Y"]["value"])
    x_f, x_cf = prog.worlds(tr.nodes["X"]["value"])
    u = tr.nodes["U"]["value"]
    assert tr.nodes["N_Y"]["value"].shape == (50,)  # plate shape only: no world dimension
    assert x_cf.shape == y_f.shape == (50,)
    assert torch.allclose(x_cf, torch.zeros(50))
    assert torch.allclose(y_f - C * x_f - D * u, y_cf - C * x_cf - D * u, atol=1e-5)
    assert torch.allclose(y_f - y_cf, C * x_f, atol=1e-5)


def test_unshared_twin_world_fails_the_noise_check() -> None:
    # the same check on ChiRho's plain twin world (no SharedNoise) fails: Y is resampled
    def unshared(n: int) -> None:
        with TwinWorldCounterfactual(first_available_dim=-3):
            intervene(pyro.condition(bow_fn, data={"c": torch.tensor(C)}), {"X": 0.0})(n)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        tr = pyro.poutine.trace(unshared).get_trace(50)
    y = tr.nodes["Y"]["value"]
    x = tr.nodes["X"]["value"]
    assert y.shape[0] == 2
    assert not torch.allclose(y[0] - y[1], C * x[0], atol=1e-3)


def test_twin_program_conditions_the_factual_world_only() -> None:
    prog = BOW.twin_world({"X": 0.0}, factual={"X": 1.0, "Y": 2.0})
    tr = pyro.poutine.trace(pyro.condition(prog, data={"c": torch.tensor(C)})).get_trace(5)
    y_f, y_cf = prog.worlds(tr.nodes["Y"]["value"])
    assert torch.allclose(y_f, torch.full((5,), 2.0))
    assert torch.allclose(y_cf, torch.full((5,), 2.0 - C), atol=1e-5)
    assert {"X__evidence", "Y__evidence"} <= set(tr.nodes)


def test_unsupported_distribution_is_refused_naming_the_site() -> None:
    def pois(n: int) -> None:
        with units(n):
            x = pyro.sample("X", dist.Normal(0.0, 1.0))
            pyro.sample("Y", dist.Poisson(torch.exp(x)))

    m = CausalModel(pois, CausalGraph.parse("X -> Y"))
    with pytest.raises(CounterfactualError, match="'Y' has a Poisson"):
        pyro.poutine.trace(m.twin_world({"X": 0.0})).get_trace(3)


def test_categorical_gumbel_max_shares_noise() -> None:
    def cat(n: int) -> None:
        with units(n):
            x = pyro.sample("X", dist.Normal(0.0, 1.0))
            logits = torch.stack([torch.zeros_like(x), x, 2 * x], -1)
            pyro.sample("Y", dist.Categorical(logits=logits))

    m = CausalModel(cat, CausalGraph.parse("X -> Y"))
    prog = m.twin_world({"X": 0.0})
    tr = pyro.poutine.trace(prog).get_trace(200)
    g = tr.nodes["N_Y"]["value"]
    assert g.shape == (200, 3)
    _, y_cf = prog.worlds(tr.nodes["Y"]["value"])
    assert torch.equal(y_cf, torch.argmax(g, -1))  # logits all 0 under do(X=0)


# --- Bernoulli: uniform-threshold noise, PN ----------------------------------------------

P1, P0, PX = 0.8, 0.3, 0.4


def binary_fn(n: int) -> None:
    p1 = pyro.sample("p1", dist.Beta(1.0, 1.0))
    p0 = pyro.sample("p0", dist.Beta(1.0, 1.0))
    with units(n):
        x = pyro.sample("X", dist.Bernoulli(PX))
        pyro.sample("Y", dist.Bernoulli(x * p1 + (1 - x) * p0))


BINARY = CausalModel(binary_fn, CausalGraph.parse("X -> Y"))


def test_pn_matches_exhaustive_enumeration() -> None:
    # response types of Y = 1[U < p(x)]: (Y_0, Y_1) = (1, 1) w.p. P0, (0, 1) w.p. P1 - P0, (0, 0) else
    types = {(1, 1): P0, (0, 1): P1 - P0, (0, 0): 1 - P1}
    pn_truth = sum(w for (y0, y1), w in types.items() if y1 == 1 and y0 == 0) / sum(
        w for (_, y1), w in types.items() if y1 == 1
    )
    ps_truth = sum(w for (y0, y1), w in types.items() if y0 == 0 and y1 == 1) / sum(
        w for (y0, _), w in types.items() if y0 == 0
    )
    post = given(BINARY, 8, p1=P1, p0=P0)
    n = 2000
    pn = post.estimate(PN("X", "Y"), num_units=n, seed=0, assume_monotonic=True)
    ps = post.estimate(PS("X", "Y"), num_units=n, seed=0, assume_monotonic=True)
    for est, truth in ((pn, pn_truth), (ps, ps_truth)):
        se = math.sqrt(truth * (1 - truth) / (8 * n * PX))  # conservative: ESS >= n * P(x)
        assert est.identified
        assert abs(est.mean - truth) < 4 * se, (est.mean, truth, se)


def test_pns_joins_two_worlds_on_the_same_units_and_matches_enumeration() -> None:
    types = {(1, 1): P0, (0, 1): P1 - P0, (0, 0): 1 - P1}  # (Y_0, Y_1) as above
    pns_truth = types[(0, 1)]
    post = given(BINARY, 8, p1=P1, p0=P0)
    n = 2000
    with pytest.raises(NotIdentifiableError, match="monoton"):
        post.estimate(PNS("X", "Y"), num_units=n)
    pns = post.estimate(PNS("X", "Y"), num_units=n, seed=0, assume_monotonic=True)
    se = math.sqrt(pns_truth * (1 - pns_truth) / (8 * n))
    assert pns.identified
    assert abs(pns.mean - pns_truth) < 4 * se, (pns.mean, pns_truth, se)
    # Worlds drawn with independent noise would give P(Y_1=1) P(Y_0=0) = 0.56, not 0.5.
    assert abs(P1 * (1 - P0) - pns_truth) > 10 * se
    # The event Y=0 (outcome_value=0): P(Y_1=0, Y_0=1) = 0 under the monotone noise model.
    assert post.estimate(PNS("X", "Y", outcome_value=0), num_units=n, assume_monotonic=True).mean == 0.0


# --- the gate ------------------------------------------------------------------------------


def test_gate_refuses_ett_in_the_bow_and_pn_without_monotonicity() -> None:
    post = given(BOW, 2, c=C)
    with pytest.raises(NotIdentifiableError):
        post.estimate(ETT("X", "Y"), num_units=50)
    with pytest.warns(UserWarning, match="NOT identifiable"):
        est = post.estimate(ETT("X", "Y"), num_units=50, allow_unidentified=True)
    assert est.identified is False
    assert abs(est.mean - C) < 1e-4  # linear: Y_1 - Y_0 = C for every unit
    bpost = given(BINARY, 2, p1=P1, p0=P0)
    with pytest.raises(NotIdentifiableError):
        bpost.estimate(PN("X", "Y"), num_units=50)


# --- ETT in the back-door model, from a fitted posterior ------------------------------------


@pytest.mark.filterwarnings("ignore:.*SVI fit.*may be unreliable")
def test_ett_backdoor_from_svi_posterior() -> None:
    data = simulate(backdoor, BACKDOOR_TRUTH, n=500, seed=11)
    post = backdoor.fit(data, method="svi", num_steps=1500, num_samples=200, seed=0, progress_bar=False)
    est = post.estimate(ETT("X", "Y"), num_units=300, num_samples=100, seed=0)
    truth = BACKDOOR_TRUTH["theta_XY"]  # linear model: ETT = ATE = theta_XY
    assert est.identified
    assert abs(est.mean - truth) < 4 * est.std + 0.02, (est.mean, est.std, truth)


def test_shared_noise_handler_doctest_shape() -> None:
    tr = pyro.poutine.trace(SharedNoise({"Y": 1.0})(bow_fn)).get_trace(4)
    assert tr.nodes["Y"]["infer"]["noise_site"] == "N_Y"
    assert torch.allclose(tr.nodes["Y"]["value"], torch.ones(4))
