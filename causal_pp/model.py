"""Causal models: a plain Pyro program with a causal DAG attached.

A causal model is a Pyro function ``fn(n, ...)`` that simulates ``n`` units. Its **global
parameters** are sample sites outside the plate; its **per-unit variables** live inside
``with units(n):`` (a ``pyro.plate`` named ``"units"``) and are the nodes of the DAG, with the
same names. Latent DAG nodes are per-unit sites that are never observed.

>>> import pyro, pyro.distributions as dist
>>> from causal_pp import CausalGraph, causal_model, units
>>> @causal_model(CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"]))
... def confounded(n):
...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
...     with units(n):
...         u = pyro.sample("U", dist.Normal(0.0, 1.0))
...         x = pyro.sample("X", dist.Normal(u, 1.0))
...         pyro.sample("Y", dist.Normal(b * x + u, 1.0))
>>> confounded.check().global_sites
('b',)

Nothing is subclassed: :func:`causal_model` (or :class:`CausalModel`) wraps the function, and
calling the model calls the function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pyro
import torch
from pyro import poutine

from . import validation as check
from .batch_check import batch_problem
from .dag_check import check_against_dag, perturbed_parents
from .errors import (
    ArgumentTypeError,
    InterventionError,
    ModelGraphMismatchError,
    QueryError,
    UnbatchableModelError,
    UnknownVariableError,
)
from .graph import CausalGraph
from .handlers import UNITS, SetValue, intervene
from .handlers.internals import base_dist
from .handlers.twin_world import TwinWorldProgram, twin_world
from .program import (
    ProgramStructure,
    SiteInfo,
    check_units,
    inspect_program,
)
from .runtime import plate

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .posterior import CausalPosterior

__all__ = [
    "CausalModel",
    "InterventionalProgram",
    "ProgramStructure",
    "SiteInfo",
    "causal_model",
    "units",
]


def units(n: int) -> pyro.plate:
    """The plate of the units: ``pyro.plate("units", n, dim=-1)`` (as :func:`causal_pp.runtime.plate`,
    which keeps its sites' log densities unscaled in a JIT-compiled ELBO).

    Put every per-unit variable (every DAG node) inside it; global parameters go outside.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> with units(4):
    ...     pyro.sample("X", dist.Normal(0.0, 1.0)).shape
    torch.Size([4])
    """
    return plate(UNITS, n, dim=-1)


# --- what a program contains -------------------------------------------------------------


# --- the causal model --------------------------------------------------------------------


def _edge(p: str, c: str) -> str:
    return f"{p} → {c}"


class CausalModel:
    """A Pyro program ``fn(n, ...)`` together with the causal DAG it encodes.

    Parameters
    ----------
    fn
        The Pyro model. Its first argument is the number of units ``n``; per-unit variables
        (the DAG nodes) are sampled inside ``with units(n):``, global parameters outside.
        DAG nodes may be sample or ``pyro.deterministic`` sites.
    graph
        The :class:`~causal_pp.CausalGraph`: node names are site names; latent nodes are
        per-unit sites that are never observed.
    auxiliary
        Per-unit sites that are not causal variables (e.g. explicit noise terms or
        intermediate deterministic values). They are transparent to the structure check: a
        site that reads an auxiliary site reads whatever that site read.

    Calling the model calls ``fn``. Use :meth:`check` for the program-vs-DAG check,
    :meth:`intervene` for the interventional program, and :meth:`fit` to fit data.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> from causal_pp import CausalGraph, CausalModel, units
    >>> def chain(n):
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(x, 1.0))
    >>> model = CausalModel(chain, CausalGraph.parse("X -> Y"))
    >>> model(3)  # just the function
    >>> model.check().unit_sites
    ('X', 'Y')
    """

    __slots__ = ("__dict__", "_auxiliary", "_check_cache", "_fn", "_frozen", "_graph")

    def __init__(self, fn: Callable[..., Any], graph: CausalGraph, auxiliary: Iterable[str] = ()) -> None:
        if not callable(fn):
            raise ArgumentTypeError(f"CausalModel needs a Pyro model function; got {type(fn).__name__}.")
        if isinstance(fn, CausalModel):
            fn = fn.fn
        if not isinstance(graph, CausalGraph):
            raise ArgumentTypeError(
                f"CausalModel needs a CausalGraph; got {type(graph).__name__}. Build one with "
                "CausalGraph.parse('X -> Y; ...', latent=[...])."
            )
        aux = (auxiliary,) if isinstance(auxiliary, str) else tuple(auxiliary)
        clash = sorted(set(aux) & set(graph.nodes))
        if clash:
            raise ModelGraphMismatchError(
                f"{clash} are listed as auxiliary but are nodes of the DAG; a site is either a "
                "causal variable (a DAG node) or auxiliary, not both.",
                problems=tuple(f"{a!r} is both auxiliary and a DAG node" for a in clash),
            )
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "_auxiliary", frozenset(aux))
        functools.update_wrapper(self, fn)
        # check() results that do not depend on n (the perturbation check), per model arguments
        object.__setattr__(self, "_check_cache", {})
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError(
                f"CausalModel is immutable; cannot set {name!r}. Wrap the function again with a "
                "different graph instead."
            )
        object.__setattr__(self, name, value)

    def __call__(self, n: int, *args: Any, **kwargs: Any) -> Any:
        return self._fn(n, *args, **kwargs)

    @property
    def fn(self) -> Callable[..., Any]:
        """The wrapped Pyro model function."""
        return self._fn

    @property
    def graph(self) -> CausalGraph:
        """The causal DAG the program claims to encode."""
        return self._graph

    @property
    def auxiliary(self) -> frozenset[str]:
        """Per-unit sites that are not DAG nodes."""
        return self._auxiliary

    @property
    def name(self) -> str:
        return getattr(self._fn, "__name__", type(self._fn).__name__)

    def __repr__(self) -> str:
        aux = f", auxiliary={sorted(self._auxiliary)}" if self._auxiliary else ""
        return f"CausalModel({self.name}, {self._graph!r}{aux})"

    # --- inspection ---------------------------------------------------------------------

    def inspect(
        self, n: int = 5, *, model_args: tuple[Any, ...] = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> ProgramStructure:
        """Run the program once with ``n`` units and record its sites and dependencies.

        Unlike :meth:`check`, nothing is raised or warned.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X -> Y"))
        ... def m(n):
        ...     s = pyro.sample("s", dist.HalfNormal(1.0))
        ...     with units(n):
        ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
        ...         pyro.sample("Y", dist.Normal(x, s))
        >>> m.inspect().sites["Y"].shape
        (5,)
        """
        return inspect_program(self._fn, n, self._graph.nodes, model_args, model_kwargs)

    def unit_sites(
        self, n: int = 5, *, model_args: tuple[Any, ...] = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> tuple[str, ...]:
        """Names of the per-unit sites (inside ``units``), in program order.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X"))
        ... def m(n):
        ...     loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
        ...     with units(n):
        ...         pyro.sample("X", dist.Normal(loc, 1.0))
        >>> m.unit_sites()
        ('X',)
        """
        return self.inspect(n, model_args=model_args, model_kwargs=model_kwargs).unit_sites

    def global_sites(
        self, n: int = 5, *, model_args: tuple[Any, ...] = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> tuple[str, ...]:
        """Names of the global parameters (sample sites outside ``units``), in program order.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X"))
        ... def m(n):
        ...     loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
        ...     with units(n):
        ...         pyro.sample("X", dist.Normal(loc, 1.0))
        >>> m.global_sites()
        ('loc',)
        """
        return self.inspect(n, model_args=model_args, model_kwargs=model_kwargs).global_sites

    def check(
        self,
        n: int = 5,
        *,
        model_args: tuple[Any, ...] = (),
        model_kwargs: Mapping[str, Any] | None = None,
        warn: bool = True,
    ) -> ProgramStructure:
        """Check that the program encodes its DAG; run automatically by :meth:`fit`.

        The program is run once with ``n`` units (forked random stream). It must:

        * have a ``units`` plate of size ``n`` and a per-unit site (sample or deterministic)
          for every DAG node;
        * have no per-unit site that is not a DAG node, unless it is declared auxiliary;
        * read, for every per-unit site, only values its DAG parents allow: each dependency
          the program actually has between per-unit sites must be an edge of the DAG.

        Dependencies are found twice. *Provenance tracking* follows every value through torch
        operations (deterministic and auxiliary sites included) and names the auxiliary sites
        a dependency runs through. *Intervention* (:func:`~causal_pp.program.perturbation_reads`)
        holds every site at its value from one run, moves one site at a time to two other values
        in its support, and records which sites' distributions move: this catches a value that
        leaves torch on the way (``.item()``, ``.tolist()``, ``.numpy()``, Python control flow)
        and so escapes provenance tracking. Its limits: a dependency that does not move the
        density at the values tried (a threshold never crossed) is not seen, nor one through a
        site whose support has no known perturbation (a simplex), nor one through state outside
        the program (a global variable).

        A DAG edge the program never uses gets a :class:`UserWarning` (the program encodes a
        smaller graph: the DAG is still a valid, if conservative, claim).

        The program must also broadcast over leading batch dimensions, as fits and estimates run
        it (:mod:`causal_pp.batch_check`): index vector parameters from the right, ``w[..., 0]``.

        Parameters
        ----------
        n
            Number of units to run the program with.
        model_args, model_kwargs
            Further arguments of the model function.
        warn
            Whether to warn about unused DAG edges.

        Returns
        -------
        ProgramStructure
            The sites and dependencies found.

        Raises
        ------
        ModelGraphMismatchError
            One line per problem in ``.problems``, e.g. ``"Y reads Z but the DAG has no Z → Y"``.
        UnbatchableModelError
            The program mixes the draws of a batch (``.site`` names where), e.g. ``w[0]``.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist
        >>> from causal_pp import CausalGraph, causal_model, units, ModelGraphMismatchError
        >>> @causal_model(CausalGraph.parse("X; Z; Y"))
        ... def m(n):
        ...     with units(n):
        ...         z = pyro.sample("Z", dist.Normal(0.0, 1.0))
        ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
        ...         pyro.sample("Y", dist.Normal(x + z, 1.0))
        >>> try:
        ...     m.check()
        ... except ModelGraphMismatchError as err:
        ...     print(*err.problems, sep="\\n")
        Y reads X but the DAG has no X → Y; add the edge to the DAG or remove the dependency from the program
        Y reads Z but the DAG has no Z → Y; add the edge to the DAG or remove the dependency from the program
        """
        check.positive_int("n", n)
        check.boolean("warn", warn)
        structure = self.inspect(n, model_args=model_args, model_kwargs=model_kwargs)
        small = check_units(n, model_args, model_kwargs)
        key = None if model_args or model_kwargs else small
        cached = self._check_cache.get(key) if key is not None else None
        if cached is None:
            cached = (
                perturbed_parents(self, structure, n, model_args, model_kwargs),
                batch_problem(
                    self.fn, small, max_plate_nesting=structure.max_plate_nesting,
                    model_args=tuple(model_args), model_kwargs=model_kwargs,
                ),
            )  # fmt: skip
            if key is not None:
                self._check_cache[key] = cached
        perturbed, unbatchable = cached
        check_against_dag(self, structure, n, perturbed, warn=warn)
        if unbatchable is not None:
            raise UnbatchableModelError(unbatchable.message(self.name), site=unbatchable.site)
        return structure

    # --- interventions ------------------------------------------------------------------

    def _validate_actions(self, actions: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(actions, Mapping):
            raise InterventionError(f"do must be a mapping {{name: value}}; got {actions!r}.")
        if not actions:
            raise InterventionError("do is empty; name at least one DAG node and its value, e.g. {'X': 1.0}.")
        out: dict[str, Any] = {}
        for k, v in actions.items():
            if k not in self._graph:
                sites = self.inspect().sites
                if k in sites and not sites[k].per_unit:
                    raise InterventionError(
                        f"{k!r} is a global parameter of {self.name!r}; only per-unit causal variables "
                        f"(DAG nodes: {list(self._graph.nodes)}) can be intervened on. To study other "
                        "parameter values, condition the model on them instead."
                    )
                if k in self._auxiliary or k in sites:
                    raise InterventionError(
                        f"{k!r} is an auxiliary site of {self.name!r}, not a causal variable; only DAG "
                        f"nodes {list(self._graph.nodes)} can be intervened on."
                    )
                raise UnknownVariableError(
                    f"cannot intervene on {k!r}: it is not a node of the DAG (nodes: "
                    f"{list(self._graph.nodes)})."
                )
            if isinstance(v, SetValue):
                v = v.value
            if isinstance(v, bool) or not isinstance(v, (int, float, torch.Tensor)):
                try:
                    import numpy as np

                    if isinstance(v, (np.ndarray, np.number)):
                        v = torch.as_tensor(v, dtype=torch.get_default_dtype())
                    else:
                        raise TypeError
                except TypeError:
                    raise InterventionError(
                        f"do[{k!r}] must be a number or a tensor (the value every unit is set to); got {v!r}."
                    ) from None
            out[k] = v
        return out

    def check_values(
        self,
        values: Mapping[str, float],
        *,
        role: str = "value",
        params: Mapping[str, torch.Tensor] | None = None,
        model_args: tuple[Any, ...] = (),
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Refuse values a query would give sites they cannot take, before any simulation.

        Each ``{site: value}`` must lie in the support of the site's distribution (``do(X=2)`` on
        a Bernoulli ``X`` is refused: the model would extrapolate) and be representable in the
        model's floating-point type (``1e300`` overflows float32 to infinity). Deterministic sites
        take any finite value. The supports are read from one run of the program with one unit,
        with the global parameters at ``params`` (e.g. posterior means) where given.

        Raises
        ------
        QueryError
            Naming the site, the value, the distribution and its support.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X -> Y"))
        ... def m(n):
        ...     with units(n):
        ...         x = pyro.sample("X", dist.Bernoulli(0.5))
        ...         pyro.sample("Y", dist.Normal(x, 1.0))
        >>> m.check_values({"X": 1.0}, role="do")
        >>> m.check_values({"X": 2.0}, role="do")
        Traceback (most recent call last):
        ...
        causal_pp.errors.QueryError: do['X'] = 2 is outside the support of site 'X' (Bernoulli, support Boolean()); give a value the site can take.
        """
        if not values:
            return
        dtype = torch.get_default_dtype()
        for name, v in values.items():
            if not torch.isfinite(torch.tensor(float(v), dtype=dtype)):
                raise QueryError(
                    f"{role}[{name!r}] = {v!r} is not representable in the model's {dtype} (it overflows to "
                    "infinity); give a value of a sensible magnitude."
                )
        run = poutine.condition(self._fn, data=dict(params or {}))
        with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.validation_enabled(False):
            torch.manual_seed(0)
            tr = poutine.trace(run).get_trace(1, *model_args, **dict(model_kwargs or {}))
        for name, v in values.items():
            site = tr.nodes.get(name)
            if site is None or site["type"] != "sample" or site["infer"].get("_deterministic"):
                continue
            fn = site["fn"]
            value = torch.full_like(torch.as_tensor(site["value"], dtype=dtype), float(v))
            ok = fn.support.check(value)
            if not bool(torch.as_tensor(ok).all()):
                raise QueryError(
                    f"{role}[{name!r}] = {v:g} is outside the support of site {name!r} "
                    f"({type(base_dist(fn)).__name__}, support {fn.support}); give a value the site can take."
                )

    def intervene(self, do: Mapping[str, Any]) -> InterventionalProgram:
        """The interventional program ``do(model, do)``: a plain Pyro callable ``prog(n, ...)``.

        Built with ChiRho's ``do``: each named per-unit site is set to its value (a number,
        or a tensor broadcastable to the site's shape) and every descendant -- deterministic
        sites included -- is recomputed from it. Traces and ``Predictive`` report the value
        the program used at intervened sites; the natural draw is kept in
        ``site["infer"]["natural_value"]``.

        Parameters
        ----------
        do
            ``{node: value}`` for DAG nodes (observed or latent).

        Raises
        ------
        InterventionError
            A global parameter or auxiliary site is named, or a value is not numeric.
        UnknownVariableError
            A name is not a site of the model.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X -> Y"))
        ... def m(n):
        ...     with units(n):
        ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
        ...         pyro.deterministic("Y", 2 * x)
        >>> prog = m.intervene({"X": 1.0})
        >>> tr = pyro.poutine.trace(prog).get_trace(2)
        >>> tr.nodes["X"]["value"], tr.nodes["Y"]["value"]
        (tensor([1., 1.]), tensor([2., 2.]))
        >>> prog.graph.edges  # the mutilated DAG
        (('X', 'Y'),)
        """
        return InterventionalProgram(self, self._validate_actions(do))

    def twin_world(self, do: Mapping[str, Any], factual: Mapping[str, Any] | None = None) -> TwinWorldProgram:
        """The twin-world counterfactual program with shared noise; see :func:`causal_pp.handlers.twin_world`.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X -> Y"))
        ... def m(n):
        ...     with units(n):
        ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
        ...         pyro.sample("Y", dist.Normal(x, 1.0))
        >>> m.twin_world({"X": 0.0}, factual={"Y": 1.0})
        TwinWorldProgram(m, do={'X': 0.0}, factual={'Y': 1.0})
        """
        return twin_world(self, do, factual)

    # --- inference ----------------------------------------------------------------------

    def fit(self, data: pd.DataFrame | Mapping[str, Any], **options: Any) -> CausalPosterior:
        """Fit the model to observational data; see :func:`causal_pp.inference.fit`.

        Examples
        --------
        >>> import pyro, pyro.distributions as dist, torch
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X -> Y"))
        ... def m(n):
        ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
        ...     with units(n):
        ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
        ...         pyro.sample("Y", dist.Normal(b * x, 1.0))
        >>> x = torch.linspace(-2, 2, 50)
        >>> post = m.fit({"X": x, "Y": 0.5 * x}, method="svi", num_steps=300, progress_bar=False)
        >>> round(post.samples["b"].mean().item(), 1)
        0.5
        """
        from .inference import fit  # the facade: inference imports this module

        return fit(self, data, **options)


def causal_model(
    graph: CausalGraph, *, auxiliary: Iterable[str] = ()
) -> Callable[[Callable[..., Any]], CausalModel]:
    """Decorator: attach a causal DAG to a Pyro model function; returns a :class:`CausalModel`.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> from causal_pp import CausalGraph, causal_model, units
    >>> @causal_model(CausalGraph.parse("X -> Y"), auxiliary=["noise"])
    ... def m(n):
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         e = pyro.sample("noise", dist.Normal(0.0, 1.0))
    ...         pyro.deterministic("Y", x + e)
    >>> m.check().edges
    frozenset({('X', 'Y')})
    """

    def wrap(fn: Callable[..., Any]) -> CausalModel:
        return CausalModel(fn, graph, auxiliary=auxiliary)

    return wrap


class InterventionalProgram:
    """The program of a :class:`CausalModel` under ``do(actions)``; call it like the model.

    Attributes
    ----------
    model
        The un-intervened :class:`CausalModel`.
    actions
        ``{node: value}`` (read-only).
    graph
        The mutilated DAG (incoming edges of intervened nodes removed).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> from causal_pp import CausalGraph, causal_model, units
    >>> @causal_model(CausalGraph.parse("X -> Y"))
    ... def m(n):
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(x, 1.0))
    >>> prog = m.intervene({"X": 0.0})
    >>> sorted(prog.inspect().edges)
    [('X', 'Y')]
    """

    __slots__ = ("__dict__", "_actions", "_graph", "_model", "_program")

    def __init__(self, model: CausalModel, actions: Mapping[str, Any]) -> None:
        self._model = model
        self._actions = MappingProxyType(dict(actions))
        self._graph = model.graph.mutilate(actions)
        self._program = intervene(model.fn, self._actions)
        functools.update_wrapper(self, model.fn)

    def __call__(self, n: int, *args: Any, **kwargs: Any) -> Any:
        return self._program(n, *args, **kwargs)

    @property
    def model(self) -> CausalModel:
        return self._model

    @property
    def actions(self) -> Mapping[str, Any]:
        return self._actions

    @property
    def graph(self) -> CausalGraph:
        return self._graph

    def intervene(self, do: Mapping[str, Any]) -> InterventionalProgram:
        """Intervene further; a name given again takes its new value (the later action wins).

        Examples
        --------
        >>> import pyro, pyro.distributions as dist
        >>> from causal_pp import CausalGraph, causal_model, units
        >>> @causal_model(CausalGraph.parse("X -> Y"))
        ... def m(n):
        ...     with units(n):
        ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
        ...         pyro.sample("Y", dist.Normal(x, 1.0))
        >>> dict(m.intervene({"X": 0.0}).intervene({"X": 2.0}).actions)
        {'X': 2.0}
        """
        return self._model.intervene({**self._actions, **dict(do)})

    def inspect(
        self, n: int = 5, *, model_args: tuple[Any, ...] = (), model_kwargs: Mapping[str, Any] | None = None
    ) -> ProgramStructure:
        """Sites and dependency structure of the intervened program (see :meth:`CausalModel.inspect`)."""
        return inspect_program(self._program, n, self._model.graph.nodes, model_args, model_kwargs)

    def __repr__(self) -> str:
        acts = ", ".join(f"{k}={v}" for k, v in self._actions.items())
        return f"InterventionalProgram(do({self._model.name}, {acts}))"
