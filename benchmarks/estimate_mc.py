"""Time of ``estimate`` and the Monte Carlo share of its posterior, on the built-in cases.

For every case of :func:`causal_pp.cases.registry` the script fits the case's model once (SVI,
default settings) to ``--n`` rows simulated from the case, caches the posterior draws, and for
every query of the case times ``posterior.estimate(query, seed=0)`` with the library's default
options. It then reports, per query,

* ``seconds``: wall time of that call (gate, simulation, plug-in);
* ``units``: fresh units simulated per draw;
* ``sd``: the SD of the returned draws of the functional (posterior SD *plus* Monte Carlo noise);
* ``mc_fraction``: the mean Monte Carlo variance of a draw's functional over the posterior
  variance of the functional, *measured from outside*: the same call with ``seed=1`` gives a
  second, independent Monte Carlo estimate of every draw's functional, so
  ``mean((f0 - f1)^2) / 2`` is the mean MC variance and ``var(f0)`` minus that is the posterior
  variance. Works on any version of causal_pp;
* ``mc_fraction_reported``: the fraction the estimate reports itself (new code only);
* with ``--variants`` (new code only): seconds and units to reach the same target without
  stratified antithetic units (``no_stratify``) and without Rao-Blackwellisation either
  (``no_reduction``): what each variance reduction buys;
* with ``--draws-scaling``: seconds on 50 and 500 posterior draws at the same units per draw,
  and the fixed cost per call they imply (what vectorising ``estimate`` over a batch of
  posteriors could save: issue #15).

Besides the registered cases, the script measures issue #13's own model (``issue13``): a
front-door model with a Poisson (log link) mediator and Student-t outcome noise, fitted at
N = 4800 (``--issue-n``), where the old estimate's SD was 5x the functional's.

"Before" is the code before issue #13 (1000 units per draw, sampled outcomes); "after" the
current code. Run the "before" phase on a copy of the old package and the "after" phase on the
current one, with the same ``--cache`` so both see the same posterior draws::

    git archive <old-commit> causal_pp | tar -x -C /tmp/cpp_before
    PYTHONPATH=/tmp/cpp_before python benchmarks/estimate_mc.py --phase before
    python benchmarks/estimate_mc.py --phase after --before benchmarks/results/estimate_mc-before-<stamp>.json

Each phase writes ``benchmarks/results/estimate_mc-<phase>-<stamp>.json`` (rows, machine,
command, date, load average); the "after" phase with ``--before`` also writes a side-by-side
``.md`` table. Times are wall-clock on a machine that may be shared: the load average is
recorded at the start and the end.
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
from typing import Any, ClassVar

import torch
from provenance import code_version

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    import pyro

    import causal_pp

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "code": code_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "causal_pp": causal_pp.__version__,
        "causal_pp_path": str(Path(causal_pp.__file__).parent),
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


class Issue13:
    """Issue #13's count-mediator front-door model, as a minimal case (name, model, simulate, query)."""

    name = "issue13"
    truth: ClassVar[dict[str, float]] = {
        "a_X": 0.5,
        "theta_UX": 1.0,
        "b0": 1.0,
        "b1": 0.5,
        "a_Y": 0.0,
        "c": 1.5,
        "d": 2.0,
    }

    def __init__(self) -> None:
        import pyro
        import pyro.distributions as dist

        from causal_pp import ATE, CausalGraph, causal_model, units

        @causal_model(CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"]))
        def count_frontdoor(n: int) -> None:
            a_x = pyro.sample("a_X", dist.Normal(0.0, 5.0))
            theta_ux = pyro.sample("theta_UX", dist.HalfNormal(3.0))
            b0 = pyro.sample("b0", dist.Normal(0.0, 2.0))
            b1 = pyro.sample("b1", dist.Normal(0.0, 1.0))
            a_y = pyro.sample("a_Y", dist.Normal(0.0, 5.0))
            c = pyro.sample("c", dist.Normal(0.0, 3.0))
            d = pyro.sample("d", dist.Normal(0.0, 3.0))
            with units(n):
                u = pyro.sample("U", dist.Normal(0.0, 1.0))
                x = pyro.sample("X", dist.Normal(a_x + theta_ux * u, 1.0))
                m = pyro.sample("M", dist.Poisson(torch.exp(b0 + b1 * x)))
                pyro.sample("Y", dist.StudentT(4.0, a_y + c * m + d * u, 1.0))

        self.model = count_frontdoor
        self.queries = {"ate": type("Q", (), {"query": ATE("X", "Y", treated=1.0, control=0.0)})()}

    def simulate(self, n: int, seed: int = 0) -> Any:
        import numpy as np
        import pandas as pd

        rng, p = np.random.default_rng(seed), self.truth
        u = rng.normal(size=n)
        x = p["a_X"] + p["theta_UX"] * u + rng.normal(size=n)
        m = rng.poisson(np.exp(p["b0"] + p["b1"] * x)).astype(float)
        y = p["a_Y"] + p["c"] * m + p["d"] * u + rng.standard_t(4.0, size=n)
        return pd.DataFrame({"X": x, "M": m, "Y": y})


def posterior_of(case: Any, n: int, cache: Path) -> Any:
    """The case's posterior at ``n`` rows (SVI, seed 0), fitted once and cached on disk."""
    from causal_pp import CausalPosterior

    path = cache / f"{case.name}-n{n}.pt"
    if path.exists():
        saved = torch.load(path)
    else:
        data = case.simulate(n, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = case.model.fit(data, method="svi", seed=0, progress_bar=False)
        saved = {"samples": dict(post.samples), "data": dict(post.data)}
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(saved, path)
    return CausalPosterior(
        model=case.model, samples=saved["samples"], data=saved["data"], diagnostics={}, method="svi", seed=0
    )


def variants(post: Any, query: Any) -> dict[str, Any]:
    """Seconds and units of the adaptive estimate with variance reduction switched off."""
    from causal_pp.estimation import EstimateOptions, estimator

    out: dict[str, Any] = {}
    for name, switches in {
        "no_stratify": {"stratify": False},
        "no_reduction": {"stratify": False, "rao_blackwell": False},
    }.items():
        opts = EstimateOptions(allow_unidentified=True, assume_monotonic=True, **switches)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est = estimator(query, post, opts)
        out[f"{name}_seconds"] = round(time.perf_counter() - t0, 3)
        out[f"{name}_units"] = int(est.num_units)
        out[f"{name}_capped"] = bool(est.mc_capped)
    return out


def draws_scaling(
    post: Any, query: Any, draws: tuple[int, ...] = (50, 500), repeats: int = 3
) -> dict[str, Any]:
    """Seconds of ``estimate`` on fewer and more posterior draws (same units per draw): the
    intercept of the line through them is the fixed cost of a call, which is what one call
    for a batch of posteriors (instead of one per posterior) could save."""
    kwargs = {"allow_unidentified": True, "assume_monotonic": True}
    units = int(post.estimate(query, seed=0, **kwargs).num_units)
    out: dict[str, Any] = {}
    for k in draws:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            for _ in range(repeats):
                post.estimate(query, seed=0, num_samples=k, num_units=units, **kwargs)
        out[f"seconds_{k}_draws"] = round((time.perf_counter() - t0) / repeats, 4)
    a, b = draws[0], draws[-1]
    slope = (out[f"seconds_{b}_draws"] - out[f"seconds_{a}_draws"]) / (b - a)
    out["fixed_seconds_per_call"] = round(out[f"seconds_{a}_draws"] - slope * a, 4)
    return out


def measure(post: Any, query: Any) -> dict[str, Any]:
    kwargs = {"allow_unidentified": True, "assume_monotonic": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est = post.estimate(query, seed=0, **kwargs)
        seconds = time.perf_counter() - t0
        other = post.estimate(query, seed=1, **kwargs)
    f0, f1 = est.samples.double().reshape(-1), other.samples.double().reshape(-1)
    mc_var = float(((f0 - f1) ** 2).mean() / 2)
    post_var = float(f0.var()) - mc_var
    reported = getattr(est, "mc_fraction", None)
    return {
        "seconds": round(seconds, 3),
        "units": int(est.num_units),
        "draws": int(f0.numel()),
        "mean": float(f0.mean()),
        "sd": float(f0.std()),
        "sd_functional": float(est.std),
        "mc_se_measured": math.sqrt(mc_var),
        "mc_fraction": mc_var / post_var if post_var > 0 else float("inf"),
        "mc_fraction_reported": None if reported is None else float(reported),
        "mc_capped": getattr(est, "mc_capped", None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=["before", "after"], required=True)
    parser.add_argument("--n", type=int, default=1000, help="rows simulated for each fit")
    parser.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--issue-n", type=int, default=4800, help="rows for issue #13's model (0: skip it)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/estimate_mc_cache"))
    parser.add_argument("--before", type=Path, default=None, help="a 'before' JSON to compare with")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--variants", action="store_true", help="also time the estimate without variance reduction"
    )
    parser.add_argument(
        "--draws-scaling",
        action="store_true",
        help="also time the estimate on 50 and 500 posterior draws: its fixed cost per call",
    )
    args = parser.parse_args(argv)

    from causal_pp.cases import registry

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    meta = {
        "phase": args.phase,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_at_start": load_average(),
        "n": args.n,
        "issue_n": args.issue_n,
    }
    names = args.cases.split(",") if args.cases else list(registry())
    if args.issue_n:
        names.append(Issue13.name)
    rows = []
    for name in names:
        case = Issue13() if name == Issue13.name else registry()[name]
        post = posterior_of(case, args.issue_n if name == Issue13.name else args.n, args.cache)
        for qname, cq in case.queries.items():
            row = {"case": name, "query": qname, **measure(post, cq.query)}
            if args.variants:
                row |= variants(post, cq.query)
            if args.draws_scaling:
                row |= draws_scaling(post, cq.query)
            rows.append(row)
            print(
                f"{name:>14}/{qname:<17} {row['seconds']:8.2f} s  units {row['units']:>7}  "
                f"sd {row['sd']:.4g}  mc_fraction {row['mc_fraction']:.3g}",
                flush=True,
            )
    meta["load_average_at_end"] = load_average()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"estimate_mc-{args.phase}-{stamp}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {path}")
    if args.before is not None:
        print(compare(json.loads(args.before.read_text()), {"meta": meta, "rows": rows}, path))
    return 0


def compare(before: dict[str, Any], after: dict[str, Any], path: Path) -> str:
    """A side-by-side markdown table of the two phases, written next to ``path``."""
    old = {(r["case"], r["query"]): r for r in before["rows"]}
    lines = [
        "| case/query | before s | after s | before units | after units | before sd | after sd "
        "| before MC fraction | after MC fraction (measured / reported) | capped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in after["rows"]:
        b = old.get((r["case"], r["query"]))
        if b is None:
            continue
        rep = "" if r["mc_fraction_reported"] is None else f"{r['mc_fraction_reported']:.3g}"
        lines.append(
            f"| {r['case']}/{r['query']} | {b['seconds']:.2f} | {r['seconds']:.2f} | {b['units']} | "
            f"{r['units']} | {b['sd']:.4g} | {r['sd']:.4g} | {b['mc_fraction']:.3g} | "
            f"{r['mc_fraction']:.3g} / {rep} | {r['mc_capped']} |"
        )
    m = after["meta"]
    lines += [
        "",
        f"before: `{before['meta']['command']}` ({before['meta']['date']}, causal_pp from "
        f"{before['meta']['machine']['causal_pp_path']}, load {before['meta']['load_average_at_start']}"
        f" -> {before['meta'].get('load_average_at_end')})",
        f"after: `{m['command']}` ({m['date']}, load {m['load_average_at_start']} -> "
        f"{m['load_average_at_end']})",
        f"machine: {m['machine']['platform']}, {m['machine']['cpu']}, {m['machine']['cpu_count']} CPUs, "
        f"torch {m['machine']['torch']} ({m['machine']['torch_threads']} thread(s)), pyro {m['machine']['pyro']}, "
        f"Python {m['machine']['python']}; N = {m['n']} rows per fit ({m.get('issue_n')} for issue13; SVI, default "
        "settings), the same posterior draws in both phases. MC fraction: mean Monte Carlo variance of a "
        "draw's functional over the functional's posterior variance, measured from two seeds.",
    ]
    if any("no_stratify_units" in r for r in after["rows"]):
        lines += [
            "",
            "What each variance reduction buys (after; same target, adaptive): seconds / units per draw",
            "",
            "| case/query | all | no stratified units | no stratification, no Rao-Blackwell |",
            "|---|---|---|---|",
        ]
        for r in after["rows"]:
            cap = {k: " (capped)" if r.get(f"{k}_capped") else "" for k in ("no_stratify", "no_reduction")}
            lines.append(
                f"| {r['case']}/{r['query']} | {r['seconds']:.2f} / {r['units']} | "
                f"{r['no_stratify_seconds']:.2f} / {r['no_stratify_units']}{cap['no_stratify']} | "
                f"{r['no_reduction_seconds']:.2f} / {r['no_reduction_units']}{cap['no_reduction']} |"
            )
    text = "\n".join(lines)
    path.with_suffix(".md").write_text(text + "\n")
    return text


if __name__ == "__main__":
    sys.exit(main())
