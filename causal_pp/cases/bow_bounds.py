"""Binary bow: U -> X, U -> Y, X -> Y with U latent; the ATE is bounded, not identified.

Ground truth (logistic, one standard-normal latent)::

    U ~ N(0, 1);  X ~ Bernoulli(sigmoid(alpha_X + lambda_X U));
    Y ~ Bernoulli(sigmoid(alpha_Y + beta_XY X + lambda_Y U))

With nothing but (X, Y) observed, every P(x, y) is reproduced by a model with any ATE in the
natural (no-assumption) bounds

    [P(X=1, Y=1) - P(X=0, Y=1) - P(X=1),  P(X=1, Y=1) - P(X=0, Y=1) + P(X=0)],

of width exactly 1, and these are sharp (Balke & Pearl; Pearl, *Causality*, ch. 8). The truths
are exact: the ATE and P(x, y) are Gaussian integrals over U (Gauss-Hermite quadrature,
:mod:`.exact`), the true sharp bounds are :func:`causal_pp.partial.bounds_from_distribution`
on that exact P(x, y). A convergence study of this case (``kind="bounds"``) measures how the
posterior of the bounds approaches them.
"""

from __future__ import annotations

import functools

import pyro
import pyro.distributions as dist
from scipy.special import expit

from ..graph import CausalGraph
from ..model import units
from ..partial import bounds_from_distribution
from ..queries import ATE
from .case import BOUNDS, Case, CaseQuery
from .exact import QUADRATURE_NODES, binary_ate, binary_naive_ate, binary_table
from .scm import SCM, Equation, constant
from .truth import Truth

__all__ = ["bow_bounds_model", "make_bow_bounds"]

#: True parameters of the simulator.
PARAMETERS = {"alpha_X": 0.0, "lambda_X": 1.5, "alpha_Y": -1.0, "beta_XY": 1.5, "lambda_Y": 1.5}

GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"])
QUERY = ATE("X", "Y", treated=1.0, control=0.0)


def _scm(p: dict[str, float]) -> SCM:
    return SCM(
        [
            Equation("U", (), constant(0.0)),
            Equation("X", ("U",), lambda u: expit(p["alpha_X"] + p["lambda_X"] * u), "bernoulli"),
            Equation(
                "Y",
                ("X", "U"),
                lambda x, u: expit(p["alpha_Y"] + p["beta_XY"] * x + p["lambda_Y"] * u),
                "bernoulli",
            ),
        ]
    )


def bow_bounds_model(n: int) -> None:
    """The binary bow as a logistic latent variable model (correctly specified for the simulator).

    U standardised; ``lambda_X`` positive fixes its sign, ``lambda_Y`` takes either sign.
    """
    a_x = pyro.sample("alpha_X", dist.Normal(0.0, 3.0))
    lam_x = pyro.sample("lambda_X", dist.HalfNormal(2.5))
    a_y = pyro.sample("alpha_Y", dist.Normal(0.0, 3.0))
    b_xy = pyro.sample("beta_XY", dist.Normal(0.0, 3.0))
    lam_y = pyro.sample("lambda_Y", dist.Normal(0.0, 2.5))
    with units(n):
        u = pyro.sample("U", dist.Normal(0.0, 1.0))
        x = pyro.sample("X", dist.Bernoulli(logits=a_x + lam_x * u))
        pyro.sample("Y", dist.Bernoulli(logits=a_y + b_xy * x + lam_y * u))


def _truth(scm: SCM) -> Truth:
    value = binary_ate(scm, "U", "X", "Y")
    return Truth(value, 0.0, f"analytic (1-D Gauss-Hermite quadrature, {QUADRATURE_NODES} nodes)")


def _sharp_bounds(scm: SCM) -> tuple[float, float]:
    return bounds_from_distribution(GRAPH, QUERY, binary_table(scm, "U"))


def make_bow_bounds(**overrides: float) -> Case:
    """The binary bow case; keyword arguments override :data:`PARAMETERS`.

    Examples
    --------
    >>> q = make_bow_bounds().queries["ate"]
    >>> lo, hi = q.true_bounds
    >>> round(hi - lo, 12), lo < q.truth < hi  # the natural bounds: width 1
    (1.0, True)
    """
    p = {**PARAMETERS, **overrides}
    scm = _scm(p)
    return Case(
        name="bow_bounds",
        description=(
            "Binary bow: a standard-normal latent U confounds binary X and Y (logistic equations), "
            "X -> Y. The ATE (0.258) is NOT identified; its sharp bounds from P(X, Y) are the natural "
            "bounds, of width exactly 1. A bounds case: a study scores the posterior of the bounds "
            "against the true sharp bounds."
        ),
        graph=GRAPH,
        fn=bow_bounds_model,
        sampler=scm,
        queries={
            "ate": CaseQuery(
                QUERY,
                identified=False,
                truth=functools.partial(_truth, scm),
                naive=functools.partial(binary_naive_ate, scm, "U", "X", "Y"),
                kind=BOUNDS,
                bounds=functools.partial(_sharp_bounds, scm),
                note="Not identified; true sharp bounds = natural bounds of the exact P(X, Y) (width 1).",
            )
        },
        parameters=p,
        reference="Balke & Pearl, JASA 92 (1997); Pearl, Causality 2nd ed. (2009), ch. 8.",
        model_truth=dict(p),
        latent_scale={"U": (0.0, 1.0)},
        domains={"X": (0, 1), "Y": (0, 1)},
    )
