"""y0 in (issue #17): graphs from y0 ADMGs and y0 DSL queries agree with the string forms."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
import y0.examples
from y0.dsl import P, Sum, Variable, X, Y, Z

from causal_pp import (
    ATE,
    CausalGraph,
    CausalModel,
    CausalPosterior,
    GraphError,
    Interventional,
    NotIdentifiableError,
    QueryError,
    identify,
    query_from_y0,
    units,
)

# the textbook table: name -> (graph string, y0's example graph or None, identified?)
TEXTBOOK = {
    "back-door": ("Z -> X -> Y; Z -> Y", y0.examples.backdoor, True),
    "front-door": ("X -> Z -> Y; X <-> Y", y0.examples.frontdoor, True),
    "napkin": ("Z2 -> Z1 -> X -> Y; Z2 <-> X; Z2 <-> Y", y0.examples.napkin, True),
    "bow": ("X -> Y; X <-> Y", None, False),
    "IV": ("Z -> X -> Y; X <-> Y", y0.examples.instrumental_variable, False),
    "M-graph": ("X -> Y; X <-> Z; Y <-> Z", y0.examples.m_graph, True),
}


@pytest.mark.parametrize("name", sorted(TEXTBOOK))
def test_from_admg_round_trips_on_the_textbook_table(name: str) -> None:
    text, example, _ = TEXTBOOK[name]
    g = CausalGraph.parse(text)
    back = CausalGraph.from_admg(g.to_admg())
    assert back.projected_edges() == g.projected_edges()
    assert back.to_admg().directed.edges() == g.to_admg().directed.edges()
    if all(a < b for a, b in (e for e in g.projected_edges()[1] for e in [tuple(sorted(e))])):
        assert back.latent == tuple(sorted(f"U_{a}_{b}" for a, b in map(sorted, g.projected_edges()[1])))
    if example is not None:
        assert CausalGraph.from_admg(example).projected_edges() == g.projected_edges()


@pytest.mark.parametrize("name", sorted(TEXTBOOK))
def test_y0_queries_agree_with_the_string_forms(name: str) -> None:
    text, example, identified = TEXTBOOK[name]
    g = CausalGraph.parse(text)
    ours = identify(g, Interventional("Y", do={"X": 1.0}), strict=False)
    for graph in [g, CausalGraph.from_admg(g.to_admg())] + (
        [CausalGraph.from_admg(example)] if example else []
    ):
        theirs = identify(graph, P(Y @ X), strict=False)
        assert theirs.identified == ours.identified == identified
        assert theirs.reason == ours.reason
        if identified:
            assert theirs.estimand.equation() == ours.estimand.equation()


def test_conditional_and_joint_y0_queries() -> None:
    g = CausalGraph.parse("Z -> X -> Y; Z -> Y; X -> W")
    for y0q, q in [
        (P(Y @ X | Z), Interventional("Y", do={"X": 1.0}, given=["Z"])),
        (P(Y @ X, Variable("W") @ X), Interventional(["W", "Y"], do={"X": 1.0})),  # y0 sorts them
        (P(Y @ ~X), Interventional("Y", do={"X": 0.0})),
    ]:
        assert query_from_y0(y0q, g) == q
        assert identify(g, y0q).estimand.equation() == identify(g, q).estimand.equation()
    with pytest.raises(NotIdentifiableError):
        identify(CausalGraph.parse("X -> Y; X <-> Y"), P(Y @ X))


def test_reserved_names_map_back_through_the_graph() -> None:
    g = CausalGraph.parse("P -> Y; X -> Y")  # y0 reserves P: the ADMG calls it P_
    assert "P_" in {v.name for v in g.to_admg().nodes()}
    assert query_from_y0(P(Y @ Variable("P_")), g) == Interventional("Y", do={"P": 1.0})


def test_untranslatable_expressions_are_refused_clearly() -> None:
    g = CausalGraph.parse("Z -> X -> Y")
    cases = [
        (P(Y), "no intervention"),
        (P(Y @ X, Z @ ~X), "different interventions"),
        (P(Y @ X | Z @ ~X), "counterfactual conditional"),
        (Sum.safe(P(Y, Z), [Z]), "formula"),
    ]
    for expr, match in cases:
        with pytest.raises(QueryError, match=match):
            identify(g, expr)
    with pytest.raises(QueryError, match="does not intervene"):
        query_from_y0(P(Y @ X), values={"Z": 1.0})
    with pytest.raises(QueryError, match="does not condition"):
        query_from_y0(P(Y @ X | Z), given={"W": 1.0})
    from causal_pp import UnknownVariableError

    with pytest.raises(UnknownVariableError):
        identify(g, P(Y @ Variable("Q_")))
    with pytest.raises(GraphError, match="NxMixedGraph"):
        CausalGraph.from_admg("X -> Y")  # type: ignore[arg-type]


def test_from_admg_names_latents_and_avoids_collisions() -> None:
    from y0.graph import NxMixedGraph

    u = Variable("U_X_Y")
    admg = NxMixedGraph.from_edges(nodes=[X, Y, u], directed=[(X, Y)], undirected=[(X, Y)])
    g = CausalGraph.from_admg(admg)
    assert g.latent == ("U_X_Y_2",) and "U_X_Y" in g.observed
    assert CausalGraph.from_admg(NxMixedGraph.from_edges(nodes=[X, Y], directed=[])).edges == ()


def _linear(n):
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with units(n):
        z = pyro.sample("Z", dist.Normal(0.0, 1.0))
        x = pyro.sample("X", dist.Normal(z, 1.0))
        pyro.sample("Y", dist.Normal(b * x + z, 1.0))


def test_estimating_a_y0_query_equals_estimating_its_translation() -> None:
    m = CausalModel(_linear, CausalGraph.parse("Z -> X -> Y; Z -> Y"))
    post = CausalPosterior(
        model=m,
        samples={"b": torch.tensor([0.5, 1.0, 1.5])},
        data={k: torch.zeros(4) for k in "XYZ"},
        diagnostics={},
        method="given",
        seed=0,
    )
    a = post.estimate(P(Y @ X), num_units=200, seed=1)
    b = post.estimate(Interventional("Y", do={"X": 1.0}), num_units=200, seed=1)
    assert torch.equal(a.samples, b.samples) and a.query == b.query
    c = post.estimate(query_from_y0(P(Y @ X), values={"X": 2.0}), num_units=200, seed=1)
    assert torch.allclose(c.samples - b.samples, post.samples["b"].double(), atol=0.3)
    with pytest.raises(QueryError, match="without values"):
        post.estimate(P(Y @ X | Z), num_units=10)
    assert ATE("X", "Y").treated == 1.0  # the default coding y0's x / x* follow
