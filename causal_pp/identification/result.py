"""The verdicts of the identification gate: :class:`Identification` (interventional) and
:class:`CounterfactualIdentification` (counterfactual)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..graph import CausalGraph
from .cf_estimand import CounterfactualEstimand, InterventionalTerm
from .cf_graph import CounterfactualGraph

if TYPE_CHECKING:  # pragma: no cover
    from y0.graph import NxMixedGraph

    from ..queries import Query

__all__ = ["CounterfactualIdentification", "Identification"]


@dataclass(frozen=True)
class Identification:
    """The verdict of :func:`identify` on one query.

    Attributes
    ----------
    query
        The query asked.
    graph
        The causal graph it was asked of.
    identified
        The verdict: True if the query is a functional of the observed distribution.
    algorithm
        ``"ID"`` (unconditional) or ``"IDC"`` (with ``given``).
    reason
        Plain-words justification of the verdict.
    estimand
        causal_pp's own formula for the query in observational probabilities
        (:class:`~causal_pp.identification.estimand.Estimand`), or None when refused. It is
        written by the same ID/IDC recursion the hedge criterion runs, and the test suite checks
        such formulas against exact interventional distributions of random discrete SCMs.
        Estimates still come from the fitted latent variable model, not from the formula.
    y0_estimand
        y0's formula for the same query: a cross-check only, never shown as the answer
        (y0 0.2.11 returns wrong formulas on some graphs, e.g. ``P(Y | X)`` for the napkin).
    bounds
        For a refusal: whether :func:`causal_pp.bounds` applies
        (:class:`~causal_pp.partial.applicability.Applicability`); None when identified.
    admg
        The latent projection (y0 ``NxMixedGraph``) the verdict was decided on (built on
        first access).
    """

    query: Query
    graph: CausalGraph
    identified: bool
    algorithm: str
    reason: str
    estimand: Any = field(default=None, compare=False, repr=False)
    y0_estimand: Any = field(default=None, compare=False, repr=False)
    bounds: Any = field(default=None, compare=False, repr=False)

    @cached_property
    def admg(self) -> NxMixedGraph:
        """The latent projection (y0 ``NxMixedGraph``) the verdict was decided on.

        Built on first access (a private copy per result), so a cached verdict costs no graph copy.
        """
        return self.graph.to_admg()

    @property
    def latex(self) -> str | None:
        """The estimand as LaTeX."""
        if self.estimand is None:
            return None
        return self.estimand.to_latex()

    @property
    def estimand_source(self) -> str:
        """Where :attr:`estimand` comes from."""
        return "causal_pp's ID/IDC recursion (formulas checked against exact interventional distributions)"

    def __str__(self) -> str:
        verdict = "identified" if self.identified else "NOT identified"
        lines = [f"{self.query}: {verdict} ({self.algorithm} on the latent projection)", self.reason]
        if self.estimand is not None:
            line = f"estimand: {self.estimand.equation()}"
            if self.estimand.extra:
                line += f" (the same for every value of {', '.join(self.estimand.extra)})"
            lines.append(line)
        if self.bounds is not None and self.bounds.applies:
            lines.append(f"next step: {self.bounds.reason}")
        return "\n".join(lines)


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
    bounds
        For a refusal: whether :func:`causal_pp.bounds` applies; None when identified.
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
    formula_text: str | None = field(default=None, compare=False, repr=False)
    bounds: Any = field(default=None, compare=False, repr=False)

    @property
    def formula(self) -> str | None:
        """The estimand as text (for an ETT, the contrast of its two terms)."""
        if self.formula_text is not None:
            return self.formula_text
        return None if self.estimand is None else str(self.estimand)

    def __str__(self) -> str:
        verdict = "identified" if self.identified else "NOT identified"
        lines = [f"{self.query}: {verdict} ({self.algorithm} on the latent projection)", self.reason]
        if self.identified and self.formula is not None:
            lines.append(f"estimand: {self.formula}")
        if self.bounds is not None and self.bounds.applies:
            lines.append(f"next step: {self.bounds.reason}")
        return "\n".join(lines)
