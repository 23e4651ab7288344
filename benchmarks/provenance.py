"""What code a benchmark measured: the causal_pp it imported, its git commit, and whether that
checkout had uncommitted changes to tracked files.

Every benchmark writes this beside the machine (``"code"`` in its JSON), so that a recorded figure
can be traced to the code that produced it (a snapshot worktree run with ``PYTHONPATH`` records
the snapshot's commit, not the main checkout's).

Usage, from a script in this folder (which ``python benchmarks/<script>.py`` puts on the path)::

    from provenance import code_version

    info["code"] = code_version()
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def code_version() -> dict[str, Any]:
    """The imported causal_pp's version (with its results revision) and folder, and its
    checkout's commit and state (None where it is not a git checkout, e.g. an installed wheel:
    the version then says what it is)."""
    import causal_pp
    from causal_pp.version import RESULTS_REVISION

    root = Path(causal_pp.__file__).resolve().parent.parent
    out: dict[str, Any] = {
        "causal_pp": f"{causal_pp.__version__}+r{RESULTS_REVISION}",
        "path": str(root),
        "commit": None,
        "uncommitted_changes": None,
    }

    def git(*args: str) -> str:
        cmd = ["git", "-C", str(root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        out["commit"] = git("rev-parse", "HEAD")
        out["uncommitted_changes"] = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        pass
    return out
