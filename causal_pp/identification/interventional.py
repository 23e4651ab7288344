"""The interventional gate: ID for P(Y | do(X)), IDC for P(Y | do(X), Z).

Two independent methods decide every query and must agree: y0's ``identify_outcomes``
(:mod:`.y0_adapter`) and our own hedge criterion (:mod:`.hedge`). A query is identified only if
both say so (a disagreement refuses the query and says so, since estimating a non-identified
query is the failure this library exists to prevent). The plain-words reason for a refusal
comes from the hedge.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..graph import CausalGraph
from ..queries import ATE, Interventional
from ..queries.base import names_text, query_text
from .dispatch import Assumptions, identifier
from .estimand import Estimand, derive_estimand
from .hedge import ADMG, hedge_criterion, idc_reduce
from .result import Identification
from .y0_adapter import Y0_VERSION, y0_identify

__all__ = ["Verdict", "decide", "identify_interventional"]

_fmt = names_text


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on one query's variables (cached).

    Attributes
    ----------
    identified, algorithm, reason
        The verdict, ``"ID"`` or ``"IDC"``, and the plain-words reason.
    estimand
        causal_pp's own formula (:class:`~causal_pp.identification.estimand.Estimand`), derived by
        the same recursion the hedge criterion runs; None when refused.
    y0_estimand
        y0's formula, a cross-check only (wrong on some graphs, e.g. the napkin).
    """

    identified: bool
    algorithm: str
    reason: str
    estimand: Estimand | None = None
    y0_estimand: Any = None


@lru_cache(maxsize=8192)
def decide(graph: CausalGraph, x: frozenset[str], y: frozenset[str], z: frozenset[str]) -> Verdict:
    """The verdict on P(y | do(x), z) -- cached per (graph, query variables).

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> v = decide(CausalGraph.parse("Z -> X -> Y; Z -> Y"), frozenset("X"), frozenset("Y"), frozenset())
    >>> v.identified, str(v.estimand)
    (True, 'Σ_{Z} P(Y | X, Z) P(Z)')
    """
    admg = ADMG.of(graph)
    algorithm = "IDC" if z else "ID"
    asked = query_text(x, y, z)
    observed = _fmt(graph.observed)

    x2, z2, moved = idc_reduce(admg, x, y, z) if z else (x, z, ())
    hedge = hedge_criterion(admg, x2, y | z2)

    y0_graph = graph.to_admg()
    try:
        estimand = y0_identify(
            y0_graph, [graph.to_y0(v) for v in x], [graph.to_y0(v) for v in y], [graph.to_y0(v) for v in z]
        )
    except Exception as err:  # y0 crashing must not crash the gate: it refuses below
        estimand, y0_error = None, err
    else:
        y0_error = None

    ours = hedge is None
    theirs = estimand is not None
    reduction = ""
    if moved:
        reduction = (
            f" By do-calculus rule 2, conditioning on {_fmt(moved)} equals intervening on it here, "
            f"so the query reduces to {query_text(x2, y, z2)}."
        )

    if ours and theirs:
        if z:
            tail = (
                f"{query_text(x2, y | z2)} has no hedge, so {asked} is its conditional"
                if z2
                else f"{query_text(x2, y)} has no hedge"
            )
            reason = (
                f"{asked} is identified from the observed variables {observed}.{reduction} "
                f"{tail}: a functional of the observed distribution."
            )
        else:
            reason = (
                f"{asked} is identified from the observed variables {observed}: no hedge exists "
                "for it in the latent projection (every c-component of the outcome's ancestors is "
                "computable from the observed distribution)."
            )
        ours_formula = derive_estimand(graph, x, y, z)
        if ours_formula is not None:
            return Verdict(True, algorithm, reason, ours_formula, estimand)
        # the hedge criterion and the recursion that writes the formula are one algorithm: a
        # verdict without a formula is a bug; refuse rather than estimate
        return Verdict(
            False,
            algorithm,
            f"{asked} is refused: no hedge was found but causal_pp could not write its estimand. "
            "Please report this graph and query.",
        )

    if not ours:
        treat_in = sorted(hedge.big & x2)
        path = " <-> ".join(hedge.path)
        conf = (
            f"the treatment {_fmt(treat_in)} and {_fmt(hedge.small)} are confounded: they lie in one "
            f"c-component {_fmt(hedge.big)} of the latent projection"
            if treat_in
            else f"the variables {_fmt(hedge.big)} form one c-component of the latent projection"
        )
        if path:
            conf += f", joined by the bidirected (latent-confounder) path {path}"
        target = query_text(x2, y | z2) if z else asked
        reason = (
            f"{asked} is not identifiable from the observed variables {observed}.{reduction} "
            f"For {target}, {conf}. This is a hedge (F = {_fmt(hedge.big)}, F' = "
            f"{_fmt(hedge.small)}): two models agree on every observed distribution yet differ on "
            "this query, so no amount of observational data determines it."
        )
        if theirs:
            reason += (
                f" (y0 {Y0_VERSION} returned a formula for it anyway; causal_pp's hedge check "
                "refuses it. Please report this graph.)"
            )
        return Verdict(False, algorithm, reason)

    why = (
        f"y0 {Y0_VERSION} crashed ({type(y0_error).__name__}: {y0_error})"
        if y0_error
        else f"y0 {Y0_VERSION}'s {algorithm} found it not identifiable"
    )
    reason = (
        f"{asked} is refused: causal_pp's hedge check finds no hedge, but {why}. The two methods "
        "disagree, so causal_pp refuses rather than risk estimating a non-identified query. "
        "Please report this graph and query."
    )
    return Verdict(False, algorithm, reason)


@identifier.register(Interventional)
@identifier.register(ATE)
def identify_interventional(
    query: Interventional | ATE, graph: CausalGraph, assumptions: Assumptions | None = None
) -> Identification:
    """ID (no ``given``) or IDC on the latent projection; an ATE is identified iff its arms are.

    Examples
    --------
    >>> from causal_pp import CausalGraph, Interventional
    >>> identify_interventional(Interventional("Y", do={"X": 1}), CausalGraph.parse("X -> Y")).identified
    True
    """
    query.validate(graph)
    v = decide(graph, frozenset(query.treatments), frozenset(query.outcomes), frozenset(query.conditions))
    return Identification(
        query=query,
        graph=graph,
        identified=v.identified,
        algorithm=v.algorithm,
        reason=v.reason,
        estimand=v.estimand,
        y0_estimand=v.y0_estimand,
    )
