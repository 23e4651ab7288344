"""Ground-truth case studies: DAG + simulator + Bayesian model + queries with known answers.

Each :class:`Case` bundles a causal DAG with its latent nodes, a ground-truth structural
simulator (:meth:`Case.simulate`), the Pyro model to fit (:attr:`Case.fn`, wrapped as
:attr:`Case.model`), and its queries (:class:`CaseQuery`: the query, whether it is
identified, its true value with standard error and method, the published value, the naive
answer). The built-in cases follow Mohammad-Taheri et al., *Do-calculus enables estimation of
causal effects in partially observed biomolecular pathways*, Bioinformatics 38(S1) i350 (2022):

=================  ===========================================================================
``frontdoor``      Example 2: U -> X -> M -> Y, U -> Y; linear-Gaussian; identified
``bow``            Example 1: U -> X -> Y, U -> Y; NOT identified (negative control)
``backdoor``       observed confounder Z (driven by latent U, which also acts on Y); identified
``multicause``     case study 1: five binary causes, binary mediator, three latents; identified
``napkin``         case study 2: W -> R -> X -> Y with two latents; weak confounding; identified
``napkin_strong``  the napkin with strong confounding
``igf``            case study 3: IGF/EGF signalling, latent receptors; identified
``sars_cov2``      case study 4: SARS-CoV-2 cytokine storm, 16 observed + 9 latent; identified
``bow_bounds``     binary bow X <-> Y, X -> Y: ATE NOT identified; sharp (natural) bounds, width 1
``iv_bounds``      binary instrument Z -> X -> Y, X <-> Y: ATE inside narrower Balke-Pearl bounds
``pn_bounds``      PN in binary X -> Y without monotonicity: Tian-Pearl bounds
=================  ===========================================================================

Beyond the paper, non-Gaussian cases with analytic truths (calibration of the fast path, #15):

===================  =========================================================================
``frontdoor_logit``  front-door; binary X through a logit of U, Laplace mediator noise; ATE -1.2
``frontdoor_count``  front-door; Poisson (log link) mediator, Student-t outcome noise
``backdoor_count``   back-door; Poisson (log link) outcome, truth by the Normal MGF
===================  =========================================================================

The three ``*_bounds`` cases are *bounds cases* (``CaseQuery(kind="bounds")``): their queries are not
identified, and a convergence study scores the posterior of their sharp bounds
(:func:`causal_pp.bounds`) against the true sharp bounds, which each case computes exactly
(:mod:`.exact`: Gauss-Hermite quadrature of P(V); the linear programs on it).

Examples
--------
>>> from causal_pp import cases
>>> list(cases.registry())
['frontdoor', 'bow', 'backdoor', 'multicause', 'napkin', 'napkin_strong', 'igf', 'sars_cov2', 'bow_bounds', 'iv_bounds', 'pn_bounds', 'frontdoor_logit', 'frontdoor_count', 'backdoor_count']
>>> case = cases.get_case("bow")
>>> q = case.queries["ate"]
>>> q.identified, q.truth, q.naive
(False, 1.0, 2.0)
>>> case.simulate(2, seed=0).shape
(2, 2)
"""

from __future__ import annotations

from ..errors import CaseError, DuplicateCaseError, UnknownCaseError
from .backdoor import make_backdoor
from .backdoor_count import make_backdoor_count
from .bow import make_bow
from .bow_bounds import make_bow_bounds
from .case import BOUNDS, MODEL, Case, CaseQuery
from .frontdoor import make_frontdoor
from .frontdoor_count import make_frontdoor_count
from .frontdoor_logit import make_frontdoor_logit
from .igf import make_igf
from .iv_bounds import make_iv_bounds
from .multicause import make_multicause
from .napkin import make_napkin
from .pn_bounds import make_pn_bounds
from .registry import get_case, register, registry, unregister
from .sars_cov2 import make_sars_cov2
from .scm import SCM, Equation, constant
from .truth import MC_DRAWS, MC_SEED, Truth, monte_carlo_truth, naive_contrast

__all__ = [
    "BOUNDS",
    "MC_DRAWS",
    "MC_SEED",
    "MODEL",
    "SCM",
    "Case",
    "CaseError",
    "CaseQuery",
    "DuplicateCaseError",
    "Equation",
    "Truth",
    "UnknownCaseError",
    "constant",
    "get_case",
    "make_backdoor",
    "make_backdoor_count",
    "make_bow",
    "make_bow_bounds",
    "make_frontdoor",
    "make_frontdoor_count",
    "make_frontdoor_logit",
    "make_igf",
    "make_iv_bounds",
    "make_multicause",
    "make_napkin",
    "make_pn_bounds",
    "make_sars_cov2",
    "monte_carlo_truth",
    "naive_contrast",
    "register",
    "registry",
    "unregister",
]

for _case in (
    make_frontdoor(),
    make_bow(),
    make_backdoor(),
    make_multicause(),
    make_napkin(),
    make_napkin(strong=True),
    make_igf(),
    make_sars_cov2(),
    make_bow_bounds(),
    make_iv_bounds(),
    make_pn_bounds(),
    make_frontdoor_logit(),
    make_frontdoor_count(),
    make_backdoor_count(),
):
    register(_case)
del _case
