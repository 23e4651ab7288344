"""Observed data as a discrete table: validation, integer coding, counts over the cells.

The bounds work with discrete variables only: binary or finite categorical, coded as integers
(a float column is accepted when every value is a whole number). Data come as a pandas
DataFrame or a mapping of name -> 1-d array; a weighted table (an exact distribution, or a
trial's arms) carries its weights in one extra column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import (
    ArgumentTypeError,
    DataError,
    EmptyDataError,
    InvalidArgumentError,
    LatentColumnError,
    MissingColumnError,
    NonFiniteDataError,
    NonNumericDataError,
    UnequalLengthError,
    UnexpectedColumnError,
)
from ..graph import CausalGraph

__all__ = ["check_domains", "codes", "domains_of", "read_columns", "tabulate"]


def _items(data: Any, role: str) -> list[tuple[Any, Any]]:
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            columns = list(data.columns)
            if len(set(map(str, columns))) != len(columns):
                raise DataError(f"the {role} DataFrame has duplicate column names: {columns}.")
            return [(c, data[c].to_numpy()) for c in columns]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(data, Mapping):
        return list(data.items())
    raise ArgumentTypeError(
        f"{role} must be a pandas DataFrame or a dict of 1-d arrays (one per variable); got {type(data).__name__}."
    )


def read_columns(
    data: Any,
    graph: CausalGraph,
    *,
    role: str,
    expected: Sequence[str],
    weight: str | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Validate a table and return its numeric columns (copies) and its weight column.

    Parameters
    ----------
    data
        A pandas DataFrame or a mapping of column name -> 1-d array.
    graph
        Names are checked against it: latent nodes and non-nodes are refused.
    role
        ``"data"``, ``"experimental"`` or ``"distribution"``: how the messages call the table.
    expected
        The variable columns the table must hold, exactly.
    weight
        The name of an extra column of non-negative weights (None: no weights).

    Raises
    ------
    LatentColumnError, UnexpectedColumnError, MissingColumnError, UnequalLengthError,
    EmptyDataError, NonNumericDataError, NonFiniteDataError, DataError

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> cols, w = read_columns({"X": [0, 1], "Y": [1, 1]}, CausalGraph.parse("X -> Y"), role="data",
    ...                        expected=["X", "Y"])
    >>> cols["Y"].tolist(), w
    ([1.0, 1.0], None)
    """
    items = _items(data, role)
    if not items:
        raise EmptyDataError(f"the {role} has no columns; give one column per variable {list(expected)}.")
    columns: dict[str, np.ndarray] = {}
    weights = None
    for name, raw in items:
        if not isinstance(name, str):
            raise UnexpectedColumnError(
                f"{role} column name {name!r} is not a string; name columns after variables."
            )
        if weight is not None and name == weight:
            weights = _numeric(raw, name, role)
            continue
        if name in graph and graph.is_latent(name):
            raise LatentColumnError(
                f"{role} column {name!r} is the latent variable {name}: the graph says it is never observed. "
                "Drop the column, or build the graph without declaring it latent if it was measured."
            )
        if name not in expected:
            what = "not a node of the graph" if name not in graph else "not used here"
            raise UnexpectedColumnError(
                f"{role} column {name!r} is {what}; the {role} must hold exactly the columns "
                f"{list(expected)}{f' and {weight!r}' if weight else ''}."
            )
        columns[name] = _numeric(raw, name, role)
    missing = [v for v in expected if v not in columns]
    if missing:
        raise MissingColumnError(
            f"the {role} has no column for {missing}; it must hold the columns {list(expected)}"
            f"{f' and {weight!r}' if weight else ''}."
        )
    if weight is not None and weights is None:
        raise MissingColumnError(f"the {role} has no weight column {weight!r} (the probability of each row).")
    lengths = {k: len(v) for k, v in columns.items()}
    if weights is not None:
        lengths[weight] = len(weights)  # type: ignore[index]
    if len(set(lengths.values())) > 1:
        raise UnequalLengthError(f"the {role} columns have different lengths: {lengths}.")
    if next(iter(lengths.values())) == 0:
        raise EmptyDataError(f"the {role} has no rows.")
    if weights is not None and (np.any(weights < 0) or not np.any(weights > 0)):
        raise DataError(
            f"the weights in column {weight!r} of the {role} must be non-negative with a positive sum."
        )
    return columns, weights


def _numeric(raw: Any, name: str, role: str) -> np.ndarray:
    if hasattr(raw, "detach"):  # a torch tensor; avoid importing torch here
        raw = raw.detach().cpu().numpy()
    try:
        arr = np.asarray(raw)
    except Exception as exc:  # ragged input and the like
        raise NonNumericDataError(f"{role} column {name!r} cannot be read as an array: {exc}") from None
    if arr.ndim != 1:
        raise DataError(f"{role} column {name!r} must be 1-d (one value per row); got shape {arr.shape}.")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise NonNumericDataError(
            f"{role} column {name!r} is not numeric (dtype {arr.dtype}); code categories as integers 0..k-1 "
            "(e.g. with pandas.factorize)."
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise NonFiniteDataError(
            f"{role} column {name!r} holds NaN or infinite values; drop or impute those rows."
        )
    return arr


def codes(values: np.ndarray, name: str, *, hint: str = "") -> np.ndarray:
    """Integer codes of a discrete column; a column with a non-integer value is refused.

    Examples
    --------
    >>> codes(np.array([0.0, 1.0, 2.0]), "Z").tolist()
    [0, 1, 2]
    """
    whole = np.round(values)
    if not np.array_equal(whole, values) or np.any(np.abs(values) > 2**53):
        bad = values[whole != values][0] if np.any(whole != values) else values[0]
        raise DataError(
            f"column {name!r} holds a non-integer value ({bad:g}): bounds need discrete variables coded as "
            f"integers (binary 0/1 or categories 0..k-1).{hint}"
        )
    return whole.astype(np.int64)


def check_domains(domains: Any, graph: CausalGraph) -> dict[str, tuple[int, ...]]:
    """Validate the ``domains`` option: observed variable -> the integer values it can take.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> check_domains({"X": [1, 0]}, CausalGraph.parse("X -> Y"))
    {'X': (0, 1)}
    """
    if domains is None:
        return {}
    if not isinstance(domains, Mapping):
        raise ArgumentTypeError(
            f"domains must be a mapping {{variable: [values]}}; got {domains!r} ({type(domains).__name__})."
        )
    out: dict[str, tuple[int, ...]] = {}
    for name, values in domains.items():
        if not isinstance(name, str) or name not in graph or graph.is_latent(name):
            raise InvalidArgumentError(
                f"domains key {name!r} is not an observed variable of the graph {list(graph.observed)}."
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ArgumentTypeError(f"domains[{name!r}] must be a list of integers; got {values!r}.")
        vals = list(values)
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ArgumentTypeError(f"domains[{name!r}] must hold integers (codes); got {v!r}.")
        if not vals:
            raise InvalidArgumentError(f"domains[{name!r}] is empty; list the values {name} can take.")
        out[name] = tuple(sorted({int(v) for v in vals}))
    return out


def domains_of(
    columns: Mapping[str, np.ndarray], variables: Sequence[str], extra: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Each variable's values: those in the data, plus those listed in ``extra``.

    Examples
    --------
    >>> domains_of({"X": np.array([1, 1])}, ["X"], {"X": (0,)})
    {'X': (0, 1)}
    """
    return {v: tuple(sorted(set(np.unique(columns[v]).tolist()) | set(extra.get(v, ())))) for v in variables}


def tabulate(
    columns: Mapping[str, np.ndarray],
    variables: Sequence[str],
    domains: Mapping[str, tuple[int, ...]],
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Counts (or summed weights) over the cells of ``variables``; axis i is ``variables[i]``.

    Examples
    --------
    >>> tabulate({"X": np.array([0, 1, 1])}, ["X"], {"X": (0, 1)}).tolist()
    [1.0, 2.0]
    """
    shape = tuple(len(domains[v]) for v in variables)
    idx = [np.searchsorted(np.asarray(domains[v]), columns[v]) for v in variables]
    flat = np.ravel_multi_index(idx, shape)
    w = np.ones(flat.shape[0]) if weights is None else weights
    return np.bincount(flat, weights=w, minlength=int(np.prod(shape))).reshape(shape)
