"""Merging results folders: shards of a study run on several machines, gathered into one folder.

Cells are seeded by (seed, N, replicate) and keyed by their settings, so shards of one study
(``--replicate-range``) fill the same key spaces: merging is appending what the target folder
lacks. Every source is checked before the target folder is created or written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError
from .records import LEGACY_FILE, STORE_FILE
from .store import ResultStore

__all__ = ["MergeReport", "merge_results"]


@dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_results` did.

    Attributes
    ----------
    added
        Source folder -> cells appended from it (cells the target already had are not counted).
    cells, key_spaces
        Cells and key spaces in the target folder afterwards.
    out
        The target folder.

    Examples
    --------
    >>> MergeReport({"a": 2}, 5, 1, Path("m")).total_added
    2
    """

    added: dict[str, int]
    cells: int
    key_spaces: int
    out: Path

    @property
    def total_added(self) -> int:
        """Cells appended in all."""
        return sum(self.added.values())


def merge_results(sources: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> MergeReport:
    """Append the keyed cells of every source folder that ``out`` lacks.

    Damaged lines of a source are skipped with a warning; cells in the old unkeyed format
    (``results.jsonl``) cannot be keyed and are not merged.

    Raises
    ------
    InvalidArgumentError
        No sources, a source that is not a folder of results, or ``out`` is a file; nothing is
        created or written then.

    Examples
    --------
    >>> import tempfile
    >>> a, b, m = (ResultStore(tempfile.mkdtemp()) for _ in range(3))
    >>> s = {"case": "frontdoor/ate", "causal_pp_version": "0"}
    >>> _ = a.append(s, {("frontdoor/ate", 50, 0): {}}); _ = b.append(s, {("frontdoor/ate", 50, 1): {}})
    >>> merge_results([a.folder, b.folder], m.folder).total_added
    2
    """
    if not sources:
        raise InvalidArgumentError("merge needs at least one results folder to merge.")
    paths = [Path(s) for s in sources]
    for p in paths:
        if not p.is_dir():
            raise InvalidArgumentError(
                f"{str(p)!r} is not a folder; give the --out folders of the runs to merge."
            )
        if not (p / STORE_FILE).is_file():
            old = " (it holds only old unkeyed results.jsonl cells, which cannot be merged)"
            raise InvalidArgumentError(
                f"{str(p)!r} holds no {STORE_FILE}{old if (p / LEGACY_FILE).exists() else ''}; give the "
                "--out folders of converge runs."
            )
    target = ResultStore(out)  # refuses a file; created only by the first append
    added = {str(p): target.merge_from(p) for p in paths}
    spaces = target.key_spaces()
    return MergeReport(
        added=added,
        cells=sum(ks.cells for ks in spaces.values() if not ks.legacy),
        key_spaces=sum(1 for ks in spaces.values() if not ks.legacy),
        out=target.folder,
    )
