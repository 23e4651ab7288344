"""The executor interface and its registration table.

An executor runs a function over tasks and yields ``(task, result)`` pairs as they finish. It
pulls tasks from the iterator it is given only when it has room for them (at most a few per
worker in flight), because the study driver claims each task's cells in the results store the
moment it hands the task over: a lazily pulled task is claimed late, so another process sharing
the folder can take the rest. The driver -- never a worker -- writes the store.

Examples
--------
>>> sorted(EXECUTORS) == sorted(["process", "ray", "serial"])  # once the package is imported
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, TypeVar

from ...errors import InvalidArgumentError
from ...validation import positive_int

__all__ = ["EXECUTORS", "Executor", "make_executor", "register_executor"]

T = TypeVar("T")
R = TypeVar("R")


class Executor:
    """Base of the study executors: ``imap(fn, tasks)`` yields ``(task, fn(task))`` as they finish.

    Subclasses set :attr:`name`, take ``workers`` (and their own options) in ``__init__``, and
    implement :meth:`imap`. ``fn`` and the tasks must be picklable for executors that run them in
    other processes. Use as a context manager, or call :meth:`close` when done.

    Examples
    --------
    >>> from causal_pp.convergence.executors import SerialExecutor
    >>> with SerialExecutor() as ex:
    ...     sorted(r for _, r in ex.imap(abs, [-2, 1]))
    [1, 2]
    """

    name: ClassVar[str] = ""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = 1 if workers is None else positive_int("workers", workers)

    def imap(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Run ``fn`` on each task, pulling tasks lazily; yield ``(task, result)`` as each finishes."""
        raise NotImplementedError  # pragma: no cover

    def close(self) -> None:
        """Release what the executor holds (pools, a cluster connection it opened)."""

    def check_payload(self, payload: Any) -> None:
        """Raise a :class:`~causal_pp.errors.CausalPPError` now if ``payload`` cannot reach a worker.

        Called by the study driver with the targets before any work; the default checks nothing.
        """

    def describe(self) -> str:
        """A short description for reports, e.g. ``process (2 workers)``."""
        return f"{self.name} ({self.workers} worker{'s' if self.workers != 1 else ''})"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


EXECUTORS: dict[str, type[Executor]] = {}
"""Executor name -> class; ``study(..., executor="<name>")`` and ``converge --executor`` look here."""


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Class decorator: make ``cls`` available as ``study(..., executor=cls.name)``.

    Examples
    --------
    >>> @register_executor
    ... class Inline(Executor):
    ...     name = "inline"
    ...     def imap(self, fn, tasks):
    ...         return ((t, fn(t)) for t in tasks)
    >>> make_executor("inline").describe()
    'inline (1 worker)'
    >>> del EXECUTORS["inline"]
    """
    if not cls.name:
        raise InvalidArgumentError(f"{cls.__name__} needs a class attribute `name` to be registered.")
    EXECUTORS[cls.name] = cls
    return cls


def make_executor(executor: str | Executor, workers: int | None = None, **options: Any) -> Executor:
    """The executor for ``study(executor=..., workers=...)``: a registered name, or an executor object.

    Raises
    ------
    InvalidArgumentError
        An unknown name, or ``workers``/options given together with an executor object.

    Examples
    --------
    >>> make_executor("serial")
    SerialExecutor(workers=1)
    >>> make_executor("process", workers=2).workers
    2
    """
    if isinstance(executor, Executor):
        if workers is not None or options:
            raise InvalidArgumentError(
                f"workers and executor options go to the executor object itself ({executor!r}), not to study()."
            )
        return executor
    if not isinstance(executor, str) or executor not in EXECUTORS:
        raise InvalidArgumentError(
            f"executor must be one of {sorted(EXECUTORS)} or an Executor object; got {executor!r}."
        )
    return EXECUTORS[executor](workers, **options)


def bounded(
    submit: Callable[[T], Any],
    wait_one: Callable[[list[Any]], Any],
    result: Callable[[Any], R],
    tasks: Iterable[T],
    limit: int,
) -> Iterator[tuple[T, R]]:
    """Keep at most ``limit`` tasks in flight: submit, wait for one, yield it, refill.

    ``submit(task) -> handle``; ``wait_one(handles) -> a finished handle``; ``result(handle)``.

    Examples
    --------
    >>> list(bounded(lambda t: t, lambda hs: hs[0], lambda h: h * 10, [1, 2, 3], limit=2))
    [(1, 10), (2, 20), (3, 30)]
    """
    it = iter(tasks)
    flight: dict[Any, T] = {}
    handles: list[Any] = []
    exhausted = False
    while True:
        while not exhausted and len(flight) < limit:
            try:
                task = next(it)
            except StopIteration:
                exhausted = True
                break
            handle = submit(task)
            flight[id(handle)] = task
            handles.append(handle)
        if not handles:
            return
        done = wait_one(handles)
        handles = [h for h in handles if h is not done]
        yield flight.pop(id(done)), result(done)
