"""causal_pp: ask causal questions of Pyro models with latent variables, and trust the answers.

Attach a causal DAG (with its latent nodes) to a plain Pyro model; causal_pp checks the
program against the DAG, refuses queries that cannot be identified from the observed
variables, rewrites the model with ChiRho into its interventional program, fits it, and
returns the posterior predictive of the causal quantity.
"""

from __future__ import annotations

from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .graph import CausalGraph
from .identification import Identification, identify
from .queries import ATE, Interventional

__version__ = "0.1.0"

__all__ = [
    "ATE",
    "CausalGraph",
    "Identification",
    "Interventional",
    "__version__",
    "identify",
    *_errors_all,
]
