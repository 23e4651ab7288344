"""What a convergence study estimates, against which truth: a case's query or a user's own model."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CausalPPError
from ..identification import identify
from ..queries import ATE, Interventional, Query

__all__ = ["Target", "derive_cell_seed", "outcome_label", "resolve_target"]


def derive_cell_seed(seed: int, n: int, replicate: int) -> int:
    # Each cell's randomness depends only on (seed, N, replicate): resuming reproduces it.
    return int(np.random.SeedSequence([seed, n, replicate]).generate_state(1)[0] % (2**31 - 1))


@dataclass(frozen=True)
class Target:
    """What a study estimates and against what truth."""

    name: str
    query: Query
    truth: float
    identified: bool
    simulate: Callable[..., Any]
    model: Any
    truth_samples: Callable[[int, int], np.ndarray] | None


def resolve_target(
    case_or_model: Any,
    query: str | Query | None,
    simulate: Callable[..., Any] | None,
    truth: float | None,
    truth_samples: Callable[[int, int], np.ndarray] | None,
) -> Target:
    queries = getattr(case_or_model, "queries", None)
    if queries is not None and hasattr(case_or_model, "simulate"):
        case = case_or_model
        if query is None:
            qname = next(iter(queries))
        elif isinstance(query, str):
            if query not in queries:
                raise CausalPPError(
                    f"case {case.name!r} has no query {query!r}; its queries are {list(queries)}."
                )
            qname = query
        else:
            matches = [k for k, v in queries.items() if v.query == query]
            if not matches:
                raise CausalPPError(
                    f"{query} is not one of case {case.name!r}'s queries ({list(queries)}); "
                    "pass a query name, or pass a model with simulate= and truth=."
                )
            qname = matches[0]
        cq = queries[qname]
        return Target(
            name=f"{case.name}/{qname}",
            query=cq.query,
            truth=float(cq.truth),
            identified=bool(cq.identified),
            simulate=case.simulate,
            model=case.model,
            # only asked for where the estimate has unit-level outcome draws (not for an ETT)
            truth_samples=lambda n, s, _c=case, _q=qname: np.asarray(_c.truth_samples(_q, n, seed=s)),
        )
    # A user's own CausalModel: they supply the simulator and the truth.
    if simulate is None or truth is None or not isinstance(query, Query):
        raise CausalPPError(
            "study() on your own model needs query= (an Interventional, ATE or ETT), simulate= "
            "(n, seed=...) -> data, and truth= (the true value of the query)."
        )
    graph = case_or_model.graph
    ident = identify(graph, query, strict=False)
    return Target(
        name=getattr(case_or_model, "__name__", "model"),
        query=query,
        truth=float(truth),
        identified=ident.identified,
        simulate=simulate,
        model=case_or_model,
        truth_samples=truth_samples,
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
