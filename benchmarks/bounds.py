"""Speed of the posterior bounds: seconds per posterior draw on three graphs.

Each case simulates discrete data from a fixed SCM, then times one call of
``causal_pp.bounds`` (the whole pipeline: validation, tabulation, the canonical model,
posterior draws and two linear programs per draw), reporting wall-clock and CPU seconds, the
time per draw, the acceptance rate and the posterior means of the two ends.

* ``iv``  -- Z -> X -> Y, X <-> Y (Balke-Pearl; 16 response types, 2 instrument values).
* ``bow`` -- X -> Y, X <-> Y (8 response types, no roots: no rejection step).
* ``six`` -- Z1, Z2 -> X -> M -> Y, W -> M, one latent U over X, M, Y: six observed variables,
  1,024 joint response types, 8 root configurations; W's exclusion from X is imposed on the
  draws and checked against the data.

Target (issue 16): 1,000 posterior draws for the IV graph in under 30 s on the project's 2-core CPU.

Usage::

    python benchmarks/bounds.py                  # 1000 draws for iv and bow, 200 for six
    python benchmarks/bounds.py --quick          # smoke check: 50 draws each

Results (a table, plus JSON and CSV with the machine and the command line) go to
``benchmarks/results/bounds-<stamp>.{json,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
from provenance import code_version

from causal_pp import ATE, CausalGraph
from causal_pp.partial import bounds

IV_TARGET_S = 30.0
"""Issue 16: 1000 posterior draws for the IV graph within this many seconds."""

GRAPHS = {
    "iv": CausalGraph.parse("Z -> X -> Y; X <-> Y"),
    "bow": CausalGraph.parse("X -> Y; X <-> Y"),
    "six": CausalGraph.parse(
        "Z1 -> X; Z2 -> X; X -> M; W -> M; M -> Y; U -> X; U -> M; U -> Y", latent=["U"]
    ),
}


def simulate(case: str, n: int, seed: int) -> pd.DataFrame:
    """Binary data from a fixed SCM of each graph (U is the latent confounder)."""
    rng = np.random.default_rng(seed)

    def bern(p: np.ndarray) -> np.ndarray:
        return (rng.random(n) < p).astype(int)

    u = rng.integers(0, 2, n)
    if case == "bow":
        x = bern(0.2 + 0.6 * u)
        return pd.DataFrame({"X": x, "Y": bern(0.1 + 0.4 * x + 0.4 * u)})
    if case == "iv":
        z = rng.integers(0, 2, n)
        x = bern(0.1 + 0.6 * z + 0.2 * u)
        return pd.DataFrame({"Z": z, "X": x, "Y": bern(0.1 + 0.4 * x + 0.4 * u)})
    z1, z2, w = (rng.integers(0, 2, n) for _ in range(3))
    x = bern(0.1 + 0.3 * z1 + 0.3 * z2 + 0.2 * u)
    m = bern(0.1 + 0.4 * x + 0.2 * w + 0.2 * u)
    return pd.DataFrame({"Z1": z1, "Z2": z2, "W": w, "X": x, "M": m, "Y": bern(0.1 + 0.5 * m + 0.3 * u)})


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    import causal_pp

    return {
        "code": code_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "causal_pp": causal_pp.__version__,
    }


def run(case: str, n: int, draws: int, seed: int) -> dict[str, Any]:
    data = simulate(case, n, seed)
    wall, cpu = time.perf_counter(), time.process_time()
    b = bounds(GRAPHS[case], ATE("X", "Y"), data, num_samples=draws, seed=seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "case": case,
        "graph": GRAPHS[case].to_string(),
        "N": n,
        "draws": draws,
        "wall_s": wall,
        "cpu_s": cpu,
        "ms_per_draw": 1000 * wall / draws,
        "acceptance": b.acceptance,
        "posterior": b.posterior,
        "sharp": b.sharp,
        "lower_mean": b.mean[0],
        "upper_mean": b.mean[1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    parser.add_argument("--draws", type=int, default=1000, help="posterior draws for iv and bow")
    parser.add_argument(
        "--six-draws", type=int, default=200, help="posterior draws for the six-variable graph"
    )
    parser.add_argument("--n", type=int, default=2000, help="units simulated per data set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke check: 50 draws each")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.draws = args.six_draws = 50

    info = machine_info()
    command = " ".join([os.path.basename(sys.executable), *sys.argv])
    print(f"# bounds speed ({dt.datetime.now().isoformat(timespec='seconds')})")
    print(f"# command: {command}")
    for k, v in info.items():
        print(f"# {k}: {v}")
    run("bow", 100, 5, args.seed)  # warm-up: imports and first HiGHS call are not timed
    header = f"{'case':<5} {'N':>6} {'draws':>6} {'wall s':>8} {'cpu s':>8} {'ms/draw':>8} {'accept':>7}  bounds (means)"
    print(header)
    print("-" * len(header))
    rows = []
    for case in args.cases:
        draws = args.six_draws if case == "six" else args.draws
        row = run(case, args.n, draws, args.seed)
        rows.append(row)
        print(
            f"{case:<5} {row['N']:>6} {draws:>6} {row['wall_s']:>8.2f} {row['cpu_s']:>8.2f} "
            f"{row['ms_per_draw']:>8.2f} {row['acceptance']:>7.3f}  [{row['lower_mean']:.4f}, {row['upper_mean']:.4f}]",
            flush=True,
        )
    iv = next((r for r in rows if r["case"] == "iv"), None)
    target = None
    if iv is not None:
        projected = iv["wall_s"] * 1000 / iv["draws"]
        target = {"iv_1000_draws_s": projected, "target_s": IV_TARGET_S, "met": projected < IV_TARGET_S}
        print(
            f"# IV: 1000 draws take {projected:.2f} s (target < {IV_TARGET_S:g} s): {'met' if target['met'] else 'MISSED'}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = "quick" if args.quick else "full"
    payload = {"command": command, "machine": info, "settings": vars(args), "target": target, "rows": rows}
    json_path = args.out / f"bounds-{tag}-{stamp}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    csv_path = args.out / f"bounds-{tag}-{stamp}.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"# wrote {json_path} and {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
