"""The machinery behind the case library: :class:`Case`, :class:`CaseQuery`, :class:`Truth`,
the structural-equation simulator :class:`SCM` and the registry.

Nothing here knows about a particular case; the built-in cases live in sibling modules and
register themselves when :mod:`causal_pp.cases` is imported.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from ..counterfactual import ETT
from ..errors import CausalPPError, InterventionError, QueryError, UnknownVariableError
from ..graph import CausalGraph
from ..model import CausalModel
from ..queries import ATE, Interventional

__all__ = [
    "SCM",
    "Case",
    "CaseError",
    "CaseQuery",
    "DuplicateCaseError",
    "Equation",
    "Truth",
    "UnknownCaseError",
    "constant",
    "get_case",
    "monte_carlo_truth",
    "naive_contrast",
    "register",
    "registry",
    "unregister",
]

#: Draws used for Monte Carlo truths (the brief's minimum is 10**6).
MC_DRAWS = 1_000_000
#: Seed of every Monte Carlo truth unless a query says otherwise.
MC_SEED = 2022
_CHUNK = 250_000


# --- errors -------------------------------------------------------------------------------


class CaseError(CausalPPError):
    """A case is malformed or cannot be registered."""


class UnknownCaseError(CaseError, KeyError):
    """No case of that name is registered; the message lists the available names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class DuplicateCaseError(CaseError, ValueError):
    """A case of that name is already registered (pass ``replace=True`` to overwrite it)."""


# --- structural equations -----------------------------------------------------------------


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
        ``loc(*parent_values) -> array | float``: the conditional mean (``"normal"``), the
        success probability (``"bernoulli"``, ``"binomial"``) given the parents.
    kind
        ``"normal"``: ``loc + scale * N(0, 1)``; ``"bernoulli"``: ``1{U(0,1) < loc}``;
        ``"binomial"``: ``Binomial(scale, loc)``.
    scale
        Noise SD (``"normal"``) or number of trials (``"binomial"``); unused for Bernoulli.
    """

    name: str
    parents: tuple[str, ...]
    loc: Callable[..., Any]
    kind: str = "normal"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("normal", "bernoulli", "binomial"):
            raise CaseError(f"equation {self.name!r}: unknown kind {self.kind!r}.")
        object.__setattr__(self, "parents", tuple(self.parents))


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
            if eq.kind == "normal":
                v = loc + eq.scale * rng.standard_normal(n)
                m = loc
            elif eq.kind == "bernoulli":
                v = (rng.random(n) < loc).astype(float)
                m = loc
            else:
                v = rng.binomial(int(eq.scale), np.clip(loc, 0.0, 1.0)).astype(float)
                m = eq.scale * loc
            values[eq.name] = v
            cond[eq.name] = np.array(m, dtype=float)
        return (values, cond) if means else values

    def __call__(self, n: int, do: Mapping[str, float] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        return self.sample(n, do, seed)  # type: ignore[return-value]


# --- truths and queries -------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """The true value of a query: ``value`` with its standard error and how it was computed.

    ``se`` is 0 for analytic truths; ``method`` is ``"analytic"`` (possibly with a note in
    parentheses, e.g. numerical quadrature) or ``"monte-carlo (n draws, seed s)"``.
    """

    value: float
    se: float = 0.0
    method: str = "analytic"


TruthSpec = float | Truth | Callable[[], "float | Truth"] | None


@dataclass(frozen=True, eq=False, init=False)
class CaseQuery:
    """One causal query of a case, with its identification verdict and ground truth.

    Parameters
    ----------
    query
        An :class:`~causal_pp.Interventional` (its truth is the mean of the single outcome
        under the intervention), an :class:`~causal_pp.ATE`, or an :class:`~causal_pp.ETT`
        (the effect of treatment on the treated, a counterfactual query: its Monte Carlo
        truth needs a discrete treatment, so give a continuous one an analytic truth).
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
    """

    query: Interventional | ATE | ETT
    identified: bool
    published: float | None
    outcome_sd: float | None
    note: str
    mc_draws: int
    mc_seed: int
    _truth: TruthSpec = field(repr=False)
    _naive: float | Callable[[], float] | None = field(repr=False)
    _case: Case | None = field(repr=False)

    def __init__(
        self,
        query: Interventional | ATE | ETT,
        identified: bool,
        truth: TruthSpec = None,
        *,
        published: float | None = None,
        naive: float | Callable[[], float] | None = None,
        outcome_sd: float | None = None,
        note: str = "",
        mc_draws: int = MC_DRAWS,
        mc_seed: int = MC_SEED,
    ) -> None:
        if not isinstance(query, (Interventional, ATE, ETT)):
            raise CaseError(f"a case query needs an Interventional, ATE or ETT; got {type(query).__name__}.")
        if isinstance(query, Interventional) and len(query.outcomes) != 1:
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
            ("_truth", truth),
            ("_naive", naive),
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

    def _bound(self, case: Case) -> CaseQuery:
        """This query as part of ``case``: a missing truth comes from ``case``'s simulator."""
        if self._truth is not None:
            return self
        bound = copy.copy(self)
        bound.__dict__.pop("_resolved", None)  # a fresh cache: another case, another truth
        object.__setattr__(bound, "_case", case)
        return bound

    def __repr__(self) -> str:
        verdict = "identified" if self.identified else "NOT identified"
        pub = "" if self.published is None else f", published={self.published:g}"
        return f"CaseQuery({self.query!r}, {verdict}{pub})"


# --- the case -----------------------------------------------------------------------------


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
            bound[qname] = cq._bound(self)
        object.__setattr__(self, "queries", MappingProxyType(bound))
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))
        object.__setattr__(self, "model_truth", MappingProxyType(dict(self.model_truth)))
        object.__setattr__(self, "latent_scale", MappingProxyType(dict(self.latent_scale)))

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

    def _sample_all(self, n: int, do: Mapping[str, float], seed: int) -> Mapping[str, np.ndarray]:
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
        values = self._sample_all(n, self._check_do(do), seed)
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
        cq = self._query(query_name)
        q = cq.query
        if isinstance(q, ETT):
            raise QueryError(
                f"{q}: truth samples are interventional draws; an ETT is a counterfactual contrast "
                "(see monte_carlo_truth for its value)."
            )
        if q.conditions:
            raise QueryError(f"{q}: truth samples of conditional queries are not supported.")
        if isinstance(q, Interventional):
            return np.asarray(self._sample_all(n, q.interventions, seed)[q.outcomes[0]], dtype=float)
        arms = {"treated": q.treated, "control": q.control}
        if arm == "both":
            return np.stack(
                [
                    np.asarray(self._sample_all(n, {q.treatment: arms[a]}, seed)[q.outcome], float)
                    for a in arms
                ]
            )
        if arm not in arms:
            raise CaseError(f"arm must be 'treated', 'control' or 'both'; got {arm!r}.")
        return np.asarray(self._sample_all(n, {q.treatment: arms[arm]}, seed)[q.outcome], dtype=float)

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

    def __repr__(self) -> str:
        return f"Case({self.name!r}, graph={self.graph.to_string()!r}, queries={list(self.queries)})"


# --- Monte Carlo --------------------------------------------------------------------------


def _chunk_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])


def _draws(case: Case, n: int, do: Mapping[str, float], seed: int, outcome: str) -> np.ndarray:
    """Outcome draws (or, for an SCM, its conditional means given its parents)."""
    if isinstance(case.sampler, SCM):
        _, cond = case.sampler.sample(n, do, seed, means=True)
        return cond[outcome]
    return np.asarray(case.sampler(n, do, seed)[outcome], dtype=float)


def monte_carlo_truth(
    case: Case, query: Interventional | ATE | ETT, *, n: int = MC_DRAWS, seed: int = MC_SEED
) -> Truth:
    """Estimate a query's true value from ``case``'s simulator under the intervention(s).

    Draws come in chunks with seeds derived from ``seed``. For an :class:`SCM` the outcome's
    conditional mean given its parents is averaged (Rao-Blackwellised: same expectation,
    smaller variance). An :class:`~causal_pp.ATE` contrasts both arms on the same units. An
    :class:`~causal_pp.ETT` contrasts them on the same units too, averaged over the units
    whose *factual* treatment (the simulator's observational draw with the same seed, hence
    the same exogenous noise) equals ``treated``; this needs a discrete treatment.
    """
    s = ss = 0.0
    done = kept = 0
    i = 0
    while done < n:
        m = min(_CHUNK, n - done)
        cs = _chunk_seed(seed, i)
        if isinstance(query, Interventional):
            d = _draws(case, m, query.interventions, cs, query.outcomes[0])
        else:
            d = _draws(case, m, {query.treatment: query.treated}, cs, query.outcome) - _draws(
                case, m, {query.treatment: query.control}, cs, query.outcome
            )
            if isinstance(query, ETT):
                factual = np.asarray(case._sample_all(m, {}, cs)[query.treatment], dtype=float)
                d = d[factual == query.treated]
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
    case: Case | SCM, query: Interventional | ATE, *, n: int = MC_DRAWS, seed: int = MC_SEED
) -> float:
    """The confounded observational answer for a discrete treatment, by Monte Carlo.

    ``E[Y | T = t]`` (all treatments at their ``do`` values) for an
    :class:`~causal_pp.Interventional`; ``E[Y | T=treated] - E[Y | T=control]`` for an ATE.
    """
    sampler = case.sampler if isinstance(case, Case) else case
    v = sampler(n, {}, seed)

    def cond_mean(assign: Mapping[str, float], outcome: str) -> float:
        keep = np.ones(n, bool)
        for k, x in assign.items():
            keep &= v[k] == x
        if keep.sum() < 100:
            raise CaseError(f"too few units with {assign} in {n} observational draws for a naive mean.")
        return float(np.mean(v[outcome][keep]))

    if isinstance(query, Interventional):
        return cond_mean(query.interventions, query.outcomes[0])
    return cond_mean({query.treatment: query.treated}, query.outcome) - cond_mean(
        {query.treatment: query.control}, query.outcome
    )


# --- the registry -------------------------------------------------------------------------

_REGISTRY: dict[str, Case] = {}


def register(case: Case, *, replace: bool = False) -> Case:
    """Add a case to the registry so :func:`get_case` and the CLI find it.

    Raises
    ------
    DuplicateCaseError
        A case of that name exists and ``replace`` is False.

    Examples
    --------
    >>> import dataclasses
    >>> from causal_pp import cases
    >>> mine = dataclasses.replace(cases.get_case("bow"), name="my_bow")
    >>> cases.register(mine).name
    'my_bow'
    >>> try:
    ...     cases.register(mine)
    ... except cases.DuplicateCaseError as err:
    ...     print(err)
    a case named 'my_bow' is already registered; pass replace=True to overwrite it.
    >>> cases.unregister("my_bow")
    """
    if not isinstance(case, Case):
        raise CaseError(f"register() takes a causal_pp.cases.Case; got {type(case).__name__}.")
    if case.name in _REGISTRY and not replace:
        raise DuplicateCaseError(
            f"a case named {case.name!r} is already registered; pass replace=True to overwrite it."
        )
    _REGISTRY[case.name] = case
    return case


def unregister(name: str) -> None:
    """Remove a case from the registry (raises :class:`UnknownCaseError` if absent)."""
    get_case(name)
    del _REGISTRY[name]


def registry() -> dict[str, Case]:
    """All registered cases, ``{name: Case}``, built-in ones first in a fixed order (a copy)."""
    return dict(_REGISTRY)


def get_case(name: str) -> Case:
    """The registered case called ``name``.

    Raises
    ------
    UnknownCaseError
        No such case; the message lists the registered names. It is a ``KeyError`` too.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> get_case("napkin").graph.latent
    ('U_WY', 'U_XW')
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownCaseError(
            f"no case named {name!r}; available cases: {', '.join(_REGISTRY) or '(none)'}. "
            "Add your own with causal_pp.cases.register(Case(...))."
        ) from None
