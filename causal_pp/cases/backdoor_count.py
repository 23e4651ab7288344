"""Back-door with a count outcome: Poisson with a log link, confounded through an observed Z and a
latent U.

The graph is the back-door case's (U -> Z -> X -> Y, Z -> Y, U -> Y, U latent). Ground truth::

    U ~ N(0, 1);  Z = theta_UZ U + N(0, 1);  X = theta_ZX Z + N(0, 1);
    Y ~ Poisson(exp(beta_Y + theta_XY X + theta_ZY Z + theta_UY U))

Under do(X=x), ``w = theta_ZY Z + theta_UY U = (theta_ZY theta_UZ + theta_UY) U + theta_ZY e_Z``
is N(0, v) with ``v = (theta_ZY theta_UZ + theta_UY)^2 + theta_ZY^2``, so by the Normal moment
generating function ``E[Y | do(X=x)] = exp(beta_Y + theta_XY x + v / 2)``. With theta_UZ =
theta_ZX = 1, theta_XY = 0.5, theta_ZY = 0.3, theta_UY = 0.4, beta_Y = 0.3: v = 0.58,
E[Y | do(X=x)] = exp(0.59 + 0.5 x), ATE (1 vs 0) = e^0.59 (e^0.5 - 1) = 1.1703. The naive
contrast E[Y | X=1] - E[Y | X=0] (the same computation with (Z, U) conditioned on X) is 1.987.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist

from ..graph import CausalGraph
from ..model import units
from ..queries import ATE, Interventional
from .case import Case, CaseQuery
from .scm import SCM, Equation, constant

__all__ = ["backdoor_count_model", "make_backdoor_count", "y_do_x_functional"]

#: True parameters of the simulator.
PARAMETERS = {
    "theta_UZ": 1.0,
    "theta_ZX": 1.0,
    "theta_XY": 0.5,
    "theta_ZY": 0.3,
    "theta_UY": 0.4,
    "beta_Y": 0.3,
}

GRAPH = CausalGraph.parse("U -> Z; U -> Y; Z -> X; Z -> Y; X -> Y", latent=["U"])


def _scm(p: dict[str, float]) -> SCM:
    return SCM(
        [
            Equation("U", (), constant(0.0)),
            Equation("Z", ("U",), lambda u: p["theta_UZ"] * u),
            Equation("X", ("Z",), lambda z: p["theta_ZX"] * z),
            Equation(
                "Y",
                ("X", "Z", "U"),
                lambda x, z, u: np.exp(
                    p["beta_Y"] + p["theta_XY"] * x + p["theta_ZY"] * z + p["theta_UY"] * u
                ),
                kind="poisson",
            ),
        ]
    )


def backdoor_count_model(n: int) -> None:
    """The model a user would write for the simulator: linear-Gaussian Z and X, Poisson Y.

    Unknown: intercepts, path coefficients and U's two loadings. Both loadings are positive:
    theta_UZ > 0 fixes U's sign; theta_UY > 0 removes the reflection theta_UY -> -theta_UY
    (with theta_ZY moved to keep the mean of the log rate given Z), which leaves the
    distribution of (Z, X, Y) and the query unchanged but would split chains, as in the
    back-door case. Known: unit noise SDs of Z and X. The log-link coefficients get tighter
    priors than the linear ones.
    """
    a_z = pyro.sample("a_Z", dist.Normal(0.0, 5.0))
    a_x = pyro.sample("a_X", dist.Normal(0.0, 5.0))
    a_y = pyro.sample("a_Y", dist.Normal(0.0, 2.0))
    theta_uz = pyro.sample("theta_UZ", dist.HalfNormal(3.0))
    theta_zx = pyro.sample("theta_ZX", dist.Normal(0.0, 3.0))
    theta_xy = pyro.sample("theta_XY", dist.Normal(0.0, 1.0))
    theta_zy = pyro.sample("theta_ZY", dist.Normal(0.0, 1.0))
    theta_uy = pyro.sample("theta_UY", dist.HalfNormal(1.0))
    with units(n):
        u = pyro.sample("U", dist.Normal(0.0, 1.0))
        z = pyro.sample("Z", dist.Normal(a_z + theta_uz * u, 1.0))
        x = pyro.sample("X", dist.Normal(a_x + theta_zx * z, 1.0))
        pyro.sample("Y", dist.Poisson((a_y + theta_xy * x + theta_zy * z + theta_uy * u).exp()))


def _exp(v: Any) -> Any:
    return v.exp() if hasattr(v, "exp") else np.exp(v)


def y_do_x_functional(params: Mapping[str, Any], x: float) -> Any:
    """E[Y | do(X=x)] of the model at global parameters ``params`` (floats, arrays or tensors
    of posterior draws), exact: ``exp(a_Y + theta_XY x + theta_ZY a_Z + v / 2)`` with
    ``v = (theta_ZY theta_UZ + theta_UY)^2 + theta_ZY^2``.

    Examples
    --------
    >>> case = make_backdoor_count()
    >>> y1 = float(y_do_x_functional(case.model_truth, 1.0))
    >>> round(y1, 4), round(case.queries["y_do_x1"].truth, 4)
    (2.9743, 2.9743)
    """
    p = params
    v = (p["theta_ZY"] * p["theta_UZ"] + p["theta_UY"]) ** 2 + p["theta_ZY"] ** 2
    return _exp(p["a_Y"] + p["theta_XY"] * x + p["theta_ZY"] * p["a_Z"] + 0.5 * v)


def ate_functional(params: Mapping[str, Any], treated: float = 1.0, control: float = 0.0) -> Any:
    """The ATE of the model at ``params``, exact (per draw where they are arrays or tensors).

    Examples
    --------
    >>> round(float(ate_functional(make_backdoor_count().model_truth)), 4)
    1.1703
    """
    return y_do_x_functional(params, treated) - y_do_x_functional(params, control)


def make_backdoor_count(**overrides: float) -> Case:
    """The count-outcome back-door case; keyword arguments override :data:`PARAMETERS`.

    Examples
    --------
    >>> case = make_backdoor_count()
    >>> round(case.queries["ate"].truth, 4), round(case.queries["ate"].naive, 3)
    (1.1703, 1.987)
    """
    p = {**PARAMETERS, **overrides}
    a, c = p["theta_UZ"], p["theta_ZX"]
    b_xy, b_zy, b_uy = p["theta_XY"], p["theta_ZY"], p["theta_UY"]
    v = (b_zy * a + b_uy) ** 2 + b_zy**2  # Var(theta_ZY Z + theta_UY U)

    def y_do(x: float) -> float:
        return math.exp(p["beta_Y"] + b_xy * x + 0.5 * v)

    # naive: (Z, U) given X = x is Gaussian, so E[Y | X=x] follows from the same MGF
    var_x = c**2 * (a**2 + 1.0) + 1.0
    cov_wx = c * (b_zy * (a**2 + 1.0) + b_uy * a)
    var_w_x = v - cov_wx**2 / var_x

    def y_given(x: float) -> float:
        return math.exp(p["beta_Y"] + b_xy * x + cov_wx / var_x * x + 0.5 * var_w_x)

    return Case(
        name="backdoor_count",
        description=(
            "Back-door graph with a count outcome: Z = U + N(0, 1), X = Z + N(0, 1), "
            "Y ~ Poisson(exp(0.3 + 0.5 X + 0.3 Z + 0.4 U)), U ~ N(0, 1) latent. By the Normal moment "
            "generating function E[Y | do(X=x)] = exp(0.59 + 0.5 x): ATE (1 vs 0) 1.170, while the "
            "naive contrast E[Y | X=1] - E[Y | X=0] is 1.987. Identified (adjust for Z). The model is "
            "correctly specified (Poisson log link, known unit noise of Z and X)."
        ),
        graph=GRAPH,
        fn=backdoor_count_model,
        sampler=_scm(p),
        queries={
            "ate": CaseQuery(
                ATE("X", "Y", treated=1.0, control=0.0),
                identified=True,
                truth=y_do(1.0) - y_do(0.0),
                naive=y_given(1.0) - y_given(0.0),
                note="ATE = exp(beta_Y + v/2) (e^theta_XY - 1); naive: E[Y | X=1] - E[Y | X=0] (analytic).",
            ),
            "y_do_x1": CaseQuery(
                Interventional("Y", do={"X": 1.0}),
                identified=True,
                truth=y_do(1.0),
                naive=y_given(1.0),
                note="E[Y | do(X=1)] = exp(beta_Y + theta_XY + v/2); naive: E[Y | X=1] (analytic).",
            ),
        },
        parameters=p,
        reference="Back-door criterion (Pearl 2009, sec. 3.3) with a Poisson outcome; causal_pp issue #15.",
        model_truth={
            "a_Z": 0.0,
            "a_X": 0.0,
            "a_Y": p["beta_Y"],
            **{k: p[k] for k in ("theta_UZ", "theta_ZX", "theta_XY", "theta_ZY", "theta_UY")},
        },
        latent_scale={"U": (0.0, 1.0)},
    )
