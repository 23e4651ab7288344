"""Interventional queries: what the distribution of an outcome is when variables are set.

* :class:`Interventional` -- P(outcome | do(...), given): the interventional distribution,
  optionally conditional on observed covariates.
* :class:`ATE` -- the average treatment effect E[Y | do(T=treated)] - E[Y | do(T=control)].

A query validates itself on construction (roles must not overlap, ``do`` must not be empty) and
against a graph with :meth:`~causal_pp.queries.Query.validate` (names must be nodes; latent
variables cannot be intervened on, conditioned on or asked about).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import EmptyInterventionError, QueryError
from .base import Query, Roles, assignments, check_roles, given_values, scalar, single_name, variable_names

__all__ = ["ATE", "Interventional"]


@dataclass(frozen=True)
class Interventional(Query):
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

    kind: ClassVar[str] = "interventional"

    def __init__(
        self,
        outcome: str | Iterable[str],
        do: Mapping[str, Any],
        given: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> None:
        outcomes = variable_names(outcome, "outcome")
        if not outcomes:
            raise QueryError("outcome is empty; name the variable(s) whose distribution you want.")
        do_ = assignments(do, "do")
        if not do_:
            raise EmptyInterventionError(
                "do is empty; an interventional query needs at least one intervention, e.g. "
                "do={'X': 1.0}. For the observational distribution no causal query is needed."
            )
        given_ = given_values(given)
        check_roles(outcomes, (k for k, _ in do_), (k for k, _ in given_))
        object.__setattr__(self, "outcome", outcomes)
        object.__setattr__(self, "do", do_)
        object.__setattr__(self, "given", given_)

    def roles(self) -> Roles:
        return Roles(self.outcome, tuple(k for k, _ in self.do), self.given, self.do)  # type: ignore[arg-type]

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
class ATE(Query):
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

    kind: ClassVar[str] = "interventional"

    def __init__(
        self,
        treatment: str,
        outcome: str,
        treated: Any = 1.0,
        control: Any = 0.0,
        given: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> None:
        t, y = single_name(treatment, "treatment"), single_name(outcome, "outcome")
        treated_, control_ = scalar(treated, "treated"), scalar(control, "control")
        if treated_ == control_:
            raise QueryError(
                f"treated and control are both {treated_:g}; an ATE compares two different values."
            )
        given_ = given_values(given)
        check_roles((y,), (t,), (k for k, _ in given_))
        object.__setattr__(self, "treatment", t)
        object.__setattr__(self, "outcome", y)
        object.__setattr__(self, "treated", treated_)
        object.__setattr__(self, "control", control_)
        object.__setattr__(self, "given", given_)

    def roles(self) -> Roles:
        return Roles((self.outcome,), (self.treatment,), self.given)

    def arms(self) -> tuple[Interventional, Interventional]:
        """The two interventional queries (treated, control) the ATE contrasts."""
        given = dict(self.given) or None
        return (
            Interventional(self.outcome, {self.treatment: self.treated}, given),
            Interventional(self.outcome, {self.treatment: self.control}, given),
        )

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
