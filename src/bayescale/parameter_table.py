"""Credible intervals of a fitted law's parameters as one tidy table.

:meth:`bayescale.ScalingLawFit.credible_intervals`, :meth:`bayescale.KaplanFit.credible_intervals`
and :func:`bayescale.report.credible_intervals` all return :func:`parameter_intervals` of the
fit's posterior. It works on the posterior alone, so it sits below the fit classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayescale.laws.chinchilla import CHINCHILLA_PARAMS, from_reference_scale
from bayescale.models.priors import THETA_NAMES

__all__ = ["CREDIBLE_INTERVAL_COLUMNS", "parameter_intervals"]

#: Columns of :func:`parameter_intervals`, in order.
CREDIBLE_INTERVAL_COLUMNS: tuple[str, ...] = (
    "parameter",
    "scope",
    "group",
    "mean",
    "sd",
    "median",
    "lower",
    "upper",
    "level",
    "r_hat",
    "ess",
    "ess_tail",
)

_NOISE = ("sigma_seed", "sigma_obs", "seed_size_slope", "ar_rho", "nu")


def _parameter_draws(
    post: xr.Dataset,
    n0: float,
    d0: float,
    use_arch: bool,
    law_params: Sequence[str],
    theta_names: Sequence[str],
) -> list[tuple[str, str, str, np.ndarray]]:
    """(parameter, scope, group, draws (chain, draw)) for every reported quantity."""
    out: list[tuple[str, str, str, np.ndarray]] = []
    families = [str(f) for f in post["family"].values]
    for p in law_params:
        vals = post[p].transpose("chain", "draw", "family").values
        for i, fam in enumerate(families):
            out.append((p, "family", fam, vals[..., i]))
    if "theta_arch" in post and use_arch:
        archs = [str(a) for a in post["arch"].values]
        theta_arch = post["theta_arch"].transpose("chain", "draw", "arch", ...).values
        law = from_reference_scale(
            theta_arch[..., 0], theta_arch[..., 1], np.exp(theta_arch[..., 2]),
            theta_arch[..., 3], np.exp(theta_arch[..., 4]), n0, d0,
        )
        for p in CHINCHILLA_PARAMS:
            for i, arch in enumerate(archs):
                out.append((p, "arch", arch, law[p][..., i]))
    for p in law_params:
        name = f"{p}_pop"
        if name in post:
            out.append((p, "population", "population", post[name].values))
    for name in _NOISE:
        if name in post:
            out.append((name, "noise", "", post[name].values))
    for spread, label in (("tau_theta", "family_sd"), ("tau_arch", "arch_sd")):
        if spread in post:
            da = post[spread]
            comp_dim = [d for d in da.dims if d not in ("chain", "draw")]
            vals = da.transpose("chain", "draw", *comp_dim).values
            for i, comp in enumerate(theta_names[: vals.shape[-1]]):
                out.append((f"{label}[{comp}]", "spread", "", vals[..., i]))
    return out


def parameter_intervals(
    posterior: xr.Dataset,
    *,
    n0: float,
    d0: float,
    use_arch: bool,
    level: float = 0.9,
    law_params: Sequence[str] = CHINCHILLA_PARAMS,
    theta_names: Sequence[str] = THETA_NAMES,
) -> pd.DataFrame:
    """Credible intervals of the law parameters, per family and for the population.

    Parameters
    ----------
    posterior
        The ``posterior`` group of a fit (dims ``chain``, ``draw``, ``family`` and, with an
        arch level, ``arch``).
    n0, d0
        The fit's reference scales (to report an arch level's centre in the usual convention;
        only read with ``use_arch``, which only the Chinchilla form has).
    use_arch
        Whether the fit has an arch level (its centres get rows of scope ``"arch"``).
    level
        Probability of the central (equal-tailed) interval.
    law_params
        The law's parameters in the usual convention, posterior variables per family (and
        ``<name>_pop``): the Chinchilla form's by default, or
        :data:`bayescale.laws.kaplan.KAPLAN_PARAMS`.
    theta_names
        Names of the reference-scale components of ``tau_theta`` (the family spreads).

    Returns
    -------
    pandas.DataFrame
        One row per quantity with columns :data:`CREDIBLE_INTERVAL_COLUMNS`:

        * ``parameter``: the law's parameters (``E``, ``A``, ``alpha``, ``B``, ``beta`` of
          ``L = E + A/N^alpha + B/D^beta`` by default), ``sigma_seed``, ``sigma_obs`` (sd of the seed offset
          and of checkpoint noise on log-loss), optional ``seed_size_slope``/``ar_rho``/``nu``,
          and the spreads ``family_sd[...]``/``arch_sd[...]`` of the reference-scale parameters;
        * ``scope``: ``"family"``, ``"arch"`` (the level's centre), ``"population"``,
          ``"noise"`` or ``"spread"``; ``group``: the family or arch name (``"population"``, or
          empty for noise and spreads);
        * ``mean``, ``sd``, ``median``, ``lower``, ``upper`` (the ``level`` interval), ``level``,
          ``r_hat`` (rank-normalised split R-hat), ``ess`` (bulk) and ``ess_tail``.

    Raises
    ------
    ValueError
        If ``level`` is not in (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    items = _parameter_draws(posterior, n0, d0, use_arch, law_params, theta_names)
    stacked = np.stack([draws for *_, draws in items], axis=-1)  # (chain, draw, row)
    # A constant row (the zero spread of a shared component) has no R-hat or ESS: NaN, rather
    # than ArviZ's 0/0 warning.
    varies = np.ptp(stacked, axis=(0, 1)) > 0
    ds = xr.Dataset({"x": xr.DataArray(stacked[..., varies], dims=("chain", "draw", "row"))})
    n_chain, n_draw = stacked.shape[:2]
    r_hat, ess, ess_tail = (np.full(stacked.shape[-1], np.nan) for _ in range(3))
    if varies.any():
        if n_chain > 1 and n_draw >= 4:
            r_hat[varies] = az.rhat(ds)["x"].values
        ess[varies] = az.ess(ds, method="bulk")["x"].values
        ess_tail[varies] = az.ess(ds, method="tail")["x"].values
    flat = stacked.reshape(-1, stacked.shape[-1])
    lo, med, hi = np.quantile(flat, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    # A and B of weakly identified families can reach 1e150+: their sd may overflow to inf
    with np.errstate(over="ignore", invalid="ignore"):
        mean, sd = flat.mean(axis=0), flat.std(axis=0)
    out = pd.DataFrame(
        {
            "parameter": [p for p, *_ in items],
            "scope": [s for _, s, *_ in items],
            "group": [g for _, _, g, _ in items],
            "mean": mean,
            "sd": sd,
            "median": med,
            "lower": lo,
            "upper": hi,
            "level": float(level),
            "r_hat": r_hat,
            "ess": ess,
            "ess_tail": ess_tail,
        }
    )
    for col in ("parameter", "scope", "group"):
        out[col] = out[col].astype(str)
    for col in CREDIBLE_INTERVAL_COLUMNS[3:]:
        out[col] = out[col].astype("float64")
    return out[list(CREDIBLE_INTERVAL_COLUMNS)]
