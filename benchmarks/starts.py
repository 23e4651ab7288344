"""Which basin an SVI fit ends in, by how its starts are ranked (issue #15).

Per-unit latents make the ELBO multimodal, and an SVI fit runs several starts and keeps the best.
This script fits each data set with several SVI variants on the same data and seed and reports,
per fit, its final loss, the gap to the lowest final loss any variant reached on that data set
(a fit in a worse basin shows a gap of hundreds of nats; the noise of the final loss is a few),
and the posterior of the ATE. Variants (options of ``fit(method="svi")``):

* ``library`` -- the defaults: 5 starts, all run the first 500 steps with 2 ELBO particles, the best goes on;
* ``starts150`` -- ``restart_steps=150``: the starts ranked after 150 steps (the default before
  0.2.0, when the best start was then run again from its 150th step);
* ``loop`` -- ``batched=False``: the defaults through Pyro's own SVI loop;
* ``particles8`` -- ``restart_particles=8``: the starts run with the main run's 8 ELBO particles
  per step (the default before results revision 7, which runs them with 2);
* ``starts250``, ``starts300`` (not run by default) -- ranked after 250 or 300 steps.

``--halving`` asks whether successive halving would pay: run every start to step ``c``, keep the
best ``k`` (by the same score), run only those to step 500. It needs no extra fits. A start's
steps draw only from its own random stream, so the ``starts<c>`` fit's scores at step ``c`` are
the scores the library fit's starts had at step ``c``. The library fit gives their scores at 500.
So for each data set the script reports whether the start that is best at 500 survives the cut,
and if not, how many nats worse the best kept start is at step 500 (``lost_in_worse_basin``: more
than 25). A start behind at step 500 may still reach the best basin by the end of the run: the
``starts<c>`` rows' final losses say where ranking at ``c`` actually ends. Run it with the variants it needs, e.g.
``--variants library starts250 starts300 --halving``.

Models: ``backdoor_test`` is the test suite's linear back-door model (``tests/_linear_models.py``:
U ~ N(mu, 1) with mu unknown), whose exact posterior of the ATE (U integrated out, importance
sampling of the marginal posterior: ``exact_ate_reference``) is the reference: ``shift_sd`` =
(mean - exact mean) / exact SD. Case-library cases (e.g. ``frontdoor_logit``) are compared
against their true ATE alone.

Usage::

    python benchmarks/starts.py                                   # backdoor_test, N = 2000, seeds 0-9
    python benchmarks/starts.py --models frontdoor_logit --n 5000 --seeds 0 1 2
    python benchmarks/starts.py --quick                           # N = 300, seeds 0-1
    python benchmarks/starts.py --variants library starts250 starts300 --halving

The table is printed row by row; CSV and JSON (machine, command, settings, summary) go to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test models and their exact posterior

from _linear_models import MARGINAL_SEM, MODELS, exact_ate_reference, simulate  # noqa: E402
from fit_speed import machine_info  # noqa: E402

from causal_pp import ATE  # noqa: E402
from causal_pp.cases import get_case  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "library": {},
    "starts150": {"restart_steps": 150},
    "starts250": {"restart_steps": 250},
    "starts300": {"restart_steps": 300},
    "loop": {"batched": False},
    "particles8": {"restart_particles": 8},
}
DEFAULT_VARIANTS = ["library", "starts150", "loop"]
HALVING_KEEP = (2, 3)  # starts kept at the cut, of the library's 5
WORSE_BASIN_NATS = 25.0  # a final loss this far above the data set's best counts as a worse basin


def _data(model_name: str, n: int, seed: int) -> tuple[Any, Any, float, tuple[float, float, float] | None]:
    """(model, data, true ATE, the exact posterior's (mean, SD, ESS of its weights) or None)."""
    if model_name == "backdoor_test":
        model, truth = MODELS["backdoor"]
        data = simulate(model, truth, n, seed=seed)
        # importance sampling of the exact marginal posterior: no chain that can fail to mix
        return (
            model,
            data,
            MARGINAL_SEM["backdoor"][3](truth),
            exact_ate_reference("backdoor", data, seed=seed),
        )
    case = get_case(model_name)
    return case.model, case.simulate(n, seed=seed), float(case.queries["ate"].truth), None


def run_seed(model_name: str, n: int, seed: int, variants: list[str]) -> list[dict[str, Any]]:
    model, data, truth, exact = _data(model_name, n, seed)
    rows = []
    for name in variants:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.fit(data, method="svi", seed=seed, progress_bar=False, **VARIANTS[name])
        fit_s = time.perf_counter() - t0
        est = post.estimate(ATE("X", "Y", treated=1.0, control=0.0), seed=seed)
        d = post.diagnostics
        row = {
            "model": model_name,
            "n": n,
            "seed": seed,
            "variant": name,
            "final_loss": float(d["final_loss"]),
            "ate_mean": est.mean,
            "ate_sd": est.std,
            "truth": truth,
            "covers": bool(est.interval(0.94)[0] <= truth <= est.interval(0.94)[1]),
            "fit_s": fit_s,
            "steps": int(d["num_steps"]),
            "start_scores": [round(float(x), 1) for x in d.get("restart_losses", [])],
            "is_ess": float(d.get("is_ess", float("nan"))),
        }
        if exact is not None:
            row["exact_mean"], row["exact_sd"], row["exact_ess"] = exact
            row["shift_sd"] = (est.mean - row["exact_mean"]) / row["exact_sd"]
        rows.append(row)
    best = min(r["final_loss"] for r in rows)
    for r in rows:
        r["gap_nats"] = r["final_loss"] - best
        r["worse_basin"] = bool(r["gap_nats"] > WORSE_BASIN_NATS)
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for key in sorted({(r["model"], r["n"], r["variant"]) for r in rows}):
        mine = [r for r in rows if (r["model"], r["n"], r["variant"]) == key]
        shifts = [abs(r["shift_sd"]) for r in mine if "shift_sd" in r]
        out.append(
            {
                "model": key[0],
                "n": key[1],
                "variant": key[2],
                "data_sets": len(mine),
                "worse_basin": sum(r["worse_basin"] for r in mine),
                "worse_basin_seeds": [r["seed"] for r in mine if r["worse_basin"]],
                "max_gap_nats": max(r["gap_nats"] for r in mine),
                "max_abs_shift_sd": max(shifts) if shifts else None,
                "coverage": float(np.mean([r["covers"] for r in mine])),
                "mean_fit_s": float(np.mean([r["fit_s"] for r in mine])),
            }
        )
    return out


def halving(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, N, cut): how often halving at the cut, keeping ``k`` starts, would lose the
    start that the library's ranking at 500 steps picks, and by how many nats at most (see the
    module docstring)."""
    at500 = {(r["model"], r["n"], r["seed"]): r["start_scores"] for r in rows if r["variant"] == "library"}
    out = []
    cuts = sorted({r["variant"] for r in rows if r["variant"].startswith("starts")})
    for model, n in sorted({(r["model"], r["n"]) for r in rows}):
        for cut in cuts:
            pairs = [
                (r["start_scores"], at500[(model, n, r["seed"])])
                for r in rows
                if (r["model"], r["n"], r["variant"]) == (model, n, cut) and (model, n, r["seed"]) in at500
            ]
            for keep in HALVING_KEEP:
                gaps = []
                for early, final in pairs:
                    kept = np.argsort(early)[:keep]
                    gaps.append(min(final[k] for k in kept) - min(final))
                out.append(
                    {
                        "model": model,
                        "n": n,
                        "cut_steps": VARIANTS[cut]["restart_steps"],
                        "keep": keep,
                        "data_sets": len(gaps),
                        "best_start_lost": int(sum(g > 0 for g in gaps)),
                        "lost_in_worse_basin": int(sum(g > WORSE_BASIN_NATS for g in gaps)),
                        "max_gap_nats": max(gaps, default=math.nan),
                    }
                )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["backdoor_test"])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    p.add_argument(
        "--halving",
        action="store_true",
        help="report what successive halving at each starts<c> variant's step would keep (needs library)",
    )
    p.add_argument("--quick", action="store_true", help="N = 300, seeds 0-1")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.seeds = 300, [0, 1]
    info = machine_info()
    command = " ".join(["python", *sys.argv])
    print(f"# SVI starts and basins ({dt.datetime.now().isoformat(timespec='seconds')})")
    print(f"# command: {command}")
    print(f"# machine: {info}")
    cols = ["model", "seed", "variant", "final_loss", "gap_nats", "ate_mean", "ate_sd", "shift_sd", "fit_s"]
    print(" ".join(f"{c:>13s}" for c in cols), flush=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    part = args.out / f"starts-{stamp}.csv.part"
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for model_name in args.models:
        for seed in args.seeds:
            new = run_seed(model_name, args.n, seed, args.variants)
            rows.extend(new)
            for r in new:
                print(
                    " ".join(
                        f"{r.get(c, ''):>13.4g}"
                        if isinstance(r.get(c), float)
                        else f"{r.get(c, '')!s:>13.13s}"
                        for c in cols
                    ),
                    flush=True,
                )
            with part.open("w", newline="") as f:  # rewritten after each data set: an interrupt keeps them
                w = csv.DictWriter(
                    f,
                    fieldnames=list(dict.fromkeys(k for r in rows for k in r)),
                    extrasaction="ignore",
                )
                w.writeheader()
                w.writerows(rows)
    summary = summarise(rows)
    print(
        f"\nsummary (a fit more than {WORSE_BASIN_NATS:g} nats above the data set's best final loss is in a worse basin)"
    )
    for s in summary:
        shift = "" if s["max_abs_shift_sd"] is None else f"  max |shift| {s['max_abs_shift_sd']:.2f} exact SD"
        print(
            f"  {s['model']} N={s['n']} {s['variant']:>9s}: worse basin {s['worse_basin']}/{s['data_sets']} "
            f"(seeds {s['worse_basin_seeds']}, max gap {s['max_gap_nats']:.0f} nats){shift}  "
            f"coverage {s['coverage']:.2f}  fit {s['mean_fit_s']:.1f} s"
        )
    halved = halving(rows) if args.halving else []
    if halved:
        print("\nsuccessive halving: the start best at 500 steps, lost at the cut? (gaps at step 500)")
    for h in halved:
        print(
            f"  {h['model']} N={h['n']} cut at {h['cut_steps']} keeping {h['keep']}: best start lost in "
            f"{h['best_start_lost']}/{h['data_sets']} ({h['lost_in_worse_basin']} in a worse basin; "
            f"max gap {h['max_gap_nats']:.0f} nats)"
        )
    wall = time.perf_counter() - t0
    print(f"wall time {wall / 60:.1f} min")
    csv_path = part.with_suffix("")
    part.replace(csv_path)
    meta = {"command": command, "machine": info, "settings": {k: str(v) for k, v in vars(args).items()},
            "wall_s": wall, "summary": summary, "halving": halved, "rows": rows}  # fmt: skip
    json_path = csv_path.with_suffix(".json")
    json_path.write_text(json.dumps(meta, indent=2, default=str))
    print(f"# wrote {csv_path} and {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
