"""The Huber fit of log-loss (Hoffmann et al. 2022, Besiroglu et al. 2024): starting grids, the
objective with its gradient, and L-BFGS-B from every start."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from bayescale.baselines.base import (
    EXPONENT_BOUNDS,
    PointFit,
    at_bound,
    check_bounds,
    checked_columns,
    family_name,
    single_threaded_blas,
    theta_to_params,
    warn_if_not_finite,
)

__all__ = ["DEFAULT_HUBER_GRID", "HOFFMANN_GRID", "fit_huber", "huber_grid"]


#: The starting grid of Hoffmann et al. (2022, App. D.2), in the order ``(e, a, alpha, b, beta)``
#: with ``E = exp(e)``, ``A = exp(a)``, ``B = exp(b)``: e in {-1, -0.5, ..., 1}, a and b in
#: {0, 5, ..., 25}, alpha and beta in {0, 0.5, ..., 2}; 5 * 6 * 5 * 6 * 5 = 4500 starts.
HOFFMANN_GRID: dict[str, tuple[float, ...]] = {
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
}

#: The default, coarser grid (3 * 3 * 2 * 3 * 2 = 108 starts, 42x fewer than
#: :data:`HOFFMANN_GRID`). It reached the full grid's optimum on the data it was checked on
#: (``benchmarks/results/MODEL_SPEED.md``, "Figures moved out of the code"); pass
#: ``grid="hoffmann"`` for the full grid when in doubt.
DEFAULT_HUBER_GRID: dict[str, tuple[float, ...]] = {
    "e": (-1.0, 0.0, 1.0),
    "a": (0.0, 10.0, 20.0),
    "alpha": (0.5, 1.5),
    "b": (0.0, 10.0, 20.0),
    "beta": (0.5, 1.5),
}

_GRID_KEYS = ("e", "a", "alpha", "b", "beta")


def log_law(log_n: Any, log_d: Any, e: Any, a: Any, alpha: Any, b: Any, beta: Any) -> np.ndarray:
    """``LSE(e, a - alpha log N, b - beta log D)`` (broadcasting)."""
    t1 = a - alpha * log_n
    t2 = b - beta * log_d
    t0 = e + 0 * t1
    m = np.maximum(np.maximum(t0, t1), t2)
    return m + np.log(np.exp(t0 - m) + np.exp(t1 - m) + np.exp(t2 - m))


def huber_grid(grid: str | Mapping[str, Sequence[float]] | np.ndarray | None = None) -> np.ndarray:
    """Starting points for :func:`fit_huber` as an array of shape ``(n_starts, 5)``.

    Parameters
    ----------
    grid
        ``None`` (:data:`DEFAULT_HUBER_GRID`), ``"hoffmann"`` (:data:`HOFFMANN_GRID`, 4500
        starts), a mapping ``{e, a, alpha, b, beta} -> values`` (Cartesian product), or an
        explicit array of starts with columns ``(e, a, alpha, b, beta)``.

    Returns
    -------
    numpy.ndarray
        Starts in the order ``(e, a, alpha, b, beta)``.
    """
    if grid is None:
        grid = DEFAULT_HUBER_GRID
    if isinstance(grid, str):
        if grid.lower() not in ("hoffmann", "full"):
            raise ValueError(f"unknown grid {grid!r}; use 'hoffmann', a mapping or an array")
        grid = HOFFMANN_GRID
    if isinstance(grid, Mapping):
        missing = [k for k in _GRID_KEYS if k not in grid]
        if missing:
            raise ValueError(f"grid is missing {missing}")
        return np.array(list(itertools.product(*(grid[k] for k in _GRID_KEYS))), dtype=float)
    starts = np.atleast_2d(np.asarray(grid, dtype=float))
    if starts.ndim != 2 or starts.shape[1] != 5 or not np.all(np.isfinite(starts)):
        raise ValueError("explicit grid must be a finite array of shape (n_starts, 5)")
    return starts


class HuberObjective:
    """Huber loss of log-residuals and its analytic gradient in ``(e, a, alpha, b, beta)``.

    The objective is ``sum_i w_i * huber_delta(r_i) / delta^2`` (the scale only sets the
    optimizer's tolerances: Besiroglu et al. traced Hoffmann et al.'s premature stopping to a
    badly scaled loss).
    """

    def __init__(
        self,
        log_n: np.ndarray,
        log_d: np.ndarray,
        log_loss: np.ndarray,
        delta: float,
        weights: np.ndarray | None = None,
    ) -> None:
        self.x, self.y, self.target, self.delta = log_n, log_d, log_loss, float(delta)
        self.w = None if weights is None else np.asarray(weights, dtype=float)
        self.scale = 1.0 / self.delta**2
        # The three log-terms (e, a - alpha*x, b - beta*y) as one linear map of theta:
        # T = (design @ theta).reshape(3, n), and the gradient is design.T @ (dT-weights).
        n = len(log_n)
        design = np.zeros((3 * n, 5))
        design[:n, 0] = 1.0
        design[n : 2 * n, 1] = 1.0
        design[n : 2 * n, 2] = -log_n
        design[2 * n :, 3] = 1.0
        design[2 * n :, 4] = -log_d
        self.design, self.n = design, n

    def residuals(self, th: np.ndarray) -> np.ndarray:
        return self.target - log_law(self.x, self.y, *th)

    def __call__(self, th: np.ndarray) -> tuple[float, np.ndarray]:
        terms = (self.design @ th).reshape(3, self.n)
        m = terms.max(axis=0)
        p = np.exp(terms - m)
        s = p.sum(axis=0)
        r = self.target - m - np.log(s)
        # Huber: c = clip(r) is also its derivative, and huber(r) = c * (r - c/2).
        c = np.clip(r, -self.delta, self.delta)
        h = c * (r - 0.5 * c)
        if self.w is not None:
            h = self.w * h
            c = self.w * c
        # d r / d T_k = -softmax_k = -p_k / s
        grad = -(self.design.T @ (p * (c / s)).ravel())
        return float(h.sum()) * self.scale, grad * self.scale


_LBFGS_OPTIONS = {"maxiter": 10000, "maxfun": 20000, "ftol": 1e-12, "gtol": 1e-9}


def minimize_from(
    obj: HuberObjective, starts: np.ndarray, bounds: tuple[float, float] | None
) -> tuple[Any, int, bool]:
    """Run L-BFGS-B from each start.

    Returns the best result, how many starts reached its value (to 1e-8 relative) and whether
    it converged. With tolerances this tight L-BFGS-B sometimes ends at the optimum with an
    "ABNORMAL" line-search failure; the best result is then restarted once from where it
    stopped, and counts as converged if the restart converges or cannot lower the objective.
    """
    box = None
    if bounds is not None:
        box = [(None, None), (None, None), bounds, (None, None), bounds]
    best = None
    values = []
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for th0 in starts:
            res = minimize(
                obj, th0, jac=True, method="L-BFGS-B", bounds=box, options=_LBFGS_OPTIONS
            )
            if not np.isfinite(res.fun) or not np.all(np.isfinite(res.x)):
                continue
            values.append(res.fun)
            if best is None or res.fun < best.fun:
                best = res
        if best is None:
            raise RuntimeError("the Huber fit failed from every starting point")
        converged = bool(best.success)
        if not converged:
            again = minimize(
                obj, best.x, jac=True, method="L-BFGS-B", bounds=box, options=_LBFGS_OPTIONS
            )
            stalled = again.fun >= best.fun - 1e-10 * max(1.0, abs(best.fun))
            converged = bool(again.success) or stalled
            if np.isfinite(again.fun) and again.fun < best.fun:
                best = again
    n_at_best = int(np.sum(np.asarray(values) <= best.fun + 1e-8 * max(1.0, abs(best.fun))))
    return best, n_at_best, converged


def fit_huber(
    df: pd.DataFrame,
    delta: float = 1e-3,
    grid: str | Mapping[str, Sequence[float]] | np.ndarray | None = None,
    exponent_bounds: tuple[float, float] | None = EXPONENT_BOUNDS,
) -> PointFit:
    """Huber fit of log-loss, as in Hoffmann et al. (2022) and Besiroglu et al. (2024).

    Minimizes ``sum_i Huber_delta(log L_i - LSE(e, a - alpha log N_i, b - beta log D_i))`` with
    L-BFGS-B (analytic gradient) from every point of ``grid`` and keeps the best optimum;
    ``E = exp(e)``, ``A = exp(a)``, ``B = exp(b)``.

    Parameters
    ----------
    df
        Run table with columns ``params``, ``tokens``, ``loss`` (one family).
    delta
        Huber threshold on log-loss residuals (1e-3 in both papers).
    grid
        Starting points, see :func:`huber_grid`. ``None`` uses the 108-start
        :data:`DEFAULT_HUBER_GRID`; ``"hoffmann"`` the full 4500-start grid. Starts outside
        ``exponent_bounds`` are clipped into them.
    exponent_bounds
        ``(low, high)`` for ``alpha`` and ``beta`` (see :data:`EXPONENT_BOUNDS`), or ``None``
        for the unconstrained fit of the papers.

    Returns
    -------
    PointFit
        ``method="huber"``; ``info`` holds ``objective`` (sum of Huber losses), ``n_starts``,
        ``n_at_best`` (starts that reached the best value), ``converged``, ``nit``,
        ``at_bound`` and ``theta`` (the optimum in ``(e, a, alpha, b, beta)``).

    Raises
    ------
    ValueError
        With fewer than 5 rows or fewer than 2 distinct parameter counts, or a bad ``delta``.
    """
    if not delta > 0:
        raise ValueError(f"delta must be positive; got {delta}")
    n, d, loss = checked_columns(df)
    starts = huber_grid(grid)
    if exponent_bounds is not None:
        exponent_bounds = check_bounds(exponent_bounds)
    obj = HuberObjective(np.log(n), np.log(d), np.log(loss), delta)
    with single_threaded_blas():
        best, n_at_best, converged = minimize_from(obj, starts, exponent_bounds)
    params = theta_to_params(best.x)
    warn_if_not_finite(params, "Huber")
    info = {
        "objective": float(best.fun) / obj.scale,
        "n_starts": len(starts),
        "n_at_best": n_at_best,
        "converged": converged,
        "nit": int(best.nit),
        "at_bound": at_bound(params, exponent_bounds),
        "theta": best.x.tolist(),
        "delta": float(delta),
        "exponent_bounds": exponent_bounds,
        "family": family_name(df),
    }
    return PointFit("huber", params, len(loss), info=info)
