"""``causal-pp bounds``: the posterior of the sharp bounds on a query, from a CSV of discrete data."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, UsageError, assignments, emit_json, split

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register the subcommand."""
    b = sub.add_parser(
        "bounds", help="bounds on a causal effect the data cannot pin down (discrete data; a CSV file)"
    )
    b.add_argument("--graph", required=True, help='edges, e.g. "Z -> X -> Y; X <-> Y"')
    b.add_argument("--latent", action="append", help="latent node(s), comma-separated or repeated")
    b.add_argument("--data", required=True, help="CSV file with one column per observed variable")
    b.add_argument(
        "--do",
        action="append",
        required=True,
        help="the treatment: NAME=VALUE (or NAME with --treated/--control)",
    )
    b.add_argument("--outcome", required=True, help="the outcome variable")
    b.add_argument("--given", action="append", help="conditioning variable(s): NAME=VALUE")
    b.add_argument("--ate", action="store_true", help="bound the ATE of --treated vs --control instead")
    b.add_argument("--treated", type=float, default=1.0, help="treated value for --ate (default 1)")
    b.add_argument("--control", type=float, default=0.0, help="control value for --ate (default 0)")
    b.add_argument("--outcome-value", type=int, default=None, help="bound P(outcome = this value | do(...))")
    b.add_argument(
        "--outcome-range", default=None, help="LOW,HIGH for a continuous outcome (no-assumption bounds)"
    )
    b.add_argument("--num-samples", type=int, default=1000, help="posterior draws (default 1000)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--prob", type=float, default=0.94, help="credible mass of the intervals (default 0.94)")
    b.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    b.set_defaults(func=run)


def _query(args: argparse.Namespace) -> Any:
    from ..queries import ATE, Interventional

    do = assignments(args.do, "--do")
    given = assignments(args.given, "--given") or None
    if args.ate:
        if len(do) != 1:
            raise UsageError(
                "--ate needs exactly one treatment in --do (its values come from --treated/--control)."
            )
        return ATE(next(iter(do)), args.outcome, treated=args.treated, control=args.control, given=given)
    return Interventional(args.outcome, do=do, given=given)


def _range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = split(text)
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--outcome-range {text!r} must be LOW,HIGH (two numbers).") from None
    return low, high


def run(args: argparse.Namespace) -> int:
    """Read the data, compute the bounds' posterior, print it."""
    from pathlib import Path

    import pandas as pd

    from ..graph import CausalGraph
    from ..partial import bounds

    graph = CausalGraph.parse(args.graph, latent=split(args.latent))
    query = _query(args)
    path = Path(args.data)
    if not path.is_file():
        raise UsageError(
            f"--data {args.data!r} is not a file; give a CSV with one column per observed variable."
        )
    try:
        data = pd.read_csv(path)
    except (ValueError, OSError) as err:
        raise UsageError(f"--data {args.data!r} could not be read as CSV: {err}") from None
    result = bounds(
        graph,
        query,
        data,
        num_samples=args.num_samples,
        seed=args.seed,
        outcome_range=_range(args.outcome_range),
        outcome_value=args.outcome_value,
    )
    (lo_lo, lo_hi), (up_lo, up_hi) = result.interval(args.prob)
    region = result.identified_set(args.prob)
    if args.json:
        emit_json(
            {
                "query": result.label or str(query),
                "lower": {"mean": result.mean[0], "interval": [lo_lo, lo_hi]},
                "upper": {"mean": result.mean[1], "interval": [up_lo, up_hi]},
                "identified_set": list(region),
                "prob": args.prob,
                "sharp": result.sharp,
                "method": result.method,
                "posterior": result.posterior,
                "acceptance": result.acceptance,
                "note": result.note,
                "num_samples": result.num_samples,
                "seed": result.seed,
            }
        )
        return EXIT_OK
    pct = f"{args.prob:.0%}"
    print(
        f"{result.label or query}: {'sharp' if result.sharp else 'valid (possibly loose)'} bounds ({result.method})"
    )
    print(f"  lower bound {result.mean[0]:.4g}  ({pct} interval {lo_lo:.4g} .. {lo_hi:.4g})")
    print(f"  upper bound {result.mean[1]:.4g}  ({pct} interval {up_lo:.4g} .. {up_hi:.4g})")
    print(f"  {pct} credible region for the identified interval: [{region[0]:.4g}, {region[1]:.4g}]")
    if result.note:
        print(f"  note: {result.note}")
    return EXIT_OK
