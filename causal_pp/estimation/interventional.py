"""Interventional estimates: P(Y | do(x), z) and the ATE, by simulating the intervened model.

For each posterior draw of the global parameters, ``num_units`` fresh units are simulated from
the interventional program (the model under ChiRho ``do``), all draws at once; the functional of
a draw is the mean outcome over its units. Both arms of an ATE use the same random numbers
(common random numbers), so their difference has little Monte-Carlo noise.

**Conditional queries** ``P(Y | do(x), Z=z)`` are computed by *likelihood weighting* within the
interventional program: ``Z`` is clamped at ``z`` (so its descendants see ``z``), and each
simulated unit is weighted by the density (or mass) of ``z`` given its parents in that unit; the
functional is the self-normalised weighted mean. The effective sample size of the weights is
reported per draw in :attr:`Estimate.ess <causal_pp.Estimate.ess>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch

from ..errors import InferenceError, QueryError, warn
from ..identification import identify
from ..posterior import Estimate
from ..queries import ATE, Interventional
from ..runtime import child_seeds, on_device, seeded
from .dispatch import EstimateOptions, estimator, outcome_predictive
from .simulate import chunks, run_program, select_draws
from .weighting import ess, resample

if TYPE_CHECKING:  # pragma: no cover
    from ..identification import Identification
    from ..posterior import CausalPosterior

__all__ = ["ESS_WARN_FRACTION", "arm_key"]

ESS_WARN_FRACTION = 0.01
"""Conditional queries warn when the mean likelihood-weighting ESS is below this share of units (or 20)."""


def arm_key(outcome: str, treatment: str, value: float) -> str:
    """The predictive key of one arm of an ATE, e.g. ``"Y | do(X=1)"``.

    Examples
    --------
    >>> arm_key("Y", "X", 1.0)
    'Y | do(X=1)'
    """
    return f"{outcome} | do({treatment}={value:g})"


@dataclass(frozen=True)
class _Arms:
    """The interventions an estimate simulates, how their functionals combine, and their keys."""

    actions: tuple[Mapping[str, float], ...]
    contrast: bool  # the functional is the first arm minus the second (else the first arm's)
    keys: tuple[str, ...] = ()  # predictive keys of the arms (empty: keyed by outcome name)


@estimator.register(Interventional)
def _(query: Interventional, posterior: CausalPosterior, options: EstimateOptions) -> Estimate:
    return _estimate(posterior, query, _Arms((query.interventions,), contrast=False), options)


@estimator.register(ATE)
def _(query: ATE, posterior: CausalPosterior, options: EstimateOptions) -> Estimate:
    t, y = query.treatment, query.outcome
    arms = _Arms(
        ({t: query.treated}, {t: query.control}),
        contrast=True,
        keys=(arm_key(y, t, query.treated), arm_key(y, t, query.control)),
    )
    return _estimate(posterior, query, arms, options)


@outcome_predictive.register(Interventional)
def _(query: Interventional, estimate: Estimate) -> torch.Tensor | None:
    return estimate.predictive.get(query.outcomes[0])


@outcome_predictive.register(ATE)
def _(query: ATE, estimate: Estimate) -> torch.Tensor | None:
    return estimate.predictive.get(arm_key(query.outcome, query.treatment, query.treated))


def gate(posterior: CausalPosterior, query: Interventional | ATE, allow_unidentified: bool) -> Identification:
    """The identification gate, then the checks estimation adds (values for ``given``)."""
    ident = identify(posterior.graph, query, strict=not allow_unidentified)
    if not ident.identified:
        warn(
            f"causal_pp: {query} is NOT identifiable from the observed variables; it is estimated "
            f"only because allow_unidentified=True, and the number has no causal guarantee. "
            f"{ident.reason}"
        )
    evidence = query.evidence
    missing = [k for k, v in evidence.items() if v is None]
    if missing:
        raise QueryError(
            f"{query} conditions on {missing} without values; estimation needs them, e.g. "
            f"given={{{missing[0]!r}: 0.5}}."
        )
    for z in evidence:
        if posterior.structure.sites[z].deterministic:
            raise InferenceError(
                f"{query} conditions on {z!r}, a pyro.deterministic site: it has no density, so "
                "likelihood weighting cannot weigh units by it. Give it a noise distribution "
                "(pyro.sample) to condition on it."
            )
    return ident  # type: ignore[return-value]


def functional(
    values: Mapping[str, torch.Tensor], logw: torch.Tensor | None, outcomes: tuple[str, ...]
) -> torch.Tensor:
    """Per draw: mean over units (weighted if ``logw``), one column per outcome -> (S, k)."""
    cols = []
    for y in outcomes:
        v = values[y].double()
        v = v.reshape(v.shape[0], v.shape[1], -1)
        if logw is None:
            m = v.mean(1)
        else:
            w = torch.softmax(logw.double(), dim=1)
            m = (w.unsqueeze(-1) * v).sum(1)
        cols.append(m.squeeze(-1) if m.shape[-1] == 1 else m)
    return torch.stack(cols, dim=1) if cols[0].dim() == 1 else torch.cat(cols, dim=1)


def _simulate_arms(
    posterior: CausalPosterior,
    arms: _Arms,
    evidence: Mapping[str, float],
    draws: Mapping[str, torch.Tensor],
    outcomes: tuple[str, ...],
    num_units: int,
    seeds: Sequence[int],
) -> tuple[list[dict[str, torch.Tensor]], list[torch.Tensor | None]]:
    """Every arm over every draw, in chunks; the same seed in every arm (common random numbers)."""
    S = next(iter(draws.values())).shape[0] if draws else posterior.num_draws
    starts = chunks(S, num_units, posterior.structure)
    device = posterior.device
    values: list[dict[str, list[torch.Tensor]]] = [{y: [] for y in outcomes} for _ in arms.actions]
    logws: list[list[torch.Tensor]] = [[] for _ in arms.actions]
    for j, start in enumerate(starts):
        stop = starts[j + 1] if j + 1 < len(starts) else S
        part = {k: v[start:stop] for k, v in draws.items()}
        for a, act in enumerate(arms.actions):
            with seeded(seeds[j], device), on_device(device):  # same seed in every arm: CRN
                vals, logw = run_program(posterior, act, evidence, part, stop - start, num_units, outcomes)
            for y in outcomes:
                values[a][y].append(vals[y].cpu())
            if logw is not None:
                logws[a].append(logw.cpu())
    return (
        [{y: torch.cat(v[y]) for y in outcomes} for v in values],
        [torch.cat(lw) if lw else None for lw in logws],
    )


def _plugin(
    posterior: CausalPosterior,
    arms: _Arms,
    evidence: Mapping[str, float],
    outcomes: tuple[str, ...],
    num_units: int,
    seed: int,
) -> float | torch.Tensor:
    """The paper's plug-in: posterior-mean globals, one simulation of every arm."""
    means = {k: v.double().mean(0, keepdim=True).to(v.dtype) for k, v in posterior.samples.items()}
    device = posterior.device
    per_arm = []
    for act in arms.actions:
        with seeded(seed, device), on_device(device):
            pv, plw = run_program(posterior, act, evidence, means, 1, num_units, outcomes)
        per_arm.append(
            functional({y: pv[y].cpu() for y in outcomes}, None if plw is None else plw.cpu(), outcomes)
        )
    plugin_t = per_arm[0] - per_arm[1] if arms.contrast else per_arm[0]
    return float(plugin_t) if plugin_t.numel() == 1 else plugin_t.reshape(-1)


def _weights(
    query: Interventional | ATE,
    samples: torch.Tensor,
    logws: list[torch.Tensor | None],
    num_units: int,
) -> torch.Tensor:
    """The smallest likelihood-weighting ESS over the arms, per draw; refuses impossible evidence."""
    esss = [ess(lw) for lw in logws if lw is not None]
    out = torch.stack(esss).min(0).values
    if not torch.isfinite(samples).all():
        raise InferenceError(
            f"no simulated unit is consistent with the evidence {query.evidence} under {query} for some "
            "draws (all likelihood weights are zero); the evidence may be impossible under the "
            "intervention, or a conditioning variable is deterministic."
        )
    if float(out.mean()) < max(20.0, ESS_WARN_FRACTION * num_units):
        warn(
            f"causal_pp: likelihood weighting for {query} has a small effective sample size "
            f"(mean {float(out.mean()):.1f} of {num_units} units per draw): the evidence is "
            "improbable under the intervention. Raise num_units."
        )
    return out


def _estimate(
    posterior: CausalPosterior, query: Interventional | ATE, arms: _Arms, options: EstimateOptions
) -> Estimate:
    ident = gate(posterior, query, options.allow_unidentified)
    evidence: dict[str, float] = query.evidence  # type: ignore[assignment]
    outcomes = query.outcomes
    idx, chains = select_draws(posterior, options.num_samples)
    draws = {k: (v if idx is None else v[idx.to(v.device)]) for k, v in posterior.samples.items()}
    S = next(iter(draws.values())).shape[0] if draws else posterior.num_draws
    num_units = options.num_units
    seeds = child_seeds(options.seed, len(chunks(S, num_units, posterior.structure)) + 2)
    values, logws = _simulate_arms(posterior, arms, evidence, draws, outcomes, num_units, seeds)
    plugin = _plugin(posterior, arms, evidence, outcomes, num_units, seeds[-1])
    funcs = [functional(values[a], logws[a], outcomes) for a in range(len(arms.actions))]
    samples = funcs[0] - funcs[1] if arms.contrast else funcs[0]
    ess_ = None
    if evidence:
        ess_ = _weights(query, samples, logws, num_units)
        values = [resample(v, lw, seeds[-2]) for v, lw in zip(values, logws, strict=True)]
    if arms.keys:
        predictive = {arms.keys[a]: values[a][outcomes[0]] for a in range(len(arms.keys))}
    else:
        predictive = dict(values[0])
    if samples.dim() == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    return Estimate(
        query=query,
        samples=samples,
        predictive=MappingProxyType(predictive),
        identified=ident.identified,
        identification=ident,
        plugin=plugin,
        num_units=num_units,
        seed=options.seed,
        ess=ess_,
        posterior=posterior,
        draw_index=idx,
        chains=chains,
    )
