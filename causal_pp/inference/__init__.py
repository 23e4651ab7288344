"""Fitting a causal model to observational data: data validation, NUTS and SVI.

:func:`fit` conditions the observed DAG nodes on the data (``pyro.condition``); latent DAG
nodes (and auxiliary per-unit sample sites) become per-unit latent variables that the
inference algorithm integrates over together with the global parameters. It returns a
:class:`~causal_pp.posterior.CausalPosterior` holding draws of the global parameters -- all
that estimation needs, since causal estimates simulate fresh units.

Before anything runs, :func:`validate_data` checks the data, and the program is checked
against its DAG (:meth:`~causal_pp.CausalModel.check`).
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.distributions import LowRankMultivariateNormal, MultivariateNormal
from pyro.infer import (
    MCMC,
    NUTS,
    SVI,
    JitTrace_ELBO,
    JitTraceEnum_ELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    config_enumerate,
)
from pyro.infer.autoguide import (
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    init_to_median,
)
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch.distributions import biject_to
from tqdm.auto import tqdm

from ..errors import (
    ArgumentTypeError,
    DataError,
    DeviceError,
    EmptyDataError,
    InferenceError,
    InvalidArgumentError,
    LatentColumnError,
    MissingColumnError,
    NonFiniteDataError,
    NonNumericDataError,
    UnequalLengthError,
    UnexpectedColumnError,
)
from ..graph import CausalGraph
from ..posterior import CausalPosterior

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..model import CausalModel, ProgramStructure

__all__ = ["fit", "resolve_device", "validate_data"]

R_HAT_WARN = 1.05
"""NUTS warns when a global parameter's split R-hat exceeds this."""
ESS_WARN = 100.0
"""NUTS warns when a global parameter's effective sample size is below this."""
UNIT_INFLATION = 1.1
"""Importance correction: per-unit proposals are widened by this factor."""
UNIT_NEWTON_STEPS = 3
"""Importance correction: Newton steps from the guide's conditional mean towards each unit's
conditional mode, for every draw of the globals (see ``_importance_correct``)."""
IS_MIN_ESS = 100.0
"""SVI keeps the raw guide draws (and warns) when the importance correction's ESS is below this."""
IS_ROUND1_MIN_ESS = IS_MIN_ESS / 4
"""The correction stops after its first round when that round's ESS is below this: the second
round (twice the draws, adapted proposal) has at most doubled the ESS on the built-in cases, so
it could not reach :data:`IS_MIN_ESS` (it cost SARS-CoV-2 fits ~1 s each, all wasted)."""


# --- data ---------------------------------------------------------------------------------


def _column_to_tensor(name: str, value: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_complex():
            raise NonNumericDataError(f"column {name!r} is complex; give real numbers.")
        return t.to(device="cpu", dtype=dtype, copy=True)
    try:
        import pandas as pd

        if isinstance(value, pd.Series):
            if not (pd.api.types.is_numeric_dtype(value.dtype) or pd.api.types.is_bool_dtype(value.dtype)):
                raise NonNumericDataError(
                    f"column {name!r} has dtype {value.dtype}, not numbers; encode it numerically "
                    "(e.g. 0/1 or category codes) before fitting."
                )
            value = value.to_numpy(dtype=float, na_value=np.nan)
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(value)
    if arr.dtype.kind == "O":
        flat = arr.ravel()
        if not all(
            isinstance(x, (int, float, np.number)) and not isinstance(x, (bool, np.bool_)) for x in flat
        ):
            bad = next(
                (
                    x
                    for x in flat
                    if not isinstance(x, (int, float, np.number)) or isinstance(x, (bool, np.bool_))
                ),
                None,
            )
            raise NonNumericDataError(
                f"column {name!r} holds non-numeric values (e.g. {bad!r}); encode it numerically "
                "before fitting."
            )
        arr = arr.astype(float)
    if arr.dtype.kind not in "biuf":
        raise NonNumericDataError(
            f"column {name!r} has dtype {arr.dtype}, not numbers; encode it numerically (e.g. 0/1 "
            "or category codes) before fitting."
        )
    return torch.tensor(arr, dtype=dtype)


def validate_data(
    data: pd.DataFrame | Mapping[str, Any], graph: CausalGraph, *, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Check observational data against a graph; return fresh CPU tensors, one per column.

    The data must hold exactly the observed variables of the graph, as a pandas DataFrame or
    a mapping of name -> array, tensor or sequence (first dimension: units), with numbers
    only, the same number of rows everywhere, at least one row, and no NaN or infinity. The
    user's data is never modified (the tensors returned are copies).

    Parameters
    ----------
    data
        The observations.
    graph
        The causal graph whose observed nodes the columns must match.
    dtype
        Floating dtype of the returned tensors (default: torch's default dtype).

    Returns
    -------
    dict
        Observed node name -> tensor of shape ``(n, ...)``, in the graph's node order.

    Raises
    ------
    LatentColumnError
        A column is a latent node of the graph.
    UnexpectedColumnError
        A column is not a node of the graph.
    MissingColumnError
        An observed node has no column.
    NonNumericDataError, UnequalLengthError, EmptyDataError, NonFiniteDataError
        Non-numeric values, columns of different lengths, no rows, NaN or infinite values.

    Examples
    --------
    >>> from causal_pp import CausalGraph
    >>> g = CausalGraph.parse("U -> X; U -> Y; X -> Y", latent=["U"])
    >>> validate_data({"X": [0.0, 1.0], "Y": [1.0, 2.0]}, g)["Y"]
    tensor([1., 2.])
    >>> validate_data({"X": [0.0], "Y": [1.0], "U": [0.3]}, g)
    Traceback (most recent call last):
    ...
    causal_pp.errors.LatentColumnError: column 'U' is the latent variable U: ...
    """
    dtype = dtype or torch.get_default_dtype()
    try:
        import pandas as pd

        is_frame = isinstance(data, pd.DataFrame)
    except ImportError:  # pragma: no cover
        is_frame = False
    if is_frame:
        columns = list(data.columns)
        if len(set(map(str, columns))) != len(columns):
            raise DataError(f"the DataFrame has duplicate column names: {columns}.")
        getter: Callable[[Any], Any] = lambda c: data[c]  # noqa: E731
    elif isinstance(data, Mapping):
        columns = list(data.keys())
        getter = data.__getitem__
    else:
        raise DataError(
            f"data must be a pandas DataFrame or a dict of arrays/tensors; got {type(data).__name__}."
        )
    if not columns:
        raise EmptyDataError(
            f"the data has no columns; give one column per observed variable {list(graph.observed)}."
        )
    for c in columns:
        if not isinstance(c, str):
            raise UnexpectedColumnError(
                f"column name {c!r} is not a string; name columns after the observed variables "
                f"{list(graph.observed)}."
            )
    latent = [c for c in columns if c in graph and graph.is_latent(c)]
    if latent:
        raise LatentColumnError(
            f"column {latent[0]!r} is the latent variable {latent[0]}: the graph says it is never "
            "observed. Drop the column, or build the graph without declaring it latent if it "
            "really was measured." + (f" (also latent: {latent[1:]})" if len(latent) > 1 else "")
        )
    unexpected = [c for c in columns if c not in graph]
    if unexpected:
        raise UnexpectedColumnError(
            f"column{'s' if len(unexpected) > 1 else ''} {unexpected} {'are' if len(unexpected) > 1 else 'is'} "
            f"not {'variables' if len(unexpected) > 1 else 'a variable'} of the graph; the data must "
            f"hold exactly the observed variables {list(graph.observed)}. Drop "
            f"{'them' if len(unexpected) > 1 else 'it'} or add {'them' if len(unexpected) > 1 else 'it'} "
            "to the graph."
        )
    missing = [v for v in graph.observed if v not in columns]
    if missing:
        raise MissingColumnError(
            f"observed variable{'s' if len(missing) > 1 else ''} {missing} "
            f"{'have' if len(missing) > 1 else 'has'} no column in the data (columns: {columns}). "
            "Add the column, or mark the variable latent in the graph if it was never measured."
        )
    out = {v: _column_to_tensor(v, getter(v), dtype) for v in graph.observed}
    for v, t in out.items():
        if t.dim() == 0:
            raise DataError(f"column {v!r} is a single number; give one value per unit.")
    lengths = {v: int(t.shape[0]) for v, t in out.items()}
    if len(set(lengths.values())) > 1:
        raise UnequalLengthError(
            f"columns have different numbers of rows: {lengths}; every column needs one row per unit."
        )
    if next(iter(lengths.values())) == 0:
        raise EmptyDataError("the data has no rows; fitting needs at least one unit.")
    for v, t in out.items():
        bad = ~torch.isfinite(t)
        if bad.any():
            rows = torch.nonzero(bad.reshape(t.shape[0], -1).any(-1)).flatten()
            raise NonFiniteDataError(
                f"column {v!r} has {len(rows)} row(s) with NaN or infinite values (first: row "
                f"{rows[0].item()}); drop or impute them before fitting."
            )
    return out


# --- devices and seeds --------------------------------------------------------------------


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; raises DeviceError if it is not available.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"{device!r} is not a torch device ('cpu' or 'cuda'): {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "device='cuda' was requested but CUDA is not available (torch "
                f"{torch.__version__}, built with CUDA {torch.version.cuda}); use device='cpu'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{dev} does not exist; {torch.cuda.device_count()} CUDA device(s) visible.")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceError("device='mps' was requested but MPS is not available; use device='cpu'.")
    elif dev.type != "cpu":
        raise DeviceError(f"device {dev} is not supported; use 'cpu' or 'cuda'.")
    return dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's random stream for the block; the caller's stream is restored after it."""
    devices = [device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def on_device(device: torch.device) -> Iterator[None]:
    """Make ``device`` the default for tensors created in the block (model constants too)."""
    if device.type == "cpu":
        yield
        return
    with torch.device(device):
        yield


@contextlib.contextmanager
def released_jit_traces() -> Iterator[None]:
    """Free the TorchScript functions that JIT compilation made in the block, once unused.

    ``torch.jit.trace`` registers every traced function in one global compilation unit that
    is never emptied (pytorch/pytorch#35600, #43119), and a traced ELBO or NUTS potential
    keeps its graph and captured tensors there for the life of the process: ~50 MB per fit of
    a case-library model, so a convergence study of a few hundred fits in one process grew
    past 10 GB and slowed to swapping. The unit can only be emptied as a whole, and emptying
    it while anything still holds one of its functions would leave that function dangling.
    So it is emptied on exit only when it was empty on entry (every function in it is then
    this block's) and no Pyro object that holds a compiled function is still alive; otherwise
    (a user's own TorchScript functions, or a JIT-compiled ELBO kept past the fit) nothing is
    released, as before. Not for use while another thread is JIT-compiling.
    """
    unit = torch.jit._state._python_cu
    ours_only = not unit.get_functions()
    try:
        yield
    finally:
        if ours_only and unit.get_functions():
            gc.collect()
            if not _compiled_pyro_functions_alive():
                unit.drop_all_functions()


def _compiled_pyro_functions_alive() -> bool:
    """Whether a Pyro object that holds a TorchScript function is still reachable."""
    from pyro.infer.mcmc.util import _PEMaker
    from pyro.ops.jit import CompiledFunction

    return any(
        (isinstance(o, CompiledFunction) and o.compiled)
        or (isinstance(o, _PEMaker) and getattr(o, "_compiled_fn", None) is not None)
        for o in gc.get_objects()
    )


@contextlib.contextmanager
def num_threads(k: int | None) -> Iterator[None]:
    """Run the block with ``k`` torch intra-op threads (None: leave the setting alone)."""
    if k is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(k))
    try:
        yield
    finally:
        torch.set_num_threads(old)


SMALL_PROBLEM_UNITS = 20_000
"""Below this many units, ``fit`` runs single-threaded by default (see ``threads``)."""


def _child_seeds(seed: int, k: int) -> list[int]:
    g = torch.Generator().manual_seed(int(seed))
    return [int(s) for s in torch.randint(0, 2**62, (k,), generator=g, device="cpu")]


# --- fit ----------------------------------------------------------------------------------

_GUIDES = ("auto", "lowrank_mvn", "mvn", "normal")


def _latent_sites(model: CausalModel, s: ProgramStructure) -> tuple[list[str], list[str], list[str]]:
    """(global parameters, per-unit latent sample sites, enumerable per-unit latent sites)."""
    g = model.graph
    observed = set(g.observed)
    globals_ = [n for n in s.global_sites]
    unit_latent = [n for n in s.unit_sites if n not in observed and not s.sites[n].deterministic]
    for n in observed:
        if s.sites[n].deterministic:
            raise InferenceError(
                f"observed variable {n!r} is a pyro.deterministic site, so the model gives the data "
                f"no likelihood; write it as pyro.sample({n!r}, <distribution>) with a noise term."
            )
    for n in globals_:
        info = s.sites[n]
        if info.discrete:
            raise InferenceError(
                f"global parameter {n!r} is discrete ({info.distribution}); causal_pp fits continuous "
                "global parameters only. Make it continuous, or fix it and pass it as a model argument."
            )
    enum = []
    for n in unit_latent:
        info = s.sites[n]
        if info.discrete:
            if not info.enumerable:
                raise InferenceError(
                    f"latent per-unit site {n!r} is discrete ({info.distribution}) and Pyro cannot "
                    "enumerate it (infinite support), so neither NUTS nor SVI can fit it. Use a "
                    "distribution with finite support (Bernoulli, Categorical) or a continuous latent."
                )
            enum.append(n)
    return globals_, unit_latent, enum


def _check_data_shapes(data: Mapping[str, torch.Tensor], s: ProgramStructure) -> None:
    for v, t in data.items():
        want = s.sites[v].shape
        if tuple(t.shape) != want:
            raise DataError(
                f"column {v!r} has shape {tuple(t.shape)} but the model's site {v!r} has shape {want} "
                f"for n={s.n} units; give one value per unit of the site's shape."
            )


def _reshape_draws(value: torch.Tensor, shape: tuple[int, ...], num: int, name: str) -> torch.Tensor:
    """Normalise (S, ...) / (S, 1, ...) draw shapes to (S, *shape)."""
    value = value.detach()
    if value.numel() != num * math.prod(shape):
        raise InferenceError(
            f"posterior draws of {name!r} have shape {tuple(value.shape)}, which does not match "
            f"{num} draws of shape {shape}."
        )
    return value.reshape((num, *shape))


def fit(
    model: CausalModel,
    data: pd.DataFrame | Mapping[str, Any],
    *,
    method: str = "nuts",
    num_samples: int = 500,
    warmup_steps: int = 500,
    num_chains: int = 1,
    jit_compile: bool = True,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    num_steps: int | None = None,
    lr: float = 0.03,
    lr_decay: float = 0.1,
    num_particles: int = 8,
    guide: str | Callable[[Callable[..., Any]], Any] = "auto",
    importance: bool = True,
    importance_particles: int = 16,
    restarts: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress_bar: bool = True,
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    threads: int | str | None = "auto",
) -> CausalPosterior:
    """Fit a causal model to observational data by NUTS or SVI.

    The observed DAG nodes are conditioned on the data; latent DAG nodes are per-unit latent
    variables. Discrete latent per-unit sites with finite support (Bernoulli, Categorical)
    are enumerated out (parallel enumeration); other discrete latents are refused.

    Parameters
    ----------
    model
        A :class:`~causal_pp.CausalModel`; it is checked against its DAG first.
    data
        pandas DataFrame or dict of arrays/tensors holding exactly the observed variables;
        see :func:`validate_data`. Never modified.
    method
        ``"nuts"`` (Pyro's NUTS, the reference: asymptotically exact) or ``"svi"``
        (stochastic variational inference: fast, approximate).
    num_samples
        Posterior draws of the global parameters: per chain (NUTS), or from the guide (SVI).
    warmup_steps, num_chains, target_accept_prob, max_tree_depth, jit_compile
        NUTS settings. Chains run one after another (seeded, reproducible). ``jit_compile``
        also applies to SVI; it traces the program once, so Python control flow on random
        values is frozen -- turn it off for such programs.
    num_steps, lr, lr_decay, num_particles, guide
        SVI settings. ``num_steps=None`` (default) is adaptive: ClippedAdam at learning rate
        ``lr`` until the loss levels off (checked every 250 steps, 750 to 9500 steps), then
        500 steps with the rate decaying geometrically to ``lr * lr_decay``; an integer fixes
        the total. ``num_particles`` vectorised ELBO particles. The guide is ``"auto"`` (=
        ``"lowrank_mvn"``: a low-rank-plus-diagonal multivariate normal over all global and
        per-unit latents, rank = number of global dimensions + 2, which can represent how
        per-unit latents co-vary with the global parameters -- mean-field guides cannot, and
        are badly overconfident for these models), ``"mvn"`` (full covariance; small
        models), ``"normal"`` (mean-field), or a callable ``guide(conditioned_model)``.
    restarts
        SVI only: short runs (150 steps) from this many independent initialisations; the
        one with the lowest loss is continued. Guards against confident wrong optima where a
        per-unit latent absorbs an outcome (seen on the front-door model at N=800 with a
        single start: ATE -0.10 +- 0.04 against a truth of -1.5; on one N=400 data set all
        of 3 starts landed there and 2 of 5 did not). ``1`` disables it.
    importance, importance_particles
        SVI only: correct the guide's draws of the global parameters by adaptive importance
        resampling. Units are independent given the globals, so each draw's likelihood is a
        product of one-unit integrals over the unit's latents, estimated with
        ``importance_particles`` draws from a Laplace approximation to that unit's
        conditional posterior given the draw of the globals (Newton steps from the guide's
        conditional; common random numbers across draws). ``benchmarks/importance_correction.py``
        measures both against the exact posterior (NUTS with the latent integrated out
        analytically) on the front-door and back-door models. Applies to the multivariate
        normal guides with scalar per-unit latents and no enumerated sites; if the weights
        degenerate (ESS below :data:`IS_MIN_ESS`, as seen on the multi-cause and SARS-CoV-2
        cases) the guide's own draws are kept, with a warning. Diagnostics:
        ``is_corrected``, ``is_ess``, ``is_time_s``, ``is_skipped``.
    seed
        Seeds everything; the same seed gives identical draws on CPU. The caller's random
        stream is left untouched.
    device
        ``"cpu"`` (default) or ``"cuda"``; DeviceError if unavailable.
    progress_bar
        Show tqdm progress bars.
    model_args, model_kwargs
        Further arguments of the model function (after ``n``).
    threads
        torch intra-op threads during the fit (restored afterwards). ``"auto"``: one thread
        below :data:`SMALL_PROBLEM_UNITS` units -- per-unit tensors are then too small for
        parallel kernels, and idle OpenMP threads spinning on a busy machine made fits up to
        5x slower in our measurements -- otherwise torch's setting; None: torch's setting.

    Returns
    -------
    CausalPosterior
        Draws of the global parameters, diagnostics, and the data.

    Raises
    ------
    DataError
        (its subclasses) if the data is unusable; nothing is fitted.
    ModelGraphMismatchError
        If the program does not encode its DAG.
    InferenceError
        Unsupported latent sites, observed deterministic sites, data outside the model's
        support, or non-finite results.
    DeviceError
        If ``device`` is not available.

    Warns
    -----
    UserWarning
        NUTS: R-hat > 1.05, ESS < 100 or divergent transitions (parameters of latent variable
        models need not be identified -- the sign of a latent, say -- so check
        :attr:`Estimate.diagnostics <causal_pp.Estimate.diagnostics>` of the functional too);
        SVI: the loss has not levelled off or is not finite, or the importance correction failed.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from causal_pp import CausalGraph, causal_model, units
    >>> @causal_model(CausalGraph.parse("X -> Y"))
    ... def m(n):
    ...     b = pyro.sample("b", dist.Normal(0.0, 1.0))
    ...     with units(n):
    ...         x = pyro.sample("X", dist.Normal(0.0, 1.0))
    ...         pyro.sample("Y", dist.Normal(b * x, 1.0))
    >>> x = torch.linspace(-2, 2, 40)
    >>> post = fit(m, {"X": x, "Y": -x}, method="nuts", num_samples=100, warmup_steps=100,
    ...            progress_bar=False)
    >>> post.samples["b"].shape, round(post.samples["b"].mean().item())
    (torch.Size([100]), -1)
    """
    if method not in ("nuts", "svi"):
        raise InvalidArgumentError(f"method must be 'nuts' or 'svi'; got {method!r}.")
    for name, v in (("num_samples", num_samples), ("num_chains", num_chains)):
        if not isinstance(v, int) or v < 1:
            raise InvalidArgumentError(f"{name} must be a positive integer; got {v!r}.")
    if method == "nuts" and (not isinstance(warmup_steps, int) or warmup_steps < 0):
        raise InvalidArgumentError(f"warmup_steps must be a non-negative integer; got {warmup_steps!r}.")
    if method == "svi" and num_steps is not None and (not isinstance(num_steps, int) or num_steps < 4):
        raise InvalidArgumentError(
            f"num_steps must be None (adaptive) or an integer >= 4; got {num_steps!r}."
        )
    if isinstance(guide, str) and guide not in _GUIDES:
        raise InvalidArgumentError(f"guide must be one of {_GUIDES} or a callable; got {guide!r}.")
    dev = resolve_device(device)
    from ..model import CausalModel

    if not isinstance(model, CausalModel):
        raise ArgumentTypeError(
            f"fit() needs a CausalModel; got {type(model).__name__}. Use @causal_model(graph)."
        )
    cpu_data = validate_data(data, model.graph)
    n = int(next(iter(cpu_data.values())).shape[0])
    model_kwargs = dict(model_kwargs or {})
    structure = model.check(n=n, model_args=model_args, model_kwargs=model_kwargs)
    _check_data_shapes(cpu_data, structure)
    globals_, unit_latent, enum = _latent_sites(model, structure)
    if not globals_:
        warnings.warn(
            f"causal_pp: {model.name!r} has no global parameters (no sample sites outside units); "
            "its causal estimates do not depend on the data.",
            UserWarning,
            stacklevel=3,
        )
    data_dev = {k: v.to(dev) for k, v in cpu_data.items()}
    P = structure.max_plate_nesting

    def conditioned() -> Any:
        return poutine.condition(model.fn, data=data_dev)(n, *model_args, **model_kwargs)

    target: Callable[[], Any] = config_enumerate(conditioned, default="parallel") if enum else conditioned

    if threads == "auto":
        threads = 1 if n < SMALL_PROBLEM_UNITS else None
    elif threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InvalidArgumentError(f"threads must be 'auto', None or a positive integer; got {threads!r}.")
    t0 = time.perf_counter()
    with on_device(dev), num_threads(threads), released_jit_traces():
        _check_support(conditioned, list(data_dev), dev, seed)
        if method == "nuts":
            draws, unit_draws, diagnostics = _run_nuts(
                target,
                globals_,
                unit_latent,
                structure,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                num_chains=num_chains,
                jit_compile=jit_compile,
                target_accept_prob=target_accept_prob,
                max_tree_depth=max_tree_depth,
                max_plate_nesting=P,
                seed=seed,
                device=dev,
                progress_bar=progress_bar,
            )
        else:
            draws, unit_draws, diagnostics = _run_svi(
                target,
                globals_,
                unit_latent,
                enum,
                structure,
                num_samples=num_samples,
                num_steps=num_steps,
                lr=lr,
                lr_decay=lr_decay,
                num_particles=num_particles,
                guide=guide,
                jit_compile=jit_compile,
                importance=importance,
                importance_particles=importance_particles,
                restarts=restarts,
                max_plate_nesting=P,
                seed=seed,
                device=dev,
                progress_bar=progress_bar,
            )
    diagnostics["time_s"] = time.perf_counter() - t0
    diagnostics["enumerated"] = tuple(enum)
    for k, v in draws.items():
        if not torch.isfinite(v).all():
            raise InferenceError(
                f"{method} produced non-finite draws of {k!r}; check the priors and the data scale."
            )
    _warn_diagnostics(model.name, method, diagnostics)
    return CausalPosterior(
        model=model,
        samples=draws,
        data=cpu_data,
        diagnostics=diagnostics,
        method=method,
        seed=seed,
        num_chains=num_chains if method == "nuts" else 1,
        unit_samples=unit_draws,
        structure=structure,
        model_args=tuple(model_args),
        model_kwargs=model_kwargs,
        device=dev,
    )


def _check_support(conditioned: Callable[[], Any], observed: list[str], dev: torch.device, seed: int) -> None:
    """One run of the conditioned model: data outside a site's support is refused by name."""
    with seeded(seed, dev), torch.no_grad(), pyro.validation_enabled(False):
        try:
            tr = poutine.trace(conditioned).get_trace()
        except (ValueError, RuntimeError) as err:
            raise InferenceError(f"the model cannot be run on the data: {err}") from err
    for name in observed:
        site = tr.nodes[name]
        fn, value = site["fn"], site["value"]
        ok = fn.support.check(value)
        lp = fn.log_prob(value) if bool(ok.all()) else None
        if lp is None or not torch.isfinite(lp).all():
            bad = ~ok if lp is None else ~torch.isfinite(lp)
            count = int(bad.reshape(-1, *bad.shape[-1:]).any(0).sum()) if bad.dim() else 1
            raise InferenceError(
                f"the data of {name!r} has zero probability under the model's {type(fn).__name__} "
                f"site ({count} unit(s) outside its support {fn.support}); check the column against "
                "the site's distribution (e.g. non-binary values for a Bernoulli)."
            )


def _run_nuts(
    target: Callable[[], Any],
    globals_: list[str],
    unit_latent: list[str],
    s: ProgramStructure,
    *,
    num_samples: int,
    warmup_steps: int,
    num_chains: int,
    jit_compile: bool,
    target_accept_prob: float,
    max_tree_depth: int,
    max_plate_nesting: int,
    seed: int,
    device: torch.device,
    progress_bar: bool,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    chains: list[dict[str, torch.Tensor]] = []
    divergences = 0
    acceptance = []
    step_sizes = []
    for c, chain_seed in enumerate(_child_seeds(seed, num_chains)):
        kernel = NUTS(
            target,
            jit_compile=jit_compile,
            ignore_jit_warnings=True,
            max_plate_nesting=max_plate_nesting,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
        )
        mcmc = MCMC(
            kernel,
            num_samples=num_samples,
            warmup_steps=warmup_steps,
            num_chains=1,
            disable_progbar=not progress_bar,
        )
        with seeded(chain_seed, device), pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="`torch.jit.trace` is deprecated")
            if progress_bar and num_chains > 1:
                print(f"chain {c + 1}/{num_chains}")
            mcmc.run()
        samples = mcmc.get_samples()
        diag = mcmc.diagnostics()
        divergences += sum(len(v) for v in diag.get("divergences", {}).values())
        acceptance += [float(v) for v in diag.get("acceptance rate", {}).values()]
        step_sizes.append(float(kernel.step_size))
        chains.append({k: v.detach() for k, v in samples.items()})
    draws: dict[str, torch.Tensor] = {}
    unit_draws: dict[str, torch.Tensor] = {}
    r_hat: dict[str, float] = {}
    ess: dict[str, float] = {}
    unit_r_hat = 0.0
    for name in [*globals_, *unit_latent]:
        if name not in chains[0]:  # enumerated out
            continue
        stacked = torch.stack([ch[name] for ch in chains])  # (C, D, ...)
        flat = stacked.reshape(num_chains * num_samples, *s.sites[name].shape)
        if name in globals_:
            draws[name] = flat
            x = stacked.reshape(num_chains, num_samples, -1).double().cpu()
            r_hat[name] = float(split_gelman_rubin(x, chain_dim=0, sample_dim=1).nan_to_num(1.0).max())
            ess[name] = float(effective_sample_size(x, chain_dim=0, sample_dim=1).nan_to_num(0.0).min())
        else:
            unit_draws[name] = flat
            x = stacked.reshape(num_chains, num_samples, -1).double().cpu()
            unit_r_hat = max(
                unit_r_hat, float(split_gelman_rubin(x, chain_dim=0, sample_dim=1).nan_to_num(1.0).max())
            )
    diagnostics: dict[str, Any] = {
        "method": "nuts",
        "num_samples": num_samples,
        "warmup_steps": warmup_steps,
        "num_chains": num_chains,
        "jit_compile": jit_compile,
        "r_hat": r_hat,
        "ess": ess,
        "max_r_hat": max(r_hat.values(), default=float("nan")),
        "min_ess": min(ess.values(), default=float("nan")),
        "unit_max_r_hat": unit_r_hat if unit_draws else float("nan"),
        "divergences": divergences,
        "acceptance_rate": float(np.mean(acceptance)) if acceptance else float("nan"),
        "step_size": step_sizes,
    }
    return draws, unit_draws, diagnostics


def _global_dims(s: ProgramStructure, globals_: list[str]) -> int:
    return sum(math.prod(s.sites[g].shape) for g in globals_)


def _make_guide(
    guide: str | Callable[[Callable[..., Any]], Any], model: Callable[..., Any], rank: int, latent_dim: int
) -> Any:
    if callable(guide):
        return guide(model)
    init = init_to_median(num_samples=15)
    if guide in ("auto", "lowrank_mvn"):
        if latent_dim < 2:
            return AutoMultivariateNormal(model, init_loc_fn=init, init_scale=0.1)
        return AutoLowRankMultivariateNormal(
            model, init_loc_fn=init, init_scale=0.1, rank=max(1, min(rank, latent_dim - 1))
        )
    if guide == "mvn":
        return AutoMultivariateNormal(model, init_loc_fn=init, init_scale=0.1)
    return AutoNormal(model, init_loc_fn=init, init_scale=0.1)


def _guide_gaussian(
    g: Any,
) -> tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor] | None:
    """(loc, cov(rows, cols), diag of cov) of an AutoContinuous guide's Gaussian, or None."""
    if not isinstance(g, (AutoLowRankMultivariateNormal, AutoMultivariateNormal)):
        return None
    post = g.get_posterior()
    loc = post.loc.detach()
    if isinstance(post, LowRankMultivariateNormal):
        W, d = post.cov_factor.detach(), post.cov_diag.detach()

        def cov(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            out = W[a] @ W[b].T
            same = a.unsqueeze(1) == b.unsqueeze(0)
            return out + same * d[a].unsqueeze(1)

        return loc, cov, (W * W).sum(-1) + d
    if isinstance(post, MultivariateNormal):
        L = post.scale_tril.detach()

        def cov_full(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return L[a] @ L[b].T

        return loc, cov_full, (L * L).sum(-1)
    return None  # pragma: no cover


def _systematic(weights: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    cpu = {"dtype": torch.float64, "device": "cpu"}
    u = (torch.rand((), generator=generator, **cpu) + torch.arange(k, **cpu)) / k
    cdf = torch.cumsum(weights.double().cpu(), 0)
    cdf = cdf / cdf[-1]
    return torch.searchsorted(cdf, u).clamp(max=len(weights) - 1)


def _importance_correct(
    target: Callable[[], Any],
    g: Any,
    globals_: list[str],
    unit_latent: list[str],
    s: ProgramStructure,
    *,
    num_samples: int,
    num_proposals: int,
    num_particles: int,
    inflation: float,
    seed: int,
) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Importance-resample the global parameters, with the fitted guide as proposal.

    Units are independent given the global parameters, so the marginal likelihood of a draw
    of the globals is a product over units of one-unit integrals over that unit's latents;
    each is estimated by importance sampling with ``num_particles`` draws from a
    Laplace approximation to the unit's conditional posterior given that draw: Newton steps
    from the guide's conditional mean (a diagonal Hessian per unit; a step is kept only where
    it raises the unit's log joint), widened by :data:`UNIT_INFLATION`. The proposal has to
    follow the globals: with the guide's conditional alone (linear in the globals, fitted
    around the guide's mean) the simulated likelihood's error grows away from the guide's
    mean and, with common random numbers, is a fixed random surface over the globals whose
    summed slope over thousands of units moved the posterior mean of the back-door ATE by
    1.1 posterior SDs at N = 2000 (16 particles; 0.2 SD with 128; see
    ``test_svi_with_importance_correction_matches_the_exact_posterior``). Proposals for the
    globals (in unconstrained space) come in two rounds: the guide's Gaussian marginal
    widened by ``inflation``, then a Gaussian fitted to the weighted first round (adaptive
    importance sampling). Self-normalised weights (truncated
    at mean * sqrt(M), Ionides 2008) of the second round pick ``num_samples`` of its
    ``num_proposals`` draws by systematic resampling. This removes most of the variational
    overconfidence of the guide; the weights' effective sample size is the diagnostic.
    """
    info: dict[str, Any] = {"is_corrected": False}
    gauss = _guide_gaussian(g)
    if gauss is None:
        info["is_skipped"] = "the guide is not a multivariate normal autoguide"
        return None, info
    if s.max_plate_nesting != 1 or any(
        s.sites[u].event_ndim or len(s.sites[u].shape) != 1 for u in unit_latent
    ):
        info["is_skipped"] = "per-unit latents are not scalars in a single units plate"
        return None, info
    loc, cov, var = gauss
    proto = g.prototype_trace
    pos: dict[str, tuple[int, int]] = {}
    start = 0
    for name, _site in proto.iter_stochastic_nodes():
        size = math.prod(g._unconstrained_shapes[name])
        pos[name] = (start, start + size)
        start += size
    if set(pos) != set(globals_) | set(unit_latent) or not globals_:
        info["is_skipped"] = "the guide does not cover exactly the model's latent sites"
        return None, info
    dev = loc.device
    G = torch.cat([torch.arange(*pos[k], device=dev) for k in globals_])
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
    mu_t = loc[G].double()
    S_tt = cov(G, G).double()
    S_tt = 0.5 * (S_tt + S_tt.T)
    # per-unit conditionals q(z_u | z_theta) = N(mu_u + A (z_theta - mu_theta), v)
    cond: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    S_inv = torch.linalg.inv(S_tt)
    for u in unit_latent:
        J = torch.arange(*pos[u], device=dev)
        S_ut = cov(J, G).double()
        A = S_ut @ S_inv
        v = (var[J].double() - (A * S_ut).sum(-1)).clamp_min(1e-12)
        cond[u] = (loc[J].double(), A, v.sqrt())
    N, K = s.n, num_particles
    chunk = max(1, (2**22) // (K * N * max(1, len(s.unit_sites))))
    # common random numbers: the same standard-normal draws for every proposal, so the
    # simulated likelihood is a smooth function of the globals and its error largely cancels
    # in the self-normalised weights
    crn = {
        u: torch.randn((1, K, N), generator=gen, dtype=torch.float64, device="cpu").to(dev)
        for u in unit_latent
    }

    def constrain(z_t: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        M = z_t.shape[0]
        theta, log_jac = {}, torch.zeros(M, dtype=torch.float64, device=dev)
        offset = 0
        for name in globals_:
            ushape = g._unconstrained_shapes[name]
            size = math.prod(ushape)
            zu = z_t[:, offset : offset + size].reshape(M, *ushape).to(loc.dtype)
            offset += size
            t = biject_to(proto.nodes[name]["fn"].support)
            x = t(zu)
            log_jac += t.log_abs_det_jacobian(zu, x).reshape(M, -1).sum(-1).double()
            theta[name] = x
        return theta, log_jac

    def log_joint(
        glob: dict[str, torch.Tensor], z: dict[str, torch.Tensor], particles: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For one chunk of m draws of the globals and ``particles`` values of each unit's latents
        (unconstrained): per-unit log p(unit's data, unit's latents | globals) + Jacobians,
        shape (m, particles, N), and the log prior of the globals, shape (m,)."""
        m = next(iter(glob.values())).shape[0]
        values = dict(glob)
        unit = torch.zeros(m, particles, N, dtype=torch.float64, device=dev)
        for u in unit_latent:
            t = biject_to(proto.nodes[u]["fn"].support)
            zu_f = z[u].to(loc.dtype)
            x = t(zu_f)
            unit = unit + t.log_abs_det_jacobian(zu_f, x).double()
            values[u] = x
        with pyro.plate("_is_draws", m, dim=-3), pyro.plate("_is_particles", particles, dim=-2):
            tr = poutine.trace(poutine.condition(target, data=values)).get_trace()
        tr.compute_log_prob()
        prior = torch.zeros(m, dtype=torch.float64, device=dev)
        for site in tr.nodes.values():
            if site["type"] != "sample" or "log_prob" not in site:
                continue
            lp = site["log_prob"].double()
            lp = lp.expand(*torch.broadcast_shapes(lp.shape, (m, particles, 1)))
            if any(f.name == "units" for f in site["cond_indep_stack"]):
                unit = unit + lp.expand(m, particles, N)
            else:
                prior = prior + lp[:, 0].reshape(m, -1).sum(-1)
        return unit, prior

    def laplace(
        glob: dict[str, torch.Tensor], mean: dict[str, torch.Tensor], sd: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-unit proposals N(mode, -1/h) for one chunk of draws of the globals, starting
        from the guide's conditional (mean, sd), each (m, 1, N). Units where the log joint is
        not finite or not concave at the start keep the guide's conditional."""

        def evaluate(
            z: dict[str, torch.Tensor],
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
            with torch.enable_grad():
                zz = {u: z[u].detach().clone().requires_grad_(True) for u in unit_latent}
                f, _ = log_joint(glob, zz, 1)
                grads = torch.autograd.grad(f.sum(), list(zz.values()), create_graph=True, allow_unused=True)
                g, h = {}, {}
                for u, gr in zip(unit_latent, grads, strict=True):
                    # no curvature (log joint constant or linear in it): this latent keeps the
                    # guide's conditional (h = -inf gives a zero step and a Laplace SD of 0)
                    if gr is None or not gr.requires_grad:
                        g[u] = torch.zeros_like(zz[u])
                        h[u] = torch.full_like(zz[u], -math.inf)
                        continue
                    g[u] = gr.detach()
                    (hu,) = torch.autograd.grad(gr.sum(), zz[u], retain_graph=True, allow_unused=True)
                    h[u] = hu.detach() if hu is not None else torch.full_like(zz[u], -math.inf)
            return f.detach(), g, h

        def ok(f: torch.Tensor, h: dict[str, torch.Tensor]) -> torch.Tensor:
            good = torch.isfinite(f)
            for u in unit_latent:
                good &= h[u] < 0  # False for NaN and +inf; -inf marks "no curvature" (above)
            return good

        if not unit_latent:
            return mean, sd
        try:
            best_z = {u: mean[u].clone() for u in unit_latent}
            best_f, best_g, best_h = evaluate(best_z)
            active = ok(best_f, best_h)
            damp = torch.ones_like(best_f)
            for _ in range(UNIT_NEWTON_STEPS):
                # stop where no unit would move by more than 1/1000 of its conditional SD
                # (a Gaussian conditional is exact after one step)
                if not active.any() or not any(
                    (best_g[u].abs() * torch.rsqrt(-best_h[u]))[active].max() > 1e-3 for u in unit_latent
                ):
                    break
                step = {u: torch.where(active, -damp * best_g[u] / best_h[u], 0.0) for u in unit_latent}
                z = {u: best_z[u] + torch.nan_to_num(step[u], nan=0.0) for u in unit_latent}
                f, g, h = evaluate(z)
                better = active & ok(f, h) & (f >= best_f)
                for u in unit_latent:
                    best_z[u] = torch.where(better, z[u], best_z[u])
                    best_g[u] = torch.where(better, g[u], best_g[u])
                    best_h[u] = torch.where(better, h[u], best_h[u])
                best_f = torch.where(better, f, best_f)
                damp = torch.where(better, damp, 0.5 * damp)
        except RuntimeError:  # a program that cannot be differentiated in its latents
            return mean, {u: UNIT_INFLATION * sd[u] for u in unit_latent}
        out_mean, out_sd = {}, {}
        for u in unit_latent:
            lap_sd = torch.rsqrt(-best_h[u]).nan_to_num(nan=0.0)
            use = active & (lap_sd > 0)
            out_mean[u] = torch.where(use, best_z[u], mean[u])
            out_sd[u] = UNIT_INFLATION * torch.where(use, lap_sd, sd[u])
        return out_mean, out_sd

    def log_target(z_t: torch.Tensor, theta: dict[str, torch.Tensor]) -> torch.Tensor:
        """log p(theta) + sum_units log p-hat(unit | theta), per draw (without the Jacobian)."""
        M = z_t.shape[0]
        out = torch.empty(M, dtype=torch.float64, device=dev)
        for a in range(0, M, chunk):
            b = min(M, a + chunk)
            m = b - a
            values: dict[str, torch.Tensor] = {}
            for name in globals_:
                si = s.sites[name]
                values[name] = theta[name][a:b].reshape(m, 1, *([1] * (1 - si.batch_ndim)), *si.shape)
            dz = z_t[a:b] - mu_t
            lin_mean = {u: (cond[u][0] + dz @ cond[u][1].T).unsqueeze(1) for u in unit_latent}  # (m, 1, N)
            lin_sd = {u: cond[u][2].expand(m, 1, N) for u in unit_latent}
            prop_mean, prop_sd = laplace(values, lin_mean, lin_sd)
            z = {u: prop_mean[u] + prop_sd[u] * crn[u] for u in unit_latent}
            with torch.no_grad():
                unit, prior = log_joint(values, z, K)
            for u in unit_latent:
                unit = unit - torch.distributions.Normal(prop_mean[u], prop_sd[u]).log_prob(z[u])
            out[a:b] = prior + (torch.logsumexp(unit, dim=1) - math.log(K)).sum(-1)
        return out

    def weigh(
        mean: torch.Tensor, scale_tril: torch.Tensor, M: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        proposal = torch.distributions.MultivariateNormal(mean, scale_tril=scale_tril)
        eps = torch.randn((M, mean.numel()), generator=gen, dtype=torch.float64, device="cpu").to(dev)
        z_t = mean + eps @ scale_tril.T
        theta, log_jac = constrain(z_t)
        log_w = log_target(z_t, theta) + log_jac - proposal.log_prob(z_t)
        log_w = torch.nan_to_num(log_w, nan=-math.inf)
        return z_t, log_w, theta

    def normalised(log_w: torch.Tensor) -> torch.Tensor:
        w = torch.exp(log_w - log_w.max())
        return torch.minimum(w, w.mean() * math.sqrt(len(w)))

    # round 1: the guide's marginal, widened
    z1, lw1, _ = weigh(mu_t, inflation * torch.linalg.cholesky(S_tt), max(500, num_proposals // 2))
    if not torch.isfinite(lw1).any():
        info["is_skipped"] = "all importance weights are zero"
        return None, info
    w1 = normalised(lw1)
    w1 = w1 / w1.sum()
    m1 = (w1.unsqueeze(1) * z1).sum(0)
    c1 = ((z1 - m1).T * w1) @ (z1 - m1)
    c1 = 0.5 * (c1 + c1.T) + 1e-9 * torch.eye(len(m1), dtype=c1.dtype, device=dev)
    ess1 = float(1.0 / (w1 * w1).sum())
    info["is_ess_round1"] = ess1
    if ess1 < IS_ROUND1_MIN_ESS:
        info["is_ess"] = ess1
        info["is_skipped"] = (
            f"importance weights degenerate (ESS {ess1:.0f} of {len(w1)} first-round draws < "
            f"{IS_ROUND1_MIN_ESS:.0f}; no second round)"
        )
        return None, info
    try:
        L2 = 1.1 * torch.linalg.cholesky(c1)
    except RuntimeError:
        L2 = inflation * torch.linalg.cholesky(S_tt)
        m1 = mu_t
    if ess1 < 2 * len(m1) + 2:  # too few effective draws to fit a covariance
        L2, m1 = inflation * torch.linalg.cholesky(S_tt), mu_t
    # round 2: a Gaussian fitted to round 1, slightly widened
    _, lw2, theta = weigh(m1, L2, num_proposals)
    if not torch.isfinite(lw2).any():
        info["is_skipped"] = "all importance weights are zero"
        return None, info
    w = normalised(lw2)
    ess = float(w.sum() ** 2 / (w * w).sum())
    idx = _systematic(w, num_samples, gen)
    idx = idx[torch.randperm(num_samples, generator=gen, device="cpu")].to(dev)
    info.update(
        is_corrected=True,
        is_ess=ess,
        is_ess_fraction=ess / num_proposals,
        is_num_proposals=num_proposals,
        is_particles=K,
        is_inflation=inflation,
    )
    draws = {name: theta[name][idx].reshape(num_samples, *s.sites[name].shape) for name in globals_}
    return draws, info


SVI_BLOCK = 250
"""Adaptive SVI checks for a plateau of the loss every this many steps."""
SVI_MIN_STEPS = 750
SVI_MAX_STEPS = 10_000
SVI_ANNEAL_STEPS = 500


def _set_lr(optim: Any, value: float) -> None:
    for opt in optim.optim_objs.values():
        for group in opt.param_groups:
            group["lr"] = value


def _plateau(losses: np.ndarray, block: int) -> tuple[bool, float, float]:
    """Has the loss levelled off? The mean loss of the last ``block`` steps must not be lower
    than that of the ``block`` steps before by more than 3 standard errors + 1 nat."""
    if len(losses) < 2 * block or not np.all(np.isfinite(losses[-2 * block :])):
        return False, float("nan"), float("nan")
    prev, last = losses[-2 * block : -block], losses[-block:]
    drop = float(prev.mean() - last.mean())
    se = float(np.sqrt(prev.var(ddof=1) / block + last.var(ddof=1) / block))
    return drop <= 3.0 * se + 1.0, drop, se


def _optimise(
    svi: SVI, optim: Any, *, num_steps: int | None, lr: float, lr_decay: float, progress_bar: bool
) -> tuple[np.ndarray, tuple[bool, float, float]]:
    """Run SVI: Adam at ``lr`` until the loss levels off, then anneal the learning rate.

    ``num_steps=None``: adaptive -- blocks of :data:`SVI_BLOCK` steps at constant ``lr``
    (at least :data:`SVI_MIN_STEPS`, at most :data:`SVI_MAX_STEPS` in all) until the loss
    plateaus, then :data:`SVI_ANNEAL_STEPS` steps with the learning rate decaying
    geometrically to ``lr * lr_decay``. An integer: that many steps in all, the last quarter
    (at most :data:`SVI_ANNEAL_STEPS`) annealed. Returns the losses and the plateau test
    (levelled off?, loss drop over the last block, its standard error) at the end of the
    constant-rate phase.
    """
    if num_steps is None:
        anneal, main_max, adaptive = SVI_ANNEAL_STEPS, SVI_MAX_STEPS - SVI_ANNEAL_STEPS, True
    else:
        anneal = min(SVI_ANNEAL_STEPS, num_steps // 4)
        main_max, adaptive = num_steps - anneal, False
    block = SVI_BLOCK if adaptive else max(10, min(SVI_BLOCK, main_max // 4))
    losses: list[float] = []
    total = SVI_MAX_STEPS if adaptive else num_steps
    bar = tqdm(total=total, desc="SVI", disable=not progress_bar, leave=False)
    plateau = (False, float("nan"), float("nan"))
    try:
        for i in range(main_max):
            losses.append(svi.step())
            bar.update()
            if progress_bar and i % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.5g}")
            if adaptive and (i + 1) >= SVI_MIN_STEPS and (i + 1) % block == 0:
                plateau = _plateau(np.asarray(losses), block)
                if plateau[0]:
                    break
        if not adaptive or not plateau[0]:
            plateau = _plateau(np.asarray(losses), block)
        for t in range(anneal):
            _set_lr(optim, lr * lr_decay ** ((t + 1) / anneal))
            losses.append(svi.step())
            bar.update()
    finally:
        bar.close()
    return np.asarray(losses, dtype=float), plateau


SVI_RESTART_STEPS = 150


def _best_start(
    target: Callable[[], Any],
    new_guide: Callable[[], Any],
    elbo: Any,
    *,
    lr: float,
    restarts: int,
) -> tuple[Any, list[float]]:
    """Run ``restarts`` short SVI runs from independent initialisations; keep the best.

    Per-unit latents make the ELBO multimodal: from a poor start the per-unit latent can
    absorb an outcome (e.g. U explaining Y in the front-door model, the causal path shrunk to
    zero), a confident wrong optimum that a longer run never leaves. A few short runs from
    independent prior draws, ranked by their final loss, avoid it at a small cost.

    All runs step one guide object through one ``elbo``: each restart overwrites the guide's
    parameters *in place* with the initial values of a freshly initialised twin. A
    JIT-compiled ELBO is therefore compiled once for all restarts and the main run (not once
    per restart), and the guide's own tensors stay the param store's (an autoguide reads its
    ``nn.Parameter`` attributes from itself, not from the store, when called eagerly). Returns
    the guide, holding the best run's parameters, and each run's final loss.
    """
    g = new_guide()
    if restarts <= 1:
        return g, []
    store = pyro.get_param_store()
    poutine.trace(g).get_trace()
    own = store.get_state()["params"]
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    scores = []
    for k in range(restarts):
        if k:
            _reinitialise(own, new_guide)
        svi = SVI(target, g, pyro.optim.ClippedAdam({"lr": lr, "clip_norm": 10.0}), elbo)
        losses = [svi.step() for _ in range(SVI_RESTART_STEPS)]
        score = float(np.mean(losses[-SVI_RESTART_STEPS // 3 :]))
        scores.append(score)
        if np.isfinite(score) and (best is None or score < best[0]):
            best = (score, {n: t.detach().clone() for n, t in own.items()})
    if best is None:
        _reinitialise(own, new_guide)
    else:
        with torch.no_grad():
            for n, t in own.items():
                t.copy_(best[1][n])
    return g, scores


def _reinitialise(own: dict[str, torch.Tensor], new_guide: Callable[[], Any]) -> None:
    """Overwrite the param-store tensors ``own`` in place with a fresh guide's initial values."""
    store = pyro.get_param_store()
    state = store.get_state()
    store.clear()
    poutine.trace(new_guide()).get_trace()
    fresh = store.get_state()["params"]
    store.clear()
    store.set_state(state)
    with torch.no_grad():
        for n, t in own.items():
            t.copy_(fresh[n])


def _run_svi(
    target: Callable[[], Any],
    globals_: list[str],
    unit_latent: list[str],
    enum: list[str],
    s: ProgramStructure,
    *,
    num_samples: int,
    num_steps: int | None,
    lr: float,
    lr_decay: float,
    num_particles: int,
    guide: str | Callable[[Callable[..., Any]], Any],
    jit_compile: bool,
    importance: bool,
    importance_particles: int,
    max_plate_nesting: int,
    seed: int,
    device: torch.device,
    progress_bar: bool,
    restarts: int = 1,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    guide_model = poutine.block(target, hide=enum) if enum else target
    latent_dim = _global_dims(s, globals_) + sum(
        math.prod(s.sites[u].shape) for u in unit_latent if u not in enum
    )
    rank = _global_dims(s, globals_) + 2
    kw = {
        "num_particles": num_particles,
        "vectorize_particles": num_particles > 1,
        "max_plate_nesting": max_plate_nesting,
    }

    def make_elbo(jit: bool) -> Any:
        if enum:
            return JitTraceEnum_ELBO(ignore_jit_warnings=True, **kw) if jit else TraceEnum_ELBO(**kw)
        return JitTrace_ELBO(ignore_jit_warnings=True, **kw) if jit else Trace_ELBO(**kw)

    optim = pyro.optim.ClippedAdam({"lr": lr, "clip_norm": 10.0})
    with (
        pyro.get_param_store().scope(),
        seeded(seed, device),
        pyro.validation_enabled(False),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="`torch.jit.trace` is deprecated")
        warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
        elbo = make_elbo(jit_compile)
        g, start_losses = _best_start(
            target,
            lambda: _make_guide(guide, guide_model, rank, latent_dim),
            elbo,
            lr=lr,
            restarts=restarts,
        )
        svi = SVI(target, g, optim, elbo)
        losses, plateau = _optimise(
            svi, optim, num_steps=num_steps, lr=lr, lr_decay=lr_decay, progress_bar=progress_bar
        )
        with torch.no_grad(), pyro.plate("_draws", num_samples, dim=-(max_plate_nesting + 1)):
            gtr = poutine.trace(g).get_trace()
        draws, unit_draws = {}, {}
        for name in [*globals_, *unit_latent]:
            if name not in gtr.nodes:
                continue
            value = _reshape_draws(gtr.nodes[name]["value"], s.sites[name].shape, num_samples, name)
            (draws if name in globals_ else unit_draws)[name] = value
        is_info: dict[str, Any] = {"is_corrected": False}
        if importance and not enum and np.isfinite(losses[-1]):
            t_is = time.perf_counter()
            corrected, is_info = _importance_correct(
                target,
                g,
                globals_,
                unit_latent,
                s,
                num_samples=num_samples,
                num_proposals=max(2 * num_samples, 1000),
                num_particles=importance_particles,
                inflation=1.2,
                seed=seed,
            )
            is_info["is_time_s"] = time.perf_counter() - t_is
            if corrected is not None and is_info["is_ess"] >= IS_MIN_ESS:
                draws = corrected
            elif corrected is not None:
                is_info["is_corrected"] = False
                is_info["is_skipped"] = (
                    f"importance weights degenerate (ESS {is_info['is_ess']:.0f} < {IS_MIN_ESS:.0f})"
                )
        elif not importance:
            is_info["is_skipped"] = "importance=False"
        elif enum:
            is_info["is_skipped"] = "enumerated discrete latents"
    converged, drop, se = plateau
    w = max(20, len(losses) // 10)
    is_info["restart_losses"] = start_losses
    diagnostics: dict[str, Any] = {
        "method": "svi",
        "guide": guide if isinstance(guide, str) else getattr(guide, "__name__", repr(guide)),
        "guide_class": type(g).__name__,
        "num_steps": len(losses),
        "num_particles": num_particles,
        "num_samples": num_samples,
        "lr": lr,
        "jit_compile": jit_compile,
        "loss": losses,
        "final_loss": float(np.mean(losses[-w:])),
        "final_elbo": -float(np.mean(losses[-w:])),
        "converged": converged,
        "loss_drop_last_window": drop,
        "loss_drop_se": se,
        **is_info,
    }
    return draws, unit_draws, diagnostics


def _warn_diagnostics(name: str, method: str, d: Mapping[str, Any]) -> None:
    problems = []
    if method == "nuts":
        if d["max_r_hat"] > R_HAT_WARN:
            worst = max(d["r_hat"], key=d["r_hat"].get)
            problems.append(f"R-hat of {worst!r} is {d['max_r_hat']:.3f} (> {R_HAT_WARN})")
        if d["min_ess"] < ESS_WARN:
            worst = min(d["ess"], key=d["ess"].get)
            problems.append(f"effective sample size of {worst!r} is {d['min_ess']:.0f} (< {ESS_WARN:.0f})")
        if d["divergences"]:
            problems.append(f"{d['divergences']} divergent transition(s)")
        hint = "run longer (num_samples, warmup_steps), more chains, or raise target_accept_prob"
    else:
        if not np.isfinite(d["final_loss"]):
            problems.append("the loss is not finite")
        elif not d["converged"]:
            problems.append(
                f"the ELBO was still improving at the end (loss fell by {d['loss_drop_last_window']:.3g} "
                f"over the last window, standard error {d['loss_drop_se']:.3g})"
            )
        if str(d.get("is_skipped", "")).startswith("importance weights degenerate"):
            problems.append(
                f"the importance correction of the guide failed ({d['is_skipped']}), so the draws are "
                "the guide's own, which tend to be overconfident"
            )
        hint = "raise num_steps or lr, or use method='nuts'"
    if problems:
        warnings.warn(
            f"causal_pp: {method.upper()} fit of {name!r} may be unreliable: "
            + "; ".join(problems)
            + f". Try: {hint}. Diagnostics are in posterior.diagnostics.",
            UserWarning,
            stacklevel=4,
        )
