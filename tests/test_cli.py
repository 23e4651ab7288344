"""The `causal-pp` command: exit codes, messages, never a traceback for a user error."""

from __future__ import annotations

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
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "mean_abs_error" in out
    assert (tmp_path / "convergence.png").stat().st_size > 0
    assert (tmp_path / "report.md").read_text().startswith("# causal_pp convergence report")
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2


def test_converge_refuses_a_non_identified_case_without_opt_in(tmp_path) -> None:
    proc = run(["converge", "--case", "bow", "--sizes", "20", "--replicates", "1", "--out", str(tmp_path)])
    assert proc.returncode == 2
    assert "not identifiable" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results.jsonl").exists()


def test_converge_unknown_case_exits_2(tmp_path) -> None:
    proc = run(["converge", "--case", "frontdor", "--out", str(tmp_path)])
    assert proc.returncode == 2 and "frontdoor" in proc.stderr and "Traceback" not in proc.stderr
