"""Multi-cause front-door (the paper's case study 1): five binary causes, one mediator.

Ground truth (the paper's generator, ``CaseStudy1_MultiCause.Rmd``)::

    U1 ~ N(-8, 10), U2 ~ N(6, 8), U3 ~ N(-5, 7)                  (mean, SD; latent)
    Xi ~ Bernoulli(sigmoid(t0_i + t1_i U1 + t2_i U2 + t3_i U3))   i = 1..5
    M  ~ Bernoulli(sigmoid(-1.4 + .36 X1 + .12 X2 + .10 X3 + .11 X4 + .26 X5))
    Y  ~ Bernoulli(sigmoid(-1.1 + .26 M + .22 U1 + .15 U2 + .11 U3))

Under do(X1..X5 = 0), M ~ Bernoulli(sigmoid(-1.4)) independently of the U's and
``.22 U1 + .15 U2 + .11 U3 ~ N(-1.41, 2.6216^2)``, so the truth
``E[Y | do(X=0)] = sum_m P(M=m) E[sigmoid(-1.1 + .26 m + L)]`` is a one-dimensional Gaussian
integral, computed by Gauss-Hermite quadrature (exact to ~1e-12): 0.217957 (published 0.218).
The naive E[Y | X1..X5 = 0] is 0.0097: strong confounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyro
import pyro.distributions as dist
from scipy.special import expit

from ..graph import CausalGraph
from ..model import units
from ..queries import Interventional
from .case import Case, CaseQuery
from .scm import SCM, Equation, constant
from .truth import Truth, naive_contrast

__all__ = ["make_multicause", "multicause_model"]

#: Latent means and SDs.
U_MEAN = (-8.0, 6.0, -5.0)
U_SD = (10.0, 8.0, 7.0)
#: (intercept, U1, U2, U3) coefficients of X1..X5.
THETA_X = (
    (2.0, 0.23, 0.33, 0.12),
    (1.59, 0.23, 0.34, 0.15),
    (1.52, 0.21, 0.32, 0.13),
    (1.49, 0.24, 0.35, 0.16),
    (1.38, 0.28, 0.38, 0.10),
)
#: (intercept, X1..X5) coefficients of M.
THETA_M = (-1.4, 0.36, 0.12, 0.10, 0.11, 0.26)
#: (intercept, M, U1, U2, U3) coefficients of Y.
THETA_Y = (-1.1, 0.26, 0.22, 0.15, 0.11)

XS = ("X1", "X2", "X3", "X4", "X5")
US = ("U1", "U2", "U3")

GRAPH = CausalGraph(
    [(u, x) for u in US for x in XS] + [(x, "M") for x in XS] + [("M", "Y")] + [(u, "Y") for u in US],
    latent=US,
)


def _logistic(coef: tuple[float, ...]) -> Callable[..., np.ndarray]:
    """``sigmoid(coef[0] + sum_j coef[j] * parent_j)``."""
    return lambda *parents: expit(coef[0] + sum(c * v for c, v in zip(coef[1:], parents, strict=True)))


def _scm() -> SCM:
    eqs = [Equation(u, (), constant(m), scale=s) for u, m, s in zip(US, U_MEAN, U_SD, strict=True)]
    eqs += [Equation(x, US, _logistic(theta), "bernoulli") for x, theta in zip(XS, THETA_X, strict=True)]
    eqs.append(Equation("M", XS, _logistic(THETA_M), "bernoulli"))
    eqs.append(Equation("Y", ("M", *US), _logistic(THETA_Y), "bernoulli"))
    return SCM(eqs)


def quadrature_truth(x: float = 0.0) -> Truth:
    """E[Y | do(X1..X5 = x)] by 200-point Gauss-Hermite quadrature over the latent index."""
    loc = THETA_Y[0] + sum(c * m for c, m in zip(THETA_Y[2:], U_MEAN, strict=True))
    sd = math.sqrt(sum((c * s) ** 2 for c, s in zip(THETA_Y[2:], U_SD, strict=True)))
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    p_m = float(expit(THETA_M[0] + x * sum(THETA_M[1:])))
    value = sum(
        pm * float(np.sum(weights * expit(loc + THETA_Y[1] * m + sd * nodes)))
        for m, pm in ((0, 1 - p_m), (1, p_m))
    )
    return Truth(value, 0.0, "analytic (1-D Gauss-Hermite quadrature, 200 nodes)")


def multicause_model(n: int) -> None:
    """The multi-cause latent variable model: logistic regressions with the DAG's structure.

    U1..U3 are standardised; every loading on them is positive (as in the truth), which fixes
    the latents' signs and shrinks their rotational non-identifiability to a bounded set.
    The query does not depend on how the latents are rotated. Coefficients of the observed
    parents (X -> M, M -> Y) are unconstrained.
    """
    a_x = pyro.sample("alpha_X", dist.Normal(0.0, 3.0).expand([5]).to_event(1))
    lam_x = pyro.sample("lambda_X", dist.HalfNormal(2.5).expand([5, 3]).to_event(2))
    a_m = pyro.sample("alpha_M", dist.Normal(0.0, 3.0))
    b_m = pyro.sample("beta_XM", dist.Normal(0.0, 1.5).expand([5]).to_event(1))
    a_y = pyro.sample("alpha_Y", dist.Normal(0.0, 3.0))
    b_y = pyro.sample("beta_MY", dist.Normal(0.0, 1.5))
    lam_y = pyro.sample("lambda_Y", dist.HalfNormal(2.5).expand([3]).to_event(1))
    with units(n):
        u = [pyro.sample(name, dist.Normal(0.0, 1.0)) for name in US]
        xs = []
        for i, name in enumerate(XS):
            logit = a_x[..., i] + sum(lam_x[..., i, k] * u[k] for k in range(3))
            xs.append(pyro.sample(name, dist.Bernoulli(logits=logit)))
        logit_m = a_m + sum(b_m[..., i] * xs[i] for i in range(5))
        m = pyro.sample("M", dist.Bernoulli(logits=logit_m))
        logit_y = a_y + b_y * m + sum(lam_y[..., k] * u[k] for k in range(3))
        pyro.sample("Y", dist.Bernoulli(logits=logit_y))


def _model_truth() -> dict[str, object]:
    """:func:`multicause_model`'s global sites at the truth (latents standardised)."""

    def shift(coef: tuple[float, ...]) -> float:
        return sum(c * m for c, m in zip(coef, U_MEAN, strict=True))

    return {
        "alpha_X": [t[0] + shift(t[1:]) for t in THETA_X],
        "lambda_X": [[c * s for c, s in zip(t[1:], U_SD, strict=True)] for t in THETA_X],
        "alpha_M": THETA_M[0],
        "beta_XM": list(THETA_M[1:]),
        "alpha_Y": THETA_Y[0] + shift(THETA_Y[2:]),
        "beta_MY": THETA_Y[1],
        "lambda_Y": [c * s for c, s in zip(THETA_Y[2:], U_SD, strict=True)],
    }


def make_multicause() -> Case:
    """The multi-cause front-door case with the paper's parameters."""
    scm = _scm()
    query = Interventional("Y", do=dict.fromkeys(XS, 0.0))
    params = {f"mean_{u}": m for u, m in zip(US, U_MEAN, strict=True)}
    params |= {f"sd_{u}": s for u, s in zip(US, U_SD, strict=True)}
    for x, row in zip(XS, THETA_X, strict=True):
        params |= {f"theta0_{x}": row[0]} | {f"theta_{u}{x}": v for u, v in zip(US, row[1:], strict=True)}
    params |= {"theta0_M": THETA_M[0]} | {f"theta_{x}M": v for x, v in zip(XS, THETA_M[1:], strict=True)}
    params |= {"theta0_Y": THETA_Y[0], "theta_MY": THETA_Y[1]}
    params |= {f"theta_{u}Y": v for u, v in zip(US, THETA_Y[2:], strict=True)}
    return Case(
        name="multicause",
        description=(
            "Multi-cause front-door (case study 1 of Mohammad-Taheri et al., Bioinformatics "
            "38(S1) i350, 2022): five binary causes X1..X5 share three continuous latent "
            "confounders U1..U3 with a binary outcome Y; the causes act on Y only through a "
            "binary mediator M. The paper's generator and parameters. E[Y | do(X1..X5 = 0)] = "
            "0.21796 (published 0.218) while the naive E[Y | X1..X5 = 0] = 0.0097."
        ),
        graph=GRAPH,
        fn=multicause_model,
        sampler=scm,
        queries={
            "y_do_x0": CaseQuery(
                query,
                identified=True,
                truth=quadrature_truth,
                published=0.218,
                naive=lambda: naive_contrast(scm, query),
                note="The paper's generator: the quadrature truth matches the published 0.218.",
            )
        },
        parameters=params,
        reference="Mohammad-Taheri et al. 2022, case study 1 (code: srtaheri/LVMwithDoCalculus).",
        model_truth=_model_truth(),
        latent_scale={u: (m, s) for u, m, s in zip(US, U_MEAN, U_SD, strict=True)},
    )
