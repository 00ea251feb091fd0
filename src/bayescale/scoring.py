"""Scoring predictions of held-out checkpoints, and one method fitted and scored.

The layer below :mod:`bayescale.batch` (which runs many such fits on Dask) and
:mod:`bayescale.evaluate` (the protocol over families, the grids, transfer and findings):

* small pure metrics (:func:`absolute_relative_error`, :func:`signed_relative_error`,
  :func:`interval_coverage`, :func:`interval_width`, :func:`crps_from_samples`) and
  :func:`bootstrap_mean_interval`;
* :func:`score_prediction`, which scores one prediction dataset (see
  :mod:`bayescale.intervals`) against a target table;
* :func:`fit_and_predict`: one method of :data:`METHODS` fitted to training rows and
  predicting target rows (:func:`bayescale_fit_kwargs`, :func:`predict_targets` for the
  Bayesian fit), and :func:`summarize_warnings` of a fit;
* the Hitchhiker's grids' split of one family (:func:`grid_split`) and the heatmap of a grid
  (:func:`plot_are_heatmap`).

Every public name here is also importable from :mod:`bayescale.evaluate`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale import baselines
from bayescale.data.prepare import CUT_RTOL, protocol_split
from bayescale.data.schedule import has_schedule
from bayescale.fit import fit as bayescale_fit

__all__ = [
    "METHODS",
    "SCORED_BAND",
    "absolute_relative_error",
    "bayescale_fit_kwargs",
    "bootstrap_mean_interval",
    "crps_from_samples",
    "fit_and_predict",
    "grid_split",
    "interval_coverage",
    "interval_width",
    "plot_are_heatmap",
    "predict_targets",
    "score_prediction",
    "signed_relative_error",
    "summarize_warnings",
]

#: Methods understood by :func:`fit_and_predict`, :func:`bayescale.evaluate.evaluate` and the
#: grid functions.
METHODS: tuple[str, ...] = (
    "bayescale",
    "curve_fit",
    "huber",
    "huber_bootstrap",
    "best_loss",
    "most_trained",
)
#: Band scored for the methods that have one (the others are scored on their median only).
SCORED_BAND: dict[str, str] = {"bayescale": "observed", "huber_bootstrap": "observed"}


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def _arrays(*values: Any) -> tuple[np.ndarray, ...]:
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values))
    return tuple(a.ravel() for a in arrays)


def absolute_relative_error(y: Any, yhat: Any) -> float:
    """Absolute relative error, ``mean |y - yhat| / y``.

    Parameters
    ----------
    y
        Observed losses (positive).
    yhat
        Predicted losses, broadcast against ``y``.

    Returns
    -------
    float
        NaN when ``y`` is empty.
    """
    y, yhat = _arrays(y, yhat)
    if y.size == 0:
        return float("nan")
    return float(np.mean(np.abs(y - yhat) / y))


def signed_relative_error(y: Any, yhat: Any) -> float:
    """Signed relative error, ``mean (yhat - y) / y`` (positive: the loss is over-predicted).

    Parameters
    ----------
    y
        Observed losses (positive).
    yhat
        Predicted losses, broadcast against ``y``.

    Returns
    -------
    float
    """
    y, yhat = _arrays(y, yhat)
    if y.size == 0:
        return float("nan")
    return float(np.mean((yhat - y) / y))


def interval_coverage(y: Any, lower: Any, upper: Any) -> float:
    """Share of observations inside their interval, ``mean(lower <= y <= upper)``.

    Parameters
    ----------
    y, lower, upper
        Observations and interval bounds (broadcast against each other).

    Returns
    -------
    float
    """
    y, lower, upper = _arrays(y, lower, upper)
    if y.size == 0:
        return float("nan")
    return float(np.mean((lower <= y) & (y <= upper)))


def interval_width(y: Any, lower: Any, upper: Any) -> float:
    """Mean relative width of the intervals, ``mean (upper - lower) / y``.

    Parameters
    ----------
    y
        Observed losses (the scale of each width).
    lower, upper
        Interval bounds (broadcast against ``y``).

    Returns
    -------
    float
    """
    y, lower, upper = _arrays(y, lower, upper)
    if y.size == 0:
        return float("nan")
    return float(np.mean((upper - lower) / y))


def crps_from_samples(y: Any, samples: Any) -> np.ndarray:
    """Continuous ranked probability score of a sample-based forecast, per observation.

    Uses the energy form ``CRPS = E|X - y| - 1/2 E|X - X'|`` of the empirical distribution of
    the samples (``E|X - X'|`` over all ordered pairs, including ``X = X'``, computed in
    ``O(m log m)`` from the sorted samples). Lower is better; the unit is that of ``y``.

    Parameters
    ----------
    y
        Observations, shape ``(n_points,)`` (a scalar is one point).
    samples
        Forecast draws, shape ``(n_samples, n_points)`` (or ``(n_samples,)`` for one point).

    Returns
    -------
    numpy.ndarray
        CRPS of each point, shape ``(n_points,)``.
    """
    y = np.atleast_1d(np.asarray(y, dtype=float))
    x = np.asarray(samples, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != y.shape[0]:
        raise ValueError(f"samples must have shape (n_samples, {y.shape[0]}); got {x.shape}")
    m = x.shape[0]
    if m == 0:
        raise ValueError("samples is empty")
    term1 = np.mean(np.abs(x - y[None, :]), axis=0)
    xs = np.sort(x, axis=0)
    rank_weights = 2.0 * np.arange(1, m + 1) - m - 1  # sum_{i,j} |x_i - x_j| = 2 sum w_i x_(i)
    term2 = 2.0 * (rank_weights @ xs) / m**2
    return term1 - 0.5 * term2


def _final_mask(target: pd.DataFrame) -> np.ndarray:
    key = "run" if "run" in target.columns else "params"
    final = target.groupby(key, sort=False)["tokens"].transform("max").to_numpy()
    return target["tokens"].to_numpy() >= final * (1 - CUT_RTOL)


def score_prediction(
    target: pd.DataFrame,
    pred: xr.Dataset,
    band: str = "observed",
    samples: Any | None = None,
) -> dict[str, float]:
    """Score a prediction dataset against held-out checkpoints.

    Parameters
    ----------
    target
        Held-out rows (``F_target``) with columns ``params``, ``tokens``, ``loss`` (and ``run``,
        used to find each run's final checkpoint; without it, the final checkpoint per size).
    pred
        Prediction at the target rows, in order (``point`` i is row i), as returned by the
        ``predict`` methods of :mod:`bayescale.baselines` or :class:`bayescale.ScalingLawFit`.
    band
        Band whose intervals are scored; when ``pred`` lacks it, coverage and width are NaN.
    samples
        Optional draws of the predicted loss, shape ``(n_samples, n_points)``, for the CRPS.

    Returns
    -------
    dict
        ``n_target``, ``n_final``; ``are``, ``signed_error`` (of the ``median``), ``are_final``,
        ``signed_error_final`` (each run's final checkpoint only); for every interval level
        ``q`` in percent: ``coverage_q``, ``coverage_q_final`` and ``width_q`` (mean relative
        width); ``crps`` and ``crps_rel`` (CRPS / loss) when ``samples`` are given, else NaN.
    """
    y = target["loss"].to_numpy(dtype=float)
    if pred.sizes.get("point") != len(y):
        raise ValueError(f"pred has {pred.sizes.get('point')} points for {len(y)} target rows")
    for name in ("params", "tokens"):
        if not np.allclose(pred[name].values, target[name].to_numpy(dtype=float), rtol=1e-9):
            raise ValueError(f"pred's {name} do not match the target rows")
    yhat = pred["median"].values
    final = _final_mask(target)
    out: dict[str, float] = {
        "n_target": len(y),
        "n_final": int(final.sum()),
        "are": absolute_relative_error(y, yhat),
        "signed_error": signed_relative_error(y, yhat),
        "are_final": absolute_relative_error(y[final], yhat[final]),
        "signed_error_final": signed_relative_error(y[final], yhat[final]),
    }
    has_band = band in pred.data_vars
    for level in pred["level"].values:
        pct = f"{round(100 * float(level)):d}"
        if has_band:
            lo = pred[band].sel(level=level, bound="lower").values
            hi = pred[band].sel(level=level, bound="upper").values
            out[f"coverage_{pct}"] = interval_coverage(y, lo, hi)
            out[f"coverage_{pct}_final"] = interval_coverage(y[final], lo[final], hi[final])
            out[f"width_{pct}"] = interval_width(y, lo, hi)
        else:
            out[f"coverage_{pct}"] = out[f"coverage_{pct}_final"] = np.nan
            out[f"width_{pct}"] = np.nan
    if samples is not None:
        crps = crps_from_samples(y, samples)
        out["crps"], out["crps_rel"] = float(np.mean(crps)), float(np.mean(crps / y))
    else:
        out["crps"] = out["crps_rel"] = np.nan
    return out


def bootstrap_mean_interval(
    values: Any, n_boot: int = 2000, level: float = 0.9, random_seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile-bootstrap interval.

    Resamples the values with replacement ``n_boot`` times (indices from
    ``numpy.random.default_rng(random_seed).integers(0, n, size=(n_boot, n))``) and takes the
    equal-tailed ``level`` quantiles of the resampled means (numpy's default, linear
    interpolation).

    Parameters
    ----------
    values
        1-D values (e.g. one ARE difference per family); NaNs are dropped first.
    n_boot
        Bootstrap replicates.
    level
        Central probability of the interval, in (0, 1).
    random_seed
        Seed of the resampling.

    Returns
    -------
    (float, float, float)
        ``(mean, lower, upper)``; all NaN when there are no values, and ``lower = upper =
        mean`` with a single value.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive; got {n_boot}")
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(random_seed)
    means = x[rng.integers(0, x.size, size=(int(n_boot), x.size))].mean(axis=1)
    lower, upper = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lower), float(upper)


# --------------------------------------------------------------------------------------------
# One method fitted and scored
# --------------------------------------------------------------------------------------------


def fit_and_predict(
    method: str,
    train: pd.DataFrame,
    target: pd.DataFrame,
    family: str | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    n_boot: int = 200,
    random_seed: int = 0,
) -> tuple[xr.Dataset, np.ndarray | None]:
    """Fit ``method`` on ``train`` and predict the rows of ``target``.

    Parameters
    ----------
    method
        One of :data:`METHODS`.
    train, target
        Training rows (one family) and rows to predict.
    family
        Family name passed to :meth:`bayescale.ScalingLawFit.predict` (default: the family of
        ``train``).
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit` (``progressbar`` defaults to False and
        ``random_seed`` to ``random_seed``; ``autocorrelation`` to ``"none"`` when every
        training run has a single checkpoint, where AR(1) noise is the same model).
    n_boot
        Bootstrap replicates of ``"huber_bootstrap"``.
    random_seed
        Seed of the Bayesian fit and of the bootstrap.

    Returns
    -------
    (xarray.Dataset, numpy.ndarray or None)
        The prediction dataset at the target rows and, for ``"bayescale"``, draws of the
        ``observed`` band, shape ``(n_samples, n_points)`` (for the CRPS). A schedule-aware
        Bayesian fit predicts each target row under its run's learning-rate schedule (the
        target's schedule columns); the point baselines predict ``L(N, D)``.
    """
    n = target["params"].to_numpy(dtype=float)
    d = target["tokens"].to_numpy(dtype=float)
    if method == "bayescale":
        if family is None and "family" in train.columns:
            family = str(train["family"].iloc[0])
        fit = bayescale_fit(train, **bayescale_fit_kwargs(train, fit_kwargs, random_seed))
        return predict_targets(fit, target, family)
    if method == "curve_fit":
        return baselines.fit_least_squares(train).predict(n, d), None
    if method == "huber":
        return baselines.fit_huber(train).predict(n, d), None
    if method == "huber_bootstrap":
        boot = baselines.bootstrap_huber(train, n_boot=n_boot, random_seed=random_seed)
        return boot.predict(n, d), None
    if method == "best_loss":
        return baselines.best_loss_baseline(train).predict(n, d), None
    if method == "most_trained":
        return baselines.most_trained_baseline(train).predict(n, d), None
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def bayescale_fit_kwargs(
    train: pd.DataFrame, fit_kwargs: Mapping[str, Any] | None, random_seed: int
) -> dict[str, Any]:
    """The :func:`bayescale.fit` arguments :func:`fit_and_predict` fits ``train`` with.

    Parameters
    ----------
    train
        The training rows.
    fit_kwargs
        The caller's keyword arguments of :func:`bayescale.fit` (they win).
    random_seed
        The seed, unless ``fit_kwargs`` has one.

    Returns
    -------
    dict
        ``fit_kwargs`` with ``progressbar=False`` and ``random_seed`` by default, and
        ``autocorrelation="none"`` by default when every run has a single checkpoint.
    """
    kwargs = {"progressbar": False, "random_seed": random_seed, **dict(fit_kwargs or {})}
    if "run" in train.columns and train.groupby("run").size().max() == 1:
        # One checkpoint per run: the AR(1) checkpoint noise has nothing to correlate and is
        # the same model as independent noise; bayescale.fit's AR(1) likelihood fails to
        # initialize on such data (e.g. Chinchilla's IsoFLOP points, final-only fits).
        kwargs.setdefault("autocorrelation", "none")
    return kwargs


def predict_targets(
    fit: Any, target: pd.DataFrame, family: str | None
) -> tuple[xr.Dataset, np.ndarray]:
    """A Bayesian fit's prediction of the ``target`` rows and draws of its ``observed`` band.

    Parameters
    ----------
    fit
        A :class:`bayescale.ScalingLawFit`.
    target
        Rows to predict (``params``, ``tokens``; with the schedule columns, a schedule-aware
        fit predicts each row under its run's learning-rate schedule).
    family
        The family to predict (``None`` or an unknown name: a new family).

    Returns
    -------
    (xarray.Dataset, numpy.ndarray)
        :meth:`bayescale.ScalingLawFit.predict` at the target rows, and the draws of its
        ``observed`` band, shape ``(n_samples, n_points)``.
    """
    n = target["params"].to_numpy(dtype=float)
    d = target["tokens"].to_numpy(dtype=float)
    # mid-run targets are predicted under their runs' own schedules when both sides have one
    schedule = target if fit.schedule_aware and has_schedule(target) else None
    draws = fit.predictive_draws(n, d, family=family, schedule=schedule)
    pred = fit.predict(n, d, family=family, schedule=schedule)
    return pred, draws["observed"].values


def summarize_warnings(caught: Sequence[warnings.WarningMessage]) -> str:
    """Distinct warning messages of one fit, joined (sampling problems show up here).

    Parameters
    ----------
    caught
        Warnings recorded by :func:`warnings.catch_warnings` ``(record=True)``.

    Returns
    -------
    str
        ``"Category: first line"`` of each distinct warning (first 200 characters), in order,
        joined by ``"; "``; deprecation and future warnings are left out.
    """
    seen: dict[str, None] = {}
    for w in caught:
        if issubclass(w.category, DeprecationWarning | PendingDeprecationWarning | FutureWarning):
            continue
        seen.setdefault(f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}", None)
    return "; ".join(seen)


# --------------------------------------------------------------------------------------------
# The paper's grids: the split of one family and the heatmap of a grid
# --------------------------------------------------------------------------------------------


def grid_split(
    runs_family: pd.DataFrame, warmup_tokens: float | None, target_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The training rows, target rows and training sizes of one family's grid.

    Parameters
    ----------
    runs_family
        The run table of one family.
    warmup_tokens
        Checkpoints before this many tokens are left out of the training rows (``None``:
        none).
    target_fraction
        The target is the largest model's checkpoints in this last share of each run (see
        :func:`bayescale.protocol_split`).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame, numpy.ndarray)
        Training rows (every run but the largest model's, past the warm-up, with the column
        ``_run_end``: each run's length before the cut), target rows, and the training sizes,
        largest first.

    Raises
    ------
    ValueError
        If ``runs_family`` has more than one family.
    """
    if runs_family["family"].nunique() != 1:
        raise ValueError("the grid functions take a single family")
    raw_train = runs_family.loc[runs_family["params"] < runs_family["params"].max()]
    # run length before the warm-up cut, to cut each run at a fraction of its training
    train = raw_train.assign(_run_end=raw_train.groupby("run")["tokens"].transform("max"))
    if warmup_tokens is not None:
        train = train.loc[train["tokens"] >= float(warmup_tokens)]
    target = protocol_split(
        runs_family, warmup_tokens=warmup_tokens, target_fraction=target_fraction
    ).target
    sizes = np.sort(train["params"].unique())[::-1]  # largest first
    return train.reset_index(drop=True), target, sizes


def plot_are_heatmap(
    da: xr.DataArray,
    ax: Any | None = None,
    title: str | None = None,
    vmax: float | None = 0.2,
    annotate: bool = True,
    label: str = "ARE (%)",
    cmap: str = "viridis_r",
) -> Any:
    """Heatmap of an ARE grid (in percent), as in the Hitchhiker's figures.

    Parameters
    ----------
    da
        A 2-D grid from :func:`are_grid_models_fraction` or :func:`are_grid_models_scaleup`
        (rows: first dim, columns: second dim).
    ax
        Matplotlib axes to draw on (default: a new figure).
    title
        Axes title (default: family and method from ``da.attrs``).
    vmax
        Upper end of the colour scale as a fraction (0.2 = 20%, the paper's "still useful"
        limit); ``None`` uses the data's maximum.
    annotate
        Write the ARE in percent in every cell.
    label, cmap
        Colour-bar label and colour map (other fractions in percent, e.g. the 90% band's
        coverage or width, are drawn with another label).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if da.ndim != 2:
        raise ValueError(f"expected a 2-D grid; got dims {da.dims}")
    row_dim, col_dim = da.dims
    if ax is None:
        fig, ax = plt.subplots(
            figsize=(1.0 + 0.8 * da.sizes[col_dim], 1.0 + 0.5 * da.sizes[row_dim])
        )
    else:
        fig = ax.figure
    values = 100 * np.asarray(da.values, dtype=float)
    top = 100 * vmax if vmax is not None else np.nanmax(values) if np.isfinite(values).any() else 1
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=cmap,
        vmin=0,
        vmax=top,
        aspect="auto",
        origin="lower",
    )
    fig.colorbar(image, ax=ax, label=label)

    def labels(dim: str) -> list[str]:
        vals = da[dim].values
        if dim == "fraction":
            return [f"{100 * v:.0f}%" for v in vals]
        if dim == "scale_up":
            return [f"{v:.3g}x" for v in vals]
        return [f"{v}" for v in vals]

    ax.set_xticks(range(da.sizes[col_dim]), labels(col_dim))
    ax.set_yticks(range(da.sizes[row_dim]), labels(row_dim))
    names = {
        "n_models": "number of models",
        "fraction": "fraction of training",
        "scale_up": "scale-up (target N / largest train N)",
    }
    ax.set_xlabel(names.get(col_dim, col_dim))
    ax.set_ylabel(names.get(row_dim, row_dim))
    if annotate:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                text = "-" if not np.isfinite(v) else f"{v:.1f}"
                r, g, b, _ = image.cmap(image.norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
                colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    if title is None:
        title = f"{da.attrs.get('family', '')} ({da.attrs.get('method', '')})".strip()
    ax.set_title(title)
    fig.tight_layout()
    return fig
