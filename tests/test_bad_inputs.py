"""Nothing silent (issue #12): a table of bad and edge-case inputs, each with the exact outcome.

Every row is one input a new user could give -- to the graph, a query, a model, the data, a fit,
an estimate or the command line -- and the exact error class it must raise (always a
:class:`~causal_pp.CausalPPError` subclass, before any work is done), or ``FINITE`` for an edge case
that is valid and must return a finite result. Rows that need a fitted posterior share one
hand-made posterior (no fitting), so the whole table runs in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.distributions as dist
import pytest
import torch

from causal_pp import (
    ATE,
    ETT,
    PN,
    ArgumentTypeError,
    CausalGraph,
    CausalModel,
    CausalPosterior,
    CausalPPError,
    Counterfactual,
    CyclicGraphError,
    DataError,
    DeviceError,
    DuplicateNodeError,
    EmptyDataError,
    EmptyInterventionError,
    GraphParseError,
    InterventionError,
    InvalidArgumentError,
    InvalidNodeNameError,
    LatentColumnError,
    LatentVariableQueryError,
    MissingColumnError,
    ModelGraphMismatchError,
    NonFiniteDataError,
    NonNumericDataError,
    NotIdentifiableError,
    OverlappingQueryError,
    QueryError,
    SelfLoopError,
    UnequalLengthError,
    UnexpectedColumnError,
    UnknownVariableError,
    causal_model,
    identify,
    units,
)
from causal_pp.cases import UnknownCaseError, get_case
from causal_pp.cli import main
from causal_pp.inference import NUTS, SVI, fit, fit_many, validate_data

FINITE = "finite"

GRAPH = CausalGraph.parse("U -> X; U -> Y; X -> M -> Y", latent=["U"])
BOW = CausalGraph.parse("X -> Y; X <-> Y")


@causal_model(CausalGraph.parse("X -> Y"))
def binary(n):  # type: ignore[no-untyped-def]
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    with units(n):
        x = pyro.sample("X", dist.Bernoulli(logits=a))
        pyro.sample("Y", dist.Normal(x, 1.0))


@causal_model(CausalGraph.parse("X -> Y"))
def linear(n):  # type: ignore[no-untyped-def]
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with units(n):
        x = pyro.sample("X", dist.Normal(0.0, 1.0))
        pyro.sample("Y", dist.Normal(b * x, 1.0))


def _posterior(model: CausalModel = linear) -> CausalPosterior:
    name = "a" if model is binary else "b"
    return CausalPosterior(
        model=model,
        samples={name: torch.linspace(0.5, 1.5, 8)},
        data={"X": torch.zeros(4), "Y": torch.zeros(4)},
        diagnostics={},
        method="given",
        seed=0,
    )


POST = _posterior()
BIN_POST = _posterior(binary)
DATA = {"X": [0.0, 1.0, 2.0], "Y": [1.0, 0.5, 0.0]}
FRONTDOOR = get_case("frontdoor")


def _fit(**options: Any) -> Callable[[], Any]:
    return lambda: fit(linear, DATA, **{"progress_bar": False, **options})


def _estimate(query: Any = None, post: CausalPosterior = POST, **options: Any) -> Callable[[], Any]:
    return lambda: post.estimate(query or ATE("X", "Y"), **{"num_units": 50, **options})


def _cli(*args: str) -> Callable[[], int]:
    return lambda: main(list(args))


CASES: dict[str, tuple[Callable[[], Any], Any]] = {
    # --- graphs -----------------------------------------------------------------------------
    "graph-cycle": (lambda: CausalGraph.parse("X -> Y -> X"), CyclicGraphError),
    "graph-self-loop": (lambda: CausalGraph.parse("X -> X"), SelfLoopError),
    "graph-parse-dangling": (lambda: CausalGraph.parse("X -> "), GraphParseError),
    "graph-parse-empty": (lambda: CausalGraph.parse(""), GraphParseError),
    "graph-parse-not-str": (lambda: CausalGraph.parse(42), CausalPPError),  # type: ignore[arg-type]
    "graph-latent-unknown": (lambda: CausalGraph.parse("X -> Y", latent=["V"]), UnknownVariableError),
    "graph-duplicate-node": (lambda: CausalGraph(nodes=["X", "X"], edges=[]), DuplicateNodeError),
    "graph-bad-name": (lambda: CausalGraph(nodes=["X", ""], edges=[]), InvalidNodeNameError),
    "graph-non-str-name": (lambda: CausalGraph(nodes=["X", 3], edges=[]), InvalidNodeNameError),  # type: ignore[list-item]
    "graph-bidirected-ok": (lambda: CausalGraph.parse("X -> Y; X <-> Y").latent, FINITE),
    # --- queries ----------------------------------------------------------------------------
    "query-empty-do": (lambda: ATE("X", "Y", treated=1.0, control=1.0), QueryError),
    "query-interventional-empty-do": (
        lambda: __import__("causal_pp").Interventional("Y", do={}),
        EmptyInterventionError,
    ),
    "query-overlap": (
        lambda: __import__("causal_pp").Interventional("Y", do={"Y": 1}),
        OverlappingQueryError,
    ),
    "query-nan-value": (lambda: ATE("X", "Y", treated=math.nan), QueryError),
    "query-inf-value": (lambda: ATE("X", "Y", treated=math.inf), QueryError),
    "query-bool-value": (lambda: ATE("X", "Y", treated=True), QueryError),
    "query-string-value": (lambda: ATE("X", "Y", treated="1"), QueryError),
    "query-tensor-value-ok": (lambda: ATE("X", "Y", treated=torch.tensor(2.0)).treated, FINITE),
    "query-numpy-value-ok": (lambda: ATE("X", "Y", treated=np.float32(2.0)).treated, FINITE),
    "query-two-treatments-ate": (lambda: ATE(["X", "Z"], "Y"), QueryError),
    "query-empty-outcome": (lambda: __import__("causal_pp").Interventional([], do={"X": 1}), QueryError),
    "query-duplicate-outcome": (
        lambda: __import__("causal_pp").Interventional(["Y", "Y"], do={"X": 1}),
        QueryError,
    ),
    "query-do-not-mapping": (lambda: __import__("causal_pp").Interventional("Y", do=["X"]), QueryError),
    "query-pn-outcome-value": (lambda: PN("X", "Y", outcome_value=2), QueryError),
    "query-ett-same": (lambda: ETT("X", "X"), QueryError),
    "query-cf-factual-list": (lambda: Counterfactual("Y", do={"X": 0}, factual=["X"]), QueryError),
    "identify-unknown": (lambda: identify(GRAPH, ATE("Q", "Y")), UnknownVariableError),
    "identify-latent": (lambda: identify(GRAPH, ATE("U", "Y")), LatentVariableQueryError),
    "identify-bow": (lambda: identify(BOW, ATE("X", "Y")), NotIdentifiableError),
    "identify-not-graph": (lambda: identify("X -> Y", ATE("X", "Y")), CausalPPError),  # type: ignore[arg-type]
    "identify-not-query": (lambda: identify(GRAPH, "P(Y | do(X))"), QueryError),
    "identify-assumption-not-bool-ok": (
        lambda: identify(GRAPH, ATE("X", "Y"), strict=False).identified,
        FINITE,
    ),
    # --- models -----------------------------------------------------------------------------
    "model-not-callable": (lambda: CausalModel(42, GRAPH), ArgumentTypeError),  # type: ignore[arg-type]
    "model-not-graph": (lambda: CausalModel(lambda n: None, "X -> Y"), ArgumentTypeError),  # type: ignore[arg-type]
    "model-check-n-zero": (lambda: linear.check(n=0), InvalidArgumentError),
    "model-check-n-negative": (lambda: linear.check(n=-1), InvalidArgumentError),
    "model-check-n-string": (lambda: linear.check(n="5"), ArgumentTypeError),  # type: ignore[arg-type]
    "model-check-n-bool": (lambda: linear.check(n=True), ArgumentTypeError),
    "model-check-missing-edge": (
        lambda: CausalModel(linear.fn, CausalGraph.parse("X; Y")).check(),
        ModelGraphMismatchError,
    ),
    "model-intervene-global": (lambda: linear.intervene({"b": 1.0}), InterventionError),
    "model-intervene-unknown": (lambda: linear.intervene({"Q": 1.0}), UnknownVariableError),
    "model-intervene-string": (lambda: linear.intervene({"X": "a"}), InterventionError),
    "model-intervene-empty": (lambda: linear.intervene({}), InterventionError),
    "model-value-outside-support": (lambda: binary.check_values({"X": 2.0}, role="do"), QueryError),
    "model-value-overflows-dtype": (lambda: linear.check_values({"X": 1e300}, role="do"), QueryError),
    "model-value-in-support-ok": (lambda: binary.check_values({"X": 1.0}, role="do"), None),
    # --- data -------------------------------------------------------------------------------
    "data-latent-column": (lambda: validate_data({**DATA, "U": [0, 0, 0]}, GRAPH), LatentColumnError),
    "data-missing-column": (lambda: validate_data({"X": [1.0]}, linear.graph), MissingColumnError),
    "data-extra-column": (
        lambda: validate_data({**DATA, "Q": [0, 0, 0]}, linear.graph),
        UnexpectedColumnError,
    ),
    "data-nan": (
        lambda: validate_data({"X": [0.0, math.nan], "Y": [1.0, 2.0]}, linear.graph),
        NonFiniteDataError,
    ),
    "data-inf": (
        lambda: validate_data({"X": [0.0, math.inf], "Y": [1.0, 2.0]}, linear.graph),
        NonFiniteDataError,
    ),
    "data-strings": (
        lambda: validate_data({"X": ["a", "b"], "Y": [1.0, 2.0]}, linear.graph),
        NonNumericDataError,
    ),
    "data-unequal": (lambda: validate_data({"X": [0.0], "Y": [1.0, 2.0]}, linear.graph), UnequalLengthError),
    "data-zero-rows": (lambda: validate_data({"X": [], "Y": []}, linear.graph), EmptyDataError),
    "data-no-columns": (lambda: validate_data({}, linear.graph), EmptyDataError),
    "data-not-a-table": (lambda: validate_data([1, 2], linear.graph), DataError),
    "data-scalar-column": (lambda: validate_data({"X": 1.0, "Y": 2.0}, linear.graph), DataError),
    "data-frame-ok": (lambda: validate_data(pd.DataFrame(DATA), linear.graph)["X"].sum().item(), FINITE),
    "data-bool-column-ok": (
        lambda: validate_data({"X": [True, False], "Y": [1.0, 2.0]}, linear.graph)["X"].sum().item(),
        FINITE,
    ),
    "data-outside-support": (
        lambda: fit(binary, {"X": [0.0, 2.0], "Y": [1.0, 2.0]}, method="svi", progress_bar=False),
        CausalPPError,
    ),
    # --- fit options ------------------------------------------------------------------------
    "fit-method-unknown": (_fit(method="mcmc"), InvalidArgumentError),
    "fit-lr-zero": (_fit(method="svi", lr=0.0), InvalidArgumentError),
    "fit-lr-negative": (_fit(method="svi", lr=-0.1), InvalidArgumentError),
    "fit-lr-nan": (_fit(method="svi", lr=math.nan), InvalidArgumentError),
    "fit-lr-string": (_fit(method="svi", lr="fast"), ArgumentTypeError),
    "fit-num-particles-zero": (_fit(method="svi", num_particles=0), InvalidArgumentError),
    "fit-num-samples-bool": (_fit(method="svi", num_samples=True), ArgumentTypeError),
    "fit-num-samples-float": (_fit(method="svi", num_samples=10.0), ArgumentTypeError),
    "fit-num-steps-small": (_fit(method="svi", num_steps=2), InvalidArgumentError),
    "fit-restarts-zero": (_fit(method="svi", restarts=0), InvalidArgumentError),
    "fit-restart-steps-small": (_fit(method="svi", restart_steps=2), InvalidArgumentError),
    "fit-restart-steps-bool": (_fit(method="svi", restart_steps=True), ArgumentTypeError),
    "fit-restart-init-unknown": (_fit(method="svi", restart_init="random"), InvalidArgumentError),
    "fit-guide-unknown": (_fit(method="svi", guide="flow"), InvalidArgumentError),
    "fit-importance-int": (_fit(method="svi", importance=1), ArgumentTypeError),
    "fit-lr-decay-above-one": (_fit(method="svi", lr_decay=2.0), InvalidArgumentError),
    "fit-nuts-option-for-svi": (_fit(method="svi", warmup_steps=10), InvalidArgumentError),
    "fit-svi-option-for-nuts": (_fit(method="nuts", lr=0.1), InvalidArgumentError),
    "fit-num-chains-zero": (_fit(method="nuts", num_chains=0), InvalidArgumentError),
    "fit-accept-prob-one": (_fit(method="nuts", target_accept_prob=1.0), InvalidArgumentError),
    "fit-seed-string": (_fit(method="svi", seed="abc"), ArgumentTypeError),
    "fit-seed-none": (_fit(method="svi", seed=None), ArgumentTypeError),
    "fit-seed-float": (_fit(method="svi", seed=1.5), ArgumentTypeError),
    "fit-seed-negative": (_fit(method="svi", seed=-1), InvalidArgumentError),
    "fit-device-tpu": (_fit(method="svi", device="tpu"), DeviceError),
    "fit-device-cuda-missing": (
        _fit(method="svi", device="cuda")
        if not torch.cuda.is_available()
        else _fit(method="svi", device="tpu"),
        DeviceError,
    ),
    "fit-threads-zero": (_fit(method="svi", threads=0), InvalidArgumentError),
    "fit-threads-string": (_fit(method="svi", threads="many"), InvalidArgumentError),
    "fit-many-threads-string": (
        lambda: fit_many(linear, [DATA], threads="many", progress_bar=False),
        InvalidArgumentError,
    ),
    "fit-progress-bar-string": (_fit(method="svi", progress_bar="no"), ArgumentTypeError),
    "fit-not-model": (lambda: fit(lambda n: None, DATA), ArgumentTypeError),
    "fit-method-object-ok": (lambda: SVI(lr=0.01).lr, FINITE),
    "fit-nuts-object-bad": (lambda: NUTS(max_tree_depth=0), InvalidArgumentError),
    # --- estimate options -------------------------------------------------------------------
    "estimate-num-units-zero": (_estimate(num_units=0), InvalidArgumentError),
    "estimate-num-units-bool": (_estimate(num_units=True), ArgumentTypeError),
    "estimate-num-samples-zero": (_estimate(num_samples=0), InvalidArgumentError),
    "estimate-num-samples-bool": (_estimate(num_samples=True), ArgumentTypeError),
    "estimate-seed-string": (_estimate(seed="abc"), ArgumentTypeError),
    "estimate-seed-negative": (_estimate(seed=-1), InvalidArgumentError),
    "estimate-allow-string": (_estimate(allow_unidentified="yes"), ArgumentTypeError),
    "estimate-not-query": (lambda: POST.estimate("ATE"), QueryError),
    "estimate-given-without-value": (
        _estimate(__import__("causal_pp").Interventional("Y", do={"X": 1}, given=["Q"])),
        UnknownVariableError,
    ),
    "estimate-do-outside-support": (_estimate(ATE("X", "Y", treated=2.0), post=BIN_POST), QueryError),
    "estimate-do-overflows-dtype": (_estimate(ATE("X", "Y", treated=1e300)), QueryError),
    "estimate-num-samples-above-draws-ok": (lambda: _estimate(num_samples=100)().mean, FINITE),
    "estimate-one-unit-ok": (lambda: _estimate(num_units=1)().mean, FINITE),
    "estimate-interval-prob-one": (lambda: _estimate()().interval(1.0), InvalidArgumentError),
    # --- case library -----------------------------------------------------------------------
    "case-unknown": (lambda: get_case("frontdor"), UnknownCaseError),
    "case-simulate-do-latent": (lambda: FRONTDOOR.simulate(5, do={"U": 1.0}), InterventionError),
    "case-simulate-zero": (lambda: FRONTDOOR.simulate(0), CausalPPError),
}

# CLI rows: the exit status (2 = bad input, one line on stderr; 1 = refused).
CLI_CASES: dict[str, tuple[list[str], int]] = {
    "cli-sizes-not-int": (["converge", "--case", "frontdoor", "--sizes", "abc"], 2),
    "cli-sizes-float": (["converge", "--case", "frontdoor", "--sizes", "30.5"], 2),
    "cli-sizes-below-two": (["converge", "--case", "frontdoor", "--sizes", "1"], 2),
    "cli-case-empty": (["converge", "--case", ""], 2),
    "cli-case-unknown": (["converge", "--case", "frontdor"], 2),
    "cli-query-unknown": (["converge", "--case", "frontdoor", "--query", "nope"], 2),
    "cli-unidentified-without-flag": (["converge", "--case", "bow"], 2),
    "cli-device-tpu": (["converge", "--case", "frontdoor", "--device", "tpu"], 2),
    "cli-replicates-zero": (["converge", "--case", "frontdoor", "--replicates", "0"], 2),
    "cli-replicates-text": (["converge", "--case", "frontdoor", "--replicates", "two"], 2),
    "cli-seed-negative": (["converge", "--case", "frontdoor", "--seed", "-1"], 2),
    "cli-unknown-command": (["conv"], 2),
    "cli-identify-cycle": (["identify", "--graph", "X -> Y -> X", "--do", "X", "--outcome", "Y"], 2),
    "cli-identify-bad-value": (["identify", "--graph", "X -> Y", "--do", "X=abc", "--outcome", "Y"], 2),
    "cli-identify-nan-value": (["identify", "--graph", "X -> Y", "--do", "X=nan", "--outcome", "Y"], 2),
    "cli-identify-refused": (["identify", "--graph", "X -> Y; X <-> Y", "--do", "X", "--outcome", "Y"], 1),
    "cli-identify-missing-flag": (["identify", "--graph", "X -> Y"], 2),
    "cli-bounds-no-file": (
        [
            "bounds",
            "--graph",
            "X -> Y; X <-> Y",
            "--data",
            "/nonexistent.csv",
            "--do",
            "X=1",
            "--outcome",
            "Y",
        ],
        2,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_its_exact_error(name: str) -> None:
    call, expected = CASES[name]
    if expected is FINITE:
        value = call()
        assert value is not None and math.isfinite(float(value) if not isinstance(value, tuple) else 0.0), (
            value
        )
        return
    if expected is None:
        assert call() is None
        return
    with pytest.raises(expected) as info:
        call()
    assert isinstance(info.value, CausalPPError), (
        f"{name}: {type(info.value).__name__} is not a CausalPPError"
    )
    assert str(info.value), f"{name}: an empty message"


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_bad_command_line_exits_with_one_line(
    name: str, tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written: check the folder stays empty
    args, code = CLI_CASES[name]
    assert main([*args, *(["--out", str(tmp_path / "out")] if args[0] == "converge" else [])]) == code
    err = capsys.readouterr().err
    if code == 2:
        assert err.startswith("causal-pp: error:") and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir()), "a rejected command created files"


def test_the_table_is_long_enough() -> None:
    assert len(CASES) + len(CLI_CASES) >= 80


def test_an_internal_error_exits_3_and_points_to_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import causal_pp.cli.identify as identify_cmd

    def boom(args: Any) -> int:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(identify_cmd, "run", boom)
    assert main(["identify", "--graph", "X -> Y", "--do", "X", "--outcome", "Y"]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "--debug" in err and err.count("\n") == 1
    with pytest.raises(RuntimeError):
        main(["--debug", "identify", "--graph", "X -> Y", "--do", "X", "--outcome", "Y"])


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    from causal_pp import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"causal-pp {__version__}"


def test_svi_whose_loss_rises_is_never_called_converged() -> None:
    from causal_pp.inference.svi import plateau_test

    rising = np.r_[np.full(50, 100.0), np.full(50, 140.0)] + np.random.default_rng(0).normal(0, 1, 100)
    converged, drop, _, trend = plateau_test(rising, 50)
    assert not converged and drop < 0 and trend == "rising"


def test_svi_that_diverges_raises() -> None:
    from causal_pp import InferenceError

    data = FRONTDOOR.simulate(100, seed=1)
    # Pyro's SVI loop: the guide's covariance breaks down at this rate
    with pytest.raises(InferenceError, match="lower lr"):
        FRONTDOOR.model.fit(
            data, method="svi", lr=5.0, num_steps=200, restarts=2, seed=0, progress_bar=False, batched=False
        )
    # the vectorised path: each unit's likelihood is finite, their sum overflows
    data["Y"] = data["Y"] * 1.5e18
    with pytest.raises(InferenceError, match="lower lr"):
        FRONTDOOR.model.fit(
            data, method="svi", num_steps=200, restarts=2, seed=0, progress_bar=False, batched=True
        )
