"""The guide's single-run transfer: ``(A, alpha)`` held at another family's values (Muennighoff
et al. 2023 by default) and ``E, B, beta`` fitted by least squares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import curve_fit

from bayescale.baselines.base import (
    EXPONENT_BOUNDS,
    PointFit,
    check_bounds,
    checked_columns,
    family_name,
    single_threaded_blas,
)
from bayescale.intervals import DEFAULT_LEVELS, broadcast_points, prediction_dataset
from bayescale.laws.chinchilla import chinchilla_loss

__all__ = ["MUENNIGHOFF_ALPHA", "MUENNIGHOFF_LOG_A", "FixedTermFit", "fit_fixed_a_alpha"]


#: Muennighoff et al. (2023)'s parameter term ``A / N^alpha``, which the Hitchhiker's guide borrows
#: to predict a new family from a single run: ``ln A = 6.255414``, ``alpha = 0.3526596``.
MUENNIGHOFF_LOG_A = 6.255414
MUENNIGHOFF_ALPHA = 0.3526596


@dataclass(frozen=True)
class FixedTermFit(PointFit):
    """A law whose parameter term ``A / N^alpha`` was held fixed while ``E, B, beta`` were fitted.

    Attributes
    ----------
    cov
        Asymptotic covariance of ``(log E, b0, beta)`` from ``curve_fit`` (``b0`` is ``log B``
        at the reference ``exp(log_d0)`` tokens), or NaN when it could not be estimated.
    log_d0
        Reference log-tokens of ``b0`` (mean log tokens of the rows fitted).
    resid_sd
        Residual standard deviation of the loss, ``sqrt(rss / (n - 3))``.
    random_seed
        Seed of the draws behind the bands of :meth:`predict`.
    """

    cov: np.ndarray = field(compare=False)
    log_d0: float = 0.0
    resid_sd: float = float("nan")
    random_seed: int = 0

    def predict(
        self,
        params: Any,
        tokens: Any,
        levels: Sequence[float] = DEFAULT_LEVELS,
        n_draws: int = 4000,
    ) -> xr.Dataset:
        """Prediction dataset with ``median`` and, when the covariance is finite, two bands.

        Parameters
        ----------
        params, tokens
            Parameter counts ``N`` and training tokens ``D``; broadcast against each other.
        levels
            Central probabilities of the intervals.
        n_draws
            Draws of ``(log E, b0, beta)`` from their asymptotic normal distribution.

        Returns
        -------
        xarray.Dataset
            ``median``: the fitted law. ``mean``: the law under draws of ``(log E, b0, beta)``
            from ``N(estimate, cov)``. ``observed``: ``mean`` plus Gaussian noise of sd
            ``resid_sd``. Both bands treat the borrowed ``(A, alpha)`` as exact, so they
            understate the uncertainty of a transfer to another family.
        """
        n, d = broadcast_points(params, tokens)
        median = chinchilla_loss(n, d, **self.params)
        attrs = self._attrs() | {"A_fixed": self.params["A"], "alpha_fixed": self.params["alpha"]}
        if not np.all(np.isfinite(self.cov)) or not np.isfinite(self.resid_sd):
            return prediction_dataset(n, d, median, levels=levels, attrs=attrs)
        rng = np.random.default_rng([self.random_seed, 3])
        theta = np.array(
            [
                np.log(self.params["E"]),
                np.log(self.params["B"]) - self.params["beta"] * self.log_d0,
                self.params["beta"],
            ]
        )
        draws = rng.multivariate_normal(theta, self.cov, size=int(n_draws), method="eigh")
        a_term = self.params["A"] * n ** -self.params["alpha"]
        with np.errstate(over="ignore"):
            mean = (
                np.exp(draws[:, 0:1])
                + a_term[None, :]
                + np.exp(draws[:, 1:2] - draws[:, 2:3] * (np.log(d)[None, :] - self.log_d0))
            )
        observed = mean + rng.standard_normal(mean.shape) * self.resid_sd
        bands = {"mean": mean, "observed": observed}
        return prediction_dataset(n, d, median, bands, levels=levels, attrs=attrs)


def fit_fixed_a_alpha(
    df: pd.DataFrame,
    A: float = float(np.exp(MUENNIGHOFF_LOG_A)),
    alpha: float = MUENNIGHOFF_ALPHA,
    beta_bounds: tuple[float, float] = EXPONENT_BOUNDS,
    random_seed: int = 0,
) -> FixedTermFit:
    """Least-squares fit of ``E, B, beta`` with the parameter term ``A / N^alpha`` held fixed.

    The Hitchhiker's guide predicts a new family from a single run this way: one run cannot
    identify ``(A, alpha)`` (its ``N`` does not vary), so they are borrowed from another family
    -- by default Muennighoff et al. (2023), ``ln A = 6.255414``, ``alpha = 0.3526596`` -- and
    ``sum (L - E - A/N^alpha - B/D^beta)^2`` is minimized over ``(log E, b0, beta)`` with
    ``scipy.optimize.curve_fit`` (trust-region reflective, ``beta`` within ``beta_bounds``;
    ``B/D^beta = exp(b0 - beta (log D - mean log D))``), from three starting exponents, keeping
    the lowest residual sum of squares.

    Parameters
    ----------
    df
        Rows to fit (typically the checkpoints of one run past the warm-up cut), with columns
        ``params``, ``tokens``, ``loss``; several sizes are allowed.
    A, alpha
        The fixed parameter term.
    beta_bounds
        ``(low, high)`` for ``beta``.
    random_seed
        Seed of the band draws of :meth:`FixedTermFit.predict`.

    Returns
    -------
    FixedTermFit
        ``method="fixed_a_alpha"``; ``info`` holds ``rss``, ``nfev``, ``at_bound`` and
        ``std_err`` of ``(log_E, b0, beta)``.

    Raises
    ------
    ValueError
        With fewer than 3 rows, fewer than 2 distinct token counts, or a non-positive ``A`` or
        ``alpha``.
    RuntimeError
        If curve_fit fails from every start.
    """
    n, d, loss = checked_columns(df, need_law=False)
    if not (np.isfinite(A) and A > 0 and np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"A and alpha must be positive and finite; got A={A}, alpha={alpha}")
    if len(loss) < 3:
        raise ValueError(f"fitting E, B and beta needs at least 3 rows; got {len(loss)}")
    if len(np.unique(d)) < 2:
        raise ValueError("fitting B and beta needs at least 2 distinct token counts")
    lo, hi = check_bounds(beta_bounds)
    y = np.log(d)
    y0 = float(y.mean())
    yc = y - y0
    rest = loss - A * n**-alpha  # what E + B/D^beta must explain

    def model(_: Any, log_e: float, b0: float, beta: float) -> np.ndarray:
        return np.exp(log_e) + np.exp(b0 - beta * yc)

    def jac(_: Any, log_e: float, b0: float, beta: float) -> np.ndarray:
        b_term = np.exp(b0 - beta * yc)
        return np.column_stack([np.full_like(yc, np.exp(log_e)), b_term, -b_term * yc])

    e0 = 0.5 * float(rest.min()) if rest.min() > 0 else 1e-3
    margin = 1e-6 * (hi - lo)
    best = None
    with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
        for beta0 in (0.1, 0.35, 1.0):
            beta0 = float(np.clip(beta0, lo + margin, hi - margin))
            b_start = float(np.log(max(float(rest.mean()) - e0, 1e-6)))
            try:
                theta, cov, infodict, _, _ = curve_fit(
                    model,
                    np.arange(len(loss)),
                    rest,
                    p0=[np.log(e0), b_start, beta0],
                    jac=jac,
                    full_output=True,
                    method="trf",
                    bounds=([-np.inf, -np.inf, lo], [np.inf, np.inf, hi]),
                    x_scale="jac",
                    max_nfev=20000,
                    ftol=1e-15,
                    xtol=1e-15,
                    gtol=1e-15,
                )
            except (RuntimeError, ValueError):
                continue
            rss = float(np.sum(infodict["fvec"] ** 2))
            if np.isfinite(rss) and (best is None or rss < best[0]):
                best = (rss, theta, cov, int(infodict["nfev"]))
    if best is None:
        raise RuntimeError("the fixed-(A, alpha) fit did not converge from any start")
    rss, theta, cov, nfev = best
    log_e, b0, beta = (float(v) for v in theta)
    params = {
        "E": float(np.exp(log_e)),
        "A": float(A),
        "alpha": float(alpha),
        "B": float(np.exp(b0 + beta * y0)),
        "beta": beta,
    }
    cov = np.asarray(cov, dtype=float)
    dof = len(loss) - 3
    resid_sd = float(np.sqrt(rss / dof)) if dof > 0 else float("nan")
    with np.errstate(invalid="ignore"):
        std_err = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(3, np.nan)
    tol = 1e-6 * (hi - lo)
    info = {
        "rss": rss,
        "nfev": nfev,
        "at_bound": ["beta"] if beta <= lo + tol or beta >= hi - tol else [],
        "std_err": dict(zip(("log_E", "b0", "beta"), std_err.tolist(), strict=True)),
        "family": family_name(df),
    }
    return FixedTermFit(
        "fixed_a_alpha",
        params,
        len(loss),
        cov,
        y0,
        resid_sd,
        int(random_seed),
        info=info,
    )
