"""Plates fit for JIT tracing (causal_pp.runtime.plate, and the units plate built on it)."""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from causal_pp import units
from causal_pp.runtime import plate


def _traced_scales(make_plate) -> list:  # type: ignore[no-untyped-def]
    """The scale of a site inside two nested plates, seen while torch.jit.trace runs."""
    seen = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        with make_plate("_rows", 2, -2), make_plate("units", 3, -1):
            tr = poutine.trace(lambda: pyro.sample("y", dist.Normal(x, 1.0))).get_trace()
        seen.append(tr.nodes["y"]["scale"])
        return tr.nodes["y"]["value"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(fn, torch.zeros(2, 3), check_trace=False)
    return seen


def test_a_traced_site_inside_our_plates_keeps_the_number_one_as_its_scale() -> None:
    # a tensor scale would multiply every value of every log density in a traced ELBO
    (scale,) = _traced_scales(lambda name, size, dim: plate(name, size, dim=dim))
    assert isinstance(scale, float) and scale == 1.0


def test_pyros_own_plate_gives_a_tensor_scale_under_tracing() -> None:
    # what runtime.plate works around: if Pyro stops doing this, the workaround can go
    (scale,) = _traced_scales(lambda name, size, dim: pyro.plate(name, size, dim=dim))
    assert isinstance(scale, torch.Tensor) and float(scale) == 1.0


def test_the_units_plate_is_our_plate() -> None:
    p = units(4)
    assert p.name == "units" and p.dim == -1 and p.size == 4 and p.subsample_size == 4
