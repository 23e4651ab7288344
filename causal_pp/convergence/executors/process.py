"""The process executor: a local pool of worker processes, each on one torch thread.

Workers are started with ``forkserver`` where the platform has it (the server imports causal_pp
once, so a new worker starts in a fraction of a second; workers never inherit the driver's open
files or claims) and with ``spawn`` elsewhere. Each worker is replaced after
``max_tasks_per_child`` cells: TorchScript traces and allocator caches that a long-lived process
accumulates are returned to the system with the process (Python >= 3.11; on 3.10 workers live
for the whole run).

Examples
--------
>>> ProcessExecutor(workers=2).describe()
'process (2 workers)'
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from ...errors import CausalPPError
from ...validation import choice, positive_int
from .base import Executor, bounded, register_executor

__all__ = ["ProcessExecutor", "init_worker"]

T = TypeVar("T")
R = TypeVar("R")

#: The module a forkserver imports before it forks workers (torch, pyro and causal_pp with it).
PRELOAD = "causal_pp.convergence.cells"


def init_worker() -> None:
    """Pin a worker to one torch thread (set in the worker, before its first cell)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@register_executor
class ProcessExecutor(Executor):
    """A local process pool (:class:`concurrent.futures.ProcessPoolExecutor`).

    Parameters
    ----------
    workers
        Worker processes (default: the number of CPUs).
    max_tasks_per_child
        Cells a worker runs before it is replaced (contains per-process JIT memory).
    start_method
        ``"forkserver"`` (default where available) or ``"spawn"``; never ``"fork"`` (a forked
        child would share the driver's claims and torch's thread pools).

    Examples
    --------
    >>> ex = ProcessExecutor(workers=2, max_tasks_per_child=10)
    >>> ex.workers, ex.max_tasks_per_child
    (2, 10)
    """

    name = "process"

    def __init__(
        self, workers: int | None = None, *, max_tasks_per_child: int = 25, start_method: str | None = None
    ) -> None:
        super().__init__((os.cpu_count() or 1) if workers is None else workers)
        self.max_tasks_per_child = positive_int("max_tasks_per_child", max_tasks_per_child)
        available = multiprocessing.get_all_start_methods()
        default = "forkserver" if "forkserver" in available else "spawn"
        self.start_method = choice(
            "start_method", default if start_method is None else start_method, ("forkserver", "spawn")
        )

    def _pool(self) -> ProcessPoolExecutor:
        ctx: Any = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload([PRELOAD])
        kwargs: dict[str, Any] = {}
        if sys.version_info >= (3, 11):
            kwargs["max_tasks_per_child"] = self.max_tasks_per_child
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=init_worker, **kwargs
        )

    def check_payload(self, payload: Any) -> None:
        """Refuse, before any work, targets that plain pickle cannot send to a worker process."""
        try:
            pickle.dumps(payload)
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            raise CausalPPError(
                f"the study's cases or models cannot be sent to worker processes ({err}). Register the "
                "case (causal_pp.cases.register) in a module the workers import, define the model, "
                "simulator and truth sampler as module-level functions, run it by import path (causal-pp "
                'converge --model mypkg.models:my_case), or use executor="ray", which pickles closures.'
            ) from None

    def imap(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Run ``fn`` on the pool, two tasks per worker in flight; yield results as they finish."""
        pool = self._pool()
        finished = False
        try:

            def wait_one(futures: list[Future[R]]) -> Future[R]:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                return next(f for f in futures if f in done)

            yield from bounded(
                lambda task: pool.submit(fn, task), wait_one, lambda f: f.result(), tasks, 2 * self.workers
            )
            finished = True
        finally:
            # Interrupted or failed: do not wait for running fits, drop the queued ones.
            pool.shutdown(wait=finished, cancel_futures=not finished)
