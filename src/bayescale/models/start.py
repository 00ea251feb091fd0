"""Starting values for the sampler from a quick penalised least-squares fit per family.

NUTS adapts much faster from a point near the posterior bulk; PyMC's default jitter of +-1 in
unconstrained space is far too large for effects on a 0.01 scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares

from bayescale.models.design import Design
from bayescale.models.hierarchical import (
    log_mean_curve,
    reference_log_loss,
    theta_to_local,
    uses_local_coordinates,
)
from bayescale.models.options import ModelOptions
from bayescale.models.priors import theta_prior_arrays

_NOISE_GUESS = 0.02


def family_least_squares(
    design: Design, priors: Mapping[str, Mapping[str, float]]
) -> np.ndarray:
    """Penalised least-squares estimate of ``theta`` per family (family x 5).

    Residuals are ``(log L - log mu) / 0.02`` plus the prior's ``(theta - mu0) / sd0``, so a
    family whose data do not pin a parameter (e.g. one run and no N-variation) stays at the
    prior mean.
    """
    mu0, sd0, _, _ = theta_prior_arrays(priors)
    out = np.empty((len(design.families), len(mu0)))
    obs_family = design.run_family[design.obs_run]
    for f in range(len(design.families)):
        mask = obs_family == f
        log_n = design.run_log_n[design.obs_run[mask]]
        log_d = design.obs_log_d[mask]
        y = design.log_loss[mask]
        start = mu0.copy()
        start[0] = min(np.log(np.exp(y).min() * 0.8), mu0[0])

        def resid(theta, log_n=log_n, log_d=log_d, y=y):
            pred = reference_log_loss(theta[None, :], log_n, log_d)[0]
            return np.r_[(y - pred) / _NOISE_GUESS, (theta - mu0) / sd0]

        out[f] = least_squares(resid, start, method="trf", x_scale=1.0, max_nfev=2000).x
    # A component the data do not inform lands exactly on the prior mean, where its gradient is
    # exactly 0; nutpie's gradient-based mass-matrix initialisation rejects such a start.
    return out + 0.01 * sd0


def family_schedule_least_squares(
    design: Design, priors: Mapping[str, Mapping[str, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Penalised least-squares ``log kappa`` and within-run tilt per family.

    Fits ``theta``, ``log kappa`` and the tilt jointly per family, as
    :func:`family_least_squares` does ``theta`` (prior penalties keep a family without a
    schedule at the prior means). Returns ``(log kappa, tilt)``, each (family,).
    """
    mu0, sd0, _, _ = theta_prior_arrays(priors)
    k_mu, k_sd = priors["kappa"]["mu"], priors["kappa"]["sigma"]
    t_mu, t_sd = priors["tilt"]["mu"], priors["tilt"]["sigma"]
    out = np.empty((len(design.families), 2))
    obs_family = design.obs_family
    for f in range(len(design.families)):
        mask = obs_family == f
        log_n = design.run_log_n[design.obs_run[mask]]
        log_d, s, y = design.obs_log_d[mask], design.obs_anneal[mask], design.log_loss[mask]
        v = design.obs_tilt[mask]
        start = np.r_[mu0, k_mu, t_mu]
        start[0] = min(np.log(np.exp(y).min() * 0.8), mu0[0])

        def resid(x, log_n=log_n, log_d=log_d, s=s, v=v, y=y):
            pred = reference_log_loss(x[None, :5], log_n, log_d)[0] + np.exp(x[5]) * s + x[6] * v
            return np.r_[(y - pred) / _NOISE_GUESS, (x[:5] - mu0) / sd0, (x[5] - k_mu) / k_sd,
                         (x[6] - t_mu) / t_sd]

        out[f] = least_squares(resid, start, method="trf", x_scale=1.0, max_nfev=2000).x[5:]
    return out[:, 0], out[:, 1]


def without_schedule_excess(design: Design, kappa: np.ndarray, tilt: float = 0.0) -> Design:
    """``design`` with ``kappa_f s + tilt v`` taken off the observed log-loss and no annealing
    covariate.

    Start values and sampling coordinates are computed for the Chinchilla part given the
    starting ``kappa`` and tilt; the model itself keeps them free. The tilt covariate stays:
    the Laplace factors (:func:`bayescale.models.scaling.family_laplace_factors`) take the
    tilt as a nuisance coordinate around its starting value.
    """
    excess = np.asarray(kappa)[design.obs_family] * design.obs_anneal + tilt * design.obs_tilt
    return replace(
        design,
        log_loss=design.log_loss - excess,
        obs_anneal=np.zeros_like(design.obs_anneal),
    )


def kappa_start(
    log_kappa: np.ndarray, priors: Mapping[str, Mapping[str, float]]
) -> dict[str, np.ndarray]:
    """Start values of the schedule variables from per-family ``log kappa`` estimates."""
    if log_kappa.size == 1:
        return {"log_kappa_pop": np.asarray(float(log_kappa[0]))}
    sd = float(np.clip(np.std(log_kappa), 0.2, 1.0) * priors["kappa_sd"]["sigma"] / 0.5)
    centre = float(np.mean(log_kappa))
    return {
        "log_kappa_pop": np.asarray(centre),
        "kappa_sd": np.asarray(sd),
        "kappa_z": np.clip((log_kappa - centre) / sd, -3.0, 3.0),
    }


def initial_point(
    design: Design, priors: Mapping[str, Mapping[str, float]], options: ModelOptions
) -> dict[str, np.ndarray]:
    """Initial values (constrained space) for the model's free variables."""
    theta = family_least_squares(design, priors)
    _, _, fam_scale, arch_scale = theta_prior_arrays(priors)
    resid = _residuals(design, theta)
    starts = np.flatnonzero(np.r_[True, design.obs_run[1:] != design.obs_run[:-1]])
    run_means = np.add.reduceat(resid, starts) / design.run_counts
    within = resid - run_means[design.obs_run]
    sigma_obs = float(np.clip(np.std(within), 1e-4, None))
    sigma_seed = float(np.clip(np.std(run_means), 1e-3, None))

    n_fam = len(design.families)
    mu = theta.mean(axis=0)
    if options.shared and n_fam > 1:
        theta[:, list(options.shared_components)] = mu[list(options.shared_components)]
    tau = np.clip(theta.std(axis=0), 0.2 * fam_scale, fam_scale) if n_fam > 1 else 0.5 * fam_scale
    point: dict[str, np.ndarray] = {
        "mu_theta": mu,
        "sigma_seed": np.asarray(sigma_seed),
        "sigma_obs": np.asarray(sigma_obs),
    }
    if not options.correlated_families:
        point["tau_theta"] = tau
    if options.use_arch:
        point["tau_arch"] = 0.5 * arch_scale
        point["z_arch"] = np.zeros((len(design.archs), theta.shape[1]))
    single = n_fam == 1 and not options.use_arch
    if single and uses_local_coordinates(options):
        del point["mu_theta"]  # a deterministic of the family's local coordinates
        point["theta_local"] = theta_to_local(theta, design.family_log_n_ref)
    elif not single:
        param = options.family_parameterization
        if uses_local_coordinates(options):
            point["theta_local"] = theta_to_local(theta, design.family_log_n_ref)
        elif param != "noncentered":
            point["theta"] = theta
        elif not options.correlated_families:
            point["z_theta"] = (theta - mu) / tau
    if options.likelihood == "student_t":
        point["run_effect"] = run_means
        point["nu"] = np.asarray(5.0)
    if options.autocorrelation != "none":
        # With no consecutive checkpoints (every run a single one) only the Beta(2, 2) prior
        # informs rho, and its gradient at 0.5 is zero: nutpie refuses such a start.
        point["ar_rho"] = np.asarray(_lag_one_correlation(design, within))
    if options.config_effects:
        point["sigma_config"] = np.asarray(sigma_seed)
        point["sigma_seed"] = np.asarray(max(0.2 * sigma_seed, 1e-3))
    if options.seed_by_size:
        point["seed_size_slope"] = np.asarray(0.0)
    return point


def shared_start(point: Mapping[str, np.ndarray], options: ModelOptions) -> dict[str, np.ndarray]:
    """``point`` in the free variables of a model with ``options.shared`` components.

    Shared components have no spread and no per-family (or per-arch) coordinate (see
    ``build_model``): ``tau_theta``/``tau_arch`` become ``*_free`` and the families' centred
    values or standardised offsets lose those columns. Local coordinates are reduced by
    :func:`bayescale.models.scaling.sampling_coordinates`.
    """
    out = dict(point)
    if not options.shared:
        return out
    free = list(options.free_components)
    for name in ("tau_theta", "tau_arch"):
        if name in out:
            out[f"{name}_free"] = np.asarray(out.pop(name))[free]
    if "theta" in out:  # centred families
        out["theta_free"] = np.asarray(out.pop("theta"))[:, free]
    for name in ("z_theta", "z_arch"):
        if name in out:
            out[name] = np.asarray(out[name])[:, free]
    return out


def _residuals(design: Design, theta: np.ndarray) -> np.ndarray:
    return design.log_loss - log_mean_curve(theta, design, math=np)


def _lag_one_correlation(design: Design, within: np.ndarray) -> float:
    """Lag-1 correlation of the within-run residuals, clipped to [0.05, 0.98].

    Starting ``ar_rho`` at the data's value instead of 0.5 saves the sampler a long early walk
    (synthetic independent noise has rho ~ 0, real curves ~ 0.99). With no consecutive
    checkpoints only the Beta prior informs rho; 0.6 keeps its gradient nonzero, which nutpie
    needs for a start.
    """
    pairs = design.obs_prev >= 0
    if not pairs.any():
        return 0.6
    cur, prev = within[pairs], within[design.obs_prev[pairs]]
    denom = float(np.sqrt(np.sum(cur**2) * np.sum(prev**2)))
    r = float(np.sum(cur * prev) / denom) if denom > 0 else 0.5
    return float(np.clip(r, 0.05, 0.98))
