"""SVI's tempered correction against NUTS where the importance correction degenerates (issue #15).

On a case whose posterior of the globals is far from Gaussian (default: multi-cause, several
latents per unit and binary data: SVI's importance weights degenerate in every cell of the paper
protocol), per data set:

* ``nuts``: the library's NUTS on the full latent model (the reference), its R-hat and time;
* ``guide``: ``SVI()`` (the default, ``tempering=False``): the guide's own draws, which a
  degenerate correction keeps;
* ``tempered``: ``SVI(tempering=True)``: the draws walked to the posterior by tempered SMC
  (:mod:`causal_pp.inference.tempered`).

Each SVI method runs with several fit seeds (``--fit-seeds``), so the table shows how much the
answer moves with the seed as well as how far it is from NUTS. Reported per fit: the posterior
mean and SD of the case's first query (``posterior.estimate``, seed 0), the shift of the mean in
reference SDs, the SD ratio, which correction was used and its diagnostics, and the fit time.

``--mode coverage`` instead runs a convergence study per method (``causal_pp.convergence.study``,
the same simulated data sets for both: ``--replicates`` at each of ``--sizes``, batched fits) and
reports coverage of the 94% interval, mean absolute error, posterior SD and fit time per method.

Usage::

    python benchmarks/tempering.py                          # multicause, N = 60, data seeds 0-2
    python benchmarks/tempering.py --sizes 60 --seeds 1 --fit-seeds 0,1,2
    python benchmarks/tempering.py --mode coverage --sizes 100 --replicates 100

Writes CSV (rows as they finish, ``*.csv.part`` while running) and JSON (machine, command, date,
settings, wall time, summary) to ``benchmarks/results/tempering-<date>.*``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import causal_pp as cp
from causal_pp.cases import get_case
from causal_pp.inference import NUTS, SVI

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fit_speed import machine_info  # noqa: E402

COLS = ["case", "n", "seed", "method", "fit_seed", "mean", "sd", "shift_sd", "sd_ratio", "is_method",
        "is_ess", "temper_stages", "temper_acceptance", "max_r_hat", "time_s"]  # fmt: skip


def ints(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    return [int(x) for x in text.split(",")]


def _fit(case: Any, data: Any, method: Any, seed: int) -> dict[str, Any]:
    """One fit and the estimate of the case's first query."""
    query = next(iter(case.queries.values())).query
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = cp.fit(case.model, data, method=method, seed=seed, progress_bar=False, threads=1)
    seconds = time.perf_counter() - t0
    s = post.estimate(query, seed=0).samples.double()
    d = post.diagnostics
    return {
        "mean": float(s.mean()),
        "sd": float(s.std()),
        "is_method": d.get("is_method", "none") if d.get("is_corrected") else "none",
        "is_ess": d.get("is_ess"),
        "temper_stages": d.get("is_temper_stages"),
        "temper_acceptance": d.get("is_temper_acceptance"),
        "max_r_hat": d.get("max_r_hat"),
        "time_s": seconds,
    }


def _coverage(args: argparse.Namespace, meta: dict[str, Any], base: Path) -> int:
    """Coverage, error and time of each method over many data sets (one study per method)."""
    from causal_pp.convergence import study

    rows = []
    t_start = time.perf_counter()
    for name in args.cases.split(","):
        for method, temper in (("guide", False), ("tempered", True)):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = study(
                    get_case(name),
                    sizes=[int(x) for x in args.sizes.split(",")],
                    replicates=args.replicates,
                    seed=args.study_seed,
                    fit_kwargs={"tempering": temper},
                    out=base.parent / f"{base.name}-cells" / f"{name}-{method}",
                    progress=False,
                )
            wall = time.perf_counter() - t0
            t = s.table
            for n, r in s.summary().iterrows():
                cells = t[t["n"] == n]
                source = cells.get("fit_is_method", pd.Series("none", index=cells.index)).fillna("none")
                how = source.where(cells["fit_is_corrected"].fillna(False).astype(bool), "none")
                row = {"case": name, "n": int(n), "method": method, "replicates": int(r["replicates"]),
                       "coverage": r["coverage"], "mean_abs_error": r["mean_abs_error"],
                       "posterior_sd": r["posterior_sd"], "fit_seconds": r["fit_seconds"],
                       "corrected_by": how.value_counts().to_dict(), "study_wall_s": wall}  # fmt: skip
                rows.append(row)
                print(row, flush=True)
    meta["rows"] = rows
    meta["wall_seconds"] = time.perf_counter() - t_start
    base.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
    print(f"wrote {base}.json ({meta['wall_seconds'] / 60:.1f} min)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="multicause")
    p.add_argument("--sizes", default="60")
    p.add_argument("--seeds", default="0,1,2", help="data seeds")
    p.add_argument("--fit-seeds", default="0,1,2", help="SVI seeds per data set")
    p.add_argument("--nuts-samples", type=int, default=1000)
    p.add_argument("--nuts-warmup", type=int, default=1000)
    p.add_argument("--nuts-chains", type=int, default=2)
    p.add_argument("--mode", choices=["compare", "coverage"], default="compare")
    p.add_argument("--replicates", type=int, default=100, help="coverage mode: data sets per N")
    p.add_argument("--study-seed", type=int, default=7, help="coverage mode: the studies' master seed")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"tempering-{stamp}"
    part = base.with_suffix(".csv.part")
    meta = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": stamp,
        "machine": {**machine_info(), "causal_pp": cp.__version__},
    }
    meta["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    if args.mode == "coverage":
        return _coverage(args, meta, args.out / f"tempering-coverage-{stamp}")
    nuts = NUTS(num_samples=args.nuts_samples, warmup_steps=args.nuts_warmup, num_chains=args.nuts_chains)
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    with part.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLS, extrasaction="ignore")
        writer.writeheader()
        for name in args.cases.split(","):
            case = get_case(name)
            for n in ints(args.sizes):
                for seed in ints(args.seeds):
                    data = case.simulate(n, seed=seed)
                    ref = _fit(case, data, nuts, 0)
                    todo = [("nuts", 0, ref)]
                    for fs in ints(args.fit_seeds):
                        todo.append(("guide", fs, _fit(case, data, SVI(tempering=False), fs)))
                        todo.append(("tempered", fs, _fit(case, data, SVI(tempering=True), fs)))
                    for method, fs, r in todo:
                        row = {"case": name, "n": n, "seed": seed, "method": method, "fit_seed": fs, **r}
                        row["shift_sd"] = (r["mean"] - ref["mean"]) / ref["sd"]
                        row["sd_ratio"] = r["sd"] / ref["sd"]
                        rows.append(row)
                        writer.writerow(row)
                        fh.flush()
                        print(
                            f"{name} N={n} seed {seed} {method:8s} fit seed {fs}: mean {r['mean']:.4f} "
                            f"sd {r['sd']:.4f} shift {row['shift_sd']:+.2f} SD, ratio {row['sd_ratio']:.2f}, "
                            f"{r['is_method']}, {r['time_s']:.0f} s",
                            flush=True,
                        )
    summary = {}
    for method in ("guide", "tempered"):
        sel = [r for r in rows if r["method"] == method]
        summary[method] = {
            "fits": len(sel),
            "mean_abs_shift_sd": float(np.mean([abs(r["shift_sd"]) for r in sel])),
            "max_abs_shift_sd": float(np.max([abs(r["shift_sd"]) for r in sel])),
            "mean_sd_ratio": float(np.mean([r["sd_ratio"] for r in sel])),
            "min_sd_ratio": float(np.min([r["sd_ratio"] for r in sel])),
            "corrected_by": {
                m: sum(r["is_method"] == m for r in sel) for m in ("importance", "tempered", "none")
            },
            "mean_time_s": float(np.mean([r["time_s"] for r in sel])),
        }
        print(f"{method}: {summary[method]}")
    meta["summary"] = summary
    meta["reference_max_r_hat"] = [r["max_r_hat"] for r in rows if r["method"] == "nuts"]
    meta["wall_seconds"] = time.perf_counter() - t_start
    part.rename(base.with_suffix(".csv"))
    base.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
    print(f"wrote {base}.csv and .json ({meta['wall_seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
