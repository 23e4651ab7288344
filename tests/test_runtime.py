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


_RELEASE_SCRIPT = """
import gc
import torch
from causal_pp import runtime

unit = torch.jit._state._python_cu
collections = []
real_collect = gc.collect
gc.collect = lambda *a: collections.append(1) or real_collect(*a)

with runtime.released_jit_traces():
    y = runtime.trace(lambda x: 2 * x, (torch.ones(2),))(torch.ones(2))
print("gone", len(unit.get_functions()), len(collections))

with runtime.released_jit_traces():
    kept = runtime.trace(lambda x: 3 * x, (torch.ones(2),))
print("kept", len(unit.get_functions()), float(kept(torch.ones(1))))
del kept

unit.drop_all_functions()
with runtime.released_jit_traces():
    with runtime.released_jit_traces():
        inner = runtime.trace(lambda x: 4 * x, (torch.ones(2),))
    print("inner", len(unit.get_functions()))
    del inner
print("outer", len(unit.get_functions()))
"""


def test_a_block_frees_its_traces_without_a_search_and_never_one_still_held(tmp_path) -> None:
    # a fresh process: the global compilation unit of this one may hold other tests' functions
    import subprocess
    import sys

    script = tmp_path / "release.py"
    script.write_text(_RELEASE_SCRIPT)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    # freed with no garbage collection (the search of every object costs ~0.3 s); a function
    # the caller holds stays callable; an inner block's held function is freed by the outer
    # block once it is let go
    assert run.stdout.split("\n")[:4] == ["gone 0 0", "kept 1 3.0", "inner 1", "outer 0"], run.stdout
