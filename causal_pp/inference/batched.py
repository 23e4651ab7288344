"""Fitting many data sets of one model at once: :func:`fit_many`, one vectorised SVI program.

Independent data sets with independent global parameters are one program with an outer batch
dimension: the model runs under a plate over *rows* (left of its own plates), each row holds one
data set, and each row has its own guide (a :class:`~causal_pp.inference.batched_guide.RowGuide`: the
low-rank family, or the structured one of :mod:`~causal_pp.inference.batched_structured`).
The ELBO is a sum of independent per-row terms, so each row's gradient touches only its own
parameters; the optimiser (Adam with element-wise gradient clipping, as Pyro's ``ClippedAdam``)
keeps a learning rate and a phase per row. Per row, as :class:`~causal_pp.inference.SVI` does
for one data set:

* **restarts** -- ``restarts`` starts per data set are rows of one batch for the run's first
  ``restart_steps`` steps; each data set goes on from its best start (lowest mean loss over its
  last 50 steps), with that start's optimiser state;
* **convergence** -- a row's loss is tested for a plateau every 250 steps (two-sided, as
  :func:`~causal_pp.inference.svi.plateau_test`); a row that levels off (or whose loss rises)
  anneals its own learning rate for 500 steps and then stops moving while the others go on
  (once few rows are live, the batch goes on with those alone);
* **failure** -- a row whose loss stays non-finite stops, and its data set is reported failed
  without disturbing the others;
* **importance correction** of the guide's draws of the global parameters
  (:mod:`~causal_pp.inference.importance`), per data set;
* **diagnostics** per data set, in the same keys as a single SVI fit.

Every random number a row uses comes from its own generator, seeded from its data set's seed, and a
row that has stopped draws nothing more: a data set's posterior does not depend on which other
data sets share its batch (up to the float rounding of batched kernels of another size).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine
from tqdm.auto import tqdm

from .. import validation as check
from ..errors import ArgumentTypeError, CausalPPError, DataError, InferenceError, InvalidArgumentError, warn
from ..model import CausalModel
from ..posterior import CausalPosterior
from ..runtime import (
    SMALL_PROBLEM_UNITS,
    child_seeds,
    num_threads,
    on_device,
    released_jit_traces,
    resolve_device,
    seeded,
)
from .batched_guide import BatchedLowRankGuide, RowGuide, median_init, prototype
from .batched_steps import Resume, RowBatch, rows_of, run_phase
from .batched_structured import BatchedStructuredGuide
from .data import check_data_shapes, check_support, latent_sites, validate_data
from .guides import INIT_DRAWS, global_dims, sampled_globals
from .methods import FitProblem, make_method
from .svi import SVI, restart_phase, restart_score

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..graph import CausalGraph
    from ..program import ProgramStructure

__all__ = ["BATCH_WARNING", "batch_fallback_reason", "fallback_reason", "fit_many", "fit_one"]

#: How fit_many's one warning for the whole batch begins (studies keep per-cell problems instead).
BATCH_WARNING = "causal_pp: SVI fits of data sets"


#: The batched family of each ``SVI(guide=...)`` that has one: ``f(layout, init_loc, rank,
#: globals_, n, generators, log_joint)`` (``log_joint``: :meth:`RowBatch.log_joint`, for a family
#: that reads the model's structure off it). ``"auto"`` is the structured family (see :class:`~causal_pp.inference.SVI`).
ROW_GUIDES: dict[str, Callable[..., RowGuide]] = {
    "lowrank_mvn": lambda layout, init, rank, globals_, n, gens, log_joint: BatchedLowRankGuide(
        layout, init, rank=rank, generators=gens
    ),
    "structured": lambda layout, init, rank, globals_, n, gens, log_joint: BatchedStructuredGuide(
        layout, init, globals_=globals_, n=n, generators=gens, log_joint=log_joint
    ),
}
ROW_GUIDES["auto"] = ROW_GUIDES["structured"]


def _checked(
    model: Any, datasets: Any, seeds: Sequence[int] | None, seed: int, errors: str, threads: Any
) -> tuple[list[dict[str, torch.Tensor]], list[int], int]:
    """Every argument checked before any work: the data sets (one length), their seeds."""
    if not isinstance(model, CausalModel):
        raise ArgumentTypeError(
            f"fit_many() needs a CausalModel; got {type(model).__name__}. Use @causal_model(graph)."
        )
    if isinstance(datasets, (Mapping, str, bytes)) or not isinstance(datasets, Sequence):
        raise ArgumentTypeError(
            "datasets must be a non-empty list of data sets (DataFrames or dicts of columns); "
            f"got {type(datasets).__name__}."
        )
    if not datasets:
        raise InvalidArgumentError("datasets is empty; give fit_many() at least one data set.")
    check.choice("errors", errors, ("raise", "return"))
    check.seed(seed)
    check.threads(threads)
    data = [_one_dataset(i, d, model.graph) for i, d in enumerate(datasets)]
    sizes = [int(next(iter(d.values())).shape[0]) for d in data]
    odd = next((i for i, size in enumerate(sizes) if size != sizes[0]), None)
    if odd is not None:
        raise DataError(
            f"fit_many() fits data sets of one size as one batch; datasets[0] has {sizes[0]} rows "
            f"but datasets[{odd}] has {sizes[odd]} (sizes in order: {sizes}). Fit each size separately."
        )
    if seeds is None:
        return data, child_seeds(seed, len(data)), sizes[0]
    if isinstance(seeds, (np.ndarray, torch.Tensor)) and seeds.ndim == 1:
        seeds = seeds.tolist()  # an array of seeds, as np.arange or torch.arange give them
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ArgumentTypeError(
            "seeds must be a list, tuple, range or 1-d array of integers, one per data set; "
            f"got {type(seeds).__name__}."
        )
    if len(seeds) != len(data):
        raise InvalidArgumentError(
            f"seeds must hold one seed per data set: {len(data)} data sets, {len(seeds)} seeds."
        )
    return data, [check.seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)], sizes[0]


def _one_dataset(i: int, data: Any, graph: CausalGraph) -> dict[str, torch.Tensor]:
    """``validate_data`` for ``datasets[i]``; its error, if any, says which data set is at fault."""
    try:
        return validate_data(data, graph)
    except CausalPPError as err:
        if err.args and isinstance(err.args[0], str):
            err.args = (f"datasets[{i}]: {err.args[0]}", *err.args[1:])
        raise


def _start_phase(
    batch_of: Callable[[int], RowBatch],
    conditioned: Sequence[Callable[[], Any]],
    seeds: Sequence[int],
    svi: SVI,
    rank: int,
    bar: Any,
    globals_: Sequence[str],
) -> tuple[RowBatch, RowGuide, list[list[float]], Resume | None]:
    """Every start of every data set as rows of one batch, for the run's first steps; each data
    set goes on from its best start (see :func:`~causal_pp.inference.svi.best_start`)."""
    R, S = len(seeds), svi.restarts
    batch = batch_of(S)
    layout = batch.layout(prototype(conditioned[0]))
    row_seeds = [s for sd in seeds for s in child_seeds(sd, S)]
    P = batch.P
    starts = [sampled_globals(k, globals_, svi.restart_init) for k in range(S)]
    inits = [
        median_init(conditioned[i // S], layout, row_seeds[i], P, INIT_DRAWS, starts[i % S])
        for i in range(R * S)
    ]
    init = torch.stack(inits)
    gens = [torch.Generator().manual_seed(s) for s in row_seeds]
    guide = ROW_GUIDES[str(svi.guide)](
        layout, init.to(torch.get_default_dtype()), rank, globals_, batch.n, gens, batch.log_joint(layout)
    )
    phase = restart_phase(S, svi.restart_steps, svi.num_steps)
    if phase == 0:
        return batch, guide, [[] for _ in range(R)], None
    run = run_phase(
        batch,
        guide,
        steps=phase,
        particles=svi.restart_particles,
        lr=svi.lr,
        lr_decay=1.0,
        restart=True,
        bar=bar,
        jit=svi.jit_compile,
    )
    scores = [
        restart_score(x, phase) if run.failed[i] is None else math.inf for i, x in enumerate(run.losses)
    ]
    best, failed = [], []
    for r in range(R):
        own = scores[r * S : (r + 1) * S]
        finite = [k for k in range(S) if np.isfinite(own[k])]
        best.append(r * S + (min(finite, key=own.__getitem__) if finite else 0))
        failed.append(
            None if finite else f"SVI failed in every one of its {S} starts, e.g. {run.failed[r * S]}"
        )
    index = torch.tensor(best)
    chosen = guide.select(index)
    history = np.full((phase, R), math.nan)  # a failed start's history ends early
    for j, i in enumerate(best):
        history[: len(run.losses[i]), j] = run.losses[i]
    resume = Resume(run.opt.select(chosen.params, index), history, failed)
    return batch_of(1), chosen, [scores[r * S : (r + 1) * S] for r in range(R)], resume


def fit_many(
    model: CausalModel,
    datasets: Sequence[pd.DataFrame | Mapping[str, Any]],
    *,
    method: str | SVI = "svi",
    seeds: Sequence[int] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress_bar: bool = True,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    threads: int | str | None = "auto",
    errors: str = "raise",
    **options: Any,
) -> list[CausalPosterior | InferenceError]:
    """Fit one model to many data sets of one size at once (one vectorised SVI program).

    Each data set gets what :func:`~causal_pp.inference.fit` with ``method="svi"`` gives it --
    restarts, adaptive steps, annealing, the importance correction, diagnostics -- decided per data
    set, in one batch (see the module docstring). Where the batch cannot apply (NUTS; a guide
    without a batched form: ``"mvn"``, ``"normal"``, a callable; enumerated discrete latents)
    every data set is fitted on its own: each posterior's ``diagnostics["batched"]`` is False and
    ``diagnostics["batch_fallback"]`` gives the reason.

    Parameters
    ----------
    model
        The :class:`~causal_pp.CausalModel`.
    datasets
        Data sets of equal size, each as :func:`~causal_pp.inference.fit` takes it.
    method, **options
        As for :func:`~causal_pp.inference.fit` (``"svi"``, an :class:`~causal_pp.inference.SVI`
        object, or ``"nuts"``, which falls back to one fit per data set).
    seeds
        One seed per data set (its fit depends on it alone, not on the batch); default: derived
        from ``seed``.
    errors
        ``"raise"`` (an :class:`~causal_pp.errors.InferenceError` naming the data sets whose fit
        diverged) or ``"return"`` (their entries in the result are the errors).
    threads
        torch intra-op threads during the fit, as for :func:`~causal_pp.inference.fit`, with the
        batch counted as one problem: ``"auto"`` runs one thread below
        :data:`~causal_pp.runtime.SMALL_PROBLEM_UNITS` units in all data sets together (N times
        their number), and torch's setting from there (``benchmarks/fit_many_speed.py`` times
        it). Where the batch falls back to one fit per data set, each fit decides for itself.

    Returns
    -------
    list
        One :class:`~causal_pp.CausalPosterior` per data set (or error, with ``errors="return"``).

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
    >>> x = torch.linspace(-2, 2, 50)
    >>> posts = fit_many(m, [{"X": x, "Y": k * x} for k in (0.5, -1.0)], num_steps=300, progress_bar=False)
    >>> [round(p.samples["b"].mean().item(), 1) for p in posts]
    [0.5, -1.0]
    """
    svi = make_method(method, options)
    data, seeds, n = _checked(model, datasets, seeds, seed, errors, threads)
    check.boolean("progress_bar", progress_bar)
    dev = resolve_device(device)
    model_kwargs = dict(model_kwargs or {})
    structure = model.check(n=n, model_args=model_args, model_kwargs=model_kwargs)
    for d in data:
        check_data_shapes(d, structure)
    globals_, unit_latent, enum = latent_sites(model, structure)
    reason = fallback_reason(svi, enum)
    if reason is not None:
        return _one_by_one(
            model, data, seeds, svi, reason, dev, progress_bar, model_args, model_kwargs, threads
        )
    # a batch's tensors hold every data set's units: it is as big as one data set of n * R units
    k = (1 if n * len(data) < SMALL_PROBLEM_UNITS else None) if threads == "auto" else threads
    fitted = _fit_batch(
        model, data, seeds, svi, structure, globals_, unit_latent, dev, progress_bar, model_args, model_kwargs, k
    )  # fmt: skip
    out: list[CausalPosterior | InferenceError] = [
        InferenceError(f"data set {r}: {x}") if isinstance(x, InferenceError) else x
        for r, x in enumerate(fitted)
    ]
    bad = [r for r, x in enumerate(out) if isinstance(x, InferenceError)]
    if bad and errors == "raise":
        raise InferenceError(
            f"fit_many: the fits of data sets {bad} failed: {out[bad[0]]} (pass errors='return' to keep the others)."
        )
    unreliable = {
        r: problems
        for r, x in enumerate(fitted)
        if not isinstance(x, InferenceError) and (problems := svi.problems(x.diagnostics)[0])
    }
    if unreliable:
        first = next(iter(unreliable))
        warn(
            f"{BATCH_WARNING} {sorted(unreliable)} of {len(out)} may be unreliable, e.g. data set "
            f"{first}: {'; '.join(unreliable[first])}. Diagnostics are in each posterior's diagnostics."
        )
    return out


def fit_one(
    model: CausalModel,
    data: Mapping[str, torch.Tensor],
    *,
    svi: SVI,
    seed: int,
    structure: ProgramStructure,
    device: torch.device,
    progress_bar: bool,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    threads: int | None,
) -> CausalPosterior:
    """One data set through the vectorised path: what :func:`~causal_pp.inference.fit` runs for
    ``SVI(batched=True)`` with a batched guide (a batch of one row; the same fit as
    ``fit_many([data])[0]``).

    ``data`` is validated, ``structure`` checked against it and ``threads`` resolved by the caller.
    Raises :class:`~causal_pp.errors.InferenceError` if the fit diverges; warns nothing (the caller
    reports the diagnostics).

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> from causal_pp.inference import SVI
    >>> case = get_case("frontdoor")
    >>> data = validate_data(case.simulate(50, seed=0), case.model.graph)
    >>> post = fit_one(case.model, data, svi=SVI(num_steps=40, restarts=1, importance=False), seed=0,
    ...                structure=case.model.check(n=50), device=torch.device("cpu"), progress_bar=False,
    ...                model_args=(), model_kwargs={}, threads=1)
    >>> post.diagnostics["batched"], post.samples["theta_XM"].shape
    (True, torch.Size([500]))
    """
    globals_, unit_latent, _ = latent_sites(model, structure)
    (post,) = _fit_batch(
        model, [data], [seed], svi, structure, globals_, unit_latent, device, progress_bar, model_args,
        model_kwargs, threads,
    )  # fmt: skip
    if isinstance(post, InferenceError):
        raise post
    return post


def batch_fallback_reason(
    model: CausalModel,
    n: int,
    *,
    method: str | SVI = "svi",
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> str | None:
    """Why :func:`fit_many` would fit data sets of size ``n`` one by one; ``None`` if it batches.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> model = get_case("frontdoor").model
    >>> batch_fallback_reason(model, 100) is None
    True
    >>> batch_fallback_reason(model, 100, method="nuts")
    "method 'nuts' has no batched form"
    """
    if not isinstance(model, CausalModel):  # e.g. a study's stand-in object with a fit method
        return f"{type(model).__name__} is not a CausalModel"
    svi = make_method(method, options)
    structure = model.check(n=n, model_args=model_args, model_kwargs=dict(model_kwargs or {}))
    _, _, enum = latent_sites(model, structure)
    return fallback_reason(svi, enum)


def fallback_reason(svi: Any, enum: Sequence[str]) -> str | None:
    """Why a fit by ``svi`` (a fitting method) with these enumerated latents is not batched, or None."""
    if not isinstance(svi, SVI):
        return f"method {svi.name!r} has no batched form"
    if svi.batched is False:
        return "SVI(batched=False) asks for Pyro's own SVI loop"
    if not (isinstance(svi.guide, str) and svi.guide in ROW_GUIDES):
        return f"guide {svi.guide!r} has no batched form (only {sorted(ROW_GUIDES)})"
    if enum:
        return f"enumerated discrete latents {list(enum)} have no batched form"
    return None


def _one_by_one(
    model: CausalModel,
    data: Sequence[Mapping[str, torch.Tensor]],
    seeds: Sequence[int],
    method: Any,
    reason: str,
    dev: torch.device,
    progress_bar: bool,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    threads: Any,
) -> list[CausalPosterior | InferenceError]:
    out: list[CausalPosterior | InferenceError] = []
    for d, sd in zip(data, seeds, strict=True):
        post = model.fit(  # the facade: fit.py imports this module, not the other way round
            d,
            method=method,
            seed=sd,
            device=dev,
            progress_bar=progress_bar,
            model_args=model_args,
            model_kwargs=model_kwargs,
            threads=threads,
        )
        post.diagnostics.update(batched=False, batch_fallback=f"{reason}; each data set is fitted on its own")
        out.append(post)
    return out


def _fit_batch(
    model: CausalModel,
    data: Sequence[Mapping[str, torch.Tensor]],
    seeds: Sequence[int],
    svi: SVI,
    structure: ProgramStructure,
    globals_: Sequence[str],
    unit_latent: Sequence[str],
    dev: torch.device,
    progress_bar: bool,
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    threads: int | None,
) -> list[CausalPosterior | InferenceError]:
    """Every data set's posterior, or the InferenceError of its failed fit (one row each)."""
    # every row draws from its own generators; the caller's global stream is left as it was
    with (
        seeded(seeds[0], dev),
        on_device(dev),
        num_threads(threads),
        released_jit_traces(),
        pyro.validation_enabled(False),
    ):
        R, n = len(data), structure.n
        on_dev = [{k: v.to(dev) for k, v in d.items()} for d in data]
        conditioned = [
            (lambda d=d: poutine.condition(model.fn, data=d)(n, *model_args, **model_kwargs)) for d in on_dev
        ]
        for c, sd in zip(conditioned, seeds, strict=True):
            check_support(c, list(on_dev[0]), dev, sd)
        order = [name for name in prototype(conditioned[0]) if name in set(globals_) | set(unit_latent)]
        g_dims = global_dims(structure, list(globals_))
        latent_dim = g_dims + sum(math.prod(structure.sites[u].shape) for u in unit_latent)
        rank = max(1, min(g_dims + 2, latent_dim - 1))

        def batch_of(starts: int) -> RowBatch:
            return RowBatch(model, rows_of(on_dev, starts), n, structure, order, model_args, model_kwargs)

        t0 = time.perf_counter()
        bar = tqdm(desc=f"SVI x {R}", disable=not progress_bar, leave=False, unit="step")
        try:
            batch, guide, start_scores, resume = _start_phase(
                batch_of, conditioned, seeds, svi, rank, bar, globals_
            )
            run = run_phase(
                batch,
                guide,
                steps=svi.num_steps,
                particles=svi.num_particles,
                lr=svi.lr,
                lr_decay=svi.lr_decay,
                restart=False,
                bar=bar,
                jit=svi.jit_compile,
                resume=resume,
            )
        finally:
            bar.close()
        losses, plateau, failed = run.losses, run.plateau, run.failed
        with torch.no_grad():
            z = guide.sample(svi.num_samples)
            per_row = guide.layout.per_row(z)
        batch_time = time.perf_counter() - t0
        fitted = [r for r in range(R) if failed[r] is None]
        S = svi.num_samples
        problems = [
            FitProblem(
                conditioned[r], tuple(globals_), tuple(unit_latent), (), structure, seeds[r], dev, False
            )
            for r in fitted
        ]

        def programs(rows: list[int], m: int) -> Callable[[], Any]:
            # the data sets' columns, each repeated m times along the correction's draws
            cols = {
                k: torch.cat([on_dev[fitted[r]][k].expand(m, 1, *on_dev[0][k].shape) for r in rows])
                for k in on_dev[0]
            }
            return lambda: poutine.condition(model.fn, data=cols)(n, *model_args, **model_kwargs)

        corrected = svi.correct_rows(
            [guide.gaussian(r) for r in fitted],
            problems,
            [
                {g: per_row[g][:, r].reshape(S, *structure.sites[g].shape).detach() for g in globals_}
                for r in fitted
            ],
            [np.asarray(losses[r], dtype=float) for r in fitted],
            programs,
        )
        out: list[CausalPosterior | InferenceError] = [InferenceError(f"{why}.") for why in failed]
        for r, problem, (draws, is_info) in zip(fitted, problems, corrected, strict=True):
            out[r] = _posterior(
                model, data[r], problem, svi, guide, r, per_row, draws, is_info, losses[r], plateau[r],
                start_scores[r], model_args, model_kwargs,
                {"batched": True, "batch_size": R, "batch_time_s": batch_time},
            )  # fmt: skip
        return out


def _posterior(
    model: CausalModel,
    data: Mapping[str, torch.Tensor],
    problem: FitProblem,
    svi: SVI,
    guide: RowGuide,
    r: int,
    per_row: Mapping[str, torch.Tensor],
    draws: dict[str, torch.Tensor],
    is_info: dict[str, Any],
    losses: Sequence[float],
    plateau: tuple[bool, float, float, str],
    start_scores: Sequence[float],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> CausalPosterior:
    """One data set's posterior from its row: its (corrected) draws of the globals, the guide's
    draws of its per-unit latents, and its diagnostics."""
    structure, S = problem.structure, svi.num_samples
    unit_draws = {
        u: per_row[u][:, r].reshape(S, *structure.sites[u].shape).detach() for u in problem.unit_latent
    }
    is_info["restart_losses"] = list(start_scores)
    diagnostics = svi.diagnostics(type(guide).__name__, np.asarray(losses, dtype=float), plateau, is_info)
    diagnostics.update(extra)
    diagnostics["guide_family"] = guide.describe()
    diagnostics["time_s"] = extra["batch_time_s"] / extra["batch_size"] + is_info.get("is_time_s", 0.0)
    diagnostics["enumerated"] = ()
    for k, v in draws.items():
        if not torch.isfinite(v).all():
            raise InferenceError(
                f"batched SVI produced non-finite draws of {k!r}; check the priors and the data scale."
            )
    post = CausalPosterior(
        model=model,
        samples=draws,
        data={k: v.cpu() for k, v in data.items()},
        diagnostics=diagnostics,
        method="svi",
        seed=problem.seed,
        unit_samples=unit_draws,
        structure=structure,
        model_args=tuple(model_args),
        model_kwargs=dict(model_kwargs),
        device=problem.device,
    )
    return post
