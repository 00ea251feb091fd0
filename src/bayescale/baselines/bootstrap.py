"""The Huber fit bootstrapped over runs: parameter intervals, a band for the mean curve and one
for new checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.baselines.base import (
    EXPONENT_BOUNDS,
    MIN_DISTINCT_PARAMS,
    MIN_ROWS,
    PointFit,
    checked_columns,
    single_threaded_blas,
    theta_to_params,
)
from bayescale.baselines.huber import HuberObjective, fit_huber, huber_grid, log_law, minimize_from
from bayescale.errors import DataError
from bayescale.intervals import DEFAULT_LEVELS, broadcast_points, prediction_dataset
from bayescale.laws.chinchilla import CHINCHILLA_PARAMS, chinchilla_loss

__all__ = ["BootstrapFit", "bootstrap_huber"]


@dataclass(frozen=True)
class BootstrapFit(PointFit):
    """A Huber fit with a run-level bootstrap.

    Attributes
    ----------
    draws
        One row per bootstrap replicate: columns ``E, A, alpha, B, beta``, the replicate's
        ``objective`` and whether its optimizer ``converged``.
    log_residuals
        ``log L - log L_hat`` of the full-data fit, one per row fitted; resampled to form the
        ``observed`` band.
    random_seed
        Seed of the resampling (also seeds the residual draws of :meth:`predict`).
    """

    draws: pd.DataFrame = field(compare=False)
    log_residuals: np.ndarray = field(compare=False)
    random_seed: int = 0

    def interval(self, level: float = 0.9) -> pd.DataFrame:
        """Percentile-bootstrap confidence intervals of the parameters.

        Parameters
        ----------
        level
            Central probability of the interval, in (0, 1).

        Returns
        -------
        pandas.DataFrame
            Indexed by parameter name, with columns ``estimate`` (full-data fit), ``lower``,
            ``upper`` (equal-tailed quantiles of the replicates) and ``se`` (standard
            deviation of the replicates).
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1); got {level}")
        draws = self.draws.loc[:, list(CHINCHILLA_PARAMS)]
        lo, hi = (1 - level) / 2, (1 + level) / 2
        return pd.DataFrame(
            {
                "estimate": pd.Series(self.params),
                "lower": draws.quantile(lo),
                "upper": draws.quantile(hi),
                "se": draws.std(ddof=1),
            }
        ).loc[list(CHINCHILLA_PARAMS)]

    def predict(
        self,
        params: Any,
        tokens: Any,
        levels: Sequence[float] = DEFAULT_LEVELS,
        n_observed: int = 4000,
    ) -> xr.Dataset:
        """Prediction dataset with bands ``mean`` and ``observed``.

        Parameters
        ----------
        params, tokens
            Parameter counts ``N`` and training tokens ``D``; broadcast against each other.
        levels
            Central probabilities of the intervals.
        n_observed
            Number of samples for the ``observed`` band (at least one per replicate).

        Returns
        -------
        xarray.Dataset
            ``median``: the full-data fit. ``mean``: percentile confidence band of the mean
            curve over the bootstrap replicates. ``observed``: prediction band of a new
            checkpoint's loss, ``exp(log L_hat_b + r)`` with ``L_hat_b`` a replicate's curve and
            ``r`` a log-residual of the full-data fit drawn with replacement. The residual draws
            are seeded by ``random_seed``, so the result is reproducible.
        """
        n, d = broadcast_points(params, tokens)
        median = chinchilla_loss(n, d, **self.params)
        draws = self.draws.loc[:, list(CHINCHILLA_PARAMS)].to_numpy()
        log_n, log_d = np.log(n), np.log(d)
        log_curves = log_law(
            log_n[None, :],
            log_d[None, :],
            np.log(draws[:, 0:1]),
            np.log(draws[:, 1:2]),
            draws[:, 2:3],
            np.log(draws[:, 3:4]),
            draws[:, 4:5],
        )  # (n_boot, n_points)
        n_samples = max(int(n_observed), len(draws))
        rng = np.random.default_rng([self.random_seed, 1])
        which = np.arange(n_samples) % len(draws)
        noise = rng.choice(self.log_residuals, size=(n_samples, len(n)), replace=True)
        bands = {"mean": np.exp(log_curves), "observed": np.exp(log_curves[which] + noise)}
        attrs = self._attrs() | {"n_boot": len(draws), "random_seed": self.random_seed}
        return prediction_dataset(n, d, median, bands, levels=levels, attrs=attrs)


def bootstrap_huber(
    df: pd.DataFrame,
    n_boot: int = 1000,
    random_seed: int = 0,
    delta: float = 1e-3,
    grid: str | Mapping[str, Sequence[float]] | np.ndarray | None = None,
    refit_grid: str | Mapping[str, Sequence[float]] | np.ndarray | None = None,
    full_fit: PointFit | None = None,
    exponent_bounds: tuple[float, float] | None = EXPONENT_BOUNDS,
) -> BootstrapFit:
    """Run-level bootstrap of :func:`fit_huber`.

    Each replicate draws as many runs as the data has, with replacement (a run drawn twice
    counts twice; all checkpoints of a run move together, since they share the run's
    seed-to-seed deviation), and refits the Huber loss starting from the full-data optimum.
    Replicates with fewer than 5 rows or fewer than 2 distinct parameter counts are redrawn.

    Parameters
    ----------
    df
        Run table with columns ``run``, ``params``, ``tokens``, ``loss`` (and optionally
        ``family``; runs are identified by ``(family, run)``).
    n_boot
        Number of bootstrap replicates.
    random_seed
        Seed of the resampling; the same seed gives the same result.
    delta
        Huber threshold.
    grid
        Starting grid of the full-data fit (see :func:`huber_grid`).
    refit_grid
        Extra starts for every replicate, besides the full-data optimum (default: none --
        warm start only).
    full_fit
        A Huber fit of ``df`` already computed (skips the full-data fit; its ``delta`` and
        ``exponent_bounds`` are then used for the replicates).
    exponent_bounds
        Bounds on ``alpha`` and ``beta`` (see :func:`fit_huber`).

    Returns
    -------
    BootstrapFit
        ``method="huber_bootstrap"``, ``params`` of the full-data fit, and the replicates in
        ``draws``.

    Raises
    ------
    ValueError
        On too little data, a missing ``run`` column, or ``n_boot < 2``.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2; got {n_boot}")
    n, d, loss = checked_columns(df)
    if "run" not in df.columns:
        raise DataError("bootstrap_huber resamples runs and needs a 'run' column")
    keys = ["family", "run"] if "family" in df.columns else ["run"]
    run_codes = df.groupby(keys, sort=True).ngroup().to_numpy()
    n_runs = int(run_codes.max()) + 1

    if full_fit is None:
        full_fit = fit_huber(df, delta=delta, grid=grid, exponent_bounds=exponent_bounds)
    elif full_fit.method != "huber" or full_fit.n_obs != len(loss):
        raise ValueError("full_fit must come from fit_huber on the same rows")
    delta = float(full_fit.info["delta"])
    exponent_bounds = full_fit.info["exponent_bounds"]
    theta_hat = np.array(full_fit.info["theta"], dtype=float)
    extra = huber_grid(refit_grid) if refit_grid is not None else np.empty((0, 5))
    starts = np.vstack([theta_hat[None, :], extra])

    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    residuals = log_l - log_law(log_n, log_d, *theta_hat)
    rng = np.random.default_rng(random_seed)
    rows = []
    with single_threaded_blas():
        for _ in range(n_boot):
            for _attempt in range(1000):
                counts = np.bincount(rng.integers(0, n_runs, size=n_runs), minlength=n_runs)
                weights = counts[run_codes].astype(float)
                used = weights > 0
                if weights.sum() >= MIN_ROWS and len(np.unique(n[used])) >= MIN_DISTINCT_PARAMS:
                    break
            else:
                raise ValueError("could not draw a bootstrap replicate with enough distinct sizes")
            obj = HuberObjective(log_n[used], log_d[used], log_l[used], delta, weights[used])
            best, _, converged = minimize_from(obj, starts, exponent_bounds)
            rows.append(
                theta_to_params(best.x)
                | {"objective": float(best.fun) / obj.scale, "converged": converged}
            )
    draws = pd.DataFrame(rows)
    draws.index.name = "replicate"
    info = dict(full_fit.info) | {"n_boot": int(n_boot), "n_runs": n_runs}
    return BootstrapFit(
        "huber_bootstrap",
        dict(full_fit.params),
        full_fit.n_obs,
        draws,
        residuals,
        int(random_seed),
        info=info,
    )
