"""The Monte Carlo error of each draw's functional, and how many simulated units are enough.

An estimate's functional for posterior draw ``s`` is a combination of means over simulated units,

    f_s = sum_a sign_a * theta_{s,a},   theta_{s,a} = sum_i w_{s,a,i} c_{s,a,i} / sum_i w_{s,a,i},

one term per arm ``a`` (the two interventions of an ATE or ETT, else one), where ``c`` is a unit's
contribution (its outcome, the outcome's conditional mean under Rao-Blackwellisation, or an
event's indicator) and ``w`` its likelihood weight (1 without evidence). The arms share their
units (common random numbers), so the contributions of one unit are dependent across arms.

**Measured MC error.** :class:`Tally` accumulates, per draw, the sums that give ``f_s`` and the
delta-method (self-normalised importance sampling) variance of ``f_s`` over the units,

    Var_MC(f_s) = B / (B - 1) * sum_b ( sum_{i in b} sum_a sign_a w~_{s,a,i} (c_{s,a,i} - theta_{s,a}) )^2,

with normalised weights ``w~`` and ``b`` running over the ``B`` independent blocks of units
(single units, or the replicates of stratified antithetic sampling, whose units are dependent).
Without weights and with one arm this is the familiar ``SD(c) ** 2 / n``; for an ATE it is the
variance of the unit-level differences over ``n``; with weights it shrinks like ``1 / ESS``
instead of ``1 / n``. Nothing is kept per unit: a batch of units updates running sums, so units
are added batch by batch (each with fresh seeds) and every unit simulated so far counts.

**Stopping rule** (:func:`next_batch`). The posterior variance of the functional is estimated as
the variance of ``f_s`` across draws minus the mean MC variance (the draws' MC errors are
independent of each other and of the draws). Units are added until the mean MC variance is at
most ``mc_fraction`` (default 1%) of that posterior variance, or a cap is hit:
``max_units`` units per draw (default :data:`MAX_UNITS`, and no more than :data:`MAX_WORK`
unit-simulations in all: draws x units x arms); then the estimate is flagged ``mc_capped``.
The first batch has :data:`FIRST_BATCH` units; each later one is projected from the fraction
reached (MC variance falling like ``1 / n``), at most 8 times more units per step. Stratified
sampling is dropped after the first batch if it did worse than independent units would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from ..handlers.keyed_noise import stream_key

T = TypeVar("T")

__all__ = [
    "DEFAULT_MC_FRACTION",
    "FIRST_BATCH",
    "MAX_UNITS",
    "MAX_WORK",
    "Plan",
    "Simulation",
    "Tally",
    "fraction_of",
    "next_batch",
    "simulate_until",
]

DEFAULT_MC_FRACTION = 0.01
"""Default target: mean MC variance of a draw's functional <= 1% of its posterior variance."""

FIRST_BATCH = 256
"""Units per draw in the first batch when ``num_units`` is not given."""

MAX_UNITS = 2**20
"""Default cap on the units simulated per draw."""

MAX_WORK = 2**26
"""Default cap on unit-simulations in all (draws x units per draw x arms): 5-30 s on one CPU core."""

_GROWTH = 8  # at most this factor more units per step: the projection is noisy (and stratified
# sampling often beats the 1/n it assumes)
_MARGIN = 1.25  # aim a little past the projected need, so one more batch is rarely needed
_STEP = 16  # later batches hold a multiple of this many units: 8 stratified antithetic replicates


class Tally:
    """Running per-draw sums of weighted unit contributions: functional and its MC variance.

    Parameters
    ----------
    draws
        Number of posterior draws (the number of outcome columns is set by the first batch).
    signs
        One sign per arm: the functional is ``sum_a signs[a] * theta_a``.

    Examples
    --------
    >>> t = Tally(1, signs=(1.0,))
    >>> t.add(torch.tensor([[[[1.0], [2.0], [3.0], [6.0]]]]), None, slice(0, 1))
    >>> t.functional.tolist(), round(float(t.mc_var), 4)  # mean 3, SD(c)^2 / n = 4.6667 / 4
    ([[3.0]], 1.1667)
    """

    def __init__(self, draws: int, signs: tuple[float, ...]) -> None:
        self.draws = int(draws)
        self.signs = torch.tensor(signs, dtype=torch.float64)
        self.units = torch.zeros(self.draws, dtype=torch.long)
        self.columns = 0  # set by the first batch

    def _allocate(self, K: int) -> None:
        A, S, f64 = len(self.signs), self.draws, torch.float64
        self.columns = K
        self.shift = torch.zeros(A, S, K, dtype=f64)  # per (arm, draw, column): contributions are centred
        self.ref = torch.full((S,), -math.inf, dtype=f64)  # log-weight scale per draw
        self.W = torch.zeros(A, S, dtype=f64)  # sum of weights
        self.W2 = torch.zeros(A, S, dtype=f64)  # sum of squared weights (for the ESS)
        self.P = torch.zeros(A, S, K, dtype=f64)  # sum of weight x centred contribution
        self.M = torch.zeros(S, K, 2 * A, 2 * A, dtype=f64)  # sum over blocks of x x^T
        self.M_units = torch.zeros(S, K, 2 * A, 2 * A, dtype=f64)  # the same over single units
        self.blocks = torch.zeros(S, dtype=f64)
        self.compared = torch.zeros(S, dtype=f64)  # units in M_units
        self.started = torch.zeros(S, dtype=torch.bool)

    def add(
        self,
        contrib: torch.Tensor,
        logw: torch.Tensor | None,
        rows: slice,
        blocks: int | None = None,
        compare: bool = False,
    ) -> None:
        """Add a batch: ``contrib`` ``(arms, draws, units, columns)`` for draws ``rows``, ``logw``
        ``(arms, draws, units)`` (None: equal weights); ``blocks``: the units are this many
        independent blocks of consecutive units (None: independent units); ``compare``: also
        accumulate :attr:`mc_var_units` (what independent units would have given)."""
        c = contrib.double()
        A, S, n, K = c.shape
        if not self.columns:
            self._allocate(K)
        ref_old = self.ref[rows]
        if logw is None:  # equal weights: 1 each, on the scale exp(0)
            ref_new = torch.zeros_like(ref_old)
            w = torch.ones((1, 1, 1), dtype=torch.float64).expand(A, S, n)
        else:
            lw = logw.double()
            ref_new = torch.maximum(ref_old, lw.amax(dim=(0, 2)))
            ref_new = torch.where(torch.isfinite(ref_new), ref_new, torch.zeros_like(ref_new))
            w = torch.exp(lw - ref_new[None, :, None])
        scale = torch.exp(ref_old - ref_new)  # 0 where nothing was added yet
        fresh = ~self.started[rows]
        if bool(fresh.any()):  # centre on the first batch's weighted means (numerical stability)
            wsum = w.sum(2, keepdim=True).clamp(min=1e-300)
            first = ((w.unsqueeze(-1) * c).sum(2) / wsum).nan_to_num(0.0)
            shift = self.shift[:, rows]
            shift[:, fresh] = first[:, fresh]
            self.shift[:, rows] = shift
            self.started[rows] = True
        c = c - self.shift[:, rows].unsqueeze(2)
        wc = w.unsqueeze(-1) * c  # (A, S, n, K)
        self.W[:, rows] = self.W[:, rows] * scale + w.sum(2)
        self.W2[:, rows] = self.W2[:, rows] * scale**2 + (w * w).sum(2)
        self.P[:, rows] = self.P[:, rows] * scale[None, :, None] + wc.sum(2)
        s2 = (scale**2)[:, None, None, None]
        self.M[rows] = self.M[rows] * s2 + _outer(wc, w, blocks)
        self.M_units[rows] = self.M_units[rows] * s2
        if compare:
            self.M_units[rows] += _outer(wc, w, None)
            self.compared[rows] += n
        self.blocks[rows] += blocks or n
        self.units[rows] += n
        self.ref[rows] = ref_new

    @property
    def theta(self) -> torch.Tensor:
        """Per arm and draw, the weighted mean contribution ``(arms, draws, columns)``."""
        return self.shift + self.P / self.W.unsqueeze(-1)

    @property
    def functional(self) -> torch.Tensor:
        """The functional per draw, ``(draws, columns)``."""
        return (self.signs[:, None, None] * self.theta).sum(0)

    def _var(self, M: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        W = self.W.unsqueeze(-1)  # (A, S, 1)
        centred = self.P / W  # theta - shift
        a = self.signs[:, None, None] / W  # (A, S, 1)
        v = torch.stack([a.expand_as(centred), -a * centred], dim=-1)  # (A, S, K, 2)
        v = v.permute(1, 2, 0, 3).reshape(*centred.shape[1:], -1)  # (S, K, 2A): (P_a, Q_a) pairs
        var = torch.einsum("ski,skij,skj->sk", v, M, v).clamp(min=0.0)
        corr = (blocks / (blocks - 1).clamp(min=1.0)).unsqueeze(-1)
        return var * corr

    @property
    def mc_var(self) -> torch.Tensor:
        """Per draw, the Monte Carlo variance of the functional ``(draws, columns)``."""
        return self._var(self.M, self.blocks)

    @property
    def mc_var_units(self) -> torch.Tensor:
        """The MC variance that independent units (no stratification) would have given, from
        the batches added with ``compare=True`` (scaled to all units)."""
        ratio = (self.compared / self.units.double().clamp(min=1.0)).unsqueeze(-1)
        return self._var(self.M_units, self.compared) / ratio.clamp(min=1e-300)

    @property
    def ess(self) -> torch.Tensor:
        """Per draw, the effective sample size of the weights (the smallest over the arms)."""
        return (self.W**2 / self.W2).nan_to_num(0.0).min(0).values


def _outer(wc: torch.Tensor, w: torch.Tensor, blocks: int | None) -> torch.Tensor:
    """Sum over blocks of ``x x^T``, ``x = (P_a, Q_a)_a`` the block's sums per arm: ``(S, K, 2A, 2A)``."""
    A, S, n, K = wc.shape
    if blocks:  # block sums first: the outer products are then over blocks, not units
        wc = wc.reshape(A, S, blocks, n // blocks, K).sum(3)
        w = w.reshape(A, S, blocks, n // blocks).sum(3)
    B = wc.shape[2]
    x = torch.stack([wc, w.unsqueeze(-1).expand(A, S, B, K)], dim=-1)  # (A, S, B, K, 2)
    x = x.permute(1, 3, 2, 0, 4).reshape(S, K, B, 2 * A)
    return torch.einsum("skbi,skbj->skij", x, x)


@dataclass(frozen=True)
class Plan:
    """How many units to simulate: ``explicit`` (``num_units`` given: one batch of that many)
    or until ``fraction`` is reached, with at most ``cap`` units per draw."""

    explicit: int | None
    fraction: float
    cap: int
    first: int = FIRST_BATCH

    @classmethod
    def make(
        cls, num_units: int | None, fraction: float, max_units: int | None, draws: int, arms: int
    ) -> Plan:
        """The plan for ``draws`` posterior draws and ``arms`` arms.

        Examples
        --------
        >>> Plan.make(None, 0.01, None, draws=4000, arms=2).cap  # MAX_WORK / (4000 x 2)
        8388
        >>> Plan.make(500, 0.01, None, draws=4000, arms=2).first  # num_units given: one batch
        500
        """
        if num_units is not None:
            return cls(num_units, fraction, num_units, num_units)
        if max_units is None:
            max_units = min(MAX_UNITS, max(FIRST_BATCH, MAX_WORK // (draws * arms)))
        return cls(None, fraction, max_units, min(FIRST_BATCH, max_units))


def fraction_of(functional: torch.Tensor, mc_var: torch.Tensor) -> torch.Tensor:
    """Per column: mean MC variance over the posterior variance of the functional (inf if <= 0).

    Examples
    --------
    >>> fraction_of(torch.tensor([[0.0], [2.0]]), torch.tensor([[0.0], [0.0]])).tolist()
    [0.0]
    """
    mc = mc_var.mean(0)
    if functional.shape[0] < 2:
        return torch.full_like(mc, math.nan)
    post = functional.var(0) - mc
    frac = torch.where(post > 0, mc / post.clamp(min=1e-300), torch.full_like(mc, math.inf))
    return torch.where(mc == 0, torch.zeros_like(mc), frac)


def next_batch(tally: Tally, plan: Plan) -> tuple[int, bool]:
    """Units to add per draw (0: stop), and whether a cap stopped the growth short of the target.

    The MC variance falls like 1/n, so the units needed are projected from the fraction reached:
    ``n * fraction_reached / target`` (times a margin, at most :data:`_GROWTH` times more per step).
    """
    n = int(tally.units.max())
    if plan.explicit is not None:
        return 0, False
    frac = fraction_of(tally.functional, tally.mc_var)
    worst = float(frac.max())
    if math.isnan(worst) or worst <= plan.fraction:  # one draw: no posterior variance to aim at
        return 0, False
    if n >= plan.cap:
        return 0, True
    need = n * _GROWTH if math.isinf(worst) else math.ceil(n * worst / plan.fraction * _MARGIN)
    total = min(max(need, n + n // 2), n * _GROWTH, plan.cap)
    add = total - n
    return add + (-add) % _STEP, False


@dataclass(frozen=True)
class Simulation:
    """What the adaptive simulation of an estimate found."""

    tally: Tally
    capped: bool
    batches: int


def simulate_until(
    batch: Callable[[int, int, bool, bool], T], tally: Tally, plan: Plan, seed: int, stratify: bool
) -> tuple[T, Simulation]:
    """Run ``batch(num_units, key, keep, stratify)`` until :func:`next_batch` says stop.

    The first batch (kept: its unit-level draws are the predictive) has ``plan.first`` units; each
    later batch gets a fresh key. Stratified antithetic sampling is dropped after the first batch
    if it made the MC variance larger than independent units would have (a functional far from
    monotone in the noise).
    """
    kept = batch(plan.first, stream_key(seed, "batch", 0), True, stratify)
    compared = bool((tally.compared > 0).all())
    if stratify and compared and bool((tally.mc_var.mean(0) > tally.mc_var_units.mean(0)).any()):
        stratify = False
    b, capped = 1, False
    while True:
        add, capped = next_batch(tally, plan)
        if add <= 0:
            break
        batch(add, stream_key(seed, "batch", b), False, stratify)
        b += 1
    return kept, Simulation(tally, capped, b)
