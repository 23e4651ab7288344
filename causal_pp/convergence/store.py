"""A results store for convergence studies: every cell is keyed by everything that changes it.

A convergence cell (simulate N rows, fit, estimate) is expensive, so a study resumes from the
cells already on disk. Reusing a cell is only right when it was computed under the same
settings: the same case or model (and version of its code), query, method, fit settings,
estimate settings, device, master seed and causal_pp version. :class:`Settings` hashes all of
them into a *settings key*; a cell is stored under its key, and a lookup under another key never
sees it. Cells computed under other settings stay in the same folder in their own key space;
:meth:`ResultStore.others` names the settings that differ, so a runner can say "this folder also
holds results for fit_kwargs.num_steps=40; they are not used".

The store is split by concept: settings and their key in :mod:`.keys`, the record format in
:mod:`.records`, the incremental reader in :mod:`.index`, locks in :mod:`.locks`, claims in
:mod:`.claims`; this module is the facade, :class:`ResultStore`, and re-exports their names.

On disk
-------
``folder/cells.jsonl`` holds one JSON record per line::

    {"format": 1, "key": "<sha256 hex>", "id": ["frontdoor/ate", 50, 0],
     "settings": {"case": ..., "fit_kwargs": {...}, ...}, "cell": {...}}

Every record carries its full settings, so a line is self-describing: a reader re-derives the key
from the settings (a line whose key does not match is damaged), files from different machines
merge by concatenation (:meth:`ResultStore.merge_from`), and the store can say which settings
other key spaces were computed under. The file is only ever appended to; nothing in this module
rewrites or truncates it. ``folder/results.jsonl``, the unkeyed file of causal_pp before the
store, is read (never written) as the key space :data:`LEGACY`, "settings unknown", so its cells
are reported but never reused.

Writing and reading
-------------------
An append opens the file with ``O_APPEND``, takes an exclusive ``fcntl.flock`` on it, re-reads
the tail (cells another process stored meanwhile are not written twice), writes all its lines
with one ``os.write``, ``fsync``\\ s and unlocks. A writer killed inside ``write`` can leave a line
without its newline; the next append starts with a newline, so the torn fragment stays a line of
its own and never swallows a good record. Readers take a shared lock while they read the bytes
appended since their last read (a store object tails its files incrementally), so a line without
a newline under the shared lock is known to be torn, not half-written. A damaged line (torn,
not UTF-8, not JSON, or JSON that is not a cell record) is reported with a :class:`StoreWarning`
naming file, line and reason, and skipped; every line after it is read as usual. A cell stored
twice is read once: silently when both copies are identical, with a warning (the first copy
wins) when they differ.

Claims
------
Two processes sharing a folder should not fit the same cell twice. :meth:`ResultStore.claim`
takes a non-blocking exclusive ``flock`` on a per-cell lock file in ``folder/.claims/``; the
kernel releases it when the holder exits, however it exits (``kill -9`` included), so there are
no stale claims to expire. A lock file is unlinked by its holder on release; a claimer that locks
a file which was unlinked in the meantime notices (its inode is no longer the path's) and retries,
which makes the unlink safe. :meth:`ResultStore.iter_claimed` is the whole runner loop: it yields
the cells nobody else is computing, then waits for the ones others hold and yields those whose
holder died without storing them.

Limits
------
Local filesystems (ext4, xfs, btrfs, tmpfs, APFS) give all of the above. On NFSv4 ``flock`` is
emulated with byte-range locks held by the server: appends and claims still exclude each other
across machines, but a crashed *client*'s locks persist until the server's lease expires
(typically 90 s), and ``O_APPEND`` is only safe because appends are serialised by the lock. On a
filesystem without locks (some FUSE and SMB mounts) the store warns once and runs unlocked:
appends remain single writes (atomic on a local disk, not on a network one), and claims always
succeed, so processes may duplicate work (duplicates are read once). A lock is held per open file
description: a child forked while a claim is held shares it until the child exits; create worker
pools before claiming, or use the ``spawn`` start method. A :class:`ResultStore` object is not
thread-safe (give each thread its own; their claims exclude each other like processes'). POSIX
only (``fcntl``, ``pread``).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InvalidArgumentError, warn
from .claims import CLAIMS_DIR, Claim, ClaimInfo, ClaimLocks
from .index import CellIndex
from .keys import (
    UNSET,
    Settings,
    as_key,
    describe,
    diff_settings,
    fingerprint,
    setting_text,
    settings_dict,
    settings_key,
)
from .locks import FileLocks, fsync_dir, write_all
from .records import (
    FORMAT,
    LEGACY,
    LEGACY_FILE,
    STORE_FILE,
    CellId,
    CellSchema,
    DamagedLine,
    KeySpace,
    OtherSpace,
    StoreWarning,
    as_cell_id,
    encode_record,
    json_default,
    same_cell,
)

__all__ = [
    "CLAIMS_DIR",
    "FORMAT",
    "LEGACY",
    "LEGACY_FILE",
    "STORE_FILE",
    "UNSET",
    "CellId",
    "Claim",
    "ClaimInfo",
    "DamagedLine",
    "KeySpace",
    "OtherSpace",
    "ResultStore",
    "Settings",
    "StoreWarning",
    "describe",
    "diff_settings",
    "fingerprint",
    "settings_key",
]

T = TypeVar("T")
Pair = tuple[str | Settings | Mapping[str, Any], Sequence[str | int]]


class ResultStore:
    """Cells of convergence studies in one folder, each under the key of its settings.

    Parameters
    ----------
    folder
        The results folder. It is created on the first append or claim, not before.
    schema
        Fields every cell must have, name -> type or tuple of types (``float`` accepts ints;
        ``bool`` is not an ``int``). A stored line whose cell lacks one is reported and skipped,
        and :meth:`append` refuses such a cell. ``None`` accepts any JSON object.

    Attributes
    ----------
    folder, path, legacy_path
        The folder, the file appended to (``cells.jsonl``) and the old file read as legacy
        (``results.jsonl``).

    Examples
    --------
    >>> import tempfile
    >>> s = Settings(case="frontdoor/ate", fingerprint="f1", query="q", method="svi", seed=0,
    ...              fit_kwargs={"num_steps": 40}, num_units=100, prob=0.94, device="cpu",
    ...              version="0.1.0")
    >>> store = ResultStore(tempfile.mkdtemp(), schema={"mean": float})
    >>> store.append(s, {("frontdoor/ate", 50, 0): {"mean": -1.4}})
    1
    >>> store.read(s)
    {('frontdoor/ate', 50, 0): {'mean': -1.4}}
    >>> store.read(s.replace(fit_kwargs={"num_steps": 4000}))
    {}
    """

    def __init__(self, folder: str | os.PathLike[str], *, schema: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise InvalidArgumentError(f"the results folder {self.folder} is a file, not a folder.")
        self.path = self.folder / STORE_FILE
        self.legacy_path = self.folder / LEGACY_FILE
        self._schema = CellSchema(schema)
        self._locks = FileLocks(self.folder)
        self._index = CellIndex(self.legacy_path, self.path, self._schema, self._locks)
        self._claims = ClaimLocks(self.folder, self._locks)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.folder)!r})"

    # -- reading ----------------------------------------------------------------------------

    @property
    def damaged(self) -> tuple[DamagedLine, ...]:
        """Every damaged line found so far (each was also reported once as a :class:`StoreWarning`)."""
        return tuple(self._index.damaged)

    def refresh(self) -> None:
        """Read what was appended since the last read (every public reader calls this).

        A file that shrank or was replaced (only another program does that) is read again from
        the start, with a warning.
        """
        self._index.refresh()

    def read(self, key: str | Settings) -> dict[CellId, dict[str, Any]]:
        """The cells stored under a key: cell id -> cell (a fresh dict; do not mutate the cells).

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> store.append({"case": "a", "causal_pp_version": "0"}, {("a", 1): {"x": 1}})
        1
        >>> store.read(settings_key({"case": "a", "causal_pp_version": "0"}))
        {('a', 1): {'x': 1}}
        """
        self.refresh()
        space = self._index.spaces.get(as_key(key))
        return dict(space.cells) if space else {}

    def settings_of(self, key: str) -> dict[str, Any] | None:
        """The settings a key space was stored under (None for legacy cells or an unknown key).

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> _ = store.append({"case": "a", "causal_pp_version": "0"}, {("a", 1): {}})
        >>> store.settings_of(settings_key({"case": "a", "causal_pp_version": "0"}))
        {'case': 'a', 'causal_pp_version': '0'}
        """
        self.refresh()
        space = self._index.spaces.get(as_key(key))
        return None if space is None or space.settings is None else dict(space.settings)

    def has(self, key: str | Settings | Mapping[str, Any], cell_id: Sequence[str | int]) -> bool:
        """Whether the cell is stored under ``key``.

        Examples
        --------
        >>> import tempfile
        >>> ResultStore(tempfile.mkdtemp()).has("ab" * 32, ("frontdoor/ate", 50, 0))
        False
        """
        return not self.missing([(key, cell_id)])

    def missing(self, pairs: Iterable[Pair]) -> list[tuple[str, CellId]]:
        """The ``(key, cell_id)`` pairs not stored yet (read afresh).

        Examples
        --------
        >>> import tempfile
        >>> ResultStore(tempfile.mkdtemp()).missing([("ab" * 32, ("a", 1))])
        [('abababababababababababababababababababababababababababababababab', ('a', 1))]
        """
        wanted = self._pairs(pairs)
        self.refresh()
        return self._index.missing(wanted)

    def key_spaces(self) -> dict[str, KeySpace]:
        """Every key space in the folder, in the order first seen, legacy cells included.

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> _ = store.append({"case": "a", "causal_pp_version": "0"}, {("a", 1): {}, ("a", 2): {}})
        >>> [(ks.cells, ks.describe()) for ks in store.key_spaces().values()]
        [(2, 'case=a causal_pp_version=0')]
        """
        self.refresh()
        return {k: KeySpace(k, s.settings, len(s.cells), s.first) for k, s in self._index.spaces.items()}

    def others(
        self, settings: Settings | Mapping[str, Any], *, match: Sequence[str] = ("case", "query")
    ) -> list[OtherSpace]:
        """Key spaces other than ``settings``'s that agree on ``match``, with the settings that differ.

        Legacy cells are always listed (their settings are unknown). A runner prints
        ``[o.message() for o in store.others(settings)]`` before it starts.

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> old = {"case": "a", "query": "q", "fit_kwargs": {"num_steps": 40}, "causal_pp_version": "0"}
        >>> _ = store.append(old, {("a", 1): {}})
        >>> new = {**old, "fit_kwargs": {"num_steps": 4000}}
        >>> [o.message() for o in store.others(new)]
        ['this folder also holds 1 cell for fit_kwargs.num_steps=40 (here fit_kwargs.num_steps=4000); they are not used.']
        """
        mine, key = settings_dict(settings)
        out = []
        for space in self.key_spaces().values():
            if space.key == key:
                continue
            if space.settings is None:
                out.append(OtherSpace(space, None))
            elif all(
                setting_text(space.settings.get(f, UNSET)) == setting_text(mine.get(f, UNSET)) for f in match
            ):
                out.append(OtherSpace(space, diff_settings(space.settings, mine)))
        return out

    # -- writing ----------------------------------------------------------------------------

    def _lines(
        self, key: str, canon: dict[str, Any], items: Iterable[tuple[Sequence[str | int], Any]]
    ) -> dict[CellId, tuple[dict[str, Any], str]]:
        lines: dict[CellId, tuple[dict[str, Any], str]] = {}
        for raw_id, cell in items:
            try:
                cell_id = as_cell_id(raw_id)
            except ValueError as err:
                raise InvalidArgumentError(str(err) + ".") from None
            if not isinstance(cell, Mapping):
                raise InvalidArgumentError(f"cell {cell_id} is a {type(cell).__name__}, not a mapping.")
            try:
                cell = json.loads(json.dumps(dict(cell), default=json_default))
                line = encode_record(key, cell_id, canon, cell)
            except (TypeError, ValueError) as err:
                raise InvalidArgumentError(f"cell {cell_id} cannot be stored as JSON: {err}.") from None
            problem = self._schema.problem(cell)
            if problem:
                raise InvalidArgumentError(f"cell {cell_id} does not fit the store's schema: {problem}.")
            if cell_id in lines and not same_cell(lines[cell_id][0], cell):
                raise InvalidArgumentError(f"cell {cell_id} is given twice with different values.")
            lines[cell_id] = (cell, line)
        return lines

    def append(
        self,
        settings: Settings | Mapping[str, Any],
        cells: Mapping[Sequence[str | int], Mapping[str, Any]] | Iterable[tuple[Sequence[str | int], Any]],
    ) -> int:
        """Store cells computed under ``settings``; returns how many lines were written.

        Cells already stored under the same key (by any process) are not written again: an
        identical copy silently, a different one with a :class:`StoreWarning` (the stored copy
        stays). All lines go out in one ``os.write`` under an exclusive lock, then ``fsync``.

        Parameters
        ----------
        settings
            The :class:`Settings` (or mapping) the cells were computed under.
        cells
            cell id -> cell (a JSON object; numpy scalars and arrays are stored as values).

        Raises
        ------
        InvalidArgumentError
            A cell id, or a cell, cannot be stored (nothing is written then).

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> s = {"case": "a", "causal_pp_version": "0"}
        >>> store.append(s, {("a", 1): {"x": 1.5}}), store.append(s, {("a", 1): {"x": 1.5}})
        (1, 0)
        """
        canon, key = settings_dict(settings)
        lines = self._lines(key, canon, cells.items() if isinstance(cells, Mapping) else cells)
        if not lines:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if created:  # make the new file's directory entry durable too
                fsync_dir(self.folder)
            locked = self._locks.flock(fd, fcntl.LOCK_EX)
            try:
                self._index.refresh_held(fd)
                stored = self._index.spaces.get(key)
                new = []
                for cell_id, (cell, line) in lines.items():
                    if stored is not None and cell_id in stored.cells:
                        if not same_cell(stored.cells[cell_id], cell):
                            warn(
                                f"cell {cell_id} is already stored with other values at "
                                f"{stored.where[cell_id]}; the stored copy is kept.",
                                StoreWarning,
                            )
                        continue
                    new.append(line)
                if new:
                    payload = "".join(line + "\n" for line in new).encode()
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        # A killed writer left a torn line: end it, so ours is a line of its own.
                        payload = b"\n" + payload
                    write_all(fd, payload)
                    os.fsync(fd)
                    self._index.refresh_held(fd)
            finally:
                if locked:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return len(new)

    def merge_from(self, other: ResultStore | str | os.PathLike[str]) -> int:
        """Append every keyed cell of another folder that this one lacks; returns how many.

        Legacy cells are not merged (they cannot be keyed). Shards of one study run on
        different machines merge into the same key spaces, since cells are seeded by
        (seed, N, replicate).

        Examples
        --------
        >>> import tempfile
        >>> a, b = ResultStore(tempfile.mkdtemp()), ResultStore(tempfile.mkdtemp())
        >>> s = {"case": "a", "causal_pp_version": "0"}
        >>> _ = a.append(s, {("a", 1): {}}); _ = b.append(s, {("a", 2): {}})
        >>> a.merge_from(b), sorted(a.read(settings_key(s)))
        (1, [('a', 1), ('a', 2)])
        """
        other = other if isinstance(other, ResultStore) else ResultStore(other)
        added = 0
        for key, space in other.key_spaces().items():
            if space.legacy or space.settings is None:
                continue
            added += self.append(space.settings, other.read(key))
        return added

    # -- claims -----------------------------------------------------------------------------

    def _pairs(self, pairs: Iterable[Pair]) -> list[tuple[str, CellId]]:
        out = []
        for key, cell_id in pairs:
            try:
                out.append((as_key(key), as_cell_id(cell_id)))
            except ValueError as err:
                raise InvalidArgumentError(str(err) + ".") from None
        return list(dict.fromkeys(out))

    def claim(self, key: str | Settings | Mapping[str, Any], cell_id: Sequence[str | int]) -> Claim:
        """Claim one cell without blocking: held only if no other live process holds it.

        Use as ``with store.claim(key, cell_id) as claim: if claim: compute and append``.
        ``bool(claim)`` is false when another process holds the cell or it is already stored
        (re-checked after the lock is taken, so a cell finished meanwhile is not redone).

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> with store.claim("ab" * 32, ("a", 1)) as claim:
        ...     claim.acquired, claim.todo
        (True, (('abababababababababababababababababababababababababababababababab', ('a', 1)),))
        """
        return self.claim_many([(key, cell_id)])

    def claim_many(self, pairs: Iterable[Pair]) -> Claim:
        """Claim several ``(key, cell_id)`` pairs at once: all of them, or none.

        For cells computed together (several queries estimated from one fit). Locks are taken in
        a fixed order, so two processes wanting overlapping sets do not both give up.

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> k = "ab" * 32
        >>> with store.claim(k, ("q2", 1)):
        ...     store.claim_many([(k, ("q1", 1)), (k, ("q2", 1))]).acquired
        False
        """
        wanted = self._pairs(pairs)
        if not wanted:
            raise InvalidArgumentError("claim_many needs at least one (key, cell_id) pair.")
        held = self._claims.acquire(wanted)
        if held is None:
            return Claim([], False, ())
        self.refresh()
        return Claim(held, True, tuple(self._index.missing(wanted)))

    def claims(self) -> list[ClaimInfo]:
        """The live claims on this folder (stale lock files found are removed).

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> with store.claim("ab" * 32, ("a", 1)):
        ...     [c.cell_id for c in store.claims()]
        [('a', 1)]
        >>> store.claims()
        []
        """
        return self._claims.live()

    def prune_claims(self) -> None:
        """Remove lock files nobody holds (left by killed processes), and the empty claims folder.

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> store.claim("ab" * 32, ("a", 1)).release()
        >>> store.prune_claims(); (store.folder / ".claims").exists()
        False
        """
        self._claims.prune()

    def wait(
        self,
        pairs: Iterable[Pair],
        *,
        timeout: float | None = None,
        poll: float = 0.1,
        on_wait: Callable[[list[ClaimInfo]], None] | None = None,
    ) -> list[tuple[str, CellId]]:
        """Wait until no other process holds a claim on any missing cell of ``pairs``.

        Returns the pairs still not stored: empty when the holders stored them all; otherwise
        the cells a holder gave up on or died computing (compute them), or, after ``timeout``
        seconds, those still held. ``on_wait`` is called once, with the claims being waited for,
        if there is anything to wait for. Do not wait for a claim this process holds itself.

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> store.wait([("ab" * 32, ("a", 1))])
        [('abababababababababababababababababababababababababababababababab', ('a', 1))]
        """
        wanted = self._pairs(pairs)
        deadline = None if timeout is None else time.monotonic() + timeout
        notified = False
        while True:
            missing = self.missing(wanted)
            holders = [h for h in (self._claims.holder(*p) for p in missing) if h is not None]
            if not holders or (deadline is not None and time.monotonic() >= deadline):
                return missing
            if on_wait is not None and not notified:
                notified = True
                on_wait(holders)
            time.sleep(poll)

    def iter_claimed(
        self,
        tasks: Iterable[T],
        pairs_of: Callable[[T], Sequence[Pair]],
        *,
        poll: float = 0.1,
        on_wait: Callable[[list[ClaimInfo]], None] | None = None,
    ) -> Iterator[tuple[T, Claim]]:
        """The runner loop: yield each task whose cells are missing, with its claim held.

        The caller computes ``claim.todo`` and appends it before asking for the next task; the
        claim is released when the loop moves on. Tasks another process holds are skipped at
        first; once the rest are done, this waits for them and yields those whose holder died
        without storing them. Each task is yielded at most once. Lock files left behind are
        removed at the end. A pool that runs several tasks at once keeps their claims open
        itself: :meth:`claim_many` per task submitted, released once its cells are appended.

        Parameters
        ----------
        tasks
            E.g. the grid's ``(n, replicate)`` pairs.
        pairs_of
            Task -> the ``(key, cell_id)`` pairs it computes (several for a shared fit).
        poll, on_wait
            As for :meth:`wait`.

        Examples
        --------
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> key = settings_key({"case": "a", "causal_pp_version": "0"})
        >>> for n, claim in store.iter_claimed([10, 20], lambda n: [(key, ("a", n))]):
        ...     _ = store.append({"case": "a", "causal_pp_version": "0"}, {("a", n): {"n": n}})
        >>> sorted(store.read(key))
        [('a', 10), ('a', 20)]
        """
        tasks = list(tasks)
        pairs = [self._pairs(pairs_of(t)) for t in tasks]
        pending = list(range(len(tasks)))
        yielded: set[int] = set()
        while pending:
            blocked = []
            for i in pending:
                if not self.missing(pairs[i]):
                    continue
                with self.claim_many(pairs[i]) as claim:
                    if not claim.acquired:
                        blocked.append(i)
                    elif claim.todo:
                        yielded.add(i)
                        yield tasks[i], claim
            if not blocked:
                break
            self.wait([p for i in blocked for p in pairs[i]], poll=poll, on_wait=on_wait)
            pending = [i for i in blocked if i not in yielded]
        self.prune_claims()
