"""Which per-unit sites each per-unit site reads: the program's dependency structure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyro
import torch
from pyro.ops.provenance import ProvenanceTensor, detach_provenance, get_provenance
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_factor, site_is_subsample

from .internals import INTERVENED, UNITS, base_dist, in_units

__all__ = ["TrackDependencies"]


class TrackDependencies(Messenger):
    """Record which per-unit sites each per-unit site reads, by provenance tracking.

    Every per-unit site (one inside the plate named ``plate``) gets its value wrapped in a
    :class:`~pyro.ops.provenance.ProvenanceTensor` labelled with its name, after all other
    handlers have acted on it (so an intervened site passes on the intervened value). A site
    reads another if the other's label reaches its log-density -- through its distribution's
    parameters, or, for a ``pyro.deterministic`` site, through its value. A site in ``nodes``
    starts a fresh label; any other per-unit site (an auxiliary one) is transparent: it passes
    on what it read, plus its own name. An intervened site reads nothing.

    Global sites (outside the plate) are not tracked. Dependencies through Python control
    flow (``if x > 0``) are invisible to provenance tracking.

    Parameters
    ----------
    nodes
        Names of the sites that are causal variables (DAG nodes); None: every per-unit site.
    plate
        Name of the per-unit plate.

    Attributes
    ----------
    reads : dict
        Site name -> frozenset of the labels (site names) that reached it.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> def prog(n):
    ...     with pyro.plate("units", n):
    ...         x = pyro.sample("x", dist.Normal(0.0, 1.0))
    ...         h = pyro.deterministic("h", 2 * x)
    ...         pyro.sample("y", dist.Normal(h, 1.0))
    >>> with TrackDependencies() as deps:
    ...     prog(3)
    >>> sorted(deps.reads["y"]), sorted(deps.reads["h"])
    (['h'], ['x'])
    """

    def __init__(self, nodes: Iterable[str] | None = None, *, plate: str = UNITS) -> None:
        super().__init__()
        self.nodes = None if nodes is None else frozenset(nodes)
        self.plate = plate
        self.reads: dict[str, frozenset[str]] = {}

    def __enter__(self) -> TrackDependencies:
        self.reads = {}
        super().__enter__()
        return self

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if site_is_subsample(msg) or site_is_factor(msg):
            return
        previous = msg["continuation"]

        def record(m: dict[str, Any]) -> None:  # runs once every handler has acted
            if previous is not None:
                previous(m)
            self._record(m)

        msg["continuation"] = record

    def _record(self, msg: dict[str, Any]) -> None:
        if not in_units(msg, self.plate):
            return
        name = msg["name"]
        if msg["infer"].get(INTERVENED):
            reads: frozenset[str] = frozenset()
        else:
            with pyro.validation_enabled(False):
                try:
                    log_p = base_dist(msg["fn"]).log_prob(msg["value"])
                except Exception:  # a log-density that cannot be evaluated: fall back to the value
                    log_p = msg["value"]
            reads = get_provenance(log_p) - {name}
        self.reads[name] = reads
        opaque = self.nodes is None or name in self.nodes
        label = frozenset({name}) if opaque else reads | {name}
        value = detach_provenance(msg["value"])
        if isinstance(value, torch.Tensor):
            msg["value"] = ProvenanceTensor(value, label)
