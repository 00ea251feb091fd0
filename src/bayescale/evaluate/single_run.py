"""Transfer to a new family known from ONE of its runs: hierarchical borrowing from the other
families against the guide's borrowed ``(A, alpha)`` of Muennighoff et al."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.prepare import (
    DEFAULT_TARGET_FRACTION,
    DEFAULT_WARMUP_TOKENS,
    protocol_split,
    thin_log_spaced,
)
from bayescale.evaluate.common import columns_first, print_attempt, run_attempt
from bayescale.fit import fit as bayescale_fit

__all__ = ["TRANSFER_METHODS", "choose_source_run", "transfer"]


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
            attempt = run_attempt(call, target, "observed")
            n_train = 0 if attempt.output is None else attempt.output[2]
            rows.append(
                base
                | {"method": method, "status": attempt.status, "reason": attempt.reason}
                | {"n_train": n_train, "seconds": attempt.seconds}
                | attempt.scores
            )
            if verbose:
                print_attempt("transfer", family, method, attempt)
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
    return columns_first(pd.DataFrame(rows), first)


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
