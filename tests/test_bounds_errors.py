"""Every refusal of the bounds: the exact error class, raised before any work where it can be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from causal_pp import (
    ATE,
    ETT,
    PN,
    ArgumentTypeError,
    CausalGraph,
    CausalPPError,
    Counterfactual,
    DataError,
    EmptyDataError,
    Interventional,
    InvalidArgumentError,
    LatentColumnError,
    LatentVariableQueryError,
    MissingColumnError,
    NonFiniteDataError,
    NonNumericDataError,
    QueryError,
    UnequalLengthError,
    UnexpectedColumnError,
    UnknownVariableError,
)
from causal_pp.partial import (
    Bounds,
    IncompatibleDataError,
    TooManyResponseTypesError,
    bounds,
    bounds_from_distribution,
    tian_pearl,
)

IV = CausalGraph.parse("Z -> X -> Y; X <-> Y")
BOW = CausalGraph.parse("X -> Y; X <-> Y")
RNG = np.random.default_rng(0)
DATA = pd.DataFrame({"Z": RNG.integers(0, 2, 40), "X": RNG.integers(0, 2, 40), "Y": RNG.integers(0, 2, 40)})
BOW_DATA = DATA[["X", "Y"]]
Q = ATE("X", "Y")


def _iv(**kw: Any) -> Callable[[], object]:
    return lambda: bounds(IV, Q, DATA, num_samples=5, **kw)


def _data(frame: Any, graph: CausalGraph = IV, query: Any = Q) -> Callable[[], object]:
    return lambda: bounds(graph, query, frame, num_samples=5)


BIG = CausalGraph.parse("A -> Y; B -> Y; C -> Y; D -> Y; X -> Y; X <-> Y")  # Y: 2^(2^5) types

CASES: dict[str, tuple[Callable[[], object], type[Exception]]] = {
    # options: type, range, finiteness (bool is not a number)
    "num_samples_bool": (lambda: bounds(IV, Q, DATA, num_samples=True), ArgumentTypeError),
    "num_samples_zero": (lambda: bounds(IV, Q, DATA, num_samples=0), InvalidArgumentError),
    "num_samples_float": (lambda: bounds(IV, Q, DATA, num_samples=1.5), ArgumentTypeError),
    "num_samples_str": (lambda: bounds(IV, Q, DATA, num_samples="10"), ArgumentTypeError),
    "seed_negative": (_iv(seed=-1), InvalidArgumentError),
    "seed_float": (_iv(seed=1.0), ArgumentTypeError),
    "seed_none": (_iv(seed=None), ArgumentTypeError),
    "seed_bool": (_iv(seed=True), ArgumentTypeError),
    "prior_zero": (_iv(prior=0.0), InvalidArgumentError),
    "prior_negative": (_iv(prior=-1.0), InvalidArgumentError),
    "prior_nan": (_iv(prior=float("nan")), InvalidArgumentError),
    "prior_inf": (_iv(prior=float("inf")), InvalidArgumentError),
    "prior_bool": (_iv(prior=True), ArgumentTypeError),
    "prior_str": (_iv(prior="1"), ArgumentTypeError),
    "min_acceptance_zero": (_iv(min_acceptance=0.0), InvalidArgumentError),
    "min_acceptance_above_one": (_iv(min_acceptance=1.5), InvalidArgumentError),
    "min_acceptance_bool": (_iv(min_acceptance=True), ArgumentTypeError),
    "max_types_zero": (_iv(max_response_types=0), InvalidArgumentError),
    "max_types_float": (_iv(max_response_types=2.5), ArgumentTypeError),
    "outcome_range_reversed": (_iv(outcome_range=(1, 0)), InvalidArgumentError),
    "outcome_range_infinite": (_iv(outcome_range=(0, float("inf"))), InvalidArgumentError),
    "outcome_range_scalar": (_iv(outcome_range=5), ArgumentTypeError),
    "outcome_range_short": (_iv(outcome_range=(0,)), ArgumentTypeError),
    "outcome_range_str": (_iv(outcome_range=("a", 1)), ArgumentTypeError),
    "outcome_value_float": (_iv(outcome_value=1.5), ArgumentTypeError),
    "outcome_value_bool": (_iv(outcome_value=True), ArgumentTypeError),
    "domains_list": (_iv(domains=[0, 1]), ArgumentTypeError),
    "domains_unknown_var": (_iv(domains={"Q": [0]}), InvalidArgumentError),
    "domains_latent_var": (_iv(domains={"U_X_Y": [0]}), InvalidArgumentError),
    "domains_non_integer": (_iv(domains={"X": [0.5]}), ArgumentTypeError),
    "domains_empty": (_iv(domains={"X": []}), InvalidArgumentError),
    "options_checked_before_data": (lambda: bounds(IV, Q, None, num_samples=0), InvalidArgumentError),
    # graph and query
    "graph_string": (lambda: bounds("Z -> X -> Y", Q, DATA), ArgumentTypeError),
    "query_ett": (lambda: bounds(IV, ETT("X", "Y"), DATA), ArgumentTypeError),
    "query_counterfactual": (
        lambda: bounds(IV, Counterfactual("Y", {"X": 1}, {"X": 0}), DATA),
        ArgumentTypeError,
    ),
    "query_string": (lambda: bounds(IV, "ATE", DATA), ArgumentTypeError),
    "query_joint_outcome": (_data(DATA, query=Interventional(["Y", "Z"], do={"X": 1})), QueryError),
    "query_given_without_value": (
        _data(DATA, query=Interventional("Y", do={"X": 1}, given=["Z"])),
        QueryError,
    ),
    "query_latent": (_data(DATA, query=Interventional("U_X_Y", do={"X": 1})), LatentVariableQueryError),
    "query_unknown_variable": (_data(DATA, query=ATE("W", "Y")), UnknownVariableError),
    "do_value_not_in_data": (_data(DATA, query=ATE("X", "Y", treated=2, control=0)), QueryError),
    "given_value_not_in_data": (
        _data(DATA, query=Interventional("Y", do={"X": 1}, given={"Z": 5})),
        QueryError,
    ),
    "outcome_value_not_in_data": (_iv(outcome_value=3), QueryError),
    "outcome_value_with_pn": (lambda: bounds(IV, PN("X", "Y"), DATA, outcome_value=1), InvalidArgumentError),
    "pn_ternary_outcome": (_data(DATA.assign(Y=RNG.integers(0, 3, 40)), query=PN("X", "Y")), QueryError),
    # data
    "data_list": (_data([[0, 1, 1]]), ArgumentTypeError),
    "data_missing_column": (_data(DATA[["X", "Y"]]), MissingColumnError),
    "data_latent_column": (_data(DATA.assign(U_X_Y=0)), LatentColumnError),
    "data_extra_column": (_data(DATA.assign(W=0)), UnexpectedColumnError),
    "data_strings": (_data(DATA.assign(Z=["a"] * 40)), NonNumericDataError),
    "data_nan": (_data(DATA.assign(Z=np.where(np.arange(40) == 3, np.nan, 0.0))), NonFiniteDataError),
    "data_empty": (_data(DATA.iloc[:0]), EmptyDataError),
    "data_unequal_lengths": (_data({"Z": [0, 1], "X": [0, 1, 1], "Y": [0, 1]}), UnequalLengthError),
    "data_two_dimensional": (_data({"Z": np.zeros((3, 2)), "X": np.zeros(3), "Y": np.zeros(3)}), DataError),
    "data_non_integer": (_data(DATA.assign(X=DATA["X"] * 0.5)), DataError),
    "data_continuous_outcome": (_data(DATA.assign(Y=RNG.normal(size=40))), DataError),
    # outcome_range combinations
    "range_with_pn": (
        lambda: bounds(BOW, PN("X", "Y"), BOW_DATA, outcome_range=(0, 1)),
        InvalidArgumentError,
    ),
    "range_with_given": (
        lambda: bounds(IV, Interventional("Y", do={"X": 1}, given={"Z": 1}), DATA, outcome_range=(0, 1)),
        QueryError,
    ),
    "range_with_outcome_value": (_iv(outcome_range=(0, 1), outcome_value=1), InvalidArgumentError),
    "range_with_experimental": (_iv(outcome_range=(0, 1), experimental=BOW_DATA), InvalidArgumentError),
    "outcome_outside_range": (_iv(outcome_range=(0, 0.5)), DataError),
    "range_continuous_treatment": (
        lambda: bounds(BOW, Q, BOW_DATA.assign(X=RNG.normal(size=40)), outcome_range=(0, 1)),
        DataError,
    ),
    # experimental data
    "experimental_joint_do": (
        lambda: bounds(IV, Interventional("Y", do={"X": 1, "Z": 0}), DATA, experimental=BOW_DATA),
        InvalidArgumentError,
    ),
    "experimental_extra_column": (_iv(experimental=DATA), UnexpectedColumnError),
    "experimental_missing_column": (_iv(experimental=DATA[["X"]]), MissingColumnError),
    # size
    "too_many_types_variable": (
        lambda: bounds(BIG, Q, pd.DataFrame({v: RNG.integers(0, 2, 40) for v in BIG.observed})),
        TooManyResponseTypesError,
    ),
    "too_many_types_joint": (_iv(max_response_types=10), TooManyResponseTypesError),
    # exact distributions
    "distribution_without_weights": (lambda: bounds_from_distribution(IV, Q, DATA), MissingColumnError),
    "distribution_negative_weight": (
        lambda: bounds_from_distribution(IV, Q, DATA.assign(p=-1.0)),
        DataError,
    ),
    "distribution_weight_name_type": (
        lambda: bounds_from_distribution(IV, Q, DATA.assign(p=1.0), weight=1),
        ArgumentTypeError,
    ),
    "distribution_incompatible": (
        lambda: bounds_from_distribution(
            IV,
            Q,
            pd.DataFrame(
                {"Z": [0, 0, 1, 1], "X": [0, 1, 0, 1], "Y": [0, 0, 1, 1], "p": [0.1, 0.4, 0.1, 0.4]}
            ),
        ),
        IncompatibleDataError,
    ),
    # the result and the closed forms
    "interval_prob_out_of_range": (lambda: _result().interval(1.5), InvalidArgumentError),
    "identified_set_prob_bool": (lambda: _result().identified_set(True), ArgumentTypeError),
    "bounds_unequal_draws": (
        lambda: Bounds("q", np.zeros(2), np.zeros(3), True, "m", "", 1.0, 2, 0),
        InvalidArgumentError,
    ),
    "tian_pearl_shape": (lambda: tian_pearl(np.ones(3) / 3, [0.5, 0.5]), InvalidArgumentError),
    "tian_pearl_not_a_distribution": (
        lambda: tian_pearl([[0.5, 0.5], [0.5, 0.5]], [0.5, 0.5]),
        InvalidArgumentError,
    ),
}


def _result() -> Bounds:
    return Bounds("q", np.zeros(3), np.ones(3), True, "canonical-lp", "", 1.0, 3, 0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_refusal(name: str) -> None:
    call, expected = CASES[name]
    with pytest.raises(expected) as info:
        call()
    assert isinstance(info.value, CausalPPError), (
        f"{name}: {type(info.value).__name__} is not a CausalPPError"
    )


def test_messages_name_the_option_and_the_accepted_values() -> None:
    with pytest.raises(ArgumentTypeError, match=r"num_samples must be a positive integer .*True \(bool\)"):
        bounds(IV, Q, DATA, num_samples=True)
    with pytest.raises(InvalidArgumentError, match=r"prior must be a finite number in \(0, inf\]"):
        bounds(IV, Q, DATA, prior=0.0)


def test_too_many_types_names_the_variable_and_the_count() -> None:
    data = pd.DataFrame({v: RNG.integers(0, 2, 40) for v in BIG.observed})
    with pytest.raises(
        TooManyResponseTypesError, match=r"variable 'Y' has 4,294,967,296 response types"
    ) as info:
        bounds(BIG, Q, data)
    assert info.value.variable == "Y" and info.value.count == 2.0**32


def test_a_continuous_outcome_is_refused_with_the_way_out() -> None:
    with pytest.raises(DataError, match=r"outcome_range=\(low, high\)"):
        bounds(IV, Q, DATA.assign(Y=RNG.normal(size=40)))
