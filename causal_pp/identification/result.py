"""The verdicts of the identification gate: :class:`Identification` (interventional) and
:class:`CounterfactualIdentification` (counterfactual)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..graph import CausalGraph
from .cf_estimand import CounterfactualEstimand, InterventionalTerm
from .cf_graph import CounterfactualGraph
from .y0_adapter import Y0_VERSION

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
        **y0's** estimand expression (a y0 ``Expression``), or None when refused. It is *not*
        verified by causal_pp: y0 0.2.11 returns numerically wrong formulas on some
        identifiable graphs (e.g. the napkin). causal_pp never evaluates it; estimation goes
        through the fitted latent variable model.
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

    @cached_property
    def admg(self) -> NxMixedGraph:
        """The latent projection (y0 ``NxMixedGraph``) the verdict was decided on.

        Built on first access (a private copy per result), so a cached verdict costs no graph copy.
        """
        return self.graph.to_admg()

    @property
    def latex(self) -> str | None:
        """y0's estimand as LaTeX (unverified; see :attr:`estimand`)."""
        if self.estimand is None:
            return None
        return self.estimand.to_latex()

    @property
    def estimand_source(self) -> str:
        """Where :attr:`estimand` comes from."""
        return f"y0 {Y0_VERSION} (not verified by causal_pp)"

    def __str__(self) -> str:
        verdict = "identified" if self.identified else "NOT identified"
        lines = [f"{self.query}: {verdict} ({self.algorithm} on the latent projection)", self.reason]
        if self.estimand is not None:
            lines.append(f"estimand [y0 {Y0_VERSION}'s formula, unverified]: {self.estimand.to_text()}")
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
        return "\n".join(lines)
