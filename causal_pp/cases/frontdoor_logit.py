"""Front-door with a binary treatment through a logit of the latent and Laplace mediator noise.

The graph is the paper's Example 2 (U -> X -> M -> Y, U -> Y, U latent), but the mechanisms are
not linear-Gaussian. Ground truth::

    U ~ N(0, 1);  X ~ Bernoulli(sigmoid(alpha_X + theta_UX U));
    M = beta_M + theta_XM X + Laplace(0, b_M);  Y = beta_Y + theta_MY M + theta_UY U + N(0, 1)

so ``E[Y | do(X=x)] = beta_Y + theta_MY (beta_M + theta_XM x)`` (E[U] = 0, E[Laplace] = 0) and
the ATE of X = 1 against X = 0 is ``theta_XM theta_MY``. With alpha_X = 0, theta_UX = 1.5,
beta_M = 0.5, theta_XM = 1.5, b_M = 1, beta_Y = 0, theta_MY = -0.8, theta_UY = 1.5 the ATE is
-1.2 and E[Y | do(X=1)] = -1.6, while the confounded contrast E[Y | X=1] - E[Y | X=0] is about
+0.4 (Monte Carlo): the latent flips the sign of the naive answer.

Every unit's effect is theta_XM theta_MY (M's noise is additive and shared between the arms), so
the effect of treatment on the treated equals the ATE.

This is the case of issue #15 ("calibrated beyond Gaussian models"): the per-unit posterior of U
given a binary X is not Gaussian, and the mediator's likelihood is not smooth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist

from ..graph import CausalGraph
from ..model import units
from ..queries import ATE, ETT, Interventional
from .case import Case, CaseQuery
from .scm import SCM, Equation, constant
from .truth import naive_contrast

__all__ = ["ate_functional", "frontdoor_logit_model", "make_frontdoor_logit"]

#: True parameters of the simulator.
PARAMETERS = {
    "alpha_X": 0.0,
    "theta_UX": 1.5,
    "beta_M": 0.5,
    "theta_XM": 1.5,
    "b_M": 1.0,
    "beta_Y": 0.0,
    "theta_MY": -0.8,
    "theta_UY": 1.5,
}

GRAPH = CausalGraph.parse("U -> X; X -> M; M -> Y; U -> Y", latent=["U"])


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # overflow-free logistic


def _scm(p: dict[str, float]) -> SCM:
    return SCM(
        [
            Equation("U", (), constant(0.0)),
            Equation("X", ("U",), lambda u: _sigmoid(p["alpha_X"] + p["theta_UX"] * u), kind="bernoulli"),
            Equation("M", ("X",), lambda x: p["beta_M"] + p["theta_XM"] * x, kind="laplace", scale=p["b_M"]),
            Equation("Y", ("M", "U"), lambda m, u: p["beta_Y"] + p["theta_MY"] * m + p["theta_UY"] * u),
        ]
    )


def frontdoor_logit_model(n: int) -> None:
    """The model a user would write for the simulator: logistic treatment, Laplace mediator.

    Unknown: intercepts, the latent's loading on X's logit (positive: it fixes U's arbitrary
    sign), the path coefficients and U's effect on Y. Known: the noise scales (Laplace scale 1
    for M, SD 1 for Y), as in the linear front-door case; U is standardised.
    """
    a_x = pyro.sample("a_X", dist.Normal(0.0, 5.0))
    a_m = pyro.sample("a_M", dist.Normal(0.0, 5.0))
    a_y = pyro.sample("a_Y", dist.Normal(0.0, 5.0))
    theta_ux = pyro.sample("theta_UX", dist.HalfNormal(3.0))
    theta_xm = pyro.sample("theta_XM", dist.Normal(0.0, 3.0))
    theta_my = pyro.sample("theta_MY", dist.Normal(0.0, 3.0))
    theta_uy = pyro.sample("theta_UY", dist.Normal(0.0, 3.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(0.0, 1.0))
        x = pyro.sample("X", dist.Bernoulli(logits=a_x + theta_ux * u))
        m = pyro.sample("M", dist.Laplace(a_m + theta_xm * x, 1.0))
        pyro.sample("Y", dist.Normal(a_y + theta_my * m + theta_uy * u, 1.0))


def ate_functional(params: Mapping[str, Any]) -> Any:
    """The ATE (X = 1 vs 0) of the model at global parameters ``params`` (floats, arrays or
    tensors of posterior draws), exact: ``theta_XM theta_MY``.

    Examples
    --------
    >>> round(float(ate_functional(make_frontdoor_logit().model_truth)), 6)
    -1.2
    """
    return params["theta_XM"] * params["theta_MY"]


def make_frontdoor_logit(**overrides: float) -> Case:
    """The logistic-treatment, Laplace-mediator front-door case; keyword arguments override
    :data:`PARAMETERS` (the model knows b_M = 1: another b_M makes it misspecified).

    Examples
    --------
    >>> case = make_frontdoor_logit()
    >>> round(case.queries["ate"].truth, 9), round(case.queries["y_do_x1"].truth, 9)
    (-1.2, -1.6)
    >>> sorted(set(case.simulate(200, seed=0)["X"]))
    [0.0, 1.0]
    """
    p = {**PARAMETERS, **overrides}
    effect = p["theta_XM"] * p["theta_MY"]
    scm = _scm(p)
    ate = ATE("X", "Y", treated=1.0, control=0.0)
    y1 = Interventional("Y", do={"X": 1.0})
    return Case(
        name="frontdoor_logit",
        description=(
            "Front-door graph with non-Gaussian mechanisms: X ~ Bernoulli(sigmoid(1.5 U)), M = 0.5 + "
            "1.5 X + Laplace(0, 1), Y = -0.8 M + 1.5 U + N(0, 1), U ~ N(0, 1) latent. ATE -1.2, "
            "E[Y | do(X=1)] = -1.6; the naive contrast E[Y | X=1] - E[Y | X=0] has the wrong sign. "
            "Identified (front-door formula). The model is correctly specified (logistic treatment, "
            "Laplace mediator, known noise scales); its Gaussian-guide SVI fit is the test of issue #15."
        ),
        graph=GRAPH,
        fn=frontdoor_logit_model,
        sampler=scm,
        queries={
            "ate": CaseQuery(
                ate,
                identified=True,
                truth=effect,
                naive=lambda: naive_contrast(scm, ate),
                note="ATE = theta_XM theta_MY; naive: E[Y | X=1] - E[Y | X=0] by Monte Carlo.",
            ),
            "y_do_x1": CaseQuery(
                y1,
                identified=True,
                truth=p["beta_Y"] + p["theta_MY"] * (p["beta_M"] + p["theta_XM"]),
                naive=lambda: naive_contrast(scm, y1),
                note="E[Y | do(X=1)] = beta_Y + theta_MY (beta_M + theta_XM); naive: E[Y | X=1].",
            ),
            "ett": CaseQuery(
                ETT("X", "Y", treated=1.0, control=0.0),
                identified=True,
                truth=effect,
                note="Every unit's effect is theta_XM theta_MY (M's Laplace noise is shared by both arms), "
                "so the ETT equals the ATE.",
            ),
        },
        parameters=p,
        reference="Front-door criterion (Pearl 1995) with non-Gaussian mechanisms; causal_pp issue #15.",
        model_truth={
            "a_X": p["alpha_X"],
            "a_M": p["beta_M"],
            "a_Y": p["beta_Y"],
            **{k: p[k] for k in ("theta_UX", "theta_XM", "theta_MY", "theta_UY")},
        },
        latent_scale={"U": (0.0, 1.0)},
    )
