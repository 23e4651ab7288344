"""The importance correction's per-unit integrals (causal_pp.inference.importance_target).

Where a model's one per-unit latent has a Gaussian conditional, each unit's integral is done in
closed form from its Laplace expansion, first from three points about the guide's conditional
mean (the same integral as after the Newton steps); elsewhere by particles. Checked against
quadrature, and the fallback where the conditional is not Gaussian or a unit has several latents.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

from causal_pp.cases import get_case
from causal_pp.inference import importance, importance_target


def _target(
    case_name: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[importance_target.GlobalsTarget, dict]:
    """The correction's target for an SVI fit of the case (captured from the fit), and its diagnostics."""
    case = get_case(case_name)
    got = {}
    original = importance.importance_correct_rows

    def capture(*args, **kwargs):  # type: ignore[no-untyped-def]
        got["args"], got["kwargs"] = args, kwargs
        return original(*args, **kwargs)

    monkeypatch.setattr("causal_pp.inference.svi.importance_correct_rows", capture)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = case.model.fit(
            case.simulate(n, seed=0), method="svi", seed=0, num_steps=600, progress_bar=False, batched=False
        )
    programs, guides, globals_, unit_latent, structure = got["args"]
    target, view = programs([0], 1), importance_target.view_of(guides[0])
    t = importance_target.GlobalsTarget(
        target, view, globals_, unit_latent, structure, num_particles=16, seed=1
    )
    return t, post.diagnostics


def _globals(t: importance_target.GlobalsTarget, draws: int):  # type: ignore[no-untyped-def]
    """``draws`` draws of the globals near the guide's mean: unconstrained, and constrained."""
    gen = torch.Generator().manual_seed(0)
    z_t = (
        t.mu_t
        + 0.5
        * torch.randn((draws, len(t.mu_t)), generator=gen, dtype=t.mu_t.dtype)
        @ torch.linalg.cholesky(t.S_tt).T
    )
    return z_t, t.constrain(z_t)[0]


def _draws(t: importance_target.GlobalsTarget, draws: int):  # type: ignore[no-untyped-def]
    """``draws`` draws of the globals near the guide's mean, and the guide's conditional of each unit."""
    z_t, theta = _globals(t, draws)
    return t.chunk_inputs(z_t, theta, 0, draws)


def _expansion(t: importance_target.GlobalsTarget, draws: int):  # type: ignore[no-untyped-def]
    """Proposals and closed-form integrals at ``draws`` draws of the globals near the guide's mean."""
    values, mean, sd = _draws(t, draws)
    return values, t.laplace(values, mean, sd)


@pytest.mark.parametrize("case_name", ["frontdoor", "backdoor"])
def test_a_gaussian_units_integral_is_exact_in_closed_form(case_name, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    t, diagnostics = _target(case_name, 200, monkeypatch)
    assert diagnostics["is_unit_integral"] == "closed form"
    values, (mean, sd, exact) = _expansion(t, 3)
    assert exact is not None and bool(exact.ok.all())
    # quadrature: each unit's log joint on a fine grid of +-8 Laplace SDs
    u = t.unit_latent[0]
    width = sd[u] / importance_target.UNIT_INFLATION
    grid = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float64).view(1, -1, 1)
    with torch.no_grad():
        f, prior = t.log_joint(values, {u: mean[u] + width * grid}, grid.shape[1])
    quadrature = torch.logsumexp(f, 1) + torch.log(width[:, 0] * (grid[0, 1, 0] - grid[0, 0, 0]))
    # float32 model arithmetic: each unit's log joint is good to ~1e-6
    assert torch.allclose(exact.unit[:, 0], quadrature, rtol=0, atol=1e-5)
    assert torch.equal(exact.prior, prior)


def test_a_non_gaussian_units_integral_takes_particles(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # the latent enters a logit: its conditional is not Gaussian, the probes see it
    t, diagnostics = _target("frontdoor_logit", 200, monkeypatch)
    assert diagnostics["is_unit_integral"] == "particles"
    _, (_, _, exact) = _expansion(t, 3)
    assert exact is not None and not bool(exact.ok.any())


def test_several_latents_per_unit_take_particles(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # two latents per unit: a diagonal expansion misses their coupling, so no closed form
    t, _ = _target("napkin", 60, monkeypatch)
    assert len(t.unit_latent) == 2
    _, (_, _, exact) = _expansion(t, 3)
    assert exact is None


@pytest.mark.parametrize("case_name", ["frontdoor", "backdoor"])
def test_the_direct_closed_form_is_the_one_after_newton_steps(case_name, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # from three points about the guide's conditional mean (two program runs) or after the
    # Newton steps to each unit's mode: a quadratic log joint has one expansion, up to float32
    t, _ = _target(case_name, 200, monkeypatch)
    values, mean0, sd0 = _draws(t, 3)
    mean, sd, exact = t.laplace(values, mean0, sd0)
    mean_n, sd_n, exact_n = t.laplace(values, mean0, sd0, direct=False)
    assert exact is not None and exact_n is not None
    assert bool(exact.ok.all()) and bool(exact_n.ok.all())
    u = t.unit_latent[0]
    assert torch.allclose(exact.unit, exact_n.unit, rtol=0, atol=1e-5)
    assert torch.equal(exact.prior, exact_n.prior)
    assert torch.allclose(mean[u], mean_n[u], rtol=0, atol=1e-4 * float(sd_n[u].min()))
    assert torch.allclose(sd[u], sd_n[u], rtol=1e-5, atol=0)


@pytest.mark.parametrize("case_name", ["frontdoor", "backdoor", "bow"])
def test_the_stencils_float32_differences_are_as_exact_as_the_log_joint(case_name, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # the stencil's gradient, curvature and check are float32 differences of float32 log joints:
    # against the closed form of the same program run in float64 (Newton steps), each unit's
    # integral must be off by no more than a few float32 roundings of its log joint
    t, _ = _target(case_name, 200, monkeypatch)
    values, mean, sd = _draws(t, 20)
    u = t.unit_latent[0]
    found = t.stencil_gaussian(values, mean[u], sd[u])
    assert found is not None
    wide = copy.copy(t)
    wide.dtype = torch.float64  # the program follows its inputs' dtype
    _, _, reference = wide.laplace({k: v.double() for k, v in values.items()}, mean, sd, direct=False)
    assert reference is not None and bool(reference.ok.all())
    rounding = 8 * torch.finfo(torch.float32).eps * (1.0 + reference.unit.abs())
    assert bool(((found[2].unit - reference.unit).abs() <= rounding).all())


def test_a_stencil_off_the_mode_finds_the_same_closed_form(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # the guide's conditional mean moved 4 of its SDs off: the three points fix the same quadratic
    # (a quadratic has one fit, wherever the points are), and the probes about its mode pass
    t, _ = _target("frontdoor", 200, monkeypatch)
    values, mean, sd = _draws(t, 3)
    u = t.unit_latent[0]
    near = t.stencil_gaussian(values, mean[u], sd[u])
    far = t.stencil_gaussian(values, mean[u] + 4 * sd[u], sd[u])
    assert near is not None and far is not None
    rounding = 16 * torch.finfo(torch.float32).eps * (1.0 + near[2].unit.abs())
    assert bool(((far[2].unit - near[2].unit).abs() <= rounding).all())
    assert torch.allclose(far[0], near[0], rtol=0, atol=1e-4 * float(near[1].min()))


def test_a_non_gaussian_model_tries_the_direct_closed_form_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # the logit's conditional is not quadratic: the direct try fails on the first chunk of draws,
    # whose units then take particles, and no later chunk tries again
    calls = {"direct": 0, "laplace": 0, "found": 0}
    target = importance_target.GlobalsTarget
    direct, laplace = target.stencil_gaussian, target.laplace

    def spy_direct(self, *args):  # type: ignore[no-untyped-def]
        found = direct(self, *args)
        calls["direct"] += 1
        calls["found"] += found is not None
        return found

    def spy_laplace(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["laplace"] += 1
        return laplace(self, *args, **kwargs)

    monkeypatch.setattr(target, "stencil_gaussian", spy_direct)
    monkeypatch.setattr(target, "laplace", spy_laplace)
    _, diagnostics = _target("frontdoor_logit", 200, monkeypatch)
    assert diagnostics["is_unit_integral"] == "particles"
    assert calls["laplace"] >= 2
    assert calls["direct"] == 1 and calls["found"] == 0


@pytest.mark.parametrize("case_name", ["frontdoor_logit", "napkin"])
def test_the_particles_log_q_is_the_proposals_density(case_name, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # log q of a particle is taken from its standard-normal noise, without the particle's own
    # (z - mean) / sd pass: it must be the proposal's density at the particle all the same (the
    # expected value here in float64)
    t, _ = _target(case_name, 60, monkeypatch)
    z_t, theta = _globals(t, 6)
    values, mean, sd = t.chunk_inputs(z_t, theta, 0, 6)
    pm, ps, _ = t.laplace(values, mean, sd, direct=False)
    z = {u: pm[u] + ps[u] * t.crn[u] for u in t.unit_latent}
    with torch.no_grad():
        unit, prior = t.log_joint(values, z, t.K)
    for u in t.unit_latent:
        unit = unit - torch.distributions.Normal(pm[u], ps[u]).log_prob(z[u])
    expected = prior + (torch.logsumexp(unit, 1) - math.log(t.K)).sum(-1)
    (got,) = importance_target.log_targets([t], lambda rows, m: t.target, [z_t], [theta])
    assert t.chunks == [1, 0]  # the particles' path, not the closed form
    # the path works in float32 up to each unit's log mean: a few roundings of each particle's terms
    rounding = (8 * torch.finfo(torch.float32).eps * (1.0 + unit.abs()).amax(1)).sum(-1)
    assert bool(((got - expected).abs() <= rounding).all())


@pytest.mark.parametrize("case_name", ["frontdoor", "frontdoor_logit"])
def test_one_probe_finds_no_more_than_all_four(case_name, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # after the Newton steps the check runs one probe first and stops where it finds every draw
    # off the quadratic: one probe can pass a draw that the four fail, never the other way round
    t, _ = _target(case_name, 200, monkeypatch)
    values, mean0, sd0 = _draws(t, 3)
    u = t.unit_latent[0]
    mean, sd, _ = t.laplace(values, mean0, sd0, direct=False)
    # the expansion at each unit's mode: its Laplace SD is the proposal's, less the widening
    z, h = mean[u], -((importance_target.UNIT_INFLATION / sd[u]) ** 2)
    with torch.no_grad():
        f = t.log_joint(values, {u: z}, 1)[0]
    one = t.gaussian(values, z, f, None, h, probes=(1.0,))
    four = t.gaussian(values, z, f, None, h)
    assert not bool((four.ok & ~one.ok).any())
    assert torch.equal(one.unit, four.unit) and torch.equal(one.prior, four.prior)
    if case_name == "frontdoor_logit":  # the logit's units are off the quadratic at the first probe
        assert not bool(one.ok.any())
    else:
        assert bool(four.ok.all())
