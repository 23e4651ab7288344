"""Convergence studies: does the posterior predictive approach the truth as data grows?

The theorem of Mohammad-Taheri et al. (2022): if a query is identified, sampling the mutilated
latent variable model under the posterior is a consistent estimator of it, even when the model's
parameters are not identifiable. A study checks this empirically: an identified query's error
shrinks with N (negative log-log slope); a non-identified one stalls at its confounding bias.

==========================  ==========================================================  ==============
concept                     what                                                        module
==========================  ==========================================================  ==============
:func:`study`, `studies`    the public entry points (`case_studies`: several cases)     :mod:`.study`
:class:`Study`              a study's table, summary (flagged cells per N), assertions  :mod:`.result`
grid runner                 settings per target, reuse, claims, executor, assembly      :mod:`.grid`
targets                     a case's query or a user's model, with its truth            :mod:`.targets`
fingerprints                the code and parameters behind a target, hashed             :mod:`.identity`
cells                       simulate, fit once, estimate every target; diagnostics      :mod:`.cells`
bounds cells                posterior of a refused query's bounds vs the true ones      :mod:`.bounds_cells`
executors                   serial, process pool, Ray; the executor table               :mod:`.executors`
results store               :class:`ResultStore`: cells keyed by their settings         :mod:`.store`
settings keys               :class:`Settings`, ``settings_key``, ``diff_settings``      :mod:`.keys`
file format, reader         records of ``cells.jsonl``; the incremental reader          :mod:`.records`, :mod:`.index`
locks, claims               ``flock``, per-cell claims so no cell is computed twice     :mod:`.locks`, :mod:`.claims`
merging                     shards of a study from several folders into one            :mod:`.merge`
report                      error-vs-N plot, predictive densities, ``report.md``        :mod:`.report`
==========================  ==========================================================  ==============

A case query of ``kind="bounds"`` (not identified, but bounded) is studied by the posterior of
its sharp bounds instead of a fit: each end's error against the true sharp bounds should fall
like 1/sqrt(N), and the credible region should hold the true value.
"""

from __future__ import annotations

from . import bounds_cells  # registers the "bounds" cell runner  # noqa: F401
from .cells import wasserstein1
from .executors import EXECUTORS, Executor, ProcessExecutor, RayExecutor, SerialExecutor, register_executor
from .merge import merge_results
from .report import plot_studies, write_report
from .result import Study
from .store import ResultStore, Settings
from .study import case_studies, studies, study

__all__ = [
    "EXECUTORS",
    "Executor",
    "ProcessExecutor",
    "RayExecutor",
    "ResultStore",
    "SerialExecutor",
    "Settings",
    "Study",
    "case_studies",
    "merge_results",
    "plot_studies",
    "register_executor",
    "studies",
    "study",
    "wasserstein1",
    "write_report",
]
