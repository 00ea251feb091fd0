"""Classic (non-Bayesian) baselines for the Chinchilla form ``L = E + A/N^alpha + B/D^beta``.

Four kinds of predictors, all with the same ``.predict(params, tokens)`` interface and all
returning the prediction-dataset shape of :mod:`bayescale.intervals`:

* :func:`fit_least_squares` -- the method of "A Hitchhiker's Guide to Scaling Law Estimation"
  (Choshen, Zhang, Andreas): ``scipy.optimize.curve_fit`` of the loss itself, started from the
  Muennighoff et al. (2023) fit.
* :func:`fit_huber` -- the method of Hoffmann et al. (2022) as re-run by Besiroglu et al. (2024):
  Huber loss (``delta = 1e-3``) of log-loss residuals, minimized with L-BFGS-B from a grid of
  starting points.
* :func:`bootstrap_huber` -- the Huber fit bootstrapped over *runs*, giving parameter confidence
  intervals, a confidence band for the mean curve and a prediction band for new checkpoints.
* :func:`best_loss_baseline` and :func:`most_trained_baseline` -- the two naive baselines of the
  Hitchhiker's guide (lowest training loss; loss of the training model with the largest N*D).
* :func:`fit_fixed_a_alpha` -- the guide's single-run transfer: ``(A, alpha)`` held at another
  family's values (Muennighoff et al. 2023 by default) and ``E, B, beta`` fitted by least squares
  on one run of the new family.

Every fitter takes a tidy run table with columns ``params`` (N), ``tokens`` (D) and ``loss``
(nats per token); the bootstrap also needs ``run`` (and uses ``family`` when present). A fitter
fits ONE law to all rows it is given, so select a family first.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import curve_fit, minimize

from bayescale.errors import DataError, DataWarning, user_stacklevel
from bayescale.intervals import DEFAULT_LEVELS, broadcast_points, prediction_dataset
from bayescale.laws.chinchilla import CHINCHILLA_PARAMS, PUBLISHED_FITS, chinchilla_loss

__all__ = [
    "DEFAULT_HUBER_GRID",
    "EXPONENT_BOUNDS",
    "HOFFMANN_GRID",
    "MUENNIGHOFF_ALPHA",
    "MUENNIGHOFF_LOG_A",
    "BootstrapFit",
    "ConstantFit",
    "FixedTermFit",
    "PointFit",
    "best_loss_baseline",
    "bootstrap_huber",
    "fit_fixed_a_alpha",
    "fit_huber",
    "fit_least_squares",
    "huber_grid",
    "most_trained_baseline",
]

#: Muennighoff et al. (2023)'s parameter term ``A / N^alpha``, which the Hitchhiker's guide borrows
#: to predict a new family from a single run: ``ln A = 6.255414``, ``alpha = 0.3526596``.
MUENNIGHOFF_LOG_A = 6.255414
MUENNIGHOFF_ALPHA = 0.3526596

#: Minimum number of rows for a law fit (five free parameters).
MIN_ROWS = 5
#: Minimum number of distinct parameter counts for a law fit (``A`` and ``alpha`` need two).
MIN_DISTINCT_PARAMS = 2

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

#: Default bounds on the exponents ``alpha`` and ``beta`` for both law fits. The published
#: methods are unconstrained; these bounds never bind at a well-identified optimum (they do not
#: change the Chinchilla reproduction), but when a term is not identified -- e.g. three model
#: sizes spanning only 3x -- an unconstrained fit drifts along a flat valley to alpha ~ 200 with
#: ``A = exp(a)`` overflowing to inf (Huber) or to alpha < 0 with ``A`` and ``E`` underflowing
#: to 0 (least squares). Pass ``exponent_bounds=None`` for the unconstrained fits; check
#: ``info["at_bound"]`` for exponents that ended on a bound.
EXPONENT_BOUNDS: tuple[float, float] = (0.0, 10.0)


# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointFit:
    """A single fitted Chinchilla law.

    Attributes
    ----------
    method
        ``"least_squares"`` or ``"huber"`` (``"huber_bootstrap"`` for :class:`BootstrapFit`).
    params
        ``{"E", "A", "alpha", "B", "beta"}`` in the usual convention.
    n_obs
        Number of rows fitted.
    info
        Diagnostics of the optimizer (objective value, starts, convergence, family, ...).
    """

    method: str
    params: dict[str, float]
    n_obs: int
    info: dict[str, Any] = field(default_factory=dict, kw_only=True, compare=False)

    def loss(self, params: Any, tokens: Any) -> np.ndarray:
        """Predicted loss at ``(params, tokens)``.

        Parameters
        ----------
        params, tokens
            Parameter counts ``N`` and training tokens ``D``; broadcast against each other.

        Returns
        -------
        numpy.ndarray
            1-D array of predicted losses (nats per token), one per broadcast point.
        """
        n, d = broadcast_points(params, tokens)
        return np.asarray(chinchilla_loss(n, d, **self.params), dtype=float)

    def predict(
        self, params: Any, tokens: Any, levels: Sequence[float] = DEFAULT_LEVELS
    ) -> xr.Dataset:
        """Prediction dataset with the point prediction as ``median`` and no bands.

        Parameters
        ----------
        params, tokens
            Parameter counts ``N`` and training tokens ``D``; broadcast against each other.
        levels
            Interval levels stored as the ``level`` coordinate (no band uses them here).

        Returns
        -------
        xarray.Dataset
            See :func:`bayescale.intervals.prediction_dataset`.
        """
        n, d = broadcast_points(params, tokens)
        median = chinchilla_loss(n, d, **self.params)
        return prediction_dataset(n, d, median, levels=levels, attrs=self._attrs())

    def _attrs(self) -> dict[str, object]:
        return _method_attrs(self.method, self.n_obs, self.info)


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
        log_curves = _log_loss(
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


@dataclass(frozen=True)
class ConstantFit:
    """A naive baseline predicting the same loss everywhere.

    Attributes
    ----------
    method
        ``"best_loss"`` or ``"most_trained"``.
    value
        The predicted loss.
    n_obs
        Number of rows the baseline was built from.
    info
        Where the value came from (row(s), run, ``params``, ``tokens``).
    """

    method: str
    value: float
    n_obs: int
    info: dict[str, Any] = field(default_factory=dict, kw_only=True, compare=False)

    def loss(self, params: Any, tokens: Any) -> np.ndarray:
        """The constant prediction, one value per broadcast ``(params, tokens)`` point."""
        n, _ = broadcast_points(params, tokens)
        return np.full(n.shape, self.value)

    def predict(
        self, params: Any, tokens: Any, levels: Sequence[float] = DEFAULT_LEVELS
    ) -> xr.Dataset:
        """Prediction dataset with the constant as ``median`` and no bands."""
        n, d = broadcast_points(params, tokens)
        attrs = _method_attrs(self.method, self.n_obs, self.info)
        return prediction_dataset(n, d, np.full(n.shape, self.value), levels=levels, attrs=attrs)


def _method_attrs(method: str, n_obs: int, info: Mapping[str, Any]) -> dict[str, object]:
    """The attributes of a baseline's prediction dataset: method, rows fitted, family."""
    attrs: dict[str, object] = {"method": method, "n_obs": n_obs}
    if info.get("family") is not None:
        attrs["family"] = info["family"]
    return attrs


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _columns(df: pd.DataFrame, need_law: bool = True) -> tuple[np.ndarray, ...]:
    """Return float arrays ``(N, D, L)`` after checking the table."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ("params", "tokens", "loss") if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; need params, tokens and loss")
    arrays = []
    for col in ("params", "tokens", "loss"):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            rows = list(df.index[bad][:5])
            raise DataError(f"column {col!r} must be positive and finite; bad rows {rows}")
        arrays.append(values)
    n, d, loss = arrays
    if len(loss) == 0:
        raise ValueError("no rows to fit")
    if need_law:
        if len(loss) < MIN_ROWS:
            raise ValueError(
                f"a Chinchilla fit needs at least {MIN_ROWS} rows (5 free parameters); "
                f"got {len(loss)}"
            )
        n_distinct = len(np.unique(n))
        if n_distinct < MIN_DISTINCT_PARAMS:
            raise ValueError(
                f"a Chinchilla fit needs at least {MIN_DISTINCT_PARAMS} distinct parameter "
                f"counts to identify A and alpha; got {n_distinct}"
            )
    return n, d, loss


def _family(df: pd.DataFrame) -> str | None:
    if "family" in df.columns:
        families = pd.unique(df["family"])
        if len(families) == 1:
            return str(families[0])
    return None


def _check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in bounds)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"exponent_bounds must be finite with low < high; got {bounds}")
    return lo, hi


def _at_bound(params: Mapping[str, float], bounds: tuple[float, float] | None) -> list[str]:
    if bounds is None:
        return []
    lo, hi = bounds
    tol = 1e-6 * (hi - lo)
    return [k for k in ("alpha", "beta") if params[k] <= lo + tol or params[k] >= hi - tol]


# --------------------------------------------------------------------------------------------
# Least squares (Hitchhiker's guide)
# --------------------------------------------------------------------------------------------


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
    n, d, loss = _columns(df)
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
        lo, hi = _check_bounds(exponent_bounds)
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
        with _single_threaded_blas():
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
    params = _theta_to_params(np.array([log_e, a0 + alpha * x0, alpha, b0 + beta * y0, beta]))
    _warn_if_not_finite(params, "least-squares")
    resid = infodict["fvec"]
    with np.errstate(invalid="ignore"):
        std_err = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(5, np.nan)
    info = {
        "rss": float(np.sum(resid * resid)),
        "nfev": int(infodict["nfev"]),
        "at_bound": _at_bound(params, exponent_bounds),
        "std_err": dict(zip(("log_E", "a0", "alpha", "b0", "beta"), std_err.tolist(), strict=True)),
        "family": _family(df),
    }
    return PointFit("least_squares", params, len(loss), info=info)


# --------------------------------------------------------------------------------------------
# Huber fit (Hoffmann et al. / Besiroglu et al.)
# --------------------------------------------------------------------------------------------


def _log_loss(log_n: Any, log_d: Any, e: Any, a: Any, alpha: Any, b: Any, beta: Any) -> np.ndarray:
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


class _HuberObjective:
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
        return self.target - _log_loss(self.x, self.y, *th)

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


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while optimizing.

    L-BFGS-B and the objective call BLAS on tiny arrays thousands of times; with a
    multi-threaded OpenBLAS on a busy machine the thread hand-offs cost far more CPU time than
    the arithmetic.
    ``threadpoolctl`` ships with scipy's scientific stack (pymc requires it); without it this is
    a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


_LBFGS_OPTIONS = {"maxiter": 10000, "maxfun": 20000, "ftol": 1e-12, "gtol": 1e-9}


def _minimize_from(
    obj: _HuberObjective, starts: np.ndarray, bounds: tuple[float, float] | None
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


def _theta_to_params(th: np.ndarray) -> dict[str, float]:
    e, a, alpha, b, beta = (float(v) for v in th)
    with np.errstate(over="ignore"):
        return {
            "E": float(np.exp(e)),
            "A": float(np.exp(a)),
            "alpha": alpha,
            "B": float(np.exp(b)),
            "beta": beta,
        }


def _warn_if_not_finite(params: Mapping[str, float], method: str) -> None:
    bad = [k for k, v in params.items() if not np.isfinite(v)]
    if bad:
        warnings.warn(
            f"{method} fit: {', '.join(bad)} overflowed; a power-law term is not identified by "
            "these data (its exponent drifted without bound). Fit with exponent_bounds.",
            DataWarning,
            stacklevel=user_stacklevel(),
        )


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
    n, d, loss = _columns(df)
    starts = huber_grid(grid)
    if exponent_bounds is not None:
        exponent_bounds = _check_bounds(exponent_bounds)
    obj = _HuberObjective(np.log(n), np.log(d), np.log(loss), delta)
    with _single_threaded_blas():
        best, n_at_best, converged = _minimize_from(obj, starts, exponent_bounds)
    params = _theta_to_params(best.x)
    _warn_if_not_finite(params, "Huber")
    info = {
        "objective": float(best.fun) / obj.scale,
        "n_starts": len(starts),
        "n_at_best": n_at_best,
        "converged": converged,
        "nit": int(best.nit),
        "at_bound": _at_bound(params, exponent_bounds),
        "theta": best.x.tolist(),
        "delta": float(delta),
        "exponent_bounds": exponent_bounds,
        "family": _family(df),
    }
    return PointFit("huber", params, len(loss), info=info)


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
    n, d, loss = _columns(df)
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
    residuals = log_l - _log_loss(log_n, log_d, *theta_hat)
    rng = np.random.default_rng(random_seed)
    rows = []
    with _single_threaded_blas():
        for _ in range(n_boot):
            for _attempt in range(1000):
                counts = np.bincount(rng.integers(0, n_runs, size=n_runs), minlength=n_runs)
                weights = counts[run_codes].astype(float)
                used = weights > 0
                if weights.sum() >= MIN_ROWS and len(np.unique(n[used])) >= MIN_DISTINCT_PARAMS:
                    break
            else:
                raise ValueError("could not draw a bootstrap replicate with enough distinct sizes")
            obj = _HuberObjective(log_n[used], log_d[used], log_l[used], delta, weights[used])
            best, _, converged = _minimize_from(obj, starts, exponent_bounds)
            rows.append(
                _theta_to_params(best.x)
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


# --------------------------------------------------------------------------------------------
# Fixed parameter term (the guide's single-run transfer)
# --------------------------------------------------------------------------------------------


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
    n, d, loss = _columns(df, need_law=False)
    if not (np.isfinite(A) and A > 0 and np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"A and alpha must be positive and finite; got A={A}, alpha={alpha}")
    if len(loss) < 3:
        raise ValueError(f"fitting E, B and beta needs at least 3 rows; got {len(loss)}")
    if len(np.unique(d)) < 2:
        raise ValueError("fitting B and beta needs at least 2 distinct token counts")
    lo, hi = _check_bounds(beta_bounds)
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
    with _single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
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
        "family": _family(df),
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


# --------------------------------------------------------------------------------------------
# Naive baselines (Hitchhiker's guide)
# --------------------------------------------------------------------------------------------


def best_loss_baseline(df: pd.DataFrame) -> ConstantFit:
    """Predict the lowest loss in the training data for every target.

    Parameters
    ----------
    df
        Run table with columns ``params``, ``tokens``, ``loss``.

    Returns
    -------
    ConstantFit
        ``method="best_loss"``; ``info`` names the row (``index``, ``params``, ``tokens``,
        ``run`` when present).
    """
    _, _, loss = _columns(df, need_law=False)
    i = int(np.argmin(loss))
    return ConstantFit("best_loss", float(loss[i]), len(loss), info=_row_info(df, [i]))


def most_trained_baseline(df: pd.DataFrame) -> ConstantFit:
    """Predict the loss of the training model with the largest ``N * D``.

    That is the last checkpoint of the run that maximizes ``N * D``. If several rows share the
    largest ``N * D`` (e.g. seeds of the same size and length), their losses are averaged.

    Parameters
    ----------
    df
        Run table with columns ``params``, ``tokens``, ``loss``.

    Returns
    -------
    ConstantFit
        ``method="most_trained"``; ``info`` names the row(s) used.
    """
    n, d, loss = _columns(df, need_law=False)
    compute = n * d
    top = np.flatnonzero(compute >= compute.max() * (1 - 1e-12))
    return ConstantFit(
        "most_trained", float(loss[top].mean()), len(loss), info=_row_info(df, top.tolist())
    )


def _row_info(df: pd.DataFrame, positions: list[int]) -> dict[str, Any]:
    rows = df.iloc[positions]
    info: dict[str, Any] = {
        "index": rows.index.tolist(),
        "params": rows["params"].astype(float).tolist(),
        "tokens": rows["tokens"].astype(float).tolist(),
        "family": _family(df),
    }
    if "run" in df.columns:
        info["run"] = rows["run"].tolist()
    return info
