"""The exceptions causal_pp raises.

Every error is a subclass of :class:`CausalPPError`, so ``except CausalPPError`` catches
anything this library refuses. Errors about bad input also subclass :class:`ValueError`
(or :class:`TypeError`), so code written against plain Python conventions keeps working.
Each message names the offending thing and says how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArgumentTypeError",
    "CaseError",
    "CausalPPError",
    "CounterfactualError",
    "CyclicGraphError",
    "DataError",
    "DeviceError",
    "DuplicateCaseError",
    "DuplicateNodeError",
    "EmptyDataError",
    "EmptyInterventionError",
    "GraphError",
    "GraphParseError",
    "IncompatibleDataError",
    "InferenceError",
    "InterventionError",
    "InvalidArgumentError",
    "InvalidNodeNameError",
    "LatentColumnError",
    "LatentVariableQueryError",
    "MissingColumnError",
    "ModelGraphMismatchError",
    "NonFiniteDataError",
    "NonNumericDataError",
    "NotIdentifiableError",
    "OverlappingQueryError",
    "QueryError",
    "SelfLoopError",
    "TooManyResponseTypesError",
    "UnbatchableModelError",
    "UnequalLengthError",
    "UnexpectedColumnError",
    "UnknownCaseError",
    "UnknownVariableError",
]


class CausalPPError(Exception):
    """Base class of every error raised by causal_pp."""


# --- graphs -----------------------------------------------------------------------------


class GraphError(CausalPPError, ValueError):
    """A causal graph is malformed."""


class GraphParseError(GraphError):
    """A graph string passed to :meth:`CausalGraph.parse` cannot be read."""


class CyclicGraphError(GraphError):
    """The edges contain a directed cycle; ``.cycle`` lists its nodes in order."""

    def __init__(self, message: str, cycle: tuple[str, ...]) -> None:
        super().__init__(message)
        self.cycle = cycle


class SelfLoopError(GraphError):
    """An edge points from a node to itself."""


class DuplicateNodeError(GraphError):
    """A node name is given twice in ``nodes=``."""


class InvalidNodeNameError(GraphError, TypeError):
    """A node name is empty, not a string, or contains characters a graph string cannot hold."""


class UnknownVariableError(CausalPPError, ValueError):
    """A name refers to no node of the graph (or no site of the model)."""


# --- queries ----------------------------------------------------------------------------


class QueryError(CausalPPError, ValueError):
    """A causal query is malformed or does not fit its graph."""


class LatentVariableQueryError(QueryError):
    """A query intervenes on, conditions on, or asks about a latent (never observed) variable."""


class OverlappingQueryError(QueryError):
    """The same variable plays two roles in a query (e.g. it is both outcome and treatment)."""


class EmptyInterventionError(QueryError):
    """A query has an empty ``do``."""


class NotIdentifiableError(CausalPPError):
    """The query cannot be computed from the distribution of the observed variables.

    Attributes
    ----------
    query
        The refused query.
    graph
        The :class:`~causal_pp.CausalGraph` the query was asked of.
    admg
        The latent projection (a y0 ``NxMixedGraph``) on which identification was decided.
    reason
        The plain-words reason (also the tail of the message).
    """

    def __init__(
        self, message: str, *, query: Any = None, graph: Any = None, admg: Any = None, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.query = query
        self.graph = graph
        self.admg = admg
        self.reason = reason


# --- models -----------------------------------------------------------------------------


class ModelGraphMismatchError(CausalPPError):
    """The Pyro program does not encode the DAG attached to it.

    ``.problems`` lists one human-readable line per offending site or edge.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class UnbatchableModelError(CausalPPError, ValueError):
    """The Pyro program does not broadcast over leading batch dimensions (posterior draws, SVI
    particles, data sets), e.g. it indexes a vector parameter from the left (``w[0]``).

    ``.site`` names the first site whose log density mixes draws (None when the batched run fails
    outright).
    """

    def __init__(self, message: str, site: str | None = None) -> None:
        super().__init__(message)
        self.site = site


class InterventionError(CausalPPError, ValueError):
    """An intervention targets something that cannot be intervened on."""


class CounterfactualError(CausalPPError):
    """A model cannot be made into a twin-world counterfactual program.

    Raised for a per-unit site whose distribution has no shared-noise construction
    (``.site`` names it).
    """

    def __init__(self, message: str, site: str | None = None) -> None:
        super().__init__(message)
        self.site = site


# --- the case library -------------------------------------------------------------------


class CaseError(CausalPPError):
    """A case of the case library is malformed or cannot be registered."""


class UnknownCaseError(CaseError, KeyError):
    """No case of that name is registered; the message lists the available names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class DuplicateCaseError(CaseError, ValueError):
    """A case of that name is already registered (pass ``replace=True`` to overwrite it)."""


# --- data -------------------------------------------------------------------------------


class DataError(CausalPPError, ValueError):
    """Observational data cannot be used to fit the model."""


class MissingColumnError(DataError):
    """An observed variable of the graph has no column in the data."""


class LatentColumnError(DataError):
    """The data holds a column for a latent variable, which by definition is never observed."""


class UnexpectedColumnError(DataError):
    """The data holds a column that is not a variable of the graph."""


class NonFiniteDataError(DataError):
    """A column holds NaN or infinite values."""


class NonNumericDataError(DataError):
    """A column is not numeric."""


class UnequalLengthError(DataError):
    """Columns have different numbers of rows."""


class EmptyDataError(DataError):
    """The data has no rows."""


class IncompatibleDataError(DataError):
    """The observed (or experimental) distribution is impossible under the graph.

    Raised when (almost) every posterior draw of the observed distribution violates the
    constraints the graph puts on it (for example the instrumental inequality), or when an
    exact distribution does. ``.acceptance`` is the share of draws that were compatible (None for
    an exact distribution), ``.violation`` the total constraint violation of an exact one.

    Examples
    --------
    >>> err = IncompatibleDataError("the data contradict the graph", acceptance=0.0)
    >>> err.acceptance
    0.0
    """

    def __init__(self, message: str, *, acceptance: float | None = None, violation: float | None = None):
        super().__init__(message)
        self.acceptance = acceptance
        self.violation = violation


class TooManyResponseTypesError(QueryError):
    """The response-function model of the graph is too large for a linear program.

    ``.variable`` names the variable whose response types explode (None when only their joint
    count does), ``.count`` is the count that exceeded ``.limit``.

    Examples
    --------
    >>> err = TooManyResponseTypesError("too many", variable="Y", count=2**32, limit=2**16)
    >>> err.variable, err.count > err.limit
    ('Y', True)
    """

    def __init__(self, message: str, *, variable: str | None = None, count: float = 0, limit: int = 0):
        super().__init__(message)
        self.variable = variable
        self.count = count
        self.limit = limit


# --- runtime ----------------------------------------------------------------------------


class DeviceError(CausalPPError, RuntimeError):
    """The requested torch device is not available."""


class InferenceError(CausalPPError, RuntimeError):
    """Inference could not run or produced unusable output."""


class InvalidArgumentError(CausalPPError, ValueError):
    """An option has an invalid value (e.g. a non-positive number of samples)."""


class ArgumentTypeError(CausalPPError, TypeError):
    """An argument has the wrong type (e.g. a plain function where a CausalModel is needed)."""


# --- warnings -------------------------------------------------------------------------------


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a warning attributed to the user's code: the first caller outside causal_pp.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("causal_pp: something to know")
    >>> str(caught[0].message)
    'causal_pp: something to know'
    """
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    # frames of causal_pp, and of the stdlib dispatch/context machinery between them, are skipped
    skip = ("functools.py", "contextlib.py")
    level, frame = 2, sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not (path.startswith(package) or os.path.basename(path) in skip):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
