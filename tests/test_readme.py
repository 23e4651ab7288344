"""The README's Python examples run as written, and its two commands stay in sync with CI."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAUSAL_PP_SMOKE", "1")
    with warnings.catch_warnings():
        if "def frontdoor(n)" in code:
            # The model example is a clean fit: no warning of ours or torch's (as with
            # `python -W error::UserWarning -W error::FutureWarning`).
            warnings.simplefilter("error", UserWarning)
            warnings.simplefilter("error", FutureWarning)
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    test_cmd = next(c for c in commands if "pytest" in c).strip().split("&& ")[-1]
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_readme_quotes_the_paper_reproduction_table_verbatim() -> None:
    # The table is generated (benchmarks/paper_reproduction.py --readme README.md), never typed.
    begin = "<!-- paper-reproduction:begin (written by benchmarks/paper_reproduction.py --readme) -->"
    end = "<!-- paper-reproduction:end -->"
    assert begin in README and end in README
    quoted = README.split(begin, 1)[1].split(end, 1)[0].strip()
    table = ROOT / "benchmarks" / "results" / "paper_reproduction" / "table.md"
    if not table.exists():
        pytest.skip("no committed paper-reproduction results")
    assert quoted == table.read_text().strip()
