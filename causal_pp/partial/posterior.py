"""The posterior of the observed distribution, and of the bounds through it.

The observed joint distribution of the relevant variables gets a Dirichlet posterior
(``counts + prior`` per cell); each arm of an experiment gets its own Dirichlet over the
outcome. Every draw is bounded by the linear programs of :mod:`.lp`. A draw the graph cannot
produce (it violates, say, the instrumental inequality) is rejected: what is left is the
posterior under the model -- the Dirichlet prior restricted to the model's observable set,
updated by the data. The share of accepted draws is reported; when (almost) none survive, the
data contradict the graph and an error says so.

Exclusions make the observable set thin: if W is a root that does not affect X, the model says
P(x | z, w) = P(x | z), which a Dirichlet draw of the joint never meets exactly. The draw is
therefore made factor by factor, P(roots) prod_i P(g_i | g_<i, roots that can affect g_<=i)
(:attr:`.canonical.CanonicalModel.factor_roots`), each factor Dirichlet with the pseudo-counts
the joint Dirichlet would give it (the aggregation property: without exclusions this *is* the
joint Dirichlet(counts + prior)). Where the graph implies equality constraints beyond these
exclusions, :mod:`.gibbs` takes over.

For the no-assumption bounds of a continuous outcome the posterior of the data distribution
is the Bayesian bootstrap (Rubin 1981): Dirichlet(1, ..., 1) weights over the rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import IncompatibleDataError
from .canonical import CanonicalModel
from .functionals import Target
from .lp import bound_draws

__all__ = ["PosteriorDraws", "bayesian_bootstrap", "dirichlet", "factored_dirichlet", "sample_bounds"]

MIN_TRIALS = 100
"""The acceptance rate is judged on at least this many draws before the data are called incompatible."""

DRAW_BUDGET = 20_000_000
"""Draws of the observed distribution are made in batches of at most about this many numbers."""


def dirichlet(rng: np.random.Generator, alpha: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws from Dirichlet(``alpha``) (last axis), by normalised gamma variates.

    Examples
    --------
    >>> d = dirichlet(np.random.default_rng(0), np.array([1.0, 2.0, 3.0]), 4)
    >>> d.shape, bool(np.allclose(d.sum(1), 1.0))
    ((4, 3), True)
    """
    g = rng.standard_gamma(np.broadcast_to(alpha, (size, *np.shape(alpha))))
    return g / g.sum(-1, keepdims=True)


def factored_dirichlet(
    model: CanonicalModel, counts: np.ndarray, prior: float, rng: np.random.Generator, size: int
) -> np.ndarray:
    """Draws of the joint over ``roots + group`` that meet the model's exclusions exactly.

    P(roots) ~ Dirichlet(counts + ``prior`` x cells per root configuration), and for each group
    variable g_i, P(g_i | g_<i, R_i) ~ Dirichlet(counts + ``prior`` x the cells pooled), with
    R_i = ``model.factor_roots[i]``. Returns shape ``(size, *root_shape, *group_shape)``.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.canonical import CanonicalModel
    >>> g = CausalGraph.parse("Z -> X -> Y; W -> Y; X <-> Y")
    >>> m = CanonicalModel(g, ("Z", "W", "X", "Y"), {v: (0, 1) for v in "ZWXY"})
    >>> m.roots + m.group  # the axes of the joint
    ('W', 'Z', 'X', 'Y')
    >>> d = factored_dirichlet(m, np.ones((2, 2, 2, 2)), 1.0, np.random.default_rng(0), 3)
    >>> p_x = d.sum(-1) / d.sum((-1, -2))[..., None]  # P(x | w, z), axes (draw, W, Z, X)
    >>> bool(np.allclose(p_x[:, 0], p_x[:, 1])), bool(np.allclose(p_x[:, :, 0], p_x[:, :, 1]))
    (True, False)
    """
    n_roots = len(model.roots)
    shape = model.root_shape + model.group_shape
    n = np.asarray(counts, dtype=float).reshape(shape)
    group_axes = tuple(range(n_roots, len(shape)))
    root_counts = n.sum(axis=group_axes).ravel() + prior * model.num_group_cells
    out = dirichlet(rng, root_counts, size).reshape(size, *model.root_shape, *([1] * len(model.group)))
    for i, root_set in enumerate(model.factor_roots):
        keep = [model.roots.index(r) for r in root_set] + list(range(n_roots, n_roots + i + 1))
        pooled = tuple(a for a in range(len(shape)) if a not in keep)
        factor = n.sum(axis=pooled, keepdims=True)
        cells_pooled = math.prod(shape[a] for a in pooled)
        draw = dirichlet(rng, np.moveaxis(factor + prior * cells_pooled, n_roots + i, -1), size)
        out = out * np.moveaxis(draw, -1, n_roots + i + 1)
    return out


def bayesian_bootstrap(rng: np.random.Generator, rows: int, size: int) -> np.ndarray:
    """Bayesian-bootstrap weights: ``size`` draws of Dirichlet(1, ..., 1) over ``rows`` rows.

    Examples
    --------
    >>> bayesian_bootstrap(np.random.default_rng(0), 5, 2).shape
    (2, 5)
    """
    g = rng.standard_exponential((size, rows))
    return g / g.sum(1, keepdims=True)


@dataclass(frozen=True)
class PosteriorDraws:
    """Accepted posterior draws of the bounds and the acceptance bookkeeping.

    Examples
    --------
    >>> PosteriorDraws(np.zeros(3), np.ones(3), accepted=3, attempts=4).acceptance
    0.75
    """

    lower: np.ndarray
    upper: np.ndarray
    accepted: int
    attempts: int

    @property
    def acceptance(self) -> float:
        return self.accepted / self.attempts


def sample_bounds(
    model: CanonicalModel,
    target: Target,
    counts: np.ndarray,
    *,
    prior: float,
    rng: np.random.Generator,
    num_samples: int,
    min_acceptance: float,
    equalities: Sequence[np.ndarray] = (),
    experiment: Sequence[tuple[int, np.ndarray]] = (),
    keys: Sequence[tuple[int, int]] = (),
) -> PosteriorDraws:
    """Draw the observed distribution until ``num_samples`` draws are inside the model.

    Parameters
    ----------
    model, target
        The canonical model and the quantity bounded.
    counts
        Observed counts over ``model.roots + model.group`` (any shape with that many cells).
    prior
        Dirichlet concentration added to every cell (and to every experimental cell).
    rng
        The random generator (the only source of randomness).
    num_samples
        Accepted draws wanted.
    min_acceptance
        Below this acceptance rate the data are declared incompatible with the graph.
    equalities, experiment, keys
        Experimental constraints (:func:`.functionals.experimental_equalities`), the counts of
        each arm over the outcome's values as ``(arm value index, counts)``, and the
        ``(arm, outcome value)`` index of each constraint.

    Raises
    ------
    IncompatibleDataError
        Fewer than ``min_acceptance`` of the draws are compatible with the graph.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.canonical import CanonicalModel
    >>> from causal_pp.partial.functionals import Arm, Contrast
    >>> m = CanonicalModel(CausalGraph.parse("X -> Y; X <-> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
    >>> t = Contrast("Y", (Arm(1.0, (("X", 1.0),)), Arm(-1.0, (("X", 0.0),)))).target(m, None)
    >>> d = sample_bounds(m, t, np.array([[30.0, 20.0], [10.0, 40.0]]), prior=1.0,
    ...                   rng=np.random.default_rng(0), num_samples=5, min_acceptance=0.01)
    >>> bool(np.allclose(d.upper - d.lower, 1.0)), d.acceptance  # the bow: width exactly 1
    (True, 1.0)
    """
    arm_alpha = {x: np.asarray(c, dtype=float) + prior for x, c in experiment}
    can_reject = model.num_root_configs > 1 or bool(equalities)
    lowers: list[np.ndarray] = []
    uppers: list[np.ndarray] = []
    accepted = attempts = 0
    max_attempts = math.ceil(num_samples / min_acceptance) + MIN_TRIALS
    have = 0
    while have < num_samples:
        need = num_samples - have
        if attempts == 0:
            batch = max(need, MIN_TRIALS) if can_reject else need
        else:
            rate = max(accepted / attempts, min_acceptance)
            batch = math.ceil(need / rate * 1.1) + 10
        batch = min(batch, max_attempts - attempts, max(1, DRAW_BUDGET // counts.size))
        joint = factored_dirichlet(model, counts, prior, rng, batch)
        values = None
        if equalities:
            arms = {x: dirichlet(rng, a, batch) for x, a in arm_alpha.items()}
            values = np.stack([arms[x][:, y] for x, y in keys], axis=1)
        result = bound_draws(model, target, joint, equalities, values, keep=need)
        attempts += batch
        accepted += int(result.feasible.sum())
        got = np.flatnonzero(result.feasible & ~np.isnan(result.lower))[:need]
        lowers.append(result.lower[got])
        uppers.append(result.upper[got])
        have += got.size
        rate = accepted / attempts
        if have < num_samples and (
            attempts >= max_attempts or (attempts >= MIN_TRIALS and rate < min_acceptance)
        ):
            raise IncompatibleDataError(
                f"only {accepted} of {attempts} posterior draws of the observed distribution (acceptance "
                f"{rate:.2%}, below min_acceptance={min_acceptance:g}) are compatible with the graph: the data "
                "contradict the graph's constraints on the observed distribution (for an instrument Z, the "
                "instrumental inequality: Z may affect the outcome other than through the treatment, or share "
                "a confounder with it). Check the graph -- a missing edge or confounder -- and the data.",
                acceptance=rate,
            )
    return PosteriorDraws(np.concatenate(lowers), np.concatenate(uppers), accepted, attempts)
