"""A graph, a query and data made into a bounds problem.

:func:`prepare` picks the relevant variables, codes and tabulates the data, builds the
canonical model and the target functional, turns experimental data into constraints, and
writes the plain-words note the result carries. :func:`manski_inputs` does the same for the
no-assumption bounds of a bounded outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..graph import CausalGraph
from .canonical import MAX_RESPONSE_TYPES, CanonicalModel, relevant_variables
from .causation import Causation
from .functionals import Contrast, Target, experimental_equalities
from .table import codes, domains_of, tabulate

__all__ = ["Problem", "check_outcome_range", "manski_inputs", "prepare"]

CONTINUOUS_HINT = " For a continuous outcome, pass outcome_range=(low, high) for no-assumption bounds."


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything the linear programs and the posterior need.

    Attributes
    ----------
    model, target
        The canonical model and the bounded functional.
    counts
        Observed counts (or weights) over ``model.roots + model.group``.
    equalities, keys, arms
        Experimental constraints: coefficient arrays, their ``(arm, outcome value)`` indices,
        and each arm's counts over the outcome's values.
    note
        What the bounds assume and lose, in plain words.
    experiment
        (treatment, outcome) of the experimental data, if any.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.functionals import Arm, Contrast
    >>> p = prepare(CausalGraph.parse("X -> Y; X <-> Y"), Contrast("Y", (Arm(1.0, (("X", 1.0),)),)),
    ...             {"X": np.array([0.0, 1.0]), "Y": np.array([1.0, 1.0])})
    >>> p.sharp, p.experiment
    (True, None)
    """

    model: CanonicalModel
    target: Target
    counts: np.ndarray
    equalities: list[np.ndarray]
    keys: list[tuple[int, int]]
    arms: list[tuple[int, np.ndarray]]
    note: str
    experiment: tuple[str, str] | None = None

    @property
    def sharp(self) -> bool:
        """Whether the programs give the sharp bounds."""
        return self.model.sharp and self.target.exact


def prepare(
    graph: CausalGraph,
    spec: Contrast | Causation,
    columns: Mapping[str, np.ndarray],
    weights: np.ndarray | None = None,
    exp_columns: Mapping[str, np.ndarray] | None = None,
    exp_weights: np.ndarray | None = None,
    *,
    outcome_value: int | None = None,
    domains: Mapping[str, tuple[int, ...]] | None = None,
    max_types: int = MAX_RESPONSE_TYPES,
) -> Problem:
    """The canonical model, target, observed counts and experimental constraints of a query.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.functionals import Arm, Contrast
    >>> g = CausalGraph.parse("Z -> X -> Y; X <-> Y; Y -> W")
    >>> cols = {v: np.array([0.0, 1.0, 1.0]) for v in "ZXYW"}
    >>> p = prepare(g, Contrast("Y", (Arm(1.0, (("X", 1.0),)),)), cols)
    >>> p.model.variables, p.counts.shape, p.sharp
    (('Z', 'X', 'Y'), (2, 2, 2), True)
    """
    variables = relevant_variables(graph, spec.mentioned)
    outcome = spec.outcome
    hint = CONTINUOUS_HINT if isinstance(spec, Contrast) else ""
    coded = {v: codes(columns[v], v, hint=hint if v == outcome else "") for v in variables}
    extra = dict(domains or {})
    for v, vals in getattr(spec, "required_values", {}).items():
        extra[v] = tuple(sorted(set(extra.get(v, ())) | set(vals)))
    exp_coded = None
    if exp_columns is not None:
        exp_coded = {v: codes(exp_columns[v], v, hint=hint if v == outcome else "") for v in exp_columns}
        for v, vals in exp_coded.items():
            extra[v] = tuple(sorted(set(extra.get(v, ())) | set(np.unique(vals).tolist())))
    domain = domains_of(coded, variables, extra)
    model = CanonicalModel(graph, variables, domain, max_types=max_types)
    target = spec.target(model, outcome_value)
    counts = tabulate(coded, model.roots + model.group, domain, weights)
    equalities: list[np.ndarray] = []
    keys: list[tuple[int, int]] = []
    arms: list[tuple[int, np.ndarray]] = []
    if exp_coded is not None:
        treatment, out = spec.experiment  # type: ignore[misc]
        table = tabulate(exp_coded, (treatment, out), domain, exp_weights)
        present = tuple(int(i) for i in np.flatnonzero(table.sum(1) > 0))
        equalities, keys = experimental_equalities(model, treatment, out, present)
        arms = [(i, table[i]) for i in present]
    notes = [model.sharp_reason[0].upper() + model.sharp_reason[1:]]
    if target.note:
        notes.append("Not sharp: " + target.note)
    dropped = [v for v in graph.observed if v not in variables]
    if dropped:
        notes.append(
            f"{dropped} {'is' if len(dropped) == 1 else 'are'} left out: neither an ancestor of the query's "
            "variables nor confounded with them, so they cannot narrow the bounds."
        )
    if exp_coded is not None:
        notes.append("Experimental P(outcome | do(treatment)) constrains every program.")
    return Problem(
        model, target, counts, equalities, keys, arms, " ".join(notes), spec.experiment if exp_coded else None
    )


def manski_inputs(
    graph: CausalGraph, spec: Contrast, columns: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray], bool, str]:
    """The outcome, the coded treatments, sharpness and note of no-assumption bounds.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> from causal_pp.partial.functionals import Arm, Contrast
    >>> y, t, sharp, _ = manski_inputs(CausalGraph.parse("X -> Y; X <-> Y"), Contrast("Y", (Arm(1.0, (("X", 1.0),)),)),
    ...                                {"X": np.array([0.0, 1.0]), "Y": np.array([0.3, 2.5])})
    >>> sharp
    True
    """
    treatments = sorted({k for arm in spec.arms for k, _ in arm.do})
    coded = {t: codes(columns[t], t).astype(float) for t in treatments}
    _, bidirected = graph.projected_edges()
    relevant = set(relevant_variables(graph, spec.mentioned))
    sharp = (
        len(treatments) == 1
        and relevant == {treatments[0], spec.outcome}
        and frozenset((treatments[0], spec.outcome)) in bidirected
    )
    note = (
        "Sharp: no-assumption (Manski) bounds, and the graph says no more than that "
        f"{treatments[0]} and {spec.outcome} are confounded."
        if sharp
        else "Valid but possibly loose: no-assumption (Manski) bounds use only the outcome's range, not the "
        "graph's other structure (instruments, mediators, unconfoundedness)."
    )
    return columns[spec.outcome], coded, sharp, note


def check_outcome_range(y: np.ndarray, name: str, outcome_range: tuple[float, float]) -> None:
    """Refuse outcome values outside ``outcome_range``.

    Examples
    --------
    >>> check_outcome_range(np.array([0.5, 2.0]), "Y", (0.0, 1.0))
    Traceback (most recent call last):
    ...
    causal_pp.errors.DataError: outcome Y has values outside outcome_range=(0, 1) (from 0.5 to 2); widen the range.
    """
    low, high = outcome_range
    if np.any(y < low) or np.any(y > high):
        raise DataError(
            f"outcome {name} has values outside outcome_range=({low:g}, {high:g}) (from {y.min():g} to "
            f"{y.max():g}); widen the range."
        )
