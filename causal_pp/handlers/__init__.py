"""Effect handlers: the small Pyro messengers that rewrite and inspect causal programs.

==================================  ===========================================================  =====================
handler                             what it does                                                 module
==================================  ===========================================================  =====================
:func:`intervene`, :class:`SetValue`  the interventional program (ChiRho ``do``), values          :mod:`.intervene`
                                    broadcast to the site's shape
:class:`ReportInterventions`        traces report the value used downstream of a ``do``          :mod:`.intervene`
:class:`TrackDependencies`          which per-unit sites each per-unit site reads (provenance)   :mod:`.dependencies`
:class:`SharedNoise`                explicit exogenous noise shared between worlds, abduction    :mod:`.shared_noise`
:func:`twin_world`                  twin-world counterfactual programs (ChiRho)                  :mod:`.twin_world`
:class:`KeyedNoise`                 per-unit randomness keyed by (seed, site): common random     :mod:`.keyed_noise`
                                    numbers across arms (inverse CDF), antithetic units
==================================  ===========================================================  =====================

They are plain :class:`pyro.poutine.messenger.Messenger` subclasses: each works as a context
manager or, called on a function, as a decorator.
"""

from __future__ import annotations

from .dependencies import TrackDependencies
from .internals import UNITS
from .intervene import ReportInterventions, SetValue, intervene
from .keyed_noise import KeyedNoise
from .shared_noise import NOISE_PREFIX, SharedNoise
from .twin_world import WORLD, TwinWorldProgram, twin_world

__all__ = [
    "NOISE_PREFIX",
    "UNITS",
    "WORLD",
    "KeyedNoise",
    "ReportInterventions",
    "SetValue",
    "SharedNoise",
    "TrackDependencies",
    "TwinWorldProgram",
    "intervene",
    "twin_world",
]
