"""Fingerprints of what a study runs: a case's or a model's code and parameters, as one short hash.

A cell computed from one simulator or model must never be reused for another, so its settings key
(:class:`~causal_pp.convergence.keys.Settings`) includes a fingerprint of the code behind it. A
function's fingerprint covers its source (the byte code where the source cannot be read, e.g.
in an interactive session), the values it closes over, its default arguments, and -- followed
recursively -- the module-level functions, classes and plain-data constants of its own module
that it names: editing a helper or a parameter table the simulator reads changes the
fingerprint; editing an unrelated function of the same file does not. Functions of other
modules (numpy, torch, causal_pp itself) are not followed: causal_pp's version is part of the
key already.

Examples
--------
>>> from causal_pp.cases import get_case
>>> case_fingerprint(get_case("frontdoor")) == case_fingerprint(get_case("frontdoor"))
True
>>> case_fingerprint(get_case("frontdoor")) == case_fingerprint(get_case("bow"))
False
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
import textwrap
import types
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidArgumentError
from .keys import canonical, canonical_json

__all__ = ["case_fingerprint", "code_identity", "model_fingerprint", "object_identity"]

_MAX_DEPTH = 6


def _plain(value: Any) -> Any | None:
    """``value`` as canonical data, or None when it has no stable text form."""
    try:
        return canonical(value, "value")
    except (InvalidArgumentError, RecursionError):
        return None


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested functions, lambdas, comprehensions
            names |= _code_names(const)
    return names


def _source(fn: types.FunctionType) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        # No source file (an interactive session): the byte code identifies the function.
        return "bytecode:" + hashlib.sha256(marshal.dumps(fn.__code__)).hexdigest()


def code_identity(fn: Any, *, seen: set[int] | None = None, depth: int = 0) -> Any:
    """What a function's behaviour depends on, as plain data (see the module docstring).

    Parameters
    ----------
    fn
        A function, lambda, bound method or class.

    Returns
    -------
    dict
        Its qualified name and source, and the identities of what it reads.

    Examples
    --------
    >>> def f(x):
    ...     return x + 1
    >>> code_identity(f)["source"]
    'def f(x):\\n    return x + 1\\n'
    """
    seen = set() if seen is None else seen
    if isinstance(fn, types.MethodType):
        return {"method": code_identity(fn.__func__, seen=seen, depth=depth)}
    if inspect.isclass(fn):
        try:
            return {"class": f"{fn.__module__}.{fn.__qualname__}", "source": inspect.getsource(fn)}
        except (OSError, TypeError):
            return {"class": f"{fn.__module__}.{fn.__qualname__}"}
    fn = inspect.unwrap(fn)
    if not isinstance(fn, types.FunctionType):
        return object_identity(fn, seen=seen, depth=depth + 1)
    name = f"{fn.__module__}.{fn.__qualname__}"
    if id(fn) in seen or depth > _MAX_DEPTH:
        return {"ref": name}
    seen.add(id(fn))
    out: dict[str, Any] = {"function": name, "source": _source(fn)}
    reads: dict[str, Any] = {}
    for var in sorted(_code_names(fn.__code__)):
        if var not in fn.__globals__:
            continue
        value = fn.__globals__[var]
        if isinstance(value, types.FunctionType) or inspect.isclass(value):
            if getattr(value, "__module__", None) == fn.__module__:  # helpers of the same module
                reads[var] = code_identity(value, seen=seen, depth=depth + 1)
        elif not isinstance(value, types.ModuleType):
            plain = _plain(value)
            if plain is not None:  # parameter tables and constants
                reads[var] = plain
    if reads:
        out["reads"] = reads
    cells = {}
    for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        cells[var] = _value_identity(value, seen, depth + 1)
    if cells:
        out["closure"] = cells
    if fn.__defaults__:
        out["defaults"] = [_value_identity(v, seen, depth + 1) for v in fn.__defaults__]
    return out


def _value_identity(value: Any, seen: set[int], depth: int) -> Any:
    if callable(value):
        return code_identity(value, seen=seen, depth=depth)
    plain = _plain(value)
    return plain if plain is not None else object_identity(value, seen=seen, depth=depth)


def object_identity(obj: Any, *, seen: set[int] | None = None, depth: int = 0) -> Any:
    """The identity of a simulator or model object: its code, not its run-time state.

    A structural causal model (an object with ``equations``) is described equation by equation;
    a :class:`~causal_pp.CausalModel` (``fn`` and ``graph``) by its program and DAG; a plain
    function by :func:`code_identity`; any other object by its class's source (its mutable
    state, e.g. counters, would change the fingerprint between runs).

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> object_identity(get_case("bow").sampler)["equations"][0]["name"]
    'U'
    """
    seen = set() if seen is None else seen
    if isinstance(obj, (types.FunctionType, types.MethodType)) or inspect.isclass(obj):
        return code_identity(obj, seen=seen, depth=depth)
    equations = getattr(obj, "equations", None)
    if equations is not None and not isinstance(equations, (str, bytes)):
        return {
            "equations": [
                {
                    "name": getattr(eq, "name", None),
                    "parents": list(getattr(eq, "parents", ())),
                    "kind": getattr(eq, "kind", None),
                    "scale": _plain(getattr(eq, "scale", None)),
                    "loc": code_identity(eq.loc, seen=seen, depth=depth + 1)
                    if callable(getattr(eq, "loc", None))
                    else None,
                }
                for eq in equations
            ]
        }
    fn, graph = getattr(obj, "fn", None), getattr(obj, "graph", None)
    if callable(fn) and graph is not None:
        to_string = getattr(graph, "to_string", None)
        return {
            "model": code_identity(fn, seen=seen, depth=depth + 1),
            "graph": to_string() if callable(to_string) else repr(graph),
        }
    return {"class": code_identity(type(obj), seen=seen, depth=depth)}


def _digest(parts: Any) -> str:
    text = canonical_json(canonical(parts, "fingerprint"))
    return hashlib.sha256(b"causal_pp.convergence.identity/1\n" + text.encode()).hexdigest()[:16]


def case_fingerprint(case: Any) -> str:
    """A case's fingerprint: name, graph, parameters, model program and simulator.

    Works for a :class:`~causal_pp.cases.Case` and for any object with ``name``, ``model`` and
    ``simulate`` (a duck-typed case).

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> len(case_fingerprint(get_case("napkin")))
    16
    """
    parts: dict[str, Any] = {"name": str(getattr(case, "name", ""))}
    params = getattr(case, "parameters", None)
    if isinstance(params, Mapping):
        parts["parameters"] = _plain(dict(params))
    if hasattr(case, "fn") and hasattr(case, "sampler"):
        parts["model"] = code_identity(case.fn)
        parts["sampler"] = object_identity(case.sampler)
        parts["graph"] = case.graph.to_string()
    else:
        parts["model"] = object_identity(getattr(case, "model", None))
        parts["simulate"] = code_identity(case.simulate)
    return _digest(parts)


def model_fingerprint(model: Any, simulate: Any, truth: float, truth_samples: Any = None) -> str:
    """A user model's fingerprint: its program and DAG, the simulator, the truth and truth sampler.

    Examples
    --------
    >>> def sim(n, seed=0):
    ...     return None
    >>> from causal_pp.cases import get_case
    >>> m = get_case("frontdoor").model
    >>> model_fingerprint(m, sim, 1.0) == model_fingerprint(m, sim, 2.0)
    False
    """
    parts = {
        "model": object_identity(model),
        "simulate": code_identity(simulate),
        "truth": float(truth),
        "truth_samples": None if truth_samples is None else code_identity(truth_samples),
    }
    return _digest(parts)
