"""Convergence studies: does the posterior predictive approach the truth as data grows?

For each sample size N and replicate, :func:`study` simulates N rows from the ground-truth SCM,
fits the model, estimates the query, and records the error against the known truth. Results are
appended to ``out/results.jsonl`` one cell at a time, so an interrupted study resumes where it
stopped and ends with the same table as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import CausalPPError
from ..identification import identify
from ..queries import Query
from .cells import DRAW_KEYS, run_cell
from .report import plot_studies, write_report
from .targets import Target, outcome_label, resolve_target

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.figure

__all__ = ["Study", "studies", "study"]

_RESULTS = "results.jsonl"


def read_cells(path: Path) -> list[dict[str, Any]]:
    """Finished cells; a torn last line (killed mid-write) is dropped and the file repaired."""
    if not path.exists():
        return []
    good, lines = [], path.read_text().splitlines()
    for line in lines:
        try:
            good.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if len(good) != len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(c) + "\n" for c in good))
        os.replace(tmp, path)
    return good


@dataclass(frozen=True)
class Study:
    """The result of :func:`study`: one row per (N, replicate) cell.

    Attributes
    ----------
    table
        A pandas DataFrame: ``n``, ``replicate``, ``truth``, posterior ``mean``/``sd``/interval
        ``lo``-``hi``, ``abs_error`` (posterior mean), ``plugin_abs_error`` (the paper's plug-in
        estimator), ``wasserstein`` (W1 between the posterior-predictive outcome and the true
        interventional distribution), ``covered`` (credible interval covers the truth),
        ``fit_seconds``.
    target, identified, truth, prob
        What was estimated, its identifiability verdict, its true value, the interval mass.
    """

    table: pd.DataFrame
    target: str
    identified: bool
    truth: float
    prob: float
    predictive: dict[tuple[int, int], list[float]] = field(default_factory=dict, repr=False)
    truth_predictive: list[float] = field(default_factory=list, repr=False)
    outcome_label: str = "outcome"
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def slope(self, column: str = "abs_error") -> tuple[float, float, float]:
        """Log-log OLS slope of ``column`` vs N over all cells, with a 95% confidence interval.

        Returns ``(slope, lower, upper)``. An identified query's posterior-mean error should
        shrink like N^-1/2 (slope ≈ -0.5).
        """
        from scipy import stats

        t = self.table
        x = np.log(t["n"].to_numpy(dtype=float))
        y = np.log(np.maximum(t[column].to_numpy(dtype=float), 1e-12))
        if np.unique(x).size < 2:
            raise CausalPPError("a slope needs at least two sample sizes.")
        fit = stats.linregress(x, y)
        q = stats.t.ppf(0.975, df=max(len(x) - 2, 1))
        return float(fit.slope), float(fit.slope - q * fit.stderr), float(fit.slope + q * fit.stderr)

    def summary(self) -> pd.DataFrame:
        """Per N: mean/median error and its spread across replicates, coverage, W1, fit time."""
        g = self.table.groupby("n")
        out = pd.DataFrame(
            {
                "replicates": g.size(),
                "mean_abs_error": g["abs_error"].mean(),
                "median_abs_error": g["abs_error"].median(),
                "sd_abs_error": g["abs_error"].std(ddof=1),
                "plugin_abs_error": g["plugin_abs_error"].mean(),
                "posterior_sd": g["sd"].mean(),
                "wasserstein": g["wasserstein"].mean(),
                "coverage": g["covered"].mean(),
                "fit_seconds": g["fit_seconds"].mean(),
            }
        )
        if self.table["n"].nunique() >= 2:
            s, lo, hi = self.slope()
            out.attrs["slope"] = (s, lo, hi)
        return out

    def assert_converges(self, tol: float, *, column: str = "abs_error") -> None:
        """Raise AssertionError unless the error shrinks with N and ends below ``tol``.

        Checks that the upper end of the log-log slope's 95% CI is below 0 and that the mean
        ``column`` at the largest N is below ``tol`` (derive ``tol`` from the analytic
        posterior SD of the quantity, not by tuning).
        """
        s, lo, hi = self.slope(column)
        final = self.table.loc[self.table["n"] == self.table["n"].max(), column].mean()
        problems = []
        if not hi < 0:
            problems.append(f"log-log slope {s:.3f} (95% CI {lo:.3f}..{hi:.3f}) does not exclude 0")
        if not final < tol:
            problems.append(f"mean {column} at N={self.table['n'].max()} is {final:.4g} >= tol {tol:.4g}")
        if problems:
            raise AssertionError(f"{self.target} does not converge: " + "; ".join(problems))

    def assert_not_converging(self, bound: float, *, column: str = "abs_error") -> None:
        """Raise AssertionError if the error at the largest N falls below ``bound``.

        For a non-identified query ``bound`` is derived from its confounding bias: the
        posterior concentrates, but away from the truth.
        """
        final = self.table.loc[self.table["n"] == self.table["n"].max(), column].mean()
        if not final >= bound:
            raise AssertionError(
                f"{self.target}: mean {column} at N={self.table['n'].max()} is {final:.4g}, below "
                f"the bound {bound:.4g} — a non-identified query should not converge to the truth."
            )

    def plot(self) -> matplotlib.figure.Figure:
        """Error vs N (log-log, replicates as points) and posterior-predictive densities.

        The right panel shows the posterior-predictive outcome distribution under the
        intervention at the smallest and largest N against the true interventional
        distribution (as in the paper's Example 1/2 figures).
        """
        return plot_studies([self])

    def report(self, out: str | Path) -> list[Path]:
        """Write ``convergence.png`` and ``report.md`` into ``out``; returns their paths."""
        return write_report([self], Path(out))


def study(
    case_or_model: Any,
    query: str | Query | None = None,
    *,
    sizes: Sequence[int] = (50, 200, 800),
    replicates: int = 5,
    method: str = "svi",
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    prob: float = 0.94,
    num_units: int = 1000,
    allow_unidentified: bool = False,
    progress: bool = True,
    simulate: Callable[..., Any] | None = None,
    truth: float | None = None,
    truth_samples: Callable[[int, int], np.ndarray] | None = None,
    fit_kwargs: dict[str, Any] | None = None,
) -> Study:
    """Run a convergence study: simulate, fit and estimate over a grid of sizes × replicates.

    Parameters
    ----------
    case_or_model
        A case from :mod:`causal_pp.cases` (it brings its simulator and truths), or your own
        :class:`~causal_pp.CausalModel` together with ``query``, ``simulate`` and ``truth``.
    query
        A query name of the case (default: its first) or a query object.
    sizes, replicates
        The grid: each size N is simulated ``replicates`` times with independent seeds.
    method, device, fit_kwargs
        Passed to :meth:`CausalModel.fit`.
    seed
        Master seed; each cell's seed is derived from (seed, N, replicate).
    out
        A folder: cells are appended to ``out/results.jsonl`` as they finish, and a rerun with
        the same arguments skips finished cells (resume after an interruption).
    allow_unidentified
        Estimate a non-identified query anyway (the negative control); otherwise it is refused
        by the identification gate.

    Returns
    -------
    Study

    Examples
    --------
    >>> from causal_pp import cases, convergence
    >>> s = convergence.study(cases.get_case("frontdoor"), sizes=[50, 100], replicates=1,
    ...                       progress=False, fit_kwargs={"num_steps": 200})  # doctest: +SKIP
    >>> s.summary()  # doctest: +SKIP
    """
    target = resolve_target(case_or_model, query, simulate, truth, truth_samples)
    return run_grid(
        [target],
        sizes=sizes,
        replicates=replicates,
        method=method,
        seed=seed,
        device=device,
        out=out,
        prob=prob,
        num_units=num_units,
        allow_unidentified=allow_unidentified,
        progress=progress,
        fit_kwargs=fit_kwargs,
    )[target.name]


def studies(
    case: Any,
    queries: Sequence[str] | None = None,
    *,
    sizes: Sequence[int] = (50, 200, 800),
    replicates: int = 5,
    method: str = "svi",
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    prob: float = 0.94,
    num_units: int = 1000,
    allow_unidentified: bool = False,
    progress: bool = True,
    fit_kwargs: dict[str, Any] | None = None,
) -> dict[str, Study]:
    """Convergence studies of several queries of one case, sharing one fit per cell.

    Each cell (N, replicate) simulates one data set and fits the model once; every query is
    estimated from that posterior. The result per query is exactly what :func:`study` with
    the same arguments returns (same cell seeds, same data, same fit), at the cost of one
    study instead of one per query. Cells of all queries go to one ``out/results.jsonl``.

    Parameters
    ----------
    case
        A case from :mod:`causal_pp.cases`.
    queries
        Query names of the case (default: all of them).
    sizes, replicates, method, seed, device, out, prob, num_units, allow_unidentified, progress, fit_kwargs
        As for :func:`study`.

    Returns
    -------
    dict
        Query name -> :class:`Study`.

    Examples
    --------
    >>> from causal_pp import cases, convergence
    >>> both = convergence.studies(cases.get_case("sars_cov2"), sizes=[50], replicates=1,
    ...                            progress=False)  # doctest: +SKIP
    >>> sorted(both)  # doctest: +SKIP
    ['cytok_do_egfr20', 'cytok_do_sil6r20']
    """
    if not hasattr(case, "queries") or not hasattr(case, "simulate"):
        raise CausalPPError(
            f"studies() takes a case from causal_pp.cases; got {type(case).__name__}. "
            "For your own model, call study() once per query."
        )
    names = list(case.queries) if queries is None else list(queries)
    if not names:
        raise CausalPPError(f"queries must name at least one of case {case.name!r}'s queries.")
    targets = [resolve_target(case, q, None, None, None) for q in names]
    grids = run_grid(
        targets,
        sizes=sizes,
        replicates=replicates,
        method=method,
        seed=seed,
        device=device,
        out=out,
        prob=prob,
        num_units=num_units,
        allow_unidentified=allow_unidentified,
        progress=progress,
        fit_kwargs=fit_kwargs,
    )
    return {q: grids[t.name] for q, t in zip(names, targets, strict=True)}


def run_grid(
    targets: Sequence[Target],
    *,
    sizes: Sequence[int],
    replicates: int,
    method: str,
    seed: int,
    device: str,
    out: str | Path | None,
    prob: float,
    num_units: int,
    allow_unidentified: bool,
    progress: bool,
    fit_kwargs: dict[str, Any] | None,
) -> dict[str, Study]:
    from tqdm.auto import tqdm

    sizes = [int(n) for n in sizes]
    if not sizes or any(n < 2 for n in sizes):
        raise CausalPPError(f"sizes must be sample sizes >= 2; got {sizes}.")
    if replicates < 1:
        raise CausalPPError(f"replicates must be >= 1; got {replicates}.")
    for target in targets:
        if not target.identified and not allow_unidentified:
            identify(target.model.graph, target.query)  # raises NotIdentifiableError with the reason
    fit_kwargs = dict(fit_kwargs or {})

    path = None
    done: dict[str, dict[tuple[int, int], dict[str, Any]]] = {t.name: {} for t in targets}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / _RESULTS
        for cell in read_cells(path):
            if cell.get("method") == method and cell.get("seed") == seed and cell.get("target") in done:
                done[cell["target"]][(cell["n"], cell["replicate"])] = cell

    grid = [(n, r) for n in sizes for r in range(replicates)]
    todo = [c for c in grid if any(c not in done[t.name] for t in targets)]
    desc = targets[0].name if len(targets) == 1 else targets[0].name.split("/")[0]
    bar = tqdm(total=len(grid), initial=len(grid) - len(todo), desc=desc, disable=not progress)
    try:
        for n, r in todo:
            missing = [t for t in targets if (n, r) not in done[t.name]]
            cells = run_cell(
                missing,
                n,
                r,
                seed=seed,
                method=method,
                device=device,
                prob=prob,
                num_units=num_units,
                allow_unidentified=allow_unidentified,
                fit_kwargs=fit_kwargs,
            )
            for cell in cells:
                done[cell["target"]][(n, r)] = cell
            if path is not None:
                with path.open("a") as fh:
                    fh.write("".join(json.dumps(cell) + "\n" for cell in cells))
                    fh.flush()
                    os.fsync(fh.fileno())
            bar.set_postfix(n=n, err=f"{cells[0]['abs_error']:.3g}")
            bar.update()
    finally:
        bar.close()

    meta = {
        "method": method,
        "seed": seed,
        "device": device,
        "sizes": sizes,
        "replicates": replicates,
        "command": " ".join(sys.argv),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    result = {}
    for target in targets:
        cells = done[target.name]
        table = pd.DataFrame([{k: v for k, v in cells[c].items() if k not in DRAW_KEYS} for c in grid])
        result[target.name] = Study(
            table=table,
            target=target.name,
            identified=target.identified,
            truth=target.truth,
            prob=prob,
            predictive={c: cells[c]["predictive"] for c in grid},
            truth_predictive=[v for c in grid for v in cells[c].get("truth_predictive", [])],
            outcome_label=outcome_label(target.query),
            meta=dict(meta),
        )
    return result
