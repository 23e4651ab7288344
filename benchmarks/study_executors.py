"""Wall time of one study grid on each executor: serial vs a process pool vs a local Ray.

The same grid (case, sizes, replicates, seed, fit options) is run three times from scratch --
``executor="serial"``, ``executor="process"`` with ``--workers`` workers, and
``executor="ray"`` on a local Ray started by the script with ``--workers`` CPUs (Ray's start-up
is inside the timed call) -- and the wall times, their ratios to serial, and whether every
executor returned the serial run's cells (wall-clock fields aside) are recorded, with the
machine, its load average before and after each run, the versions and the command, in
``benchmarks/results/study_executors-<date>.json``.

Usage::

    python benchmarks/study_executors.py                      # frontdoor, N in {100, 200}, 4 replicates
    python benchmarks/study_executors.py --replicates 2 --sizes 50,100 --fit num_steps=200

On a machine shared with other work the ratios move with the load: read them with the load
averages recorded beside them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from provenance import code_version

HERE = Path(__file__).resolve().parent


def _machine() -> dict[str, Any]:
    import pyro
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    import causal_pp

    return {
        "code": code_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "ray": ray_version,
        "causal_pp": causal_pp.__version__,
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _comparable(cells: dict) -> dict:
    from causal_pp.convergence.cells import TIMING_KEYS

    out = {}
    for key, cell in cells.items():
        cell = {k: v for k, v in cell.items() if k not in TIMING_KEYS}
        cell["fit_diagnostics"] = {k: v for k, v in cell["fit_diagnostics"].items() if k not in TIMING_KEYS}
        out[str(key)] = json.dumps(cell, sort_keys=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", default="frontdoor")
    p.add_argument("--query", default=None)
    p.add_argument("--sizes", default="100,200")
    p.add_argument("--replicates", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fit", action="append", default=[], metavar="OPTION=VALUE", help="fit option (JSON value)"
    )
    p.add_argument("--executors", default="serial,process,ray")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    from causal_pp.cases import get_case
    from causal_pp.convergence import study

    fit_kwargs = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.fit)}
    grid = {
        "case": args.case,
        "query": args.query,
        "sizes": [int(s) for s in args.sizes.split(",")],
        "replicates": args.replicates,
        "seed": args.seed,
        "fit_kwargs": fit_kwargs,
    }
    started = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    record: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "started": started,
        "machine": _machine(),
        "grid": grid,
        "workers": args.workers,
        "runs": [],
    }
    print(f"command: {record['command']}\nmachine: {record['machine']}\ngrid: {grid}", flush=True)
    reference = None
    for name in args.executors.split(","):
        if name == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray: not installed, skipped (pip install 'causal-pp[ray]')", flush=True)
                continue
        options = {} if name == "serial" else {"workers": args.workers}
        load_before = _load()
        t0 = time.perf_counter()
        s = study(
            get_case(args.case),
            args.query,
            sizes=grid["sizes"],
            replicates=args.replicates,
            seed=args.seed,
            fit_kwargs=fit_kwargs,
            progress=False,
            executor=name,
            **options,
        )
        wall = time.perf_counter() - t0
        cells = _comparable(s.cells)
        reference = reference if reference is not None else cells
        run = {
            "executor": name,
            "workers": options.get("workers", 1),
            "wall_seconds": round(wall, 2),
            "fit_seconds_sum": round(float(s.table["fit_seconds"].sum()), 2),
            "cells": len(s.table),
            "flagged_cells": int(s.table["flagged"].sum()),
            "identical_to_first_run": cells == reference,
            "load_average_before": load_before,
            "load_average_after": _load(),
        }
        record["runs"].append(run)
        print(json.dumps(run), flush=True)
    serial = next((r["wall_seconds"] for r in record["runs"] if r["executor"] == "serial"), None)
    if serial:
        for r in record["runs"]:
            r["speedup_vs_serial"] = round(serial / r["wall_seconds"], 3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"study_executors-{started}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    for r in record["runs"]:
        print(
            f"{r['executor']:>8}: {r['wall_seconds']:7.1f} s  x{r.get('speedup_vs_serial', float('nan')):.2f} "
            f"vs serial  identical={r['identical_to_first_run']}  load {r['load_average_before'][0]:.2f}"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
