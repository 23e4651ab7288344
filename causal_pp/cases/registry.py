"""The registry of cases: :func:`register`, :func:`get_case`, :func:`registry`."""

from __future__ import annotations

from ..errors import CaseError, DuplicateCaseError, UnknownCaseError
from .case import Case

__all__ = ["get_case", "register", "registry", "unregister"]


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
