"""Held-out evaluation of scaling-law predictors, following the Hitchhiker's Guide protocol.

"A Hitchhiker's Guide to Scaling Law Estimation" (Choshen, Zhang, Andreas) scores a fitted law by
predicting the largest model of a family from the smaller ones:

* ``F_train``: the runs of a family except the largest-N ones, past a 10B-token warm-up cut;
* ``F_target``: the checkpoints of the largest-N runs in the last 30% of each run;
* ARE: mean over ``F_target`` of ``|L - L_hat| / L``.

This module holds

* :func:`evaluate`, which runs the protocol family by family for several methods;
* the paper's grids :func:`are_grid_models_fraction` and :func:`are_grid_models_scaleup`, and
  :func:`plot_are_heatmap`;
* :func:`transfer`: a new family predicted from one of its runs, by hierarchical borrowing from
  the other families or with the guide's borrowed ``(A, alpha)`` of Muennighoff et al.;
* :func:`paper_findings`: the guide's headline findings (intermediate checkpoints, the 10B-token
  cut, the number of models) as paired per-family ARE differences with bootstrap intervals
  (:func:`summarize_differences`, :func:`bootstrap_mean_interval`).

The metrics (:func:`absolute_relative_error`, :func:`signed_relative_error`,
:func:`interval_coverage`, :func:`interval_width`, :func:`crps_from_samples`), the scoring of
one prediction dataset (:func:`score_prediction`), one method fitted and predicting
(:func:`fit_and_predict`) and :func:`plot_are_heatmap` live in :mod:`bayescale.scoring`, below
:mod:`bayescale.batch`, and are importable from here too.

Method names
------------
``"bayescale"`` (:func:`bayescale.fit`, band ``observed``), ``"curve_fit"``
(:func:`bayescale.baselines.fit_least_squares`), ``"huber"``
(:func:`bayescale.baselines.fit_huber`), ``"huber_bootstrap"``
(:func:`bayescale.baselines.bootstrap_huber`, band ``observed``), ``"best_loss"`` and
``"most_trained"`` (the naive baselines of the paper).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.batch import FitTask, fit_many
from bayescale.data.prepare import (
    CUT_RTOL,
    DEFAULT_TARGET_FRACTION,
    DEFAULT_WARMUP_TOKENS,
    protocol_split,
    thin_log_spaced,
)
from bayescale.fit import fit as bayescale_fit
from bayescale.scoring import (
    METHODS,
    SCORED_BAND,
    absolute_relative_error,
    bootstrap_mean_interval,
    crps_from_samples,
    fit_and_predict,
    grid_split,
    interval_coverage,
    interval_width,
    plot_are_heatmap,
    score_prediction,
    signed_relative_error,
    summarize_warnings,
)

__all__ = [
    "FINDINGS",
    "METHODS",
    "TRANSFER_METHODS",
    "Findings",
    "absolute_relative_error",
    "are_grid_models_fraction",
    "are_grid_models_scaleup",
    "bootstrap_mean_interval",
    "choose_source_run",
    "crps_from_samples",
    "evaluate",
    "fit_and_predict",
    "interval_coverage",
    "interval_width",
    "paper_findings",
    "plot_are_heatmap",
    "score_prediction",
    "signed_relative_error",
    "summarize_differences",
    "transfer",
]

_LAW_METHODS = ("bayescale", "curve_fit", "huber", "huber_bootstrap")


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Scoring one prediction
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Fitting one method
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The protocol over families
# --------------------------------------------------------------------------------------------


def _skip_reason(
    family_runs: pd.DataFrame, train: pd.DataFrame, target: pd.DataFrame, min_models: int
) -> str | None:
    n_sizes = family_runs["params"].nunique()
    if n_sizes < min_models:
        return f"{n_sizes} distinct model sizes < min_models={min_models}"
    if len(target) == 0:
        return "empty F_target"
    if train["params"].nunique() < 2 or len(train) < 5:
        return (
            f"F_train past the warm-up cut has {train['params'].nunique()} sizes and "
            f"{len(train)} rows (a law fit needs >= 2 sizes and >= 5 rows)"
        )
    return None


@dataclass(frozen=True)
class _Attempt:
    """One method fitted and scored on one family (a raised error is a result, not the end)."""

    status: str  # "ok" or "failed"
    reason: str  # the error of a failed attempt
    seconds: float
    scores: dict[str, Any]  # metrics of score_prediction (none if failed) and "warnings"
    output: tuple[Any, ...] | None  # what the fit returned (None if failed)


def _attempt(call: Callable[[], tuple[Any, ...]], target: pd.DataFrame, band: str) -> _Attempt:
    """Time ``call``, record its warnings and score its prediction of ``target``.

    ``call`` fits a method and returns the prediction dataset and the band's draws (or
    ``None``) first; any exception it or the scoring raises makes a ``"failed"`` attempt.
    """
    t0 = time.perf_counter()
    caught: list[warnings.WarningMessage] = []
    output = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = call()
        scores = score_prediction(target, result[0], band, result[1])
        status, why, output = "ok", "", result
    except Exception as err:  # a failed fit is a result, not the end of the benchmark
        scores, status, why = {}, "failed", f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - t0
    scores["warnings"] = summarize_warnings(caught)
    return _Attempt(status, why, seconds, scores, output)


def _print_attempt(tag: str, family: str, method: str, attempt: _Attempt) -> None:
    """One progress line: ARE (and 90% coverage where there is a band) or the error."""
    ok = attempt.status == "ok"
    what = f"ARE {100 * attempt.scores['are']:.2f}%" if ok else attempt.reason
    cover = attempt.scores.get("coverage_90", np.nan)
    if ok and np.isfinite(cover):
        what += f", 90% coverage {100 * cover:.0f}%"
    print(f"[{tag}] {family} / {method}: {what} ({attempt.seconds:.1f} s)", flush=True)


def _columns_first(out: pd.DataFrame, first: Sequence[str]) -> pd.DataFrame:
    """``out`` with those of the ``first`` columns it has in front, in that order."""
    lead = [c for c in first if c in out.columns]
    return out[lead + [c for c in out.columns if c not in lead]]


def evaluate(
    runs: pd.DataFrame,
    methods: Sequence[str] = ("bayescale", "curve_fit", "huber", "best_loss", "most_trained"),
    min_models: int = 3,
    fit_kwargs: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    *,
    n_boot: int = 200,
    warmup_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
    max_points: int | None = None,
    verbose: bool = True,
    client: Any | None = None,
) -> pd.DataFrame:
    """Run the Hitchhiker's protocol on every family of ``runs`` for every method.

    For each family: split into ``F_train`` / ``F_target`` (:func:`bayescale.protocol_split`),
    fit each method on ``F_train`` of that family alone and score its prediction of
    ``F_target`` with :func:`score_prediction` (band ``observed`` for ``"bayescale"`` and
    ``"huber_bootstrap"``; the point methods have no intervals).

    Parameters
    ----------
    runs
        Run table with columns ``family``, ``run``, ``params``, ``tokens``, ``loss``.
    methods
        Methods to run, from :data:`METHODS`.
    min_models
        Families with fewer distinct model sizes (``F_max`` included) are skipped.
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit` for ``"bayescale"`` (e.g. ``draws``,
        ``tune``, ``chains``).
    random_seed
        Seed of the Bayesian fits and the bootstrap.
    n_boot
        Replicates of ``"huber_bootstrap"``.
    warmup_tokens, target_fraction
        Protocol settings (10B tokens and 0.3 in the paper).
    max_points
        Thin every ``F_train`` run to at most this many checkpoints, log-spaced
        (:func:`bayescale.thin_log_spaced`); ``F_target`` is always scored in full.
    verbose
        Print one line per family and method, with the time taken.
    client
        Run the fits as one batch on Dask (:func:`bayescale.fit_many`): a
        ``distributed.Client``, a scheduler address or ``"local"`` (a ``LocalCluster`` for
        this call). ``None`` (default) fits one family and method after another here. The
        results are the same either way.

    Returns
    -------
    pandas.DataFrame
        One row per family x method with ``family``, ``method``, ``status`` (``"ok"``,
        ``"skipped"`` -- the family cannot be evaluated -- or ``"failed"`` -- the method
        raised), ``reason``, ``n_models`` (distinct sizes), ``n_train``, ``train_max_params``,
        ``target_params``, ``seconds``, ``warnings`` (distinct warning messages of the fit, e.g.
        sampling problems) and the metrics of :func:`score_prediction` (NaN unless
        ``status == "ok"``).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    rows: list[dict[str, Any]] = []
    batch: list[tuple[int, Any]] = []  # (row, FitTask) run on Dask when a client is given
    for family, family_runs in runs.groupby("family", sort=True):
        split = protocol_split(
            family_runs, warmup_tokens=warmup_tokens, target_fraction=target_fraction
        )
        train, target = split.train, split.target
        if max_points is not None and len(train):
            train = thin_log_spaced(train, max_points=max_points)
        base = {
            "family": str(family),
            "n_models": int(family_runs["params"].nunique()),
            "n_train": len(train),
            "train_max_params": float(train["params"].max()) if len(train) else np.nan,
            "target_params": float(family_runs["params"].max()),
        }
        reason = _skip_reason(family_runs, train, target, min_models)
        if reason is not None:
            if verbose:
                print(f"[evaluate] {family}: skipped ({reason})", flush=True)
            rows.extend(
                base | {"method": m, "status": "skipped", "reason": reason} for m in methods
            )
            continue
        for method in methods:
            if client is not None:
                task = FitTask(train, target, method, dict(fit_kwargs or {}), random_seed,
                               str(family), name=f"{family}/{method}", n_boot=n_boot)
                batch.append((len(rows), task))
                rows.append(base | {"method": method})
                continue
            call = partial(
                fit_and_predict,
                method, train, target, str(family), fit_kwargs, n_boot, random_seed,
            )
            attempt = _attempt(call, target, SCORED_BAND.get(method, "observed"))
            rows.append(
                base
                | {"method": method, "status": attempt.status, "reason": attempt.reason}
                | {"seconds": attempt.seconds}
                | attempt.scores
            )
            if verbose:
                _print_attempt("evaluate", str(family), method, attempt)
    if batch:
        _fill_from_batch(rows, batch, client, verbose)
    first = [
        "family",
        "method",
        "status",
        "reason",
        "n_models",
        "n_train",
        "train_max_params",
        "target_params",
        "seconds",
    ]
    return _columns_first(pd.DataFrame(rows), first)


def _fill_from_batch(
    rows: list[dict[str, Any]], batch: Sequence[tuple[int, Any]], client: Any, verbose: bool
) -> None:
    """Run the pending fits of :func:`evaluate` with :func:`bayescale.fit_many`; fill their rows."""
    table = fit_many([task for _, task in batch], None if client == "local" else client,
                     progress=verbose)
    score_keys = ("n_target", "n_final", "are", "signed_error", "are_final",
                  "signed_error_final", "crps", "crps_rel")
    for (i, task), rec in zip(batch, table.to_dict("records"), strict=True):
        ok = rec["status"] == "ok"
        scores = {
            k: v for k, v in rec.items()
            if ok and (k in score_keys or k.startswith(("coverage_", "width_")))
        }
        warns = rec["warnings"] if isinstance(rec["warnings"], str) else ""  # NaN if lost
        attempt = _Attempt("ok" if ok else "failed", "" if ok else str(rec["error"]),
                           float(rec["total_seconds"]), scores | {"warnings": warns}, None)
        rows[i] |= {"status": attempt.status, "reason": attempt.reason,
                    "seconds": attempt.seconds} | attempt.scores
        if verbose:
            _print_attempt("evaluate", rows[i]["family"], task.method, attempt)


# --------------------------------------------------------------------------------------------
# The paper's grids
# --------------------------------------------------------------------------------------------


def _grid_are(
    method: str,
    train: pd.DataFrame,
    target: pd.DataFrame,
    fit_kwargs: Mapping[str, Any] | None,
    random_seed: int,
) -> float:
    need = 2 if method in _LAW_METHODS else 1
    if train["params"].nunique() < need or len(train) < (5 if need == 2 else 1):
        return float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred, _ = fit_and_predict(
                method,
                train.drop(columns=["_run_end"]),
                target,
                None,
                fit_kwargs,
                random_seed=random_seed,
            )
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return float("nan")
    return absolute_relative_error(target["loss"].to_numpy(), pred["median"].values)


def _default_n_models(method: str, n_sizes: int) -> list[int]:
    start = 2 if method in _LAW_METHODS else 1
    return list(range(start, n_sizes + 1))


def are_grid_models_fraction(
    runs_family: pd.DataFrame,
    method: str = "curve_fit",
    n_models: Sequence[int] | None = None,
    fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
    fit_kwargs: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    warmup_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
) -> xr.DataArray:
    """ARE over the number of training models x the fraction of training used.

    A cell ``(k, q)`` fits ``method`` on the ``k`` largest training sizes (all their runs),
    keeping only the checkpoints in the first ``q`` of each run (``tokens <= q x`` the run's
    final tokens) that pass the warm-up cut, and scores the prediction of ``F_target``.

    Parameters
    ----------
    runs_family
        Run table of ONE family.
    method
        One of :data:`METHODS` (default the fast ``"curve_fit"``; ``"bayescale"`` works with
        small sampler settings in ``fit_kwargs``).
    n_models
        Numbers of models (distinct training sizes); default 2 (1 for the naive baselines) up to
        all training sizes.
    fractions
        Fractions of each training run, in (0, 1].
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit` for ``"bayescale"``.
    random_seed
        Seed of the Bayesian fit / bootstrap.
    warmup_tokens, target_fraction
        Protocol settings.

    Returns
    -------
    xarray.DataArray
        Dims ``("n_models", "fraction")``; NaN where the cell has too little data or the fit
        failed. Attributes: ``method``, ``family``, ``target_params``.
    """
    train, target, sizes = grid_split(runs_family, warmup_tokens, target_fraction)
    ks = list(n_models) if n_models is not None else _default_n_models(method, len(sizes))
    qs = [float(q) for q in fractions]
    if any(not 0 < q <= 1 for q in qs):
        raise ValueError(f"fractions must be in (0, 1]; got {qs}")
    values = np.full((len(ks), len(qs)), np.nan)
    for i, k in enumerate(ks):
        sub = train.loc[train["params"].isin(sizes[:k])]
        for j, q in enumerate(qs):
            cut = sub.loc[sub["tokens"] <= q * sub["_run_end"] * (1 + CUT_RTOL)]
            if k <= len(sizes):
                values[i, j] = _grid_are(method, cut, target, fit_kwargs, random_seed)
    return xr.DataArray(
        values,
        dims=("n_models", "fraction"),
        coords={"n_models": ks, "fraction": qs},
        name="are",
        attrs={
            "method": method,
            "family": str(runs_family["family"].iloc[0]),
            "target_params": float(runs_family["params"].max()),
            "long_name": "absolute relative error",
        },
    )


def are_grid_models_scaleup(
    runs_family: pd.DataFrame,
    method: str = "curve_fit",
    n_models: Sequence[int] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    warmup_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
) -> xr.DataArray:
    """ARE over the number of training models x the scale-up factor.

    For each training size ``m`` (the largest model used), the scale-up factor is
    ``N_target / m``; a cell ``(k, m)`` fits ``method`` on the ``k`` largest training sizes not
    above ``m`` (full runs past the warm-up cut) and scores the prediction of ``F_target``.

    Parameters
    ----------
    runs_family
        Run table of ONE family.
    method
        One of :data:`METHODS` (default ``"curve_fit"``).
    n_models
        Numbers of models; default 2 (1 for the naive baselines) up to all training sizes.
    fit_kwargs, random_seed, warmup_tokens, target_fraction
        As in :func:`are_grid_models_fraction`.

    Returns
    -------
    xarray.DataArray
        Dims ``("n_models", "scale_up")`` with ``scale_up`` increasing and a coordinate
        ``max_train_params`` along it; NaN where fewer than ``k`` sizes are at or below ``m``.
    """
    train, target, sizes = grid_split(runs_family, warmup_tokens, target_fraction)
    ks = list(n_models) if n_models is not None else _default_n_models(method, len(sizes))
    n_target = float(runs_family["params"].max())
    values = np.full((len(ks), len(sizes)), np.nan)
    for j, top in enumerate(sizes):  # largest first = smallest scale-up first
        below = sizes[sizes <= top]
        for i, k in enumerate(ks):
            if k > len(below):
                continue
            sub = train.loc[train["params"].isin(below[:k])]
            values[i, j] = _grid_are(method, sub, target, fit_kwargs, random_seed)
    return xr.DataArray(
        values,
        dims=("n_models", "scale_up"),
        coords={
            "n_models": ks,
            "scale_up": n_target / sizes,
            "max_train_params": ("scale_up", sizes.astype(float)),
        },
        name="are",
        attrs={
            "method": method,
            "family": str(runs_family["family"].iloc[0]),
            "target_params": n_target,
            "long_name": "absolute relative error",
        },
    )


# --------------------------------------------------------------------------------------------
# Transfer to a new family from one run (hierarchical borrowing vs a borrowed (A, alpha))
# --------------------------------------------------------------------------------------------

#: Methods of :func:`transfer`.
TRANSFER_METHODS: tuple[str, ...] = ("bayescale", "muennighoff", "bayescale_alone", "curve_fit_all")


def choose_source_run(train: pd.DataFrame, min_rows: int = 3) -> str:
    """The run of ``F_train`` a single-run transfer learns the new family from.

    The largest-``N`` run with at least ``min_rows`` checkpoints (past the warm-up cut, as
    ``train`` is given); ties go to the run trained longest, then the one with the most
    checkpoints, then the first name.

    Parameters
    ----------
    train
        ``F_train`` of one family (``run``, ``params``, ``tokens`` columns).
    min_rows
        Fewest checkpoints a run needs (three for ``E, B, beta``).

    Returns
    -------
    str
        The run name.

    Raises
    ------
    ValueError
        If no run has ``min_rows`` checkpoints.
    """
    stats = train.groupby("run", sort=True).agg(
        params=("params", "max"), tokens=("tokens", "max"), rows=("tokens", "size")
    )
    stats = stats.loc[stats["rows"] >= min_rows]
    if stats.empty:
        raise ValueError(f"no run of F_train has {min_rows} checkpoints past the warm-up cut")
    stats = stats.reset_index().sort_values(
        ["params", "tokens", "rows", "run"], ascending=[False, False, False, True], kind="stable"
    )
    return str(stats["run"].iloc[0])


def transfer(
    runs: pd.DataFrame,
    families: Sequence[str] | None = None,
    methods: Sequence[str] = ("bayescale", "muennighoff"),
    source_runs: Mapping[str, str] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    *,
    warmup_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
    max_points: int | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Predict a family's largest model from ONE of its runs, with and without borrowing.

    For each family ``F`` of ``runs``, ``F_target`` is the protocol's (the last
    ``target_fraction`` of the largest-``N`` runs) and the new family is known only through one
    run of ``F_train`` (:func:`choose_source_run`, or ``source_runs[F]``), past the warm-up cut.
    Methods:

    * ``"bayescale"`` -- hierarchical borrowing: :func:`bayescale.fit` on that run together
      with every run of the *other* families of ``runs`` (past the cut); the families share a
      population, so ``F``'s ``(A, alpha)`` are learnt from the others and ``F``'s own run
      mainly sets its ``E`` and data term. Band ``observed``.
    * ``"muennighoff"`` -- the guide's transfer: ``(A, alpha)`` fixed at Muennighoff et al.'s
      values and ``E, B, beta`` fitted on the run (:func:`bayescale.baselines.fit_fixed_a_alpha`;
      its band assumes the borrowed term is exact).
    * ``"bayescale_alone"`` -- :func:`bayescale.fit` on the one run only (no borrowing: the
      population prior alone constrains ``(A, alpha)``).
    * ``"curve_fit_all"`` -- reference: least squares on all of ``F_train`` (what the family's
      own smaller models give; no intervals).

    Parameters
    ----------
    runs
        Run table of several families (``family``, ``run``, ``params``, ``tokens``, ``loss``).
    families
        Families to predict (default: every family with at least two sizes).
    methods
        From :data:`TRANSFER_METHODS`.
    source_runs
        Family -> run to learn it from (default :func:`choose_source_run`).
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit` (``progressbar`` defaults to False).
    random_seed
        Seed of the fits and the band draws.
    warmup_tokens, target_fraction
        Protocol settings (10B tokens, 0.3).
    max_points
        Thin every training run (the source run and the other families') to at most this many
        log-spaced checkpoints.
    verbose
        Print one line per family and method.

    Returns
    -------
    pandas.DataFrame
        One row per family x method: ``family``, ``method``, ``status`` (``ok``, ``skipped``,
        ``failed``), ``reason``, ``source_run``, ``source_params``, ``source_rows``,
        ``target_params``, ``scale_up`` (target N / source N), ``n_other_families``,
        ``n_train`` (rows fitted), ``seconds``, ``warnings`` and the metrics of
        :func:`score_prediction`.
    """
    unknown = [m for m in methods if m not in TRANSFER_METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {TRANSFER_METHODS}")
    all_families = sorted(str(f) for f in runs["family"].unique())
    if families is None:
        families = [
            f for f in all_families if runs.loc[runs["family"] == f, "params"].nunique() > 1
        ]
    missing = [f for f in families if f not in all_families]
    if missing:
        raise ValueError(f"families {missing} are not in runs")
    pool = runs if warmup_tokens is None else runs.loc[runs["tokens"] >= float(warmup_tokens)]
    if max_points is not None and len(pool):
        pool = thin_log_spaced(pool, max_points=max_points)
    rows: list[dict[str, Any]] = []
    for family in families:
        fam_runs = runs.loc[runs["family"] == family]
        split = protocol_split(
            fam_runs, warmup_tokens=warmup_tokens, target_fraction=target_fraction
        )
        train, target = split.train, split.target
        if max_points is not None and len(train):
            train = thin_log_spaced(train, max_points=max_points)
        others = pool.loc[pool["family"] != family]
        base: dict[str, Any] = {
            "family": family,
            "target_params": float(fam_runs["params"].max()),
            "n_other_families": int(others["family"].nunique()),
        }
        try:
            if fam_runs["params"].nunique() < 2:
                raise ValueError("one model size: no run below the target size")
            if len(target) == 0:
                raise ValueError("empty F_target")
            source = (source_runs or {}).get(family) or choose_source_run(train)
            one = train.loc[train["run"] == source]
            if len(one) < 3:
                raise ValueError(f"run {source!r} has {len(one)} checkpoints in F_train (< 3)")
        except ValueError as err:
            if verbose:
                print(f"[transfer] {family}: skipped ({err})", flush=True)
            rows.extend(
                base | {"method": m, "status": "skipped", "reason": str(err)} for m in methods
            )
            continue
        source_params = float(one["params"].iloc[0])
        base |= {
            "source_run": source,
            "source_params": source_params,
            "source_rows": len(one),
            "scale_up": base["target_params"] / source_params,
        }
        n = target["params"].to_numpy(dtype=float)
        d = target["tokens"].to_numpy(dtype=float)
        for method in methods:
            call = partial(
                _transfer_predict,
                method, one, others, train, family, n, d, fit_kwargs, random_seed,
            )
            attempt = _attempt(call, target, "observed")
            n_train = 0 if attempt.output is None else attempt.output[2]
            rows.append(
                base
                | {"method": method, "status": attempt.status, "reason": attempt.reason}
                | {"n_train": n_train, "seconds": attempt.seconds}
                | attempt.scores
            )
            if verbose:
                _print_attempt("transfer", family, method, attempt)
    first = [
        "family",
        "method",
        "status",
        "reason",
        "source_run",
        "source_params",
        "source_rows",
        "target_params",
        "scale_up",
        "n_other_families",
        "n_train",
        "seconds",
    ]
    return _columns_first(pd.DataFrame(rows), first)


def _transfer_predict(
    method: str,
    one: pd.DataFrame,
    others: pd.DataFrame,
    train: pd.DataFrame,
    family: str,
    n: np.ndarray,
    d: np.ndarray,
    fit_kwargs: Mapping[str, Any] | None,
    random_seed: int,
) -> tuple[xr.Dataset, np.ndarray | None, int]:
    from bayescale import baselines

    if method == "muennighoff":
        return (
            baselines.fit_fixed_a_alpha(one, random_seed=random_seed).predict(n, d),
            None,
            len(one),
        )
    if method == "curve_fit_all":
        return baselines.fit_least_squares(train).predict(n, d), None, len(train)
    data = pd.concat([others, one], ignore_index=True) if method == "bayescale" else one
    if method == "bayescale" and others.empty:
        raise ValueError("no other family to borrow from")
    kwargs = {"progressbar": False, "random_seed": random_seed, **dict(fit_kwargs or {})}
    fit = bayescale_fit(data, **kwargs)
    draws = fit.predictive_draws(n, d, family=family)
    return fit.predict(n, d, family=family), draws["observed"].values, len(data)


# --------------------------------------------------------------------------------------------
# The paper's findings as paired differences with intervals
# --------------------------------------------------------------------------------------------

#: Findings of :func:`paper_findings` and the variants each compares with ``"all"``.
FINDINGS: tuple[str, ...] = ("checkpoints", "warmup_cut", "n_models")


@dataclass(frozen=True)
class Findings:
    """Result of :func:`paper_findings`.

    Attributes
    ----------
    per_family
        One row per family x method x variant (``are``, ``coverage_90``, ...).
    summary
        One row per comparison x method: the paired per-family ARE differences ``variant -
        all`` with a bootstrap interval over families (see :func:`summarize_differences`).
    """

    per_family: pd.DataFrame
    summary: pd.DataFrame


def summarize_differences(
    per_family: pd.DataFrame,
    reference: str = "all",
    metric: str = "are",
    n_boot: int = 2000,
    level: float = 0.9,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Paired per-family differences of every variant against ``reference``, with intervals.

    For every ``(finding, method, variant)`` of ``per_family`` with ``variant != reference``,
    the difference ``metric[variant] - metric[reference]`` is taken family by family (families
    where either is NaN are dropped) and summarized by its mean with a
    :func:`bootstrap_mean_interval` over families. A positive ARE difference means the
    reference (the paper's recommendation) predicts better.

    Parameters
    ----------
    per_family
        Tidy table with columns ``finding``, ``family``, ``method``, ``variant`` and
        ``metric``; the reference rows may be listed under any finding (they are matched by
        family and method).
    reference
        The variant every other is compared with.
    metric
        Column to compare (``"are"`` by default).
    n_boot, level, random_seed
        Bootstrap settings (the same seed for every comparison).

    Returns
    -------
    pandas.DataFrame
        One row per finding x method x variant: ``finding``, ``method``, ``variant``,
        ``reference``, ``n_families``, ``mean_variant``, ``mean_reference``, ``mean_diff``,
        ``diff_lower``, ``diff_upper`` (the ``level`` interval of the mean difference),
        ``median_diff`` and ``share_reference_better`` (families where the reference's metric
        is lower).
    """
    need = {"finding", "family", "method", "variant", metric}
    if not need <= set(per_family.columns):
        raise ValueError(f"per_family needs columns {sorted(need)}")
    ref = (
        per_family.loc[per_family["variant"] == reference]
        .drop_duplicates(["family", "method"])
        .set_index(["family", "method"])[metric]
    )
    rows = []
    others = per_family.loc[per_family["variant"] != reference]
    for (finding, method, variant), sub in others.groupby(
        ["finding", "method", "variant"], sort=False
    ):
        keys = list(zip(sub["family"], sub["method"], strict=True))
        base = ref.reindex(pd.MultiIndex.from_tuples(keys, names=["family", "method"])).to_numpy()
        value = sub[metric].to_numpy(dtype=float)
        ok = np.isfinite(value) & np.isfinite(base)
        diff = value[ok] - base[ok]
        mean, lower, upper = bootstrap_mean_interval(diff, n_boot, level, random_seed)
        rows.append(
            {
                "finding": finding,
                "method": method,
                "variant": variant,
                "reference": reference,
                "n_families": int(ok.sum()),
                "mean_variant": float(np.mean(value[ok])) if ok.any() else np.nan,
                "mean_reference": float(np.mean(base[ok])) if ok.any() else np.nan,
                "mean_diff": mean,
                "diff_lower": lower,
                "diff_upper": upper,
                "median_diff": float(np.median(diff)) if diff.size else np.nan,
                "share_reference_better": float(np.mean(diff > 0)) if diff.size else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _variant_train(
    family_runs: pd.DataFrame,
    variant: str,
    warmup_tokens: float | None,
    target_fraction: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(F_train, F_target)`` of one family under a protocol variant."""
    cut = None if variant == "no_cut" else warmup_tokens
    split = protocol_split(family_runs, warmup_tokens=cut, target_fraction=target_fraction)
    train = split.train
    if variant == "final_only":
        last = train.groupby("run", sort=False)["tokens"].transform("max")
        train = train.loc[train["tokens"] >= last].reset_index(drop=True)
    elif variant.startswith("k_models_"):
        k = int(variant.removeprefix("k_models_"))
        sizes = np.sort(train["params"].unique())[::-1][:k]
        train = train.loc[train["params"].isin(sizes)].reset_index(drop=True)
    elif variant not in ("all", "no_cut"):
        raise ValueError(f"unknown variant {variant!r}")
    # the target never depends on the variant: always the protocol's F_target
    target = protocol_split(
        family_runs, warmup_tokens=warmup_tokens, target_fraction=target_fraction
    ).target
    return train, target


def paper_findings(
    runs: pd.DataFrame,
    methods: Sequence[str] = ("curve_fit",),
    families: Sequence[str] | None = None,
    findings: Sequence[str] = FINDINGS,
    n_models: Sequence[int] = (2, 3, 4, 5),
    fit_kwargs: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    *,
    n_boot: int = 2000,
    level: float = 0.9,
    min_models: int = 3,
    max_points: int | None = None,
    warmup_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
    verbose: bool = True,
) -> Findings:
    """The Hitchhiker's headline findings as paired per-family differences with intervals.

    Every family is run through the protocol under the reference variant ``"all"`` (every
    checkpoint of every ``F_train`` run past the warm-up cut) and under the variants of each
    finding; ``F_target`` is always the protocol's. The findings:

    * ``"checkpoints"`` -- variant ``"final_only"``: only the final checkpoint of each
      training run (the paper: intermediate checkpoints help);
    * ``"warmup_cut"`` -- variant ``"no_cut"``: no 10B-token cut (the paper: the cut helps);
    * ``"n_models"`` -- variants ``"k_models_<k>"``: only the ``k`` largest training sizes,
      for each ``k`` in ``n_models``, scored on families with more than ``k`` training sizes
      (the paper: about 5 models are a safe minimum).

    The summary reports, per finding, method and variant, the mean over families of
    ``ARE(variant) - ARE(all)`` with a seeded percentile-bootstrap interval over families
    (:func:`summarize_differences`); positive values favour the paper's recommendation.

    Parameters
    ----------
    runs
        Run table (``family``, ``run``, ``params``, ``tokens``, ``loss``).
    methods
        Methods of :data:`METHODS` (``"bayescale"`` is one NUTS fit per family and variant: use
        few families, ``max_points`` and short chains).
    families
        Families to use (default: all with at least ``min_models`` sizes).
    findings
        Subset of :data:`FINDINGS`.
    n_models
        The ``k`` of the ``"n_models"`` finding.
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit`.
    random_seed
        Seed of the fits and of the bootstrap.
    n_boot, level
        Bootstrap replicates and interval level of the summary.
    min_models
        Families with fewer distinct sizes (``F_max`` included) are left out.
    max_points
        Thin every training run to at most this many log-spaced checkpoints (after the
        variant's selection).
    warmup_tokens, target_fraction
        Protocol settings.
    verbose
        Print one line per family, method and variant.

    Returns
    -------
    Findings
        ``per_family``: one row per finding x family x method x variant (the reference rows
        under ``finding="reference"``) with ``status``, ``reason``, ``n_train``,
        ``n_train_sizes``, ``are``, ``coverage_90``, ``seconds``, ``warnings``; ``summary``:
        see :func:`summarize_differences`.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    bad = [f for f in findings if f not in FINDINGS]
    if bad:
        raise ValueError(f"unknown findings {bad}; choose from {FINDINGS}")
    if families is None:
        sizes = runs.groupby("family")["params"].nunique()
        families = sorted(str(f) for f in sizes.index[sizes >= min_models])
    plan: list[tuple[str, str]] = [("reference", "all")]
    if "checkpoints" in findings:
        plan.append(("checkpoints", "final_only"))
    if "warmup_cut" in findings:
        plan.append(("warmup_cut", "no_cut"))
    if "n_models" in findings:
        plan.extend(("n_models", f"k_models_{int(k)}") for k in n_models)
    rows: list[dict[str, Any]] = []
    for family in families:
        fam_runs = runs.loc[runs["family"] == family]
        n_train_sizes = (
            protocol_split(fam_runs, warmup_tokens=warmup_tokens, target_fraction=target_fraction)
            .train["params"]
            .nunique()
        )
        for finding, variant in plan:
            if variant.startswith("k_models_") and int(variant[9:]) >= n_train_sizes:
                continue  # k would be all sizes: no comparison
            train, target = _variant_train(fam_runs, variant, warmup_tokens, target_fraction)
            if max_points is not None and len(train):
                train = thin_log_spaced(train, max_points=max_points)
            for method in methods:
                row = _findings_cell(method, train, target, family, fit_kwargs, random_seed)
                row |= {
                    "finding": finding,
                    "family": family,
                    "method": method,
                    "variant": variant,
                    "n_train": len(train),
                    "n_train_sizes": int(train["params"].nunique()) if len(train) else 0,
                }
                rows.append(row)
                if verbose:
                    what = (
                        f"ARE {100 * row['are']:.2f}%" if row["status"] == "ok" else row["reason"]
                    )
                    print(
                        f"[findings] {family} / {method} / {variant}: {what} "
                        f"({row['seconds']:.1f} s)",
                        flush=True,
                    )
    cols = [
        "finding",
        "family",
        "method",
        "variant",
        "status",
        "reason",
        "n_train",
        "n_train_sizes",
        "are",
        "coverage_90",
        "seconds",
        "warnings",
    ]
    per_family = pd.DataFrame(rows, columns=cols)
    summary = summarize_differences(
        per_family, "all", "are", n_boot=n_boot, level=level, random_seed=random_seed
    )
    return Findings(per_family=per_family, summary=summary)


def _findings_cell(
    method: str,
    train: pd.DataFrame,
    target: pd.DataFrame,
    family: str,
    fit_kwargs: Mapping[str, Any] | None,
    random_seed: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    out: dict[str, Any] = {"are": np.nan, "coverage_90": np.nan, "warnings": ""}
    need_sizes = 2 if method in _LAW_METHODS else 1
    if len(target) == 0:
        return out | {"status": "skipped", "reason": "empty F_target", "seconds": 0.0}
    if len(train) == 0 or train["params"].nunique() < need_sizes:
        reason = f"F_train has {train['params'].nunique() if len(train) else 0} sizes"
        return out | {"status": "skipped", "reason": reason, "seconds": 0.0}
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred, samples = fit_and_predict(
                method, train, target, family, fit_kwargs, random_seed=random_seed
            )
        scores = score_prediction(target, pred, SCORED_BAND.get(method, "observed"), samples)
        out |= {"are": scores["are"], "coverage_90": scores.get("coverage_90", np.nan)}
        out |= {"status": "ok", "reason": ""}
    except Exception as err:  # e.g. too few rows for a 5-parameter least-squares fit
        out |= {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
    out["warnings"] = summarize_warnings(caught)
    out["seconds"] = time.perf_counter() - t0
    return out
