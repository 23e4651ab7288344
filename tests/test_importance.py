"""The importance correction's per-unit integrals (causal_pp.inference.importance).

Where a model's one per-unit latent has a Gaussian conditional, each unit's integral is done in
closed form from its Laplace expansion; elsewhere by particles. Checked against quadrature, and
the fallback where the conditional is not Gaussian or a unit has several latents.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from causal_pp.cases import get_case
from causal_pp.inference import importance


def _target(case_name: str, n: int, monkeypatch: pytest.MonkeyPatch) -> tuple[importance.GlobalsTarget, dict]:
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
    target, view = programs([0], 1), importance.view_of(guides[0])
    t = importance.GlobalsTarget(target, view, globals_, unit_latent, structure, num_particles=16, seed=1)
    return t, post.diagnostics


def _expansion(t: importance.GlobalsTarget, draws: int):  # type: ignore[no-untyped-def]
    """Proposals and closed-form integrals at ``draws`` draws of the globals near the guide's mean."""
    gen = torch.Generator().manual_seed(0)
    z_t = (
        t.mu_t
        + 0.5
        * torch.randn((draws, len(t.mu_t)), generator=gen, dtype=t.mu_t.dtype)
        @ torch.linalg.cholesky(t.S_tt).T
    )
    theta, _ = t.constrain(z_t)
    values, mean, sd = t.chunk_inputs(z_t, theta, 0, draws)
    return values, t.laplace(values, mean, sd)


@pytest.mark.parametrize("case_name", ["frontdoor", "backdoor"])
def test_a_gaussian_units_integral_is_exact_in_closed_form(case_name, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    t, diagnostics = _target(case_name, 200, monkeypatch)
    assert diagnostics["is_unit_integral"] == "closed form"
    values, (mean, sd, exact) = _expansion(t, 3)
    assert exact is not None and bool(exact.ok.all())
    # quadrature: each unit's log joint on a fine grid of +-8 Laplace SDs
    u = t.unit_latent[0]
    width = sd[u] / importance.UNIT_INFLATION
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
