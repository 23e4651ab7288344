"""The pointwise log-likelihood (``to_arviz``'s ``log_likelihood``, ``compare``'s LOO): accuracy and cost.

For each case, one SVI fit at N units (the library's defaults, seed 0), then each unit's marginal
log-likelihood (its latents integrated out; :mod:`causal_pp.unit_likelihood`) on the first D
posterior draws, three ways:

* ``prior``    -- ``adapt=0``: the prior's particles alone (to_arviz's estimator before adaptation,
  though with the log-average's bias correction, which it lacked);
* ``adapted``  -- the default (the prior's round, then adapted rounds);
* ``reference`` -- the adapted estimator with many particles (``--reference-particles``).

Per way: the summed log-likelihood's error against the reference (mean over draws), the largest
error of one unit (its mean over draws), the fewest effective particles of any unit (median over
draws), PSIS-LOO's elpd and its largest Pareto k, and the seconds it took.

Usage::

    python benchmarks/log_likelihood.py                       # the default cases, N = 200
    python benchmarks/log_likelihood.py --cases frontdoor --n 500

Results (a table, and JSON with the machine, the command and the code) go to
``benchmarks/results/log_likelihood-<timestamp>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import torch
from provenance import code_version

from causal_pp.cases import get_case
from causal_pp.unit_likelihood import LOG_LIKELIHOOD_PARTICLES, pointwise_log_likelihood

CASES = "frontdoor,backdoor,napkin,frontdoor_logit,frontdoor_count,multicause"


def _loo(total: np.ndarray) -> tuple[float, float]:
    """PSIS-LOO's elpd and largest Pareto k for a unit log-likelihood ``(draws, units)``."""
    idata = az.from_dict(posterior={"_": np.zeros((1, total.shape[0]))}, log_likelihood={"y": total[None]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Pareto k is reported in the table
        loo = az.loo(idata, pointwise=True)
    return float(loo.elpd_loo), float(np.max(loo.pareto_k))


def measure(case_name: str, n: int, draws: int, reference_particles: int) -> list[dict[str, Any]]:
    case = get_case(case_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fit's own reliability notes are not what is measured
        post = case.model.fit(case.simulate(n, seed=1), method="svi", seed=0, progress_bar=False)
    sub = {k: v[:draws] for k, v in post.samples.items()}
    ways = {
        "prior": {"adapt": 0},
        "adapted": {},
        "reference": {"particles": reference_particles},
    }
    got = {}
    for way, kwargs in ways.items():
        t = time.perf_counter()
        ll, ess = pointwise_log_likelihood(post, sub, return_ess=True, **kwargs)
        got[way] = (sum(ll.values()), ess, time.perf_counter() - t)
    ref = got["reference"][0]
    rows = []
    for way, (total, ess, seconds) in got.items():
        elpd, k = _loo(total)
        rows.append(
            {
                "case": case_name,
                "n": n,
                "draws": draws,
                "way": way,
                "particles": ways[way].get("particles", LOG_LIKELIHOOD_PARTICLES),
                "sum_error": float((total - ref).sum(1).mean()),
                "max_unit_error": float(np.abs((total - ref).mean(0)).max()),
                "min_unit_ess": float(np.median(ess, axis=0).min()),
                "elpd_loo": elpd,
                "max_pareto_k": k,
                "seconds": seconds,
            }
        )
        print(
            f"{case_name:16s} {way:9s} sum error {rows[-1]['sum_error']:+8.2f}  max unit {rows[-1]['max_unit_error']:6.2f}"
            f"  min ESS {rows[-1]['min_unit_ess']:7.1f}  elpd {elpd:9.2f}  max k {k:5.2f}  {seconds:6.2f} s",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default=CASES)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--draws", type=int, default=100, help="posterior draws the log-likelihood is computed on")
    p.add_argument("--reference-particles", type=int, default=2048)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one thread, as the other benchmarks on this 2-core machine
    meta = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_at_start": list(os.getloadavg()),
        "code": code_version(),
        "threads": 1,
    }
    rows = [
        r for c in args.cases.split(",") for r in measure(c, args.n, args.draws, args.reference_particles)
    ]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"log_likelihood-{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    head = "| case | way | particles | sum error | max unit error | min unit ESS | elpd_loo | max k | s |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['way']} | {r['particles']} | {r['sum_error']:+.2f} | {r['max_unit_error']:.2f} | "
            f"{r['min_unit_ess']:.1f} | {r['elpd_loo']:.2f} | {r['max_pareto_k']:.2f} | {r['seconds']:.2f} |"
        )
    md = [
        f"# Pointwise log-likelihood, N = {args.n}, first {args.draws} draws of one SVI fit per case",
        "",
        "Errors are against `reference` (the adapted estimator with many particles), in nats: the summed",
        "log-likelihood's (mean over draws) and the largest of one unit's (its mean over draws).",
        "",
        *lines,
        "",
        f"Command: `{meta['command']}`; machine: {meta['platform']}, {meta['cpu_count']} CPUs, torch "
        f"{meta['torch']}, one thread; load average at start {meta['load_average_at_start'][0]:.2f}; "
        f"code {meta['code']['causal_pp']} at {meta['code']['commit']}"
        f"{' (uncommitted changes)' if meta['code']['uncommitted_changes'] else ''}. "
        "Generated by `benchmarks/log_likelihood.py`; not edited by hand.",
    ]
    (out / f"log_likelihood-{stamp}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
