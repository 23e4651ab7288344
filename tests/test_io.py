"""Keeping a fit (issue #17): save/load and pickling give bit-identical estimates."""

from __future__ import annotations

import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch
from _ecosystem_models import FRONTDOOR, frontdoor, no_mediation, nuts_fit, svi_fit

import causal_pp
from causal_pp import ATE, CausalGraph, CausalModel, CausalPosterior, InvalidArgumentError

FITS = {"nuts": nuts_fit, "svi": svi_fit}


def _same(a: CausalPosterior, b: CausalPosterior) -> None:
    assert a.samples.keys() == b.samples.keys() and a.unit_samples.keys() == b.unit_samples.keys()
    for k in a.samples:
        assert a.samples[k].dtype == b.samples[k].dtype and torch.equal(a.samples[k], b.samples[k])
    for k in a.unit_samples:
        assert torch.equal(a.unit_samples[k], b.unit_samples[k])
    for k in a.data:
        assert torch.equal(a.data[k], b.data[k])
    assert (a.method, a.seed, a.num_chains, a.device) == (b.method, b.seed, b.num_chains, b.device)


def _estimates_identical(a: CausalPosterior, b: CausalPosterior) -> None:
    q = ATE("X", "Y", treated=1.0, control=0.0)
    ea, eb = a.estimate(q, num_units=64, seed=3), b.estimate(q, num_units=64, seed=3)
    assert torch.equal(ea.samples, eb.samples)
    assert ea.plugin == eb.plugin
    for k in ea.predictive:
        assert torch.equal(ea.predictive[k], eb.predictive[k])


@pytest.mark.parametrize("method", sorted(FITS))
def test_save_load_round_trip_gives_bit_identical_estimates(method: str, tmp_path) -> None:
    post = FITS[method]()
    path = post.save(tmp_path / "sub" / "fit.nc")
    back = CausalPosterior.load(path, frontdoor)
    _same(post, back)
    _estimates_identical(post, back)
    d, e = post.diagnostics, back.diagnostics
    assert set(d) == set(e)
    if method == "nuts":
        assert d["r_hat"] == e["r_hat"] and d["divergences"] == e["divergences"]
        for k, v in d["sample_stats"].items():
            assert (v == e["sample_stats"][k]).all() and v.dtype == e["sample_stats"][k].dtype
    else:
        assert (d["loss"] == e["loss"]).all() and d["is_pareto_k"] == e["is_pareto_k"]
    # the file is an ArviZ file too
    import arviz as az

    assert {"posterior", "observed_data", "sample_stats"} <= set(az.from_netcdf(path).groups())


def test_load_refuses_another_dag_and_other_files(tmp_path) -> None:
    path = svi_fit().save(tmp_path / "fit.nc")
    with pytest.raises(InvalidArgumentError, match="DAG"):
        CausalPosterior.load(path, no_mediation)
    with pytest.raises(InvalidArgumentError, match="no saved posterior"):
        CausalPosterior.load(tmp_path / "missing.nc", frontdoor)
    svi_fit().to_arviz(log_likelihood=False).to_netcdf(str(tmp_path / "plain.nc"))
    with pytest.raises(InvalidArgumentError, match="not a posterior saved by causal_pp"):
        CausalPosterior.load(tmp_path / "plain.nc", frontdoor)
    with pytest.raises(InvalidArgumentError, match="directory"):
        svi_fit().save(tmp_path)


@pytest.mark.parametrize("method", sorted(FITS))
def test_pickled_posteriors_and_estimates_are_identical(method: str) -> None:
    post = FITS[method]()
    back = pickle.loads(pickle.dumps(post))
    _same(post, back)
    _estimates_identical(post, back)
    assert back.model is frontdoor  # a module-level @causal_model pickles by reference
    est = post.estimate(ATE("X", "Y"), num_units=32, seed=0)
    est_back = pickle.loads(pickle.dumps(est))
    assert torch.equal(est.samples, est_back.samples)
    assert est_back.predictive.keys() == est.predictive.keys()
    with pytest.raises(TypeError):  # still read-only
        est_back.predictive["x"] = torch.zeros(1)  # type: ignore[index]


def test_pickle_warns_across_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = pickle.dumps(svi_fit())
    monkeypatch.setattr("causal_pp.posterior.__version__", "0.0.1")
    with pytest.warns(UserWarning, match="pickled by causal_pp"):
        pickle.loads(blob)


def _plain(n):
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with causal_pp.units(n):
        pyro.sample("X", dist.Normal(b, 1.0))


def test_models_pickle_by_reference_or_by_parts() -> None:
    assert pickle.loads(pickle.dumps(frontdoor)) is frontdoor
    m = CausalModel(_plain, CausalGraph.parse("X"), auxiliary=())
    back = pickle.loads(pickle.dumps(m))
    assert back is not m and back.fn is _plain and back.graph == m.graph
    assert pickle.loads(pickle.dumps(FRONTDOOR)) == FRONTDOOR


def test_model_arguments_are_saved(tmp_path) -> None:
    def model(n, scale, offsets):
        b = pyro.sample("b", dist.Normal(0.0, scale))
        with causal_pp.units(n):
            pyro.sample("X", dist.Normal(b + offsets.sum(), 1.0))

    m = CausalModel(model, CausalGraph.parse("X"))
    post = CausalPosterior(
        model=m,
        samples={"b": torch.arange(4.0)},
        data={"X": torch.zeros(3)},
        diagnostics={"note": ("a", 1)},
        method="given",
        seed=5,
        model_args=(2.0, torch.tensor([0.5, 0.25])),
    )
    back = CausalPosterior.load(post.save(tmp_path / "f.nc"), m)
    assert back.model_args[0] == 2.0 and torch.equal(back.model_args[1], post.model_args[1])
    assert back.diagnostics["note"] == ("a", 1) and back.seed == 5
    bad = CausalPosterior(
        model=m,
        samples={"b": torch.zeros(2)},
        data={"X": torch.zeros(3)},
        diagnostics={},
        method="given",
        seed=0,
        model_args=(2.0, torch.zeros(1)),
        model_kwargs={},
    )
    object.__setattr__(bad, "_model_args", (2.0, object()))
    with pytest.raises(causal_pp.ArgumentTypeError, match="cannot save model_args"):
        bad.save(tmp_path / "g.nc")
