"""The result of :func:`causal_pp.bounds`: the posterior of an identified interval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import validation as check
from ..errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    import arviz as az

__all__ = ["Bounds"]


@dataclass(frozen=True, eq=False, repr=False)
class Bounds:
    """Posterior draws of the lower and upper bound of a query the data cannot pin down.

    Each draw is the interval of values the query takes over every model of the graph that
    reproduces one posterior draw of the observed distribution: ``[lower[i], upper[i]]``.

    Attributes
    ----------
    query
        The query bounded (the query object).
    lower, upper
        Posterior draws of the two ends, arrays of shape ``(num_samples,)`` (read-only).
    sharp
        Whether each draw's interval is the sharp (narrowest valid) one for the graph; when
        False the bounds are valid but possibly loose (``note`` says why).
    method
        ``"canonical-lp"`` (exact linear programs), ``"canonical-lp-relaxed"`` (a relaxation of
        the graph) or ``"manski"`` (no-assumption bounds for an outcome range).
    note
        Plain-words account of what the bounds assume and lose.
    acceptance
        Share of posterior draws of the observed distribution compatible with the graph.
    num_samples, seed
        Draws kept and the seed that reproduces them.
    posterior
        How the observed distribution was drawn: ``"dirichlet"`` (Dirichlet over the observed
        cells, draws outside the model rejected), ``"canonical-gibbs"`` (Gibbs sampling over
        the response types, where the graph implies equality constraints) or
        ``"bayesian-bootstrap"`` (``outcome_range``).
    label
        The bounded quantity in words (default: ``str(query)``), e.g. ``P(Y=1 | do(X=1))`` when
        ``outcome_value`` was given.

    Examples
    --------
    >>> b = Bounds("ATE", lower=np.linspace(-0.6, -0.4, 101), upper=np.linspace(0.4, 0.6, 101), sharp=True,
    ...            method="canonical-lp", note="", acceptance=1.0, num_samples=101, seed=0)
    >>> [round(v, 3) for v in b.mean]
    [-0.5, 0.5]
    >>> b
    Bounds(ATE: lower -0.5 [94%: -0.594, -0.406], upper 0.5 [94%: 0.406, 0.594], 94% identified set [-0.594, 0.594], sharp, canonical-lp, acceptance 1, 101 draws, seed 0)
    """

    query: Any
    lower: np.ndarray
    upper: np.ndarray
    sharp: bool
    method: str
    note: str
    acceptance: float
    num_samples: int
    seed: int
    posterior: str = "dirichlet"
    label: str = ""

    def __post_init__(self) -> None:
        lower = np.array(self.lower, dtype=float).ravel()
        upper = np.array(self.upper, dtype=float).ravel()
        if lower.shape != upper.shape or lower.size == 0:
            raise InvalidArgumentError(
                f"lower and upper must be non-empty and of one length; got {lower.size} and {upper.size}."
            )
        lower.setflags(write=False)
        upper.setflags(write=False)
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        if not self.label:
            object.__setattr__(self, "label", str(self.query))

    @property
    def mean(self) -> tuple[float, float]:
        """Posterior means of the lower and upper end."""
        return float(self.lower.mean()), float(self.upper.mean())

    @property
    def std(self) -> tuple[float, float]:
        """Posterior standard deviations of the lower and upper end."""
        return float(self.lower.std(ddof=1)) if self.lower.size > 1 else 0.0, (
            float(self.upper.std(ddof=1)) if self.upper.size > 1 else 0.0
        )

    def interval(self, prob: float = 0.94) -> tuple[tuple[float, float], tuple[float, float]]:
        """Equal-tailed credible intervals of each end: ``((lower's), (upper's))``.

        Examples
        --------
        >>> b = Bounds("q", lower=np.linspace(0, 1, 101), upper=np.linspace(1, 2, 101), sharp=True,
        ...            method="canonical-lp", note="", acceptance=1.0, num_samples=101, seed=0)
        >>> [[round(v, 6) for v in end] for end in b.interval(0.9)]
        [[0.05, 0.95], [1.05, 1.95]]
        """
        prob = check.probability("prob", prob)
        q = [(1 - prob) / 2, (1 + prob) / 2]
        lo = np.quantile(self.lower, q)
        hi = np.quantile(self.upper, q)
        return (float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1]))

    def identified_set(self, prob: float = 0.94) -> tuple[float, float]:
        """A credible region ``[l, u]`` for the identified interval.

        At least a share ``prob`` of the posterior draws have ``lower >= l`` and ``upper <= u``:
        the whole interval of those draws lies inside ``[l, u]``. ``l`` and ``u`` are
        same-rank order statistics of the lower and upper draws (the k-th smallest lower end and
        the k-th largest upper end), with k as large as the coverage allows.

        Examples
        --------
        >>> b = Bounds("q", lower=np.linspace(0, 1, 101), upper=np.linspace(1, 2, 101), sharp=True,
        ...            method="canonical-lp", note="", acceptance=1.0, num_samples=101, seed=0)
        >>> [round(v, 6) for v in b.identified_set(0.9)]
        [0.05, 1.95]
        """
        prob = check.probability("prob", prob)
        lows = np.sort(self.lower)
        highs = np.sort(self.upper)[::-1]

        def coverage(k: int) -> float:
            return float(np.mean((self.lower >= lows[k]) & (self.upper <= highs[k])))

        lo_k, hi_k = 0, lows.size - 1  # coverage(0) == 1; find the largest k with coverage >= prob
        while lo_k < hi_k:
            mid = (lo_k + hi_k + 1) // 2
            if coverage(mid) >= prob:
                lo_k = mid
            else:
                hi_k = mid - 1
        return float(lows[lo_k]), float(highs[lo_k])

    def to_arviz(self) -> az.InferenceData:
        """ArviZ ``InferenceData`` with ``lower`` and ``upper`` in ``posterior`` (one chain).

        The attributes of the posterior group record the query, sharpness, method, note,
        acceptance and seed.

        Examples
        --------
        >>> b = Bounds("q", lower=np.zeros(4), upper=np.ones(4), sharp=False, method="canonical-lp-relaxed",
        ...            note="", acceptance=0.5, num_samples=4, seed=1)
        >>> idata = b.to_arviz()
        >>> idata.posterior["upper"].shape, idata.posterior.attrs["sharp"]
        ((1, 4), 0)
        """
        import arviz as az

        idata = az.from_dict(posterior={"lower": self.lower[None, :], "upper": self.upper[None, :]})
        idata.posterior.attrs.update(
            query=self.label,
            sharp=int(self.sharp),
            method=self.method,
            note=self.note,
            acceptance=float(self.acceptance),
            seed=int(self.seed),
            num_samples=int(self.num_samples),
            posterior_method=self.posterior,
        )
        return idata

    def __repr__(self) -> str:
        (a, b), (c, d) = self.interval(0.94)
        lo, hi = self.mean
        s_lo, s_hi = self.identified_set(0.94)
        return (
            f"Bounds({self.label}: lower {lo:.4g} [94%: {a:.4g}, {b:.4g}], upper {hi:.4g} [94%: {c:.4g}, {d:.4g}], "
            f"94% identified set [{s_lo:.4g}, {s_hi:.4g}], {'sharp' if self.sharp else 'not sharp'}, "
            f"{self.method}, acceptance {self.acceptance:.3g}, {self.lower.size} draws, seed {self.seed})"
        )
