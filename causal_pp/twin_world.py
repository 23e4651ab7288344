"""Twin-world counterfactual programs with shared exogenous noise, and their estimation.

A unit-level counterfactual -- what Y *would* have been for this unit under ``do(x)``, given
what was observed about it -- needs the unit's exogenous noise to be the same in the actual
(factual) world and in the hypothetical (counterfactual) one. ChiRho's
``TwinWorldCounterfactual`` shares a site between worlds only when its value carries no world
dimension; a plain ``Y ~ Normal(f(x), s)`` downstream of an intervention is *resampled* in the
counterfactual world (an interventional, not a counterfactual, answer), and Pyro's
``LocScaleReparam`` does not help (its noise inherits the world dimension from ``loc``).

:class:`SharedNoise` rewrites every per-unit sample site into an explicit noise site
``N_<name>``, sampled with the plates' shape only (so it has no world dimension and is shared),
and a deterministic site ``<name>`` computed from it in every world:

* location-scale families (Normal, Laplace, Cauchy, Gumbel, Logistic, StudentT):
  ``N ~ D(0, 1)``, ``value = loc + scale * N``;
* Bernoulli, the monotone *uniform-threshold* model: ``U ~ Uniform(0, 1)``,
  ``value = 1[U < p]`` (so Y is monotone in p: raising p never switches Y off);
* Categorical, *Gumbel-max*: ``G ~ Gumbel(0, 1)^K``, ``value = argmax(logits + G)``;
* Delta sites and ``pyro.deterministic`` sites pass through; any other distribution is refused
  with :class:`~causal_pp.CounterfactualError` naming the site.

**Evidence (abduction).** A site with a factual value ``y`` gets its noise from its exact
conditional given ``y`` and its parents *in the factual world*: the inverse
``(y - loc) / scale`` for a location-scale site, ``U ~ Uniform(0, p)`` (y=1) or
``Uniform(p, 1)`` (y=0) for a Bernoulli site, a prior draw for a Categorical site (kept only
if its argmax is ``y``). The noise site is then masked out of the density and the evidence's
log-likelihood ``log p(y | parents)`` is added as a factor ``<name>__evidence``: the program's
joint density is the model's with the evidence conditioned in the factual world (each noise
prior counted once, unlike ChiRho's ``TransformedDistribution`` route), and running the
program forward is exact likelihood weighting. ChiRho's ``observational.condition`` is not
used: with explicit shared noise the value site is a deterministic function of the noise, so
conditioning it would give a zero-width Delta likelihood; evidence enters through the noise.

:func:`estimate_counterfactual` (behind :meth:`CausalPosterior.estimate
<causal_pp.CausalPosterior.estimate>`) does abduction on the single-world model and uses the
twin program only for prediction, with the abducted noise clamped.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pyro
import pyro.distributions as dist
import torch
from chirho.counterfactual.handlers import TwinWorldCounterfactual
from chirho.counterfactual.handlers.selection import get_factual_indices
from chirho.indexed.ops import IndexSet, gather
from pyro import poutine
from pyro.distributions.torch_distribution import MaskedDistribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_factor, site_is_subsample

from .counterfactual import ETT, PN, PNS, PS, Counterfactual, identify_counterfactual
from .errors import (
    CounterfactualError,
    InferenceError,
    InvalidArgumentError,
    QueryError,
    UnknownVariableError,
)
from .handlers import UNITS, intervene

if TYPE_CHECKING:  # pragma: no cover
    from .model import CausalModel
    from .posterior import CausalPosterior, Estimate

__all__ = ["NOISE_PREFIX", "SharedNoise", "TwinWorldProgram", "estimate_counterfactual", "twin_world"]

NOISE_PREFIX = "N_"
"""The explicit noise site of per-unit site ``Y`` is named ``N_Y``."""

WORLD = "__fresh_split__"
"""Name of ChiRho's twin-world index: 0 factual, 1 counterfactual."""

_LOC_SCALE: tuple[type, ...] = (
    dist.Normal,
    dist.Laplace,
    dist.Cauchy,
    dist.Gumbel,
    dist.Logistic,
    dist.StudentT,
)


def _unwrap(fn: Any) -> tuple[Any, int]:
    """The base distribution under Masked/Independent wrappers, and the reinterpreted dims."""
    k = 0
    while True:
        if isinstance(fn, MaskedDistribution):
            fn = fn.base_dist
        elif isinstance(fn, dist.Independent):
            k += fn.reinterpreted_batch_ndims
            fn = fn.base_dist
        else:
            return fn, k


def _standard(base: Any) -> Any:
    """The standard (loc 0, scale 1) member of a location-scale family, without batch shape."""
    z, o = torch.zeros(()), torch.ones(())
    if isinstance(base, dist.StudentT):  # the degrees of freedom must carry no world dimension
        return dist.StudentT(base.df, z, o)
    return type(base)(z, o)


def _sum_right(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.sum(tuple(range(-k, 0))) if k else t


def _in_units(msg: Mapping[str, Any]) -> bool:
    return any(f.name == UNITS for f in msg["cond_indep_stack"])


class SharedNoise(Messenger):
    """Rewrite per-unit sample sites into shared explicit noise plus a deterministic value.

    Parameters
    ----------
    evidence
        ``{site: value}`` observed in the factual world; each such site's noise is abducted
        (see the module docstring) and ``log p(value | parents)`` is added as a factor site
        ``<site>__evidence`` (also kept in :attr:`log_likelihood` after a run).

    Attributes
    ----------
    noise_sites : dict
        Site name -> its noise site's name, for the sites rewritten in the last run.
    log_likelihood : dict
        Evidence site -> per-unit ``log p(value | parents)`` of the last run.

    Raises
    ------
    CounterfactualError
        A per-unit site has a distribution without a shared-noise construction.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> def prog(n):
    ...     with pyro.plate("units", n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(2 * x, 0.5))
    >>> tr = pyro.poutine.trace(SharedNoise()(prog)).get_trace(3)
    >>> y, x, n_y = (tr.nodes[k]["value"] for k in ("Y", "X", "N_Y"))
    >>> torch.allclose(y, 2 * x + 0.5 * n_y)
    True
    """

    def __init__(self, evidence: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.evidence = dict(evidence or {})
        self.noise_sites: dict[str, str] = {}
        self.log_likelihood: dict[str, torch.Tensor] = {}

    def __enter__(self) -> SharedNoise:
        self.noise_sites = {}
        self.log_likelihood = {}
        return super().__enter__()

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        name = msg["name"]
        if (
            site_is_subsample(msg)
            or site_is_factor(msg)
            or msg["infer"].get("_deterministic", False)
            or msg["infer"].get("_causal_pp_noise", False)
            or msg["is_observed"]
            or msg["value"] is not None
            or not _in_units(msg)
        ):
            return
        base, k = _unwrap(msg["fn"])
        if isinstance(base, dist.Delta):
            return
        noise_name = NOISE_PREFIX + name
        y = self.evidence.get(name)
        fw = get_factual_indices()  # empty outside a twin-world handler: gather is the identity
        cfg = {"_causal_pp_noise": True, "is_auxiliary": False}
        logp: torch.Tensor | None = None
        if isinstance(base, _LOC_SCALE):
            std = _standard(base)
            ev = k
            noise_fn = std.expand(base.batch_shape[len(base.batch_shape) - k :]).to_event(k) if k else std
            if y is None:
                noise = pyro.sample(noise_name, noise_fn, infer=cfg)
            else:
                loc_f = gather(base.loc, fw, event_dim=ev)
                scale_f = gather(base.scale, fw, event_dim=ev)
                obs = (torch.as_tensor(y, dtype=loc_f.dtype, device=loc_f.device) - loc_f) / scale_f
                logp = _sum_right(std.log_prob(obs) - torch.log(scale_f), k)
                noise = pyro.sample(noise_name, noise_fn.mask(False), obs=obs, infer=cfg)
            value = base.loc + base.scale * noise
        elif isinstance(base, dist.Bernoulli):
            p = base.probs
            if k:
                raise CounterfactualError(
                    f"site {name!r}: Bernoulli with event dimensions (to_event) is not supported by the "
                    "uniform-threshold noise model; use one Bernoulli per unit.",
                    site=name,
                )
            if y is None:
                noise = pyro.sample(noise_name, dist.Uniform(torch.zeros(()), torch.ones(())), infer=cfg)
            else:
                p_f = gather(p, fw)
                yv = torch.as_tensor(y, dtype=p_f.dtype, device=p_f.device)
                lo = torch.where(yv > 0.5, torch.zeros_like(p_f), p_f)
                hi = torch.where(yv > 0.5, p_f, torch.ones_like(p_f))
                logp = torch.log(hi - lo)
                noise = pyro.sample(noise_name, dist.Uniform(lo, hi).mask(False), infer=cfg)
            value = (noise < p).to(p.dtype)
        elif isinstance(base, dist.Categorical):
            if k:
                raise CounterfactualError(
                    f"site {name!r}: Categorical with event dimensions (to_event) is not supported by the "
                    "Gumbel-max noise model.",
                    site=name,
                )
            logits = base.logits
            K = logits.shape[-1]
            g = dist.Gumbel(torch.zeros(K), torch.ones(K)).to_event(1)
            noise = pyro.sample(noise_name, g, infer=cfg)
            value = torch.argmax(logits + noise, dim=-1)
            if y is not None:  # rejection-style likelihood weighting: keep the draws whose argmax is y
                v_f = gather(value, fw)
                logp = torch.where(
                    v_f == int(y), torch.zeros((), dtype=logits.dtype), torch.tensor(-float("inf"))
                )
        else:
            raise CounterfactualError(
                f"site {name!r} has a {type(base).__name__} distribution, which has no shared-noise "
                "construction for twin-world counterfactuals (supported: Normal, Laplace, Cauchy, Gumbel, "
                "Logistic, StudentT, Bernoulli, Categorical). Write its noise explicitly: sample the noise "
                f"as an auxiliary site and compute {name!r} with pyro.deterministic.",
                site=name,
            )
        self.noise_sites[name] = noise_name
        if logp is not None:
            self.log_likelihood[name] = logp
            pyro.factor(f"{name}__evidence", logp)
        msg["fn"] = dist.Delta(value, event_dim=k).mask(False)
        msg["value"] = value
        msg["is_observed"] = True
        msg["done"] = True
        msg["infer"] = {**msg["infer"], "_deterministic": True, "noise_site": noise_name}


class TwinWorldProgram:
    """The twin-world program of a :class:`~causal_pp.CausalModel`: call it like the model.

    Values downstream of the intervention carry a world dimension of size 2 at
    :attr:`world_dim` (index 0 factual, 1 counterfactual); the rest are shared. Read worlds with
    :meth:`worlds` on a trace.

    Attributes
    ----------
    model, actions, factual
        The model, the hypothetical intervention, and the factual evidence.
    world_dim
        The (negative) dimension of the world index.
    """

    def __init__(
        self,
        model: CausalModel,
        actions: Mapping[str, Any],
        factual: Mapping[str, Any],
        world_dim: int,
    ) -> None:
        self.model = model
        self.actions = MappingProxyType(dict(actions))
        self.factual = MappingProxyType(dict(factual))
        self.world_dim = world_dim
        self._program = SharedNoise(self.factual)(intervene(model.fn, self.actions))

    def __call__(self, n: int, *args: Any, **kwargs: Any) -> Any:
        with TwinWorldCounterfactual(first_available_dim=self.world_dim):
            return self._program(n, *args, **kwargs)

    def worlds(self, value: torch.Tensor, event_dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(factual, counterfactual) parts of a traced value; the world dimension and the size-1
        dimensions left of the model's plates are dropped (a value without a world dimension is
        the same in both worlds).

        Examples
        --------
        >>> import torch
        >>> p = TwinWorldProgram.__new__(TwinWorldProgram); p.world_dim = -3
        >>> [t.tolist() for t in p.worlds(torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]]]))]
        [[1.0, 2.0], [3.0, 4.0]]
        """
        keep = -self.world_dim - 2 + event_dim  # the model's plate dimensions and the event dimensions
        d = value.dim() - event_dim + self.world_dim
        parts = [value.select(d, 0), value.select(d, 1)] if d >= 0 and value.shape[d] > 1 else [value, value]
        out = []
        for v in parts:
            while v.dim() > keep and v.shape[0] == 1:
                v = v[0]
            out.append(v)
        return out[0], out[1]

    def __repr__(self) -> str:
        return f"TwinWorldProgram({self.model.name}, do={dict(self.actions)}, factual={dict(self.factual)})"


def _check_names(model: CausalModel, names: Mapping[str, Any], role: str) -> None:
    for k in names:
        if k not in model.graph:
            raise UnknownVariableError(
                f"{role} {k!r} is not a node of the DAG (nodes: {list(model.graph.nodes)})."
            )


def twin_world(
    model: CausalModel,
    do: Mapping[str, Any],
    factual: Mapping[str, Any] | None = None,
    *,
    world_dim: int | None = None,
) -> TwinWorldProgram:
    """The twin-world counterfactual program of ``model`` under ``do``, given ``factual``.

    Every per-unit site is rewritten by :class:`SharedNoise` (exogenous noise shared between
    the worlds), ``do`` is applied with ChiRho under ``TwinWorldCounterfactual``, and the
    factual evidence is conditioned *in the factual world only*, by abduction of the noise
    (see the module docstring): the factor sites ``<name>__evidence`` carry
    ``log p(evidence | parents)``.

    Parameters
    ----------
    model
        The :class:`~causal_pp.CausalModel`.
    do
        ``{node: value}``: the hypothetical intervention.
    factual
        ``{node: value}`` observed in the actual world.
    world_dim
        Dimension of the world index; default ``-(max_plate_nesting + 2)``, left of the model's
        plates and of one vectorising plate (e.g. over posterior draws).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, causal_model, units
    >>> @causal_model(CausalGraph.parse("X -> Y"))
    ... def m(n):
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(2 * x, 1.0))
    >>> prog = m.twin_world(do={"X": 0.0}, factual={"X": 1.0, "Y": 3.0})
    >>> tr = pyro.poutine.trace(prog).get_trace(1)
    >>> [round(float(v), 3) for v in prog.worlds(tr.nodes["Y"]["value"])]  # y - 2*1 + 2*0
    [3.0, 1.0]
    """
    acts = model._validate_actions(do)
    factual = dict(factual or {})
    _check_names(model, factual, "factual variable")
    P = model.inspect().max_plate_nesting
    return TwinWorldProgram(model, acts, factual, world_dim if world_dim is not None else -(P + 2))


# --- estimation -------------------------------------------------------------------------


def _squeeze_to(value: torch.Tensor, num: int, n: int) -> torch.Tensor:
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


def _plan(query: Any) -> tuple[dict[str, float], list[dict[str, float]], dict[str, float | None], str]:
    """(factual evidence, interventions per arm, outcome -> event value or None, how arms combine).

    ``how``: ``"one"`` (one world), ``"difference"`` (ETT: first arm minus second) or
    ``"joint"`` (PNS: both arms' events at once, on the same units).
    """
    if isinstance(query, ETT):
        seen = {query.treatment: query.treated}
        arms = [{query.treatment: query.treated}, {query.treatment: query.control}]
        return seen, arms, {query.outcome: None}, "difference"
    if isinstance(query, PNS):
        arms = [{query.treatment: query.treated}, {query.treatment: query.control}]
        return {}, arms, {query.outcome: None}, "joint"
    if isinstance(query, (PN, PS)):
        query = query.as_counterfactual()
    if isinstance(query, Counterfactual):
        return query.evidence, [query.interventions], dict(query.outcome), "one"
    raise QueryError(
        f"twin-world estimation takes Counterfactual, ETT, PN, PS or PNS queries; got {type(query).__name__}."
    )


def _abduct(
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
        tr = poutine.trace(handler(post.model.fn)).get_trace(
            num_units, *post._model_args, **post._model_kwargs
        )
    noise = {nn: tr.nodes[nn]["value"] for nn in handler.noise_sites.values()}
    logw = torch.zeros(num, num_units, dtype=torch.float64)
    for lp in handler.log_likelihood.values():
        logw = logw + _squeeze_to(lp, num, num_units).double()
    return noise, logw


def _predict(
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
        tr = poutine.trace(program).get_trace(num_units, *post._model_args, **post._model_kwargs)
        fact = {y: _squeeze_to(gather(tr.nodes[y]["value"], fw), num, num_units) for y in outcomes}
        cf = {y: _squeeze_to(gather(tr.nodes[y]["value"], cw), num, num_units) for y in outcomes}
    return fact, cf


def _weighted_mean(v: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
    w = torch.softmax(logw, dim=1)
    return (w * v.double()).sum(1)


def estimate_counterfactual(
    post: CausalPosterior,
    query: Counterfactual | ETT | PN | PS | PNS,
    *,
    num_samples: int | None = None,
    num_units: int = 1000,
    seed: int = 0,
    allow_unidentified: bool = False,
    assume_monotonic: bool = False,
) -> Estimate:
    """Estimate a counterfactual query from a posterior by abduction, action and prediction.

    The gate :func:`~causal_pp.counterfactual.identify_counterfactual` runs first. Then, for
    every posterior draw of the global parameters (all draws at once, under a vectorising
    plate, in chunks):

    1. **Abduction** on the single-world model: ``num_units`` fresh units are simulated with
       their noise rewritten by :class:`SharedNoise`; latent noise comes from its prior, the
       noise of each evidence site from its exact conditional given the evidence and the
       unit's parents, and the unit gets the log-weight ``sum log p(evidence | parents)``
       (self-normalised importance sampling = likelihood weighting on the densities, or
       masses, of the evidence sites).
    2. **Action and prediction** in the twin-world program with the abducted noise clamped:
       the counterfactual outcome of each unit in the world ``do``.
    3. The functional of the draw is the weighted mean of the counterfactual outcome (of its
       indicator for an event such as ``{"Y": 0}``); for an :class:`ETT`, the difference of
       the two arms (same noise in both); for a :class:`PNS`, which has no factual evidence,
       the share of units that have the outcome in the treated world *and* lack it in the
       control world (two counterfactual worlds on the same noise).

    Parameters
    ----------
    post
        The :class:`~causal_pp.CausalPosterior`.
    query
        :class:`Counterfactual`, :class:`ETT`, :class:`PN`, :class:`PS` or :class:`PNS`.
    num_samples, num_units, seed, allow_unidentified
        As for :meth:`CausalPosterior.estimate <causal_pp.CausalPosterior.estimate>`.
    assume_monotonic
        Passed to the gate (needed for PN/PS/PNS). The uniform-threshold Bernoulli noise model
        *is* monotone whenever ``p`` increases with the treatment.

    Returns
    -------
    Estimate
        ``samples`` per draw; ``predictive`` holds the counterfactual outcome per unit,
        resampled by the weights (key ``"Y_{X=0}"``); ``ess`` the weights' effective size.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, CausalModel, CausalPosterior
    >>> from causal_pp.counterfactual import Counterfactual
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
    from .inference import _child_seeds, on_device, seeded
    from .posterior import Estimate, _ess, _resample

    if not isinstance(num_units, int) or num_units < 1:
        raise InvalidArgumentError(f"num_units must be a positive integer; got {num_units!r}.")
    evidence, arms, outcome, how = _plan(query)
    ident = identify_counterfactual(
        post.graph, query, assume_monotonic=assume_monotonic, strict=not allow_unidentified
    )
    if not ident.identified:
        warnings.warn(
            f"causal_pp: {query} is NOT identifiable from the observed variables; it is estimated only "
            f"because allow_unidentified=True, and the number has no causal guarantee. {ident.reason}",
            UserWarning,
            stacklevel=3,
        )
    s = post.structure
    for z in evidence:
        if s.sites[z].deterministic:
            raise InferenceError(
                f"{query} observes {z!r}, a pyro.deterministic site: it has no density, so its noise "
                "cannot be abducted. Give it a noise distribution (pyro.sample) to condition on it."
            )
    outcomes = tuple(outcome)
    idx, chains = post._draw_index(num_samples)
    draws = {k: (v if idx is None else v[idx.to(v.device)]) for k, v in post.samples.items()}
    S = next(iter(draws.values())).shape[0] if draws else post.num_draws
    device = post.device
    chunk = max(1, (2**22) // (num_units * max(1, len(s.unit_sites))))
    starts = list(range(0, S, chunk))
    seeds = _child_seeds(seed, len(starts) + 2)

    def run(
        part: Mapping[str, torch.Tensor], num: int, sd: int
    ) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        cond = post._vectorized(part, num)
        with seeded(sd, device), on_device(device):
            noise, logw = _abduct(post, evidence, cond, num, num_units)
            out = []
            for act in arms:
                _, cf = _predict(post, act, cond, noise, num, num_units, outcomes)
                out.append({y: cf[y].cpu() for y in outcomes})
        return out, logw.cpu()

    vals: list[dict[str, list[torch.Tensor]]] = [{y: [] for y in outcomes} for _ in arms]
    logws: list[torch.Tensor] = []
    for j, start in enumerate(starts):
        stop = min(S, start + chunk)
        out, lw = run({k: v[start:stop] for k, v in draws.items()}, stop - start, seeds[j])
        for a in range(len(arms)):
            for y in outcomes:
                vals[a][y].append(out[a][y])
        logws.append(lw)
    values = [{y: torch.cat(v[y]) for y in outcomes} for v in vals]
    logw = torch.cat(logws)
    if not torch.isfinite(torch.logsumexp(logw, 1)).all():
        raise InferenceError(
            f"no simulated unit is consistent with the factual evidence {evidence} for some draws (all "
            "likelihood weights are zero); raise num_units, or check that the evidence is possible."
        )

    def functional(vs: Mapping[str, torch.Tensor], lw: torch.Tensor) -> torch.Tensor:
        cols = []
        for y in outcomes:
            v = vs[y].double()
            ev = outcome[y]
            cols.append(_weighted_mean(v if ev is None else (v == ev).double(), lw))
        return torch.stack(cols, 1)

    def combine(per_arm: list[Mapping[str, torch.Tensor]], lw: torch.Tensor) -> torch.Tensor:
        if how == "joint":
            # PNS: the same unit has the outcome when treated AND lacks it under control.
            y = outcomes[0]
            both = (per_arm[0][y].double() == query.outcome_value) & (
                per_arm[1][y].double() == 1.0 - query.outcome_value
            )
            return _weighted_mean(both.double(), lw).unsqueeze(1)
        funcs = [functional(per_arm[a], lw) for a in range(len(arms))]
        return funcs[0] - funcs[1] if how == "difference" else funcs[0]

    samples = combine(values, logw)
    if samples.shape[1] == 1:
        samples = samples[:, 0]

    means = {k: v.double().mean(0, keepdim=True).to(v.dtype) for k, v in post.samples.items()}
    pout, plw = run(means, 1, seeds[-1])
    plug_t = combine(pout, plw.double()).reshape(-1)
    plugin: float | torch.Tensor = float(plug_t) if plug_t.numel() == 1 else plug_t

    ess = _ess(logw)
    if float(ess.mean()) < max(20.0, 0.01 * num_units):
        warnings.warn(
            f"causal_pp: abduction for {query} has a small effective sample size (mean "
            f"{float(ess.mean()):.1f} of {num_units} units per draw): the factual evidence is improbable. "
            "Raise num_units.",
            UserWarning,
            stacklevel=3,
        )
    predictive: dict[str, torch.Tensor] = {}
    for a, act in enumerate(arms):
        world = ", ".join(f"{k}={v:g}" for k, v in act.items())
        res = _resample(values[a], logw, seeds[-2])
        for y in outcomes:
            predictive[f"{y}_{{{world}}}"] = res[y]
    return Estimate(
        query=query,  # type: ignore[arg-type]
        samples=samples,
        predictive=MappingProxyType(predictive),
        identified=ident.identified,
        identification=ident,  # type: ignore[arg-type]
        plugin=plugin,
        num_units=num_units,
        seed=seed,
        ess=ess,
        posterior=post,
        draw_index=idx,
        chains=chains,
    )
