"""Adam for many independent optimisations at once: one learning rate and step count per row.

Pyro's ``ClippedAdam`` (element-wise gradient clipping, bias-corrected moments), vectorised over
the first dimension of every parameter, which :func:`~causal_pp.inference.fit_many` uses for
its rows (data sets, or restarts of a data set).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["RowAdam"]

_CLIP = 10.0  # ClippedAdam's element-wise gradient clamp
_BETAS = (0.9, 0.999)
_EPS = 1e-8


class RowAdam:
    """Adam with element-wise gradient clipping, a learning rate per row, and frozen rows.

    Each parameter's first dimension is the row (one data set, or one start of it); a row's
    update reads only its own gradient, moments and step count, and a row that is not
    ``active`` does not move -- so rows are independent optimisations run in one batch.

    Examples
    --------
    >>> p = torch.zeros(2, 3, requires_grad=True)
    >>> opt = RowAdam([p], lr=0.1)
    >>> opt.active[1] = False
    >>> (p * torch.tensor([[1.0], [1.0]])).sum().backward()
    >>> opt.step()
    >>> [round(v, 4) for v in p[0].tolist()], p[1].tolist()
    ([-0.1, -0.1, -0.1], [0.0, 0.0, 0.0])
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float) -> None:
        self.params = list(params)
        rows = self.params[0].shape[0]
        self.lr = torch.full((rows,), float(lr), dtype=self.params[0].dtype)
        self.active = torch.ones(rows, dtype=torch.bool)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(rows, dtype=self.params[0].dtype)

    def select(self, params: Sequence[torch.Tensor], index: torch.Tensor) -> RowAdam:
        """The optimiser of ``params`` (rows ``index`` of this one's parameters), carrying those
        rows' moments, step counts and learning rates: their optimisation goes on where it was.

        Examples
        --------
        >>> p = torch.zeros(3, 2, requires_grad=True)
        >>> opt = RowAdam([p], lr=0.1)
        >>> opt.t += torch.tensor([1.0, 2.0, 3.0])
        >>> opt.select([torch.zeros(2, 2)], torch.tensor([2, 0])).t.tolist()
        [3.0, 1.0]
        """
        out = RowAdam(params, 1.0)
        out.lr, out.t, out.active = self.lr[index].clone(), self.t[index].clone(), self.active[index].clone()
        out.m = [m[index].clone() for m in self.m]
        out.v = [v[index].clone() for v in self.v]
        return out

    def put(self, index: torch.Tensor, rows: RowAdam) -> None:
        """Write the moments and step counts of ``rows`` (a :meth:`select` of this optimiser) back
        into rows ``index``; learning rates and ``active`` stay this optimiser's.

        Examples
        --------
        >>> p = torch.zeros(3, 2, requires_grad=True)
        >>> opt = RowAdam([p], lr=0.1)
        >>> some = opt.select([torch.zeros(2, 2)], torch.tensor([2, 0]))
        >>> some.t += 1
        >>> opt.put(torch.tensor([2, 0]), some)
        >>> opt.t.tolist()
        [1.0, 0.0, 1.0]
        """
        self.t[index] = rows.t
        for mine, theirs in zip(self.m + self.v, rows.m + rows.v, strict=True):
            mine[index] = theirs

    @torch.no_grad()
    def step(self) -> None:
        # In place, with the per-row factors folded into (rows,) vectors: the parameters of a
        # large model (e.g. the low-rank factor over thousands of per-unit latents, times rows)
        # are tens of millions of numbers, and every temporary is a pass over all of them.
        self.t += self.active.to(self.t.dtype)
        b1, b2 = _BETAS
        t = self.t.clamp_min(1.0)
        act = self.active.to(self.t.dtype)
        # every row live (the starts' phase, and most steps after): no masking passes, the first
        # moment in one pass (lerp); otherwise a frozen row's moments and parameters stay as they are
        every = bool(self.active.all())
        keep1 = 1 - (1 - b1) * act  # b1 on an active row, 1 (no change) on a frozen one
        keep2 = 1 - (1 - b2) * act
        # ClippedAdam's update: lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
        step = self.lr * act * (1 - b2**t).sqrt() / (1 - b1**t)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            shape = (-1, *([1] * (p.dim() - 1)))
            g = p.grad.clamp_(-_CLIP, _CLIP).nan_to_num_(nan=0.0)
            if every:
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
            else:
                g.mul_(act.view(shape))
                m.mul_(keep1.view(shape)).add_(g, alpha=1 - b1)
                v.mul_(keep2.view(shape)).addcmul_(g, g, value=1 - b2)
            update = v.sqrt().add_(_EPS)
            torch.div(m, update, out=update)
            p.addcmul_(update, step.view(shape), value=-1.0)
            p.grad = None
