"""Random causal graphs and exact discrete SCMs over them, for checking estimands numerically.

An :class:`ExactSCM` gives every node (latent ones included) a strictly positive random CPT, so
every observational and interventional distribution is exact (computed by contracting the CPTs
with einsum, latents summed out) and positive (no formula ever conditions on a null event).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from causal_pp import CausalGraph
from causal_pp.identification.expression import JointTable


def random_graph(
    rng: np.random.Generator,
    n_min: int = 2,
    n_max: int = 5,
    p_edge: float = 0.45,
    p_bi: float = 0.35,
    p_latent_chain: float = 0.15,
) -> CausalGraph:
    """A random DAG over observed nodes A, B, ... with latent confounders.

    Each pair of observed nodes is joined by a directed edge (along a random order) with
    probability ``p_edge`` and by a latent common cause with probability ``p_bi``; with
    probability ``p_latent_chain`` a latent confounder also gets a latent parent that reaches a
    third node, and a directed edge is routed through a latent mediator, so the latent
    projection has to follow latent paths.
    """
    n = int(rng.integers(n_min, n_max + 1))
    names = [chr(ord("A") + i) for i in range(n)]
    order = list(rng.permutation(names))
    edges: list[tuple[str, str]] = []
    latent: list[str] = []
    nodes = list(names)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = order[i], order[j]
            if rng.random() < p_edge:
                if rng.random() < p_latent_chain:  # a -> L -> b: a directed edge through a latent
                    m = f"M{len(latent)}"
                    latent.append(m)
                    edges += [(a, m), (m, b)]
                else:
                    edges.append((a, b))
            if rng.random() < p_bi:
                u = f"U{len(latent)}"
                latent.append(u)
                edges += [(u, a), (u, b)]
                if n > 2 and rng.random() < p_latent_chain:  # a latent parent of u that reaches c too
                    c = str(rng.choice([v for v in names if v not in (a, b)]))
                    w = f"U{len(latent)}"
                    latent.append(w)
                    edges += [(w, u), (w, c)]
    return CausalGraph(edges, latent=latent, nodes=nodes)


class ExactSCM:
    """A discrete SCM over ``graph`` with random, strictly positive CPTs for every node."""

    def __init__(
        self, graph: CausalGraph, rng: np.random.Generator, max_levels: int = 3, concentration: float = 1.0
    ) -> None:
        self.graph = graph
        self.nodes = graph.nodes
        self.levels = {v: int(rng.integers(2, max_levels + 1)) for v in self.nodes}
        self.cpts: dict[str, np.ndarray] = {}
        for v in self.nodes:
            pa = graph.parents(v)
            shape = (*(self.levels[p] for p in pa), self.levels[v])
            # Dirichlet draws are positive; the floor keeps every probability well away from 0.
            t = rng.dirichlet(np.full(self.levels[v], concentration), size=shape[:-1]) + 0.02
            self.cpts[v] = t / t.sum(axis=-1, keepdims=True)
        self.label = {v: i for i, v in enumerate(self.nodes)}

    def _contract(self, out: Sequence[str], cut: Sequence[str] = ()) -> np.ndarray:
        """Σ over the nodes not in ``out`` of Π CPTs, with the CPTs of ``cut`` replaced by 1."""
        args: list[object] = []
        for v in self.nodes:
            if v in cut:
                continue
            args += [self.cpts[v], [self.label[p] for p in (*self.graph.parents(v), v)]]
        for v in out:  # a cut treatment with no children in the product still needs its axis
            args += [np.ones(self.levels[v]), [self.label[v]]]
        args.append([self.label[v] for v in out])
        return np.einsum(*args, optimize=True)

    def observational(self) -> JointTable:
        """The exact joint distribution of the observed nodes."""
        obs = self.graph.observed
        return JointTable(self._contract(obs), obs)

    def interventional(self, outcomes: Sequence[str], treatments: Sequence[str]) -> np.ndarray:
        """P(outcomes | do(treatments)), axes (outcomes..., treatments...).

        With the treatments' CPTs replaced by 1, the product at X = x is the truncated
        factorisation of do(X = x) (the g-formula), so each slice over x sums to 1.
        """
        return self._contract((*outcomes, *treatments), cut=treatments)

    def conditional(
        self, outcomes: Sequence[str], treatments: Sequence[str], conditions: Sequence[str]
    ) -> np.ndarray:
        """P(outcomes | do(treatments), conditions), axes (outcomes..., treatments..., conditions...)."""
        joint = self._contract((*outcomes, *treatments, *conditions), cut=treatments)
        return joint / joint.sum(axis=tuple(range(len(outcomes))), keepdims=True)
