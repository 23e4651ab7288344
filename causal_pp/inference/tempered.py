"""Tempered sequential Monte Carlo over the global parameters, where importance sampling fails.

When the guide's Gaussian is too far from the posterior of the globals (a skewed or curved
posterior in a few dozen dimensions: the multi-cause and SARS-CoV-2 cases), one round of
importance sampling from it keeps a handful of draws. This sampler walks its particles from the
proposal ``q`` to the posterior ``p`` through the geometric bridge

    pi_beta(z)  ∝  q(z)^(1 - beta) p(z)^beta,      0 = beta_0 < beta_1 < ... < beta_T = 1,

each step ``beta_t -> beta_{t+1}`` chosen so that the reweighted particles keep an effective
sample size of ``ess_fraction`` of them (bisection), then resampled (systematic) and moved by
``moves`` random-walk Metropolis steps that leave ``pi_beta`` invariant, the walk's covariance
the particles' own, scaled by ``2.38 / sqrt(D)`` and adapted to the acceptance rate (Del Moral,
Doucet & Jasra 2006; Chopin 2002; the adaptive schedule of Jasra et al. 2011).

``p`` is evaluated through ``log_target``, several data sets' particles together, so a batch of
fits tempers as one program. The per-unit integrals inside ``p`` use fixed common random
numbers, so ``p`` is a deterministic function of the globals and the Metropolis steps leave its
normalised version exactly invariant.

Examples
--------
A skewed 2-D target from a Gaussian that is far too narrow and off-centre:

>>> import torch
>>> target = torch.distributions.Gamma(torch.tensor([2.0, 5.0]), torch.tensor([1.0, 2.0]))
>>> def log_target(rows, zs):  # in log space, with the Jacobian
...     return [target.log_prob(z.exp()).sum(-1) + z.sum(-1) for z in zs]
>>> q = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), 0.1 * torch.eye(2, dtype=torch.float64))
>>> gen = torch.Generator().manual_seed(0)
>>> _ = torch.manual_seed(0)
>>> z0 = q.sample((2000,))
>>> start = Start(z0, log_target([0], [z0])[0], q.log_prob(z0), q)
>>> (out,) = temper_rows(log_target, [start], [gen])
>>> mean = out.z.exp().mean(0)  # the Gammas' means are 2 and 2.5; the start's, about 1
>>> out.finished, torch.allclose(mean, torch.tensor([2.0, 2.5], dtype=torch.float64), atol=0.2)
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "TEMPER_ESS_FRACTION",
    "TEMPER_INFLATION",
    "TEMPER_MAX_STAGES",
    "TEMPER_MOVES",
    "Start",
    "Tempered",
    "systematic",
    "temper_rows",
]

TEMPER_INFLATION = 2.0
"""The walk starts from the guide's Gaussian of the globals widened by this factor."""
TEMPER_ESS_FRACTION = 0.5
"""Each tempering step keeps this share of the particles as effective sample size."""
TEMPER_MOVES = 4
"""Random-walk Metropolis steps per tempering stage, after resampling."""
TEMPER_MAX_STAGES = 40
"""A row that has not reached the posterior (beta = 1) after this many stages gives up."""
_TARGET_ACCEPT = 0.25

LogTarget = Callable[[list[int], list[torch.Tensor]], list[torch.Tensor]]
"""``log_target(rows, zs)``: for the data sets ``rows`` (indices into the starts), the log
posterior density (up to a constant, with the Jacobian) of each of their draws ``zs[i]`` ``(M, D)``."""


def systematic(weights: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``k`` draws picked by systematic resampling with probabilities ``weights``."""
    cpu = {"dtype": torch.float64, "device": "cpu"}
    u = (torch.rand((), generator=generator, **cpu) + torch.arange(k, **cpu)) / k
    cdf = torch.cumsum(weights.double().cpu(), 0)
    cdf = cdf / cdf[-1]
    return torch.searchsorted(cdf, u).clamp(max=len(weights) - 1)


@dataclass(frozen=True)
class Start:
    """One data set's particles drawn from the proposal ``q``, their log target and log ``q``."""

    z: torch.Tensor
    log_p: torch.Tensor
    log_q: torch.Tensor
    q: Any  # a distribution with ``log_prob`` over (M, D)

    @classmethod
    def weighed(
        cls, z: torch.Tensor, log_w: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor
    ) -> Start:
        """From draws of N(mean, LL^T) and their importance log weights ``log p - log q``."""
        q = torch.distributions.MultivariateNormal(mean, scale_tril=scale_tril)
        log_q = q.log_prob(z)
        return cls(z, log_w + log_q, log_q, q)


@dataclass(frozen=True)
class Tempered:
    """The particles at the posterior (equally weighted) and how the walk went.

    ``finished`` is False where the row gave up (:data:`TEMPER_MAX_STAGES`), its particles then
    are not draws from the posterior. ``distinct``: particles not equal to another at the end.
    """

    z: torch.Tensor
    finished: bool
    betas: tuple[float, ...]
    acceptance: tuple[float, ...]
    distinct: int
    evaluations: int
    moves: int

    @property
    def stages(self) -> int:
        """Tempering stages walked: one per temperature."""
        return len(self.betas)

    def diagnostics(self) -> dict[str, Any]:
        """``is_temper_*`` entries for a fit's diagnostics (acceptance: of the last stage's moves)."""
        last = self.acceptance[-self.moves :]
        return {
            "is_temper_stages": self.stages,
            "is_temper_betas": list(self.betas),
            "is_temper_acceptance": float(sum(last) / max(1, len(last))),
            "is_temper_distinct": self.distinct,
            "is_temper_evaluations": self.evaluations,
        }

    def pick(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` of the particles in random order (each at most once where there are ``k``)."""
        M = self.z.shape[0]
        if k <= M:
            idx = torch.randperm(M, generator=generator)[:k]
        else:
            idx = systematic(torch.ones(M, dtype=torch.float64), k, generator)
            idx = idx[torch.randperm(k, generator=generator)]
        return self.z[idx.to(self.z.device)]


class _Row:
    """One data set's particles and the state of its walk."""

    def __init__(self, start: Start, gen: torch.Generator) -> None:
        self.z, self.lq, self.q = start.z, start.log_q, start.q
        self.lp = torch.nan_to_num(start.log_p, nan=-math.inf)
        self.gen = gen
        self.beta = 0.0
        self.betas: list[float] = []
        self.acceptance: list[float] = []
        self.scale = 2.38 / math.sqrt(self.z.shape[1])
        self.evaluations = 0
        self.chol: torch.Tensor | None = None

    @property
    def done(self) -> bool:
        return self.beta >= 1.0

    def advance(self, ess_fraction: float) -> None:
        """The next temperature (ESS of the incremental weights at ``ess_fraction``), then resampling."""
        gap = self.lp - self.lq  # the incremental log weight per unit of beta
        M = len(gap)

        def weights(b: float) -> torch.Tensor:
            lw = torch.where(torch.isfinite(gap), (b - self.beta) * gap, -math.inf)
            return torch.exp(lw - lw.max())

        def ess(b: float) -> float:
            w = weights(b)
            return float(w.sum() ** 2 / (w * w).sum())

        if ess(1.0) >= ess_fraction * M:
            nxt = 1.0
        else:
            lo, hi = self.beta, 1.0
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if ess(mid) >= ess_fraction * M else (lo, mid)
            nxt = max(lo, self.beta + 1e-6)  # a step, however small, so the walk cannot stall
        idx = systematic(weights(nxt), M, self.gen).to(self.z.device)
        self.beta = nxt
        self.betas.append(nxt)
        self.z, self.lp, self.lq = self.z[idx], self.lp[idx], self.lq[idx]
        centred = self.z - self.z.mean(0)
        cov = centred.T @ centred / max(1, M - 1)
        cov = 0.5 * (cov + cov.T) + 1e-10 * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        try:
            self.chol = torch.linalg.cholesky(cov)
        except RuntimeError:  # a collapsed cloud: walk along its diagonal
            self.chol = torch.diag(cov.diagonal().clamp_min(1e-12).sqrt())

    def propose(self) -> torch.Tensor:
        assert self.chol is not None
        eps = torch.randn(self.z.shape, generator=self.gen, dtype=torch.float64).to(self.z)
        return self.z + self.scale * eps @ self.chol.T

    def accept(self, z_new: torch.Tensor, lp_new: torch.Tensor) -> None:
        """A Metropolis step for pi_beta; the walk's scale follows the acceptance rate."""
        self.evaluations += len(z_new)
        lp_new = torch.nan_to_num(lp_new, nan=-math.inf)
        lq_new = self.q.log_prob(z_new).double()
        b = self.beta
        log_ratio = b * (lp_new - self.lp) + (1.0 - b) * (lq_new - self.lq)
        log_ratio = torch.where(torch.isfinite(lp_new), log_ratio, -math.inf)
        u = torch.rand(len(z_new), generator=self.gen, dtype=torch.float64).to(log_ratio.device)
        take = torch.log(u) < log_ratio
        self.z = torch.where(take.unsqueeze(1), z_new, self.z)
        self.lp = torch.where(take, lp_new, self.lp)
        self.lq = torch.where(take, lq_new, self.lq)
        rate = float(take.double().mean())
        self.acceptance.append(rate)
        self.scale *= math.exp(rate - _TARGET_ACCEPT)


def temper_rows(
    log_target: LogTarget,
    starts: list[Start],
    gens: list[torch.Generator],
    *,
    ess_fraction: float = TEMPER_ESS_FRACTION,
    moves: int = TEMPER_MOVES,
    max_stages: int = TEMPER_MAX_STAGES,
) -> list[Tempered]:
    """Temper several data sets' particles from their proposals to their posteriors, together.

    Each row picks its own temperatures, resamples with its own generator and adapts its own
    walk; rows that reach the posterior stop while the others go on. Every Metropolis step of
    all rows still walking is one call of ``log_target``. See the module docstring.
    """
    rows = [_Row(s, g) for s, g in zip(starts, gens, strict=True)]
    walking = list(range(len(rows)))
    while walking:
        for r in walking:
            rows[r].advance(ess_fraction)
        # a row that reached beta = 1 still moves this stage: its particles are the draws
        for _ in range(moves):
            proposals = [rows[r].propose() for r in walking]
            values = log_target(walking, proposals)
            for r, z_new, lp_new in zip(walking, proposals, values, strict=True):
                rows[r].accept(z_new, lp_new)
        walking = [r for r in walking if not rows[r].done and len(rows[r].betas) < max_stages]
    return [
        Tempered(
            row.z,
            row.done,
            tuple(row.betas),
            tuple(row.acceptance),
            int(torch.unique(row.z, dim=0).shape[0]),
            row.evaluations,
            moves,
        )
        for row in rows
    ]
