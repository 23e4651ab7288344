"""The `causal-pp` command: exit codes, messages, never a traceback for a user error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from causal_pp.cli import main

FRONTDOOR = "U -> X; U -> Y; X -> Z -> Y"


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "causal_pp.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_identified_query_exits_0_and_prints_the_estimand(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["identify", "--graph", FRONTDOOR, "--latent", "U", "--do", "X", "--outcome", "Y"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("IDENTIFIED: P(Y | do(X))")
    assert "estimand: P(Y | do(X)) = Σ_{Z} P(Z | X) Σ_{X'} P(Y | Z, X') P(X')" in out


def test_refused_query_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["identify", "--graph", "Z -> X -> Y; X <-> Y", "--do", "X", "--outcome", "Y", "--given", "Z"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("NOT IDENTIFIED: P(Y | do(X), Z)")
    assert "X <-> Y" in out


def test_conditional_query_identified(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["identify", "--graph", "X -> Z -> Y; X <-> Z", "--do", "X", "--outcome", "Y", "--given", "Z"]
    )
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--graph", "X -> Y -> X", "--do", "X", "--outcome", "Y"], "directed cycle X -> Y -> X"),
        (["--graph", FRONTDOOR, "--latent", "U", "--do", "U", "--outcome", "Y"], "latent"),
        (["--graph", FRONTDOOR, "--do", "Q", "--outcome", "Y"], "'Q'"),
        (["--graph", FRONTDOOR, "--latent", "V", "--do", "X", "--outcome", "Y"], "latent variable 'V'"),
        (["--graph", FRONTDOOR, "--do", "X=abc", "--outcome", "Y"], "not a number"),
        (["--graph", "X -> ", "--do", "X", "--outcome", "Y"], "cannot read"),
        (["--graph", FRONTDOOR, "--do", "Y", "--outcome", "Y"], "both an outcome and intervened on"),
    ],
    ids=["cycle", "latent-do", "unknown", "unknown-latent", "bad-value", "parse", "overlap"],
)
def test_bad_input_exits_2_without_traceback(args: list[str], needle: str) -> None:
    proc = run(["identify", *args])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("causal-pp: error:")
    assert needle in proc.stderr


def test_console_script_module_entry_point() -> None:
    proc = run(["identify", "--graph", "X -> Y", "--do", "X", "--outcome", "Y"])
    assert proc.returncode == 0, proc.stderr


def test_cases_lists_every_case_with_its_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    from causal_pp.cases import registry

    assert main(["cases"]) == 0
    out = capsys.readouterr().out
    for name in registry():
        assert f"{name}:" in out
    assert "NOT identified" in out  # the bow negative control


TINY_FIT = ["--fit", "num_steps=8", "--fit", "restarts=1", "--fit", "num_samples=50", "--num-units", "100"]


def test_converge_prints_a_table_and_writes_plot_and_report(tmp_path, capsys) -> None:
    code = main(
        [
            "converge",
            "--case",
            "frontdoor",
            "--sizes",
            "20,40",
            "--replicates",
            "1",
            "--quiet",
            *TINY_FIT,
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "mean_abs_error" in out and "flagged" in out
    assert "2 cell(s) failed a diagnostic" in out  # 8 SVI steps: every cell is flagged
    assert (tmp_path / "convergence.png").stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# causal_pp convergence report") and "2 flagged cell(s)" in report
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 2


def test_converge_shards_merge_into_one_table_without_refitting(tmp_path, capsys) -> None:
    args = ["converge", "--case", "frontdoor", "--sizes", "20,40", "--replicates", "2", "--quiet", *TINY_FIT]
    assert main([*args, "--replicate-range", "0:1", "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--replicate-range", "1:2", "--out", str(tmp_path / "b"), "--json"]) == 0
    capsys.readouterr()
    assert (
        main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m"), "--json"]) == 0
    )
    merged = json.loads(capsys.readouterr().out)
    assert merged["cells"] == 4 and merged["key_spaces"] == 1
    assert main([*args, "--out", str(tmp_path / "m"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (only,) = result["studies"]
    assert only["by_size"]["20"]["replicates"] == 2 and only["by_size"]["40"]["replicates"] == 2
    assert len((tmp_path / "m" / "cells.jsonl").read_text().splitlines()) == 4  # nothing refitted


def test_converge_runs_a_users_model_by_import_path(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "my_models.py").write_text(
        "import types\n"
        "from causal_pp.cases import get_case\n"
        "_case = get_case('frontdoor')\n"
        "frontdoor = types.SimpleNamespace(model=_case.model, query=_case.queries['ate'].query,\n"
        "                                  simulate=_case.simulate, truth=-1.5, name='my_frontdoor')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(
        [
            "converge",
            "--model",
            "my_models:frontdoor",
            "--sizes",
            "20",
            "--replicates",
            "1",
            "--quiet",
            *TINY_FIT,
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    assert code == 0
    (only,) = json.loads(capsys.readouterr().out)["studies"]
    assert only["target"] == "my_frontdoor" and only["truth"] == -1.5


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--case", "frontdoor", "--replicates", "2", "--replicate-range", "2:1"], "--replicate-range"),
        (["--case", "frontdoor", "--replicate-range", "a:b"], "START:STOP"),
        (["--case", "frontdoor", "--fit", "nonsense=1"], "not an option"),
        (["--case", "frontdoor", "--fit", "num_steps"], "OPTION=VALUE"),
        (["--case", "frontdoor", "--executor", "process", "--workers", "0"], "--workers"),
        (["--case", "frontdoor", "--ray-address", "auto"], "--executor ray"),
        (["--case", "frontdoor", "--prob", "1.5"], "prob"),
        (["--model", "no_such_module_xyz:case"], "cannot import"),
        (["--model", "causal_pp.cases"], "MODULE:ATTRIBUTE"),
        (["--model", "causal_pp.cases:no_such_thing"], "no attribute"),
    ],
    ids=[
        "range",
        "range-text",
        "fit-option",
        "fit-syntax",
        "workers",
        "ray-address",
        "prob",
        "import",
        "path",
        "attr",
    ],
)
def test_converge_bad_input_exits_2_and_creates_nothing(tmp_path, capsys, args, needle) -> None:
    out = tmp_path / "out"
    assert main(["converge", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("causal-pp: error:") and needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_merge_bad_sources_exit_2_and_create_nothing(tmp_path, capsys) -> None:
    assert main(["merge", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["merge", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert "holds no cells.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_converge_refuses_a_non_identified_case_without_opt_in(tmp_path) -> None:
    proc = run(["converge", "--case", "bow", "--sizes", "20", "--replicates", "1", "--out", str(tmp_path)])
    assert proc.returncode == 2
    assert "not identifiable" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "cells.jsonl").exists()


def test_converge_unknown_case_exits_2(tmp_path) -> None:
    proc = run(["converge", "--case", "frontdor", "--out", str(tmp_path)])
    assert proc.returncode == 2 and "frontdoor" in proc.stderr and "Traceback" not in proc.stderr
