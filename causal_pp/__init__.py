"""causal_pp: ask causal questions of Pyro models with latent variables, and trust the answers.

Attach a causal DAG (with its latent nodes) to a plain Pyro model; causal_pp checks the
program against the DAG, refuses queries that cannot be identified from the observed
variables, rewrites the model with ChiRho into its interventional program, fits it, and
returns the posterior predictive of the causal quantity.
"""

from __future__ import annotations

from . import cases, convergence
from .counterfactual import (
    ETT,
    PN,
    PNS,
    PS,
    Counterfactual,
    CounterfactualEstimand,
    CounterfactualGraph,
    CounterfactualIdentification,
    InterventionalTerm,
    counterfactual_graph,
    identify_counterfactual,
)
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .graph import CausalGraph
from .identification import Identification, identify
from .inference import fit, validate_data
from .model import CausalModel, InterventionalProgram, ProgramStructure, SiteInfo, causal_model, units
from .posterior import CausalPosterior, Estimate
from .queries import ATE, Interventional

__version__ = "0.1.0"

__all__ = [
    "cases",
    "convergence",
    "ATE",
    "ETT",
    "PN",
    "PNS",
    "PS",
    "Counterfactual",
    "CounterfactualEstimand",
    "CounterfactualGraph",
    "CounterfactualIdentification",
    "InterventionalTerm",
    "counterfactual_graph",
    "identify_counterfactual",
    "CausalGraph",
    "CausalModel",
    "CausalPosterior",
    "Estimate",
    "InterventionalProgram",
    "ProgramStructure",
    "SiteInfo",
    "causal_model",
    "fit",
    "units",
    "validate_data",
    "Identification",
    "Interventional",
    "__version__",
    "identify",
    *_errors_all,
]
