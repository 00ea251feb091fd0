"""The Hitchhiker's protocol over families: :func:`evaluate` fits every method on each family's
``F_train`` and scores its prediction of ``F_target``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from bayescale.batch import FitTask, fit_many
from bayescale.data.prepare import (
    DEFAULT_TARGET_FRACTION,
    DEFAULT_WARMUP_TOKENS,
    protocol_split,
    thin_log_spaced,
)
from bayescale.evaluate.common import Attempt, columns_first, print_attempt, run_attempt
from bayescale.scoring import METHODS, SCORED_BAND, fit_and_predict

__all__ = ["evaluate"]


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
            attempt = run_attempt(call, target, SCORED_BAND.get(method, "observed"))
            rows.append(
                base
                | {"method": method, "status": attempt.status, "reason": attempt.reason}
                | {"seconds": attempt.seconds}
                | attempt.scores
            )
            if verbose:
                print_attempt("evaluate", str(family), method, attempt)
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
    return columns_first(pd.DataFrame(rows), first)


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
        attempt = Attempt("ok" if ok else "failed", "" if ok else str(rec["error"]),
                           float(rec["total_seconds"]), scores | {"warnings": warns}, None)
        rows[i] |= {"status": attempt.status, "reason": attempt.reason,
                    "seconds": attempt.seconds} | attempt.scores
        if verbose:
            print_attempt("evaluate", rows[i]["family"], task.method, attempt)
