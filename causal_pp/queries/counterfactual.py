"""Counterfactual queries: about units in a world they did not live in, given what was seen.

* :class:`Counterfactual` -- P(outcome in the world ``do`` | ``factual`` observed), e.g.
  P(Y_{X=0}=y | X=1): what Y would have been under X=0 for units that had X=1;
* :class:`ETT` -- the effect of treatment on the treated, E[Y_{x} - Y_{x'} | X=x];
* :class:`PN`, :class:`PS`, :class:`PNS` -- probabilities of necessity, sufficiency, and
  necessity-and-sufficiency (Tian & Pearl 2000), for a binary treatment and outcome.

They are decided by ID*/IDC* (:func:`causal_pp.identify`) and estimated in twin worlds with
shared noise (:meth:`causal_pp.CausalPosterior.estimate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import EmptyInterventionError, QueryError
from .base import (
    Query,
    Roles,
    assignments,
    binary_outcome,
    binary_pair,
    cf_text,
    generic_value,
    variable_name,
)

__all__ = ["ETT", "PN", "PNS", "PS", "CausationQuery", "Counterfactual", "CounterfactualQuery"]

_LABELS = ("outcome", "intervention target", "factual variable")


@dataclass(frozen=True)
class Counterfactual(Query):
    """P(outcome in the world where ``do`` holds | ``factual`` observed in the actual world).

    Parameters
    ----------
    outcome
        A name, a list of names (a joint outcome: its distribution is asked), or
        ``{name: value}`` (the probability of that event). A value of None leaves that outcome
        free. An outcome may be intervened on itself: P(X_{X=1}=0) is 0 by effectiveness.
    do
        ``{name: value}``: the hypothetical intervention defining the counterfactual world.
    factual
        ``{name: value}``: what was observed about the same units in the actual world. It may
        mention the outcome and the intervened variables (e.g. P(Y_{X=0}=y | X=1)).

    Examples
    --------
    >>> from causal_pp import Counterfactual
    >>> print(Counterfactual("Y", do={"X": 0}, factual={"X": 1}))
    P(Y_{X=0}=y | X=1)
    >>> print(Counterfactual({"Y": 0}, do={"X": 0}, factual={"X": 1, "Y": 1}))
    P(Y_{X=0}=0 | X=1, Y=1)
    """

    outcome: tuple[tuple[str, float | None], ...]
    do: tuple[tuple[str, float], ...]
    factual: tuple[tuple[str, float], ...] = field(default=())

    kind: ClassVar[str] = "counterfactual"
    latent_note: ClassVar[str] = "a counterfactual about it cannot be identified from observed data"

    def __init__(
        self,
        outcome: str | Iterable[str] | Mapping[str, Any],
        do: Mapping[str, Any],
        factual: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(outcome, str):
            outcome_ = ((variable_name(outcome, "outcome"), None),)
        elif isinstance(outcome, Mapping):
            outcome_ = assignments(outcome, "outcome", allow_none=True)
        else:
            try:
                names = [variable_name(n, "outcome") for n in outcome]
            except TypeError:
                raise QueryError(
                    f"outcome must be a name, names or {{name: value}}; got {outcome!r}."
                ) from None
            if len(set(names)) != len(names):
                raise QueryError(f"outcome lists a variable twice: {names}.")
            outcome_ = tuple(sorted((n, None) for n in names))
        if not outcome_:
            raise QueryError("outcome is empty; name the variable(s) whose counterfactual value you want.")
        do_ = assignments(do, "do")
        if not do_:
            raise EmptyInterventionError(
                "do is empty; a counterfactual needs a hypothetical intervention, e.g. do={'X': 0}. "
                "Without one, P(outcome | factual) is an observational conditional."
            )
        if not isinstance(factual, (Mapping, type(None))):
            raise QueryError(
                f"factual must be a mapping {{name: observed value}}; got {factual!r}. Counterfactual "
                "evidence needs values: the answer depends on what was observed."
            )
        factual_ = assignments(factual, "factual")
        object.__setattr__(self, "outcome", outcome_)
        object.__setattr__(self, "do", do_)
        object.__setattr__(self, "factual", factual_)

    def roles(self) -> Roles:
        return Roles(
            tuple(k for k, _ in self.outcome),
            tuple(k for k, _ in self.do),
            self.factual,  # type: ignore[arg-type]
            self.do,
            _LABELS,
        )

    def __repr__(self) -> str:
        out: Any = dict(self.outcome)
        if all(v is None for v in out.values()):
            out = self.outcomes[0] if len(out) == 1 else list(out)
        s = f"Counterfactual(outcome={out!r}, do={dict(self.do)!r}"
        return s + (f", factual={dict(self.factual)!r})" if self.factual else ")")

    def __str__(self) -> str:
        world = self.do
        parts = []
        for k, v in self.outcome:
            value = generic_value(k) if v is None else f"{v:g}"
            parts.append(f"{cf_text(k, world)}={value}")
        given = ", ".join(f"{k}={v:g}" for k, v in self.factual)
        return f"P({', '.join(parts)}{' | ' + given if given else ''})"


@dataclass(frozen=True)
class ETT(Query):
    """The effect of treatment on the treated, E[Y_{X=treated} - Y_{X=control} | X=treated].

    Its first term is E[Y | X=treated] by consistency; the second, built on
    P(Y_{X=control} | X=treated), is the one that needs identification.

    Examples
    --------
    >>> from causal_pp import ETT
    >>> q = ETT("X", "Y")
    >>> print(q)
    E[Y_{X=1} - Y_{X=0} | X=1]
    >>> [str(t) for t in q.terms()]
    ['P(Y_{X=1}=y | X=1)', 'P(Y_{X=0}=y | X=1)']
    """

    treatment: str
    outcome: str
    treated: float = 1.0
    control: float = 0.0

    kind: ClassVar[str] = "counterfactual"
    latent_note: ClassVar[str] = Counterfactual.latent_note

    def __init__(self, treatment: str, outcome: str, treated: Any = 1.0, control: Any = 0.0) -> None:
        t, y = variable_name(treatment, "treatment"), variable_name(outcome, "outcome")
        if t == y:
            raise QueryError(f"{t!r} is both the treatment and the outcome of the ETT.")
        tr, co = binary_pair(treated, control)
        object.__setattr__(self, "treatment", t)
        object.__setattr__(self, "outcome", y)
        object.__setattr__(self, "treated", tr)
        object.__setattr__(self, "control", co)

    def roles(self) -> Roles:
        return Roles((self.outcome,), (self.treatment,), ((self.treatment, self.treated),), None, _LABELS)

    def terms(self) -> tuple[Counterfactual, Counterfactual]:
        """(P(Y_{treated} | X=treated), P(Y_{control} | X=treated)): the two distributions contrasted."""
        seen = {self.treatment: self.treated}
        return (
            Counterfactual(self.outcome, {self.treatment: self.treated}, seen),
            Counterfactual(self.outcome, {self.treatment: self.control}, seen),
        )

    def __str__(self) -> str:
        x, y = self.treatment, self.outcome
        return f"E[{y}_{{{x}={self.treated:g}}} - {y}_{{{x}={self.control:g}}} | {x}={self.treated:g}]"


@dataclass(frozen=True)
class CausationQuery(Query):
    """Base of the probabilities of causation :class:`PN`, :class:`PS` and :class:`PNS`.

    Binary treatment (``treated``/``control``) and outcome (``outcome_value`` 0 or 1; its
    complement is ``1 - outcome_value``).
    """

    treatment: str
    outcome: str
    treated: float = 1.0
    control: float = 0.0
    outcome_value: float = 1.0

    kind: ClassVar[str] = "counterfactual"
    latent_note: ClassVar[str] = Counterfactual.latent_note

    def __init__(
        self, treatment: str, outcome: str, treated: Any = 1.0, control: Any = 0.0, outcome_value: Any = 1.0
    ) -> None:
        t, y = variable_name(treatment, "treatment"), variable_name(outcome, "outcome")
        if t == y:
            raise QueryError(f"{t!r} is both the treatment and the outcome.")
        tr, co = binary_pair(treated, control)
        object.__setattr__(self, "treatment", t)
        object.__setattr__(self, "outcome", y)
        object.__setattr__(self, "treated", tr)
        object.__setattr__(self, "control", co)
        object.__setattr__(self, "outcome_value", binary_outcome(outcome_value))

    @property
    def not_outcome_value(self) -> float:
        """The complementary outcome value, ``1 - outcome_value``."""
        return 1.0 - self.outcome_value

    def factual(self) -> tuple[tuple[str, float], ...]:
        """What the query conditions on in the actual world."""
        return ()

    def roles(self) -> Roles:
        return Roles(
            (self.outcome,),
            (self.treatment,),
            self.factual(),
            None,
            ("outcome", "treatment", "factual variable"),
        )


@dataclass(frozen=True, init=False)
class PN(CausationQuery):
    """Probability of necessity, P(Y_{X=control} = y' | X=treated, Y=y), y = ``outcome_value``.

    Among units that were treated and had the outcome, the share that would not have had it
    without treatment. Binary treatment (``treated``/``control``) and outcome (0/1). Not
    identified from P(V) without monotonicity, even in X -> Y with no confounding.

    Examples
    --------
    >>> from causal_pp import PN
    >>> print(PN("X", "Y"))
    PN = P(Y_{X=0}=0 | X=1, Y=1)
    """

    def factual(self) -> tuple[tuple[str, float], ...]:
        return tuple(sorted([(self.treatment, self.treated), (self.outcome, self.outcome_value)]))

    def as_counterfactual(self) -> Counterfactual:
        """The query as a :class:`Counterfactual`."""
        return Counterfactual(
            {self.outcome: self.not_outcome_value},
            {self.treatment: self.control},
            {self.treatment: self.treated, self.outcome: self.outcome_value},
        )

    def __str__(self) -> str:
        return f"PN = {self.as_counterfactual()}"


@dataclass(frozen=True, init=False)
class PS(CausationQuery):
    """Probability of sufficiency, P(Y_{X=treated} = y | X=control, Y=y'), y = ``outcome_value``.

    Among untreated units without the outcome, the share that treatment would have given it.

    Examples
    --------
    >>> from causal_pp import PS
    >>> print(PS("X", "Y"))
    PS = P(Y_{X=1}=1 | X=0, Y=0)
    """

    def factual(self) -> tuple[tuple[str, float], ...]:
        return tuple(sorted([(self.treatment, self.control), (self.outcome, self.not_outcome_value)]))

    def as_counterfactual(self) -> Counterfactual:
        """The query as a :class:`Counterfactual`."""
        return Counterfactual(
            {self.outcome: self.outcome_value},
            {self.treatment: self.treated},
            {self.treatment: self.control, self.outcome: self.not_outcome_value},
        )

    def __str__(self) -> str:
        return f"PS = {self.as_counterfactual()}"


@dataclass(frozen=True, init=False)
class PNS(CausationQuery):
    """Probability of necessity and sufficiency, P(Y_{X=treated} = y, Y_{X=control} = y').

    A joint over two counterfactual worlds: the share of units for which treatment is both
    necessary and sufficient for the outcome y = ``outcome_value``.

    Examples
    --------
    >>> from causal_pp import PNS
    >>> print(PNS("X", "Y"))
    PNS = P(Y_{X=1}=1, Y_{X=0}=0)
    """

    def __str__(self) -> str:
        x, y = self.treatment, self.outcome
        return (
            f"PNS = P({y}_{{{x}={self.treated:g}}}={self.outcome_value:g}, "
            f"{y}_{{{x}={self.control:g}}}={self.not_outcome_value:g})"
        )


CounterfactualQuery = Counterfactual | ETT | PN | PS | PNS
"""Any counterfactual query :func:`causal_pp.identify` accepts."""
