"""Claims on cells: per-cell ``flock``\\ s so that two processes never compute the same cell.

A claim is a non-blocking exclusive ``flock`` on a per-cell lock file in ``folder/.claims/``;
the kernel releases it when the holder exits, however it exits (``kill -9`` included), so there
are no stale claims to expire. A lock file is unlinked by its holder on release; a claimer that
locks a file which was unlinked in the meantime notices (its inode is no longer the path's) and
retries, which makes the unlink safe. A lock is held per open file description: a child forked
while a claim is held shares it until the child exits.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> locks = ClaimLocks(folder, FileLocks(folder))
>>> held = locks.acquire([("ab" * 32, ("a", 1))])
>>> locks.acquire([("ab" * 32, ("a", 1))]) is None  # held by us: nobody else gets it
True
>>> Claim(held, True, ()).release(); locks.prune(); (folder / ".claims").exists()
False
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .keys import canonical_json
from .locks import FileLocks
from .records import CellId, as_cell_id

__all__ = ["CLAIMS_DIR", "Claim", "ClaimInfo", "ClaimLocks"]

CLAIMS_DIR = ".claims"


@dataclass(frozen=True)
class ClaimInfo:
    """Who holds a claim: what the holder wrote into the lock file (fields may be ``None``).

    Examples
    --------
    >>> ClaimInfo("ab" * 32, ("frontdoor/ate", 50, 0), 4242, "node1", 0.0).pid
    4242
    """

    key: str | None
    cell_id: CellId | None
    pid: int | None
    host: str | None
    since: float | None


class Claim:
    """A held (or refused) claim on one or more cells; release it with ``with`` or :meth:`release`.

    Attributes
    ----------
    acquired
        Whether this process holds the claim (no other live process does).
    todo
        The claimed ``(key, cell_id)`` pairs not stored yet, re-read after the lock was taken.

    ``bool(claim)`` is true when the claim is held and something is left to compute.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> locks = ClaimLocks(folder, FileLocks(folder))
    >>> pair = ("ab" * 32, ("frontdoor/ate", 50, 0))
    >>> with Claim(locks.acquire([pair]), True, (pair,)) as claim:
    ...     bool(claim), locks.acquire([pair]) is None
    (True, True)
    """

    def __init__(
        self, held: list[tuple[Path, int]], acquired: bool, todo: tuple[tuple[str, CellId], ...]
    ) -> None:
        self._held = held
        self._pid = os.getpid()
        self.acquired = acquired
        self.todo = todo

    def __bool__(self) -> bool:
        return self.acquired and bool(self.todo)

    def __repr__(self) -> str:
        return f"Claim(acquired={self.acquired}, todo={list(self.todo)})"

    def release(self) -> None:
        """Release the claim (idempotent).

        The lock file is unlinked while still locked, then closed: a process that opened the
        old file meanwhile sees, once it gets the lock, that the path is gone and retries.
        """
        held, self._held = self._held, []
        for path, fd in held:
            if os.getpid() == self._pid:  # a forked child closes its copy but leaves the parent's lock
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            os.close(fd)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # an abandoned claim must not keep its cells locked
        with contextlib.suppress(Exception):
            self.release()


class ClaimLocks:
    """The lock files of one folder's claims (``folder/.claims/``).

    Parameters
    ----------
    folder
        The results folder.
    locks
        Its :class:`~causal_pp.convergence.locks.FileLocks` (where there are no locks, every
        claim succeeds).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> ClaimLocks(folder, FileLocks(folder)).live()
    []
    """

    def __init__(self, folder: Path, locks: FileLocks) -> None:
        self.dir = Path(folder) / CLAIMS_DIR
        self.locks = locks

    def lock_path(self, key: str, cell_id: CellId) -> Path:
        """The lock file of one cell."""
        digest = hashlib.sha256(f"{key}\0{canonical_json(list(cell_id))}".encode()).hexdigest()[:40]
        return self.dir / f"{digest}.lock"

    def _try_lock(self, path: Path) -> int | None:
        """An fd holding the exclusive lock of ``path``, or None if another process holds it."""
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # another process removed the empty claims folder
                self.dir.mkdir(parents=True, exist_ok=True)
                continue
            try:
                if not self.locks.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
                    return fd  # no locks on this filesystem: every claim succeeds
            except BlockingIOError:
                os.close(fd)
                return None
            # Its holder may have unlinked the file between our open and our lock: then we hold
            # a lock nobody else can see. Lock the path's current file instead.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def acquire(self, wanted: Iterable[tuple[str, CellId]]) -> list[tuple[Path, int]] | None:
        """Lock every pair's file, or none: the held ``(path, fd)`` list, or None if one is taken.

        Locks are taken in a fixed order, so two processes wanting overlapping sets do not both
        give up. Each lock file records who holds it (pid, host, since when).
        """
        wanted = list(wanted)
        self.dir.mkdir(parents=True, exist_ok=True)
        by_path = {self.lock_path(*p): p for p in wanted}
        held: list[tuple[Path, int]] = []
        for path in sorted(by_path):
            fd = self._try_lock(path)
            if fd is None:
                Claim(held, False, ()).release()
                return None
            held.append((path, fd))
        for path, fd in held:
            key, cell_id = by_path[path]
            info = {"key": key, "id": list(cell_id), "pid": os.getpid(), "host": socket.gethostname()}
            info["since"] = time.time()
            with contextlib.suppress(OSError):  # who holds it is a courtesy for waiting processes
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
        return held

    def holder(self, key: str, cell_id: CellId) -> ClaimInfo | None:
        """Who holds the claim on the cell, or None when nobody does (a stale file is removed)."""
        path = self.lock_path(key, cell_id)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                if not self.locks.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
                    return None
            except BlockingIOError:
                try:
                    info = json.loads(os.pread(fd, 4096, 0) or b"{}")
                except ValueError:
                    info = {}
                return ClaimInfo(key, cell_id, info.get("pid"), info.get("host"), info.get("since"))
            # Nobody holds it: a holder died (kill -9) before unlinking it. Remove it if it is
            # still the path's file (checked under our lock, as in _try_lock).
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
            return None
        finally:
            os.close(fd)

    def live(self) -> list[ClaimInfo]:
        """The live claims (stale lock files found are removed)."""
        out = []
        for path in sorted(self.dir.glob("*.lock")) if self.dir.is_dir() else []:
            try:
                info = json.loads(path.read_bytes() or b"{}")
                key, cell_id = str(info["key"]), as_cell_id(info["id"])
            except (OSError, ValueError, KeyError, TypeError):
                key, cell_id = None, None
            if key is not None and cell_id is not None and path == self.lock_path(key, cell_id):
                holder = self.holder(key, cell_id)
                if holder is not None:
                    out.append(holder)
            elif self._prune_one(path):
                out.append(ClaimInfo(None, None, None, None, None))
        return out

    def _prune_one(self, path: Path) -> bool:
        """Remove ``path`` if nobody holds it; returns whether someone does."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                if not self.locks.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
                    return False
            except BlockingIOError:
                return True
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
            return False
        finally:
            os.close(fd)

    def prune(self) -> None:
        """Remove lock files nobody holds (left by killed processes), and the empty claims folder."""
        if not self.dir.is_dir():
            return
        for path in self.dir.glob("*.lock"):
            self._prune_one(path)
        with contextlib.suppress(OSError):  # not empty: someone holds a claim, or just made one
            self.dir.rmdir()
