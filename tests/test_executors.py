"""Executors give the cells of a serial run; diagnostics flag bad fits; cases reach worker processes.

Real fits, kept cheap: a 2x2 grid of the front-door case with a deliberately tiny SVI budget
(8 steps, one restart, 50 draws), so every cell is flagged -- which the flagging tests want, and
which does not matter for the executor tests (the same numbers, however poor, must come back).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_pp import CausalPPError, InferenceError
from causal_pp.cases import get_case
from causal_pp.convergence import ProcessExecutor, study
from causal_pp.convergence.cells import TIMING_KEYS
from causal_pp.convergence.targets import resolve_target

TINY = {"num_steps": 8, "restarts": 1, "num_samples": 50}
GRID = dict(sizes=[30, 60], replicates=2, seed=3, num_units=100, fit_kwargs=TINY, progress=False)


def _comparable(cells: dict) -> dict:
    """Cells without their wall-clock fields: the only ones two runs of a cell may differ in."""
    out = {}
    for key, cell in cells.items():
        cell = {k: v for k, v in cell.items() if k not in TIMING_KEYS}
        cell["fit_diagnostics"] = {k: v for k, v in cell["fit_diagnostics"].items() if k not in TIMING_KEYS}
        out[key] = json.dumps(cell, sort_keys=True)
    return out


@pytest.fixture(scope="module")
def serial_study():
    return study(get_case("frontdoor"), "ate", **GRID)


@pytest.fixture(scope="module")
def serial(serial_study) -> dict:
    return _comparable(serial_study.cells)


def test_process_pool_cells_are_identical_to_serial(serial: dict, tmp_path: Path) -> None:
    pooled = study(get_case("frontdoor"), "ate", executor="process", workers=2, out=tmp_path, **GRID)
    assert _comparable(pooled.cells) == serial
    # the driver stored every cell, once
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow  # Ray's start-up alone takes ~10 s; CI runs it in the slow step with the extra
def test_ray_cells_are_identical_to_serial(serial: dict) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = study(get_case("frontdoor"), "ate", executor="ray", **GRID)
    finally:
        ray.shutdown()
    assert _comparable(remote.cells) == serial


def test_a_tiny_step_budget_is_flagged_and_assert_converges_refuses_it(serial_study) -> None:
    s = serial_study
    summary = s.summary()
    assert summary["flagged"].tolist() == [2, 2] and summary["failed"].tolist() == [0, 0]
    assert s.table["flags"].str.contains("too short").all()
    assert s.cells[(30, 0)]["fit_diagnostics"]["num_steps"] == 8
    assert "r_hat" in s.cells[(30, 0)]["estimate_diagnostics"]
    with pytest.raises(AssertionError, match=r"4 cell\(s\) failed a diagnostic .*allow_flagged=True"):
        s.assert_converges(tol=10.0)
    try:  # allowed: judged on the numbers alone (two sizes, two replicates: may or may not pass)
        s.assert_converges(tol=10.0, allow_flagged=True)
    except AssertionError as err:
        assert "failed a diagnostic" not in str(err)


class _FailingModel:
    """Wraps a model; its fit raises InferenceError at one sample size."""

    def __init__(self, model, fail_at: int) -> None:
        self.model, self.fail_at, self.graph = model, fail_at, model.graph

    def fit(self, data, **kw):
        if len(data) == self.fail_at:
            raise InferenceError("SVI produced non-finite draws of 'theta'")
        return self.model.fit(data, **kw)


def test_a_failed_fit_is_a_flagged_cell_not_a_crash() -> None:
    case = get_case("frontdoor")
    model = _FailingModel(case.model, fail_at=60)
    truth = case.queries["ate"].truth
    s = study(model, case.queries["ate"].query, simulate=case.simulate, truth=truth, **GRID)
    summary = s.summary()
    assert summary.loc[60, "failed"] == 2 and summary.loc[60, "flagged"] == 2
    assert s.table.loc[s.table["n"] == 60, "abs_error"].isna().all()
    assert "non-finite draws" in s.cells[(60, 0)]["error"]
    with pytest.raises(AssertionError, match="failed a diagnostic"):
        s.assert_converges(tol=10.0)
    with pytest.raises(CausalPPError, match="two sample sizes"):
        s.assert_converges(tol=10.0, allow_flagged=True)  # only N=30 has estimates left


def test_built_in_cases_and_their_targets_pickle_by_name() -> None:
    case = get_case("sars_cov2")
    assert pickle.loads(pickle.dumps(case)) is case
    target = resolve_target(case, None, None, None, None)
    back = pickle.loads(pickle.dumps(target))
    assert (back.name, back.truth, back.fingerprint) == (target.name, target.truth, target.fingerprint)
    assert back.simulate(5, seed=1).equals(target.simulate(5, seed=1))


def test_an_unpicklable_user_case_is_refused_before_any_work(tmp_path: Path) -> None:
    mine = dataclasses.replace(get_case("frontdoor"), name="my_frontdoor")  # lambdas, not registered
    with pytest.raises(CausalPPError, match="cannot be sent to worker processes"):
        study(mine, "ate", executor="process", workers=2, out=tmp_path / "out", **GRID)
    assert not (tmp_path / "out").exists()


def test_executor_arguments_are_checked() -> None:
    with pytest.raises(CausalPPError, match="executor must be one of"):
        study(get_case("frontdoor"), "ate", executor="threads", **GRID)
    with pytest.raises(CausalPPError, match="workers"):
        study(get_case("frontdoor"), "ate", executor="process", workers=0, **GRID)
    with pytest.raises(CausalPPError, match="executor object"):
        study(get_case("frontdoor"), "ate", executor=ProcessExecutor(workers=2), workers=2, **GRID)


def _numbers(cell: dict) -> dict:
    keys = ("mean", "sd", "lo", "hi", "abs_error", "wasserstein")
    return {k: cell[k] for k in keys} | {"final_loss": cell["fit_diagnostics"]["final_loss"]}


def test_cells_do_not_depend_on_the_order_they_run_in(serial_study, serial: dict) -> None:
    # A shard computes its cells alone, after other work in this process. Unbatched: the same
    # bits. Batched, the shard's batch holds fewer replicates, and float32 sums over a batch of
    # another shape round differently -- the same numbers to rounding (1e-9 measured), not bits.
    alone = study(get_case("frontdoor"), "ate", replicate_range=(1, 2), **GRID, batch_size=None)
    whole = study(get_case("frontdoor"), "ate", **GRID, batch_size=None)
    assert {k: v for k, v in _comparable(whole.cells).items() if k[1] == 1} == _comparable(alone.cells)
    shard = study(get_case("frontdoor"), "ate", replicate_range=(1, 2), **GRID)
    for key, cell in shard.cells.items():
        assert shard.cells[key]["batch_size"] == 1 and serial_study.cells[key]["batch_size"] == 2
        got, want = _numbers(cell), _numbers(serial_study.cells[key])
        assert got == pytest.approx(want, rel=1e-6), key
    assert np.isfinite(pd.to_numeric(shard.table["mean"])).all()


def test_a_target_loaded_by_import_path_pickles_as_its_path() -> None:
    from causal_pp.convergence.targets import load_object, targets_of

    path = "causal_pp.cases.frontdoor:make_frontdoor"  # a factory: called for the case
    (target,) = targets_of(load_object(path), ["ett"], source=path)
    reduced = target.__reduce_ex__(4)
    assert reduced[1][:2] == (path, "ett")  # the path travels, not the (unpicklable) case object
    back = pickle.loads(pickle.dumps(target))
    assert (back.name, back.truth, back.source) == ("frontdoor/ett", target.truth, path)


def test_a_case_registered_by_a_users_module_is_found_by_importing_it(tmp_path, monkeypatch) -> None:
    from causal_pp.cases import registry, unregister
    from causal_pp.cases.registry import registered_case

    (tmp_path / "my_cases_mod.py").write_text(
        "import dataclasses\n"
        "from causal_pp.cases import get_case, register\n"
        "register(dataclasses.replace(get_case('bow'), name='my_bow_from_module'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "my_bow_from_module" not in registry()
    try:
        assert registered_case("my_bow_from_module", "my_cases_mod").name == "my_bow_from_module"
    finally:
        unregister("my_bow_from_module")
    with pytest.raises(CausalPPError, match="not in this one"):
        registered_case("never_registered_anywhere", "my_cases_mod")


def test_several_cases_on_one_pool_give_each_case_its_own_cells(serial: dict, tmp_path: Path) -> None:
    from causal_pp.convergence import case_studies

    found = case_studies(
        {"frontdoor": ["ate"], "backdoor": ["ate"]},
        sizes={"frontdoor": GRID["sizes"], "backdoor": [40]},
        executor="process",
        workers=2,
        out=tmp_path,
        **{k: v for k, v in GRID.items() if k != "sizes"},
    )
    assert sorted(found) == ["backdoor", "frontdoor"]
    assert _comparable(found["frontdoor"]["ate"].cells) == serial
    alone = study(get_case("backdoor"), "ate", sizes=[40], **{k: v for k, v in GRID.items() if k != "sizes"})
    assert _comparable(found["backdoor"]["ate"].cells) == _comparable(alone.cells)
    # each case's cells in its own folder, stored once
    assert len((tmp_path / "frontdoor" / "cells.jsonl").read_text().splitlines()) == 4
    assert len((tmp_path / "backdoor" / "cells.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("plan", "sizes", "match"),
    [
        ({}, [30], "plan must map cases"),
        ({"frontdoor": None}, {"backdoor": [30]}, "no entry for case 'frontdoor'"),
        ({"frontdoor": None, "backdoor": None}, {"frontdoor": [30], "backdoor": [1]}, "sizes must be"),
        ({"no_such_case": None}, [30], "no_such_case"),
    ],
)
def test_several_cases_refuse_bad_plans_before_any_work(plan, sizes, match, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from causal_pp.convergence import case_studies

    with pytest.raises(CausalPPError, match=match):
        case_studies(plan, sizes=sizes, replicates=1, out=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
