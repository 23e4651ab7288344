"""What a Pyro program contains: its sites, their shapes, and which sites each per-unit site reads.

:func:`inspect_program` runs a program once and returns a :class:`ProgramStructure`;
:meth:`causal_pp.CausalModel.check` compares it with the DAG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pyro
import torch
from pyro.distributions.torch_distribution import MaskedDistribution
from pyro.poutine.util import site_is_factor, site_is_subsample

from .handlers import UNITS, TrackDependencies

__all__ = ["ProgramStructure", "SiteInfo", "inspect_program"]


@dataclass(frozen=True)
class SiteInfo:
    """One sample (or deterministic) site of a program, as seen in one run.

    Attributes
    ----------
    name
        Site name.
    per_unit
        Inside the ``units`` plate (a causal variable) or not (a global parameter).
    deterministic
        A ``pyro.deterministic`` site.
    distribution
        Name of the site's distribution class.
    discrete, enumerable
        Whether its support is discrete, and whether Pyro can enumerate it.
    shape
        Shape of its value in the run (per-unit sites: ``(n, ...)``).
    batch_ndim, event_ndim
        Number of batch and event dimensions of its distribution.
    """

    name: str
    per_unit: bool
    deterministic: bool
    distribution: str
    discrete: bool
    enumerable: bool
    shape: tuple[int, ...]
    batch_ndim: int
    event_ndim: int


@dataclass(frozen=True)
class ProgramStructure:
    """What :meth:`CausalModel.check` found in one run of the program.

    Attributes
    ----------
    n
        Number of units the program was run with.
    sites
        Site name -> :class:`SiteInfo`, in program order.
    reads
        Per-unit site -> the per-unit sites whose values reach its log-density (DAG nodes, and
        auxiliary sites through which further DAG nodes are read).
    nodes
        The DAG's node names.
    max_plate_nesting
        Number of plate dimensions the program uses.
    units_size
        Size of the ``units`` plate (None if the program has none).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> def prog(n):
    ...     with pyro.plate("units", n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         h = pyro.deterministic("h", 2 * x)
    ...         pyro.sample("Y", dist.Normal(h, 1.0))
    >>> s = inspect_program(prog, 4, nodes=["X", "Y"])
    >>> s.unit_sites, sorted(s.parents("Y")), s.through("Y", "X")
    (('X', 'h', 'Y'), ['X'], ('h',))
    >>> s.sites["h"].deterministic, s.sites["Y"].shape
    (True, (4,))
    """

    n: int
    sites: Mapping[str, SiteInfo]
    reads: Mapping[str, frozenset[str]]
    nodes: frozenset[str]
    max_plate_nesting: int
    units_size: int | None
    _order: tuple[str, ...] = field(default=(), repr=False)

    @property
    def unit_sites(self) -> tuple[str, ...]:
        """Per-unit sites (sample and deterministic), in program order."""
        return tuple(s for s, i in self.sites.items() if i.per_unit)

    @property
    def global_sites(self) -> tuple[str, ...]:
        """Global parameters: sample sites outside the units plate, in program order."""
        return tuple(s for s, i in self.sites.items() if not i.per_unit and not i.deterministic)

    @property
    def deterministic_sites(self) -> tuple[str, ...]:
        """``pyro.deterministic`` sites, in program order."""
        return tuple(s for s, i in self.sites.items() if i.deterministic)

    def parents(self, name: str) -> frozenset[str]:
        """The DAG nodes that per-unit site ``name`` reads, directly or through auxiliary sites."""
        return frozenset(p for p in self.reads.get(name, ()) if p in self.nodes)

    def through(self, child: str, parent: str) -> tuple[str, ...]:
        """Auxiliary sites through which ``child`` reads DAG node ``parent`` (empty if direct)."""
        return tuple(
            sorted(
                a
                for a in self.reads.get(child, ())
                if a not in self.nodes and parent in self.reads.get(a, ())
            )
        )

    @property
    def edges(self) -> frozenset[tuple[str, str]]:
        """The program's dependency structure over DAG nodes: ``(parent, child)`` pairs."""
        return frozenset((p, c) for c in self.unit_sites if c in self.nodes for p in self.parents(c))


def _site_info(msg: Mapping[str, Any]) -> SiteInfo:
    fn = msg["fn"]
    base = fn
    while isinstance(base, MaskedDistribution):
        base = base.base_dist
    deterministic = bool(msg["infer"].get("_deterministic", False))
    inner = base
    while hasattr(inner, "base_dist"):
        inner = inner.base_dist
    support = getattr(fn, "support", None)
    discrete = bool(getattr(support, "is_discrete", False)) and not deterministic
    value = msg["value"]
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
    batch_ndim, event_ndim = len(fn.batch_shape), len(fn.event_shape)
    if deterministic:  # pyro.deterministic makes every dimension an event dimension
        plate_ndim = max(
            (-f.dim for f in msg["cond_indep_stack"] if f.vectorized and f.dim is not None), default=0
        )
        batch_ndim = min(plate_ndim, len(shape))
        event_ndim = len(shape) - batch_ndim
    return SiteInfo(
        name=msg["name"],
        per_unit=any(f.name == UNITS for f in msg["cond_indep_stack"]),
        deterministic=deterministic,
        distribution=type(inner).__name__,
        discrete=discrete,
        enumerable=discrete and bool(getattr(fn, "has_enumerate_support", False)),
        shape=shape,
        batch_ndim=batch_ndim,
        event_ndim=event_ndim,
    )


def inspect_program(
    fn: Callable[..., Any],
    n: int,
    nodes: Iterable[str] = (),
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> ProgramStructure:
    """Run ``fn(n, *model_args, **model_kwargs)`` once and record its sites and dependencies.

    The run uses a forked random stream (the caller's is left untouched) and no gradients.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> def prog(n):
    ...     with pyro.plate("units", n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(x, 1.0))
    >>> sorted(inspect_program(prog, 3, nodes=["X", "Y"]).edges)
    [('X', 'Y')]
    """
    nodes = frozenset(nodes)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        with TrackDependencies(nodes=nodes or None) as deps:
            tr = pyro.poutine.trace(fn).get_trace(n, *model_args, **dict(model_kwargs or {}))
    sites: dict[str, SiteInfo] = {}
    nesting = 0
    units_size = None
    for name, msg in tr.nodes.items():
        if msg["type"] != "sample":
            continue
        for f in msg["cond_indep_stack"]:
            if f.vectorized and f.dim is not None:
                nesting = max(nesting, -f.dim)
            if f.name == UNITS:
                units_size = f.size
        if site_is_subsample(msg) or site_is_factor(msg):
            continue
        sites[name] = _site_info(msg)
    return ProgramStructure(
        n=n,
        sites=MappingProxyType(sites),
        reads=MappingProxyType(dict(deps.reads)),
        nodes=nodes,
        max_plate_nesting=max(nesting, 1),
        units_size=units_size,
        _order=tuple(sites),
    )
