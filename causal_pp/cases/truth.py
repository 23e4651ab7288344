"""True values of queries from a case's simulator: Monte Carlo truths and naive contrasts.

The truth of each query type is one entry of :func:`contrast_draws` (per-unit draws whose mean is
the truth) and :func:`naive_value` (the confounded observational answer).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CaseError, QueryError
from ..queries import ATE, ETT, PN, PNS, PS, Interventional
from .scm import SCM

if TYPE_CHECKING:  # pragma: no cover
    from .case import Case

__all__ = [
    "MC_DRAWS",
    "MC_SEED",
    "Truth",
    "contrast_draws",
    "monte_carlo_truth",
    "naive_contrast",
    "supports",
    "truth_draws",
]


#: Draws used for Monte Carlo truths (the brief's minimum is 10**6).
MC_DRAWS = 1_000_000


#: Seed of every Monte Carlo truth unless a query says otherwise.
MC_SEED = 2022


_CHUNK = 250_000


@dataclass(frozen=True)
class Truth:
    """The true value of a query: ``value`` with its standard error and how it was computed.

    ``se`` is 0 for analytic truths; ``method`` is ``"analytic"`` (possibly with a note in
    parentheses, e.g. numerical quadrature) or ``"monte-carlo (n draws, seed s)"``.
    """

    value: float
    se: float = 0.0
    method: str = "analytic"


def _chunk_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])


def _draws(case: Case, n: int, do: Mapping[str, float], seed: int, outcome: str) -> np.ndarray:
    """Outcome draws (or, for an SCM, its conditional means given its parents)."""
    if isinstance(case.sampler, SCM):
        _, cond = case.sampler.sample(n, do, seed, means=True)
        return cond[outcome]
    return np.asarray(case.sampler(n, do, seed)[outcome], dtype=float)


@functools.singledispatch
def contrast_draws(query: Any, case: Case, n: int, seed: int) -> np.ndarray:
    """Per-unit draws whose mean is the query's truth (one table entry per query type)."""
    raise CaseError(
        f"a case query needs an Interventional, ATE, ETT, PN, PS or PNS; got {type(query).__name__}."
    )


@contrast_draws.register(Interventional)
def _(query: Interventional, case: Case, n: int, seed: int) -> np.ndarray:
    return _draws(case, n, query.interventions, seed, query.outcomes[0])


@contrast_draws.register(ATE)
def _(query: ATE, case: Case, n: int, seed: int) -> np.ndarray:
    # both arms on the same units (same seed: common random numbers)
    return _draws(case, n, {query.treatment: query.treated}, seed, query.outcome) - _draws(
        case, n, {query.treatment: query.control}, seed, query.outcome
    )


@contrast_draws.register(ETT)
def _(query: ETT, case: Case, n: int, seed: int) -> np.ndarray:
    d = _draws(case, n, {query.treatment: query.treated}, seed, query.outcome) - _draws(
        case, n, {query.treatment: query.control}, seed, query.outcome
    )
    # the units whose factual treatment (same seed, same exogenous noise) is `treated`
    factual = np.asarray(case.sample_all(n, {}, seed)[query.treatment], dtype=float)
    return d[factual == query.treated]


def _worlds(case: Case, query: Any, n: int, seed: int) -> tuple[np.ndarray, ...]:
    """(factual X, factual Y, Y under treated, Y under control): one unit per column, shared noise."""
    t, y = query.treatment, query.outcome
    factual = case.sample_all(n, {}, seed)
    y_t = case.sample_all(n, {t: query.treated}, seed)[y]
    y_c = case.sample_all(n, {t: query.control}, seed)[y]
    return tuple(np.asarray(v, dtype=float) for v in (factual[t], factual[y], y_t, y_c))


@contrast_draws.register(PN)
def _(query: PN, case: Case, n: int, seed: int) -> np.ndarray:
    # among units with X = treated and Y = y: does Y_control = y'?
    x, y, _, y_c = _worlds(case, query, n, seed)
    seen = (x == query.treated) & (y == query.outcome_value)
    return (y_c[seen] != query.outcome_value).astype(float)


@contrast_draws.register(PS)
def _(query: PS, case: Case, n: int, seed: int) -> np.ndarray:
    # among units with X = control and Y = y': does Y_treated = y?
    x, y, y_t, _ = _worlds(case, query, n, seed)
    seen = (x == query.control) & (y != query.outcome_value)
    return (y_t[seen] == query.outcome_value).astype(float)


@contrast_draws.register(PNS)
def _(query: PNS, case: Case, n: int, seed: int) -> np.ndarray:
    _, _, y_t, y_c = _worlds(case, query, n, seed)
    return ((y_t == query.outcome_value) & (y_c != query.outcome_value)).astype(float)


def supports(query: Any) -> bool:
    """Whether the case library knows how to compute a truth for this query type.

    Examples
    --------
    >>> from causal_pp import ATE, PN, Counterfactual
    >>> supports(ATE("X", "Y")), supports(PN("X", "Y")), supports(Counterfactual("Y", do={"X": 1}))
    (True, True, False)
    """
    return contrast_draws.dispatch(type(query)) is not contrast_draws.dispatch(object)


def monte_carlo_truth(case: Case, query: Any, *, n: int = MC_DRAWS, seed: int = MC_SEED) -> Truth:
    """Estimate a query's true value from ``case``'s simulator under the intervention(s).

    Draws come in chunks with seeds derived from ``seed``. For an :class:`SCM` the outcome's
    conditional mean given its parents is averaged (Rao-Blackwellised: same expectation,
    smaller variance). An :class:`~causal_pp.ATE` contrasts both arms on the same units. An
    :class:`~causal_pp.ETT` contrasts them on the same units too, averaged over the units
    whose *factual* treatment (the simulator's observational draw with the same seed, hence
    the same exogenous noise) equals ``treated``; this needs a discrete treatment. A
    probability of causation (:class:`~causal_pp.PN`, ``PS``, ``PNS``) is the share of units,
    among those with the factual treatment and outcome it conditions on, whose counterfactual
    outcome (same noise, other treatment) is the one it asks about.
    """
    s = ss = 0.0
    done = kept = 0
    i = 0
    while done < n:
        m = min(_CHUNK, n - done)
        d = contrast_draws(query, case, m, _chunk_seed(seed, i))
        s += float(d.sum())
        ss += float(np.square(d).sum())
        done += m
        kept += d.size
        i += 1
    if kept < 2:
        raise CaseError(
            f"{query}: no simulated unit has {query.treatment} = {query.treated:g} in {n} draws; a Monte "
            "Carlo ETT truth needs a discrete treatment. Give the CaseQuery an analytic truth."
        )
    total = s / kept
    var = max(ss / kept - total**2, 0.0) * kept / (kept - 1)
    return Truth(total, math.sqrt(var / kept), f"monte-carlo ({n} draws, seed {seed})")


def naive_contrast(
    case: Any, query: Interventional | ATE, *, n: int = MC_DRAWS, seed: int = MC_SEED
) -> float:
    """The confounded observational answer for a discrete treatment, by Monte Carlo.

    ``E[Y | T = t]`` (all treatments at their ``do`` values) for an
    :class:`~causal_pp.Interventional`; ``E[Y | T=treated] - E[Y | T=control]`` for an ATE.
    ``case`` is a :class:`~causal_pp.cases.Case` or an :class:`SCM`.
    """
    sampler = getattr(case, "sampler", case)
    v = sampler(n, {}, seed)

    def cond_mean(assign: Mapping[str, float], outcome: str) -> float:
        keep = np.ones(n, bool)
        for k, x in assign.items():
            keep &= v[k] == x
        if keep.sum() < 100:
            raise CaseError(f"too few units with {assign} in {n} observational draws for a naive mean.")
        return float(np.mean(v[outcome][keep]))

    return sum(c * cond_mean(assign, y) for c, assign, y in _naive_terms(query))


@functools.singledispatch
def _naive_terms(query: Any) -> list[tuple[float, dict[str, float], str]]:
    raise CaseError(f"no naive contrast for a {type(query).__name__}.")


@_naive_terms.register(Interventional)
def _(query: Interventional) -> list[tuple[float, dict[str, float], str]]:
    return [(1.0, query.interventions, query.outcomes[0])]


@_naive_terms.register(ATE)
def _(query: ATE) -> list[tuple[float, dict[str, float], str]]:
    return [
        (1.0, {query.treatment: query.treated}, query.outcome),
        (-1.0, {query.treatment: query.control}, query.outcome),
    ]


@functools.singledispatch
def truth_draws(query: Any, case: Case, n: int, seed: int, arm: str) -> np.ndarray:
    """Draws of a query's outcome from the TRUE interventional distribution (see :meth:`Case.truth_samples`)."""
    raise CaseError(
        f"{query}: truth samples are interventional draws; a {type(query).__name__} is a counterfactual "
        "contrast or another query without them (see monte_carlo_truth for its value)."
    )


@truth_draws.register(Interventional)
def _(query: Interventional, case: Case, n: int, seed: int, arm: str) -> np.ndarray:
    _unconditional(query)
    return np.asarray(case.sample_all(n, query.interventions, seed)[query.outcomes[0]], dtype=float)


@truth_draws.register(ATE)
def _(query: ATE, case: Case, n: int, seed: int, arm: str) -> np.ndarray:
    _unconditional(query)
    arms = {"treated": query.treated, "control": query.control}
    if arm == "both":
        return np.stack(
            [
                np.asarray(case.sample_all(n, {query.treatment: arms[a]}, seed)[query.outcome], float)
                for a in arms
            ]
        )
    if arm not in arms:
        raise CaseError(f"arm must be 'treated', 'control' or 'both'; got {arm!r}.")
    return np.asarray(case.sample_all(n, {query.treatment: arms[arm]}, seed)[query.outcome], dtype=float)


def _unconditional(query: Interventional | ATE) -> None:
    if query.conditions:
        raise QueryError(f"{query}: truth samples of conditional queries are not supported.")
