"""Derived quantities as functions of posterior draws, summarised as xarray with intervals.

Layout of every derived-quantity dataset (the companion of
:func:`bayescale.intervals.prediction_dataset` for things that are not a loss prediction):
dimension ``point`` with one coordinate per input (e.g. ``params``, ``loss``), coordinates
``level`` and ``bound``, and for each quantity ``q``

* ``q`` (point): the posterior median;
* ``q_interval`` (point, level, bound): equal-tailed credible intervals at each level.

Draws that are infinite (e.g. the steps to reach a loss below the model's lowest reachable
loss) count as such in the quantiles, so an interval's upper bound can be ``inf``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from bayescale.intervals import DEFAULT_LEVELS


def broadcast_inputs(**inputs: Any) -> dict[str, np.ndarray]:
    """Broadcast named positive inputs to 1-D float arrays of equal length.

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


def quantity_dataset(
    draws: Mapping[str, np.ndarray],
    point_coords: Mapping[str, np.ndarray],
    levels: Sequence[float] = DEFAULT_LEVELS,
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """Summarise draws of derived quantities by their median and credible intervals.

    Parameters
    ----------
    draws
        Quantity name -> draws of shape ``(n_samples, n_points)``.
    point_coords
        Coordinates along ``point`` (each of length ``n_points``).
    levels
        Central interval probabilities.
    attrs
        Attributes of the dataset.

    Returns
    -------
    xarray.Dataset
        See the module docstring.
    """
    levels = tuple(float(q) for q in levels)
    for q in levels:
        if not 0 < q < 1:
            raise ValueError(f"interval levels must be in (0, 1); got {q}")
    probs = np.array([[(1 - q) / 2, (1 + q) / 2] for q in levels])
    coords: dict[str, Any] = {k: ("point", np.asarray(v)) for k, v in point_coords.items()}
    coords["level"] = ("level", np.asarray(levels))
    coords["bound"] = ("bound", np.array(["lower", "upper"]))
    data_vars: dict[str, tuple] = {}
    for name, samples in draws.items():
        samples = np.asarray(samples, dtype=float)
        data_vars[name] = ("point", _quantile(samples, np.array(0.5)))
        quant = _quantile(samples, probs.ravel())
        data_vars[f"{name}_interval"] = (
            ("point", "level", "bound"),
            quant.reshape(len(levels), 2, -1).transpose(2, 0, 1),
        )
    return xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))


def _quantile(samples: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles over axis 0 that keep ``+-inf`` draws (plain interpolation gives NaN)."""
    big = np.finfo(float).max
    quant = np.quantile(np.clip(samples, -big, big), probs, axis=0)
    return np.where(quant >= big, np.inf, np.where(quant <= -big, -np.inf, quant))


def chinchilla_compute_optimal(
    flops: Any, E: Any, A: Any, alpha: Any, B: Any, beta: Any
) -> dict[str, Any]:
    """Compute-optimal ``N`` and ``D`` of ``L = E + A/N^alpha + B/D^beta`` under ``C = 6 N D``.

    Minimising ``L`` along ``D = C / (6 N)`` gives
    ``N_opt = G (C/6)^(beta/(alpha+beta))`` and ``D_opt = G^-1 (C/6)^(alpha/(alpha+beta))``
    with ``G = (alpha A / (beta B))^(1/(alpha+beta))`` (Hoffmann et al. 2022, eq. 4).

    Parameters
    ----------
    flops
        Training compute ``C`` in FLOPs (broadcast against the parameters).
    E, A, alpha, B, beta
        Law parameters in the usual convention (e.g. arrays of posterior draws).

    Returns
    -------
    dict
        ``params`` (N_opt), ``tokens`` (D_opt) and ``loss`` (the loss at the optimum).
    """
    log_c6 = np.log(np.asarray(flops, dtype=float) / 6.0)
    total = alpha + beta
    log_g = (np.log(alpha) + np.log(A) - np.log(beta) - np.log(B)) / total
    log_n = log_g + beta / total * log_c6
    log_d = log_c6 - log_n
    loss = E + np.exp(np.log(A) - alpha * log_n) + np.exp(np.log(B) - beta * log_d)
    return {"params": np.exp(log_n), "tokens": np.exp(log_d), "loss": loss}
