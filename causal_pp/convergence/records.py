"""The results file's format: one self-describing JSON record per line, and what a reader reports.

A record is ``{"format": 1, "key": <settings key>, "id": [cell id parts], "settings": {...},
"cell": {...}}``; :func:`parse_record` turns a parsed line into ``(key, cell id, settings, cell)``
or says, with :class:`NotACell`, why the line is not a record. Lines of the unkeyed
``results.jsonl`` of earlier versions parse into the key space :data:`LEGACY`.

Examples
--------
>>> line = encode_record(settings_key({"case": "a"}), ("a", 1), {"case": "a"}, {"mean": 0.5})
>>> key, cell_id, settings, cell = parse_record(json.loads(line), CellSchema({"mean": float}))
>>> cell_id, cell
(('a', 1), {'mean': 0.5})
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .keys import describe, format_value, settings_key

__all__ = [
    "FORMAT",
    "LEGACY",
    "LEGACY_FILE",
    "STORE_FILE",
    "CellId",
    "CellSchema",
    "DamagedLine",
    "KeySpace",
    "NotACell",
    "OtherSpace",
    "StoreWarning",
    "as_cell_id",
    "encode_record",
    "json_default",
    "parse_record",
    "same_cell",
]

#: Version of the record layout; a reader skips (and reports) records of another format.
FORMAT = 1
#: The key space of cells from the unkeyed ``results.jsonl`` of earlier versions.
LEGACY = "legacy"
#: The file the store appends to, and the old unkeyed file it only reads.
STORE_FILE = "cells.jsonl"
LEGACY_FILE = "results.jsonl"

#: A cell's id within its key space, e.g. ``(target, n, replicate)``.
CellId = tuple[str | int, ...]

_HEX64 = re.compile(r"[0-9a-f]{64}")


class StoreWarning(UserWarning):
    """A results file holds a damaged or conflicting line (the warning names file and line).

    Examples
    --------
    >>> issubclass(StoreWarning, UserWarning)
    True
    """


class NotACell(Exception):
    """A parsed JSON value is not a cell record; the message says why (a damaged-line report).

    Examples
    --------
    >>> str(NotACell("missing 'cell'"))
    "missing 'cell'"
    """


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
        theirs = ", ".join(f"{k}={format_value(v[0])}" for k, v in self.differs.items())
        ours = ", ".join(f"{k}={format_value(v[1])}" for k, v in self.differs.items())
        return f"this folder also holds {cells} for {theirs} (here {ours}); they are not used."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_type(v: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def json_default(v: Any) -> Any:
    """``json.dumps``'s ``default``: numpy scalars and arrays are stored as their values.

    Examples
    --------
    >>> json.dumps({"x": np.float32(0.5), "v": np.arange(2)}, default=json_default)
    '{"x": 0.5, "v": [0, 1]}'
    """
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def same_cell(a: Any, b: Any) -> bool:
    """Whether two cells are the same text (NaN != NaN, but two copies of one cell are the same).

    Examples
    --------
    >>> same_cell({"x": float("nan")}, {"x": float("nan")}), same_cell({"x": 1}, {"x": 1.0})
    (True, False)
    """
    return json.dumps(a, sort_keys=True, default=json_default) == json.dumps(
        b, sort_keys=True, default=json_default
    )


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if float in types and _is_int(value):  # JSON writes 2.0 as 2.0, but a caller may store 2
        return True
    return isinstance(value, types)


def as_cell_id(raw: Any) -> CellId:
    """A cell id from a tuple/list of str and int; raises ValueError with the reason.

    Examples
    --------
    >>> as_cell_id(["frontdoor/ate", np.int64(50), 0])
    ('frontdoor/ate', 50, 0)
    """
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


class CellSchema:
    """Fields every cell must have, name -> type or tuple of types.

    ``float`` accepts ints; ``bool`` is not an ``int``. An empty schema accepts any JSON object.

    Examples
    --------
    >>> schema = CellSchema({"mean": float, "n": int})
    >>> schema.problem({"mean": 1, "n": True})
    "the cell's 'n' is True (bool), not int"
    """

    def __init__(self, schema: Mapping[str, Any] | None = None) -> None:
        self.fields: dict[str, tuple[type, ...]] = {}
        for name, types in (schema or {}).items():
            types = types if isinstance(types, tuple) else (types,)
            if not types or not all(isinstance(t, type) for t in types):
                raise InvalidArgumentError(
                    f"schema[{name!r}] must be a type or a tuple of types; got {types!r}."
                )
            self.fields[name] = types

    def problem(self, cell: Mapping[str, Any]) -> str | None:
        """Why ``cell`` does not fit the schema, or None when it does."""
        for name, types in self.fields.items():
            if name not in cell:
                return f"the cell has no field {name!r}"
            if not _type_ok(cell[name], types):
                expected = " or ".join(t.__name__ for t in types)
                return f"the cell's {name!r} is {cell[name]!r} ({type(cell[name]).__name__}), not {expected}"
        return None


def encode_record(key: str, cell_id: CellId, settings: Mapping[str, Any], cell: Mapping[str, Any]) -> str:
    """One line of the results file (without its newline).

    Examples
    --------
    >>> encode_record("ab" * 32, ("a", 1), {}, {"x": 1})[:30]
    '{"format":1,"key":"abababababa'
    """
    record = {"format": FORMAT, "key": key, "id": list(cell_id), "settings": settings, "cell": cell}
    return json.dumps(record, separators=(",", ":"), default=json_default)


def parse_record(obj: Any, schema: CellSchema) -> tuple[str, CellId, dict[str, Any] | None, dict[str, Any]]:
    """(key, cell id, settings, cell) of a parsed line; raises :class:`NotACell` with the reason.

    Examples
    --------
    >>> parse_record([1, 2], CellSchema())
    Traceback (most recent call last):
    ...
    causal_pp.convergence.records.NotACell: a JSON array, where a record (an object) was expected
    """
    if not isinstance(obj, dict):
        raise NotACell(f"a JSON {_json_type(obj)}, where a record (an object) was expected")
    if "key" not in obj and "format" not in obj:
        # A line of the unkeyed results.jsonl of earlier versions: its own key space, never reused.
        if isinstance(obj.get("target"), str) and _is_int(obj.get("n")) and _is_int(obj.get("replicate")):
            ident = (obj["target"], str(obj.get("method")), str(obj.get("seed")), obj["n"], obj["replicate"])
            return LEGACY, ident, None, obj
        raise NotACell("an object with no 'key' that is not an old-format cell either")
    missing = [f for f in ("format", "key", "id", "settings", "cell") if f not in obj]
    if missing:
        raise NotACell("missing " + ", ".join(map(repr, missing)))
    if obj["format"] != FORMAT or not _is_int(obj["format"]):
        raise NotACell(f"record format {obj['format']!r}; this version reads format {FORMAT}")
    key = obj["key"]
    if not isinstance(key, str) or not _HEX64.fullmatch(key):
        raise NotACell("'key' is not a 64-digit hex settings key")
    try:
        cell_id = as_cell_id(obj["id"])
    except ValueError as err:
        raise NotACell(str(err)) from None
    settings, cell = obj["settings"], obj["cell"]
    if not isinstance(settings, dict):
        raise NotACell(f"'settings' is a JSON {_json_type(settings)}, not an object")
    if not isinstance(cell, dict):
        raise NotACell(f"'cell' is a JSON {_json_type(cell)}, not an object")
    try:
        expected = settings_key(settings)
    except InvalidArgumentError as err:
        raise NotACell(f"its settings cannot be keyed ({err})") from None
    if expected != key:
        raise NotACell("its key does not match its settings (edited by hand?)")
    problem = schema.problem(cell)
    if problem:
        raise NotACell(problem)
    return key, cell_id, settings, cell
