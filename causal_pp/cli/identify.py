"""``causal-pp identify``: is P(outcome | do(...), given) identifiable from the observed variables?"""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_NOT_IDENTIFIED, EXIT_OK, assignments, emit_json, split

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register the subcommand."""
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
    q.add_argument("--json", action="store_true", help="print the verdict as JSON (for scripts)")
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Decide the query; print the verdict, the reason and the estimand."""
    from ..graph import CausalGraph
    from ..identification import identify
    from ..queries import Interventional, query_text

    graph = CausalGraph.parse(args.graph, latent=split(args.latent))
    query = Interventional(
        split(args.outcome), do=assignments(args.do, "--do"), given=split(args.given) or None
    )
    asked = query_text(query.treatments, query.outcomes, query.conditions)
    result = identify(graph, query, strict=False)
    code = EXIT_OK if result.identified else EXIT_NOT_IDENTIFIED
    if args.json:
        emit_json(_payload(asked, result))
        return code
    if not result.identified:
        print(f"NOT IDENTIFIED: {asked}")
        print(result.reason)
        return code
    print(f"IDENTIFIED: {asked} ({result.algorithm} on the latent projection)")
    print(result.reason)
    print(f"estimand: {result.estimand.equation()}")
    if result.estimand.extra:
        print(f"  (the same for every value of {', '.join(result.estimand.extra)})")
    return code


def _payload(asked: str, result: Any) -> dict[str, Any]:
    e = result.estimand
    return {
        "query": asked,
        "identified": result.identified,
        "algorithm": result.algorithm,
        "reason": result.reason,
        "estimand": None
        if e is None
        else {"text": str(e), "ascii": e.to_text(ascii=True), "latex": e.to_latex(), "extra": list(e.extra)},
    }
