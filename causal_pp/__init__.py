"""causal_pp: ask causal questions of Pyro models with latent variables, and trust the answers.

Attach a causal DAG (with its latent nodes) to a plain Pyro model; causal_pp checks the
program against the DAG, refuses queries that cannot be identified from the observed
variables, rewrites the model with ChiRho into its interventional program, fits it, and
returns the posterior predictive of the causal quantity.

=====================  =====================================================================
module                 concept
=====================  =====================================================================
``graph``              :class:`CausalGraph`: the DAG with latent nodes, its latent projection
``queries``            the queries (:class:`Interventional`, :class:`ATE`, counterfactual ones)
``identification``     :func:`identify`: the gate (ID/IDC, ID*/IDC*)
``partial``            :func:`bounds`: sharp bounds, with their posterior, where the gate refuses
``model``, ``program`` :class:`CausalModel`: a Pyro program with its DAG; what a program contains
``dag_check``,         the checks :meth:`CausalModel.check` runs: the program against its DAG,
``batch_check``        and over leading batch dimensions
``log_density``        a sample site's log density as Pyro counts it (scale and mask included)
``handlers``           the messengers (``do``, dependency tracking, shared noise, twin worlds)
``inference``          :func:`fit`: data validation, NUTS, SVI, importance correction
``posterior``          :class:`CausalPosterior`, :class:`Estimate`
``inference_data``     ArviZ ``InferenceData`` (groups, R-hat/ESS)
``unit_likelihood``    each unit's marginal log-likelihood (latents integrated out) for LOO
``io``                 save/load of posteriors, pickling of models
``compare``            :func:`compare`: LOO across DAGs beside each DAG's identification verdict
``y0_query``           y0 DSL probabilities (``P(Y @ X)``) as queries
``estimation``         estimating queries from a posterior by simulation
``convergence``        studies of error vs sample size on ground-truth cases
``cases``              the ground-truth case library
``runtime``            devices, seeds, threads, JIT hygiene
``validation``         option checks shared by every entry point
``errors``             the exceptions
=====================  =====================================================================
"""

from __future__ import annotations

import logging

from . import cases, convergence
from .compare import compare
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .estimation import estimate
from .graph import CausalGraph
from .identification import (
    CounterfactualEstimand,
    CounterfactualGraph,
    CounterfactualIdentification,
    Identification,
    InterventionalTerm,
    counterfactual_graph,
    identify,
    identify_counterfactual,
)
from .inference import NUTS, SVI, fit, fit_many, validate_data
from .model import CausalModel, InterventionalProgram, causal_model, units
from .partial import Bounds, bounds, bounds_from_distribution
from .posterior import CausalPosterior, Estimate
from .program import ProgramStructure, SiteInfo
from .queries import ATE, ETT, PN, PNS, PS, Counterfactual, Interventional, Query
from .version import __version__
from .y0_query import query_from_y0

# Messages go to the "causal_pp" logger; the application decides whether they are shown.
logging.getLogger("causal_pp").addHandler(logging.NullHandler())

__all__ = [
    "ATE",
    "Bounds",
    "ETT",
    "NUTS",
    "PN",
    "PNS",
    "PS",
    "SVI",
    "CausalGraph",
    "CausalModel",
    "CausalPosterior",
    "Counterfactual",
    "CounterfactualEstimand",
    "CounterfactualGraph",
    "CounterfactualIdentification",
    "Estimate",
    "Identification",
    "Interventional",
    "InterventionalProgram",
    "InterventionalTerm",
    "ProgramStructure",
    "Query",
    "SiteInfo",
    "__version__",
    "bounds",
    "bounds_from_distribution",
    "cases",
    "causal_model",
    "compare",
    "convergence",
    "counterfactual_graph",
    "estimate",
    "fit",
    "fit_many",
    "identify",
    "identify_counterfactual",
    "query_from_y0",
    "units",
    "validate_data",
    *_errors_all,
]
