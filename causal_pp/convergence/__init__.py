"""Convergence studies: does the posterior predictive approach the truth as data grows?

The theorem of Mohammad-Taheri et al. (2022): if a query is identified, sampling the mutilated
latent variable model under the posterior is a consistent estimator of it, even when the model's
parameters are not identifiable. :func:`study` checks this empirically for one case and query:
for each sample size N and replicate it simulates N rows from the ground-truth SCM, fits the
model, estimates the query, and records the error against the known truth. An identified
query's error shrinks with N (negative log-log slope); a non-identified one stalls at its
confounding bias.

Results are appended to ``out/results.jsonl`` one cell at a time, so an interrupted study
resumes where it stopped and ends with the same table as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..counterfactual import ETT
from ..errors import CausalPPError
from ..queries import ATE, Interventional

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.figure

__all__ = ["Study", "plot_studies", "studies", "study", "wasserstein1", "write_report"]

_RESULTS = "results.jsonl"
_PREDICTIVE_KEEP = 400  # posterior-predictive draws kept per cell for density plots
_DRAW_KEYS = ("predictive", "truth_predictive")


def wasserstein1(a: Iterable[float], b: Iterable[float]) -> float:
    """Wasserstein-1 distance between two empirical 1-d distributions.

    Computed exactly as the integral of |F_a - F_b| over the merged support.

    Examples
    --------
    >>> round(wasserstein1([0.0, 1.0], [1.0, 2.0]), 6)
    1.0
    """
    a = np.sort(np.asarray(a, dtype=float).ravel())
    b = np.sort(np.asarray(b, dtype=float).ravel())
    if a.size == 0 or b.size == 0:
        raise CausalPPError("wasserstein1 needs two non-empty samples.")
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(a, grid[:-1], side="right") / a.size
    fb = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * np.diff(grid)))


def _cell_seed(seed: int, n: int, replicate: int) -> int:
    # Each cell's randomness depends only on (seed, N, replicate): resuming reproduces it.
    return int(np.random.SeedSequence([seed, n, replicate]).generate_state(1)[0] % (2**31 - 1))


@dataclass(frozen=True)
class _Target:
    """What a study estimates and against what truth."""

    name: str
    query: Interventional | ATE | ETT
    truth: float
    identified: bool
    simulate: Callable[..., Any]
    model: Any
    truth_samples: Callable[[int, int], np.ndarray] | None


def _resolve(
    case_or_model: Any,
    query: str | Interventional | ATE | ETT | None,
    simulate: Callable[..., Any] | None,
    truth: float | None,
    truth_samples: Callable[[int, int], np.ndarray] | None,
) -> _Target:
    queries = getattr(case_or_model, "queries", None)
    if queries is not None and hasattr(case_or_model, "simulate"):
        case = case_or_model
        if query is None:
            qname = next(iter(queries))
        elif isinstance(query, str):
            if query not in queries:
                raise CausalPPError(
                    f"case {case.name!r} has no query {query!r}; its queries are {list(queries)}."
                )
            qname = query
        else:
            matches = [k for k, v in queries.items() if v.query == query]
            if not matches:
                raise CausalPPError(
                    f"{query} is not one of case {case.name!r}'s queries ({list(queries)}); "
                    "pass a query name, or pass a model with simulate= and truth=."
                )
            qname = matches[0]
        cq = queries[qname]
        return _Target(
            name=f"{case.name}/{qname}",
            query=cq.query,
            truth=float(cq.truth),
            identified=bool(cq.identified),
            simulate=case.simulate,
            model=case.model,
            truth_samples=None
            if isinstance(cq.query, ETT)
            else lambda n, s, _c=case, _q=qname: np.asarray(_c.truth_samples(_q, n, seed=s)),
        )
    # A user's own CausalModel: they supply the simulator and the truth.
    from ..identification import identify

    if simulate is None or truth is None or not isinstance(query, (Interventional, ATE, ETT)):
        raise CausalPPError(
            "study() on your own model needs query= (an Interventional, ATE or ETT), simulate= "
            "(n, seed=...) -> data, and truth= (the true value of the query)."
        )
    graph = case_or_model.graph
    ident = identify(graph, query, strict=False)
    return _Target(
        name=getattr(case_or_model, "__name__", "model"),
        query=query,
        truth=float(truth),
        identified=ident.identified,
        simulate=simulate,
        model=case_or_model,
        truth_samples=truth_samples,
    )


def _outcome_label(query: Interventional | ATE | ETT) -> str:
    if isinstance(query, ETT):
        return str(query)
    if isinstance(query, ATE):
        return f"{query.outcome} under do({query.treatment}={query.treated:g})"
    return f"{', '.join(query.outcomes)} under do({', '.join(f'{k}={v:g}' for k, v in query.do)})"


def _predictive_outcome(estimate: Any, query: Interventional | ATE | ETT) -> np.ndarray | None:
    """Unit-level posterior-predictive draws of the outcome (treated arm for an ATE; none for an ETT)."""
    pred = getattr(estimate, "predictive", None)
    if not pred or isinstance(query, ETT):
        return None
    if isinstance(query, ATE):
        from ..posterior import _arm_key

        value = pred[_arm_key(query.outcome, query.treatment, query.treated)]
    else:
        value = pred[query.outcomes[0]]
    return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=float).ravel()


def _run_cell(
    targets: Sequence[_Target],
    n: int,
    replicate: int,
    *,
    seed: int,
    method: str,
    device: str,
    prob: float,
    num_units: int,
    allow_unidentified: bool,
    fit_kwargs: dict[str, Any],
) -> list[dict[str, Any]]:
    """Simulate one data set, fit the model once, and estimate every target's query on it."""
    import warnings

    cell_seed = _cell_seed(seed, n, replicate)
    data = targets[0].simulate(n, seed=cell_seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # Per-cell diagnostics are recorded in the table; a warning per cell would drown the bar.
        warnings.simplefilter("ignore")
        posterior = targets[0].model.fit(
            data, method=method, seed=cell_seed, device=device, progress_bar=False, **fit_kwargs
        )
    fit_time = time.perf_counter() - t0
    cells = []
    for target in targets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = posterior.estimate(
                target.query, num_units=num_units, seed=cell_seed, allow_unidentified=allow_unidentified
            )
        cells.append(
            _cell(target, est, n, replicate, seed=seed, cell_seed=cell_seed, method=method, prob=prob)
            | {"fit_seconds": fit_time, "shared_fit": len(targets) > 1}
        )
    return cells


def _cell(
    target: _Target,
    est: Any,
    n: int,
    replicate: int,
    *,
    seed: int,
    cell_seed: int,
    method: str,
    prob: float,
) -> dict[str, Any]:
    lo, hi = est.interval(prob)
    pred = _predictive_outcome(est, target.query)
    w1 = None
    if pred is not None and target.truth_samples is not None:
        truth_draws = target.truth_samples(max(20_000, pred.size), cell_seed + 1)
        w1 = wasserstein1(pred, truth_draws)
    rng = np.random.default_rng(cell_seed)
    keep = (
        rng.choice(pred, size=min(_PREDICTIVE_KEEP, pred.size), replace=False).round(5).tolist()
        if pred is not None
        else []
    )
    keep_truth = (
        rng.choice(truth_draws, size=min(_PREDICTIVE_KEEP, truth_draws.size), replace=False).round(5).tolist()
        if w1 is not None
        else []
    )
    plugin = getattr(est, "plugin", None)
    return {
        "target": target.name,
        "method": method,
        "seed": seed,
        "n": n,
        "replicate": replicate,
        "cell_seed": cell_seed,
        "truth": target.truth,
        "identified": target.identified,
        "mean": float(est.mean),
        "sd": float(est.std),
        "lo": float(lo),
        "hi": float(hi),
        "abs_error": abs(float(est.mean) - target.truth),
        "plugin": None if plugin is None else float(plugin),
        "plugin_abs_error": None if plugin is None else abs(float(plugin) - target.truth),
        "wasserstein": w1,
        "covered": bool(lo <= target.truth <= hi),
        "predictive": keep,
        "truth_predictive": keep_truth,
    }


def _read_cells(path: Path) -> list[dict[str, Any]]:
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
    query: str | Interventional | ATE | ETT | None = None,
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
    target = _resolve(case_or_model, query, simulate, truth, truth_samples)
    return _run_grid(
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
    targets = [_resolve(case, q, None, None, None) for q in names]
    grids = _run_grid(
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


def _run_grid(
    targets: Sequence[_Target],
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
            from ..identification import identify

            identify(target.model.graph, target.query)  # raises NotIdentifiableError with the reason
    fit_kwargs = dict(fit_kwargs or {})

    path = None
    done: dict[str, dict[tuple[int, int], dict[str, Any]]] = {t.name: {} for t in targets}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / _RESULTS
        for cell in _read_cells(path):
            if cell.get("method") == method and cell.get("seed") == seed and cell.get("target") in done:
                done[cell["target"]][(cell["n"], cell["replicate"])] = cell

    grid = [(n, r) for n in sizes for r in range(replicates)]
    todo = [c for c in grid if any(c not in done[t.name] for t in targets)]
    desc = targets[0].name if len(targets) == 1 else targets[0].name.split("/")[0]
    bar = tqdm(total=len(grid), initial=len(grid) - len(todo), desc=desc, disable=not progress)
    try:
        for n, r in todo:
            missing = [t for t in targets if (n, r) not in done[t.name]]
            cells = _run_cell(
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
        table = pd.DataFrame([{k: v for k, v in cells[c].items() if k not in _DRAW_KEYS} for c in grid])
        result[target.name] = Study(
            table=table,
            target=target.name,
            identified=target.identified,
            truth=target.truth,
            prob=prob,
            predictive={c: cells[c]["predictive"] for c in grid},
            truth_predictive=[v for c in grid for v in cells[c].get("truth_predictive", [])],
            outcome_label=_outcome_label(target.query),
            meta=dict(meta),
        )
    return result


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
    for k, s in enumerate(studies):
        color = f"C{k}"
        t = s.table
        label = f"{s.target} ({'identified' if s.identified else 'NOT identified'})"
        ax.scatter(t["n"], t["abs_error"], color=color, alpha=0.35, s=14)
        m = t.groupby("n")["abs_error"].mean()
        ax.plot(m.index, m.values, "-o", color=color, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes_all = sorted({int(n) for s in studies for n in s.table["n"]})
    ax.set_xticks(sizes_all, [str(n) for n in sizes_all])
    ax.minorticks_off()
    ax.set_xlabel("sample size N")
    ax.set_ylabel("|posterior mean − truth|")
    ax.set_title("error of the causal estimate vs N")
    ax.legend(fontsize=8)
    for ax, s in zip(axes[1:panels], studies, strict=True):
        sizes = sorted(s.table["n"].unique())
        if not any(s.predictive.values()):
            _interval_panel(ax, s)
            continue
        bins = _bins([v for vals in s.predictive.values() for v in vals], s.truth_predictive)
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


def _bins(predictive: Sequence[float], truth: Sequence[float]) -> np.ndarray:
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
    sizes = sorted(t["n"].unique())
    pos = {n: i for i, n in enumerate(sizes)}
    reps = max(1, int(t["replicate"].max()) + 1)
    x = np.array(
        [pos[n] + 0.7 * ((r + 0.5) / reps - 0.5) for n, r in zip(t["n"], t["replicate"], strict=True)]
    )
    ax.vlines(x, t["lo"], t["hi"], color="C0", linewidth=1.2, label=f"{int(s.prob * 100)}% credible interval")
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
        summ = s.summary()
        parts += [
            f"## {s.target} — {'identified' if s.identified else 'NOT identified (negative control)'}",
            "",
        ]
        parts += [f"truth = {s.truth:.6g}; {int(s.prob * 100)}% credible intervals", ""]
        parts += [_md_table(summ), ""]
        if "slope" in summ.attrs:
            sl, lo, hi = summ.attrs["slope"]
            parts += [f"log-log slope of |error| vs N: {sl:.3f} (95% CI {lo:.3f} .. {hi:.3f})", ""]
        parts += [
            f"method {s.meta.get('method')}, seed {s.meta.get('seed')}, device {s.meta.get('device')}",
            "",
        ]
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
