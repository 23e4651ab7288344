"""Checks of option values, shared by every entry point: type, range and finiteness, before any work.

Each function returns the value (normalised where it says so) or raises
:class:`~causal_pp.errors.ArgumentTypeError` (wrong type; a bool is not a number) or
:class:`~causal_pp.errors.InvalidArgumentError` (right type, value out of range), naming the
option and the values it accepts.

Examples
--------
>>> positive_int("num_samples", 10)
10
>>> positive_int("num_samples", True)
Traceback (most recent call last):
...
causal_pp.errors.ArgumentTypeError: num_samples must be a positive integer; got True (bool).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "boolean",
    "choice",
    "finite_float",
    "integer",
    "non_negative_int",
    "positive_int",
    "probability",
    "range_pair",
    "seed",
]


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer >= ``minimum`` (default 1) and <= ``maximum`` (if given)."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if maximum is not None:
        what += f" and <= {maximum}"
    if not _is_int(value):
        raise ArgumentTypeError(f"{name} must be {what}; got {_describe(value)}.")
    if value < minimum or (maximum is not None and value > maximum):
        raise InvalidArgumentError(f"{name} must be {what}; got {value!r}.")
    return int(value)


def integer(name: str, value: Any) -> int:
    """Any integer (a bool is not one)."""
    if not _is_int(value):
        raise ArgumentTypeError(f"{name} must be an integer; got {_describe(value)}.")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """An integer >= 0."""
    if not _is_int(value):
        raise ArgumentTypeError(f"{name} must be a non-negative integer; got {_describe(value)}.")
    if value < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative integer; got {value!r}.")
    return int(value)


def seed(value: Any, name: str = "seed") -> int:
    """A seed: an integer in [0, 2**63)."""
    if not _is_int(value):
        raise ArgumentTypeError(f"{name} must be a non-negative integer; got {_describe(value)}.")
    if not 0 <= value < 2**63:
        raise InvalidArgumentError(f"{name} must be a non-negative integer below 2**63; got {value!r}.")
    return int(value)


def finite_float(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in the given interval."""
    lo_b, hi_b = "(" if low_open else "[", ")" if high_open else "]"
    interval = f"{lo_b}{low:g}, {high:g}{hi_b}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number in {interval}; got {_describe(value)}.")
    v = float(value)
    below = v < low or (low_open and v == low)
    above = v > high or (high_open and v == high)
    if not math.isfinite(v) or below or above:
        raise InvalidArgumentError(f"{name} must be a finite number in {interval}; got {value!r}.")
    return v


def probability(name: str, value: Any) -> float:
    """A number strictly between 0 and 1 (an interval's mass)."""
    return finite_float(name, value, low=0.0, high=1.0, low_open=True, high_open=True)


def range_pair(name: str, value: Any) -> tuple[float, float]:
    """A pair ``(low, high)`` of finite real numbers with ``low < high``.

    Examples
    --------
    >>> range_pair("outcome_range", (0, 10))
    (0.0, 10.0)
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ArgumentTypeError(
            f"{name} must be a pair (low, high) of finite real numbers; got {_describe(value)}."
        )
    low = finite_float(f"{name}[0]", value[0])
    high = finite_float(f"{name}[1]", value[1])
    if not low < high:
        raise InvalidArgumentError(f"{name} must be (low, high) with low < high; got ({low!r}, {high!r}).")
    return low, high


def boolean(name: str, value: Any) -> bool:
    """True or False (numbers and strings are refused: ``"False"`` is truthy)."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be True or False; got {_describe(value)}.")
    return value


def threads(value: Any) -> int | str | None:
    """A ``threads`` option: ``"auto"``, None (torch's setting) or a positive integer.

    >>> threads(2), threads("auto")
    (2, 'auto')
    """
    if value is None or (isinstance(value, str) and value == "auto"):
        return value
    if not _is_int(value) or value < 1:
        raise InvalidArgumentError(f"threads must be 'auto', None or a positive integer; got {value!r}.")
    return int(value)


def choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    """One of the strings ``options``."""
    if not isinstance(value, str) or value not in options:
        raise InvalidArgumentError(f"{name} must be one of {list(options)}; got {value!r}.")
    return value
