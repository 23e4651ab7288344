"""NUTS (Pyro's No-U-Turn sampler): the reference method, asymptotically exact.

Chains run one after another, each seeded from the fit's seed, so a fit is reproducible.
Per-unit latents are sampled jointly with the global parameters; discrete finite latents are
enumerated out. R-hat and ESS are ArviZ's (rank-normalised split R-hat, bulk and tail ESS).

**Per-draw sample statistics.** Pyro's NUTS keeps no per-draw statistics, so the kernel is a
thin subclass (:class:`RecordingNUTS`) whose ``sample`` wraps Pyro's own, using only public
behaviour: a messenger around the transition sees the ``pyro.sample`` statements the kernel
makes -- the momentum ``r_t=...`` (standard normal, unscaled) and one ``direction_t=..._treedepth=d``
per tree doubling -- and the kernel's public ``potential_fn``, ``step_size`` and
``diagnostics()`` give the rest. Recorded per draw: ``diverging`` (the transition added a
divergence), ``tree_depth`` (tree doublings), ``step_size``, ``lp`` (minus the potential energy,
the log joint in unconstrained space) and ``energy``: the Hamiltonian at the *start* of the
transition (potential of the previous draw plus the kinetic energy of the fresh momentum).
Stan's ``energy__`` is the Hamiltonian at the selected point of the trajectory, which the
integrator conserves up to its error; Pyro does not keep that point's momentum. E-BFMI from
either agrees up to that error. The draws are bit-identical to Pyro's NUTS (nothing random is
added or reordered); the cost is one potential evaluation per kept draw.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyro
import torch
from pyro.infer import MCMC
from pyro.infer import NUTS as PyroNUTS
from pyro.poutine.messenger import Messenger

from .. import validation as check
from ..inference_data import rhat_ess
from ..runtime import child_seeds, ignore_jit_warnings, seeded
from .methods import FitMethod, FitProblem, FitResult, register_method

__all__ = ["ESS_WARN", "NUTS", "R_HAT_WARN", "RecordingNUTS", "bfmi"]

log = logging.getLogger("causal_pp")

R_HAT_WARN = 1.05
"""NUTS warns when a global parameter's split R-hat exceeds this."""
ESS_WARN = 100.0
"""NUTS warns when a global parameter's (bulk) effective sample size is below this."""

_MOMENTUM = re.compile(r"^r_t=\d+_")
_DIRECTION = re.compile(r"^direction_t=\d+_treedepth=\d+$")


class _TransitionSites(Messenger):
    """Sees the kernel's own sample statements in one transition: momentum and tree doublings."""

    def __init__(self) -> None:
        super().__init__()
        self.kinetic = 0.0
        self.doublings = 0

    def _pyro_post_sample(self, msg: dict[str, Any]) -> None:
        name = str(msg["name"])
        if _MOMENTUM.match(name):
            self.kinetic += 0.5 * float(msg["value"].detach().double().pow(2).sum())
        elif _DIRECTION.match(name):
            self.doublings += 1


class RecordingNUTS(PyroNUTS):
    """Pyro's NUTS, recording per-draw sample statistics (see the module docstring).

    ``record_after`` transitions (the warm-up) are not recorded; the statistics of the others
    are in :attr:`stats` (lists, one value per kept draw).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> from pyro.infer import MCMC
    >>> def model():
    ...     pyro.sample("x", dist.Normal(0.0, 1.0))
    >>> kernel = RecordingNUTS(model, record_after=5)
    >>> pyro.set_rng_seed(0)
    >>> MCMC(kernel, num_samples=10, warmup_steps=5, disable_progbar=True).run()
    >>> sorted(kernel.stats), len(kernel.stats["energy"])
    (['diverging', 'energy', 'lp', 'step_size', 'tree_depth'], 10)
    """

    def __init__(self, *args: Any, record_after: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record_after = record_after
        self.transitions = 0
        self.stats: dict[str, list[Any]] = {
            k: [] for k in ("diverging", "energy", "lp", "step_size", "tree_depth")
        }

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        record = self.transitions >= self.record_after
        self.transitions += 1
        if not record:
            return super().sample(params)
        start = self._potential(params)
        before = self._divergence_count()
        sites = _TransitionSites()
        with sites:
            z = super().sample(params)
        st = self.stats
        st["diverging"].append(self._divergence_count() > before)
        st["energy"].append(start + sites.kinetic)
        st["lp"].append(-self._potential(z))
        st["step_size"].append(float(self.step_size))
        st["tree_depth"].append(sites.doublings)
        return z

    def _divergence_count(self) -> int:
        try:
            return len(self.diagnostics().get("divergences", ()))
        except ZeroDivisionError:  # Pyro's acceptance rate before the first kept draw
            return 0

    def _potential(self, z: dict[str, torch.Tensor]) -> float:
        if not z:
            return 0.0
        with torch.no_grad():
            return float(self.potential_fn(z))


@register_method
@dataclass(frozen=True)
class NUTS(FitMethod):
    """Options of a NUTS fit (``fit(model, data, method=NUTS(...))`` or ``method="nuts", **options``).

    Parameters
    ----------
    num_samples
        Posterior draws per chain.
    warmup_steps
        Adaptation steps per chain (discarded).
    num_chains
        Chains, run one after another.
    target_accept_prob, max_tree_depth
        NUTS's step-size adaptation target and tree depth limit.
    jit_compile
        Trace the potential once with TorchScript (faster; Python control flow on random values
        is frozen -- turn it off for such programs).

    Examples
    --------
    >>> NUTS(num_samples=200, num_chains=2).num_chains
    2
    >>> NUTS(num_chains=0)
    Traceback (most recent call last):
    ...
    causal_pp.errors.InvalidArgumentError: num_chains must be a positive integer; got 0.
    """

    num_samples: int = 500
    warmup_steps: int = 500
    num_chains: int = 1
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    jit_compile: bool = True

    name: ClassVar[str] = "nuts"

    def __post_init__(self) -> None:
        check.positive_int("num_samples", self.num_samples)
        check.non_negative_int("warmup_steps", self.warmup_steps)
        check.positive_int("num_chains", self.num_chains)
        check.finite_float(
            "target_accept_prob", self.target_accept_prob, low=0.0, high=1.0, low_open=True, high_open=True
        )
        check.positive_int("max_tree_depth", self.max_tree_depth)
        check.boolean("jit_compile", self.jit_compile)

    def run(self, problem: FitProblem) -> FitResult:
        """Run the chains; R-hat and ESS per global parameter, divergences, acceptance rate."""
        target, globals_, unit_latent, s = (
            problem.target,
            problem.globals_,
            problem.unit_latent,
            problem.structure,
        )
        seed, device, progress_bar = problem.seed, problem.device, problem.progress_bar
        max_plate_nesting = problem.max_plate_nesting
        num_samples, warmup_steps, num_chains = self.num_samples, self.warmup_steps, self.num_chains
        jit_compile, target_accept_prob, max_tree_depth = (
            self.jit_compile,
            self.target_accept_prob,
            self.max_tree_depth,
        )
        chains: list[dict[str, torch.Tensor]] = []
        divergences = 0
        acceptance = []
        step_sizes = []
        sample_stats: dict[str, list[Any]] = {}
        for c, chain_seed in enumerate(child_seeds(seed, num_chains)):
            kernel = RecordingNUTS(
                target,
                record_after=warmup_steps,
                jit_compile=jit_compile,
                ignore_jit_warnings=True,
                max_plate_nesting=max_plate_nesting,
                target_accept_prob=target_accept_prob,
                max_tree_depth=max_tree_depth,
            )
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                num_chains=1,
                disable_progbar=not progress_bar,
            )
            with seeded(chain_seed, device), pyro.validation_enabled(False), warnings.catch_warnings():
                ignore_jit_warnings()
                if progress_bar and num_chains > 1:
                    log.info("NUTS chain %d/%d", c + 1, num_chains)
                mcmc.run()
            samples = mcmc.get_samples()
            diag = mcmc.diagnostics()
            divergences += sum(len(v) for v in diag.get("divergences", {}).values())
            acceptance += [float(v) for v in diag.get("acceptance rate", {}).values()]
            step_sizes.append(float(kernel.step_size))
            for k, v in kernel.stats.items():
                sample_stats.setdefault(k, []).extend(v)
            chains.append({k: v.detach() for k, v in samples.items()})
        draws: dict[str, torch.Tensor] = {}
        unit_draws: dict[str, torch.Tensor] = {}
        r_hat: dict[str, float] = {}
        ess: dict[str, float] = {}
        ess_tail: dict[str, float] = {}
        unit_r_hat = 0.0
        for name in [*globals_, *unit_latent]:
            if name not in chains[0]:  # enumerated out
                continue
            stacked = torch.stack([ch[name] for ch in chains])  # (C, D, ...)
            flat = stacked.reshape(num_chains * num_samples, *s.sites[name].shape)
            d = rhat_ess(stacked.reshape(num_chains, num_samples, -1).double().cpu().numpy())
            if name in globals_:
                draws[name] = flat
                r_hat[name] = float(np.max(d["r_hat"]))
                ess[name] = float(np.min(d["ess_bulk"]))
                ess_tail[name] = float(np.min(d["ess_tail"]))
            else:
                unit_draws[name] = flat
                unit_r_hat = max(unit_r_hat, float(np.max(d["r_hat"])))
        stats = {k: np.asarray(v) for k, v in sample_stats.items()}
        diagnostics: dict[str, Any] = {
            "method": "nuts",
            "num_samples": num_samples,
            "warmup_steps": warmup_steps,
            "num_chains": num_chains,
            "jit_compile": jit_compile,
            "r_hat": r_hat,
            "ess": ess,
            "ess_tail": ess_tail,
            "max_r_hat": max(r_hat.values(), default=float("nan")),
            "min_ess": min(ess.values(), default=float("nan")),
            "min_ess_tail": min(ess_tail.values(), default=float("nan")),
            "unit_max_r_hat": unit_r_hat if unit_draws else float("nan"),
            "divergences": divergences,
            "acceptance_rate": float(np.mean(acceptance)) if acceptance else float("nan"),
            "step_size": step_sizes,
            "bfmi": bfmi(stats["energy"].reshape(num_chains, num_samples)),
            "sample_stats": stats,
        }
        return FitResult(draws, unit_draws, diagnostics, num_chains=num_chains)

    def problems(self, d: Mapping[str, Any]) -> tuple[list[str], str]:
        problems = []
        if d["max_r_hat"] > R_HAT_WARN:
            worst = max(d["r_hat"], key=d["r_hat"].get)
            problems.append(f"R-hat of {worst!r} is {d['max_r_hat']:.3f} (> {R_HAT_WARN})")
        if d["min_ess"] < ESS_WARN:
            worst = min(d["ess"], key=d["ess"].get)
            problems.append(f"effective sample size of {worst!r} is {d['min_ess']:.0f} (< {ESS_WARN:.0f})")
        if d["divergences"]:
            problems.append(f"{d['divergences']} divergent transition(s)")
        return problems, "run longer (num_samples, warmup_steps), more chains, or raise target_accept_prob"


def bfmi(energy: np.ndarray) -> list[float]:
    """E-BFMI per chain from energies ``(chains, draws)`` (NaN with fewer than 2 draws).

    Examples
    --------
    >>> import numpy as np
    >>> [round(v, 2) for v in bfmi(np.array([[0.0, 1.0, 0.0, 1.0]]))]
    [4.0]
    """
    e = np.asarray(energy, dtype=float)
    if e.ndim != 2 or e.shape[1] < 2:
        return [float("nan")] * (e.shape[0] if e.ndim == 2 else 1)
    num = np.square(np.diff(e, axis=1)).mean(axis=1)
    den = e.var(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(v) for v in num / den]
