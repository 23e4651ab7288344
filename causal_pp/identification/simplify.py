"""Exact simplification of estimand expressions: every rewrite is an identity (marginalisation, the chain rule, factoring out of sums, cancelling ratios)."""

from __future__ import annotations

import itertools as itt
from collections import Counter
from collections.abc import Iterable, Mapping

import networkx as nx

# The only imports of causal_pp internals (the identification package is being split; keep them here).
from ..errors import (
    InvalidArgumentError,
)
from .expression import Expression, One, Probability, Product, Ratio, Sum, Var, factors_of

__all__ = ["Simplifier", "rename_indices"]


class Simplifier:
    """Builds simplified expressions; ``rank`` is a topological order used for display order.

    Expressions are built with every variable at prime 0 under lexical scoping (a sum binds its
    variables inside its body); every rule here only moves an expression *out* of a scope or
    combines expressions of one scope, so no variable is ever captured. Primes are assigned at
    the end by :func:`rename_indices`.
    """

    def __init__(self, rank: Mapping[str, int]) -> None:
        self.rank = rank

    def vkey(self, v: Var) -> tuple[int, str, int]:
        return (-self.rank.get(v.name, -1), v.name, v.prime)  # latest in the order first

    def vars(self, vs: Iterable[Var]) -> tuple[Var, ...]:
        return tuple(sorted(set(vs), key=self.vkey))

    def fkey(self, f: Expression) -> tuple[int, int, str]:
        if isinstance(f, Probability):
            return (0, min(self.vkey(v)[0] for v in f.outcome), str(f))
        return (1 if isinstance(f, Sum) else 2, 0, str(f))

    def prob(self, outcome: Iterable[Var], given: Iterable[Var] = ()) -> Expression:
        outcome = self.vars(outcome)
        return Probability(outcome, self.vars(given)) if outcome else One()

    def make_product(self, factors: Iterable[Expression]) -> Expression:
        fs = sorted(factors, key=self.fkey)
        return One() if not fs else fs[0] if len(fs) == 1 else Product(tuple(fs))

    def chain(self, factors: list[Expression]) -> list[Expression]:
        """P(A | B ∪ F) P(B | F) -> P(A ∪ B | F): the chain rule, where the sets line up exactly."""
        fs = list(factors)
        merged = True
        while merged:
            merged = False
            for i, j in itt.permutations(range(len(fs)), 2):
                a, b = fs[i], fs[j]
                if not (isinstance(a, Probability) and isinstance(b, Probability)):
                    continue
                e, bo, bf = set(a.given), set(b.outcome), set(b.given)
                if bo <= e and bf == e - bo:
                    fs = [f for k, f in enumerate(fs) if k not in (i, j)]
                    fs.append(self.prob((*a.outcome, *b.outcome), bf))
                    merged = True
                    break
        return fs

    def product(self, factors: Iterable[Expression]) -> Expression:
        nums: list[Expression] = []
        dens: list[Expression] = []
        for f in factors:
            for g in factors_of(f):
                if isinstance(g, Ratio):  # one ratio per product, so common factors can cancel
                    nums += factors_of(g.numerator)
                    dens += factors_of(g.denominator)
                else:
                    nums.append(g)
        if dens:
            return self.ratio(nums, dens)
        return self.make_product(self.chain(nums))

    def ratio(
        self, numerator: Iterable[Expression], denominator: Iterable[Expression], absorb: bool = False
    ) -> Expression:
        nums: list[Expression] = []
        dens: list[Expression] = []
        for part, same, other in ((numerator, nums, dens), (denominator, dens, nums)):
            for g in (h for f in part for h in factors_of(f)):
                if isinstance(g, Ratio):
                    same += factors_of(g.numerator)
                    other += factors_of(g.denominator)
                else:
                    same.append(g)
        nums, dens = self.chain(nums), self.chain(dens)
        common = Counter(nums) & Counter(dens)
        nums, dens = list((Counter(nums) - common).elements()), list((Counter(dens) - common).elements())
        # P(A | E) / P(B | E) -> P(A ∖ B | B, E) for B ⊂ A.
        changed = True
        while changed:
            changed = False
            for (i, n), (j, d) in itt.product(enumerate(nums), enumerate(dens)):
                if (
                    isinstance(n, Probability)
                    and isinstance(d, Probability)
                    and set(n.given) == set(d.given)
                    and set(d.outcome) < set(n.outcome)
                ):
                    nums[i] = self.prob(set(n.outcome) - set(d.outcome), (*d.outcome, *d.given))
                    del dens[j]
                    changed = True
                    break
        # The same inside a sum of the numerator whose indices the denominator factor does not use;
        # only in the final pass (:meth:`polish`), since a denominator left in place may still
        # cancel against a factor that a later product brings.
        changed = absorb
        while changed:
            changed = False
            for (i, n), (j, d) in itt.product(enumerate(nums), enumerate(dens)):
                absorbed = self.absorb(n, d) if isinstance(d, Probability) else None
                if absorbed is not None:
                    nums[i] = absorbed
                    del dens[j]
                    changed = True
                    break
        nums = [f for f in self.chain(nums) if not isinstance(f, One)]
        if not dens:
            return self.make_product(nums)
        return Ratio(self.make_product(nums), self.make_product(self.chain(dens)))

    def polish(self, e: Expression) -> Expression:
        """The final pass: rebuild bottom-up, absorbing denominators into sums where they fit."""
        if isinstance(e, Ratio):
            return self.ratio([self.polish(e.numerator)], [self.polish(e.denominator)], absorb=True)
        if isinstance(e, Sum):
            return self.sum(e.over, self.polish(e.body))
        if isinstance(e, Product):
            return self.product([self.polish(f) for f in e.factors])
        return e

    def absorb(self, e: Expression, d: Probability) -> Expression | None:
        """``e / d`` without a ratio, if ``e`` holds P(A | E) with d = P(B | E), B ⊆ A; else None.

        Enters sums only when ``d`` uses none of their indices: then Σ_v (f / d) = (Σ_v f) / d.
        """
        if isinstance(e, Probability):
            if set(e.given) == set(d.given) and set(d.outcome) <= set(e.outcome):
                return self.prob(set(e.outcome) - set(d.outcome), (*d.outcome, *d.given))
            return None
        if isinstance(e, Sum) and not (set(e.over) & d.free):
            fs = factors_of(e.body)
            for k, f in enumerate(fs):
                inner = self.absorb(f, d)
                if inner is not None:
                    return self.sum(e.over, self.product([*fs[:k], inner, *fs[k + 1 :]]))
        return None

    def sum(self, over: Iterable[Var], body: Expression) -> Expression:
        over = set(over)
        if not over:
            return body
        if isinstance(body, Ratio) and not (body.denominator.free & over):
            return self.ratio([self.sum(over, body.numerator)], [body.denominator])
        outside, inside = [], []
        for f in factors_of(body):
            (inside if f.free & over else outside).append(f)
        # Σ_v P(A | E) = P(A ∖ {v} | E) where v occurs in no other factor (and never in E).
        changed = True
        while changed:
            changed = False
            inside = self.chain(inside)
            for v in sorted(over, key=self.vkey):
                dep = [f for f in inside if v in f.free]
                if len(dep) == 1 and isinstance(dep[0], Probability) and v in dep[0].outcome:
                    inside.remove(dep[0])
                    marg = self.prob(set(dep[0].outcome) - {v}, dep[0].given)
                    if not isinstance(marg, One):
                        inside.append(marg)
                    over.discard(v)
                    changed = True
                    break
        # Σ_{a,b} f(a) g(b) = [Σ_a f(a)] [Σ_b g(b)]: split into groups that share no summed variable.
        groups = nx.Graph()
        groups.add_nodes_from(range(len(inside)))
        for i, j in itt.combinations(range(len(inside)), 2):
            if inside[i].free & inside[j].free & over:
                groups.add_edge(i, j)
        parts = list(outside)
        covered: set[Var] = set()
        for comp in nx.connected_components(groups):
            fs = [inside[i] for i in sorted(comp)]
            vs = set().union(*(f.free for f in fs)) & over
            covered |= vs
            parts.append(self._sum_node(vs, self.product(fs)))
        # A summed variable that no factor mentions multiplies by its number of values; kept as is.
        if over - covered:
            parts.append(Sum(self.vars(over - covered), One()))
        return self.product(parts)

    def _sum_node(self, over: set[Var], body: Expression) -> Expression:
        if not over:
            return body
        if isinstance(body, Sum) and not (set(body.over) & over):  # Σ_a Σ_b f = Σ_{a,b} f
            return self.sum(over | set(body.over), body.body)
        if isinstance(body, Ratio) and not (body.denominator.free & over):
            return self.ratio([self.sum(over, body.numerator)], [body.denominator])
        return Sum(self.vars(over), body)


def rename_indices(e: Expression, visible: frozenset[Var], subst: Mapping[Var, Var]) -> Expression:
    """Give every summation index the lowest prime that no visible variable holds (no shadowing)."""
    if isinstance(e, One):
        return e
    if isinstance(e, Probability):
        return Probability(tuple(subst.get(v, v) for v in e.outcome), tuple(subst.get(v, v) for v in e.given))
    if isinstance(e, Product):
        return Product(tuple(rename_indices(f, visible, subst) for f in e.factors))
    if isinstance(e, Ratio):
        return Ratio(
            rename_indices(e.numerator, visible, subst), rename_indices(e.denominator, visible, subst)
        )
    if isinstance(e, Sum):
        taken = set(visible) | {subst.get(v, v) for v in e.body.free - set(e.over)}
        inner = dict(subst)
        new = []
        for v in e.over:
            p = 0
            while Var(v.name, p) in taken:
                p += 1
            inner[v] = Var(v.name, p)
            taken.add(inner[v])
            new.append(inner[v])
        return Sum(tuple(new), rename_indices(e.body, frozenset(taken), inner))
    raise InvalidArgumentError(f"not an estimand Expression: {type(e).__name__}.")  # pragma: no cover
