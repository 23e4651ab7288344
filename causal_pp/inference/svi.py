"""SVI: stochastic variational inference with a Gaussian guide, restarts, and an importance correction.

The guide (:mod:`.guides`) is fitted by ClippedAdam until the loss levels off, then the learning
rate is annealed (:func:`optimise`); a few short runs from independent initialisations guard
against confident wrong optima (:func:`best_start`); the guide's draws of the global parameters
are then importance-corrected (:mod:`.importance`).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI as PyroSVI
from pyro.infer import JitTrace_ELBO, JitTraceEnum_ELBO, Trace_ELBO, TraceEnum_ELBO
from tqdm.auto import tqdm

from .. import validation as check
from ..errors import InferenceError, InvalidArgumentError
from ..runtime import ignore_jit_warnings, seeded
from .guides import GUIDES, RESTART_INITS, global_dims, make_guide, start_init
from .importance import DEGENERATE, importance_correct_rows
from .importance_target import Programs
from .methods import FitMethod, FitProblem, FitResult, register_method, reshape_draws

__all__ = [
    "SVI",
    "SVI_ANNEAL_STEPS",
    "SVI_BLOCK",
    "SVI_MAX_STEPS",
    "SVI_MIN_STEPS",
    "SVI_RESTART_STEPS",
    "Start",
    "restart_phase",
    "restart_score",
    "schedule",
]

SVI_BLOCK = 250
"""Adaptive SVI checks for a plateau of the loss every this many steps."""
SVI_MIN_STEPS = 750
"""Adaptive SVI runs at least this many steps at the constant learning rate."""
SVI_MAX_STEPS = 10_000
"""Adaptive SVI runs at most this many steps in all."""
SVI_ANNEAL_STEPS = 500
"""Steps of learning-rate annealing after the loss has levelled off."""


def set_lr(optim: Any, value: float) -> None:
    for opt in optim.optim_objs.values():
        for group in opt.param_groups:
            group["lr"] = value


Plateau = tuple[bool, float, float, str]
"""(levelled off?, loss drop over the last block, its standard error, trend)."""

NONFINITE_STEPS = 25
"""SVI fails (:class:`~causal_pp.errors.InferenceError`) after this many non-finite losses in a row."""


def plateau_test(losses: np.ndarray, block: int) -> Plateau:
    """Has the loss levelled off? Two-sided: the mean loss of the last ``block`` steps must differ
    from that of the ``block`` steps before by at most 3 standard errors + 1 nat.

    The trend says why not: ``"falling"`` (still improving), ``"rising"`` (getting worse: the
    learning rate is too high, or the fit is diverging), ``"too short"`` (fewer than two blocks of
    steps), ``"not finite"``; ``"flat"`` when levelled off.

    Examples
    --------
    >>> plateau_test(np.r_[np.full(20, 5.0), np.full(20, 5.0)], 20)[3]
    'flat'
    >>> plateau_test(np.r_[np.full(20, 5.0), np.full(20, 50.0)], 20)[3]
    'rising'
    """
    if len(losses) < 2 * block:
        return False, float("nan"), float("nan"), "too short"
    if not np.all(np.isfinite(losses[-2 * block :])):
        return False, float("nan"), float("nan"), "not finite"
    prev, last = losses[-2 * block : -block], losses[-block:]
    drop = float(prev.mean() - last.mean())
    se = float(np.sqrt(prev.var(ddof=1) / block + last.var(ddof=1) / block))
    bound = 3.0 * se + 1.0
    trend = "flat" if abs(drop) <= bound else "falling" if drop > 0 else "rising"
    return trend == "flat", drop, se, trend


def _last_line(err: BaseException) -> str:
    """An error in one line: a TorchScript error's message ends with the original error."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    last = (lines[-1] if lines else "").rstrip(".")
    name = type(err).__name__
    return (last if last.startswith(f"{name}:") else f"{name}: {last}")[:300]


def _step(svi: PyroSVI, losses: list[float], lr: float) -> None:
    """One SVI step; a crash or a run of non-finite losses is a failed fit, said as such."""
    try:
        loss = float(svi.step())
    except (RuntimeError, ValueError) as err:
        raise InferenceError(
            f"SVI failed at step {len(losses) + 1}: {_last_line(err)}. "
            f"This usually means the fit diverged: lower lr (now {lr:g}), or check the priors and the "
            "scale of the data."
        ) from err
    losses.append(loss)
    if len(losses) >= NONFINITE_STEPS and not np.isfinite(losses[-NONFINITE_STEPS:]).any():
        raise InferenceError(
            f"SVI diverged: the loss has not been finite for the last {NONFINITE_STEPS} steps (up to step "
            f"{len(losses)}). Lower lr (now {lr:g}), or check the priors and the scale of the data."
        )


Schedule = tuple[int, int, bool, int]
"""(anneal steps, constant-rate steps at most, adaptive?, plateau block) of a run."""


def schedule(num_steps: int | None) -> Schedule:
    """The schedule of a run of ``num_steps`` steps (``None``: adaptive), shared by
    :func:`optimise` and the batched fit.

    Examples
    --------
    >>> schedule(None)
    (500, 9500, True, 250)
    >>> schedule(400)
    (100, 300, False, 75)
    """
    if num_steps is None:
        anneal, main_max, adaptive = SVI_ANNEAL_STEPS, SVI_MAX_STEPS - SVI_ANNEAL_STEPS, True
    else:
        anneal = min(SVI_ANNEAL_STEPS, num_steps // 4)
        main_max, adaptive = num_steps - anneal, False
    block = SVI_BLOCK if adaptive else max(10, min(SVI_BLOCK, max(main_max, 1) // 4))
    return anneal, main_max, adaptive, block


def optimise(
    svi: PyroSVI,
    optim: Any,
    *,
    num_steps: int | None,
    lr: float,
    lr_decay: float,
    progress_bar: bool,
    done: Sequence[float] = (),
) -> tuple[np.ndarray, Plateau]:
    """Run SVI: Adam at ``lr`` until the loss levels off, then anneal the learning rate.

    ``num_steps=None``: adaptive -- blocks of :data:`SVI_BLOCK` steps at constant ``lr``
    (at least :data:`SVI_MIN_STEPS`, at most :data:`SVI_MAX_STEPS` in all) until the loss
    plateaus, then :data:`SVI_ANNEAL_STEPS` steps with the learning rate decaying
    geometrically to ``lr * lr_decay``. An integer: that many steps in all, the last quarter
    (at most :data:`SVI_ANNEAL_STEPS`) annealed. ``done``: the losses of steps already taken
    (the best start's, :func:`best_start`), which count toward the run. Returns the losses and
    the plateau test (levelled off?, loss drop over the last block, its standard error) at the
    end of the constant-rate phase. A rising loss ends the constant-rate phase early (it will
    not level off at this rate); a crash or a run of non-finite losses raises
    :class:`~causal_pp.errors.InferenceError`.
    """
    anneal, main_max, adaptive, block = schedule(num_steps)
    losses: list[float] = list(done)
    total = SVI_MAX_STEPS if adaptive else num_steps
    bar = tqdm(total=total, initial=len(losses), desc="SVI", disable=not progress_bar, leave=False)
    plateau: Plateau = (False, float("nan"), float("nan"), "too short")
    try:
        for i in range(len(losses), main_max):
            _step(svi, losses, lr)
            bar.update()
            if progress_bar and i % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.5g}")
            if adaptive and (i + 1) >= SVI_MIN_STEPS and (i + 1) % block == 0:
                plateau = plateau_test(np.asarray(losses), block)
                if plateau[0] or plateau[3] == "rising":
                    break
        if not adaptive or not plateau[0]:
            plateau = plateau_test(np.asarray(losses), block)
        for t in range(anneal):
            set_lr(optim, lr * lr_decay ** ((t + 1) / anneal))
            _step(svi, losses, lr)
            bar.update()
    finally:
        bar.close()
    return np.asarray(losses, dtype=float), plateau


SVI_RESTART_STEPS = 500
"""Steps every start runs before the best one is chosen (at most the constant-rate phase)."""
RESTART_WINDOW = 50
"""A start's score is its mean loss over its last this many steps."""


def restart_phase(restarts: int, restart_steps: int, num_steps: int | None) -> int:
    """Steps every start runs before the best is chosen: ``restart_steps``, at most the run's
    constant-rate phase; 0 for a single start.

    Examples
    --------
    >>> restart_phase(5, 500, None), restart_phase(5, 500, 100), restart_phase(1, 500, None)
    (500, 75, 0)
    """
    return 0 if restarts <= 1 else min(restart_steps, schedule(num_steps)[1])


def restart_score(losses: Sequence[float], steps: int) -> float:
    """A start's score, for ranking the starts: its mean loss over its last
    :data:`RESTART_WINDOW` steps (at most a third of its ``steps``; one ELBO estimate is noisy).
    Shared by :func:`best_start` and the batched fit."""
    return float(np.mean(losses[-max(1, min(RESTART_WINDOW, steps // 3)) :])) if len(losses) else math.inf


@dataclass(frozen=True)
class Start:
    """The best of a fit's starts: its losses and optimiser state (they continue), every start's score."""

    losses: tuple[float, ...]
    optim_state: dict[str, Any] | None
    scores: tuple[float, ...]


def best_start(
    target: Callable[[], Any],
    new_guide: Callable[[], Any],
    elbo: Any,
    *,
    lr: float,
    restarts: int,
    steps: int = SVI_RESTART_STEPS,
) -> tuple[Any, Start]:
    """Run ``restarts`` starts of ``steps`` steps from independent initialisations; keep the best.

    Per-unit latents make the ELBO multimodal: from a poor start the per-unit latent can
    absorb an outcome (e.g. U explaining Y in the front-door model, the causal path shrunk to
    zero), a confident wrong optimum that a longer run never leaves. Several starts from
    independent initialisations (``new_guide(k)`` for start ``k``; see
    :func:`~causal_pp.inference.guides.sampled_globals`), ranked by their loss, avoid it. The
    ranking needs the starts near their basins' floors: after 150 steps the start that
    descends fastest often leads and ends in a basin hundreds of nats worse (back-door with a
    latent mean, N = 2000); after 500 steps the best start's basin was the best basin there
    (``benchmarks/starts.py``). The best start is not run again: its steps are the first of
    the run (:func:`optimise` continues it, with its optimiser state).

    All starts step one guide object through one ``elbo``: each restart overwrites the guide's
    parameters *in place* with the initial values of a freshly initialised twin. A
    JIT-compiled ELBO is therefore compiled once for all restarts (not once per restart; the
    main run shares it where it has as many particles), and the guide's own tensors stay the
    param store's (an autoguide reads its ``nn.Parameter`` attributes from itself, not from the
    store, when called eagerly). Returns the guide, holding the best run's parameters, and the
    :class:`Start`.
    """
    g = new_guide()
    if restarts <= 1:
        return g, Start((), None, ())
    store = pyro.get_param_store()
    poutine.trace(g).get_trace()
    own = store.get_state()["params"]
    best: tuple[float, dict[str, torch.Tensor], list[float], dict[str, Any]] | None = None
    scores: list[float] = []
    failures: list[Exception] = []
    for k in range(restarts):
        if k:
            reinitialise(own, lambda k=k: new_guide(k))
        optim = pyro.optim.ClippedAdam({"lr": lr, "clip_norm": 10.0})
        svi = PyroSVI(target, g, optim, elbo)
        try:
            losses = [float(svi.step()) for _ in range(steps)]
        except (RuntimeError, ValueError) as err:  # this start diverged; the others may not
            failures.append(err)
            scores.append(float("inf"))
            continue
        score = restart_score(losses, steps)
        scores.append(score)
        if np.isfinite(score) and (best is None or score < best[0]):
            params = {n: t.detach().clone() for n, t in own.items()}
            best = (score, params, losses, copy.deepcopy(optim.get_state()))
    if len(failures) == restarts:
        err = failures[0]
        raise InferenceError(
            f"SVI failed in every one of its {restarts} starts, e.g. {_last_line(err)}. This usually means the fit diverged: lower lr (now {lr:g}), "
            "or check the priors and the scale of the data."
        ) from err
    if best is None:  # every start ended non-finite: the run begins afresh from the first
        reinitialise(own, new_guide)
        return g, Start((), None, tuple(scores))
    with torch.no_grad():
        for n, t in own.items():
            t.copy_(best[1][n])
    return g, Start(tuple(best[2]), best[3], tuple(scores))


def reinitialise(own: dict[str, torch.Tensor], new_guide: Callable[[], Any]) -> None:
    """Overwrite the param-store tensors ``own`` in place with a fresh guide's initial values."""
    store = pyro.get_param_store()
    state = store.get_state()
    store.clear()
    poutine.trace(new_guide()).get_trace()
    fresh = store.get_state()["params"]
    store.clear()
    store.set_state(state)
    with torch.no_grad():
        for n, t in own.items():
            t.copy_(fresh[n])


@register_method
@dataclass(frozen=True)
class SVI(FitMethod):
    """Options of an SVI fit (``fit(model, data, method=SVI(...))`` or ``method="svi", **options``).

    Parameters
    ----------
    num_samples
        Posterior draws of the global parameters taken from the (corrected) guide.
    num_steps
        ``None`` (default): adaptive -- ClippedAdam at ``lr`` until the loss levels off (checked
        every 250 steps, 750 to 9500 steps), then 500 steps with the rate decaying geometrically
        to ``lr * lr_decay``; an integer (>= 4) fixes the total, the last quarter annealed.
    lr, lr_decay
        Learning rate (> 0) and the factor it decays to while annealing (in (0, 1]).
    num_particles
        Vectorised ELBO particles.
    guide
        ``"auto"`` (default): ``"structured"`` on the batched path, ``"lowrank_mvn"`` in Pyro's
        loop. ``"structured"``: a full-covariance Gaussian over the global parameters and, per
        unit, its latents linear-Gaussian given them with a covariance of their own
        (:mod:`~causal_pp.inference.batched_structured`; the posterior's own conditional
        independence; batched only). ``"lowrank_mvn"``: a low-rank-plus-diagonal multivariate
        normal over all global and per-unit latents, rank = number of global dimensions + 2. Both
        represent how per-unit latents co-vary with the global parameters -- mean-field guides
        cannot, and are badly overconfident for these models. ``"mvn"`` (full covariance; small
        models), ``"normal"`` (mean-field), or a callable ``guide(conditioned_model)``.
    importance, importance_particles
        Correct the guide's draws of the global parameters by adaptive importance resampling
        (:mod:`causal_pp.inference.importance`), with this many particles per unit (none where
        a unit's one latent has a Gaussian conditional: its integral is then done in closed form).
        ``benchmarks/importance_correction.py`` measures both against the exact posterior.
        If the weights degenerate the guide's own draws are kept, with a warning.
    tempering
        Experimental, off by default: where the importance weights degenerate, walk draws from
        the guide's Gaussian, widened, to the posterior by tempered sequential Monte Carlo
        (:mod:`causal_pp.inference.tempered`; ``diagnostics["is_method"]`` then says
        ``"tempered"``). On the multi-cause case, where the weights degenerate in every cell, it
        was *not* better than the guide's own draws: no closer to NUTS, narrower, with lower
        coverage over many data sets, at about twice the fit time (``benchmarks/tempering.py``
        measures it). Use it to check a fit, not by default.
    restarts
        Starts from this many initialisations. Each runs the first ``restart_steps`` steps of
        the fit; the one with the lowest loss (its mean over its last 50 steps) continues, with
        its optimiser state, and its steps count toward the run. Guards against confident wrong
        optima where a per-unit latent absorbs an outcome (seen on the front-door model).
        ``1`` disables it.
    restart_particles
        ELBO particles of each step while the starts run (the main run uses ``num_particles``).
        A start only has to reach its basin's floor to be ranked, and a batch of data sets runs
        ``restarts`` times as many rows then, so its steps are most of a batched fit's work.
        With 2, the tests' back-door model at N = 2000 chose the same start as with 8 on every
        data set measured and ended at the same loss (``benchmarks/starts.py``, variant ``particles8``).
    restart_steps, restart_init
        Steps every start runs before the best is chosen (at most the constant-rate phase), and
        how starts after the first are initialised: ``"median"`` (each at the median of its own
        prior draws) or ``"prior"`` (the global parameters at one prior draw;
        :func:`~causal_pp.inference.guides.sampled_globals`). Ranked after 150 steps, the start
        that descends fastest often won and ended in a basin hundreds of nats worse (the tests'
        back-door model at N = 2000); after the default 500 the best start lay in the best
        basin there (``benchmarks/starts.py``).
    jit_compile
        Trace the ELBO once with TorchScript.
    batched
        With a batched guide and no enumerated latents: ``True`` (default) -- the vectorised
        path of :func:`~causal_pp.inference.fit_many` (for ``fit``, a batch of
        one data set: the same schedule, starts, importance correction and diagnostics, with
        ``diagnostics["batched"]`` True); ``False`` -- Pyro's ``SVI`` with its autoguide, one
        data set at a time (``fit_many`` too). With ``guide="lowrank_mvn"`` the two are the same
        algorithm with different random streams; ``"auto"`` is the structured family batched and
        the low-rank one in the loop. ``benchmarks/fit_speed.py`` times both. Other guides and
        enumerated latents always run Pyro's loop.

    Examples
    --------
    >>> SVI(num_steps=300).num_steps
    300
    >>> SVI(lr=0.0)
    Traceback (most recent call last):
    ...
    causal_pp.errors.InvalidArgumentError: lr must be a finite number in (0, inf]; got 0.0.
    """

    num_samples: int = 500
    num_steps: int | None = None
    lr: float = 0.03
    lr_decay: float = 0.1
    num_particles: int = 8
    guide: str | Callable[[Callable[..., Any]], Any] = "auto"
    importance: bool = True
    importance_particles: int = 16
    tempering: bool = False
    restarts: int = 5
    restart_particles: int = 2
    restart_steps: int = SVI_RESTART_STEPS
    restart_init: str = "median"
    jit_compile: bool = True
    batched: bool = True

    name: ClassVar[str] = "svi"

    def __post_init__(self) -> None:
        check.positive_int("num_samples", self.num_samples)
        if self.num_steps is not None:
            check.positive_int("num_steps", self.num_steps, minimum=4)
        check.finite_float("lr", self.lr, low=0.0, low_open=True)
        check.finite_float("lr_decay", self.lr_decay, low=0.0, high=1.0, low_open=True)
        check.positive_int("num_particles", self.num_particles)
        if not callable(self.guide):
            check.choice("guide", self.guide, GUIDES)
        check.boolean("importance", self.importance)
        check.positive_int("importance_particles", self.importance_particles)
        check.boolean("tempering", self.tempering)
        check.positive_int("restarts", self.restarts)
        check.positive_int("restart_particles", self.restart_particles)
        check.positive_int("restart_steps", self.restart_steps, minimum=4)
        check.choice("restart_init", self.restart_init, RESTART_INITS)
        check.boolean("jit_compile", self.jit_compile)
        check.boolean("batched", self.batched)
        if self.guide == "structured" and not self.batched:
            raise InvalidArgumentError(
                "guide='structured' has only a batched form; use SVI(batched=True) (the default) "
                "or another guide."
            )

    def run(self, problem: FitProblem) -> FitResult:
        """Fit the guide, draw from it, correct the draws; diagnostics of every step."""
        with (
            pyro.get_param_store().scope(),
            seeded(problem.seed, problem.device),
            pyro.validation_enabled(False),
            warnings.catch_warnings(),
        ):
            ignore_jit_warnings()
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            g, scores, losses, plateau = self._fit_guide(problem)
            w = max(20, len(losses) // 10)
            if not np.isfinite(losses[-w:]).all():
                raise InferenceError(
                    f"SVI ended with a non-finite loss (steps {len(losses) - w + 1}..{len(losses)}): the fit "
                    f"diverged. Lower lr (now {self.lr:g}), or check the priors and the scale of the data."
                )
            draws, unit_draws = self._guide_draws(g, problem)
            draws, is_info = self.correct(g, problem, draws, losses)
        is_info["restart_losses"] = scores
        return FitResult(draws, unit_draws, self.diagnostics(type(g).__name__, losses, plateau, is_info))

    def _fit_guide(self, problem: FitProblem) -> tuple[Any, list[float], np.ndarray, Plateau]:
        """The starts, then the best one's run: the guide, start scores, loss trace, plateau test."""
        target, s, enum = problem.target, problem.structure, problem.enumerated
        guide_model = poutine.block(target, hide=list(enum)) if enum else target
        latent_dim = global_dims(s, problem.globals_) + sum(
            math.prod(s.sites[u].shape) for u in problem.unit_latent if u not in enum
        )
        rank = global_dims(s, problem.globals_) + 2
        elbo = self._elbo(self.num_particles, problem.max_plate_nesting, bool(enum))
        g, start = best_start(
            target,
            lambda start=0: make_guide(
                self.guide,
                guide_model,
                rank,
                latent_dim,
                start_init(start, problem.globals_, self.restart_init),
            ),
            elbo
            if self.restart_particles == self.num_particles
            else self._elbo(self.restart_particles, problem.max_plate_nesting, bool(enum)),
            lr=self.lr,
            restarts=self.restarts,
            steps=restart_phase(self.restarts, self.restart_steps, self.num_steps),
        )
        optim = pyro.optim.ClippedAdam({"lr": self.lr, "clip_norm": 10.0})
        if start.optim_state is not None:  # the best start continues where it stopped
            optim.set_state(start.optim_state)
        svi = PyroSVI(target, g, optim, elbo)
        losses, plateau = optimise(
            svi,
            optim,
            num_steps=self.num_steps,
            lr=self.lr,
            lr_decay=self.lr_decay,
            progress_bar=problem.progress_bar,
            done=start.losses,
        )
        return g, list(start.scores), losses, plateau

    def _elbo(self, particles: int, max_plate_nesting: int, enumerated: bool) -> Any:
        """Pyro's ELBO for ``particles`` vectorised particles (enumerating, JIT-compiled as asked)."""
        kw = {
            "num_particles": particles,
            "vectorize_particles": particles > 1,
            "max_plate_nesting": max_plate_nesting,
        }
        if enumerated:
            return (
                JitTraceEnum_ELBO(ignore_jit_warnings=True, **kw)
                if self.jit_compile
                else TraceEnum_ELBO(**kw)
            )
        return JitTrace_ELBO(ignore_jit_warnings=True, **kw) if self.jit_compile else Trace_ELBO(**kw)

    def _guide_draws(
        self, g: Any, problem: FitProblem
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``num_samples`` draws of the globals and per-unit latents from the fitted guide."""
        S, s = self.num_samples, problem.structure
        with torch.no_grad(), pyro.plate("_draws", S, dim=-(problem.max_plate_nesting + 1)):
            gtr = poutine.trace(g).get_trace()
        draws, unit_draws = {}, {}
        for name in [*problem.globals_, *problem.unit_latent]:
            if name not in gtr.nodes:
                continue
            value = reshape_draws(gtr.nodes[name]["value"], s.sites[name].shape, S, name)
            (draws if name in problem.globals_ else unit_draws)[name] = value
        return draws, unit_draws

    def correct(
        self, g: Any, problem: FitProblem, draws: dict[str, torch.Tensor], losses: np.ndarray
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The importance correction of the draws, if it applies and its weights hold.

        ``g`` is the fitted guide, or a :class:`~causal_pp.inference.importance_target.GaussianView`.
        """
        return self.correct_rows([g], [problem], [draws], [losses], lambda rows, m: problem.target)[0]

    def correct_rows(
        self,
        guides: Sequence[Any],
        problems: Sequence[FitProblem],
        draws: Sequence[dict[str, torch.Tensor]],
        losses: Sequence[np.ndarray],
        programs: Programs,
    ) -> list[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
        """:meth:`correct` of several data sets of one model at once (a batched fit's rows;
        ``programs`` as for :func:`~causal_pp.inference.importance.importance_correct_rows`)."""
        infos: list[dict[str, Any]] = [{"is_corrected": False} for _ in guides]
        out = [(d, info) for d, info in zip(draws, infos, strict=True)]
        todo = []
        for i, (problem, loss) in enumerate(zip(problems, losses, strict=True)):
            if not self.importance:
                infos[i]["is_skipped"] = "importance=False"
            elif problem.enumerated:
                infos[i]["is_skipped"] = "enumerated discrete latents"
            elif np.isfinite(loss[-1]):
                todo.append(i)
        if not todo:
            return out
        first = problems[todo[0]]
        t_is = time.perf_counter()
        results = importance_correct_rows(
            lambda rows, m: programs([todo[r] for r in rows], m),
            [guides[i] for i in todo],
            list(first.globals_),
            list(first.unit_latent),
            first.structure,
            num_samples=self.num_samples,
            num_proposals=max(2 * self.num_samples, 1000),
            num_particles=self.importance_particles,
            inflation=1.2,
            seeds=[problems[i].seed for i in todo],
            temper=self.tempering,
        )
        each = (time.perf_counter() - t_is) / len(todo)  # the rows' shares of one run
        for i, (corrected, is_info) in zip(todo, results, strict=True):
            is_info["is_time_s"] = each
            out[i] = (draws[i] if corrected is None else corrected, is_info)
        return out

    def diagnostics(
        self, guide_class: str, losses: np.ndarray, plateau: Plateau, is_info: dict[str, Any]
    ) -> dict[str, Any]:
        """The diagnostics of a fit: loss trace, plateau test, importance correction."""
        converged, drop, se, trend = plateau
        w = max(20, len(losses) // 10)
        guide = self.guide
        return {
            "method": "svi",
            "guide": guide if isinstance(guide, str) else getattr(guide, "__name__", repr(guide)),
            "guide_class": guide_class,
            "num_steps": len(losses),
            "num_particles": self.num_particles,
            "restart_particles": self.restart_particles,
            "num_samples": self.num_samples,
            "lr": self.lr,
            "jit_compile": self.jit_compile,
            "loss": losses,
            "final_loss": float(np.mean(losses[-w:])),
            "final_elbo": -float(np.mean(losses[-w:])),
            "converged": converged,
            "loss_drop_last_window": drop,
            "loss_drop_se": se,
            "loss_trend": trend,
            **is_info,
        }

    def problems(self, d: Mapping[str, Any]) -> tuple[list[str], str]:
        problems = []
        trend = d.get("loss_trend", "falling")
        if not np.isfinite(d["final_loss"]):
            problems.append("the loss is not finite")
        elif trend == "too short":
            problems.append(
                f"the run was too short ({d['num_steps']} steps) to test whether the loss levelled off"
            )
        elif trend == "rising":
            problems.append(
                f"the loss rose over the last window (by {-d['loss_drop_last_window']:.3g}, standard error "
                f"{d['loss_drop_se']:.3g}): the learning rate may be too high (lower lr)"
            )
        elif not d["converged"]:
            problems.append(
                f"the ELBO was still improving at the end (loss fell by {d['loss_drop_last_window']:.3g} "
                f"over the last window, standard error {d['loss_drop_se']:.3g})"
            )
        if str(d.get("is_skipped", "")).startswith(DEGENERATE):
            problems.append(
                f"the importance correction of the guide failed ({d['is_skipped']}), so the draws are "
                "the guide's own, which tend to be overconfident"
            )
        return problems, "raise num_steps or lr, or use method='nuts'"
