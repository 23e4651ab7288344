"""The fitted posterior and the causal estimates computed from it.

:class:`CausalPosterior` holds draws of a causal model's global parameters.
:meth:`CausalPosterior.estimate` answers an identified causal query by simulation: for every
posterior draw of the global parameters it simulates fresh units from the interventional
program (ChiRho ``do``), all draws at once (a vectorising plate over draws, no Python loop
over them). The result, an :class:`Estimate`, carries

* the posterior distribution of the causal functional (E[Y | do(x)], or the ATE): one value
  per draw, the mean over fresh units (as many as needed for a small Monte Carlo error);
* the unit-level posterior predictive samples under the intervention;
* the paper's plug-in estimate (posterior-mean parameters, forward-simulated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import inference_data
from . import io as posterior_io
from .errors import InferenceError, InvalidArgumentError, warn
from .version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from os import PathLike

    import arviz as az

    from .graph import CausalGraph
    from .identification import Identification
    from .model import CausalModel
    from .program import ProgramStructure
    from .queries import Query

__all__ = ["CausalPosterior", "Estimate"]


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
        mean over ``num_units`` fresh simulated units of the outcome's conditional mean given
        its parents (E[Y | do(x)]), or the difference of the two arms' means (ATE; both arms
        share their fresh units and random numbers). Each carries a Monte Carlo error
        (``mc_se``); by default units are added until it is small (see ``mc_fraction``).
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
        mean taken (the same variance reduction as the draws).
    num_units, seed
        Fresh units simulated per draw (all batches), and the seed used.
    ess
        Conditional queries only: per draw, the effective sample size of the likelihood
        weights (the smaller over the two arms of an ATE), out of ``num_units``. The weights'
        effect on the Monte Carlo error is in ``mc_se`` (which shrinks like ``1 / ESS``, not
        ``1 / num_units``).
    mc_se
        Per draw, the Monte Carlo standard error of ``samples`` (estimated from the unit-level
        contributions; shaped like ``samples``), or None where not measured.
    mc_target
        The ``mc_fraction`` the simulation aimed at (None: ``num_units`` was given).
    mc_capped
        Whether a cap (``max_units``, or the total work) stopped the simulation before
        ``mc_target`` was reached.

    Examples
    --------
    >>> import torch
    >>> from causal_pp import ATE
    >>> est = Estimate(ATE("X", "Y"), samples=torch.tensor([0.9, 1.0, 1.1]), predictive={},
    ...                identified=True, identification=None, plugin=1.0, num_units=10, seed=0)
    >>> round(est.mean, 3), round(est.std, 3)
    (1.0, 0.1)
    """

    query: Query
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
    mc_se: torch.Tensor | None = None
    mc_target: float | None = None
    mc_capped: bool = False

    @property
    def mean(self) -> float | torch.Tensor:
        """Posterior mean of the functional (a tensor for a joint outcome)."""
        m = self.samples.double().mean(0)
        return float(m) if m.dim() == 0 else m

    def _mc_var(self) -> torch.Tensor:
        """Mean Monte Carlo variance of a draw (per column; zeros where not measured)."""
        if self.mc_se is None:
            return torch.zeros_like(self.samples[0]).double()
        return (self.mc_se.double() ** 2).mean(0)

    def _spread(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(variance of the draws, posterior variance of the functional: that minus the MC part)."""
        if self.samples.shape[0] < 2:
            zero = torch.zeros_like(self.samples[0]).double()
            return zero, zero
        total = self.samples.double().var(0)
        return total, (total - self._mc_var()).clamp(min=0.0)

    @property
    def std(self) -> float | torch.Tensor:
        """Posterior standard deviation of the functional.

        The SD of ``samples`` less their Monte Carlo part: ``sqrt(var(samples) - mean(mc_se**2))``
        (the draws' MC errors are independent of the draws and of each other).
        """
        s = self._spread()[1].sqrt()
        return float(s) if s.dim() == 0 else s

    @property
    def mc_fraction(self) -> float | torch.Tensor | None:
        """Mean Monte Carlo variance of a draw's functional over the posterior variance of the
        functional (``inf`` if the latter is not positive; None where not measured).

        Examples
        --------
        >>> import torch
        >>> from causal_pp import ATE
        >>> est = Estimate(ATE("X", "Y"), samples=torch.tensor([0.0, 2.0]), predictive={}, identified=True,
        ...                identification=None, plugin=1.0, num_units=10, seed=0, mc_se=torch.tensor([0.1, 0.1]))
        >>> round(est.mc_fraction, 6)  # 0.01 / (2 - 0.01)
        0.005025
        """
        if self.mc_se is None:
            return None
        mc, (_, post) = self._mc_var(), self._spread()
        f = torch.where(post > 0, mc / post.clamp(min=1e-300), torch.full_like(mc, float("inf")))
        f = torch.where(mc == 0, torch.zeros_like(f), f)
        return float(f) if f.dim() == 0 else f

    @property
    def mean_mc_se(self) -> float | torch.Tensor | None:
        """Monte Carlo standard error of :attr:`mean` (``sqrt(mean(mc_se**2) / draws)``)."""
        if self.mc_se is None:
            return None
        s = (self._mc_var() / self.samples.shape[0]).sqrt()
        return float(s) if s.dim() == 0 else s

    def interval(self, prob: float = 0.94) -> tuple[float, float] | tuple[torch.Tensor, torch.Tensor]:
        """Equal-tailed posterior credible interval of the functional.

        Quantiles of ``samples`` with their spread about the mean scaled by ``std / sd(samples)``,
        which takes the Monte Carlo part out (exact for Gaussian MC errors; at the default
        ``mc_fraction`` of 1% the factor is at least 0.995).

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
        x = self.samples.double()
        if self.mc_se is not None and x.shape[0] > 1:
            total, post = self._spread()
            factor = torch.where(total > 0, (post / total.clamp(min=1e-300)).sqrt(), torch.ones_like(total))
            m = x.mean(0)
            x = m + (x - m) * factor
        lo, hi = torch.quantile(x, q, dim=0)
        if lo.dim() == 0:
            return float(lo), float(hi)
        return lo, hi

    def to_arviz(
        self,
        *,
        log_likelihood: bool | str = True,
        unit_latents: bool = False,
        particles: int = inference_data.LOG_LIKELIHOOD_PARTICLES,
    ) -> az.InferenceData:
        """ArviZ ``InferenceData`` on the draws used: :meth:`CausalPosterior.to_arviz`'s groups,
        ``"functional"`` in ``posterior``, and ``predictions`` (the interventional predictive, an
        ``arm`` coordinate per outcome). See :mod:`causal_pp.inference_data`.

        Examples
        --------
        >>> import torch
        >>> from causal_pp import ATE
        >>> est = Estimate(ATE("X", "Y"), samples=torch.zeros(4), predictive={"Y | do(X=1)": torch.zeros(4, 3)},
        ...                identified=True, identification=None, plugin=0.0, num_units=3, seed=0)
        >>> sorted(est.to_arviz().groups())
        ['posterior', 'predictions']
        """
        return inference_data.estimate_to_inference_data(
            self, log_likelihood=log_likelihood, unit_latents=unit_latents, particles=particles
        )

    @property
    def diagnostics(self) -> dict[str, float]:
        """ArviZ's rank-normalised split R-hat and bulk/tail effective sample size of the
        functional's draws (per chain); ``ess`` is the bulk ESS. The worst over the components of
        a joint outcome.

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
        c = self.chains
        x = self.samples.detach().double().cpu().reshape(c, self.samples.shape[0] // c, -1).numpy()
        d = inference_data.rhat_ess(x)
        return {
            "r_hat": float(np.max(d["r_hat"])),
            "ess": float(np.min(d["ess_bulk"])),
            "ess_bulk": float(np.min(d["ess_bulk"])),
            "ess_tail": float(np.min(d["ess_tail"])),
        }

    # pickling: the predictive is a read-only mapping proxy, which pickle cannot store
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        proxies = [k for k, v in state.items() if isinstance(v, MappingProxyType)]
        for k in proxies:
            state[k] = dict(state[k])
        state["__proxies__"] = proxies
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        proxies = state.pop("__proxies__", [])
        for k, v in state.items():
            object.__setattr__(self, k, MappingProxyType(v) if k in proxies else v)

    def __repr__(self) -> str:
        lo, hi = self.interval(0.94)
        if isinstance(self.mean, float):
            body = f"mean={self.mean:.4g}, sd={self.std:.3g}, 94% interval=[{lo:.4g}, {hi:.4g}]"
        else:
            body = f"mean={self.mean.tolist()}, sd={self.std.tolist()}"
        flag = "" if self.identified else ", identified=False"
        frac = self.mc_fraction
        if isinstance(frac, float):
            flag = f", mc_fraction={frac:.2g}{' (capped)' if self.mc_capped else ''}{flag}"
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

    @property
    def model_args(self) -> tuple[Any, ...]:
        """Further positional arguments of the model function (after ``n``)."""
        return self._model_args

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the model function."""
        return dict(self._model_kwargs)

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

    def to_arviz(
        self,
        *,
        log_likelihood: bool | str = True,
        unit_latents: bool = False,
        particles: int = inference_data.LOG_LIKELIHOOD_PARTICLES,
    ) -> az.InferenceData:
        """ArviZ ``InferenceData``: ``posterior``, ``sample_stats``, ``log_likelihood`` (per observed
        site and unit, the unit's latents integrated out; ``"joint"``: one per unit) and
        ``observed_data``. Options and groups: :func:`causal_pp.inference_data.posterior_to_inference_data`.

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
        >>> idata = p.to_arviz()
        >>> idata.posterior["b"].shape, idata.log_likelihood["X"].dims
        ((2, 3), ('chain', 'draw', 'unit'))
        """
        return inference_data.posterior_to_inference_data(
            self, log_likelihood=log_likelihood, unit_latents=unit_latents, particles=particles
        )

    # --- keeping a fit --------------------------------------------------------------------

    def save(self, path: str | PathLike[str]) -> str:
        """Save to one NetCDF file (draws, data, sample statistics, a small JSON of the rest);
        :meth:`load` reads it back with the same model. See :func:`causal_pp.io.save_posterior`."""
        return posterior_io.save_posterior(self, path)

    @classmethod
    def load(
        cls, path: str | PathLike[str], model: CausalModel, *, device: str | torch.device | None = None
    ) -> CausalPosterior:
        """Read a posterior written by :meth:`save` (bit-identical draws, so identical estimates);
        ``model`` must have the saved DAG. See :func:`causal_pp.io.read_posterior`."""
        return cls(**posterior_io.read_posterior(path, model, device=device))

    def __getstate__(self) -> dict[str, Any]:
        # mapping proxies do not pickle, and the program structure is rebuilt from the model
        state = {
            k: dict(v) if isinstance(v, MappingProxyType) else v
            for k, v in self.__dict__.items()
            if k != "_structure"
        }
        state["__version__"] = __version__
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        version = state.pop("__version__", None)
        if version != __version__:
            warn(
                f"causal_pp: this posterior was pickled by causal_pp {version} and is loaded by "
                f"{__version__}; if estimates fail, refit it or use save()/load()."
            )
        for k in ("_samples", "_unit_samples", "_data"):
            state[k] = MappingProxyType(state[k])
        self.__dict__.update(state)
        n = int(next(iter(self._data.values())).shape[0]) if self._data else 5
        self._structure = self._model.inspect(n, model_args=self._model_args, model_kwargs=self._model_kwargs)

    def estimate(
        self,
        query: Query,
        *,
        num_samples: int | None = None,
        num_units: int | None = None,
        seed: int = 0,
        allow_unidentified: bool = False,
        assume_monotonic: bool = False,
        mc_fraction: float = 0.01,
        max_units: int | None = None,
    ) -> Estimate:
        """Estimate a causal query: its posterior, unit-level predictive, and plug-in value.

        The identification gate (:func:`~causal_pp.identify`) runs first. For each posterior
        draw of the global parameters, fresh units are simulated from the interventional
        program (the model under ChiRho ``do``), all draws at once; the functional of a draw
        is the mean over its units of the outcome's conditional mean given its parents
        (Rao-Blackwellised; the unit-level predictive keeps sampled outcomes). Both arms of an
        ATE draw every per-unit site from the same keyed random stream (common random numbers,
        inverse-CDF for discrete sites), and units come in antithetic pairs.

        **How many units.** Each draw's functional carries a Monte Carlo error, measured from
        the unit-level contributions (:attr:`Estimate.mc_se`). Units are added in batches until
        the mean MC variance is at most ``mc_fraction`` of the functional's posterior variance
        (:attr:`Estimate.mc_fraction`), or ``max_units`` is reached (then
        :attr:`Estimate.mc_capped` is True); :attr:`Estimate.std` and :meth:`Estimate.interval`
        are the functional's, with the MC part taken out. See :mod:`causal_pp.estimation.montecarlo`.

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
            Fresh units simulated per draw, in one batch (None, the default: as many as
            ``mc_fraction`` needs).
        seed
            Seed of the simulation; the same seed gives identical results on CPU. The
            caller's random stream is left untouched.
        allow_unidentified
            Estimate a query the gate refuses. The result has ``identified=False`` and a
            warning is issued: such numbers concentrate, as data grows, in the wrong place.
        assume_monotonic
            Counterfactual queries only: passed to the gate (PN/PS need it).
        mc_fraction
            Target of the adaptive simulation (default 1%): mean MC variance of a draw's
            functional over the functional's posterior variance.
        max_units
            Cap on the units per draw of the adaptive simulation (default
            ``causal_pp.estimation.MAX_UNITS``, and at most ``causal_pp.estimation.MAX_WORK``
            unit-simulations in all).

        **Counterfactual queries** (:class:`~causal_pp.Counterfactual`,
        :class:`~causal_pp.ETT`, :class:`~causal_pp.PN`,
        :class:`~causal_pp.PS`) are gated by
        :func:`~causal_pp.identify_counterfactual` and estimated by
        abduction-action-prediction with shared noise: see
        :mod:`causal_pp.estimation.counterfactual`.

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
        from .estimation import estimate  # the facade: estimation imports this module

        return estimate(
            self,
            query,
            num_samples=num_samples,
            num_units=num_units,
            seed=seed,
            allow_unidentified=allow_unidentified,
            assume_monotonic=assume_monotonic,
            mc_fraction=mc_fraction,
            max_units=max_units,
        )
