"""The Ray executor: cells as Ray tasks, on an existing cluster or a local one.

``pip install "causal-pp[ray]"``. With ``address`` (or the ``RAY_ADDRESS`` environment
variable) the executor connects to a running cluster (``ray start --head`` on one machine,
``ray start --address=HEAD:6379`` on the others); without, it starts a local Ray with
``workers`` CPUs and shuts it down when done. A Ray session that is already initialised in this
process is used as it is. Each cell is a task on one CPU; a Ray worker process is replaced after
``max_calls`` cells (as the process executor's ``max_tasks_per_child``). The cells come back to
this process, the only writer of the results store; every node needs causal_pp (and the code of
a user's model) importable.

Examples
--------
>>> RayExecutor(workers=2).describe()
'ray (2 workers)'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from ...errors import CausalPPError
from ...validation import positive_int
from .base import Executor, bounded, register_executor

__all__ = ["RayExecutor"]

T = TypeVar("T")
R = TypeVar("R")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CausalPPError(
            'executor="ray" needs Ray: pip install "causal-pp[ray]" (or pip install ray).'
        ) from None
    return ray


@register_executor
class RayExecutor(Executor):
    """Run cells as Ray tasks.

    Parameters
    ----------
    workers
        Cells in flight at once is twice this. For a local Ray, its number of CPUs (default:
        all of this machine's); on a cluster, default: the cluster's CPUs.
    address
        A cluster to connect to (``"auto"``, ``"HEAD:6379"``, ``"ray://HEAD:10001"``); None: the
        ``RAY_ADDRESS`` environment variable, or a new local Ray.
    max_calls
        Cells a Ray worker process runs before it is replaced.
    init_options
        More keyword arguments for ``ray.init`` (e.g. ``runtime_env``).

    Examples
    --------
    >>> RayExecutor(address="auto").address
    'auto'
    """

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        *,
        address: str | None = None,
        max_calls: int = 25,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(workers)
        self._workers_given = workers is not None
        self.address = address
        self.max_calls = positive_int("max_calls", max_calls)
        self.init_options = dict(init_options or {})
        self._started = False

    def _connect(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        options = {"include_dashboard": False, "log_to_driver": False, **self.init_options}
        if self.address is None and not _env_address():
            options.setdefault("num_cpus", self.workers if self._workers_given else None)
        ray.init(address=self.address, **options)
        self._started = True
        if not self._workers_given:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def imap(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Submit ``fn`` as Ray tasks, two per worker in flight; yield results as they finish."""
        ray = _ray()
        self._connect(ray)
        remote = ray.remote(num_cpus=1, max_calls=self.max_calls)(fn)
        pending: list[Any] = []

        def submit(task: T) -> Any:
            ref = remote.remote(task)
            pending.append(ref)
            return ref

        def wait_one(refs: list[Any]) -> Any:
            (done,), _ = ray.wait(refs, num_returns=1)
            return done

        def result(ref: Any) -> R:
            pending.remove(ref)
            return ray.get(ref)

        try:
            yield from bounded(submit, wait_one, result, tasks, 2 * self.workers)
        finally:
            for ref in pending:  # interrupted: stop what is still queued or running
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Shut down the local Ray this executor started (a cluster it joined keeps running)."""
        if self._started:
            ray = _ray()
            ray.shutdown()
            self._started = False


def _env_address() -> bool:
    return bool(os.environ.get("RAY_ADDRESS"))
