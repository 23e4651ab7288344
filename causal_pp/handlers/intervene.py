"""The interventional program: ChiRho's ``do``, with the value used downstream reported.

* :func:`intervene` -- ChiRho's :func:`~chirho.interventional.handlers.do` with values broadcast
  to the site's shape (:class:`SetValue`), plus :class:`ReportInterventions`;
* :class:`ReportInterventions` -- after ChiRho's ``do`` has replaced a site's value, make every
  enclosing trace record the value actually used (ChiRho and ``pyro.do`` report the natural,
  un-intervened draw there), keeping the natural draw in ``site["infer"]["natural_value"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from chirho.interventional.handlers import do
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.trace_messenger import TraceMessenger
from pyro.poutine.util import site_is_subsample

from .internals import INTERVENED

__all__ = ["ReportInterventions", "SetValue", "intervene"]


class SetValue:
    """An atomic intervention: set a site to ``value``, broadcast to the site's own shape.

    ChiRho's ``do`` replaces a value by the action as given; a scalar action would then make
    every downstream deterministic site a scalar. Used as a callable action, this keeps the
    site's shape, dtype and device (also under vectorising plates such as posterior draws).

    Examples
    --------
    >>> import torch
    >>> SetValue(1.0)(torch.zeros(2, 3))
    tensor([[1., 1., 1.],
            [1., 1., 1.]])
    """

    __slots__ = ("value",)

    def __init__(self, value: float | torch.Tensor) -> None:
        self.value = value

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        obs = torch.as_tensor(obs)
        value = torch.as_tensor(self.value, dtype=obs.dtype, device=obs.device)
        return torch.broadcast_to(value, torch.broadcast_shapes(value.shape, obs.shape))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SetValue):
            return NotImplemented
        a, b = torch.as_tensor(self.value), torch.as_tensor(other.value)
        return a.shape == b.shape and bool(torch.equal(a.cpu().double(), b.cpu().double()))

    def __hash__(self) -> int:
        v = torch.as_tensor(self.value)
        return hash(float(v.item())) if v.numel() == 1 else id(self)

    def __repr__(self) -> str:
        v = self.value
        return f"SetValue({v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v!r})"


class ReportInterventions(Messenger):
    """Make enclosing traces report, at intervened sites, the value used downstream.

    ChiRho's ``do`` acts after a site is sampled, so a trace (or ``Predictive``) outside it
    records the natural draw, not the value the rest of the program saw (Pyro forum 1738).
    Placed *inside* ``do`` (its post-processing then runs after ``do``'s), this handler
    rewrites the nodes that enclosing traces recorded for the sites in ``names``: ``"value"``
    becomes the value used downstream and ``site["infer"]`` gains ``"natural_value"`` (the
    draw ChiRho intervened on) and ``"intervened": True``. Traces inside the handler see the
    used value directly.

    The natural draw's log-density is not part of the reported node; the reported value's is.
    The interventional program is a forward (data-generating) program: to fit data, condition
    the un-intervened model.

    Parameters
    ----------
    names
        Sites to report on.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from chirho.interventional.handlers import do
    >>> def prog():
    ...     x = pyro.sample("x", dist.Normal(0.0, 1.0))
    ...     return pyro.sample("y", dist.Normal(x, 0.001))
    >>> tr = pyro.poutine.trace(do(ReportInterventions(["x"])(prog), actions={"x": torch.tensor(3.0)})).get_trace()
    >>> tr.nodes["x"]["value"], tr.nodes["x"]["infer"]["intervened"]
    (tensor(3.), True)
    """

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__()
        self.names = frozenset([names] if isinstance(names, str) else names)

    def _pyro_post_sample(self, msg: dict[str, Any]) -> None:
        if msg["name"] not in self.names or site_is_subsample(msg):
            return
        used = msg["value"]
        # a new dict: the infer dict may be shared with the user's call site
        msg["infer"] = {**msg["infer"], INTERVENED: True, "intervened": True}
        for frame in _PYRO_STACK:
            if frame is self:
                break
            if isinstance(frame, TraceMessenger):
                node = frame.trace.nodes.get(msg["name"])
                if node is None or node.get("type") != "sample" or node["value"] is used:
                    continue
                node["infer"] = {**node["infer"], "natural_value": node["value"], "intervened": True}
                node["value"] = used
                for key in ("log_prob", "unscaled_log_prob", "log_prob_sum", "score_parts", "packed"):
                    node.pop(key, None)


def intervene(fn: Callable[..., Any], actions: Mapping[str, Any]) -> Callable[..., Any]:
    """The interventional program ``do(fn, actions)``, built on ChiRho's ``do``.

    Each action is a value (number or tensor) that the site is set to, broadcast to the
    site's shape (:class:`SetValue`); the site is still sampled first (ChiRho semantics), so
    the random stream of the program is the same under every action -- simulations of two
    arms with the same seed share their exogenous draws (common random numbers). Every
    downstream computation, deterministic sites included, sees the set value, and traces
    report it (:class:`ReportInterventions`).

    Names are not validated here (ChiRho ignores unknown names silently); use
    :meth:`causal_pp.CausalModel.intervene`, which checks them against the DAG.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist
    >>> def prog(n):
    ...     with pyro.plate("units", n):
    ...         x = pyro.sample("x", dist.Normal(0.0, 1.0))
    ...         pyro.deterministic("y", 2 * x)
    >>> tr = pyro.poutine.trace(intervene(prog, {"x": 1.0})).get_trace(3)
    >>> tr.nodes["y"]["value"]
    tensor([2., 2., 2.])
    """
    acts = {k: v if isinstance(v, SetValue) else SetValue(v) for k, v in actions.items()}
    return do(ReportInterventions(acts)(fn), actions=acts)
