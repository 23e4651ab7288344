"""``causal-pp converge``: convergence studies of built-in cases or a user's model, error vs N.

Every argument is checked -- case and query names or the ``--model`` import path, sizes,
replicates and their range, seed, device, fit options, executor, the output folder, and whether
a query is identified -- before anything is fitted or written. Cells are stored in
``OUT/cells.jsonl`` (``OUT/CASE/`` for several cases) keyed by their settings; notices (cells of
other settings in the folder, waiting for another process) go to stderr as ``causal-pp: note:``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Any

from .common import EXIT_OK, UsageError, emit_json, ints, split, writable_folder

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register the subcommand."""
    v = sub.add_parser("converge", help="convergence study: error of the causal estimate vs sample size")
    what = v.add_mutually_exclusive_group(required=True)
    what.add_argument("--case", help="case name(s), comma-separated (see `causal-pp cases`)")
    what.add_argument(
        "--model",
        help="your own Case, or an object with model, query, simulate and truth, as MODULE:ATTRIBUTE "
        "(e.g. mypkg.models:frontdoor_case)",
    )
    v.add_argument(
        "--query",
        default=None,
        help="query name(s) of the case, comma-separated, sharing one fit per cell (default: its first)",
    )
    v.add_argument("--sizes", default="50,200,800", help="comma-separated sample sizes (integers >= 2)")
    v.add_argument("--replicates", type=int, default=5, help="data sets per size (>= 1)")
    v.add_argument(
        "--replicate-range",
        default=None,
        metavar="START:STOP",
        help="compute only replicates START..STOP-1 of --replicates (a shard; merge shards with `causal-pp merge`)",
    )
    v.add_argument("--method", default="svi", choices=["svi", "nuts"])
    v.add_argument(
        "--fit",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="a fit option, repeatable (e.g. --fit num_steps=2000 --fit lr=0.01); values are read as JSON. "
        "A bounds case (e.g. iv_bounds) fits nothing and reads only num_samples: posterior draws of its bounds "
        "(default 1000)",
    )
    v.add_argument(
        "--num-units",
        type=int,
        default=None,
        help="units simulated per posterior draw (default: as many as a 1%% Monte Carlo share of the posterior variance needs)",
    )
    v.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="replicates of one size fitted together in one vectorised SVI program (default: up to 20; "
        "1 = every cell fitted on its own; NUTS is always fitted cell by cell)",
    )
    v.add_argument("--prob", type=float, default=0.94, help="credible-interval mass, in (0, 1)")
    v.add_argument("--seed", type=int, default=0, help="master seed (>= 0)")
    v.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    v.add_argument(
        "--executor",
        default="serial",
        choices=["serial", "process", "ray"],
        help="where cells run: this process, a local process pool, or Ray (pip install 'causal-pp[ray]')",
    )
    v.add_argument("--workers", type=int, default=None, help="worker processes (process) or local Ray CPUs")
    v.add_argument(
        "--ray-address",
        default=None,
        help="a running Ray cluster (e.g. auto, HEAD:6379); default RAY_ADDRESS, else a local Ray",
    )
    v.add_argument("--out", default="results", help="folder for the results, the plot and report.md")
    v.add_argument(
        "--allow-unidentified",
        action="store_true",
        help="estimate a non-identified query anyway (a negative control; flagged in the output)",
    )
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.add_argument("--json", action="store_true", help="print the summaries as JSON (for scripts)")
    v.set_defaults(func=run)


def _check_identified(name: str, identified: bool, query: Any, allow: bool, where: str, kind: str) -> None:
    # A bounds query is not identified by design: its study is of the posterior of its bounds.
    if not identified and not allow and kind != "bounds":
        raise UsageError(
            f"{name}: {query} is not identifiable from the observed variables of {where}, so its estimate "
            "has no causal guarantee. Pass --allow-unidentified to run it as a negative control."
        )


def _plan(args: argparse.Namespace) -> list[tuple[str, Any, list[str] | None, list[Any]]]:
    """(label, case or object, query names, targets) to run; every name and verdict checked first."""
    from ..cases import get_case
    from ..convergence.targets import load_object, targets_of

    queries = split(args.query) if args.query else None
    if args.model is not None:
        targets = targets_of(load_object(args.model), queries, source=args.model)
        for t in targets:
            _check_identified(t.name, t.identified, t.query, args.allow_unidentified, args.model, t.kind)
        return [(args.model, None, queries, targets)]
    names = split(args.case)
    if not names:
        raise UsageError("--case is empty; name at least one case (see `causal-pp cases`).")
    plan = []
    for case in [get_case(name) for name in names]:
        chosen = queries or [next(iter(case.queries))]
        missing = [q for q in chosen if q not in case.queries]
        if missing:
            raise UsageError(
                f"case {case.name!r} has no query {missing[0]!r}; its queries are {list(case.queries)}."
            )
        for q in chosen:
            cq = case.queries[q]
            _check_identified(
                f"{case.name}/{q}", cq.identified, cq.query, args.allow_unidentified, repr(case.name), cq.kind
            )
        plan.append((case.name, case, chosen, []))
    return plan


def _fit_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--fit {item!r}: write OPTION=VALUE, e.g. --fit num_steps=2000.")
        try:
            value = json.loads(text)
        except ValueError:
            value = text  # a bare word: a string option (e.g. --fit guide=normal)
        out[name.strip()] = value
    return out


def _replicate_range(text: str | None, replicates: int) -> tuple[int, int] | None:
    if text is None:
        return None
    start, sep, stop = text.partition(":")
    try:
        rng = (int(start), int(stop))
    except ValueError:
        raise UsageError(f"--replicate-range {text!r}: write START:STOP, e.g. 10:20.") from None
    if not sep or not 0 <= rng[0] < rng[1] <= replicates:
        raise UsageError(
            f"--replicate-range {text!r} must be START:STOP with 0 <= START < STOP <= --replicates ({replicates})."
        )
    return rng


def _executor(args: argparse.Namespace) -> Any:
    from ..convergence.executors import make_executor

    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1; got {args.workers}.")
    if args.ray_address is not None and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray.")
    if args.executor == "ray":
        if importlib.util.find_spec("ray") is None:
            raise UsageError('--executor ray needs Ray: pip install "causal-pp[ray]" (or pip install ray).')
        options = {"address": args.ray_address} if args.ray_address else {}
        return make_executor("ray", args.workers, **options)
    return make_executor(args.executor, args.workers)


def _note(message: str) -> None:
    print(f"causal-pp: note: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the studies; print one table per query, write the plot and the report."""
    from ..convergence import write_report
    from ..convergence.grid import GridSpec, run_grids
    from ..convergence.targets import resolve_target
    from ..runtime import resolve_device

    sizes = ints(args.sizes, "--sizes", minimum=2)
    if args.replicates < 1:
        raise UsageError(f"--replicates must be >= 1; got {args.replicates}.")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer; got {args.seed}.")
    spec = GridSpec(
        sizes=tuple(sizes),
        replicates=args.replicates,
        replicate_range=_replicate_range(args.replicate_range, args.replicates),
        method=args.method,
        seed=args.seed,
        device=args.device,
        prob=args.prob,
        num_units=args.num_units,
        allow_unidentified=args.allow_unidentified,
        fit_kwargs=_fit_options(args.fit),
        **({} if args.batch_size is None else {"batch_size": args.batch_size}),
    )  # checks every option (fit options by the method itself) before any work
    resolve_device(args.device)
    executor = _executor(args)
    plan = _plan(args)
    out = writable_folder(args.out)
    grids = [
        (
            # several queries of a case share one fit per cell
            targets if case is None else [resolve_target(case, q, None, None, None) for q in chosen],
            spec,
            out / label if len(plan) > 1 else out,
        )
        for label, case, chosen, targets in plan
    ]
    with executor:  # one pool or Ray session for every case, their batches one stream
        found = run_grids(grids, progress=not (args.quiet or args.json), executor=executor, on_notice=_note)
    results = [s for done in found for s in done.values()]
    paths = write_report(results, out)
    if args.json:
        emit_json({"studies": [_summary_json(s) for s in results], "files": [str(p) for p in paths]})
        return EXIT_OK
    for result in results:
        _print_summary(result)
    for p in paths:
        print(f"wrote {p}")
    return EXIT_OK


def _print_summary(result: Any) -> None:
    from ..convergence.report import slope_lines

    verdict = "identified" if result.identified else "NOT identified: negative control"
    if result.kind == "bounds":
        verdict = "NOT identified: posterior of the sharp bounds"
    print(f"\n{result.target} ({verdict}); {result.truth_text()}")
    summary = result.summary()
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    for line in slope_lines(summary):
        print(line)
    flagged = int(summary["flagged"].sum())
    if flagged:
        reasons = list(dict.fromkeys(r for f in result.flagged()["flags"] for r in str(f).split("; ") if r))
        print(
            f"{flagged} cell(s) failed a diagnostic; e.g. {reasons[0]}" + (" ..." if len(reasons) > 1 else "")
        )


def _summary_json(result: Any) -> dict[str, Any]:
    summary = result.summary()
    out = {
        "target": result.target,
        "identified": result.identified,
        "truth": result.truth,
        "by_size": {str(n): {k: float(v) for k, v in row.items()} for n, row in summary.iterrows()},
        "flagged_cells": [
            {"n": int(r["n"]), "replicate": int(r["replicate"]), "flags": r["flags"]}
            for _, r in result.flagged().iterrows()
        ],
        "settings_key": result.meta.get("settings_keys", {}).get(result.target),
    }
    if "slope" in summary.attrs:
        out["slope"] = dict(zip(("estimate", "lower", "upper"), summary.attrs["slope"], strict=True))
    if result.kind == "bounds":
        out["kind"] = result.kind
        out["true_bounds"] = list(result.true_bounds) if result.true_bounds is not None else None
        out["slopes"] = {
            end: dict(zip(("estimate", "lower", "upper"), v, strict=True))
            for end, v in summary.attrs.get("slopes", {}).items()
        }
    return out
