"""Front-door (the paper's Example 2): U -> X -> M -> Y, U -> Y, U latent; linear-Gaussian.

Ground truth (unit noise everywhere)::

    U ~ N(mu_U, 1);  X = theta_UX U + e_X;  M = theta_XM X + e_M;  Y = theta_MY M + theta_UY U + e_Y

so ``P(Y | do(X=x)) = N(x theta_XM theta_MY + mu_U theta_UY, theta_MY^2 + theta_UY^2 + 1)``.
With mu_U = 1, theta_UX = 1.5, theta_XM = 1, theta_MY = -1.5, theta_UY = 2 the ATE of X on
Y is -1.5, while the observational regression slope of Y on X is
theta_XM theta_MY + theta_UY theta_UX / (theta_UX^2 + 1) = -0.577: confounding hides most of
the effect.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist

from ..graph import CausalGraph
from ..model import units
from ..queries import ATE, ETT, Interventional
from .case import Case, CaseQuery
from .scm import SCM, Equation

__all__ = ["frontdoor_model", "make_frontdoor"]

#: True parameters of the simulator.
PARAMETERS = {"mu_U": 1.0, "theta_UX": 1.5, "theta_XM": 1.0, "theta_MY": -1.5, "theta_UY": 2.0}

GRAPH = CausalGraph.parse("U -> X; X -> M; M -> Y; U -> Y", latent=["U"])


def _scm(p: dict[str, float]) -> SCM:
    return SCM(
        [
            Equation("U", (), lambda: p["mu_U"]),
            Equation("X", ("U",), lambda u: p["theta_UX"] * u),
            Equation("M", ("X",), lambda x: p["theta_XM"] * x),
            Equation("Y", ("M", "U"), lambda m, u: p["theta_MY"] * m + p["theta_UY"] * u),
        ]
    )


def frontdoor_model(n: int) -> None:
    """The front-door latent variable model, correctly specified for the simulator.

    Unknown: intercepts, the latent's loading on X (positive: it fixes U's arbitrary sign), the
    path coefficients and U's effect on Y. Known: unit noise SDs (as in the paper's Example 2);
    U is standardised (its mean and scale are absorbed into intercepts and loadings).
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
        x = pyro.sample("X", dist.Normal(a_x + theta_ux * u, 1.0))
        m = pyro.sample("M", dist.Normal(a_m + theta_xm * x, 1.0))
        pyro.sample("Y", dist.Normal(a_y + theta_my * m + theta_uy * u, 1.0))


def make_frontdoor(**overrides: float) -> Case:
    """The front-door case; keyword arguments override :data:`PARAMETERS`."""
    p = {**PARAMETERS, **overrides}
    effect = p["theta_XM"] * p["theta_MY"]
    base = p["mu_U"] * p["theta_UY"]
    sd = (p["theta_MY"] ** 2 + p["theta_UY"] ** 2 + 1.0) ** 0.5
    var_x = p["theta_UX"] ** 2 + 1.0
    slope = effect + p["theta_UY"] * p["theta_UX"] / var_x  # observational regression slope
    mean_x = p["theta_UX"] * p["mu_U"]
    mean_y = effect * mean_x + base
    return Case(
        name="frontdoor",
        description=(
            "Front-door criterion (Example 2 of Mohammad-Taheri et al., Bioinformatics 38(S1) "
            "i350, 2022): latent U confounds X and Y, X acts on Y only through the observed "
            "mediator M. Linear-Gaussian with unit noise; mu_U = 1, theta_UX = 1.5, theta_XM = 1, "
            "theta_MY = -1.5, theta_UY = 2, so E[Y | do(X=x)] = 2 - 1.5 x and the ATE is -1.5, "
            "while the confounded regression slope is -0.577. Identified (front-door formula); "
            "all parameters of the fitted model are identified too."
        ),
        graph=GRAPH,
        fn=frontdoor_model,
        sampler=_scm(p),
        queries={
            "ate": CaseQuery(
                ATE("X", "Y", treated=1.0, control=0.0),
                identified=True,
                truth=effect,
                naive=slope,
                outcome_sd=sd,
                note="naive: the observational regression slope of Y on X.",
            ),
            "y_do_x1": CaseQuery(
                Interventional("Y", do={"X": 1.0}),
                identified=True,
                truth=effect * 1.0 + base,
                naive=mean_y + slope * (1.0 - mean_x),
                outcome_sd=sd,
                note="P(Y | do(X=1)) = N(2 - 1.5, 7.25); naive: E[Y | X=1].",
            ),
            "ett": CaseQuery(
                ETT("X", "Y", treated=1.0, control=0.0),
                identified=True,
                truth=effect,
                note="E[Y_{X=1} - Y_{X=0} | X=1], a counterfactual query; linear SCM: every unit's effect is theta_XM * theta_MY, so the ETT equals the ATE.",
            ),
        },
        parameters=p,
        reference="Mohammad-Taheri et al. 2022, Example 2; Pearl 1995 (front-door criterion).",
        model_truth={
            "a_X": p["theta_UX"] * p["mu_U"],
            "a_M": 0.0,
            "a_Y": p["theta_UY"] * p["mu_U"],
            **{k: p[k] for k in ("theta_UX", "theta_XM", "theta_MY", "theta_UY")},
        },
        latent_scale={"U": (p["mu_U"], 1.0)},
    )
