"""Seed-to-seed variability from replicate runs, without a scaling law.

Runs of one configuration (same family, size, data and schedule; the ``config`` column) that
differ only in their seed show how much the final loss moves from seed alone. With
``y_r = log L_final`` of run ``r`` in config ``c``,

    y_r = m_c + u_r,    u_r ~ Normal(0, sigma_g)

for the group ``g`` (family by default) of the config. The config means ``m_c`` get a flat prior
and are integrated out, which leaves the within-config sum of squares: ``SS_c / sigma_g^2 ~
chi^2(n_c - 1)`` (restricted likelihood). Groups share a population: ``log sigma_g ~
Normal(mu, tau)`` (non-centred), so a family with two replicates borrows from the others.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy.stats import norm

from bayescale.data.validate import validate
from bayescale.errors import DataError, DataWarning, user_stacklevel
from bayescale.inference import (
    Sampler,
    SamplerSettings,
    diagnose,
    sample_model,
    warn_on_problems,
)

__all__ = ["SeedVariability", "replicate_table", "seed_variability"]


def replicate_table(runs: pd.DataFrame, group: str = "family") -> pd.DataFrame:
    """Final log-loss of every run in a configuration with at least two runs.

    Parameters
    ----------
    runs
        Run table with a ``config`` column (runs of one config differ only by seed).
    group
        Column whose values get their own seed sd (``"family"`` or e.g. ``"dataset"``).

    Returns
    -------
    pandas.DataFrame
        One row per run: ``group``, ``config``, ``run``, ``tokens``, ``loss``, ``log_loss``.

    Raises
    ------
    bayescale.DataError
        Without a ``config`` column or without replicated configs.

    Warns
    -----
    UserWarning
        When runs that end before the other seeds of their config are left out.
    """
    data = validate(runs)
    if "config" not in data.columns:
        raise DataError("seed variability needs a 'config' column: runs that differ only by seed")
    if group not in data.columns:
        raise DataError(f"no column {group!r} to group the seed sd by")
    final = data.sort_values("tokens").groupby("run", sort=False).tail(1)
    final = final.dropna(subset=["config"])
    final = final.assign(config=final[group].astype(str) + "/" + final["config"].astype(str))
    # a run that stopped early (crashed, cut) is not a replicate of the finished ones
    longest = final.groupby("config")["tokens"].transform("max")
    short = final["tokens"] < longest * (1 - 1e-3)
    if short.any():
        warnings.warn(
            f"{int(short.sum())} run(s) end before the other seeds of their config and are "
            f"left out: {final.loc[short, 'run'].tolist()[:5]}",
            DataWarning,
            stacklevel=user_stacklevel(),
        )
        final = final[~short]
    size = final.groupby("config")["run"].transform("size")
    final = final[size >= 2]
    if final.empty:
        raise DataError("no configuration has two or more runs (seed replicates)")
    out = final[[group, "config", "run", "tokens", "loss"]].rename(columns={group: "group"})
    out["group"] = out["group"].astype(str)
    return out.assign(log_loss=np.log(out["loss"])).sort_values(["group", "config", "run"])


@dataclass
class SeedVariability:
    """Posterior of the seed sd of log-loss per group and in the population.

    Attributes
    ----------
    idata
        Posterior with ``sigma_seed`` (dim ``group``), ``sigma_seed_pop`` (the population
        median ``exp(mu)``), ``mu`` and ``tau``.
    replicates
        The replicate table the model was fitted to (:func:`replicate_table`).
    """

    idata: az.InferenceData
    replicates: pd.DataFrame

    def summary(self, hdi_prob: float = 0.9) -> pd.DataFrame:
        """ArviZ summary of the seed sds (as fractions of the loss: sd of log-loss)."""
        return az.summary(
            self.idata,
            var_names=["sigma_seed", "sigma_seed_pop", "tau"],
            hdi_prob=hdi_prob,
            round_to="none",
        )

    def _sigma(self, group: str | None) -> np.ndarray:
        post = self.idata.posterior
        if group is None:
            return post["sigma_seed_pop"].values.ravel()
        groups = [str(g) for g in post["group"].values]
        if group not in groups:
            raise KeyError(f"unknown group {group!r}; groups: {groups[:10]}")
        return post["sigma_seed"].sel(group=group).values.ravel()

    def gap_probability(
        self, gap: float | np.ndarray, group: str | None = None, levels: tuple[float, ...] = (0.9,)
    ) -> xr.Dataset:
        """Probability that two seeds of one config differ in final loss by at least ``gap``.

        For seed sd ``sigma`` on log-loss, ``log L1 - log L2 ~ Normal(0, 2 sigma^2)`` and
        ``P(|L1/L2 - 1| >= gap) ~= 2 (1 - Phi(log(1 + gap) / (sqrt(2) sigma)))``, evaluated
        for every posterior draw.

        Parameters
        ----------
        gap
            Relative loss gap(s), e.g. ``0.04`` for 4%.
        group
            A group of the fit, or ``None`` for a typical group of the population.
        levels
            Central credible levels of the reported interval.

        Returns
        -------
        xarray.Dataset
            Over dim ``gap``: ``mean`` (posterior mean probability), ``median`` and
            ``lower``/``upper`` per level.
        """
        gaps = np.atleast_1d(np.asarray(gap, dtype=float))
        sigma = self._sigma(group)[:, None]
        prob = 2 * norm.sf(np.log1p(gaps)[None, :] / (np.sqrt(2) * sigma))
        data = {"mean": ("gap", prob.mean(0)), "median": ("gap", np.median(prob, 0))}
        for level in levels:
            lo, hi = np.quantile(prob, [(1 - level) / 2, (1 + level) / 2], axis=0)
            data[f"lower_{level:g}"] = ("gap", lo)
            data[f"upper_{level:g}"] = ("gap", hi)
        return xr.Dataset(data, coords={"gap": gaps})


def seed_variability(
    runs: pd.DataFrame,
    group: str = "family",
    *,
    sampler: Sampler = "nutpie",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int = 0,
    progressbar: bool = False,
) -> SeedVariability:
    """Posterior of the seed-to-seed sd of final log-loss from replicate runs.

    Parameters
    ----------
    runs
        Run table with a ``config`` column; configs with two or more runs are used.
    group
        Column whose values get their own seed sd around a shared population.
    sampler, draws, tune, chains, random_seed, progressbar
        NUTS settings (see :func:`bayescale.fit`).

    Returns
    -------
    SeedVariability

    Warns
    -----
    bayescale.SamplingWarning
        On divergences, R-hat > 1.01 or low effective sample size.
    """
    table = replicate_table(runs, group)
    stats = table.groupby("config").agg(
        group=("group", "first"),
        n=("log_loss", "size"),
        ss=("log_loss", lambda y: float(((y - y.mean()) ** 2).sum())),
    )
    groups, group_idx = np.unique(stats["group"].to_numpy(dtype=str), return_inverse=True)
    df = (stats["n"] - 1).to_numpy(dtype=float)
    ss = stats["ss"].to_numpy(dtype=float)
    pooled = float(np.sqrt(ss.sum() / df.sum())) if ss.sum() > 0 else 1e-4
    with pm.Model(coords={"group": groups}) as model:
        # population median seed sd: weakly informative around 1% (covers 0.02%-50%)
        mu = pm.Normal("mu", mu=np.log(0.01), sigma=2.0)
        tau = pm.HalfNormal("tau", sigma=1.0)
        z = pm.Normal("z", 0.0, 1.0, dims="group")
        log_sigma = mu + tau * z
        sigma = pm.Deterministic("sigma_seed", pt.exp(log_sigma), dims="group")
        pm.Deterministic("sigma_seed_pop", pt.exp(mu))
        # restricted likelihood of the within-config sums of squares (config means integrated)
        pm.Potential(
            "within_config",
            pt.sum(-df * log_sigma[group_idx] - ss / (2 * sigma[group_idx] ** 2)),
        )
    start = {"mu": np.log(max(pooled, 1e-6)), "tau": 0.5, "z": np.zeros(len(groups))}
    settings = SamplerSettings(
        sampler=sampler, draws=draws, tune=tune, chains=chains, random_seed=random_seed,
        target_accept=0.9, progressbar=progressbar,
    )
    idata = sample_model(model, start, settings)
    warn_on_problems(diagnose(idata, ["mu", "tau", "sigma_seed"]), chains)
    return SeedVariability(idata=idata, replicates=table)
