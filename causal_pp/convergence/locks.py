"""File locks and durable writes for the results store (POSIX ``flock``, ``fsync``).

A filesystem without locks (some FUSE and SMB mounts) is reported once with a
:class:`~causal_pp.convergence.records.StoreWarning`; the store then runs unlocked.

Examples
--------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> fd = os.open(os.path.join(folder, "f"), os.O_RDWR | os.O_CREAT)
>>> FileLocks(folder).flock(fd, fcntl.LOCK_EX)
True
>>> os.close(fd)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from ..errors import warn
from .records import StoreWarning

__all__ = ["FileLocks", "fsync_dir", "write_all"]

# flock errors that mean "this filesystem has no locks", as opposed to "someone holds it".
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class FileLocks:
    """``flock`` on the files of one folder, warning once where the filesystem has no locks.

    Examples
    --------
    >>> import tempfile
    >>> FileLocks(tempfile.mkdtemp()).available
    True
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.available = True

    def flock(self, fd: int, op: int) -> bool:
        """Lock; False (and one warning) where the filesystem has no locks. Raises BlockingIOError."""
        try:
            fcntl.flock(fd, op)
            return True
        except OSError as err:
            if err.errno not in _NO_LOCKS:
                raise
            if self.available:
                self.available = False
                warn(
                    f"the filesystem of {self.folder} does not support file locks ({err.strerror}): "
                    "appends run unlocked and claims do not exclude other processes.",
                    StoreWarning,
                )
            return False


def write_all(fd: int, payload: bytes) -> None:
    """Write all of ``payload``: one write in practice; a short write (disk full, a signal) continues."""
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(folder: Path) -> None:
    """Make a new directory entry durable (where the platform can fsync a directory)."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
