"""The serial executor: every cell in this process, one after another (the default).

Examples
--------
>>> list(SerialExecutor().imap(len, ["ab", "c"]))
[('ab', 2), ('c', 1)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from .base import Executor, register_executor

__all__ = ["SerialExecutor"]

T = TypeVar("T")
R = TypeVar("R")


@register_executor
class SerialExecutor(Executor):
    """Run each task in this process, in order.

    Examples
    --------
    >>> SerialExecutor().describe()
    'serial (1 worker)'
    """

    name = "serial"

    def imap(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Run ``fn`` on each task as it is pulled."""
        for task in tasks:
            yield task, fn(task)
