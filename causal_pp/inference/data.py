"""Observational data checked against a graph and a model, before any fitting."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine

from ..errors import (
    DataError,
    EmptyDataError,
    InferenceError,
    LatentColumnError,
    MissingColumnError,
    NonFiniteDataError,
    NonNumericDataError,
    UnequalLengthError,
    UnexpectedColumnError,
)
from ..graph import CausalGraph
from ..runtime import seeded

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..model import CausalModel
    from ..program import ProgramStructure

__all__ = ["check_data_shapes", "check_support", "latent_sites", "validate_data"]


def _column_to_tensor(name: str, value: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_complex():
            raise NonNumericDataError(f"column {name!r} is complex; give real numbers.")
        return t.to(device="cpu", dtype=dtype, copy=True)
    try:
        import pandas as pd

        if isinstance(value, pd.Series):
            if not (pd.api.types.is_numeric_dtype(value.dtype) or pd.api.types.is_bool_dtype(value.dtype)):
                raise NonNumericDataError(
                    f"column {name!r} has dtype {value.dtype}, not numbers; encode it numerically "
                    "(e.g. 0/1 or category codes) before fitting."
                )
            value = value.to_numpy(dtype=float, na_value=np.nan)
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(value)
    if arr.dtype.kind == "O":
        flat = arr.ravel()
        if not all(
            isinstance(x, (int, float, np.number)) and not isinstance(x, (bool, np.bool_)) for x in flat
        ):
            bad = next(
                (
                    x
                    for x in flat
                    if not isinstance(x, (int, float, np.number)) or isinstance(x, (bool, np.bool_))
                ),
                None,
            )
            raise NonNumericDataError(
                f"column {name!r} holds non-numeric values (e.g. {bad!r}); encode it numerically "
                "before fitting."
            )
        arr = arr.astype(float)
    if arr.dtype.kind not in "biuf":
        raise NonNumericDataError(
            f"column {name!r} has dtype {arr.dtype}, not numbers; encode it numerically (e.g. 0/1 "
            "or category codes) before fitting."
        )
    return torch.tensor(arr, dtype=dtype)


def validate_data(
    data: pd.DataFrame | Mapping[str, Any], graph: CausalGraph, *, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Check observational data against a graph; return fresh CPU tensors, one per column.

    The data must hold exactly the observed variables of the graph, as a pandas DataFrame or
    a mapping of name -> array, tensor or sequence (first dimension: units), with numbers
    only, the same number of rows everywhere, at least one row, and no NaN or infinity. The
    user's data is never modified (the tensors returned are copies).

    Parameters
    ----------
    data
        The observations.
    graph
        The causal graph whose observed nodes the columns must match.
    dtype
        Floating dtype of the returned tensors (default: torch's default dtype).

    Returns
    -------
    dict
        Observed node name -> tensor of shape ``(n, ...)``, in the graph's node order.

    Raises
    ------
    LatentColumnError
        A column is a latent node of the graph.
    UnexpectedColumnError
        A column is not a node of the graph.
    MissingColumnError
        An observed node has no column.
    NonNumericDataError, UnequalLengthError, EmptyDataError, NonFiniteDataError
        Non-numeric values, columns of different lengths, no rows, NaN or infinite values.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> g = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"])
    >>> validate_data({"X": [0.0, 1.0], "Y": [1.0, 2.0]}, g)["Y"]
    tensor([1., 2.])
    >>> validate_data({"X": [0.0], "Y": [1.0], "U": [0.3]}, g)
    Traceback (most recent call last):
    ...
    causal_pp.errors.LatentColumnError: column 'U' is the latent variable U: ...
    """
    dtype = dtype or torch.get_default_dtype()
    try:
        import pandas as pd

        is_frame = isinstance(data, pd.DataFrame)
    except ImportError:  # pragma: no cover
        is_frame = False
    if is_frame:
        columns = list(data.columns)
        if len(set(map(str, columns))) != len(columns):
            raise DataError(f"the DataFrame has duplicate column names: {columns}.")
        getter: Callable[[Any], Any] = lambda c: data[c]  # noqa: E731
    elif isinstance(data, Mapping):
        columns = list(data.keys())
        getter = data.__getitem__
    else:
        raise DataError(
            f"data must be a pandas DataFrame or a dict of arrays/tensors; got {type(data).__name__}."
        )
    if not columns:
        raise EmptyDataError(
            f"the data has no columns; give one column per observed variable {list(graph.observed)}."
        )
    for c in columns:
        if not isinstance(c, str):
            raise UnexpectedColumnError(
                f"column name {c!r} is not a string; name columns after the observed variables "
                f"{list(graph.observed)}."
            )
    latent = [c for c in columns if c in graph and graph.is_latent(c)]
    if latent:
        raise LatentColumnError(
            f"column {latent[0]!r} is the latent variable {latent[0]}: the graph says it is never "
            "observed. Drop the column, or build the graph without declaring it latent if it "
            "really was measured." + (f" (also latent: {latent[1:]})" if len(latent) > 1 else "")
        )
    unexpected = [c for c in columns if c not in graph]
    if unexpected:
        raise UnexpectedColumnError(
            f"column{'s' if len(unexpected) > 1 else ''} {unexpected} {'are' if len(unexpected) > 1 else 'is'} "
            f"not {'variables' if len(unexpected) > 1 else 'a variable'} of the graph; the data must "
            f"hold exactly the observed variables {list(graph.observed)}. Drop "
            f"{'them' if len(unexpected) > 1 else 'it'} or add {'them' if len(unexpected) > 1 else 'it'} "
            "to the graph."
        )
    missing = [v for v in graph.observed if v not in columns]
    if missing:
        raise MissingColumnError(
            f"observed variable{'s' if len(missing) > 1 else ''} {missing} "
            f"{'have' if len(missing) > 1 else 'has'} no column in the data (columns: {columns}). "
            "Add the column, or mark the variable latent in the graph if it was never measured."
        )
    out = {v: _column_to_tensor(v, getter(v), dtype) for v in graph.observed}
    for v, t in out.items():
        if t.dim() == 0:
            raise DataError(f"column {v!r} is a single number; give one value per unit.")
    lengths = {v: int(t.shape[0]) for v, t in out.items()}
    if len(set(lengths.values())) > 1:
        raise UnequalLengthError(
            f"columns have different numbers of rows: {lengths}; every column needs one row per unit."
        )
    if next(iter(lengths.values())) == 0:
        raise EmptyDataError("the data has no rows; fitting needs at least one unit.")
    for v, t in out.items():
        bad = ~torch.isfinite(t)
        if bad.any():
            rows = torch.nonzero(bad.reshape(t.shape[0], -1).any(-1)).flatten()
            raise NonFiniteDataError(
                f"column {v!r} has {len(rows)} row(s) with NaN or infinite values (first: row "
                f"{rows[0].item()}); drop or impute them before fitting."
            )
    return out


def check_data_shapes(data: Mapping[str, torch.Tensor], s: ProgramStructure) -> None:
    for v, t in data.items():
        want = s.sites[v].shape
        if tuple(t.shape) != want:
            raise DataError(
                f"column {v!r} has shape {tuple(t.shape)} but the model's site {v!r} has shape {want} "
                f"for n={s.n} units; give one value per unit of the site's shape."
            )


def check_support(conditioned: Callable[[], Any], observed: list[str], dev: torch.device, seed: int) -> None:
    """One run of the conditioned model: data outside a site's support is refused by name."""
    with seeded(seed, dev), torch.no_grad(), pyro.validation_enabled(False):
        try:
            tr = poutine.trace(conditioned).get_trace()
        except (ValueError, RuntimeError) as err:
            raise InferenceError(f"the model cannot be run on the data: {err}") from err
    for name in observed:
        site = tr.nodes[name]
        fn, value = site["fn"], site["value"]
        ok = fn.support.check(value)
        lp = fn.log_prob(value) if bool(ok.all()) else None
        if lp is None or not torch.isfinite(lp).all():
            bad = ~ok if lp is None else ~torch.isfinite(lp)
            count = int(bad.reshape(-1, *bad.shape[-1:]).any(0).sum()) if bad.dim() else 1
            raise InferenceError(
                f"the data of {name!r} has zero probability under the model's {type(fn).__name__} "
                f"site ({count} unit(s) outside its support {fn.support}); check the column against "
                "the site's distribution (e.g. non-binary values for a Bernoulli)."
            )


def latent_sites(model: CausalModel, s: ProgramStructure) -> tuple[list[str], list[str], list[str]]:
    """(global parameters, per-unit latent sample sites, enumerable per-unit latent sites)."""
    g = model.graph
    observed = set(g.observed)
    globals_ = [n for n in s.global_sites]
    unit_latent = [n for n in s.unit_sites if n not in observed and not s.sites[n].deterministic]
    if s.params:
        # NUTS would hold a param at its initial value and SVI would optimise it: neither is a
        # posterior, and an interval that ignores its uncertainty is too narrow
        raise InferenceError(
            f"{model.name!r} declares pyro.param {', '.join(map(repr, s.params))}; causal_pp fits Bayesian "
            "models, in which every unknown has a prior. Write pyro.sample(<name>, <prior>) instead, "
            "or fix the value and pass it as a model argument."
        )
    for n in observed:
        if s.sites[n].deterministic:
            raise InferenceError(
                f"observed variable {n!r} is a pyro.deterministic site, so the model gives the data "
                f"no likelihood; write it as pyro.sample({n!r}, <distribution>) with a noise term."
            )
    for n in globals_:
        info = s.sites[n]
        if info.discrete:
            raise InferenceError(
                f"global parameter {n!r} is discrete ({info.distribution}); causal_pp fits continuous "
                "global parameters only. Make it continuous, or fix it and pass it as a model argument."
            )
    enum = []
    for n in unit_latent:
        info = s.sites[n]
        if info.discrete:
            if not info.enumerable:
                raise InferenceError(
                    f"latent per-unit site {n!r} is discrete ({info.distribution}) and Pyro cannot "
                    "enumerate it (infinite support), so neither NUTS nor SVI can fit it. Use a "
                    "distribution with finite support (Bernoulli, Categorical) or a continuous latent."
                )
            enum.append(n)
    return globals_, unit_latent, enum
