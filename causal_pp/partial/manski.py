"""No-assumption (Manski) bounds for an outcome known only to lie in a range ``[a, b]``.

For any graph, E[Y | do(X = x)] = E[Y 1{X = x}] + E[Y_x 1{X != x}], and the unobserved
E[Y_x | X != x] can be anything in [a, b] (Manski 1990):

    E[Y 1{X = x}] + a P(X != x)  <=  E[Y | do(X = x)]  <=  E[Y 1{X = x}] + b P(X != x).

A contrast takes the lower end of its positive arms and the upper end of its negative ones.
These bounds use nothing of the graph but "X may be confounded with Y"; they are sharp when
that is all the graph says about X and Y, and valid (possibly loose) otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .functionals import Contrast

__all__ = ["manski"]


def manski(
    contrast: Contrast,
    outcome: np.ndarray,
    treatments: Mapping[str, np.ndarray],
    outcome_range: tuple[float, float],
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Manski bounds of ``contrast`` under each row of ``weights`` (distributions over the data rows).

    Parameters
    ----------
    contrast
        The query (no conditioning).
    outcome
        The outcome's values, one per row.
    treatments
        The treatment columns (values as in the query).
    outcome_range
        ``(a, b)``: the outcome's possible range.
    weights
        ``(B, rows)``: each row a distribution over the data rows (Bayesian-bootstrap draws,
        or the empirical / exact distribution for B = 1).

    Returns
    -------
    lower, upper
        Arrays of shape ``(B,)``.

    Examples
    --------
    >>> from causal_pp.partial.functionals import Arm, Contrast
    >>> c = Contrast("Y", (Arm(1.0, (("X", 1.0),)),))
    >>> lo, hi = manski(c, np.array([2.0, 5.0]), {"X": np.array([1.0, 0.0])}, (0.0, 10.0), np.full((1, 2), 0.5))
    >>> float(lo[0]), float(hi[0])  # 0.5 * 2 + 0.5 * [0, 10]
    (1.0, 6.0)
    """
    low, high = outcome_range
    lower = np.zeros(weights.shape[0])
    upper = np.zeros(weights.shape[0])
    for arm in contrast.arms:
        event = np.ones(outcome.shape[0], dtype=bool)
        for name, value in arm.do:
            event &= treatments[name] == value
        p_event = weights @ event.astype(float)
        seen = weights @ np.where(event, outcome, 0.0)
        lo, hi = seen + low * (1.0 - p_event), seen + high * (1.0 - p_event)
        lower += arm.weight * (lo if arm.weight > 0 else hi)
        upper += arm.weight * (hi if arm.weight > 0 else lo)
    return lower, upper
