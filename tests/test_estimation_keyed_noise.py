"""KeyedNoise: per-unit randomness keyed by (seed, site name), inverse-CDF coupling, stratified replicates."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from causal_pp.handlers import KeyedNoise
from causal_pp.handlers.keyed_noise import poisson_icdf, replicates_for, stream_key


def draw(fn, seed=0, n=4000, replicates=None, **kwargs):
    """The value of site ``S`` of ``fn(n)`` run under KeyedNoise."""
    tr = pyro.poutine.trace(KeyedNoise(seed, replicates=replicates, **kwargs)(fn)).get_trace(n)
    return tr.nodes["S"]["value"]


def site(d):
    def prog(n):
        with pyro.plate("units", n):
            pyro.sample("S", d)

    return prog


def test_poisson_icdf_is_the_exact_quantile_function() -> None:
    g = torch.Generator().manual_seed(0)
    lam = torch.cat(
        [torch.rand(2000, generator=g) * 0.05, torch.rand(2000, generator=g) * 40, torch.tensor([0.0, 900.0])]
    )
    u = torch.rand(lam.shape, generator=g, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    ours = poisson_icdf(lam, u).numpy()
    assert np.array_equal(ours, np.nan_to_num(stats.poisson.ppf(u.numpy(), lam.double().numpy())))


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (dist.Poisson(torch.tensor(2.0)), dist.Poisson(torch.tensor(3.5))),
        (dist.Bernoulli(torch.tensor(0.3)), dist.Bernoulli(torch.tensor(0.6))),
        (dist.Binomial(10, torch.tensor(0.3)), dist.Binomial(10, torch.tensor(0.5))),
        (dist.Categorical(torch.tensor([0.5, 0.3, 0.2])), dist.Categorical(torch.tensor([0.2, 0.3, 0.5]))),
        (dist.Gamma(torch.tensor(2.0), 1.0), dist.Gamma(torch.tensor(2.0), 1.0)),  # own sampler: same stream
    ],
    ids=["poisson", "bernoulli", "binomial", "categorical", "gamma"],
)
def test_same_key_gives_comonotone_draws_across_arms(low, high) -> None:
    a, b = draw(site(low), seed=3), draw(site(high), seed=3)
    assert bool((b >= a).all())  # a larger rate / probability / later-weighted category never draws less
    assert not torch.equal(draw(site(low), seed=3), draw(site(low), seed=4))


def test_arms_cannot_desynchronise() -> None:
    # one arm draws an extra site before M: M's numbers are keyed by its name, not its position
    def prog(n, extra):
        with pyro.plate("units", n):
            if extra:
                pyro.sample("W", dist.Normal(0.0, 1.0))
            pyro.sample("S", dist.Poisson(torch.tensor(4.0)))

    a = pyro.poutine.trace(KeyedNoise(1)(prog)).get_trace(500, False).nodes["S"]["value"]
    b = pyro.poutine.trace(KeyedNoise(1)(prog)).get_trace(500, True).nodes["S"]["value"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("replicates", [None, 8])
@pytest.mark.parametrize(
    ("d", "mean", "var"),
    [
        (dist.Normal(1.0, 2.0), 1.0, 4.0),
        (dist.Poisson(torch.tensor(3.0)), 3.0, 3.0),
        (dist.Bernoulli(torch.tensor(0.3)), 0.3, 0.21),
        (dist.Binomial(5, torch.tensor(0.4)), 2.0, 1.2),
        (dist.Categorical(torch.tensor([0.2, 0.5, 0.3])), 1.1, 0.49),
        (dist.Laplace(0.5, 1.0), 0.5, 2.0),
        (dist.StudentT(5.0, 1.0, 1.0), 1.0, 5.0 / 3.0),
        (dist.Gamma(2.0, 1.0), 2.0, 2.0),
    ],
    ids=["normal", "poisson", "bernoulli", "binomial", "categorical", "laplace", "studentt", "gamma"],
)
def test_draws_have_the_site_distribution(d, mean, var, replicates) -> None:
    # every unit is an exact draw: moments of 20000 units within 5 standard errors
    n = 20_000
    x = draw(site(d), seed=11, n=n, replicates=replicates).double()
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / n)
    assert abs(float(x.var()) / var - 1) < 5 * math.sqrt(2 / n) * 3  # heavy tails: generous
    # units within a replicate are stratified: far closer to the mean than independent draws
    if replicates and not isinstance(d, (dist.StudentT, dist.Gamma)):
        reps = x.reshape(replicates, -1).mean(1)
        assert float(reps.var()) < 0.5 * var / (n / replicates)


def test_stratified_replicates_layout() -> None:
    # per replicate, half the units are a Latin hypercube and half their mirror
    z = draw(site(dist.Normal(1.0, 2.0)), n=64, replicates=2).reshape(2, 2, 16)
    assert torch.allclose(z[:, 0] + z[:, 1], torch.full((2, 16), 2.0), atol=1e-5)
    u = torch.special.ndtr((z[:, 0] - 1.0) / 2.0)  # one uniform in each of 16 strata
    assert torch.equal(torch.sort((u * 16).floor(), dim=-1).values, torch.arange(16.0).expand(2, 16))
    b = draw(site(dist.Bernoulli(torch.tensor(0.25))), n=80, replicates=5).reshape(5, 16)
    assert torch.equal(b.sum(1), torch.full((5,), 4.0))  # exactly p per replicate
    assert replicates_for(1024) == 8 and replicates_for(10) is None


def test_units_axis_found_under_outer_plates() -> None:
    # a vectorising plate over draws left of the units plate: each draw gets its own numbers
    def prog(n):
        with pyro.plate("_draws", 3, dim=-2), pyro.plate("units", n, dim=-1):
            pyro.sample("S", dist.Normal(0.0, 1.0))

    z = draw(prog, n=32, replicates=2)
    assert z.shape == (3, 32)
    assert not torch.allclose(z[0], z[1])
    assert torch.allclose(z.reshape(3, 2, 2, 8).sum(2), torch.zeros(3, 2, 8), atol=1e-5)


def test_placeholders_are_not_drawn_and_observed_sites_are_left_alone() -> None:
    def prog(n):
        with pyro.plate("units", n):
            x = pyro.sample("X", dist.Normal(3.0, 1.0))
            pyro.sample("Y", dist.Normal(x, 1.0), obs=torch.zeros(n))
            pyro.sample("S", dist.Normal(0.0, 1.0))

    tr = pyro.poutine.trace(KeyedNoise(0, placeholders={"X"})(prog)).get_trace(5)
    assert torch.equal(tr.nodes["X"]["value"], torch.full((5,), 3.0))
    assert torch.equal(tr.nodes["Y"]["value"], torch.zeros(5))


def test_caller_stream_untouched_and_globals_not_keyed() -> None:
    def prog(n):
        g = pyro.sample("g", dist.Normal(0.0, 1.0))  # outside the units plate: Pyro's own stream
        with pyro.plate("units", n):
            pyro.sample("S", dist.StudentT(3.0, g, 1.0))

    state = torch.get_rng_state()
    a = pyro.poutine.trace(KeyedNoise(5)(prog)).get_trace(10)
    assert not torch.equal(state, torch.get_rng_state())  # g drew from the global stream...
    torch.set_rng_state(state)
    b = pyro.poutine.trace(KeyedNoise(5)(prog)).get_trace(10)
    assert torch.equal(a.nodes["S"]["value"], b.nodes["S"]["value"])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    draw(site(dist.StudentT(3.0, 0.0, 1.0)))  # ...the keyed sampler restores it
    assert torch.equal(state, torch.get_rng_state())
    assert stream_key(1, "S") != stream_key(2, "S")
