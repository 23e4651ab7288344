"""Per-unit randomness from streams keyed by (seed, site name): :class:`KeyedNoise`.

Two runs of a program under different interventions (the arms of an ATE) share their random
numbers only if every site draws the same numbers in both. Seeding Pyro's global stream once per
run gives that only while both runs draw the same sites in the same order with the same shapes,
and only for samplers that map their random numbers monotonically to values: a ``Poisson`` site
with a different rate in each arm consumes the stream differently (rejection sampling), so its
values -- and every site after it -- are independent between arms.

:class:`KeyedNoise` draws every per-unit sample site (a site in the units plate) from its *own*
stream, seeded by ``(seed, site name)``, and maps the stream to a value monotonically where it can:

* ``Normal``: ``loc + scale * z`` with ``z`` standard normal;
* ``Bernoulli``: ``1[u < p]``; ``Categorical``: the inverse CDF ``min{k: P(Y <= k) > u}``;
  ``Poisson``: the inverse CDF (a CDF table where the rate is the same for every unit, else the
  regularised incomplete gamma refined by the pmf recurrence);
  ``Binomial`` (``total_count <= 256``): the number of ``u_j < p`` over ``total_count``
  uniforms; so a higher rate or probability never gives a smaller count -- the two arms'
  counts are comonotone, the strongest coupling there is;
* any other distribution with an ``icdf`` (Uniform, Laplace, Cauchy, Gumbel, Exponential, ...):
  ``icdf(u)``;
* the rest (StudentT, Gamma, ...): the distribution's own sampler, run on the keyed stream.

Arms therefore cannot desynchronise: a site skipped, added or reordered under one intervention
leaves every other site's numbers alone. Values are exact draws from each site's distribution.

**Stratified antithetic replicates** (``replicates=R``): the units plate (``n`` units, a multiple
of ``2R``) is cut into ``R`` independent replicates of ``m = n / R`` consecutive units. In each
replicate, every site's uniforms for the first ``m / 2`` units are a Latin hypercube sample (one
uniform in each of ``m / 2`` equal strata, in an order drawn independently per site), and the
second ``m / 2`` units are their antithetic mirror ``1 - u`` (for the symmetric families without an
``icdf``, the reflection ``2 loc - value``). Each unit is still an exact draw from its site's
distribution, so means over units stay unbiased; stratification removes the part of their
variance that is additive in the sites' noise, and mirroring the part that is linear (a linear
model's mean is then exact). Units within a replicate are dependent: a Monte Carlo variance must
be computed from the ``R`` replicate means.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_factor, site_is_subsample

from .internals import UNITS, in_units

__all__ = ["MAX_BINOMIAL_TRIALS", "KeyedNoise", "poisson_icdf", "replicates_for", "stream_key"]

MAX_BINOMIAL_TRIALS = 256
"""Binomial sites with more trials than this use the distribution's own sampler (keyed stream)."""

_TINY = 2.0**-53  # uniforms are kept in [_TINY, 1 - _TINY]: icdf(0) and icdf(1) are infinite

# Symmetric location-scale families without an icdf: value -> 2 loc - value is an exact antithetic draw.
_SYMMETRIC = (dist.StudentT,)  # (Normal, Laplace, Cauchy, Logistic: the icdf path mirrors them)


def replicates_for(num_units: int, low: int = 8, high: int = 32) -> int | None:
    """The number of stratified antithetic replicates for ``num_units`` units: the smallest ``R`` in
    ``[low, high]`` with ``num_units`` a multiple of ``2R`` (None if there is none: independent units).

    Examples
    --------
    >>> replicates_for(1024), replicates_for(1000), replicates_for(999)
    (8, 10, None)
    """
    for r in range(low, high + 1):
        if num_units % (2 * r) == 0:
            return r
    return None


def stream_key(*parts: Any) -> int:
    """A 63-bit seed from any hashable parts, stable across processes and platforms.

    Examples
    --------
    >>> stream_key(0, "Y") == stream_key(0, "Y") != stream_key(0, "M")
    True
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def poisson_icdf(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The inverse CDF of Poisson(``rate``) at ``u``: the smallest ``k`` with ``P(K <= k) >= u``.

    A Cornish-Fisher guess, one regularised incomplete gamma for ``P(K <= k)`` there, then steps
    of the pmf recurrence (a couple at most, in practice). Float64 throughout.

    Examples
    --------
    >>> poisson_icdf(torch.tensor([3.0, 3.0, 3.0]), torch.tensor([0.01, 0.5, 0.99])).tolist()
    [0.0, 3.0, 8.0]
    """
    lam = rate.double().expand(torch.broadcast_shapes(rate.shape, u.shape))
    u = u.double().expand(lam.shape)
    z = torch.special.ndtri(u)
    k = torch.floor(lam + lam.sqrt() * z + (z * z - 1) / 6).clamp(min=0).nan_to_num(0.0)
    log_pmf = k * lam.log() - lam - torch.lgamma(k + 1)
    pmf = torch.where(lam > 0, log_pmf.exp(), (k == 0).double())  # P(K = k)
    cdf = torch.special.gammaincc(k + 1, lam)  # P(K <= k)
    for _ in range(10_000):  # upwards: P(K <= k) < u
        up = cdf < u
        if not bool(up.any()):
            break
        pmf = torch.where(up, pmf * lam / (k + 1), pmf)
        k = torch.where(up, k + 1, k)
        cdf = torch.where(up, cdf + pmf, cdf)
    for _ in range(10_000):  # downwards: P(K <= k - 1) >= u
        below = cdf - pmf
        down = (k > 0) & (below >= u)
        if not bool(down.any()):
            break
        cdf = torch.where(down, below, cdf)
        pmf = torch.where(down, pmf * k / lam, pmf)
        k = torch.where(down, k - 1, k)
    return k


_MAX_TABLE = 4096  # longest CDF table per rate before falling back to poisson_icdf


def _poisson_table(rate: torch.Tensor, u: torch.Tensor, axis: int) -> torch.Tensor | None:
    """:func:`poisson_icdf` by one CDF table per rate, where the rate is the same for every unit
    (a count whose parents are all set by the intervention): a search instead of special functions.
    None where the rate varies along the units axis."""
    lam = rate.double().expand(u.shape)
    first = lam.narrow(axis, 0, 1)
    if not bool((lam == first).all()):
        return None
    moved = u.movedim(axis, -1)
    rates = first.movedim(axis, -1).reshape(-1)  # one per slice
    top = poisson_icdf(rates, moved.reshape(rates.shape[0], -1).amax(-1))
    K = int(top.max()) + 1 if top.numel() else 1
    if K > _MAX_TABLE:
        return None
    ks = torch.arange(K, dtype=torch.float64, device=u.device)
    log_pmf = ks * rates.log().unsqueeze(-1) - rates.unsqueeze(-1) - torch.lgamma(ks + 1)
    pmf = torch.where(rates.unsqueeze(-1) > 0, log_pmf.exp(), (ks == 0).double().expand(log_pmf.shape))
    cdf = pmf.cumsum(-1)
    k = torch.searchsorted(cdf, moved.reshape(rates.shape[0], -1).contiguous()).clamp(max=K - 1)
    return k.to(torch.float64).reshape(moved.shape).movedim(-1, axis)


def _unwrap(fn: Any) -> Any:
    """The distribution under Masked / Independent / Expanded wrappers (same total shape)."""
    while isinstance(fn, (MaskedDistribution, dist.Independent, ExpandedDistribution)):
        fn = fn.base_dist
    return fn


class KeyedNoise(Messenger):
    """Draw every per-unit sample site from a random stream keyed by ``(seed, site name)``.

    Enter it *outside* every plate of the run (a vectorising plate over posterior draws
    included): it reads the site's full batch shape after the plates have broadcast it.

    Parameters
    ----------
    seed
        The key of this run's streams: two runs with the same seed draw the same numbers at
        every per-unit site of the same name and shape, whatever else differs between them.
    replicates
        Stratified antithetic replicates (see the module docstring); the units plate must hold a
        multiple of ``2 * replicates`` units, else the units are independent. None: independent.
    device
        Where the random numbers are generated (default CPU).
    plate
        Name of the units plate.
    placeholders
        Per-unit sites whose value nobody uses (sites an intervention will replace; an outcome
        only its conditional mean is read from): they get their distribution's mean, broadcast,
        instead of a draw, which saves the draw's cost. Not a sample: use with care.
    memo
        A dict shared by runs with the same seed (the arms of an ATE): each site's random numbers
        are generated once and reused (they are the same numbers anyway).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> def prog(rate):
    ...     with pyro.plate("units", 6):
    ...         return pyro.sample("K", dist.Poisson(rate))
    >>> low = KeyedNoise(seed=1)(prog)(torch.tensor(2.0))
    >>> high = KeyedNoise(seed=1)(prog)(torch.tensor(4.0))
    >>> bool((high >= low).all())  # common random numbers: comonotone counts
    True
    >>> def coin():
    ...     with pyro.plate("units", 8):
    ...         return pyro.sample("B", dist.Bernoulli(0.5))
    >>> KeyedNoise(seed=1, replicates=2)(coin)().reshape(2, 4).sum(1).tolist()  # exactly half, per replicate
    [2.0, 2.0]
    """

    def __init__(
        self,
        seed: int,
        *,
        replicates: int | None = None,
        device: str | torch.device | None = None,
        plate: str = UNITS,
        placeholders: frozenset[str] = frozenset(),
        memo: dict[Any, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.seed = int(seed)
        self.replicates = replicates
        self.device = torch.device("cpu" if device is None else device)
        self.plate = plate
        self.placeholders = frozenset(placeholders)
        self.memo = memo

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if (
            site_is_subsample(msg)
            or site_is_factor(msg)
            or msg["is_observed"]
            or msg["value"] is not None
            or msg["infer"].get("_deterministic", False)
            or not in_units(msg, self.plate)
        ):
            return
        fn = msg["fn"]
        base = _unwrap(fn)
        if isinstance(base, dist.Delta):
            return
        shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
        if msg["name"] in self.placeholders:
            try:
                msg["value"] = torch.broadcast_to(base.mean, shape)
                return
            except (NotImplementedError, RuntimeError):
                pass  # no mean of that shape: a real draw below
        layout = self._layout(msg, len(fn.event_shape), shape)
        key = stream_key(self.seed, msg["name"])
        msg["value"] = _draw(base, fn, shape, _Stream(key, layout, self.device, self.memo))

    def _layout(self, msg: dict[str, Any], event_ndim: int, shape: tuple[int, ...]) -> _Layout | None:
        """Where the units axis is in the sample's shape and how many replicates it holds."""
        dim = next(f.dim for f in msg["cond_indep_stack"] if f.name == self.plate)
        if dim is None:
            return None
        axis = len(shape) + dim - event_ndim
        if not 0 <= axis < len(shape):
            return None
        r = self.replicates or 0
        return _Layout(axis, r if r and shape[axis] % (2 * r) == 0 else 0)


class _Layout(NamedTuple):
    axis: int  # the units axis of the sample
    replicates: int  # 0: independent units

    def split(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``shape`` with the units axis as ``(replicates, 2, half)``."""
        a, r = self.axis, self.replicates
        return (*shape[:a], r, 2, shape[a] // (2 * r), *shape[a + 1 :])


class _Stream:
    """A site's random numbers: uniforms or standard normals of a shape, from the keyed generator,
    independent or as stratified antithetic replicates (``layout``); memoised in ``memo``."""

    def __init__(
        self, key: int, layout: _Layout | None, device: torch.device, memo: dict[Any, torch.Tensor] | None
    ) -> None:
        self.key, self.layout, self.device, self.memo = key, layout, device, memo

    def generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.key)

    def _cached(self, kind: str, shape: tuple[int, ...], make: Any) -> torch.Tensor:
        if self.memo is None:
            return make()
        k = (self.key, kind, shape, self.layout)
        if k not in self.memo:
            self.memo[k] = make()
        return self.memo[k]

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._cached("u", shape, lambda: _uniform(shape, self.layout, self.generator(), self.device))

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normals (float64); stratified: ``ndtri`` of the Latin half and its negation."""

        def make() -> torch.Tensor:
            lay = self.layout
            if lay is None or not lay.replicates:
                return torch.randn(shape, generator=self.generator(), dtype=torch.float64, device=self.device)
            z = torch.special.ndtri(_latin_half(shape, lay, self.generator(), self.device))
            return torch.cat([z, -z], dim=lay.axis + 1).reshape(shape)  # ndtri(1 - u) = -ndtri(u)

        return self._cached("z", shape, make)


def _latin_half(
    shape: tuple[int, ...], layout: _Layout, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """The first half of every replicate: a Latin hypercube over its strata, shaped ``split`` with 1 half."""
    f64 = torch.float64
    split = layout.split(shape)
    a = layout.axis
    half = (*split[: a + 1], 1, *split[a + 2 :])
    # a random order of the strata per site and slice (integer keys sort faster than floats)
    keys = torch.randint(0, 2**62, half, generator=gen, dtype=torch.int64, device=device)
    order = keys.argsort(dim=a + 2)
    jitter = torch.rand(half, generator=gen, dtype=f64, device=device)
    return ((order.to(f64) + jitter) / split[a + 2]).clamp_(_TINY, 1.0 - _TINY)


def _uniform(
    shape: tuple[int, ...], layout: _Layout | None, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Float64 uniforms in (0, 1): independent, or stratified antithetic replicates along the units."""
    if layout is None or not layout.replicates:
        u = torch.rand(shape, generator=gen, dtype=torch.float64, device=device)
        return u.clamp_(_TINY, 1.0 - _TINY)
    u = _latin_half(shape, layout, gen, device)
    return torch.cat([u, 1.0 - u], dim=layout.axis + 1).reshape(shape)  # and its antithetic mirror


def _dtype(base: Any) -> torch.dtype:
    try:
        return base.mean.dtype
    except (NotImplementedError, AttributeError):  # pragma: no cover - every torch family has a mean
        return torch.get_default_dtype()


def _draw(base: Any, fn: Any, shape: tuple[int, ...], stream: _Stream) -> torch.Tensor:
    """One draw of ``fn`` (shape ``shape``) from the site's keyed ``stream``, monotone where possible."""
    layout = stream.layout
    if isinstance(base, torch.distributions.Normal):
        loc = base.loc
        z = stream.normal(shape).to(device=loc.device, dtype=loc.dtype)
        return (loc + base.scale * z).expand(shape)
    if isinstance(base, torch.distributions.Bernoulli):
        p = base.probs
        return (stream.uniform(shape).to(p.device) < p).to(p.dtype)
    if isinstance(base, torch.distributions.Categorical):
        probs = base.probs
        cdf = probs.double().cumsum(-1)
        cdf = cdf / cdf[..., -1:]  # exactly 1 at the top: every u < 1 finds a category
        u = stream.uniform(shape).to(probs.device)
        cdf = cdf.expand((*shape, probs.shape[-1])).contiguous()
        k = torch.searchsorted(cdf, u.unsqueeze(-1), right=True).squeeze(-1)
        return k.clamp(max=probs.shape[-1] - 1)
    if isinstance(base, torch.distributions.Poisson):
        rate = base.rate
        u = stream.uniform(shape).to(rate.device)
        k = None if layout is None else _poisson_table(rate, u, layout.axis)
        return (poisson_icdf(rate, u) if k is None else k).to(rate.dtype)
    if (
        isinstance(base, torch.distributions.Binomial)
        and float(base.total_count.max()) <= MAX_BINOMIAL_TRIALS
    ):
        n, p = base.total_count, base.probs
        trials = int(n.max())
        u = stream.uniform((*shape, trials)).to(p.device)
        j = torch.arange(trials, device=p.device, dtype=p.dtype)
        hit = (u < p.unsqueeze(-1)) & (j < n.unsqueeze(-1))
        return hit.sum(-1).to(p.dtype).expand(shape)
    if not isinstance(base, torch.distributions.Binomial):
        try:
            return base.icdf(stream.uniform(shape).to(_dtype(base))).expand(shape)
        except NotImplementedError:
            pass
    # The distribution's own sampler, run on the keyed stream (the same numbers in every arm).
    device = stream.device
    with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
        torch.manual_seed(stream.key)
        value = fn.sample()
    if layout is not None and layout.replicates and isinstance(base, _SYMMETRIC):
        split = layout.split(shape)
        a = layout.axis
        v = value.reshape(split)
        first = v.narrow(a + 1, 0, 1)
        loc = base.loc.expand(shape).reshape(split).narrow(a + 1, 1, 1)
        value = torch.cat([first, 2 * loc - first], dim=a + 1).reshape(shape)
    return value
