"""Exact distributions of binary SCMs with one Gaussian latent: the truths of the bounds cases.

For an :class:`~causal_pp.cases.SCM` whose observed nodes are Bernoulli and whose only other
node is one latent normal root, every observational and interventional probability is a
one-dimensional Gaussian integral over the latent: computed here by Gauss-Hermite quadrature
(200 nodes: exact to ~1e-12 for the smooth logistic equations of the cases). The observed
joint is what :func:`causal_pp.partial.bounds_from_distribution` needs for the true sharp
bounds -- the population value of the posterior bounds a study measures.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..errors import CaseError
from .scm import SCM

__all__ = ["QUADRATURE_NODES", "binary_ate", "binary_mean", "binary_naive_ate", "binary_table"]

#: Gauss-Hermite nodes of every quadrature here.
QUADRATURE_NODES = 200


def _gauss_hermite(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    return x, w / w.sum()


def binary_table(
    scm: SCM,
    latent: str,
    *,
    do: Mapping[str, float] | None = None,
    weight: str = "p",
    nodes: int = QUADRATURE_NODES,
) -> pd.DataFrame:
    """The exact joint distribution of an SCM's binary observed nodes (under ``do``, if given).

    Parameters
    ----------
    scm
        Equations: ``latent`` a normal root, every other node Bernoulli (its ``loc`` the
        probability of 1 given its parents).
    latent
        The latent normal root integrated out.
    do
        ``{node: value}``: the intervened nodes are held at their values (their equations cut).
    weight
        Name of the probability column.
    nodes
        Gauss-Hermite nodes.

    Returns
    -------
    pandas.DataFrame
        One row per configuration of the observed nodes (in the SCM's order), with its
        probability in ``weight``; the rows sum to 1.

    Raises
    ------
    CaseError
        The SCM is not of this form.

    Examples
    --------
    >>> from scipy.special import expit
    >>> from causal_pp.cases import SCM, Equation, constant
    >>> scm = SCM([Equation("U", (), constant(0.0)), Equation("X", ("U",), lambda u: expit(u), "bernoulli")])
    >>> binary_table(scm, "U")["p"].round(6).tolist()  # P(X = 1) = E[expit(U)] = 1/2 by symmetry
    [0.5, 0.5]
    """
    do = dict(do or {})
    eqs = {eq.name: eq for eq in scm.equations}
    root = eqs.get(latent)
    if root is None or root.parents or root.kind != "normal":
        raise CaseError(f"{latent!r} must be a normal root of the SCM (no parents).")
    observed = [name for name in scm.nodes if name != latent]
    bad = [name for name in observed if eqs[name].kind != "bernoulli" and name not in do]
    if bad:
        raise CaseError(f"binary_table needs Bernoulli observed nodes; {bad} are not.")
    x, w = _gauss_hermite(nodes)
    u = float(np.asarray(root.loc())) + root.scale * x
    free = [name for name in observed if name not in do]
    rows = []
    for config in itertools.product((0.0, 1.0), repeat=len(free)):
        values = {latent: u} | {k: np.full_like(u, float(v)) for k, v in do.items()}
        values |= {k: np.full_like(u, v) for k, v in zip(free, config, strict=True)}
        density = np.ones_like(u)
        for name, v in zip(free, config, strict=True):
            eq = eqs[name]
            p1 = np.broadcast_to(np.asarray(eq.loc(*(values[q] for q in eq.parents)), dtype=float), u.shape)
            density = density * (p1 if v == 1.0 else 1.0 - p1)
        rows.append([values[name][0] for name in observed] + [float(np.sum(w * density))])
    table = pd.DataFrame(rows, columns=[*observed, weight])
    table[weight] = table[weight] / table[weight].sum()  # sums to 1 up to rounding already
    return table


def binary_mean(
    scm: SCM, latent: str, outcome: str, do: Mapping[str, float], *, nodes: int = QUADRATURE_NODES
) -> float:
    """E[outcome | do] = P(outcome = 1 | do), exactly (see :func:`binary_table`).

    Examples
    --------
    >>> from scipy.special import expit
    >>> from causal_pp.cases import SCM, Equation, constant
    >>> scm = SCM([Equation("U", (), constant(0.0)), Equation("X", ("U",), lambda u: expit(u), "bernoulli"),
    ...            Equation("Y", ("X", "U"), lambda x, u: expit(2 * x + u), "bernoulli")])
    >>> round(binary_mean(scm, "U", "Y", {"X": 0.0}), 6)
    0.5
    """
    table = binary_table(scm, latent, do=do, nodes=nodes)
    return float(table.loc[table[outcome] == 1.0, "p"].sum())


def binary_ate(
    scm: SCM, latent: str, treatment: str, outcome: str, *, nodes: int = QUADRATURE_NODES
) -> float:
    """The exact ATE P(outcome = 1 | do(treatment = 1)) - P(outcome = 1 | do(treatment = 0)).

    Examples
    --------
    >>> from scipy.special import expit
    >>> from causal_pp.cases import SCM, Equation, constant
    >>> scm = SCM([Equation("U", (), constant(0.0)), Equation("X", ("U",), lambda u: expit(u), "bernoulli"),
    ...            Equation("Y", ("X", "U"), lambda x, u: 0.2 + 0.5 * x + 0 * u, "bernoulli")])
    >>> round(binary_ate(scm, "U", "X", "Y"), 9)
    0.5
    """
    treated = binary_mean(scm, latent, outcome, {treatment: 1.0}, nodes=nodes)
    return treated - binary_mean(scm, latent, outcome, {treatment: 0.0}, nodes=nodes)


def binary_naive_ate(
    scm: SCM, latent: str, treatment: str, outcome: str, *, nodes: int = QUADRATURE_NODES
) -> float:
    """The exact observational contrast P(outcome = 1 | treatment = 1) - P(outcome = 1 | treatment = 0).

    Examples
    --------
    >>> from scipy.special import expit
    >>> from causal_pp.cases import SCM, Equation, constant
    >>> scm = SCM([Equation("U", (), constant(0.0)), Equation("X", ("U",), lambda u: expit(3 * u), "bernoulli"),
    ...            Equation("Y", ("X", "U"), lambda x, u: expit(u), "bernoulli")])
    >>> binary_naive_ate(scm, "U", "X", "Y") > 0.1  # no effect, but confounded
    True
    """
    t = binary_table(scm, latent, nodes=nodes)
    p = [
        t.loc[(t[treatment] == x) & (t[outcome] == 1.0), "p"].sum() / t.loc[t[treatment] == x, "p"].sum()
        for x in (1.0, 0.0)
    ]
    return float(p[0] - p[1])
