"""Studies on the results store: cells keyed by their settings, damaged files, concurrent runs, kill -9.

A cheap stand-in case (an exact Gaussian "posterior" around the truth) keeps these tests fast:
they check which cells a study computes, reuses and stores, not inference. Every fit is logged
to a file, so fits done in child processes are counted too. Concurrency tests use real processes
(``fork``) and a real ``SIGKILL``, each joined with a timeout.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal_pp import ATE, CausalGraph
from causal_pp.convergence import merge_results, studies, study
from causal_pp.convergence.store import ResultStore, StoreWarning

GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"])
QUERY = ATE("X", "Y")
FORK = multiprocessing.get_context("fork")
GRID = dict(sizes=[50, 200], replicates=3, seed=5, progress=False)


@dataclass(frozen=True)
class _Est:
    mean: float
    std: float
    plugin: float
    predictive: dict

    def interval(self, prob: float) -> tuple[float, float]:
        z = 1.96 if prob > 0.9 else 1.0
        return self.mean - z * self.std, self.mean + z * self.std


class _Posterior:
    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.diagnostics = {"converged": True, "num_steps": 10, "final_loss": 1.0, "loss_trend": "flat"}

    def estimate(self, query, *, num_units, seed, allow_unidentified):
        rng = np.random.default_rng([seed, num_units or 0])
        sd = 1.0 / np.sqrt(self.n)
        return _Est(2.0 + sd * rng.standard_normal(), sd, 2.0, {})


class _Model:
    def __init__(self, log: Path | None, delay: float) -> None:
        self.graph, self.log, self.delay = GRAPH, log, delay

    def fit(self, data, *, method, seed, device, progress_bar, **kw):
        time.sleep(self.delay)
        if self.log is not None:
            with open(self.log, "a") as fh:  # one short line per fit: append is atomic
                fh.write(json.dumps([len(data), seed, os.getpid()]) + "\n")
        return _Posterior(len(data), seed)


@dataclass(frozen=True)
class _CQ:
    query: ATE
    truth: float
    identified: bool


class _Case:
    def __init__(self, log: Path | None = None, delay: float = 0.0, name: str = "stub") -> None:
        self.name = name
        self.queries = {"ate": _CQ(QUERY, 2.0, True), "ate2": _CQ(QUERY, 2.0, True)}
        self.model = _Model(log, delay)

    def simulate(self, n: int, *, seed: int) -> pd.DataFrame:
        return pd.DataFrame({"X": np.zeros(n)})


class _OtherCase(_Case):
    def simulate(self, n: int, *, seed: int) -> pd.DataFrame:  # other simulator code
        return pd.DataFrame({"X": np.ones(n)})


def _fits(log: Path) -> list[tuple[int, int]]:
    return [tuple(json.loads(x)[:2]) for x in log.read_text().splitlines()] if log.exists() else []


def _records(folder: Path) -> list[dict]:
    out = []
    for line in (folder / "cells.jsonl").read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"fit_kwargs": {"num_steps": 40}}, "fit_kwargs.num_steps"),
        ({"num_units": 500}, "num_units"),
        ({"prob": 0.9}, "prob"),
    ],
)
def test_rerun_with_other_settings_refits_and_says_which_differ(
    tmp_path: Path, change: dict, differs: str
) -> None:
    log = tmp_path / "fits"
    first = study(_Case(log), out=tmp_path / "out", **GRID)
    assert len(_fits(log)) == 6
    notices: list[str] = []
    again = study(_Case(log), out=tmp_path / "out", on_notice=notices.append, **GRID, **change)
    assert len(_fits(log)) == 12, "a rerun with other settings reused cells computed under the old ones"
    assert any(f"6 cells for {differs}=" in m for m in notices), notices
    if "num_units" in change:  # the stub's estimate depends on num_units: the numbers are new ones
        assert first.table["mean"].tolist() != again.table["mean"].tolist()
    # Both key spaces stay in the folder; the original settings still find all of theirs.
    study(_Case(log), out=tmp_path / "out", on_notice=notices.append, **GRID)
    assert len(_fits(log)) == 12
    assert len(_records(tmp_path / "out")) == 12


def test_rerun_with_other_simulator_code_or_version_refits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "fits"
    study(_Case(log), out=tmp_path, **GRID)
    study(_OtherCase(log), out=tmp_path, on_notice=lambda m: None, **GRID)  # same name, other code
    assert len(_fits(log)) == 12
    import causal_pp.version as version

    monkeypatch.setattr(version, "__version__", "99.0")
    notices: list[str] = []
    study(_Case(log), out=tmp_path, on_notice=notices.append, **GRID)
    assert len(_fits(log)) == 18
    assert any("causal_pp_version=" in m for m in notices)


def test_same_settings_reuse_every_cell_and_return_the_same_table(tmp_path: Path) -> None:
    log = tmp_path / "fits"
    a = study(_Case(log), out=tmp_path / "out", **GRID)
    b = study(_Case(log), out=tmp_path / "out", **GRID)
    assert len(_fits(log)) == 6
    cols = [c for c in a.table.columns if c != "fit_seconds"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols])


def test_corrupt_first_line_keeps_every_later_cell(tmp_path: Path) -> None:
    log = tmp_path / "fits"
    study(_Case(log), out=tmp_path, **GRID)
    path = tmp_path / "cells.jsonl"
    path.write_bytes(b'{"format": 1, "key": "3f2c, garbage\n' + path.read_bytes())
    with pytest.warns(StoreWarning, match=r"cells.jsonl:1: skipped a damaged line \(not JSON"):
        s = study(_Case(log), out=tmp_path, **GRID)
    assert len(_fits(log)) == 6  # every good cell after the damaged line was kept and reused
    assert s.table["mean"].notna().all()


def test_a_line_that_is_json_but_not_a_cell_is_skipped_with_a_warning(tmp_path: Path) -> None:
    log = tmp_path / "fits"
    study(_Case(log), out=tmp_path, **GRID)
    lines = (tmp_path / "cells.jsonl").read_text().splitlines()
    rec = json.loads(lines[2])
    bad = [json.dumps({"hello": "world"}), json.dumps({**rec, "cell": {**rec["cell"], "n": "fifty"}})]
    (tmp_path / "cells.jsonl").write_text("\n".join([*lines[:2], *bad, *lines[2:]]) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study(_Case(log), out=tmp_path, **GRID)
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert any("cells.jsonl:3:" in m and "not a cell" in m for m in messages), messages
    assert any("cells.jsonl:4:" in m and "'n'" in m for m in messages), messages
    assert len(_fits(log)) == 6


def _runner(folder: str, log: str, start, delay: float) -> None:
    start.wait(10)
    studies(_Case(Path(log), delay=delay), out=folder, **GRID)


def test_two_concurrent_studies_compute_each_cell_once_and_store_one_line_each(tmp_path: Path) -> None:
    log = tmp_path / "fits"
    start = FORK.Event()
    procs = [FORK.Process(target=_runner, args=(str(tmp_path), str(log), start, 0.05)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    fits = Counter(_fits(log))
    assert sum(fits.values()) == 6 and set(fits.values()) == {1}, "a cell was fitted twice"
    pids = {json.loads(x)[2] for x in log.read_text().splitlines()}
    assert len(pids) == 2, "one runner did everything: the test did not overlap"
    ids = Counter((r["key"], tuple(r["id"])) for r in _records(tmp_path))
    assert len(ids) == 12 and set(ids.values()) == {1}  # 2 queries x 6 cells, each line once
    assert not (tmp_path / ".claims").exists()


def _slow_study(folder: str, log: str) -> None:
    study(
        _Case(Path(log), delay=0.15),
        out=folder,
        sizes=[50, 100, 200, 400],
        replicates=5,
        seed=5,
        progress=False,
    )


def test_kill_9_mid_study_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    log = tmp_path / "fits"
    child = FORK.Process(target=_slow_study, args=(str(tmp_path), str(log)))
    child.start()
    deadline = time.monotonic() + 30
    while len(_records(tmp_path) if (tmp_path / "cells.jsonl").exists() else []) < 5:
        assert time.monotonic() < deadline, "the child stored nothing"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    stored = {tuple(r["id"]) for r in _records(tmp_path)}
    assert 5 <= len(stored) < 20
    fits_before = len(_fits(log))  # the cell being fitted at the kill is logged but not stored
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)  # the kill may have torn a line
        s = study(_Case(log), out=tmp_path, sizes=[50, 100, 200, 400], replicates=5, seed=5, progress=False)
    assert len(_fits(log)) - fits_before == 20 - len(stored), "the rerun refitted stored cells or missed some"
    ids = Counter(tuple(r["id"]) for r in _records(tmp_path))
    assert len(ids) == 20 and set(ids.values()) == {1}
    assert s.table["mean"].notna().all() and len(s.table) == 20


def test_shards_merge_into_the_table_of_one_run(tmp_path: Path) -> None:
    log = tmp_path / "fits"
    whole = study(_Case(), out=tmp_path / "whole", **GRID)
    study(_Case(), out=tmp_path / "a", replicate_range=(0, 1), **GRID)
    shard = study(_Case(), out=tmp_path / "b", replicate_range=(1, 3), **GRID)
    assert sorted(shard.table["replicate"].unique()) == [1, 2]
    report = merge_results([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    assert report.added == {str(tmp_path / "a"): 2, str(tmp_path / "b"): 4} and report.cells == 6
    merged = study(_Case(log), out=tmp_path / "merged", **GRID)
    assert not _fits(log)  # everything came from the shards
    cols = [c for c in whole.table.columns if c != "fit_seconds"]
    pd.testing.assert_frame_equal(whole.table[cols], merged.table[cols])
    assert merge_results([tmp_path / "a"], tmp_path / "merged").total_added == 0


def test_bad_replicate_range_and_merge_sources_are_refused_before_any_work(tmp_path: Path) -> None:
    from causal_pp.errors import CausalPPError

    log = tmp_path / "fits"
    for bad in [(2, 2), (0, 4), (-1, 1), (0,)]:
        with pytest.raises(CausalPPError, match="replicate_range"):
            study(_Case(log), out=tmp_path / "out", replicate_range=bad, **GRID)
    assert not _fits(log) and not (tmp_path / "out").exists()
    with pytest.raises(CausalPPError, match="not a folder"):
        merge_results([tmp_path / "nope"], tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CausalPPError, match=r"holds no cells\.jsonl"):
        merge_results([tmp_path / "empty"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_legacy_results_file_is_reported_and_not_reused(tmp_path: Path) -> None:
    log = tmp_path / "fits"
    old = {"target": "stub/ate", "method": "svi", "seed": 5, "replicate": 0, "n": 50, "mean": 9.0}
    (tmp_path / "results.jsonl").write_text(json.dumps(old) + "\n")
    notices: list[str] = []
    s = study(_Case(log), out=tmp_path, on_notice=notices.append, **GRID)
    assert len(_fits(log)) == 6 and 9.0 not in s.table["mean"].tolist()
    assert any("old unkeyed format" in m for m in notices)
    assert ResultStore(tmp_path).key_spaces()  # the store reads both files
