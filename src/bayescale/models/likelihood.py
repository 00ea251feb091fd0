"""Per-run marginal likelihood of log-loss residuals with the run (seed) offset integrated out.

Within run ``r`` the residuals ``e = log L - log mu`` share one offset ``u_r ~ N(0, tau_r^2)``
on top of checkpoint noise with covariance ``sigma^2 R`` (``R = I`` for independent noise, the
AR(1) correlation matrix otherwise). So ``e ~ N(0, sigma^2 R + tau_r^2 1 1^T)``, whose density
follows from the matrix determinant lemma and Sherman-Morrison with three run-level sums of the
AR(1)-whitened vectors ``w(e)`` and ``w(1)``:

    q_ee = w(e).w(e),  q_e1 = w(e).w(1),  q_11 = w(1).w(1),  k = tau^2 / sigma^2
    log|Sigma| = n log sigma^2 + log|R| + log(1 + k q_11)
    e' Sigma^-1 e = (q_ee - k q_e1^2 / (1 + k q_11)) / sigma^2

Whitening uses each checkpoint's correlation ``phi_i`` with its predecessor (0 for a run's first
checkpoint): ``w(x)_i = (x_i - phi_i x_prev(i)) / sqrt(1 - phi_i^2)``, and
``log|R| = sum_i log(1 - phi_i^2)``. With ``phi = 0`` this is the compound-symmetric case.

The conditional posterior of the offset given the residuals is Normal with
variance ``v = 1 / (1/tau^2 + q_11/sigma^2)`` and mean ``v q_e1 / sigma^2``; it is used to
recover per-run effects after sampling.

Every function takes ``math`` (numpy or pytensor.tensor) and a ``segment_sum`` callable so one
formula serves the model and the post-processing.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

LOG_2PI = float(np.log(2 * np.pi))


def whiten(x: Any, phi: Any, prev: np.ndarray, math: ModuleType = np) -> Any:
    """AR(1) innovations ``(x_i - phi_i x_prev(i)) / sqrt(1 - phi_i^2)`` along the last axis."""
    prev_x = x[..., np.maximum(prev, 0)]
    return (x - phi * prev_x) / math.sqrt(1 - phi**2)


def run_marginal_loglik(
    resid: Any,
    sigma_obs: Any,
    tau_run: Any,
    counts: np.ndarray,
    segment_sum: Callable[[Any], Any],
    phi: Any | None = None,
    prev: np.ndarray | None = None,
    math: ModuleType = np,
) -> Any:
    """Log marginal likelihood of each run's residuals, offsets integrated out.

    Parameters
    ----------
    resid
        Residuals ``log L - log mu`` per checkpoint (last axis = checkpoints).
    sigma_obs
        Checkpoint-noise sd (stationary sd under AR(1)).
    tau_run
        Seed sd of each run (last axis = runs).
    counts
        Checkpoints per run.
    segment_sum
        Sums the last axis per run.
    phi, prev
        AR(1) correlation of each checkpoint with its predecessor, and predecessor indices
        (-1 for first checkpoints); ``None`` for independent noise.
    math
        ``numpy`` or ``pytensor.tensor``.

    Returns
    -------
    array-like
        Log-likelihood per run (last axis = runs).
    """
    sums = residual_sums(resid, counts, segment_sum, phi, prev, math)
    return run_loglik_from_sums(*sums, sigma_obs, tau_run, counts, math)


def run_loglik_from_sums(
    q_ee: Any, q_e1: Any, q_11: Any, log_det_r: Any, sigma_obs: Any, tau_run: Any,
    counts: np.ndarray, math: ModuleType = np,
) -> Any:
    """Per-run log marginal likelihood from the run sums (see the module docstring).

    The sums are those of :func:`bayescale.models.run_sums.residual_run_sums`; the other
    arguments are as in :func:`run_marginal_loglik`.
    """
    var = sigma_obs**2
    return _run_loglik(q_ee, q_e1, q_11, log_det_r, var, tau_run**2 / var, counts, math)


def _run_loglik(q_ee, q_e1, q_11, log_det_r, var, k, counts, math):
    log_det = counts * math.log(var) + log_det_r + math.log1p(k * q_11)
    quad = (q_ee - k * q_e1**2 / (1 + k * q_11)) / var
    return -0.5 * (counts * LOG_2PI + log_det + quad)


def _config_totals(q_e1, q_11, var, k, config_sum):
    """``S = sum_r 1' Sigma_r^-1 e_r`` and ``T = sum_r 1' Sigma_r^-1 1`` per config."""
    denom = var * (1 + k * q_11)
    return config_sum(q_e1 / denom), config_sum(q_11 / denom)


def config_marginal_loglik(
    resid: Any,
    sigma_obs: Any,
    tau_run: Any,
    tau_config: Any,
    counts: np.ndarray,
    segment_sum: Callable[[Any], Any],
    config_sum: Callable[[Any], Any],
    phi: Any | None = None,
    prev: np.ndarray | None = None,
    math: ModuleType = np,
) -> Any:
    """Log marginal likelihood of each config's runs, config and seed offsets integrated out.

    Runs ``r`` of a config ``c`` (same family, size and data; different seeds) share a config
    offset ``v_c ~ N(0, tau_config^2)`` on top of their own seed offsets ``u_r ~ N(0, tau_r^2)``.
    Integrating ``u_r`` leaves ``e_r ~ N(v_c 1, Sigma_r)`` with ``Sigma_r`` as in
    :func:`run_marginal_loglik`; with ``s_r = 1' Sigma_r^-1 e_r`` and
    ``t_r = 1' Sigma_r^-1 1`` summed over the config (``S``, ``T``), integrating ``v_c`` adds
    ``-log(1 + tau_c^2 T) / 2 + tau_c^2 S^2 / (2 (1 + tau_c^2 T))`` to the runs' terms.

    Parameters
    ----------
    resid, sigma_obs, tau_run, counts, segment_sum, phi, prev, math
        As in :func:`run_marginal_loglik`.
    tau_config
        Sd of the config offset (scalar or broadcastable against the configs axis).
    config_sum
        Sums a per-run array (last axis = runs) per config.

    Returns
    -------
    array-like
        Log-likelihood per config (last axis = configs).
    """
    sums = residual_sums(resid, counts, segment_sum, phi, prev, math)
    return config_loglik_from_sums(
        *sums, sigma_obs, tau_run, tau_config, counts, config_sum, math
    )


def config_loglik_from_sums(
    q_ee: Any, q_e1: Any, q_11: Any, log_det_r: Any, sigma_obs: Any, tau_run: Any,
    tau_config: Any, counts: np.ndarray, config_sum: Callable[[Any], Any],
    math: ModuleType = np,
) -> Any:
    """Per-config log marginal likelihood from the run sums (see :func:`config_marginal_loglik`)."""
    var = sigma_obs**2
    k = tau_run**2 / var
    run_ll = _run_loglik(q_ee, q_e1, q_11, log_det_r, var, k, counts, math)
    s_tot, t_tot = _config_totals(q_e1, q_11, var, k, config_sum)
    tc2 = tau_config**2
    return config_sum(run_ll) - 0.5 * math.log1p(tc2 * t_tot) + 0.5 * tc2 * s_tot**2 / (
        1 + tc2 * t_tot
    )


def config_effect_conditional(
    resid: np.ndarray,
    sigma_obs: Any,
    tau_run: Any,
    tau_config: Any,
    counts: np.ndarray,
    segment_sum: Callable[[Any], Any],
    config_sum: Callable[[Any], Any],
    phi: Any | None = None,
    prev: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of each config's offset given its runs' residuals (numpy only).

    The posterior of ``v_c`` is Normal with precision ``1/tau_c^2 + T`` and mean
    ``S / (1/tau_c^2 + T)`` (``S``, ``T`` as in :func:`config_marginal_loglik`).
    """
    var = sigma_obs**2
    k = tau_run**2 / var
    _, q_e1, q_11, _ = residual_sums(resid, counts, segment_sum, phi, prev, np)
    s_tot, t_tot = _config_totals(q_e1, q_11, var, k, config_sum)
    precision = 1 / tau_config**2 + t_tot
    return s_tot / precision, np.sqrt(1 / precision)


def run_effect_conditional(
    resid: Any,
    sigma_obs: Any,
    tau_run: Any,
    counts: np.ndarray,
    segment_sum: Callable[[Any], Any],
    phi: Any | None = None,
    prev: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of each run's offset given its residuals (numpy only)."""
    var = sigma_obs**2
    _, q_e1, q_11, _ = residual_sums(resid, counts, segment_sum, phi, prev, np)
    post_var = 1 / (1 / tau_run**2 + q_11 / var)
    return post_var * q_e1 / var, np.sqrt(post_var)


def residual_sums(
    resid: Any, counts: np.ndarray, segment_sum: Callable[[Any], Any], phi: Any | None,
    prev: np.ndarray | None, math: ModuleType = np,
) -> tuple[Any, Any, Any, Any]:
    """Per-run ``q_ee, q_e1, q_11`` and ``log|R|`` of the (AR(1)-whitened) residuals."""
    if phi is None:
        return segment_sum(resid**2), segment_sum(resid), counts, 0.0
    w_e = whiten(resid, phi, prev, math)
    w_1 = (1 - phi) / math.sqrt(1 - phi**2)  # whitened vector of ones
    return (
        segment_sum(w_e**2),
        segment_sum(w_e * w_1),
        segment_sum(w_1**2 + 0 * resid),
        segment_sum(math.log(1 - phi**2) + 0 * resid),
    )


def numpy_segment_sum(starts: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Segment sum over contiguous runs beginning at ``starts`` (last axis)."""

    def _sum(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.asarray(x, dtype=float), starts, axis=-1)

    return _sum


def ar_phi(rho: Any, gap: np.ndarray, prev: np.ndarray, mode: str, math: ModuleType = np) -> Any:
    """Correlation of each checkpoint with its predecessor.

    ``mode="order"``: ``rho`` for every consecutive pair; ``mode="log_tokens"``:
    ``rho ** (gap / median_gap)``. First checkpoints of runs get 0.
    """
    first = prev < 0
    return math.where(first, 0.0, rho ** ar_exponent(gap, prev, mode))


def ar_exponent(gap: np.ndarray, prev: np.ndarray, mode: str) -> np.ndarray:
    """Exponent ``x_i`` in ``phi_i = rho ** x_i`` (1 at runs' first checkpoints, unused there)."""
    first = prev < 0
    if mode == "order":
        return np.ones(len(prev))
    if mode == "log_tokens":
        positive = gap[~first]
        scale = float(np.median(positive)) if positive.size else 1.0
        return np.where(first, 1.0, np.maximum(gap, 1e-12) / scale)
    raise ValueError(f"unknown autocorrelation mode {mode!r}")
