"""The least-squares fit of the Hitchhiker's guide: ``scipy.optimize.curve_fit`` of the loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

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
from bayescale.laws.chinchilla import CHINCHILLA_PARAMS, PUBLISHED_FITS

__all__ = ["fit_least_squares"]


def fit_least_squares(
    df: pd.DataFrame,
    p0: Mapping[str, float] | None = None,
    exponent_bounds: tuple[float, float] | None = EXPONENT_BOUNDS,
) -> PointFit:
    """Least-squares fit of the loss, as in the Hitchhiker's guide.

    Minimizes ``sum (L - E - A/N^alpha - B/D^beta)^2`` with ``scipy.optimize.curve_fit``
    (analytic Jacobian; trust-region reflective with the exponent bounds, Levenberg-Marquardt
    without). Positivity of ``E``, ``A`` and ``B`` is built in by fitting their logs, and the
    power-law terms are centred at the geometric means of ``N`` and ``D``
    (``A/N^alpha = exp(a0 - alpha*(log N - mean log N))``), which removes most of the
    ``A``-``alpha`` collinearity without changing the optimum.

    Parameters
    ----------
    df
        Run table with columns ``params``, ``tokens``, ``loss`` (one family).
    p0
        Initial values ``{E, A, alpha, B, beta}``; default: Muennighoff et al. (2023),
        ``PUBLISHED_FITS["muennighoff2023"]``.
    exponent_bounds
        ``(low, high)`` for ``alpha`` and ``beta`` (see :data:`EXPONENT_BOUNDS`), or ``None``.

    Returns
    -------
    PointFit
        ``method="least_squares"``; ``info`` holds ``rss``, ``nfev``, ``at_bound`` and
        ``std_err`` (the curve_fit standard errors of ``(log E, a0, alpha, b0, beta)``).

    Raises
    ------
    ValueError
        With fewer than 5 rows or fewer than 2 distinct parameter counts.
    RuntimeError
        If curve_fit does not converge.
    """
    n, d, loss = checked_columns(df)
    start = dict(PUBLISHED_FITS["muennighoff2023"] if p0 is None else p0)
    missing = [k for k in CHINCHILLA_PARAMS if k not in start]
    if missing:
        raise ValueError(f"p0 is missing {missing}")
    x, y = np.log(n), np.log(d)
    x0, y0 = float(x.mean()), float(y.mean())
    xc, yc = x - x0, y - y0
    theta0 = np.array(
        [
            np.log(start["E"]),
            np.log(start["A"]) - start["alpha"] * x0,
            start["alpha"],
            np.log(start["B"]) - start["beta"] * y0,
            start["beta"],
        ]
    )

    def terms(th: np.ndarray) -> tuple[np.ndarray, ...]:
        log_e, a0, alpha, b0, beta = th
        return np.exp(log_e), np.exp(a0 - alpha * xc), np.exp(b0 - beta * yc)

    def model(_: Any, *th: float) -> np.ndarray:
        e_term, a_term, b_term = terms(np.asarray(th))
        return e_term + a_term + b_term

    def jac(_: Any, *th: float) -> np.ndarray:
        e_term, a_term, b_term = terms(np.asarray(th))
        return np.column_stack(
            [np.full_like(xc, e_term), a_term, -a_term * xc, b_term, -b_term * yc]
        )

    if exponent_bounds is None:
        solver: dict[str, Any] = {"method": "lm", "maxfev": 20000}
    else:
        lo, hi = check_bounds(exponent_bounds)
        # trf needs a strictly feasible start
        margin = 1e-6 * (hi - lo)
        theta0[[2, 4]] = np.clip(theta0[[2, 4]], lo + margin, hi - margin)
        solver = {
            "method": "trf",
            "bounds": ([-np.inf, -np.inf, lo, -np.inf, lo], [np.inf, np.inf, hi, np.inf, hi]),
            "max_nfev": 20000,
            "x_scale": "jac",
        }
    try:
        with single_threaded_blas():
            theta, cov, infodict, _, _ = curve_fit(
                model,
                np.arange(len(loss)),
                loss,
                p0=theta0,
                jac=jac,
                full_output=True,
                ftol=1e-15,
                xtol=1e-15,
                gtol=1e-15,
                **solver,
            )
    except RuntimeError as err:
        raise RuntimeError(f"least-squares fit did not converge: {err}") from err
    log_e, a0, alpha, b0, beta = (float(v) for v in theta)
    params = theta_to_params(np.array([log_e, a0 + alpha * x0, alpha, b0 + beta * y0, beta]))
    warn_if_not_finite(params, "least-squares")
    resid = infodict["fvec"]
    with np.errstate(invalid="ignore"):
        std_err = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(5, np.nan)
    info = {
        "rss": float(np.sum(resid * resid)),
        "nfev": int(infodict["nfev"]),
        "at_bound": at_bound(params, exponent_bounds),
        "std_err": dict(zip(("log_E", "a0", "alpha", "b0", "beta"), std_err.tolist(), strict=True)),
        "family": family_name(df),
    }
    return PointFit("least_squares", params, len(loss), info=info)
