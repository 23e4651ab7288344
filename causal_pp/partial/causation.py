"""Probabilities of causation (PN, PS, PNS) without monotonicity.

Two views of the same bounds:

* :class:`Causation` writes PN, PS and PNS as (fractional) linear functionals of the canonical
  model's response types, so the linear programs of :mod:`.lp` bound them for any graph of the
  supported class -- from observational data alone, or tightened by experimental
  probabilities P(y_x) (extra equality constraints);
* :func:`tian_pearl` is the closed form of Tian & Pearl (2000) for a binary treatment and
  outcome given P(x, y) and P(y_x), P(y_{x'}): what the programs reproduce when X and Y are
  unconfounded (P(y_x) = P(y | x)) or when an experiment supplies P(y_x).

With y the outcome value, y' its complement, x the treated and x' the control value:

* PN  = P(Y_{x'} = y' | X = x, Y = y),
* PS  = P(Y_x = y | X = x', Y = y'),
* PNS = P(Y_x = y, Y_{x'} = y').

Reference: J. Tian & J. Pearl, "Probabilities of causation: bounds and identification",
Annals of Mathematics and Artificial Intelligence 28 (2000), 287-313.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError, QueryError
from .functionals import Functional, Target

if TYPE_CHECKING:  # pragma: no cover
    from .canonical import CanonicalModel

__all__ = ["Causation", "CausationBounds", "tian_pearl"]

KINDS = ("PN", "PS", "PNS")


@dataclass(frozen=True)
class Causation:
    """PN, PS or PNS of ``treatment`` (``treated`` vs ``control``) on a binary ``outcome``.

    Examples
    --------
    >>> c = Causation("PN", "X", "Y", 1.0, 0.0, 1.0, "PN")
    >>> c.mentioned, c.experiment
    (('Y', 'X'), ('X', 'Y'))
    """

    kind: str
    treatment: str
    outcome: str
    treated: float
    control: float
    outcome_value: float
    label: str

    @property
    def mentioned(self) -> tuple[str, ...]:
        """The variables the query names."""
        return (self.outcome, self.treatment)

    @property
    def experiment(self) -> tuple[str, str]:
        """(treatment, outcome): experimental data on P(y_x) tighten the bounds."""
        return (self.treatment, self.outcome)

    @property
    def required_values(self) -> dict[str, tuple[int, ...]]:
        """Values the outcome's domain must include whatever the data show: both 0 and 1."""
        return {self.outcome: (0, 1)}

    def target(self, model: CanonicalModel, outcome_value: int | None) -> Target:
        """The probability as a functional of the canonical model's response types."""
        if outcome_value is not None:
            raise InvalidArgumentError(
                f"outcome_value={outcome_value} does not apply to {self.kind}: the query carries its own "
                f"outcome_value ({self.outcome_value:g}); leave the option out."
            )
        x_name, y_name = self.treatment, self.outcome
        if set(model.domains[y_name]) - {0, 1}:
            raise QueryError(
                f"{self.kind} needs a binary outcome coded 0/1; {y_name} takes the values "
                f"{list(model.domains[y_name])}."
            )
        x = model.code(x_name, self.treated, "treated")
        x_ = model.code(x_name, self.control, "control")
        y = model.code(y_name, self.outcome_value, "outcome_value")
        y_ = model.code(y_name, 1.0 - self.outcome_value, "the complementary outcome")
        n_r, n = model.num_root_configs, model.num_types
        num = np.empty((n_r, n))
        den = None if self.kind == "PNS" else np.empty((n_r, n))
        for r in range(n_r):
            fact = model.values(r)
            y_x = model.values(r, {x_name: x})[y_name]
            y_x_ = model.values(r, {x_name: x_})[y_name]
            if self.kind == "PNS":
                num[r] = (y_x == y) & (y_x_ == y_)
                continue
            if self.kind == "PN":
                seen = (fact[x_name] == x) & (fact[y_name] == y)
                num[r] = seen & (y_x_ == y_)
            else:  # PS
                seen = (fact[x_name] == x_) & (fact[y_name] == y_)
                num[r] = seen & (y_x == y)
            den[r] = seen  # type: ignore[index]
        return Target(((1.0, Functional(num, den)),))


@dataclass(frozen=True)
class CausationBounds:
    """Tian-Pearl bounds ``(lower, upper)`` of PN, PS and PNS.

    Examples
    --------
    >>> CausationBounds(pn=(0.5, 1.0), ps=(0.0, 1.0), pns=(0.1, 0.4)).pns
    (0.1, 0.4)
    """

    pn: tuple[float, float]
    ps: tuple[float, float]
    pns: tuple[float, float]


def tian_pearl(joint: Any, p_y_do: Any) -> CausationBounds:
    """Tian & Pearl's (2000) bounds on PN, PS and PNS from P(x, y) and P(y_x), P(y_{x'}).

    Parameters
    ----------
    joint
        2 x 2 array: ``joint[i, j]`` = P(X = x_i, Y = y_j), where index 1 is the treated value x
        (resp. the outcome value y) and index 0 the control value x' (resp. y'). Sums to 1.
    p_y_do
        ``(P(y_{x'}), P(y_x))``: the interventional probabilities of the outcome value under
        control and under treatment (from an experiment, or P(y | x) when X and Y are not
        confounded).

    Returns
    -------
    CausationBounds
        An end is NaN where its formula divides by zero (PN needs P(x, y) > 0, PS P(x', y') > 0).

    Examples
    --------
    >>> b = tian_pearl([[0.3, 0.2], [0.1, 0.4]], [0.4, 0.8])  # P(y | x') = 0.4, P(y | x) = 0.8
    >>> [round(v, 6) for v in b.pn], [round(v, 6) for v in b.ps], [round(v, 6) for v in b.pns]
    ([0.5, 0.75], [0.666667, 1.0], [0.4, 0.6])
    """
    j = np.asarray(joint, dtype=float)
    e = np.asarray(p_y_do, dtype=float)
    if j.shape != (2, 2) or e.shape != (2,):
        raise InvalidArgumentError(
            f"joint must be 2 x 2 and p_y_do a pair; got shapes {j.shape} and {e.shape}."
        )
    if np.any(j < 0) or not np.isclose(j.sum(), 1.0) or np.any((e < 0) | (e > 1)):
        raise InvalidArgumentError(
            "joint must be a distribution (non-negative, sum 1) and p_y_do probabilities."
        )
    p_xy, p_xy_, p_x_y, p_x_y_ = j[1, 1], j[1, 0], j[0, 1], j[0, 0]
    p_y = p_xy + p_x_y
    p_yx_, p_yx = e[0], e[1]

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    pn = (max(0.0, ratio(p_y - p_yx_, p_xy)), min(1.0, ratio(1.0 - p_yx_ - p_x_y_, p_xy)))
    ps = (max(0.0, ratio(p_yx - p_y, p_x_y_)), min(1.0, ratio(p_yx - p_xy, p_x_y_)))
    pns = (
        max(0.0, p_yx - p_yx_, p_y - p_yx_, p_yx - p_y),
        min(p_yx, 1.0 - p_yx_, p_xy + p_x_y_, p_yx - p_yx_ + p_xy_ + p_x_y),
    )
    if p_xy <= 0:
        pn = (float("nan"), float("nan"))
    if p_x_y_ <= 0:
        ps = (float("nan"), float("nan"))
    return CausationBounds(tuple(map(float, pn)), tuple(map(float, ps)), tuple(map(float, pns)))  # type: ignore[arg-type]
