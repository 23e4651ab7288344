"""SARS-CoV-2 -> cytokine storm (the paper's case study 4; y0's ``sars_large_example``).

16 observed nodes, 9 latent confounders. Ground truth: the paper's equations
(``CaseStudy3_Covid.Rmd``), all latents ``N(mean, 10)``, drugs Toci ~ N(45, 10),
Gefi ~ N(40, 10), cytok ~ Bernoulli(sigmoid(-2 + 0.06 IL6AMP)), and every other node
``f(parents) + e`` with ``f`` as in the paper (``100 sigmoid(...)`` or linear). The paper's
intermediates were deterministic, which leaves no proper likelihood; we add small Gaussian
noise ``e`` (SD 2 on the 0-100 nodes, 0.2 on ACE2 (range ~11-18), 1 on Ang (range ~17-59)),
so the truths differ slightly from the published ones and are recomputed by Monte Carlo:
E[cytok | do(Sil6r=20)] (published 0.211) and E[cytok | do(EGFR=20)] (published 0.311).
With the noise switched off (``make_sars_cov2(noise=0)``) the generator reproduces the
published values (0.2111 and 0.3112; observational E[cytok] 0.3643).
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from scipy.special import expit

from ..graph import CausalGraph
from ..model import units
from ..queries import Interventional
from .case import Case, CaseQuery
from .scm import SCM, Equation, constant

__all__ = ["make_sars_cov2", "sars_cov2_model"]

#: Latent means (all latent SDs are 10) and the observed drugs' (mean, SD).
LATENT_MEAN = {
    "U1": 22.0,
    "U2": 22.0,
    "U1A": 25.0,
    "U2A": 25.0,
    "U1P": 20.0,
    "U2P": 20.0,
    "U_EE": 50.0,
    "U_ET": 45.0,
    "U_EI": 40.0,
}
LATENT_SD = 10.0
DRUGS = {"Toci": (45.0, 10.0), "Gefi": (40.0, 10.0)}

#: The paper's structural equations: node -> (kind, intercept, {parent: coefficient}).
#: kind "logistic": 100 sigmoid(intercept + sum coef * parent); "linear": intercept + sum.
EQUATIONS: dict[str, tuple[str, float, dict[str, float]]] = {
    "SARS": ("logistic", -2.0, {"U1": 0.05, "U2": 0.06}),
    "ACE2": ("linear", 20.0, {"SARS": -0.1}),
    "Ang": ("linear", 25.0, {"ACE2": -0.8, "U1": 0.5, "U2": 0.6}),
    "AGTR1": ("logistic", -1.5, {"Ang": 0.08}),
    "ADAM17": ("logistic", -3.8, {"AGTR1": 0.04, "U1A": 0.04, "U2A": 0.03}),
    "Sil6r": ("logistic", -3.0, {"ADAM17": 0.03, "U1A": 0.05, "U2A": 0.06, "Toci": -0.04}),
    "EGF": ("logistic", -3.0, {"ADAM17": 0.03, "U_EE": 0.05}),
    "TNF": ("logistic", -4.1, {"ADAM17": 0.05, "U_ET": 0.06}),
    "EGFR": ("logistic", -6.0, {"EGF": 0.03, "U_EI": 0.05, "U_ET": 0.02, "U_EE": 0.04, "Gefi": -0.04}),
    "PRR": ("logistic", -3.4, {"SARS": 0.05, "U1P": 0.02, "U2P": 0.03}),
    "NFKB": ("logistic", -5.0, {"PRR": 0.01, "U1P": 0.02, "U2P": 0.03, "EGFR": 0.02, "TNF": 0.03}),
    "IL6STAT3": ("logistic", -4.6, {"U_EI": 0.05, "Sil6r": 0.04}),
    "IL6AMP": ("logistic", -3.7, {"NFKB": 0.02, "IL6STAT3": 0.03}),
}
CYTOK = (-2.0, 0.06)  # cytok ~ Bernoulli(sigmoid(-2 + 0.06 IL6AMP))

#: Our addition: SD of the Gaussian noise on each intermediate (the paper had none).
NOISE_SD = {node: 2.0 for node in EQUATIONS} | {"ACE2": 0.2, "Ang": 1.0}

#: The fitted model's axis (centre, scale) of each observed node: it reads ``(x - centre) / scale``.
_AXIS = {"ACE2": (15.0, 1.0), "Ang": (30.0, 10.0)}
_DEFAULT_AXIS = (50.0, 10.0)

_ORDER = (
    "SARS",
    "ACE2",
    "Ang",
    "AGTR1",
    "ADAM17",
    "Toci",
    "Sil6r",
    "EGF",
    "TNF",
    "Gefi",
    "EGFR",
    "PRR",
    "NFKB",
    "IL6STAT3",
    "IL6AMP",
    "cytok",
)

GRAPH = CausalGraph(
    [(p, v) for v, (_, _, coef) in EQUATIONS.items() for p in coef] + [("IL6AMP", "cytok")],
    latent=list(LATENT_MEAN),
)


def _loc(kind: str, b0: float, coef: dict[str, float]):
    names = tuple(coef)
    weights = tuple(coef[k] for k in names)

    def f(*values):
        lin = b0 + sum(w * v for w, v in zip(weights, values, strict=True))
        return 100.0 * expit(lin) if kind == "logistic" else lin

    return names, f


def _scm(noise: float = 1.0) -> SCM:
    eqs = [Equation(u, (), constant(m), scale=LATENT_SD) for u, m in LATENT_MEAN.items()]
    eqs += [Equation(d, (), constant(m), scale=s) for d, (m, s) in DRUGS.items()]
    for node in _ORDER[:-1]:
        if node in DRUGS:
            continue
        kind, b0, coef = EQUATIONS[node]
        parents, f = _loc(kind, b0, coef)
        eqs.append(Equation(node, parents, f, scale=noise * NOISE_SD[node]))
    eqs.append(Equation("cytok", ("IL6AMP",), lambda a: expit(CYTOK[0] + CYTOK[1] * a), "bernoulli"))
    return SCM(eqs)


def _axis(node: str) -> tuple[float, float]:
    return _AXIS.get(node, _DEFAULT_AXIS)


#: The fitted model's coefficient vectors: which (node, parent) each entry of ``b`` (observed
#: parents, cytok's slope last) and ``l`` (latent loadings) is, and which node each intercept
#: of ``a`` belongs to. One vector site per kind keeps the guide small: a site per coefficient
#: (62 of them) made each SVI step several times slower.
_A_NODES = (*EQUATIONS, "cytok")
_B_INDEX = (
    *((v, p) for v, (_, _, coef) in EQUATIONS.items() for p in coef if p not in LATENT_MEAN),
    ("cytok", "IL6AMP"),
)
_L_INDEX = tuple((v, p) for v, (_, _, coef) in EQUATIONS.items() for p in coef if p in LATENT_MEAN)


def _make_model(noise_sd: dict[str, float]) -> Callable[[int], None]:
    a_pos = {v: i for i, v in enumerate(_A_NODES)}
    b_pos = {vp: i for i, vp in enumerate(_B_INDEX)}
    l_pos = {vp: i for i, vp in enumerate(_L_INDEX)}

    def sars_cov2_model(n: int) -> None:
        """The SARS-CoV-2 latent variable model: the paper's functional forms, unknown coefficients.

        Every observed value enters as ``(x - centre) / scale`` on its own axis (:data:`_AXIS`;
        (50, 10) for the 0-100 nodes), so all coefficients are O(1) and share the priors
        ``a ~ N(0, 2.5)`` (intercepts), ``b ~ N(0, 1)`` (observed parents), ``l ~ HalfNormal(1)``
        (latent loadings), each one vector site (entries named by :data:`_A_NODES`,
        :data:`_B_INDEX`, :data:`_L_INDEX`). A ``100 sigmoid`` node is ``Normal(100
        sigmoid(lin), sd)``, a linear one ``Normal(centre + scale * lin, sd)`` with ``lin = a +
        sum_j b_j (P_j - c_j) / s_j + sum_k l_k U_k``; the drugs are ``Normal(centre + scale * m,
        scale * s)``; cytok is logistic in IL6AMP. Latents are standardised and their loadings
        positive (as in the truth and the paper's Stan model): this fixes each latent's sign and
        bounds the rotations within the pairs (U1, U2), (U1A, U2A), (U1P, U2P) that the data
        cannot resolve; the queries do not depend on them. Noise SDs are known (:data:`NOISE_SD`).
        """
        a = pyro.sample("a", dist.Normal(0.0, 2.5).expand([len(_A_NODES)]).to_event(1))
        b = pyro.sample("b", dist.Normal(0.0, 1.0).expand([len(_B_INDEX)]).to_event(1))
        lo = pyro.sample("l", dist.HalfNormal(1.0).expand([len(_L_INDEX)]).to_event(1))
        m = pyro.sample("m", dist.Normal(0.0, 2.0).expand([len(DRUGS)]).to_event(1))
        sd = pyro.sample("s", dist.HalfNormal(2.0).expand([len(DRUGS)]).to_event(1))

        with units(n):
            v: dict[str, torch.Tensor] = {u: pyro.sample(u, dist.Normal(0.0, 1.0)) for u in LATENT_MEAN}
            for node in _ORDER[:-1]:
                centre, scale = _axis(node)
                if node in DRUGS:
                    k = list(DRUGS).index(node)
                    v[node] = pyro.sample(node, dist.Normal(centre + scale * m[..., k], scale * sd[..., k]))
                    continue
                kind, _, parents = EQUATIONS[node]
                lin = a[..., a_pos[node]]
                for p in parents:
                    if p in LATENT_MEAN:
                        lin = lin + lo[..., l_pos[node, p]] * v[p]
                    else:
                        c, s = _axis(p)
                        lin = lin + b[..., b_pos[node, p]] * (v[p] - c) / s
                loc = 100.0 * torch.sigmoid(lin) if kind == "logistic" else centre + scale * lin
                v[node] = pyro.sample(node, dist.Normal(loc, noise_sd[node]))
            c, s = _axis("IL6AMP")
            logit = a[..., a_pos["cytok"]] + b[..., b_pos["cytok", "IL6AMP"]] * (v["IL6AMP"] - c) / s
            pyro.sample("cytok", dist.Bernoulli(logits=logit))

    return sars_cov2_model


#: The model fitted to the ``sars_cov2`` case (noise SDs :data:`NOISE_SD`).
sars_cov2_model = _make_model(NOISE_SD)


def _model_truth() -> dict[str, list[float]]:
    """:func:`sars_cov2_model`'s global sites at the truth (latents standardised)."""
    a: dict[str, float] = {}
    b: dict[tuple[str, str], float] = {}
    lo: dict[tuple[str, str], float] = {}
    for node, (kind, b0, coef) in EQUATIONS.items():
        centre, scale = _axis(node) if kind == "linear" else (0.0, 1.0)
        icpt = b0 - centre
        for p, c in coef.items():
            if p in LATENT_MEAN:
                icpt += c * LATENT_MEAN[p]
                lo[node, p] = c * LATENT_SD / scale
            else:
                icpt += c * _axis(p)[0]
                b[node, p] = c * _axis(p)[1] / scale
        a[node] = icpt / scale
    c, s = _axis("IL6AMP")
    a["cytok"], b["cytok", "IL6AMP"] = CYTOK[0] + CYTOK[1] * c, CYTOK[1] * s
    drugs = [(_axis(d), ms) for d, ms in DRUGS.items()]
    return {
        "a": [a[v] for v in _A_NODES],
        "b": [b[vp] for vp in _B_INDEX],
        "l": [lo[vp] for vp in _L_INDEX],
        "m": [(mu - ctr) / sc for (ctr, sc), (mu, _) in drugs],
        "s": [sdv / sc for (_, sc), (_, sdv) in drugs],
    }


def make_sars_cov2(*, noise: float = 1.0) -> Case:
    """The SARS-CoV-2 case. ``noise`` scales :data:`NOISE_SD` in the generator and the model.

    ``noise=0`` gives the paper's deterministic generator (case ``sars_cov2_noiseless``), which
    reproduces the published truths; it has no proper likelihood, so its model keeps the
    default noise SDs and is not meant to be fitted.
    """
    params: dict[str, float] = {f"mean_{u}": m for u, m in LATENT_MEAN.items()}
    params |= {"sd_latent": LATENT_SD}
    for d, (m, s) in DRUGS.items():
        params |= {f"mean_{d}": m, f"sd_{d}": s}
    for node, (_, b0, coef) in EQUATIONS.items():
        params[f"beta0_{node}"] = b0
        params |= {f"beta_{p}_{node}": c for p, c in coef.items()}
        params[f"noise_sd_{node}"] = noise * NOISE_SD[node]
    params |= {"beta0_cytok": CYTOK[0], "beta_IL6AMP_cytok": CYTOK[1]}
    note = (
        "Our generator adds Gaussian noise to the intermediates (the paper's were deterministic), "
        "so the truth is recomputed by Monte Carlo and differs slightly from the published value, "
        "which is not asserted. Observational E[cytok] = 0.364 (published 0.364)."
        if noise
        else "The paper's deterministic generator."
    )
    return Case(
        name="sars_cov2" if noise else "sars_cov2_noiseless",
        description=(
            "SARS-CoV-2 infection to cytokine storm (case study 4 of Mohammad-Taheri et al., "
            "Bioinformatics 38(S1) i350, 2022; y0.examples.sars_large_example): 16 observed "
            "nodes (including the drugs Toci and Gefi) and 9 latent confounders (U1, U2 -> SARS, "
            "Ang; U1A, U2A -> ADAM17, Sil6r; U1P, U2P -> PRR, NFKB; U_EE -> EGF, EGFR; U_ET -> "
            "EGFR, TNF; U_EI -> EGFR, IL6STAT3). The paper's equations with small Gaussian noise "
            "added to the intermediates so that a proper likelihood exists; truths recomputed by "
            "Monte Carlo. Queries: E[cytok | do(Sil6r=20)] and E[cytok | do(EGFR=20)]."
        ),
        graph=GRAPH,
        fn=_make_model({k: noise * v for k, v in NOISE_SD.items()}) if noise else sars_cov2_model,
        sampler=_scm(noise),
        queries={
            "cytok_do_sil6r20": CaseQuery(
                Interventional("cytok", do={"Sil6r": 20.0}), identified=True, published=0.211, note=note
            ),
            "cytok_do_egfr20": CaseQuery(
                Interventional("cytok", do={"EGFR": 20.0}), identified=True, published=0.311, note=note
            ),
        },
        parameters=params,
        reference="Mohammad-Taheri et al. 2022, case study 4 (code: srtaheri/LVMwithDoCalculus); y0.",
        model_truth=_model_truth(),
        latent_scale={u: (m, LATENT_SD) for u, m in LATENT_MEAN.items()},
    )
