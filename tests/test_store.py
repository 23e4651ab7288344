"""The results store: keys, damaged lines, concurrent writers, claims and kill -9.

The concurrency tests use real processes (``fork``, so a child starts in milliseconds without
re-importing torch) and real ``SIGKILL``; each waits with a timeout, so a broken lock makes the
test fail instead of hanging.
"""

from __future__ import annotations

import collections
import fcntl
import json
import multiprocessing
import os
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from causal_pp.convergence.store import (
    LEGACY,
    ResultStore,
    Settings,
    StoreWarning,
    settings_key,
)
from causal_pp.errors import CausalPPError, InvalidArgumentError

BASE = Settings(
    case="frontdoor/ate",
    fingerprint="f1",
    query="ATE(Y, do(X=1) - do(X=0))",
    method="svi",
    seed=0,
    fit_kwargs={"num_steps": 40, "optim": {"lr": 0.01, "betas": (0.9, 0.99)}},
    num_units=1000,
    prob=0.94,
    device="cpu",
    version="0.1.0",
)
KEY = BASE.key
SCHEMA = {"mean": float, "n": int}
FORK = multiprocessing.get_context("fork")


def _cell(i: int, pad: int = 0) -> dict:
    return {"mean": i / 7, "n": i, "pad": [i + 0.25] * pad}


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1] if path.exists() else []


def _stored_ids(path: Path) -> collections.Counter:
    """(key, id) -> number of parseable records in the file, read raw (not through the store)."""
    counts: collections.Counter = collections.Counter()
    for line in _lines(path):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        counts[(rec["key"], tuple(rec["id"]))] += 1
    return counts


def _join(procs, timeout: float = 15.0) -> None:
    for p in procs:
        p.join(timeout)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a child process hung (a lock was never released?)"


# --- keys ---------------------------------------------------------------------------------------


def test_key_is_stable_across_runs_and_canonical():
    # A fixed value: a change of canonicalisation would silently orphan every stored result.
    assert KEY == "c206025a55a3c726222a9e30b1a66e4adfc728f9de1f2adc354e00da49c1959d"
    same = BASE.replace(fit_kwargs={"optim": {"betas": [0.9, 0.99], "lr": np.float64(0.01)}, "num_steps": 40})
    assert same.key == KEY
    assert BASE.replace(num_units=np.int64(1000)).key == KEY
    assert settings_key(BASE.to_dict()) == KEY
    # 40 and 40.0 are different values to a fit: conservatively different keys.
    assert BASE.replace(fit_kwargs={**BASE.fit_kwargs, "num_steps": 40.0}).key != KEY
    assert Settings(**{**_fields(BASE), "version": None}).version  # read from causal_pp lazily


def _fields(s: Settings) -> dict:
    return {
        k: getattr(s, k)
        for k in (
            "case",
            "fingerprint",
            "query",
            "method",
            "seed",
            "fit_kwargs",
            "num_units",
            "prob",
            "device",
            "version",
            "extra",
        )
    }


CHANGES = {
    "fit_kwargs.num_steps": {"fit_kwargs": {**BASE.fit_kwargs, "num_steps": 4000}},
    "fit_kwargs.optim.lr": {"fit_kwargs": {**BASE.fit_kwargs, "optim": {"lr": 0.1, "betas": (0.9, 0.99)}}},
    "fit_kwargs.restarts": {"fit_kwargs": {**BASE.fit_kwargs, "restarts": 3}},
    "num_units": {"num_units": 2000},
    "prob": {"prob": 0.9},
    "device": {"device": "cuda"},
    "seed": {"seed": 1},
    "method": {"method": "nuts"},
    "fingerprint": {"fingerprint": "f2"},
    "causal_pp_version": {"version": "0.2.0"},
    "extra.truth_draws": {"extra": {"truth_draws": 10}},
}


def test_a_change_of_the_codes_numbers_rekeys_every_cell(monkeypatch) -> None:
    # a new default (e.g. the guide) moves a cell's numbers under unchanged settings: the results
    # revision is part of the key, so a rerun computes afresh instead of reusing the old cells
    from causal_pp import version

    before = BASE.replace(version=None)
    assert before.version.endswith(f"+r{version.RESULTS_REVISION}")
    monkeypatch.setattr(version, "RESULTS_REVISION", version.RESULTS_REVISION + 1)
    after = BASE.replace(version=None)
    assert after.key != before.key and after.version != before.version


@pytest.mark.parametrize("changed", list(CHANGES))
def test_changed_settings_get_another_key_and_never_see_old_cells(tmp_path, changed):
    other = BASE.replace(**CHANGES[changed])
    assert other.key != KEY
    store = ResultStore(tmp_path, schema=SCHEMA)
    store.append(BASE, {("frontdoor/ate", 50, r): _cell(r) for r in range(3)})
    rerun = ResultStore(tmp_path, schema=SCHEMA)  # a later run with the new settings
    assert rerun.read(other) == {}
    assert not rerun.has(other, ("frontdoor/ate", 50, 0))
    with rerun.claim(other, ("frontdoor/ate", 50, 0)) as claim:
        assert claim  # nothing to reuse: the cell is computed again
    (notice,) = rerun.others(other)
    assert changed in notice.differs
    assert set(notice.differs) == {changed}
    assert notice.message().startswith(f"this folder also holds 3 cells for {changed}=")
    # Both key spaces now live side by side in one file.
    rerun.append(other, {("frontdoor/ate", 50, 0): _cell(99)})
    assert rerun.read(BASE)[("frontdoor/ate", 50, 0)]["n"] == 0
    assert rerun.read(other)[("frontdoor/ate", 50, 0)]["n"] == 99


def test_unserialisable_settings_are_refused_with_their_place():
    with pytest.raises(InvalidArgumentError, match=r"fit_kwargs\['optim'\]\['cls'\] is a builtins.object"):
        BASE.replace(fit_kwargs={"optim": {"cls": object()}})
    with pytest.raises(InvalidArgumentError, match="keys must be strings"):
        BASE.replace(fit_kwargs={1: 2})
    with pytest.raises(InvalidArgumentError, match="memory address"):
        BASE.replace(query=object())
    with pytest.raises(InvalidArgumentError, match="prob"):
        BASE.replace(prob=1.5)
    assert issubclass(InvalidArgumentError, CausalPPError)


# --- damaged lines ------------------------------------------------------------------------------


def _good_file(tmp_path: Path, n: int) -> bytes:
    src = ResultStore(tmp_path / "src", schema=SCHEMA)
    src.append(BASE, {("t", i): _cell(i) for i in range(n)})
    return src.path.read_bytes()


def test_corrupt_first_line_keeps_every_later_cell(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    good = _good_file(tmp_path, 5)
    damaged = b'{"format": 1, "key": "3f2c\n' + good
    (folder / "cells.jsonl").write_bytes(damaged)
    store = ResultStore(folder, schema=SCHEMA)
    with pytest.warns(StoreWarning, match=r"cells.jsonl:1: skipped a damaged line \(not JSON"):
        cells = store.read(BASE)
    assert sorted(cells) == [("t", i) for i in range(5)]
    assert [(d.lineno, d.reason.split(":")[0]) for d in store.damaged] == [(1, "not JSON")]
    assert (folder / "cells.jsonl").read_bytes() == damaged  # never rewritten
    store.append(BASE, {("t", 5): _cell(5)})
    assert (folder / "cells.jsonl").read_bytes().startswith(damaged)


def test_non_cell_lines_are_skipped_with_their_line_and_reason(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    good = _good_file(tmp_path, 2).split(b"\n")[:-1]
    rec = json.loads(good[0])
    bad = [
        b"[1, 2, 3]",
        json.dumps({k: v for k, v in rec.items() if k != "cell"}).encode(),
        json.dumps({**rec, "settings": {**rec["settings"], "num_units": 5}}).encode(),
        json.dumps({**rec, "id": ["t", 1.5]}).encode(),
        json.dumps({**rec, "cell": {"n": 1}}).encode(),
        json.dumps({**rec, "cell": {"mean": "high", "n": 1}}).encode(),
        json.dumps({"hello": "world"}).encode(),
        b"\xff\xfe not utf-8",
    ]
    (folder / "cells.jsonl").write_bytes(b"\n".join([good[0], *bad, good[1]]) + b"\n")
    store = ResultStore(folder, schema=SCHEMA)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cells = store.read(BASE)
    assert sorted(cells) == [("t", 0), ("t", 1)]
    expected = {
        2: "a JSON array",
        3: "missing 'cell'",
        4: "does not match its settings",
        5: "its parts must be strings or integers",
        6: "has no field 'mean'",
        7: "not float",
        8: "not an old-format cell",
        9: "not UTF-8",
    }
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert len(messages) == len(expected)
    for (lineno, reason), message in zip(expected.items(), messages, strict=True):
        assert f"cells.jsonl:{lineno}: skipped a damaged line" in message
        assert reason in message
    assert [d.lineno for d in store.damaged] == list(expected)


def test_torn_last_line_is_reported_and_the_next_append_is_intact(tmp_path):
    store = ResultStore(tmp_path, schema=SCHEMA)
    store.append(BASE, {("t", 0): _cell(0), ("t", 1): _cell(1)})
    line = _lines(store.path)[0]
    with store.path.open("ab") as fh:  # what a writer killed inside write() leaves behind
        fh.write(line[: len(line) // 2])
    reader = ResultStore(tmp_path, schema=SCHEMA)
    with pytest.warns(StoreWarning, match=r"cells.jsonl:3: .*incomplete line"):
        assert len(reader.read(BASE)) == 2
    with pytest.warns(StoreWarning, match="incomplete line"):  # the writer's own reader sees it too
        assert store.append(BASE, {("t", 2): _cell(2)}) == 1
    fresh = ResultStore(tmp_path, schema=SCHEMA)
    with pytest.warns(StoreWarning, match=r"cells.jsonl:3: .*not JSON"):
        assert sorted(fresh.read(BASE)) == [("t", 0), ("t", 1), ("t", 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reader that saw the torn tail does not report it twice
        assert sorted(reader.read(BASE)) == [("t", 0), ("t", 1), ("t", 2)]


def test_duplicates_are_read_once_and_conflicts_keep_the_first(tmp_path):
    store = ResultStore(tmp_path, schema=SCHEMA)
    store.append(BASE, {("t", 0): _cell(0)})
    line = _lines(store.path)[0]
    rec = json.loads(line)
    conflicting = json.dumps({**rec, "cell": _cell(7)}).encode()
    with store.path.open("ab") as fh:
        fh.write(line + b"\n" + conflicting + b"\n")
    fresh = ResultStore(tmp_path, schema=SCHEMA)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cells = fresh.read(BASE)
    assert cells == {("t", 0): _cell(0)}
    (warning,) = caught
    assert "cells.jsonl:3: cell ('t', 0) is stored again with different values" in str(warning.message)
    assert "first at" in str(warning.message) and "cells.jsonl:1" in str(warning.message)
    assert fresh.append(BASE, {("t", 0): _cell(0)}) == 0  # already there: not written again


def test_append_refuses_a_bad_cell_and_writes_nothing(tmp_path):
    store = ResultStore(tmp_path, schema=SCHEMA)
    with pytest.raises(InvalidArgumentError, match="no field 'mean'"):
        store.append(BASE, {("t", 0): _cell(0), ("t", 1): {"n": 1}})
    with pytest.raises(InvalidArgumentError, match="cannot be stored as JSON"):
        store.append(BASE, {("t", 0): {**_cell(0), "x": object()}})
    assert not store.path.exists()
    assert store.append(BASE, {("t", 0): {**_cell(0), "x": np.float32(0.5), "v": np.arange(2)}}) == 1
    assert store.read(BASE)[("t", 0)]["v"] == [0, 1]


def test_legacy_results_are_a_key_space_of_their_own_and_never_reused(tmp_path):
    old = {"target": "frontdoor/ate", "method": "svi", "seed": 0, "replicate": 0, "mean": -1.4}
    legacy = "".join(json.dumps({**old, "n": n}) + "\n" for n in (50, 200, 800)).encode()
    (tmp_path / "results.jsonl").write_bytes(legacy)
    store = ResultStore(tmp_path, schema=SCHEMA)
    assert store.read(BASE) == {}
    spaces = store.key_spaces()
    assert list(spaces) == [LEGACY]
    assert spaces[LEGACY].cells == 3 and spaces[LEGACY].settings is None
    (notice,) = store.others(BASE)
    assert "3 cells in the old unkeyed format" in notice.message()
    assert "results.jsonl" in notice.message()
    store.append(BASE, {("frontdoor/ate", 50, 0): _cell(1)})
    assert (tmp_path / "results.jsonl").read_bytes() == legacy  # read, never written
    assert set(store.key_spaces()) == {LEGACY, KEY}


# --- concurrency --------------------------------------------------------------------------------


def _writer(folder: str, ids: range, start) -> None:
    store = ResultStore(folder, schema=SCHEMA)
    start.wait(10)
    for i in ids:
        store.append(BASE, {("t", i): _cell(i, pad=1500)})  # ~15 kB lines: several pages each


def test_two_concurrent_writers_end_with_one_intact_line_per_cell(tmp_path):
    start = FORK.Event()
    procs = [
        FORK.Process(target=_writer, args=(str(tmp_path), ids, start))
        for ids in (range(0, 90), range(30, 120))
    ]
    for p in procs:
        p.start()
    reader = ResultStore(tmp_path, schema=SCHEMA)
    start.set()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reader racing the writers never sees half a line
        while any(p.is_alive() for p in procs):
            reader.read(BASE)
            time.sleep(0.005)
    _join(procs)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = _lines(reader.path)
    assert all(json.loads(line)["cell"]["pad"][0] == json.loads(line)["id"][1] + 0.25 for line in lines)
    counts = _stored_ids(reader.path)
    assert sorted(counts) == [(KEY, ("t", i)) for i in range(120)]
    assert set(counts.values()) == {1}  # the overlap 30..89 was written once
    assert len(lines) == 120


def test_a_reader_waits_for_a_writer_in_the_middle_of_a_line(tmp_path):
    store = ResultStore(tmp_path, schema=SCHEMA)
    store.append(BASE, {("t", 0): _cell(0)})
    line = _lines(store.path)[0].replace(b'"t",0', b'"t",1')
    fd = os.open(store.path, os.O_WRONLY | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a writer holds the lock and has written half its line
        os.write(fd, line[:100])
        reader = ResultStore(tmp_path, schema=SCHEMA)
        result: dict = {}

        def read() -> None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result["cells"] = reader.read(BASE)
            result["warnings"] = [str(w.message) for w in caught]

        thread = threading.Thread(target=read)
        thread.start()
        thread.join(0.2)
        assert thread.is_alive(), "the reader did not wait for the writer's lock"
        os.write(fd, line[100:] + b"\n")
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    thread.join(10)
    assert result["warnings"] == []
    assert sorted(result["cells"]) == [("t", 0), ("t", 1)]


SHARED = BASE.replace(case="frontdoor/y_do_x1", query="P(Y | do(X=1))")
GRID = [(n, r) for n in (50, 100, 200, 400) for r in range(5)]


def _pairs(task):
    n, r = task
    return [(BASE, ("frontdoor/ate", n, r)), (SHARED, ("frontdoor/y_do_x1", n, r))]


def _runner(folder: str, log: str, start, delay: float) -> None:
    store = ResultStore(folder, schema=SCHEMA)
    start.wait(10)
    for (n, r), claim in store.iter_claimed(GRID, _pairs, poll=0.02):
        with open(log, "a") as fh:
            fh.write(json.dumps([n, r, len(claim.todo)]) + "\n")
        time.sleep(delay)  # the fit
        store.append(BASE, {("frontdoor/ate", n, r): _cell(n + r)})
        store.append(SHARED, {("frontdoor/y_do_x1", n, r): _cell(n - r)})


def test_two_runners_sharing_a_folder_compute_every_cell_exactly_once(tmp_path):
    store = ResultStore(tmp_path, schema=SCHEMA)
    store.append(BASE, {("frontdoor/ate", 50, 0): _cell(50)})  # done by an earlier run
    store.append(BASE, {("frontdoor/ate", 50, 1): _cell(51)})
    store.append(SHARED, {("frontdoor/y_do_x1", 50, 1): _cell(49)})
    start = FORK.Event()
    logs = [tmp_path / f"log{i}" for i in range(2)]
    procs = [FORK.Process(target=_runner, args=(str(tmp_path), str(log), start, 0.03)) for log in logs]
    for p in procs:
        p.start()
    start.set()
    _join(procs)
    assert [p.exitcode for p in procs] == [0, 0]
    done = [tuple(json.loads(line)) for log in logs for line in log.read_text().splitlines()]
    computed = collections.Counter((n, r) for n, r, _ in done)
    assert set(computed.values()) == {1}, "a cell was fitted twice"
    assert set(computed) == set(GRID) - {(50, 1)}  # (50, 1) was complete; (50, 0) lacked one query
    assert [todo for n, r, todo in done if (n, r) == (50, 0)] == [1]
    assert all(log.read_text() for log in logs), "one runner did everything: the test did not overlap"
    counts = _stored_ids(store.path)
    assert len(counts) == 2 * len(GRID) and set(counts.values()) == {1}
    assert not (tmp_path / ".claims").exists()


def _holder(folder: str, ready, cell_id) -> None:
    store = ResultStore(folder)
    claim = store.claim(BASE, cell_id)
    assert claim
    ready.set()
    time.sleep(60)


def test_a_killed_holder_leaves_no_stale_claim(tmp_path):
    ready = FORK.Event()
    child = FORK.Process(target=_holder, args=(str(tmp_path), ready, ("t", 1)))
    child.start()
    assert ready.wait(10)
    store = ResultStore(tmp_path)
    with store.claim(BASE, ("t", 1)) as claim:
        assert not claim.acquired
    (info,) = store.claims()
    assert (info.pid, info.cell_id, info.key) == (child.pid, ("t", 1), KEY)
    assert store.wait([(BASE, ("t", 1))], timeout=0.1) == [(KEY, ("t", 1))]  # still held: timed out
    waited = []
    os.kill(child.pid, signal.SIGKILL)
    # Returns as soon as the holder is gone, with the cell still to compute.
    assert store.wait([(BASE, ("t", 1))], timeout=10, on_wait=waited.append) == [(KEY, ("t", 1))]
    _join([child])
    with store.claim(BASE, ("t", 1)) as claim:
        assert claim
    store.prune_claims()
    assert not (tmp_path / ".claims").exists()


def _slow_runner(folder: str, n_cells: int, delay: float) -> None:
    store = ResultStore(folder, schema=SCHEMA)
    for i, _claim in store.iter_claimed(range(n_cells), lambda i: [(BASE, ("t", i))]):
        time.sleep(delay)
        store.append(BASE, {("t", i): _cell(i, pad=2000)})


def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    n_cells = 30
    child = FORK.Process(target=_slow_runner, args=(str(tmp_path), n_cells, 0.02))
    child.start()
    store = ResultStore(tmp_path, schema=SCHEMA)
    deadline = time.monotonic() + 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)  # the kill may land inside a write
        while len(store.read(BASE)) < 8 and time.monotonic() < deadline:
            time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    _join([child])
    assert child.exitcode == -signal.SIGKILL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        before = set(store.read(BASE))
        assert 8 <= len(before) < n_cells
        assert store.claims() == []  # the kernel released the dead runner's claim
        rerun = []
        for i, _claim in store.iter_claimed(range(n_cells), lambda i: [(BASE, ("t", i))]):
            rerun.append(i)
            store.append(BASE, {("t", i): _cell(i, pad=2000)})
        cells = ResultStore(tmp_path, schema=SCHEMA).read(BASE)
    assert sorted(rerun) == sorted({i for i in range(n_cells)} - {i for _, i in before})  # no refit
    assert sorted(cells) == [("t", i) for i in range(n_cells)]
    counts = _stored_ids(store.path)
    assert set(counts.values()) == {1} and len(counts) == n_cells
    assert all(cells[("t", i)] == _cell(i, pad=2000) for i in range(n_cells))
