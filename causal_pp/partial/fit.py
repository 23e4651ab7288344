"""Does the graph fit the data? The likelihood-ratio check of its equality constraints.

A graph whose roots do not all affect every variable (an exclusion: "W affects Y but not X")
implies equality constraints on the observed distribution -- P(x | z, w) = P(x | z) -- that no
rejection step can test (a Dirichlet draw meets them with probability 0, and the draws of
:mod:`.posterior` impose them by construction). They are tested once, up front: the
maximum-likelihood fit of the canonical model (EM over the response-type distribution q) is
compared with the saturated fit of P(group | roots); a likelihood-ratio statistic G^2 beyond
the chi-square quantile at ``FIT_LEVEL`` on as many degrees of freedom as there are equality
constraints means the data contradict the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from ..errors import IncompatibleDataError
from .canonical import CanonicalModel

__all__ = ["FIT_LEVEL", "FitCheck", "fit_check", "implied", "max_likelihood"]

FIT_LEVEL = 1e-3
"""Significance level of the likelihood-ratio check of the graph's equality constraints."""

EM_STEPS = 5000
"""Most EM iterations for the maximum-likelihood fit."""

EM_MIN_STEPS = 200
"""Fewest EM iterations allowed by the budget, however large the model."""

EM_BUDGET = 50_000_000
"""EM stops after about this many (root configuration, response type) updates in all."""

EM_TOL = 1e-10
"""EM stops when the log-likelihood gains less than this per unit."""


def implied(model: CanonicalModel, q: np.ndarray) -> np.ndarray:
    """P(group | roots) implied by q: shape ``(num_root_configs, num_group_cells)``.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> m = CanonicalModel(CausalGraph.parse("X -> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
    >>> implied(m, np.array([0.1, 0.2, 0.3, 0.4])).round(6).tolist()  # Y's four functions of X
    [[0.4, 0.6], [0.3, 0.7]]
    """
    return np.stack([np.bincount(c, weights=q, minlength=model.num_group_cells) for c in model.cells])


def max_likelihood(model: CanonicalModel, counts: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Maximum-likelihood q (EM), its log-likelihood of the counts of P(group | roots), and
    whether EM converged within its step budget.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> m = CanonicalModel(CausalGraph.parse("X -> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
    >>> q, _, converged = max_likelihood(m, np.array([[8.0, 2.0], [3.0, 7.0]]))
    >>> implied(m, q).round(3).tolist(), converged  # the empirical P(y | x): the model is saturated
    ([[0.8, 0.2], [0.3, 0.7]], True)
    """
    n_counts = counts.reshape(model.num_root_configs, model.num_group_cells)
    total = n_counts.sum()
    # Each step touches every (root configuration, type) pair once; large models get fewer steps.
    steps = max(EM_MIN_STEPS, min(EM_STEPS, EM_BUDGET // max(model.cells.size, 1)))
    q = np.full(model.num_types, 1.0 / model.num_types)
    last = -np.inf
    converged = False
    for _ in range(steps):
        mass = implied(model, q)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(mass > 0, n_counts / mass, 0.0)
            loglik = float(np.sum(np.where(n_counts > 0, n_counts * np.log(mass), 0.0)))
        if loglik - last < EM_TOL * max(total, 1.0):
            converged = True
            break
        last = loglik
        # E and M step at once: each type's expected share of the units in its cells.
        q = q * np.take_along_axis(ratio, model.cells, axis=1).sum(0) / total
    mass = implied(model, q)
    with np.errstate(divide="ignore"):
        loglik = float(np.sum(np.where(n_counts > 0, n_counts * np.log(mass), 0.0)))
    return q, loglik, converged


@dataclass(frozen=True, eq=False)
class FitCheck:
    """The likelihood-ratio check: statistic, degrees of freedom, p-value, EM convergence, fit.

    Examples
    --------
    >>> FitCheck(g2=1.2, df=2, p_value=0.55, converged=True, q=np.ones(4) / 4).describe()[:38]
    'The graph implies 2 equality constrain'
    """

    g2: float
    df: int
    p_value: float
    converged: bool
    q: np.ndarray

    def describe(self) -> str:
        """One sentence for the result's note."""
        text = (
            f"The graph implies {self.df} equality constraint(s) on the observed distribution; the data fit "
            f"them (likelihood ratio G^2 = {self.g2:.3g}, p = {self.p_value:.3g})."
        )
        if not self.converged:
            text += " (The maximum-likelihood fit did not converge within its step budget: the check is only indicative.)"
        return text


def fit_check(model: CanonicalModel, counts: np.ndarray, df: int) -> FitCheck:
    """Likelihood-ratio check of the model against the saturated P(group | roots).

    ``df`` is the number of equality constraints (:meth:`CanonicalModel.codimension` with
    ``factored=False``). Raises :class:`IncompatibleDataError` when the p-value is below
    ``FIT_LEVEL`` and the maximum-likelihood fit converged (an unconverged fit overstates G^2,
    so it never refuses on its own).

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> m = CanonicalModel(CausalGraph.parse("X -> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
    >>> check = fit_check(m, np.array([[8.0, 2.0], [3.0, 7.0]]), 0)
    >>> round(check.g2, 6), check.p_value
    (0.0, 1.0)
    """
    n_counts = counts.reshape(model.num_root_configs, model.num_group_cells)
    q, loglik, converged = max_likelihood(model, n_counts)
    n_r = n_counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        saturated = float(np.sum(np.where(n_counts > 0, n_counts * np.log(n_counts / n_r), 0.0)))
    g2 = max(0.0, 2.0 * (saturated - loglik))
    p = float(chi2.sf(g2, df)) if df > 0 else 1.0
    if p < FIT_LEVEL and converged:
        raise IncompatibleDataError(
            f"the data contradict the graph: it implies {df} equality constraint(s) on the observed "
            f"distribution (variables it says do not affect others), and the best fit under them is rejected "
            f"(likelihood ratio G^2 = {g2:.4g} on {df} df, p = {p:.2g} < {FIT_LEVEL:g}). Check the graph "
            "for a missing edge or confounder.",
            acceptance=0.0,
        )
    return FitCheck(g2, df, p, converged, q)
