"""Prediction datasets: the one xarray shape every predictor in bayescale returns.

A prediction is an :class:`xarray.Dataset` over dimension ``point`` (with coordinates
``params`` and ``tokens``) holding

* ``median`` (point): the central prediction of the loss;
* zero or more *bands* (point, level, bound): equal-tailed intervals at each ``level``
  (coordinate, e.g. 0.5 and 0.9) with ``bound`` in ``("lower", "upper")``.

The Bayesian fit fills the bands ``mean`` (parameter uncertainty only), ``new_seed``
(+ seed-to-seed variability) and ``observed`` (+ checkpoint noise); the bootstrap baseline fills
``mean`` (confidence interval) and ``observed`` (prediction interval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.9)


def broadcast_inputs(**inputs: Any) -> dict[str, np.ndarray]:
    """Broadcast named positive inputs to 1-D float arrays of equal length.

    Parameters
    ----------
    **inputs
        Name -> scalar or array; the arrays broadcast against each other.

    Returns
    -------
    dict of str to numpy.ndarray
        The inputs in their order, flattened copies of one length.

    Raises
    ------
    ValueError
        If a value is not positive and finite, or the inputs cannot be broadcast.
    """
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in inputs.values()))
    out = {}
    for name, arr in zip(inputs, arrays, strict=True):
        arr = arr.ravel().copy()
        if arr.size == 0:
            raise ValueError(f"{name} is empty")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be positive and finite; got {arr[~(arr > 0)][:5]}")
        out[name] = arr
    return out


def broadcast_points(params: object, tokens: object) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast ``params`` and ``tokens`` to two 1-D float arrays of equal length.

    Parameters
    ----------
    params, tokens
        Scalars or arrays of model sizes and token counts.

    Returns
    -------
    tuple of numpy.ndarray
        ``(params, tokens)`` as by :func:`broadcast_inputs`.

    Raises
    ------
    ValueError
        If the values are not positive and finite or cannot be broadcast.
    """
    points = broadcast_inputs(params=params, tokens=tokens)
    return points["params"], points["tokens"]


def interval_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """Check central interval probabilities.

    Parameters
    ----------
    levels
        Probabilities of the central intervals, e.g. ``(0.5, 0.9)``.

    Returns
    -------
    tuple of float

    Raises
    ------
    ValueError
        If a level is not in (0, 1).
    """
    levels = tuple(float(q) for q in levels)
    for q in levels:
        if not 0 < q < 1:
            raise ValueError(f"interval levels must be in (0, 1); got {q}")
    return levels


def quantiles(samples: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles over axis 0 that keep ``+-inf`` samples (plain interpolation gives NaN).

    Parameters
    ----------
    samples
        Samples along axis 0.
    probs
        Probabilities, a scalar or 1-D array.

    Returns
    -------
    numpy.ndarray
        As :func:`numpy.quantile` with ``axis=0`` (identical for finite samples).
    """
    big = np.finfo(float).max
    quant = np.quantile(np.clip(samples, -big, big), probs, axis=0)
    return np.where(quant >= big, np.inf, np.where(quant <= -big, -np.inf, quant))


def equal_tailed(samples: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Equal-tailed intervals of samples at each level.

    Parameters
    ----------
    samples
        Shape ``(n_samples, n_points)``.
    levels
        Central interval probabilities (checked by :func:`interval_levels`).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_points, n_levels, 2)``: the lower and upper bound (dims point, level, bound).
    """
    levels = interval_levels(levels)
    probs = np.array([[(1 - q) / 2, (1 + q) / 2] for q in levels])  # (level, bound)
    quant = quantiles(np.asarray(samples, dtype=float), probs.ravel())  # (level*bound, point)
    return quant.reshape(len(levels), 2, -1).transpose(2, 0, 1)


def prediction_dataset(
    params: np.ndarray,
    tokens: np.ndarray,
    median: np.ndarray,
    band_samples: Mapping[str, np.ndarray] | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """Build a prediction dataset from a central value and per-band samples.

    Parameters
    ----------
    params, tokens
        1-D arrays of length ``n_points``.
    median
        Central prediction, shape ``(n_points,)``.
    band_samples
        Band name -> samples of the loss with shape ``(n_samples, n_points)``; each band's
        intervals are the equal-tailed quantiles of its samples (:func:`equal_tailed`).
    levels
        Central interval probabilities.
    attrs
        Attributes stored on the dataset (e.g. the family predicted).

    Returns
    -------
    xarray.Dataset
    """
    levels = interval_levels(levels)
    coords = {
        "params": ("point", np.asarray(params, dtype=float)),
        "tokens": ("point", np.asarray(tokens, dtype=float)),
        **level_coords(levels),
    }
    data_vars: dict[str, tuple] = {"median": ("point", np.asarray(median, dtype=float))}
    for name, samples in (band_samples or {}).items():
        data_vars[name] = (("point", "level", "bound"), equal_tailed(samples, levels))
    return xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))


def level_coords(levels: Sequence[float]) -> dict[str, tuple[str, np.ndarray]]:
    """The ``level`` and ``bound`` coordinates of an interval dataset.

    Parameters
    ----------
    levels
        Central interval probabilities (already checked).

    Returns
    -------
    dict
        ``{"level": ("level", levels), "bound": ("bound", ["lower", "upper"])}``.
    """
    return {"level": ("level", np.asarray(tuple(levels))),
            "bound": ("bound", np.array(["lower", "upper"]))}
