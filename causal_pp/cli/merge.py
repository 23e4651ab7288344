"""``causal-pp merge``: gather the results folders of several runs (shards) into one.

Each source is checked (a folder holding ``cells.jsonl``) before the target folder is created.
Cells are keyed by their settings, so shards of one study (``converge --replicate-range``) fill
one key space; then ``converge`` with the full ``--replicates`` and ``--out MERGED`` prints the
whole table without fitting anything.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, UsageError, emit_json, writable_folder

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register the subcommand."""
    m = sub.add_parser("merge", help="merge the results folders of several converge runs (shards) into one")
    m.add_argument("sources", nargs="+", metavar="FOLDER", help="--out folders of converge runs")
    m.add_argument("--out", required=True, help="the merged folder (created if needed; cells are appended)")
    m.add_argument("--json", action="store_true", help="print what was merged as JSON")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Merge; print how many cells came from each source."""
    from pathlib import Path

    from ..convergence.merge import merge_results
    from ..convergence.records import STORE_FILE

    for source in args.sources:
        p = Path(source)
        if not p.is_dir():
            raise UsageError(f"{source!r} is not a folder; give the --out folders of converge runs.")
        if not (p / STORE_FILE).is_file():
            raise UsageError(f"{source!r} holds no {STORE_FILE}; give the --out folders of converge runs.")
    out = writable_folder(args.out)
    report = merge_results(args.sources, out)
    if args.json:
        emit_json(
            {
                "out": str(report.out),
                "added": report.added,
                "cells": report.cells,
                "key_spaces": report.key_spaces,
            }
        )
        return EXIT_OK
    for source, added in report.added.items():
        print(f"{source}: {added} new cell(s)")
    print(f"{report.out}: {report.cells} cell(s) in {report.key_spaces} key space(s)")
    return EXIT_OK
