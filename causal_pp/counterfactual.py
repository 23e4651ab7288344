"""Counterfactual queries and their identification gate (ID* / IDC* on the latent projection).

A counterfactual asks about a unit in a world where some variables are set by intervention,
given what was observed about the same unit in the actual world:

* :class:`Counterfactual` -- P(outcome in the world ``do`` | ``factual`` observed), e.g.
  P(Y_{X=0}=y | X=1): what Y would have been under X=0 for units that had X=1;
* :class:`ETT` -- the effect of treatment on the treated, E[Y_{x} - Y_{x'} | X=x];
* :class:`PN`, :class:`PS`, :class:`PNS` -- probabilities of necessity, sufficiency, and
  necessity-and-sufficiency (Tian & Pearl 2000), for a binary treatment and outcome.

:func:`identify_counterfactual` decides whether such a query is a functional of the
distribution of the *observed* variables, P(V). It runs ID* / IDC* (Shpitser & Pearl 2007,
2008) on the latent projection, with four corrections that y0 0.2.11 lacks (see
``shared/notes/y0-pitfalls.md`` #5-#8):

1. The counterfactual graph is built here (parallel worlds, then Lemma 24 merging of copies
   whose parents are the same node or provably equal values), not taken from y0.
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
   produces is therefore passed to the interventional gate :func:`causal_pp.identify`, and
   the counterfactual is identified from P(V) only if every factor is (pitfall #8).

Two assumptions widen what is identified, each behind a named flag: ``assume_monotonic`` for
PN/PS/PNS (Tian & Pearl 2000), and ``assume_binary_treatment`` for queries of the form
P(outcome_{X=x} | X=x') with a single binary X, where P(y_x, x') = P(y_x) - P(y, x) (the
effect of treatment on the treated is then identified whenever P(y | do(x)) is; Shpitser &
Pearl 2009).

References
----------
Shpitser & Pearl (2007) "What counterfactuals can be tested", UAI.
Shpitser & Pearl (2008) "Complete identification methods for the causal hierarchy", JMLR 9.
Shpitser & Pearl (2009) "Effects of treatment on the treated: identification and
generalization", UAI.
Tian & Pearl (2000) "Probabilities of causation: bounds and identification", AMAI 28.
Correa, Lee & Bareinboim (2021) "Nested counterfactual identification from arbitrary
surrogate experiments", NeurIPS.
"""

from __future__ import annotations

import functools
import itertools as itt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .errors import (
    CausalPPError,
    EmptyInterventionError,
    LatentVariableQueryError,
    NotIdentifiableError,
    QueryError,
    UnknownVariableError,
)
from .graph import CausalGraph
from .queries import Interventional
from .queries import _scalar as _real  # one definition of "a query value"

__all__ = [
    "ETT",
    "PN",
    "PNS",
    "PS",
    "Counterfactual",
    "CounterfactualEstimand",
    "CounterfactualGraph",
    "CounterfactualIdentification",
    "CounterfactualQuery",
    "InterventionalTerm",
    "SumProduct",
    "counterfactual_graph",
    "identify_counterfactual",
]


# --- query validation helpers -----------------------------------------------------------


def _name(value: Any, role: str) -> str:
    if not isinstance(value, str) or not value:
        raise QueryError(f"{role} must be a non-empty variable name; got {value!r}.")
    return value


def _assign(value: Any, role: str, *, allow_none: bool = False) -> tuple[tuple[str, float | None], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise QueryError(f"{role} must be a mapping {{name: value}}; got {value!r}.")
    out: list[tuple[str, float | None]] = []
    for k, v in value.items():
        _name(k, f"{role} key")
        if v is None and allow_none:
            out.append((k, None))
        else:
            out.append((k, _real(v, f"{role}[{k!r}]")))
    return tuple(sorted(out))


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:g}"


def _world_text(world: Iterable[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={_fmt(v) if not isinstance(v, str) else v}" for k, v in world)


def _cf_text(var: str, world: Iterable[tuple[str, Any]]) -> str:
    w = _world_text(world)
    return f"{var}_{{{w}}}" if w else var


def _check_names(query: Any, graph: CausalGraph, roles: Iterable[tuple[str, Iterable[str], str]]) -> None:
    for role, names, verb in roles:
        for n in names:
            if n not in graph:
                raise UnknownVariableError(
                    f"{role} {n!r} of {query} is not a node of the graph; nodes are {list(graph.nodes)}."
                )
            if graph.is_latent(n):
                raise LatentVariableQueryError(
                    f"{query} would {verb} {n!r}, which is latent (never observed): a counterfactual "
                    "about it cannot be identified from observed data. Ask about an observed variable, "
                    "or mark it observed if you have measured it."
                )


def _binary_pair(treated: Any, control: Any) -> tuple[float, float]:
    t, c = _real(treated, "treated"), _real(control, "control")
    if t == c:
        raise QueryError(f"treated and control are both {t:g}; the query contrasts two different values.")
    return t, c


def _binary_outcome(value: Any) -> float:
    y = _real(value, "outcome_value")
    if y not in (0.0, 1.0):
        raise QueryError(
            f"outcome_value must be 0 or 1 (probabilities of causation are for a binary outcome coded "
            f"0/1; the complementary event is outcome = 1 - outcome_value); got {y:g}."
        )
    return y


# --- queries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Counterfactual:
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
    >>> from causal_pp.counterfactual import Counterfactual
    >>> print(Counterfactual("Y", do={"X": 0}, factual={"X": 1}))
    P(Y_{X=0}=y | X=1)
    >>> print(Counterfactual({"Y": 0}, do={"X": 0}, factual={"X": 1, "Y": 1}))
    P(Y_{X=0}=0 | X=1, Y=1)
    """

    outcome: tuple[tuple[str, float | None], ...]
    do: tuple[tuple[str, float], ...]
    factual: tuple[tuple[str, float], ...] = field(default=())

    def __init__(
        self,
        outcome: str | Iterable[str] | Mapping[str, Any],
        do: Mapping[str, Any],
        factual: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(outcome, str):
            outcome_ = ((_name(outcome, "outcome"), None),)
        elif isinstance(outcome, Mapping):
            outcome_ = _assign(outcome, "outcome", allow_none=True)
        else:
            try:
                names = [_name(n, "outcome") for n in outcome]
            except TypeError:
                raise QueryError(
                    f"outcome must be a name, names or {{name: value}}; got {outcome!r}."
                ) from None
            if len(set(names)) != len(names):
                raise QueryError(f"outcome lists a variable twice: {names}.")
            outcome_ = tuple(sorted((n, None) for n in names))
        if not outcome_:
            raise QueryError("outcome is empty; name the variable(s) whose counterfactual value you want.")
        do_ = _assign(do, "do")
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
        factual_ = _assign(factual, "factual")
        object.__setattr__(self, "outcome", outcome_)
        object.__setattr__(self, "do", do_)
        object.__setattr__(self, "factual", factual_)

    @property
    def outcomes(self) -> tuple[str, ...]:
        """Outcome names."""
        return tuple(k for k, _ in self.outcome)

    @property
    def treatments(self) -> tuple[str, ...]:
        """Names set by the hypothetical intervention."""
        return tuple(k for k, _ in self.do)

    @property
    def conditions(self) -> tuple[str, ...]:
        """Names observed in the actual world."""
        return tuple(k for k, _ in self.factual)

    @property
    def interventions(self) -> dict[str, float]:
        """``do`` as a dict."""
        return dict(self.do)

    @property
    def evidence(self) -> dict[str, float]:
        """``factual`` as a dict."""
        return dict(self.factual)

    def validate(self, graph: CausalGraph) -> Counterfactual:
        """Check the names against ``graph``; returns the query so calls can chain.

        Raises
        ------
        UnknownVariableError
            A name is not a node of the graph.
        LatentVariableQueryError
            The query intervenes on, observes or asks about a latent variable.
        """
        _check_names(
            self,
            graph,
            (
                ("outcome", self.outcomes, "ask about"),
                ("intervention target", self.treatments, "intervene on"),
                ("factual variable", self.conditions, "condition on"),
            ),
        )
        return self

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
            value = _generic(k) if v is None else f"{v:g}"
            parts.append(f"{_cf_text(k, world)}={value}")
        given = ", ".join(f"{k}={v:g}" for k, v in self.factual)
        return f"P({', '.join(parts)}{' | ' + given if given else ''})"


def _generic(name: str) -> str:
    """Display symbol of an outcome's free value: ``Y`` -> ``y``."""
    low = name.lower()
    return low if low != name else f"{name}'"


@dataclass(frozen=True)
class ETT:
    """The effect of treatment on the treated, E[Y_{X=treated} - Y_{X=control} | X=treated].

    Its first term is E[Y | X=treated] by consistency; the second, built on
    P(Y_{X=control} | X=treated), is the one that needs identification.

    Examples
    --------
    >>> from causal_pp.counterfactual import ETT
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

    def __init__(self, treatment: str, outcome: str, treated: Any = 1.0, control: Any = 0.0) -> None:
        t, y = _name(treatment, "treatment"), _name(outcome, "outcome")
        if t == y:
            raise QueryError(f"{t!r} is both the treatment and the outcome of the ETT.")
        tr, co = _binary_pair(treated, control)
        object.__setattr__(self, "treatment", t)
        object.__setattr__(self, "outcome", y)
        object.__setattr__(self, "treated", tr)
        object.__setattr__(self, "control", co)

    def terms(self) -> tuple[Counterfactual, Counterfactual]:
        """(P(Y_{treated} | X=treated), P(Y_{control} | X=treated)): the two distributions contrasted."""
        seen = {self.treatment: self.treated}
        return (
            Counterfactual(self.outcome, {self.treatment: self.treated}, seen),
            Counterfactual(self.outcome, {self.treatment: self.control}, seen),
        )

    def validate(self, graph: CausalGraph) -> ETT:
        """Check the names against ``graph`` (see :meth:`Counterfactual.validate`)."""
        for t in self.terms():
            t.validate(graph)
        return self

    def __str__(self) -> str:
        x, y = self.treatment, self.outcome
        return f"E[{y}_{{{x}={self.treated:g}}} - {y}_{{{x}={self.control:g}}} | {x}={self.treated:g}]"


@dataclass(frozen=True)
class _CausationBase:
    treatment: str
    outcome: str
    treated: float = 1.0
    control: float = 0.0
    outcome_value: float = 1.0

    def __init__(
        self, treatment: str, outcome: str, treated: Any = 1.0, control: Any = 0.0, outcome_value: Any = 1.0
    ) -> None:
        t, y = _name(treatment, "treatment"), _name(outcome, "outcome")
        if t == y:
            raise QueryError(f"{t!r} is both the treatment and the outcome.")
        tr, co = _binary_pair(treated, control)
        object.__setattr__(self, "treatment", t)
        object.__setattr__(self, "outcome", y)
        object.__setattr__(self, "treated", tr)
        object.__setattr__(self, "control", co)
        object.__setattr__(self, "outcome_value", _binary_outcome(outcome_value))

    @property
    def _y(self) -> float:
        return self.outcome_value

    @property
    def _not_y(self) -> float:
        return 1.0 - self.outcome_value

    def validate(self, graph: CausalGraph) -> Any:
        """Check the names against ``graph`` (see :meth:`Counterfactual.validate`)."""
        _check_names(
            self,
            graph,
            (("outcome", (self.outcome,), "ask about"), ("treatment", (self.treatment,), "intervene on")),
        )
        return self


@dataclass(frozen=True, init=False)
class PN(_CausationBase):
    """Probability of necessity, P(Y_{X=control} = y' | X=treated, Y=y), y = ``outcome_value``.

    Among units that were treated and had the outcome, the share that would not have had it
    without treatment. Binary treatment (``treated``/``control``) and outcome (0/1). Not
    identified from P(V) without monotonicity, even in X -> Y with no confounding.

    Examples
    --------
    >>> from causal_pp.counterfactual import PN
    >>> print(PN("X", "Y"))
    PN = P(Y_{X=0}=0 | X=1, Y=1)
    """

    def as_counterfactual(self) -> Counterfactual:
        """The query as a :class:`Counterfactual`."""
        return Counterfactual(
            {self.outcome: self._not_y},
            {self.treatment: self.control},
            {self.treatment: self.treated, self.outcome: self._y},
        )

    def __str__(self) -> str:
        return f"PN = {self.as_counterfactual()}"


@dataclass(frozen=True, init=False)
class PS(_CausationBase):
    """Probability of sufficiency, P(Y_{X=treated} = y | X=control, Y=y'), y = ``outcome_value``.

    Among untreated units without the outcome, the share that treatment would have given it.

    Examples
    --------
    >>> from causal_pp.counterfactual import PS
    >>> print(PS("X", "Y"))
    PS = P(Y_{X=1}=1 | X=0, Y=0)
    """

    def as_counterfactual(self) -> Counterfactual:
        """The query as a :class:`Counterfactual`."""
        return Counterfactual(
            {self.outcome: self._y},
            {self.treatment: self.treated},
            {self.treatment: self.control, self.outcome: self._not_y},
        )

    def __str__(self) -> str:
        return f"PS = {self.as_counterfactual()}"


@dataclass(frozen=True, init=False)
class PNS(_CausationBase):
    """Probability of necessity and sufficiency, P(Y_{X=treated} = y, Y_{X=control} = y').

    A joint over two counterfactual worlds: the share of units for which treatment is both
    necessary and sufficient for the outcome y = ``outcome_value``.

    Examples
    --------
    >>> from causal_pp.counterfactual import PNS
    >>> print(PNS("X", "Y"))
    PNS = P(Y_{X=1}=1, Y_{X=0}=0)
    """

    def __str__(self) -> str:
        x, y = self.treatment, self.outcome
        return (
            f"PNS = P({y}_{{{x}={self.treated:g}}}={self._y:g}, {y}_{{{x}={self.control:g}}}={self._not_y:g})"
        )


CounterfactualQuery = Counterfactual | ETT | PN | PS | PNS
"""Any query :func:`identify_counterfactual` accepts."""


# --- the counterfactual engine: events, symbols, the projection --------------------------


@dataclass(frozen=True, order=True)
class _Sym:
    """A symbolic value: a summation index (``kind="sum"``) or an outcome's free value."""

    name: str
    kind: str = "sum"

    def __str__(self) -> str:
        return self.name


_Value = float | _Sym


def _vtext(v: _Value) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class _Ev:
    """One counterfactual event var_{world} = value."""

    var: str
    world: tuple[tuple[str, float], ...]
    value: _Value

    def __str__(self) -> str:
        return f"{_cf_text(self.var, self.world)}={_vtext(self.value)}"


@dataclass(frozen=True)
class _Problem:
    """P(gamma | delta) for conjunctions of counterfactual events."""

    gamma: tuple[_Ev, ...]
    delta: tuple[_Ev, ...] = ()

    def __str__(self) -> str:
        g = ", ".join(str(e) for e in self.gamma)
        d = ", ".join(str(e) for e in self.delta)
        return f"P({g}{' | ' + d if d else ''})"


@dataclass(frozen=True)
class _Proj:
    """The latent projection in plain names."""

    nodes: tuple[str, ...]
    parents: Mapping[str, tuple[str, ...]]
    bidirected: frozenset[frozenset[str]]
    order: tuple[str, ...]

    def effective(self, var: str, world: Iterable[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
        """The interventions of ``world`` that can affect ``var`` (a directed path avoiding the others)."""
        w = dict(world)
        hit: set[str] = set()
        seen, stack = {var}, [var]
        while stack:
            v = stack.pop()
            for p in self.parents[v]:
                if p in w:
                    hit.add(p)
                elif p not in seen:
                    seen.add(p)
                    stack.append(p)
        return tuple(sorted((k, w[k]) for k in hit))


@functools.lru_cache(maxsize=1024)
def _projection(graph: CausalGraph) -> _Proj:
    directed, bidirected = graph.projected_edges()
    nodes = graph.observed
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in directed:
        parents[b].append(a)
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(directed)
    order = tuple(nx.lexicographical_topological_sort(g))
    return _Proj(nodes, {k: tuple(sorted(v)) for k, v in parents.items()}, frozenset(bidirected), order)


def _resolve(v: _Value | None, subst: Mapping[_Sym, _Value]) -> _Value | None:
    while isinstance(v, _Sym) and v in subst:
        v = subst[v]
    return v


def _unify(a: _Value | None, b: _Value | None, subst: dict[_Sym, _Value]) -> tuple[bool, _Value | None]:
    """Values of one random variable seen twice: (consistent?, the common value). Updates ``subst``."""
    a, b = _resolve(a, subst), _resolve(b, subst)
    if a is None:
        return True, b
    if b is None or a == b:
        return True, a
    if isinstance(a, float) and isinstance(b, float):
        return False, None
    if isinstance(a, _Sym) and isinstance(b, _Sym):
        keep, drop = (b, a) if (a.kind == "sum" and b.kind != "sum") else (a, b)
        subst[drop] = keep
        return True, keep
    sym, num = (a, b) if isinstance(a, _Sym) else (b, a)
    subst[sym] = num  # type: ignore[index]
    return True, num


# --- the counterfactual graph (make-cg) ---------------------------------------------------

_Node = tuple[str, tuple[tuple[str, float], ...]]  # (variable, world of the representative copy)
_Parent = tuple[str, Any]  # ("c", value) set by intervention, ("o", value) fixed by rule 2, ("n", node)


@dataclass(frozen=True)
class _Zero:
    """The event is inconsistent: its probability is 0. ``reason`` says why."""

    reason: str


@dataclass
class _CG:
    """A counterfactual graph under construction (mutable; private)."""

    proj: _Proj
    nodes: set[_Node]
    parents: dict[_Node, dict[str, _Parent]]
    label: dict[_Node, str]

    def ancestors(self, of: Iterable[_Node]) -> set[_Node]:
        seen, stack = set(of), list(of)
        while stack:
            for kind, p in self.parents[stack.pop()].values():
                if kind == "n" and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    def linked(self, a: _Node, b: _Node) -> bool:
        """Whether two random nodes share an exogenous cause (a bidirected edge)."""
        return a[0] == b[0] or frozenset((a[0], b[0])) in self.proj.bidirected

    def districts(self, nodes: Iterable[_Node]) -> list[list[_Node]]:
        nodes = sorted(nodes, key=self.label.__getitem__)
        g = nx.Graph()
        g.add_nodes_from(nodes)
        g.add_edges_from((a, b) for a, b in itt.combinations(nodes, 2) if self.linked(a, b))
        comps = [sorted(c, key=self.label.__getitem__) for c in nx.connected_components(g)]
        return sorted(comps, key=lambda c: self.label[c[0]])

    def fix(self, n: _Node, value: _Value) -> None:
        """Rule 2 made concrete: ``n`` becomes a constant; its children now see ``value``."""
        self.nodes.discard(n)
        for ps in self.parents.values():
            for p, (kind, q) in list(ps.items()):
                if kind == "n" and q == n:
                    ps[p] = ("o", value)


def _label(proj: _Proj, n: _Node) -> str:
    return _cf_text(n[0], proj.effective(n[0], n[1]))


def _make_cg(
    proj: _Proj, events: Sequence[_Ev], subst: dict[_Sym, _Value]
) -> tuple[_CG, list[_Node], dict[_Node, _Value]] | _Zero:
    """Shpitser & Pearl's make-cg: parallel worlds, then merge copies that are one random variable.

    Copies of a variable in different worlds share its exogenous noise and latent confounders.
    In topological order, copies whose parents are the same node, or take the same known value
    (set by an intervention, or observed in the event), are merged (Lemma 24); a merge whose
    events disagree makes the whole event inconsistent. Returns the graph restricted to the
    ancestors of the event nodes, the node standing for each event (in order), and the event
    values keyed by node.
    """
    worlds = tuple(sorted({e.world for e in events} | {()}, key=lambda w: (len(w), w)))
    find: dict[_Node, _Node] = {}
    members: dict[_Node, list[_Node]] = {}
    value: dict[_Node, _Value] = {}
    for w in worlds:
        wd = dict(w)
        for v in proj.nodes:
            if v not in wd:
                find[(v, w)] = (v, w)
                members[(v, w)] = [(v, w)]
    for e in events:
        n = (e.var, e.world)
        ok, val = _unify(value.get(n), e.value, subst)
        if not ok:
            return _Zero(f"{_label(proj, n)} cannot equal both {_vtext(value[n])} and {_vtext(e.value)}")
        value[n] = val  # type: ignore[assignment]
    for v in proj.order:
        groups: dict[tuple[Any, ...], list[_Node]] = {}
        for w in worlds:
            wd = dict(w)
            if v in wd:
                continue
            sig: list[tuple[Any, ...]] = []
            for p in proj.parents[v]:
                if p in wd:
                    sig.append((p, "v", wd[p]))
                    continue
                r = find[(p, w)]
                pv = _resolve(value.get(r), subst)
                sig.append((p, "v", pv) if isinstance(pv, float) else (p, "n", r))
            groups.setdefault(tuple(sig), []).append((v, w))
        for group in groups.values():
            keep = group[0]
            for other in group[1:]:
                ok, val = _unify(value.get(keep), value.get(other), subst)
                if not ok:
                    a, b = _label(proj, keep), _label(proj, other)
                    return _Zero(
                        f"{a} and {b} are the same random variable here (same mechanism, same exogenous "
                        f"noise, parents equal in value), yet the event asks for {a}="
                        f"{_vtext(value[keep])} and {b}={_vtext(value[other])}"
                    )
                find[other] = keep
                members[keep] += members.pop(other)
                value.pop(other, None)
                if val is not None:
                    value[keep] = val
    parents: dict[_Node, dict[str, _Parent]] = {}
    for r, ms in members.items():
        v, rep = r[0], r[1]
        ps: dict[str, _Parent] = {}
        for p in proj.parents[v]:
            fixed = [dict(w)[p] for _, w in ms if p in dict(w)]
            ps[p] = ("c", fixed[0]) if fixed else ("n", find[(p, rep)])
        parents[r] = ps
    roots = [find[(e.var, e.world)] for e in events]
    event_nodes: dict[_Node, _Value] = {r: _resolve(value[r], subst) for r in roots}  # type: ignore[misc]
    cg = _CG(proj, set(), parents, {})
    cg.nodes = cg.ancestors(event_nodes)
    labels: dict[str, int] = {}
    for n in sorted(cg.nodes, key=lambda n: (n[0], len(n[1]), n[1])):
        text = _label(proj, n)
        labels[text] = labels.get(text, 0) + 1
        cg.label[n] = text if labels[text] == 1 else f"{text}#{labels[text]}"
    return cg, roots, event_nodes


# --- ID* factorisation ------------------------------------------------------------------


@dataclass(frozen=True)
class _Factor:
    outcome: tuple[tuple[str, _Value], ...]
    do: tuple[tuple[str, _Value], ...]
    nodes: tuple[str, ...]  # labels of the counterfactual-graph nodes it covers

    def __str__(self) -> str:
        return _term_text(self.outcome, self.do)


def _term_text(outcome: Iterable[tuple[str, Any]], do: Iterable[tuple[str, Any]]) -> str:
    out = ", ".join(f"{k}={_vtext(v) if not isinstance(v, str) else v}" for k, v in outcome)
    d = _world_text(do)
    return f"P_{{{d}}}({out})" if d else f"P({out})"


@dataclass(frozen=True)
class _Conflict:
    """A c-component whose factor is inconsistent: ``var`` takes two values within it."""

    component: tuple[str, ...]
    var: str
    first: tuple[str, str, _Node]  # (value text, how, node)
    second: tuple[str, str, _Node]


@dataclass(frozen=True)
class _Expr:
    """Sum over ``sums`` of the product of ``factors`` (a sum-product of interventional terms)."""

    sums: tuple[tuple[_Sym, str], ...]
    factors: tuple[_Factor, ...]

    def __str__(self) -> str:
        body = " · ".join(str(f) for f in self.factors) or "1"
        if not self.sums:
            return body
        return f"Σ_{{{', '.join(str(s) for s, _ in self.sums)}}} {body}"


def _factorize(
    cg: _CG, events: Mapping[_Node, _Value], base_subst: Mapping[_Sym, _Value]
) -> _Expr | _Zero | _Conflict:
    """ID* lines 6-9 on the counterfactual graph: one factor per c-component.

    Every random ancestor of the event that is not in the event gets a summation index. In
    each c-component, copies of one variable whose parents take equal values are one random
    variable (their values are unified; the event is impossible if they disagree). A component
    is consistent if every variable then takes a single value across the component's nodes and
    the values their outside parents take; its factor is P_{t}(s) with s the component's
    values and t the outside parents' values (ctf-factors of Correa, Lee & Bareinboim 2021).
    """
    subst: dict[_Sym, _Value] = dict(base_subst)
    nodes = cg.ancestors(events) & (cg.nodes | set(events))
    if all(kind == "n" for n in nodes for kind, _ in cg.parents[n].values()):
        # no intervention reaches the event: it is a margin of the observed distribution
        observed = tuple(sorted((n[0], _resolve(v, subst)) for n, v in events.items()))  # type: ignore[misc]
        return _Expr((), (_Factor(observed, (), tuple(sorted(cg.label[n] for n in events))),))
    vals: dict[_Node, _Value] = {n: _resolve(v, subst) for n, v in events.items()}  # type: ignore[misc]
    taken = {str(v) for v in vals.values() if isinstance(v, _Sym)}
    for n in sorted(nodes - set(events), key=cg.label.__getitem__):
        base = _generic(n[0])
        name = base
        while name in taken:
            name += "'"
        taken.add(name)
        vals[n] = _Sym(name, "sum")

    def val(n: _Node) -> _Value:
        return _resolve(vals[n], subst)  # type: ignore[return-value]

    def pval(n: _Node, p: str) -> _Value:
        kind, q = cg.parents[n][p]
        return val(q) if kind == "n" else _resolve(q, subst)  # type: ignore[return-value]

    comps = cg.districts(nodes)
    changed = True
    while changed:
        changed = False
        for comp in comps:
            seen: dict[tuple[Any, ...], _Node] = {}
            for n in list(comp):
                key = (n[0], tuple((p, pval(n, p)) for p in sorted(cg.parents[n])))
                if key not in seen:
                    seen[key] = n
                    continue
                m = seen[key]
                ok, _ = _unify(val(m), val(n), subst)
                if not ok:
                    return _Zero(
                        f"{cg.label[m]} and {cg.label[n]} are the same random variable here (their parents "
                        f"take equal values and they share {n[0]}'s exogenous noise), yet the event asks for "
                        f"{_vtext(val(m))} and {_vtext(val(n))}"
                    )
                comp.remove(n)
                changed = True
    factors: list[_Factor] = []
    for comp in comps:
        inside = set(comp)
        seen_at: dict[str, dict[str, tuple[str, _Node, bool]]] = {}
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
                seen_at.setdefault(var, {}).setdefault(_vtext(v), (how, n, as_parent))
        clashes = [(var, at) for var, at in seen_at.items() if len(at) > 1]
        if clashes:
            # report a clash on a parent's setting first: it is the cause, event clashes follow from it
            var, at = min(clashes, key=lambda c: (not any(x[2] for x in c[1].values()), c[0]))
            (v1, (h1, n1, _)), (v2, (h2, n2, _)) = list(at.items())[:2]
            return _Conflict(tuple(cg.label[x] for x in comp), var, (v1, h1, n1), (v2, h2, n2))
        s = {n[0]: val(n) for n in comp}
        t: dict[str, _Value] = {}
        for n in comp:
            for p, (kind, q) in cg.parents[n].items():
                if p not in s and not (kind == "n" and q in inside):
                    t[p] = pval(n, p)
        factors.append(
            _Factor(tuple(sorted(s.items())), tuple(sorted(t.items())), tuple(cg.label[n] for n in comp))
        )
    used: dict[_Sym, str] = {}
    for f in factors:
        for var, v in (*f.outcome, *f.do):
            if isinstance(v, _Sym) and v.kind == "sum":
                used.setdefault(v, var)
    return _Expr(tuple(sorted(used.items(), key=lambda kv: kv[0].name)), tuple(factors))


def _rule2(cg: _CG, gamma: Iterable[_Node], n: _Node, rest: Iterable[_Node]) -> bool:
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


# --- solving one problem ----------------------------------------------------------------


@dataclass
class _Solution:
    """The outcome of IDC* on one problem, before gating (private)."""

    status: str  # "zero", "one", "expr", "conflict"
    problem: _Problem
    reason: str = ""
    cg: _CG | None = None
    graph: CounterfactualGraph | None = None
    moved: list[str] = field(default_factory=list)
    num: _Expr | None = None
    den: _Expr | None = None
    conflict: _Conflict | None = None


def _normalize(events: Iterable[_Ev], subst: dict[_Sym, _Value]) -> list[_Ev] | _Zero:
    """ID* lines 2-3: X_{x..}=x' is impossible (effectiveness); X_{x..}=x always holds."""
    out = []
    for e in events:
        w = dict(e.world)
        if e.var not in w:
            out.append(e)
            continue
        ok, _ = _unify(e.value, w[e.var], subst)
        if not ok:
            return _Zero(
                f"{_cf_text(e.var, e.world)}={_vtext(e.value)} is impossible: a variable set to "
                f"{w[e.var]:g} by intervention takes the value {w[e.var]:g} (effectiveness)"
            )
    return out


def _solve(proj: _Proj, problem: _Problem) -> _Solution:
    """IDC* (Shpitser & Pearl 2008) with the corrections listed in the module docstring."""
    subst: dict[_Sym, _Value] = {}
    delta = _normalize(problem.delta, subst)
    if isinstance(delta, _Zero):
        raise QueryError(f"the evidence of {problem} has probability 0: {delta.reason}.")
    if delta:
        only = _make_cg(proj, delta, dict(subst))
        if isinstance(only, _Zero):
            raise QueryError(f"the evidence of {problem} has probability 0: {only.reason}.")
    gamma = _normalize(problem.gamma, subst)
    if isinstance(gamma, _Zero):
        return _Solution("zero", problem, gamma.reason)
    built = _make_cg(proj, [*gamma, *delta], subst)
    if isinstance(built, _Zero):
        return _Solution("zero", problem, built.reason)
    cg, roots, values = built
    snapshot = _snapshot(cg, values)
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
        return _Solution("one", problem, why, cg=cg, graph=snapshot)
    moved: list[str] = []
    progress = True
    while progress:
        progress = False
        for n in sorted(dnodes, key=cg.label.__getitem__):
            if _rule2(cg, gnodes, n, set(dnodes) - {n}):
                moved.append(f"{cg.label[n]}={_vtext(dnodes[n])}")
                cg.fix(n, dnodes.pop(n))
                progress = True
                break
    num = _factorize(cg, {**gnodes, **dnodes}, subst)
    if isinstance(num, _Zero):
        return _Solution("zero", problem, num.reason, cg=cg, graph=snapshot, moved=moved)
    if isinstance(num, _Conflict):
        return _Solution("conflict", problem, cg=cg, graph=snapshot, moved=moved, conflict=num)
    den = None
    if dnodes:
        d = _factorize(cg, dnodes, subst)
        if isinstance(d, _Zero):  # pragma: no cover - the evidence was checked above
            raise QueryError(f"the evidence of {problem} has probability 0: {d.reason}.")
        if isinstance(d, _Conflict):
            return _Solution("conflict", problem, cg=cg, graph=snapshot, moved=moved, conflict=d)
        den = d
    return _Solution("expr", problem, cg=cg, graph=snapshot, moved=moved, num=num, den=den)


# --- public results -----------------------------------------------------------------------

_Public = float | str  # a value in a term: a number, or the name of a symbol


def _public(v: _Value) -> _Public:
    return v if isinstance(v, float) else str(v)


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
    >>> from causal_pp.counterfactual import InterventionalTerm
    >>> print(InterventionalTerm((("Y", "y"),), (("X", 0.0),), True))
    P_{X=0}(Y=y)
    """

    outcome: tuple[tuple[str, _Public], ...]
    do: tuple[tuple[str, _Public], ...]
    identified: bool
    reason: str = field(default="", compare=False, repr=False)

    @property
    def observational(self) -> bool:
        """True for a plain observational probability (nothing intervened on)."""
        return not self.do

    def __str__(self) -> str:
        return _term_text(self.outcome, self.do)


Prob = Callable[[Mapping[str, float], Mapping[str, float]], float]
"""``prob(outcome, do)`` returns P_{do}(outcome) for concrete values."""


def _bind(pairs: Iterable[tuple[str, _Public]], env: Mapping[str, float]) -> dict[str, float]:
    return {k: (env[v] if isinstance(v, str) else v) for k, v in pairs}


@dataclass(frozen=True)
class SumProduct:
    """Σ over ``sums`` of the product of ``factors``: the shape every ID* estimand has.

    Examples
    --------
    >>> from causal_pp.counterfactual import InterventionalTerm, SumProduct
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
                term *= prob(_bind(f.outcome, env), _bind(f.do, env))
                if term == 0.0:
                    break
            total += term
        return total


def _linear_text(parts: tuple[tuple[float, SumProduct], ...]) -> str:
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
    >>> from causal_pp.counterfactual import CounterfactualEstimand, InterventionalTerm, SumProduct
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
        num = _linear_text(self.numerator)
        if not self.denominator:
            return num
        den = _linear_text(self.denominator)
        num = f"({num})" if len(self.numerator) > 1 else f"[{num}]" if self.numerator[0][1].sums else num
        den = f"({den})" if len(self.denominator) > 1 else f"[{den}]" if self.denominator[0][1].sums else den
        return f"{num} / {den}"

    def evaluate(
        self, prob: Prob, domains: Mapping[str, Sequence[float]], values: Mapping[str, float] | None = None
    ) -> float:
        """Evaluate the estimand (see :meth:`SumProduct.evaluate`).

        Examples
        --------
        >>> from causal_pp.counterfactual import CounterfactualEstimand
        >>> CounterfactualEstimand(()).evaluate(lambda o, d: 1.0, {})
        0.0
        """
        num = sum(c * sp.evaluate(prob, domains, values) for c, sp in self.numerator)
        if not self.denominator:
            return float(num)
        den = sum(c * sp.evaluate(prob, domains, values) for c, sp in self.denominator)
        return float(num / den)


@dataclass(frozen=True)
class CounterfactualGraph:
    """The counterfactual graph of an event (make-cg): merged parallel worlds, ancestors only.

    Attributes
    ----------
    nodes
        Labels of the random nodes, e.g. ``"Y_{X=0}"`` (Y in the world do(X=0)) and ``"X"``
        (factual). Copies that are provably one random variable are merged into one node.
    directed
        ``(parent, child)`` edges between random nodes.
    fixed
        ``(node, parent variable, value)``: parents set by an intervention in that node's world.
    bidirected
        Pairs sharing an exogenous cause: a latent confounder of the latent projection, or
        the same variable's own noise (one unit's Y in two worlds).
    event
        ``(node, value)`` pairs of the event.
    inconsistency
        If the event is impossible, why (then the graph is empty).

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.counterfactual import Counterfactual, counterfactual_graph
    >>> g = counterfactual_graph(CausalGraph.parse("X -> Y; X <-> Y"), Counterfactual("Y", {"X": 0}, {"X": 1}))
    >>> g.nodes, g.bidirected
    (('X', 'Y_{X=0}'), (('X', 'Y_{X=0}'),))
    """

    nodes: tuple[str, ...]
    directed: tuple[tuple[str, str], ...]
    fixed: tuple[tuple[str, str, _Public], ...]
    bidirected: tuple[tuple[str, str], ...]
    event: tuple[tuple[str, _Public], ...]
    inconsistency: str | None = None

    def districts(self) -> tuple[frozenset[str], ...]:
        """The c-components (bidirected-connected sets of nodes), sorted."""
        g = nx.Graph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(self.bidirected)
        return tuple(sorted((frozenset(c) for c in nx.connected_components(g)), key=sorted))

    def __str__(self) -> str:
        if self.inconsistency:
            return f"inconsistent event: {self.inconsistency}"
        edges = [f"{a} -> {b}" for a, b in self.directed]
        edges += [f"{p}={_vtext(v) if not isinstance(v, str) else v} -> {n}" for n, p, v in self.fixed]
        edges += [f"{a} <-> {b}" for a, b in self.bidirected]
        lone = [n for n in self.nodes if not any(n in e[:2] for e in (*self.directed, *self.bidirected))]
        return "; ".join(edges + [n for n in lone if not any(f[0] == n for f in self.fixed)])


def _snapshot(cg: _CG, events: Mapping[_Node, _Value]) -> CounterfactualGraph:
    nodes = sorted(cg.nodes, key=cg.label.__getitem__)
    directed, fixed = [], []
    for n in nodes:
        for p, (kind, q) in sorted(cg.parents[n].items()):
            if kind == "n" and q in cg.nodes:
                directed.append((cg.label[q], cg.label[n]))
            elif kind in ("c", "o"):
                fixed.append((cg.label[n], p, _public(q)))
    bidirected = [(cg.label[a], cg.label[b]) for a, b in itt.combinations(nodes, 2) if cg.linked(a, b)]
    return CounterfactualGraph(
        tuple(cg.label[n] for n in nodes),
        tuple(sorted(directed)),
        tuple(fixed),
        tuple(sorted(tuple(sorted(e)) for e in bidirected)),  # type: ignore[misc]
        tuple((cg.label[n], _public(v)) for n, v in sorted(events.items(), key=lambda kv: cg.label[kv[0]])),
    )


@dataclass(frozen=True)
class CounterfactualIdentification:
    """The verdict of :func:`identify_counterfactual` on one query.

    Attributes
    ----------
    query
        The query asked.
    graph
        The causal graph it was asked of.
    identified
        True if the query is a functional of the distribution of the observed variables.
    algorithm
        ``"ID*"`` (no evidence), ``"IDC*"`` (with factual evidence), or, when an assumption
        did the work, ``"monotonicity (Tian & Pearl 2000)"`` or ``"binary treatment"``.
    reason
        Plain-words justification: the confounded worlds for a refusal, the factorisation for
        an identification.
    terms
        The interventional factors P_{t}(s) the estimand is made of, each with its own verdict
        from observational data (every one must be identified for the query to be).
    estimand
        The formula (:class:`CounterfactualEstimand`), or None when refused or for an ETT
        (whose ``parts`` carry one each).
    value
        0.0 for an inconsistent event (identified: its probability is 0 in every model), 1.0
        when the evidence determines the outcome, else None.
    assumptions
        The assumptions the verdict relies on beyond the graph (e.g. monotonicity).
    counterfactual_graph
        The counterfactual graph the verdict was decided on (None for formula-only routes).
    parts
        For an :class:`ETT`, the verdicts on its two counterfactual terms.
    admg
        The latent projection (y0 ``NxMixedGraph``).
    """

    query: Any
    graph: CausalGraph
    identified: bool
    algorithm: str
    reason: str
    terms: tuple[InterventionalTerm, ...] = ()
    estimand: CounterfactualEstimand | None = None
    value: float | None = None
    assumptions: tuple[str, ...] = ()
    counterfactual_graph: CounterfactualGraph | None = field(default=None, compare=False, repr=False)
    parts: tuple[CounterfactualIdentification, ...] = field(default=(), compare=False, repr=False)
    admg: Any = field(default=None, compare=False, repr=False)

    @property
    def formula(self) -> str | None:
        """The estimand as text (for an ETT, the contrast of its two terms)."""
        if isinstance(self.query, ETT) and self.parts and self.identified:
            q = self.query
            x, y = q.treatment, q.outcome
            return (
                f"E[{y} | {x}={q.treated:g}] - Σ_{{{_generic(y)}}} {_generic(y)} · P({y}_{{{x}={q.control:g}}}="
                f"{_generic(y)} | {x}={q.treated:g}), with P({y}_{{{x}={q.control:g}}}={_generic(y)} | "
                f"{x}={q.treated:g}) = {self.parts[1].estimand}"
            )
        return None if self.estimand is None else str(self.estimand)

    def __str__(self) -> str:
        verdict = "identified" if self.identified else "NOT identified"
        lines = [f"{self.query}: {verdict} ({self.algorithm} on the latent projection)", self.reason]
        if self.identified and self.formula is not None:
            lines.append(f"estimand: {self.formula}")
        return "\n".join(lines)


# --- verdicts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flags:
    monotonic: bool
    binary: bool


def _gate(
    graph: CausalGraph, outcome: Iterable[tuple[str, _Value]], do: Iterable[tuple[str, _Value]]
) -> InterventionalTerm:
    """Identify P_{do}(outcome) from P(V) with the interventional gate (:func:`causal_pp.identify`)."""
    outcome, do = tuple(outcome), tuple(do)
    out_p = tuple((k, _public(v)) for k, v in outcome)
    do_p = tuple((k, _public(v)) for k, v in do)
    if not do:
        return InterventionalTerm(
            out_p, do_p, True, "observational: a margin of the observed distribution P(V)"
        )
    from .identification import identify  # here, not at import: identification may import this module

    query = Interventional([k for k, _ in outcome], {k: v if isinstance(v, float) else 0.0 for k, v in do})
    verdict = identify(graph, query, strict=False)
    return InterventionalTerm(out_p, do_p, verdict.identified, verdict.reason)


def _sp(graph: CausalGraph, expr: _Expr) -> SumProduct:
    return SumProduct(
        tuple((str(s), var) for s, var in expr.sums),
        tuple(_gate(graph, f.outcome, f.do) for f in expr.factors),
    )


def _dedupe(terms: Iterable[InterventionalTerm]) -> tuple[InterventionalTerm, ...]:
    out: dict[str, InterventionalTerm] = {}
    for t in terms:
        out.setdefault(str(t), t)
    return tuple(out.values())


def _observed(graph: CausalGraph) -> str:
    return "{" + ", ".join(graph.observed) + "}"


def _latents_between(graph: CausalGraph, a: str, b: str) -> list[str]:
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


def _world_of(label: str) -> str:
    if "_{" not in label:
        return "the factual world"
    return f"the world do({label[label.index('_{') + 2 : -1]})"


def _explain_conflict(graph: CausalGraph, sol: _Solution) -> str:
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
                    f"{la} ({_world_of(la)}) and {lb} ({_world_of(lb)}) are the same unit's {a[0]} and share "
                    f"its exogenous noise"
                )
            else:
                lat = _latents_between(graph, a[0], b[0])
                via = f"the latent {', '.join(lat)}" if lat else "a latent confounder"
                hops.append(
                    f"{la} and {lb} are confounded through {a[0]} <-> {b[0]}: {la} ({_world_of(la)}) and "
                    f"{lb} ({_world_of(lb)}) share {via}"
                )
    link = ("; ".join(hops) + ". ") if hops else ""
    return (
        f"In the counterfactual graph, {{{', '.join(c.component)}}} form one c-component. {link}Within it "
        f"{c.var} would have to be {v1} ({how1}) and {v2} ({how2}) for the same unit, a joint that no "
        "observational study or experiment measures: two models can agree on every observational and "
        "interventional distribution yet differ on this query (ID* line 8, Shpitser & Pearl 2008; Correa, "
        "Lee & Bareinboim 2021; complete for variables of unrestricted cardinality)."
    )


def _run(graph: CausalGraph, query: Any, problem: _Problem, flags: _Flags) -> CounterfactualIdentification:
    """ID*/IDC* on one problem, every factor gated; the binary-treatment route as a fallback."""
    proj = _projection(graph)
    algorithm = "IDC*" if problem.delta else "ID*"
    obs = _observed(graph)
    admg = graph.to_admg()
    sol = _solve(proj, problem)
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
            f"{_explain_conflict(graph, sol)}"
        )
        result = CounterfactualIdentification(identified=False, reason=reason, **common)
    else:
        assert sol.num is not None
        num = _sp(graph, sol.num)
        den = _sp(graph, sol.den) if sol.den is not None else None
        terms = _dedupe([*num.factors, *(den.factors if den else ())])
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
    alt = _binary_route(graph, query, problem)
    if alt is None:
        return result
    if flags.binary:
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


def _binary_route(graph: CausalGraph, query: Any, problem: _Problem) -> CounterfactualIdentification | None:
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
    effect = _gate(graph, gamma, ((x, x_set),))
    joint = _gate(graph, tuple(sorted((*gamma, (x, x_set)))), ())
    marg = _gate(graph, ((x, x_obs),), ())
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
        "assumptions": (f"{x} is binary (takes only the values {x_set:g} and {_vtext(x_obs)})",),
        "admg": graph.to_admg(),
    }
    lead = (
        f"With {x} binary, P(γ_{{{x}={x_set:g}}}, {x}={_vtext(x_obs)}) = P(γ_{{{x}={x_set:g}}}) - "
        f"P(γ, {x}={x_set:g}) by consistency, where γ = {', '.join(f'{k}={_vtext(v)}' for k, v in gamma)}"
    )
    if effect.identified:
        reason = (
            f"{query} is identified from the observed variables {_observed(graph)} under the assumption "
            f"that {x} is binary. {lead}, and {effect} is identified: {effect.reason}"
        )
        return CounterfactualIdentification(identified=True, reason=reason, estimand=estimand, **common)
    return None


def _problem(query: Counterfactual) -> _Problem:
    world = query.do
    gamma = tuple(_Ev(k, world, _Sym(_generic(k), "free") if v is None else v) for k, v in query.outcome)
    delta = tuple(_Ev(k, (), v) for k, v in query.factual)
    return _Problem(gamma, delta)


@functools.singledispatch
def _identify(query: Any, graph: CausalGraph, flags: _Flags) -> CounterfactualIdentification:
    raise CausalPPError(
        f"identify_counterfactual() takes a Counterfactual, ETT, PN, PS or PNS query; got "
        f"{type(query).__name__}. For interventional queries use causal_pp.identify."
    )


@_identify.register
def _(query: Counterfactual, graph: CausalGraph, flags: _Flags) -> CounterfactualIdentification:
    return _run(graph, query, _problem(query), flags)


@_identify.register
def _(query: ETT, graph: CausalGraph, flags: _Flags) -> CounterfactualIdentification:
    first, second = (_run(graph, t, _problem(t), flags) for t in query.terms())
    x, y = query.treatment, query.outcome
    head = (
        f"{query} = E[{y} | {x}={query.treated:g}] - E[{y}_{{{x}={query.control:g}}} | {x}={query.treated:g}]: "
        f"the first term is observational by consistency"
    )
    if not first.identified:  # pragma: no cover - consistency always identifies it
        head += f", yet {first.reason}"
    ok = first.identified and second.identified
    reason = f"{head}. For the second, {second.reason}"
    return CounterfactualIdentification(
        query=query,
        graph=graph,
        identified=ok,
        algorithm=second.algorithm,
        reason=reason,
        terms=_dedupe([*first.terms, *second.terms]),
        assumptions=second.assumptions,
        counterfactual_graph=second.counterfactual_graph,
        parts=(first, second),
        admg=second.admg,
    )


_MONOTONE_HINT = (
    " Probabilities of causation are not identified from P(V) or from experiments without further "
    "assumptions, even in X -> Y with no confounding: only bounds are (Tian & Pearl 2000). If {y}={yv} can "
    "only be switched on, never off, by moving {x} from {c} to {t} (monotonicity), pass assume_monotonic=True."
)


def _causation(
    query: Any, graph: CausalGraph, flags: _Flags, problem: _Problem
) -> CounterfactualIdentification:
    general = _run(graph, query, problem, _Flags(flags.monotonic, False))
    if general.identified:
        return general
    x, y = query.treatment, query.outcome
    t, c, yv = query.treated, query.control, query.outcome_value
    if not flags.monotonic:
        hint = _MONOTONE_HINT.format(x=x, y=y, t=f"{t:g}", c=f"{c:g}", yv=f"{yv:g}")
        return CounterfactualIdentification(
            query=query,
            graph=graph,
            identified=False,
            algorithm=general.algorithm,
            reason=general.reason + hint,
            terms=general.terms,
            counterfactual_graph=general.counterfactual_graph,
            admg=general.admg,
        )
    y1, y0 = (y, yv), (y, 1.0 - yv)
    eff_t = _gate(graph, (y1,), ((x, t),))
    eff_c = _gate(graph, (y1,), ((x, c),))
    p_y = _gate(graph, (y1,), ())

    def sp(term: InterventionalTerm) -> SumProduct:
        return SumProduct((), (term,))

    if isinstance(query, PN):
        den = _gate(graph, tuple(sorted([(x, t), y1])), ())
        needed, parts = (eff_c,), ((1.0, sp(p_y)), (-1.0, sp(eff_c)))
        estimand = CounterfactualEstimand(parts, ((1.0, sp(den)),))
        terms: tuple[InterventionalTerm, ...] = (p_y, eff_c, den)
    elif isinstance(query, PS):
        den = _gate(graph, tuple(sorted([(x, c), y0])), ())
        needed, parts = (eff_t,), ((1.0, sp(eff_t)), (-1.0, sp(p_y)))
        estimand = CounterfactualEstimand(parts, ((1.0, sp(den)),))
        terms = (eff_t, p_y, den)
    else:
        needed = (eff_t, eff_c)
        estimand = CounterfactualEstimand(((1.0, sp(eff_t)), (-1.0, sp(eff_c))))
        terms = (eff_t, eff_c)
    assumption = (
        f"monotonicity: {y}_{{{x}={c:g}}}={yv:g} implies {y}_{{{x}={t:g}}}={yv:g} for every unit (no unit "
        f"is prevented from {y}={yv:g} by {x}={t:g})"
    )
    common = {
        "query": query,
        "graph": graph,
        "algorithm": "monotonicity (Tian & Pearl 2000)",
        "terms": terms,
        "assumptions": (assumption,),
        "admg": general.admg,
    }
    bad = [n for n in needed if not n.identified]
    if bad:
        reason = (
            f"{query} is not identifiable from the observed variables {_observed(graph)}, even assuming "
            f"monotonicity: the formula needs the causal effect {bad[0]}, which is not identified: "
            f"{bad[0].reason}"
        )
        return CounterfactualIdentification(identified=False, reason=reason, **common)
    reason = (
        f"{query} is identified from the observed variables {_observed(graph)} under monotonicity (Tian & "
        f"Pearl 2000): {estimand}. The causal effect it needs is identified: {needed[0].reason}"
    )
    return CounterfactualIdentification(identified=True, reason=reason, estimand=estimand, **common)


@_identify.register
def _(query: PN, graph: CausalGraph, flags: _Flags) -> CounterfactualIdentification:
    return _causation(query, graph, flags, _problem(query.as_counterfactual()))


@_identify.register
def _(query: PS, graph: CausalGraph, flags: _Flags) -> CounterfactualIdentification:
    return _causation(query, graph, flags, _problem(query.as_counterfactual()))


@_identify.register
def _(query: PNS, graph: CausalGraph, flags: _Flags) -> CounterfactualIdentification:
    return _causation(query, graph, flags, _problem_of(query))


# --- entry points -----------------------------------------------------------------------


def _problem_of(query: Any) -> _Problem:
    if isinstance(query, _Problem):
        return query
    if isinstance(query, Counterfactual):
        return _problem(query)
    if isinstance(query, (PN, PS)):
        return _problem(query.as_counterfactual())
    if isinstance(query, ETT):
        return _problem(query.terms()[1])
    if isinstance(query, PNS):
        x, y = query.treatment, query.outcome
        return _Problem(
            (
                _Ev(y, ((x, query.treated),), query.outcome_value),
                _Ev(y, ((x, query.control),), 1.0 - query.outcome_value),
            )
        )
    raise CausalPPError(f"no counterfactual graph for a {type(query).__name__}; pass a Counterfactual query.")


def counterfactual_graph(graph: CausalGraph, query: CounterfactualQuery) -> CounterfactualGraph:
    """The counterfactual graph (Shpitser & Pearl's make-cg) of a query's outcome and evidence.

    Parallel worlds -- one copy of the graph per intervention, all sharing the exogenous
    noise and latent confounders -- with copies merged where they are provably one random
    variable (same mechanism, parents equal as nodes or in value), restricted to the ancestors
    of the event. For an :class:`ETT` it is the graph of P(Y_{control} | X=treated).

    Parameters
    ----------
    graph
        The causal DAG with latent nodes marked.
    query
        A :class:`Counterfactual`, :class:`ETT`, :class:`PN`, :class:`PS` or :class:`PNS`.

    Returns
    -------
    CounterfactualGraph
        With ``inconsistency`` set (and no nodes) if the event is impossible.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.counterfactual import Counterfactual, counterfactual_graph
    >>> g = CausalGraph.parse("Z -> X -> Y; Z -> Y")
    >>> cg = counterfactual_graph(g, Counterfactual("Y", do={"X": 0}, factual={"X": 1}))
    >>> cg.nodes
    ('X', 'Y_{X=0}', 'Z')
    >>> cg.fixed
    (('Y_{X=0}', 'X', 0.0),)
    """
    if not isinstance(query, _Problem):
        query.validate(graph)
    problem = _problem_of(query)
    subst: dict[_Sym, _Value] = {}
    events = _normalize([*problem.gamma, *problem.delta], subst)
    if isinstance(events, _Zero):
        return CounterfactualGraph((), (), (), (), (), events.reason)
    built = _make_cg(_projection(graph), events, subst)
    if isinstance(built, _Zero):
        return CounterfactualGraph((), (), (), (), (), built.reason)
    cg, _, values = built
    return _snapshot(cg, values)


def identify_counterfactual(
    graph: CausalGraph,
    query: CounterfactualQuery,
    *,
    assume_monotonic: bool = False,
    assume_binary_treatment: bool = False,
    strict: bool = True,
) -> CounterfactualIdentification:
    """Decide whether a counterfactual query can be computed from the observed variables.

    Runs ID* (no evidence) or IDC* (with factual evidence) on the latent projection of
    ``graph``: builds the counterfactual graph, applies do-calculus rule 2 inside it to
    evidence that is independent of the outcome, splits the event into c-component factors,
    refuses if a factor needs one unit under two incompatible settings, and finally requires
    every factor P_{t}(s) to be identified from *observational* data by
    :func:`causal_pp.identify`. Inconsistent events (e.g. X_{X=1}=0) are identified as 0.

    Parameters
    ----------
    graph
        The causal DAG with latent nodes marked.
    query
        A :class:`Counterfactual`, :class:`ETT`, :class:`PN`, :class:`PS` or :class:`PNS`.
    assume_monotonic
        For PN/PS/PNS only (ignored otherwise): assert that the outcome value is monotone in
        the treatment (moving from control to treated never switches it off). Then, when the
        causal effect P(y | do(x)) is identified, PN = [P(y) - P(y | do(x'))] / P(x, y),
        PS = [P(y | do(x)) - P(y)] / P(x', y'), PNS = P(y | do(x)) - P(y | do(x'))
        (Tian & Pearl 2000).
    assume_binary_treatment
        For queries P(outcome_{X=x} | X=x') with a single intervened X that is the only
        evidence (the ETT's counterfactual term): assert that X takes only the values x and
        x'. Then P(y_x | x') = [P(y | do(x)) - P(y, x)] / P(x'), identified whenever
        P(y | do(x)) is (Shpitser & Pearl 2009). Without it, verdicts hold for any number of
        treatment levels.
    strict
        If True (default), a refused query raises :class:`~causal_pp.NotIdentifiableError`;
        if False, the refusal is returned with ``identified=False``.

    Returns
    -------
    CounterfactualIdentification
        Verdict, algorithm, reason, interventional terms with their own verdicts, estimand.

    Raises
    ------
    NotIdentifiableError
        If ``strict`` and the query is not identifiable; the message names the confounded
        worlds or the factor that observational data cannot supply.
    UnknownVariableError, LatentVariableQueryError
        If the query names a variable that is not in the graph, or a latent one.
    QueryError
        If the factual evidence itself is impossible.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.counterfactual import ETT, PN, identify_counterfactual
    >>> backdoor = CausalGraph.parse("Z -> X -> Y; Z -> Y")
    >>> identify_counterfactual(backdoor, ETT("X", "Y")).identified
    True
    >>> bow = CausalGraph.parse("X -> Y; X <-> Y")
    >>> identify_counterfactual(bow, ETT("X", "Y"), strict=False).identified
    False
    >>> r = identify_counterfactual(CausalGraph.parse("X -> Y"), PN("X", "Y"), assume_monotonic=True)
    >>> print(r.estimand)
    (P(Y=1) - P_{X=0}(Y=1)) / P(X=1, Y=1)
    """
    if not isinstance(graph, CausalGraph):
        raise CausalPPError(
            f"identify_counterfactual() needs a CausalGraph as its first argument; got {type(graph).__name__}."
        )
    if hasattr(query, "validate"):
        query.validate(graph)
    result = _identify(query, graph, _Flags(bool(assume_monotonic), bool(assume_binary_treatment)))
    if strict and not result.identified:
        raise NotIdentifiableError(
            f"{query} cannot be estimated: {result.reason}",
            query=query,
            graph=graph,
            admg=result.admg,
            reason=result.reason,
        )
    return result
