"""A site's log density: equal to Pyro's own count of it, and honoured by every fit.

The batched SVI objective (the default fit's) used to read ``fn.log_prob(value)`` and drop the
site's ``poutine.scale`` and ``poutine.mask``: a masked-out outcome still informed the posterior.
The fit tests compare against the exact conjugate posterior, which does not depend on the guide.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from causal_pp import CausalGraph, CausalModel
from causal_pp.log_density import distinct, log_density, site_log_density
from causal_pp.model import units

GRAPH = CausalGraph.parse("U -> X; X -> Y", latent=["U"])
PRIOR_SD = 5.0


@pytest.mark.parametrize(
    "fn",
    [
        dist.Normal(torch.randn(4, 3), 2.0),
        dist.Normal(0.0, torch.rand(3) + 0.5).expand([5, 3]),
        dist.Normal(torch.randn(3), torch.rand(3) + 0.1).to_event(1),
        dist.Normal(torch.zeros(2, 3), 1.5).expand([4, 2, 3]).to_event(2),
        dist.Bernoulli(logits=torch.randn(3)),
        dist.HalfNormal(2.0).expand([3]),
    ],
    ids=["normal-scalar-scale", "normal-expanded", "independent", "independent-2", "bernoulli", "halfnormal"],
)
def test_log_density_equals_log_prob(fn: dist.Distribution) -> None:
    torch.manual_seed(0)
    value = fn.sample((6,))
    assert torch.allclose(log_density(fn, value), fn.log_prob(value), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("loc", [0.0, 0.5], ids=["loc-0", "loc-0.5"])
@pytest.mark.parametrize("scale", [1.0, 2.0], ids=["scale-1", "scale-2"])
def test_a_unit_scale_or_zero_loc_is_skipped_bit_for_bit(loc: float, scale: float) -> None:
    # x - 0 and t / 1 are exact, so skipping them must not move a single bit
    torch.manual_seed(0)
    d = dist.Normal(torch.full((4, 3), loc), scale)
    value = torch.randn(4, 3)
    full = -0.5 * ((value - d.loc) / d.scale) ** 2 - (d.scale.log() + 0.5 * math.log(2 * math.pi))
    assert torch.equal(log_density(d, value), full)


def test_a_density_the_same_for_every_particle_is_computed_once() -> None:
    # an observed site whose mean reads data and globals only, under a plate of 4 particles
    # (dim -2): the plate expands its loc, but every particle's density is the same numbers
    torch.manual_seed(0)
    loc, value = torch.randn(5, 1, 3), torch.randn(5, 1, 3)
    d = dist.Normal(loc, 2.0).expand([5, 4, 3])
    lp = log_density(d, value)
    assert lp.shape == (5, 1, 3)  # not once per particle
    assert torch.allclose(lp.expand(5, 4, 3), d.log_prob(value), rtol=1e-6, atol=1e-6)
    full = -0.5 * ((value - d.loc) / 2.0) ** 2 - (math.log(2.0) + 0.5 * math.log(2 * math.pi))
    assert torch.equal(lp.expand(5, 4, 3), full)  # the same bits as computing every copy


def test_a_traced_density_bakes_only_what_the_inputs_cannot_change() -> None:
    # the scale of the first site is a parameter that happens to be 1 when traced, the second
    # site's is the constant 1: only the constant may be skipped in the trace
    def f(scale: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        learned = log_density(dist.Normal(torch.zeros(3), scale), value)
        fixed = log_density(dist.Normal(value.new_zeros(3), 1.0), value)
        return learned + fixed

    one = torch.tensor(1.0, requires_grad=True)  # one number, as a skipped scale is
    traced = torch.jit.trace(f, (one, torch.zeros(3)), check_trace=False)
    scale, value = torch.tensor(2.0, requires_grad=True), torch.tensor([0.5, -1.0, 2.0])
    expected = dist.Normal(0.0, scale).log_prob(value) + dist.Normal(0.0, 1.0).log_prob(value)
    assert torch.allclose(traced(scale, value), expected)


def test_a_subclass_keeps_its_own_density() -> None:
    class Shifted(dist.Normal):
        def log_prob(self, value: torch.Tensor) -> torch.Tensor:
            return super().log_prob(value) + 1.0

    d = Shifted(0.0, 1.0)
    assert float(log_density(d, torch.tensor(0.0))) == pytest.approx(float(d.log_prob(torch.tensor(0.0))))


def test_distinct_drops_only_broadcast_copies() -> None:
    t = torch.arange(3.0).reshape(3, 1).expand(3, 4)
    assert distinct(t).shape == (3, 1)
    assert torch.equal(distinct(t).expand(3, 4), t)
    own = torch.randn(3, 4)
    assert distinct(own) is own


@pytest.mark.parametrize(
    "scale,mask", [(1.0, True), (0.25, True), (1.0, False), (2.0, torch.tensor([True, False, True]))]
)
def test_site_log_density_is_what_pyro_counts(scale: float, mask: torch.Tensor | bool) -> None:
    def model() -> None:
        with pyro.plate("p", 3), poutine.scale(scale=scale), poutine.mask(mask=mask):
            pyro.sample("y", dist.Normal(0.0, 2.0), obs=torch.tensor([0.5, -1.0, 3.0]))

    tr = poutine.trace(model).get_trace()
    tr.compute_log_prob()
    site = tr.nodes["y"]
    assert torch.allclose(site_log_density(site), site["log_prob"])


def _model(scale: float, keep: bool):  # type: ignore[no-untyped-def]
    def model(n: int) -> None:
        b = pyro.sample("b", dist.Normal(0.0, PRIOR_SD))
        with units(n):
            u = pyro.sample("U", dist.Normal(0.0, 1.0))
            x = pyro.sample("X", dist.Normal(u, 1.0))
            with poutine.scale(scale=scale), poutine.mask(mask=keep):
                pyro.sample("Y", dist.Normal(b * x, 1.0))

    return model


def _exact(df: pd.DataFrame, scale: float, keep: bool) -> tuple[float, float]:
    """The posterior of b: only Y's (scaled, or masked) likelihood involves it, and X is observed."""
    x, y = df["X"].to_numpy(), df["Y"].to_numpy()
    w = scale if keep else 0.0
    precision = 1.0 / PRIOR_SD**2 + w * float(x @ x)
    return w * float(x @ y) / precision, precision**-0.5


@pytest.mark.parametrize("scale,keep", [(0.01, True), (1.0, False)], ids=["scaled", "masked"])
def test_the_default_fit_honours_scale_and_mask(scale: float, keep: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=200) + rng.normal(size=200)
    df = pd.DataFrame({"X": x, "Y": 2.0 * x + rng.normal(size=200)})
    post = CausalModel(_model(scale, keep), GRAPH).fit(df, method="svi", seed=0, progress_bar=False)
    b = post.samples["b"].double()
    mean, sd = _exact(df, scale, keep)
    # the draws are resampled importance draws: their spread, not their count, sets the error
    se = sd / math.sqrt(post.diagnostics.get("is_ess", 100.0))
    assert abs(float(b.mean()) - mean) < 4 * se
    assert float(b.std()) == pytest.approx(sd, rel=0.15)
    if not keep:  # the pointwise log-likelihood (LOO) counts the masked outcome as nothing too
        assert float(abs(post.to_arviz().log_likelihood["Y"]).max()) == 0.0
