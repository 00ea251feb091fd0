"""What the baselines share: their result classes, the input checks and bounds, and BLAS set to
one thread while they optimize."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.errors import DataError, DataWarning, user_stacklevel
from bayescale.intervals import DEFAULT_LEVELS, broadcast_points, prediction_dataset
from bayescale.laws.chinchilla import chinchilla_loss

__all__ = ["EXPONENT_BOUNDS", "ConstantFit", "PointFit"]


#: Minimum number of rows for a law fit (five free parameters).
MIN_ROWS = 5
#: Minimum number of distinct parameter counts for a law fit (``A`` and ``alpha`` need two).
MIN_DISTINCT_PARAMS = 2

#: Default bounds on the exponents ``alpha`` and ``beta`` for both law fits. The published
#: methods are unconstrained; these bounds never bind at a well-identified optimum (they do not
#: change the Chinchilla reproduction), but when a term is not identified -- e.g. three model
#: sizes spanning only 3x -- an unconstrained fit drifts along a flat valley to alpha ~ 200 with
#: ``A = exp(a)`` overflowing to inf (Huber) or to alpha < 0 with ``A`` and ``E`` underflowing
#: to 0 (least squares). Pass ``exponent_bounds=None`` for the unconstrained fits; check
#: ``info["at_bound"]`` for exponents that ended on a bound.
EXPONENT_BOUNDS: tuple[float, float] = (0.0, 10.0)


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
        return method_attrs(self.method, self.n_obs, self.info)


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
        attrs = method_attrs(self.method, self.n_obs, self.info)
        return prediction_dataset(n, d, np.full(n.shape, self.value), levels=levels, attrs=attrs)


def method_attrs(method: str, n_obs: int, info: Mapping[str, Any]) -> dict[str, object]:
    """The attributes of a baseline's prediction dataset: method, rows fitted, family."""
    attrs: dict[str, object] = {"method": method, "n_obs": n_obs}
    if info.get("family") is not None:
        attrs["family"] = info["family"]
    return attrs


def checked_columns(df: pd.DataFrame, need_law: bool = True) -> tuple[np.ndarray, ...]:
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


def family_name(df: pd.DataFrame) -> str | None:
    """The table's family when it has a ``family`` column with one value, else ``None``."""
    if "family" in df.columns:
        families = pd.unique(df["family"])
        if len(families) == 1:
            return str(families[0])
    return None


def check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """``exponent_bounds`` as two floats; raises ``ValueError`` unless finite with low < high."""
    lo, hi = (float(v) for v in bounds)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"exponent_bounds must be finite with low < high; got {bounds}")
    return lo, hi


def at_bound(params: Mapping[str, float], bounds: tuple[float, float] | None) -> list[str]:
    """The exponents (``alpha``, ``beta``) of ``params`` that ended on a bound of ``bounds``."""
    if bounds is None:
        return []
    lo, hi = bounds
    tol = 1e-6 * (hi - lo)
    return [k for k in ("alpha", "beta") if params[k] <= lo + tol or params[k] >= hi - tol]


def theta_to_params(th: np.ndarray) -> dict[str, float]:
    """``(e, a, alpha, b, beta)`` to ``{E, A, alpha, B, beta}`` (``E = exp(e)``, ...)."""
    e, a, alpha, b, beta = (float(v) for v in th)
    with np.errstate(over="ignore"):
        return {
            "E": float(np.exp(e)),
            "A": float(np.exp(a)),
            "alpha": alpha,
            "B": float(np.exp(b)),
            "beta": beta,
        }


def warn_if_not_finite(params: Mapping[str, float], method: str) -> None:
    """Warn (:class:`~bayescale.DataWarning`) when a fitted parameter overflowed."""
    bad = [k for k, v in params.items() if not np.isfinite(v)]
    if bad:
        warnings.warn(
            f"{method} fit: {', '.join(bad)} overflowed; a power-law term is not identified by "
            "these data (its exponent drifted without bound). Fit with exponent_bounds.",
            DataWarning,
            stacklevel=user_stacklevel(),
        )


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
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
