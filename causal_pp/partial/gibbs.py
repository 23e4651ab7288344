"""The posterior under the model where equality constraints defeat rejection: Gibbs sampling.

Exclusions ("W affects Y but not X") are met exactly by the factor-by-factor Dirichlet draws of
:mod:`.posterior`. Other equality constraints are not -- the typical one ties an experiment to
the observations, P(y | do(x)) = P(y | x) when X and Y are not confounded -- and a draw of the
two data sets would then never be exactly compatible: rejection would reject every draw. There
the posterior is taken over the canonical model itself (Zhang, Tian & Bareinboim, ICML 2022): a
Dirichlet prior on the response-type distribution q, and a data-augmentation Gibbs sampler
that alternates

1. each unit's response type given q and its observed cell (multinomial within the cell), and
2. q given the types' counts (Dirichlet),

so every draw's implied P(group | roots) = A q is compatible by construction; P(roots) has its
own Dirichlet posterior. Experimental units (treatment and outcome only) are augmented with
their unobserved roots as well as their types.

The chain starts at the maximum-likelihood fit of :mod:`.fit`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError, InferenceError
from .canonical import CanonicalModel
from .fit import implied
from .functionals import Target
from .lp import bound_draws
from .posterior import PosteriorDraws, dirichlet

__all__ = ["BURN_IN", "MAX_THIN", "PILOT", "gibbs_bounds", "integrated_autocorrelation"]

BURN_IN = 300
"""Gibbs sweeps discarded before the first kept draw (the chain starts at the maximum-likelihood fit)."""

PILOT = 400
"""Sweeps after burn-in from which the chain's autocorrelation, hence the thinning, is estimated."""

MAX_THIN = 200
"""Thinning is capped here (the result's note reports the thinning used)."""


def integrated_autocorrelation(series: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation time of each column of ``series`` (Geyer's initial positive sequence).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(4000, 1))
    >>> bool(integrated_autocorrelation(x)[0] < 1.3)  # independent draws: about 1
    True
    """
    length = series.shape[0]
    x = series - series.mean(0)
    var = (x**2).mean(0)
    spectrum = np.fft.rfft(x, n=2 * length, axis=0)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), axis=0)[:length] / length
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(var > 0, acov / var, 0.0)
    out = np.ones(series.shape[1])
    for j in range(series.shape[1]):
        total = 0.0
        for k in range(0, length - 1, 2):
            pair = rho[k, j] + rho[k + 1, j]
            if pair <= 0:
                break
            total += pair
        out[j] = max(1.0, 2.0 * total - 1.0)
    return out


def gibbs_bounds(
    model: CanonicalModel,
    target: Target,
    counts: np.ndarray,
    *,
    prior: float,
    rng: np.random.Generator,
    num_samples: int,
    start: np.ndarray | None = None,
    equalities: Sequence[np.ndarray] = (),
    experiment: Sequence[tuple[int, np.ndarray]] = (),
    keys: Sequence[tuple[int, int]] = (),
    treatment: str | None = None,
    outcome: str | None = None,
) -> tuple[PosteriorDraws, int]:
    """Posterior draws of the bounds from a Gibbs sampler over the canonical model.

    The prior on q is Dirichlet with concentration ``prior * num_group_cells / num_types``
    per type -- the same total pseudo-count per root configuration as the Dirichlet over the
    observed cells -- and P(roots) is Dirichlet(counts + ``prior`` per cell, summed).

    The chain starts near ``start`` (the maximum-likelihood q of :func:`fit_check`; uniform if
    None), discards ``BURN_IN`` sweeps, estimates
    the integrated autocorrelation of the implied cell probabilities over ``PILOT`` sweeps, and
    keeps one sweep in that many (at least 2, at most ``MAX_THIN``).

    Returns the draws and the thinning used.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.functionals import Arm, Contrast
    >>> g = CausalGraph.parse("Z -> X -> Y; W -> Y; X <-> Y")
    >>> m = CanonicalModel(g, ("Z", "W", "X", "Y"), {v: (0, 1) for v in "ZWXY"})
    >>> t = Contrast("Y", (Arm(1.0, (("X", 1.0),)), Arm(-1.0, (("X", 0.0),)))).target(m, None)
    >>> counts = np.full((2, 2, 2, 2), 25.0)
    >>> d, thin = gibbs_bounds(m, t, counts, prior=1.0, rng=np.random.default_rng(0), num_samples=3)
    >>> d.lower.shape, bool(np.all(d.lower <= d.upper))
    ((3,), True)
    """
    n_r, n_g, n = model.num_root_configs, model.num_group_cells, model.num_types
    n_counts = np.asarray(counts, dtype=float).reshape(n_r, n_g)
    if not np.allclose(n_counts, np.round(n_counts)):
        raise DataError("the canonical-model posterior needs counts of units (whole numbers).")
    n_counts = np.round(n_counts).astype(np.int64)
    # Start away from the boundary: an EM fit can put exactly zero mass on types the data need.
    q = 0.5 * (np.full(n, 1.0 / n) if start is None else start) + 0.5 / n
    alpha = prior * n_g / n
    root_alpha = n_counts.sum(1) + prior * n_g
    members = [[np.flatnonzero(model.cells[r] == g) for g in range(n_g)] for r in range(n_r)]
    exp_cells: list[tuple[int, np.ndarray]] = []
    for x, arm_counts in experiment:
        y_do = np.stack([model.values(r, {treatment: x})[outcome] for r in range(n_r)])  # type: ignore[dict-item]
        for y, c in enumerate(np.round(arm_counts).astype(np.int64)):
            if c:
                exp_cells.append((int(c), y_do == y))
    p_r = dirichlet(rng, root_alpha.astype(float), 1)[0]

    def sweep(q: np.ndarray, p_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        type_counts = np.zeros(n)
        for r in range(n_r):
            for g in range(n_g):
                c = n_counts[r, g]
                if c:
                    idx = members[r][g]
                    w = q[idx]
                    type_counts[idx] += rng.multinomial(c, w / w.sum())
        root_extra = np.zeros(n_r)
        for c, ok in exp_cells:
            # An experimental unit's roots are unobserved: draw (roots, type) jointly.
            w = (p_r[:, None] * q[None, :] * ok).ravel()
            draw = rng.multinomial(c, w / w.sum()).reshape(n_r, n)
            type_counts += draw.sum(0)
            root_extra += draw.sum(1)
        return dirichlet(rng, alpha + type_counts, 1)[0], dirichlet(rng, root_alpha + root_extra, 1)[0]

    for _ in range(BURN_IN):
        q, p_r = sweep(q, p_r)
    pilot = np.empty((PILOT, n_r * n_g))
    for i in range(PILOT):
        q, p_r = sweep(q, p_r)
        pilot[i] = (p_r[:, None] * implied(model, q)).ravel()
    thin = int(min(MAX_THIN, max(2, np.ceil(integrated_autocorrelation(pilot).max()))))
    lowers: list[np.ndarray] = []
    uppers: list[np.ndarray] = []
    have = attempts = 0
    while have < num_samples:
        need = num_samples - have
        joints = np.empty((need, n_r * n_g))
        values = np.empty((need, len(keys)))
        for i in range(need):
            for _ in range(thin):
                q, p_r = sweep(q, p_r)
            joints[i] = (p_r[:, None] * implied(model, q)).ravel()
            if keys:
                values[i] = [float((p_r @ e) @ q) for e in equalities]
        result = bound_draws(
            model, target, joints, equalities, values if keys else None, check_feasible=False
        )
        # Every draw is compatible by construction; one the solver still calls infeasible (a
        # rounding error at the model's boundary, or a conditioning event of probability 0) is replaced.
        ok = np.isfinite(result.lower) & np.isfinite(result.upper)
        lowers.append(result.lower[ok])
        uppers.append(result.upper[ok])
        have += int(ok.sum())
        attempts += need
        if attempts > 2 * num_samples + 10 and have < num_samples // 2:
            raise InferenceError(
                "the bounds' linear programs fail on most draws of the response-type posterior; the query's "
                "conditioning event may be impossible under the graph."
            )
    return PosteriorDraws(np.concatenate(lowers), np.concatenate(uppers), have, attempts), thin
