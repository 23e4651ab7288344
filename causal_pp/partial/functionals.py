"""Queries as (fractional) linear functionals of the response-type distribution q.

With roots r (distribution P(r), from the data) and joint response types t of the group
(distribution q), every quantity the bounds need has the form

    sum_r P(r) sum_t q(t) num[r, t]  /  sum_r P(r) sum_t q(t) den[r, t]

(no denominator for unconditional queries): :class:`Functional`. A :class:`Target` is a
weighted sum of functionals -- one when the program is exact, several when a contrast's arms
have different denominators and are bounded one by one. Experimental probabilities
P(Y = y | do(X = x)) enter as extra equality constraints (:func:`experimental_equalities`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import QueryError

if TYPE_CHECKING:  # pragma: no cover
    from .canonical import CanonicalModel

__all__ = ["Arm", "Contrast", "Functional", "Target", "experimental_equalities", "outcome_weights"]


@dataclass(frozen=True, eq=False)
class Functional:
    """``num . q / den . q`` averaged over the roots (``den`` None: no denominator).

    Both arrays have shape ``(num_root_configs, num_types)``.

    Examples
    --------
    >>> f = Functional(num=np.array([[0.0, 1.0]]))
    >>> f.coefficients(np.array([[1.0]]))[0].tolist()
    [[0.0, 1.0]]
    """

    num: np.ndarray
    den: np.ndarray | None = None

    def coefficients(self, p_roots: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-draw objective rows ``(B, num_types)`` for root distributions ``p_roots`` ``(B, n_r)``."""
        return p_roots @ self.num, None if self.den is None else p_roots @ self.den


@dataclass(frozen=True, eq=False)
class Target:
    """The bounded quantity: ``sum_i weight_i * functional_i``.

    ``exact`` is False when the terms are bounded separately (the sum of their bounds is valid
    but may be loose); ``note`` then says why.

    Examples
    --------
    >>> t = Target(((1.0, Functional(np.array([[0.0, 1.0]]))),))
    >>> t.exact, len(t.terms)
    (True, 1)
    """

    terms: tuple[tuple[float, Functional], ...]
    exact: bool = True
    note: str = ""


def outcome_weights(model: CanonicalModel, outcome: str, outcome_value: int | None) -> np.ndarray:
    """h(y) over the outcome's domain: its value (E[Y]) or the indicator of ``outcome_value``.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.canonical import CanonicalModel
    >>> m = CanonicalModel(CausalGraph.parse("X -> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1, 2)})
    >>> outcome_weights(m, "Y", None).tolist(), outcome_weights(m, "Y", 2).tolist()
    ([0.0, 1.0, 2.0], [0.0, 0.0, 1.0])
    """
    domain = np.asarray(model.domains[outcome], dtype=float)
    if outcome_value is None:
        return domain
    if outcome_value not in model.domains[outcome]:
        raise QueryError(
            f"outcome_value={outcome_value} is not a value of {outcome} (its values: {list(model.domains[outcome])})."
        )
    return (domain == outcome_value).astype(float)


@dataclass(frozen=True)
class Arm:
    """One term ``weight * E[h(outcome) | do(do), given]`` of a :class:`Contrast`.

    Examples
    --------
    >>> Arm(-1.0, (("X", 0.0),), (("Z", 1.0),)).given
    (('Z', 1.0),)
    """

    weight: float
    do: tuple[tuple[str, float], ...]
    given: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Contrast:
    """A weighted sum of conditional interventional expectations of one outcome.

    ``Interventional`` is one arm, ``ATE`` two (weights +1 and -1).

    Examples
    --------
    >>> c = Contrast("Y", (Arm(1.0, (("X", 1.0),)), Arm(-1.0, (("X", 0.0),))))
    >>> c.mentioned, c.experiment
    (('Y', 'X'), ('X', 'Y'))
    >>> c.text(), c.text(outcome_value=1)
    ('E[Y | do(X=1)] - E[Y | do(X=0)]', 'P(Y=1 | do(X=1)) - P(Y=1 | do(X=0))')
    """

    outcome: str
    arms: tuple[Arm, ...]

    @property
    def label(self) -> str:
        """The contrast in words (expectations of the outcome)."""
        return self.text()

    def text(self, outcome_value: int | None = None) -> str:
        """The contrast as text; with ``outcome_value``, probabilities of that value."""
        out = []
        for i, arm in enumerate(self.arms):
            cond = ", ".join(
                [f"do({', '.join(f'{k}={v:g}' for k, v in arm.do)})"] + [f"{k}={v:g}" for k, v in arm.given]
            )
            term = (
                f"E[{self.outcome} | {cond}]"
                if outcome_value is None
                else f"P({self.outcome}={outcome_value} | {cond})"
            )
            scale = "" if abs(arm.weight) == 1 else f"{abs(arm.weight):g} "
            prefix = ("-" if arm.weight < 0 else "") if i == 0 else (" - " if arm.weight < 0 else " + ")
            out.append(f"{prefix}{scale}{term}")
        return "".join(out)

    @property
    def mentioned(self) -> tuple[str, ...]:
        """Every variable the query names."""
        names = [self.outcome]
        for arm in self.arms:
            names += [k for k, _ in arm.do] + [k for k, _ in arm.given]
        return tuple(dict.fromkeys(names))

    @property
    def experiment(self) -> tuple[str, str] | None:
        """(treatment, outcome) when every arm sets the same single variable: experimental data can help."""
        treated = {tuple(k for k, _ in arm.do) for arm in self.arms}
        if len(treated) == 1 and len(next(iter(treated))) == 1:
            return next(iter(treated))[0], self.outcome
        return None

    def target(self, model: CanonicalModel, outcome_value: int | None) -> Target:
        """The contrast as functionals of the canonical model's response types."""
        h = outcome_weights(model, self.outcome, outcome_value)
        n_r, n = model.num_root_configs, model.num_types
        terms: list[tuple[float, Functional]] = []
        for arm in self.arms:
            do = {v: model.code(v, x, "do") for v, x in arm.do}
            given = {v: model.code(v, z, "given") for v, z in arm.given}
            num = np.empty((n_r, n))
            den = np.empty((n_r, n)) if given else None
            for r in range(n_r):
                vals = model.values(r, do)
                match = np.ones(n, dtype=bool)
                for v, z in given.items():
                    match &= vals[v] == z
                num[r] = h[vals[self.outcome]] * match
                if den is not None:
                    den[r] = match
            terms.append((arm.weight, Functional(num, den)))
        dens = [f.den for _, f in terms]
        same = all(d is None for d in dens) or all(d is not None and np.array_equal(d, dens[0]) for d in dens)
        if same:
            # One denominator (or none): the contrast is a single (fractional) linear program.
            num = sum(w * f.num for w, f in terms)
            return Target(((1.0, Functional(num, dens[0])),))
        given_names = sorted({k for arm in self.arms for k, _ in arm.given})
        return Target(
            tuple(terms),
            exact=False,
            note=(
                f"the arms condition on {given_names}, whose distribution changes with the treatment, so "
                "the conditional contrast is not one linear program: each arm is bounded separately and "
                "the bounds are combined (valid, possibly loose)."
            ),
        )


def experimental_equalities(
    model: CanonicalModel, treatment: str, outcome: str, arms: tuple[int, ...]
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Coefficient arrays of the constraints P(outcome = y | do(treatment = x)) = value.

    One array ``(num_root_configs, num_types)`` per arm x (value index) and outcome value y,
    leaving out y = the first value (implied: each arm's probabilities sum to one).

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.canonical import CanonicalModel
    >>> m = CanonicalModel(CausalGraph.parse("X -> Y; X <-> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
    >>> coefs, keys = experimental_equalities(m, "X", "Y", (0, 1))
    >>> keys
    [(0, 1), (1, 1)]
    """
    coefs, keys = [], []
    for x in arms:
        for y in range(1, len(model.domains[outcome])):
            coef = np.empty((model.num_root_configs, model.num_types))
            for r in range(model.num_root_configs):
                coef[r] = model.values(r, {treatment: x})[outcome] == y
            coefs.append(coef)
            keys.append((x, y))
    return coefs, keys
