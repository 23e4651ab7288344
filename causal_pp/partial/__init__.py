"""Sharp bounds, with their posterior, for causal queries the identification gate refuses.

When P(Y | do(x)) cannot be computed from the observed distribution, the distribution still
confines it to an interval. :func:`bounds` returns the posterior of that interval for discrete
data: a Dirichlet posterior over the observed distribution and, for each draw, the least and
the greatest value of the query over every model of the graph that reproduces the draw.

How it is done, and where:

======================================  ================================================
step                                    module
======================================  ================================================
the queries answered (dispatch table)   :mod:`.queries` -- Interventional, ATE, PN, PS, PNS
data -> discrete table                  :mod:`.table`
response-function model, sharpness      :mod:`.canonical` -- Balke & Pearl's canonical model
query -> linear functional              :mod:`.functionals` (and :mod:`.causation` for PN/PS/PNS)
linear programs per draw                :mod:`.lp` -- HiGHS via ``scipy.optimize.linprog``
graph + query + data -> problem         :mod:`.problem`
posterior, rejection                    :mod:`.posterior` -- Dirichlet / Bayesian bootstrap
the graph's equality constraints        :mod:`.fit` -- likelihood-ratio check against the data
posterior under other equalities        :mod:`.gibbs` -- Gibbs sampling over the response types
no-assumption bounds for a range        :mod:`.manski`
Tian-Pearl closed forms                 :mod:`.causation`
the result                              :mod:`.result` -- :class:`Bounds`
do bounds apply? (for the gate)         :mod:`.applicability` -- :func:`bounds_apply`
======================================  ================================================

**Sharp or not.** The programs are exact -- the bounds sharp -- when, after latent projection,
the variables with parents or confounding share one latent confounder and every other
variable is an unconfounded root (the Balke-Pearl class: the instrumental variable graph, the
bow, X -> Y). Elsewhere the programs give those variables one joint confounder, a relaxation of
the graph: valid bounds that may be loose, and the result says so (``sharp=False``, ``note``).

References: A. Balke & J. Pearl, "Bounds on treatment effects from studies with imperfect
compliance", JASA 92 (1997); J. Pearl, *Causality*, 2nd ed. (2009), ch. 8; J. Tian & J. Pearl,
"Probabilities of causation: bounds and identification", AMAI 28 (2000); J. Zhang, J. Tian &
E. Bareinboim, "Partial counterfactual identification from observational and experimental
data", ICML 2022; G. Duarte et al., "An automated approach to causal inference in discrete
settings", JASA (2023); C. Manski, "Nonparametric bounds on treatment effects", AER 80 (1990).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import validation as check
from ..errors import (
    ArgumentTypeError,
    IncompatibleDataError,
    InvalidArgumentError,
    QueryError,
    TooManyResponseTypesError,
)
from ..graph import CausalGraph
from .applicability import Applicability, bounds_apply
from .canonical import MAX_RESPONSE_TYPES
from .causation import Causation, CausationBounds, tian_pearl
from .fit import fit_check
from .functionals import Contrast
from .gibbs import gibbs_bounds
from .lp import bound_draws
from .manski import manski
from .posterior import PosteriorDraws, bayesian_bootstrap, sample_bounds
from .problem import Problem, check_outcome_range, manski_inputs, prepare
from .queries import spec as _spec
from .result import Bounds
from .table import check_domains, read_columns

__all__ = [
    "Applicability",
    "Bounds",
    "CausationBounds",
    "IncompatibleDataError",
    "TooManyResponseTypesError",
    "bounds",
    "bounds_apply",
    "bounds_from_distribution",
    "tian_pearl",
]

_BOOTSTRAP_BUDGET = 10_000_000
"""Bayesian-bootstrap weights are drawn in chunks of about this many numbers."""


@dataclass(frozen=True)
class _Options:
    outcome_value: int | None
    outcome_range: tuple[float, float] | None
    domains: dict[str, tuple[int, ...]]
    max_types: int


def _check_common(
    graph: Any,
    query: Any,
    *,
    experimental: Any,
    outcome_range: Any,
    outcome_value: Any,
    domains: Any,
    max_response_types: Any,
) -> tuple[Contrast | Causation, _Options]:
    """Validate what :func:`bounds` and :func:`bounds_from_distribution` share, before any work."""
    if outcome_range is not None:
        outcome_range = check.range_pair("outcome_range", outcome_range)
    if outcome_value is not None:
        outcome_value = check.integer("outcome_value", outcome_value)
    max_types = check.positive_int("max_response_types", max_response_types)
    if not isinstance(graph, CausalGraph):
        raise ArgumentTypeError(
            f"graph must be a CausalGraph (e.g. CausalGraph.parse('Z -> X -> Y; X <-> Y')); got {type(graph).__name__}."
        )
    extra = check_domains(domains, graph)
    spec = _spec(query)
    query.validate(graph)
    if outcome_range is not None:
        if not isinstance(spec, Contrast):
            raise InvalidArgumentError(
                f"outcome_range applies to Interventional and ATE queries (a bounded outcome); {type(query).__name__} "
                "is about a binary outcome -- leave outcome_range out."
            )
        if any(arm.given for arm in spec.arms):
            raise QueryError(
                f"no-assumption bounds (outcome_range) are for unconditional effects; {spec.label} conditions on "
                "a covariate. Drop given=, or discretise the outcome to use the linear programs."
            )
        if outcome_value is not None:
            raise InvalidArgumentError(
                "outcome_value and outcome_range exclude each other: outcome_value asks for P(Y = value) of a "
                "discrete outcome, outcome_range for E[Y] of a bounded one."
            )
        if experimental is not None:
            raise InvalidArgumentError(
                "experimental data are used by the linear programs of a discrete outcome, not with outcome_range."
            )
    if experimental is not None and spec.experiment is None:
        raise InvalidArgumentError(
            f"experimental data give P(outcome | do(treatment)) for one treatment; {spec.label} intervenes on "
            "several variables. Leave experimental out."
        )
    return spec, _Options(outcome_value, outcome_range, extra, max_types)


def _sample(
    problem: Problem, *, prior: float, rng: np.random.Generator, num_samples: int, min_acceptance: float
) -> tuple[PosteriorDraws, str, str]:
    """Posterior draws of the bounds; returns them, the posterior's name and a note."""
    model = problem.model
    notes = []
    start = None
    equalities_in_data = model.codimension(factored=False)
    if equalities_in_data:
        # Constraints no rejection step can test: check them once, against the data.
        check = fit_check(model, problem.counts, equalities_in_data)
        start = check.q
        notes.append(check.describe())
    if model.codimension(problem.equalities) == 0:
        draws = sample_bounds(
            model,
            problem.target,
            problem.counts,
            prior=prior,
            rng=rng,
            num_samples=num_samples,
            min_acceptance=min_acceptance,
            equalities=problem.equalities,
            experiment=problem.arms,
            keys=problem.keys,
        )
        if draws.accepted < draws.attempts:
            notes.append(
                f"{draws.attempts - draws.accepted} of {draws.attempts} posterior draws of the observed "
                "distribution were impossible under the graph and rejected (the posterior is conditioned on "
                "the model)."
            )
        return draws, "dirichlet", " ".join(notes)
    treatment, outcome = problem.experiment if problem.equalities else (None, None)
    draws, thin = gibbs_bounds(
        model,
        problem.target,
        problem.counts,
        prior=prior,
        rng=rng,
        num_samples=num_samples,
        start=start,
        equalities=problem.equalities,
        experiment=problem.arms,
        keys=problem.keys,
        treatment=treatment,
        outcome=outcome,
    )
    tied = "the experimental to the observational data" if problem.equalities else "the observed distribution"
    notes.append(
        f"Equality constraints beyond exclusions tie {tied}, so the posterior is taken over the response-type "
        f"model itself (Gibbs sampling, one sweep in {thin} kept)."
    )
    return draws, "canonical-gibbs", " ".join(notes)


def bounds(
    graph: CausalGraph,
    query: Any,
    data: Any,
    *,
    num_samples: int = 1000,
    seed: int = 0,
    prior: float = 1.0,
    experimental: Any = None,
    outcome_range: tuple[float, float] | None = None,
    outcome_value: int | None = None,
    domains: Mapping[str, Any] | None = None,
    min_acceptance: float = 0.01,
    max_response_types: int = MAX_RESPONSE_TYPES,
) -> Bounds:
    """Posterior of the bounds on ``query`` over every model of ``graph`` that fits ``data``.

    For discrete data, the observed distribution of the relevant variables gets a
    Dirichlet(counts + ``prior``) posterior; for each draw, two linear programs over the
    canonical (response-function) model of the graph give the least and greatest value of the
    query among the models that reproduce it. Draws the graph cannot produce are rejected.
    The bounds are sharp in the Balke-Pearl class of graphs and valid elsewhere (``sharp``
    and ``note`` of the result say which, and why).

    Parameters
    ----------
    graph
        The causal graph (latent nodes marked).
    query
        ``Interventional(Y, do={X: x})`` -- bounds on E[Y | do(x)] (P(Y = 1 | do(x)) for a
        binary Y), with ``given={Z: z}`` on E[Y | do(x), Z = z]; ``ATE`` -- on the contrast;
        ``PN``, ``PS``, ``PNS`` -- on the probabilities of causation, without monotonicity.
    data
        Observational data: a pandas DataFrame or a mapping name -> 1-d array, one column per
        observed variable of the graph. The variables the query depends on must be discrete,
        coded as integers.
    num_samples
        Posterior draws of the bounds (accepted draws), >= 1.
    seed
        Seed of everything random: the same seed gives the same numbers.
    prior
        Dirichlet concentration per cell of the observed distribution (> 0; 1 is uniform).
    experimental
        Optional randomised-trial data for one treatment: a DataFrame (or mapping) with the
        treatment and outcome columns only; P(outcome | do(treatment)) then constrains every
        program (each arm gets a Dirichlet(counts + ``prior``) posterior). Tightens PN, PS,
        PNS (Tian & Pearl 2000).
    outcome_range
        ``(low, high)``: the range of an outcome that is not discrete. Switches to
        no-assumption (Manski) bounds on E[Y | do(x)] or the ATE, with a Bayesian-bootstrap
        posterior; the treatment must be discrete. (Used whenever given, also for a discrete
        outcome: leave it out to get the graph's linear programs.)
    outcome_value
        Bound P(Y = outcome_value | do(x)) instead of E[Y | do(x)] (Interventional and ATE).
    domains
        ``{variable: [values]}``: values a variable can take that the data may not show.
    min_acceptance
        If fewer than this share of posterior draws are compatible with the graph, the data
        are declared to contradict it (``IncompatibleDataError``). In (0, 1].
    max_response_types
        Largest linear program (number of joint response types) to attempt.

    Returns
    -------
    Bounds
        Posterior draws of the lower and upper end, credible intervals, a credible region for
        the identified set, sharpness, the acceptance rate and ``to_arviz()``.

    Raises
    ------
    ArgumentTypeError, InvalidArgumentError
        An option of the wrong type or out of range (checked before any work).
    QueryError
        The query does not fit the data (a value the data never show, a joint outcome, ...).
    DataError
        Bad data: missing or unexpected columns, non-integer values of a discrete variable
        (a continuous outcome needs ``outcome_range``), NaN, ...
    IncompatibleDataError
        The data contradict the graph (almost every posterior draw is impossible under it, or
        the graph's equality constraints are rejected by a likelihood-ratio check).
    TooManyResponseTypesError
        The graph's response-function model is too large (names the variable and the count).

    Notes
    -----
    Where the graph excludes effects of roots (W affects Y but not X), the Dirichlet draws are
    made factor by factor so that they meet the exclusions exactly, and the exclusions are
    checked against the data once (:mod:`causal_pp.partial.fit`). Where observational and
    experimental data are tied by equalities, the posterior is sampled over the response types
    (:mod:`causal_pp.partial.gibbs`). ``Bounds.posterior`` says which.

    Examples
    --------
    The instrumental-variable graph with the published data of Balke & Pearl (1997, Table 1):

    >>> import numpy as np, pandas as pd
    >>> from causal_pp import ATE, CausalGraph
    >>> from causal_pp.partial import bounds
    >>> cells = {(0, 0, 0): 74, (0, 0, 1): 11514, (1, 0, 0): 34, (1, 0, 1): 2385, (1, 1, 0): 12, (1, 1, 1): 9663}
    >>> rows = np.repeat(np.array(list(cells)), list(cells.values()), axis=0)
    >>> data = pd.DataFrame(rows, columns=["Z", "X", "Y"])
    >>> b = bounds(CausalGraph.parse("Z -> X -> Y; X <-> Y"), ATE("X", "Y"), data, num_samples=200, seed=1)
    >>> b.sharp, b.method
    (True, 'canonical-lp')
    >>> lo, hi = b.mean
    >>> bool(-0.21 < lo < -0.18 and 0.0 < hi < 0.02)  # published: [-0.1946, 0.0054]
    True
    """
    num_samples = check.positive_int("num_samples", num_samples, maximum=10**7)
    seed = check.seed(seed)
    prior = check.finite_float("prior", prior, low=0.0, low_open=True)
    min_acceptance = check.finite_float("min_acceptance", min_acceptance, low=0.0, high=1.0, low_open=True)
    spec, options = _check_common(
        graph,
        query,
        experimental=experimental,
        outcome_range=outcome_range,
        outcome_value=outcome_value,
        domains=domains,
        max_response_types=max_response_types,
    )
    columns, _ = read_columns(data, graph, role="data", expected=graph.observed)
    exp_columns = None
    if experimental is not None:
        exp_columns, _ = read_columns(experimental, graph, role="experimental", expected=spec.experiment)
    rng = np.random.default_rng(seed)
    if options.outcome_range is not None:
        assert isinstance(spec, Contrast)  # checked by _check_common
        y, treatments, sharp, note = manski_inputs(graph, spec, columns)
        check_outcome_range(y, spec.outcome, options.outcome_range)
        chunk = max(1, _BOOTSTRAP_BUDGET // y.size)
        lows, highs = [], []
        for start in range(0, num_samples, chunk):
            w = bayesian_bootstrap(rng, y.size, min(chunk, num_samples - start))
            lo, hi = manski(spec, y, treatments, options.outcome_range, w)
            lows.append(lo)
            highs.append(hi)
        return Bounds(
            query, np.concatenate(lows), np.concatenate(highs), sharp, "manski",
            note + " Posterior: Bayesian bootstrap over the rows (prior= is not used).",
            1.0, num_samples, seed, "bayesian-bootstrap", spec.label,
        )  # fmt: skip
    problem = prepare(
        graph,
        spec,
        columns,
        exp_columns=exp_columns,
        outcome_value=options.outcome_value,
        domains=options.domains,
        max_types=options.max_types,
    )
    draws, posterior, note = _sample(
        problem, prior=prior, rng=rng, num_samples=num_samples, min_acceptance=min_acceptance
    )
    label = spec.text(options.outcome_value) if isinstance(spec, Contrast) else spec.label
    return Bounds(
        query,
        draws.lower,
        draws.upper,
        problem.sharp,
        "canonical-lp" if problem.sharp else "canonical-lp-relaxed",
        f"{problem.note} {note}".strip(),
        draws.acceptance,
        num_samples,
        seed,
        posterior,
        label,
    )


def bounds_from_distribution(
    graph: CausalGraph,
    query: Any,
    distribution: Any,
    *,
    experimental: Any = None,
    outcome_range: tuple[float, float] | None = None,
    outcome_value: int | None = None,
    domains: Mapping[str, Any] | None = None,
    weight: str = "p",
    max_response_types: int = MAX_RESPONSE_TYPES,
) -> tuple[float, float]:
    """The bounds on ``query`` given an exact observed distribution (no posterior).

    The same linear programs as :func:`bounds`, solved once, on a known distribution: what
    the posterior bounds converge to as the sample grows.

    Parameters
    ----------
    graph, query
        As in :func:`bounds`.
    distribution
        A table with one column per observed variable and a column ``weight`` holding each
        row's probability (weights are normalised; rows may repeat; cells not listed have
        probability 0).
    experimental
        Optional table with the treatment, the outcome and ``weight``: the experimental
        distribution (normalised within each treatment arm to P(outcome | do(treatment))).
    outcome_range, outcome_value, domains, max_response_types
        As in :func:`bounds`.
    weight
        Name of the probability column.

    Returns
    -------
    tuple of float
        ``(lower, upper)``.

    Raises
    ------
    IncompatibleDataError
        The distribution is impossible under the graph (``.violation`` says by how much), or a
        conditioning event has probability 0 in every compatible model.

    Examples
    --------
    Pearl's cholestyramine example (*Causality*, 2nd ed., section 8.2.6), P(x, y | z) with P(z) = 1/2:

    >>> import pandas as pd
    >>> from causal_pp import ATE, CausalGraph
    >>> p = {(0, 0, 0): 0.919, (0, 0, 1): 0.081, (1, 0, 0): 0.315, (1, 1, 0): 0.139, (1, 0, 1): 0.073, (1, 1, 1): 0.473}
    >>> table = pd.DataFrame([(*k, v / 2) for k, v in p.items()], columns=["Z", "X", "Y", "p"])
    >>> lo, hi = bounds_from_distribution(CausalGraph.parse("Z -> X -> Y; X <-> Y"), ATE("X", "Y"), table)
    >>> round(lo, 3), round(hi, 3)  # published: 0.39 <= ACE <= 0.78
    (0.392, 0.78)
    """
    if not isinstance(weight, str):
        raise ArgumentTypeError(f"weight must be a column name (str); got {weight!r}.")
    spec, options = _check_common(
        graph,
        query,
        experimental=experimental,
        outcome_range=outcome_range,
        outcome_value=outcome_value,
        domains=domains,
        max_response_types=max_response_types,
    )
    columns, weights = read_columns(
        distribution, graph, role="distribution", expected=graph.observed, weight=weight
    )
    assert weights is not None  # read_columns refuses a table without its weight column
    exp_columns = exp_weights = None
    if experimental is not None:
        exp_columns, exp_weights = read_columns(
            experimental, graph, role="experimental", expected=spec.experiment, weight=weight
        )
    if options.outcome_range is not None:
        assert isinstance(spec, Contrast)
        y, treatments, _, _ = manski_inputs(graph, spec, columns)
        check_outcome_range(y[weights > 0], spec.outcome, options.outcome_range)
        lo, hi = manski(spec, y, treatments, options.outcome_range, (weights / weights.sum())[None, :])
        return float(lo[0]), float(hi[0])
    problem = prepare(
        graph,
        spec,
        columns,
        weights,
        exp_columns,
        exp_weights,
        outcome_value=options.outcome_value,
        domains=options.domains,
        max_types=options.max_types,
    )
    joint = (problem.counts / problem.counts.sum())[None]
    values = None
    if problem.equalities:
        arm = {x: c / c.sum() for x, c in problem.arms}
        values = np.array([[arm[x][y] for x, y in problem.keys]])
    result = bound_draws(problem.model, problem.target, joint, problem.equalities, values)
    if not result.feasible[0]:
        miss = float(result.violation[0])
        raise IncompatibleDataError(
            f"the distribution is impossible under the graph (its constraints are violated by {miss:.3g} in total"
            f"{'; or a conditioning event has probability 0 in every compatible model' if miss <= 1e-8 else ''}): "
            "check the graph and the distribution (for an instrument, the instrumental inequality).",
            violation=miss,
        )
    return float(result.lower[0]), float(result.upper[0])
