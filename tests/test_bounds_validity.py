"""Bounds are valid: for random discrete SCMs with latent confounders, the truth lies inside.

Every SCM here is explicit -- each node, latent ones included, is a random deterministic
function of its parents and of its own finite noise -- and is enumerated exactly, so the
observational distribution, every interventional quantity and every probability of causation
are exact numbers computed without any code of :mod:`causal_pp.partial`. The bounds computed from
the exact observational distribution must contain the true value, on textbook graphs (some in
the sharp Balke-Pearl class, some only relaxed) and on random small graphs.
"""

from __future__ import annotations

import itertools as itt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from causal_pp import ATE, PN, PNS, PS, CausalGraph, Interventional
from causal_pp.partial import TooManyResponseTypesError, bounds_from_distribution

TOL = 1e-7  # LP tolerances are ~1e-9; the truth is exact


@dataclass
class ExactSCM:
    """A discrete SCM whose every distribution is computed by enumerating all noise values."""

    graph: CausalGraph
    cards: dict[str, int]
    noise_cards: dict[str, int]
    noise_p: dict[str, np.ndarray]
    tables: dict[str, np.ndarray]

    @classmethod
    def random(
        cls,
        graph: CausalGraph,
        rng: np.random.Generator,
        cards: Mapping[str, int] | None = None,
        latent_card: int = 3,
        noise_card: int = 2,
    ) -> ExactSCM:
        c = {v: (latent_card if graph.is_latent(v) else 2) for v in graph.nodes}
        c.update(cards or {})
        noise = {v: max(c[v], latent_card if graph.is_latent(v) else noise_card) for v in graph.nodes}
        noise_p = {v: rng.dirichlet(np.ones(k)) for v, k in noise.items()}
        tables = {}
        for v in graph.nodes:
            if graph.parents(v):
                shape = (*(c[p] for p in graph.parents(v)), noise[v])
                tables[v] = rng.integers(0, c[v], size=shape)
            else:  # a root takes every one of its values (a random onto map from its noise)
                tables[v] = rng.permutation(np.resize(np.arange(c[v]), noise[v]))
        return cls(graph, c, noise, noise_p, tables)

    def _noise(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        names = list(self.graph.nodes)
        grid = np.array(list(itt.product(*(range(self.noise_cards[v]) for v in names))))
        weight = np.ones(len(grid))
        for i, v in enumerate(names):
            weight *= self.noise_p[v][grid[:, i]]
        return {v: grid[:, i] for i, v in enumerate(names)}, weight

    def world(self, do: Mapping[str, int] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every node's value for every noise configuration, under ``do``; and the weights."""
        do = dict(do or {})
        noise, weight = self._noise()
        vals: dict[str, np.ndarray] = {}
        for v in self.graph.topological_order:
            if v in do:
                vals[v] = np.full(len(weight), do[v])
            else:
                idx = (*tuple(vals[p] for p in self.graph.parents(v)), noise[v])
                vals[v] = self.tables[v][idx]
        return vals, weight

    def distribution(self) -> pd.DataFrame:
        vals, weight = self.world()
        obs = list(self.graph.observed)
        frame = pd.DataFrame({v: vals[v] for v in obs})
        frame["p"] = weight
        return frame.groupby(obs, as_index=False)["p"].sum()

    def expectation(
        self,
        outcome: str,
        do: Mapping[str, int],
        given: Mapping[str, int] | None = None,
        value: int | None = None,
    ) -> float:
        vals, weight = self.world(do)
        h = vals[outcome] if value is None else (vals[outcome] == value)
        mask = np.ones(len(weight), dtype=bool)
        for k, z in (given or {}).items():
            mask &= vals[k] == z
        return float(np.sum(weight * h * mask) / np.sum(weight * mask))

    def causation(self, kind: str, x: str, y: str) -> float:
        fact, weight = self.world()
        y1 = self.world({x: 1})[0][y]
        y0 = self.world({x: 0})[0][y]
        if kind == "PNS":
            return float(np.sum(weight * ((y1 == 1) & (y0 == 0))))
        if kind == "PN":
            seen = (fact[x] == 1) & (fact[y] == 1)
            return float(np.sum(weight * seen * (y0 == 0)) / np.sum(weight * seen))
        seen = (fact[x] == 0) & (fact[y] == 0)
        return float(np.sum(weight * seen * (y1 == 1)) / np.sum(weight * seen))

    def probability(self, event: Mapping[str, int]) -> float:
        vals, weight = self.world()
        mask = np.ones(len(weight), dtype=bool)
        for k, v in event.items():
            mask &= vals[k] == v
        return float(np.sum(weight * mask))


def _check(scm: ExactSCM, query: object, truth: float) -> tuple[float, float]:
    # domains=: a random table can make a value impossible; the query may still set it.
    domains = {v: range(scm.cards[v]) for v in scm.graph.observed}
    lo, hi = bounds_from_distribution(scm.graph, query, scm.distribution(), domains=domains)
    assert lo - TOL <= truth <= hi + TOL, f"{query}: truth {truth} outside [{lo}, {hi}] in {scm.graph}"
    return lo, hi


# (graph, latent, treatment, outcome, extra cardinalities, conditioning variable or None)
TEXTBOOK = {
    "bow": ("X -> Y; X <-> Y", (), "X", "Y", {}, None),
    "x_to_y": ("X -> Y", (), "X", "Y", {}, None),
    "iv_ternary": ("Z -> X -> Y; X <-> Y", (), "X", "Y", {"Z": 3}, "Z"),
    "iv_exclusion": ("Z -> X -> Y; W -> Y; X <-> Y", (), "X", "Y", {}, "W"),
    "frontdoor": ("X -> M -> Y; X <-> Y", (), "X", "Y", {}, "M"),
    "napkin": ("W -> Z -> X -> Y; W <-> X; W <-> Y", (), "X", "Y", {}, "Z"),
    "triangle": ("A -> B -> C; A <-> B; B <-> C; A <-> C", (), "A", "C", {}, "B"),
    "one_latent": ("U -> A; U -> B; U -> C; A -> B -> C", ("U",), "A", "C", {}, "B"),
    "latent_chain": ("U -> V; V -> X; V -> Y; U -> Z; Z -> X -> Y", ("U", "V"), "X", "Y", {}, "Z"),
    "backdoor": ("Z -> X -> Y; Z -> Y", (), "X", "Y", {}, "Z"),
    "descendant": ("Z -> X -> Y -> W; X <-> W; X <-> Y", (), "X", "Y", {}, "W"),
}


@pytest.mark.parametrize("name", sorted(TEXTBOOK))
def test_truth_inside_bounds_on_textbook_graphs(name: str) -> None:
    text, latent, x, y, cards, z = TEXTBOOK[name]
    graph = CausalGraph.parse(text, latent=latent)
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(6):
        scm = ExactSCM.random(graph, rng, cards)
        widths = []
        for value in (1, 0):
            truth = scm.expectation(y, {x: value})
            widths.append(_check(scm, Interventional(y, do={x: value}), truth))
        _check(scm, ATE(x, y), scm.expectation(y, {x: 1}) - scm.expectation(y, {x: 0}))
        if z is not None:
            for zv in range(scm.cards[z]):
                if (
                    scm.probability({z: zv}) > 1e-9
                    and min(scm.expectation(z, {x: 1}, value=zv), scm.expectation(z, {x: 0}, value=zv)) > 1e-9
                ):
                    truth = scm.expectation(y, {x: 1}, {z: zv}) - scm.expectation(y, {x: 0}, {z: zv})
                    _check(scm, ATE(x, y, given={z: zv}), truth)
        for kind, cls in (("PN", PN), ("PS", PS), ("PNS", PNS)):
            seen = {"PN": {x: 1, y: 1}, "PS": {x: 0, y: 0}, "PNS": {}}[kind]
            if scm.probability(seen) > 1e-9:
                _check(scm, cls(x, y), scm.causation(kind, x, y))


def _random_graph(rng: np.random.Generator, n: int) -> CausalGraph:
    names = [chr(ord("A") + i) for i in range(n)]
    edges = [(a, b) for a, b in itt.combinations(names, 2) if rng.random() < 0.5]
    latent = []
    for i, (a, b) in enumerate(itt.combinations(names, 2)):
        if rng.random() < 0.35:
            u = f"U{i}"
            latent.append(u)
            edges += [(u, a), (u, b)]
    return CausalGraph(edges, latent=latent, nodes=names)


def test_truth_inside_bounds_on_random_graphs() -> None:
    rng = np.random.default_rng(2024)
    checked = 0
    for _ in range(40):
        graph = _random_graph(rng, int(rng.integers(2, 5)))
        order = [v for v in graph.topological_order if not graph.is_latent(v)]
        i, j = sorted(rng.choice(len(order), size=2, replace=False))
        x, y = order[i], order[j]
        scm = ExactSCM.random(graph, rng)
        try:
            _check(scm, ATE(x, y), scm.expectation(y, {x: 1}) - scm.expectation(y, {x: 0}))
        except TooManyResponseTypesError:
            continue
        for value in (0, 1):
            _check(scm, Interventional(y, do={x: value}), scm.expectation(y, {x: value}))
        if scm.probability({x: 1, y: 1}) > 1e-9:
            _check(scm, PN(x, y), scm.causation("PN", x, y))
        _check(scm, PNS(x, y), scm.causation("PNS", x, y))
        checked += 1
    assert checked >= 35
