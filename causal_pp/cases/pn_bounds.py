"""Probability of necessity in X -> Y without monotonicity: a mixture of response types.

Ground truth: X ~ Bernoulli(pi_X) and, independently of X, each unit is one of four response
types of Y -- never (Y_0, Y_1) = (0, 0), complier (0, 1), defier (1, 0), always (1, 1) -- with
probabilities ``q_never``, ``q_complier``, ``q_defier``, ``q_always``; Y is its type's response
to X. The type is a latent R_Y ~ N(0, 1) cut at normal quantiles (``Y`` a deterministic
function of X and R_Y), so the simulator's worlds share it: a counterfactual is a unit's own.

X and Y are not confounded, so P(y_x) = P(y | x), but without monotonicity (defiers exist)
PN = P(Y_0 = 0 | X = 1, Y = 1) = q_complier / (q_complier + q_always) is NOT identified. With
p1 = P(Y=1 | X=1) and p0 = P(Y=1 | X=0), Tian & Pearl's (2000) sharp bounds are

    max{0, 1 - p0 / p1} <= PN <= min{1, (1 - p0) / p1};

here p1 = 0.8, p0 = 0.4: PN = 0.625 inside [0.5, 0.75], both ends clear of 0 and 1. The truths
are exact (the type probabilities), the true bounds
:func:`causal_pp.partial.bounds_from_distribution` on the exact P(X, Y).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
from scipy.stats import norm

from ..errors import CaseError
from ..graph import CausalGraph
from ..model import units
from ..partial import bounds_from_distribution
from ..queries import PN
from .case import BOUNDS, Case, CaseQuery
from .scm import SCM, Equation, constant
from .truth import Truth

__all__ = ["make_pn_bounds", "pn_bounds_model"]

#: True parameters: P(X = 1) and the response-type probabilities of Y.
PARAMETERS = {"pi_X": 0.5, "q_never": 0.1, "q_complier": 0.5, "q_defier": 0.1, "q_always": 0.3}

#: (Y_0, Y_1) of each response type, in the order of PARAMETERS.
RESPONSES = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])

GRAPH = CausalGraph.parse("X -> Y; R_Y -> Y", latent=["R_Y"])
QUERY = PN("X", "Y", treated=1.0, control=0.0, outcome_value=1.0)


def _types(p: dict[str, float]) -> np.ndarray:
    q = np.array([p["q_never"], p["q_complier"], p["q_defier"], p["q_always"]], dtype=float)
    if np.any(q < 0) or not np.isclose(q.sum(), 1.0):
        raise CaseError(f"response-type probabilities must be >= 0 and sum to 1; got {q.tolist()}.")
    return q


def _response(cuts: np.ndarray, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Y of each unit: its type (R_Y between normal quantiles) responding to X."""
    kind = np.searchsorted(cuts, np.asarray(r, dtype=float))
    return RESPONSES[kind, np.asarray(x, dtype=float).astype(int)]


def _scm(p: dict[str, float]) -> SCM:
    cuts = norm.ppf(np.cumsum(_types(p))[:-1])
    return SCM(
        [
            Equation("X", (), constant(p["pi_X"]), "bernoulli"),
            Equation("R_Y", (), constant(0.0)),
            # P(Y = 1 | X, R_Y) is 0 or 1: Y is a deterministic function of X and the type.
            Equation("Y", ("X", "R_Y"), functools.partial(_response, cuts), "bernoulli"),
        ]
    )


def pn_bounds_model(n: int) -> None:
    """A logistic model of X -> Y with a latent per-unit disturbance R_Y of Y.

    It reproduces any P(X, Y), which is all the data can tell; PN is not identified from it.
    """
    pi_x = pyro.sample("pi_X", dist.Beta(1.0, 1.0))
    a_y = pyro.sample("alpha_Y", dist.Normal(0.0, 3.0))
    b_xy = pyro.sample("beta_XY", dist.Normal(0.0, 3.0))
    lam_y = pyro.sample("lambda_Y", dist.HalfNormal(2.5))
    with units(n):
        x = pyro.sample("X", dist.Bernoulli(pi_x))
        r = pyro.sample("R_Y", dist.Normal(0.0, 1.0))
        pyro.sample("Y", dist.Bernoulli(logits=a_y + b_xy * x + lam_y * r))


def _table(p: dict[str, float]) -> pd.DataFrame:
    """The exact P(X, Y)."""
    q = _types(p)
    rows = []
    for x, p_x in ((0.0, 1.0 - p["pi_X"]), (1.0, p["pi_X"])):
        p_y1 = float(q @ RESPONSES[:, int(x)])
        rows += [(x, 0.0, p_x * (1.0 - p_y1)), (x, 1.0, p_x * p_y1)]
    return pd.DataFrame(rows, columns=["X", "Y", "p"])


def _truth(p: dict[str, float]) -> Truth:
    q = _types(p)
    return Truth(float(q[1] / (q[1] + q[3])), 0.0, "analytic (response-type probabilities)")


def _sharp_bounds(p: dict[str, float]) -> tuple[float, float]:
    return bounds_from_distribution(GRAPH, QUERY, _table(p))


def make_pn_bounds(**overrides: float) -> Case:
    """The PN case; keyword arguments override :data:`PARAMETERS`.

    Examples
    --------
    >>> q = make_pn_bounds().queries["pn"]
    >>> [round(v, 6) for v in q.true_bounds], q.truth
    ([0.5, 0.75], 0.625)
    """
    p = {**PARAMETERS, **overrides}
    return Case(
        name="pn_bounds",
        description=(
            "Probability of necessity in X -> Y, binary, without monotonicity: Y's response type "
            "(never, complier, defier, always: 0.1, 0.5, 0.1, 0.3) is a latent independent of X. "
            "PN = 0.625 is NOT identified; Tian & Pearl's sharp bounds are [0.5, 0.75]. A bounds case: "
            "a study scores the posterior of the bounds against them."
        ),
        graph=GRAPH,
        fn=pn_bounds_model,
        sampler=_scm(p),
        queries={
            "pn": CaseQuery(
                QUERY,
                identified=False,
                truth=functools.partial(_truth, p),
                kind=BOUNDS,
                bounds=functools.partial(_sharp_bounds, p),
                note="Not identified without monotonicity; true sharp bounds = Tian-Pearl bounds of the exact P(X, Y).",
            )
        },
        parameters=p,
        reference="Tian & Pearl, 'Probabilities of causation: bounds and identification', AMAI 28 (2000).",
        domains={"X": (0, 1), "Y": (0, 1)},
    )
