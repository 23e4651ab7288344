"""Interventional estimates: P(Y | do(x), z) and the ATE, by simulating the intervened model.

For each posterior draw of the global parameters, fresh units are simulated from the
interventional program (the model under ChiRho ``do``), all draws at once; the functional of a
draw is the mean over its units of the outcome's conditional mean given its parents
(Rao-Blackwellised: ``site["fn"].mean``; the unit-level predictive keeps the sampled outcomes).
Both arms of an ATE draw every site from the same keyed random stream (common random numbers,
inverse-CDF for discrete sites), so their difference has little Monte Carlo noise; units are
drawn as stratified antithetic replicates. Units are added in batches until the functional's Monte Carlo variance is a
small fraction of its posterior variance (:mod:`.montecarlo`), unless ``num_units`` is given.

**Conditional queries** ``P(Y | do(x), Z=z)`` are computed by *likelihood weighting* within the
interventional program: ``Z`` is clamped at ``z`` (so its descendants see ``z``), and each
simulated unit is weighted by the density (or mass) of ``z`` given its parents in that unit; the
functional is the self-normalised weighted mean. The effective sample size of the weights is
reported per draw in :attr:`Estimate.ess <causal_pp.Estimate.ess>`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InferenceError, QueryError, warn
from ..handlers.keyed_noise import stream_key
from ..identification import identify
from ..posterior import Estimate
from ..queries import ATE, Interventional
from ..runtime import on_device, seeded
from .dispatch import EstimateOptions, estimator, outcome_predictive
from .montecarlo import Plan, Tally, simulate_until
from .simulate import Run, check_finite, check_query_values, chunks, run_program, select_draws
from .weighting import resample

if TYPE_CHECKING:  # pragma: no cover
    from ..identification import Identification
    from ..posterior import CausalPosterior
    from ..program import ProgramStructure

__all__ = ["ESS_WARN_FRACTION", "arm_key", "contributions"]

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
    check_query_values(posterior, _value_pairs(query))
    return ident  # type: ignore[return-value]


@functools.singledispatch
def _value_pairs(query: Any) -> list[tuple[str, str, float]]:
    """Every (role, site, value) an interventional query sets or observes."""
    raise QueryError(f"no values to check for a {type(query).__name__}.")  # pragma: no cover


@_value_pairs.register(Interventional)
def _(query: Interventional) -> list[tuple[str, str, float]]:
    return [("do", k, v) for k, v in query.do] + [("given", k, v) for k, v in query.given if v is not None]


@_value_pairs.register(ATE)
def _(query: ATE) -> list[tuple[str, str, float]]:
    pairs = [("treated", query.treatment, query.treated), ("control", query.treatment, query.control)]
    return pairs + [("given", k, v) for k, v in query.given if v is not None]


def unread(structure: ProgramStructure, names: tuple[str, ...]) -> frozenset[str]:
    """The sample sites among ``names`` whose values no other site reads (leaves of the program)."""
    read = set().union(*structure.reads.values()) if structure.reads else set()
    return frozenset(y for y in names if y not in read and not structure.sites[y].deterministic)


def contributions(run: Run, outcomes: tuple[str, ...], rao_blackwell: bool = True) -> torch.Tensor:
    """Per unit, the contribution to each outcome's mean ``(draws, units, columns)``: the outcome's
    conditional mean given its parents (Rao-Blackwellised) or, with ``rao_blackwell=False``, its value."""
    source = run.means if rao_blackwell else run.values
    cols = []
    for y in outcomes:
        v = source[y].double()
        cols.append(v.reshape(v.shape[0], v.shape[1], -1))
    return torch.cat(cols, dim=-1)


@dataclass
class _Kept:
    """The first batch's unit-level draws (the predictive) and their log-weights, per arm."""

    values: list[dict[str, list[torch.Tensor]]]
    logws: list[list[torch.Tensor]]


def _simulate(
    posterior: CausalPosterior,
    arms: _Arms,
    evidence: Mapping[str, float],
    draws: Mapping[str, torch.Tensor],
    outcomes: tuple[str, ...],
    num_units: int,
    key: int,
    tally: Tally,
    options: EstimateOptions,
    keep: bool,
) -> _Kept:
    """One batch: ``num_units`` fresh units for every draw and arm, in chunks of draws, into ``tally``.

    Every arm runs with the same key per chunk (common random numbers, site by site).
    """
    S = tally.draws
    starts = chunks(S, num_units, posterior.structure)
    device = posterior.device
    # Outcomes that no other site reads need no draw where only their conditional means count.
    skip = frozenset() if keep or not options.rao_blackwell else unread(posterior.structure, outcomes)
    kept = _Kept([{y: [] for y in outcomes} for _ in arms.actions], [[] for _ in arms.actions])
    for j, start in enumerate(starts):
        stop = starts[j + 1] if j + 1 < len(starts) else S
        part = {k: v[start:stop] for k, v in draws.items()}
        ckey = stream_key(key, j)
        contribs, logws, blocks = [], [], None
        memo: dict = {}  # the arms' random numbers are the same: generate them once
        for a, act in enumerate(arms.actions):
            with seeded(ckey, device), on_device(device):
                run = run_program(
                    posterior,
                    act,
                    evidence,
                    part,
                    stop - start,
                    num_units,
                    outcomes,
                    ckey,
                    options.stratify,
                    skip,
                    memo,
                )
            contribs.append(contributions(run, outcomes, options.rao_blackwell).cpu())
            blocks = run.replicates
            if run.logw is not None:
                logws.append(run.logw.cpu())
            if keep:
                for y in outcomes:
                    kept.values[a][y].append(run.values[y].cpu())
                if run.logw is not None:
                    kept.logws[a].append(run.logw.cpu())
        lw = torch.stack(logws) if logws else None
        tally.add(torch.stack(contribs), lw, slice(start, stop), blocks, compare=keep and blocks is not None)
    return kept


def _plugin(
    posterior: CausalPosterior,
    arms: _Arms,
    evidence: Mapping[str, float],
    outcomes: tuple[str, ...],
    num_units: int,
    key: int,
    options: EstimateOptions,
) -> float | torch.Tensor:
    """The paper's plug-in: posterior-mean globals, one simulation of every arm."""
    means = {k: v.double().mean(0, keepdim=True).to(v.dtype) for k, v in posterior.samples.items()}
    tally = Tally(1, _signs(arms))
    _simulate(posterior, arms, evidence, means, outcomes, num_units, key, tally, options, keep=False)
    plugin_t = tally.functional.reshape(-1)
    return float(plugin_t) if plugin_t.numel() == 1 else plugin_t


def _signs(arms: _Arms) -> tuple[float, ...]:
    return (1.0, -1.0) if arms.contrast else (1.0,) * len(arms.actions)


def _check_weights(
    query: Interventional | ATE, samples: torch.Tensor, ess_: torch.Tensor, units: int
) -> None:
    """Refuses impossible evidence; warns when the likelihood weights' ESS is small."""
    if not torch.isfinite(samples).all():
        raise InferenceError(
            f"no simulated unit is consistent with the evidence {query.evidence} under {query} for some "
            "draws (all likelihood weights are zero); the evidence may be impossible under the "
            "intervention, or a conditioning variable is deterministic."
        )
    if float(ess_.mean()) < max(20.0, ESS_WARN_FRACTION * units):
        warn(
            f"causal_pp: likelihood weighting for {query} has a small effective sample size "
            f"(mean {float(ess_.mean()):.1f} of {units} units per draw): the evidence is "
            "improbable under the intervention. Raise num_units (or max_units)."
        )


def _estimate(
    posterior: CausalPosterior, query: Interventional | ATE, arms: _Arms, options: EstimateOptions
) -> Estimate:
    ident = gate(posterior, query, options.allow_unidentified)
    evidence: dict[str, float] = query.evidence  # type: ignore[assignment]
    outcomes = query.outcomes
    idx, chains = select_draws(posterior, options.num_samples)
    draws = {k: (v if idx is None else v[idx.to(v.device)]) for k, v in posterior.samples.items()}
    S = next(iter(draws.values())).shape[0] if draws else posterior.num_draws
    plan = Plan.make(options.num_units, options.mc_fraction, options.max_units, S, len(arms.actions))
    tally = Tally(S, _signs(arms))

    def batch(n: int, key: int, keep: bool, stratify: bool) -> _Kept:
        opts = replace(options, stratify=stratify)
        return _simulate(posterior, arms, evidence, draws, outcomes, n, key, tally, opts, keep)

    kept, sim = simulate_until(batch, tally, plan, options.seed, options.stratify)
    units = int(tally.units.max())
    samples = tally.functional
    if not evidence:  # with evidence, an impossible one is refused with its own message below
        check_finite(query, samples)
    plugin = _plugin(posterior, arms, evidence, outcomes, units, stream_key(options.seed, "plugin"), options)
    values = [{y: torch.cat(v[y]) for y in outcomes} for v in kept.values]
    ess_ = None
    if evidence:
        ess_ = tally.ess
        _check_weights(query, samples, ess_, units)
        resample_key = stream_key(options.seed, "resample")
        values = [resample(v, torch.cat(lw), resample_key) for v, lw in zip(values, kept.logws, strict=True)]
    if arms.keys:
        predictive = {arms.keys[a]: values[a][outcomes[0]] for a in range(len(arms.keys))}
    else:
        predictive = dict(values[0])
    mc_se = tally.mc_var.sqrt()
    if samples.shape[1] == 1:
        samples, mc_se = samples[:, 0], mc_se[:, 0]
    return Estimate(
        query=query,
        samples=samples,
        predictive=MappingProxyType(predictive),
        identified=ident.identified,
        identification=ident,
        plugin=plugin,
        num_units=units,
        seed=options.seed,
        ess=ess_,
        posterior=posterior,
        draw_index=idx,
        chains=chains,
        mc_se=mc_se,
        mc_target=None if plan.explicit is not None else plan.fraction,
        mc_capped=sim.capped,
    )
