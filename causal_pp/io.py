"""Keeping a fit: save and load a :class:`~causal_pp.CausalPosterior`, and pickling support.

:meth:`CausalPosterior.save <causal_pp.CausalPosterior.save>` writes one NetCDF file that ArviZ
reads too (``az.from_netcdf``):

* ``posterior``: the global parameters (chain, draw, ...) and per-unit latents (chain, draw,
  unit, ...), in their own dtypes, so they come back bit-identical;
* ``observed_data``: the data (unit);
* ``sample_stats``: NUTS's per-draw statistics, or SVI's loss trace and importance weights;
* ``causal_pp``: one string variable ``meta``, a small JSON document with the rest -- format
  version, causal_pp version, method, seed, chains, device, the DAG (edges, latent and isolated
  nodes), the model's name and arguments, and the diagnostics (arrays tagged with their dtype).

The model function is code, not data, and is not saved: :meth:`CausalPosterior.load
<causal_pp.CausalPosterior.load>` takes the model and refuses one whose DAG differs from the
saved one. Model arguments are saved when they are numbers, strings, tensors, arrays or lists
and dicts of them.

Pickling: a :class:`~causal_pp.CausalModel` made by ``@causal_model`` at module level replaces
its function in the module, so pickle cannot find the function by name; this module registers
(``copyreg``) a reducer that pickles such a model as a reference to the module attribute, and
any other model as its function, DAG and auxiliary sites.
"""

from __future__ import annotations

import copyreg
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import ArgumentTypeError, InvalidArgumentError, warn
from .graph import CausalGraph
from .inference_data import posterior_to_inference_data
from .model import CausalModel
from .version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from os import PathLike

    from .posterior import CausalPosterior

__all__ = ["FORMAT", "FORMAT_VERSION", "read_posterior", "save_posterior"]

FORMAT = "causal_pp.posterior"
"""The ``format`` field of a saved posterior's metadata."""
FORMAT_VERSION = 1
"""Bumped when the file layout changes; :func:`read_posterior` refuses newer versions."""


# --- JSON with arrays -------------------------------------------------------------------------


def _encode(value: Any, where: str, strict: bool) -> Any:
    """A JSON-able form of ``value``: arrays and tensors tagged with their dtype."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        return {
            "__tensor__": t.tolist(),
            "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape),
        }
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where, strict) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where, strict) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, f"{where}[{k!r}]", strict) for k, v in value.items()}}
    if strict:
        raise ArgumentTypeError(
            f"cannot save {where} of type {type(value).__name__}: only numbers, strings, tensors, arrays "
            "and lists/dicts of them are saved. Pickle the posterior instead, or pass plain values."
        )
    return {"__repr__": repr(value)}


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        dtype = getattr(torch, value["dtype"])
        return torch.tensor(value["__tensor__"], dtype=dtype).reshape(value["shape"])
    if "__ndarray__" in value:
        return np.array(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v) for k, v in value["__dict__"].items()}
    if "__repr__" in value:
        return value["__repr__"]
    return {k: _decode(v) for k, v in value.items()}


# --- save / load ------------------------------------------------------------------------------


def _graph_meta(g: CausalGraph) -> dict[str, Any]:
    return {"edges": [list(e) for e in g.edges], "latent": list(g.latent), "nodes": list(g.nodes)}


def save_posterior(post: CausalPosterior, path: str | PathLike[str]) -> str:
    """Write ``post`` to ``path`` (NetCDF; see the module docstring). Returns the path as a string.

    :meth:`CausalPosterior.save <causal_pp.CausalPosterior.save>` calls this.

    Examples
    --------
    >>> import pathlib, tempfile, pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, CausalPosterior, causal_model, units
    >>> @causal_model(CausalGraph.parse("X"))
    ... def m(n):
    ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
    ...     with units(n):
    ...         pyro.sample("X", dist.Normal(b, 1.0))
    >>> p = CausalPosterior(model=m, samples={"b": torch.arange(4.0)}, data={"X": torch.zeros(2)},
    ...                     diagnostics={}, method="given", seed=0)
    >>> path = p.save(pathlib.Path(tempfile.mkdtemp()) / "fit.nc")
    >>> CausalPosterior.load(path, m).samples["b"].tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    import xarray as xr

    path = Path(path)
    if path.is_dir():
        raise InvalidArgumentError(f"{str(path)!r} is a directory; save() writes one file (e.g. 'fit.nc').")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "causal_pp_version": __version__,
        "method": post.method,
        "seed": int(post.seed),
        "num_chains": int(post.num_chains),
        "device": str(post.device),
        "model": post.model.name,
        "graph": _graph_meta(post.graph),
        "auxiliary": sorted(post.model.auxiliary),
        "globals": list(post.samples),
        "unit_latents": list(post.unit_samples),
        "model_args": _encode(tuple(post.model_args), "model_args", strict=True),
        "model_kwargs": _encode(dict(post.model_kwargs), "model_kwargs", strict=True),
        "diagnostics": _encode(dict(post.diagnostics), "diagnostics", strict=False),
    }
    idata = posterior_to_inference_data(post, log_likelihood=False, unit_latents=True)
    idata.add_groups({"causal_pp": xr.Dataset({"meta": ((), json.dumps(meta))})}, warn_on_custom_groups=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    idata.to_netcdf(str(path))
    return str(path)


def _flat(values: np.ndarray) -> torch.Tensor:
    """(chain, draw, ...) -> (chain * draw, ...), chains concatenated as the fit stores them."""
    return torch.from_numpy(np.ascontiguousarray(values.reshape(-1, *values.shape[2:])))


def read_posterior(
    path: str | PathLike[str], model: CausalModel, *, device: str | torch.device | None = None
) -> dict[str, Any]:
    """The constructor arguments of the :class:`~causal_pp.CausalPosterior` saved at ``path``.

    ``device`` is where estimates will run (default: where it was fitted, or CPU when that is not
    available). :meth:`CausalPosterior.load <causal_pp.CausalPosterior.load>` calls this.

    Raises
    ------
    InvalidArgumentError
        ``path`` is not a saved causal_pp posterior (or a newer format), or ``model``'s DAG is
        not the saved one.

    Examples
    --------
    See :func:`save_posterior`.
    """
    import arviz as az

    if not isinstance(model, CausalModel):
        raise ArgumentTypeError(f"load() needs the CausalModel that was fitted; got {type(model).__name__}.")
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"no saved posterior at {str(path)!r}.")
    idata = az.from_netcdf(str(path))
    try:
        meta = json.loads(str(idata["causal_pp"]["meta"].values.item()))
    except (KeyError, AttributeError, ValueError, TypeError):
        meta = {}
    if meta.get("format") != FORMAT:
        raise InvalidArgumentError(
            f"{str(path)!r} is not a posterior saved by causal_pp (CausalPosterior.save)."
        )
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise InvalidArgumentError(
            f"{str(path)!r} was saved in format {meta['format_version']} by causal_pp "
            f"{meta['causal_pp_version']}; this causal_pp ({__version__}) reads up to {FORMAT_VERSION}. Upgrade."
        )
    if meta["causal_pp_version"] != __version__:
        warn(
            f"causal_pp: {str(path)!r} was saved by causal_pp {meta['causal_pp_version']}; this is {__version__}."
        )
    g = meta["graph"]
    saved = CausalGraph([tuple(e) for e in g["edges"]], latent=g["latent"], nodes=g["nodes"])
    if saved != model.graph:
        raise InvalidArgumentError(
            f"the model's DAG {model.graph!r} is not the saved posterior's {saved!r}; load it with the model "
            f"that was fitted ({meta['model']!r})."
        )
    post = idata.posterior
    samples = {k: _flat(post[k].values) for k in meta["globals"]}
    unit = {k: _flat(post[k].values) for k in meta["unit_latents"]}
    obs = idata.observed_data if "observed_data" in idata.groups() else {}
    data = {k: torch.from_numpy(np.ascontiguousarray(obs[k].values)) for k in obs}
    if device is None:
        device = meta["device"]
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            device = "cpu"
    return {
        "model": model,
        "samples": samples,
        "unit_samples": unit,
        "data": data,
        "diagnostics": _decode(meta["diagnostics"]),
        "method": meta["method"],
        "seed": int(meta["seed"]),
        "num_chains": int(meta["num_chains"]),
        "model_args": tuple(_decode(meta["model_args"])),
        "model_kwargs": _decode(meta["model_kwargs"]),
        "device": device,
    }


# --- pickling models --------------------------------------------------------------------------


def _reduce_model(model: CausalModel) -> str | tuple[Any, ...]:
    """Pickle a module-level ``@causal_model`` by reference, any other model by its parts."""
    module = sys.modules.get(getattr(model, "__module__", "") or "")
    obj: Any = module
    for part in str(getattr(model, "__qualname__", "")).split("."):
        obj = getattr(obj, part, None)
    if module is not None and obj is model:
        return str(model.__qualname__)
    return (CausalModel, (model.fn, model.graph, tuple(sorted(model.auxiliary))))


copyreg.pickle(CausalModel, _reduce_model)
