"""The canonical (response-function) model of the part of a graph that a query needs.

Every discrete SCM over observed variables with latent confounders is observationally and
interventionally equivalent to one in which each observed variable V is a deterministic
function of its observed parents (in the latent projection) and of a finite *response type*
R_V: one type per function from the parents' values to V's values. The latent variables enter
only through the joint distribution q of the response types (Balke & Pearl 1994, 1997; Pearl,
*Causality*, 2nd ed., ch. 8). P(v) and every interventional or counterfactual probability are
sums of q over the types consistent with the event -- linear in q.

The variables split in two:

* **roots** -- observed variables with no observed parent and no latent confounder. They are
  exogenous and independent of every response type, so the program conditions on them;
* **the group** -- every other variable. The program lets the joint distribution of their
  response types be *any* distribution: one joint confounder over the whole group.

That is exactly the graph's model when the group is confounded by a single latent variable
(or has one member): the Balke-Pearl class (the instrumental variable graph, the bow, X -> Y),
and the program's optimum is then the sharp bound. Otherwise the graph also says that some
response types are independent; dropping those independences is a relaxation -- the bounds
stay valid but may be loose (exact bounds need polynomial programs: Duarte et al., JASA 2023).

Only the *relevant* variables are modelled: the variables the query mentions, their ancestors,
and everything that shares latent confounding with them (closed under both). The rest cannot
narrow the bounds -- their response types are independent of the relevant ones -- so leaving
them out changes neither the bounds nor their sharpness.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..errors import QueryError, TooManyResponseTypesError
from ..graph import CausalGraph

__all__ = ["MAX_RESPONSE_TYPES", "CanonicalModel", "latent_reach", "relevant_variables"]

MAX_RESPONSE_TYPES = 2**16
"""Default largest number of joint response types (the linear programs' columns)."""

MAX_CELLS = 2**20
"""Largest number of observed cells (product of the relevant variables' domain sizes) modelled."""


def relevant_variables(graph: CausalGraph, mentioned: Iterable[str]) -> tuple[str, ...]:
    """The observed variables a query's bounds depend on, in topological order.

    The smallest set that holds ``mentioned``, the ancestors of its members (in the latent
    projection) and the whole c-component (bidirected-connected set) of each member.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> g = CausalGraph.parse("Z -> X -> Y; X <-> Y; Y -> W; V")
    >>> relevant_variables(g, ["X", "Y"])
    ('Z', 'X', 'Y')
    """
    directed, bidirected = graph.projected_edges()
    parents: dict[str, set[str]] = {v: set() for v in graph.observed}
    for a, b in directed:
        parents[b].add(a)
    mates: dict[str, set[str]] = {v: set() for v in graph.observed}
    for pair in bidirected:
        a, b = tuple(pair)
        mates[a].add(b)
        mates[b].add(a)
    keep: set[str] = set()
    stack = list(mentioned)
    while stack:
        v = stack.pop()
        if v in keep:
            continue
        keep.add(v)
        stack.extend(parents[v] | mates[v])
    return tuple(v for v in graph.topological_order if v in keep)


def latent_reach(graph: CausalGraph) -> dict[str, frozenset[str]]:
    """For each latent node, the observed nodes it reaches along latent-only directed paths.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> sorted(latent_reach(CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"]))["U"])
    ['X', 'Y']
    """
    g = graph.to_networkx()
    latent = set(graph.latent)
    out: dict[str, frozenset[str]] = {}
    for u in graph.latent:
        seen: set[str] = set()
        found: set[str] = set()
        stack = list(g.successors(u))
        while stack:
            w = stack.pop()
            if w in seen:
                continue
            seen.add(w)
            if w in latent:
                stack.extend(g.successors(w))
            else:
                found.add(w)
        out[u] = frozenset(found)
    return out


MAX_RANK_SIDE = 4096
"""The rank of the constraint matrix is computed from its Gram matrix on its shorter side, up to this size."""


def _rank(a: sp.csr_matrix) -> int:
    """Rank of a sparse matrix via the Gram matrix of its shorter side (exact for 0/1 and small integers)."""
    rows, cols = a.shape
    if min(rows, cols) > MAX_RANK_SIDE:
        raise TooManyResponseTypesError(
            f"the model's constraint matrix ({rows:,} x {cols:,}) is too large to analyse; reduce the number of "
            "values or of variables.",
            count=float(min(rows, cols)),
            limit=MAX_RANK_SIDE,
        )
    gram = (a @ a.T) if rows <= cols else (a.T @ a)
    return int(np.linalg.matrix_rank(gram.toarray()))


def _magnitude(base: int, exponent: int) -> str:
    digits = exponent * math.log10(base) if base > 1 else 0.0
    return f"{base**exponent:,}" if digits < 15 else f"about 10^{digits:.0f}"


class CanonicalModel:
    """The response-function model of ``variables`` (a relevant set) of a graph.

    Parameters
    ----------
    graph
        The causal graph.
    variables
        The observed variables to model (see :func:`relevant_variables`): closed under
        ancestors and c-components.
    domains
        Each variable's values (sorted integers).
    max_types
        Largest number of joint response types (columns of the linear program) allowed.

    Attributes
    ----------
    variables
        The modelled variables, in topological order.
    roots, group
        The unconfounded roots (conditioned on) and the other variables (whose response types
        are jointly free), each in topological order; the observed table's axes are
        ``roots + group``.
    parents
        Each variable's observed parents (latent projection), in topological order.
    type_counts
        Number of response types of each group variable.
    num_types
        Number of joint response types of the group (the program's columns).
    sharp, sharp_reason
        Whether the program is the graph's exact model, and why (plain words).

    Raises
    ------
    TooManyResponseTypesError
        A variable's response types, the joint count, or the observed cells exceed the limits.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> m = CanonicalModel(CausalGraph.parse("Z -> X -> Y; X <-> Y"), ("Z", "X", "Y"),
    ...                    {"Z": (0, 1), "X": (0, 1), "Y": (0, 1)})
    >>> m.roots, m.group, m.type_counts, m.sharp
    (('Z',), ('X', 'Y'), {'X': 4, 'Y': 4}, True)
    """

    def __init__(
        self,
        graph: CausalGraph,
        variables: Sequence[str],
        domains: Mapping[str, Sequence[int]],
        *,
        max_types: int = MAX_RESPONSE_TYPES,
    ) -> None:
        directed, bidirected = graph.projected_edges()
        chosen = set(variables)
        self.variables = tuple(v for v in graph.topological_order if v in chosen)
        self.domains = {v: tuple(int(x) for x in domains[v]) for v in self.variables}
        self.parents = {
            v: tuple(p for p in self.variables if (p, v) in directed and p in chosen) for v in self.variables
        }
        confounded = {v for pair in bidirected if pair & chosen for v in pair}
        self._confounded = frozenset(confounded)
        self.roots = tuple(v for v in self.variables if not self.parents[v] and v not in confounded)
        self.group = tuple(v for v in self.variables if v not in self.roots)
        self.max_types = max_types
        self._check_size()
        self.type_counts = {v: self._size(v) for v in self.group}
        self.num_types = int(np.prod([self.type_counts[v] for v in self.group], dtype=np.int64))
        self.root_shape = tuple(len(self.domains[v]) for v in self.roots)
        self.group_shape = tuple(len(self.domains[v]) for v in self.group)
        self.num_root_configs = int(np.prod(self.root_shape, dtype=np.int64))
        self.num_group_cells = int(np.prod(self.group_shape, dtype=np.int64))
        self.sharp, self.sharp_reason = self._sharpness(graph)
        self._cache: dict[tuple[int, tuple[tuple[str, int], ...]], dict[str, np.ndarray]] = {}

    # --- size -------------------------------------------------------------------------------

    def _parent_configs(self, v: str) -> int:
        return int(np.prod([len(self.domains[p]) for p in self.parents[v]], dtype=np.int64))

    def _size(self, v: str) -> int:
        return len(self.domains[v]) ** self._parent_configs(v)

    def _check_size(self) -> None:
        limit = self.max_types
        hint = (
            "Fewer categories (merge levels), fewer parents, or a larger max_response_types "
            "(the linear programs grow with it) would make it tractable."
        )
        log_total = 0.0
        for v in self.group:
            k, m = len(self.domains[v]), self._parent_configs(v)
            log_count = m * math.log2(max(k, 1))
            if log_count > math.log2(limit):
                raise TooManyResponseTypesError(
                    f"variable {v!r} has {_magnitude(k, m)} response types ({k} values, {m} configurations "
                    f"of its parents {list(self.parents[v])}), more than max_response_types={limit:,}. {hint}",
                    variable=v,
                    count=2.0**log_count,
                    limit=limit,
                )
            log_total += log_count
        if log_total > math.log2(limit) + 1e-9:
            counts = {v: len(self.domains[v]) ** self._parent_configs(v) for v in self.group}
            total = math.prod(counts.values())
            worst = max(counts, key=counts.__getitem__)
            raise TooManyResponseTypesError(
                f"the confounded group {list(self.group)} has {total:,} joint response types "
                f"(per variable: {counts}; the largest is {worst!r}), more than max_response_types={limit:,}. "
                f"{hint}",
                variable=worst,
                count=float(total),
                limit=limit,
            )
        cells = math.prod(len(self.domains[v]) for v in self.variables)
        if cells > MAX_CELLS:
            raise TooManyResponseTypesError(
                f"the variables {list(self.variables)} have {cells:,} joint cells, more than {MAX_CELLS:,}. {hint}",
                count=float(cells),
                limit=MAX_CELLS,
            )

    # --- sharpness --------------------------------------------------------------------------

    def _sharpness(self, graph: CausalGraph) -> tuple[bool, str]:
        roots = (
            f"the other variables {list(self.roots)} are unconfounded roots"
            if self.roots
            else "there are no roots"
        )
        if len(self.group) <= 1:
            return True, (
                f"sharp: {list(self.group)} is the only variable with parents or confounding and {roots}, "
                "so the linear program over response types is the graph's exact model (Balke-Pearl class)."
            )
        group = set(self.group)
        for u, reach in latent_reach(graph).items():
            if group <= reach:
                return True, (
                    f"sharp: {sorted(group)} share one latent confounder ({u}) and {roots}, so the linear "
                    "program over response types is the graph's exact model (Balke-Pearl class)."
                )
        unconfounded_nonroots = [v for v in self.group if v not in self._confounded]
        why = (
            f"{unconfounded_nonroots} {'has' if len(unconfounded_nonroots) == 1 else 'have'} parents but no "
            "latent confounder"
            if unconfounded_nonroots
            else "no single latent variable confounds all of them"
        )
        return False, (
            f"valid but possibly loose: {sorted(group)} are not one confounded group ({why}), so the bounds "
            "treat their response types as sharing one joint confounder -- a relaxation that drops the "
            "graph's independences. Exact bounds need a polynomial program (autobounds)."
        )

    # --- values -----------------------------------------------------------------------------

    def code(self, variable: str, value: float, role: str) -> int:
        """The index of ``value`` in ``variable``'s domain; refuses values the data never show.

        Examples
        --------
        >>> from causal_pp import CausalGraph
        >>> m = CanonicalModel(CausalGraph.parse("X -> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
        >>> m.code("X", 1.0, "do")
        1
        """
        domain = self.domains[variable]
        if value not in domain:
            raise QueryError(
                f"{role} sets {variable} to {value:g}, but {variable}'s values are {list(domain)} (the values in "
                f"the data, plus any listed in domains=). Pass domains={{{variable!r}: [...]}} to add a value the "
                "data never show."
            )
        return domain.index(int(value))

    @cached_property
    def root_configs(self) -> np.ndarray:
        """All root configurations (value indices), shape ``(num_root_configs, len(roots))``."""
        if not self.roots:
            return np.zeros((1, 0), dtype=np.intp)
        return np.stack(np.unravel_index(np.arange(self.num_root_configs), self.root_shape), axis=1)

    @cached_property
    def tables(self) -> dict[str, np.ndarray]:
        """Response functions: ``tables[v][t, j]`` is the value index type t of v gives at parent configuration j.

        Type t lists its values as the base-k digits of t (k = number of values of v), least
        significant first; parent configurations are numbered in C order over ``parents[v]``.
        """
        out = {}
        for v in self.group:
            k, m = len(self.domains[v]), self._parent_configs(v)
            t = np.arange(k**m, dtype=np.int64)[:, None]
            out[v] = (t // (k ** np.arange(m, dtype=np.int64))[None, :]) % k
        return out

    @cached_property
    def type_of(self) -> dict[str, np.ndarray]:
        """For each group variable, its response type in every joint type, shape ``(num_types,)``."""
        shape = tuple(self.type_counts[v] for v in self.group)
        idx = np.unravel_index(np.arange(self.num_types), shape)
        return dict(zip(self.group, idx, strict=True))

    def values(self, root_config: int, do: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
        """The value index of every variable, for every joint type, given the roots and ``do``.

        Parameters
        ----------
        root_config
            Row of :attr:`root_configs` (the roots' observed values; an intervened root is
            overridden by ``do``).
        do
            ``{variable: value index}``: the intervention (the variable's type is ignored).

        Returns
        -------
        dict
            Variable -> int array of shape ``(num_types,)``.

        Examples
        --------
        >>> from causal_pp import CausalGraph
        >>> m = CanonicalModel(CausalGraph.parse("X -> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
        >>> m.values(0, {"X": 1})["Y"].tolist()  # the four functions of X, evaluated at X=1
        [0, 0, 1, 1]
        """
        do = dict(do or {})
        key = (root_config, tuple(sorted(do.items())))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        n = self.num_types
        out: dict[str, np.ndarray] = {}
        roots = dict(zip(self.roots, self.root_configs[root_config], strict=True))
        for v in self.variables:
            if v in do:
                out[v] = np.full(n, do[v], dtype=np.intp)
            elif v in roots:
                out[v] = np.full(n, roots[v], dtype=np.intp)
            else:
                pa = self.parents[v]
                j = (
                    np.ravel_multi_index([out[p] for p in pa], [len(self.domains[p]) for p in pa])
                    if pa
                    else np.zeros(n, dtype=np.intp)
                )
                out[v] = self.tables[v][self.type_of[v], j]
        for arr in out.values():
            arr.setflags(write=False)
        if len(self._cache) < 256:  # a handful of worlds per query; never grow without bound
            self._cache[key] = out
        return out

    @cached_property
    def cells(self) -> np.ndarray:
        """``cells[r, t]``: the group's observed cell (C order over ``group``) under type t and roots r."""
        out = np.empty((self.num_root_configs, self.num_types), dtype=np.intp)
        for r in range(self.num_root_configs):
            vals = self.values(r)
            out[r] = np.ravel_multi_index([vals[g] for g in self.group], self.group_shape)
        return out

    @cached_property
    def constraint_matrix(self) -> sp.coo_matrix:
        """Which observed cell each joint type produces, per root configuration.

        Row ``r * num_group_cells + g`` has a 1 in column t when type t, with the roots at
        configuration r, gives the group the values of cell g (C order over ``group``). So
        ``constraint_matrix @ q`` stacks P(group | roots = r) over r.
        """
        n = self.num_types
        row = (self.cells + self.num_group_cells * np.arange(self.num_root_configs)[:, None]).ravel()
        col = np.tile(np.arange(n), self.num_root_configs)
        shape = (self.num_root_configs * self.num_group_cells, n)
        return sp.coo_matrix((np.ones(row.shape[0]), (row, col)), shape=shape)

    @cached_property
    def factor_roots(self) -> tuple[tuple[str, ...], ...]:
        """For the i-th group variable: the roots that are ancestors of it or of an earlier one.

        Whatever q is, the first i group variables depend on the roots only through these:
        P(group_1..i | roots) = P(group_1..i | factor_roots[i]) -- the model's exclusions.
        """
        anc: dict[str, set[str]] = {}
        for v in self.variables:
            anc[v] = set(self.parents[v]).union(*(anc[p] for p in self.parents[v]))
        out, seen = [], set()
        for v in self.group:
            seen |= anc[v] & set(self.roots)
            out.append(tuple(r for r in self.roots if r in seen))
        return tuple(out)

    @cached_property
    def factor_dimension(self) -> int:
        """Free parameters of P(group | roots) once the exclusions of :attr:`factor_roots` hold."""
        total = 0
        for i, v in enumerate(self.group):
            configs = math.prod(len(self.domains[r]) for r in self.factor_roots[i])
            configs *= math.prod(len(self.domains[g]) for g in self.group[:i])
            total += configs * (len(self.domains[v]) - 1)
        return total

    def codimension(self, equalities: Sequence[np.ndarray] = (), *, factored: bool = True) -> int:
        """How many equality constraints the model puts on the observed distribution.

        The distributions the model can produce -- P(group | roots) for every root
        configuration, and the experimental probabilities of ``equalities`` -- are the image of
        the simplex of q, of dimension rank([A; E]) - 1. Compared with the unrestricted set
        (``factored=False``: every P(group | r) free) or with the set where the exclusions of
        :attr:`factor_roots` hold (``factored=True``), a positive difference means equality
        constraints that a Dirichlet draw (of that parametrisation) meets with probability 0.

        Examples
        --------
        >>> from causal_pp import CausalGraph
        >>> dom = {"Z": (0, 1), "W": (0, 1), "X": (0, 1), "Y": (0, 1)}
        >>> CanonicalModel(CausalGraph.parse("Z -> X -> Y; X <-> Y"), ("Z", "X", "Y"), dom).codimension()
        0
        >>> m = CanonicalModel(CausalGraph.parse("Z -> X -> Y; W -> Y; X <-> Y"), ("Z", "W", "X", "Y"), dom)
        >>> m.codimension(factored=False), m.codimension()  # P(x | z, w) = P(x | z): two equalities, both exclusions
        (2, 0)
        """
        a = self.constraint_matrix.tocsr()
        if equalities:
            # Experimental rows are weighted by P(roots); generic positive weights give their rank.
            p_r = np.random.default_rng(0).dirichlet(np.ones(self.num_root_configs))
            a = sp.vstack([a, sp.csr_matrix(np.stack([p_r @ e for e in equalities]))]).tocsr()
        rank = _rank(a)
        free = self.factor_dimension if factored else self.num_root_configs * (self.num_group_cells - 1)
        return free + len(equalities) - (rank - 1)

    def split(self, joint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(roots) and P(group | roots) from joints over ``roots + group``, batched.

        ``joint`` has shape ``(..., *root_shape, *group_shape)``; returns arrays of shape
        ``(..., num_root_configs)`` and ``(..., num_root_configs, num_group_cells)``. Where
        P(roots = r) is 0 the conditional row is 0 (no constraint).

        Examples
        --------
        >>> from causal_pp import CausalGraph
        >>> m = CanonicalModel(CausalGraph.parse("X -> Y"), ("X", "Y"), {"X": (0, 1), "Y": (0, 1)})
        >>> p_r, p_g = m.split(np.array([[0.1, 0.3], [0.0, 0.6]]))
        >>> p_r.round(6).tolist(), p_g.round(6).tolist()
        ([0.4, 0.6], [[0.25, 0.75], [0.0, 1.0]])
        """
        lead = joint.shape[: joint.ndim - len(self.variables)]
        flat = joint.reshape(*lead, self.num_root_configs, self.num_group_cells)
        p_r = flat.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cond = np.where(p_r[..., None] > 0, flat / p_r[..., None], 0.0)
        return p_r, cond

    def __repr__(self) -> str:
        return (
            f"CanonicalModel(roots={list(self.roots)}, group={list(self.group)}, types={self.num_types}, "
            f"sharp={self.sharp})"
        )
