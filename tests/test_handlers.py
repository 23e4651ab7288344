"""Tests for causal_pp.handlers: interventions (ChiRho do), reporting, dependency tracking."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from chirho.interventional.handlers import do
from pyro.infer import Predictive

from causal_pp.estimation.weighting import log_weight
from causal_pp.handlers import ReportInterventions, SetValue, TrackDependencies, intervene


def chain(n):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("units", n, dim=-1):
        u = pyro.sample("U", dist.Normal(mu, 1.0))
        x = pyro.sample("X", dist.Normal(u, 1.0))
        d = pyro.deterministic("D", 2.0 * x)
        pyro.sample("Y", dist.Normal(d + u, 0.01))


# --- SetValue -------------------------------------------------------------------------------


def test_set_value_broadcasts_and_keeps_dtype_and_shape():
    obs = torch.zeros(2, 3)
    assert torch.equal(SetValue(1.5)(obs), torch.full((2, 3), 1.5))
    assert SetValue(1.0)(torch.zeros(4, dtype=torch.long)).dtype == torch.long
    per_unit = SetValue(torch.tensor([1.0, 2.0, 3.0]))(torch.zeros(2, 3))
    assert torch.equal(per_unit, torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))


def test_set_value_equality():
    assert SetValue(1.0) == SetValue(torch.tensor(1.0))
    assert SetValue(1.0) != SetValue(2.0)
    assert hash(SetValue(1.0)) == hash(SetValue(1.0))
    assert repr(SetValue(torch.tensor(2.0))) == "SetValue(2.0)"


# --- intervene / ReportInterventions ----------------------------------------------------------


def test_trace_reports_the_value_used_downstream():
    tr = pyro.poutine.trace(intervene(chain, {"X": 5.0})).get_trace(4)
    x = tr.nodes["X"]
    assert torch.equal(x["value"], torch.full((4,), 5.0))
    assert x["infer"]["intervened"] is True
    natural = x["infer"]["natural_value"]
    assert natural.shape == (4,) and not torch.equal(natural, x["value"])
    # every descendant, deterministic sites included, is recomputed from the set value
    assert torch.equal(tr.nodes["D"]["value"], torch.full((4,), 10.0))
    assert torch.allclose(tr.nodes["Y"]["value"], 10.0 + tr.nodes["U"]["value"], atol=0.1)


def test_plain_chirho_do_reports_the_natural_value():
    # the pitfall ReportInterventions exists for (chirho 0.3.0)
    tr = pyro.poutine.trace(do(chain, actions={"X": torch.tensor(5.0)})).get_trace(4)
    assert not torch.equal(tr.nodes["X"]["value"], torch.full((4,), 5.0))
    assert tr.nodes["D"]["value"].shape == ()  # scalar action: shapes collapse downstream


@pytest.mark.parametrize("parallel", [False, True])
def test_predictive_reports_intervened_value(parallel):
    pred = Predictive(intervene(chain, {"X": -1.0}), num_samples=3, parallel=parallel)(5)
    assert torch.equal(pred["X"].reshape(3, 5), torch.full((3, 5), -1.0))
    assert torch.equal(pred["D"].reshape(3, 5), torch.full((3, 5), -2.0))


def test_intervention_under_vectorising_plate_keeps_shapes():
    with pyro.plate("draws", 7, dim=-2):
        tr = pyro.poutine.trace(intervene(chain, {"X": 1.0})).get_trace(3)
    assert tr.nodes["X"]["value"].shape == (7, 3)
    assert tr.nodes["D"]["value"].shape == (7, 3)


def test_same_seed_same_random_stream_under_any_action():
    # the site is still sampled, so two arms with one seed share every other draw
    traces = []
    for value in (0.0, 1.0):
        with torch.random.fork_rng():
            torch.manual_seed(3)
            traces.append(pyro.poutine.trace(intervene(chain, {"X": value})).get_trace(6))
    a, b = traces
    assert torch.equal(a.nodes["U"]["value"], b.nodes["U"]["value"])
    assert torch.allclose(b.nodes["Y"]["value"] - a.nodes["Y"]["value"], torch.full((6,), 2.0), atol=1e-5)


def test_do_twice_equals_do_once():
    def run(fn):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return pyro.poutine.trace(fn).get_trace(5)

    once = run(intervene(chain, {"X": 2.0}))
    twice = run(intervene(intervene(chain, {"X": 2.0}), {"X": 2.0}))
    for name in ("mu", "U", "X", "D", "Y"):
        assert torch.equal(once.nodes[name]["value"], twice.nodes[name]["value"]), name


def test_report_outside_block_is_harmless():
    hidden = pyro.poutine.block(intervene(chain, {"X": 1.0}), hide=["X"])
    tr = pyro.poutine.trace(hidden).get_trace(2)
    assert "X" not in tr.nodes
    assert torch.equal(tr.nodes["D"]["value"], torch.full((2,), 2.0))


def test_report_interventions_alone_changes_nothing_without_do():
    with torch.random.fork_rng():
        torch.manual_seed(1)
        plain = pyro.poutine.trace(chain).get_trace(2)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        tr = pyro.poutine.trace(ReportInterventions(["X"])(chain)).get_trace(2)
    assert torch.equal(tr.nodes["X"]["value"], plain.nodes["X"]["value"])
    assert "natural_value" not in tr.nodes["X"]["infer"]


# --- TrackDependencies --------------------------------------------------------------------------


def test_dependencies_through_deterministic_nodes():
    with TrackDependencies() as deps:
        chain(3)
    assert deps.reads == {"U": set(), "X": {"U"}, "D": {"X"}, "Y": {"D", "U"}}


def test_auxiliary_sites_are_transparent():
    with TrackDependencies(nodes=["U", "X", "Y"]) as deps:
        chain(3)
    # D is not a node: Y reads X through it
    assert deps.reads["Y"] == {"D", "U", "X"}


def test_intervened_sites_read_nothing():
    with TrackDependencies() as deps:
        intervene(chain, {"X": 0.0})(3)
    assert deps.reads["X"] == set()
    assert deps.reads["D"] == {"X"}


def test_global_sites_are_not_tracked():
    with TrackDependencies() as deps:
        chain(2)
    assert "mu" not in deps.reads


def test_dependency_via_distribution_parameters_only():
    def prog(n):
        with pyro.plate("units", n):
            z = pyro.sample("Z", dist.Normal(0.0, 1.0))
            s = pyro.sample("S", dist.LogNormal(0.0, 1.0))
            pyro.sample("Y", dist.Normal(0.0, s + 0.0 * z))  # reads both, one through the scale

    with TrackDependencies() as deps:
        prog(3)
    assert deps.reads["Y"] == {"S", "Z"}


def test_log_weight_matches_distribution():
    tr = pyro.poutine.trace(lambda: pyro.sample("z", dist.Normal(1.0, 2.0))).get_trace()
    z = tr.nodes["z"]["value"]
    assert torch.allclose(log_weight(tr.nodes["z"]), dist.Normal(1.0, 2.0).log_prob(z))
