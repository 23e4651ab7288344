"""Tempered SMC over the globals (causal_pp.inference.tempered), where importance sampling fails.

On known targets the walk reaches the posterior a Gaussian proposal cannot weigh; rows walked
together get what they get alone; and in a fit, the tempered correction agrees with the
importance correction where the latter holds.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from causal_pp.cases import get_case
from causal_pp.errors import ArgumentTypeError
from causal_pp.inference import SVI, importance
from causal_pp.inference.tempered import Start, temper_rows

# a skewed target in log space: independent Gammas (shape, rate), so E[exp(z)] = shape / rate and
# Var[exp(z)] = shape / rate^2
SHAPES = torch.tensor([2.0, 5.0, 1.5], dtype=torch.float64)
RATES = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)


def _log_gamma(shapes: torch.Tensor, rates: torch.Tensor):  # type: ignore[no-untyped-def]
    gamma = torch.distributions.Gamma(shapes, rates)

    def log_target(rows, zs):  # type: ignore[no-untyped-def]
        return [gamma.log_prob(z.exp()).sum(-1) + z.sum(-1) for z in zs]

    return log_target


def _start(log_target, M: int, seed: int, shift: float = 1.0) -> tuple[Start, torch.Generator]:  # type: ignore[no-untyped-def]
    """``M`` draws of a proposal far too narrow and off-centre (a collapsed guide's)."""
    gen = torch.Generator().manual_seed(seed)
    D = len(SHAPES)
    mean = torch.full((D,), shift, dtype=torch.float64)
    L = 0.2 * torch.eye(D, dtype=torch.float64)
    z = mean + torch.randn((M, D), generator=gen, dtype=torch.float64) @ L.T
    q = torch.distributions.MultivariateNormal(mean, scale_tril=L)
    log_q = q.log_prob(z)
    return Start.weighed(z, log_target([0], [z])[0] - log_q, mean, L), gen


def test_tempering_reaches_a_skewed_posterior_that_importance_sampling_cannot_weigh() -> None:
    log_target = _log_gamma(SHAPES, RATES)
    M = 4000
    start, gen = _start(log_target, M, seed=0)
    w = torch.exp(start.log_p - start.log_q - (start.log_p - start.log_q).max())
    assert float(w.sum() ** 2 / (w * w).sum()) < 0.05 * M  # one round of IS keeps a few per cent
    (walk,) = temper_rows(log_target, [start], [gen])
    assert walk.finished and walk.betas[-1] == 1.0 and walk.stages > 1
    x = walk.z.exp()
    mean, var = SHAPES / RATES, SHAPES / RATES**2
    # resample-move particles are correlated: allow for an effective size of a quarter of them
    se = (var / (M / 4)).sqrt()
    assert torch.all((x.mean(0) - mean).abs() < 4 * se), (x.mean(0), mean)
    # the spread too (the proposal's was ~5x too narrow)
    assert torch.all((x.var(0) / var - 1).abs() < 0.25), (x.var(0), var)


def test_rows_tempered_together_get_what_they_get_alone() -> None:
    # two different targets, so a mix-up of rows would show
    targets = [_log_gamma(SHAPES, RATES), _log_gamma(SHAPES + 1, RATES * 2)]

    def log_target(rows, zs):  # type: ignore[no-untyped-def]
        return [targets[r](rows, [z])[0] for r, z in zip(rows, zs, strict=True)]

    def starts():  # type: ignore[no-untyped-def]
        return [_start(targets[r], 500, seed=10 + r, shift=0.5 * r) for r in range(2)]

    together = temper_rows(log_target, *map(list, zip(*starts(), strict=True)))
    for r, (start, gen) in enumerate(starts()):
        (alone,) = temper_rows(lambda rows, zs, r=r: targets[r](rows, zs), [start], [gen])
        assert torch.equal(alone.z, together[r].z)
        assert alone.betas == together[r].betas and alone.stages == together[r].stages


def test_a_walk_that_cannot_reach_the_posterior_says_so() -> None:
    log_target = _log_gamma(SHAPES, RATES)
    start, gen = _start(log_target, 300, seed=0, shift=3.0)
    (walk,) = temper_rows(log_target, [start], [gen], max_stages=1)
    assert not walk.finished and walk.stages == 1 and walk.betas[-1] < 1.0


def test_targets_without_mass_at_some_draws_are_walked_around() -> None:
    # -inf (and NaN) at a quarter of the proposal's draws: they are never kept or accepted
    base = _log_gamma(SHAPES, RATES)

    def log_target(rows, zs):  # type: ignore[no-untyped-def]
        return [torch.where(z[:, 0] > 1.2, -math.inf, lp) for z, lp in zip(zs, base(rows, zs), strict=True)]

    start, gen = _start(log_target, 1000, seed=3)
    (walk,) = temper_rows(log_target, [start], [gen])
    assert walk.finished and bool((walk.z[:, 0] <= 1.2).all())


def _fit(data, **options):  # type: ignore[no-untyped-def]
    case = get_case("frontdoor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return case.model.fit(data, method=SVI(**options), seed=0, progress_bar=False)


def test_a_fit_whose_importance_weights_degenerate_is_tempered_to_the_same_posterior(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Front-door at N = 200, where importance sampling holds (closed-form unit integrals): made
    to count as degenerate, the tempered correction must find the posterior the importance
    correction finds."""
    data = get_case("frontdoor").simulate(200, seed=4)
    weighed = _fit(data, tempering=True)
    assert weighed.diagnostics["is_method"] == "importance"
    monkeypatch.setattr(importance, "IS_ROUND1_MIN_ESS", 1e9)
    tempered = _fit(data, tempering=True)
    d = tempered.diagnostics
    assert d["is_corrected"] and d["is_method"] == "tempered", d.get("is_skipped")
    assert "no second round" in d["is_importance_skipped"] and d["is_temper_stages"] >= 1
    off = _fit(data)  # the default: no tempering
    assert not off.diagnostics["is_corrected"] and "no second round" in off.diagnostics["is_skipped"]
    for name, a in weighed.samples.items():
        a, b = a.double().reshape(len(a), -1), tempered.samples[name].double().reshape(len(a), -1)
        sd = a.std(0)
        # two sets of 500 correlated draws: an effective 100 each, conservatively
        assert torch.all((a.mean(0) - b.mean(0)).abs() < 4 * sd * math.sqrt(2 / 100)), name
        assert torch.all((b.std(0) / sd - 1).abs() < 0.3), name
    assert not torch.equal(tempered.samples["theta_XM"], off.samples["theta_XM"])


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_tempering_option_is_checked(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArgumentTypeError, match="tempering must be True or False"):
        SVI(tempering=bad)
