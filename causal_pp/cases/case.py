"""A ground-truth case: a DAG, its simulator, the model to fit, and its queries with their truths."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CaseError, InterventionError, UnknownVariableError
from ..graph import CausalGraph
from ..model import CausalModel
from ..queries import Query
from .truth import MC_DRAWS, MC_SEED, Truth, monte_carlo_truth, supports, truth_draws

__all__ = ["BOUNDS", "MODEL", "QUERY_KINDS", "BoundsSpec", "Case", "CaseQuery", "Sampler", "TruthSpec"]


TruthSpec = float | Truth | Callable[[], "float | Truth"] | None
BoundsSpec = tuple[float, float] | Callable[[], tuple[float, float]] | None

#: How a convergence study estimates a case query: from the posterior of the case's fitted model...
MODEL = "model"
#: ... or, for a query the gate refuses, by the posterior of its sharp bounds (``causal_pp.bounds``).
BOUNDS = "bounds"
QUERY_KINDS = (MODEL, BOUNDS)


@dataclass(frozen=True, eq=False, init=False)
class CaseQuery:
    """One causal query of a case, with its identification verdict and ground truth.

    Parameters
    ----------
    query
        An :class:`~causal_pp.Interventional` (its truth is the mean of the single outcome
        under the intervention), an :class:`~causal_pp.ATE`, an :class:`~causal_pp.ETT`
        (the effect of treatment on the treated, a counterfactual query: its Monte Carlo
        truth needs a discrete treatment, so give a continuous one an analytic truth), or a
        probability of causation :class:`~causal_pp.PN`, ``PS``, ``PNS`` (binary treatment and
        outcome; its Monte Carlo truth couples the worlds through the simulator's shared noise).
    identified
        Whether the query is identified from the observed variables of the case's graph; must
        agree with ``causal_pp.identify(case.graph, query, strict=False).identified``.
    truth
        A number (an analytic truth), a :class:`Truth`, a zero-argument callable returning
        either (computed once, on first access), or None: a Monte Carlo estimate from the
        case's simulator with ``mc_draws`` draws and seed ``mc_seed``, computed on first access.
    published
        The value the reference paper reports, if any (None otherwise).
    naive
        The confounded observational answer (e.g. E[Y | X=x]) for teaching: a number, a
        zero-argument callable, or None.
    outcome_sd
        The SD of the outcome under the intervention, where it is known analytically (Gaussian
        cases; for an :class:`ATE`, of each arm). None otherwise.
    note
        Free text: how the truth relates to the published value, caveats.
    kind
        How a convergence study estimates the query: ``"model"`` (default) fits the case's
        Pyro model and estimates from its posterior; ``"bounds"`` -- for a query the gate
        refuses -- computes the posterior of its sharp bounds with :func:`causal_pp.bounds`
        and scores each end against the true sharp bounds (``bounds``), and the credible
        region against the true value (``truth``). A bounds query's case must be discrete
        (``Case.domains``).
    bounds
        With ``kind="bounds"`` (and only then): the true sharp bounds ``(lower, upper)`` --
        what the bounds are on the case's exact observed distribution -- or a zero-argument
        callable returning them (computed once, on first access).

    Examples
    --------
    >>> from causal_pp import ATE
    >>> q = CaseQuery(ATE("X", "Y"), identified=False, truth=0.25, kind="bounds", bounds=(0.1, 0.4))
    >>> q.kind, q.true_bounds
    ('bounds', (0.1, 0.4))
    >>> CaseQuery(ATE("X", "Y"), identified=True, truth=1.0).true_bounds is None
    True
    """

    query: Query
    identified: bool
    published: float | None
    outcome_sd: float | None
    note: str
    mc_draws: int
    mc_seed: int
    kind: str
    _truth: TruthSpec = field(repr=False)
    _naive: float | Callable[[], float] | None = field(repr=False)
    _bounds: BoundsSpec = field(repr=False)
    _case: Case | None = field(repr=False)

    def __init__(
        self,
        query: Query,
        identified: bool,
        truth: TruthSpec = None,
        *,
        published: float | None = None,
        naive: float | Callable[[], float] | None = None,
        outcome_sd: float | None = None,
        note: str = "",
        mc_draws: int = MC_DRAWS,
        mc_seed: int = MC_SEED,
        kind: str = MODEL,
        bounds: BoundsSpec = None,
    ) -> None:
        if not supports(query):
            raise CaseError(
                f"a case query needs an Interventional, ATE, ETT, PN, PS or PNS; got {type(query).__name__}."
            )
        if kind not in QUERY_KINDS:
            raise CaseError(f"{query}: kind must be one of {list(QUERY_KINDS)}; got {kind!r}.")
        if (kind == BOUNDS) != (bounds is not None):
            raise CaseError(
                f"{query}: a query of kind 'bounds' needs its true sharp bounds (bounds=(lower, upper) or a "
                "callable returning them), and only such a query takes them; got "
                f"kind={kind!r}, bounds={'given' if bounds is not None else None}."
            )
        if len(query.outcomes) != 1:
            raise CaseError(f"{query}: a case query has a single outcome (its truth is a mean).")
        if int(mc_draws) < 1:
            raise CaseError(f"mc_draws must be positive; got {mc_draws}.")
        for k, v in (
            ("query", query),
            ("identified", bool(identified)),
            ("published", None if published is None else float(published)),
            ("outcome_sd", None if outcome_sd is None else float(outcome_sd)),
            ("note", str(note)),
            ("mc_draws", int(mc_draws)),
            ("mc_seed", int(mc_seed)),
            ("kind", kind),
            ("_truth", truth),
            ("_naive", naive),
            ("_bounds", bounds),
            ("_case", None),
        ):
            object.__setattr__(self, k, v)

    @cached_property
    def _resolved(self) -> Truth:
        spec = self._truth
        if spec is None:
            if self._case is None:
                raise CaseError(
                    f"{self.query}: no truth given and the query is not bound to a case; "
                    "Monte Carlo truths are computed once the query belongs to a Case."
                )
            return monte_carlo_truth(self._case, self.query, n=self.mc_draws, seed=self.mc_seed)
        if callable(spec) and not isinstance(spec, Truth):
            spec = spec()
        if isinstance(spec, Truth):
            return spec
        return Truth(float(spec), 0.0, "analytic")

    @property
    def truth(self) -> float:
        """The true value of the query (computed on first access when Monte Carlo)."""
        return self._resolved.value

    @property
    def truth_se(self) -> float:
        """Standard error of :attr:`truth` (0 when analytic)."""
        return self._resolved.se

    @property
    def truth_method(self) -> str:
        """``"analytic"`` or ``"monte-carlo (n draws, seed s)"``."""
        return self._resolved.method

    @cached_property
    def naive(self) -> float | None:
        """The confounded observational answer, or None where none is recorded."""
        spec = self._naive
        if spec is None:
            return None
        return float(spec() if callable(spec) else spec)

    @cached_property
    def true_bounds(self) -> tuple[float, float] | None:
        """The true sharp bounds ``(lower, upper)`` of a ``kind="bounds"`` query; None otherwise."""
        spec = self._bounds
        if spec is None:
            return None
        lower, upper = (float(v) for v in (spec() if callable(spec) else spec))
        if not lower <= upper:
            raise CaseError(f"{self.query}: true bounds must have lower <= upper; got ({lower}, {upper}).")
        return lower, upper

    def bound_to(self, case: Case) -> CaseQuery:
        """This query as part of ``case``: a missing truth comes from ``case``'s simulator."""
        if self._truth is not None:
            return self
        # not copy.copy: the pickling state (__getstate__) would freeze an old Monte Carlo truth
        bound = object.__new__(CaseQuery)
        bound.__dict__.update(self.__dict__)
        bound.__dict__.pop("_resolved", None)  # a fresh cache: another case, another truth
        object.__setattr__(bound, "_case", case)
        return bound

    def __getstate__(self) -> dict[str, Any]:
        # Pickled by value (a worker process): a truth or naive answer already computed travels
        # as its value, so a callable that made it (often a lambda) need not be picklable.
        state = dict(self.__dict__)
        if "_resolved" in state:
            state["_truth"] = state["_resolved"]
        if "naive" in state:
            state["_naive"] = state["naive"]
        if "true_bounds" in state:
            state["_bounds"] = state["true_bounds"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        verdict = "identified" if self.identified else "NOT identified"
        pub = "" if self.published is None else f", published={self.published:g}"
        kind = "" if self.kind == MODEL else f", kind={self.kind!r}"
        return f"CaseQuery({self.query!r}, {verdict}{pub}{kind})"


Sampler = Callable[..., Mapping[str, np.ndarray]]


@dataclass(frozen=True, eq=False)
class Case:
    """A ground-truth case study: a causal DAG, its simulator, the model to fit and its queries.

    Parameters
    ----------
    name
        Registry key (``get_case(name)``).
    description
        One paragraph: what the case is, its parameters, and the reference.
    graph
        The causal DAG, latent variables as explicit nodes.
    fn
        The Bayesian model to fit: a plain Pyro function ``fn(n)`` with priors over global
        parameters outside the plate and one site per DAG node inside ``units(n)``.
    sampler
        The ground truth: ``sampler(n, do, seed) -> {node: array}`` for at least every
        observed node; ``do`` maps node names to values and must mutilate the structural
        equations; the same seed must give the same draws. An :class:`SCM` is one.
    queries
        ``{name: CaseQuery}``, in display order.
    parameters
        The true parameter values of the simulator, for documentation.
    reference
        The source of the case (citation).
    model_truth
        Optional: the values of ``fn``'s global sites at which the model *is* the simulator
        (a witness that the model is correctly specified; what a fit would recover if the
        parameters were identified). Vector sites as lists.
    latent_scale
        Optional, with ``model_truth``: ``{latent: (mean, sd)}`` such that the model's latent
        site equals ``(U - mean) / sd`` of the simulator's ``U``.
    domains
        Optional: ``{observed node: values}`` of discrete observed variables, for the bounds of
        ``kind="bounds"`` queries (a small sample may not show every value).

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> case = get_case("frontdoor")
    >>> list(case.simulate(3, seed=1).columns)
    ['X', 'M', 'Y']
    >>> q = case.queries["ate"]
    >>> q.identified, q.truth, q.truth_method
    (True, -1.5, 'analytic')
    """

    name: str
    description: str
    graph: CausalGraph
    fn: Callable[[int], Any]
    sampler: Sampler
    queries: Mapping[str, CaseQuery]
    parameters: Mapping[str, float] = field(default_factory=dict)
    reference: str = ""
    model_truth: Mapping[str, Any] = field(default_factory=dict)
    latent_scale: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    domains: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise CaseError(f"a case needs a non-empty string name; got {self.name!r}.")
        if not isinstance(self.graph, CausalGraph):
            raise CaseError(
                f"case {self.name!r}: graph must be a CausalGraph; got {type(self.graph).__name__}."
            )
        if not callable(self.fn) or not callable(self.sampler):
            raise CaseError(f"case {self.name!r}: fn and sampler must be callables.")
        if not self.queries:
            raise CaseError(f"case {self.name!r} has no queries.")
        bound = {}
        for qname, cq in self.queries.items():
            if not isinstance(cq, CaseQuery):
                raise CaseError(
                    f"case {self.name!r}: query {qname!r} must be a CaseQuery; got {type(cq).__name__}."
                )
            cq.query.validate(self.graph)
            bound[qname] = cq.bound_to(self)
        object.__setattr__(self, "queries", MappingProxyType(bound))
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))
        object.__setattr__(self, "model_truth", MappingProxyType(dict(self.model_truth)))
        object.__setattr__(self, "latent_scale", MappingProxyType(dict(self.latent_scale)))
        unknown = sorted(set(self.domains) - set(self.graph.observed))
        if unknown:
            raise CaseError(f"case {self.name!r}: domains name {unknown}, which are not observed nodes.")
        object.__setattr__(self, "domains", MappingProxyType({k: tuple(v) for k, v in self.domains.items()}))

    # --- the simulator --------------------------------------------------------------------

    @cached_property
    def observed(self) -> tuple[str, ...]:
        """Observed node names in a topological order (the columns of :meth:`simulate`)."""
        return tuple(v for v in self.graph.topological_order if not self.graph.is_latent(v))

    def _check_do(self, do: Mapping[str, Any] | None) -> dict[str, float]:
        if do is None:
            return {}
        if not isinstance(do, Mapping):
            raise InterventionError(f"do must be a mapping {{name: value}}; got {do!r}.")
        out = {}
        for k, v in do.items():
            if k not in self.graph:
                raise UnknownVariableError(
                    f"case {self.name!r}: cannot intervene on {k!r}, which is not a node; observed "
                    f"nodes are {list(self.observed)}."
                )
            if self.graph.is_latent(k):
                raise InterventionError(
                    f"case {self.name!r}: {k!r} is latent; simulate() intervenes on observed nodes "
                    f"only ({list(self.observed)})."
                )
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                raise InterventionError(f"do[{k!r}] must be a number; got {v!r}.") from None
        return out

    def sample_all(self, n: int, do: Mapping[str, float], seed: int) -> Mapping[str, np.ndarray]:
        """Every node of the simulator (latent ones included) for ``n`` units under ``do``."""
        n = int(n)
        if n < 1:
            raise CaseError(f"n must be a positive number of units; got {n}.")
        values = self.sampler(n, do, seed)
        missing = [v for v in self.observed if v not in values]
        if missing:
            raise CaseError(f"case {self.name!r}: the sampler returned no values for {missing}.")
        return values

    def simulate(self, n: int, *, do: Mapping[str, Any] | None = None, seed: int = 0) -> pd.DataFrame:
        """Simulate ``n`` units from the ground truth; only the observed columns are returned.

        Parameters
        ----------
        n
            Number of units (rows).
        do
            ``{observed node: value}``: simulate the mutilated model in which those nodes are
            set to the values (their equations removed). None: observational data.
        seed
            The same seed gives the same data. With the same seed, observational and
            interventional draws share the units' exogenous noise (common random numbers).

        Returns
        -------
        pandas.DataFrame
            One float column per observed node, in a topological order.

        Raises
        ------
        UnknownVariableError, InterventionError
            ``do`` names a node that does not exist or is latent, or a non-numeric value.

        Examples
        --------
        >>> from causal_pp.cases import get_case
        >>> df = get_case("bow").simulate(5, do={"X": 1.0}, seed=0)
        >>> df["X"].tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0]
        """
        values = self.sample_all(n, self._check_do(do), seed)
        return pd.DataFrame({v: np.asarray(values[v], dtype=float) for v in self.observed})

    def truth_samples(self, query_name: str, n: int, seed: int = 0, *, arm: str = "treated") -> np.ndarray:
        """Draws of the outcome from the TRUE interventional distribution of a query.

        For an :class:`~causal_pp.Interventional` query: ``n`` draws of its outcome under its
        ``do``. For an :class:`~causal_pp.ATE`: ``arm="treated"`` (default) or ``"control"``
        gives ``n`` draws of the outcome in that arm; ``arm="both"`` an array of shape
        ``(2, n)`` (treated, control) whose columns are the same units (common random numbers,
        so ``treated - control`` are draws of the unit-level effect).

        Examples
        --------
        >>> from causal_pp.cases import get_case
        >>> get_case("frontdoor").truth_samples("ate", 4, seed=0).shape
        (4,)
        """
        return truth_draws(self._query(query_name).query, self, n, seed, arm)

    def _query(self, query_name: str) -> CaseQuery:
        try:
            return self.queries[query_name]
        except KeyError:
            raise CaseError(
                f"case {self.name!r} has no query {query_name!r}; its queries are {list(self.queries)}."
            ) from None

    # --- the model ------------------------------------------------------------------------

    @cached_property
    def model(self) -> CausalModel:
        """The Bayesian model to fit: ``CausalModel(case.fn, case.graph)`` (built once)."""
        return CausalModel(self.fn, self.graph)

    # --- pickling -------------------------------------------------------------------------
    # A registered case pickles by its name (causal_pp.cases.registry); any other by value,
    # which needs its model, sampler and truths to be picklable (module-level functions).

    _MAPPINGS = ("queries", "parameters", "model_truth", "latent_scale", "domains")

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("model", "observed")}  # caches
        for k in self._MAPPINGS:  # a mappingproxy cannot be pickled; its dict can
            state[k] = dict(state[k])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k in self._MAPPINGS:
            state[k] = MappingProxyType(dict(state.get(k, {})))
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Case({self.name!r}, graph={self.graph.to_string()!r}, queries={list(self.queries)})"
