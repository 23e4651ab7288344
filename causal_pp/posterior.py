"""The fitted posterior and the causal estimates computed from it.

:class:`CausalPosterior` holds draws of a causal model's global parameters.
:meth:`CausalPosterior.estimate` answers an identified causal query by simulation: for every
posterior draw of the global parameters it simulates fresh units from the interventional
program (ChiRho ``do``), all draws at once (a vectorising plate over draws, no Python loop
over them). The result, an :class:`Estimate`, carries

* the posterior distribution of the causal functional (E[Y | do(x)], or the ATE): one value
  per draw, the mean over ``num_units`` fresh units;
* the unit-level posterior predictive samples under the intervention;
* the paper's plug-in estimate (posterior-mean parameters, forward-simulated).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine

from .errors import InferenceError, InvalidArgumentError, QueryError
from .handlers import intervene, log_weight
from .identification import Identification, identify
from .queries import ATE, Interventional

if TYPE_CHECKING:  # pragma: no cover
    import arviz as az

    from .graph import CausalGraph
    from .model import CausalModel, ProgramStructure

__all__ = ["CausalPosterior", "Estimate"]

_MAX_ELEMENTS = 2**23
"""Simulations are chunked over draws so that one chunk holds about this many values per site."""

ESS_WARN_FRACTION = 0.01
"""Conditional queries warn when the mean likelihood-weighting ESS is below this share of units (or 20)."""


def _arm_key(outcome: str, treatment: str, value: float) -> str:
    return f"{outcome} | do({treatment}={value:g})"


@dataclass(frozen=True, eq=False, repr=False)
class Estimate:
    """A causal estimate: the posterior of a causal functional, and the predictive behind it.

    Attributes
    ----------
    query
        The query answered.
    samples
        Posterior draws of the functional, shape ``(draws,)`` (``(draws, k)`` for a joint
        outcome of ``k`` variables): for each posterior draw of the global parameters, the
        mean of the outcome over ``num_units`` fresh simulated units (E[Y | do(x)]), or the
        difference of the two arms' means (ATE; both arms share their fresh units and random
        numbers, so the difference carries little Monte-Carlo noise).
    predictive
        Unit-level posterior predictive samples under the intervention, each of shape
        ``(draws, units)``: keyed by outcome name for an :class:`~causal_pp.Interventional`
        query, and by ``"Y | do(X=1)"`` / ``"Y | do(X=0)"`` for the two arms of an
        :class:`~causal_pp.ATE`. For conditional queries these are resampled according to
        the likelihood weights (equally weighted samples of P(Y | do(x), z)).
    identified
        Whether the identification gate accepted the query (False only when estimated with
        ``allow_unidentified=True``: the number then has no causal guarantee).
    identification
        The gate's full verdict (:class:`~causal_pp.Identification`).
    plugin
        The plug-in estimate of Mohammad-Taheri et al. (2022): posterior-mean global
        parameters plugged into the interventional program, ``num_units`` units simulated,
        mean taken (same seed, so same units, as the draws).
    num_units, seed
        Fresh units simulated per draw, and the seed used.
    ess
        Conditional queries only: per draw, the effective sample size of the likelihood
        weights (the smaller over the two arms of an ATE), out of ``num_units``.

    Examples
    --------
    >>> import torch
    >>> from causal_pp import ATE
    >>> est = Estimate(ATE("X", "Y"), samples=torch.tensor([0.9, 1.0, 1.1]), predictive={},
    ...                identified=True, identification=None, plugin=1.0, num_units=10, seed=0)
    >>> round(est.mean, 3), round(est.std, 3)
    (1.0, 0.1)
    """

    query: Interventional | ATE
    samples: torch.Tensor
    predictive: Mapping[str, torch.Tensor]
    identified: bool
    identification: Identification | None
    plugin: float | torch.Tensor
    num_units: int
    seed: int
    ess: torch.Tensor | None = None
    posterior: CausalPosterior | None = field(default=None, compare=False)
    draw_index: torch.Tensor | None = field(default=None, compare=False)
    chains: int = 1

    @property
    def mean(self) -> float | torch.Tensor:
        """Posterior mean of the functional (a tensor for a joint outcome)."""
        m = self.samples.double().mean(0)
        return float(m) if m.dim() == 0 else m

    @property
    def std(self) -> float | torch.Tensor:
        """Posterior standard deviation of the functional."""
        s = (
            self.samples.double().std(0)
            if self.samples.shape[0] > 1
            else torch.zeros_like(self.samples[0]).double()
        )
        return float(s) if s.dim() == 0 else s

    def interval(self, prob: float = 0.94) -> tuple[float, float] | tuple[torch.Tensor, torch.Tensor]:
        """Equal-tailed posterior credible interval of the functional.

        Examples
        --------
        >>> import torch
        >>> from causal_pp import ATE
        >>> est = Estimate(ATE("X", "Y"), samples=torch.linspace(0, 1, 101, dtype=torch.float64), predictive={},
        ...                identified=True, identification=None, plugin=0.5, num_units=1, seed=0)
        >>> [round(v, 3) for v in est.interval(0.9)]
        [0.05, 0.95]
        """
        if not 0.0 < prob < 1.0:
            raise InvalidArgumentError(f"prob must be in (0, 1); got {prob!r}.")
        q = torch.tensor([(1 - prob) / 2, (1 + prob) / 2], dtype=torch.float64)
        lo, hi = torch.quantile(self.samples.double(), q, dim=0)
        if lo.dim() == 0:
            return float(lo), float(hi)
        return lo, hi

    def to_arviz(self) -> az.InferenceData:
        """ArviZ ``InferenceData``: ``posterior`` (the global parameters of the draws used, and
        the functional as variable ``"functional"``), ``observed_data``, and the unit-level
        interventional predictive as group ``"interventional_predictive"`` (dims chain, draw,
        unit).

        Examples
        --------
        >>> import torch
        >>> from causal_pp import ATE
        >>> est = Estimate(ATE("X", "Y"), samples=torch.zeros(4), predictive={"Y | do(X=1)": torch.zeros(4, 3)},
        ...                identified=True, identification=None, plugin=0.0, num_units=3, seed=0)
        >>> sorted(est.to_arviz().groups())
        ['interventional_predictive', 'posterior']
        """
        import arviz as az

        c = self.chains
        d = self.samples.shape[0] // c

        def arr(t: torch.Tensor) -> np.ndarray:
            t = t.detach().cpu()
            return t.reshape(c, d, *t.shape[1:]).numpy()

        posterior: dict[str, np.ndarray] = {}
        observed = None
        if self.posterior is not None:
            idx = self.draw_index
            for k, v in self.posterior.samples.items():
                posterior[k] = arr(v if idx is None else v[idx.to(v.device)])
            observed = {k: v.cpu().numpy() for k, v in self.posterior.data.items()}
        posterior["functional"] = arr(self.samples)
        attrs = {
            "query": str(self.query),
            "identified": int(self.identified),
            "num_units": self.num_units,
            "seed": self.seed,
            "plugin": float(self.plugin)
            if not isinstance(self.plugin, torch.Tensor) or self.plugin.numel() == 1
            else str(self.plugin.tolist()),
            "inference_library": "causal_pp",
        }
        idata = az.from_dict(posterior=posterior, observed_data=observed, attrs=attrs)
        pred = {k: arr(v) for k, v in self.predictive.items()}
        if pred:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="the default dims 'chain' and 'draw'")
                idata.add_groups(
                    {"interventional_predictive": pred},
                    dims={k: ["unit", *[f"{k}_dim_{i}" for i in range(v.ndim - 3)]] for k, v in pred.items()},
                    warn_on_custom_groups=False,
                )
        return idata

    @property
    def diagnostics(self) -> dict[str, float]:
        """Split R-hat and effective sample size of the functional's draws (per chain).

        Parameters of latent variable models need not be identified (the sign of a latent,
        say), so a fit's parameter diagnostics can look poor while the identified functional
        mixes well: these are the diagnostics that matter for the estimate.

        Examples
        --------
        >>> import torch
        >>> from causal_pp import ATE
        >>> est = Estimate(ATE("X", "Y"), samples=torch.randn(400, generator=torch.Generator().manual_seed(0)),
        ...                predictive={}, identified=True, identification=None, plugin=0.0, num_units=1, seed=0)
        >>> est.diagnostics["r_hat"] < 1.05
        True
        """
        from pyro.ops.stats import effective_sample_size, split_gelman_rubin

        c = self.chains
        d = self.samples.shape[0] // c
        x = self.samples.detach().double().cpu().reshape(c, d, -1)
        if d < 4:
            return {"r_hat": float("nan"), "ess": float("nan")}
        r_hat = split_gelman_rubin(x, chain_dim=0, sample_dim=1).nan_to_num(1.0)
        ess = effective_sample_size(x, chain_dim=0, sample_dim=1).nan_to_num(0.0)
        return {"r_hat": float(r_hat.max()), "ess": float(ess.min())}

    def __repr__(self) -> str:
        lo, hi = self.interval(0.94)
        if isinstance(self.mean, float):
            body = f"mean={self.mean:.4g}, sd={self.std:.3g}, 94% interval=[{lo:.4g}, {hi:.4g}]"
        else:
            body = f"mean={self.mean.tolist()}, sd={self.std.tolist()}"
        flag = "" if self.identified else ", identified=False"
        return f"Estimate({self.query}: {body}, draws={self.samples.shape[0]}, units={self.num_units}{flag})"


class CausalPosterior:
    """Posterior draws of a causal model's global parameters, fitted to observational data.

    Made by :meth:`CausalModel.fit <causal_pp.CausalModel.fit>`; answer causal queries with
    :meth:`estimate`.

    Attributes
    ----------
    model
        The fitted :class:`~causal_pp.CausalModel`; ``graph`` is its DAG.
    samples
        Global parameter name -> draws, shape ``(draws, *site_shape)``; for NUTS the chains
        are concatenated (``num_chains`` blocks of equal length).
    unit_samples
        Per-unit latent site name -> draws, shape ``(draws, n, ...)`` (not used by estimates,
        which simulate fresh units).
    data
        The validated observations (CPU tensors).
    diagnostics
        NUTS: ``r_hat``, ``ess`` (per global site), ``max_r_hat``, ``min_ess``,
        ``divergences``, ``acceptance_rate``...; SVI: ``loss`` (trace), ``final_elbo``,
        ``converged``...; both: ``time_s``.
    method, seed, num_chains, device
        How it was fitted.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, causal_model, units, Interventional
    >>> @causal_model(CausalGraph.parse("X -> Y"))
    ... def m(n):
    ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(b * x, 0.1))
    >>> posterior = CausalPosterior(model=m, samples={"b": torch.full((4,), 2.0)},
    ...                             data={"X": torch.zeros(3), "Y": torch.zeros(3)},
    ...                             diagnostics={}, method="given", seed=0)
    >>> est = posterior.estimate(Interventional("Y", do={"X": 1.0}), num_units=500)
    >>> round(est.mean, 1)
    2.0
    """

    def __init__(
        self,
        *,
        model: CausalModel,
        samples: Mapping[str, torch.Tensor],
        data: Mapping[str, torch.Tensor],
        diagnostics: Mapping[str, Any],
        method: str,
        seed: int,
        num_chains: int = 1,
        unit_samples: Mapping[str, torch.Tensor] | None = None,
        structure: ProgramStructure | None = None,
        model_args: tuple[Any, ...] = (),
        model_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self._model = model
        self._samples = MappingProxyType(dict(samples))
        self._unit_samples = MappingProxyType(dict(unit_samples or {}))
        self._data = MappingProxyType(dict(data))
        self._diagnostics = dict(diagnostics)
        self._method = method
        self._seed = seed
        self._num_chains = num_chains
        self._model_args = tuple(model_args)
        self._model_kwargs = dict(model_kwargs or {})
        self._device = torch.device(device)
        n = int(next(iter(data.values())).shape[0]) if data else 5
        self._structure = structure or model.inspect(
            n, model_args=self._model_args, model_kwargs=self._model_kwargs
        )
        sizes = {int(v.shape[0]) for v in self._samples.values()}
        if len(sizes) > 1:
            raise InferenceError(f"posterior draws have different lengths {sorted(sizes)}.")
        self._num_draws = sizes.pop() if sizes else 1

    # --- read-only views ----------------------------------------------------------------

    @property
    def model(self) -> CausalModel:
        return self._model

    @property
    def graph(self) -> CausalGraph:
        return self._model.graph

    @property
    def samples(self) -> Mapping[str, torch.Tensor]:
        """Global parameter name -> draws ``(draws, *shape)``."""
        return self._samples

    @property
    def unit_samples(self) -> Mapping[str, torch.Tensor]:
        """Per-unit latent site name -> draws ``(draws, n, ...)``."""
        return self._unit_samples

    @property
    def data(self) -> Mapping[str, torch.Tensor]:
        return self._data

    @property
    def diagnostics(self) -> dict[str, Any]:
        return self._diagnostics

    @property
    def method(self) -> str:
        return self._method

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def num_chains(self) -> int:
        return self._num_chains

    @property
    def num_draws(self) -> int:
        return self._num_draws

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def structure(self) -> ProgramStructure:
        return self._structure

    def mean(self) -> dict[str, torch.Tensor]:
        """Posterior means of the global parameters.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist, torch
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X"))
        ... def m(n):
        ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
        ...     with units(n):
        ...         pyro.sample("X", dist.Normal(b, 1.0))
        >>> p = CausalPosterior(model=m, samples={"b": torch.tensor([1.0, 3.0])},
        ...                     data={"X": torch.zeros(2)}, diagnostics={}, method="given", seed=0)
        >>> p.mean()
        {'b': tensor(2.)}
        """
        return {k: v.double().mean(0).to(v.dtype) for k, v in self._samples.items()}

    def __repr__(self) -> str:
        n = next(iter(self._data.values())).shape[0] if self._data else 0
        return (
            f"CausalPosterior({self._model.name}, method={self._method!r}, draws={self._num_draws}, "
            f"units={n}, globals={list(self._samples)})"
        )

    def to_arviz(self) -> az.InferenceData:
        """ArviZ ``InferenceData`` with ``posterior`` (global parameters) and ``observed_data``.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist, torch
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X"))
        ... def m(n):
        ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
        ...     with units(n):
        ...         pyro.sample("X", dist.Normal(b, 1.0))
        >>> p = CausalPosterior(model=m, samples={"b": torch.zeros(6)}, data={"X": torch.zeros(2)},
        ...                     diagnostics={}, method="given", seed=0, num_chains=2)
        >>> p.to_arviz().posterior["b"].shape
        (2, 3)
        """
        import arviz as az

        c = self._num_chains
        d = self._num_draws // c
        post = {k: v.detach().cpu().reshape(c, d, *v.shape[1:]).numpy() for k, v in self._samples.items()}
        obs = {k: v.cpu().numpy() for k, v in self._data.items()}
        return az.from_dict(
            posterior=post,
            observed_data=obs,
            attrs={"method": self._method, "seed": self._seed, "inference_library": "causal_pp"},
        )

    # --- simulation ---------------------------------------------------------------------

    def _vectorized(self, draws: Mapping[str, torch.Tensor], num: int) -> dict[str, torch.Tensor]:
        """Global draws reshaped for a plate over draws at dim -(max_plate_nesting + 1)."""
        P = self._structure.max_plate_nesting
        out = {}
        for k, v in draws.items():
            info = self._structure.sites[k]
            out[k] = v.reshape((num, *([1] * (P - info.batch_ndim)), *info.shape)).to(self._device)
        return out

    def _per_unit(self, name: str, value: Any, num: int, n: int) -> torch.Tensor:
        info = self._structure.sites[name]
        P = self._structure.max_plate_nesting
        event = info.shape[len(info.shape) - info.event_ndim :] if info.event_ndim else ()
        full = (num, *([1] * (P - 1)), n, *event)
        value = torch.as_tensor(value)
        try:
            return torch.broadcast_to(value, full).reshape(num, n, *event)
        except RuntimeError:
            raise QueryError(
                f"site {name!r} has shape {tuple(value.shape)} in the simulation, which is not one value "
                "per unit; only per-unit variables of the units plate can be outcomes or evidence."
            ) from None

    def _simulate(
        self,
        actions: Mapping[str, float],
        evidence: Mapping[str, float],
        draws: Mapping[str, torch.Tensor],
        num: int,
        num_units: int,
        outcomes: tuple[str, ...],
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """One vectorised run of the interventional program for ``num`` draws at once."""
        P = self._structure.max_plate_nesting
        program = intervene(self._model.fn, {**actions, **evidence})
        cond = self._vectorized(draws, num)
        with (
            torch.no_grad(),
            pyro.validation_enabled(False),
            pyro.plate("_draws", num, dim=-(P + 1)),
            poutine.condition(data=cond),
        ):
            tr = poutine.trace(program).get_trace(num_units, *self._model_args, **self._model_kwargs)
        values = {y: self._per_unit(y, tr.nodes[y]["value"], num, num_units) for y in outcomes}
        logw = None
        for z in evidence:
            lw = self._per_unit(z, log_weight(tr.nodes[z]), num, num_units)
            lw = lw.reshape(num, num_units, -1).sum(-1)
            logw = lw if logw is None else logw + lw
        return values, logw

    def _draw_index(self, num_samples: int | None) -> tuple[torch.Tensor | None, int]:
        total, c = self._num_draws, self._num_chains
        if num_samples is None or num_samples >= total:
            if num_samples is not None and num_samples > total:
                warnings.warn(
                    f"causal_pp: num_samples={num_samples} but the posterior has {total} draws; using all.",
                    UserWarning,
                    stacklevel=3,
                )
            return None, c
        if not isinstance(num_samples, int) or num_samples < 1:
            raise InvalidArgumentError(f"num_samples must be a positive integer; got {num_samples!r}.")
        d = total // c
        if num_samples % c == 0:
            per = num_samples // c
            within = torch.linspace(0, d - 1, per).round().long()
            return torch.cat([within + i * d for i in range(c)]), c
        return torch.linspace(0, total - 1, num_samples).round().long(), 1

    def estimate(
        self,
        query: Interventional | ATE,
        *,
        num_samples: int | None = None,
        num_units: int = 1000,
        seed: int = 0,
        allow_unidentified: bool = False,
        assume_monotonic: bool = False,
    ) -> Estimate:
        """Estimate a causal query: its posterior, unit-level predictive, and plug-in value.

        The identification gate (:func:`~causal_pp.identify`) runs first. For each posterior
        draw of the global parameters, ``num_units`` fresh units are simulated from the
        interventional program (the model under ChiRho ``do``), all draws at once; the
        functional of a draw is the mean outcome over its units. Both arms of an ATE use the
        same random numbers (common random numbers), so their difference has little
        Monte-Carlo noise.

        **Conditional queries** ``P(Y | do(x), Z=z)`` (``given={"Z": z}``) are computed by
        *likelihood weighting* within the interventional program: ``Z`` is clamped at ``z``
        (so its descendants see ``z``), and each simulated unit is weighted by the density
        (or mass) of ``z`` given its parents in that unit, ``p(Z=z | pa(Z))``, read from the
        trace; the functional is the self-normalised weighted mean. This is exact importance
        sampling for continuous and discrete ``Z`` alike; the effective sample size of the
        weights is reported per draw in :attr:`Estimate.ess`, with a warning when it is small.

        Parameters
        ----------
        query
            An :class:`~causal_pp.Interventional` or :class:`~causal_pp.ATE` query; ``given``
            needs values (``{"Z": 0.5}``) for estimation.
        num_samples
            Number of posterior draws to use (evenly thinned; default all).
        num_units
            Fresh units simulated per draw.
        seed
            Seed of the simulation; the same seed gives identical results on CPU. The
            caller's random stream is left untouched.
        allow_unidentified
            Estimate a query the gate refuses. The result has ``identified=False`` and a
            warning is issued: such numbers concentrate, as data grows, in the wrong place.
        assume_monotonic
            Counterfactual queries only: passed to the gate (PN/PS need it).

        **Counterfactual queries** (:class:`~causal_pp.counterfactual.Counterfactual`,
        :class:`~causal_pp.counterfactual.ETT`, :class:`~causal_pp.counterfactual.PN`,
        :class:`~causal_pp.counterfactual.PS`) are gated by
        :func:`~causal_pp.counterfactual.identify_counterfactual` and estimated by
        abduction-action-prediction with shared noise: see
        :func:`causal_pp.twin_world.estimate_counterfactual`.

        Returns
        -------
        Estimate

        Raises
        ------
        NotIdentifiableError
            The query is not identifiable and ``allow_unidentified`` is False.
        QueryError
            Malformed query, latent or unknown variables, or ``given`` without values.
        InferenceError
            A conditioning variable is deterministic, or no simulated unit is consistent with
            the evidence.

        Notes
        -----
        Draws are simulated together under a plate over draws placed left of the model's own
        plates, the global parameters carrying a leading draws dimension (shape
        ``(draws, 1, ...)``). The model must broadcast over it, as for Pyro's
        ``Predictive(parallel=True)``: index vector parameters from the right
        (``coef[..., 0]``, not ``coef[0]``). Long simulations are split into chunks of draws,
        each chunk still vectorised.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist, torch
        >>> from causal_pp import CausalGraph, CausalModel, ATE, units
        >>> def linear(n):
        ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
        ...     with units(n):
        ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
        ...         pyro.sample("Y", dist.Normal(b * x, 1.0))
        >>> m = CausalModel(linear, CausalGraph.parse("X -> Y"))
        >>> post = CausalPosterior(model=m, samples={"b": torch.tensor([0.9, 1.0, 1.1])},
        ...                        data={"X": torch.zeros(2), "Y": torch.zeros(2)},
        ...                        diagnostics={}, method="given", seed=0)
        >>> est = post.estimate(ATE("X", "Y", treated=1.0, control=0.0), num_units=100)
        >>> [round(v, 3) for v in est.samples.tolist()]  # common random numbers: exact here
        [0.9, 1.0, 1.1]
        >>> sorted(est.predictive)
        ['Y | do(X=0)', 'Y | do(X=1)']
        """
        from .counterfactual import ETT, PN, PNS, PS, Counterfactual

        if isinstance(query, (Counterfactual, ETT, PN, PS, PNS)):
            from .twin_world import estimate_counterfactual

            return estimate_counterfactual(
                self,
                query,
                num_samples=num_samples,
                num_units=num_units,
                seed=seed,
                allow_unidentified=allow_unidentified,
                assume_monotonic=assume_monotonic,
            )
        if not isinstance(query, (Interventional, ATE)):
            raise QueryError(f"estimate() takes an Interventional or ATE query; got {type(query).__name__}.")
        if not isinstance(num_units, int) or num_units < 1:
            raise InvalidArgumentError(f"num_units must be a positive integer; got {num_units!r}.")
        ident = identify(self.graph, query, strict=not allow_unidentified)
        if not ident.identified:
            warnings.warn(
                f"causal_pp: {query} is NOT identifiable from the observed variables; it is estimated "
                f"only because allow_unidentified=True, and the number has no causal guarantee. "
                f"{ident.reason}",
                UserWarning,
                stacklevel=2,
            )
        evidence = dict(query.given)
        missing = [k for k, v in evidence.items() if v is None]
        if missing:
            raise QueryError(
                f"{query} conditions on {missing} without values; estimation needs them, e.g. "
                f"given={{{missing[0]!r}: 0.5}}."
            )
        for z in evidence:
            if self._structure.sites[z].deterministic:
                raise InferenceError(
                    f"{query} conditions on {z!r}, a pyro.deterministic site: it has no density, so "
                    "likelihood weighting cannot weigh units by it. Give it a noise distribution "
                    "(pyro.sample) to condition on it."
                )
        if isinstance(query, ATE):
            arms = [{query.treatment: query.treated}, {query.treatment: query.control}]
            keys = [
                _arm_key(query.outcome, query.treatment, query.treated),
                _arm_key(query.outcome, query.treatment, query.control),
            ]
        else:
            arms = [query.interventions]
            keys = []
        outcomes = query.outcomes
        idx, chains = self._draw_index(num_samples)
        draws = {k: (v if idx is None else v[idx.to(v.device)]) for k, v in self._samples.items()}
        S = next(iter(draws.values())).shape[0] if draws else self._num_draws

        from .inference import _child_seeds, on_device, seeded

        device = self._device
        n_sites = max(1, len(self._structure.unit_sites))
        chunk = max(1, _MAX_ELEMENTS // (num_units * n_sites))
        starts = list(range(0, S, chunk))
        seeds = _child_seeds(seed, len(starts) + 2)
        per_arm_values: list[dict[str, list[torch.Tensor]]] = [{y: [] for y in outcomes} for _ in arms]
        per_arm_logw: list[list[torch.Tensor]] = [[] for _ in arms]
        for j, start in enumerate(starts):
            stop = min(S, start + chunk)
            part = {k: v[start:stop] for k, v in draws.items()}
            for a, act in enumerate(arms):
                with seeded(seeds[j], device), on_device(device):  # same seed in every arm: CRN
                    vals, logw = self._simulate(act, evidence, part, stop - start, num_units, outcomes)
                for y in outcomes:
                    per_arm_values[a][y].append(vals[y].cpu())
                if logw is not None:
                    per_arm_logw[a].append(logw.cpu())
        values = [{y: torch.cat(v[y]) for y in outcomes} for v in per_arm_values]
        logws = [torch.cat(lw) if lw else None for lw in per_arm_logw]

        # the plug-in: posterior-mean globals, one simulation
        means = {k: v.double().mean(0, keepdim=True).to(v.dtype) for k, v in self._samples.items()}
        plug_vals = []
        for act in arms:
            with seeded(seeds[-1], device), on_device(device):
                pv, plw = self._simulate(act, evidence, means, 1, num_units, outcomes)
            plug_vals.append(
                _functional({y: pv[y].cpu() for y in outcomes}, None if plw is None else plw.cpu(), outcomes)
            )

        funcs = [_functional(values[a], logws[a], outcomes) for a in range(len(arms))]
        samples = funcs[0] - funcs[1] if isinstance(query, ATE) else funcs[0]
        plugin_t = plug_vals[0] - plug_vals[1] if isinstance(query, ATE) else plug_vals[0]
        plugin: float | torch.Tensor = float(plugin_t) if plugin_t.numel() == 1 else plugin_t.reshape(-1)

        ess = None
        if evidence:
            esss = [_ess(lw) for lw in logws if lw is not None]
            ess = torch.stack(esss).min(0).values
            if not torch.isfinite(samples).all():
                raise InferenceError(
                    f"no simulated unit is consistent with the evidence {evidence} under {query} for some "
                    "draws (all likelihood weights are zero); the evidence may be impossible under the "
                    "intervention, or a conditioning variable is deterministic."
                )
            if float(ess.mean()) < max(20.0, ESS_WARN_FRACTION * num_units):
                warnings.warn(
                    f"causal_pp: likelihood weighting for {query} has a small effective sample size "
                    f"(mean {float(ess.mean()):.1f} of {num_units} units per draw): the evidence is "
                    "improbable under the intervention. Raise num_units.",
                    UserWarning,
                    stacklevel=2,
                )
            values = [_resample(v, lw, seeds[-2]) for v, lw in zip(values, logws, strict=True)]

        if isinstance(query, ATE):
            predictive = {keys[a]: values[a][query.outcome] for a in range(2)}
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
            seed=seed,
            ess=ess,
            posterior=self,
            draw_index=idx,
            chains=chains,
        )


def _functional(
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
    out = torch.stack(cols, dim=1) if cols[0].dim() == 1 else torch.cat(cols, dim=1)
    return out


def _ess(logw: torch.Tensor) -> torch.Tensor:
    lw = logw.double()
    return torch.exp(2 * torch.logsumexp(lw, 1) - torch.logsumexp(2 * lw, 1)).nan_to_num(0.0)


def _resample(
    values: Mapping[str, torch.Tensor], logw: torch.Tensor | None, seed: int
) -> dict[str, torch.Tensor]:
    if logw is None:
        return dict(values)
    w = torch.softmax(logw.double(), dim=1).nan_to_num(0.0)
    g = torch.Generator().manual_seed(int(seed))
    S, n = w.shape
    ok = w.sum(1) > 0
    w = torch.where(ok.unsqueeze(1), w, torch.full_like(w, 1.0 / n))
    idx = torch.multinomial(w, n, replacement=True, generator=g)
    out = {}
    for k, v in values.items():
        gather = idx.reshape(S, n, *([1] * (v.dim() - 2))).expand(S, n, *v.shape[2:])
        out[k] = torch.gather(v, 1, gather)
    return out
