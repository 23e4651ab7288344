"""The base of every causal query, and the checks every query's values go through.

A query says *what* is asked, not how it is computed. Every query class is a small frozen
dataclass deriving from :class:`Query`; it states the roles its variables play once, in
:meth:`Query.roles`, and inherits from it the role properties (``outcomes``, ``treatments``,
``conditions``, ``evidence``, ``interventions``) and the check against a graph
(:meth:`Query.validate`). The functions below turn user input (names, values, mappings) into
the normalised tuples the dataclasses hold, with one error message per kind of mistake.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import LatentVariableQueryError, OverlappingQueryError, QueryError, UnknownVariableError

if TYPE_CHECKING:  # pragma: no cover
    from typing import Self

    from ..graph import CausalGraph

__all__ = ["Query", "Roles", "query_text"]


@dataclass(frozen=True)
class Roles:
    """The roles the variables of a query play.

    Attributes
    ----------
    outcomes
        Variables asked about.
    treatments
        Variables set by intervention (in any world or arm of the query).
    evidence
        ``(name, value)`` pairs observed or conditioned on (``value`` None where a query was
        given names only, which is enough for identification).
    do
        ``(name, value)`` pairs of the single intervention of a one-world query; None for
        queries that contrast several interventions (an ATE, an ETT).
    labels
        How the three roles are named in messages: (outcome, treatment, evidence) labels.
    """

    outcomes: tuple[str, ...]
    treatments: tuple[str, ...]
    evidence: tuple[tuple[str, float | None], ...] = ()
    do: tuple[tuple[str, float], ...] | None = None
    labels: tuple[str, str, str] = ("outcome", "intervention target", "conditioning variable")


class Query:
    """Base class of causal queries.

    A subclass implements :meth:`roles`; the role properties and :meth:`validate` follow from it.

    Examples
    --------
    >>> from causal_pp import ATE, Interventional
    >>> q = Interventional("Y", do={"X": 1.0}, given={"Z": 0.5})
    >>> isinstance(q, Query), q.outcomes, q.treatments, q.conditions, q.evidence
    (True, ('Y',), ('X',), ('Z',), {'Z': 0.5})
    >>> ATE("X", "Y").treatments
    ('X',)
    """

    __slots__ = ()

    #: ``"interventional"`` (one or more worlds under intervention, no factual evidence) or
    #: ``"counterfactual"`` (units seen in the actual world, asked about in another).
    kind: ClassVar[str] = ""
    #: How a refusal to ask about a latent variable explains itself.
    latent_note: ClassVar[str] = "its effect cannot be identified from observed data"

    def roles(self) -> Roles:
        """The roles of the query's variables."""
        raise NotImplementedError  # pragma: no cover

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Names of the variables asked about."""
        return self.roles().outcomes

    @property
    def treatments(self) -> tuple[str, ...]:
        """Names of the intervened variables."""
        return self.roles().treatments

    @property
    def conditions(self) -> tuple[str, ...]:
        """Names of the variables conditioned on (observed)."""
        return tuple(k for k, _ in self.roles().evidence)

    @property
    def evidence(self) -> dict[str, float | None]:
        """Observed/conditioning variables and their values (None where only names were given)."""
        return dict(self.roles().evidence)

    @property
    def interventions(self) -> dict[str, float]:
        """The intervention ``{name: value}`` of a one-world query.

        Raises
        ------
        QueryError
            The query contrasts several interventions (an ATE, an ETT): see its arms.
        """
        do = self.roles().do
        if do is None:
            raise QueryError(
                f"{self} contrasts several interventions; it has no single `interventions` (see its arms)."
            )
        return dict(do)

    def validate(self, graph: CausalGraph) -> Self:
        """Check the query against ``graph``; returns the query so calls can chain.

        Raises
        ------
        UnknownVariableError
            A name is not a node of the graph.
        LatentVariableQueryError
            The query intervenes on, conditions on or asks about a latent variable.
        """
        r = self.roles()
        out_label, do_label, ev_label = r.labels
        for role, names, verb in (
            (out_label, r.outcomes, "ask about"),
            (do_label, r.treatments, "intervene on"),
            (ev_label, tuple(k for k, _ in r.evidence), "condition on"),
        ):
            for n in names:
                if n not in graph:
                    raise UnknownVariableError(
                        f"{role} {n!r} of {self} is not a node of the graph; nodes are {list(graph.nodes)}."
                    )
                if graph.is_latent(n):
                    raise LatentVariableQueryError(
                        f"{self} would {verb} {n!r}, which is latent (never observed): {self.latent_note}. "
                        "Ask about an observed variable, or mark it observed if you have measured it."
                    )
        return self


# --- normalising user input ----------------------------------------------------------------


def variable_name(value: Any, role: str) -> str:
    """A non-empty string naming a variable.

    Examples
    --------
    >>> variable_name("Y", "outcome")
    'Y'
    """
    if not isinstance(value, str) or not value:
        raise QueryError(f"{role} must be a non-empty variable name; got {value!r}.")
    return value


def variable_names(value: str | Iterable[str], role: str) -> tuple[str, ...]:
    """One name or several, each a non-empty string, none twice.

    Examples
    --------
    >>> variable_names(["Y1", "Y2"], "outcome")
    ('Y1', 'Y2')
    """
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


def single_name(value: Any, role: str) -> str:
    """Exactly one variable name (an ATE's treatment and outcome)."""
    names = variable_names(value, role)
    if len(names) != 1:
        raise QueryError(
            f"an ATE has exactly one {role}; got {list(names)}. Use Interventional for joint queries."
        )
    return names[0]


def scalar(value: Any, where: str) -> float:
    """Intervention/evidence values are finite real numbers; 1-element tensors/arrays are unwrapped.

    Examples
    --------
    >>> scalar(1, "do['X']")
    1.0
    """
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


def assignments(
    value: Mapping[str, Any] | None, role: str, *, allow_none: bool = False
) -> tuple[tuple[str, float | None], ...]:
    """``{name: value}`` as sorted ``(name, float)`` pairs (None values kept if ``allow_none``).

    Examples
    --------
    >>> assignments({"X": 1, "W": 0.5}, "do")
    (('W', 0.5), ('X', 1.0))
    """
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise QueryError(f"{role} must be a mapping {{name: value}}; got {value!r}.")
    out: list[tuple[str, float | None]] = []
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise QueryError(f"{role} keys must be variable names; got {k!r}.")
        out.append((k, None if (v is None and allow_none) else scalar(v, f"{role}[{k!r}]")))
    return tuple(sorted(out))


def given_values(
    value: Mapping[str, Any] | Iterable[str] | str | None,
) -> tuple[tuple[str, float | None], ...]:
    """``given`` is names (for identification) or name -> observed value (for estimation).

    Examples
    --------
    >>> given_values(["Z"]), given_values({"Z": 0.5})
    ((('Z', None),), (('Z', 0.5),))
    """
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return assignments(value, "given", allow_none=True)
    return tuple(sorted((n, None) for n in variable_names(value, "given")))


def check_roles(outcome: Iterable[str], do: Iterable[str], given: Iterable[str]) -> None:
    """A variable plays one role in a query."""
    outcome, do, given = set(outcome), set(do), set(given)
    for a, b, what in (
        (outcome, do, "both an outcome and intervened on"),
        (outcome, given, "both an outcome and conditioned on"),
        (do, given, "both intervened on and conditioned on"),
    ):
        both = sorted(a & b)
        if both:
            raise OverlappingQueryError(
                f"{both} is {what}; a variable can play one role in a query. "
                "Ask about a different outcome or drop it from one of the roles."
            )


def binary_pair(treated: Any, control: Any) -> tuple[float, float]:
    """Two different treatment values."""
    t, c = scalar(treated, "treated"), scalar(control, "control")
    if t == c:
        raise QueryError(f"treated and control are both {t:g}; the query contrasts two different values.")
    return t, c


def binary_outcome(value: Any) -> float:
    """An outcome value of 0 or 1 (probabilities of causation)."""
    y = scalar(value, "outcome_value")
    if y not in (0.0, 1.0):
        raise QueryError(
            f"outcome_value must be 0 or 1 (probabilities of causation are for a binary outcome coded "
            f"0/1; the complementary event is outcome = 1 - outcome_value); got {y:g}."
        )
    return y


# --- text -----------------------------------------------------------------------------------


def value_text(v: float | None) -> str:
    """A value as text; ``?`` for an unknown one."""
    return "?" if v is None else f"{v:g}"


def world_text(world: Iterable[tuple[str, Any]]) -> str:
    """``X=1, Z=0`` for a world's interventions."""
    return ", ".join(f"{k}={value_text(v) if not isinstance(v, str) else v}" for k, v in world)


def cf_text(var: str, world: Iterable[tuple[str, Any]]) -> str:
    """``Y_{X=0}``: a variable in the world of an intervention (plain name in the actual world)."""
    w = world_text(world)
    return f"{var}_{{{w}}}" if w else var


def generic_value(name: str) -> str:
    """Display symbol of an outcome's free value: ``Y`` -> ``y``."""
    low = name.lower()
    return low if low != name else f"{name}'"


def names_text(names: Iterable[str]) -> str:
    """``{A, B}``: a set of names, sorted."""
    return "{" + ", ".join(sorted(names)) + "}"


def query_text(x: Iterable[str], y: Iterable[str], z: Iterable[str] = ()) -> str:
    """``P(Y | do(X), Z)`` from the names of treatments, outcomes and conditions.

    Examples
    --------
    >>> query_text(["X"], ["Y"], ["Z"])
    'P(Y | do(X), Z)'
    """
    z = sorted(z)
    return f"P({', '.join(sorted(y))} | do({', '.join(sorted(x))}){', ' + ', '.join(z) if z else ''})"
