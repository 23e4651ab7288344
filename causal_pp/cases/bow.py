"""Bow (the paper's Example 1): U -> X, U -> Y, X -> Y, U latent; the negative control.

Ground truth (unit noise everywhere)::

    U ~ N(mu_U, 1);  X = theta_UX U + e_X;  Y = theta_XY X + theta_UY U + e_Y

``P(Y | do(X=x)) = N(x theta_XY + mu_U theta_UY, theta_UY^2 + 1)``. The query is NOT
identified from (X, Y): the latent projection is X -> Y with X <-> Y.

With mu_U = 0, theta_UX = 1, theta_XY = 1, theta_UY = 2 the ATE is 1 while the observational
regression slope is theta_XY + theta_UY theta_UX / (theta_UX^2 + 1) = 2: the confounding bias
(observational slope minus causal slope) is +1, about 17 times the posterior SD of either the
regression slope or one mode of the fitted model at N = 800 (~0.06).

What a correctly specified Bayesian fit does here depends on what it assumes. With *known*
unit noise the likelihood of (X, Y) pins the parameters down to two modes -- the truth and its
reflection theta_UY -> -theta_UY, theta_XY -> theta_XY + 2 theta_UY theta_UX / (theta_UX^2 + 1)
(= 3 here) -- so the effect is identified up to that reflection *by functional form* and an
optimiser that lands in the true mode "converges": no negative control. The fitted model
therefore learns the noise scales, as the paper's Example 1 does: then a one-parameter family
of parameter values fits (X, Y) equally well, the posterior is a prior-driven ridge, and it
concentrates with N, but away from the truth (measured with SVI at N = 800, three data sets:
ATE 1.70 +- 0.19, 2.22 +- 0.18, 1.76 +- 0.18 against a truth of 1). (Pinning the sign of
theta_UY would make the effect identified by functional form; the model deliberately does not.)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist

from ..graph import CausalGraph
from ..model import units
from ..queries import ATE, Interventional
from .case import Case, CaseQuery
from .scm import SCM, Equation

__all__ = ["bow_model", "make_bow"]

#: True parameters of the simulator.
PARAMETERS = {"mu_U": 0.0, "theta_UX": 1.0, "theta_XY": 1.0, "theta_UY": 2.0}

GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"])


def _scm(p: dict[str, float]) -> SCM:
    return SCM(
        [
            Equation("U", (), lambda: p["mu_U"]),
            Equation("X", ("U",), lambda u: p["theta_UX"] * u),
            Equation("Y", ("X", "U"), lambda x, u: p["theta_XY"] * x + p["theta_UY"] * u),
        ]
    )


def bow_model(n: int) -> None:
    """The bow latent variable model, correctly specified for the simulator.

    Unknown: intercepts, theta_UX (positive: fixes U's arbitrary sign), theta_XY, theta_UY
    (either sign), and the noise SDs sigma_X, sigma_Y (learning them is what makes the
    effect unidentified by functional form as well as nonparametrically). U standardised. The causal coefficient's prior is wide
    (N(0, 5)) so the prior barely prefers either likelihood mode.
    """
    a_x = pyro.sample("a_X", dist.Normal(0.0, 5.0))
    a_y = pyro.sample("a_Y", dist.Normal(0.0, 5.0))
    sigma_x = pyro.sample("sigma_X", dist.HalfNormal(2.0))
    sigma_y = pyro.sample("sigma_Y", dist.HalfNormal(2.0))
    theta_ux = pyro.sample("theta_UX", dist.HalfNormal(3.0))
    theta_xy = pyro.sample("theta_XY", dist.Normal(0.0, 5.0))
    theta_uy = pyro.sample("theta_UY", dist.Normal(0.0, 3.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(0.0, 1.0))
        x = pyro.sample("X", dist.Normal(a_x + theta_ux * u, sigma_x))
        pyro.sample("Y", dist.Normal(a_y + theta_xy * x + theta_uy * u, sigma_y))


def make_bow(**overrides: float) -> Case:
    """The bow case; keyword arguments override :data:`PARAMETERS`."""
    p = {**PARAMETERS, **overrides}
    var_x = p["theta_UX"] ** 2 + 1.0
    bias = p["theta_UY"] * p["theta_UX"] / var_x
    slope = p["theta_XY"] + bias
    sd = (p["theta_UY"] ** 2 + 1.0) ** 0.5
    mean_x = p["theta_UX"] * p["mu_U"]
    mean_y = p["theta_XY"] * mean_x + p["theta_UY"] * p["mu_U"]
    return Case(
        name="bow",
        description=(
            "Bow graph (Example 1 of Mohammad-Taheri et al., Bioinformatics 38(S1) i350, 2022): "
            "latent U confounds X and Y and nothing else is observed, so P(Y | do(X)) is NOT "
            "identified: the negative control. Linear-Gaussian with unit noise; mu_U = 0, "
            "theta_UX = 1, theta_XY = 1, theta_UY = 2: ATE 1, observational slope 2 (bias +1). "
            "The fitted model learns the noise scales, so its posterior is a ridge that misses the truth."
        ),
        graph=GRAPH,
        fn=bow_model,
        sampler=_scm(p),
        queries={
            "ate": CaseQuery(
                ATE("X", "Y", treated=1.0, control=0.0),
                identified=False,
                truth=p["theta_XY"],
                naive=slope,
                outcome_sd=sd,
                note=(
                    "Not identified. naive = observational regression slope = truth + "
                    f"{bias:g} (the confounding bias)."
                ),
            ),
            "y_do_x1": CaseQuery(
                Interventional("Y", do={"X": 1.0}),
                identified=False,
                truth=p["theta_XY"] + p["mu_U"] * p["theta_UY"],
                naive=mean_y + slope * (1.0 - mean_x),
                outcome_sd=sd,
                note="Not identified. P(Y | do(X=1)) = N(1, 5); naive: E[Y | X=1] = 2.",
            ),
        },
        parameters=p,
        reference="Mohammad-Taheri et al. 2022, Example 1.",
        model_truth={
            "a_X": p["theta_UX"] * p["mu_U"],
            "a_Y": p["theta_UY"] * p["mu_U"],
            **{k: p[k] for k in ("theta_UX", "theta_XY", "theta_UY")},
            "sigma_X": 1.0,
            "sigma_Y": 1.0,
        },
        latent_scale={"U": (p["mu_U"], 1.0)},
    )
