"""Many fits at once on Dask: a batch of fits on a laptop or a cluster, with nothing lost.

:func:`fit_many` runs a list of :class:`FitTask` (a run table, fit options, optional held-out
rows to score, and the task's coordinates, e.g. family, number of models, share of training,
scale-up) on ``dask.distributed`` and returns one tidy table: the ARE, coverage and width of
the 90% band, the sampler diagnostics and the timings of every task, indexed by the task
coordinates.

* **Any cluster.** ``client=None`` starts a ``LocalCluster`` sized to the machine
  (:func:`local_client`); any ``distributed.Client`` (or its scheduler address,
  ``"tcp://host:8786"``) runs the same code on a cluster; ``client="serial"`` runs the tasks one
  after another in this process (no Dask), with the same results.
* **Compile once per worker.** A small Bayesian fit spends most of its time compiling its
  model, not sampling (``benchmarks/results/FIT_MANY.md``). Tasks whose
  training tables share a layout (families, runs, sizes, tokens, schedules) and model settings
  reuse one compiled model per worker process
  (:func:`bayescale.refit.cached_refit_model`); the first such task on a worker compiles.
* **Nothing lost.** A fit that raises records its error and the others go on; a task on a
  worker that dies is run again on another (Dask's ``allowed-failures``; ``retries`` reruns a
  task whose worker raised outside the fit). Each result is written to ``results_dir`` as it
  completes, under the task's content hash (run table, target, method, options, seed, the
  compile path and the bayescale version), so rerunning a grid skips what is done.
* **Progress** is Dask's own progress bar, with the dashboard's address when it runs.

:func:`grid_tasks` builds the Hitchhiker's grid (number of models x share of training x
scale-up) of every family of a run table, :func:`grid_arrays` averages a metric of its results
over families, :func:`plot_grid` draws the heatmaps
(:func:`bayescale.scoring.plot_are_heatmap`), :func:`grid_summary` and :func:`grid_contrast`
summarise it (the latter: paired differences between two methods with bootstrap intervals
over families).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale.data.prepare import (
    CUT_RTOL,
    DEFAULT_TARGET_FRACTION,
    DEFAULT_WARMUP_TOKENS,
    fit_window,
    thin_log_spaced,
)
from bayescale.data.validate import validate
from bayescale.fit import fit as bayescale_fit
from bayescale.fit import warn_if_unscheduled
from bayescale.inference import warn_on_problems
from bayescale.refit import cached_refit_model, layout_key
from bayescale.scoring import (
    METHODS,
    SCORED_BAND,
    bayescale_fit_kwargs,
    bootstrap_mean_interval,
    fit_and_predict,
    grid_split,
    plot_are_heatmap,
    predict_targets,
    score_prediction,
    summarize_warnings,
)
from bayescale.version import __version__

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client, Future

__all__ = [
    "AUTO_REUSE_MIN_TASKS",
    "FitTask",
    "client_for",
    "fit_many",
    "grid_arrays",
    "grid_contrast",
    "grid_summary",
    "grid_tasks",
    "local_client",
    "plot_grid",
    "task_key",
]

#: ``reuse_compiled="auto"`` compiles a layout once per worker when at least this many tasks
#: share it. The shared-data model compiles somewhat more slowly than :func:`bayescale.fit`'s
#: own and a refit then costs little, so from three tasks on a layout one compile per worker is
#: the cheaper path even when two workers both compile it (figures:
#: ``benchmarks/results/MODEL_SPEED.md``, "Figures moved out of the code").
AUTO_REUSE_MIN_TASKS = 3

#: Fit options a compiled model can be refitted under (the rest must be at their defaults).
_REFIT_OPTIONS = (
    "priors", "n0", "d0", "likelihood", "autocorrelation", "draws", "tune", "chains",
    "target_accept", "max_tree_depth",
)
_IGNORED_OPTIONS = ("progressbar", "random_seed", "fit_from", "unscheduled_from")

#: Columns of :func:`fit_many`'s table, after the coordinates.
RESULT_COLUMNS: tuple[str, ...] = (
    "name", "method", "status", "error", "n_train", "n_target",
    "are", "are_final", "signed_error", "coverage_90", "coverage_90_final", "width_90",
    "coverage_50", "width_50", "crps_rel",
    "max_rhat", "divergences", "min_ess_bulk", "min_ess_tail",
    "compile_seconds", "sampling_seconds", "total_seconds", "compiled", "worker",
    "started", "finished", "cached", "key", "posterior", "warnings",
)


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitTask:
    """One fit of a batch: a run table, fit options and what to score it on.

    Attributes
    ----------
    runs
        Training run table (columns ``family``, ``run``, ``params``, ``tokens``, ``loss``).
    target
        Held-out rows to predict and score (ARE, coverage and width of the 90% band), or
        ``None`` to fit only. Needed by every method but ``"bayescale"``.
    method
        ``"bayescale"`` or another method of :data:`bayescale.evaluate.METHODS` (e.g.
        ``"curve_fit"``), fitted and scored as :func:`bayescale.evaluate.fit_and_predict` does.
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit` (``random_seed`` here overrides the field).
    random_seed
        Seed of the Bayesian fit (and of ``"huber_bootstrap"``'s resampling).
    family
        Family the targets are predicted as (default: the first family of ``runs``).
    coords
        The task's coordinates, e.g. ``{"family": ..., "n_models": 3, "fraction": 0.5}``; they
        index the result table.
    name
        Label of the task (default ``"task<i>"``).
    n_boot
        Bootstrap replicates of ``"huber_bootstrap"``.
    """
    runs: pd.DataFrame
    target: pd.DataFrame | None = None
    method: str = "bayescale"
    fit_kwargs: Mapping[str, Any] = field(default_factory=dict)
    random_seed: int = 0
    family: str | None = None
    coords: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    n_boot: int = 200


def _as_task(task: FitTask | Mapping[str, Any], index: int) -> FitTask:
    if not isinstance(task, FitTask):
        task = FitTask(**dict(task))
    kwargs = dict(task.fit_kwargs)
    seed = int(kwargs.pop("random_seed", task.random_seed))
    kwargs.pop("progressbar", None)
    if task.method not in METHODS:
        raise ValueError(f"task {index}: unknown method {task.method!r}; choose from {METHODS}")
    if task.method != "bayescale" and task.target is None:
        raise ValueError(f"task {index}: method {task.method!r} needs target rows to predict")
    family = task.family
    if family is None and "family" in task.runs.columns and len(task.runs):
        family = str(task.runs["family"].iloc[0])
    return replace(
        task,
        fit_kwargs=kwargs,
        random_seed=seed,
        family=family,
        coords=dict(task.coords),
        name=task.name if task.name is not None else f"task{index}",
    )


def _frame_digest(frame: pd.DataFrame | None) -> str:
    """Content hash of a table: column names, dtypes and values, in row order."""
    digest = hashlib.sha256()
    if frame is None:
        return "none"
    frame = frame.reset_index(drop=True)
    for col in frame.columns:
        series = frame[col]
        digest.update(f"\x1e{col}\x1f{series.dtype}\x1f".encode())
        if pd.api.types.is_numeric_dtype(series) and not isinstance(
            series.dtype, pd.api.extensions.ExtensionDtype
        ):
            digest.update(np.ascontiguousarray(series.to_numpy()).tobytes())
        else:
            digest.update("\x1f".join(map(str, series.tolist())).encode())
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return repr(value)


def task_key(task: FitTask, reuse_compiled: bool = False) -> str:
    """Content hash of a task: what its result depends on.

    Hashes the run table and the target (bytes of every column), the method, the fit options,
    the seed, ``n_boot``, the family predicted, whether the fit goes through a shared compiled
    model (its draws differ from :func:`bayescale.fit`'s by Monte Carlo error only) and the
    bayescale version. The name and the coordinates are not part of it.

    Parameters
    ----------
    task
        The task.
    reuse_compiled
        Whether the task is fitted by a compiled model shared across tasks.

    Returns
    -------
    str
        A 40-character hex digest.
    """
    content = {
        "bayescale": __version__,
        "runs": _frame_digest(task.runs),
        "target": _frame_digest(task.target),
        "method": task.method,
        "fit_kwargs": _jsonable(dict(task.fit_kwargs)),
        "random_seed": int(task.random_seed),
        "family": task.family,
        "n_boot": int(task.n_boot) if task.method == "huber_bootstrap" else None,
        "reuse_compiled": bool(reuse_compiled) and task.method == "bayescale",
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:40]


@functools.cache
def _fit_defaults() -> dict[str, Any]:
    sig = inspect.signature(bayescale_fit)
    return {
        name: p.default for name, p in sig.parameters.items() if p.default is not p.empty
    }


def _refit_options(fit_kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The :class:`~bayescale.refit.RefitModel` arguments of a fit, or None if it has an
    option only :func:`bayescale.fit` handles."""
    defaults = _fit_defaults()
    out: dict[str, Any] = {}
    for name, value in fit_kwargs.items():
        if name in _REFIT_OPTIONS:
            out[name] = value
        elif name in _IGNORED_OPTIONS:
            continue
        elif name == "hierarchy":
            if tuple(value) != tuple(defaults["hierarchy"]):
                return None
        elif name not in defaults or value != defaults[name]:
            return None
    return out


def _fitted_window(task: FitTask, kwargs: Mapping[str, Any]) -> Any:
    """The checkpoints :func:`bayescale.fit` fits (its fit window) of a task's run table."""
    defaults = _fit_defaults()
    return fit_window(
        validate(task.runs),
        kwargs.get("fit_from", defaults["fit_from"]),
        kwargs.get("unscheduled_from", defaults["unscheduled_from"]),
    )


def _layout(task: FitTask) -> str | None:
    """Key of the compiled model a Bayesian task can share, or None."""
    if task.method != "bayescale":
        return None
    try:
        kwargs = bayescale_fit_kwargs(task.runs, task.fit_kwargs, task.random_seed)
        options = _refit_options(kwargs)
        if options is None:
            return None
        return layout_key(_fitted_window(task, kwargs).runs, **options)
    except Exception:  # bad data or options: the worker records the error
        return None


def _plan_reuse(tasks: Sequence[FitTask], reuse_compiled: bool | str) -> list[bool]:
    if reuse_compiled not in (True, False, "auto"):
        raise ValueError(f"reuse_compiled must be True, False or 'auto'; got {reuse_compiled!r}")
    if reuse_compiled is False:
        return [False] * len(tasks)
    layouts = [_layout(t) for t in tasks]
    counts = pd.Series([x for x in layouts if x is not None], dtype=object).value_counts()
    least = 1 if reuse_compiled is True else AUTO_REUSE_MIN_TASKS
    return [x is not None and counts.get(x, 0) >= least for x in layouts]


# --------------------------------------------------------------------------------------------
# One task (runs on a worker)
# --------------------------------------------------------------------------------------------


def _fit_bayescale(task: FitTask, reuse: bool, threads: int | None) -> tuple[Any, str, float]:
    """Fit a Bayesian task: ``(fit, compile path, compile seconds)``."""
    kwargs = bayescale_fit_kwargs(task.runs, task.fit_kwargs, task.random_seed)
    if not reuse:
        fit = bayescale_fit(task.runs, **kwargs)
        return fit, "own", float(fit.meta.get("compile_seconds", np.nan))
    options = _refit_options(kwargs)
    assert options is not None  # planned by _plan_reuse
    window = _fitted_window(task, kwargs)  # what bayescale.fit fits
    warn_if_unscheduled(
        window, kwargs.get("unscheduled_from", _fit_defaults()["unscheduled_from"])
    )
    t0 = time.perf_counter()
    model, compiled = cached_refit_model(window.runs, **options)
    seconds = time.perf_counter() - t0 if compiled else 0.0
    fit = model.fit(window.runs, random_seed=task.random_seed, cores=threads)
    fit.meta["compile_seconds"] = seconds
    warn_on_problems(fit.diagnostics, fit.idata.posterior.sizes["chain"])
    return fit, "compiled" if compiled else "reused", seconds


def _posterior_bytes(fit: Any) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = fit.save(Path(tmp) / "fit.nc")
        return path.read_bytes()


def _run_task(
    task: FitTask, reuse: bool, keep_posterior: bool, threads: int | None
) -> dict[str, Any]:
    """Fit and score one task; an error of the fit is a result, not an exception."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "method": task.method,
        "n_train": len(task.runs),
        "n_target": 0 if task.target is None else len(task.target),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "started": time.time(),
        "compiled": "none",
    }
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = draws = None
            if task.method == "bayescale":
                fit, record["compiled"], record["compile_seconds"] = _fit_bayescale(
                    task, reuse, threads
                )
                record["sampling_seconds"] = float(fit.meta.get("sampling_seconds", np.nan))
                diag = fit.diagnostics
                record |= {
                    "max_rhat": diag.max_rhat,
                    "divergences": diag.divergences,
                    "min_ess_bulk": diag.min_ess_bulk,
                    "min_ess_tail": diag.min_ess_tail,
                }
                if task.target is not None:
                    pred, draws = predict_targets(fit, task.target, task.family)
                if keep_posterior:
                    record["_posterior"] = _posterior_bytes(fit)
            else:
                pred, draws = fit_and_predict(
                    task.method, task.runs, task.target, task.family, task.fit_kwargs,
                    task.n_boot, task.random_seed,
                )
            if pred is not None:
                band = SCORED_BAND.get(task.method, "observed")
                record |= score_prediction(task.target, pred, band, draws)
        record |= {"status": "ok", "error": ""}
    except Exception as err:  # a failed fit is a result, not the end of the batch
        record |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        record.pop("_posterior", None)
    record["warnings"] = summarize_warnings(caught)
    record["finished"] = time.time()
    record["total_seconds"] = time.perf_counter() - t0
    return {k: _jsonable(v) if k != "_posterior" else v for k, v in record.items()}


# --------------------------------------------------------------------------------------------
# Results folder
# --------------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _store(results_dir: Path | None, key: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write a finished task (posterior first, then its record: the record marks it done)."""
    record = dict(record)
    posterior = record.pop("_posterior", None)
    if results_dir is None:
        return record
    if posterior is not None:
        _write_atomic(results_dir / f"{key}.nc", posterior)
        record["posterior"] = f"{key}.nc"  # relative: the folder can move
    _write_atomic(results_dir / f"{key}.json", json.dumps(record).encode())
    return record


def _load_done(
    results_dir: Path | None, key: str, keep_posterior: bool, rerun_failed: bool
) -> dict[str, Any] | None:
    if results_dir is None:
        return None
    path = results_dir / f"{key}.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):  # a partial file from a crash: run the task again
        return None
    if rerun_failed and record.get("status") != "ok":
        return None
    wants_posterior = keep_posterior and record.get("method") == "bayescale"
    if wants_posterior and record.get("status") == "ok" and not (
        record.get("posterior") and (results_dir / record["posterior"]).exists()
    ):
        return None
    return record


# --------------------------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------------------------


def local_client(
    n_workers: int | None = None, threads_per_worker: int = 1, **cluster_kwargs: Any
) -> Client:
    """A ``distributed.Client`` on a new ``LocalCluster`` sized to this machine.

    One single-threaded worker process per core: a worker runs one task at a time and the
    task's chains run in the fit's own threads (``benchmarks/fit_many.py`` measures this
    against fewer workers with more cores per fit; ``benchmarks/results/FIT_MANY.md``).
    Workers are processes because NUTS and numba hold the GIL for long stretches.

    Parameters
    ----------
    n_workers
        Worker processes (default: the machine's cores).
    threads_per_worker
        Tasks a worker runs at once.
    **cluster_kwargs
        Further ``LocalCluster`` arguments (e.g. ``memory_limit``).

    Returns
    -------
    distributed.Client
        Closing it (``client.close()``, or leaving its ``with`` block) also shuts the cluster.
        Its dashboard (when ``bokeh`` is installed) listens on a free port.
    """
    from distributed import Client

    kwargs: dict[str, Any] = {
        "n_workers": n_workers or os.cpu_count() or 1,
        "threads_per_worker": threads_per_worker,
        "processes": True,
        "dashboard_address": ":0",  # a free port, not 8787 (which another cluster may hold)
        # Dask logs a warning whenever a worker's event loop is blocked for seconds, which a
        # numba compile or a NUTS run in the worker does by design, and when a worker dies and
        # is restarted (which fit_many reports in its table): errors only.
        "silence_logs": logging.ERROR,
        **cluster_kwargs,
    }
    return Client(**kwargs)  # a client that starts its cluster also shuts it


@contextlib.contextmanager
def client_for(client: Client | str | None, n_workers: int | None) -> Iterator[Client]:
    """The Dask client to use, closing the one made here (and its cluster) afterwards.

    Parameters
    ----------
    client
        A ``distributed.Client`` (used as it is, not closed), a scheduler address (a client
        connected to it), or ``None`` (:func:`local_client` with ``n_workers``).
    n_workers
        Workers of the local cluster started for ``client=None``.

    Yields
    ------
    distributed.Client
    """
    from distributed import Client

    if client is None:
        made = local_client(n_workers)
    elif isinstance(client, str):
        made = Client(client)
    else:
        yield client
        return
    try:
        yield made
    finally:
        _close_quietly(made)


def _close_quietly(client: Client) -> None:
    """Close a client (and the cluster it started) without Dask's shutdown chatter.

    A LocalCluster restores its log level before its nannies stop their workers, which then
    log each stop at INFO, and a WARNING when a worker holding compiled numba code takes over
    4 s to exit and is killed: routine for these workers, so errors only while closing.
    """
    from distributed.utils import silence_logging_cmgr

    with silence_logging_cmgr(logging.ERROR):
        client.close()


def dashboard_link(client: Client) -> str | None:
    """The address of the scheduler's dashboard, or None when it does not run.

    The dashboard needs ``bokeh`` where the scheduler runs; without it Dask serves only a page
    saying so, and no link is given.

    Parameters
    ----------
    client
        The Dask client.

    Returns
    -------
    str or None
    """
    with contextlib.suppress(Exception):
        if "dashboard" in client.scheduler_info().get("services", {}) and client.run_on_scheduler(
            _has_bokeh
        ):
            return str(client.dashboard_link)
    return None


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _progress(client: Client, futures: list[Future]) -> threading.Thread | None:
    """Dask's progress bar: a widget in a notebook, a text bar on a terminal (in a thread,
    because the text bar blocks while results are written as they complete), none when
    output goes to a file (the text bar redraws itself ten times a second)."""
    import sys

    from distributed import progress
    from distributed.utils import is_kernel

    if is_kernel():
        from IPython.display import display

        display(progress(futures, notebook=True, multi=False))
        return None
    if not sys.stdout.isatty():
        return None
    thread = threading.Thread(
        target=progress,
        args=(futures,),
        kwargs={"notebook": False, "scheduler": client.scheduler.address},
        daemon=True,
    )
    thread.start()
    return thread


def run_on_dask(
    func: Callable[..., Any],
    calls: Mapping[str, tuple[Any, ...]],
    on_done: Callable[[str, Any, BaseException | None], None],
    client: Client,
    *,
    retries: int = 1,
    progress: bool = True,
) -> None:
    """Submit ``func(*args)`` for every ``key: args`` and hand each outcome to ``on_done``.

    ``on_done(key, result, error)`` is called in this thread as each task completes (``error``
    is the exception of a task that raised or was lost, else None). Keys (with a suffix per
    call) name the Dask tasks.

    Parameters
    ----------
    func
        Picklable function.
    calls
        Task key -> positional arguments.
    on_done
        Called once per key, in completion order.
    client
        The Dask client.
    retries
        Extra attempts of a task that raises (a worker dying is handled by Dask itself).
    progress
        Show Dask's progress bar.
    """
    from concurrent.futures import CancelledError

    from distributed import as_completed

    # One Dask key per call: a rerun after Ctrl-C must not be handed the cancelled future of
    # the interrupted call, which the scheduler may still hold under the same key.
    call_id = uuid.uuid4().hex[:8]
    futures = {
        client.submit(func, *args, key=f"{key}-{call_id}", retries=retries, pure=False): key
        for key, args in calls.items()
    }
    bar = _progress(client, list(futures)) if progress and futures else None
    try:
        for fut in as_completed(list(futures)):
            key = futures[fut]
            if fut.status == "finished":
                on_done(key, fut.result(), None)
            else:
                try:
                    error = fut.exception()
                except BaseException as err:  # cancelled
                    error = err
                if error is None:  # not finished, yet no exception: never a result
                    error = CancelledError(f"task {key} ended as {fut.status!r}")
                on_done(key, None, error)
            fut.release()
    except BaseException:
        client.cancel(list(futures))  # waits for the scheduler, unlike Future.cancel
        raise
    finally:
        if bar is not None:
            bar.join(timeout=2)


# --------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------


def fit_many(
    tasks: Sequence[FitTask | Mapping[str, Any]],
    client: Client | str | None = None,
    results_dir: str | Path | None = None,
    keep_posterior: bool = False,
    *,
    retries: int = 1,
    reuse_compiled: bool | str = "auto",
    threads_per_fit: int | None = None,
    rerun_failed: bool = False,
    n_workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fit (and score) a batch of tasks on Dask, writing each result as it completes.

    Parameters
    ----------
    tasks
        :class:`FitTask` objects, or mappings of their fields.
    client
        A ``distributed.Client`` (any cluster); a scheduler address such as
        ``"tcp://host:8786"``; ``None`` to start a ``LocalCluster`` for this call
        (:func:`local_client`); or ``"serial"`` to run the tasks one after another in this
        process, without Dask (same results: every task seeds itself).
    results_dir
        Folder of finished tasks: ``<key>.json`` per task (its row of the table) and, with
        ``keep_posterior``, ``<key>.nc`` (:func:`bayescale.load` reads it), where ``key`` is
        :func:`task_key`. Tasks found there are not run again, so an interrupted batch resumes
        where it stopped. ``None`` keeps results in memory only.
    keep_posterior
        Save the posterior of every Bayesian fit (NetCDF) in ``results_dir`` (needs
        ``results_dir``).
    retries
        Extra attempts of a task that raises outside the fit itself; a fit that raises is
        recorded as ``failed`` at once, and tasks of a worker that dies are run again by Dask
        (its ``distributed.scheduler.allowed-failures``, 3 by default).
    reuse_compiled
        ``"auto"``: tasks of one layout and model settings share a model compiled once per
        worker when at least :data:`AUTO_REUSE_MIN_TASKS` of them are in the batch; ``True``:
        whenever their fit options allow it; ``False``: every Bayesian task is
        :func:`bayescale.fit` (its own compile). Tasks with options only :func:`bayescale.fit`
        has (``hierarchy=("arch", "family")``, ``config_effects``, another sampler, ...)
        always compile their own model.
    threads_per_fit
        Threads the chains of a shared-model fit run in (default: one per chain, up to the
        worker machine's cores); the draws do not depend on it.
    rerun_failed
        Run tasks that failed before again instead of reporting their stored error.
    n_workers
        Workers of the ``LocalCluster`` started when ``client`` is None (default: the cores).
    progress
        Show Dask's progress bar (and print the dashboard's address when it runs).

    Returns
    -------
    pandas.DataFrame
        One row per task, indexed by the coordinates of the tasks (by ``name`` when they have
        none), with ``status`` (``"ok"``; ``"failed"``: the fit or its scoring raised, see
        ``error``; ``"lost"``: the task never returned, e.g. its workers kept dying; lost tasks
        are not stored and run again next time), the metrics of
        :func:`bayescale.evaluate.score_prediction` (``are``, ``coverage_90``, ``width_90``,
        ...; NaN without a target), the diagnostics (``max_rhat``, ``divergences``,
        ``min_ess_bulk``, ``min_ess_tail``), the timings (``compile_seconds``,
        ``sampling_seconds``, ``total_seconds``; ``started``/``finished`` as Unix times),
        ``compiled`` (``"compiled"``: this task compiled its worker's shared model,
        ``"reused"``: it reused it, ``"own"``: :func:`bayescale.fit` compiled for it alone,
        ``"none"``: not a Bayesian fit), ``worker``, ``cached`` (read from ``results_dir``),
        ``key``, ``posterior`` (path of the NetCDF file) and ``warnings``.

    Examples
    --------
    >>> tasks = [FitTask(runs, target=held_out, fit_kwargs={"draws": 500}, random_seed=s,
    ...                  coords={"seed": s}) for s in range(16)]          # doctest: +SKIP
    >>> table = fit_many(tasks, results_dir="fits/")                   # doctest: +SKIP
    >>> table = fit_many(tasks, Client("tcp://host:8786"), "fits/")    # doctest: +SKIP
    """
    items = [_as_task(t, i) for i, t in enumerate(tasks)]
    if keep_posterior and results_dir is None:
        raise ValueError("keep_posterior needs a results_dir to write the posteriors to")
    out_dir = Path(results_dir) if results_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    reuse = _plan_reuse(items, reuse_compiled)
    keys = [task_key(t, r) for t, r in zip(items, reuse, strict=True)]
    records: dict[str, dict[str, Any]] = {}
    todo: dict[str, tuple[Any, ...]] = {}
    for task, use, key in zip(items, reuse, keys, strict=True):
        if key in records or key in todo:
            continue  # the same content twice: fitted once
        done = _load_done(out_dir, key, keep_posterior, rerun_failed)
        if done is not None:
            records[key] = done | {"cached": True}
        else:
            todo[key] = (task, use, keep_posterior, threads_per_fit)

    def on_done(key: str, result: Any, error: BaseException | None) -> None:
        if error is None:
            records[key] = _store(out_dir, key, result) | {"cached": False}
        else:  # lost: not stored, so the next run tries it again
            records[key] = {"status": "lost", "error": f"{type(error).__name__}: {error}",
                            "method": todo[key][0].method, "cached": False}

    if progress:
        n_unique = len(records) + len(todo)
        print(f"fit_many: {len(items)} tasks, {n_unique} distinct, {len(records)} done before, "
              f"{len(todo)} to run", flush=True)
    if todo and client == "serial":
        for key, args in todo.items():
            on_done(key, _run_task(*args), None)
    elif todo:
        with client_for(client, n_workers) as dask_client:
            link = dashboard_link(dask_client) if progress else None
            if link:
                print(f"Dask dashboard: {link}", flush=True)
            calls = {f"bayescale-fit-{key}": args for key, args in todo.items()}
            run_on_dask(
                _run_task,
                calls,
                lambda k, r, e: on_done(k.removeprefix("bayescale-fit-"), r, e),
                dask_client,
                retries=retries,
                progress=progress,
            )
    return _table(items, keys, records, out_dir)


def _table(
    tasks: Sequence[FitTask],
    keys: Sequence[str],
    records: Mapping[str, dict[str, Any]],
    results_dir: Path | None,
) -> pd.DataFrame:
    coord_names: list[str] = []
    for task in tasks:
        coord_names += [c for c in task.coords if c not in coord_names]
    rows = []
    for task, key in zip(tasks, keys, strict=True):
        rec = {k: v for k, v in records[key].items() if not k.startswith("_")}
        if rec.get("posterior") and results_dir is not None:
            rec["posterior"] = str(results_dir / rec["posterior"])
        rows.append({**dict(task.coords), **rec, "name": task.name, "key": key})
    table = pd.DataFrame(rows)
    for col in RESULT_COLUMNS:
        if col not in table.columns:
            table[col] = np.nan
    main = [c for c in RESULT_COLUMNS if c not in coord_names]
    extra = [c for c in table.columns if c not in coord_names and c not in RESULT_COLUMNS]
    table = table[coord_names + main + extra]
    for col in ("cached",):
        table[col] = table[col].fillna(False).astype(bool)
    if coord_names and all(task.coords for task in tasks):
        return table.set_index(coord_names)
    return table.set_index("name", drop=False).rename_axis("task")


# --------------------------------------------------------------------------------------------
# The Hitchhiker's grid
# --------------------------------------------------------------------------------------------


def grid_tasks(
    runs: pd.DataFrame,
    methods: Sequence[str] = ("bayescale", "curve_fit"),
    fractions: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0),
    n_models: Sequence[int] | None = None,
    *,
    max_scale_ups: int | None = None,
    families: Sequence[str] | None = None,
    min_models: int = 3,
    max_points: int | None = 20,
    fit_kwargs: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    warmup_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
) -> list[FitTask]:
    """The Hitchhiker's grid of every family: number of models x share of training x scale-up.

    For a family, ``F_target`` is the protocol's (the last ``target_fraction`` of its
    largest model's runs). Its smaller sizes, largest first, are ``s_1 > s_2 > ...``; a cell
    ``(m, k, q)`` fits on the ``k`` largest sizes at or below ``s_m`` (scale-up ``N_target /
    s_m``), keeping in each run the checkpoints in its first ``q`` share of training that are
    past the warm-up cut (as :func:`bayescale.evaluate.are_grid_models_fraction` and
    :func:`~bayescale.evaluate.are_grid_models_scaleup` do on their two faces of this grid).
    Cells with fewer than two sizes or five rows are left out.

    Parameters
    ----------
    runs
        Run table of one or more families.
    methods
        Methods fitted in every cell (:data:`bayescale.evaluate.METHODS`).
    fractions
        Shares of each training run, in (0, 1].
    n_models
        Numbers of models (default: 2 up to all sizes below the target).
    max_scale_ups
        Use at most this many of the smallest scale-ups (the largest training sizes ``s_1,
        s_2, ...``); default all (Chinchilla's IsoFLOP points have 141 sizes below the
        target).
    families
        Families to use (default: every family with at least ``min_models`` sizes).
    min_models
        Fewest distinct sizes (the target's included) a family needs.
    max_points
        Thin every training run of a cell to at most this many log-spaced checkpoints
        (``None``: all).
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit`.
    random_seed
        Seed of every fit.
    warmup_tokens, target_fraction
        Protocol settings (10B tokens and 0.3 in the paper).

    Returns
    -------
    list of FitTask
        Coordinates ``family``, ``method``, ``scale_up``, ``n_models``, ``fraction``; named
        ``family/method/m<m>/k<k>/q<q>``.
    """
    qs = [float(q) for q in fractions]
    if any(not 0 < q <= 1 for q in qs):
        raise ValueError(f"fractions must be in (0, 1]; got {qs}")
    if families is None:
        sizes_per = runs.groupby("family")["params"].nunique()
        families = sorted(str(f) for f in sizes_per.index[sizes_per >= min_models])
    tasks: list[FitTask] = []
    for family in families:
        fam = runs.loc[runs["family"].astype(str) == family]
        train, target, sizes = grid_split(fam, warmup_tokens, target_fraction)
        if target.empty:
            continue
        n_target = float(fam["params"].max())
        for m, top in enumerate(sizes[:max_scale_ups], start=1):
            below = sizes[sizes <= top]
            ks = [k for k in (n_models or range(2, len(below) + 1)) if 2 <= k <= len(below)]
            for k in ks:
                sub = train.loc[train["params"].isin(below[:k])]
                for q in qs:
                    cell = sub.loc[sub["tokens"] <= q * sub["_run_end"] * (1 + CUT_RTOL)]
                    cell = cell.drop(columns=["_run_end"]).reset_index(drop=True)
                    if cell["params"].nunique() < 2 or len(cell) < 5:
                        continue
                    if max_points is not None:
                        cell = thin_log_spaced(cell, max_points=max_points)
                    for method in methods:
                        tasks.append(
                            FitTask(
                                runs=cell,
                                target=target,
                                method=method,
                                fit_kwargs=dict(fit_kwargs or {}),
                                random_seed=random_seed,
                                family=family,
                                coords={
                                    "family": family,
                                    "method": method,
                                    "scale_up": n_target / float(top),
                                    "n_models": k,
                                    "fraction": q,
                                },
                                name=f"{family}/{method}/m{m}/k{k}/q{q:g}",
                            )
                        )
    return tasks


def _scale_up_bin(scale_up: np.ndarray) -> np.ndarray:
    """Upper edge of a scale-up's power-of-two bin: (1, 2] -> 2, (2, 4] -> 4, ..."""
    return 2.0 ** np.ceil(np.log2(np.asarray(scale_up, dtype=float)) - 1e-9)


def grid_arrays(
    results: pd.DataFrame, metric: str = "are", method: str = "bayescale"
) -> xr.DataArray:
    """Mean over families of one metric of a grid's results, by scale-up, models and share.

    Scale-ups are binned by powers of two (a family's ``scale_up`` of 3.2 counts as ``<= 4x``),
    so families of different sizes share cells. Each family counts once per cell (the mean
    over families of its value there).

    Parameters
    ----------
    results
        Table of :func:`fit_many` on :func:`grid_tasks` (index or columns ``family``,
        ``method``, ``scale_up``, ``n_models``, ``fraction``).
    metric
        Column to average (``"are"``, ``"coverage_90"``, ``"width_90"``, ...).
    method
        Method whose rows are used.

    Returns
    -------
    xarray.DataArray
        Dims ``("scale_up", "n_models", "fraction")`` (``scale_up`` = the bin's upper edge),
        with a ``n_families`` coordinate-array of the same shape; NaN where no family has an
        ``ok`` cell.
    """
    import xarray as xr

    frame = results.reset_index()
    frame = frame.loc[(frame["method"] == method) & (frame["status"] == "ok")].copy()
    frame["scale_up"] = _scale_up_bin(frame["scale_up"].to_numpy())
    per_family = frame.groupby(["scale_up", "n_models", "fraction", "family"])[metric].mean()
    grouped = per_family.groupby(level=["scale_up", "n_models", "fraction"])
    mean, count = grouped.mean(), grouped.count()
    da = xr.DataArray.from_series(mean).rename(metric)
    da = da.assign_coords(
        n_families=(da.dims, xr.DataArray.from_series(count).reindex_like(da).fillna(0).values)
    )
    da.attrs = {"method": method, "metric": metric, "family": "mean over families"}
    return da


_METRIC_STYLE = {
    "are": ("ARE (%)", "viridis_r", 0.2),
    "are_final": ("ARE of final checkpoints (%)", "viridis_r", 0.2),
    "coverage_90": ("90% band coverage (%)", "viridis", 1.0),
    "width_90": ("90% band width (% of loss)", "magma_r", None),
}


def plot_grid(
    results: pd.DataFrame,
    metric: str = "are",
    method: str = "bayescale",
    path: str | Path | None = None,
    max_panels: int = 4,
) -> Any:
    """Heatmaps of a grid metric: one panel per scale-up bin, models x share of training.

    Parameters
    ----------
    results
        Table of :func:`fit_many` on :func:`grid_tasks`.
    metric, method
        What to draw (see :func:`grid_arrays`).
    path
        Write the figure here (PNG) when given.
    max_panels
        Draw at most this many scale-up bins (the smallest ones).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt


    da = grid_arrays(results, metric, method)
    bins = da["scale_up"].values[:max_panels]
    label, cmap, vmax = _METRIC_STYLE.get(metric, (f"{metric} (%)", "viridis", None))
    if len(bins) == 0:
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.text(0.5, 0.5, f"no ok {method} cells", ha="center", va="center")
        ax.set_axis_off()
    else:
        fig, axes = plt.subplots(
            1, len(bins), figsize=(4.6 * len(bins), 0.9 + 0.45 * da.sizes["n_models"] + 1.2),
            squeeze=False,
        )
        for ax, edge in zip(axes[0], bins, strict=True):
            panel = da.sel(scale_up=edge).dropna("n_models", how="all")
            fams = int(panel["n_families"].max()) if panel.size else 0
            plot_are_heatmap(
                panel, ax=ax, vmax=vmax, label=label, cmap=cmap,
                title=f"{method}: scale-up <= {edge:g}x ({fams} families)",
            )
        fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def grid_summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method of a grid's results: cells, failures and mean metrics.

    Means are over families of each family's mean over its ``ok`` cells.

    Parameters
    ----------
    results
        Table of :func:`fit_many` on :func:`grid_tasks`.

    Returns
    -------
    pandas.DataFrame
        Index ``method``; columns ``cells``, ``ok``, ``failed``, ``families``, ``are``,
        ``coverage_90``, ``width_90`` (fractions; NaN where a method has no band),
        ``total_seconds`` (mean per task).
    """
    frame = results.reset_index()
    rows = {}
    for method, sub in frame.groupby("method", sort=False):
        ok = sub.loc[sub["status"] == "ok"]
        fam = ok.groupby("family")[["are", "coverage_90", "width_90"]].mean()
        rows[method] = {
            "cells": len(sub),
            "ok": len(ok),
            "failed": int((sub["status"] != "ok").sum()),
            "families": ok["family"].nunique(),
            **fam.mean().to_dict(),
            "total_seconds": float(sub["total_seconds"].mean()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def grid_contrast(
    results: pd.DataFrame,
    method: str = "bayescale",
    reference: str = "curve_fit",
    metric: str = "are",
    by: Sequence[str] = (),
    n_boot: int = 2000,
    level: float = 0.9,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Paired difference ``metric[method] - metric[reference]`` over the cells both fitted.

    Per family the difference is averaged over its cells, and the mean over families gets a
    percentile-bootstrap interval over families
    (:func:`bayescale.evaluate.bootstrap_mean_interval`); negative ARE differences favour
    ``method``.

    Parameters
    ----------
    results
        Table of :func:`fit_many` on :func:`grid_tasks` with both methods.
    method, reference
        The methods compared.
    metric
        Column compared.
    by
        Further grid coordinates to split the contrast by (e.g. ``("n_models",)``).
    n_boot, level, random_seed
        Bootstrap settings.

    Returns
    -------
    pandas.DataFrame
        One row per group of ``by`` (one row without it): ``cells``, ``families``,
        ``mean_method``, ``mean_reference``, ``mean_diff``, ``diff_lower``, ``diff_upper``
        and ``share_cells_method_better``.
    """
    frame = results.reset_index()
    frame = frame.loc[frame["status"] == "ok"]
    cell = ["family", "scale_up", "n_models", "fraction"]
    wide = frame.pivot_table(index=cell, columns="method", values=metric, aggfunc="first")
    if method not in wide.columns or reference not in wide.columns:
        return pd.DataFrame()
    wide = wide[[method, reference]].dropna().reset_index()
    wide["diff"] = wide[method] - wide[reference]
    groups = wide.groupby(list(by)) if by else [((), wide)]
    rows = []
    for key, sub in groups:
        fam = sub.groupby("family")[[method, reference, "diff"]].mean()
        mean, lower, upper = bootstrap_mean_interval(fam["diff"], n_boot, level, random_seed)
        keys = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        rows.append({
            **keys,
            "cells": len(sub),
            "families": len(fam),
            "mean_method": float(fam[method].mean()),
            "mean_reference": float(fam[reference].mean()),
            "mean_diff": mean,
            "diff_lower": lower,
            "diff_upper": upper,
            "share_cells_method_better": float(np.mean(sub["diff"] < 0)),
        })
    return pd.DataFrame(rows)
