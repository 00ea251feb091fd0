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

from bayescale.intervals import (
    DEFAULT_LEVELS,
    broadcast_inputs,
    equal_tailed,
    interval_levels,
    level_coords,
    quantiles,
)

__all__ = ["broadcast_inputs", "chinchilla_compute_optimal", "quantity_dataset"]


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
    levels = interval_levels(levels)
    coords: dict[str, Any] = {k: ("point", np.asarray(v)) for k, v in point_coords.items()}
    coords.update(level_coords(levels))
    data_vars: dict[str, tuple] = {}
    for name, samples in draws.items():
        samples = np.asarray(samples, dtype=float)
        data_vars[name] = ("point", quantiles(samples, np.array(0.5)))
        data_vars[f"{name}_interval"] = (("point", "level", "bound"), equal_tailed(samples, levels))
    return xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))


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
