"""Explicit exogenous noise shared between worlds: :class:`SharedNoise`.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from chirho.counterfactual.handlers.selection import get_factual_indices
from chirho.indexed.ops import gather
from pyro.distributions.torch_distribution import MaskedDistribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_factor, site_is_subsample

from ..errors import CounterfactualError
from .internals import in_units

__all__ = ["NOISE_PREFIX", "SharedNoise"]


NOISE_PREFIX = "N_"
"""The explicit noise site of per-unit site ``Y`` is named ``N_Y``."""


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
            or not in_units(msg)
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
