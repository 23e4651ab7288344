"""Reproduce the case studies of Mohammad-Taheri et al. (Bioinformatics 2022) with causal_pp.

For each case study (multi-cause, napkin, IGF, SARS-CoV-2 with two queries) this runs a
convergence study -- simulate N rows from the ground-truth SCM, fit the latent variable model,
estimate E[Y | do(x)] -- and prints our mean absolute error (posterior mean, and the paper's
plug-in estimator) beside the paper's published mean AE, with wall times. Results are written
under ``--out`` cell by cell (an interrupted run resumes), with a table (CSV + markdown), a
plot per case and a JSON file recording the command and the machine.

The paper's protocol: N up to 200, 20 replicates. Run on demand; e.g.::

    python benchmarks/paper_reproduction.py                       # the full protocol
    python benchmarks/paper_reproduction.py --sizes 50,200 --replicates 3   # a reduced run

Published mean AEs (from shared/notes/paper-case-studies.md) are given for the paper's smallest
N ("small") and for N = 200 only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

# The paper's published mean absolute errors: {target: (at the smallest N, at N = 200)}.
PUBLISHED = {
    "multicause/y_do_x0": (0.074, 0.039),
    "napkin/y_do_x1": (1.4, 0.46),
    "igf/erk_do_sos70": (0.38, 0.25),
    "sars_cov2/cytok_do_sil6r20": (0.058, 0.030),
    "sars_cov2/cytok_do_egfr20": (0.149, 0.044),
}


def _machine() -> dict[str, object]:
    import pyro
    import torch

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="25,50,100,200")
    p.add_argument("--replicates", type=int, default=20)
    p.add_argument("--method", default="svi", choices=["svi", "nuts"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default=",".join(PUBLISHED), help="comma-separated case/query names")
    p.add_argument("--out", default="benchmarks/results/paper_reproduction")
    args = p.parse_args(argv)

    from causal_pp.cases import get_case
    from causal_pp.convergence import study, write_report

    sizes = [int(s) for s in args.sizes.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", *sys.argv])
    meta = {"command": command, "machine": _machine(), "sizes": sizes, "replicates": args.replicates}
    print(f"command: {command}\nmachine: {meta['machine']}\n", flush=True)

    rows, studies = [], []
    for target in args.targets.split(","):
        case_name, query_name = target.split("/")
        t0 = time.perf_counter()
        s = study(
            get_case(case_name),
            query_name,
            sizes=sizes,
            replicates=args.replicates,
            method=args.method,
            seed=args.seed,
            out=out / target.replace("/", "__"),
        )
        wall = time.perf_counter() - t0
        studies.append(s)
        summary = s.summary()
        small, at200 = PUBLISHED.get(target, (None, None))
        for n, r in summary.iterrows():
            rows.append(
                {
                    "target": target,
                    "n": n,
                    "replicates": int(r["replicates"]),
                    "truth": s.truth,
                    "ours_mean_ae": r["mean_abs_error"],
                    "ours_plugin_ae": r["plugin_abs_error"],
                    "coverage": r["coverage"],
                    "paper_ae": at200 if n == 200 else (small if n == min(sizes) else None),
                    "fit_seconds_mean": r["fit_seconds"],
                }
            )
        print(f"{target}: truth {s.truth:.4g}, wall {wall:.0f} s (including resumed cells)", flush=True)
        print(
            summary[["mean_abs_error", "plugin_abs_error", "coverage", "fit_seconds"]].to_string(), flush=True
        )

    table = pd.DataFrame(rows)
    table.to_csv(out / "table.csv", index=False)
    write_report(studies, out)
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nwrote {out / 'table.csv'}, {out / 'report.md'}, {out / 'convergence.png'}, {out / 'meta.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
