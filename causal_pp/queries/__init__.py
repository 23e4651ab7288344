"""Causal queries: small frozen dataclasses that say *what* is asked, not how it is computed.

* :class:`Interventional` -- P(outcome | do(...), given): the interventional distribution,
  optionally conditional on observed covariates.
* :class:`ATE` -- the average treatment effect E[Y | do(T=treated)] - E[Y | do(T=control)].

A query validates itself on construction (roles must not overlap, ``do`` must not be empty) and
against a graph with :meth:`validate` (names must be nodes; latent variables cannot be
intervened on, conditioned on or asked about).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import (
    EmptyInterventionError,
    LatentVariableQueryError,
    OverlappingQueryError,
    QueryError,
    UnknownVariableError,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..graph import CausalGraph

__all__ = ["ATE", "Interventional", "Query"]


def _names(value: str | Iterable[str], role: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise QueryError(f"{role} must be a variable name or a list of names; got {value!r}.") from None
    for n in names:
        if not isinstance(n, str) or not n:
            raise QueryError(f"{role} must hold non-empty variable names; got {n!r}.")
    if len(set(names)) != len(names):
        raise QueryError(f"{role} lists a variable twice: {list(names)}.")
    return names


def _single(value: Any, role: str) -> str:
    names = _names(value, role)
    if len(names) != 1:
        raise QueryError(
            f"an ATE has exactly one {role}; got {list(names)}. Use Interventional for joint queries."
        )
    return names[0]


def _scalar(value: Any, where: str) -> float:
    """Intervention/evidence values are scalars; 1-element tensors/arrays are unwrapped."""
    # A torch tensor (numel) or numpy array/scalar (size) holding one value is unwrapped.
    one_torch = hasattr(value, "numel") and value.numel() == 1
    one_numpy = hasattr(value, "size") and hasattr(value, "item") and value.size == 1
    if one_torch or one_numpy:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise QueryError(
            f"{where} must be a real number (a value every unit is set to / observed at); got {value!r}."
        )
    if not math.isfinite(value):
        raise QueryError(f"{where} must be a finite number; got {value!r}.")
    return float(value)


def _assignments(value: Mapping[str, Any] | None, role: str) -> tuple[tuple[str, float], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise QueryError(f"{role} must be a mapping {{name: value}}; got {value!r}.")
    out = []
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise QueryError(f"{role} keys must be variable names; got {k!r}.")
        out.append((k, _scalar(v, f"{role}[{k!r}]")))
    return tuple(sorted(out))


def _given(value: Mapping[str, Any] | Iterable[str] | str | None) -> tuple[tuple[str, float | None], ...]:
    """``given`` is names (for identification) or name -> observed value (for estimation)."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str) or not k:
                raise QueryError(f"given keys must be variable names; got {k!r}.")
        return tuple(
            sorted((k, None if v is None else _scalar(v, f"given[{k!r}]")) for k, v in value.items())
        )
    return tuple(sorted((n, None) for n in _names(value, "given")))


def _check_roles(outcome: tuple[str, ...], do: Iterable[str], given: Iterable[str]) -> None:
    do, given = set(do), set(given)
    for a, b, what in (
        (outcome, do, "both an outcome and intervened on"),
        (outcome, given, "both an outcome and conditioned on"),
        (do, given, "both intervened on and conditioned on"),
    ):
        both = sorted(set(a) & set(b))
        if both:
            raise OverlappingQueryError(
                f"{both} is {what}; a variable can play one role in a query. "
                "Ask about a different outcome or drop it from one of the roles."
            )


def _validate_names(query: Any, graph: CausalGraph) -> None:
    roles = (
        ("outcome", query.outcomes, "ask about"),
        ("intervention target", query.treatments, "intervene on"),
        ("conditioning variable", query.conditions, "condition on"),
    )
    for role, names, verb in roles:
        for n in names:
            if n not in graph:
                raise UnknownVariableError(
                    f"{role} {n!r} of {query} is not a node of the graph; nodes are {list(graph.nodes)}."
                )
            if graph.is_latent(n):
                raise LatentVariableQueryError(
                    f"{query} would {verb} {n!r}, which is latent (never observed): its effect "
                    "cannot be identified from observed data. Ask about an observed variable, "
                    "or mark it observed if you have measured it."
                )


@dataclass(frozen=True)
class Interventional:
    """The interventional distribution P(outcome | do(do), given).

    Parameters
    ----------
    outcome
        One variable name or several (a joint outcome).
    do
        ``{name: value}``: the variables set by intervention and their values.
    given
        Optional observed covariates to condition on, *after* intervening: names (enough for
        identification) or ``{name: value}`` (needed for estimation).

    Examples
    --------
    >>> from causal_pp import Interventional
    >>> q = Interventional("Y", do={"X": 1.0})
    >>> q
    Interventional(outcome='Y', do={'X': 1.0})
    >>> Interventional(["Y1", "Y2"], do={"X": 0}, given=["Z"]).conditions
    ('Z',)
    """

    outcome: tuple[str, ...]
    do: tuple[tuple[str, float], ...]
    given: tuple[tuple[str, float | None], ...] = field(default=())

    def __init__(
        self,
        outcome: str | Iterable[str],
        do: Mapping[str, Any],
        given: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> None:
        outcomes = _names(outcome, "outcome")
        if not outcomes:
            raise QueryError("outcome is empty; name the variable(s) whose distribution you want.")
        do_ = _assignments(do, "do")
        if not do_:
            raise EmptyInterventionError(
                "do is empty; an interventional query needs at least one intervention, e.g. "
                "do={'X': 1.0}. For the observational distribution no causal query is needed."
            )
        given_ = _given(given)
        _check_roles(outcomes, (k for k, _ in do_), (k for k, _ in given_))
        object.__setattr__(self, "outcome", outcomes)
        object.__setattr__(self, "do", do_)
        object.__setattr__(self, "given", given_)

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Outcome names."""
        return self.outcome

    @property
    def treatments(self) -> tuple[str, ...]:
        """Intervened variable names."""
        return tuple(k for k, _ in self.do)

    @property
    def conditions(self) -> tuple[str, ...]:
        """Names of the conditioning variables."""
        return tuple(k for k, _ in self.given)

    @property
    def interventions(self) -> dict[str, float]:
        """``do`` as a dict."""
        return dict(self.do)

    @property
    def evidence(self) -> dict[str, float | None]:
        """``given`` as a dict (values are None where only names were given)."""
        return dict(self.given)

    def validate(self, graph: CausalGraph) -> Interventional:
        """Check the query against ``graph``; returns the query so calls can chain.

        Raises
        ------
        UnknownVariableError
            A name is not a node of the graph.
        LatentVariableQueryError
            The query intervenes on, conditions on or asks about a latent variable.
        """
        _validate_names(self, graph)
        return self

    def __repr__(self) -> str:
        out = self.outcome[0] if len(self.outcome) == 1 else list(self.outcome)
        s = f"Interventional(outcome={out!r}, do={dict(self.do)!r}"
        if self.given:
            g = self.evidence
            s += f", given={list(g) if all(v is None for v in g.values()) else g!r}"
        return s + ")"

    def __str__(self) -> str:
        do = ", ".join(f"{k}={v:g}" for k, v in self.do)
        given = ", ".join(k if v is None else f"{k}={v:g}" for k, v in self.given)
        return f"P({', '.join(self.outcome)} | do({do}){', ' + given if given else ''})"


@dataclass(frozen=True)
class ATE:
    """The average treatment effect E[outcome | do(treatment=treated)] - E[outcome | do(treatment=control)].

    Parameters
    ----------
    treatment, outcome
        Variable names.
    treated, control
        The two values the treatment is set to (default 1 and 0).
    given
        Optional covariates (names or ``{name: value}``): a conditional ATE.

    Examples
    --------
    >>> from causal_pp import ATE
    >>> q = ATE("X", "Y", treated=1.0, control=0.0)
    >>> [str(a) for a in q.arms()]
    ['P(Y | do(X=1))', 'P(Y | do(X=0))']
    """

    treatment: str
    outcome: str
    treated: float = 1.0
    control: float = 0.0
    given: tuple[tuple[str, float | None], ...] = field(default=())

    def __init__(
        self,
        treatment: str,
        outcome: str,
        treated: Any = 1.0,
        control: Any = 0.0,
        given: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> None:
        t, y = _single(treatment, "treatment"), _single(outcome, "outcome")
        treated_, control_ = _scalar(treated, "treated"), _scalar(control, "control")
        if treated_ == control_:
            raise QueryError(
                f"treated and control are both {treated_:g}; an ATE compares two different values."
            )
        given_ = _given(given)
        _check_roles((y,), (t,), (k for k, _ in given_))
        object.__setattr__(self, "treatment", t)
        object.__setattr__(self, "outcome", y)
        object.__setattr__(self, "treated", treated_)
        object.__setattr__(self, "control", control_)
        object.__setattr__(self, "given", given_)

    @property
    def outcomes(self) -> tuple[str, ...]:
        return (self.outcome,)

    @property
    def treatments(self) -> tuple[str, ...]:
        return (self.treatment,)

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.given)

    def arms(self) -> tuple[Interventional, Interventional]:
        """The two interventional queries (treated, control) the ATE contrasts."""
        given = dict(self.given) or None
        return (
            Interventional(self.outcome, {self.treatment: self.treated}, given),
            Interventional(self.outcome, {self.treatment: self.control}, given),
        )

    def validate(self, graph: CausalGraph) -> ATE:
        """Check the query against ``graph`` (see :meth:`Interventional.validate`)."""
        _validate_names(self, graph)
        return self

    def __repr__(self) -> str:
        s = (
            f"ATE(treatment={self.treatment!r}, outcome={self.outcome!r}, "
            f"treated={self.treated!r}, control={self.control!r}"
        )
        if self.given:
            g = dict(self.given)
            s += f", given={list(g) if all(v is None for v in g.values()) else g!r}"
        return s + ")"

    def __str__(self) -> str:
        g = ", ".join(k if v is None else f"{k}={v:g}" for k, v in self.given)
        cond = f", {g}" if g else ""
        return (
            f"E[{self.outcome} | do({self.treatment}={self.treated:g}){cond}] - "
            f"E[{self.outcome} | do({self.treatment}={self.control:g}){cond}]"
        )


Query = Interventional | ATE
"""Any query :func:`causal_pp.identify` accepts."""
