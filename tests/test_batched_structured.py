"""The structured batched family: the globals' full-covariance Gaussian, per-unit latents given them."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch

from causal_pp import InvalidArgumentError
from causal_pp.inference import SVI
from causal_pp.inference.batched_guide import Layout, Slot
from causal_pp.inference.batched_structured import BatchedStructuredGuide

REAL = dist.Normal(0, 1).support


def _coupled(z: torch.Tensor) -> torch.Tensor:
    # the first latent of each unit is coupled to a[0] alone, the second to b alone
    a0, b = z[..., 0:1], z[..., 5:6]
    return (
        -0.5 * ((z[..., 2:5] - a0) ** 2).sum(-1)
        - 0.5 * ((z[..., 6:9] * b) ** 2).sum(-1)
        - 0.5 * (z[..., [0, 1, 5]] ** 2).sum(-1)
    )


def _guide(rows: int = 2, seed: int = 0, log_joint=None) -> BatchedStructuredGuide:  # type: ignore[no-untyped-def]
    # 3 units with two latent sites each, between and after global ones: every unit's two latents
    # form one block, and the draws must land in the layout's order
    slots = (
        Slot("a", (2,), (rows, 2), 0, 2, REAL, (2,)),
        Slot("z1", (3,), (rows, 3), 2, 5, REAL, (3,)),
        Slot("b", (), (rows, 1), 5, 6, REAL, ()),
        Slot("z2", (3,), (rows, 3), 6, 9, REAL, (3,)),
    )
    gens = [torch.Generator().manual_seed(seed + r) for r in range(rows)]
    init = torch.zeros(rows, 9, dtype=torch.float64)
    g = BatchedStructuredGuide(
        Layout(slots, rows), init, globals_=["a", "b"], n=3, generators=gens, log_joint=log_joint
    )
    # parameters away from their start, so that every term of the draw and the entropy counts
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in g.params:
            p.copy_(0.7 * torch.randn_like(p))
    return g


ALL = torch.arange(9)


@pytest.mark.parametrize("log_joint", [None, _coupled], ids=["dense", "coupled"])
def test_draws_have_the_gaussian_the_guide_reports(log_joint) -> None:  # type: ignore[no-untyped-def]
    g = _guide(log_joint=log_joint)
    z = g.sample(200_000).double()
    for row in range(2):
        q = g.gaussian(row)
        cov = q.cov(ALL, ALL)
        assert torch.allclose(cov.diagonal(), q.var)
        zr = z[:, row]
        se = (q.var / z.shape[0]).sqrt()
        assert torch.all((zr.mean(0) - q.loc).abs() < 5 * se)
        # each entry's standard error is at most sqrt(2 / 2e5) of the largest variance
        assert torch.allclose(torch.cov(zr.T), cov, atol=0.02 * float(q.var.max()))
        # given the globals, a unit's two latents co-vary; different units' latents do not
        g_idx, z_idx = torch.tensor([0, 1, 5]), torch.tensor([2, 3, 4, 6, 7, 8])
        cond = cov[z_idx][:, z_idx] - cov[z_idx][:, g_idx] @ torch.linalg.solve(
            cov[g_idx][:, g_idx], cov[g_idx][:, z_idx]
        )
        unit = torch.tensor([0, 1, 2, 0, 1, 2])
        other = unit.unsqueeze(0) != unit.unsqueeze(1)
        assert (
            cond[other].abs().max() < 1e-9
            and cond[~other & ~torch.eye(6, dtype=torch.bool)].abs().min() > 1e-3
        )


@pytest.mark.parametrize("log_joint", [None, _coupled], ids=["dense", "coupled"])
def test_entropy_is_the_gaussian_entropy(log_joint) -> None:  # type: ignore[no-untyped-def]
    g = _guide(log_joint=log_joint)
    noise = [torch.zeros(1, 2, k, dtype=torch.float64) for k in g.noise_sizes]
    with torch.no_grad():
        _, entropy = g.drawer()(*g.params, *noise)
    for row in range(2):
        exact = torch.distributions.MultivariateNormal(
            torch.zeros(9, dtype=torch.float64), g.gaussian(row).cov(ALL, ALL)
        )
        assert math.isclose(float(entropy[row]), float(exact.entropy()), rel_tol=0, abs_tol=1e-9)


def test_selected_rows_are_those_rows_and_write_back() -> None:
    g = _guide(rows=3)
    sub = g.select(torch.tensor([2, 0]))
    assert torch.equal(sub.gaussian(0).cov(ALL, ALL), g.gaussian(2).cov(ALL, ALL))
    assert torch.equal(sub.gaussian(1).loc, g.gaussian(0).loc)
    with torch.no_grad():
        sub.dep.add_(1.0)
    g.put(torch.tensor([2, 0]), sub)
    assert torch.equal(g.dep[2], sub.dep[0]) and torch.equal(g.dep[0], sub.dep[1])


def test_structured_has_only_a_batched_form() -> None:
    with pytest.raises(InvalidArgumentError, match="batched"):
        SVI(guide="structured", batched=False)


def test_a_model_without_per_unit_latents_is_the_globals_full_covariance_gaussian() -> None:
    lay = Layout((Slot("b", (2,), (1, 2), 0, 2, REAL, (2,)),), rows=1)
    g = BatchedStructuredGuide(lay, torch.zeros(1, 2), globals_=["b"], n=5, generators=[torch.Generator()])
    assert g.noise_sizes == (2, 0) and g.sample(3).shape == (3, 1, 2)
    cov = g.gaussian(0).cov(torch.arange(2), torch.arange(2))
    assert torch.allclose(cov, 0.01 * torch.eye(2))  # the initial scale, 0.1


def test_the_family_says_how_it_groups_a_units_latents() -> None:
    assert _guide().describe().endswith("each of 3 units' 2 latent(s) jointly normal given them")
    # a per-unit site without the unit first (another plate outside the units'): ungrouped, and said
    slots = (Slot("b", (), (1, 1), 0, 1, REAL, ()), Slot("z", (2, 3), (1, 2, 3), 1, 7, REAL, (2, 3)))
    g = BatchedStructuredGuide(
        Layout(slots, 1), torch.zeros(1, 7), globals_=["b"], n=3, generators=[torch.Generator()]
    )
    assert "not grouped" in g.describe() and g.noise_sizes == (1, 6)


def test_a_units_latents_regress_only_on_the_globals_they_are_coupled_to() -> None:
    g = _guide(log_joint=_coupled)
    # globals in the layout's order a[0], a[1], b: z1 reads a[0], z2 reads b
    assert g.reads.tolist() == [[0], [2]] and g.dep.shape == (2, 3, 2, 1)
    assert "at most 1 of them it is coupled to" in g.describe()
    # a unit's latent moves with the noise of the globals it reads, not with the others': with
    # the globals' factor L (the Cholesky factor of their covariance), Cov(z, e_g) = Cov(z, g) L^-T
    for row in range(2):
        cov = g.gaussian(row).cov(ALL, ALL)
        g_idx = torch.tensor([0, 1, 5])
        L = torch.linalg.cholesky(cov[g_idx][:, g_idx])
        weights = torch.linalg.solve_triangular(L, cov[g_idx][:, [2, 6]], upper=False).T
        assert weights[0, 1:].abs().max() < 1e-9 and weights[0, 0].abs() > 1e-3
        assert weights[1, :2].abs().max() < 1e-9 and weights[1, 2].abs() > 1e-3
    dense = _guide()
    assert dense.reads.shape == (2, 3) and "coupled" not in dense.describe()
