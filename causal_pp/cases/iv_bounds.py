"""Binary instrumental variable: Z -> X -> Y, U -> X, U -> Y with U latent; Balke-Pearl bounds.

Ground truth (logistic, one standard-normal latent, a strong instrument)::

    Z ~ Bernoulli(pi_Z);  U ~ N(0, 1);
    X ~ Bernoulli(sigmoid(alpha_X + beta_ZX Z + lambda_X U));
    Y ~ Bernoulli(sigmoid(alpha_Y + beta_XY X + lambda_Y U))

The ATE is not identified (X and Y are confounded), but the instrument confines it to the
Balke-Pearl bounds: with these parameters ATE = 0.2583 lies strictly inside
[0.1603, 0.4354], an interval of width 0.275 -- strictly narrower than the natural (Manski)
bounds, of width 1. Those ends are each one of Balke & Pearl's eight expressions
(``p11.1 + p00.0 - 1`` and ``1 - p01.1 - p10.0``), each more than 0.2 clear of the next, so
the bounds are smooth functions of P(z, x, y) at the truth (no kink): their posterior means
converge like 1/sqrt(N). The truths are exact (Gauss-Hermite quadrature over U,
:mod:`.exact`; bounds by :func:`causal_pp.partial.bounds_from_distribution`).
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

__all__ = ["iv_bounds_model", "make_iv_bounds"]

#: True parameters of the simulator.
PARAMETERS = {
    "pi_Z": 0.5,
    "alpha_X": -2.5,
    "beta_ZX": 5.0,
    "lambda_X": 1.5,
    "alpha_Y": -1.0,
    "beta_XY": 1.5,
    "lambda_Y": 1.5,
}

GRAPH = CausalGraph.parse("Z -> X; U -> X; U -> Y; X -> Y", latent=["U"])
QUERY = ATE("X", "Y", treated=1.0, control=0.0)


def _scm(p: dict[str, float]) -> SCM:
    return SCM(
        [
            Equation("Z", (), constant(p["pi_Z"]), "bernoulli"),
            Equation("U", (), constant(0.0)),
            Equation(
                "X",
                ("Z", "U"),
                lambda z, u: expit(p["alpha_X"] + p["beta_ZX"] * z + p["lambda_X"] * u),
                "bernoulli",
            ),
            Equation(
                "Y",
                ("X", "U"),
                lambda x, u: expit(p["alpha_Y"] + p["beta_XY"] * x + p["lambda_Y"] * u),
                "bernoulli",
            ),
        ]
    )


def iv_bounds_model(n: int) -> None:
    """The binary IV graph as a logistic latent variable model (correctly specified).

    U standardised; ``lambda_X`` positive fixes its sign, ``lambda_Y`` takes either sign.
    """
    pi_z = pyro.sample("pi_Z", dist.Beta(1.0, 1.0))
    a_x = pyro.sample("alpha_X", dist.Normal(0.0, 3.0))
    b_zx = pyro.sample("beta_ZX", dist.Normal(0.0, 3.0))
    lam_x = pyro.sample("lambda_X", dist.HalfNormal(2.5))
    a_y = pyro.sample("alpha_Y", dist.Normal(0.0, 3.0))
    b_xy = pyro.sample("beta_XY", dist.Normal(0.0, 3.0))
    lam_y = pyro.sample("lambda_Y", dist.Normal(0.0, 2.5))
    with units(n):
        z = pyro.sample("Z", dist.Bernoulli(pi_z))
        u = pyro.sample("U", dist.Normal(0.0, 1.0))
        x = pyro.sample("X", dist.Bernoulli(logits=a_x + b_zx * z + lam_x * u))
        pyro.sample("Y", dist.Bernoulli(logits=a_y + b_xy * x + lam_y * u))


def _truth(scm: SCM) -> Truth:
    value = binary_ate(scm, "U", "X", "Y")
    return Truth(value, 0.0, f"analytic (1-D Gauss-Hermite quadrature, {QUADRATURE_NODES} nodes)")


def _sharp_bounds(scm: SCM) -> tuple[float, float]:
    return bounds_from_distribution(GRAPH, QUERY, binary_table(scm, "U"))


def make_iv_bounds(**overrides: float) -> Case:
    """The binary instrumental-variable case; keyword arguments override :data:`PARAMETERS`.

    Examples
    --------
    >>> q = make_iv_bounds().queries["ate"]
    >>> lo, hi = q.true_bounds
    >>> round(lo, 4), round(q.truth, 4), round(hi, 4)
    (0.1603, 0.2583, 0.4354)
    """
    p = {**PARAMETERS, **overrides}
    scm = _scm(p)
    return Case(
        name="iv_bounds",
        description=(
            "Binary instrumental variable: a strong instrument Z -> X -> Y, with a standard-normal latent "
            "U confounding X and Y (logistic equations). The ATE (0.258) is NOT identified; the "
            "Balke-Pearl bounds [0.160, 0.435] contain it strictly and are far narrower than the natural "
            "bounds (width 1). A bounds case: a study scores the posterior of the bounds against them."
        ),
        graph=GRAPH,
        fn=iv_bounds_model,
        sampler=scm,
        queries={
            "ate": CaseQuery(
                QUERY,
                identified=False,
                truth=functools.partial(_truth, scm),
                naive=functools.partial(binary_naive_ate, scm, "U", "X", "Y"),
                kind=BOUNDS,
                bounds=functools.partial(_sharp_bounds, scm),
                note="Not identified; true sharp bounds = Balke-Pearl bounds of the exact P(Z, X, Y).",
            )
        },
        parameters=p,
        reference="Balke & Pearl, 'Bounds on treatment effects from studies with imperfect compliance', JASA 92 (1997).",
        model_truth=dict(p),
        latent_scale={"U": (0.0, 1.0)},
        domains={"Z": (0, 1), "X": (0, 1), "Y": (0, 1)},
    )
