"""Convergence studies of sharp bounds: the bounds cases, their cells, summaries, report and CLI.

The true sharp bounds of each case are checked against closed forms computed here, from an
observed distribution integrated here (``scipy.integrate.quad``, not the cases' Gauss-Hermite
rule): the natural bounds of the bow, Balke & Pearl's eight-term bounds of the instrument,
Tian & Pearl's bounds on PN. The slow test runs the studies and checks that the error of each
end falls like 1/sqrt(N) and that the credible regions cover at the nominal rate.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from scipy.special import expit

from causal_pp.cases import BOUNDS, get_case
from causal_pp.cli import main
from causal_pp.convergence import study
from causal_pp.convergence.bounds_cells import BOUNDS_COLUMNS, run_bounds_cells
from causal_pp.convergence.cells import CELL_RUNNERS, CellTask
from causal_pp.convergence.grid import GridSpec, target_settings
from causal_pp.convergence.targets import resolve_target

BOUNDS_CASES = {"bow_bounds": "ate", "iv_bounds": "ate", "pn_bounds": "pn"}
Z = 4.0  # tolerance in standard errors

CELL_FIELDS = {
    "target", "n", "replicate", "cell_seed", "truth", "identified", "flagged", "failed", "mean", "covered",
    "lower", "upper", "lower_abs_error", "upper_abs_error", "true_lower", "true_upper", "width", "sharp",
    "lo", "hi", "set_covered", "lower_sd", "upper_sd", "true_width", "num_samples",
}  # fmt: skip


def _target(name: str):
    return resolve_target(get_case(name), BOUNDS_CASES[name], None, None, None)


def _logistic_joint(p: dict[str, float], with_z: bool) -> dict[tuple[int, ...], float]:
    """P(z, x, y) (or P(x, y)) of the logistic bow / IV cases by adaptive quadrature over U."""

    def p_x(x: int, z: int, u: float) -> float:
        q = expit(p["alpha_X"] + p.get("beta_ZX", 0.0) * z + p["lambda_X"] * u)
        return q if x else 1.0 - q

    def p_y(y: int, x: int, u: float) -> float:
        q = expit(p["alpha_Y"] + p["beta_XY"] * x + p["lambda_Y"] * u)
        return q if y else 1.0 - q

    out = {}
    for z, x, y in itertools.product((0, 1), repeat=3):
        if not with_z and z:
            continue
        value, _ = integrate.quad(
            lambda u, z=z, x=x, y=y: stats.norm.pdf(u) * p_x(x, z, u) * p_y(y, x, u), -12, 12, epsabs=1e-13
        )
        pz = (p["pi_Z"] if z else 1 - p["pi_Z"]) if with_z else 1.0
        out[(z, x, y) if with_z else (x, y)] = pz * value
    return out


def _logistic_ate(p: dict[str, float]) -> float:
    def effect(u: float) -> float:
        return expit(p["alpha_Y"] + p["beta_XY"] + p["lambda_Y"] * u) - expit(
            p["alpha_Y"] + p["lambda_Y"] * u
        )

    return integrate.quad(lambda u: stats.norm.pdf(u) * effect(u), -12, 12, epsabs=1e-13)[0]


# --- the true sharp bounds against closed forms ------------------------------------------------


def test_bow_true_bounds_are_the_natural_bounds() -> None:
    case = get_case("bow_bounds")
    cq = case.queries["ate"]
    j = _logistic_joint(dict(case.parameters), with_z=False)
    p_x1 = j[(1, 0)] + j[(1, 1)]
    natural = (j[(1, 1)] - j[(0, 1)] - p_x1, j[(1, 1)] - j[(0, 1)] + (1 - p_x1))
    assert cq.kind == BOUNDS and not cq.identified
    np.testing.assert_allclose(cq.true_bounds, natural, atol=1e-9)
    assert cq.true_bounds[1] - cq.true_bounds[0] == pytest.approx(1.0, abs=1e-9)
    assert cq.truth == pytest.approx(_logistic_ate(dict(case.parameters)), abs=1e-9)
    assert natural[0] + 0.1 < cq.truth < natural[1] - 0.1


def _balke_pearl(j: dict[tuple[int, int, int], float]) -> tuple[float, float]:
    """Balke & Pearl (1997) bounds on the ATE; p(y, x, z) = P(Y=y, X=x | Z=z)."""
    pz = {z: sum(v for (zz, _, _), v in j.items() if zz == z) for z in (0, 1)}

    def p(y: int, x: int, z: int) -> float:
        return j[(z, x, y)] / pz[z]

    lower = max(
        p(1, 1, 1) + p(0, 0, 0) - 1,
        p(1, 1, 0) + p(0, 0, 1) - 1,
        p(1, 1, 0) - p(1, 1, 1) - p(1, 0, 1) - p(0, 1, 0) - p(1, 0, 0),
        p(1, 1, 1) - p(1, 1, 0) - p(1, 0, 0) - p(0, 1, 1) - p(1, 0, 1),
        -p(0, 1, 1) - p(1, 0, 1),
        -p(0, 1, 0) - p(1, 0, 0),
        p(0, 0, 1) - p(0, 1, 1) - p(1, 0, 1) - p(0, 1, 0) - p(0, 0, 0),
        p(0, 0, 0) - p(0, 1, 0) - p(1, 0, 0) - p(0, 1, 1) - p(0, 0, 1),
    )
    upper = min(
        1 - p(0, 1, 1) - p(1, 0, 0),
        1 - p(0, 1, 0) - p(1, 0, 1),
        -p(0, 1, 0) + p(0, 1, 1) + p(0, 0, 1) + p(1, 1, 0) + p(0, 0, 0),
        -p(0, 1, 1) + p(1, 1, 1) + p(0, 0, 1) + p(0, 1, 0) + p(0, 0, 0),
        p(1, 1, 1) + p(0, 0, 1),
        p(1, 1, 0) + p(0, 0, 0),
        -p(1, 0, 1) + p(1, 1, 1) + p(0, 0, 1) + p(1, 1, 0) + p(1, 0, 0),
        -p(1, 0, 0) + p(1, 1, 0) + p(0, 0, 0) + p(1, 1, 1) + p(1, 0, 1),
    )
    return lower, upper


def test_iv_true_bounds_are_balke_pearl_strictly_inside_the_natural_bounds() -> None:
    case = get_case("iv_bounds")
    cq = case.queries["ate"]
    j = _logistic_joint(dict(case.parameters), with_z=True)
    lo, hi = _balke_pearl(j)
    np.testing.assert_allclose(cq.true_bounds, (lo, hi), atol=1e-9)
    assert cq.truth == pytest.approx(_logistic_ate(dict(case.parameters)), abs=1e-9)
    # the natural (Manski) bounds from P(x, y), ignoring the instrument: width exactly 1
    pxy = {(x, y): j[(0, x, y)] + j[(1, x, y)] for x in (0, 1) for y in (0, 1)}
    p_x1 = pxy[(1, 0)] + pxy[(1, 1)]
    natural = (pxy[(1, 1)] - pxy[(0, 1)] - p_x1, pxy[(1, 1)] - pxy[(0, 1)] + 1 - p_x1)
    assert natural[1] - natural[0] == pytest.approx(1.0)
    assert natural[0] + 0.2 < lo and hi < natural[1] - 0.2 and hi - lo < 0.3  # strictly narrower
    assert lo + 0.05 < cq.truth < hi - 0.05  # the true ATE strictly inside


def test_pn_true_bounds_are_tian_pearl_and_the_truth_needs_no_monotonicity() -> None:
    case = get_case("pn_bounds")
    cq = case.queries["pn"]
    par = case.parameters
    p_y = {1: par["q_complier"] + par["q_always"], 0: par["q_defier"] + par["q_always"]}  # P(Y=1 | X=x)
    p_xy = {
        (x, y): (par["pi_X"] if x else 1 - par["pi_X"]) * (p_y[x] if y else 1 - p_y[x])
        for x in (0, 1)
        for y in (0, 1)
    }
    p_y1 = p_xy[(0, 1)] + p_xy[(1, 1)]
    # Tian & Pearl (2000), P(y_x') = P(y | x') as X and Y are not confounded
    lower = max(0.0, (p_y1 - p_y[0]) / p_xy[(1, 1)])
    upper = min(1.0, ((1 - p_y[0]) - p_xy[(0, 0)]) / p_xy[(1, 1)])
    np.testing.assert_allclose(cq.true_bounds, (lower, upper), atol=1e-9)
    assert cq.truth == pytest.approx(par["q_complier"] / (par["q_complier"] + par["q_always"]))
    # defiers exist: the truth is not the lower bound (PN's value under monotonicity)
    assert par["q_defier"] > 0 and lower + 0.1 < cq.truth < upper - 0.1 and lower > 0 and upper < 1


@pytest.mark.parametrize("name", ["bow_bounds", "iv_bounds", "pn_bounds"])
def test_simulator_reproduces_the_exact_observed_distribution(name: str) -> None:
    case = get_case(name)
    par = dict(case.parameters)
    if name == "pn_bounds":
        p_y = {1: par["q_complier"] + par["q_always"], 0: par["q_defier"] + par["q_always"]}
        exact = {
            (x, y): (par["pi_X"] if x else 1 - par["pi_X"]) * (p_y[x] if y else 1 - p_y[x])
            for x in (0, 1)
            for y in (0, 1)
        }
    else:
        exact = _logistic_joint(par, with_z=name == "iv_bounds")
    n = 200_000
    df = case.simulate(n, seed=4)[list(case.observed)].astype(int)
    freq = df.value_counts(normalize=True)
    for cell, p in exact.items():
        f = float(freq.get(cell, 0.0))
        assert abs(f - p) <= Z * math.sqrt(p * (1 - p) / n), (cell, f, p)


# --- cells, studies, settings ---------------------------------------------------------------------


def test_a_small_bounds_study_has_the_cells_summary_and_report(tmp_path) -> None:
    s = study(
        get_case("iv_bounds"), sizes=[60, 120], replicates=2, seed=2, out=tmp_path,
        fit_kwargs={"num_samples": 60}, progress=False,
    )  # fmt: skip  # not identified, yet no allow_unidentified: a bounds study
    t = s.table
    assert len(t) == 4 and s.kind == BOUNDS and s.true_bounds == _target("iv_bounds").true_bounds
    for cell in s.cells.values():
        assert set(cell) >= CELL_FIELDS, CELL_FIELDS - set(cell)
        assert cell["method"] == "bounds" and not cell["failed"] and not cell["identified"]
        assert cell["mean"] is None and cell["sharp"] is True and cell["num_samples"] == 60
        assert cell["lower"] <= cell["upper"] and cell["lo"] <= cell["lower"] and cell["upper"] <= cell["hi"]
        assert cell["lower_abs_error"] == pytest.approx(abs(cell["lower"] - cell["true_lower"]))
        assert cell["upper_abs_error"] == pytest.approx(abs(cell["upper"] - cell["true_upper"]))
        assert cell["covered"] == (cell["lo"] <= cell["truth"] <= cell["hi"])
    assert all(t[c].dtype == float for c in BOUNDS_COLUMNS)
    summary = s.summary()
    assert list(summary.index) == [60, 120] and (summary["replicates"] == 2).all()
    for col in (
        "lower_abs_error",
        "lower_se",
        "upper_abs_error",
        "upper_se",
        "coverage",
        "width",
        "true_width",
    ):
        assert summary[col].notna().all(), col
    assert set(summary.attrs["slopes"]) == {"lower", "upper"}
    assert s.meta["batch_size"] is None and s.meta["bounds"]["num_samples"] == 60
    png, md = s.report(tmp_path / "report")
    text = md.read_text()
    assert png.stat().st_size > 0 and "true sharp bounds" in text and "lower_abs_error" in text
    assert "log-log slope of |error| of the upper end" in text
    again = study(
        get_case("iv_bounds"), sizes=[60, 120], replicates=2, seed=2, out=tmp_path,
        fit_kwargs={"num_samples": 60}, progress=False,
    )  # fmt: skip
    pd.testing.assert_frame_equal(again.table, t)  # stored cells reused, timings included


def test_settings_key_of_a_bounds_target_holds_its_options() -> None:
    t = _target("pn_bounds")
    a = target_settings(t, GridSpec(sizes=(50,), replicates=1, fit_kwargs={"num_samples": 100}))
    b = target_settings(t, GridSpec(sizes=(50,), replicates=1, fit_kwargs={"num_samples": 200}))
    c = target_settings(t, GridSpec(sizes=(50,), replicates=1))
    assert a.key != b.key != c.key
    assert a.extra["bounds"] == {"num_samples": 100, "prior": 1.0}
    assert c.extra["bounds"]["num_samples"] == 1000  # the default is keyed too


def test_cell_task_dispatches_on_the_target_kind() -> None:
    t = _target("bow_bounds")
    assert t.kind == BOUNDS and CELL_RUNNERS[BOUNDS] is run_bounds_cells
    task = CellTask((t,), 80, 1, seed=5, method="svi", device="cpu", prob=0.94, num_units=None,
                    allow_unidentified=False, fit_kwargs={"num_samples": 40})  # fmt: skip
    (cell,) = task.compute()
    assert cell["method"] == "bounds" and cell["n"] == 80 and cell["replicate"] == 1
    (same,) = run_bounds_cells([t], 80, 1, seed=5, method="svi", device="cpu", prob=0.94, num_units=None,
                               allow_unidentified=False, fit_kwargs={"num_samples": 40})  # fmt: skip
    assert same["lower"] == cell["lower"] and same["hi"] == cell["hi"]  # seeded by the cell


def test_a_cell_whose_bounds_raise_is_a_failed_cell_not_a_crash() -> None:
    def contradicting(n: int, seed: int = 0) -> pd.DataFrame:
        rng = np.random.default_rng(seed)  # Z decides Y, X ignores Z: no IV model produces this
        z = rng.integers(0, 2, n)
        return pd.DataFrame({"Z": z, "X": (rng.random(n) < 0.8).astype(int), "Y": z}).astype(float)

    t = dataclasses.replace(_target("iv_bounds"), simulate=contradicting)
    (cell,) = run_bounds_cells([t], 500, 0, seed=0, method="svi", device="cpu", prob=0.94, num_units=None,
                               allow_unidentified=False, fit_kwargs={"num_samples": 50})  # fmt: skip
    assert cell["failed"] and cell["flagged"] and cell["error"].startswith("IncompatibleDataError")
    assert cell["lower"] is None and cell["covered"] is None and cell["true_lower"] == t.true_bounds[0]


def test_a_bounds_target_travels_to_workers_with_its_truths() -> None:
    t = _target("pn_bounds")
    back = pickle.loads(pickle.dumps(t))
    assert (back.kind, back.true_bounds, back.truth, back.name) == (t.kind, t.true_bounds, t.truth, t.name)


def test_process_executor_gives_the_serial_cells(tmp_path) -> None:
    grid = dict(sizes=[50], replicates=2, seed=1, fit_kwargs={"num_samples": 30}, progress=False)
    serial = study(get_case("pn_bounds"), **grid)
    pooled = study(get_case("pn_bounds"), executor="process", workers=2, out=tmp_path, **grid)
    drop = ["fit_seconds"]
    pd.testing.assert_frame_equal(serial.table.drop(columns=drop), pooled.table.drop(columns=drop))


def test_cli_converge_runs_a_bounds_case_end_to_end(tmp_path, capsys) -> None:
    args = ["converge", "--case", "pn_bounds", "--sizes", "50,100", "--replicates", "2", "--quiet",
            "--fit", "num_samples=40", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "NOT identified: posterior of the sharp bounds" in out and "true sharp bounds [0.5, 0.75]" in out
    assert (
        "lower_abs_error" in out and "coverage" in out and "log-log slope of |error| of the lower end" in out
    )
    assert (tmp_path / "convergence.png").stat().st_size > 0 and (tmp_path / "report.md").exists()
    assert main([*args, "--json"]) == 0  # the same cells, reused
    (only,) = json.loads(capsys.readouterr().out)["studies"]
    assert only["kind"] == "bounds" and only["true_bounds"] == pytest.approx([0.5, 0.75])
    assert set(only["slopes"]) == {"lower", "upper"} and only["by_size"]["50"]["replicates"] == 2


# --- the statistical claim --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bow_bounds", "iv_bounds", "pn_bounds"])
def test_posterior_bounds_converge_like_one_over_root_n_and_cover(name: str) -> None:
    sizes, reps = (500, 2000, 8000, 32000), 50
    s = study(
        get_case(name), sizes=sizes, replicates=reps, seed=11, fit_kwargs={"num_samples": 400}, progress=False
    )
    t = s.table
    assert not t["failed"].any() and not t["flagged"].any()
    for end in ("lower", "upper"):
        err = t[f"{end}_abs_error"].to_numpy()
        # log|error| = log(c / sqrt(N)) + log|noise|: its regression on log N has slope -1/2
        fit = stats.linregress(np.log(t["n"].to_numpy(float)), np.log(err))
        assert fit.stderr < 0.1 and abs(fit.slope + 0.5) <= 3.5 * fit.stderr, (end, fit)
        for n, g in t.groupby("n"):
            # and the constant: E|error| = sqrt(2/pi) x the posterior SD, where N is large enough
            e = g[f"{end}_abs_error"]
            expected = math.sqrt(2 / math.pi) * g[f"{end}_sd"].mean()
            if n >= 2000:
                assert abs(e.mean() - expected) <= Z * e.std(ddof=1) / math.sqrt(len(e)), (
                    end,
                    n,
                    e.mean(),
                    expected,
                )
    band = stats.binom.ppf(0.001, len(t), 0.94)  # lower 0.1% of Binomial(cells, 0.94)
    assert t["covered"].sum() >= band, t["covered"].mean()  # the true value in the credible region
    assert t["set_covered"].sum() >= band, t["set_covered"].mean()  # the true interval in it too
