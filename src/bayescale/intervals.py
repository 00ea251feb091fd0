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

import numpy as np
import xarray as xr

DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.9)


def broadcast_points(params: object, tokens: object) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast ``params`` and ``tokens`` to two 1-D float arrays of equal length.

    Raises
    ------
    ValueError
        If the values are not positive and finite or cannot be broadcast.
    """
    n, d = np.broadcast_arrays(np.asarray(params, dtype=float), np.asarray(tokens, dtype=float))
    n, d = n.ravel().copy(), d.ravel().copy()
    for name, arr in (("params", n), ("tokens", d)):
        if arr.size == 0:
            raise ValueError(f"{name} is empty")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be positive and finite; got {arr[~(arr > 0)][:5]}")
    return n, d


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
        intervals are the equal-tailed quantiles of its samples.
    levels
        Central interval probabilities.
    attrs
        Attributes stored on the dataset (e.g. the family predicted).

    Returns
    -------
    xarray.Dataset
    """
    levels = tuple(float(q) for q in levels)
    for q in levels:
        if not 0 < q < 1:
            raise ValueError(f"interval levels must be in (0, 1); got {q}")
    coords = {
        "params": ("point", np.asarray(params, dtype=float)),
        "tokens": ("point", np.asarray(tokens, dtype=float)),
        "level": ("level", np.asarray(levels)),
        "bound": ("bound", np.array(["lower", "upper"])),
    }
    data_vars: dict[str, tuple] = {"median": ("point", np.asarray(median, dtype=float))}
    for name, samples in (band_samples or {}).items():
        samples = np.asarray(samples, dtype=float)
        probs = np.array([[(1 - q) / 2, (1 + q) / 2] for q in levels])  # (level, bound)
        quant = np.quantile(samples, probs.ravel(), axis=0)  # (level*bound, point)
        quant = quant.reshape(len(levels), 2, -1).transpose(2, 0, 1)
        data_vars[name] = (("point", "level", "bound"), quant)
    return xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))
