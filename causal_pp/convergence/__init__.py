"""Convergence studies: does the posterior predictive approach the truth as data grows?

The theorem of Mohammad-Taheri et al. (2022): if a query is identified, sampling the mutilated
latent variable model under the posterior is a consistent estimator of it, even when the model's
parameters are not identifiable. A study checks this empirically: an identified query's error
shrinks with N (negative log-log slope); a non-identified one stalls at its confounding bias.

==========================  ==========================================================  ============
concept                     what                                                        module
==========================  ==========================================================  ============
:func:`study`, :func:`studies`, :class:`Study`  the grid of sizes x replicates, its table    :mod:`.study`
targets                     a case's query or a user's model, with its truth            :mod:`.targets`
cells                       simulate, fit once, estimate every target; W1, coverage     :mod:`.cells`
report                      error-vs-N plot, predictive densities, ``report.md``        :mod:`.report`
==========================  ==========================================================  ============
"""

from __future__ import annotations

from .cells import wasserstein1
from .report import plot_studies, write_report
from .study import Study, studies, study

__all__ = ["Study", "plot_studies", "studies", "study", "wasserstein1", "write_report"]
