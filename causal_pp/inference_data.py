"""ArviZ ``InferenceData`` for posteriors and estimates, and ArviZ's convergence diagnostics.

:meth:`CausalPosterior.to_arviz <causal_pp.CausalPosterior.to_arviz>` and
:meth:`Estimate.to_arviz <causal_pp.Estimate.to_arviz>` delegate here. The groups:

=====================  ============================================================================
group                  contents (dims)
=====================  ============================================================================
``posterior``          global parameters (chain, draw, ...); an estimate adds ``functional``; per-unit
                       latents on request (chain, draw, unit, ...)
``sample_stats``       NUTS: ``diverging``, ``energy``, ``tree_depth``, ``step_size``, ``lp`` per
                       draw (chain, draw). SVI: ``loss`` (svi_step), ``importance_log_weight``
                       (importance_proposal), ``importance_ess``, ``importance_pareto_k``
``log_likelihood``     per observed site and unit (chain, draw, unit): see below
``observed_data``      the data, every site on the shared ``unit`` dimension
``predictions``        an estimate's unit-level interventional predictive, one variable per
                       outcome with an ``arm`` coordinate (chain, draw, arm, new_unit): ``new_unit``
                       are the fresh units simulated per draw, not the observed ones
=====================  ============================================================================

**The pointwise log-likelihood integrates the per-unit latents out.** For unit ``i`` and a
draw of the global parameters theta, the site ``v`` holds ``log p(v_i | v_{<i}, theta)``: the
log-likelihood of the unit's value of ``v`` given the unit's observed variables that precede
``v`` in the DAG's topological order, the unit's latents integrated over. The sites of a unit
sum to ``log p(unit's observations | theta)``, the likelihood of a *new* unit. We do not
condition on the per-unit latent draws because (1) leave-one-unit-out then asks about the
same unit's latent, which only that unit's data informs, so PSIS-LOO's importance ratios are
unstable (Pareto k above 0.7 for most units) and the comparison rewards DAGs with more latent
freedom; (2) causal estimates simulate fresh units, so the marginal is the predictive that the
estimate relies on; (3) SVI's per-unit latents are the guide's draws, which do not pair with
the importance-corrected globals. The integral is estimated by importance sampling, the
proposal adapted to each unit and draw (seeded, so the same random numbers for every
conversion): :mod:`causal_pp.unit_likelihood` has the estimator and why its proposal cannot
be the prior alone.

Convergence diagnostics (:func:`rhat_ess`) are ArviZ's: rank-normalised split R-hat, bulk and
tail effective sample size (Vehtari et al. 2021).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import validation as check
from .errors import warn
from .unit_likelihood import LOG_LIKELIHOOD_PARTICLES, pointwise_log_likelihood
from .version import __version__

if TYPE_CHECKING:  # pragma: no cover
    import arviz as az
    import xarray as xr

    from .posterior import CausalPosterior, Estimate

__all__ = [
    "LOG_LIKELIHOOD_PARTICLES",
    "estimate_to_inference_data",
    "pareto_k",
    "pointwise_log_likelihood",
    "posterior_to_inference_data",
    "rhat_ess",
]

LOW_LOG_LIKELIHOOD_ESS = 5.0
"""Fewer effective particles than this for some unit (median over draws) get a warning."""


# --- diagnostics ------------------------------------------------------------------------------


def rhat_ess(draws: np.ndarray) -> dict[str, np.ndarray]:
    """ArviZ's rank-normalised split R-hat and bulk/tail ESS of ``draws`` shaped ``(chain, draw, ...)``.

    Returns arrays of the trailing shape: ``r_hat`` (NaN -- a constant quantity -- reported as 1),
    ``ess_bulk`` and ``ess_tail`` (NaN reported as 0). Fewer than 4 draws per chain give NaN.
    ArviZ computes no R-hat from one chain; a single chain's R-hat is computed on its two halves
    as two chains (which ArviZ splits again), so drift within one chain is still caught.

    Examples
    --------
    >>> import numpy as np
    >>> d = rhat_ess(np.random.default_rng(0).normal(size=(2, 500)))
    >>> bool(d["r_hat"] < 1.01), bool(d["ess_bulk"] > 700)
    (True, True)
    >>> drifting = np.linspace(0, 3, 400).reshape(1, 400)  # one chain that never settles
    >>> bool(rhat_ess(drifting)["r_hat"] > 1.5)
    True
    """
    import arviz as az

    x = np.asarray(draws, dtype=float)
    shape = x.shape[2:]
    if x.ndim < 2 or x.shape[1] < 4:
        nan = np.full(shape, np.nan)
        return {"r_hat": nan, "ess_bulk": nan.copy(), "ess_tail": nan.copy()}
    ds = az.convert_to_dataset({"x": x})
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # constant draws: NaN, handled below
        halves = x if x.shape[0] > 1 else x[:, : 2 * (x.shape[1] // 2)].reshape(2, x.shape[1] // 2, *shape)
        r = az.rhat(az.convert_to_dataset({"x": halves}), method="rank")["x"].values
        bulk = az.ess(ds, method="bulk")["x"].values
        tail = az.ess(ds, method="tail")["x"].values
    return {
        "r_hat": np.nan_to_num(np.asarray(r, dtype=float), nan=1.0).reshape(shape),
        "ess_bulk": np.nan_to_num(np.asarray(bulk, dtype=float), nan=0.0).reshape(shape),
        "ess_tail": np.nan_to_num(np.asarray(tail, dtype=float), nan=0.0).reshape(shape),
    }


def pareto_k(log_weights: Any) -> float:
    """ArviZ's PSIS Pareto shape k of importance log-weights (non-finite weights dropped).

    Below 0.5: the weights' variance is finite and the estimate reliable; 0.5-0.7: usable;
    above 0.7: unreliable (Vehtari et al. 2024). NaN with fewer than 10 finite weights.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bool(pareto_k(rng.normal(scale=0.3, size=2000)) < 0.5)  # light-tailed weights
    True
    >>> bool(pareto_k(rng.standard_cauchy(2000)) > 0.7)  # heavy-tailed weights
    True
    """
    import arviz as az

    lw = np.asarray(log_weights.detach().cpu() if isinstance(log_weights, torch.Tensor) else log_weights)
    lw = lw.astype(float).reshape(-1)
    lw = lw[np.isfinite(lw)]
    if lw.size < 10:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on large k; the caller reports it
        _, k = az.psislw(lw - lw.max())
    return float(k)


# --- building the groups ----------------------------------------------------------------------


def _by_chain(x: Any, chains: int) -> np.ndarray:
    """Flat draws ``(chains * draws, ...)`` -> ``(chains, draws, ...)`` numpy."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a.reshape(chains, a.shape[0] // chains, *a.shape[1:])


def _take(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    return x if index is None else x[index.to(x.device)]


def _dims(name: str, ndim: int, first: tuple[str, ...] = ()) -> list[str]:
    return [*first, *(f"{name}_dim_{i}" for i in range(ndim - len(first)))]


def _dataset(
    values: Mapping[str, np.ndarray], dims: Mapping[str, list[str]], attrs: Mapping[str, Any]
) -> xr.Dataset:
    """Variables with leading (chain, draw) dims as an xarray Dataset, ArviZ's way."""
    import arviz as az

    return az.dict_to_dataset(dict(values), dims=dict(dims), attrs=dict(attrs))


def _posterior_group(
    post: CausalPosterior, index: torch.Tensor | None, chains: int, unit_latents: bool, attrs: dict[str, Any]
) -> dict[str, Any]:
    values: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    for k, v in post.samples.items():
        values[k] = _by_chain(_take(v, index), chains)
        dims[k] = _dims(k, values[k].ndim - 2)
    if unit_latents:
        for k, v in post.unit_samples.items():
            values[k] = _by_chain(_take(v, index), chains)
            dims[k] = _dims(k, values[k].ndim - 2, ("unit",))
    return {"values": values, "dims": dims, "attrs": attrs}


def _sample_stats(
    post: CausalPosterior, index: torch.Tensor | None, chains: int, attrs: dict[str, Any]
) -> xr.Dataset | None:
    """NUTS: per-draw stats (chain, draw); SVI: the loss trace and the importance weights."""
    import xarray as xr

    d = post.diagnostics
    per_draw = d.get("sample_stats") or {}
    if per_draw:
        values = {}
        for k, v in per_draw.items():
            a = np.asarray(v)
            a = a if index is None else a[index.cpu().numpy()]
            values[k] = a.reshape(chains, a.shape[0] // chains, *a.shape[1:])
        return _dataset(values, {}, attrs)
    data: dict[str, Any] = {}
    if d.get("loss") is not None:
        data["loss"] = ("svi_step", np.asarray(d["loss"], dtype=float))
    if d.get("is_log_weights") is not None:
        data["importance_log_weight"] = ("importance_proposal", np.asarray(d["is_log_weights"], dtype=float))
    for key, name in (("is_ess", "importance_ess"), ("is_pareto_k", "importance_pareto_k")):
        if d.get(key) is not None:
            data[name] = ((), float(d[key]))
    if not data:
        return None
    # "tempered": the importance weights (importance_ess) degenerated and tempered SMC corrected
    extra = {
        "importance_corrected": int(bool(d.get("is_corrected", False))),
        "importance_method": str(d.get("is_method", "none")),
    }
    return xr.Dataset(data, attrs={**attrs, **extra})


def _scalar_attr(v: Any) -> Any:
    """A value NetCDF can store as an attribute (numbers and strings)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, str)):
        return v
    return str(v)


def base_attrs(post: CausalPosterior) -> dict[str, Any]:
    """Attributes every group carries: the library, its version, the fit's method and seed."""
    return {
        "inference_library": "causal_pp",
        "inference_library_version": __version__,
        "method": post.method,
        "seed": int(post.seed),
        "model": post.model.name,
    }


def posterior_to_inference_data(
    post: CausalPosterior,
    *,
    log_likelihood: bool | str = True,
    unit_latents: bool = False,
    particles: int = LOG_LIKELIHOOD_PARTICLES,
    index: torch.Tensor | None = None,
    chains: int | None = None,
    extra_posterior: Mapping[str, np.ndarray] | None = None,
    predictions: xr.Dataset | None = None,
    attrs: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> az.InferenceData:
    """The ``InferenceData`` of a posterior (optionally a subset of its draws); see the module docstring.

    Parameters
    ----------
    post
        The fitted posterior.
    log_likelihood
        ``True``/``"sites"``: one ``log_likelihood`` variable per observed site; ``"joint"``: a
        single variable ``"joint"``, the per-unit sum (what leave-one-unit-out compares, so
        ``az.loo(idata)`` needs no ``var_name``); ``False``: no ``log_likelihood`` group.
    unit_latents
        Add the per-unit latent draws to ``posterior`` (dims chain, draw, unit). NUTS draws them
        jointly with the globals; SVI's are the guide's draws, not importance-corrected.
    particles
        Importance-sampling particles per unit for the log-likelihood.
    index, chains
        The draws to use (None: all) and how many chains they hold (default the fit's).
    seed
        Seed of the log-likelihood's particles (default: the fit's seed plus a fixed offset).
    extra_posterior, predictions, attrs
        What an estimate adds: posterior variables ``(chain, draw, ...)``, the ``predictions``
        group, and attributes.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, CausalPosterior, causal_model, units
    >>> @causal_model(CausalGraph.parse("X"))
    ... def m(n):
    ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     with units(n):
    ...         pyro.sample("X", dist.Normal(mu, 1.0))
    >>> post = CausalPosterior(model=m, samples={"mu": torch.zeros(6)}, data={"X": torch.zeros(3)},
    ...                        diagnostics={}, method="given", seed=0, num_chains=2)
    >>> idata = posterior_to_inference_data(post)
    >>> sorted(idata.groups()), idata.log_likelihood["X"].dims
    (['log_likelihood', 'observed_data', 'posterior'], ('chain', 'draw', 'unit'))
    """
    import arviz as az

    mode = "sites" if log_likelihood is True else log_likelihood
    if mode is not False:
        check.choice("log_likelihood", mode, ("sites", "joint"))
    c = post.num_chains if chains is None else chains
    attrs = {**base_attrs(post), **{k: _scalar_attr(v) for k, v in (attrs or {}).items()}}
    p = _posterior_group(post, index, c, unit_latents, attrs)
    for k, v in (extra_posterior or {}).items():
        p["values"][k] = v
        p["dims"][k] = _dims(k, v.ndim - 2)
    groups: dict[str, Any] = {"posterior": _dataset(p["values"], p["dims"], attrs)}
    stats = _sample_stats(post, index, c, attrs)
    if stats is not None:
        groups["sample_stats"] = stats
    if mode is not False and post.data:
        draws = {k: _take(v, index) for k, v in post.samples.items()}
        ll, ess = pointwise_log_likelihood(post, draws, particles=particles, seed=seed, return_ess=True)
        if mode == "joint":
            ll = {"joint": sum(ll.values())}  # type: ignore[dict-item]
        # the unit whose particles did worst, in a typical draw: few effective particles there
        # make its log-likelihood noisy and low, and PSIS-LOO's ranking with it
        worst = float(np.median(ess, axis=0).min())
        if worst < LOW_LOG_LIKELIHOOD_ESS:
            warn(
                f"causal_pp: the pointwise log-likelihood of some unit rests on {worst:.1f} effective "
                f"particles of {particles} (median over draws); raise particles= in to_arviz()/compare() "
                "for a log-likelihood LOO can rely on."
            )
        ll_attrs = {**attrs, "log_likelihood_particles": particles, "log_likelihood_min_ess": worst}
        groups["log_likelihood"] = _dataset(
            {k: _by_chain(v, c) for k, v in ll.items()}, {k: ["unit"] for k in ll}, ll_attrs
        )
    if post.data:
        obs = {k: v.cpu().numpy() for k, v in post.data.items()}
        groups["observed_data"] = az.dict_to_dataset(
            obs, dims={k: _dims(k, v.ndim, ("unit",)) for k, v in obs.items()}, attrs=attrs, default_dims=[]
        )
    if predictions is not None:
        groups["predictions"] = predictions
    return az.InferenceData(attrs=attrs, **groups)


# --- estimates --------------------------------------------------------------------------------


def _arm_label(query: Any, key: str) -> tuple[str, str]:
    """(variable, arm) of a predictive key: ``"Y | do(X=1)"``, ``"Y_{X=0}"`` or an outcome name."""
    for y in sorted(getattr(query, "outcomes", ()), key=len, reverse=True):
        if key.startswith(f"{y} | "):
            return y, key[len(y) + 3 :]
        if key.startswith(f"{y}_{{") and key.endswith("}"):
            return y, key[len(y) + 2 : -1]
        if key == y:
            do = query.roles().do
            return y, ("do(" + ", ".join(f"{k}={v:g}" for k, v in do) + ")") if do else ""
    return key, ""


def predictions_group(est: Estimate, chains: int, attrs: Mapping[str, Any]) -> xr.Dataset | None:
    """The unit-level predictive, one variable per outcome, arms on an ``arm`` coordinate."""
    import xarray as xr

    arms: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for key, value in est.predictive.items():
        var, arm = _arm_label(est.query, key)
        arms.setdefault(var, []).append((arm, value))
    if not arms:
        return None
    labels = list(dict.fromkeys(arm for pairs in arms.values() for arm, _ in pairs))
    data = {}
    for var, pairs in arms.items():
        if [a for a, _ in pairs] != labels:  # an outcome missing in some arm: pad with NaN
            have = dict(pairs)
            shape = next(iter(have.values())).shape
            pairs = [(a, have.get(a, torch.full(shape, float("nan")))) for a in labels]
        stacked = _by_chain(torch.stack([v.detach().cpu() for _, v in pairs], dim=1), chains)
        data[var] = (["chain", "draw", "arm", "new_unit", *_dims(var, stacked.ndim - 4)], stacked)
    c, d = next(iter(data.values()))[1].shape[:2]
    coords = {"chain": np.arange(c), "draw": np.arange(d), "arm": labels}
    return xr.Dataset(data, coords=coords, attrs=dict(attrs))


def estimate_attrs(est: Estimate) -> dict[str, Any]:
    """The estimate's query, verdict and settings as NetCDF-storable attributes."""
    plugin = est.plugin
    if isinstance(plugin, torch.Tensor):
        plugin = float(plugin) if plugin.numel() == 1 else str(plugin.tolist())
    return {
        "query": str(est.query),
        "identified": int(est.identified),
        "num_units": int(est.num_units),
        "estimate_seed": int(est.seed),
        "plugin": plugin,
        "mc_fraction": float(est.mc_fraction) if isinstance(est.mc_fraction, float) else float("nan"),
        "mc_capped": int(bool(est.mc_capped)),
        "inference_library": "causal_pp",
        "inference_library_version": __version__,
    }


def estimate_to_inference_data(
    est: Estimate,
    *,
    log_likelihood: bool | str = True,
    unit_latents: bool = False,
    particles: int = LOG_LIKELIHOOD_PARTICLES,
) -> az.InferenceData:
    """The ``InferenceData`` of an estimate: its posterior's, on the draws it used, plus
    ``functional`` in ``posterior`` and the ``predictions`` group (see the module docstring).

    Examples
    --------
    >>> import torch
    >>> from causal_pp import ATE, Estimate
    >>> est = Estimate(ATE("X", "Y"), samples=torch.zeros(4), predictive={"Y | do(X=1)": torch.zeros(4, 3)},
    ...                identified=True, identification=None, plugin=0.0, num_units=3, seed=0)
    >>> idata = estimate_to_inference_data(est)
    >>> sorted(idata.groups()), idata.predictions["Y"].arm.values.tolist()
    (['posterior', 'predictions'], ['do(X=1)'])
    """
    import arviz as az

    c = est.chains
    attrs = estimate_attrs(est)
    functional = {"functional": _by_chain(est.samples, c)}
    if getattr(est, "mc_se", None) is not None:  # the Monte Carlo error of each draw's functional
        functional["functional_mc_se"] = _by_chain(est.mc_se, c)
    pred = predictions_group(est, c, attrs)
    if est.posterior is None:
        groups: dict[str, Any] = {"posterior": _dataset(functional, {}, attrs)}
        if pred is not None:
            groups["predictions"] = pred
        return az.InferenceData(attrs=attrs, **groups)
    return posterior_to_inference_data(
        est.posterior,
        log_likelihood=log_likelihood,
        unit_latents=unit_latents,
        particles=particles,
        index=est.draw_index,
        chains=c,
        extra_posterior=functional,
        predictions=pred,
        attrs=attrs,
    )
