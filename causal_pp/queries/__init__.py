"""Causal queries: small frozen dataclasses that say *what* is asked, not how it is computed.

=====================  ===========================================================  =========================
query                  meaning                                                      module
=====================  ===========================================================  =========================
:class:`Interventional`  P(outcome | do(x), given)                                  :mod:`.interventional`
:class:`ATE`             E[Y | do(treated)] - E[Y | do(control)]                    :mod:`.interventional`
:class:`Counterfactual`  P(outcome_{do} | factual)                                  :mod:`.counterfactual`
:class:`ETT`             E[Y_x - Y_x' | X = x]                                      :mod:`.counterfactual`
:class:`PN`, :class:`PS`, :class:`PNS`  probabilities of causation                  :mod:`.counterfactual`
=====================  ===========================================================  =========================

Every query derives from :class:`Query` (its roles and the check against a graph live there,
in :mod:`.base`). Adding a query type: a class here, plus its registrations with
``causal_pp.identification.dispatch.identifier`` and ``causal_pp.estimation.dispatch.estimator``.

Examples
--------
>>> from causal_pp.queries import ATE, Query
>>> isinstance(ATE("X", "Y"), Query)
True
"""

from __future__ import annotations

from .base import Query, Roles, query_text
from .counterfactual import ETT, PN, PNS, PS, CausationQuery, Counterfactual, CounterfactualQuery
from .interventional import ATE, Interventional

__all__ = [
    "ATE",
    "ETT",
    "PN",
    "PNS",
    "PS",
    "CausationQuery",
    "Counterfactual",
    "CounterfactualQuery",
    "Interventional",
    "Query",
    "Roles",
    "query_text",
]
