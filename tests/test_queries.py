"""Interventional and ATE queries: construction, normalisation, display, validation, hashing."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from causal_pp import (
    ATE,
    CausalGraph,
    CausalPPError,
    EmptyInterventionError,
    Interventional,
    LatentVariableQueryError,
    OverlappingQueryError,
    QueryError,
    UnknownVariableError,
)

GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y; Z -> X; W", latent=["U"])


# --- Interventional: construction and normalisation -------------------------------------


def test_interventional_single_outcome() -> None:
    q = Interventional("Y", do={"X": 1})
    assert q.outcome == ("Y",) and q.outcomes == ("Y",)
    assert q.do == (("X", 1.0),) and isinstance(q.do[0][1], float)
    assert q.treatments == ("X",)
    assert q.interventions == {"X": 1.0}
    assert q.given == () and q.conditions == () and q.evidence == {}


def test_interventional_normalises_do_and_given_but_keeps_outcome_order() -> None:
    q = Interventional(["Y2", "Y1"], do={"B": 2, "A": 1.5}, given={"Z": 3, "W": None})
    assert q.outcome == ("Y2", "Y1")  # joint outcome order is the user's (output layout)
    assert q.do == (("A", 1.5), ("B", 2.0))
    assert q.given == (("W", None), ("Z", 3.0))
    assert q.conditions == ("W", "Z")
    assert q.evidence == {"W": None, "Z": 3.0}
    # the same query written in a different order is equal and hashes equal
    r = Interventional(("Y2", "Y1"), do={"A": 1.5, "B": 2.0}, given={"W": None, "Z": 3.0})
    assert q == r and hash(q) == hash(r)


@pytest.mark.parametrize(
    "given",
    [["Z", "W"], ("W", "Z"), {"W": None, "Z": None}, iter(["Z", "W"])],
    ids=["list", "tuple", "dict-of-None", "iterator"],
)
def test_interventional_given_as_names(given: object) -> None:
    q = Interventional("Y", do={"X": 0}, given=given)  # type: ignore[arg-type]
    assert q.given == (("W", None), ("Z", None))
    assert q.conditions == ("W", "Z")


def test_interventional_given_as_a_single_name() -> None:
    assert Interventional("Y", do={"X": 0}, given="Z").given == (("Z", None),)
    assert Interventional("Y", do={"X": 0}, given=None).given == ()
    assert Interventional("Y", do={"X": 0}, given={}).given == ()


@pytest.mark.parametrize(
    "value",
    [
        1,
        1.5,
        -2,
        np.float64(0.25),
        np.int32(3),
        np.array(1.5),
        np.array([2.0]),
        torch.tensor(0.5),
        torch.tensor([3.0]),
    ],
    ids=[
        "int",
        "float",
        "negative",
        "np.float64",
        "np.int32",
        "np-0d",
        "np-1elem",
        "torch-0d",
        "torch-1elem",
    ],
)
def test_scalar_values_are_unwrapped_to_float(value: object) -> None:
    q = Interventional("Y", do={"X": value}, given={"Z": value})
    (_, v), (_, z) = q.do[0], q.given[0]
    assert type(v) is float and type(z) is float
    assert v == pytest.approx(float(np.asarray(value).reshape(-1)[0]))
    a = ATE("X", "Y", treated=value, control=99)
    assert type(a.treated) is float


def test_repr_and_str() -> None:
    q = Interventional("Y", do={"X": 1.0})
    assert repr(q) == "Interventional(outcome='Y', do={'X': 1.0})"
    assert str(q) == "P(Y | do(X=1))"
    q = Interventional(["Y1", "Y2"], do={"X": 0.5, "T": 2}, given=["Z"])
    assert repr(q) == "Interventional(outcome=['Y1', 'Y2'], do={'T': 2.0, 'X': 0.5}, given=['Z'])"
    assert str(q) == "P(Y1, Y2 | do(T=2, X=0.5), Z)"
    q = Interventional("Y", do={"X": 1}, given={"Z": 3, "W": None})
    assert repr(q) == "Interventional(outcome='Y', do={'X': 1.0}, given={'W': None, 'Z': 3.0})"
    assert str(q) == "P(Y | do(X=1), W, Z=3)"
    # the repr rebuilds an equal query
    assert eval(repr(q), {"Interventional": Interventional}) == q


def test_interventional_is_frozen_hashable_and_picklable() -> None:
    q = Interventional("Y", do={"X": 1}, given=["Z"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.outcome = ("M",)  # type: ignore[misc]
    assert {q: 1}[Interventional("Y", do={"X": 1.0}, given=["Z"])] == 1
    assert pickle.loads(pickle.dumps(q)) == q
    assert q != Interventional("Y", do={"X": 2}, given=["Z"])
    assert q != Interventional("Y", do={"X": 1}, given={"Z": 1})
    assert q != Interventional("Y", do={"X": 1})


# --- Interventional: construction errors ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outcome": "X", "do": {"X": 1}}, "both an outcome and intervened on"),
        ({"outcome": ["Y", "X"], "do": {"X": 1}}, "both an outcome and intervened on"),
        ({"outcome": "Y", "do": {"X": 1}, "given": ["Y"]}, "both an outcome and conditioned on"),
        ({"outcome": "Y", "do": {"X": 1}, "given": {"X": 1}}, "both intervened on and conditioned on"),
    ],
    ids=["outcome-do", "joint-outcome-do", "outcome-given", "do-given"],
)
def test_overlapping_roles(kwargs: dict, match: str) -> None:
    with pytest.raises(OverlappingQueryError, match=match):
        Interventional(**kwargs)


@pytest.mark.parametrize("do", [{}, None], ids=["empty", "None"])
def test_empty_do(do: object) -> None:
    with pytest.raises(EmptyInterventionError, match="do is empty"):
        Interventional("Y", do=do)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        [1.0],
        (1, 2),
        "1",
        None,
        True,
        np.array([1.0, 2.0]),
        torch.tensor([1.0, 2.0]),
        torch.tensor(True),
        float("nan"),
        float("inf"),
        1 + 2j,
    ],
    ids=[
        "list",
        "tuple",
        "str",
        "None",
        "bool",
        "np-vector",
        "torch-vector",
        "torch-bool",
        "nan",
        "inf",
        "complex",
    ],
)
def test_non_scalar_or_non_finite_values(value: object) -> None:
    with pytest.raises(QueryError):
        Interventional("Y", do={"X": value})
    if value is not None:  # None in given means "name only"
        with pytest.raises(QueryError):
            Interventional("Y", do={"X": 1}, given={"Z": value})
    with pytest.raises(QueryError):
        ATE("X", "Y", treated=value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outcome": [], "do": {"X": 1}}, "outcome is empty"),
        ({"outcome": "", "do": {"X": 1}}, "non-empty"),
        ({"outcome": ["Y", "Y"], "do": {"X": 1}}, "twice"),
        ({"outcome": 3, "do": {"X": 1}}, "outcome must be"),
        ({"outcome": [3], "do": {"X": 1}}, "non-empty variable names"),
        ({"outcome": "Y", "do": [("X", 1)]}, "mapping"),
        ({"outcome": "Y", "do": {"": 1}}, "keys"),
        ({"outcome": "Y", "do": {3: 1}}, "keys"),
        ({"outcome": "Y", "do": {"X": 1}, "given": ["Z", "Z"]}, "twice"),
        ({"outcome": "Y", "do": {"X": 1}, "given": {3: 1, "Z": 2}}, "keys"),
        ({"outcome": "Y", "do": {"X": 1}, "given": {"": None}}, "keys"),
        ({"outcome": "Y", "do": {"X": 1}, "given": 5}, "given"),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_malformed_queries(kwargs: dict, match: str) -> None:
    with pytest.raises(QueryError, match=match):
        Interventional(**kwargs)


def test_query_errors_are_causal_pp_and_value_errors() -> None:
    for cls in (QueryError, OverlappingQueryError, EmptyInterventionError, LatentVariableQueryError):
        assert issubclass(cls, CausalPPError) and issubclass(cls, ValueError)
    assert issubclass(OverlappingQueryError, QueryError)


# --- validation against a graph ---------------------------------------------------------


def test_validate_returns_the_query() -> None:
    q = Interventional("Y", do={"X": 1}, given=["Z", "W"])
    assert q.validate(GRAPH) is q
    a = ATE("X", "Y", given=["Z"])
    assert a.validate(GRAPH) is a


@pytest.mark.parametrize(
    ("query", "role"),
    [
        (Interventional("Q", do={"X": 1}), "outcome 'Q'"),
        (Interventional("Y", do={"Q": 1}), "intervention target 'Q'"),
        (Interventional("Y", do={"X": 1}, given=["Q"]), "conditioning variable 'Q'"),
        (Interventional(["Y", "Q"], do={"X": 1}), "outcome 'Q'"),
        (ATE("Q", "Y"), "intervention target 'Q'"),
        (ATE("X", "Q"), "outcome 'Q'"),
        (ATE("X", "Y", given=["Q"]), "conditioning variable 'Q'"),
    ],
    ids=["outcome", "do", "given", "joint-outcome", "ate-treatment", "ate-outcome", "ate-given"],
)
def test_validate_unknown_names(query: Interventional | ATE, role: str) -> None:
    with pytest.raises(UnknownVariableError, match=role) as info:
        query.validate(GRAPH)
    assert "nodes are" in str(info.value)


@pytest.mark.parametrize(
    ("query", "verb"),
    [
        (Interventional("U", do={"X": 1}), "ask about"),
        (Interventional("Y", do={"U": 1}), "intervene on"),
        (Interventional("Y", do={"X": 1}, given=["U"]), "condition on"),
        (ATE("U", "Y"), "intervene on"),
        (ATE("X", "U"), "ask about"),
        (ATE("X", "Y", given={"U": 0}), "condition on"),
    ],
    ids=["outcome", "do", "given", "ate-treatment", "ate-outcome", "ate-given"],
)
def test_validate_latent_names(query: Interventional | ATE, verb: str) -> None:
    with pytest.raises(LatentVariableQueryError, match=f"{verb} 'U', which is latent"):
        query.validate(GRAPH)


# --- ATE --------------------------------------------------------------------------------


def test_ate_construction_and_arms() -> None:
    a = ATE("X", "Y")
    assert (a.treatment, a.outcome, a.treated, a.control, a.given) == ("X", "Y", 1.0, 0.0, ())
    assert a.treatments == ("X",) and a.outcomes == ("Y",) and a.conditions == ()
    treated, control = a.arms()
    assert treated == Interventional("Y", do={"X": 1.0})
    assert control == Interventional("Y", do={"X": 0.0})
    c = ATE(["X"], ("Y",), treated=2, control=-1, given={"Z": 3, "W": None})
    assert c.treatment == "X" and c.outcome == "Y" and c.conditions == ("W", "Z")
    t, k = c.arms()
    assert t == Interventional("Y", do={"X": 2}, given={"Z": 3, "W": None})
    assert k == Interventional("Y", do={"X": -1}, given={"Z": 3, "W": None})
    names_only = ATE("X", "Y", given=["Z"]).arms()
    assert all(arm.given == (("Z", None),) for arm in names_only)


def test_ate_repr_str_hash() -> None:
    a = ATE("X", "Y", treated=0.123456789, control=0)
    assert repr(a) == "ATE(treatment='X', outcome='Y', treated=0.123456789, control=0.0)"
    assert eval(repr(a), {"ATE": ATE}) == a
    assert str(ATE("X", "Y")) == "E[Y | do(X=1)] - E[Y | do(X=0)]"
    g = ATE("X", "Y", given={"Z": 2})
    assert repr(g) == "ATE(treatment='X', outcome='Y', treated=1.0, control=0.0, given={'Z': 2.0})"
    assert str(g) == "E[Y | do(X=1), Z=2] - E[Y | do(X=0), Z=2]"
    assert repr(ATE("X", "Y", given=["Z"])).endswith("given=['Z'])")
    assert ATE("X", "Y") == ATE("X", "Y", 1, 0) and hash(ATE("X", "Y")) == hash(ATE("X", "Y", 1.0, 0.0))
    assert ATE("X", "Y") != ATE("X", "Y", treated=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.treated = 5.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(g)) == g


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"treatment": ["X", "T"], "outcome": "Y"}, QueryError, "exactly one treatment"),
        ({"treatment": "X", "outcome": ["Y1", "Y2"]}, QueryError, "exactly one outcome"),
        ({"treatment": "X", "outcome": "Y", "treated": 1, "control": 1.0}, QueryError, "both 1"),
        ({"treatment": "X", "outcome": "X"}, OverlappingQueryError, "intervened on"),
        ({"treatment": "X", "outcome": "Y", "given": ["Y"]}, OverlappingQueryError, "conditioned on"),
        ({"treatment": "X", "outcome": "Y", "given": ["X"]}, OverlappingQueryError, "conditioned on"),
        ({"treatment": "", "outcome": "Y"}, QueryError, "non-empty"),
        ({"treatment": [], "outcome": "Y"}, QueryError, "exactly one treatment"),
    ],
    ids=[
        "two-treatments",
        "two-outcomes",
        "treated-equals-control",
        "outcome-is-treatment",
        "given-outcome",
        "given-treatment",
        "empty-name",
        "no-treatment",
    ],
)
def test_ate_errors(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ATE(**kwargs)
