"""A results store for convergence studies: every cell is keyed by everything that changes it.

A convergence cell (simulate N rows, fit, estimate) is expensive, so a study resumes from the
cells already on disk. Reusing a cell is only right when it was computed under the same
settings: the same case or model (and version of its code), query, method, fit settings,
estimate settings, device, master seed and causal_pp version. :class:`Settings` hashes all of
them into a *settings key*; a cell is stored under its key, and a lookup under another key never
sees it. Cells computed under other settings stay in the same folder in their own key space;
:meth:`ResultStore.others` names the settings that differ, so a runner can say "this folder also
holds results for fit_kwargs.num_steps=40; they are not used".

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

import contextlib
import errno
import fcntl
import hashlib
import inspect
import json
import math
import numbers
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import InvalidArgumentError
from ..version import __version__

__all__ = [
    "LEGACY",
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

#: Version of the record layout; a reader skips (and reports) records of another format.
FORMAT = 1
#: The key space of cells from the unkeyed ``results.jsonl`` of earlier versions.
LEGACY = "legacy"
#: The file the store appends to, and the old unkeyed file it only reads.
STORE_FILE = "cells.jsonl"
LEGACY_FILE = "results.jsonl"
CLAIMS_DIR = ".claims"

#: A cell's id within its key space, e.g. ``(target, n, replicate)``.
CellId = tuple[str | int, ...]

T = TypeVar("T")

_HEX64 = re.compile(r"[0-9a-f]{64}")
# Prefix of the hashed text: a change of canonicalisation must change every key, never collide.
_KEY_SALT = b"causal_pp.store.settings/1\n"
_FLOAT_TAG = "__float__"
# flock errors that mean "this filesystem has no locks", as opposed to "someone holds it".
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class StoreWarning(UserWarning):
    """A results file holds a damaged or conflicting line (the warning names file and line).

    Examples
    --------
    >>> issubclass(StoreWarning, UserWarning)
    True
    """


# --- settings and their key ------------------------------------------------------------------


def _canonical(value: Any, where: str) -> Any:
    """``value`` as plain JSON data whose serialisation is unique; refuses what has none."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):  # int, numpy integers
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        # JSON writes a finite float as its repr (shortest round-trip); NaN/inf have no JSON form.
        return f if math.isfinite(f) else {_FLOAT_TAG: repr(f)}
    if isinstance(value, np.ndarray):
        return _canonical(value.tolist(), where)
    if isinstance(value, Mapping):
        out = {}
        for k in value:
            if not isinstance(k, str):
                # {1: x} and {"1": x} would serialise alike: refuse rather than collide.
                raise InvalidArgumentError(
                    f"{where} has the key {k!r} ({type(k).__name__}); settings keys must be strings."
                )
            out[k] = _canonical(value[k], f"{where}[{k!r}]")
        return {k: out[k] for k in sorted(out)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [_canonical(v, f"{where}{{...}}") for v in value]
        return sorted(items, key=_dumps)
    raise InvalidArgumentError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be part of a "
        "results key (its value has no stable text form). Pass plain data instead (str, int, float, "
        "bool, None, lists and dicts of them), e.g. an optimiser's name and learning rate rather than "
        "the optimiser object."
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _version() -> str:
    return __version__


def _no_address(text: str, what: str) -> str:
    if _ADDRESS.search(text):
        raise InvalidArgumentError(
            f"{what} {text!r} contains a memory address, which changes every run, so no result would "
            "ever be reused; give the object a repr of its value, or pass a descriptive string."
        )
    return text


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything that changes a cell's numbers; its :attr:`key` names the cell's key space.

    Parameters
    ----------
    case
        The case or model name, e.g. ``"frontdoor/ate"`` (a case and query) or a model's name.
    fingerprint
        A fingerprint of the case's or model's code and parameters, supplied by the caller
        (:func:`fingerprint` builds one): a change of the simulator or the model must change it.
    query
        The query's repr (any other object is converted with ``repr``).
    method, seed
        The fit method and the study's master seed.
    fit_kwargs
        Every keyword passed to the fit (nested dicts, lists, tuples, numbers; tuples and lists
        are the same value, dict order is irrelevant, ``40`` and ``40.0`` differ).
    num_units, prob
        The estimate's settings: simulated units per draw and the credible-interval mass.
    device
        The torch device the cell runs on.
    version
        The causal_pp version; ``None`` reads ``causal_pp.__version__``.
    extra
        Anything else that changes a cell (e.g. a truth-sampling setting), as plain data.

    Attributes
    ----------
    key
        The sha256 hex digest of the canonical JSON of :meth:`to_dict` (sorted keys, floats as
        their repr, non-finite floats tagged).

    Raises
    ------
    InvalidArgumentError
        A setting has the wrong type or a value with no stable text form (e.g. an object).

    Examples
    --------
    >>> s = Settings(case="frontdoor/ate", fingerprint="a1b2", query="ATE(Y, do(X=1) - do(X=0))",
    ...              method="svi", seed=0, fit_kwargs={"num_steps": 40}, num_units=1000,
    ...              prob=0.94, device="cpu", version="0.1.0")
    >>> s.key[:16]
    '603d531ed1935d93'
    >>> s.replace(fit_kwargs={"num_steps": 4000}).key == s.key
    False
    """

    case: str
    fingerprint: str
    query: Any
    method: str
    seed: int
    fit_kwargs: Mapping[str, Any]
    num_units: int
    prob: float
    device: str
    version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("case", "fingerprint", "method", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or (name != "fingerprint" and not value):
                raise InvalidArgumentError(f"Settings.{name} must be a non-empty string; got {value!r}.")
        query = self.query if isinstance(self.query, str) else repr(self.query)
        object.__setattr__(self, "query", _no_address(query, "the query's repr"))
        _no_address(self.fingerprint, "the fingerprint")
        for name in ("seed", "num_units"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InvalidArgumentError(f"Settings.{name} must be an integer; got {value!r}.")
            object.__setattr__(self, name, int(value))
        if self.num_units < 1:
            raise InvalidArgumentError(f"Settings.num_units must be >= 1; got {self.num_units}.")
        if isinstance(self.prob, bool) or not isinstance(self.prob, numbers.Real) or not 0 < self.prob < 1:
            raise InvalidArgumentError(f"Settings.prob must be a number in (0, 1); got {self.prob!r}.")
        # A documented float: 0.9 and numpy's 0.9 are the same setting.
        object.__setattr__(self, "prob", float(self.prob))
        for name in ("fit_kwargs", "extra"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise InvalidArgumentError(f"Settings.{name} must be a mapping; got {type(value).__name__}.")
            object.__setattr__(self, name, _canonical(value, name))
        version = _version() if self.version is None else self.version
        if not isinstance(version, str) or not version:
            raise InvalidArgumentError(f"Settings.version must be a non-empty string; got {version!r}.")
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "key", settings_key(self.to_dict()))

    def __hash__(self) -> int:  # the dict fields are unhashable; the key identifies the settings
        return hash(self.key)

    def to_dict(self) -> dict[str, Any]:
        """The settings as canonical plain data (what records store and the key hashes).

        Examples
        --------
        >>> s = Settings(case="bow/ate", fingerprint="", query="q", method="nuts", seed=1,
        ...              fit_kwargs={}, num_units=10, prob=0.9, device="cpu", version="0.1.0")
        >>> s.to_dict()["causal_pp_version"], settings_key(s.to_dict()) == s.key
        ('0.1.0', True)
        """
        return {
            "case": self.case,
            "query": self.query,
            "method": self.method,
            "seed": self.seed,
            "fit_kwargs": self.fit_kwargs,
            "num_units": self.num_units,
            "prob": self.prob,
            "device": self.device,
            "fingerprint": self.fingerprint,
            "extra": self.extra,
            "causal_pp_version": self.version,
        }

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (and its own key).

        Examples
        --------
        >>> s = Settings(case="bow/ate", fingerprint="", query="q", method="svi", seed=0,
        ...              fit_kwargs={}, num_units=10, prob=0.9, device="cpu", version="0.1.0")
        >>> s.replace(seed=1).seed, s.replace(seed=1).key != s.key
        (1, True)
        """
        return replace(self, **changes)


def _settings_dict(settings: Settings | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(canonical settings, key) of a :class:`Settings` or a plain mapping."""
    if isinstance(settings, Settings):
        return settings.to_dict(), settings.key
    if not isinstance(settings, Mapping):
        raise InvalidArgumentError(
            f"settings must be a Settings or a mapping; got {type(settings).__name__}."
        )
    canon = _canonical(settings, "settings")
    if "causal_pp_version" not in canon:
        canon = _canonical({**canon, "causal_pp_version": _version()}, "settings")
    return canon, hashlib.sha256(_KEY_SALT + _dumps(canon).encode()).hexdigest()


def _key(key: str | Settings | Mapping[str, Any]) -> str:
    if isinstance(key, Settings):
        return key.key
    if isinstance(key, Mapping):
        return _settings_dict(key)[1]
    if not isinstance(key, str):
        raise InvalidArgumentError(
            f"a key is a settings key (str), Settings or mapping; got {type(key).__name__}."
        )
    return key


def settings_key(settings: Settings | Mapping[str, Any]) -> str:
    """The settings key: sha256 of the canonical JSON of the settings.

    A plain mapping is keyed as it is, plus ``causal_pp_version`` when it has none, so
    ``settings_key(s.to_dict()) == s.key`` for a :class:`Settings` ``s``.

    Parameters
    ----------
    settings
        A :class:`Settings`, or a mapping of plain data with string keys.

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    InvalidArgumentError
        A value cannot be serialised canonically (the message names where it is).

    Examples
    --------
    >>> a = settings_key({"method": "svi", "fit_kwargs": {"lr": 0.01, "steps": (1, 2)},
    ...                   "causal_pp_version": "0.1.0"})
    >>> b = settings_key({"fit_kwargs": {"steps": [1, 2], "lr": 0.01}, "method": "svi",
    ...                   "causal_pp_version": "0.1.0"})
    >>> a == b, len(a)
    (True, 64)
    >>> settings_key({"fit_kwargs": {"optim": object()}})
    Traceback (most recent call last):
    ...
    causal_pp.errors.InvalidArgumentError: settings['fit_kwargs']['optim'] is a builtins.object, ...
    """
    return _settings_dict(settings)[1]


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


#: Marks a setting one side of :func:`diff_settings` does not have.
UNSET: Any = _Unset()


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # Dotted paths to the leaves, so a difference reads "fit_kwargs.num_steps", not "fit_kwargs".
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v and set(v) != {_FLOAT_TAG}:
            out.update(_flatten(v, f"{prefix}{k}."))
        elif not (isinstance(v, Mapping) and not v):
            out[f"{prefix}{k}"] = v
    return out


def _fmt(value: Any) -> str:
    if value is UNSET:
        return "<unset>"
    if isinstance(value, Mapping) and set(value) == {_FLOAT_TAG}:
        return str(value[_FLOAT_TAG])
    if isinstance(value, str) and value and not re.search(r"[\s=;,\"]", value):
        return value
    return json.dumps(value, separators=(",", ":"))


def describe(settings: Settings | Mapping[str, Any]) -> str:
    """The settings on one readable line: ``name=value`` per setting, nested ones dotted.

    Examples
    --------
    >>> s = Settings(case="frontdoor/ate", fingerprint="a1b2", query="q", method="svi", seed=0,
    ...              fit_kwargs={"num_steps": 40}, num_units=1000, prob=0.94, device="cpu",
    ...              version="0.1.0")
    >>> describe(s)
    'case=frontdoor/ate query=q method=svi seed=0 fit_kwargs.num_steps=40 num_units=1000 prob=0.94 device=cpu fingerprint=a1b2 causal_pp_version=0.1.0'
    """
    canon = settings.to_dict() if isinstance(settings, Settings) else _canonical(settings, "settings")
    return " ".join(f"{k}={_fmt(v)}" for k, v in _flatten(canon).items())


def diff_settings(
    theirs: Settings | Mapping[str, Any], ours: Settings | Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """The settings that differ, as dotted path -> (theirs, ours); :data:`UNSET` where one lacks it.

    Examples
    --------
    >>> diff_settings({"fit_kwargs": {"num_steps": 40}, "prob": 0.9},
    ...               {"fit_kwargs": {"num_steps": 4000, "lr": 0.1}, "prob": 0.9})
    {'fit_kwargs.lr': (<unset>, 0.1), 'fit_kwargs.num_steps': (40, 4000)}
    """
    a = _flatten(theirs.to_dict() if isinstance(theirs, Settings) else _canonical(theirs, "theirs"))
    b = _flatten(ours.to_dict() if isinstance(ours, Settings) else _canonical(ours, "ours"))
    return {
        k: (a.get(k, UNSET), b.get(k, UNSET))
        for k in sorted(a.keys() | b.keys())
        if _dumps_any(a.get(k, UNSET)) != _dumps_any(b.get(k, UNSET))
    }


def _dumps_any(value: Any) -> str:
    return "\0unset" if value is UNSET else _dumps(value)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of plain data and of the source code of functions and classes.

    Use it for :attr:`Settings.fingerprint`: e.g. ``fingerprint(case.name, params, simulate_fn)``.
    A function's fingerprint covers its own source, not the functions it calls.

    Raises
    ------
    InvalidArgumentError
        A part is neither plain data nor a function/class whose source can be read.

    Examples
    --------
    >>> fingerprint("frontdoor", {"a": 1.5}) == fingerprint("frontdoor", {"a": 1.5})
    True
    >>> fingerprint("frontdoor", {"a": 1.5}) == fingerprint("frontdoor", {"a": 2.0})
    False
    """
    h = hashlib.sha256(b"causal_pp.store.fingerprint/1\n")
    for i, part in enumerate(parts):
        if inspect.isfunction(part) or inspect.ismethod(part) or inspect.isclass(part):
            try:
                source = inspect.getsource(part)
            except (OSError, TypeError) as err:
                raise InvalidArgumentError(
                    f"fingerprint part {i} ({part!r}) has no readable source ({err}); pass a "
                    "version string or its parameters instead."
                ) from err
            text = f"code:{getattr(part, '__module__', '')}.{getattr(part, '__qualname__', '')}\n{source}"
        else:
            text = "data:" + _dumps(_canonical(part, f"fingerprint part {i}"))
        h.update(hashlib.sha256(text.encode()).digest())
    return h.hexdigest()[:16]


# --- what the store reports ------------------------------------------------------------------


@dataclass(frozen=True)
class DamagedLine:
    """A line of a results file that was skipped, and why.

    Examples
    --------
    >>> d = DamagedLine(Path("out/cells.jsonl"), 3, "not JSON")
    >>> str(d)
    'out/cells.jsonl:3: not JSON'
    """

    path: Path
    lineno: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.reason}"


@dataclass(frozen=True)
class KeySpace:
    """The cells of one settings key found in a folder.

    Attributes
    ----------
    key
        The settings key, or :data:`LEGACY` for old unkeyed cells.
    settings
        The settings the cells were computed under (``None`` for legacy cells).
    cells
        How many distinct cells the key space holds.
    first
        ``"file:line"`` of its first record.

    Examples
    --------
    >>> ks = KeySpace(LEGACY, None, 4, "out/results.jsonl:1")
    >>> ks.legacy, ks.describe()
    (True, 'legacy cells (written before results were keyed; settings unknown)')
    """

    key: str
    settings: Mapping[str, Any] | None
    cells: int
    first: str

    @property
    def legacy(self) -> bool:
        """Whether these are old unkeyed cells whose settings are unknown."""
        return self.key == LEGACY

    def describe(self) -> str:
        """The key space's settings on one line (see :func:`describe`)."""
        if self.settings is None:
            return "legacy cells (written before results were keyed; settings unknown)"
        return describe(self.settings)


@dataclass(frozen=True)
class OtherSpace:
    """A key space of the folder other than the caller's, and how its settings differ.

    Examples
    --------
    >>> other = OtherSpace(KeySpace("ab" * 32, {"prob": 0.5}, 6, "out/cells.jsonl:1"),
    ...                    {"prob": (0.5, 0.94)})
    >>> other.message()
    'this folder also holds 6 cells for prob=0.5 (here prob=0.94); they are not used.'
    """

    space: KeySpace
    differs: Mapping[str, tuple[Any, Any]] | None

    def message(self) -> str:
        """A sentence a runner can print."""
        n = self.space.cells
        cells = f"{n} cell{'s' if n != 1 else ''}"
        if self.differs is None:
            return (
                f"this folder also holds {cells} in the old unkeyed format ({self.space.first.rsplit(':', 1)[0]}; "
                "settings unknown); they are not used."
            )
        theirs = ", ".join(f"{k}={_fmt(v[0])}" for k, v in self.differs.items())
        ours = ", ".join(f"{k}={_fmt(v[1])}" for k, v in self.differs.items())
        return f"this folder also holds {cells} for {theirs} (here {ours}); they are not used."


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
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> with store.claim("ab" * 32, ("frontdoor/ate", 50, 0)) as claim:
    ...     bool(claim), store.claim("ab" * 32, ("frontdoor/ate", 50, 0)).acquired
    (True, False)
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


class _NotACell(Exception):
    """A parsed JSON value is not a cell record (internal; becomes a damaged-line report)."""


class _Reset(Exception):
    """A file was replaced or shrunk under the reader: its index must be rebuilt."""


@dataclass
class _FileState:
    dev: int
    ino: int
    offset: int = 0  # bytes consumed
    lineno: int = 0  # lines consumed
    mid_line: bool = False  # the consumed bytes end inside a torn line


@dataclass
class _Space:
    settings: dict[str, Any] | None
    first: str
    cells: dict[CellId, dict[str, Any]] = field(default_factory=dict)
    where: dict[CellId, str] = field(default_factory=dict)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_type(v: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def _json_default(v: Any) -> Any:
    # Cells often hold numpy scalars and arrays; store their values.
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _same(a: Any, b: Any) -> bool:
    # Compare serialisations, not values: NaN != NaN, but two copies of one cell are the same text.
    return json.dumps(a, sort_keys=True, default=_json_default) == json.dumps(
        b, sort_keys=True, default=_json_default
    )


def _type_ok(value: Any, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):
        return bool in types
    if float in types and _is_int(value):  # JSON writes 2.0 as 2.0, but a caller may store 2
        return True
    return isinstance(value, types)


def _cell_id(raw: Any) -> CellId:
    """A cell id from a tuple/list of str and int; raises ValueError with the reason."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"the cell id must be a non-empty tuple of strings and integers; got {raw!r}")
    out: list[str | int] = []
    for part in raw:
        if isinstance(part, np.integer):
            part = int(part)
        if not (isinstance(part, str) or _is_int(part)):
            raise ValueError(f"the cell id {raw!r} holds {part!r}; its parts must be strings or integers")
        out.append(part)
    return tuple(out)


# --- the store --------------------------------------------------------------------------------


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
        self._claims = self.folder / CLAIMS_DIR
        self._schema: dict[str, tuple[type, ...]] = {}
        for name, types in (schema or {}).items():
            types = types if isinstance(types, tuple) else (types,)
            if not types or not all(isinstance(t, type) for t in types):
                raise InvalidArgumentError(
                    f"schema[{name!r}] must be a type or a tuple of types; got {types!r}."
                )
            self._schema[name] = types
        self._files: dict[Path, _FileState] = {}
        self._spaces: dict[str, _Space] = {}
        self._damaged: list[DamagedLine] = []
        self._warned: set[tuple[str, int, str]] = set()
        self._no_locks_warned = False

    def __repr__(self) -> str:
        return f"ResultStore({str(self.folder)!r})"

    # -- reading ----------------------------------------------------------------------------

    @property
    def damaged(self) -> tuple[DamagedLine, ...]:
        """Every damaged line found so far (each was also reported once as a :class:`StoreWarning`)."""
        return tuple(self._damaged)

    def refresh(self) -> None:
        """Read what was appended since the last read (every public reader calls this).

        A file that shrank or was replaced (only another program does that) is read again from
        the start, with a warning.
        """
        for attempt in range(2):
            try:
                for path in (self.legacy_path, self.path):
                    self._scan(path)
                return
            except _Reset as reset:
                if attempt:
                    raise InvalidArgumentError(f"{reset} keeps being rewritten while it is read.") from None
                self._warn(
                    f"{reset} was replaced, truncated or removed by another program; reading the folder again."
                )
                self._files.clear()
                self._spaces.clear()

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
        space = self._spaces.get(_key(key))
        return dict(space.cells) if space else {}

    def has(self, key: str | Settings | Mapping[str, Any], cell_id: Sequence[str | int]) -> bool:
        """Whether the cell is stored under ``key``.

        Examples
        --------
        >>> import tempfile
        >>> ResultStore(tempfile.mkdtemp()).has("ab" * 32, ("frontdoor/ate", 50, 0))
        False
        """
        return not self._missing(self._pairs([(key, cell_id)]), refresh=True)

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
        return {k: KeySpace(k, s.settings, len(s.cells), s.first) for k, s in self._spaces.items()}

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
        mine, key = _settings_dict(settings)
        out = []
        for space in self.key_spaces().values():
            if space.key == key:
                continue
            if space.settings is None:
                out.append(OtherSpace(space, None))
            elif all(
                _dumps_any(space.settings.get(f, UNSET)) == _dumps_any(mine.get(f, UNSET)) for f in match
            ):
                out.append(OtherSpace(space, diff_settings(space.settings, mine)))
        return out

    def _warn(self, message: str) -> None:
        # Point the warning at the caller's code, however deep in this module it was raised.
        frame, level = sys._getframe(0), 1
        while frame is not None and frame.f_code.co_filename == __file__:
            frame, level = frame.f_back, level + 1
        warnings.warn(StoreWarning(message), stacklevel=level)

    def _report(self, path: Path, lineno: int, reason: str, raw: bytes = b"") -> None:
        excerpt = raw[:60].decode("utf-8", "replace") + ("..." if len(raw) > 60 else "")
        if (str(path), lineno, reason) not in self._warned:  # a re-read after a reset reports once
            self._warned.add((str(path), lineno, reason))
            self._damaged.append(DamagedLine(path, lineno, reason))
            self._warn(
                f"{path}:{lineno}: skipped a damaged line ({reason})" + (f": {excerpt!r}" if excerpt else "")
            )

    def _flock(self, fd: int, op: int) -> bool:
        """Lock; False (and one warning) where the filesystem has no locks. Raises BlockingIOError."""
        try:
            fcntl.flock(fd, op)
            return True
        except OSError as err:
            if err.errno not in _NO_LOCKS:
                raise
            if not self._no_locks_warned:
                self._no_locks_warned = True
                self._warn(
                    f"the filesystem of {self.folder} does not support file locks ({err.strerror}): "
                    "appends run unlocked and claims do not exclude other processes."
                )
            return False

    def _scan(self, path: Path, held: int | None = None) -> None:
        """Parse the lines appended to ``path`` since the last scan.

        ``held`` is an fd of ``path`` on which the caller holds the exclusive lock.
        """
        fd = held
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if path in self._files:
                    raise _Reset(str(path)) from None
                return
        try:
            st = os.fstat(fd)
            state = self._files.get(path)
            if state is not None and (
                (st.st_dev, st.st_ino) != (state.dev, state.ino) or st.st_size < state.offset
            ):
                raise _Reset(str(path))
            if state is None:
                state = self._files[path] = _FileState(st.st_dev, st.st_ino)
            if st.st_size == state.offset:
                return
            # Under a shared lock no cooperating writer is mid-append, so a last line without a
            # newline was torn by a killed writer. The legacy file's writers never locked.
            locked = held is not None or self._flock(fd, fcntl.LOCK_SH)
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

    def _parse(self, path: Path, state: _FileState, data: bytes, *, tail_is_final: bool) -> None:
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
            key, cell_id, settings, cell = self._record(obj)
        except _NotACell as err:
            self._report(path, lineno, f"not a cell: {err}", raw)
            return
        where = f"{path}:{lineno}"
        space = self._spaces.get(key)
        if space is None:
            space = self._spaces[key] = _Space(settings, where)
        if cell_id not in space.cells:
            space.cells[cell_id] = cell
            space.where[cell_id] = where
        elif not _same(space.cells[cell_id], cell) and key != LEGACY:
            self._warn(
                f"{where}: cell {cell_id} is stored again with different values (first at "
                f"{space.where[cell_id]}); the first copy is kept."
            )

    def _record(self, obj: Any) -> tuple[str, CellId, dict[str, Any] | None, dict[str, Any]]:
        """(key, cell id, settings, cell) of a parsed line; raises _NotACell with the reason."""
        if not isinstance(obj, dict):
            raise _NotACell(f"a JSON {_json_type(obj)}, where a record (an object) was expected")
        if "key" not in obj and "format" not in obj:
            # A line of the unkeyed results.jsonl of earlier versions: its own key space, never reused.
            if isinstance(obj.get("target"), str) and _is_int(obj.get("n")) and _is_int(obj.get("replicate")):
                ident = (
                    obj["target"],
                    str(obj.get("method")),
                    str(obj.get("seed")),
                    obj["n"],
                    obj["replicate"],
                )
                return LEGACY, ident, None, obj
            raise _NotACell("an object with no 'key' that is not an old-format cell either")
        missing = [f for f in ("format", "key", "id", "settings", "cell") if f not in obj]
        if missing:
            raise _NotACell("missing " + ", ".join(map(repr, missing)))
        if obj["format"] != FORMAT or not _is_int(obj["format"]):
            raise _NotACell(f"record format {obj['format']!r}; this version reads format {FORMAT}")
        key = obj["key"]
        if not isinstance(key, str) or not _HEX64.fullmatch(key):
            raise _NotACell("'key' is not a 64-digit hex settings key")
        try:
            cell_id = _cell_id(obj["id"])
        except ValueError as err:
            raise _NotACell(str(err)) from None
        settings, cell = obj["settings"], obj["cell"]
        if not isinstance(settings, dict):
            raise _NotACell(f"'settings' is a JSON {_json_type(settings)}, not an object")
        if not isinstance(cell, dict):
            raise _NotACell(f"'cell' is a JSON {_json_type(cell)}, not an object")
        try:
            expected = settings_key(settings)
        except InvalidArgumentError as err:
            raise _NotACell(f"its settings cannot be keyed ({err})") from None
        if expected != key:
            raise _NotACell("its key does not match its settings (edited by hand?)")
        problem = self._schema_problem(cell)
        if problem:
            raise _NotACell(problem)
        return key, cell_id, settings, cell

    def _schema_problem(self, cell: Mapping[str, Any]) -> str | None:
        for name, types in self._schema.items():
            if name not in cell:
                return f"the cell has no field {name!r}"
            if not _type_ok(cell[name], types):
                expected = " or ".join(t.__name__ for t in types)
                return f"the cell's {name!r} is {cell[name]!r} ({type(cell[name]).__name__}), not {expected}"
        return None

    def _missing(self, pairs: Iterable[tuple[str, CellId]], *, refresh: bool) -> list[tuple[str, CellId]]:
        if refresh:
            self.refresh()
        out = []
        for key, cell_id in pairs:
            space = self._spaces.get(key)
            if space is None or cell_id not in space.cells:
                out.append((key, cell_id))
        return out

    # -- writing ----------------------------------------------------------------------------

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
        canon, key = _settings_dict(settings)
        items = cells.items() if isinstance(cells, Mapping) else cells
        lines: dict[CellId, tuple[dict[str, Any], str]] = {}
        for raw_id, cell in items:
            try:
                cell_id = _cell_id(raw_id)
            except ValueError as err:
                raise InvalidArgumentError(str(err) + ".") from None
            if not isinstance(cell, Mapping):
                raise InvalidArgumentError(f"cell {cell_id} is a {type(cell).__name__}, not a mapping.")
            try:
                cell = json.loads(json.dumps(dict(cell), default=_json_default))
                line = json.dumps(
                    {"format": FORMAT, "key": key, "id": list(cell_id), "settings": canon, "cell": cell},
                    separators=(",", ":"),
                )
            except (TypeError, ValueError) as err:
                raise InvalidArgumentError(f"cell {cell_id} cannot be stored as JSON: {err}.") from None
            problem = self._schema_problem(cell)
            if problem:
                raise InvalidArgumentError(f"cell {cell_id} does not fit the store's schema: {problem}.")
            if cell_id in lines and not _same(lines[cell_id][0], cell):
                raise InvalidArgumentError(f"cell {cell_id} is given twice with different values.")
            lines[cell_id] = (cell, line)
        if not lines:
            return 0
        self.folder.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if created:  # make the new file's directory entry durable too
                _fsync_dir(self.folder)
            locked = self._flock(fd, fcntl.LOCK_EX)
            try:
                self._scan_held(fd)
                stored = self._spaces.get(key)
                new = []
                for cell_id, (cell, line) in lines.items():
                    if stored is not None and cell_id in stored.cells:
                        if not _same(stored.cells[cell_id], cell):
                            self._warn(
                                f"cell {cell_id} is already stored with other values at "
                                f"{stored.where[cell_id]}; the stored copy is kept."
                            )
                        continue
                    new.append(line)
                if new:
                    payload = "".join(line + "\n" for line in new).encode()
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        # A killed writer left a torn line: end it, so ours is a line of its own.
                        payload = b"\n" + payload
                    _write_all(fd, payload)
                    os.fsync(fd)
                    self._scan_held(fd)
            finally:
                if locked:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return len(new)

    def _scan_held(self, fd: int) -> None:
        try:
            self._scan(self.path, held=fd)
        except _Reset:
            self._warn(
                f"{self.path} was replaced, truncated or removed by another program; reading the folder again."
            )
            self._files.clear()
            self._spaces.clear()
            self._scan(self.legacy_path)
            self._scan(self.path, held=fd)

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
        other.refresh()
        added = 0
        for key, space in list(other._spaces.items()):
            if key == LEGACY or space.settings is None:
                continue
            added += self.append(space.settings, dict(space.cells))
        return added

    # -- claims -----------------------------------------------------------------------------

    def _lock_path(self, key: str, cell_id: CellId) -> Path:
        digest = hashlib.sha256(f"{key}\0{_dumps(list(cell_id))}".encode()).hexdigest()[:40]
        return self._claims / f"{digest}.lock"

    def _try_lock(self, path: Path) -> int | None:
        """An fd holding the exclusive lock of ``path``, or None if another process holds it."""
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # another process removed the empty claims folder
                self._claims.mkdir(parents=True, exist_ok=True)
                continue
            try:
                if not self._flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
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

    def _pairs(
        self, pairs: Iterable[tuple[str | Settings | Mapping[str, Any], Sequence[str | int]]]
    ) -> list[tuple[str, CellId]]:
        out = []
        for key, cell_id in pairs:
            try:
                out.append((_key(key), _cell_id(cell_id)))
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

    def claim_many(
        self, pairs: Iterable[tuple[str | Settings | Mapping[str, Any], Sequence[str | int]]]
    ) -> Claim:
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
        self._claims.mkdir(parents=True, exist_ok=True)
        held: list[tuple[Path, int]] = []
        claim = Claim(held, False, ())
        for path in sorted({self._lock_path(*p) for p in wanted}):
            fd = self._try_lock(path)
            if fd is None:
                claim.release()
                return claim
            held.append((path, fd))
        for (key, cell_id), (_, fd) in zip(
            sorted(wanted, key=lambda p: self._lock_path(*p)), held, strict=True
        ):
            info = {"key": key, "id": list(cell_id), "pid": os.getpid(), "host": socket.gethostname()}
            info["since"] = time.time()
            with contextlib.suppress(OSError):  # who holds it is a courtesy for waiting processes
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
        claim.acquired = True
        claim.todo = tuple(self._missing(wanted, refresh=True))
        return claim

    def _holder(self, key: str, cell_id: CellId) -> ClaimInfo | None:
        """Who holds the claim on the cell, or None when nobody does (a stale file is removed)."""
        path = self._lock_path(key, cell_id)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                if not self._flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
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
        out = []
        for path in sorted(self._claims.glob("*.lock")) if self._claims.is_dir() else []:
            try:
                info = json.loads(path.read_bytes() or b"{}")
                key, cell_id = str(info["key"]), _cell_id(info["id"])
            except (OSError, ValueError, KeyError, TypeError):
                key, cell_id = None, None
            if key is not None and cell_id is not None and path == self._lock_path(key, cell_id):
                holder = self._holder(key, cell_id)
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
                if not self._flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
                    return False
            except BlockingIOError:
                return True
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
            return False
        finally:
            os.close(fd)

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
        if not self._claims.is_dir():
            return
        for path in self._claims.glob("*.lock"):
            self._prune_one(path)
        with contextlib.suppress(OSError):  # not empty: someone holds a claim, or just made one
            self._claims.rmdir()

    def wait(
        self,
        pairs: Iterable[tuple[str | Settings | Mapping[str, Any], Sequence[str | int]]],
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
            missing = self._missing(wanted, refresh=True)
            holders = [h for h in (self._holder(*p) for p in missing) if h is not None]
            if not holders or (deadline is not None and time.monotonic() >= deadline):
                return missing
            if on_wait is not None and not notified:
                notified = True
                on_wait(holders)
            time.sleep(poll)

    def iter_claimed(
        self,
        tasks: Iterable[T],
        pairs_of: Callable[[T], Sequence[tuple[str | Settings | Mapping[str, Any], Sequence[str | int]]]],
        *,
        poll: float = 0.1,
        on_wait: Callable[[list[ClaimInfo]], None] | None = None,
    ) -> Iterator[tuple[T, Claim]]:
        """The runner loop: yield each task whose cells are missing, with its claim held.

        The caller computes ``claim.todo`` and appends it before asking for the next task; the
        claim is released when the loop moves on. Tasks another process holds are skipped at
        first; once the rest are done, this waits for them and yields those whose holder died
        without storing them. Each task is yielded at most once. Lock files left behind are
        removed at the end.

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
                if not self._missing(pairs[i], refresh=True):
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


def _write_all(fd: int, payload: bytes) -> None:
    # One write in practice; a short write (disk full, a signal) continues where it stopped.
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
