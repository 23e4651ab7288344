"""Importance correction of an SVI guide's draws of the global parameters.

Each draw of the globals is weighed by its target, the globals' prior times the product over units
of each unit's integral over its latents (:mod:`.importance_target`: in closed form where a unit's
conditional is Gaussian, else by particles from a Laplace approximation).

Proposals for the globals (in unconstrained space) come in two rounds: the guide's Gaussian
marginal widened by ``inflation``, then a Gaussian fitted to the weighted first round
(adaptive importance sampling). Self-normalised weights (truncated at mean * sqrt(M), Ionides
2008) of the second round pick ``num_samples`` of its ``num_proposals`` draws by systematic
resampling. This removes most of the variational overconfidence of the guide; the weights'
effective sample size is the diagnostic.

Where the weights degenerate (a posterior of the globals too far from Gaussian for one
Gaussian proposal: ESS below :data:`IS_MIN_ESS`), ``temper=True`` (off by default: see
``SVI(tempering=...)``) walks draws of the guide's Gaussian, widened, to the posterior by
tempered sequential Monte Carlo (:mod:`.tempered`), with the same target; ``is_method`` says
which correction was used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..inference_data import pareto_k
from .importance_target import GaussianView, GlobalsTarget, Latents, Programs, log_targets, view_of
from .tempered import TEMPER_INFLATION, Start, systematic, temper_rows

if TYPE_CHECKING:  # pragma: no cover
    from ..program import ProgramStructure

__all__ = [
    "DEGENERATE",
    "IS_MIN_ESS",
    "IS_ROUND1_MIN_ESS",
    "importance_correct",
    "importance_correct_rows",
]

DEGENERATE = "importance weights degenerate"
"""How ``is_skipped`` begins where the weights degenerated (tempering, if asked for, takes those rows)."""
IS_MIN_ESS = 100.0
"""SVI keeps the raw guide draws (and warns) when the importance correction's ESS is below this."""
IS_ROUND1_MIN_ESS = IS_MIN_ESS / 4
"""The correction stops after its first round when that round's ESS is below this: the second
round (twice the draws, adapted proposal) multiplied it by at most about 4 on the paper protocol's
cells, short of :data:`IS_MIN_ESS` from there (SARS-CoV-2 fits spent ~1 s each on it, all wasted)."""


def _skip_reason(
    view: GaussianView | None, globals_: list[str], unit_latent: list[str], s: ProgramStructure
) -> str | None:
    """Why the correction cannot apply to this guide and model (None if it can)."""
    if view is None:
        return "the guide is not a multivariate normal autoguide"
    if s.max_plate_nesting != 1 or any(
        s.sites[u].event_ndim or len(s.sites[u].shape) != 1 for u in unit_latent
    ):
        return "per-unit latents are not scalars in a single units plate"
    if set(view.positions) != set(globals_) | set(unit_latent) or not globals_:
        return "the guide does not cover exactly the model's latent sites"
    return None


def weigh_rows(
    ts: list[GlobalsTarget],
    programs: Programs,
    proposals: list[tuple[torch.Tensor, torch.Tensor]],
    M: int,
    keys: list[int] | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor, Latents]]:
    """``M`` draws of the globals per data set from its proposal N(mean, LL^T), their log weights
    and constrained values, for several data sets at once."""
    if not ts:
        return []
    drawn = [t.propose(mean, L, M) for t, (mean, L) in zip(ts, proposals, strict=True)]
    log_p = log_targets(ts, programs, [d[0] for d in drawn], [d[1] for d in drawn], keys)
    return [
        (z_t, torch.nan_to_num(lp + corr, nan=-math.inf), theta)
        for (z_t, theta, corr), lp in zip(drawn, log_p, strict=True)
    ]


def _truncated(log_w: torch.Tensor) -> torch.Tensor:
    """Weights truncated at mean * sqrt(M) (Ionides 2008)."""
    w = torch.exp(log_w - log_w.max())
    return torch.minimum(w, w.mean() * math.sqrt(len(w)))


def importance_correct(
    target: Callable[[], Any],
    g: Any,
    globals_: list[str],
    unit_latent: list[str],
    s: ProgramStructure,
    *,
    num_samples: int,
    num_proposals: int,
    num_particles: int,
    inflation: float,
    seed: int,
    temper: bool = False,
) -> tuple[Latents | None, dict[str, Any]]:
    """Importance-resample the global parameters, with the fitted guide as proposal.

    ``g`` is a multivariate-normal autoguide or a :class:`GaussianView` (one row of a batched
    fit). Returns the corrected draws (None where the correction does not apply or does not hold)
    and its diagnostics (``is_corrected``, ``is_method``, ``is_ess``, ``is_skipped`` ...). See
    the module docstring, and :func:`importance_correct_rows` for several data sets at once.
    """
    return importance_correct_rows(
        lambda rows, m: target,
        [g],
        globals_,
        unit_latent,
        s,
        num_samples=num_samples,
        num_proposals=num_proposals,
        num_particles=num_particles,
        inflation=inflation,
        seeds=[seed],
        temper=temper,
    )[0]


def importance_correct_rows(
    programs: Programs,
    guides: list[Any],
    globals_: list[str],
    unit_latent: list[str],
    s: ProgramStructure,
    *,
    num_samples: int,
    num_proposals: int,
    num_particles: int,
    inflation: float,
    seeds: list[int],
    temper: bool = False,
) -> list[tuple[Latents | None, dict[str, Any]]]:
    """:func:`importance_correct` of several data sets of one model (a batched fit's rows), each
    with its guide and seed: the same result per data set as alone (up to the rounding of
    batched kernels), with the model run once per chunk of draws for all of them.

    ``programs`` conditions the model on data sets by their index in ``guides`` (see
    :data:`Programs`). With ``temper``, rows whose weights degenerate (ESS below
    :data:`IS_MIN_ESS`) are walked to the posterior by :mod:`.tempered` instead (together), and
    their draws returned if the walk reached it; without, such rows' draws are None.
    """
    out: list[tuple[Latents | None, dict[str, Any]]] = []
    keys, ts = [], []
    for r, g in enumerate(guides):
        info: dict[str, Any] = {"is_corrected": False}
        view = g if isinstance(g, GaussianView) else view_of(g)
        skip = _skip_reason(view, globals_, unit_latent, s)
        out.append((None, info))
        if skip is not None:
            info["is_skipped"] = skip
            continue
        assert view is not None
        keys.append(r)
        ts.append(
            GlobalsTarget(
                programs([r], 1), view, globals_, unit_latent, s, num_particles=num_particles, seed=seeds[r]
            )
        )
    # round 1: each guide's marginal, widened
    first = [(t.mu_t, inflation * torch.linalg.cholesky(t.S_tt)) for t in ts]
    weighed1 = weigh_rows(ts, programs, first, max(500, num_proposals // 2), keys)
    second, pos2, degenerate = [], [], []
    for i, (r, t, (z1, lw1, _)) in enumerate(zip(keys, ts, weighed1, strict=True)):
        info = out[r][1]
        info["is_unit_integral"] = t.unit_integral()
        proposal = _round2_proposal(t, z1, lw1, info, inflation)
        if proposal is not None:
            second.append(proposal)
            pos2.append(i)
        elif info["is_skipped"].startswith(DEGENERATE):
            degenerate.append(i)
    # round 2: a Gaussian fitted to round 1, slightly widened
    weighed = weigh_rows([ts[i] for i in pos2], programs, second, num_proposals, [keys[i] for i in pos2])
    for i, (_, lw2, theta) in zip(pos2, weighed, strict=True):
        r, t = keys[i], ts[i]
        info = out[r][1]
        info["is_unit_integral"] = t.unit_integral()
        draws = _resampled(t, lw2, theta, info, num_samples)
        if draws is not None and info["is_ess"] < IS_MIN_ESS:
            info["is_skipped"] = f"{DEGENERATE} (ESS {info['is_ess']:.0f} < {IS_MIN_ESS:.0f})"
            degenerate.append(i)
        elif draws is not None:
            info.update(
                is_corrected=True,
                is_method="importance",
                is_ess_fraction=info["is_ess"] / num_proposals,
                is_num_proposals=num_proposals,
                is_particles=num_particles,
                is_inflation=inflation,
            )
            out[r] = (draws, info)
    if temper and degenerate:
        degenerate.sort()
        walked = _tempered(programs, keys, ts, degenerate, out, num_samples, len(weighed1[0][1]))
        for i, draws in zip(degenerate, walked, strict=True):
            if draws is not None:
                out[keys[i]] = (draws, out[keys[i]][1])
    return out


def _tempered(
    programs: Programs,
    keys: list[int],
    ts: list[GlobalsTarget],
    rows: list[int],
    out: list[tuple[Latents | None, dict[str, Any]]],
    num_samples: int,
    M: int,
) -> list[Latents | None]:
    """The rows ``rows`` (positions in ``ts``) tempered from ``M`` draws of their guide's Gaussian,
    widened, to the posterior (:func:`~.tempered.temper_rows`, all together); their draws, or
    None where the walk gave up."""
    t_start = time.perf_counter()
    # wider than the guide: reweighting contracts a cloud at once, moves widen it step by step
    wide = [(ts[i].mu_t, TEMPER_INFLATION * torch.linalg.cholesky(ts[i].S_tt)) for i in rows]
    drawn = weigh_rows([ts[i] for i in rows], programs, wide, M, [keys[i] for i in rows])
    starts = [Start.weighed(z, lw, *q) for (z, lw, _), q in zip(drawn, wide, strict=True)]

    def log_target(idx: list[int], zs: list[torch.Tensor]) -> list[torch.Tensor]:
        sub = [ts[rows[j]] for j in idx]
        constrained = [t.constrain(z) for t, z in zip(sub, zs, strict=True)]
        lps = log_targets(sub, programs, zs, [c[0] for c in constrained], [keys[rows[j]] for j in idx])
        return [lp + c[1] for lp, c in zip(lps, constrained, strict=True)]

    walks = temper_rows(log_target, starts, [ts[i].gen for i in rows])
    each = (time.perf_counter() - t_start) / len(rows)
    result: list[Latents | None] = []
    for i, walk in zip(rows, walks, strict=True):
        t, info = ts[i], out[keys[i]][1]
        info.update(is_importance_skipped=info.pop("is_skipped"), is_temper_time_s=each, **walk.diagnostics())
        if not walk.finished or walk.distinct < IS_MIN_ESS:
            how = "did not reach the posterior" if not walk.finished else "kept too few distinct particles"
            info["is_skipped"] = (
                f"{DEGENERATE} ({info['is_importance_skipped']}), and tempering {how} "
                f"({walk.stages} stages, {walk.distinct} distinct particles)"
            )
            result.append(None)
            continue
        theta, _ = t.constrain(walk.pick(num_samples, t.gen))
        info.update(is_corrected=True, is_method="tempered")
        result.append({name: theta[name].reshape(num_samples, *t.s.sites[name].shape) for name in t.globals_})
    return result


def _round2_proposal(
    t: GlobalsTarget, z1: torch.Tensor, lw1: torch.Tensor, info: dict[str, Any], inflation: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The second round's proposal from the first round's weighted draws, or None (with the
    reason in ``info``) where the first round's weights are all zero or degenerate."""
    if not torch.isfinite(lw1).any():
        info["is_skipped"] = "all importance weights are zero"
        return None
    w1 = _truncated(lw1)
    w1 = w1 / w1.sum()
    m1 = (w1.unsqueeze(1) * z1).sum(0)
    c1 = ((z1 - m1).T * w1) @ (z1 - m1)
    c1 = 0.5 * (c1 + c1.T) + 1e-9 * torch.eye(len(m1), dtype=c1.dtype, device=t.dev)
    ess1 = float(1.0 / (w1 * w1).sum())
    info["is_ess_round1"] = ess1
    if ess1 < IS_ROUND1_MIN_ESS:
        info["is_ess"] = ess1
        info["is_pareto_k"] = pareto_k(lw1)  # ArviZ's PSIS diagnostic of the weights used
        info["is_skipped"] = (
            f"{DEGENERATE} (ESS {ess1:.0f} of {len(w1)} first-round draws < "
            f"{IS_ROUND1_MIN_ESS:.0f}; no second round)"
        )
        return None
    try:
        L2 = 1.1 * torch.linalg.cholesky(c1)
    except RuntimeError:
        L2 = inflation * torch.linalg.cholesky(t.S_tt)
        m1 = t.mu_t
    if ess1 < 2 * len(m1) + 2:  # too few effective draws to fit a covariance
        L2, m1 = inflation * torch.linalg.cholesky(t.S_tt), t.mu_t
    return m1, L2


def _resampled(
    t: GlobalsTarget, lw2: torch.Tensor, theta: Latents, info: dict[str, Any], num_samples: int
) -> Latents | None:
    """``num_samples`` draws resampled by the second round's weights (None if they are all zero)."""
    if not torch.isfinite(lw2).any():
        info["is_skipped"] = "all importance weights are zero"
        return None
    w = _truncated(lw2)
    info["is_ess"] = float(w.sum() ** 2 / (w * w).sum())
    info["is_pareto_k"] = pareto_k(lw2)  # ArviZ's PSIS diagnostic of the (untruncated) weights
    info["is_log_weights"] = lw2.cpu().numpy()
    idx = systematic(w, num_samples, t.gen)
    idx = idx[torch.randperm(num_samples, generator=t.gen, device="cpu")].to(t.dev)
    return {name: theta[name][idx].reshape(num_samples, *t.s.sites[name].shape) for name in t.globals_}
