"""Counterfactual estimates: abduction, action and prediction in twin worlds with shared noise.

For every posterior draw of the global parameters (all draws at once, under a vectorising plate,
in chunks):

1. **Abduction** on the single-world model: ``num_units`` fresh units are simulated with their
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
from ..handlers import WORLD, SharedNoise, intervene
from ..identification import identify_counterfactual
from ..posterior import Estimate
from ..queries import ETT, PN, PNS, PS, Counterfactual, CounterfactualQuery
from ..runtime import child_seeds, on_device, seeded
from .dispatch import EstimateOptions, estimator, make_options
from .simulate import chunks, select_draws, vectorized
from .weighting import ess, resample, weighted_mean

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
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Single-world run: noise of fresh units (prior for latents, abducted for evidence) and log weights."""
    P = post.structure.max_plate_nesting
    handler = SharedNoise(evidence)
    with (
        torch.no_grad(),
        pyro.validation_enabled(False),
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
    num_units: int = 1000,
    seed: int = 0,
    allow_unidentified: bool = False,
    assume_monotonic: bool = False,
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
    return ident


def _run(
    post: CausalPosterior, p: Plan, part: Mapping[str, torch.Tensor], num: int, num_units: int, seed: int
) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """Abduction then prediction in every arm, for one chunk of ``num`` draws."""
    outcomes = tuple(p.outcome)
    cond = vectorized(post, part, num)
    with seeded(seed, post.device), on_device(post.device):
        noise, logw = abduct(post, p.evidence, cond, num, num_units)
        out = []
        for act in p.arms:
            _, cf = predict(post, act, cond, noise, num, num_units, outcomes)
            out.append({y: cf[y].cpu() for y in outcomes})
    return out, logw.cpu()


def _combine(p: Plan, per_arm: list[Mapping[str, torch.Tensor]], lw: torch.Tensor) -> torch.Tensor:
    """The functional per draw, from every arm's counterfactual outcomes and the weights."""
    outcomes = tuple(p.outcome)
    if p.how == "joint":
        # PNS: the same unit has the outcome when treated AND lacks it under control.
        y = outcomes[0]
        both = (per_arm[0][y].double() == p.joint[0]) & (per_arm[1][y].double() == p.joint[1])
        return weighted_mean(both.double(), lw).unsqueeze(1)
    funcs = []
    for vs in per_arm:
        cols = []
        for y in outcomes:
            v, ev = vs[y].double(), p.outcome[y]
            cols.append(weighted_mean(v if ev is None else (v == ev).double(), lw))
        funcs.append(torch.stack(cols, 1))
    return funcs[0] - funcs[1] if p.how == "difference" else funcs[0]


def _estimate(post: CausalPosterior, query: CounterfactualQuery, options: EstimateOptions) -> Estimate:
    p = plan(query)
    ident = _gate(post, query, p, options)
    outcomes, num_units = tuple(p.outcome), options.num_units
    idx, chains = select_draws(post, options.num_samples)
    draws = {k: (v if idx is None else v[idx.to(v.device)]) for k, v in post.samples.items()}
    S = next(iter(draws.values())).shape[0] if draws else post.num_draws
    starts = chunks(S, num_units, post.structure, budget=2**22)
    seeds = child_seeds(options.seed, len(starts) + 2)
    vals: list[dict[str, list[torch.Tensor]]] = [{y: [] for y in outcomes} for _ in p.arms]
    logws: list[torch.Tensor] = []
    for j, start in enumerate(starts):
        stop = starts[j + 1] if j + 1 < len(starts) else S
        out, lw = _run(
            post, p, {k: v[start:stop] for k, v in draws.items()}, stop - start, num_units, seeds[j]
        )
        for a in range(len(p.arms)):
            for y in outcomes:
                vals[a][y].append(out[a][y])
        logws.append(lw)
    values = [{y: torch.cat(v[y]) for y in outcomes} for v in vals]
    logw = torch.cat(logws)
    if not torch.isfinite(torch.logsumexp(logw, 1)).all():
        raise InferenceError(
            f"no simulated unit is consistent with the factual evidence {p.evidence} for some draws (all "
            "likelihood weights are zero); raise num_units, or check that the evidence is possible."
        )
    samples = _combine(p, values, logw)
    if samples.shape[1] == 1:
        samples = samples[:, 0]
    means = {k: v.double().mean(0, keepdim=True).to(v.dtype) for k, v in post.samples.items()}
    pout, plw = _run(post, p, means, 1, num_units, seeds[-1])
    plug_t = _combine(p, pout, plw.double()).reshape(-1)
    plugin: float | torch.Tensor = float(plug_t) if plug_t.numel() == 1 else plug_t
    ess_ = ess(logw)
    if float(ess_.mean()) < max(20.0, 0.01 * num_units):
        warn(
            f"causal_pp: abduction for {query} has a small effective sample size (mean "
            f"{float(ess_.mean()):.1f} of {num_units} units per draw): the factual evidence is improbable. "
            "Raise num_units."
        )
    predictive: dict[str, torch.Tensor] = {}
    for a, act in enumerate(p.arms):
        world = ", ".join(f"{k}={v:g}" for k, v in act.items())
        res = resample(values[a], logw, seeds[-2])
        for y in outcomes:
            predictive[f"{y}_{{{world}}}"] = res[y]
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
        posterior=post,
        draw_index=idx,
        chains=chains,
    )
