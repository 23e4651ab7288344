"""Fitting a causal model to observational data: :func:`fit`.

:func:`fit` conditions the observed DAG nodes on the data (``pyro.condition``); latent DAG
nodes (and auxiliary per-unit sample sites) become per-unit latent variables that the
inference method integrates over together with the global parameters. It returns a
:class:`~causal_pp.posterior.CausalPosterior` holding draws of the global parameters -- all
that estimation needs, since causal estimates simulate fresh units.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from pyro import poutine
from pyro.infer import config_enumerate

from .. import validation as check
from ..errors import ArgumentTypeError, InferenceError
from ..model import CausalModel
from ..posterior import CausalPosterior
from ..runtime import SMALL_PROBLEM_UNITS, num_threads, on_device, released_jit_traces, resolve_device
from .batched import fallback_reason, fit_one
from .data import check_data_shapes, check_support, latent_sites, validate_data
from .methods import FitMethod, FitProblem, make_method

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


__all__ = ["fit"]


def fit(
    model: CausalModel,
    data: pd.DataFrame | Mapping[str, Any],
    *,
    method: str | FitMethod = "nuts",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress_bar: bool = True,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    threads: int | str | None = "auto",
    **options: Any,
) -> CausalPosterior:
    """Fit a causal model to observational data by NUTS or SVI.

    The observed DAG nodes are conditioned on the data; latent DAG nodes are per-unit latent
    variables. Discrete latent per-unit sites with finite support (Bernoulli, Categorical)
    are enumerated out (parallel enumeration); other discrete latents are refused.

    Parameters
    ----------
    model
        A :class:`~causal_pp.CausalModel`; it is checked against its DAG first.
    data
        pandas DataFrame or dict of arrays/tensors holding exactly the observed variables;
        see :func:`~causal_pp.inference.validate_data`. Never modified.
    method
        ``"nuts"`` (Pyro's NUTS, the reference: asymptotically exact), ``"svi"`` (stochastic
        variational inference: fast, approximate), or a method object with its options,
        :class:`~causal_pp.inference.NUTS` / :class:`~causal_pp.inference.SVI` (see them for
        every option and its default).
    **options
        The method's options as keywords, a shorthand for the method object:
        ``fit(m, data, method="svi", num_steps=300)`` is ``fit(m, data, method=SVI(num_steps=300))``.
        An option the method does not have is refused.
    seed
        Seeds everything; the same seed gives identical draws on CPU. The caller's random
        stream is left untouched.
    device
        ``"cpu"`` (default) or ``"cuda"``; DeviceError if unavailable.
    progress_bar
        Show tqdm progress bars.
    model_args, model_kwargs
        Further arguments of the model function (after ``n``).
    threads
        torch intra-op threads during the fit (restored afterwards). ``"auto"``: one thread
        below :data:`~causal_pp.runtime.SMALL_PROBLEM_UNITS` units -- per-unit tensors are then
        too small for parallel kernels, and idle OpenMP threads spinning on a busy machine made
        fits up to 5x slower in our measurements -- otherwise torch's setting; None: torch's.

    Returns
    -------
    CausalPosterior
        Draws of the global parameters, diagnostics, and the data.

    Raises
    ------
    DataError
        (its subclasses) if the data is unusable; nothing is fitted.
    ModelGraphMismatchError
        If the program does not encode its DAG.
    InferenceError
        Unsupported latent sites, observed deterministic sites, data outside the model's
        support, or non-finite results.
    InvalidArgumentError, ArgumentTypeError
        A bad option (named in the message), before any work.
    DeviceError
        If ``device`` is not available.

    Warns
    -----
    UserWarning
        NUTS: R-hat > 1.05, ESS < 100 or divergent transitions (parameters of latent variable
        models need not be identified -- the sign of a latent, say -- so check
        :attr:`Estimate.diagnostics <causal_pp.Estimate.diagnostics>` of the functional too);
        SVI: the loss has not levelled off or is not finite, or the importance correction failed.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, causal_model, units
    >>> @causal_model(CausalGraph.parse("X -> Y"))
    ... def m(n):
    ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(b * x, 1.0))
    >>> x = torch.linspace(-2, 2, 40)
    >>> post = fit(m, {"X": x, "Y": -x}, method="nuts", num_samples=100, warmup_steps=100,
    ...            progress_bar=False)
    >>> post.samples["b"].shape, round(post.samples["b"].mean().item())
    (torch.Size([100]), -1)
    """
    fit_method = make_method(method, options)
    check.seed(seed)
    check.boolean("progress_bar", progress_bar)
    dev = resolve_device(device)
    if not isinstance(model, CausalModel):
        raise ArgumentTypeError(
            f"fit() needs a CausalModel; got {type(model).__name__}. Use @causal_model(graph)."
        )
    threads = check.threads(threads)
    cpu_data = validate_data(data, model.graph)
    n = int(next(iter(cpu_data.values())).shape[0])
    if threads == "auto":
        threads = 1 if n < SMALL_PROBLEM_UNITS else None
    model_kwargs = dict(model_kwargs or {})
    structure = model.check(n=n, model_args=model_args, model_kwargs=model_kwargs)
    check_data_shapes(cpu_data, structure)
    globals_, unit_latent, enum = latent_sites(model, structure)
    if not globals_:
        warnings.warn(
            f"causal_pp: {model.name!r} has no global parameters (no sample sites outside units); "
            "its causal estimates do not depend on the data.",
            UserWarning,
            stacklevel=3,
        )
    if fallback_reason(fit_method, enum) is None:  # SVI with a batched guide: the vectorised path
        post = fit_one(
            model, cpu_data, svi=fit_method, seed=seed, structure=structure, device=dev,
            progress_bar=progress_bar, model_args=tuple(model_args), model_kwargs=model_kwargs, threads=threads,
        )  # fmt: skip
        warn_diagnostics(model.name, fit_method, post.diagnostics)
        return post
    data_dev = {k: v.to(dev) for k, v in cpu_data.items()}

    def conditioned() -> Any:
        return poutine.condition(model.fn, data=data_dev)(n, *model_args, **model_kwargs)

    target: Callable[[], Any] = config_enumerate(conditioned, default="parallel") if enum else conditioned
    problem = FitProblem(
        target, tuple(globals_), tuple(unit_latent), tuple(enum), structure, seed, dev, progress_bar
    )
    t0 = time.perf_counter()
    with on_device(dev), num_threads(threads), released_jit_traces():
        check_support(conditioned, list(data_dev), dev, seed)
        result = fit_method.run(problem)
    diagnostics = result.diagnostics
    diagnostics["time_s"] = time.perf_counter() - t0
    diagnostics["enumerated"] = tuple(enum)
    for k, v in result.draws.items():
        if not torch.isfinite(v).all():
            raise InferenceError(
                f"{fit_method.name} produced non-finite draws of {k!r}; check the priors and the data scale."
            )
    warn_diagnostics(model.name, fit_method, diagnostics)
    return CausalPosterior(
        model=model,
        samples=result.draws,
        data=cpu_data,
        diagnostics=diagnostics,
        method=fit_method.name,
        seed=seed,
        num_chains=result.num_chains,
        unit_samples=result.unit_draws,
        structure=structure,
        model_args=tuple(model_args),
        model_kwargs=model_kwargs,
        device=dev,
    )


def warn_diagnostics(name: str, method: FitMethod, diagnostics: Mapping[str, Any]) -> None:
    """Warn, once per fit, about everything in the diagnostics that makes the fit unreliable."""
    problems, hint = method.problems(diagnostics)
    if problems:
        warnings.warn(
            f"causal_pp: {method.name.upper()} fit of {name!r} may be unreliable: "
            + "; ".join(problems)
            + f". Try: {hint}. Diagnostics are in posterior.diagnostics.",
            UserWarning,
            stacklevel=4,
        )
