"""The registry of cases: :func:`register`, :func:`get_case`, :func:`registry`."""

from __future__ import annotations

import contextlib
import copyreg
import importlib
from typing import Any

from ..errors import CaseError, DuplicateCaseError, UnknownCaseError
from .case import Case

__all__ = ["get_case", "register", "registered_case", "registry", "unregister"]


_REGISTRY: dict[str, Case] = {}


def register(case: Case, *, replace: bool = False) -> Case:
    """Add a case to the registry so :func:`get_case` and the CLI find it.

    Raises
    ------
    DuplicateCaseError
        A case of that name exists and ``replace`` is False.

    Examples
    --------
    >>> import dataclasses
    >>> from causal_pp import cases
    >>> mine = dataclasses.replace(cases.get_case("bow"), name="my_bow")
    >>> cases.register(mine).name
    'my_bow'
    >>> try:
    ...     cases.register(mine)
    ... except cases.DuplicateCaseError as err:
    ...     print(err)
    a case named 'my_bow' is already registered; pass replace=True to overwrite it.
    >>> cases.unregister("my_bow")
    """
    if not isinstance(case, Case):
        raise CaseError(f"register() takes a causal_pp.cases.Case; got {type(case).__name__}.")
    if case.name in _REGISTRY and not replace:
        raise DuplicateCaseError(
            f"a case named {case.name!r} is already registered; pass replace=True to overwrite it."
        )
    _REGISTRY[case.name] = case
    return case


def unregister(name: str) -> None:
    """Remove a case from the registry (raises :class:`UnknownCaseError` if absent)."""
    get_case(name)
    del _REGISTRY[name]


def registry() -> dict[str, Case]:
    """All registered cases, ``{name: Case}``, built-in ones first in a fixed order (a copy)."""
    return dict(_REGISTRY)


def get_case(name: str) -> Case:
    """The registered case called ``name``.

    Raises
    ------
    UnknownCaseError
        No such case; the message lists the registered names. It is a ``KeyError`` too.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> get_case("napkin").graph.latent
    ('U_WY', 'U_XW')
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownCaseError(
            f"no case named {name!r}; available cases: {', '.join(_REGISTRY) or '(none)'}. "
            "Add your own with causal_pp.cases.register(Case(...))."
        ) from None


def registered_case(name: str, module: str | None = None) -> Case:
    """The registered case ``name``, for unpickling: a registered case pickles as its name.

    ``module`` is the module of the case's model: where ``name`` is not registered in this
    process (a worker that has not imported the user's package yet), importing it registers the
    case if the package does so at import time.

    Raises
    ------
    UnknownCaseError
        This process has no such case even after importing ``module``; the message says how to
        make it reach workers.

    Examples
    --------
    >>> import pickle
    >>> from causal_pp.cases import get_case
    >>> pickle.loads(pickle.dumps(get_case("frontdoor"))) is get_case("frontdoor")
    True
    """
    if name not in _REGISTRY and module:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    if name not in _REGISTRY:
        raise UnknownCaseError(
            f"case {name!r} is registered in the process that sent it but not in this one (a worker "
            "process). Register it when its module is imported (e.g. in your package's __init__), or "
            "run it by import path (causal-pp converge --model mypkg.models:my_case)."
        )
    return _REGISTRY[name]


def _pickle_case(case: Case) -> Any:
    # A registered case whose model lives in an importable module travels to worker processes
    # by name (built-in simulators are lambdas, which plain pickle cannot carry); the worker
    # imports that module if it lacks the case. Any other case is pickled by value.
    module = getattr(case.fn, "__module__", None)
    if _REGISTRY.get(case.name) is case and module and module != "__main__":
        return registered_case, (case.name, module)
    return case.__reduce_ex__(2)


copyreg.pickle(Case, _pickle_case)
