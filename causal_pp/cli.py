"""The ``causal-pp`` command line.

``causal-pp identify``  decide whether a query is identifiable from a graph string;
``causal-pp cases``     list the built-in ground-truth cases;
``causal-pp converge``  run a convergence study on a built-in case.

Errors the user can fix are printed as one line (no traceback) with exit status 2; a refused
(non-identifiable) query exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import CausalPPError, NotIdentifiableError

__all__ = ["main"]


def _split(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or ():
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _assignments(values: Sequence[str] | None, flag: str) -> dict[str, float]:
    """``X`` or ``X=1.5``; a bare name gets 0.0 (identification only looks at names)."""
    out: dict[str, float] = {}
    for item in _split(values):
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value) if value else 0.0
        except ValueError:
            raise CausalPPError(
                f"{flag} {item!r}: {value!r} is not a number (write NAME or NAME=VALUE)."
            ) from None
    return out


def _cmd_identify(args: argparse.Namespace) -> int:
    from .graph import CausalGraph
    from .identification import identify
    from .queries import Interventional, query_text

    graph = CausalGraph.parse(args.graph, latent=_split(args.latent))
    given = _split(args.given) or None
    query = Interventional(_split(args.outcome), do=_assignments(args.do, "--do"), given=given)
    asked = query_text(query.treatments, query.outcomes, query.conditions)
    try:
        result = identify(graph, query)
    except NotIdentifiableError as err:
        print(f"NOT IDENTIFIED: {asked}")
        print(err.reason)
        return 1
    print(f"IDENTIFIED: {asked} ({result.algorithm} on the latent projection)")
    print(result.reason)
    print(f"estimand (y0's formula, not verified by causal_pp): {result.estimand.to_text()}")
    return 0


def _cmd_cases(args: argparse.Namespace) -> int:
    from .cases import registry

    for name, case in registry().items():
        g = case.graph
        print(f"{name}: {len(g.observed)} observed, {len(g.latent)} latent ({', '.join(g.latent)})")
        for qname, cq in case.queries.items():
            verdict = "identified" if cq.identified else "NOT identified"
            text = str(cq.query)
            if text.startswith("P("):  # the recorded truth of an interventional query is its mean
                text = "E[" + text[2:-1] + "]"
            print(f"    {qname}: {text} = {cq.truth:.4g}  [{verdict}; truth {cq.truth_method}]")
    return 0


def _cmd_converge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .cases import get_case
    from .convergence import studies as run_studies
    from .convergence import write_report

    names = _split([args.case])
    cases = [get_case(name) for name in names]  # fail on a bad name before any fit
    queries = _split([args.query]) if args.query else None
    for case in cases:
        missing = [q for q in queries or () if q not in case.queries]
        if missing:
            raise CausalPPError(
                f"case {case.name!r} has no query {missing[0]!r}; its queries are {list(case.queries)}."
            )
    sizes = [int(s) for s in _split([args.sizes])]
    out = Path(args.out)
    studies = []
    for case in cases:
        # Several queries of a case share one fit per cell.
        results = run_studies(
            case,
            queries or [next(iter(case.queries))],
            sizes=sizes,
            replicates=args.replicates,
            method=args.method,
            seed=args.seed,
            device=args.device,
            out=out / case.name if len(cases) > 1 else out,
            allow_unidentified=args.allow_unidentified,
            progress=not args.quiet,
        )
        for result in results.values():
            studies.append(result)
            verdict = "identified" if result.identified else "NOT identified: negative control"
            print(f"\n{result.target} ({verdict}); truth = {result.truth:.4g}")
            summary = result.summary()
            print(summary.to_string(float_format=lambda v: f"{v:.4g}"))
            if "slope" in summary.attrs:
                s, lo, hi = summary.attrs["slope"]
                print(f"log-log slope of |error| vs N: {s:.3f} (95% CI {lo:.3f} .. {hi:.3f})")
    for p in write_report(studies, out):
        print(f"wrote {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = argparse.ArgumentParser(
        prog="causal-pp",
        description="Identification-gated causal inference for Pyro models with latent variables.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser(
        "identify", help="is P(outcome | do(...), given) identifiable from the observed variables?"
    )
    q.add_argument(
        "--graph",
        required=True,
        help='edges, e.g. "U -> X; U -> Y; X -> Z -> Y" ("A <-> B": latent confounder)',
    )
    q.add_argument("--latent", action="append", help="latent node(s), comma-separated or repeated")
    q.add_argument("--do", action="append", required=True, help="intervened node(s): NAME or NAME=VALUE")
    q.add_argument("--outcome", action="append", required=True, help="outcome node(s)")
    q.add_argument("--given", action="append", help="conditioning node(s) (IDC)")
    q.set_defaults(func=_cmd_identify)

    c = sub.add_parser("cases", help="list the built-in ground-truth cases and their queries")
    c.set_defaults(func=_cmd_cases)

    v = sub.add_parser("converge", help="convergence study: error of the causal estimate vs sample size")
    v.add_argument("--case", required=True, help="case name(s), comma-separated (see `causal-pp cases`)")
    v.add_argument(
        "--query",
        default=None,
        help="query name(s) of the case, comma-separated, sharing one fit per cell (default: its first)",
    )
    v.add_argument("--sizes", default="50,200,800", help="comma-separated sample sizes")
    v.add_argument("--replicates", type=int, default=5)
    v.add_argument("--method", default="svi", choices=["svi", "nuts"])
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--device", default="cpu")
    v.add_argument("--out", default="results", help="folder for results.jsonl, the plot and report.md")
    v.add_argument(
        "--allow-unidentified",
        action="store_true",
        help="estimate a non-identified query anyway (a negative control; flagged in the output)",
    )
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=_cmd_converge)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``causal-pp`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CausalPPError as err:
        print(f"causal-pp: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("causal-pp: interrupted; finished results are kept in --out.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
