"""Structural causal models simulated with numpy: :class:`Equation` and :class:`SCM`.

The ground truth of every built-in case: equations in topological order, each node drawing its
noise from its own random stream keyed by (seed, node), so observational and interventional
draws with one seed describe the same units.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CaseError, UnknownVariableError

__all__ = ["SCM", "Equation", "constant"]


@dataclass(frozen=True)
class Equation:
    """One structural equation ``name := f(parents, noise)`` of an :class:`SCM`.

    Parameters
    ----------
    name
        The node it defines.
    parents
        The nodes ``loc`` reads, in the order of its positional arguments.
    loc
        ``loc(*parent_values) -> array | float``: the location (``"normal"``, ``"laplace"``,
        ``"student_t"``), the success probability (``"bernoulli"``, ``"binomial"``) or the
        rate (``"poisson"``) given the parents.
    kind
        ``"normal"``: ``loc + scale * N(0, 1)``; ``"laplace"``: ``loc + scale * Laplace(0, 1)``;
        ``"student_t"``: ``loc + scale * t(df)``; ``"bernoulli"``: ``1{U(0,1) < loc}``;
        ``"binomial"``: ``Binomial(scale, loc)``; ``"poisson"``: ``Poisson(loc)``, drawn by
        inverting its CDF at one uniform per unit, so units keep their quantile under an
        intervention (a monotone coupling of the counts; the walk costs about ``loc`` steps).
    scale
        Noise scale (``"normal"``: the SD; ``"laplace"``, ``"student_t"``: the scale) or the
        number of trials (``"binomial"``); unused for Bernoulli and Poisson.
    df
        Degrees of freedom of ``"student_t"`` noise (required there, unused otherwise). The
        conditional mean (:meth:`SCM.sample` with ``means=True``) needs ``df > 1``; it is NaN
        otherwise.

    Examples
    --------
    >>> scm = SCM([Equation("X", (), constant(3.0), kind="poisson"),
    ...            Equation("Y", ("X",), lambda x: 2 * x, kind="student_t", df=4.0)])
    >>> v, m = scm.sample(5, seed=0, means=True)
    >>> bool((v["X"] == np.round(v["X"])).all()), bool(np.allclose(m["Y"], 2 * v["X"]))
    (True, True)
    """

    name: str
    parents: tuple[str, ...]
    loc: Callable[..., Any]
    kind: str = "normal"
    scale: float = 1.0
    df: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _NOISE:
            raise CaseError(
                f"equation {self.name!r}: unknown kind {self.kind!r}; use one of {tuple(_NOISE)}."
            )
        if self.kind == "student_t" and (self.df is None or not self.df > 0):
            raise CaseError(
                f"equation {self.name!r}: student_t noise needs positive degrees of freedom df; got {self.df!r}."
            )
        if self.kind in ("normal", "laplace", "student_t") and not self.scale >= 0:
            raise CaseError(f"equation {self.name!r}: the noise scale must be >= 0; got {self.scale!r}.")
        object.__setattr__(self, "parents", tuple(self.parents))


def _poisson_quantile(u: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """The Poisson(rate) quantile at ``u``: the smallest k with CDF(k) >= u, unit by unit.

    The CDF is accumulated from k = 0 with the pmf recursion in log space (``exp(-rate)``
    underflows above rate ~745), only over the units not yet placed.
    """
    if np.any(~np.isfinite(rate)) or np.any(rate < 0):
        raise CaseError("poisson rates must be finite and non-negative.")
    out = np.zeros(u.shape)
    active = np.flatnonzero(u > np.exp(-rate))  # the others are 0
    log_p = -rate[active]
    cdf = np.exp(log_p)
    lam, uu = rate[active], u[active]
    k = 0
    while active.size:
        k += 1
        log_p = log_p + np.log(lam) - math.log(k)
        cdf = cdf + np.exp(log_p)
        # the cdf can stall a hair below 1 in floating point: stop there too
        done = (cdf >= uu) | ((np.exp(log_p) < 1e-300) & (k > lam))
        out[active[done]] = k
        keep = ~done
        active, log_p, cdf, lam, uu = active[keep], log_p[keep], cdf[keep], lam[keep], uu[keep]
    return out


Draw = Callable[[np.random.Generator, np.ndarray, Equation, int], tuple[np.ndarray, np.ndarray]]

#: How each kind of equation draws its node, ``(rng, loc, equation, n) -> (values, E[node | parents])``.
_NOISE: dict[str, Draw] = {
    "normal": lambda rng, loc, eq, n: (loc + eq.scale * rng.standard_normal(n), loc),
    "laplace": lambda rng, loc, eq, n: (loc + eq.scale * rng.laplace(0.0, 1.0, n), loc),
    "student_t": lambda rng, loc, eq, n: (
        loc + eq.scale * rng.standard_t(eq.df, n),
        loc if eq.df > 1 else np.full(n, np.nan),  # t(df <= 1) has no mean
    ),
    "poisson": lambda rng, loc, eq, n: (_poisson_quantile(rng.random(n), loc), loc),
    "bernoulli": lambda rng, loc, eq, n: ((rng.random(n) < loc).astype(float), loc),
    "binomial": lambda rng, loc, eq, n: (
        rng.binomial(int(eq.scale), np.clip(loc, 0.0, 1.0)).astype(float),
        eq.scale * loc,
    ),
}


def constant(value: float) -> Callable[[], float]:
    """The ``loc`` of a root node with a fixed mean: ``Equation("U", (), constant(2.0))``."""
    return lambda: value


def _node_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _entropy(seed: int | Sequence[int]) -> list[int]:
    out = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if any(s < 0 for s in out):
        raise CaseError(f"seeds must be non-negative integers; got {seed!r}.")
    return out


class SCM:
    """A structural causal model: equations in topological order, simulated with numpy.

    Every node draws its noise from its own random stream, keyed by (seed, node name). So
    ``sample(n, seed=s)`` and ``sample(n, do=..., seed=s)`` describe the *same* units: nodes
    that are not descendants of an intervention are identical in both, and the others see the
    same exogenous noise (common random numbers; a coupled counterfactual pair).

    Examples
    --------
    >>> scm = SCM([Equation("U", (), lambda: 0.0), Equation("X", ("U",), lambda u: 2 * u)])
    >>> v = scm.sample(4, seed=1)
    >>> bool(np.allclose(scm.sample(4, do={"X": 3.0}, seed=1)["U"], v["U"]))
    True
    """

    def __init__(self, equations: Iterable[Equation]) -> None:
        eqs = tuple(equations)
        seen: set[str] = set()
        for eq in eqs:
            missing = [p for p in eq.parents if p not in seen]
            if missing:
                raise CaseError(
                    f"equation {eq.name!r} reads {missing} before they are defined; list the "
                    "equations in a topological order."
                )
            if eq.name in seen:
                raise CaseError(f"node {eq.name!r} has two equations.")
            seen.add(eq.name)
        self.equations = eqs

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node names in the order they are simulated."""
        return tuple(eq.name for eq in self.equations)

    def parents(self) -> dict[str, tuple[str, ...]]:
        """``{node: parents}`` as the equations read them."""
        return {eq.name: eq.parents for eq in self.equations}

    def sample(
        self,
        n: int,
        do: Mapping[str, float] | None = None,
        seed: int | Sequence[int] = 0,
        *,
        means: bool = False,
    ) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Simulate ``n`` units of every node (latent ones included).

        With ``means=True`` also return each node's conditional mean given its parents
        (``E[node | parents]``), the Rao-Blackwellised quantity used for Monte Carlo truths.
        """
        do = dict(do or {})
        unknown = sorted(set(do) - set(self.nodes))
        if unknown:
            raise UnknownVariableError(
                f"do names {unknown}, which are not nodes of this SCM ({list(self.nodes)})."
            )
        entropy = _entropy(seed)
        values: dict[str, np.ndarray] = {}
        cond: dict[str, np.ndarray] = {}
        for eq in self.equations:
            if eq.name in do:
                v = np.full(n, float(do[eq.name]))
                values[eq.name] = cond[eq.name] = v
                continue
            rng = np.random.default_rng(np.random.SeedSequence([*entropy, _node_key(eq.name)]))
            loc = np.broadcast_to(np.asarray(eq.loc(*(values[p] for p in eq.parents)), float), (n,))
            v, m = _NOISE[eq.kind](rng, loc, eq, n)
            values[eq.name] = v
            cond[eq.name] = np.array(m, dtype=float)
        return (values, cond) if means else values

    def __call__(self, n: int, do: Mapping[str, float] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        return self.sample(n, do, seed)  # type: ignore[return-value]
