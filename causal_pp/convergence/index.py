"""The reader of a results folder: cells by key space, read incrementally from the files' tails.

A :class:`CellIndex` remembers how far it has read each file and parses only what was appended
since. Readers take a shared lock while they read, so a last line without a newline under the
lock is known to be torn (a writer was killed inside ``write``), not half-written. A damaged
line is reported once with a :class:`~causal_pp.convergence.records.StoreWarning` naming file,
line and reason, and skipped; every line after it is read as usual. A cell stored twice is
read once: silently when both copies are identical, with a warning (the first copy wins) when
they differ.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "cells.jsonl").write_text("not json\\n")
>>> index = CellIndex(folder / "results.jsonl", folder / "cells.jsonl", CellSchema(), FileLocks(folder))
>>> import warnings
>>> with warnings.catch_warnings(record=True):
...     index.refresh()
>>> [str(d).split(": ", 1)[1] for d in index.damaged]
['not JSON: Expecting value at column 1']
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, warn
from .locks import FileLocks
from .records import LEGACY, CellId, CellSchema, DamagedLine, NotACell, StoreWarning, parse_record, same_cell

__all__ = ["CellIndex", "FileReset", "FileState", "Space"]


class FileReset(Exception):
    """A file was replaced or shrunk under the reader: the index must be rebuilt.

    Examples
    --------
    >>> str(FileReset("out/cells.jsonl"))
    'out/cells.jsonl'
    """


@dataclass
class FileState:
    """How far a file has been read.

    Examples
    --------
    >>> FileState(1, 2).offset
    0
    """

    dev: int
    ino: int
    offset: int = 0  # bytes consumed
    lineno: int = 0  # lines consumed
    mid_line: bool = False  # the consumed bytes end inside a torn line


@dataclass
class Space:
    """The cells of one key space read so far, and where each was first seen.

    Examples
    --------
    >>> Space(None, "out/results.jsonl:1").cells
    {}
    """

    settings: dict[str, Any] | None
    first: str
    cells: dict[CellId, dict[str, Any]] = field(default_factory=dict)
    where: dict[CellId, str] = field(default_factory=dict)


class CellIndex:
    """Cells of a folder's files by key space, read incrementally (see the module docstring).

    Parameters
    ----------
    legacy_path, path
        The old unkeyed file (read, never locked) and the file the store appends to.
    schema
        Fields every cell must have.
    locks
        The folder's :class:`~causal_pp.convergence.locks.FileLocks`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> index = CellIndex(folder / "results.jsonl", folder / "cells.jsonl", CellSchema(), FileLocks(folder))
    >>> index.refresh(); index.spaces
    {}
    """

    def __init__(self, legacy_path: Path, path: Path, schema: CellSchema, locks: FileLocks) -> None:
        self.legacy_path = legacy_path
        self.path = path
        self.schema = schema
        self.locks = locks
        self.spaces: dict[str, Space] = {}
        self.files: dict[Path, FileState] = {}
        self.damaged: list[DamagedLine] = []
        self._warned: set[tuple[str, int, str]] = set()

    def clear(self) -> None:
        """Forget everything read (damaged lines already reported stay reported)."""
        self.files.clear()
        self.spaces.clear()

    def refresh(self) -> None:
        """Read what was appended to both files since the last read.

        A file that shrank or was replaced (only another program does that) is read again from
        the start, with a warning.
        """
        for attempt in range(2):
            try:
                for path in (self.legacy_path, self.path):
                    self.scan(path)
                return
            except FileReset as reset:
                if attempt:
                    raise InvalidArgumentError(f"{reset} keeps being rewritten while it is read.") from None
                self._reset_warning(reset)
                self.clear()

    def refresh_held(self, fd: int) -> None:
        """Read the appended file's new lines through ``fd``, on which the caller holds the exclusive lock."""
        try:
            self.scan(self.path, held=fd)
        except FileReset as reset:
            self._reset_warning(reset)
            self.clear()
            self.scan(self.legacy_path)
            self.scan(self.path, held=fd)

    def missing(self, pairs: Iterable[tuple[str, CellId]]) -> list[tuple[str, CellId]]:
        """The ``(key, cell id)`` pairs not read so far (call :meth:`refresh` first)."""
        out = []
        for key, cell_id in pairs:
            space = self.spaces.get(key)
            if space is None or cell_id not in space.cells:
                out.append((key, cell_id))
        return out

    def _reset_warning(self, reset: FileReset) -> None:
        warn(
            f"{reset} was replaced, truncated or removed by another program; reading the folder again.",
            StoreWarning,
        )

    def _report(self, path: Path, lineno: int, reason: str, raw: bytes = b"") -> None:
        excerpt = raw[:60].decode("utf-8", "replace") + ("..." if len(raw) > 60 else "")
        if (str(path), lineno, reason) not in self._warned:  # a re-read after a reset reports once
            self._warned.add((str(path), lineno, reason))
            self.damaged.append(DamagedLine(path, lineno, reason))
            warn(
                f"{path}:{lineno}: skipped a damaged line ({reason})" + (f": {excerpt!r}" if excerpt else ""),
                StoreWarning,
            )

    def scan(self, path: Path, held: int | None = None) -> None:
        """Parse the lines appended to ``path`` since the last scan.

        ``held`` is an fd of ``path`` on which the caller holds the exclusive lock.
        """
        fd = held
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if path in self.files:
                    raise FileReset(str(path)) from None
                return
        try:
            st = os.fstat(fd)
            state = self.files.get(path)
            if state is not None and (
                (st.st_dev, st.st_ino) != (state.dev, state.ino) or st.st_size < state.offset
            ):
                raise FileReset(str(path))
            if state is None:
                state = self.files[path] = FileState(st.st_dev, st.st_ino)
            if st.st_size == state.offset:
                return
            # Under a shared lock no cooperating writer is mid-append, so a last line without a
            # newline was torn by a killed writer. The legacy file's writers never locked.
            locked = held is not None or self.locks.flock(fd, fcntl.LOCK_SH)
            try:
                chunks = []
                offset = state.offset
                while chunk := os.pread(fd, 1 << 20, offset):
                    chunks.append(chunk)
                    offset += len(chunk)
            finally:
                if held is None and locked:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            if held is None:
                os.close(fd)
        self._parse(path, state, b"".join(chunks), tail_is_final=locked and path == self.path)

    def _parse(self, path: Path, state: FileState, data: bytes, *, tail_is_final: bool) -> None:
        pos = 0
        if state.mid_line:  # the rest of a torn line, already reported: skip to its end
            nl = data.find(b"\n")
            if nl < 0:
                state.offset += len(data)
                return
            pos, state.mid_line = nl + 1, False
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                if not tail_is_final:
                    break  # perhaps still being written: read it next time
                state.lineno += 1
                self._report(
                    path,
                    state.lineno,
                    "incomplete line without a newline at the end of the file (a writer was killed mid-write)",
                    data[pos:],
                )
                state.mid_line = True
                pos = len(data)
                break
            state.lineno += 1
            self._ingest(path, state.lineno, data[pos:nl])
            pos = nl + 1
        state.offset += pos

    def _ingest(self, path: Path, lineno: int, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            self._report(path, lineno, "not UTF-8 text", raw)
            return
        except json.JSONDecodeError as err:
            self._report(path, lineno, f"not JSON: {err.msg} at column {err.colno}", raw)
            return
        except (ValueError, RecursionError) as err:
            self._report(path, lineno, f"not JSON: {err}", raw)
            return
        try:
            key, cell_id, settings, cell = parse_record(obj, self.schema)
        except NotACell as err:
            self._report(path, lineno, f"not a cell: {err}", raw)
            return
        where = f"{path}:{lineno}"
        space = self.spaces.get(key)
        if space is None:
            space = self.spaces[key] = Space(settings, where)
        if cell_id not in space.cells:
            space.cells[cell_id] = cell
            space.where[cell_id] = where
        elif not same_cell(space.cells[cell_id], cell) and key != LEGACY:
            warn(
                f"{where}: cell {cell_id} is stored again with different values (first at "
                f"{space.where[cell_id]}); the first copy is kept.",
                StoreWarning,
            )
