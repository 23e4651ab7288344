"""Convergence-study machinery: metrics, summaries, assertions, resume after interruption.

These tests use a cheap stand-in case whose "posterior" is an exact Gaussian around the truth
(identified) or around a biased value (not identified), so they check the study machinery, not
inference. The statistical convergence of the real models is tested in test_convergence_cases.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from causal_pp import ATE, CausalGraph, CausalPPError, NotIdentifiableError
from causal_pp.convergence import Study, studies, study, wasserstein1
from causal_pp.convergence.store import StoreWarning

GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"])
BOW = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"])
QUERY = ATE("X", "Y")


@dataclass(frozen=True)
class _Est:
    mean: float
    std: float
    plugin: float
    predictive: dict

    def interval(self, prob: float) -> tuple[float, float]:
        from scipy.stats import norm

        z = norm.ppf(0.5 + prob / 2)
        return self.mean - z * self.std, self.mean + z * self.std


class _Posterior:
    def __init__(self, n: int, seed: int, truth: float, bias: float) -> None:
        self.n, self.seed, self.truth, self.bias = n, seed, truth, bias

    def estimate(self, query, *, num_units, seed, allow_unidentified):
        rng = np.random.default_rng(seed)
        sd = 1.0 / np.sqrt(self.n)
        mean = self.truth + self.bias + sd * rng.standard_normal()
        pred = torch.as_tensor(mean + rng.standard_normal((20, 50)))
        return _Est(mean, sd, mean + 0.1 * sd, {"Y | do(X=1)": pred, "Y | do(X=0)": pred - 1.0})


class _Model:
    def __init__(self, graph: CausalGraph, truth: float, bias: float, fail_after: int | None) -> None:
        self.graph, self.truth, self.bias, self.fail_after, self.calls = graph, truth, bias, fail_after, 0

    def fit(self, data, *, method, seed, device, progress_bar, **kw):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        return _Posterior(len(data), seed, self.truth, self.bias)


@dataclass(frozen=True)
class _CQ:
    query: ATE
    truth: float
    identified: bool


class _Case:
    def __init__(
        self, name: str, graph: CausalGraph, identified: bool, bias: float = 0.0, fail_after=None
    ) -> None:
        self.name = name
        self.queries = {"ate": _CQ(QUERY, 2.0, identified)}
        self.model = _Model(graph, 2.0, bias, fail_after)

    def simulate(self, n: int, *, seed: int) -> pd.DataFrame:
        return pd.DataFrame({"X": np.zeros(n)})

    def truth_samples(self, qname: str, n: int, seed: int) -> np.ndarray:
        return 2.0 + np.random.default_rng(seed).standard_normal(n)


def test_wasserstein_matches_scipy() -> None:
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=301), rng.normal(0.5, 2.0, size=157)
    assert wasserstein1(a, b) == pytest.approx(wasserstein_distance(a, b), rel=1e-12)
    assert wasserstein1(a, a) == 0.0


def test_identified_stub_converges_and_summary_has_per_n_rows() -> None:
    s = study(_Case("stub", GRAPH, True), sizes=[100, 400, 1600, 6400], replicates=4, progress=False)
    assert isinstance(s, Study)
    assert list(s.summary().index) == [100, 400, 1600, 6400]
    _slope, lo, hi = s.slope()
    assert lo < -0.5 < hi and hi < 0  # the stub's error scales like N^-1/2
    # tolerance from the stub's known posterior SD at the largest N (1/sqrt(N)), times 3
    s.assert_converges(tol=3 / np.sqrt(6400))
    with pytest.raises(AssertionError, match="does not converge"):
        s.assert_converges(tol=1e-9)


def test_biased_stub_does_not_converge() -> None:
    bias = 0.7
    s = study(
        _Case("bow", BOW, False, bias=bias),
        sizes=[100, 1600],
        replicates=3,
        progress=False,
        allow_unidentified=True,
    )
    s.assert_not_converging(bound=bias / 2)
    with pytest.raises(AssertionError, match="does not converge"):
        s.assert_converges(tol=bias / 2)
    with pytest.raises(AssertionError, match="should not converge"):
        study(
            _Case("ok", GRAPH, True), sizes=[100, 1600], replicates=3, progress=False
        ).assert_not_converging(bound=0.5)


def test_unidentified_query_is_refused_without_opt_in() -> None:
    with pytest.raises(NotIdentifiableError):
        study(_Case("bow", BOW, False), sizes=[10], replicates=1, progress=False)


def test_interrupted_study_resumes_to_the_same_table(tmp_path: Path) -> None:
    kwargs = dict(sizes=[50, 200, 800], replicates=3, seed=7, progress=False)
    full = study(_Case("stub", GRAPH, True), out=tmp_path / "full", **kwargs)

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        study(_Case("stub", GRAPH, True, fail_after=4), out=out, **kwargs)
    lines = (out / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 4  # the finished cells were kept
    # a torn write at the kill is reported and skipped on resume, never swallowing a good line
    with (out / "cells.jsonl").open("a") as fh:
        fh.write('{"format": 1, "key": "ab')
    case = _Case("stub", GRAPH, True)
    with pytest.warns(StoreWarning, match="incomplete line"):
        resumed = study(case, out=out, **kwargs)
    assert case.model.calls == 9 - 4  # only the missing cells were fitted
    cols = [c for c in full.table.columns if c != "fit_seconds"]
    pd.testing.assert_frame_equal(full.table[cols], resumed.table[cols])
    records = [json.loads(x) for x in (out / "cells.jsonl").read_text().splitlines() if x.endswith("}")]
    assert len(records) == 9 and len({tuple(r["id"]) for r in records}) == 9


def test_same_seed_same_numbers_different_seed_different() -> None:
    a = study(_Case("stub", GRAPH, True), sizes=[50, 100], replicates=2, seed=1, progress=False).table
    b = study(_Case("stub", GRAPH, True), sizes=[50, 100], replicates=2, seed=1, progress=False).table
    c = study(_Case("stub", GRAPH, True), sizes=[50, 100], replicates=2, seed=2, progress=False).table
    assert a["mean"].tolist() == b["mean"].tolist()
    assert a["mean"].tolist() != c["mean"].tolist()


def test_report_writes_plot_and_markdown(tmp_path: Path) -> None:
    s = study(_Case("stub", GRAPH, True), sizes=[50, 200], replicates=2, progress=False)
    png, md = s.report(tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "log-log slope" in text and "| 50 |" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_count_valued_truth_gets_one_bin_per_count() -> None:
    # Bins finer than the truth's integer lattice would draw every other truth bar empty.
    from causal_pp.convergence.report import histogram_bins as _bins

    truth = [83.0, 85.0, 89.0, 92.0]
    edges = _bins([82.3, 93.7], truth)
    assert np.allclose(np.diff(edges), 1.0)
    assert edges[0] < 82.3 and edges[-1] > 93.7
    assert np.allclose((np.asarray(truth) - edges[0]) % 1.0, 0.5)  # each count mid-bin
    assert len(_bins([0.1, 2.5], [0.3, 1.7])) == 41  # continuous truth: 40 bins


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": []}, "sizes"),
        ({"sizes": [1]}, "sizes"),
        ({"replicates": 0}, "replicates"),
        ({"query": "nope"}, "no query"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"sizes": [10], "replicates": 1, "progress": False, **kwargs}
    with pytest.raises(CausalPPError, match=match):
        study(_Case("stub", GRAPH, True), **args)


class _TwoQueryCase(_Case):
    """The stub with a second query: the same posterior answers both."""

    def __init__(self, fail_after=None) -> None:
        super().__init__("stub2", GRAPH, True, fail_after=fail_after)
        self.queries = {"ate": _CQ(QUERY, 2.0, True), "ate_again": _CQ(QUERY, 2.0, True)}


def test_studies_share_one_fit_per_cell_and_match_study(tmp_path: Path) -> None:
    kwargs = dict(sizes=[50, 200], replicates=2, seed=3, progress=False)
    case = _TwoQueryCase()
    both = studies(case, out=tmp_path / "both", **kwargs)
    assert list(both) == ["ate", "ate_again"]
    assert case.model.calls == 4  # one fit per cell, not one per query
    cols = [c for c in both["ate"].table.columns if c not in ("fit_seconds", "shared_fit")]
    alone = study(_TwoQueryCase(), "ate", **kwargs).table
    pd.testing.assert_frame_equal(both["ate"].table[cols], alone[cols])
    # Both queries' cells share one results file, and a rerun fits nothing.
    assert len((tmp_path / "both" / "cells.jsonl").read_text().splitlines()) == 8
    again = _TwoQueryCase()
    studies(again, out=tmp_path / "both", **kwargs)
    assert again.model.calls == 0
    # A cell finished for one query only is refitted for the other alone.
    lines = (tmp_path / "both" / "cells.jsonl").read_text().splitlines()
    (tmp_path / "both" / "cells.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    third = _TwoQueryCase()
    studies(third, out=tmp_path / "both", **kwargs)
    assert third.model.calls == 1


def test_studies_refuses_a_model_and_an_empty_query_list() -> None:
    with pytest.raises(CausalPPError, match="takes a case"):
        studies(_Model(GRAPH, 2.0, 0.0, None), sizes=[10], replicates=1)
    with pytest.raises(CausalPPError, match="at least one"):
        studies(_Case("stub", GRAPH, True), [], sizes=[10], replicates=1)


# --- batched studies: the replicates of one N are one fit_many batch --------------------------

_TINY_BATCH = {"num_steps": 8, "restarts": 1, "num_samples": 50}


def test_a_study_fits_the_replicates_of_each_size_as_batches() -> None:
    from causal_pp.cases import get_case

    s = study(get_case("frontdoor"), "ate", sizes=[30, 60], replicates=3, batch_size=2, seed=1,
              num_units=50, fit_kwargs=_TINY_BATCH, progress=False)  # fmt: skip
    sizes = {key: cell["batch_size"] for key, cell in s.cells.items()}
    assert sizes == {(30, 0): 2, (30, 1): 2, (30, 2): 1, (60, 0): 2, (60, 1): 2, (60, 2): 1}
    assert all(cell["fit_diagnostics"]["batched"] for cell in s.cells.values())
    assert s.meta["batch_size"] == 2
    # each cell keeps the seeds of its own (N, replicate), whatever its batch
    assert len({cell["cell_seed"] for cell in s.cells.values()}) == 6


def test_where_a_study_cannot_batch_it_fits_cell_by_cell_and_says_so() -> None:
    from causal_pp.cases import get_case

    notes: list[str] = []
    s = study(get_case("frontdoor"), "ate", sizes=[30], replicates=2, num_units=50, progress=False,
              fit_kwargs=_TINY_BATCH | {"guide": "normal"}, on_notice=notes.append)  # fmt: skip
    assert any("guide 'normal' has no batched form" in n and "on its own" in n for n in notes), notes
    assert s.meta["batch_size"] is None
    assert all("batch_size" not in cell for cell in s.cells.values())


def test_batched_and_unbatched_cells_are_stored_apart(tmp_path) -> None:
    from causal_pp.cases import get_case

    grid = dict(sizes=[30], replicates=2, num_units=50, fit_kwargs=_TINY_BATCH, progress=False, out=tmp_path)
    study(get_case("frontdoor"), "ate", **grid)
    notes: list[str] = []
    study(get_case("frontdoor"), "ate", batch_size=None, on_notice=notes.append, **grid)
    assert any("batch_size" in n for n in notes), notes  # says which setting the stored cells differ in
