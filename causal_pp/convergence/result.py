"""The result of a convergence study: its table of cells, summaries, slope and assertions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..cases.case import BOUNDS, MODEL
from ..errors import CausalPPError
from .report import plot_studies, write_report

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.figure

__all__ = ["Study"]

_SHOWN_REASONS = 3


@dataclass(frozen=True)
class Study:
    """The result of :func:`~causal_pp.convergence.study`: one row per (N, replicate) cell.

    Attributes
    ----------
    table
        A pandas DataFrame: ``n``, ``replicate``, ``truth``, posterior ``mean``/``sd``/interval
        ``lo``-``hi``, ``abs_error`` (posterior mean), ``plugin_abs_error`` (the paper's plug-in
        estimator), ``wasserstein`` (W1 between the posterior-predictive outcome and the true
        interventional distribution), ``covered`` (credible interval covers the truth),
        ``fit_seconds``; ``flagged`` (the cell failed a diagnostic), ``failed`` (its fit or
        estimate raised; no estimate), ``flags`` (why, ``"; "``-separated); the fit's scalar
        diagnostics as ``fit_<name>`` and the estimate's as ``est_<name>`` columns.
    target, identified, truth, prob
        What was estimated, its identifiability verdict, its true value, the interval mass.
    cells
        The full cell records by ``(n, replicate)``, diagnostics and warnings included.
    kind, true_bounds
        ``"model"`` (a fitted model's estimates) or ``"bounds"`` (the posterior of a refused
        query's sharp bounds, :mod:`.bounds_cells`: its table has ``lower``/``upper``, their
        errors against ``true_bounds``, ``width`` and the credible region ``lo``-``hi``;
        ``summary()`` reports the error of each end, coverage and width per N).

    Examples
    --------
    >>> t = pd.DataFrame({"n": [10, 100], "replicate": [0, 0], "abs_error": [0.3, 0.1],
    ...                   "flagged": [False, True], "failed": [False, False], "flags": ["", "fit: x"]})
    >>> s = Study(table=t, target="demo", identified=True, truth=0.0, prob=0.94)
    >>> s.flagged()[["n", "flags"]].to_dict("records")
    [{'n': 100, 'flags': 'fit: x'}]
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
    cells: Mapping[tuple[int, int], Mapping[str, Any]] = field(default_factory=dict, repr=False)
    kind: str = MODEL
    true_bounds: tuple[float, float] | None = None

    def truth_text(self) -> str:
        """The truth in words: its value, and for a bounds study the true sharp bounds.

        Examples
        --------
        >>> Study(table=pd.DataFrame(), target="t", identified=False, truth=0.25, prob=0.94, kind="bounds",
        ...       true_bounds=(0.1, 0.4)).truth_text()
        'truth = 0.25; true sharp bounds [0.1, 0.4] (width 0.3)'
        """
        text = f"truth = {self.truth:.4g}"
        if self.true_bounds is not None:
            lo, hi = self.true_bounds
            text += f"; true sharp bounds [{lo:.4g}, {hi:.4g}] (width {hi - lo:.4g})"
        return text

    def _col(self, name: str, default: Any) -> pd.Series:
        t = self.table
        return t[name] if name in t.columns else pd.Series(default, index=t.index)

    def flagged(self) -> pd.DataFrame:
        """The cells that failed a diagnostic (or whose fit failed), with the reasons."""
        mask = self._col("flagged", False).fillna(False).astype(bool)
        cols = [c for c in ("n", "replicate", "failed", "flags", "abs_error") if c in self.table.columns]
        return self.table.loc[mask, cols]

    def slope(self, column: str = "abs_error") -> tuple[float, float, float]:
        """Log-log OLS slope of ``column`` vs N over all cells with a value, with a 95% confidence interval.

        Returns ``(slope, lower, upper)``. An identified query's posterior-mean error should
        shrink like N^-1/2 (slope ≈ -0.5). Failed cells (no estimate) are left out.
        """
        from scipy import stats

        t = self.table[pd.to_numeric(self.table[column], errors="coerce").notna()]
        x = np.log(t["n"].to_numpy(dtype=float))
        y = np.log(np.maximum(t[column].to_numpy(dtype=float), 1e-12))
        if np.unique(x).size < 2:
            raise CausalPPError("a slope needs at least two sample sizes with estimates.")
        fit = stats.linregress(x, y)
        q = stats.t.ppf(0.975, df=max(len(x) - 2, 1))
        return float(fit.slope), float(fit.slope - q * fit.stderr), float(fit.slope + q * fit.stderr)

    def summary(self) -> pd.DataFrame:
        """Per N: error and its spread across replicates, coverage, W1, fit time, flagged and failed cells.

        ``flagged`` counts the cells of that N that failed a diagnostic (failed fits included),
        ``failed`` those without an estimate; the error columns average the cells with one.

        A bounds study (``kind="bounds"``) reports instead, per N: the mean absolute error of
        each end against the true sharp bounds with its standard error across replicates
        (``lower_abs_error``, ``lower_se``, ``upper_abs_error``, ``upper_se``), ``coverage`` (the
        credible region holds the true value), ``set_coverage`` (it holds the true sharp bounds),
        the mean posterior ``width`` against ``true_width``, seconds per cell, flagged and failed
        cells; ``attrs["slopes"]`` holds each end's log-log slope of error vs N (ideally -1/2).
        """
        by_kind = {MODEL: self._model_summary, BOUNDS: self._bounds_summary}
        return by_kind[self.kind]()

    def _model_summary(self) -> pd.DataFrame:
        t = self.table.assign(
            flagged=self._col("flagged", False).fillna(False).astype(bool),
            failed=self._col("failed", False).fillna(False).astype(bool),
        )
        num = {
            c: pd.to_numeric(t[c], errors="coerce")
            for c in ("abs_error", "plugin_abs_error", "sd", "wasserstein")
        }
        t = t.assign(**num, covered=pd.to_numeric(t["covered"], errors="coerce"))
        g = t.groupby("n")
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
                "flagged": g["flagged"].sum().astype(int),
                "failed": g["failed"].sum().astype(int),
            }
        )
        if t.loc[t["abs_error"].notna(), "n"].nunique() >= 2:
            s, lo, hi = self.slope()
            out.attrs["slope"] = (s, lo, hi)
        return out

    def _bounds_summary(self) -> pd.DataFrame:
        t = self.table.assign(
            flagged=self._col("flagged", False).fillna(False).astype(bool),
            failed=self._col("failed", False).fillna(False).astype(bool),
        )
        numeric = ("lower_abs_error", "upper_abs_error", "width", "true_width", "covered", "set_covered")
        t = t.assign(**{c: pd.to_numeric(self._col(c, np.nan), errors="coerce") for c in numeric})
        g = t.groupby("n")

        def se(col: str) -> pd.Series:
            return g[col].std(ddof=1) / np.sqrt(g[col].count())

        out = pd.DataFrame(
            {
                "replicates": g.size(),
                "lower_abs_error": g["lower_abs_error"].mean(),
                "lower_se": se("lower_abs_error"),
                "upper_abs_error": g["upper_abs_error"].mean(),
                "upper_se": se("upper_abs_error"),
                "coverage": g["covered"].mean(),
                "set_coverage": g["set_covered"].mean(),
                "width": g["width"].mean(),
                "true_width": g["true_width"].mean(),
                "seconds": g["fit_seconds"].mean() if "fit_seconds" in t.columns else np.nan,
                "flagged": g["flagged"].sum().astype(int),
                "failed": g["failed"].sum().astype(int),
            }
        )
        if t.loc[t["lower_abs_error"].notna(), "n"].nunique() >= 2:
            out.attrs["slopes"] = {end: self.slope(f"{end}_abs_error") for end in ("lower", "upper")}
        return out

    def _refuse_flagged(self, what: str) -> None:
        bad = self.flagged()
        if bad.empty:
            return
        per_n = ", ".join(f"{k} at N={n}" for n, k in bad.groupby("n").size().items())
        reasons = list(
            dict.fromkeys(r for f in bad.get("flags", pd.Series(dtype=str)) for r in str(f).split("; ") if r)
        )
        shown = "; ".join(reasons[:_SHOWN_REASONS]) + (" ..." if len(reasons) > _SHOWN_REASONS else "")
        raise AssertionError(
            f"{self.target}: {len(bad)} cell(s) failed a diagnostic ({per_n}): {shown}. {what} refuses to "
            "judge convergence on them; fix the fits (see study.flagged()) or pass allow_flagged=True."
        )

    def assert_converges(self, tol: float, *, column: str = "abs_error", allow_flagged: bool = False) -> None:
        """Raise AssertionError unless the error shrinks with N and ends below ``tol``.

        Checks that the upper end of the log-log slope's 95% CI is below 0 and that the mean
        ``column`` at the largest N is below ``tol`` (derive ``tol`` from the analytic
        posterior SD of the quantity, not by tuning). Refuses (AssertionError) while any cell
        failed a diagnostic, unless ``allow_flagged=True``; then failed cells are left out.
        """
        if not allow_flagged:
            self._refuse_flagged("assert_converges")
        s, lo, hi = self.slope(column)
        values = pd.to_numeric(self.table[column], errors="coerce")
        final = values[self.table["n"] == self.table["n"].max()].mean()
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
        values = pd.to_numeric(self.table[column], errors="coerce")
        final = values[self.table["n"] == self.table["n"].max()].mean()
        if not final >= bound:
            raise AssertionError(
                f"{self.target}: mean {column} at N={self.table['n'].max()} is {final:.4g}, below "
                f"the bound {bound:.4g} — a non-identified query should not converge to the truth."
            )

    def plot(self) -> matplotlib.figure.Figure:
        """Error vs N (log-log, replicates as points; flagged cells as red crosses) and predictive densities.

        The right panel shows the posterior-predictive outcome distribution under the
        intervention at the smallest and largest N against the true interventional
        distribution (as in the paper's Example 1/2 figures).
        """
        return plot_studies([self])

    def report(self, out: str | Path) -> list[Path]:
        """Write ``convergence.png`` and ``report.md`` into ``out``; returns their paths."""
        return write_report([self], Path(out))
