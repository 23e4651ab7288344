"""Batched fitting (:func:`causal_pp.fit_many`): batch cost and scaling with N (issue #15 targets).

Two measurements on the built-in front-door case (linear-Gaussian, one latent confounder):

* **batch** -- wall time of ``fit_many`` on R data sets of size N against one ``fit`` of one data
  set of the same size (the default SVI schedule, importance correction included). Target:
  R = 20 at N = 200 in <= 2x the time of one fit on a 2-core CPU.
* **scale** -- wall time of one ``fit`` against N (default 10^3, 10^4, 10^5) and the log-log slope
  of time against N. Target: slope <= 1.1. With a CUDA device, N = 10^6 too (target < 60 s).

Every fit runs with the library's defaults apart from ``progress_bar``; the same seeds every run.
One untimed fit comes first (since 2026-12-02; earlier results timed the process's first fit as
the "one fit", imports and JIT warm-up included).
Results (a table, JSON with the machine, the command and the load average) go to
``benchmarks/results/fit_many_speed-<label>-<timestamp>.{json,md}``.

Usage::

    python benchmarks/fit_many_speed.py                  # batch (R = 20, N = 200 and 1000) + scale
    python benchmarks/fit_many_speed.py --quick          # smoke: R = 4, N = 200, scale to 10^4
    python benchmarks/fit_many_speed.py --device cuda    # on a GPU (adds N = 10^6 to the scale)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from provenance import code_version

from causal_pp import fit_many
from causal_pp.cases import get_case


def _machine(device: str) -> dict[str, Any]:
    import pyro

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "device": device,
        "load_average_at_start": list(os.getloadavg()),
        "code": code_version(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def batch_rows(sizes: list[int], replicates: int, device: str) -> list[dict[str, Any]]:
    """One fit vs fit_many of ``replicates`` data sets, at each N."""
    case = get_case("frontdoor")
    rows = []
    # untimed: the first fit in a process pays for imports and, on a GPU, the CUDA context and
    # kernel loading, which neither timed fit below should carry
    case.model.fit(case.simulate(50, seed=0), method="svi", seed=0, device=device, progress_bar=False)
    for n in sizes:
        data = [case.simulate(n, seed=s) for s in range(replicates)]
        one_s, post = _timed(case.model.fit, data[0], method="svi", seed=0, device=device, progress_bar=False)
        many_s, posts = _timed(
            fit_many, case.model, data, seeds=range(replicates), device=device, progress_bar=False
        )
        truth = case.queries["ate"].truth
        errors = [abs(p.estimate(case.queries["ate"].query, seed=0).mean - truth) for p in posts[:5]]
        rows.append(
            {
                "measure": "batch",
                "n": n,
                "replicates": replicates,
                "one_fit_s": one_s,
                "batch_s": many_s,
                "ratio": many_s / one_s,
                "per_data_set_s": many_s / replicates,
                "one_fit_steps": post.diagnostics.get("num_steps"),
                "batch_steps_max": max(p.diagnostics.get("num_steps") or 0 for p in posts),
                "mean_abs_error_first5": float(np.mean(errors)),
                "target": "ratio <= 2 (N = 200, R = 20, 2-core CPU)",
            }
        )
        print(
            f"batch  N={n:>7} R={replicates}: one fit {one_s:6.1f} s, {replicates} fits {many_s:6.1f} s "
            f"-> {many_s / one_s:4.2f}x",
            flush=True,
        )
    return rows


def scale_rows(sizes: list[int], device: str) -> list[dict[str, Any]]:
    """Time of one fit against N, and the log-log slope."""
    case = get_case("frontdoor")
    rows = []
    for n in sizes:
        data = case.simulate(n, seed=0)
        secs, post = _timed(case.model.fit, data, method="svi", seed=0, device=device, progress_bar=False)
        rows.append({"measure": "scale", "n": n, "fit_s": secs, "steps": post.diagnostics.get("num_steps")})
        print(f"scale  N={n:>8}: {secs:7.1f} s ({post.diagnostics.get('num_steps')} steps)", flush=True)
    if len(rows) >= 2:
        x = np.log([r["n"] for r in rows])
        y = np.log([r["fit_s"] for r in rows])
        slope = float(np.polyfit(x, y, 1)[0])
        per_step = np.log([r["fit_s"] / max(1, r["steps"] or 1) for r in rows])
        slope_per_step = float(np.polyfit(x, per_step, 1)[0])
        for r in rows:
            r["loglog_slope"] = slope
            r["loglog_slope_per_step"] = slope_per_step
            r["target"] = "slope <= 1.1"
        print(
            f"scale  log-log slope of time vs N: {slope:.2f} (per SVI step: {slope_per_step:.2f})", flush=True
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: R = 4, N = 200, scale up to 10^4")
    p.add_argument("--device", default="cpu")
    p.add_argument("--replicates", type=int, default=None)
    p.add_argument("--batch-sizes", default=None, help="N for the batch measure (default 200,1000)")
    p.add_argument("--scale-sizes", default=None, help="N for the scale measure (default 1000,10000,100000)")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")  # diagnostics are in the posteriors; the table is the output

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here.")
    replicates = args.replicates or (4 if args.quick else 20)
    bsizes = [int(v) for v in (args.batch_sizes or ("200" if args.quick else "200,1000")).split(",")]
    default_scale = (
        "1000,10000" if args.quick else ("1000,10000,100000,1000000" if cuda else "1000,10000,100000")
    )
    ssizes = [int(v) for v in (args.scale_sizes or default_scale).split(",")]
    command = " ".join(["python", *sys.argv])
    machine = _machine(args.device)
    print(f"command: {command}\nmachine: {machine}\n", flush=True)

    t0 = time.perf_counter()
    rows = batch_rows(bsizes, replicates, args.device) + scale_rows(ssizes, args.device)
    meta = {
        "command": command,
        "machine": machine,
        "wall_seconds": time.perf_counter() - t0,
        "load_average_at_end": list(os.getloadavg()),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    label = "quick" if args.quick else ("cuda" if cuda else "full")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = out / f"fit_many_speed-{label}-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=float))
    lines = ["| measure | N | R | one fit s | batch s | ratio | fit s | slope |", "|---" * 8 + "|"]
    for r in rows:

        def f(k: str, r: dict[str, Any] = r) -> str:
            v = r.get(k)
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

        lines.append(
            f"| {r['measure']} | {r['n']} | {r.get('replicates', '')} | {f('one_fit_s')} | {f('batch_s')} | "
            f"{f('ratio')} | {f('fit_s')} | {f('loglog_slope')} |"
        )
    lines += ["", f"Command: `{command}`; machine: {machine}. Generated by benchmarks/fit_many_speed.py."]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {base}.json and {base}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
