"""Counterfactual estimates: abduction, action and prediction in twin worlds with shared noise.

For every posterior draw of the global parameters (all draws at once, under a vectorising plate,
in chunks):

1. **Abduction** on the single-world model: fresh units are simulated with their
   noise rewritten by :class:`~causal_pp.handlers.SharedNoise`; latent noise comes from its prior,
   the noise of each evidence site from its exact conditional given the evidence and the unit's
   parents, and the unit gets the log-weight ``sum log p(evidence | parents)`` (likelihood
   weighting on the densities, or masses, of the evidence sites).
2. **Action and prediction** in the twin-world program with the abducted noise clamped: the
   counterfactual outcome of each unit in the world ``do``.
3. The functional of the draw is the weighted mean of the counterfactual outcome (of its
   indicator for an event such as ``{"Y": 0}``); for an :class:`~causal_pp.ETT`, the difference
   of the two arms (same noise in both); for a :class:`~causal_pp.PNS`, which has no factual
   evidence, the share of units that have the outcome in the treated world *and* lack it in
   the control world (two counterfactual worlds on the same noise).

The functional is a weighted mean over units, so each draw's carries Monte Carlo error; it is
measured from the units' contributions (self-normalised importance sampling: it grows as the
weights' ESS falls) and units are added in batches until it is small (:mod:`.montecarlo`). The
noise of abduction is drawn by :class:`~causal_pp.handlers.KeyedNoise` as stratified antithetic
replicates (a uniform threshold's stratified uniforms make an indicator's mean nearly exact).
The counterfactual outcome is not Rao-Blackwellised: its noise is shared between the worlds.

Abduction runs on the single-world model and the twin program is used only for prediction:
ChiRho 0.3.0 counts noise priors once per world in twin inference (``shared/notes/
chirho-pitfalls.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pyro
import torch
from chirho.counterfactual.handlers import TwinWorldCounterfactual
from chirho.indexed.ops import IndexSet, gather
from pyro import poutine

from ..errors import InferenceError, QueryError, warn
from ..handlers import WORLD, KeyedNoise, SharedNoise, intervene
from ..handlers.keyed_noise import replicates_for, stream_key
from ..identification import identify_counterfactual
from ..posterior import Estimate
from ..queries import ETT, PN, PNS, PS, Counterfactual, CounterfactualQuery
from ..runtime import on_device, seeded
from .dispatch import EstimateOptions, estimator, make_options
from .montecarlo import DEFAULT_MC_FRACTION, Tally, simulate_until
from .montecarlo import Plan as McPlan
from .simulate import check_query_values, chunks, select_draws, vectorized
from .weighting import resample

if TYPE_CHECKING:  # pragma: no cover
    from ..posterior import CausalPosterior

__all__ = ["abduct", "estimate_counterfactual", "predict"]


def squeeze_to(value: torch.Tensor, num: int, n: int) -> torch.Tensor:
    """A per-unit value of a vectorised run (``(num, 1.., n)``, maybe with leading 1s) -> ``(num, n)``."""
    v = torch.as_tensor(value).reshape(-1)
    if v.numel() == num * n:
        return v.reshape(num, n)
    if v.numel() == n:
        return v.expand(num, n)
    raise QueryError(
        f"a value of shape {tuple(value.shape)} is not one scalar per unit; counterfactual outcomes and "
        "evidence must be scalar per-unit variables of the units plate."
    )


def abduct(
    post: CausalPosterior,
    evidence: Mapping[str, float],
    cond: Mapping[str, torch.Tensor],
    num: int,
    num_units: int,
    key: int = 0,
    stratify: bool = False,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Single-world run: noise of fresh units (prior for latents, abducted for evidence) and log weights.

    Every noise site draws from a stream keyed by ``(key, site name)``
    (:class:`~causal_pp.handlers.KeyedNoise`), in stratified antithetic replicates if ``stratify``
    (:func:`~causal_pp.handlers.keyed_noise.replicates_for`).
    """
    P = post.structure.max_plate_nesting
    handler = SharedNoise(evidence)
    with (
        torch.no_grad(),
        pyro.validation_enabled(False),
        KeyedNoise(key, replicates=replicates_for(num_units) if stratify else None, device=post.device),
        pyro.plate("_draws", num, dim=-(P + 1)),
        poutine.condition(data=dict(cond)),
    ):
        tr = poutine.trace(handler(post.model.fn)).get_trace(num_units, *post.model_args, **post.model_kwargs)
    noise = {nn: tr.nodes[nn]["value"] for nn in handler.noise_sites.values()}
    logw = torch.zeros(num, num_units, dtype=torch.float64)
    for lp in handler.log_likelihood.values():
        logw = logw + squeeze_to(lp, num, num_units).double()
    return noise, logw


def predict(
    post: CausalPosterior,
    actions: Mapping[str, float],
    cond: Mapping[str, torch.Tensor],
    noise: Mapping[str, torch.Tensor],
    num: int,
    num_units: int,
    outcomes: tuple[str, ...],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Twin-world run with the noise clamped: (factual values, counterfactual values) of ``outcomes``."""
    P = post.structure.max_plate_nesting
    program = SharedNoise()(intervene(post.model.fn, actions))
    fw, cw = IndexSet(**{WORLD: {0}}), IndexSet(**{WORLD: {1}})
    with (
        torch.no_grad(),
        pyro.validation_enabled(False),
        pyro.plate("_draws", num, dim=-(P + 1)),
        poutine.condition(data={**cond, **noise}),
        TwinWorldCounterfactual(first_available_dim=-(P + 2)),
    ):
        tr = poutine.trace(program).get_trace(num_units, *post.model_args, **post.model_kwargs)
        fact = {y: squeeze_to(gather(tr.nodes[y]["value"], fw), num, num_units) for y in outcomes}
        cf = {y: squeeze_to(gather(tr.nodes[y]["value"], cw), num, num_units) for y in outcomes}
    return fact, cf


@dataclass(frozen=True)
class Plan:
    """What a counterfactual estimate simulates.

    Attributes
    ----------
    evidence
        Factual evidence ``{name: value}`` (abducted).
    arms
        One intervention per counterfactual world.
    outcome
        Outcome name -> the event's value (its indicator is averaged) or None (its mean).
    how
        ``"one"`` (one world), ``"difference"`` (ETT: first arm minus second) or ``"joint"``
        (PNS: both arms' events at once, on the same units).
    """

    evidence: dict[str, float]
    arms: tuple[dict[str, float], ...]
    outcome: dict[str, float | None]
    how: str = "one"
    joint: tuple[float, float] = (1.0, 0.0)  # "joint": the outcome's values in the two worlds


def plan(query: Any) -> Plan:
    """The plan of a counterfactual query (one table entry per query type)."""
    return _plan(query)


@functools.singledispatch
def _plan(query: Any) -> Plan:  # pragma: no cover - every counterfactual type is registered
    raise QueryError(f"no twin-world plan for a {type(query).__name__}.")


@_plan.register(ETT)
def _(query: ETT) -> Plan:
    arms = ({query.treatment: query.treated}, {query.treatment: query.control})
    return Plan({query.treatment: query.treated}, arms, {query.outcome: None}, "difference")


@_plan.register(PNS)
def _(query: PNS) -> Plan:
    arms = ({query.treatment: query.treated}, {query.treatment: query.control})
    return Plan({}, arms, {query.outcome: None}, "joint", (query.outcome_value, query.not_outcome_value))


@_plan.register(PN)
@_plan.register(PS)
def _(query: PN | PS) -> Plan:
    return _plan(query.as_counterfactual())


@_plan.register(Counterfactual)
def _(query: Counterfactual) -> Plan:
    return Plan(query.evidence, (query.interventions,), dict(query.outcome), "one")  # type: ignore[arg-type]


@estimator.register(Counterfactual)
@estimator.register(ETT)
@estimator.register(PN)
@estimator.register(PS)
@estimator.register(PNS)
def _(query: CounterfactualQuery, posterior: CausalPosterior, options: EstimateOptions) -> Estimate:
    return _estimate(posterior, query, options)


def estimate_counterfactual(
    post: CausalPosterior,
    query: CounterfactualQuery,
    *,
    num_samples: int | None = None,
    num_units: int | None = None,
    seed: int = 0,
    allow_unidentified: bool = False,
    assume_monotonic: bool = False,
    mc_fraction: float = DEFAULT_MC_FRACTION,
    max_units: int | None = None,
) -> Estimate:
    """Estimate a counterfactual query from a posterior by abduction, action and prediction.

    The gate :func:`~causal_pp.identify_counterfactual` runs first; see the module docstring
    for the rest. Same as :meth:`CausalPosterior.estimate <causal_pp.CausalPosterior.estimate>`
    with a counterfactual query.

    Returns
    -------
    Estimate
        ``samples`` per draw; ``predictive`` holds the counterfactual outcome per unit,
        resampled by the weights (key ``"Y_{X=0}"``); ``ess`` the weights' effective size.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, CausalModel, CausalPosterior, Counterfactual
    >>> def m(n):
    ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
    ...     with pyro.plate("units", n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(b * x, 1.0))
    >>> post = CausalPosterior(model=CausalModel(m, CausalGraph.parse("X -> Y")), samples={"b": torch.full((3,), 2.0)},
    ...                        data={"X": torch.zeros(2), "Y": torch.zeros(2)}, diagnostics={}, method="given", seed=0)
    >>> q = Counterfactual("Y", do={"X": 0.0}, factual={"X": 1.0, "Y": 3.0})  # unit-level: not identified
    >>> import warnings; warnings.simplefilter("ignore")
    >>> est = estimate_counterfactual(post, q, num_units=10, allow_unidentified=True)
    >>> round(est.mean, 4), est.identified  # 3 - 2*1 + 2*0
    (1.0, False)
    """
    options = make_options(
        num_samples=num_samples,
        num_units=num_units,
        seed=seed,
        allow_unidentified=allow_unidentified,
        assume_monotonic=assume_monotonic,
        mc_fraction=mc_fraction,
        max_units=max_units,
    )
    return _estimate(post, query, options)


def _gate(post: CausalPosterior, query: CounterfactualQuery, p: Plan, options: EstimateOptions) -> Any:
    ident = identify_counterfactual(
        post.graph, query, assume_monotonic=options.assume_monotonic, strict=not options.allow_unidentified
    )
    if not ident.identified:
        warn(
            f"causal_pp: {query} is NOT identifiable from the observed variables; it is estimated only "
            f"because allow_unidentified=True, and the number has no causal guarantee. {ident.reason}"
        )
    for z in p.evidence:
        if post.structure.sites[z].deterministic:
            raise InferenceError(
                f"{query} observes {z!r}, a pyro.deterministic site: it has no density, so its noise "
                "cannot be abducted. Give it a noise distribution (pyro.sample) to condition on it."
            )
    pairs = [("do", k, v) for arm in p.arms for k, v in arm.items()]
    check_query_values(post, pairs + [("factual", k, v) for k, v in p.evidence.items()])
    return ident


def _run(
    post: CausalPosterior,
    p: Plan,
    part: Mapping[str, torch.Tensor],
    num: int,
    num_units: int,
    key: int,
    stratify: bool,
) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """Abduction then prediction in every arm, for one chunk of ``num`` draws."""
    outcomes = tuple(p.outcome)
    cond = vectorized(post, part, num)
    with seeded(key, post.device), on_device(post.device):
        noise, logw = abduct(post, p.evidence, cond, num, num_units, key, stratify)
        out = []
        for act in p.arms:
            _, cf = predict(post, act, cond, noise, num, num_units, outcomes)
            out.append({y: cf[y].cpu() for y in outcomes})
    return out, logw.cpu()


def _signs(p: Plan) -> tuple[float, ...]:
    return (1.0, -1.0) if p.how == "difference" else (1.0,)


def _contributions(p: Plan, per_arm: list[Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """Per unit, each term's contribution ``(terms, draws, units, columns)``.

    PNS: the indicator that the same unit has the outcome when treated AND lacks it under
    control (one term); otherwise the counterfactual outcome (or its event's indicator) per arm.
    """
    outcomes = tuple(p.outcome)
    if p.how == "joint":
        y = outcomes[0]
        both = (per_arm[0][y].double() == p.joint[0]) & (per_arm[1][y].double() == p.joint[1])
        return both.double().unsqueeze(0).unsqueeze(-1)
    terms = []
    for vs in per_arm:
        cols = []
        for y in outcomes:
            v, ev = vs[y].double(), p.outcome[y]
            cols.append(v if ev is None else (v == ev).double())
        terms.append(torch.stack(cols, -1))
    return torch.stack(terms)


@dataclass
class _Kept:
    values: list[dict[str, list[torch.Tensor]]]
    logws: list[torch.Tensor]


def _simulate(
    post: CausalPosterior,
    p: Plan,
    draws: Mapping[str, torch.Tensor],
    num_units: int,
    key: int,
    tally: Tally,
    stratify: bool,
    keep: bool,
) -> _Kept:
    """One batch of ``num_units`` units for every draw, in chunks of draws, into ``tally``."""
    S = tally.draws
    outcomes = tuple(p.outcome)
    starts = chunks(S, num_units, post.structure, budget=2**22)
    kept = _Kept([{y: [] for y in outcomes} for _ in p.arms], [])
    for j, start in enumerate(starts):
        stop = starts[j + 1] if j + 1 < len(starts) else S
        part = {k: v[start:stop] for k, v in draws.items()}
        out, lw = _run(post, p, part, stop - start, num_units, stream_key(key, j), stratify)
        c = _contributions(p, out)
        blocks = replicates_for(num_units) if stratify else None
        weights = lw.unsqueeze(0).expand(c.shape[0], -1, -1)
        tally.add(c, weights, slice(start, stop), blocks, compare=keep and blocks is not None)
        if keep:
            for a in range(len(p.arms)):
                for y in outcomes:
                    kept.values[a][y].append(out[a][y])
            kept.logws.append(lw)
    return kept


def _estimate(post: CausalPosterior, query: CounterfactualQuery, options: EstimateOptions) -> Estimate:
    p = plan(query)
    ident = _gate(post, query, p, options)
    outcomes = tuple(p.outcome)
    idx, chains = select_draws(post, options.num_samples)
    draws = {k: (v if idx is None else v[idx.to(v.device)]) for k, v in post.samples.items()}
    S = next(iter(draws.values())).shape[0] if draws else post.num_draws
    mc_plan = McPlan.make(options.num_units, options.mc_fraction, options.max_units, S, len(p.arms))
    tally = Tally(S, _signs(p))

    def batch(n: int, key: int, keep: bool, stratify: bool) -> _Kept:
        return _simulate(post, p, draws, n, key, tally, stratify, keep)

    kept, sim = simulate_until(batch, tally, mc_plan, options.seed, options.stratify)
    units = int(tally.units.max())
    samples = tally.functional
    if not torch.isfinite(samples).all():
        raise InferenceError(
            f"no simulated unit is consistent with the factual evidence {p.evidence} for some draws (all "
            "likelihood weights are zero); raise num_units, or check that the evidence is possible."
        )
    mc_se = tally.mc_var.sqrt()
    if samples.shape[1] == 1:
        samples, mc_se = samples[:, 0], mc_se[:, 0]
    means = {k: v.double().mean(0, keepdim=True).to(v.dtype) for k, v in post.samples.items()}
    plug_tally = Tally(1, _signs(p))
    _simulate(post, p, means, units, stream_key(options.seed, "plugin"), plug_tally, options.stratify, False)
    plug_t = plug_tally.functional.reshape(-1)
    plugin: float | torch.Tensor = float(plug_t) if plug_t.numel() == 1 else plug_t
    ess_ = tally.ess
    if float(ess_.mean()) < max(20.0, 0.01 * units):
        warn(
            f"causal_pp: abduction for {query} has a small effective sample size (mean "
            f"{float(ess_.mean()):.1f} of {units} units per draw): the factual evidence is improbable. "
            "Raise num_units (or max_units)."
        )
    predictive: dict[str, torch.Tensor] = {}
    logw = torch.cat(kept.logws)
    for a, act in enumerate(p.arms):
        world = ", ".join(f"{k}={v:g}" for k, v in act.items())
        res = resample(
            {y: torch.cat(kept.values[a][y]) for y in outcomes}, logw, stream_key(options.seed, "resample")
        )
        for y in outcomes:
            predictive[f"{y}_{{{world}}}"] = res[y]
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
        posterior=post,
        draw_index=idx,
        chains=chains,
        mc_se=mc_se,
        mc_target=None if mc_plan.explicit is not None else mc_plan.fraction,
        mc_capped=sim.capped,
    )
