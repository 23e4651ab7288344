"""Where and how computations run: devices, seeds, threads, and JIT hygiene (and plates fit for it).

A leaf module: fitting (:mod:`causal_pp.inference`) and estimation (:mod:`causal_pp.estimation`)
both run their torch code inside these context managers.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pyro
import torch

from .errors import DeviceError

__all__ = [
    "SMALL_PROBLEM_UNITS",
    "child_seeds",
    "ignore_jit_warnings",
    "num_threads",
    "on_device",
    "plate",
    "released_jit_traces",
    "resolve_device",
    "seeded",
    "trace",
]


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; raises DeviceError if it is not available.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:  # ValueError: an int beyond a long (10**30)
        raise DeviceError(f"{device!r} is not a torch device ('cpu' or 'cuda'): {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "device='cuda' was requested but CUDA is not available (torch "
                f"{torch.__version__}, built with CUDA {torch.version.cuda}); use device='cpu'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{dev} does not exist; {torch.cuda.device_count()} CUDA device(s) visible.")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceError("device='mps' was requested but MPS is not available; use device='cpu'.")
    elif dev.type != "cpu":
        raise DeviceError(f"device {dev} is not supported; use 'cpu' or 'cuda'.")
    return dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's random stream for the block; the caller's stream is restored after it."""
    devices = [device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def on_device(device: torch.device) -> Iterator[None]:
    """Make ``device`` the default for tensors created in the block (model constants too)."""
    if device.type == "cpu":
        yield
        return
    with torch.device(device):
        yield


@contextlib.contextmanager
def released_jit_traces() -> Iterator[None]:
    """Free the TorchScript functions that JIT compilation made in the block, once unused.

    ``torch.jit.trace`` registers every traced function in one global compilation unit that
    is never emptied (pytorch/pytorch#35600, #43119), and a traced ELBO or NUTS potential
    keeps its graph and captured tensors there for the life of the process: ~50 MB per fit of
    a case-library model, so a convergence study of a few hundred fits in one process grew
    past 10 GB and slowed to swapping. The unit can only be emptied as a whole, and emptying
    it while anything still holds one of its functions would leave that function dangling.
    So it is emptied on exit only when it was empty on entry (every function in it is then
    this block's) and nothing holds one of them any more; otherwise (a user's own TorchScript
    functions, or a JIT-compiled ELBO kept past the fit) nothing is released, as before.

    Whether anything holds them: a function made by :func:`trace` is held while its Python
    object lives (weakly referenced). Where every function in the unit is one of those, that
    is all there is to know; otherwise (Pyro's JIT ELBO or NUTS made some) a garbage
    collection and a search of every live object for a Pyro object that holds a compiled
    function (~0.3 s, a tenth of a small fit). Not for use while another thread is
    JIT-compiling.
    """
    unit = torch.jit._state._python_cu
    ours_only = not unit.get_functions()
    _TRACED.append([])
    try:
        yield
    finally:
        traced = _TRACED.pop()
        made = unit.get_functions()
        if ours_only and made and _unused(len(made), traced):
            unit.drop_all_functions()
        elif _TRACED:  # the enclosing block answers for what this one did not free
            _TRACED[-1].extend(traced)


def _unused(made: int, traced: list[weakref.ReferenceType[Any]]) -> bool:
    """Whether nothing holds any of the ``made`` functions of a block whose :func:`trace` calls
    made ``traced``."""
    if any(ref() is not None for ref in traced):
        gc.collect()  # one that is only in a reference cycle is garbage
        if any(ref() is not None for ref in traced):
            return False  # e.g. a traced function the caller kept
    if made == len(traced):
        return True  # every function is one of ours, and all of them are gone
    gc.collect()  # others (Pyro's JIT ELBO or NUTS): held by a live Pyro object?
    return not _compiled_pyro_functions_alive()


_TRACED: list[list[weakref.ReferenceType[Any]]] = []
"""Per open :func:`released_jit_traces` block (innermost last), the functions :func:`trace` made."""


def trace(fn: Callable[..., Any], example: tuple[torch.Tensor, ...]) -> Any:
    """``torch.jit.trace(fn, example)`` (unchecked, its warnings silenced), made known to the
    enclosing :func:`released_jit_traces` block so that the block can free it without a search.

    Examples
    --------
    >>> with released_jit_traces():
    ...     y = trace(lambda x: 2 * x, (torch.ones(2),))(torch.tensor([1.0, 3.0]))
    >>> y.tolist()
    [2.0, 6.0]
    """
    with warnings.catch_warnings():
        ignore_jit_warnings()
        traced = torch.jit.trace(fn, example, check_trace=False)
    if _TRACED:
        _TRACED[-1].append(weakref.ref(traced))
    return traced


def ignore_jit_warnings() -> None:
    """Silence TorchScript tracing's warnings, inside a ``warnings.catch_warnings()`` block: a
    fit's JIT-compiled ELBO or NUTS potential is traced from Pyro code that reads tensors as Python
    numbers (its shapes, its checks), which is right for the fixed shapes it is traced at, and
    torch 2.13 warns that ``torch.jit.trace`` itself is deprecated.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     ignore_jit_warnings()
    ...     warnings.warn("traced", torch.jit.TracerWarning)
    >>> caught
    []
    """
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message="`torch.jit.trace` is deprecated")


def _compiled_pyro_functions_alive() -> bool:
    """Whether a Pyro object that holds a TorchScript function is still reachable."""
    from pyro.infer.mcmc.util import _PEMaker
    from pyro.ops.jit import CompiledFunction

    # type(o), not isinstance(o, ...): isinstance falls back to o.__class__, which some torch
    # objects (torch.distributed.reduce_op) answer with a FutureWarning on every fit
    return any(
        (issubclass(type(o), CompiledFunction) and o.compiled)
        or (issubclass(type(o), _PEMaker) and getattr(o, "_compiled_fn", None) is not None)
        for o in gc.get_objects()
    )


@contextlib.contextmanager
def num_threads(k: int | None) -> Iterator[None]:
    """Run the block with ``k`` torch intra-op threads (None: leave the setting alone)."""
    if k is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(k))
    try:
        yield
    finally:
        torch.set_num_threads(old)


SMALL_PROBLEM_UNITS = 20_000
"""Below this many units, ``fit`` runs single-threaded by default (see ``threads``)."""


def child_seeds(seed: int, k: int) -> list[int]:
    g = torch.Generator().manual_seed(int(seed))
    return [int(s) for s in torch.randint(0, 2**62, (k,), generator=g, device="cpu")]


def plate(name: str, size: int, dim: int | None = None) -> pyro.plate:
    """``pyro.plate(name, size, dim=dim)``, whose sites keep a scale of 1.0 under JIT tracing.

    A plate without ``subsample_size`` takes its size from its index tensor, which is a tensor
    while :func:`torch.jit.trace` runs: every site inside then gets a tensor scale (of 1), and a
    traced ELBO multiplies every value of every log density by it, forward and backward (a tenth
    of a batched step's arithmetic on the front-door model). With ``subsample_size=size`` (no
    subsampling either way) the scale stays the number 1.0, which Pyro skips.

    Examples
    --------
    >>> import pyro.distributions as dist
    >>> from pyro import poutine
    >>> def model():
    ...     with plate("units", 3, dim=-1):
    ...         pyro.sample("y", dist.Normal(0.0, 1.0))
    >>> poutine.trace(model).get_trace().nodes["y"]["scale"]
    1.0
    """
    return pyro.plate(name, size, subsample_size=size, dim=dim)
