"""The linear programs: one pair (lower, upper) per draw of the observed distribution.

For a draw -- P(roots) and P(group | roots), plus any experimental probabilities -- the
feasible set is every response-type distribution q >= 0 with

    sum_{t : type t gives cell g when the roots are r} q(t) = P(g | r)   for every r with P(r) > 0,
    sum_r P(r) sum_t q(t) coef_k[r, t] = e_k                             (experimental rows),

and the bounds are the minimum and maximum of the target over it: a linear program, or a
linear-fractional one that the Charnes-Cooper substitution y = q / (den . q), s = 1 / (den . q)
turns into a linear program (Charnes & Cooper 1962). A draw with an empty feasible set is
outside the model (its phase-one program -- minimise the total violation -- has a positive
optimum) and is rejected.

Draws are solved together: the programs of a batch of draws are stacked block-diagonally into
one HiGHS call (``scipy.optimize.linprog(method="highs")``). The blocks share no variable and
no constraint, so the stacked optimum is every block's own optimum; one call per batch saves
the per-call overhead that otherwise dominates these small programs. A batch the solver does
not finish is re-solved draw by draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from ..errors import InferenceError
from .canonical import CanonicalModel
from .functionals import Target

__all__ = ["DrawBounds", "Programs", "bound_draws", "optimize", "violation"]

FEASIBILITY_TOL = 1e-8
"""A draw whose constraints cannot be met to within this total violation is outside the model.

Tighter than HiGHS's primal feasibility tolerance (1e-7), so every accepted draw is feasible
for the solver too."""

BATCH_NONZEROS = 200_000
"""Draws are stacked into one program until it holds about this many nonzeros."""


@dataclass(frozen=True, eq=False)
class Programs:
    """The equality constraints of B draws, ``A_b q = b_b``, sharing the model's sparsity.

    Attributes
    ----------
    matrix
        The model's 0/1 constraint matrix (``m0 x n``, :attr:`CanonicalModel.constraint_matrix`).
    cond
        Right-hand sides P(g | r), shape ``(B, m0)`` (0 where P(r) = 0).
    active
        1 where the row binds (P(r) > 0), else 0 (the row is dropped), shape ``(B, m0)``.
    extra, extra_rhs
        Dense extra rows (experimental constraints) ``(B, k, n)`` and their values ``(B, k)``.

    Examples
    --------
    >>> a = sp.coo_matrix(np.ones((1, 2)))
    >>> p = Programs(a, np.ones((3, 1)), np.ones((3, 1)), np.zeros((3, 0, 2)), np.zeros((3, 0)))
    >>> p.size, p.take(slice(0, 2)).size
    (3, 2)
    """

    matrix: sp.coo_matrix
    cond: np.ndarray
    active: np.ndarray
    extra: np.ndarray
    extra_rhs: np.ndarray

    @property
    def size(self) -> int:
        return self.cond.shape[0]

    @property
    def rhs(self) -> np.ndarray:
        return np.concatenate([self.cond, self.extra_rhs], axis=1)

    def take(self, idx: np.ndarray | slice) -> Programs:
        return Programs(self.matrix, self.cond[idx], self.active[idx], self.extra[idx], self.extra_rhs[idx])

    def parts(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Block-local (rows, cols, values (B, K)) of the constraint rows."""
        a = self.matrix
        out = [(a.row, a.col, self.active[:, a.row] * a.data[None, :])]
        k, n = self.extra.shape[1], self.matrix.shape[1]
        if k:
            rows = a.shape[0] + np.repeat(np.arange(k), n)
            cols = np.tile(np.arange(n), k)
            out.append((rows, cols, self.extra.reshape(self.size, k * n)))
        return out


def _assemble(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], blocks: int, m: int, n: int
) -> sp.csr_matrix:
    """Stack ``blocks`` copies of an ``m x n`` block pattern with per-block values, block-diagonally."""
    rows, cols, vals = [], [], []
    for r, c, v in parts:
        v = np.broadcast_to(v, (blocks, len(r)))
        keep = v != 0
        rows.append((r[None, :] + m * np.arange(blocks)[:, None])[keep])
        cols.append((c[None, :] + n * np.arange(blocks)[:, None])[keep])
        vals.append(v[keep])
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(blocks * m, blocks * n)
    )


def _linprog(
    c: np.ndarray, a: sp.csr_matrix, b: np.ndarray, *, presolve: bool = False
) -> tuple[int, np.ndarray | None]:
    # Presolve only costs time on these small, degenerate programs (2-3x on the IV and six-variable
    # benchmarks); the draw-by-draw retry turns it back on.
    res = linprog(c, A_eq=a, b_eq=b, bounds=(0, None), method="highs", options={"presolve": presolve})
    return res.status, (res.x if res.status == 0 else None)


Builder = Callable[[np.ndarray], tuple[np.ndarray, sp.csr_matrix, np.ndarray]]
"""Makes (objective, constraint matrix, right-hand side) of the stacked programs of some blocks."""


def _solve_blocks(build: Builder, blocks: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``blocks`` stacked programs; returns per-block status and solutions ``(B, n_cols)``.

    ``build(idx)`` returns (c, A, b) for the blocks ``idx``. A stacked call that fails is
    repeated block by block (with HiGHS's presolve), so one awkward draw cannot spoil its batch.
    """
    status = np.zeros(blocks, dtype=int)
    x = np.full((blocks, n_cols), np.nan)
    idx = np.arange(blocks)
    st, sol = _linprog(*build(idx))
    if st == 0:
        return status, sol.reshape(blocks, n_cols)
    for i in idx:
        st, sol = _linprog(*build(np.array([i])), presolve=True)
        status[i] = st
        if st == 0:
            x[i] = sol
    return status, x


def _chunks(total: int, nonzeros_per_block: int) -> list[slice]:
    step = max(1, min(total, BATCH_NONZEROS // max(nonzeros_per_block, 1)))
    return [slice(i, min(i + step, total)) for i in range(0, total, step)]


def _block_nonzeros(p: Programs) -> int:
    return p.matrix.nnz + p.extra.shape[1] * p.matrix.shape[1] + p.matrix.shape[1] + p.rhs.shape[1]


def violation(p: Programs) -> np.ndarray:
    """Phase one: the least total violation of each draw's constraints (0 when feasible).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> a = sp.coo_matrix(np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> p = Programs(a, np.array([[0.5, 0.5], [0.9, 0.3]]), np.ones((2, 2)), np.zeros((2, 1, 2)), np.array([[0.25], [0.0]]))
    >>> p = Programs(a, p.cond, p.active, np.array([[[1.0, 0.0]], [[0.0, 0.0]]]), p.extra_rhs)
    >>> violation(p).round(6).tolist()  # q_1 = 0.5 cannot equal 0.25; draw 2 is feasible
    [0.25, 0.0]
    """
    n = p.matrix.shape[1]
    m = p.rhs.shape[1]
    out = np.empty(p.size)
    for chunk in _chunks(p.size, _block_nonzeros(p) + 2 * m):
        sub = p.take(chunk)

        def build(idx: np.ndarray, sub: Programs = sub) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
            s = sub.take(idx)
            eye = np.arange(m)
            parts = [
                *s.parts(),
                (eye, n + eye, np.ones((1, m))),
                (eye, n + m + eye, -np.ones((1, m))),
            ]
            c = np.tile(np.concatenate([np.zeros(n), np.ones(2 * m)]), len(idx))
            return c, _assemble(parts, len(idx), m, n + 2 * m), s.rhs.ravel()

        status, x = _solve_blocks(build, sub.size, n + 2 * m)
        if np.any(status != 0):
            raise InferenceError(
                f"HiGHS could not solve a phase-one program (status {sorted(set(status.tolist()))}); "
                "this should not happen for a feasible-by-construction program -- please report it."
            )
        out[chunk] = x[:, n:].sum(1)
    return out


def optimize(
    p: Programs, num: np.ndarray, den: np.ndarray | None, *, maximize: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimise ``num . q`` (over ``den . q`` when given) for each draw.

    Parameters
    ----------
    p
        The draws' constraints.
    num, den
        Objective rows ``(B, n)``; ``den`` None for a linear objective.
    maximize
        Maximise instead of minimise.

    Returns
    -------
    values, q, status
        Optimal values ``(B,)``, optimal response-type distributions ``(B, n)``, and HiGHS's
        status per draw (0 solved, 2 infeasible; values and q are NaN where it is not 0).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> a = sp.coo_matrix(np.ones((1, 3)))  # q is any distribution over three types
    >>> p = Programs(a, np.ones((1, 1)), np.ones((1, 1)), np.zeros((1, 0, 3)), np.zeros((1, 0)))
    >>> optimize(p, np.array([[0.0, 1.0, 2.0]]), None, maximize=True)[0].tolist()
    [2.0]
    """
    n = p.matrix.shape[1]
    m = p.rhs.shape[1]
    sign = -1.0 if maximize else 1.0
    values = np.full(p.size, np.nan)
    q = np.full((p.size, n), np.nan)
    status = np.zeros(p.size, dtype=int)
    for chunk in _chunks(p.size, _block_nonzeros(p) + (n + m + 1 if den is not None else 0)):
        sub = p.take(chunk)
        c_num = num[chunk]
        if den is None:

            def build(idx: np.ndarray, sub: Programs = sub, c_num: np.ndarray = c_num):
                s = sub.take(idx)
                return (sign * c_num[idx]).ravel(), _assemble(s.parts(), len(idx), m, n), s.rhs.ravel()

            st, x = _solve_blocks(build, sub.size, n)
            q_chunk = x
        else:
            c_den = den[chunk]

            def build(
                idx: np.ndarray, sub: Programs = sub, c_num: np.ndarray = c_num, c_den: np.ndarray = c_den
            ):
                # Charnes-Cooper: variables (y, s); A y - b s = 0, den . y = 1; maximise num . y.
                s = sub.take(idx)
                rows = np.arange(m)
                parts = [
                    *s.parts(),
                    (rows, np.full(m, n), -s.rhs),
                    (np.full(n, m), np.arange(n), c_den[idx]),
                ]
                rhs = np.zeros((len(idx), m + 1))
                rhs[:, m] = 1.0
                c = np.concatenate([sign * c_num[idx], np.zeros((len(idx), 1))], axis=1).ravel()
                return c, _assemble(parts, len(idx), m + 1, n + 1), rhs.ravel()

            st, x = _solve_blocks(build, sub.size, n + 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                q_chunk = x[:, :n] / x[:, n : n + 1]
        status[chunk] = st
        q[chunk] = q_chunk
        ok = st == 0
        vals = np.einsum("bn,bn->b", c_num, np.where(ok[:, None], x[:, :n], 0.0))
        values[chunk] = np.where(ok, vals, np.nan)
    return values, q, status


@dataclass(frozen=True, eq=False)
class DrawBounds:
    """Per-draw results of :func:`bound_draws`.

    ``feasible`` marks the draws inside the model; ``lower``/``upper`` are NaN elsewhere.
    ``q_lower``/``q_upper`` (when asked for) hold, per term of the target, the response-type
    distributions attaining each end.

    Examples
    --------
    >>> d = DrawBounds(np.array([True]), np.array([0.1]), np.array([0.6]), np.zeros(1))
    >>> float(d.upper[0] - d.lower[0])
    0.5
    """

    feasible: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    violation: np.ndarray
    q_lower: list[np.ndarray] | None = None
    q_upper: list[np.ndarray] | None = None


def bound_draws(
    model: CanonicalModel,
    target: Target,
    joint: np.ndarray,
    equalities: Sequence[np.ndarray] = (),
    equality_values: np.ndarray | None = None,
    *,
    keep: int | None = None,
    solutions: bool = False,
    check_feasible: bool = True,
) -> DrawBounds:
    """Bounds of ``target`` for each draw of the observed joint distribution.

    Parameters
    ----------
    model
        The canonical model.
    target
        The quantity to bound.
    joint
        Draws of the joint distribution over ``model.roots + model.group``, shape
        ``(B, *root_shape, *group_shape)`` (or flattened to ``(B, cells)``).
    equalities, equality_values
        Extra constraints (experimental): coefficient arrays ``(n_r, n)`` and their values per
        draw ``(B, k)``.
    keep
        Solve the bounds only for the first ``keep`` feasible draws (the other feasible draws
        get NaN bounds); None: all of them.
    solutions
        Also return the optimal response-type distributions.
    check_feasible
        Run phase one (False for draws compatible by construction, e.g. implied by a q).

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.canonical import CanonicalModel
    >>> from causal_pp.partial.functionals import Arm, Contrast
    >>> m = CanonicalModel(CausalGraph.parse("X -> Y; X <-> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
    >>> t = Contrast("Y", (Arm(1.0, (("X", 1.0),)),)).target(m, None)
    >>> b = bound_draws(m, t, np.array([[[0.1, 0.3], [0.2, 0.4]]]))  # P(X=x, Y=y)
    >>> round(float(b.lower[0]), 6), round(float(b.upper[0]), 6)  # P(x, y) and P(x, y) + 1 - P(x)
    (0.4, 0.8)
    """
    joint = np.asarray(joint, dtype=float)
    size = joint.shape[0]
    p_r, cond = model.split(joint.reshape(size, *model.root_shape, *model.group_shape))
    n_g = model.num_group_cells
    active = np.repeat((p_r > 0).astype(float), n_g, axis=1)
    k = len(equalities)
    extra = np.stack([p_r @ c for c in equalities], axis=1) if k else np.zeros((size, 0, model.num_types))
    extra_rhs = np.asarray(equality_values, dtype=float).reshape(size, k) if k else np.zeros((size, 0))
    programs = Programs(model.constraint_matrix, cond.reshape(size, -1), active, extra, extra_rhs)
    if check_feasible and (model.num_root_configs > 1 or k):
        miss = violation(programs)
        feasible = miss <= FEASIBILITY_TOL
    else:
        # No roots and no experiment: constant response types reproduce any P(group).
        miss, feasible = np.zeros(size), np.ones(size, dtype=bool)
    chosen = np.flatnonzero(feasible)
    if keep is not None:
        chosen = chosen[:keep]
    lower, upper = np.full(size, np.nan), np.full(size, np.nan)
    q_lo: list[np.ndarray] = []
    q_hi: list[np.ndarray] = []
    if chosen.size:
        sub = programs.take(chosen)
        lo_sum, hi_sum = np.zeros(chosen.size), np.zeros(chosen.size)
        for weight, functional in target.terms:
            num, den = functional.coefficients(p_r[chosen])
            lo, qa, st_lo = optimize(sub, num, den, maximize=False)
            hi, qb, st_hi = optimize(sub, num, den, maximize=True)
            bad = (st_lo != 0) | (st_hi != 0)
            odd = set(st_lo[bad].tolist()) | set(st_hi[bad].tolist())
            if odd - {2}:
                raise InferenceError(f"HiGHS failed on a bounds program (status {sorted(odd)}).")
            # An infeasible main program after phase one: the draw sits on the model's boundary
            # within the solver's tolerance, or a conditioning event is impossible -- reject it.
            feasible[chosen[bad]] = False
            lo_sum += weight * (lo if weight > 0 else hi)
            hi_sum += weight * (hi if weight > 0 else lo)
            q_lo.append(_scatter(qa if weight > 0 else qb, chosen, size))
            q_hi.append(_scatter(qb if weight > 0 else qa, chosen, size))
        ok = feasible[chosen]
        lower[chosen[ok]] = lo_sum[ok]
        upper[chosen[ok]] = hi_sum[ok]
    return DrawBounds(feasible, lower, upper, miss, q_lo if solutions else None, q_hi if solutions else None)


def _scatter(rows: np.ndarray, idx: np.ndarray, size: int) -> np.ndarray:
    out = np.full((size, rows.shape[1]), np.nan)
    out[idx] = rows
    return out
