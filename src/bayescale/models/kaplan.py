"""PyMC builder of the hierarchical Kaplan/Su model with steps and batch size.

Levels: population -> family -> run (seed offset, integrated out) -> checkpoint.

* Family parameters ``theta_f = (c_N, log_alphaN, c_S, log_alphaS, b_crit, log_alphaB)`` at
  reference scales ``(N0, S0, L0)`` (see :mod:`bayescale.laws.kaplan`). The mean log-loss of a
  checkpoint at ``(N, S, B)`` solves the Kaplan equation per point
  (:func:`bayescale.laws.kaplan.solve_log_loss`).
* Population ``mu_theta ~ Normal(prior)``, spread ``tau_theta ~ Gamma(2, 2/scale)`` (mean
  ``scale``; kept away from 0 where centred families form a funnel), centred family effects
  ``theta_f ~ Normal(mu_theta, tau_theta)``. A lone family *is* the population.
* Run offsets ``u_r ~ N(0, sigma_seed)`` on log-loss and Gaussian checkpoint noise (optionally
  AR(1) in log tokens), integrated out with
  :func:`bayescale.models.likelihood.run_marginal_loglik`, exactly as in the Chinchilla model.

Default priors (:data:`KAPLAN_DEFAULT_PRIORS`) are centred on Kaplan et al. (2020)'s constants
(``alphaN = 0.076, Nc = 8.8e13, Sc = 2.1e3, alphaS = 0.76, Bstar = 2e8, alphaB = 0.21``)
converted to the data's reference scales, and wide, because the constants depend on the data,
tokenizer, context length and optimizer:

==============  =====================================  ====  ==========================
component       meaning                                sd    factor covered (+-1.64 sd)
==============  =====================================  ====  ==========================
``c_N``         log L(N0), the converged loss at N0    0.5   x/÷ 2.3
``log_alphaN``  log alphaN                             0.5   alphaN in 0.033-0.17
``c_S``         log step term at Smin = S0             1.0   x/÷ 5.2
``log_alphaS``  log alphaS                             0.5   alphaS in 0.33-1.7
``b_crit``      log Bcrit(L0) (tokens)                 1.5   x/÷ 12
``log_alphaB``  log alphaB                             0.5   alphaB in 0.09-0.48
==============  =====================================  ====  ==========================

Override any entry with ``priors={"log_alphaB": {"mu": -1.5, "sigma": 0.3}, ...}``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.optimize import least_squares

from bayescale.errors import DataError
from bayescale.laws.kaplan import (
    KAPLAN_2020,
    KAPLAN_PARAMS,
    KAPLAN_THETA,
    from_reference_scale,
    reference_log_loss,
    to_reference_scale,
)
from bayescale.models.design import Design, build_design
from bayescale.models.likelihood import ar_phi, run_marginal_loglik

KAPLAN_DEFAULT_PRIORS: dict[str, dict[str, float]] = {
    # population means of the family parameters (Normal); "mu" of c_N, c_S, b_crit is derived
    # from Kaplan's constants at the reference scales unless given
    "c_N": {"sigma": 0.5},
    "log_alphaN": {"mu": float(np.log(KAPLAN_2020["alphaN"])), "sigma": 0.5},
    "c_S": {"sigma": 1.0},
    "log_alphaS": {"mu": float(np.log(KAPLAN_2020["alphaS"])), "sigma": 0.5},
    "b_crit": {"sigma": 1.5},
    "log_alphaB": {"mu": float(np.log(KAPLAN_2020["alphaB"])), "sigma": 0.5},
    # spread of families around the population (mean of the Gamma(2) prior), per component
    "family_sd": {
        "c_N": 0.3, "log_alphaN": 0.3, "c_S": 0.5, "log_alphaS": 0.3, "b_crit": 0.5,
        "log_alphaB": 0.3,
    },
    # seed-to-seed sd of a run's log-loss offset (HalfNormal)
    "sigma_seed": {"sigma": 0.02},
    # checkpoint noise sd on log-loss (HalfNormal)
    "sigma_obs": {"sigma": 0.02},
    # AR(1) correlation between consecutive checkpoints (Beta)
    "ar_rho": {"alpha": 2.0, "beta": 2.0},
}
_DERIVED_MU = ("c_N", "c_S", "b_crit")
_NOISE_GUESS = 0.02


@dataclass(frozen=True)
class KaplanDesign:
    """Index arrays of a run table with steps and batch sizes.

    Attributes
    ----------
    base
        The Chinchilla-model :class:`~bayescale.models.design.Design` (families, runs, run
        offsets, AR(1) gaps, observed log-loss) of the same table, in the same order.
    s0, l0
        Reference steps and loss: geometric means of the checkpoints' steps and losses.
    obs_log_s
        ``log(S / S0)`` per checkpoint.
    run_batch
        Batch size (tokens per step) of each run.
    """

    base: Design
    s0: float
    l0: float
    obs_log_s: np.ndarray
    run_batch: np.ndarray

    @property
    def n0(self) -> float:
        """Reference parameter count."""
        return self.base.n0

    @property
    def log_l0(self) -> float:
        """``log L0``."""
        return float(np.log(self.l0))

    @property
    def obs_family(self) -> np.ndarray:
        """Family index of each checkpoint."""
        return self.base.run_family[self.base.obs_run]

    @property
    def obs_log_batch(self) -> np.ndarray:
        """``log B`` per checkpoint."""
        return np.log(self.run_batch)[self.base.obs_run]

    @property
    def obs_log_n(self) -> np.ndarray:
        """``log(N / N0)`` per checkpoint."""
        return self.base.run_log_n[self.base.obs_run]


def build_kaplan_design(
    runs: pd.DataFrame,
    n0: float | None = None,
    s0: float | None = None,
    l0: float | None = None,
) -> KaplanDesign:
    """Index a validated run table that has ``step`` and ``batch_size`` columns.

    Parameters
    ----------
    runs
        Output of ``bayescale.validate(df, require=("step", "batch_size"))``.
    n0, s0, l0
        Reference scales (default: geometric means of the run sizes, steps and losses).

    Returns
    -------
    KaplanDesign

    Raises
    ------
    DataError
        If a run has more than one batch size (the law assumes a fixed batch per run).
    """
    base = build_design(runs, n0=n0)
    ordered = runs.sort_values(["family", "run", "tokens"], kind="mergesort").reset_index(drop=True)
    batch_per_run = ordered.groupby("run", sort=False)["batch_size"].nunique()
    if (batch_per_run > 1).any():
        bad = batch_per_run[batch_per_run > 1].index.tolist()
        raise DataError(
            f"the Kaplan law needs one batch size per run, but run(s) {bad[:5]} change it "
            "(a batch-size ramp is not modelled); split such runs or drop the ramp"
        )
    steps = ordered["step"].to_numpy(dtype=float)
    batch = ordered["batch_size"].to_numpy(dtype=float)
    first_idx = np.flatnonzero(np.r_[True, base.obs_run[1:] != base.obs_run[:-1]])
    s0 = float(np.exp(np.mean(np.log(steps)))) if s0 is None else float(s0)
    l0 = float(np.exp(np.mean(base.log_loss))) if l0 is None else float(l0)
    return KaplanDesign(
        base=base,
        s0=s0,
        l0=l0,
        obs_log_s=np.log(steps / s0),
        run_batch=batch[first_idx],
    )


def resolve_kaplan_priors(
    n0: float, s0: float, l0: float, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, dict[str, float]]:
    """Default Kaplan priors merged with ``overrides``; ``c_N, c_S, b_crit`` means set from
    Kaplan's constants at ``(N0, S0, L0)``.

    Raises
    ------
    ValueError
        On an unknown key or field.
    """
    priors: dict[str, dict[str, Any]] = copy.deepcopy(KAPLAN_DEFAULT_PRIORS)
    centre = to_reference_scale(**KAPLAN_2020, n0=n0, s0=s0, l0=l0)
    for key in _DERIVED_MU:
        priors[key]["mu"] = float(centre[key])
    for key, value in (overrides or {}).items():
        if key not in priors:
            raise ValueError(f"unknown prior {key!r}; known: {sorted(priors)}")
        unknown = set(value) - set(priors[key])
        if unknown:
            raise ValueError(f"prior {key!r} has no field(s) {sorted(unknown)}")
        priors[key].update({k: float(v) for k, v in value.items()})
    return priors


def kaplan_prior_arrays(priors: Mapping[str, Mapping[str, float]]) -> tuple[np.ndarray, ...]:
    """Population mean, sd and family spread scale ordered like :data:`KAPLAN_THETA`."""
    mu = np.array([priors[k]["mu"] for k in KAPLAN_THETA])
    sd = np.array([priors[k]["sigma"] for k in KAPLAN_THETA])
    fam = np.array([priors["family_sd"][k] for k in KAPLAN_THETA])
    return mu, sd, fam


def kaplan_log_mean(theta: Any, design: KaplanDesign, math: Any = np) -> Any:
    """Mean log-loss per checkpoint for family parameters ``theta[..., family, 6]``."""
    th = theta[..., design.obs_family, :]
    return reference_log_loss(
        th, design.obs_log_n, design.obs_log_s, design.obs_log_batch, design.log_l0, math=math
    )


def build_kaplan_model(
    design: KaplanDesign,
    priors: Mapping[str, Mapping[str, float]],
    autocorrelation: str = "log_tokens",
) -> pm.Model:
    """Build the PyMC model.

    Parameters
    ----------
    design
        From :func:`build_kaplan_design`.
    priors
        From :func:`resolve_kaplan_priors`.
    autocorrelation
        ``"log_tokens"``, ``"order"`` or ``"none"`` (see :class:`bayescale.ModelOptions`).

    Returns
    -------
    pymc.Model
        Free variables ``mu_theta``, ``tau_theta``, ``theta`` (when several families),
        ``sigma_seed``, ``sigma_obs`` (+ ``ar_rho``); deterministics ``Nc, alphaN, Sc, alphaS,
        Bstar, alphaB`` per family and ``*_pop`` for the population.
    """
    base = design.base
    coords = {**base.coords(), "component": list(KAPLAN_THETA)}
    mu0, sd0, fam_scale = kaplan_prior_arrays(priors)
    n_fam = len(base.families)
    with pm.Model(coords=coords) as model:
        mu_theta = pm.Normal("mu_theta", mu=mu0, sigma=sd0, dims="component")
        # Gamma(2): mean = scale, no mass at 0 where the centred funnel lives
        tau_theta = pm.Gamma("tau_theta", alpha=2.0, beta=2.0 / fam_scale, dims="component")
        if n_fam == 1:
            # a lone family is the population; tau only serves predictions of new families
            theta = pm.Deterministic(
                "theta", pt.shape_padleft(mu_theta), dims=("family", "component")
            )
        else:
            theta = pm.Normal(
                "theta", mu=mu_theta, sigma=tau_theta, dims=("family", "component")
            )
        for suffix, vec, dims in (("", theta, "family"), ("_pop", mu_theta, None)):
            usual = from_reference_scale(
                *(vec[..., i] for i in range(6)), n0=design.n0, s0=design.s0, l0=design.l0,
                math=pt,
            )
            for name in KAPLAN_PARAMS:
                pm.Deterministic(f"{name}{suffix}", usual[name], dims=dims)

        sigma_seed = pm.HalfNormal("sigma_seed", sigma=priors["sigma_seed"]["sigma"])
        sigma_obs = pm.HalfNormal("sigma_obs", sigma=priors["sigma_obs"]["sigma"])
        phi = None
        if autocorrelation != "none":
            rho = pm.Beta("ar_rho", alpha=priors["ar_rho"]["alpha"], beta=priors["ar_rho"]["beta"])
            phi = ar_phi(rho, base.obs_gap, base.obs_prev, autocorrelation, math=pt)
        log_mu = kaplan_log_mean(theta, design, math=pt)
        n_runs = len(base.runs)

        def segment_sum(x):
            return pt.inc_subtensor(pt.zeros(n_runs)[base.obs_run], x)

        loglik = run_marginal_loglik(
            base.log_loss - log_mu,
            sigma_obs,
            sigma_seed * pt.ones(n_runs),
            base.run_counts.astype(float),
            segment_sum,
            phi=phi,
            prev=base.obs_prev,
            math=pt,
        )
        pm.Potential("run_marginal_loglik", loglik.sum())
    return model


def family_least_squares(
    design: KaplanDesign, priors: Mapping[str, Mapping[str, float]]
) -> np.ndarray:
    """Penalised least-squares ``theta`` per family (family x 6), as the sampler's start.

    Residuals are ``(log L - log mu) / 0.02`` plus the prior's ``(theta - mu0) / sd0``.
    """
    mu0, sd0, _ = kaplan_prior_arrays(priors)
    base = design.base
    out = np.empty((len(base.families), len(mu0)))
    obs_family = design.obs_family
    for f in range(len(base.families)):
        mask = obs_family == f
        args = (
            design.obs_log_n[mask], design.obs_log_s[mask], design.obs_log_batch[mask],
            design.log_l0,
        )
        y = base.log_loss[mask]

        def resid(theta, args=args, y=y):
            pred = reference_log_loss(theta, *args)
            return np.r_[(y - pred) / _NOISE_GUESS, (theta - mu0) / sd0]

        out[f] = least_squares(resid, mu0.copy(), method="trf", max_nfev=2000).x
    # a component the data leave at the prior mean has gradient 0 there; nutpie rejects that
    return out + 0.01 * sd0


def kaplan_initial_point(
    design: KaplanDesign, priors: Mapping[str, Mapping[str, float]], autocorrelation: str
) -> dict[str, np.ndarray]:
    """Starting values (constrained space) from :func:`family_least_squares`."""
    theta = family_least_squares(design, priors)
    _, _, fam_scale = kaplan_prior_arrays(priors)
    base = design.base
    resid = base.log_loss - kaplan_log_mean(theta, design)
    starts = np.flatnonzero(np.r_[True, base.obs_run[1:] != base.obs_run[:-1]])
    run_means = np.add.reduceat(resid, starts) / base.run_counts
    within = resid - run_means[base.obs_run]
    n_fam = len(base.families)
    tau = np.clip(theta.std(axis=0), 0.2 * fam_scale, fam_scale) if n_fam > 1 else fam_scale
    point: dict[str, np.ndarray] = {
        "mu_theta": theta.mean(axis=0),
        "tau_theta": np.asarray(tau, dtype=float),
        "sigma_seed": np.asarray(float(np.clip(np.std(run_means), 1e-3, None))),
        "sigma_obs": np.asarray(float(np.clip(np.std(within), 1e-4, None))),
    }
    if n_fam > 1:
        point["theta"] = theta
    if autocorrelation != "none":
        point["ar_rho"] = np.asarray(0.5)
    return point
