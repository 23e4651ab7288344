"""The interface of a fitting method, and the table of methods :func:`~causal_pp.inference.fit` knows.

A method is a small frozen dataclass of options (validated on construction) with a
:meth:`FitMethod.run` that turns a :class:`FitProblem` -- the model conditioned on the data,
and which of its sites are global, per-unit latent or enumerated -- into draws of the global
parameters, draws of the per-unit latents, and diagnostics. Adding a method: one new module
defining a subclass decorated with :func:`register_method`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import ArgumentTypeError, InferenceError, InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    from ..program import ProgramStructure

__all__ = [
    "METHODS",
    "FitMethod",
    "FitProblem",
    "FitResult",
    "make_method",
    "register_method",
    "reshape_draws",
]


@dataclass(frozen=True)
class FitProblem:
    """What a fitting method is given.

    Attributes
    ----------
    target
        The model conditioned on the data (discrete latents configured for enumeration): a
        zero-argument Pyro callable.
    globals_, unit_latent, enumerated
        Global parameter sites; per-unit latent sample sites; the enumerated ones among them.
    structure
        The program's sites and shapes (:class:`~causal_pp.program.ProgramStructure`).
    seed, device, progress_bar
        As given to :func:`~causal_pp.inference.fit`.
    """

    target: Callable[[], Any]
    globals_: tuple[str, ...]
    unit_latent: tuple[str, ...]
    enumerated: tuple[str, ...]
    structure: ProgramStructure
    seed: int
    device: torch.device
    progress_bar: bool

    @property
    def max_plate_nesting(self) -> int:
        return self.structure.max_plate_nesting


@dataclass(frozen=True)
class FitResult:
    """Draws of the global parameters ``(draws, *shape)``, of the per-unit latents, and diagnostics."""

    draws: dict[str, torch.Tensor]
    unit_draws: dict[str, torch.Tensor]
    diagnostics: dict[str, Any]
    num_chains: int = 1


class FitMethod:
    """Base of the fitting methods: a frozen dataclass of options with a :meth:`run`.

    Examples
    --------
    >>> from causal_pp.inference import SVI
    >>> SVI(lr=0.01).lr
    0.01
    >>> sorted(METHODS)
    ['nuts', 'svi']
    """

    name: ClassVar[str] = ""

    def run(self, problem: FitProblem) -> FitResult:
        """Fit: draws of the global parameters and per-unit latents, and diagnostics."""
        raise NotImplementedError  # pragma: no cover

    def problems(self, diagnostics: Mapping[str, Any]) -> tuple[list[str], str]:
        """What in ``diagnostics`` makes the fit unreliable, and a hint how to fix it."""
        return [], ""


METHODS: dict[str, type[FitMethod]] = {}
"""Method name -> option class; :func:`~causal_pp.inference.fit`'s ``method="..."`` looks here."""


def register_method(cls: type[FitMethod]) -> type[FitMethod]:
    """Class decorator: make ``cls`` available as ``fit(..., method=cls.name)``."""
    if not cls.name:
        raise InvalidArgumentError(f"{cls.__name__} needs a class attribute `name` to be registered.")
    METHODS[cls.name] = cls
    return cls


def make_method(method: str | FitMethod, options: Mapping[str, Any]) -> FitMethod:
    """The method object for ``fit(method=..., **options)``: a name plus options, or an object.

    Examples
    --------
    >>> import causal_pp.inference  # registers the methods
    >>> make_method("svi", {"lr": 0.01})
    SVI(num_samples=500, num_steps=None, lr=0.01, lr_decay=0.1, num_particles=8, guide='auto', importance=True, importance_particles=16, tempering=False, restarts=5, restart_particles=2, restart_steps=500, restart_init='median', jit_compile=True, batched=True)
    """
    if isinstance(method, FitMethod):
        cls, base = type(method), method
    elif isinstance(method, str) and method in METHODS:
        cls, base = METHODS[method], None
    else:
        raise InvalidArgumentError(
            f"method must be one of {sorted(METHODS)} or a method object (e.g. causal_pp.inference.SVI(...)); "
            f"got {method!r}."
        )
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidArgumentError(
            f"{unknown} {'is not an option' if len(unknown) == 1 else 'are not options'} of method "
            f"{cls.name!r}; its options are {sorted(known)}."
        )
    try:
        return dataclasses.replace(base, **options) if base is not None else cls(**options)
    except TypeError as err:  # pragma: no cover - every field has a default
        raise ArgumentTypeError(f"bad options for method {cls.name!r}: {err}") from None


def reshape_draws(value: torch.Tensor, shape: tuple[int, ...], num: int, name: str) -> torch.Tensor:
    """Normalise (S, ...) / (S, 1, ...) draw shapes to (S, *shape).

    Examples
    --------
    >>> reshape_draws(torch.zeros(4, 1, 3), (3,), 4, "b").shape
    torch.Size([4, 3])
    """
    value = value.detach()
    if value.numel() != num * math.prod(shape):
        raise InferenceError(
            f"posterior draws of {name!r} have shape {tuple(value.shape)}, which does not match "
            f"{num} draws of shape {shape}."
        )
    return value.reshape((num, *shape))
