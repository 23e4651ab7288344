"""Property-based tests of the option and data checks (hypothesis; issue #12).

Random option values for ``fit`` and ``estimate`` and random frames through data validation
never raise anything but causal_pp's own errors (a :class:`~causal_pp.errors.CausalPPError`),
and a value the checks accept does not crash the work it starts. Valid values are drawn small,
so an accepted combination fits in well under a second; the fits run on a 20-row front-door
data set with a fixed seed. Profile: as in ``test_identification_properties`` (derandomised,
no example database; ``CAUSAL_PP_HYPOTHESIS=thorough`` for 20x the examples).
"""

from __future__ import annotations

import contextlib
import math
import os
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from _linear_models import FRONTDOOR_GRAPH, FRONTDOOR_TRUTH, frontdoor, simulate
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from causal_pp import ATE, Interventional, validate_data
from causal_pp.errors import CausalPPError
from causal_pp.inference.methods import make_method

_THOROUGH = os.environ.get("CAUSAL_PP_HYPOTHESIS") == "thorough"
_BASE = settings(
    derandomize=not _THOROUGH,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def profile(max_examples: int) -> settings:
    return settings(_BASE, max_examples=max_examples * (20 if _THOROUGH else 1))


# Anything a user might pass where a number is expected: the edge values of each type.
ODD = st.sampled_from(
    [None, True, False, -1, 0, -0.5, 0.0, math.nan, math.inf, -math.inf, "10", "svi", [1], (), {},
     np.int64(3), np.float32(0.01), torch.tensor(2), 10**30, 1e-300]
)  # fmt: skip


def _small_valid(name: str) -> st.SearchStrategy[Any]:
    """Values of an SVI option that are valid and keep a fit short."""
    return {
        "num_samples": st.integers(2, 40),
        "num_steps": st.integers(1, 30),
        "lr": st.floats(1e-4, 0.5),
        "lr_decay": st.floats(0.01, 1.0),
        "num_particles": st.integers(1, 3),
        "guide": st.sampled_from(["auto", "lowrank_mvn", "mvn", "normal", "structured"]),
        "importance": st.booleans(),
        "importance_particles": st.integers(1, 8),
        "tempering": st.booleans(),
        "restarts": st.integers(1, 2),
        "restart_steps": st.integers(4, 8),
        "restart_particles": st.integers(1, 3),
        "restart_init": st.sampled_from(["median", "prior"]),
        "jit_compile": st.just(False),  # tracing is correct but slow; its options are tested elsewhere
    }[name]


SVI_OPTIONS = ("num_samples", "num_steps", "lr", "lr_decay", "num_particles", "guide", "importance",
               "importance_particles", "tempering", "restarts", "restart_steps", "restart_particles", "restart_init",
               "jit_compile")  # fmt: skip


@st.composite
def svi_options(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(SVI_OPTIONS), unique=True, max_size=4))
    options = {n: draw(st.one_of(_small_valid(n), ODD)) for n in names}
    options.setdefault("num_steps", 10)  # the default schedule is minutes of SVI; keep it short
    options.setdefault("restarts", 1)
    options.setdefault("num_samples", 20)
    options.setdefault("jit_compile", False)
    return options


@cache
def _data() -> dict[str, torch.Tensor]:
    return simulate(frontdoor, FRONTDOOR_TRUTH, 20, seed=0)


@cache
def _posterior() -> Any:
    return frontdoor.fit(
        _data(), method="svi", seed=0, progress_bar=False, num_steps=30, restarts=1, num_samples=20,
        jit_compile=False,
    )  # fmt: skip


@profile(60)
@given(method=st.one_of(st.sampled_from(["svi", "nuts"]), ODD), options=svi_options())
def test_fit_options_are_accepted_or_refused_with_our_errors(method: Any, options: dict) -> None:
    try:
        make_method(method, options)
    except CausalPPError:
        return
    # Accepted: the fit it starts must not crash (only our errors, e.g. a diverging fit).
    if method != "svi":
        return  # NUTS with SVI's options is refused above; NUTS itself is tested in test_inference
    try:
        post = frontdoor.fit(_data(), method="svi", seed=0, progress_bar=False, **options)
    except CausalPPError:
        return
    assert all(torch.isfinite(v).all() for v in post.samples.values())


@profile(40)
@given(
    seed=st.one_of(st.integers(0, 2**31), ODD),
    threads=st.one_of(st.sampled_from(["auto", None, 1, 2]), ODD),
    device=st.one_of(st.sampled_from(["cpu", "cuda:7", "tpu", ""]), ODD),
    progress_bar=st.one_of(st.booleans(), ODD),
)
@example(seed=0, threads="auto", device=10**30, progress_bar=False)  # torch raised a bare ValueError
def test_fit_arguments_are_accepted_or_refused_with_our_errors(seed, threads, device, progress_bar) -> None:
    with contextlib.suppress(CausalPPError):
        frontdoor.fit(
            _data(), method="svi", seed=seed, threads=threads, device=device, progress_bar=progress_bar,
            num_steps=5, restarts=1, num_samples=10, jit_compile=False,
        )  # fmt: skip


QUERIES = st.sampled_from(
    [ATE("X", "Y"), ATE("X", "Y", treated=2.0, control=-1.0), Interventional("Y", do={"X": 1.0}),
     Interventional("M", do={"X": 0.0}), ATE("M", "Y")]
)  # fmt: skip


@profile(60)
@given(
    query=QUERIES,
    num_samples=st.one_of(st.none(), st.integers(1, 30), ODD),
    num_units=st.one_of(st.none(), st.integers(1, 50), ODD),
    seed=st.one_of(st.integers(0, 100), ODD),
    allow_unidentified=st.one_of(st.booleans(), ODD),
    mc_fraction=st.one_of(st.floats(1e-3, 1.0), ODD),
    max_units=st.one_of(st.none(), st.integers(1, 200), ODD),
)
def test_estimate_options_are_accepted_or_refused_with_our_errors(
    query, num_samples, num_units, seed, allow_unidentified, mc_fraction, max_units
) -> None:
    try:
        est = _posterior().estimate(
            query, num_samples=num_samples, num_units=num_units, seed=seed,
            allow_unidentified=allow_unidentified, mc_fraction=mc_fraction, max_units=max_units,
        )  # fmt: skip
    except CausalPPError:
        return
    assert math.isfinite(est.mean) and math.isfinite(est.std)


CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
COLUMNS = st.sampled_from(["X", "M", "Y", "U", "Z", "", "x", 0])


@st.composite
def frames(draw: st.DrawFn) -> Any:
    names = draw(st.lists(COLUMNS, unique=True, max_size=5))
    rows = draw(st.integers(0, 4))
    ragged = draw(st.booleans())
    columns = {n: draw(st.lists(CELLS, min_size=rows, max_size=rows + (2 if ragged else 0))) for n in names}
    kind = draw(st.sampled_from(["frame", "dict", "arrays", "tensors"]))
    if kind == "frame":
        try:
            return pd.DataFrame(columns)
        except ValueError:  # pandas refuses ragged columns itself; pass the mapping instead
            return columns
    if kind == "arrays":
        return {n: np.asarray(v, dtype=object) for n, v in columns.items()}
    if kind == "tensors":
        out = {}
        for n, v in columns.items():
            try:
                out[n] = torch.tensor(v)
            except (TypeError, ValueError, RuntimeError, OverflowError):
                out[n] = v
        return out
    return columns


@profile(150)
@given(data=frames())
def test_random_frames_are_validated_or_refused_with_our_errors(data: Any) -> None:
    try:
        tensors = validate_data(data, FRONTDOOR_GRAPH)
    except CausalPPError:
        return
    assert set(tensors) == {"X", "M", "Y"}
    assert all(torch.isfinite(t).all() for t in tensors.values())


@pytest.mark.parametrize("bad", [None, 3, "X,Y", [[1, 2]], object()])
def test_data_of_the_wrong_kind_is_refused_with_our_errors(bad: Any) -> None:
    with pytest.raises(CausalPPError):
        validate_data(bad, FRONTDOOR_GRAPH)
