"""The identification gate: can a causal query be computed from the observed variables?

Every query is decided on the latent projection of the graph, by the algorithm registered for
its type in :data:`~causal_pp.identification.dispatch.identifier`:

=========================================  ==========================================  ======================
query                                      algorithm                                   module
=========================================  ==========================================  ======================
``Interventional``, ``ATE``                ID / IDC (y0, patched) AND our hedge        :mod:`.interventional`
                                           criterion; both must agree
(the two methods)                          y0's ``identify_outcomes``, patched         :mod:`.y0_adapter`
                                           Tian's c-component recursion, rule 2       :mod:`.hedge`
``Counterfactual``, ``ETT``,               ID* / IDC* on our counterfactual graph,     :mod:`.counterfactual`
``PN``, ``PS``, ``PNS``                    every factor gated from P(V); monotone      (:mod:`.id_star`,
                                           and binary-treatment routes                 :mod:`.cf_graph`)
formulas                                   counterfactual estimands                    :mod:`.cf_estimand`
verdicts                                   ``Identification``,                         :mod:`.result`
                                           ``CounterfactualIdentification``
=========================================  ==========================================  ======================

Adding a query type: register its decision function with ``identifier`` (one new module).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import GraphError, NotIdentifiableError
from ..graph import CausalGraph
from ..partial.applicability import bounds_apply
from . import counterfactual as _counterfactual_gate  # noqa: F401  (registers the counterfactual queries)
from . import interventional as _interventional_gate  # noqa: F401  (registers Interventional and ATE)
from .cf_estimand import CounterfactualEstimand, InterventionalTerm, SumProduct
from .cf_graph import CounterfactualGraph, counterfactual_graph
from .counterfactual import identify_counterfactual
from .dispatch import Assumptions, identifier
from .result import CounterfactualIdentification, Identification

__all__ = [
    "Assumptions",
    "CounterfactualEstimand",
    "CounterfactualGraph",
    "CounterfactualIdentification",
    "Identification",
    "InterventionalTerm",
    "SumProduct",
    "counterfactual_graph",
    "identifier",
    "identify",
    "identify_counterfactual",
]


def identify(
    graph: CausalGraph,
    query: Any,
    *,
    strict: bool = True,
    assume_monotonic: bool = False,
    assume_binary_treatment: bool = False,
) -> Identification | CounterfactualIdentification:
    """Decide whether ``query`` can be computed from the observed variables of ``graph``.

    Parameters
    ----------
    graph
        The causal DAG with its latent nodes marked.
    query
        An :class:`~causal_pp.Interventional` or :class:`~causal_pp.ATE` query (queries with
        ``given`` use IDC, others ID; an ATE is identified iff its interventional arms are), or
        a counterfactual query (:class:`~causal_pp.Counterfactual`, ``ETT``, ``PN``, ``PS``,
        ``PNS``), decided by :func:`~causal_pp.identify_counterfactual` (ID*/IDC* from the
        observational distribution).
    strict
        If True (default), a refused query raises :class:`~causal_pp.NotIdentifiableError`;
        if False, the refusal is returned with ``identified=False``.
    assume_monotonic, assume_binary_treatment
        Counterfactual queries only: assumptions under which PN/PS/PNS (monotonicity) or some
        ETTs (a two-valued treatment) become identified. See
        :func:`~causal_pp.identify_counterfactual`.

    Returns
    -------
    Identification or CounterfactualIdentification
        The verdict, the algorithm used, the reason, and the estimand. A refusal also says, in
        ``.bounds``, whether :func:`causal_pp.bounds` applies (the interval the observed data
        confine the query to), and the strict refusal's message names it as the next step.

    Raises
    ------
    NotIdentifiableError
        If ``strict`` and the query is not identifiable; the message names the query, the
        observed set and the confounding that blocks identification.
    UnknownVariableError, LatentVariableQueryError
        If the query names a variable that is not in the graph, or a latent one.
    GraphError, QueryError
        If ``graph`` is not a :class:`~causal_pp.CausalGraph` or ``query`` not a query.

    Notes
    -----
    Verdicts are cached per (graph, query variables): a repeated call costs a dictionary look-up.

    Examples
    --------
    >>> from causal_pp import CausalGraph, Interventional, identify, NotIdentifiableError
    >>> frontdoor = CausalGraph.parse("U -> X; U -> Y; X -> Z -> Y", latent=["U"])
    >>> identify(frontdoor, Interventional("Y", do={"X": 1.0})).identified
    True
    >>> bow = CausalGraph.parse("X -> Y; X <-> Y")
    >>> try:
    ...     identify(bow, Interventional("Y", do={"X": 1.0}))
    ... except NotIdentifiableError as err:
    ...     print(err.reason.split(".")[0])
    P(Y | do(X)) is not identifiable from the observed variables {X, Y}
    """
    if not isinstance(graph, CausalGraph):
        raise GraphError(
            f"identify() needs a CausalGraph as its first argument; got {type(graph).__name__}. "
            "Build one with CausalGraph.parse('X -> Y; ...', latent=[...])."
        )
    if hasattr(query, "validate"):  # anything else is refused by the table's default
        query.validate(graph)
    result = identifier(query, graph, Assumptions(bool(assume_monotonic), bool(assume_binary_treatment)))
    if not result.identified:
        # the next step a refusal can offer: the interval the data pin the query down to
        result = dataclasses.replace(result, bounds=bounds_apply(graph, query))
    if strict and not result.identified:
        hint = f" Next step: {result.bounds.reason}" if result.bounds.applies else ""
        raise NotIdentifiableError(
            f"{query} cannot be estimated: {result.reason}{hint}",
            query=query,
            graph=graph,
            admg=result.admg,
            reason=result.reason,
        )
    return result
