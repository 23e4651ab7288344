"""Model comparison across DAGs (issue #17): LOO ranks beside identification verdicts."""

from __future__ import annotations

import warnings

import pytest
import torch
from _ecosystem_models import nuts_fit, svi_fit

from causal_pp import ATE, CausalGraph, CausalModel, CausalPosterior, InvalidArgumentError, compare


def _compare(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's Pareto-k warnings at these tiny sizes
        return compare(*args, **kwargs)


def test_the_true_dag_ranks_first_and_the_wrong_one_misfits() -> None:
    """Front-door data: the DAG without X -> M cannot reproduce the X-M correlation."""
    right, wrong = svi_fit("frontdoor"), svi_fit("no_mediation")
    table = _compare({"no_mediation": wrong, "frontdoor": right}, ATE("X", "Y"))
    assert list(table.index) == ["frontdoor", "no_mediation"]
    assert table.loc["frontdoor", "rank"] == 0
    # far behind: many standard errors of the difference
    assert table.loc["no_mediation", "elpd_diff"] > 4 * table.loc["no_mediation", "dse"]
    assert table["identified"].tolist() == [True, True]
    assert table.loc["frontdoor", "graph"] == right.graph.to_string()
    assert {"elpd_loo", "p_loo", "weight", "se", "dse", "warning", "verdict"} <= set(table.columns)


def test_equal_fits_with_different_verdicts_side_by_side() -> None:
    """The bow graph X -> M -> Y, X <-> Y has the front-door model's program with one more
    confounded pair (M is unconfounded in both): the same posterior fits equally well, the
    verdicts differ."""
    post = svi_fit("frontdoor")
    bow_graph = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y; U -> M", latent=["U"])
    bow = CausalPosterior(
        model=CausalModel(post.model.fn, bow_graph),
        samples=post.samples,
        data=post.data,
        diagnostics={},
        method=post.method,
        seed=post.seed,
    )
    table = _compare({"frontdoor": post, "confounded mediator": bow}, ATE("X", "Y"))
    assert table.loc["confounded mediator", "elpd_diff"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["frontdoor", "identified"] and not table.loc["confounded mediator", "identified"]
    assert "not identifiable" in table.loc["confounded mediator", "verdict"]
    without = _compare({"a": post, "b": bow})
    assert "identified" not in without.columns


def test_compare_refuses_different_data_and_too_few_models() -> None:
    post = svi_fit("frontdoor")
    with pytest.raises(InvalidArgumentError, match="at least two"):
        compare({"one": post})
    other = CausalPosterior(
        model=post.model,
        samples=post.samples,
        data={k: v + 1 for k, v in post.data.items()},
        diagnostics={},
        method="given",
        seed=0,
    )
    with pytest.raises(InvalidArgumentError, match="same data"):
        compare({"a": post, "b": other})
    fewer = {k: v[:10] for k, v in post.data.items()}
    shorter = CausalPosterior(
        model=post.model, samples=post.samples, data=fewer, diagnostics={}, method="given", seed=0
    )
    with pytest.raises(InvalidArgumentError, match="same data"):
        compare({"a": post, "b": shorter})
    assert torch.equal(post.data["X"], svi_fit("frontdoor").data["X"])


def test_compare_mixes_nuts_and_svi_and_waic() -> None:
    nuts = nuts_fit()
    sub = CausalPosterior(
        model=svi_fit().model, samples=svi_fit().samples, data=nuts.data, diagnostics={}, method="svi", seed=0
    )
    table = _compare({"nuts": nuts, "svi draws": sub}, ic="waic")
    assert "elpd_waic" in table.columns and len(table) == 2
