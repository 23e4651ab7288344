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
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import MaskedDistribution
from pyro.poutine.util import site_is_factor, site_is_subsample

from .handlers import UNITS, TrackDependencies

__all__ = [
    "PERTURBATION_UNITS",
    "ProgramStructure",
    "SiteInfo",
    "check_units",
    "compose_through",
    "inspect_program",
    "perturbation_reads",
    "sample_sites",
]


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
    params
        Names of the ``pyro.param`` statements the program runs (a fit refuses them: every
        unknown of a Bayesian model needs a prior).

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
    params: tuple[str, ...] = ()
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
    params = tuple(name for name, msg in tr.nodes.items() if msg["type"] == "param")
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
        params=params,
        _order=tuple(sites),
    )


def sample_sites(trace: Any) -> dict[str, Any]:
    """A trace's sample sites by name, in program order: no plate (subsample) or factor sites.

    >>> import pyro, pyro.distributions as dist
    >>> def prog():
    ...     with pyro.plate("units", 2):
    ...         pyro.sample("X", dist.Normal(0.0, 1.0))
    ...     pyro.factor("f", torch.tensor(0.0))
    >>> list(sample_sites(pyro.poutine.trace(prog).get_trace()))
    ['X']
    """
    return {
        name: msg
        for name, msg in trace.nodes.items()
        if msg["type"] == "sample" and not site_is_subsample(msg) and not site_is_factor(msg)
    }


# --- dependencies by intervention ------------------------------------------------------------

PERTURBATION_UNITS = 16
"""Units the perturbation check runs the program with."""


def check_units(
    n: int, model_args: tuple[Any, ...] = (), model_kwargs: Mapping[str, Any] | None = None
) -> int:
    """Units the checks run a program with: at most :data:`PERTURBATION_UNITS`, or ``n`` itself
    where model arguments may hold per-unit data (a covariate of length ``n``).

    >>> check_units(1000), check_units(1000, (object(),))
    (16, 1000)
    """
    return n if model_args or model_kwargs else min(n, PERTURBATION_UNITS)


def _perturbations(fn: Any, value: torch.Tensor) -> list[torch.Tensor]:
    """Two other values in the support of ``fn`` (an empty list where none is known).

    Examples
    --------
    >>> import pyro.distributions as dist
    >>> [v.tolist() for v in _perturbations(dist.Bernoulli(0.3), torch.tensor([0.0, 1.0]))]
    [[1.0, 0.0]]
    """
    support = getattr(fn, "support", None)
    while isinstance(support, constraints.independent):  # event dims perturb elementwise
        support = support.base_constraint
    v = torch.as_tensor(value).detach()
    v = v if torch.is_floating_point(v) else v.double()
    lower = getattr(support, "lower_bound", None)
    upper = getattr(support, "upper_bound", None)
    if isinstance(support, type(constraints.boolean)):
        return [1.0 - v]
    if isinstance(support, type(constraints.real)):
        return [v + 1.0 + 0.5 * v.abs(), v - 1.3 - 0.5 * v.abs()]
    if isinstance(support, (type(constraints.positive), type(constraints.nonnegative))):
        return [lower + (v - lower) * 2.0 + 0.1, lower + (v - lower) * 0.4 + 1e-3]
    if isinstance(support, type(constraints.nonnegative_integer)):
        return [v + 1.0, v + 3.0]
    if isinstance(support, type(constraints.integer_interval(0, 1))):
        width = torch.as_tensor(upper, dtype=v.dtype) - lower + 1.0
        return [
            lower + torch.remainder(v - lower + 1.0, width),
            lower + torch.remainder(v - lower + 2.0, width),
        ]
    if isinstance(support, type(constraints.interval(0.0, 1.0))):
        span = torch.as_tensor(upper, dtype=v.dtype) - lower
        return [
            torch.where(v > lower + span / 2, lower + span / 4, lower + 3 * span / 4),
            lower + 0.6 * (v - lower),
        ]
    return []


def _signature(msg: Mapping[str, Any], value: torch.Tensor) -> torch.Tensor | None:
    """The site's log-density at ``value`` per element: it moves when the site's inputs move."""
    try:
        with pyro.validation_enabled(False):
            return msg["fn"].log_prob(value).detach().double()
    except Exception:  # a density that cannot be evaluated: the value itself stands in
        return None


def perturbation_reads(
    fn: Callable[..., Any],
    n: int,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, frozenset[str]]:
    """Which per-unit sites each per-unit site reads, found by intervention rather than by tracing.

    The program runs once (forked random stream); then, for every per-unit site ``S`` in turn,
    again with every site held at its value from that run except ``S``, which is moved to two
    other values in its support. A site whose log-density (its value, for a deterministic site)
    moves reads ``S``. Reads through auxiliary sites are composed by the caller. Unlike
    provenance tracking this sees reads that leave torch (``.item()``, ``.tolist()``,
    ``.numpy()``, Python control flow on a value), but only where the perturbations move the
    density (a threshold never crossed at these values stays invisible), and not through a site
    whose support has no known perturbation (a simplex, say).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> def prog(n):
    ...     with pyro.plate("units", n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(float(x.sum().item()), 1.0))  # leaves torch
    >>> sorted(perturbation_reads(prog, 3)["Y"])
    ['X']
    """
    kwargs = dict(model_kwargs or {})
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        base = pyro.poutine.trace(fn).get_trace(n, *model_args, **kwargs)
        sites = sample_sites(base)
        values = {name: msg["value"] for name, msg in sites.items()}
        units = [s for s, msg in sites.items() if any(f.name == UNITS for f in msg["cond_indep_stack"])]
        signature = {s: _signature(sites[s], values[s]) for s in units}
        reads: dict[str, set[str]] = {s: set() for s in units}
        for s in units:
            for moved in _perturbations(sites[s]["fn"], values[s]):
                data = {**values, s: moved.to(values[s].dtype) if torch.is_tensor(values[s]) else moved}
                try:
                    tr = pyro.poutine.trace(pyro.poutine.condition(fn, data=data)).get_trace(
                        n, *model_args, **kwargs
                    )
                except Exception:  # this value breaks the program downstream: try the other one
                    continue
                for t in units:
                    if t == s or t not in tr.nodes:
                        continue
                    after, before = _signature(tr.nodes[t], values[t]), signature[t]
                    changed = (
                        before is not None
                        and after is not None
                        and not torch.allclose(after, before, rtol=1e-9, atol=1e-12, equal_nan=True)
                    )
                    if changed:
                        reads[t].add(s)
    return {t: frozenset(r) for t, r in reads.items()}


def compose_through(reads: Mapping[str, frozenset[str]], nodes: frozenset[str]) -> dict[str, frozenset[str]]:
    """Reads of DAG nodes, with auxiliary sites (those not in ``nodes``) made transparent.

    Examples
    --------
    >>> compose_through({"Y": frozenset({"e"}), "e": frozenset({"X"}), "X": frozenset()}, frozenset({"X", "Y"}))["Y"]
    frozenset({'X'})
    """
    out = {}
    for site, direct in reads.items():
        seen: set[str] = set()
        stack = list(direct)
        while stack:
            r = stack.pop()
            if r in seen:
                continue
            seen.add(r)
            if r not in nodes:
                stack.extend(reads.get(r, ()))
        out[site] = frozenset(r for r in seen if r in nodes)
    return out
