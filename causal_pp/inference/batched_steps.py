"""The optimisation loop of :func:`~causal_pp.inference.fit_many`: rows of data sets in one program.

:class:`RowBatch` is the batched program (the model under a plate over rows, each row one data
set, or one start of one) and its per-row negative ELBO; :func:`run_phase` optimises every row
with its own learning rate, phase and stopping (:func:`advance`), as
:class:`~causal_pp.inference.SVI` does for one data set. See :mod:`.batched` for the whole fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pyro import poutine

from ..log_density import site_log_density
from ..model import CausalModel
from ..runtime import plate, trace
from .batched_guide import Layout, RowGuide, prototype
from .row_adam import RowAdam
from .svi import SVI_MIN_STEPS, Plateau, plateau_test, schedule

if TYPE_CHECKING:  # pragma: no cover
    from ..program import ProgramStructure

__all__ = ["NONFINITE", "Phase", "Resume", "RowBatch", "rows_of", "run_phase"]

NONFINITE = 25  # steps of non-finite loss after which a row has failed


class RowBatch:
    """The batched program: rows of data sets, the guide, and the per-row negative ELBO."""

    def __init__(
        self,
        model: CausalModel,
        data: Mapping[str, torch.Tensor],
        n: int,
        structure: ProgramStructure,
        names: Sequence[str],
        model_args: tuple[Any, ...],
        model_kwargs: Mapping[str, Any],
    ) -> None:
        self.model, self.data, self.n, self.structure = model, data, n, structure
        self.rows = next(iter(data.values())).shape[0]
        self.P = structure.max_plate_nesting
        self.names, self.args, self.kwargs = list(names), model_args, dict(model_kwargs)

    def program(self, values: Mapping[str, torch.Tensor] | None = None) -> Any:
        data = {**self.data, **(values or {})}
        with plate("_rows", self.rows, dim=-(self.P + 1)):
            return poutine.condition(self.model.fn, data=data)(self.n, *self.args, **self.kwargs)

    def select(self, index: torch.Tensor) -> RowBatch:
        """The batch of rows ``index`` of this one."""
        data = {k: v[index.to(v.device)] for k, v in self.data.items()}
        return RowBatch(self.model, data, self.n, self.structure, self.names, self.args, self.kwargs)

    def layout(self, single: Mapping[str, Any]) -> Layout:
        return Layout.of(single, prototype(self.program), self.names, self.rows)

    def log_joint(self, layout: Layout, num: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``f(z)``: the log joint density of draws ``z`` ``(num, rows, dim)`` of the flat
        unconstrained latents, Jacobian included, per draw and row ``(num, rows)``.

        ``num``: the number of draws, as a number where ``f`` is traced (see
        :func:`~causal_pp.runtime.plate`)."""

        def log_joint(z: torch.Tensor) -> torch.Tensor:
            values, log_j = layout.unpack(z)
            with plate("_particles", z.shape[0] if num is None else num, dim=-(self.P + 2)):
                tr = poutine.trace(self.program).get_trace(values)
            log_p = torch.zeros_like(log_j)
            for msg in tr.nodes.values():
                if msg["type"] != "sample" or msg["name"].startswith("_"):
                    continue
                lp = site_log_density(msg)  # the site's scale and mask count, as in Pyro's ELBO
                while lp.dim() < self.P + 2:
                    lp = lp.unsqueeze(0)
                log_p = log_p + lp.sum(tuple(range(-self.P, 0))).expand_as(log_p)
            return log_p + log_j

        return log_joint

    def objective(self, guide: RowGuide, particles: int) -> Callable[..., torch.Tensor]:
        """``f(*guide.params, *noise)``: per-row negative ELBO ``(rows,)``, averaged over the
        ``particles`` draws the noise gives (one tensor per entry of ``guide.noise_sizes``)."""
        draw, log_joint = guide.drawer(), self.log_joint(guide.layout, particles)

        def negative_elbo(*args: torch.Tensor) -> torch.Tensor:
            z, entropy = draw(*args)
            return -log_joint(z).mean(0) - entropy

        return negative_elbo


def rows_of(datasets: Sequence[Mapping[str, torch.Tensor]], repeat: int) -> dict[str, torch.Tensor]:
    """Stack data sets into rows, each repeated ``repeat`` times (its starts) in a row."""
    return {k: torch.stack([d[k] for d in datasets for _ in range(repeat)]) for k in datasets[0]}


BANK = 64  # steps of noise drawn at once per row


def compiled(
    fn: Callable[..., torch.Tensor], guide: RowGuide, particles: int, jit: bool
) -> Callable[..., torch.Tensor]:
    """``fn`` traced once with TorchScript (as Pyro's JitTrace_ELBO does), or ``fn`` itself."""
    if not jit:
        return fn
    rows = guide.loc.shape[0]
    # example noise of the right shapes: the rows' own random streams stay untouched
    noise = [guide.loc.new_zeros((particles, rows, size)) for size in guide.noise_sizes]
    return trace(fn, (*guide.params, *noise))


@dataclass
class Rows:
    """The optimisation state of every row (numpy arrays, one entry per row)."""

    steps: np.ndarray  # steps taken by each row
    annealing: np.ndarray  # -1: constant rate; t >= 0: anneal step t
    done: np.ndarray
    nonfinite: np.ndarray  # non-finite losses in a row so far
    plateau: list[tuple[bool, float, float, str]]
    failed: list[str | None]

    @classmethod
    def start(cls, rows: int) -> Rows:
        z = np.zeros(rows, dtype=int)
        return cls(
            z.copy(),
            z - 1,
            z.astype(bool),
            z.copy(),
            [(False, math.nan, math.nan, "too short")] * rows,
            [None] * rows,
        )


@dataclass(frozen=True)
class Resume:
    """Where a phase takes over from the starts: the chosen rows' optimiser, their losses so far
    ``(steps, rows)``, and per row the failure that already ended it (or None)."""

    opt: RowAdam
    history: np.ndarray
    failed: list[str | None]


@dataclass(frozen=True)
class Phase:
    """What a phase leaves per row: its whole loss history (resumed steps included), plateau test
    and failure (or None); and the optimiser, whose rows can go on (:meth:`RowAdam.select`)."""

    losses: list[list[float]]
    plateau: list[Plateau]
    failed: list[str | None]
    opt: RowAdam


COMPACT = 0.75
"""The run goes on with only its live rows once at most this share of the rows it computes is live
(a stopped row's step is masked, not skipped: every row costs a share of each step)."""


@dataclass(frozen=True)
class Working:
    """The rows a phase computes: all of them, or (after :meth:`compact`) the live ones, with their
    own guide and optimiser; ``index`` maps them to the phase's rows."""

    batch: RowBatch
    guide: RowGuide
    opt: RowAdam
    index: np.ndarray

    def put_back(self, opt: RowAdam, guide: RowGuide) -> None:
        """The working rows' parameters and optimiser state, written into the phase's ``guide``/``opt``."""
        if self.guide is not guide:
            index = torch.as_tensor(self.index)
            guide.put(index, self.guide)
            opt.put(index, self.opt)

    def compact(self, batch: RowBatch, opt: RowAdam, guide: RowGuide, live: np.ndarray) -> Working:
        """The phase's live rows alone (at a block of noise's boundary, so no row's random stream moves)."""
        self.put_back(opt, guide)
        index = torch.as_tensor(live, dtype=torch.long)
        sub = guide.select(index)
        return Working(batch.select(index), sub, opt.select(sub.params, index), live)


def run_phase(
    batch: RowBatch,
    guide: RowGuide,
    *,
    steps: int | None,
    particles: int,
    lr: float,
    lr_decay: float,
    restart: bool,
    bar: Any,
    jit: bool = True,
    resume: Resume | None = None,
) -> Phase:
    """Optimise every row, as :func:`~causal_pp.inference.svi.optimise` does one data set.

    ``restart``: the starts' phase, ``steps`` steps at ``lr`` (rows stop only by failing);
    otherwise the run of ``steps`` (``None``: adaptive) steps, going on from ``resume``.
    """
    if restart:
        anneal, main_max, adaptive, block = 0, int(steps or 0), False, 0
    else:
        anneal, main_max, adaptive, block = schedule(steps)
    opt = resume.opt if resume is not None else RowAdam(guide.params, lr)
    st = Rows.start(batch.rows)
    # one loss per row per step; a row's history is its first steps
    log: list[np.ndarray] = list(resume.history) if resume is not None else []
    st.steps[:] = len(log)
    if resume is not None:
        for r, why in enumerate(resume.failed):
            if why is not None:
                st.failed[r] = why
                stop(st, opt, r)
        if len(log) >= main_max:  # the starts took the whole constant-rate phase
            for r in np.flatnonzero(~st.done):
                st.plateau[r] = plateau_test(np.stack(log)[:, r], block)
                end_constant(st, opt, r, lr=lr, lr_decay=lr_decay, anneal=anneal)
    work = Working(batch, guide, opt, np.arange(batch.rows))
    objective = compiled(batch.objective(guide, particles), guide, particles, jit)
    bank: tuple[torch.Tensor, ...] = ()
    for j in range(max(0, main_max + anneal - len(log))):
        if st.done.all():
            break
        if j % BANK == 0:  # each row's noise, drawn from its own generator in blocks of steps
            if not restart and (~st.done[work.index]).sum() <= COMPACT * len(work.index):
                work = work.compact(batch, opt, guide, np.flatnonzero(~st.done))
                objective = compiled(work.batch.objective(work.guide, particles), work.guide, particles, jit)
            bank = work.guide.noise_bank(particles, BANK, ~st.done[work.index])
        if work.opt is not opt:  # the phase's optimiser keeps every row's rate and phase
            at = torch.as_tensor(work.index)
            work.opt.lr, work.opt.active = opt.lr[at], opt.active[at]
        loss = objective(*work.guide.params, *(b[j % BANK] for b in bank))
        torch.where(work.opt.active, loss, torch.zeros_like(loss)).sum().backward()
        work.opt.step()
        bar.update()
        full = np.full(batch.rows, math.nan)
        full[work.index] = loss.detach().cpu().numpy()
        log.append(full)
        advance(
            st,
            log,
            opt,
            lr=lr,
            lr_decay=lr_decay,
            main_max=main_max,
            anneal=anneal,
            block=block,
            adaptive=adaptive,
            restart=restart,
        )
    work.put_back(opt, guide)
    history = np.stack(log) if log else np.zeros((0, batch.rows))
    losses = [history[: st.steps[r], r].tolist() for r in range(batch.rows)]
    return Phase(losses, st.plateau, st.failed, opt)


def advance(
    st: Rows,
    log: list[np.ndarray],
    opt: RowAdam,
    *,
    lr: float,
    lr_decay: float,
    main_max: int,
    anneal: int,
    block: int,
    adaptive: bool,
    restart: bool,
) -> None:
    """Every row's state after a step (vectorised; Python work only where a row changes phase)."""
    live = ~st.done
    st.steps[live] += 1
    finite = np.isfinite(log[-1])
    st.nonfinite[live] = np.where(finite[live], 0, st.nonfinite[live] + 1)
    for r in np.flatnonzero(live & (st.nonfinite >= NONFINITE)):
        st.failed[r] = (
            f"SVI diverged: the loss has not been finite for {NONFINITE} steps (up to step {st.steps[r]}); "
            f"lower lr (now {lr:g}), or check the priors and the scale of the data"
        )
        stop(st, opt, r)
    if restart:
        return
    annealing = live & ~st.done & (st.annealing >= 0)
    st.annealing[annealing] += 1
    for r in np.flatnonzero(annealing):
        if st.annealing[r] >= anneal:
            stop(st, opt, r)
        else:  # the rate of the next step, as SVI's annealing sets it before each step
            opt.lr[r] = lr * lr_decay ** ((st.annealing[r] + 1) / anneal)
    constant = live & ~st.done & (st.annealing < 0)
    k = st.steps[constant]
    check_now = adaptive & (k >= SVI_MIN_STEPS) & (k % block == 0)
    end_main = k >= main_max
    for r, c, e in zip(np.flatnonzero(constant), check_now, end_main, strict=True):
        if not (c or e):
            continue
        own = np.stack(log[-st.steps[r] :])[:, r] if st.steps[r] else np.zeros(0)
        st.plateau[r] = plateau_test(own, block)
        if e or st.plateau[r][0] or st.plateau[r][3] == "rising":
            end_constant(st, opt, r, lr=lr, lr_decay=lr_decay, anneal=anneal)


def end_constant(st: Rows, opt: RowAdam, r: int, *, lr: float, lr_decay: float, anneal: int) -> None:
    """Row ``r`` leaves the constant rate: it anneals, or stops if there is no annealing."""
    if anneal == 0:
        stop(st, opt, r)
    else:
        st.annealing[r] = 0
        opt.lr[r] = lr * lr_decay ** (1 / anneal)


def stop(st: Rows, opt: RowAdam, r: int) -> None:
    st.done[r] = True
    opt.active[r] = False
