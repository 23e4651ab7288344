"""Executors of study grids: where the cells of a convergence study are computed.

========================  ====================================================  ===========
executor                  what                                                  module
========================  ====================================================  ===========
interface, table          :class:`Executor`, :data:`EXECUTORS`, registration    :mod:`.base`
``"serial"``              every cell in this process (default)                  :mod:`.serial`
``"process"``             a local process pool, one torch thread per worker     :mod:`.process`
``"ray"``                 Ray tasks, on a cluster or a local Ray (optional)     :mod:`.ray`
========================  ====================================================  ===========

Adding an executor: one module defining an :class:`Executor` subclass decorated with
:func:`register_executor`, imported here.

Examples
--------
>>> sorted(EXECUTORS)
['process', 'ray', 'serial']
"""

from __future__ import annotations

from .base import EXECUTORS, Executor, make_executor, register_executor
from .process import ProcessExecutor
from .ray import RayExecutor
from .serial import SerialExecutor

__all__ = [
    "EXECUTORS",
    "Executor",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "make_executor",
    "register_executor",
]
