"""ID* and IDC* (Shpitser & Pearl 2007, 2008) on the latent projection, with four corrections.

y0 0.2.11 lacks them (``shared/notes/y0-pitfalls.md`` #5-#8):

1. The counterfactual graph is built here (:mod:`.cf_graph`), not taken from y0.
2. A c-component of the counterfactual graph gives the factor P(S_{pa(S)}); it is *consistent*
   only if no variable takes two values across the component's events and the values its
   parents are set or observed at (Correa, Lee & Bareinboim 2021). ID*'s line 8 as printed
   only compares subscripts with events, which lets P(Y_x, Y_{x'}) through (pitfall #6).
   Copies of one variable whose parents take equal values are the same random variable:
   their events are unified (probability 0 if they disagree), never called a conflict.
3. Rule 2 in IDC* is applied inside the counterfactual graph by cutting the observed node
   loose (it becomes a constant); everything downstream of it -- remaining evidence
   included -- then lives in the intervened world.
4. ID* identifies from *all* interventional distributions P_*; every factor P_t(s) it
   produces is therefore passed to the interventional gate (:func:`.interventional.decide`),
   and the counterfactual is identified from P(V) only if every factor is (pitfall #8).

References
----------
Shpitser & Pearl (2007) "What counterfactuals can be tested", UAI.
Shpitser & Pearl (2008) "Complete identification methods for the causal hierarchy", JMLR 9.
Correa, Lee & Bareinboim (2021) "Nested counterfactual identification from arbitrary
surrogate experiments", NeurIPS.
"""

from __future__ import annotations

import itertools as itt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from ..errors import QueryError
from ..graph import CausalGraph
from ..queries.base import generic_value
from .cf_estimand import CounterfactualEstimand, InterventionalTerm, SumProduct, public_value, term_text
from .cf_graph import (
    CFGraphBuilder,
    CounterfactualGraph,
    Node,
    Problem,
    Projection,
    Sym,
    Value,
    Zero,
    make_cg,
    normalize,
    projection,
    resolve,
    snapshot,
    unify,
    vtext,
)
from .dispatch import Assumptions
from .interventional import decide
from .result import CounterfactualIdentification

__all__ = ["binary_route", "gate", "run_problem", "solve"]


@dataclass(frozen=True)
class Factor:
    outcome: tuple[tuple[str, Value], ...]
    do: tuple[tuple[str, Value], ...]
    nodes: tuple[str, ...]  # labels of the counterfactual-graph nodes it covers

    def __str__(self) -> str:
        return term_text(self.outcome, self.do)


@dataclass(frozen=True)
class Conflict:
    """A c-component whose factor is inconsistent: ``var`` takes two values within it."""

    component: tuple[str, ...]
    var: str
    first: tuple[str, str, Node]  # (value text, how, node)
    second: tuple[str, str, Node]


@dataclass(frozen=True)
class Expr:
    """Sum over ``sums`` of the product of ``factors`` (a sum-product of interventional terms)."""

    sums: tuple[tuple[Sym, str], ...]
    factors: tuple[Factor, ...]

    def __str__(self) -> str:
        body = " · ".join(str(f) for f in self.factors) or "1"
        if not self.sums:
            return body
        return f"Σ_{{{', '.join(str(s) for s, _ in self.sums)}}} {body}"


def factorize(
    cg: CFGraphBuilder, events: Mapping[Node, Value], base_subst: Mapping[Sym, Value]
) -> Expr | Zero | Conflict:
    """ID* lines 6-9 on the counterfactual graph: one factor per c-component.

    Every random ancestor of the event that is not in the event gets a summation index. In
    each c-component, copies of one variable whose parents take equal values are one random
    variable (their values are unified; the event is impossible if they disagree). A component
    is consistent if every variable then takes a single value across the component's nodes and
    the values their outside parents take; its factor is P_{t}(s) with s the component's
    values and t the outside parents' values (ctf-factors of Correa, Lee & Bareinboim 2021).
    """
    subst: dict[Sym, Value] = dict(base_subst)
    nodes = cg.ancestors(events) & (cg.nodes | set(events))
    if all(kind == "n" for n in nodes for kind, _ in cg.parents[n].values()):
        # no intervention reaches the event: it is a margin of the observed distribution
        observed = tuple(sorted((n[0], resolve(v, subst)) for n, v in events.items()))  # type: ignore[misc]
        return Expr((), (Factor(observed, (), tuple(sorted(cg.label[n] for n in events))),))
    vals: dict[Node, Value] = {n: resolve(v, subst) for n, v in events.items()}  # type: ignore[misc]
    taken = {str(v) for v in vals.values() if isinstance(v, Sym)}
    for n in sorted(nodes - set(events), key=cg.label.__getitem__):
        base = generic_value(n[0])
        name = base
        while name in taken:
            name += "'"
        taken.add(name)
        vals[n] = Sym(name, "sum")

    def val(n: Node) -> Value:
        return resolve(vals[n], subst)  # type: ignore[return-value]

    def pval(n: Node, p: str) -> Value:
        kind, q = cg.parents[n][p]
        return val(q) if kind == "n" else resolve(q, subst)  # type: ignore[return-value]

    comps = cg.districts(nodes)
    changed = True
    while changed:
        changed = False
        for comp in comps:
            seen: dict[tuple[Any, ...], Node] = {}
            for n in list(comp):
                key = (n[0], tuple((p, pval(n, p)) for p in sorted(cg.parents[n])))
                if key not in seen:
                    seen[key] = n
                    continue
                m = seen[key]
                ok, _ = unify(val(m), val(n), subst)
                if not ok:
                    return Zero(
                        f"{cg.label[m]} and {cg.label[n]} are the same random variable here (their parents "
                        f"take equal values and they share {n[0]}'s exogenous noise), yet the event asks for "
                        f"{vtext(val(m))} and {vtext(val(n))}"
                    )
                comp.remove(n)
                changed = True
    factors: list[Factor] = []
    for comp in comps:
        inside = set(comp)
        seen_at: dict[str, dict[str, tuple[str, Node, bool]]] = {}
        for n in comp:
            occurrences = [(n[0], val(n), f"{cg.label[n]} takes it", False)]
            for p, (kind, q) in sorted(cg.parents[n].items()):
                if kind == "n" and q in inside:
                    continue
                how = {
                    "c": "set by intervention",
                    "o": "fixed at its observed value",
                    "n": f"at the value of {cg.label.get(q, p)}",
                }[kind]
                occurrences.append((p, pval(n, p), f"{cg.label[n]} needs its parent {p} {how}", True))
            for var, v, how, as_parent in occurrences:
                seen_at.setdefault(var, {}).setdefault(vtext(v), (how, n, as_parent))
        clashes = [(var, at) for var, at in seen_at.items() if len(at) > 1]
        if clashes:
            # report a clash on a parent's setting first: it is the cause, event clashes follow from it
            var, at = min(clashes, key=lambda c: (not any(x[2] for x in c[1].values()), c[0]))
            (v1, (h1, n1, _)), (v2, (h2, n2, _)) = list(at.items())[:2]
            return Conflict(tuple(cg.label[x] for x in comp), var, (v1, h1, n1), (v2, h2, n2))
        s = {n[0]: val(n) for n in comp}
        t: dict[str, Value] = {}
        for n in comp:
            for p, (kind, q) in cg.parents[n].items():
                if p not in s and not (kind == "n" and q in inside):
                    t[p] = pval(n, p)
        factors.append(
            Factor(tuple(sorted(s.items())), tuple(sorted(t.items())), tuple(cg.label[n] for n in comp))
        )
    used: dict[Sym, str] = {}
    for f in factors:
        for var, v in (*f.outcome, *f.do):
            if isinstance(v, Sym) and v.kind == "sum":
                used.setdefault(v, var)
    return Expr(tuple(sorted(used.items(), key=lambda kv: kv[0].name)), tuple(factors))


def rule2_in_cg(cg: CFGraphBuilder, gamma: Iterable[Node], n: Node, rest: Iterable[Node]) -> bool:
    """(gamma ⊥ n | rest) in the counterfactual graph with n's outgoing edges cut (m-separation)."""
    g = nx.DiGraph()
    nodes = cg.ancestors([*gamma, n, *rest]) & cg.nodes
    g.add_nodes_from(nodes)
    for c in nodes:
        for kind, q in cg.parents[c].values():
            if kind == "n" and q in nodes and q != n:
                g.add_edge(q, c)
    for i, (a, b) in enumerate(itt.combinations(sorted(nodes, key=cg.label.__getitem__), 2)):
        if cg.linked(a, b):
            g.add_edges_from([(("__u__", i), a), (("__u__", i), b)])
    return nx.is_d_separator(g, set(gamma), {n}, set(rest))


@dataclass
class Solution:
    """The outcome of IDC* on one problem, before gating (private)."""

    status: str  # "zero", "one", "expr", "conflict"
    problem: Problem
    reason: str = ""
    cg: CFGraphBuilder | None = None
    graph: CounterfactualGraph | None = None
    moved: list[str] = field(default_factory=list)
    num: Expr | None = None
    den: Expr | None = None
    conflict: Conflict | None = None


def solve(proj: Projection, problem: Problem) -> Solution:
    """IDC* (Shpitser & Pearl 2008) with the corrections listed in the module docstring."""
    subst: dict[Sym, Value] = {}
    delta = normalize(problem.delta, subst)
    if isinstance(delta, Zero):
        raise QueryError(f"the evidence of {problem} has probability 0: {delta.reason}.")
    if delta:
        only = make_cg(proj, delta, dict(subst))
        if isinstance(only, Zero):
            raise QueryError(f"the evidence of {problem} has probability 0: {only.reason}.")
    gamma = normalize(problem.gamma, subst)
    if isinstance(gamma, Zero):
        return Solution("zero", problem, gamma.reason)
    built = make_cg(proj, [*gamma, *delta], subst)
    if isinstance(built, Zero):
        return Solution("zero", problem, built.reason)
    cg, roots, values = built
    cg_view = snapshot(cg, values)
    gnodes = {n: values[n] for n in roots[: len(gamma)]}
    dnodes = {n: values[n] for n in roots[len(gamma) :]}
    for n in list(gnodes):
        if n in dnodes:  # an outcome that the evidence already pins down
            del gnodes[n]
    if not gnodes:
        why = (
            "the evidence determines the outcome"
            if gamma
            else "every outcome is set by the intervention itself (effectiveness)"
        )
        return Solution("one", problem, why, cg=cg, graph=cg_view)
    moved: list[str] = []
    progress = True
    while progress:
        progress = False
        for n in sorted(dnodes, key=cg.label.__getitem__):
            if rule2_in_cg(cg, gnodes, n, set(dnodes) - {n}):
                moved.append(f"{cg.label[n]}={vtext(dnodes[n])}")
                cg.fix(n, dnodes.pop(n))
                progress = True
                break
    num = factorize(cg, {**gnodes, **dnodes}, subst)
    if isinstance(num, Zero):
        return Solution("zero", problem, num.reason, cg=cg, graph=cg_view, moved=moved)
    if isinstance(num, Conflict):
        return Solution("conflict", problem, cg=cg, graph=cg_view, moved=moved, conflict=num)
    den = None
    if dnodes:
        d = factorize(cg, dnodes, subst)
        if isinstance(d, Zero):  # pragma: no cover - the evidence was checked above
            raise QueryError(f"the evidence of {problem} has probability 0: {d.reason}.")
        if isinstance(d, Conflict):
            return Solution("conflict", problem, cg=cg, graph=cg_view, moved=moved, conflict=d)
        den = d
    return Solution("expr", problem, cg=cg, graph=cg_view, moved=moved, num=num, den=den)


def gate(
    graph: CausalGraph, outcome: Iterable[tuple[str, Value]], do: Iterable[tuple[str, Value]]
) -> InterventionalTerm:
    """Identify P_{do}(outcome) from P(V) with the interventional gate (:func:`.interventional.decide`)."""
    outcome, do = tuple(outcome), tuple(do)
    out_p = tuple((k, public_value(v)) for k, v in outcome)
    do_p = tuple((k, public_value(v)) for k, v in do)
    if not do:
        return InterventionalTerm(
            out_p, do_p, True, "observational: a margin of the observed distribution P(V)"
        )
    v = decide(graph, frozenset(k for k, _ in do), frozenset(k for k, _ in outcome), frozenset())
    return InterventionalTerm(out_p, do_p, v.identified, v.reason)


def sum_product(graph: CausalGraph, expr: Expr) -> SumProduct:
    return SumProduct(
        tuple((str(s), var) for s, var in expr.sums),
        tuple(gate(graph, f.outcome, f.do) for f in expr.factors),
    )


def dedupe(terms: Iterable[InterventionalTerm]) -> tuple[InterventionalTerm, ...]:
    out: dict[str, InterventionalTerm] = {}
    for t in terms:
        out.setdefault(str(t), t)
    return tuple(out.values())


def observed_text(graph: CausalGraph) -> str:
    return "{" + ", ".join(graph.observed) + "}"


def latents_between(graph: CausalGraph, a: str, b: str) -> list[str]:
    """Latent nodes that reach both ``a`` and ``b`` along latent-only directed paths."""
    out = []
    g = graph.to_networkx()
    for u in graph.latent:
        reach, stack = set(), [u]
        while stack:
            for c in g.successors(stack.pop()):
                if c not in reach:
                    reach.add(c)
                    if graph.is_latent(c):
                        stack.append(c)
        if a in reach and b in reach:
            out.append(u)
    return out


def world_of(label: str) -> str:
    if "_{" not in label:
        return "the factual world"
    return f"the world do({label[label.index('_{') + 2 : -1]})"


def explain_conflict(graph: CausalGraph, sol: Solution) -> str:
    c, cg = sol.conflict, sol.cg
    assert c is not None and cg is not None
    (v1, how1, n1), (v2, how2, n2) = c.first, c.second
    comp = [n for n in cg.label if cg.label[n] in c.component]
    g = nx.Graph()
    g.add_nodes_from(comp)
    g.add_edges_from((a, b) for a, b in itt.combinations(comp, 2) if cg.linked(a, b))
    hops = []
    if n1 != n2:
        path = nx.shortest_path(g, n1, n2)
        for a, b in itt.pairwise(path):
            la, lb = cg.label[a], cg.label[b]
            if a[0] == b[0]:
                hops.append(
                    f"{la} ({world_of(la)}) and {lb} ({world_of(lb)}) are the same unit's {a[0]} and share "
                    f"its exogenous noise"
                )
            else:
                lat = latents_between(graph, a[0], b[0])
                via = f"the latent {', '.join(lat)}" if lat else "a latent confounder"
                hops.append(
                    f"{la} and {lb} are confounded through {a[0]} <-> {b[0]}: {la} ({world_of(la)}) and "
                    f"{lb} ({world_of(lb)}) share {via}"
                )
    link = ("; ".join(hops) + ". ") if hops else ""
    return (
        f"In the counterfactual graph, {{{', '.join(c.component)}}} form one c-component. {link}Within it "
        f"{c.var} would have to be {v1} ({how1}) and {v2} ({how2}) for the same unit, a joint that no "
        "observational study or experiment measures: two models can agree on every observational and "
        "interventional distribution yet differ on this query (ID* line 8, Shpitser & Pearl 2008; Correa, "
        "Lee & Bareinboim 2021; complete for variables of unrestricted cardinality)."
    )


def run_problem(
    graph: CausalGraph, query: Any, problem: Problem, assumptions: Assumptions
) -> CounterfactualIdentification:
    """ID*/IDC* on one problem, every factor gated; the binary-treatment route as a fallback."""
    proj = projection(graph)
    algorithm = "IDC*" if problem.delta else "ID*"
    obs = observed_text(graph)
    admg = graph.to_admg()
    sol = solve(proj, problem)
    common = {
        "query": query,
        "graph": graph,
        "algorithm": algorithm,
        "counterfactual_graph": sol.graph,
        "admg": admg,
    }
    if sol.status == "zero":
        return CounterfactualIdentification(
            identified=True,
            reason=f"{query} is identified: it equals 0 in every model, because {sol.reason}.",
            estimand=CounterfactualEstimand(()),
            value=0.0,
            **common,
        )
    if sol.status == "one":
        one = SumProduct((), ())
        return CounterfactualIdentification(
            identified=True,
            reason=f"{query} is identified: {sol.reason}, so it has probability 1 at that value (a point mass).",
            estimand=CounterfactualEstimand(((1.0, one),)),
            value=1.0,
            **common,
        )
    moved = ""
    if sol.moved:
        moved = (
            f" Given the rest of the evidence, observing {', '.join(sol.moved)} is equivalent to setting it: "
            "the outcome is m-separated from it in the counterfactual graph once its outgoing edges are cut "
            "(do-calculus rule 2, IDC* line 4)."
        )
    if sol.status == "conflict":
        reason = (
            f"{query} is not identifiable from the observed variables {obs}.{moved} "
            f"{explain_conflict(graph, sol)}"
        )
        result = CounterfactualIdentification(identified=False, reason=reason, **common)
    else:
        assert sol.num is not None
        num = sum_product(graph, sol.num)
        den = sum_product(graph, sol.den) if sol.den is not None else None
        terms = dedupe([*num.factors, *(den.factors if den else ())])
        estimand = CounterfactualEstimand(((1.0, num),), ((1.0, den),) if den else ())
        bad = [t for t in terms if not t.identified]
        if not bad:
            listing = ", ".join(str(t) for t in terms)
            reason = (
                f"{query} is identified from the observed variables {obs}.{moved} The counterfactual graph "
                f"splits the event into c-component factors, each an interventional distribution that the "
                f"ID algorithm identifies from P(V): {listing}."
            )
            return CounterfactualIdentification(
                identified=True, reason=reason, terms=terms, estimand=estimand, **common
            )
        reason = (
            f"{query} is not identifiable from the observed variables {obs}.{moved} ID* reduces it to "
            f"{estimand}, which experiments could supply, but the factor {bad[0]} is not identifiable from "
            f"observational data: {bad[0].reason} (ID* identifies from all interventional distributions; "
            "from P(V) each of its factors must itself be identified.)"
        )
        result = CounterfactualIdentification(identified=False, reason=reason, terms=terms, **common)
    alt = binary_route(graph, query, problem)
    if alt is None:
        return result
    if assumptions.binary_treatment:
        return alt
    x = problem.delta[0].var
    hint = (
        f" If {x} is binary, the query follows from the causal effect of {x} by consistency: pass "
        f"assume_binary_treatment=True to identify it as {alt.estimand}."
    )
    return CounterfactualIdentification(
        query=query,
        graph=graph,
        identified=False,
        algorithm=result.algorithm,
        reason=result.reason + hint,
        terms=result.terms,
        counterfactual_graph=result.counterfactual_graph,
        admg=result.admg,
    )


def binary_route(graph: CausalGraph, query: Any, problem: Problem) -> CounterfactualIdentification | None:
    """P(γ_{X=x} | X=x') with X binary: [P_{X=x}(γ) - P(γ, X=x)] / P(X=x') (consistency)."""
    if len(problem.delta) != 1 or problem.delta[0].world:
        return None
    x_ev = problem.delta[0]
    x, x_obs = x_ev.var, x_ev.value
    worlds = {e.world for e in problem.gamma}
    if len(worlds) != 1:
        return None
    (world,) = worlds
    if dict(world).keys() != {x} or dict(world)[x] == x_obs or any(e.var == x for e in problem.gamma):
        return None
    x_set = dict(world)[x]
    gamma = tuple((e.var, e.value) for e in problem.gamma)
    effect = gate(graph, gamma, ((x, x_set),))
    joint = gate(graph, tuple(sorted((*gamma, (x, x_set)))), ())
    marg = gate(graph, ((x, x_obs),), ())
    terms = (effect, joint, marg)
    estimand = CounterfactualEstimand(
        ((1.0, SumProduct((), (effect,))), (-1.0, SumProduct((), (joint,)))),
        ((1.0, SumProduct((), (marg,))),),
    )
    common = {
        "query": query,
        "graph": graph,
        "algorithm": "binary treatment",
        "terms": terms,
        "assumptions": (f"{x} is binary (takes only the values {x_set:g} and {vtext(x_obs)})",),
        "admg": graph.to_admg(),
    }
    lead = (
        f"With {x} binary, P(γ_{{{x}={x_set:g}}}, {x}={vtext(x_obs)}) = P(γ_{{{x}={x_set:g}}}) - "
        f"P(γ, {x}={x_set:g}) by consistency, where γ = {', '.join(f'{k}={vtext(v)}' for k, v in gamma)}"
    )
    if effect.identified:
        reason = (
            f"{query} is identified from the observed variables {observed_text(graph)} under the assumption "
            f"that {x} is binary. {lead}, and {effect} is identified: {effect.reason}"
        )
        return CounterfactualIdentification(identified=True, reason=reason, estimand=estimand, **common)
    return None
