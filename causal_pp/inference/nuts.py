"""NUTS (Pyro's No-U-Turn sampler): the reference method, asymptotically exact.

Chains run one after another, each seeded from the fit's seed, so a fit is reproducible.
Per-unit latents are sampled jointly with the global parameters; discrete finite latents are
enumerated out.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyro
import torch
from pyro.infer import MCMC
from pyro.infer import NUTS as PyroNUTS
from pyro.ops.stats import effective_sample_size, split_gelman_rubin

from .. import validation as check
from ..runtime import child_seeds, seeded
from .methods import FitMethod, FitProblem, FitResult, register_method

__all__ = ["ESS_WARN", "NUTS", "R_HAT_WARN"]

log = logging.getLogger("causal_pp")

R_HAT_WARN = 1.05
"""NUTS warns when a global parameter's split R-hat exceeds this."""
ESS_WARN = 100.0
"""NUTS warns when a global parameter's effective sample size is below this."""


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
        for c, chain_seed in enumerate(child_seeds(seed, num_chains)):
            kernel = PyroNUTS(
                target,
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
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message="`torch.jit.trace` is deprecated")
                if progress_bar and num_chains > 1:
                    log.info("NUTS chain %d/%d", c + 1, num_chains)
                mcmc.run()
            samples = mcmc.get_samples()
            diag = mcmc.diagnostics()
            divergences += sum(len(v) for v in diag.get("divergences", {}).values())
            acceptance += [float(v) for v in diag.get("acceptance rate", {}).values()]
            step_sizes.append(float(kernel.step_size))
            chains.append({k: v.detach() for k, v in samples.items()})
        draws: dict[str, torch.Tensor] = {}
        unit_draws: dict[str, torch.Tensor] = {}
        r_hat: dict[str, float] = {}
        ess: dict[str, float] = {}
        unit_r_hat = 0.0
        for name in [*globals_, *unit_latent]:
            if name not in chains[0]:  # enumerated out
                continue
            stacked = torch.stack([ch[name] for ch in chains])  # (C, D, ...)
            flat = stacked.reshape(num_chains * num_samples, *s.sites[name].shape)
            if name in globals_:
                draws[name] = flat
                x = stacked.reshape(num_chains, num_samples, -1).double().cpu()
                r_hat[name] = float(split_gelman_rubin(x, chain_dim=0, sample_dim=1).nan_to_num(1.0).max())
                ess[name] = float(effective_sample_size(x, chain_dim=0, sample_dim=1).nan_to_num(0.0).min())
            else:
                unit_draws[name] = flat
                x = stacked.reshape(num_chains, num_samples, -1).double().cpu()
                unit_r_hat = max(
                    unit_r_hat, float(split_gelman_rubin(x, chain_dim=0, sample_dim=1).nan_to_num(1.0).max())
                )
        diagnostics: dict[str, Any] = {
            "method": "nuts",
            "num_samples": num_samples,
            "warmup_steps": warmup_steps,
            "num_chains": num_chains,
            "jit_compile": jit_compile,
            "r_hat": r_hat,
            "ess": ess,
            "max_r_hat": max(r_hat.values(), default=float("nan")),
            "min_ess": min(ess.values(), default=float("nan")),
            "unit_max_r_hat": unit_r_hat if unit_draws else float("nan"),
            "divergences": divergences,
            "acceptance_rate": float(np.mean(acceptance)) if acceptance else float("nan"),
            "step_size": step_sizes,
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
