"""fit_many: many data sets of one model in one vectorised SVI program (issue #15).

Each data set's fit must be what fitting it alone gives -- in distribution against ``fit`` (Pyro's
own SVI loop), exactly against ``fit(..., batched=True)`` (a batch of one), and
exactly against ``fit_many`` on that data set alone (a row's randomness is its own) -- with
restarts, convergence and failure decided per data set.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from causal_pp import (
    ATE,
    ArgumentTypeError,
    DataError,
    InferenceError,
    InvalidArgumentError,
    NonFiniteDataError,
)
from causal_pp.cases import get_case
from causal_pp.inference import fit_many

FRONTDOOR = get_case("frontdoor")
BACKDOOR = get_case("backdoor")
FAST = {"num_steps": 300, "restarts": 2, "importance": False, "progress_bar": False}


def _ate(post):  # type: ignore[no-untyped-def]
    est = post.estimate(ATE("X", "Y"), num_units=400, seed=1)
    return est.mean, est.std


@pytest.mark.slow
@pytest.mark.parametrize("case", [FRONTDOOR, BACKDOOR], ids=["frontdoor", "backdoor"])
def test_batched_and_single_fits_agree_in_distribution(case) -> None:  # type: ignore[no-untyped-def]
    data = [case.simulate(200, seed=s) for s in (11, 12)]
    # the low-rank family, which both paths have (the batched default, "structured", has no
    # form in Pyro's loop; tests/test_inference.py checks it against the exact posterior)
    batched = fit_many(case.model, data, seeds=[5, 6], progress_bar=False, guide="lowrank_mvn")
    for d, b, sd in zip(data, batched, (5, 6), strict=True):
        single = case.model.fit(d, method="svi", seed=sd, progress_bar=False, batched=False)  # Pyro's loop
        (mb, sb), (ms, ss) = _ate(b), _ate(single)
        # Monte Carlo standard error of each posterior mean: the posterior SD over the
        # effective number of draws (the importance-resampled draws are about half effective)
        ess = min(b.diagnostics["is_ess"], single.diagnostics["is_ess"], 500) / 2
        se = math.hypot(sb, ss) / math.sqrt(ess)
        assert abs(mb - ms) < 3 * se, (mb, ms, se)
        assert abs(sb / ss - 1) < 0.10, (sb, ss)


def test_a_data_set_is_fitted_the_same_whatever_else_is_in_its_batch() -> None:
    data = [FRONTDOOR.simulate(100, seed=s) for s in range(3)]
    together = fit_many(FRONTDOOR.model, data, seeds=[1, 2, 3], **FAST)
    alone = fit_many(FRONTDOOR.model, data[1:2], seeds=[2], **FAST)
    # the same up to the rounding of batched kernels of another batch size
    assert torch.allclose(together[1].samples["theta_MY"], alone[0].samples["theta_MY"], rtol=0, atol=1e-4)
    assert together[1].diagnostics["num_steps"] == alone[0].diagnostics["num_steps"]
    again = fit_many(FRONTDOOR.model, data, seeds=[1, 2, 3], **FAST)  # the same seeds, the same numbers
    assert all(
        torch.equal(a.samples["theta_XM"], b.samples["theta_XM"])
        for a, b in zip(together, again, strict=True)
    )


def test_a_data_set_that_stops_early_is_not_moved_by_a_longer_batch_mate() -> None:
    # adaptive lengths: the scaled data sets need more steps than the first, which stops first;
    # the batch then goes on without it (twice: the rows it computes shrink as rows stop), and
    # every row draws its posterior after the longest has finished
    data = [{k: c * v for k, v in FRONTDOOR.simulate(60, seed=s).items()} for s, c in enumerate((1, 4, 8))]
    adaptive = {"num_steps": None, "restarts": 1, "importance": False, "progress_bar": False}
    together = fit_many(FRONTDOOR.model, data, seeds=[1, 2, 3], **adaptive)
    steps = [p.diagnostics["num_steps"] for p in together]
    assert steps[0] < steps[1] < steps[2], steps
    first = fit_many(FRONTDOOR.model, data[:1], seeds=[1], **adaptive)[0]
    assert first.diagnostics["num_steps"] == steps[0]
    assert torch.allclose(together[0].samples["theta_MY"], first.samples["theta_MY"], rtol=0, atol=1e-4)
    # the last went on in ever smaller batches, with its own data: the same fit, up to the
    # rounding of other batch sizes, which 2000 steps amplify. On this stiff data set (x8) the
    # rounding of one CPU's kernels can move a plateau test by one window (250 steps) and the
    # posterior by about half an SD (seen on a 2026-12 CI machine); a row that took another
    # row's parameters or data would be several SDs off (its data are 2x or 8x another's)
    last = fit_many(FRONTDOOR.model, data[2:], seeds=[3], **adaptive)[0]
    a, b = together[2].samples["a_Y"], last.samples["a_Y"]
    assert abs(last.diagnostics["num_steps"] - steps[2]) <= 250
    assert abs(a.mean() - b.mean()) < b.std() and abs(a.std() / b.std() - 1) < 0.25


def test_a_diverging_data_set_does_not_disturb_the_others() -> None:
    good = [FRONTDOOR.simulate(100, seed=s) for s in range(2)]
    bad = good[0].copy()
    # each unit's likelihood is finite (the data pass the support check) but their sum over
    # units overflows float32: this row's loss is never finite
    bad["Y"] = bad["Y"] * 1.5e18
    out = fit_many(FRONTDOOR.model, [good[0], bad, good[1]], seeds=[1, 2, 3], errors="return", **FAST)
    assert isinstance(out[1], InferenceError) and "data set 1" in str(out[1])
    alone = fit_many(FRONTDOOR.model, good, seeds=[1, 3], **FAST)
    for a, b in zip((out[0], out[2]), alone, strict=True):
        assert torch.allclose(a.samples["theta_MY"], b.samples["theta_MY"], rtol=0, atol=1e-4)
    with pytest.raises(InferenceError, match=r"data sets \[1\]"):
        fit_many(FRONTDOOR.model, [good[0], bad], seeds=[1, 2], **FAST)


def test_restarts_and_convergence_are_per_data_set() -> None:
    data = [FRONTDOOR.simulate(100, seed=s) for s in range(2)]
    out = fit_many(
        FRONTDOOR.model, data, seeds=[1, 2], num_steps=None, restarts=3, importance=False, progress_bar=False
    )
    for post in out:
        d = post.diagnostics
        assert len(d["restart_losses"]) == 3 and d["batched"] and d["batch_size"] == 2
        assert d["num_steps"] == len(d["loss"]) >= 750
        assert d["loss_trend"] in ("flat", "falling", "rising")
    alone = [
        fit_many(
            FRONTDOOR.model, [d], seeds=[s], num_steps=None, restarts=3, importance=False, progress_bar=False
        )[0]
        for d, s in zip(data, (1, 2), strict=True)
    ]
    assert [p.diagnostics["num_steps"] for p in out] == [p.diagnostics["num_steps"] for p in alone]


def test_where_the_batch_cannot_apply_each_data_set_is_fitted_alone_and_says_so() -> None:
    data = [FRONTDOOR.simulate(60, seed=s) for s in range(2)]
    out = fit_many(
        FRONTDOOR.model, data, guide="normal", num_steps=40, restarts=1, importance=False, progress_bar=False
    )
    assert all(
        p.diagnostics["batched"] is False and "guide 'normal'" in p.diagnostics["batch_fallback"] for p in out
    )


@pytest.mark.parametrize(
    ("datasets", "kwargs", "error", "match"),
    [
        ([], {}, InvalidArgumentError, "datasets is empty"),
        ("not data", {}, ArgumentTypeError, "got str"),
        (None, {}, ArgumentTypeError, "got NoneType"),
        ("two sizes", {}, DataError, r"datasets\[0\] has 10 rows but datasets\[1\] has 12"),
        ("nan in the second", {}, NonFiniteDataError, r"^datasets\[1\]: column 'Y'"),
        ("ok", {"seeds": [1]}, InvalidArgumentError, "2 data sets, 1 seeds"),
        ("ok", {"seeds": [1, 2.5]}, ArgumentTypeError, r"seeds\[1\]"),
        ("ok", {"seeds": {1, 2}}, ArgumentTypeError, "got set"),
        ("ok", {"errors": "ignore"}, InvalidArgumentError, "errors"),
        ("ok", {"lr": -1.0}, InvalidArgumentError, "lr"),
        ("ok", {"seed": -3}, InvalidArgumentError, "seed"),
        ("ok", {"warmup_steps": 10}, InvalidArgumentError, "warmup_steps"),
    ],
    ids=[
        "empty",
        "string",
        "none",
        "two-sizes",
        "nan-in-one",
        "seeds-length",
        "seeds-float",
        "seeds-set",
        "errors",
        "lr",
        "seed",
        "nuts-option",
    ],
)
def test_bad_arguments_are_refused_before_any_work(datasets, kwargs, error, match) -> None:  # type: ignore[no-untyped-def]
    if datasets == "two sizes":
        datasets = [FRONTDOOR.simulate(10, seed=0), FRONTDOOR.simulate(12, seed=1)]
    elif datasets == "nan in the second":
        datasets = [FRONTDOOR.simulate(10, seed=0), FRONTDOOR.simulate(10, seed=1).assign(Y=np.nan)]
    elif datasets == "ok":
        datasets = [FRONTDOOR.simulate(10, seed=0), FRONTDOOR.simulate(10, seed=1)]
    with pytest.raises(error, match=match):
        fit_many(FRONTDOOR.model, datasets, progress_bar=False, **kwargs)


@pytest.mark.filterwarnings("ignore:causal_pp. SVI fits of data sets")
def test_seeds_may_be_an_array() -> None:
    data = [FRONTDOOR.simulate(40, seed=s) for s in range(2)]
    runs = [
        fit_many(
            FRONTDOOR.model, data, seeds=seeds, num_steps=20, restarts=1, importance=False, progress_bar=False
        )
        for seeds in ([5, 9], np.array([5, 9]), torch.tensor([5, 9]))
    ]
    for run in runs[1:]:
        assert all(
            torch.equal(a.samples["theta_XM"], b.samples["theta_XM"])
            for a, b in zip(runs[0], run, strict=True)
        )


def test_fit_with_batched_svi_is_a_batch_of_one() -> None:
    data = FRONTDOOR.simulate(100, seed=4)
    alone = FRONTDOOR.model.fit(data, method="svi", seed=7, batched=True, **FAST)
    batch = fit_many(FRONTDOOR.model, [data], seeds=[7], **FAST)[0]
    assert alone.diagnostics["batched"] and alone.diagnostics["batch_size"] == 1
    assert torch.equal(alone.samples["theta_XM"], batch.samples["theta_XM"])
    # fit's default is the same batch of one; batched=False runs Pyro's own loop, for fit_many
    # too, and says so
    default = FRONTDOOR.model.fit(data, method="svi", seed=7, **FAST)
    assert torch.equal(default.samples["theta_XM"], alone.samples["theta_XM"])
    assert "batched" not in FRONTDOOR.model.fit(data, method="svi", seed=7, batched=False, **FAST).diagnostics
    (looped,) = fit_many(FRONTDOOR.model, [data], seeds=[7], batched=False, **FAST)
    assert looped.diagnostics["batched"] is False and "batched=False" in looped.diagnostics["batch_fallback"]


@pytest.mark.parametrize(
    ("case_name", "integral"), [("frontdoor", "closed form"), ("frontdoor_logit", "particles")]
)
def test_each_data_sets_importance_correction_in_a_batch_is_its_own(case_name, integral) -> None:  # type: ignore[no-untyped-def]
    # the correction runs the model once for all rows' draws; each row's Newton steps, choice of
    # closed form or particles, weights and resampling must still be what it gets alone
    case = get_case(case_name)
    data = [case.simulate(100, seed=s) for s in range(3)]
    fast = {**FAST, "importance": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = fit_many(case.model, data, seeds=[1, 2, 3], **fast)
        alone = fit_many(case.model, data[1:2], seeds=[2], **fast)[0]
    d, a = together[1].diagnostics, alone.diagnostics
    assert d["is_unit_integral"] == a["is_unit_integral"] == integral
    assert d["is_ess_round1"] == pytest.approx(a["is_ess_round1"], rel=1e-3)
    assert d["is_corrected"] == a["is_corrected"]
    # the same weights up to the rounding of the batch's other kernels (its fit included) ...
    assert np.allclose(d["is_log_weights"], a["is_log_weights"], rtol=0, atol=1e-2)
    # ... which can move a resampled draw across a boundary of systematic resampling now and then
    name = next(iter(alone.samples))
    same = (together[1].samples[name] - alone.samples[name]).abs() < 1e-3
    assert float(same.float().mean()) > 0.97


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_many_runs_on_cuda_unchanged() -> None:
    # the batch (its starts, compaction and importance correction) on the GPU: draws stay there,
    # and each data set's posterior is what its fit alone on the GPU gives, up to kernel rounding
    data = [FRONTDOOR.simulate(100, seed=s) for s in range(3)]
    fast = {**FAST, "importance": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        posts = fit_many(FRONTDOOR.model, data, seeds=[1, 2, 3], device="cuda", **fast)
        alone = fit_many(FRONTDOOR.model, data[1:2], seeds=[2], device="cuda", **fast)[0]
    assert all(p.samples["theta_XM"].device.type == "cuda" for p in posts)
    assert all(p.diagnostics["batched"] for p in posts)
    gap = (posts[1].samples["theta_XM"] - alone.samples["theta_XM"]).abs()
    assert float((gap < 1e-3).float().mean()) > 0.97
    assert np.isfinite(posts[0].estimate(ATE("X", "Y"), num_units=200).mean)
