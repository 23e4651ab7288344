"""Expressions over observational probabilities: the tree an estimand is made of, its text, and its value on a discrete joint distribution."""

from __future__ import annotations

import itertools as itt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = [
    "Expression",
    "JointTable",
    "One",
    "Probability",
    "Product",
    "Ratio",
    "Sum",
    "Var",
    "evaluate_expression",
]

# The only imports of causal_pp internals (the identification package is being split; keep them here).
from ..errors import (
    DataError,
    InvalidArgumentError,
    UnknownVariableError,
)


@dataclass(frozen=True, order=True)
class Var:
    """A variable at one of its values: ``Var("X")`` is X at the query's x, ``Var("X", 1)`` is X'.

    Examples
    --------
    >>> from causal_pp.identification.expression import Var
    >>> str(Var("X", 1)), Var("IL6_AMP").to_latex()
    ("X'", '\\\\mathrm{IL6\\\\_AMP}')
    """

    name: str
    prime: int = 0

    def __str__(self) -> str:
        return self.name + "'" * self.prime

    def to_latex(self) -> str:
        """The variable in LaTeX math mode; names longer than one character are upright."""
        name = self.name
        if not (len(name) == 1 and name.isalpha()):
            escaped = "".join(LATEX_ESCAPES.get(ch, ch) for ch in name)
            name = f"\\mathrm{{{escaped}}}"
        return name + "'" * self.prime


LATEX_ESCAPES = {
    "\\": r"\backslash{}",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "^": r"\^{}",
    "#": r"\#",
    "$": r"\$",
    "%": r"\%",
    "&": r"\&",
    "~": r"\~{}",
}


class Expression:
    """Base of the estimand expression tree (an observational functional of P(V)).

    Subclasses are frozen dataclasses; equal trees compare equal. ``str()`` gives the formula in
    Unicode text, :meth:`to_text` with ``ascii=True`` an ASCII form, :meth:`to_latex` LaTeX.
    """

    __slots__ = ()

    @property
    def free(self) -> frozenset[Var]:
        """The variables this expression is a function of (not bound by a sum inside it)."""
        raise NotImplementedError  # pragma: no cover

    def to_text(self, ascii: bool = False) -> str:
        """The formula as text; ``ascii=True`` writes ``sum_{..}`` instead of ``Σ_{..}``."""
        raise NotImplementedError  # pragma: no cover

    def to_latex(self) -> str:
        """The formula as LaTeX (math mode, without delimiters)."""
        raise NotImplementedError  # pragma: no cover

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True)
class One(Expression):
    """The constant 1 (an empty product, or a distribution summed over all its outcomes).

    Examples
    --------
    >>> from causal_pp.identification.expression import One
    >>> str(One())
    '1'
    """

    @property
    def free(self) -> frozenset[Var]:
        return frozenset()

    def to_text(self, ascii: bool = False) -> str:
        return "1"

    def to_latex(self) -> str:
        return "1"


@dataclass(frozen=True)
class Probability(Expression):
    """An observational (conditional) probability P(outcome | given).

    Parameters
    ----------
    outcome
        The variables whose probability is taken (at least one).
    given
        The conditioning variables (empty for a marginal).

    Raises
    ------
    InvalidArgumentError
        If ``outcome`` is empty, or a variable name appears twice.

    Examples
    --------
    >>> from causal_pp.identification.expression import Probability, Var
    >>> str(Probability((Var("Y"),), (Var("X"), Var("Z"))))
    'P(Y | X, Z)'
    >>> Probability((Var("W"),)).to_latex()
    'P(W)'
    """

    outcome: tuple[Var, ...]
    given: tuple[Var, ...] = ()

    def __post_init__(self) -> None:
        if not self.outcome:
            raise InvalidArgumentError("a Probability needs at least one outcome variable.")
        names = [v.name for v in (*self.outcome, *self.given)]
        if len(set(names)) != len(names):
            raise InvalidArgumentError(f"a Probability names each variable once; got {names}.")

    @cached_property
    def free(self) -> frozenset[Var]:  # type: ignore[override]
        return frozenset((*self.outcome, *self.given))

    def to_text(self, ascii: bool = False) -> str:
        out = ", ".join(map(str, self.outcome))
        if not self.given:
            return f"P({out})"
        return f"P({out} | {', '.join(map(str, self.given))})"

    def to_latex(self) -> str:
        out = ", ".join(v.to_latex() for v in self.outcome)
        if not self.given:
            return f"P({out})"
        return f"P({out} \\mid {', '.join(v.to_latex() for v in self.given)})"


@dataclass(frozen=True)
class Product(Expression):
    """The product of ``factors`` (an empty product is 1).

    Examples
    --------
    >>> from causal_pp.identification.expression import Probability, Product, Var
    >>> str(Product((Probability((Var("Y"),), (Var("Z"),)), Probability((Var("Z"),)))))
    'P(Y | Z) P(Z)'
    """

    factors: tuple[Expression, ...]

    @cached_property
    def free(self) -> frozenset[Var]:  # type: ignore[override]
        return frozenset().union(*(f.free for f in self.factors))

    def to_text(self, ascii: bool = False) -> str:
        if not self.factors:
            return "1"
        parts = []
        for i, f in enumerate(self.factors):
            text = f.to_text(ascii)
            # A sum runs to the end of the product, so any factor after it needs the sum bracketed.
            if isinstance(f, (Sum, Ratio, Product)) and i < len(self.factors) - 1:
                text = f"[{text}]"
            parts.append(text)
        return " ".join(parts)

    def to_latex(self) -> str:
        if not self.factors:
            return "1"
        parts = []
        for i, f in enumerate(self.factors):
            text = f.to_latex()
            if isinstance(f, (Sum, Product)) and i < len(self.factors) - 1:
                text = f"\\left[{text}\\right]"
            parts.append(text)
        return " \\, ".join(parts)


@dataclass(frozen=True)
class Sum(Expression):
    """The sum of ``body`` over every value of each variable in ``over``.

    Examples
    --------
    >>> from causal_pp.identification.expression import Probability, Product, Sum, Var
    >>> z = Var("Z")
    >>> s = Sum((z,), Product((Probability((Var("Y"),), (Var("X"), z)), Probability((z,)))))
    >>> str(s)
    'Σ_{Z} P(Y | X, Z) P(Z)'
    >>> s.to_text(ascii=True)
    'sum_{Z} P(Y | X, Z) P(Z)'
    >>> sorted(map(str, s.free))
    ['X', 'Y']
    """

    over: tuple[Var, ...]
    body: Expression

    @cached_property
    def free(self) -> frozenset[Var]:  # type: ignore[override]
        return self.body.free - frozenset(self.over)

    def to_text(self, ascii: bool = False) -> str:
        sigma = "sum_" if ascii else "Σ_"
        body = self.body.to_text(ascii)
        if isinstance(self.body, Ratio):  # Σ_W ([N] / [D]): the sum covers the whole ratio
            body = f"({body})"
        return f"{sigma}{{{', '.join(map(str, self.over))}}} {body}"

    def to_latex(self) -> str:
        return f"\\sum_{{{', '.join(v.to_latex() for v in self.over)}}} {self.body.to_latex()}"


@dataclass(frozen=True)
class Ratio(Expression):
    """``numerator / denominator``.

    Examples
    --------
    >>> from causal_pp.identification.expression import Probability, Ratio, Var
    >>> r = Ratio(Probability((Var("X"), Var("Y"))), Probability((Var("X"),)))
    >>> str(r), r.to_latex()
    ('P(X, Y) / P(X)', '\\\\frac{P(X, Y)}{P(X)}')
    """

    numerator: Expression
    denominator: Expression

    @cached_property
    def free(self) -> frozenset[Var]:  # type: ignore[override]
        return self.numerator.free | self.denominator.free

    def to_text(self, ascii: bool = False) -> str:
        def part(e: Expression) -> str:
            text = e.to_text(ascii)
            return text if isinstance(e, (Probability, One)) else f"[{text}]"

        return f"{part(self.numerator)} / {part(self.denominator)}"

    def to_latex(self) -> str:
        return f"\\frac{{{self.numerator.to_latex()}}}{{{self.denominator.to_latex()}}}"


@dataclass(frozen=True, eq=False)
class JointTable:
    """An exact discrete joint distribution: a probability array with one named axis per variable.

    Values of a variable are the positions on its axis (0, 1, ...).

    Parameters
    ----------
    probabilities
        Non-negative array summing to 1.
    names
        The variable of each axis.

    Raises
    ------
    DataError
        If the array does not match ``names``, holds negative or non-finite entries, or does not
        sum to 1.

    Examples
    --------
    >>> import numpy as np
    >>> from causal_pp.identification.expression import JointTable
    >>> joint = JointTable(np.array([[0.1, 0.2], [0.3, 0.4]]), ("X", "Y"))
    >>> joint.marginal(("Y",)).tolist()
    [0.4, 0.6000000000000001]
    """

    probabilities: np.ndarray
    names: tuple[str, ...]
    _cache: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        p = np.asarray(self.probabilities, dtype=float)
        names = tuple(self.names) if not isinstance(self.names, str) else (self.names,)
        if p.ndim != len(names) or len(set(names)) != len(names):
            raise DataError(
                f"a JointTable needs one distinct name per axis; got {p.ndim} axes and names {list(names)}."
            )
        if not np.all(np.isfinite(p)) or np.any(p < 0) or not math.isclose(p.sum(), 1.0, abs_tol=1e-9):
            raise DataError("a JointTable holds non-negative, finite probabilities that sum to 1.")
        object.__setattr__(self, "probabilities", p)
        object.__setattr__(self, "names", names)

    def size(self, name: str) -> int:
        """The number of values of ``name``."""
        return self.probabilities.shape[self._axis(name)]

    def _axis(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise UnknownVariableError(
                f"the joint distribution has no axis {name!r}; its axes are {list(self.names)}."
            ) from None

    def marginal(self, names: Sequence[str]) -> np.ndarray:
        """P(names) as an array whose axes follow ``names`` (cached)."""
        key = tuple(names)
        if key not in self._cache:
            axes = [self._axis(n) for n in key]
            rest = tuple(i for i in range(len(self.names)) if i not in axes)
            m = self.probabilities.sum(axis=rest)
            kept = sorted(axes)
            self._cache[key] = np.transpose(m, [kept.index(a) for a in axes]) if key else m
        return self._cache[key]


Factor = tuple[np.ndarray, tuple[Var, ...]]


EINSUM_LABELS = 52  # numpy's einsum takes at most 52 distinct axis labels


def contract(operands: list[Factor], out: tuple[Var, ...]) -> np.ndarray:
    """Multiply the operands and sum every axis not in ``out`` (einsum with integer labels)."""
    labels = {v: i for i, v in enumerate(dict.fromkeys(itt.chain(*(vs for _, vs in operands), out)))}
    if not operands:
        return np.ones(())
    if len(labels) <= EINSUM_LABELS:
        args: list[Any] = []
        for arr, vs in operands:
            args += [arr, [labels[v] for v in vs]]
        return np.einsum(*args, [labels[v] for v in out], optimize=len(operands) > 2)
    allv = tuple(labels)
    total = np.ones(())
    for arr, vs in operands:
        total = total * align_table(arr, vs, allv)
    summed = tuple(i for i, v in enumerate(allv) if v not in out)
    total = total.sum(axis=summed) if summed else total
    kept = [v for v in allv if v in out]
    return np.transpose(total, [kept.index(v) for v in out])


def align_table(arr: np.ndarray, vs: tuple[Var, ...], target: tuple[Var, ...]) -> np.ndarray:
    """``arr`` (axes ``vs``) broadcastable against an array with axes ``target`` ⊇ ``vs``."""
    order = sorted(range(len(vs)), key=lambda i: target.index(vs[i]))
    arr = np.transpose(arr, order)
    shape = [1] * len(target)
    for i in order:
        shape[target.index(vs[i])] = arr.shape[order.index(i)]
    return arr.reshape(shape)


def evaluate_expression(e: Expression, joint: JointTable) -> Factor:
    """The expression as an array over its free variables (in sorted order)."""
    out = tuple(sorted(e.free))
    if isinstance(e, One):
        return np.ones(()), ()
    if isinstance(e, Probability):
        vs = (*e.given, *e.outcome)
        num = joint.marginal([v.name for v in vs])
        if e.given:
            den = joint.marginal([v.name for v in e.given])
            with np.errstate(divide="ignore", invalid="ignore"):
                num = num / den.reshape(den.shape + (1,) * len(e.outcome))
        return np.transpose(num, [vs.index(v) for v in out]), out
    if isinstance(e, Product):
        return contract([evaluate_expression(f, joint) for f in e.factors], out), out
    if isinstance(e, Sum):
        # A sum of a product is one contraction: the summand is never materialised in full.
        parts = e.body.factors if isinstance(e.body, Product) else (e.body,)
        operands = [evaluate_expression(f, joint) for f in parts]
        for v in set(e.over) - e.body.free:  # a summed variable absent from the body counts its values
            operands.append((np.ones(joint.size(v.name)), (v,)))
        return contract(operands, out), out
    if isinstance(e, Ratio):
        (n, nv), (d, dv) = evaluate_expression(e.numerator, joint), evaluate_expression(e.denominator, joint)
        with np.errstate(divide="ignore", invalid="ignore"):
            return align_table(n, nv, out) / align_table(d, dv, out), out
    raise InvalidArgumentError(f"cannot evaluate {type(e).__name__}; expected an estimand Expression.")


def factors_of(e: Expression) -> list[Expression]:
    if isinstance(e, Product):
        return [g for f in e.factors for g in factors_of(f)]
    return [] if isinstance(e, One) else [e]
