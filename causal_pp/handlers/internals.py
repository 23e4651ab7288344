"""Helpers the handlers share: the units plate's name, and reading a site's message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyro.distributions.torch_distribution import MaskedDistribution

__all__ = ["INTERVENED", "UNITS", "base_dist", "in_units"]

INTERVENED = "_causal_pp_intervened"
"""``site["infer"]`` flag set on sites whose value an intervention replaced."""


UNITS = "units"
"""Name of the plate that holds the per-unit variables (the DAG nodes)."""


def base_dist(fn: Any) -> Any:
    """The distribution under any ``MaskedDistribution`` wrappers."""
    while isinstance(fn, MaskedDistribution):
        fn = fn.base_dist
    return fn


def in_units(msg: Mapping[str, Any], plate: str = UNITS) -> bool:
    """Whether a site lies inside the plate named ``plate``."""
    return any(f.name == plate for f in msg["cond_indep_stack"])
