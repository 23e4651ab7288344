"""``causal-pp cases``: the built-in ground-truth cases and their queries."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK

__all__ = ["add", "run"]


def add(sub: Any) -> None:
    """Register the subcommand."""
    c = sub.add_parser("cases", help="list the built-in ground-truth cases and their queries")
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print every case: its graph's size, its queries, their verdicts and truths."""
    from ..cases import registry

    for name, case in registry().items():
        g = case.graph
        print(f"{name}: {len(g.observed)} observed, {len(g.latent)} latent ({', '.join(g.latent)})")
        for qname, cq in case.queries.items():
            verdict = "identified" if cq.identified else "NOT identified"
            text = str(cq.query)
            if text.startswith("P("):  # the recorded truth of an interventional query is its mean
                text = "E[" + text[2:-1] + "]"
            bounds = cq.true_bounds
            if bounds is not None:  # a bounds query: studied by the posterior of its sharp bounds
                verdict += f"; true sharp bounds [{bounds[0]:.4g}, {bounds[1]:.4g}]"
            print(f"    {qname}: {text} = {cq.truth:.4g}  [{verdict}; truth {cq.truth_method}]")
    return EXIT_OK
