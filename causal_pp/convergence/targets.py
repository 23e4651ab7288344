"""What a convergence study estimates, against which truth: a case's query or a user's own model.

A :class:`Target` carries everything a cell needs (simulator, model, query, truth) and a
fingerprint of the code behind it (:mod:`.identity`), so results computed from other code are
never reused. Targets travel to worker processes: a built-in case pickles by its registry name,
a target loaded from an import path (``mypkg.models:frontdoor_case``, see :func:`load_object`)
by that path, anything else by value.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cases.case import MODEL
from ..errors import CausalPPError
from ..identification import identify
from ..queries import ATE, Interventional, Query
from .identity import case_fingerprint, model_fingerprint

__all__ = [
    "CaseTruthDraws",
    "Target",
    "case_target",
    "derive_cell_seed",
    "load_object",
    "outcome_label",
    "resolve_target",
    "target_from_path",
    "targets_of",
]


def derive_cell_seed(seed: int, n: int, replicate: int) -> int:
    """A cell's seed: depends only on (seed, N, replicate), so a resumed or sharded grid reproduces it.

    Examples
    --------
    >>> derive_cell_seed(0, 50, 0) == derive_cell_seed(0, 50, 0) != derive_cell_seed(0, 50, 1)
    True
    """
    return int(np.random.SeedSequence([seed, n, replicate]).generate_state(1)[0] % (2**31 - 1))


@dataclass(frozen=True)
class CaseTruthDraws:
    """Draws from a case query's true interventional distribution: ``(n, seed) -> array``.

    A picklable callable (a lambda would not reach a worker process).

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> CaseTruthDraws(get_case("frontdoor"), "ate")(3, 0).shape
    (3,)
    """

    case: Any
    query_name: str

    def __call__(self, n: int, seed: int) -> np.ndarray:
        return np.asarray(self.case.truth_samples(self.query_name, n, seed=seed))


@dataclass(frozen=True)
class Target:
    """What a study estimates and against what truth.

    Attributes
    ----------
    name
        ``case/query`` for a case's query, the model's name for a user's model.
    query, truth, identified
        The query, its true value, and the identification verdict.
    simulate, model, truth_samples
        ``simulate(n, seed=...)`` -> data; the model to fit; ``truth_samples(n, seed)`` -> draws
        of the true outcome distribution (or None).
    fingerprint
        A hash of the code and parameters behind the target (see :mod:`.identity`).
    case, source, query_name
        The case the target belongs to (None for a user's model), the import path it was loaded
        from (None otherwise) and the case's query name: a target pickles as (import path, query)
        or (case, query) where it has them -- the case by its registry name -- and by value
        otherwise.
    kind, true_bounds
        How its cells are computed, from the case query's ``kind``: ``"model"`` (fit the model,
        estimate from the posterior; :mod:`.cells`) or ``"bounds"`` (the posterior of the sharp
        bounds; :mod:`.bounds_cells`), and for ``"bounds"`` the true sharp bounds.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> t = resolve_target(get_case("frontdoor"), "ate", None, None, None)
    >>> t.name, t.truth, t.identified
    ('frontdoor/ate', -1.5, True)
    """

    name: str
    query: Query
    truth: float
    identified: bool
    simulate: Callable[..., Any]
    model: Any
    truth_samples: Callable[[int, int], np.ndarray] | None
    fingerprint: str = ""
    case: Any = None
    source: str | None = None
    query_name: str | None = None
    kind: str = MODEL
    true_bounds: tuple[float, float] | None = None

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Rebuilt from its import path or its case: user code and case models that plain pickle
        # cannot carry (lambdas, local functions) still arrive; the truths are not recomputed.
        known = (self.query_name, self.truth, self.identified, self.fingerprint, self.true_bounds)
        if self.source is not None:
            return target_from_path, (self.source, *known)
        if self.case is not None and self.query_name is not None:
            return case_target, (self.case, *known)
        return super().__reduce_ex__(protocol)


def _case_query_name(case: Any, query: str | Query | None) -> str:
    queries = case.queries
    if query is None:
        return next(iter(queries))
    if isinstance(query, str):
        if query not in queries:
            raise CausalPPError(
                f"case {case.name!r} has no query {query!r}; its queries are {list(queries)}."
            )
        return query
    matches = [k for k, v in queries.items() if v.query == query]
    if not matches:
        raise CausalPPError(
            f"{query} is not one of case {case.name!r}'s queries ({list(queries)}); "
            "pass a query name, or pass a model with simulate= and truth=."
        )
    return matches[0]


def resolve_target(
    case_or_model: Any,
    query: str | Query | None,
    simulate: Callable[..., Any] | None,
    truth: float | None,
    truth_samples: Callable[[int, int], np.ndarray] | None,
) -> Target:
    """The :class:`Target` of a case's query, or of a user's model with its simulator and truth.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> resolve_target(get_case("bow"), None, None, None, None).identified
    False
    """
    queries = getattr(case_or_model, "queries", None)
    if queries is not None and hasattr(case_or_model, "simulate"):
        case = case_or_model
        qname = _case_query_name(case, query)
        cq = queries[qname]
        return case_target(case, qname, float(cq.truth), bool(cq.identified), case_fingerprint(case))
    # A user's own CausalModel: they supply the simulator and the truth.
    if simulate is None or truth is None or not isinstance(query, Query):
        raise CausalPPError(
            "study() on your own model needs query= (an Interventional, ATE or ETT), simulate= "
            "(n, seed=...) -> data, and truth= (the true value of the query)."
        )
    graph = case_or_model.graph
    ident = identify(graph, query, strict=False)
    return Target(
        name=str(getattr(case_or_model, "name", None) or getattr(case_or_model, "__name__", "model")),
        query=query,
        truth=float(truth),
        identified=ident.identified,
        simulate=simulate,
        model=case_or_model,
        truth_samples=truth_samples,
        fingerprint=model_fingerprint(case_or_model, simulate, float(truth), truth_samples),
    )


def case_target(
    case: Any,
    query_name: str,
    truth: float,
    identified: bool,
    fingerprint: str,
    true_bounds: tuple[float, float] | None = None,
) -> Target:
    """The target of a case's query, its truth, verdict and fingerprint given.

    A ``kind="bounds"`` query's true bounds are read from the case unless given.

    Examples
    --------
    >>> from causal_pp.cases import get_case
    >>> case_target(get_case("bow"), "ate", 1.0, False, "f").name
    'bow/ate'
    """
    cq = case.queries[query_name]
    kind = getattr(cq, "kind", MODEL)  # a duck-typed case's query: fitted
    if kind != MODEL and true_bounds is None:
        true_bounds = cq.true_bounds
    return Target(
        name=f"{case.name}/{query_name}",
        query=cq.query,
        truth=truth,
        identified=identified,
        simulate=case.simulate,
        model=case.model,
        # only asked for where the estimate has unit-level outcome draws (not for an ETT)
        truth_samples=CaseTruthDraws(case, query_name),
        fingerprint=fingerprint,
        case=case,
        query_name=query_name,
        kind=kind,
        true_bounds=None if true_bounds is None else (float(true_bounds[0]), float(true_bounds[1])),
    )


def load_object(path: str) -> Any:
    """The object at an import path ``"package.module:attribute"`` (attributes may be dotted).

    Raises
    ------
    CausalPPError
        The path is malformed, the module cannot be imported, or it has no such attribute.

    Examples
    --------
    >>> load_object("causal_pp.cases:get_case")("bow").name
    'bow'
    """
    module_name, sep, attr = str(path).partition(":")
    if not sep or not module_name or not attr:
        raise CausalPPError(
            f"{path!r} is not an import path; write MODULE:ATTRIBUTE, e.g. mypkg.models:frontdoor_case."
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise CausalPPError(
            f"cannot import {module_name!r} (from {path!r}): {err}. Is the package installed, or its "
            "folder on PYTHONPATH?"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CausalPPError(
                f"module {module_name!r} has no attribute {attr!r} (from {path!r})."
            ) from None
    return obj


def targets_of(obj: Any, queries: list[str] | None = None, *, source: str | None = None) -> list[Target]:
    """The targets of a user's object: a :class:`~causal_pp.cases.Case` or a model description.

    ``obj`` is either a case (anything with ``queries`` and ``simulate``: one target per name in
    ``queries``, default its first query), or an object with the attributes ``model`` (a
    :class:`~causal_pp.CausalModel`), ``query``, ``simulate`` (``(n, seed=...) -> data``) and
    ``truth`` (a number), and optionally ``truth_samples`` (``(n, seed) -> draws``) and ``name``
    -- a module, a :class:`types.SimpleNamespace` or a dataclass. A zero-argument callable that
    returns either is called first.

    Examples
    --------
    >>> import types
    >>> from causal_pp.cases import get_case
    >>> case = get_case("frontdoor")
    >>> spec = types.SimpleNamespace(model=case.model, query=case.queries["ate"].query,
    ...                              simulate=case.simulate, truth=-1.5, name="my_frontdoor")
    >>> [t.name for t in targets_of(spec)]
    ['my_frontdoor']
    """
    if callable(obj) and not hasattr(obj, "simulate") and not hasattr(obj, "model"):
        obj = obj()
    if hasattr(obj, "queries") and hasattr(obj, "simulate"):
        names = queries or [next(iter(obj.queries))]
        out = [resolve_target(obj, q, None, None, None) for q in names]
    else:
        missing = [a for a in ("model", "query", "simulate", "truth") if not hasattr(obj, a)]
        if missing:
            raise CausalPPError(
                f"{source or type(obj).__name__} is neither a causal_pp Case nor a model description: it "
                f"lacks {', '.join(missing)}. Give a Case, or an object with model, query, simulate and "
                "truth (optionally truth_samples and name)."
            )
        if queries:
            raise CausalPPError(f"{source or 'the model'} defines one query; drop --query.")
        target = resolve_target(
            obj.model, obj.query, obj.simulate, obj.truth, getattr(obj, "truth_samples", None)
        )
        name = getattr(obj, "name", None)
        out = [dataclasses.replace(target, name=str(name))] if name else [target]
    return [dataclasses.replace(t, source=source) for t in out] if source else out


def target_from_path(
    source: str,
    query_name: str | None,
    truth: float,
    identified: bool,
    fingerprint: str,
    true_bounds: tuple[float, float] | None = None,
) -> Target:
    """Rebuild a target from its import path (in a worker process), keeping the driver's truth.

    Examples
    --------
    >>> target_from_path("causal_pp.cases.frontdoor:make_frontdoor", "ate", -1.5, True, "f").name
    'frontdoor/ate'
    """
    (target,) = targets_of(load_object(source), [query_name] if query_name else None)
    return dataclasses.replace(
        target,
        truth=truth,
        identified=identified,
        fingerprint=fingerprint,
        source=source,
        true_bounds=target.true_bounds if true_bounds is None else true_bounds,
    )


@functools.singledispatch
def outcome_label(query: Any) -> str:
    """How a study's plot names the outcome whose distribution it shows."""
    return str(query)


@outcome_label.register(ATE)
def _(query: ATE) -> str:
    return f"{query.outcome} under do({query.treatment}={query.treated:g})"


@outcome_label.register(Interventional)
def _(query: Interventional) -> str:
    return f"{', '.join(query.outcomes)} under do({', '.join(f'{k}={v:g}' for k, v in query.do)})"
