"""The program-vs-DAG check: does a Pyro program encode the causal DAG attached to it?

:meth:`causal_pp.CausalModel.check` runs it. Dependencies are found twice: by provenance
tracking (:class:`~causal_pp.handlers.TrackDependencies`, which names the auxiliary sites a
dependency runs through) and by intervention (:func:`~causal_pp.program.perturbation_reads`,
which a value leaving torch cannot fool). A dependency the DAG lacks is an error naming the
site, the variable it reads and how it was found; a DAG edge the program never uses is a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ModelGraphMismatchError
from .errors import warn as warn_user
from .program import ProgramStructure, check_units, compose_through, perturbation_reads

if TYPE_CHECKING:  # pragma: no cover
    from .model import CausalModel

__all__ = ["check_against_dag", "perturbed_parents"]


def edge_text(p: str, c: str) -> str:
    """``P → C``."""
    return f"{p} → {c}"


def perturbed_parents(
    model: CausalModel,
    structure: ProgramStructure,
    n: int,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, frozenset[str]]:
    """DAG parents of each DAG node found by intervention (auxiliary sites made transparent)."""
    if structure.units_size is None:
        return {}
    reads = perturbation_reads(model.fn, check_units(n, model_args, model_kwargs), model_args, model_kwargs)
    composed = compose_through(reads, frozenset(model.graph.nodes))
    return {c: r for c, r in composed.items() if c in model.graph}


def _structure_problems(model: CausalModel, s: ProgramStructure, n: int) -> list[str]:
    """Problems of the program's sites: the plate, missing and unknown sites, auxiliary misuse."""
    problems: list[str] = []
    g = model.graph
    if s.units_size is None:
        problems.append(
            "the program has no `with units(n):` block (a pyro.plate named 'units'); put the "
            "per-unit variables -- the DAG nodes -- inside it"
        )
    elif s.units_size != n:
        problems.append(
            f"the units plate has size {s.units_size} but the program was called with n={n}; "
            "write `with units(n):` with the n the model function receives"
        )
    for v in g.nodes:
        info = s.sites.get(v)
        if info is None:
            problems.append(
                f"DAG node {v!r} has no site in the program; add pyro.sample({v!r}, ...) or "
                f"pyro.deterministic({v!r}, ...) inside `with units(n):`"
            )
        elif not info.per_unit:
            problems.append(
                f"DAG node {v!r} is sampled outside `with units(n):`; DAG nodes are per-unit "
                "variables (global parameters are not DAG nodes): move it inside the plate"
            )
    for site in s.unit_sites:
        if site not in g and site not in model.auxiliary:
            problems.append(
                f"per-unit site {site!r} is not a node of the DAG; add it to the graph (as a "
                f"latent node if it is never observed) or declare it with auxiliary=[{site!r}]"
            )
    for a in sorted(model.auxiliary):
        if a not in s.sites:
            problems.append(f"auxiliary site {a!r} does not occur in the program (misspelled?)")
        elif not s.sites[a].per_unit:
            problems.append(
                f"auxiliary site {a!r} is a global site; auxiliary applies to per-unit sites only"
            )
    return problems


def check_against_dag(
    model: CausalModel,
    s: ProgramStructure,
    n: int,
    perturbed: Mapping[str, frozenset[str]],
    *,
    warn: bool = True,
) -> None:
    """Raise :class:`~causal_pp.errors.ModelGraphMismatchError` listing every problem; warn of unused edges."""
    g = model.graph
    problems = _structure_problems(model, s, n)
    for child in s.unit_sites:
        if child not in g:
            continue
        for p in sorted(s.parents(child) - set(g.parents(child))):
            via = s.through(child, p)
            how = f" (through auxiliary site{'s' if len(via) > 1 else ''} {', '.join(via)})" if via else ""
            problems.append(
                f"{child} reads {p}{how} but the DAG has no {edge_text(p, child)}; add the edge to "
                "the DAG or remove the dependency from the program"
            )
    for child, found in perturbed.items():
        for p in sorted(found - s.parents(child) - set(g.parents(child))):
            problems.append(
                f"{child} reads {p} but the DAG has no {edge_text(p, child)} (found by moving {p} and watching "
                f"{child}'s distribution move: the value leaves torch's tracking on the way, e.g. through "
                ".item(), .tolist(), .numpy() or Python control flow); add the edge to the DAG or remove "
                "the dependency from the program"
            )
    if problems:
        raise ModelGraphMismatchError(
            f"the program {model.name!r} does not encode its DAG {g.to_string()!r}:\n"
            + "\n".join(f"  - {p}" for p in problems),
            problems=tuple(problems),
        )
    if warn:
        unused = [
            (p, c)
            for p, c in g.edges
            if c in s.sites and p in s.sites and p not in s.parents(c) and p not in perturbed.get(c, ())
        ]
        if unused:
            lines = "; ".join(f"{edge_text(p, c)} ({c} does not read {p})" for p, c in unused)
            warn_user(
                f"causal_pp: the program {model.name!r} never uses the DAG edge"
                f"{'s' if len(unused) > 1 else ''} {lines}. The program encodes a graph without "
                "them -- a missing term in the program, or an edge the DAG can drop."
            )
