"""``causal-pp converge``: convergence studies of built-in cases, error of the estimate vs N.

Every argument is checked -- case and query names, sizes, replicates, seed, device, the output
folder, and whether a query is identified -- before anything is fitted or written.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, UsageError, emit_json, ints, split, writable_folder

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register the subcommand."""
    v = sub.add_parser("converge", help="convergence study: error of the causal estimate vs sample size")
    v.add_argument("--case", required=True, help="case name(s), comma-separated (see `causal-pp cases`)")
    v.add_argument(
        "--query",
        default=None,
        help="query name(s) of the case, comma-separated, sharing one fit per cell (default: its first)",
    )
    v.add_argument("--sizes", default="50,200,800", help="comma-separated sample sizes (integers >= 2)")
    v.add_argument("--replicates", type=int, default=5, help="data sets per size (>= 1)")
    v.add_argument("--method", default="svi", choices=["svi", "nuts"])
    v.add_argument("--seed", type=int, default=0, help="master seed (>= 0)")
    v.add_argument("--device", default="cpu", help="'cpu' or 'cuda'")
    v.add_argument("--out", default="results", help="folder for the results, the plot and report.md")
    v.add_argument(
        "--allow-unidentified",
        action="store_true",
        help="estimate a non-identified query anyway (a negative control; flagged in the output)",
    )
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.add_argument("--json", action="store_true", help="print the summaries as JSON (for scripts)")
    v.set_defaults(func=run)


def _plan(args: argparse.Namespace) -> list[tuple[Any, list[str]]]:
    """(case, query names) to run; every name and verdict checked first."""
    from ..cases import get_case

    names = split(args.case)
    if not names:
        raise UsageError("--case is empty; name at least one case (see `causal-pp cases`).")
    queries = split(args.query) if args.query else None
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
            if not cq.identified and not args.allow_unidentified:
                raise UsageError(
                    f"{case.name}/{q}: {cq.query} is not identifiable from the observed variables of "
                    f"{case.name!r}, so its estimate has no causal guarantee. Pass --allow-unidentified "
                    "to run it as a negative control."
                )
        plan.append((case, chosen))
    return plan


def run(args: argparse.Namespace) -> int:
    """Run the studies; print one table per query, write the plot and the report."""
    from ..convergence import studies as run_studies
    from ..convergence import write_report
    from ..runtime import resolve_device

    plan = _plan(args)
    sizes = ints(args.sizes, "--sizes", minimum=2)
    if args.replicates < 1:
        raise UsageError(f"--replicates must be >= 1; got {args.replicates}.")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer; got {args.seed}.")
    resolve_device(args.device)
    out = writable_folder(args.out)
    results = []
    for case, chosen in plan:
        # Several queries of a case share one fit per cell.
        done = run_studies(
            case,
            chosen,
            sizes=sizes,
            replicates=args.replicates,
            method=args.method,
            seed=args.seed,
            device=args.device,
            out=out / case.name if len(plan) > 1 else out,
            allow_unidentified=args.allow_unidentified,
            progress=not (args.quiet or args.json),
        )
        results.extend(done.values())
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
    verdict = "identified" if result.identified else "NOT identified: negative control"
    print(f"\n{result.target} ({verdict}); truth = {result.truth:.4g}")
    summary = result.summary()
    print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    if "slope" in summary.attrs:
        s, lo, hi = summary.attrs["slope"]
        print(f"log-log slope of |error| vs N: {s:.3f} (95% CI {lo:.3f} .. {hi:.3f})")


def _summary_json(result: Any) -> dict[str, Any]:
    summary = result.summary()
    out = {
        "target": result.target,
        "identified": result.identified,
        "truth": result.truth,
        "by_size": {str(n): {k: float(v) for k, v in row.items()} for n, row in summary.iterrows()},
    }
    if "slope" in summary.attrs:
        out["slope"] = dict(zip(("estimate", "lower", "upper"), summary.attrs["slope"], strict=True))
    return out
