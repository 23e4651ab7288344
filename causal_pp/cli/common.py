"""What every subcommand shares: exit codes, one-line errors, argument parsing, JSON output."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_IDENTIFIED",
    "EXIT_OK",
    "OneLineParser",
    "UsageError",
    "assignments",
    "emit_json",
    "ints",
    "split",
    "writable_folder",
]

EXIT_OK = 0
EXIT_NOT_IDENTIFIED = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad command line: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the fix (not usage + message)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def split(values: Sequence[str] | str | None) -> list[str]:
    """Comma-separated and repeated flags as one list: ``["a,b", "c"]`` -> ``["a", "b", "c"]``.

    Examples
    --------
    >>> split(["a, b", "c"])
    ['a', 'b', 'c']
    """
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values or ():
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def assignments(values: Sequence[str] | None, flag: str) -> dict[str, float]:
    """``X`` or ``X=1.5``; a bare name gets 0.0 (identification only looks at names).

    Examples
    --------
    >>> assignments(["X=1", "W"], "--do")
    {'X': 1.0, 'W': 0.0}
    """
    out: dict[str, float] = {}
    for item in split(values):
        name, _, value = item.partition("=")
        try:
            number = float(value) if value else 0.0
        except ValueError:
            raise UsageError(
                f"{flag} {item!r}: {value!r} is not a number (write NAME or NAME=VALUE)."
            ) from None
        if not math.isfinite(number):
            raise UsageError(f"{flag} {item!r}: the value must be a finite number.")
        out[name.strip()] = number
    return out


def ints(text: str, flag: str, *, minimum: int) -> list[int]:
    """Comma-separated integers >= ``minimum``.

    Examples
    --------
    >>> ints("50,200", "--sizes", minimum=2)
    [50, 200]
    """
    items = split(text)
    if not items:
        raise UsageError(f"{flag} is empty; give comma-separated integers, e.g. {flag} 50,200.")
    out = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"{flag} {item!r} is not an integer; give comma-separated integers.") from None
        if value < minimum:
            raise UsageError(f"{flag} {value} is below {minimum}.")
        out.append(value)
    return out


def writable_folder(path: str, flag: str = "--out") -> Path:
    """A folder that exists or can be made: checked without creating anything.

    Examples
    --------
    >>> writable_folder("results").name
    'results'
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {path!r} is a file, not a folder; give a folder for the results.")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path!r}: {str(probe)!r} is not writable; choose another folder.")
    return p


def emit_json(payload: Any) -> None:
    """Write ``payload`` as one JSON document on stdout (NaN becomes null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    json.dump(clean(payload), sys.stdout, indent=2)
    sys.stdout.write("\n")
