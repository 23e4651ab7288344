"""Settings and their key: everything that changes a convergence cell, hashed into one name.

:class:`Settings` holds what a cell's numbers depend on (case or model and its code's
fingerprint, query, method, fit and estimate settings, device, master seed, causal_pp version);
:func:`settings_key` hashes their canonical JSON (sorted keys, floats as their shortest repr,
non-finite floats tagged) into the key a results store files cells under. :func:`describe` and
:func:`diff_settings` say in words what a key space was computed under and how two differ.

Examples
--------
>>> a = {"fit_kwargs": {"num_steps": 40}, "prob": 0.9, "causal_pp_version": "0"}
>>> settings_key(a) == settings_key({**a, "fit_kwargs": {"num_steps": 4000}})
False
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import version as library_version
from ..errors import InvalidArgumentError

__all__ = [
    "FLOAT_TAG",
    "UNSET",
    "Settings",
    "as_key",
    "canonical",
    "canonical_json",
    "describe",
    "diff_settings",
    "fingerprint",
    "format_value",
    "setting_text",
    "settings_dict",
    "settings_key",
]

# Prefix of the hashed text: a change of canonicalisation must change every key, never collide.
_KEY_SALT = b"causal_pp.store.settings/1\n"
#: How a non-finite float is tagged in canonical data (JSON has no NaN or infinity).
FLOAT_TAG = "__float__"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def canonical(value: Any, where: str) -> Any:
    """``value`` as plain JSON data whose serialisation is unique; refuses what has none.

    ``where`` names the value in the error message.

    Examples
    --------
    >>> canonical({"b": (1, 2.0), "a": float("nan")}, "fit_kwargs")
    {'a': {'__float__': 'nan'}, 'b': [1, 2.0]}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):  # int, numpy integers
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        # JSON writes a finite float as its repr (shortest round-trip); NaN/inf have no JSON form.
        return f if math.isfinite(f) else {FLOAT_TAG: repr(f)}
    if isinstance(value, np.ndarray):
        return canonical(value.tolist(), where)
    if isinstance(value, Mapping):
        out = {}
        for k in value:
            if not isinstance(k, str):
                # {1: x} and {"1": x} would serialise alike: refuse rather than collide.
                raise InvalidArgumentError(
                    f"{where} has the key {k!r} ({type(k).__name__}); settings keys must be strings."
                )
            out[k] = canonical(value[k], f"{where}[{k!r}]")
        return {k: out[k] for k in sorted(out)}
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [canonical(v, f"{where}{{...}}") for v in value]
        return sorted(items, key=canonical_json)
    raise InvalidArgumentError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which cannot be part of a "
        "results key (its value has no stable text form). Pass plain data instead (str, int, float, "
        "bool, None, lists and dicts of them), e.g. an optimiser's name and learning rate rather than "
        "the optimiser object."
    )


def canonical_json(value: Any) -> str:
    """The one JSON text of canonical data (sorted keys, no spaces, ASCII).

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [0.5]})
    '{"a":[0.5],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _version() -> str:
    """The code a cell's numbers come from: the version and its results revision (``0.2.0+r10``)."""
    # read at call time: a test (or a plugin) that bumps the revision re-keys what follows
    return f"{library_version.__version__}+r{library_version.RESULTS_REVISION}"


def _no_address(text: str, what: str) -> str:
    if _ADDRESS.search(text):
        raise InvalidArgumentError(
            f"{what} {text!r} contains a memory address, which changes every run, so no result would "
            "ever be reused; give the object a repr of its value, or pass a descriptive string."
        )
    return text


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything that changes a cell's numbers; its :attr:`key` names the cell's key space.

    Parameters
    ----------
    case
        The case or model name, e.g. ``"frontdoor/ate"`` (a case and query) or a model's name.
    fingerprint
        A fingerprint of the case's or model's code and parameters, supplied by the caller
        (:func:`fingerprint` builds one): a change of the simulator or the model must change it.
    query
        The query's repr (any other object is converted with ``repr``).
    method, seed
        The fit method and the study's master seed.
    fit_kwargs
        Every keyword passed to the fit (nested dicts, lists, tuples, numbers; tuples and lists
        are the same value, dict order is irrelevant, ``40`` and ``40.0`` differ).
    num_units, prob
        The estimate's settings: simulated units per draw and the credible-interval mass.
    device
        The torch device the cell runs on.
    version
        The code the cell's numbers come from; ``None``: causal_pp's version and its results
        revision (``causal_pp.version.RESULTS_REVISION``), e.g. ``"0.2.0+r10"``.
    extra
        Anything else that changes a cell (e.g. a truth-sampling setting), as plain data.

    Attributes
    ----------
    key
        The sha256 hex digest of the canonical JSON of :meth:`to_dict` (sorted keys, floats as
        their repr, non-finite floats tagged).

    Raises
    ------
    InvalidArgumentError
        A setting has the wrong type or a value with no stable text form (e.g. an object).

    Examples
    --------
    >>> s = Settings(case="frontdoor/ate", fingerprint="a1b2", query="ATE(Y, do(X=1) - do(X=0))",
    ...              method="svi", seed=0, fit_kwargs={"num_steps": 40}, num_units=1000,
    ...              prob=0.94, device="cpu", version="0.1.0")
    >>> s.key[:16]
    '603d531ed1935d93'
    >>> s.replace(fit_kwargs={"num_steps": 4000}).key == s.key
    False
    """

    case: str
    fingerprint: str
    query: Any
    method: str
    seed: int
    fit_kwargs: Mapping[str, Any]
    num_units: int | None
    prob: float
    device: str
    version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("case", "fingerprint", "method", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or (name != "fingerprint" and not value):
                raise InvalidArgumentError(f"Settings.{name} must be a non-empty string; got {value!r}.")
        query = self.query if isinstance(self.query, str) else repr(self.query)
        object.__setattr__(self, "query", _no_address(query, "the query's repr"))
        _no_address(self.fingerprint, "the fingerprint")
        for name in ("seed", "num_units"):
            value = getattr(self, name)
            if name == "num_units" and value is None:  # adaptive: the estimate's own stopping rule
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise InvalidArgumentError(f"Settings.{name} must be an integer; got {value!r}.")
            object.__setattr__(self, name, int(value))
        if self.num_units is not None and self.num_units < 1:
            raise InvalidArgumentError(f"Settings.num_units must be >= 1; got {self.num_units}.")
        if isinstance(self.prob, bool) or not isinstance(self.prob, numbers.Real) or not 0 < self.prob < 1:
            raise InvalidArgumentError(f"Settings.prob must be a number in (0, 1); got {self.prob!r}.")
        # A documented float: 0.9 and numpy's 0.9 are the same setting.
        object.__setattr__(self, "prob", float(self.prob))
        for name in ("fit_kwargs", "extra"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise InvalidArgumentError(f"Settings.{name} must be a mapping; got {type(value).__name__}.")
            object.__setattr__(self, name, canonical(value, name))
        version = _version() if self.version is None else self.version
        if not isinstance(version, str) or not version:
            raise InvalidArgumentError(f"Settings.version must be a non-empty string; got {version!r}.")
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "key", settings_key(self.to_dict()))

    def __hash__(self) -> int:  # the dict fields are unhashable; the key identifies the settings
        return hash(self.key)

    def to_dict(self) -> dict[str, Any]:
        """The settings as canonical plain data (what records store and the key hashes).

        Examples
        --------
        >>> s = Settings(case="bow/ate", fingerprint="", query="q", method="nuts", seed=1,
        ...              fit_kwargs={}, num_units=10, prob=0.9, device="cpu", version="0.1.0")
        >>> s.to_dict()["causal_pp_version"], settings_key(s.to_dict()) == s.key
        ('0.1.0', True)
        """
        return {
            "case": self.case,
            "query": self.query,
            "method": self.method,
            "seed": self.seed,
            "fit_kwargs": self.fit_kwargs,
            "num_units": self.num_units,
            "prob": self.prob,
            "device": self.device,
            "fingerprint": self.fingerprint,
            "extra": self.extra,
            "causal_pp_version": self.version,
        }

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (and its own key).

        Examples
        --------
        >>> s = Settings(case="bow/ate", fingerprint="", query="q", method="svi", seed=0,
        ...              fit_kwargs={}, num_units=10, prob=0.9, device="cpu", version="0.1.0")
        >>> s.replace(seed=1).seed, s.replace(seed=1).key != s.key
        (1, True)
        """
        return replace(self, **changes)


def settings_dict(settings: Settings | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(canonical settings, key) of a :class:`Settings` or a plain mapping.

    Examples
    --------
    >>> canon, key = settings_dict({"prob": 0.9})
    >>> sorted(canon), key == settings_key(canon)
    (['causal_pp_version', 'prob'], True)
    """
    if isinstance(settings, Settings):
        return settings.to_dict(), settings.key
    if not isinstance(settings, Mapping):
        raise InvalidArgumentError(
            f"settings must be a Settings or a mapping; got {type(settings).__name__}."
        )
    canon = canonical(settings, "settings")
    if "causal_pp_version" not in canon:
        canon = canonical({**canon, "causal_pp_version": _version()}, "settings")
    return canon, hashlib.sha256(_KEY_SALT + canonical_json(canon).encode()).hexdigest()


def as_key(key: str | Settings | Mapping[str, Any]) -> str:
    """A settings key given as itself, as :class:`Settings` or as a mapping of settings.

    Examples
    --------
    >>> as_key("ab" * 32) == "ab" * 32
    True
    """
    if isinstance(key, Settings):
        return key.key
    if isinstance(key, Mapping):
        return settings_dict(key)[1]
    if not isinstance(key, str):
        raise InvalidArgumentError(
            f"a key is a settings key (str), Settings or mapping; got {type(key).__name__}."
        )
    return key


def settings_key(settings: Settings | Mapping[str, Any]) -> str:
    """The settings key: sha256 of the canonical JSON of the settings.

    A plain mapping is keyed as it is, plus ``causal_pp_version`` when it has none, so
    ``settings_key(s.to_dict()) == s.key`` for a :class:`Settings` ``s``.

    Parameters
    ----------
    settings
        A :class:`Settings`, or a mapping of plain data with string keys.

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    InvalidArgumentError
        A value cannot be serialised canonically (the message names where it is).

    Examples
    --------
    >>> a = settings_key({"method": "svi", "fit_kwargs": {"lr": 0.01, "steps": (1, 2)},
    ...                   "causal_pp_version": "0.1.0"})
    >>> b = settings_key({"fit_kwargs": {"steps": [1, 2], "lr": 0.01}, "method": "svi",
    ...                   "causal_pp_version": "0.1.0"})
    >>> a == b, len(a)
    (True, 64)
    >>> settings_key({"fit_kwargs": {"optim": object()}})
    Traceback (most recent call last):
    ...
    causal_pp.errors.InvalidArgumentError: settings['fit_kwargs']['optim'] is a builtins.object, ...
    """
    return settings_dict(settings)[1]


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


#: Marks a setting one side of :func:`diff_settings` does not have.
UNSET: Any = _Unset()


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    # Dotted paths to the leaves, so a difference reads "fit_kwargs.num_steps", not "fit_kwargs".
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v and set(v) != {FLOAT_TAG}:
            out.update(_flatten(v, f"{prefix}{k}."))
        elif not (isinstance(v, Mapping) and not v):
            out[f"{prefix}{k}"] = v
    return out


def format_value(value: Any) -> str:
    """A setting's value as ``describe`` writes it (bare when unambiguous, else JSON).

    Examples
    --------
    >>> format_value("svi"), format_value({"__float__": "inf"}), format_value("a b")
    ('svi', 'inf', '"a b"')
    """
    if value is UNSET:
        return "<unset>"
    if isinstance(value, Mapping) and set(value) == {FLOAT_TAG}:
        return str(value[FLOAT_TAG])
    if isinstance(value, str) and value and not re.search(r"[\s=;,\"]", value):
        return value
    return json.dumps(value, separators=(",", ":"))


def describe(settings: Settings | Mapping[str, Any]) -> str:
    """The settings on one readable line: ``name=value`` per setting, nested ones dotted.

    Examples
    --------
    >>> s = Settings(case="frontdoor/ate", fingerprint="a1b2", query="q", method="svi", seed=0,
    ...              fit_kwargs={"num_steps": 40}, num_units=1000, prob=0.94, device="cpu",
    ...              version="0.1.0")
    >>> describe(s)
    'case=frontdoor/ate query=q method=svi seed=0 fit_kwargs.num_steps=40 num_units=1000 prob=0.94 device=cpu fingerprint=a1b2 causal_pp_version=0.1.0'
    """
    canon = settings.to_dict() if isinstance(settings, Settings) else canonical(settings, "settings")
    return " ".join(f"{k}={format_value(v)}" for k, v in _flatten(canon).items())


def diff_settings(
    theirs: Settings | Mapping[str, Any], ours: Settings | Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """The settings that differ, as dotted path -> (theirs, ours); :data:`UNSET` where one lacks it.

    Examples
    --------
    >>> diff_settings({"fit_kwargs": {"num_steps": 40}, "prob": 0.9},
    ...               {"fit_kwargs": {"num_steps": 4000, "lr": 0.1}, "prob": 0.9})
    {'fit_kwargs.lr': (<unset>, 0.1), 'fit_kwargs.num_steps': (40, 4000)}
    """
    a = _flatten(theirs.to_dict() if isinstance(theirs, Settings) else canonical(theirs, "theirs"))
    b = _flatten(ours.to_dict() if isinstance(ours, Settings) else canonical(ours, "ours"))
    return {
        k: (a.get(k, UNSET), b.get(k, UNSET))
        for k in sorted(a.keys() | b.keys())
        if setting_text(a.get(k, UNSET)) != setting_text(b.get(k, UNSET))
    }


def setting_text(value: Any) -> str:
    """A comparable text of a setting's value (:data:`UNSET` included).

    Examples
    --------
    >>> setting_text(40) == setting_text(40.0), setting_text(UNSET) == setting_text(None)
    (False, False)
    """
    return "\0unset" if value is UNSET else canonical_json(value)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of plain data and of the source code of functions and classes.

    Use it for :attr:`Settings.fingerprint`: e.g. ``fingerprint(case.name, params, simulate_fn)``.
    A function's fingerprint covers its own source, not the functions it calls.

    Raises
    ------
    InvalidArgumentError
        A part is neither plain data nor a function/class whose source can be read.

    Examples
    --------
    >>> fingerprint("frontdoor", {"a": 1.5}) == fingerprint("frontdoor", {"a": 1.5})
    True
    >>> fingerprint("frontdoor", {"a": 1.5}) == fingerprint("frontdoor", {"a": 2.0})
    False
    """
    h = hashlib.sha256(b"causal_pp.store.fingerprint/1\n")
    for i, part in enumerate(parts):
        if inspect.isfunction(part) or inspect.ismethod(part) or inspect.isclass(part):
            try:
                source = inspect.getsource(part)
            except (OSError, TypeError) as err:
                raise InvalidArgumentError(
                    f"fingerprint part {i} ({part!r}) has no readable source ({err}); pass a "
                    "version string or its parameters instead."
                ) from err
            text = f"code:{getattr(part, '__module__', '')}.{getattr(part, '__qualname__', '')}\n{source}"
        else:
            text = "data:" + canonical_json(canonical(part, f"fingerprint part {i}"))
        h.update(hashlib.sha256(text.encode()).digest())
    return h.hexdigest()[:16]
