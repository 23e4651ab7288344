"""The algebra of counterfactual estimands: interventional terms, sum-products, ratios.

ID* produces a sum over summation indices of a product of interventional terms
(:class:`SumProduct`); IDC* a ratio of two; the monotone (PN/PS/PNS) and binary-treatment
formulas are differences. Each term carries its own verdict from observational data.
"""

from __future__ import annotations

import itertools as itt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import QueryError
from ..queries.base import world_text
from .cf_graph import Public, public_value, vtext

__all__ = ["CounterfactualEstimand", "InterventionalTerm", "Prob", "Public", "SumProduct", "public_value"]


def term_text(outcome: Iterable[tuple[str, Any]], do: Iterable[tuple[str, Any]]) -> str:
    out = ", ".join(f"{k}={vtext(v) if not isinstance(v, str) else v}" for k, v in outcome)
    d = world_text(do)
    return f"P_{{{d}}}({out})" if d else f"P({out})"


@dataclass(frozen=True)
class InterventionalTerm:
    """One factor P_{do}(outcome) of a counterfactual estimand, with its own verdict from P(V).

    Values are numbers, or names of symbols (summation indices such as ``"z"``, or the free
    value of an outcome such as ``"y"``).

    Attributes
    ----------
    outcome, do
        ``(name, value)`` pairs; an empty ``do`` is an observational probability.
    identified
        Whether the interventional gate identifies P(outcome | do) from observational data.
    reason
        The gate's plain-words reason.

    Examples
    --------
    >>> from causal_pp.identification import InterventionalTerm
    >>> print(InterventionalTerm((("Y", "y"),), (("X", 0.0),), True))
    P_{X=0}(Y=y)
    """

    outcome: tuple[tuple[str, Public], ...]
    do: tuple[tuple[str, Public], ...]
    identified: bool
    reason: str = field(default="", compare=False, repr=False)

    @property
    def observational(self) -> bool:
        """True for a plain observational probability (nothing intervened on)."""
        return not self.do

    def __str__(self) -> str:
        return term_text(self.outcome, self.do)


Prob = Callable[[Mapping[str, float], Mapping[str, float]], float]
"""``prob(outcome, do)`` returns P_{do}(outcome) for concrete values."""


def bind(pairs: Iterable[tuple[str, Public]], env: Mapping[str, float]) -> dict[str, float]:
    return {k: (env[v] if isinstance(v, str) else v) for k, v in pairs}


@dataclass(frozen=True)
class SumProduct:
    """Σ over ``sums`` of the product of ``factors``: the shape every ID* estimand has.

    Examples
    --------
    >>> from causal_pp.identification import InterventionalTerm, SumProduct
    >>> sp = SumProduct((("z", "Z"),), (InterventionalTerm((("Z", "z"),), (), True),))
    >>> print(sp)
    Σ_{z} P(Z=z)
    >>> sp.evaluate(lambda out, do: 0.5, {"Z": [0.0, 1.0]})
    1.0
    """

    sums: tuple[tuple[str, str], ...]
    factors: tuple[InterventionalTerm, ...]

    def __str__(self) -> str:
        body = " · ".join(str(f) for f in self.factors) or "1"
        return f"Σ_{{{', '.join(s for s, _ in self.sums)}}} {body}" if self.sums else body

    def evaluate(
        self, prob: Prob, domains: Mapping[str, Sequence[float]], values: Mapping[str, float] | None = None
    ) -> float:
        """The number this expression takes, given the interventional distributions.

        Parameters
        ----------
        prob
            ``prob(outcome, do) -> float``: P_{do}(outcome) for concrete values (from a fitted
            model, or from the identified interventional estimands).
        domains
            The values each summed variable ranges over (discrete variables).
        values
            Values of free symbols (an outcome asked without a value, e.g. ``{"y": 1.0}``).
        """
        env = {k: float(v) for k, v in (values or {}).items()}
        names = [s for s, _ in self.sums]
        free = {
            v for f in self.factors for _, v in (*f.outcome, *f.do) if isinstance(v, str) and v not in names
        } - set(env)
        if free:
            raise QueryError(f"give values for the free symbols {sorted(free)} (values={{...}}).")
        total = 0.0
        for combo in itt.product(*(domains[var] for _, var in self.sums)):
            env.update(zip(names, map(float, combo), strict=True))
            term = 1.0
            for f in self.factors:
                term *= prob(bind(f.outcome, env), bind(f.do, env))
                if term == 0.0:
                    break
            total += term
        return total


def linear_text(parts: tuple[tuple[float, SumProduct], ...]) -> str:
    if not parts:
        return "0"
    out = ""
    for i, (c, sp) in enumerate(parts):
        sign = "-" if c < 0 else "+"
        mag = "" if abs(c) == 1 else f"{abs(c):g}·"
        text = f"{mag}[{sp}]" if sp.sums and len(parts) > 1 else f"{mag}{sp}"
        out += (("- " if sign == "-" else "") if i == 0 else f" {sign} ") + text
    return out


@dataclass(frozen=True)
class CounterfactualEstimand:
    """(Σ_k c_k · numerator_k) / (Σ_k d_k · denominator_k) over sum-products of interventional terms.

    ID* gives one sum-product; IDC* a ratio of two; the monotone (PN/PS/PNS) and
    binary-treatment formulas are differences. An empty numerator is the constant 0; an
    empty denominator is 1. The formula is causal_pp's own (not y0's) and is checked
    numerically against simulated structural causal models in the test suite.

    Examples
    --------
    >>> from causal_pp.identification import CounterfactualEstimand, InterventionalTerm, SumProduct
    >>> py = SumProduct((), (InterventionalTerm((("Y", 1.0),), (), True),))
    >>> pyx = SumProduct((), (InterventionalTerm((("Y", 1.0),), (("X", 0.0),), True),))
    >>> print(CounterfactualEstimand(((1.0, py), (-1.0, pyx))))
    P(Y=1) - P_{X=0}(Y=1)
    """

    numerator: tuple[tuple[float, SumProduct], ...]
    denominator: tuple[tuple[float, SumProduct], ...] = ()

    @property
    def is_zero(self) -> bool:
        """True when the estimand is the constant 0 (an inconsistent event)."""
        return not self.numerator

    def __str__(self) -> str:
        num = linear_text(self.numerator)
        if not self.denominator:
            return num
        den = linear_text(self.denominator)
        num = f"({num})" if len(self.numerator) > 1 else f"[{num}]" if self.numerator[0][1].sums else num
        den = f"({den})" if len(self.denominator) > 1 else f"[{den}]" if self.denominator[0][1].sums else den
        return f"{num} / {den}"

    def evaluate(
        self, prob: Prob, domains: Mapping[str, Sequence[float]], values: Mapping[str, float] | None = None
    ) -> float:
        """Evaluate the estimand (see :meth:`SumProduct.evaluate`).

        Examples
        --------
        >>> from causal_pp.identification import CounterfactualEstimand
        >>> CounterfactualEstimand(()).evaluate(lambda o, d: 1.0, {})
        0.0
        """
        num = sum(c * sp.evaluate(prob, domains, values) for c, sp in self.numerator)
        if not self.denominator:
            return float(num)
        den = sum(c * sp.evaluate(prob, domains, values) for c, sp in self.denominator)
        return float(num / den)
