"""Tables and plots of convergence studies: error vs N, predictive densities, the report file.

A bounds study (``Study.kind == "bounds"``) is drawn by its own entries of the tables here: the
error of each end against the true sharp bounds vs N (with a 1/sqrt(N) reference line), and
its credible regions vs N against the true bounds and the true value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..cases.case import BOUNDS, MODEL

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.figure

    from .study import Study

__all__ = ["flagged_mask", "plot_studies", "slope_lines", "write_report"]


def plot_studies(studies: Sequence[Study]) -> matplotlib.figure.Figure:
    """Compare studies: error vs N (left) and predictive densities at smallest/largest N (right)."""
    import matplotlib.pyplot as plt

    # At most three panels a row, so a comparison of many studies stays legible.
    panels = 1 + len(studies)
    ncols = min(3, panels)
    nrows = -(-panels // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.2 * nrows), squeeze=False)
    axes = list(grid.flat)
    for spare in axes[panels:]:
        spare.set_visible(False)
    ax = axes[0]
    any_flagged = False
    for k, s in enumerate(studies):
        any_flagged = _ERRORS[s.kind](ax, s, f"C{k}") or any_flagged
    has_bounds = any(s.kind == BOUNDS for s in studies)
    if has_bounds:
        _sqrt_reference(ax, [s for s in studies if s.kind == BOUNDS])
    if any_flagged:
        ax.scatter([], [], color="red", marker="x", label="flagged cell (failed a diagnostic)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes_all = sorted({int(n) for s in studies for n in s.table["n"]})
    ax.set_xticks(sizes_all, [str(n) for n in sizes_all])
    ax.minorticks_off()
    ax.set_xlabel("sample size N")
    ax.set_ylabel(
        "|posterior mean − truth|" + ("\n(bounds: |each end − true sharp bound|)" if has_bounds else "")
    )
    ax.set_title("error of the causal estimate vs N")
    ax.legend(fontsize=8)
    for ax, s in zip(axes[1:panels], studies, strict=True):
        sizes = sorted(s.table["n"].unique())
        panel = _PANELS.get(s.kind)
        if panel is not None:
            panel(ax, s)
            continue
        if not any(s.predictive.values()):
            _interval_panel(ax, s)
            continue
        bins = histogram_bins([v for vals in s.predictive.values() for v in vals], s.truth_predictive)
        if len(bins) <= 11 and np.all(bins % 1 == 0.5):  # a few count values: label each one
            ax.set_xticks(bins[:-1] + 0.5)
        if s.truth_predictive:
            ax.hist(
                s.truth_predictive,
                bins=bins,
                density=True,
                color="0.85",
                label="true interventional distribution",
            )
        for n, style in ((sizes[0], ":"), (sizes[-1], "-")):
            draws = [v for (nn, _), vals in s.predictive.items() if nn == n for v in vals]
            if draws:
                ax.hist(
                    draws,
                    bins=bins,
                    density=True,
                    histtype="step",
                    linestyle=style,
                    linewidth=1.5,
                    label=f"posterior predictive, N={n}",
                )
        verdict = "identified" if s.identified else "NOT identified"
        ax.set_title(f"{s.target} ({verdict})\n{s.outcome_label}", fontsize=10)
        ax.set_xlabel(s.outcome_label)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _model_errors(ax: Any, s: Study, color: str) -> bool:
    """A fitted study's |posterior mean - truth| per cell and its mean per N; whether any cell is flagged."""
    t = s.table
    flagged = flagged_mask(t)
    label = f"{s.target} ({'identified' if s.identified else 'NOT identified'})"
    ax.scatter(t.loc[~flagged, "n"], t.loc[~flagged, "abs_error"], color=color, alpha=0.35, s=14)
    # A cell that failed a diagnostic is drawn, but as a red cross: it is not evidence.
    ax.scatter(t.loc[flagged, "n"], t.loc[flagged, "abs_error"], color="red", marker="x", s=28, zorder=3)
    m = t.groupby("n")["abs_error"].mean()
    ax.plot(m.index, m.values, "-o", color=color, label=label)
    return bool(flagged.any())


def _bounds_errors(ax: Any, s: Study, color: str) -> bool:
    """A bounds study's error of each end per cell and its mean per N (lower solid, upper dashed)."""
    t = s.table
    flagged = flagged_mask(t)
    for end, style, marker in (("lower", "-", "v"), ("upper", "--", "^")):
        err = pd.to_numeric(t[f"{end}_abs_error"], errors="coerce")
        ax.scatter(t.loc[~flagged, "n"], err[~flagged], color=color, alpha=0.25, s=12, marker=marker)
        ax.scatter(t.loc[flagged, "n"], err[flagged], color="red", marker="x", s=28, zorder=3)
        m = err.groupby(t["n"]).mean()
        ax.plot(
            m.index,
            m.values,
            style,
            marker=marker,
            color=color,
            label=f"{s.target}: {end} end (sharp bounds)",
        )
    return bool(flagged.any())


def _sqrt_reference(ax: Any, studies: Sequence[Study]) -> None:
    """A c / sqrt(N) line through the mean error of the bounds studies' ends at the smallest N."""
    sizes = np.array(sorted({int(n) for s in studies for n in s.table["n"]}), dtype=float)
    first = [
        pd.to_numeric(s.table.loc[s.table["n"] == sizes[0], f"{end}_abs_error"], errors="coerce").mean()
        for s in studies
        for end in ("lower", "upper")
    ]
    level = np.nanmean(first) if np.isfinite(first).any() else np.nan
    if sizes.size >= 2 and np.isfinite(level) and level > 0:
        ax.plot(sizes, level * np.sqrt(sizes[0] / sizes), ":", color="0.4", label="∝ 1/√N (reference)")


def _cell_positions(t: pd.DataFrame) -> tuple[np.ndarray, list[Any]]:
    """x positions of a table's cells: one slot per N, replicates side by side; and the sizes."""
    sizes = sorted(t["n"].unique())
    pos = {n: i for i, n in enumerate(sizes)}
    reps = max(1, int(t["replicate"].max()) + 1)
    x = np.array(
        [pos[n] + 0.7 * ((r + 0.5) / reps - 0.5) for n, r in zip(t["n"], t["replicate"], strict=True)]
    )
    return x, sizes


def _bounds_panel(ax: Any, s: Study) -> None:
    """A bounds study's credible region and posterior-mean ends per cell vs N, against the truths."""
    t = s.table.sort_values(["n", "replicate"])
    x, sizes = _cell_positions(t)
    colors = np.where(flagged_mask(t).to_numpy(), "red", "C0")
    reps = max(1, int(t["replicate"].max()) + 1)  # many replicates: thinner, lighter lines
    ax.vlines(
        x, t["lo"], t["hi"], colors=colors, linewidth=max(0.3, min(1.2, 24 / reps)), alpha=0.6,
        label=f"{int(s.prob * 100)}% credible region",
    )  # fmt: skip
    ax.plot(x, t["lower"], "v", color="C1", markersize=4, zorder=3, label="posterior mean of the lower end")
    ax.plot(x, t["upper"], "^", color="C2", markersize=4, zorder=3, label="posterior mean of the upper end")
    if s.true_bounds is not None:
        lo, hi = s.true_bounds
        ax.axhline(
            lo, color="k", linestyle="--", linewidth=1, label=f"true sharp bounds [{lo:.3g}, {hi:.3g}]"
        )
        ax.axhline(hi, color="k", linestyle="--", linewidth=1)
    ax.axhline(s.truth, color="C3", linewidth=1, label=f"true value = {s.truth:.4g}")
    ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set_xlabel("sample size N (replicates side by side)")
    ax.set_ylabel("value of the query")
    ax.set_title(f"{s.target} (NOT identified: sharp bounds)\nposterior of the bounds vs N", fontsize=10)
    ax.legend(fontsize=8)


#: The error-vs-N series of a study (left panel), by its kind.
_ERRORS: dict[str, Callable[[Any, Study, str], bool]] = {MODEL: _model_errors, BOUNDS: _bounds_errors}
#: A study's own panel where its kind has one (else predictive densities or intervals).
_PANELS: dict[str, Callable[[Any, Study], None]] = {BOUNDS: _bounds_panel}


def flagged_mask(table: pd.DataFrame) -> pd.Series:
    """Which rows of a study's table failed a diagnostic (all False for a table without the column).

    Examples
    --------
    >>> flagged_mask(pd.DataFrame({"flagged": [True, None, False]})).tolist()
    [True, False, False]
    """
    if "flagged" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["flagged"].fillna(False).astype(bool)


def histogram_bins(predictive: Sequence[float], truth: Sequence[float]) -> np.ndarray:
    """Histogram edges shared by the truth and the predictive draws.

    A count-valued truth (e.g. IGF's molecule counts) gets one bin per integer: bins finer than
    its lattice would leave every other bar of the truth empty.
    """
    values = np.asarray([*predictive, *truth], dtype=float)
    t = np.asarray(truth, dtype=float)
    if t.size and np.all(t == np.round(t)) and values.max() - values.min() <= 200:
        return np.arange(np.floor(values.min()) - 0.5, np.ceil(values.max()) + 1.0)
    return np.histogram_bin_edges(values, bins=40)


def _interval_panel(ax: Any, s: Study) -> None:
    """Credible interval and posterior mean of every cell vs N, against the truth.

    For a study without unit-level predictive draws to compare (an ETT: a contrast of two
    counterfactual worlds, constant per unit in a linear model), the posterior of the
    estimand itself is what shrinks onto the truth.
    """
    t = s.table.sort_values(["n", "replicate"])
    x, sizes = _cell_positions(t)
    colors = np.where(flagged_mask(t).to_numpy(), "red", "C0")
    ax.vlines(
        x, t["lo"], t["hi"], colors=colors, linewidth=1.2, label=f"{int(s.prob * 100)}% credible interval"
    )
    ax.plot(x, t["mean"], "o", color="C0", markersize=3, label="posterior mean")
    ax.axhline(s.truth, color="k", linestyle="--", linewidth=1, label=f"truth = {s.truth:.4g}")
    ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set_xlabel("sample size N (replicates side by side)")
    ax.set_ylabel(s.outcome_label)
    verdict = "identified" if s.identified else "NOT identified"
    ax.set_title(f"{s.target} ({verdict})\nposterior vs N", fontsize=10)
    ax.legend(fontsize=8)


def _md_table(df: pd.DataFrame) -> str:
    cols = [df.index.name or "", *df.columns]
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for idx, row in df.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


_REPORTED_FLAGS = 20


def _flagged_section(s: Study) -> list[str]:
    """The cells that failed a diagnostic, with the reasons (the plot marks them with red crosses)."""
    t = s.table
    mask = flagged_mask(t)
    if not mask.any():
        return ["every cell passed its fit and estimate diagnostics", ""]
    lines = [f"**{int(mask.sum())} flagged cell(s)** (failed a diagnostic; red crosses in the plot):", ""]
    for _, row in t.loc[mask].head(_REPORTED_FLAGS).iterrows():
        lines.append(f"- N={row['n']}, replicate {row['replicate']}: {row.get('flags', '')}")
    if mask.sum() > _REPORTED_FLAGS:
        lines.append(f"- ... and {int(mask.sum()) - _REPORTED_FLAGS} more (see the study's table)")
    return [*lines, ""]


def _key(s: Study) -> str:
    return str((s.meta.get("settings_keys") or {}).get(s.target, ""))[:16]


def _model_report(s: Study) -> list[str]:
    """A fitted study's section of ``report.md``."""
    summ = s.summary()
    parts = [f"## {s.target} — {'identified' if s.identified else 'NOT identified (negative control)'}", ""]
    parts += [f"truth = {s.truth:.6g}; {int(s.prob * 100)}% credible intervals", ""]
    parts += [_md_table(summ), ""]
    parts += [line for line in slope_lines(summ) for line in (line, "")]
    return [
        *parts,
        *_flagged_section(s),
        f"method {s.meta.get('method')}, seed {s.meta.get('seed')}, device {s.meta.get('device')}, "
        f"fit options {s.meta.get('fit_kwargs') or '{}'}, executor {s.meta.get('executor', 'serial')}; "
        f"settings key `{_key(s)}`",
        "",
    ]


def slope_lines(summary: pd.DataFrame) -> list[str]:
    """The log-log slopes of a summary's ``attrs`` in words (a bounds summary: one per end).

    Examples
    --------
    >>> summ = pd.DataFrame()
    >>> summ.attrs["slopes"] = {"lower": (-0.5, -0.6, -0.4)}
    >>> slope_lines(summ)
    ['log-log slope of |error| of the lower end vs N: -0.500 (95% CI -0.600 .. -0.400)']
    """
    lines = []
    if "slope" in summary.attrs:
        sl, lo, hi = summary.attrs["slope"]
        lines.append(f"log-log slope of |error| vs N: {sl:.3f} (95% CI {lo:.3f} .. {hi:.3f})")
    for end, (sl, lo, hi) in summary.attrs.get("slopes", {}).items():
        lines.append(
            f"log-log slope of |error| of the {end} end vs N: {sl:.3f} (95% CI {lo:.3f} .. {hi:.3f})"
        )
    return lines


def _bounds_report(s: Study) -> list[str]:
    """A bounds study's section of ``report.md``."""
    summ = s.summary()
    options = s.meta.get("bounds") or {}
    parts = [f"## {s.target} — NOT identified: posterior of the sharp bounds", ""]
    parts += [
        f"{s.truth_text()}. `coverage`: share of cells whose {int(s.prob * 100)}% credible region for "
        "the identified interval holds the true value; `set_coverage`: holds the whole true interval. "
        "Errors: |posterior mean of each end − true sharp bound|, ± its standard error (`*_se`).",
        "",
    ]
    parts += [_md_table(summ), ""]
    parts += [line for line in slope_lines(summ) for line in (line, "")]
    return [
        *parts,
        *_flagged_section(s),
        f"causal_pp.bounds: {options.get('num_samples')} posterior draws per cell, Dirichlet prior "
        f"{options.get('prior')} per cell of the observed distribution; seed {s.meta.get('seed')}, "
        f"executor {s.meta.get('executor', 'serial')}; no batching (bounds cells fit no model); "
        f"settings key `{_key(s)}`",
        "",
    ]


#: A study's section of ``report.md``, by its kind.
_REPORTS: dict[str, Callable[[Study], list[str]]] = {MODEL: _model_report, BOUNDS: _bounds_report}


def write_report(studies: Sequence[Study], out: str | Path) -> list[Path]:
    """Write ``convergence.png`` (all studies side by side) and ``report.md`` into ``out``."""
    out = Path(out)
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig = plot_studies(studies)
    png = out / "convergence.png"
    tmp = out / ".convergence.png.tmp"
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    os.replace(tmp, png)
    parts = ["# causal_pp convergence report", ""]
    for s in studies:
        parts += _REPORTS[s.kind](s)
    if studies:
        parts += [
            f"command: `{studies[0].meta.get('command')}`",
            f"machine: {studies[0].meta.get('machine')}",
            "",
        ]
    md = out / "report.md"
    tmp_md = out / ".report.md.tmp"
    tmp_md.write_text("\n".join(parts))
    os.replace(tmp_md, md)
    return [png, md]
