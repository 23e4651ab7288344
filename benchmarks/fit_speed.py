"""Fit speed and accuracy on the front-door model: causal_pp (NUTS, SVI) vs plain Pyro NUTS.

The model is the paper's Example 2 (Mohammad-Taheri et al. 2022): U ~ N(mu, 1) latent,
X = theta_UX U + e, M = theta_XM X + e, Y = theta_MY M + theta_UY U + e, with unit noise and
the paper's priors. Data are simulated with fixed true parameters; the analytic ATE of X on Y
is theta_XM * theta_MY.

For each N and method, on the same data and seed, the script reports the wall-clock and CPU
time of the fit and of the ATE estimate, the posterior mean and SD of the ATE, and its
absolute error. Methods:

* ``nuts``  -- ``model.fit(method="nuts")`` + ``posterior.estimate(ATE)``
* ``svi``   -- ``model.fit(method="svi")`` (adaptive SVI + importance correction, through the
  vectorised path of ``causal_pp.fit_many``: a batch of one data set) + estimate
* ``loop``  -- ``model.fit(method="svi", batched=False)``: the same SVI fit through Pyro's own SVI
  loop + estimate
* ``pyro``  -- what a user writes by hand: plain model, ``pyro.condition``, Pyro NUTS with
  ``jit_compile=True``, then ``pyro.do`` + ``Predictive`` on the global draws for each arm.

Usage::

    python benchmarks/fit_speed.py                 # N in {1000, 10000}, all methods
    python benchmarks/fit_speed.py --quick         # smoke check: N = 200, short runs
    python benchmarks/fit_speed.py --sizes 1000 --methods svi pyro

Results (a table, plus JSON and CSV with machine info and the command line) go to
``benchmarks/results/``.
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
import warnings
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from provenance import code_version
from pyro.infer import MCMC, NUTS, Predictive

from causal_pp import ATE, CausalGraph
from causal_pp.model import causal_model

TRUTH = {"mu": 1.0, "theta_UX": 0.8, "theta_XM": -0.7, "theta_MY": 1.2, "theta_UY": -1.5}
TRUE_ATE = TRUTH["theta_XM"] * TRUTH["theta_MY"]
GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"])
GLOBALS = ("mu", "theta_UX", "theta_XM", "theta_MY", "theta_UY")


def plain_frontdoor(n: int) -> None:
    """The front-door model as plain Pyro (the baseline uses this function as is)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    a = pyro.sample("theta_UX", dist.Normal(0.0, 1.0))
    b = pyro.sample("theta_XM", dist.Normal(0.0, 1.0))
    c = pyro.sample("theta_MY", dist.Normal(0.0, 10.0))
    d = pyro.sample("theta_UY", dist.Normal(0.0, 10.0))
    with pyro.plate("units", n, dim=-1):
        u = pyro.sample("U", dist.Normal(mu, 1.0))
        x = pyro.sample("X", dist.Normal(a * u, 1.0))
        m = pyro.sample("M", dist.Normal(b * x, 1.0))
        pyro.sample("Y", dist.Normal(c * m + d * u, 1.0))


frontdoor = causal_model(GRAPH)(plain_frontdoor)  # causal_pp.units(n) is this very plate


def simulate(n: int, seed: int) -> dict[str, torch.Tensor]:
    fixed = {k: torch.tensor(v) for k, v in TRUTH.items()}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        tr = pyro.poutine.trace(pyro.condition(plain_frontdoor, data=fixed)).get_trace(n)
    return {k: tr.nodes[k]["value"].detach() for k in ("X", "M", "Y")}


class Clock:
    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def run_causal_pp(
    method: str, data: dict[str, torch.Tensor], seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    options: dict[str, Any] = {"method": method, "seed": seed, "progress_bar": False}
    if method == "nuts":
        options.update(num_samples=args.num_samples, warmup_steps=args.warmup_steps)
    else:
        options.update(num_samples=args.num_samples)
    options["threads"] = None  # keep the benchmark's global setting
    options["device"] = args.device
    if method in ("svi", "loop") and args.svi_steps:
        options["num_steps"] = args.svi_steps
    with warnings.catch_warnings(record=True) as caught, Clock() as fit_clock:
        warnings.simplefilter("always")
        if method == "loop":
            options.update(method="svi", batched=False)
        posterior = frontdoor.fit(data, **options)
    with Clock() as est_clock:
        est = posterior.estimate(ATE("X", "Y", treated=1.0, control=0.0), num_units=args.num_units, seed=seed)
    d = posterior.diagnostics
    diag = (
        f"max r_hat {d['max_r_hat']:.3f}, min ESS {d['min_ess']:.0f}, divergences {d['divergences']}"
        if method == "nuts"
        else f"{d['num_steps']} steps, converged {d['converged']}, IS ESS {d.get('is_ess', float('nan')):.0f}"
    )
    return {
        "fit_wall_s": fit_clock.wall,
        "fit_cpu_s": fit_clock.cpu,
        "estimate_wall_s": est_clock.wall,
        "ate_mean": est.mean,
        "ate_sd": est.std,
        "ate_plugin": est.plugin,
        "diagnostics": diag,
        "warnings": [str(w.message)[:200] for w in caught if "causal_pp" in str(w.message)],
    }


def run_plain_pyro(data: dict[str, torch.Tensor], seed: int, args: argparse.Namespace) -> dict[str, Any]:
    n = next(iter(data.values())).shape[0]
    with warnings.catch_warnings(), Clock() as fit_clock:
        warnings.simplefilter("ignore")
        pyro.set_rng_seed(seed)
        kernel = NUTS(pyro.condition(plain_frontdoor, data=data), jit_compile=True, ignore_jit_warnings=True)
        mcmc = MCMC(
            kernel, num_samples=args.num_samples, warmup_steps=args.warmup_steps, disable_progbar=True
        )
        mcmc.run(n)
    samples = mcmc.get_samples()
    draws = {k: samples[k] for k in GLOBALS}
    with Clock() as est_clock:
        means = []
        for value in (1.0, 0.0):
            intervened = pyro.do(plain_frontdoor, data={"X": torch.tensor(value)})
            pred = Predictive(intervened, posterior_samples=draws, return_sites=["Y"])(args.num_units)
            means.append(pred["Y"].reshape(len(draws["mu"]), -1).mean(-1))
        ate = means[0] - means[1]
    diag = mcmc.diagnostics()
    r_hat = max(float(diag[k]["r_hat"]) for k in GLOBALS)
    ess = min(float(diag[k]["n_eff"]) for k in GLOBALS)
    return {
        "fit_wall_s": fit_clock.wall,
        "fit_cpu_s": fit_clock.cpu,
        "estimate_wall_s": est_clock.wall,
        "ate_mean": float(ate.mean()),
        "ate_sd": float(ate.std()),
        "ate_plugin": float("nan"),
        "diagnostics": f"max r_hat {r_hat:.3f}, min ESS {ess:.0f}",
        "warnings": [],
    }


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (float("nan"),) * 3
    import chirho

    return {
        "code": code_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in load],
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "chirho": getattr(chirho, "__version__", "0.3.0"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["nuts", "svi", "loop", "pyro"],
        choices=["nuts", "svi", "loop", "pyro"],
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--warmup-steps", type=int, default=500)
    parser.add_argument("--svi-steps", type=int, default=None, help="fixed SVI steps (default: adaptive)")
    parser.add_argument("--num-units", type=int, default=1000, help="fresh units per draw in the estimate")
    parser.add_argument("--quick", action="store_true", help="smoke check: N = 200, short runs")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for every method (causal_pp's fit uses 1 by default below 20000 units)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="device of causal_pp's fits ('cpu', 'cuda', 'cuda:1'); the plain-Pyro baseline runs on the CPU",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.sizes, args.num_samples, args.warmup_steps = [200], 100, 100
        args.svi_steps = args.svi_steps or 400
        args.num_units = 200

    info = machine_info()
    command = " ".join([os.path.basename(sys.executable), *sys.argv])
    print(f"# front-door fit speed ({dt.datetime.now().isoformat(timespec='seconds')})")
    print(f"# command: {command}")
    for k, v in info.items():
        print(f"# {k}: {v}")
    print(f"# true ATE = {TRUE_ATE:g}; NUTS: {args.num_samples} draws after {args.warmup_steps} warmup steps")
    # one small untimed run per method first: the one-off costs of a session (imports such as
    # ArviZ's on a fit's first importance correction, first JIT traces) are not a fit's
    print("# warm-up: one untimed fit per method on N = 100 before the timed runs")
    small = argparse.Namespace(
        **{**vars(args), "num_samples": 20, "warmup_steps": 20, "svi_steps": 40, "num_units": 50}
    )
    for method in args.methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (run_plain_pyro if method == "pyro" else lambda d, s, a, m=method: run_causal_pp(m, d, s, a))(
                simulate(100, seed=args.seed + 1), args.seed, small
            )
    rows = []
    header = f"{'N':>6} {'method':<6} {'fit s':>8} {'cpu s':>8} {'est s':>6} {'ATE':>8} {'sd':>7} {'|err|':>7}  diagnostics"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        data = simulate(n, seed=args.seed)
        for method in args.methods:
            result = (
                run_plain_pyro(data, args.seed, args)
                if method == "pyro"
                else run_causal_pp(method, data, args.seed, args)
            )
            row = {"N": n, "method": method, "seed": args.seed, "true_ate": TRUE_ATE, **result}
            row["abs_error"] = abs(row["ate_mean"] - TRUE_ATE)
            rows.append(row)
            print(
                f"{n:>6} {method:<6} {row['fit_wall_s']:>8.1f} {row['fit_cpu_s']:>8.1f} "
                f"{row['estimate_wall_s']:>6.2f} {row['ate_mean']:>8.4f} {row['ate_sd']:>7.4f} "
                f"{row['abs_error']:>7.4f}  {row['diagnostics']}",
                flush=True,
            )
    # fit wall time of plain Pyro NUTS over each method's, on the same N (the speed target)
    for row in rows:
        pyro_row = next((r for r in rows if r["N"] == row["N"] and r["method"] == "pyro"), None)
        row["speedup_vs_pyro"] = None if pyro_row is None else pyro_row["fit_wall_s"] / row["fit_wall_s"]
        if pyro_row is not None and row is not pyro_row:
            print(
                f"N={row['N']} {row['method']}: {row['speedup_vs_pyro']:.2f}x less fit wall time than plain Pyro NUTS"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = ("quick" if args.quick else "full") + (
        "" if args.device == "cpu" else f"-{args.device.replace(':', '')}"
    )
    payload = {
        "command": command,
        "machine": info,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }
    json_path = args.out / f"fit_speed-{tag}-{stamp}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    csv_path = args.out / f"fit_speed-{tag}-{stamp}.csv"
    with csv_path.open("w", newline="") as f:
        fields = [k for k in rows[0] if k != "warnings"]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"# wrote {json_path} and {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
