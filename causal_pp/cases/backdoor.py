"""Back-door: an observed confounder Z of X and Y, itself driven by a latent U that also acts on Y.

Ground truth (unit noise everywhere)::

    U ~ N(0, 1);  Z = theta_UZ U + e_Z;  X = theta_ZX Z + e_X;
    Y = beta_Y + theta_XY X + theta_ZY Z + theta_UY U + e_Y

Adjusting for Z blocks every back-door path (X <- Z -> Y and X <- Z <- U -> Y), so
``P(Y | do(X=x)) = N(beta_Y + theta_XY x, (theta_ZY theta_UZ + theta_UY)^2 + theta_ZY^2 + 1)``.
With theta_UZ = theta_ZX = theta_XY = theta_UY = 1, theta_ZY = 1.5, beta_Y = 0.5: ATE 1,
observational slope 7/3.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist

from ..graph import CausalGraph
from ..model import units
from ..queries import ATE, ETT, Interventional
from .case import Case, CaseQuery
from .scm import SCM, Equation

__all__ = ["backdoor_model", "make_backdoor"]

#: True parameters of the simulator.
PARAMETERS = {
    "theta_UZ": 1.0,
    "theta_ZX": 1.0,
    "theta_XY": 1.0,
    "theta_ZY": 1.5,
    "theta_UY": 1.0,
    "beta_Y": 0.5,
}

GRAPH = CausalGraph.parse("U -> Z; U -> Y; Z -> X; Z -> Y; X -> Y", latent=["U"])


def _scm(p: dict[str, float]) -> SCM:
    return SCM(
        [
            Equation("U", (), lambda: 0.0),
            Equation("Z", ("U",), lambda u: p["theta_UZ"] * u),
            Equation("X", ("Z",), lambda z: p["theta_ZX"] * z),
            Equation(
                "Y",
                ("X", "Z", "U"),
                lambda x, z, u: p["beta_Y"] + p["theta_XY"] * x + p["theta_ZY"] * z + p["theta_UY"] * u,
            ),
        ]
    )


def backdoor_model(n: int) -> None:
    """The back-door latent variable model, correctly specified for the simulator.

    Unknown: intercepts, path coefficients and U's two loadings. Both loadings are positive:
    theta_UZ > 0 fixes U's arbitrary sign; theta_UY > 0 removes the likelihood's reflection mode
    (theta_UY, theta_ZY) -> (-theta_UY, theta_ZY + 2 theta_UY theta_UZ / (theta_UZ^2 + 1)),
    which leaves the query unchanged but would split chains. Known: unit noise SDs.
    """
    a_z = pyro.sample("a_Z", dist.Normal(0.0, 5.0))
    a_x = pyro.sample("a_X", dist.Normal(0.0, 5.0))
    a_y = pyro.sample("a_Y", dist.Normal(0.0, 5.0))
    theta_uz = pyro.sample("theta_UZ", dist.HalfNormal(3.0))
    theta_zx = pyro.sample("theta_ZX", dist.Normal(0.0, 3.0))
    theta_xy = pyro.sample("theta_XY", dist.Normal(0.0, 3.0))
    theta_zy = pyro.sample("theta_ZY", dist.Normal(0.0, 3.0))
    theta_uy = pyro.sample("theta_UY", dist.HalfNormal(3.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(0.0, 1.0))
        z = pyro.sample("Z", dist.Normal(a_z + theta_uz * u, 1.0))
        x = pyro.sample("X", dist.Normal(a_x + theta_zx * z, 1.0))
        pyro.sample("Y", dist.Normal(a_y + theta_xy * x + theta_zy * z + theta_uy * u, 1.0))


def make_backdoor(**overrides: float) -> Case:
    """The back-door case; keyword arguments override :data:`PARAMETERS`."""
    p = {**PARAMETERS, **overrides}
    var_z = p["theta_UZ"] ** 2 + 1.0
    var_x = p["theta_ZX"] ** 2 * var_z + 1.0
    cov_xy = (
        p["theta_XY"] * var_x
        + p["theta_ZY"] * p["theta_ZX"] * var_z
        + p["theta_UY"] * p["theta_ZX"] * p["theta_UZ"]
    )
    slope = cov_xy / var_x
    sd = ((p["theta_ZY"] * p["theta_UZ"] + p["theta_UY"]) ** 2 + p["theta_ZY"] ** 2 + 1.0) ** 0.5
    return Case(
        name="backdoor",
        description=(
            "Back-door adjustment: the observed Z confounds X and Y and is itself driven by a "
            "latent U that also acts on Y; conditioning on Z blocks every back-door path, so "
            "P(Y | do(X)) is identified (Pearl 2009, sec. 3.3). Linear-Gaussian with unit noise; "
            "theta_UZ = theta_ZX = theta_XY = theta_UY = 1, theta_ZY = 1.5, beta_Y = 0.5: "
            "E[Y | do(X=x)] = 0.5 + x (ATE 1), observational slope 7/3."
        ),
        graph=GRAPH,
        fn=backdoor_model,
        sampler=_scm(p),
        queries={
            "ate": CaseQuery(
                ATE("X", "Y", treated=1.0, control=0.0),
                identified=True,
                truth=p["theta_XY"],
                naive=slope,
                outcome_sd=sd,
                note="naive: the observational regression slope of Y on X.",
            ),
            "y_do_x1": CaseQuery(
                Interventional("Y", do={"X": 1.0}),
                identified=True,
                truth=p["beta_Y"] + p["theta_XY"],
                naive=p["beta_Y"] + slope * 1.0,
                outcome_sd=sd,
                note="P(Y | do(X=1)) = N(1.5, 9.5); naive: E[Y | X=1].",
            ),
            "ett": CaseQuery(
                ETT("X", "Y", treated=1.0, control=0.0),
                identified=True,
                truth=p["theta_XY"],
                note="E[Y_{X=1} - Y_{X=0} | X=1], a counterfactual query; linear SCM: every unit's effect is theta_XY, so the ETT equals the ATE.",
            ),
        },
        parameters=p,
        reference="Pearl, Causality (2nd ed., 2009), sec. 3.3.1 (back-door criterion).",
        model_truth={
            "a_Z": 0.0,
            "a_X": 0.0,
            "a_Y": p["beta_Y"],
            **{k: p[k] for k in ("theta_UZ", "theta_ZX", "theta_XY", "theta_ZY", "theta_UY")},
        },
        latent_scale={"U": (0.0, 1.0)},
    )
