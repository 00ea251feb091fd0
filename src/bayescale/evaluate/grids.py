"""The guide's ARE grids of one family: number of models x fraction of training, and number of
models x scale-up factor."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.prepare import CUT_RTOL, DEFAULT_TARGET_FRACTION, DEFAULT_WARMUP_TOKENS
from bayescale.evaluate.common import LAW_METHODS
from bayescale.scoring import absolute_relative_error, fit_and_predict, grid_split

__all__ = ["are_grid_models_fraction", "are_grid_models_scaleup"]


def _grid_are(
    method: str,
    train: pd.DataFrame,
    target: pd.DataFrame,
    fit_kwargs: Mapping[str, Any] | None,
    random_seed: int,
) -> float:
    need = 2 if method in LAW_METHODS else 1
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
    start = 2 if method in LAW_METHODS else 1
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
