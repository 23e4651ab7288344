"""Reproduce the case studies of Mohammad-Taheri et al. (Bioinformatics 2022) with causal_pp.

For each case study (multi-cause, napkin, IGF, SARS-CoV-2 with two queries) this runs a
convergence study -- simulate N rows from the ground-truth SCM, fit the latent variable model,
estimate E[Y | do(x)] -- and prints our mean absolute error (posterior mean, and the paper's
plug-in estimator) beside the paper's published mean AE, with wall times. Results are stored
under ``--out/<case>/cells.jsonl`` cell by cell, keyed by their settings (an interrupted run
resumes; a run with other settings never reuses them), with a table (CSV + markdown), a plot
per case and a JSON file recording the command and the machine. Cells run on
causal_pp's study executors (``--executor process --jobs K`` by default: a local pool).

The paper's protocol: 20 replicates at every N the paper published (its smallest N differs by
case: multi-cause 15, napkin 15, IGF 30, SARS-CoV-2 60; up to 200). The replicates of one N are
fitted together in one batch (:func:`causal_pp.fit_many`, one vectorised SVI program; the
executor's workers take one (case, N) batch each, from every case at once, the costliest first:
:func:`causal_pp.convergence.case_studies`). Run on demand; e.g.::

    python benchmarks/paper_reproduction.py                       # the full protocol
    python benchmarks/paper_reproduction.py --sizes 50,200 --replicates 3   # a reduced run
    python benchmarks/paper_reproduction.py --batch-size 1        # every cell fitted on its own
    python benchmarks/paper_reproduction.py --guide lowrank_mvn   # another SVI guide (default: structured)
    python benchmarks/paper_reproduction.py --jobs 1                            # one process
    python benchmarks/paper_reproduction.py --executor ray --jobs 8             # a local Ray
    python benchmarks/paper_reproduction.py --readme README.md   # also quote the table in the README

A finished run is read back, not refitted: rerunning the same command only re-renders the table,
report and plot (and the README quote).

Published mean AEs (``PUBLISHED`` below) are those of the paper's final result files at every N
they report, correct latent model (the authors' repository srtaheri/LVMwithDoCalculus, transcribed
in the project's shared notes; their N = 300 columns are left out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from provenance import code_version

# The paper's published mean absolute errors, correct latent model: {target: {N: mean AE}}.
PUBLISHED = {
    "multicause/y_do_x0": {15: 0.074, 60: 0.106, 100: 0.094, 200: 0.039},
    "napkin/y_do_x1": {15: 1.38, 20: 2.00, 30: 1.09, 60: 0.96, 100: 0.47, 200: 0.46},
    "igf/erk_do_sos70": {30: 0.38, 60: 0.31, 100: 0.36, 200: 0.25},
    "sars_cov2/cytok_do_sil6r20": {60: 0.058, 100: 0.049, 200: 0.030},
    "sars_cov2/cytok_do_egfr20": {60: 0.149, 100: 0.128, 200: 0.044},
}


def _machine() -> dict[str, object]:
    import pyro
    import torch

    return {
        "code": code_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sizes",
        default=None,
        help="comma-separated sample sizes for every case (default: each case's published sizes)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=20,
        help="replicates of one N fitted together (fit_many); 1 fits every cell on its own",
    )
    p.add_argument("--replicates", type=int, default=20)
    p.add_argument("--method", default="svi", choices=["svi", "nuts"])
    p.add_argument(
        "--guide", default=None, help="SVI's guide (SVI(guide=...)); default: the library's default"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default=",".join(PUBLISHED), help="comma-separated case/query names")
    p.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="workers of the executor (default: all CPUs)"
    )
    p.add_argument(
        "--executor",
        default="process",
        choices=["serial", "process", "ray"],
        help="where cells run (causal_pp.convergence executors); --jobs 1 implies serial",
    )
    p.add_argument("--out", default="benchmarks/results/paper_reproduction")
    p.add_argument(
        "--readme",
        default=None,
        help="also write the table into this file between the paper-reproduction markers (README.md)",
    )
    args = p.parse_args(argv)

    from causal_pp.cases import get_case
    from causal_pp.convergence import case_studies, studies, write_report
    from causal_pp.convergence.executors import make_executor

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", *sys.argv])

    # Queries of one case share each cell's fit (SARS-CoV-2's two queries: one fit, not two).
    by_case: dict[str, list[str]] = {}
    for target in args.targets.split(","):
        case_name, query_name = target.split("/")
        by_case.setdefault(case_name, []).append(query_name)
    fixed = None if args.sizes is None else [int(s) for s in args.sizes.split(",")]
    sizes = {c: fixed or _published_sizes(c, qs) for c, qs in by_case.items()}
    meta = {
        "command": command,
        "machine": _machine(),
        "sizes": sizes,
        "replicates": args.replicates,
        "method": args.method,
        "guide": args.guide,
        "batch_size": args.batch_size,
        "jobs": args.jobs,
        "executor": args.executor if args.jobs > 1 else "serial",
    }
    print(f"command: {command}\nmachine: {meta['machine']}\n", flush=True)

    # Every case's batches in one stream on one executor, the costliest first, so no worker idles
    # at the end of a case (convergence.case_studies). Cells are stored per case in
    # out/<case>/cells.jsonl as each batch finishes (the executor's workers compute, this process
    # writes), so an interrupted run resumes batch by batch.
    lines_before = _count_cell_lines(out)
    t_start = time.perf_counter()
    executor = make_executor(meta["executor"], workers=max(1, args.jobs))
    common = dict(replicates=args.replicates, method=args.method, seed=args.seed, batch_size=args.batch_size)
    if args.guide is not None:
        common["fit_kwargs"] = {"guide": args.guide}
    with executor:
        case_studies(
            dict(by_case),
            sizes=sizes,
            out=out,
            executor=executor,
            progress=True,
            on_notice=lambda m: print(f"  note: {m}", flush=True),
            **common,
        )
    wall = time.perf_counter() - t_start

    # Read the finished studies back (nothing is refitted).
    rows, all_studies = [], []
    fit_seconds_total = 0.0
    for case_name, qs in by_case.items():
        found = studies(
            get_case(case_name), qs, sizes=sizes[case_name], out=out / case_name, progress=False, **common
        )
        # A case's queries share each fit: count its fit time once, from its first query's cells.
        # Summed from the cells themselves (a batch's time shared among its cells), so fits done
        # by invocations that died before writing meta.json still count.
        fit_seconds_total += float(next(iter(found.values())).table["fit_seconds"].sum())
        for q, s in found.items():
            all_studies.append(s)
            target = f"{case_name}/{q}"
            published = PUBLISHED.get(target, {})
            t = s.table
            for n, r in s.summary().iterrows():
                how = _corrections(t[t["n"] == n])
                rows.append(
                    {
                        "target": target,
                        "n": n,
                        "replicates": int(r["replicates"]),
                        "truth": s.truth,
                        "ours_mean_ae": r["mean_abs_error"],
                        "ours_mean_ae_se": r["sd_abs_error"] / math.sqrt(r["replicates"]),
                        "ours_plugin_ae": r["plugin_abs_error"],
                        "coverage": r["coverage"],
                        "paper_ae": published.get(int(n)),
                        "fit_seconds_mean": r["fit_seconds"],
                        "flagged": int(r["flagged"]),
                        **how,
                    }
                )

    table = pd.DataFrame(rows)
    meta["wall_seconds"] = wall
    meta["load_average_at_end"] = list(os.getloadavg())
    # An interrupted or extended run is finished by later invocations: keep each one's record,
    # so the reported wall time is the sum over the invocations that did the fitting.
    previous = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
    past = previous.get("runs") or ([previous] if "wall_seconds" in previous else [])
    this_run = {k: meta[k] for k in ("command", "machine", "wall_seconds", "jobs", "executor")}
    this_run["cell_lines_written"] = _count_cell_lines(out) - lines_before
    meta["runs"] = [{k: r.get(k) for k in this_run} for r in past]
    if this_run["cell_lines_written"]:  # a pure re-render fitted nothing: not a run
        meta["runs"].append(this_run)
    meta["total_wall_seconds"] = sum(float(r["wall_seconds"] or 0.0) for r in meta["runs"])
    meta["fit_seconds_total"] = fit_seconds_total
    table.to_csv(out / "table.csv", index=False)
    markdown = _markdown(table, meta)
    (out / "table.md").write_text(markdown)
    if args.readme:
        _quote_in(Path(args.readme), markdown)
    write_report(all_studies, out)
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nwall time {wall / 60:.1f} min with {args.jobs} worker(s)")
    print(f"fits in the table took {fit_seconds_total / 60:.0f} min in all")
    print(f"wrote {out / 'table.csv'}, {out / 'table.md'}, {out / 'report.md'}, {out / 'convergence.png'}")
    return 0


def _corrections(cells: pd.DataFrame) -> dict[str, int]:
    """How many cells' posterior draws are importance-corrected, tempered, or the guide's own, and
    how many of the latter cover the truth (``guide_covered``)."""
    idx = cells.index
    corrected = cells["fit_is_corrected"] if "fit_is_corrected" in cells else pd.Series(False, index=idx)
    corrected = corrected.fillna(False).astype(bool)
    # cells from before tempering existed have no is_method: their corrections were importance's
    method = cells["fit_is_method"].fillna("importance") if "fit_is_method" in cells else "importance"
    source = pd.Series(np.where(corrected, method, "guide"), index=idx)
    covered = (
        cells["covered"].fillna(False).astype(bool) if "covered" in cells else pd.Series(False, index=idx)
    )
    return {
        "importance": int((source == "importance").sum()),
        "tempered": int((source == "tempered").sum()),
        "guide_draws": int((source == "guide").sum()),
        "guide_covered": int((covered & (source == "guide")).sum()),
    }


def _published_sizes(case_name: str, queries: list[str]) -> list[int]:
    """Every N at which the paper published a mean AE for one of these queries of the case."""
    found = {n for q in queries for n in PUBLISHED.get(f"{case_name}/{q}", {})}
    if not found:
        raise SystemExit(f"no published sizes for {case_name}/{queries}; pass --sizes.")
    return sorted(found)


def _count_cell_lines(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in out.glob("*/cells.jsonl"))


README_BEGIN = "<!-- paper-reproduction:begin (written by benchmarks/paper_reproduction.py --readme) -->"
README_END = "<!-- paper-reproduction:end -->"


def _quote_in(path: Path, markdown: str) -> None:
    """Replace the text between the markers in ``path`` with ``markdown`` (atomically)."""
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(
            f"{path} has no {README_BEGIN!r} ... {README_END!r} markers to write the table between."
        )
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(f"{head}{README_BEGIN}\n{markdown.rstrip()}\n{README_END}{tail}")
    os.replace(tmp, path)


def _markdown(table: pd.DataFrame, meta: dict[str, object]) -> str:
    """The table as markdown with the command and machine that produced it (quoted in the README)."""
    head = (
        "| target | N | reps | truth | our mean AE ± s.e. | our plug-in AE | paper mean AE "
        "| ours ≤ paper | 94% coverage | draws IS / SMC / guide | fit s |"
    )
    lines = [head, "|---" * 11 + "|"]
    for r in table.itertuples(index=False):
        has_paper = not pd.isna(r.paper_ae)
        paper = f"{r.paper_ae:.3g}" if has_paper else ""
        better = ("yes" if r.ours_mean_ae <= r.paper_ae else "**no**") if has_paper else ""
        lines.append(
            f"| {r.target} | {r.n} | {r.replicates} | {r.truth:.4g} | {r.ours_mean_ae:.3g} ± {r.ours_mean_ae_se:.2g} | "
            f"{r.ours_plugin_ae:.3g} | {paper} | {better} | {r.coverage:.2f} | "
            f"{r.importance} / {r.tempered} / {r.guide_draws} | {r.fit_seconds_mean:.2f} |"
        )
    published = table.dropna(subset=["paper_ae"])
    wins = int((published["ours_mean_ae"] <= published["paper_ae"]).sum())
    in_band = int(((table["coverage"] >= 0.85) & (table["coverage"] <= 1.0)).sum())
    pooled = table.groupby("target")[["guide_draws", "guide_covered"]].sum()
    pooled = pooled[pooled["guide_draws"] > 0]
    guide_line = "; ".join(
        f"{t} {int(r.guide_covered)}/{int(r.guide_draws)} ({r.guide_covered / r.guide_draws:.2f})"
        for t, r in pooled.iterrows()
    )
    lines += [
        "",
        f"Our mean AE is at or below the published one at {wins} of {len(published)} published points; "
        f"coverage of our 94% intervals is in [0.85, 1] in {in_band} of {len(table)} rows "
        f"(range {table['coverage'].min():.2f}-{table['coverage'].max():.2f}).",
        *(
            [
                "",
                "Coverage of the cells whose draws are the guide's own (the importance weights "
                f"degenerated), pooled over N: {guide_line}.",
            ]
            if guide_line
            else []
        ),
    ]
    # The machine that did the fitting, not that of a later invocation which only re-rendered.
    runs = meta["runs"]
    m = runs[-1]["machine"] if runs else meta["machine"]
    fit_minutes_per_worker = float(meta["fit_seconds_total"]) / 60 / max(1, int(meta["jobs"]))
    flagged = int(table["flagged"].sum()) if "flagged" in table else 0
    guide = int(table["guide_draws"].sum()) if "guide_draws" in table else 0
    fitted_by = runs[-1]["command"] if runs else meta["command"]
    rendered = f" (this table rendered by `{meta['command']}`)" if fitted_by != meta["command"] else ""
    code = m.get("code") or {}  # runs from before provenance was recorded have none
    at = ""
    if code.get("commit"):
        dirty = " with uncommitted changes" if code.get("uncommitted_changes") else ""
        at = f" at commit `{code['commit'][:10]}`{dirty}"
    lines += [
        "",
        f"Command: `{fitted_by}`{at}{rendered}; fits took {float(meta['fit_seconds_total']) / 60:.1f} min in "
        f"all (summed over every cell of the table; at least {fit_minutes_per_worker:.1f} min of wall "
        f"time with {meta['jobs']} worker process(es)); wall time recorded by meta.json: "
        f"{float(meta['total_wall_seconds']) / 60:.1f} min ({float(meta['total_wall_seconds']):.0f} s) over "
        f"{len(meta['runs'])} invocation(s), "
        f"replicates of one N fitted in batches of {meta.get('batch_size') or 1} "
        "(an invocation interrupted before it wrote meta.json is not in it). Fit s: mean seconds "
        f"per fit, SARS-CoV-2's two queries share each fit; machine: {m['platform']}, "
        f"{m['cpu_count']} CPUs, Python {m['python']}, torch {m['torch']}, pyro {m['pyro']}; load "
        f"average at start {m['load_average_at_start'][0]:.2f}. Generated by "
        "`benchmarks/paper_reproduction.py`; not edited by hand.",
        "",
        *(
            [
                f"{flagged} cell(s) failed a fit or estimate diagnostic (see report.md); "
                f"{'all' if guide == flagged else guide} of them keep the guide's own draws (the table's "
                "`draws` column; their coverage is given above). They are included in the means above.",
                "",
            ]
            if flagged
            else []
        ),
        "Paper mean AE: the paper's final result files (correct latent model, 20 replicates), "
        "measured against a simulated (noisy) interventional mean with a plug-in estimator; ours is "
        "the posterior mean of the causal quantity, measured against analytic or >= 10^6-draw Monte "
        "Carlo truths, with s.e. = across-replicate SD / sqrt(reps). Draws: in how many cells the "
        "posterior draws of the globals are the guide's importance-corrected (IS), walked to the "
        "posterior by tempered SMC where the importance weights degenerated (SMC), or the guide's "
        "own (guide: the correction failed or did not apply). Fit s: seconds per fit, a batch's "
        "time shared among its replicates.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
