"""The ``causal-pp`` command line: one module per subcommand.

=================  ==========================================================  ===============
subcommand         what                                                        module
=================  ==========================================================  ===============
``identify``       is a query identifiable from a graph string? (``--json``)   :mod:`.identify`
``bounds``         the posterior of sharp bounds on a refused query (``--json``)  :mod:`.bounds`
``cases``          the built-in ground-truth cases                             :mod:`.cases`
``converge``       a convergence study on built-in cases (``--json``)          :mod:`.converge`
``merge``          gather results folders (shards) of converge runs into one   :mod:`.merge`
=================  ==========================================================  ===============

Exit status: 0 done (identified); 1 the query is not identified; 2 bad input -- one line on
stderr saying what to fix, nothing written to disk; 3 an unexpected internal error -- one line,
and ``--debug`` shows the traceback; 130 interrupted (finished results are kept).

Every subcommand module defines ``add(subparsers)``; imports of the library happen inside the
command functions, so ``causal-pp --help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import CausalPPError
from ..version import __version__
from . import bounds, cases, converge, identify, merge
from .common import EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED, OneLineParser, UsageError

__all__ = ["build_parser", "main"]

SUBCOMMANDS = (identify, bounds, cases, converge, merge)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = OneLineParser(
        prog="causal-pp",
        description="Identification-gated causal inference for Pyro models with latent variables.",
    )
    p.add_argument("--version", action="version", version=f"causal-pp {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in SUBCOMMANDS:
        module.add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``causal-pp`` console script; returns the exit status.

    Examples
    --------
    >>> main(["identify", "--graph", "X -> Y", "--do", "X", "--outcome", "Y"])  # doctest: +ELLIPSIS
    IDENTIFIED: P(Y | do(X)) (ID on the latent projection)
    ...
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(f"causal-pp: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except (CausalPPError, UsageError) as err:
        print(f"causal-pp: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("causal-pp: interrupted; finished results are kept in --out.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # an internal error: one line, the traceback on request
        if args.debug:
            raise
        print(
            f"causal-pp: internal error: {type(err).__name__}: {_one_line(err)} "
            "(this is a bug in causal_pp; rerun with --debug for the traceback and please report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
