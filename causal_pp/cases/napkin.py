"""Napkin (the paper's case study 2): W -> R -> X -> Y; U_XW -> W, X; U_WY -> W, Y (latent).

P(Y | do(X)) is identified (by the napkin formula, not by any adjustment set) although X and Y
are confounded through X <- R <- W <- U_WY -> Y and conditioning on W or R opens the collider
path X <- U_XW -> W <- U_WY -> Y.

The paper's generator for this case is not in the notes (nor in its public repository's
stored files), so the parameters below are OUR OWN, chosen to reproduce its published values
E[Y | do(X=1)] = 1.4 and ATE 0.4 exactly and, like the paper's, weak confounding (the naive
contrast is close to the truth). ``napkin_strong`` keeps the truth and makes the confounding
strong. Ground truth::

    U_XW, U_WY ~ N(0, 1)
    W = l_XW U_XW + l_WY U_WY + e_W            e ~ N(0, 1)
    R = b_WR W + e_R
    X ~ Bernoulli(sigmoid(a_X + b_RX R + l_X U_XW))
    Y = a_Y + b_XY X + l_Y U_WY + e_Y

so ``P(Y | do(X=x)) = N(a_Y + b_XY x, l_Y^2 + 1)`` exactly.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
from scipy.special import expit

from ..graph import CausalGraph
from ..model import units
from ..queries import ATE, Interventional
from .case import Case, CaseQuery
from .scm import SCM, Equation
from .truth import naive_contrast

__all__ = ["make_napkin", "napkin_model"]

#: Weak confounding (the paper's setting: naive close to the truth); our own parameters.
PARAMETERS = {
    "l_XW": 0.5,
    "l_WY": 0.5,
    "b_WR": 0.5,
    "a_X": 0.0,
    "b_RX": 0.5,
    "l_X": 1.0,
    "a_Y": 1.0,
    "b_XY": 0.4,
    "l_Y": 0.5,
}
#: Strong confounding through X <- R <- W <- U_WY -> Y.
PARAMETERS_STRONG = {
    "l_XW": 1.0,
    "l_WY": 2.0,
    "b_WR": 1.0,
    "a_X": 0.0,
    "b_RX": 1.0,
    "l_X": 1.0,
    "a_Y": 1.0,
    "b_XY": 0.4,
    "l_Y": 2.0,
}

GRAPH = CausalGraph.parse(
    "W -> R -> X -> Y; U_XW -> W; U_XW -> X; U_WY -> W; U_WY -> Y", latent=["U_XW", "U_WY"]
)


def _scm(p: dict[str, float]) -> SCM:
    return SCM(
        [
            Equation("U_XW", (), lambda: 0.0),
            Equation("U_WY", (), lambda: 0.0),
            Equation("W", ("U_XW", "U_WY"), lambda a, b: p["l_XW"] * a + p["l_WY"] * b),
            Equation("R", ("W",), lambda w: p["b_WR"] * w),
            Equation(
                "X", ("R", "U_XW"), lambda r, u: expit(p["a_X"] + p["b_RX"] * r + p["l_X"] * u), "bernoulli"
            ),
            Equation("Y", ("X", "U_WY"), lambda x, u: p["a_Y"] + p["b_XY"] * x + p["l_Y"] * u),
        ]
    )


def napkin_model(n: int) -> None:
    """The napkin latent variable model, correctly specified for the simulator.

    Unknown: intercepts, coefficients, and the latents' loadings; the loadings on W are
    positive (they fix each latent's arbitrary sign), those on X and Y take either sign.
    Known: unit noise SDs of W, R and Y; both latents standardised.
    """
    a_w = pyro.sample("a_W", dist.Normal(0.0, 5.0))
    l_xw = pyro.sample("l_XW", dist.HalfNormal(3.0))
    l_wy = pyro.sample("l_WY", dist.HalfNormal(3.0))
    a_r = pyro.sample("a_R", dist.Normal(0.0, 5.0))
    b_wr = pyro.sample("b_WR", dist.Normal(0.0, 3.0))
    a_x = pyro.sample("a_X", dist.Normal(0.0, 3.0))
    b_rx = pyro.sample("b_RX", dist.Normal(0.0, 3.0))
    l_x = pyro.sample("l_X", dist.Normal(0.0, 3.0))
    a_y = pyro.sample("a_Y", dist.Normal(0.0, 5.0))
    b_xy = pyro.sample("b_XY", dist.Normal(0.0, 3.0))
    l_y = pyro.sample("l_Y", dist.Normal(0.0, 3.0))
    with units(n):
        u_xw = pyro.sample("U_XW", dist.Normal(0.0, 1.0))
        u_wy = pyro.sample("U_WY", dist.Normal(0.0, 1.0))
        w = pyro.sample("W", dist.Normal(a_w + l_xw * u_xw + l_wy * u_wy, 1.0))
        r = pyro.sample("R", dist.Normal(a_r + b_wr * w, 1.0))
        x = pyro.sample("X", dist.Bernoulli(logits=a_x + b_rx * r + l_x * u_xw))
        pyro.sample("Y", dist.Normal(a_y + b_xy * x + l_y * u_wy, 1.0))


def make_napkin(*, strong: bool = False, **overrides: float) -> Case:
    """The napkin case (``strong=True``: ``napkin_strong``); keywords override parameters."""
    p = {**(PARAMETERS_STRONG if strong else PARAMETERS), **overrides}
    scm = _scm(p)
    sd = (p["l_Y"] ** 2 + 1.0) ** 0.5
    ate, y1 = ATE("X", "Y", treated=1.0, control=0.0), Interventional("Y", do={"X": 1.0})
    published = {} if strong else {"ate": 0.4, "y_do_x1": 1.4}
    provenance = (
        "Our parameters, chosen to reproduce the published values by construction (the paper's "
        "napkin generator is not available)."
        if not strong
        else "Strong-confounding variant of the napkin case (no published counterpart)."
    )
    strength = (
        "l_XW = l_WY = 0.5, b_WR = 0.5, b_RX = 0.5, l_X = 1, l_Y = 0.5 (weak confounding, as in the paper)"
        if not strong
        else "l_XW = 1, l_WY = 2, b_WR = 1, b_RX = 1, l_X = 1, l_Y = 2 (strong confounding)"
    )
    return Case(
        name="napkin_strong" if strong else "napkin",
        description=(
            "Napkin graph (case study 2 of Mohammad-Taheri et al., Bioinformatics 38(S1) i350, "
            "2022; Pearl & Mackenzie 2018, p. 240): W -> R -> X -> Y with latent U_XW -> {W, X} "
            "and U_WY -> {W, Y}. Identified by the napkin formula (no adjustment set works). "
            f"Linear-Gaussian W, R, Y with unit noise, logistic binary X; {strength}; "
            "E[Y | do(X=x)] = 1 + 0.4 x. " + provenance
        ),
        graph=GRAPH,
        fn=napkin_model,
        sampler=scm,
        queries={
            "ate": CaseQuery(
                ate,
                identified=True,
                truth=p["b_XY"],
                published=published.get("ate"),
                naive=lambda: naive_contrast(scm, ate),
                outcome_sd=sd,
                note=provenance + " naive: E[Y | X=1] - E[Y | X=0] (Monte Carlo, 10^6 draws).",
            ),
            "y_do_x1": CaseQuery(
                y1,
                identified=True,
                truth=p["a_Y"] + p["b_XY"],
                published=published.get("y_do_x1"),
                naive=lambda: naive_contrast(scm, y1),
                outcome_sd=sd,
                note=provenance + " naive: E[Y | X=1] (Monte Carlo, 10^6 draws).",
            ),
        },
        parameters=p,
        reference="Mohammad-Taheri et al. 2022, case study 2; Pearl & Mackenzie, The Book of Why (2018), p. 240.",
        model_truth={"a_W": 0.0, "a_R": 0.0, **p},
        latent_scale={"U_XW": (0.0, 1.0), "U_WY": (0.0, 1.0)},
    )
