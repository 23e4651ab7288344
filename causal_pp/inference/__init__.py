"""Fitting a causal model to observational data.

===========================  ==============================================================  =========================
concept                      what                                                            module
===========================  ==============================================================  =========================
:func:`fit`                  check data and program, condition, run a method, diagnostics    :mod:`.fit`
:func:`validate_data`        data against the graph (columns, numbers, rows, finiteness)      :mod:`.data`
method interface             :class:`FitMethod`, :class:`FitProblem`, the method table        :mod:`.methods`
:class:`NUTS`                Pyro's NUTS: the reference                                      :mod:`.nuts`
:class:`SVI`                 SVI: Gaussian guide, starts, adaptive steps, Pyro's loop        :mod:`.svi`
:func:`fit_many`             many data sets of one size in one vectorised SVI program        :mod:`.batched`
                             (``fit``'s SVI: a batch of one)
batched optimisation         the rows' program, per-row ELBO, steps, stopping                :mod:`.batched_steps`
batched guide                one Gaussian per data set (row); the low-rank family            :mod:`.batched_guide`
structured batched guide     globals jointly, each unit's latents given them (default)       :mod:`.batched_structured`
per-row Adam                 ClippedAdam with a learning rate and a phase per row            :mod:`.row_adam`
guides                       Pyro autoguides and their Gaussian in closed form               :mod:`.guides`
importance correction        adaptive IS over the globals, resampling, tempering fallback    :mod:`.importance`
importance target            each unit's integral: closed form, or Laplace particles         :mod:`.importance_target`
===========================  ==============================================================  =========================

Adding a fitting method: one module defining a :class:`FitMethod` subclass decorated with
:func:`register_method`, imported here.
"""

from __future__ import annotations

from ..runtime import resolve_device
from .batched import fit_many
from .data import validate_data
from .fit import fit
from .methods import METHODS, FitMethod, FitProblem, FitResult, register_method
from .nuts import NUTS
from .svi import SVI

__all__ = [
    "METHODS",
    "NUTS",
    "SVI",
    "FitMethod",
    "FitProblem",
    "FitResult",
    "fit",
    "fit_many",
    "register_method",
    "resolve_device",
    "validate_data",
]
