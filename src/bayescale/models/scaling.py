"""Unit-scale sampling coordinates for the families, fixed before sampling.

A family's local coordinates (:func:`bayescale.models.hierarchical.local_to_theta`) have
posterior sds from about 0.003 (the converged loss, pinned by thousands of checkpoints) to about
1 (a direction its sizes leave to the prior), and correlate within the family. nutpie starts its
mass matrix from the gradient at the starting point (variance ``1 / |gradient|``), which is only
right for coordinates of unit scale: on the raw coordinates its first step sizes collapse to
1e-4 and the early warm-up runs trees of 1,023 steps.

The sampler therefore sees ``z_f`` with ``local_f = m_f + L_f z_f``: ``m_f`` the starting point
and ``L_f`` the Cholesky factor of a Laplace approximation of the family's conditional posterior
there (finite-difference Hessian of the family's exact log density: integrated run likelihood
plus family prior, at the starting population, noise and AR(1) values). The map is affine with
a constant Jacobian, so the model is unchanged; only NUTS's coordinates are. Families whose
runs span fewer than three sizes keep their plain local coordinates: the data leave some of
their directions to the family prior, whose width moves with ``tau_theta``, and a factor fixed
at the starting ``tau_theta`` made them sample slower.

Families whose data alone pin log alpha (sd at most 0.2) use ``log_alpha`` itself as their
third local coordinate, and their log-alpha direction is rescaled and shifted with
``tau_theta[log_alpha]`` (:func:`alpha_direction`); ``mu_theta`` is rescaled with
``tau_theta`` from those families' data (``build_model``). Both follow a Gaussian
approximation in closed form and are exact changes of variable (their log-Jacobians enter the
model). They remove the funnels between the families, their spreads and the population mean,
where the divergences sat: synthetic data went from 0-13 divergences per 4,000 draws to one
in nine runs (three data sets x three sampler seeds).

The population mean (``mu_theta``, with local or centred families) and the noise parameters
(``sigma_obs``, ``sigma_seed``, ``ar_rho``) are sampled as ``name_z`` with
``link(name) = loc + scale * name_z`` (log for the sds, logit for ``ar_rho``), centred at the
start with rough posterior sds from the data's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor

from bayescale.models.design import Design
from bayescale.models.hierarchical import local_to_theta, log_mean_curve, theta_to_local
from bayescale.models.likelihood import (
    ar_phi,
    config_marginal_loglik,
    numpy_segment_sum,
    run_marginal_loglik,
)
from bayescale.models.options import ModelOptions
from bayescale.models.priors import THETA_NAMES, theta_prior_arrays
from bayescale.models.start import (
    family_schedule_least_squares,
    initial_point,
    kappa_start,
    shared_start,
    without_schedule_excess,
)

#: Finite-difference step in local coordinates.
_STEP = 1e-4
#: Largest and smallest sd a sampled direction is scaled to (guards flat or odd Hessians).
_MAX_SD, _MIN_SD = 3.0, 1e-5
#: Families with at least this many sizes are sampled in unit-scale coordinates.
_MIN_SIZES_SCALED = 3
#: A family's log alpha is rescaled with tau when its data alone give it at most this sd.
_ALPHA_PINNED_SD = 0.2


def family_log_density(
    local: np.ndarray,
    design: Design,
    options: ModelOptions,
    point: Mapping[str, np.ndarray],
    alpha_coordinate: np.ndarray | None = None,
    tilt: float = 0.0,
) -> np.ndarray:
    """Log density of each family's local coordinates given the other parameters (numpy).

    The integrated run likelihood of the family's checkpoints plus the family prior
    ``Normal(theta_f; mu_theta, tau_theta)``, at the population, noise and AR(1) values in
    ``point``, for local coordinates as in :func:`local_to_theta` (with ``alpha_coordinate``)
    and the within-run tilt ``tilt`` (times ``design.obs_tilt``). Returns one value per family.
    """
    theta = local_to_theta(local, design.family_log_n_ref, alpha_coordinate=alpha_coordinate)
    resid = design.log_loss - log_mean_curve(theta, design, math=np) - tilt * design.obs_tilt
    counts = design.run_counts
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    phi = None
    if options.autocorrelation != "none":
        phi = ar_phi(float(point["ar_rho"]), design.obs_gap, design.obs_prev,
                     options.autocorrelation)
    tau_run = np.full(len(design.runs), float(point["sigma_seed"]))
    n_fam = len(design.families)
    if options.config_effects:
        # the configs' offsets loosen the law as much as the seeds' do, or more
        n_configs = len(design.configs)

        def config_sum(x: np.ndarray) -> np.ndarray:
            return np.bincount(design.run_config, weights=x, minlength=n_configs)

        loglik = config_marginal_loglik(
            resid, float(point["sigma_obs"]), tau_run, float(point["sigma_config"]), counts,
            numpy_segment_sum(starts), config_sum, phi, design.obs_prev,
        )
        config_family = np.zeros(n_configs, dtype=int)
        config_family[design.run_config] = design.run_family
        per_family = np.bincount(config_family, weights=loglik, minlength=n_fam)
    else:
        loglik = run_marginal_loglik(resid, float(point["sigma_obs"]), tau_run, counts,
                                     numpy_segment_sum(starts), phi, design.obs_prev)
        per_family = np.bincount(design.run_family, weights=loglik, minlength=n_fam)
    z = (theta - point["mu_theta"]) / point["tau_theta"]
    return per_family - 0.5 * np.sum(z**2, axis=-1)


def family_laplace_factors(
    local: np.ndarray,
    design: Design,
    options: ModelOptions,
    point: Mapping[str, np.ndarray],
    alpha_coordinate: np.ndarray | None = None,
) -> np.ndarray:
    """Cholesky factors (family x 5 x 5) of each family's Laplace covariance at ``local``.

    The Hessian is a central finite difference of :func:`family_log_density` (the families are
    independent given the other parameters, so one perturbation serves all of them). Its
    eigenvalues are clipped to sds between 1e-5 and 3 before inverting. Where the design has a
    within-run tilt (``design.obs_tilt``, around the tilt already taken off ``log_loss``), the
    tilt is a sixth, nuisance, coordinate of each family and the factors are those of the
    law's coordinates with it integrated out: held fixed, it would make the checkpoints' shape
    pin the law far more tightly than the posterior does.
    """
    n_fam, k_law = local.shape
    k = k_law + 1 if np.any(design.obs_tilt != 0) else k_law

    def f(delta: np.ndarray) -> np.ndarray:
        tilt = float(delta[k_law]) if k > k_law else 0.0
        return family_log_density(local + delta[:k_law], design, options, point,
                                  alpha_coordinate, tilt)

    eye = np.eye(k) * _STEP
    f0 = f(np.zeros(k))
    hess = np.empty((n_fam, k, k))
    for i in range(k):
        f_pp, f_mm = f(2 * eye[i]), f(-2 * eye[i])
        hess[:, i, i] = (f_pp - 2 * f0 + f_mm) / (4 * _STEP**2)
        for j in range(i):
            h = (f(eye[i] + eye[j]) - f(eye[i] - eye[j]) - f(eye[j] - eye[i])
                 + f(-eye[i] - eye[j])) / (4 * _STEP**2)
            hess[:, i, j] = hess[:, j, i] = h
    vals, vecs = np.linalg.eigh(-hess)
    vals = np.clip(np.nan_to_num(vals, nan=_MAX_SD**-2), _MAX_SD**-2, _MIN_SD**-2)
    cov = np.einsum("fij,fj,fkj->fik", vecs, 1.0 / vals, vecs)
    return np.linalg.cholesky(cov[:, :k_law, :k_law])


@dataclass
class SamplingCoordinates:
    """Where NUTS starts and the affine maps of the coordinates it samples in.

    Attributes
    ----------
    start
        Starting values (constrained space) by free-variable name; the families' local
        coordinates appear as ``theta_local_z = 0``.
    local_affine
        ``(loc, chol)`` with ``theta_local = loc + chol @ theta_local_z`` per family, or
        ``None`` when the families are not sampled in local coordinates.
    scales
        ``(loc, scale)`` by variable name on its link scale (see ``build_model``).
    alpha_direction
        Arrays of :func:`alpha_direction` (the families' log-alpha direction, rescaled with
        ``tau_theta``), or ``None``.
    """

    start: dict[str, np.ndarray]
    local_affine: tuple[np.ndarray, np.ndarray] | None
    scales: dict[str, tuple[np.ndarray, np.ndarray]]
    alpha_direction: dict[str, np.ndarray] | None = None

    def values(self) -> dict[str, np.ndarray]:
        """Every number held, by a flat name (``start_<var>``, ``<var>_loc``, ``local_chol``...)."""
        out = {f"start_{k}": np.asarray(v, dtype=float) for k, v in self.start.items()}
        for name, (loc, scale) in self.scales.items():
            out[f"{name}_loc"] = np.asarray(loc, dtype=float)
            out[f"{name}_scale"] = np.asarray(scale, dtype=float)
        if self.local_affine is not None:
            out["local_loc"], out["local_chol"] = self.local_affine
        for name, value in (self.alpha_direction or {}).items():
            out[f"alpha_{name}"] = value
        return out

    def shared_variables(self) -> dict[str, Any]:
        """PyTensor shared variables of :meth:`values` (named ``bayescale_<name>``)."""
        return {
            name: pytensor.shared(value, name=f"bayescale_{name}")
            for name, value in self.values().items()
        }

    def model_inputs(self, shared: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments of ``build_model``: the arrays, or :meth:`shared_variables`.

        A model compiled once takes shared variables and is given new values per data set
        (:class:`bayescale.validation.RefitModel`); :func:`bayescale.fit` passes the arrays
        themselves, which numba compiles faster.
        """
        values = self.values() if shared is None else shared
        affine = None
        if self.local_affine is not None:
            affine = (values["local_loc"], values["local_chol"])
        scales = {name: (values[f"{name}_loc"], values[f"{name}_scale"]) for name in self.scales}
        direction = None
        if self.alpha_direction is not None:
            direction = {name: values[f"alpha_{name}"] for name in self.alpha_direction}
        return {"local_affine": affine, "scales": scales, "alpha_direction": direction}

    @property
    def jitter(self) -> tuple[str, ...]:
        """Variables whose start is jittered per chain (U(-1, 1) in unit-scale coordinates).

        Only unit-scale coordinates (and the log spreads ``tau_theta``, ``sigma_config``, of
        order one) are jittered; a jitter of 1 elsewhere would start far out in the tails.
        """
        names = ["tau_theta", "tau_theta_free", "sigma_config",
                 *(f"{name}_z" for name in self.scales)]
        if self.local_affine is not None:
            names.append("theta_local_z")
        return tuple(name for name in names if name in self.start)


def sampling_coordinates(
    design: Design,
    priors: Mapping[str, Mapping[str, float]],
    options: ModelOptions,
) -> SamplingCoordinates:
    """Starting point and unit-scale sampling coordinates for the hierarchical model.

    Parameters
    ----------
    design, priors, options
        As for :func:`bayescale.models.hierarchical.build_model`.

    Returns
    -------
    SamplingCoordinates
        Pass ``local_affine`` and ``scales`` to ``build_model`` and ``start``/``jitter`` to
        the sampler.
    """
    schedule_point: dict[str, np.ndarray] = {}
    if design.has_schedule or design.has_tilt:
        # coordinates for the Chinchilla part given the starting kappa and tilt; both stay free
        log_kappa, tilts = family_schedule_least_squares(design, priors)
        kappa = np.zeros_like(log_kappa)
        if design.has_schedule:
            schedule_point = kappa_start(log_kappa, priors)
            kappa = np.exp(log_kappa)
        tilt = 0.0
        if design.has_tilt:
            tilted = np.unique(design.obs_family[np.abs(design.obs_tilt) > 0])
            tilt = float(np.median(tilts[tilted]))
            schedule_point["tilt"] = np.asarray(tilt)
        design = without_schedule_excess(design, kappa, tilt)
    point = initial_point(design, priors, options)
    scales = scalar_scales(design, point)
    plain = dict(point)  # before the scaled variables become their z coordinates
    if options.family_parameterization == "noncentered":
        # given the standardised offsets, the data pin mu_theta far more tightly than
        # tau / sqrt(families): leave it to the mass matrix
        scales.pop("mu_theta", None)
    for name in scales:
        point[f"{name}_z"] = np.zeros_like(np.asarray(point.pop(name), dtype=float))
    point.update(schedule_point)
    point = shared_start(point, options)
    if "theta_local" not in point:
        return SamplingCoordinates(point, None, scales)
    local = np.asarray(point["theta_local"], dtype=float)
    context = dict(plain)
    # Shared components (b, log_beta: local coordinates of their own) are the population's:
    # the factors are those of the free coordinates given them (zero rows and columns).
    free = np.arange(local.shape[1])
    if "mu_theta" not in plain:  # a lone family: its prior is the population prior
        mu0, sd0, _, _ = theta_prior_arrays(priors)
        context["mu_theta"], context["tau_theta"] = mu0, sd0
    elif options.shared:
        free = np.asarray(options.free_components)

    def factors(at: np.ndarray, alpha_coordinate: np.ndarray | None = None) -> np.ndarray:
        full = family_laplace_factors(at, design, options, context, alpha_coordinate)
        return full if len(free) == at.shape[1] else given_shared(full, free)

    chol = factors(local)
    # A family whose runs span fewer than three sizes leaves directions to the family prior,
    # whose width moves with tau_theta: a factor fixed at the starting tau made those families
    # sample 5x slower (deepmind-routing). They keep the plain local coordinates (z = local).
    few = design.family_n_sizes < _MIN_SIZES_SCALED
    z = np.where(few[:, None], local, 0.0)
    direction = None
    if "mu_theta" in plain:
        # Families whose data pin log alpha (judged in the log-alpha frame itself: the Laplace
        # sd differs between frames) sample it as a coordinate, rescaled with tau. The arrays
        # exist (all inactive) even when none does, so that a model compiled once
        # (RefitModel) has the same inputs for every data set.
        log_n_ref = design.family_log_n_ref
        theta = local_to_theta(local, log_n_ref)
        cand = (~few).astype(float)
        local_a = theta_to_local(theta, log_n_ref, cand)
        chol_a = factors(local_a, cand)
        pinned = ~few & alpha_pinned(component_laplace(local_a, chol_a, context, log_n_ref, cand))
        flag = pinned.astype(float)
        # each family's factor depends on its own coordinates only: keep the frame's
        local = np.where(pinned[:, None], local_a, local)
        chol = np.where(pinned[:, None, None], chol_a, chol)
        laplace = component_laplace(local, chol, context, log_n_ref, flag)
        direction = alpha_direction(laplace, context, pinned)
    loc = np.where(few[:, None], 0.0, local)[:, free]
    chol = chol[:, free][:, :, free]
    chol[few] = np.eye(len(free))
    if direction is not None:
        direction["u"] = direction["u"][:, free]
    start = {k: v for k, v in point.items() if k != "theta_local"}
    start["theta_local_z"] = z[:, free]
    return SamplingCoordinates(start, (loc, chol), scales, direction)


def given_shared(chol: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Factors of the ``free`` coordinates' Laplace covariance given the others (held fixed).

    ``chol`` (family x k x k) factors the joint covariance; the conditional covariance is the
    inverse of the free block of its precision. Returned as k x k factors with zero rows and
    columns for the fixed coordinates.
    """
    prec = np.linalg.inv(chol @ np.swapaxes(chol, -1, -2))
    cond = np.linalg.inv(prec[:, free][:, :, free])
    out = np.zeros_like(chol)
    out[:, free[:, None], free] = np.linalg.cholesky(cond)
    return out


def component_laplace(
    local: np.ndarray,
    chol: np.ndarray,
    point: Mapping[str, np.ndarray],
    log_n_ref: np.ndarray,
    alpha_coordinate: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Each family's theta components under the Laplace approximation at ``local``.

    Linearises ``theta(local)`` (central differences): component k moves along
    ``g_k = L^T grad theta_k`` in the unit-scale coordinates ``z`` with sd ``|g_k|``. Removing
    the family prior's share at the start (``mu_theta``, ``tau_theta``) leaves what the data
    alone say: precision ``prec = |g_k|^-2 - tau0^-2`` (0 where the prior is all there is),
    precision-weighted mean ``info`` and mean ``xhat``.

    Returns
    -------
    dict
        ``g`` (family x component x 5), and ``theta``, ``prec``, ``info``, ``xhat``
        (family x component).
    """
    k = local.shape[1]
    grads = np.empty((len(local), k, k))  # family, theta component, local coordinate
    for i in range(k):
        step = np.zeros(k)
        step[i] = _STEP
        up = local_to_theta(local + step, log_n_ref, alpha_coordinate=alpha_coordinate)
        down = local_to_theta(local - step, log_n_ref, alpha_coordinate=alpha_coordinate)
        grads[:, :, i] = (up - down) / (2 * _STEP)
    g = np.einsum("fij,fki->fkj", chol, grads)
    var = (g**2).sum(axis=-1)
    mu0 = np.asarray(point["mu_theta"], dtype=float)
    tau0 = np.asarray(point["tau_theta"], dtype=float)
    theta = local_to_theta(local, log_n_ref, alpha_coordinate=alpha_coordinate)
    # var is 0 for a shared component (fixed: its factor has no row); it says nothing
    moves = var > 0
    safe_var = np.where(moves, var, 1.0)
    prec = np.where(moves, np.clip(1.0 / safe_var - tau0**-2, 0.0, None), 0.0)
    info = np.where(moves, theta / safe_var - mu0 / tau0**2, 0.0)
    xhat = np.where(prec > 0, info / np.where(prec > 0, prec, 1.0), 0.0)
    return {"g": g, "theta": theta, "prec": prec, "info": info, "xhat": xhat}


def alpha_pinned(laplace: Mapping[str, np.ndarray]) -> np.ndarray:
    """Families whose data alone pin log alpha to within ``_ALPHA_PINNED_SD`` (bool).

    ``laplace`` from :func:`component_laplace`. The rescaling with tau is exact whatever the
    family, but it follows a Gaussian approximation that only narrow likelihoods honour:
    synthetic families (five sizes) have data sd 0.03-0.10, hitchhiker's (three sizes, one run
    each) 0.34 or more. Rescaling the three hitchhiker families under 0.6 gave 62 divergences
    and R-hat 1.14 (5 and 1.045 without).
    """
    return laplace["prec"][:, THETA_NAMES.index("log_alpha")] >= _ALPHA_PINNED_SD**-2


def alpha_direction(
    laplace: Mapping[str, np.ndarray], point: Mapping[str, np.ndarray], pinned: np.ndarray
) -> dict[str, np.ndarray]:
    """What ``build_model`` needs to rescale the pinned families and ``mu_theta`` with tau.

    ``laplace`` (:func:`component_laplace`) in coordinates with ``log_alpha`` itself as the
    third coordinate of the ``pinned`` families. Under the Laplace approximation such a
    family's ``log_alpha`` moves along the unit vector ``u = g / |g|`` of ``z`` with sd
    ``sd0 = |g|``, set at the starting ``tau_theta``. As the sampler moves
    ``tau = tau_theta[log_alpha]``, the family prior's share changes that sd to
    ``sd(tau) = (prec + tau^-2)^-1/2`` (``prec`` the data's precision of log alpha) and the
    mean to ``sd(tau)^2 (info + mu / tau^2)``, a rank-one change of the Gaussian.
    ``build_model`` rescales and shifts ``z`` along ``u`` to follow it (the non-centred move
    for that one direction), which removes the funnel of small ``tau_theta[log_alpha]``; and
    it rescales ``mu_theta`` with ``tau_theta`` from the pinned families' data precision and
    mean of every component.

    Returns
    -------
    dict
        Per family: ``u`` (family x 5), ``info``, ``sd0``, ``mean0`` (of log alpha) and
        ``active`` (1.0 where the family is rescaled); ``comp_prec`` and ``comp_xhat``
        (family x component), the data's precision and mean of each component (log alpha's
        precision is ``comp_prec[:, 2]``); ``tau0``, the starting ``tau_theta``.
    """
    k = THETA_NAMES.index("log_alpha")
    g = laplace["g"][:, k]
    sd0 = np.linalg.norm(g, axis=1)
    return {
        "u": np.where(pinned[:, None], g / sd0[:, None], 0.0),
        "info": laplace["info"][:, k],
        "sd0": sd0,
        "mean0": laplace["theta"][:, k],
        "active": pinned.astype(float),
        "comp_prec": laplace["prec"],
        "comp_xhat": laplace["xhat"],
        "tau0": np.asarray(point["tau_theta"], dtype=float),
    }


def scalar_scales(
    design: Design, point: Mapping[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``(loc, scale)`` of the population mean and the noise parameters' sampled coordinates.

    Centred at ``point`` on each variable's link scale (identity, log, logit), with rough
    posterior sds from the data's size: ``sigma_obs`` (log) ``1/sqrt(2 n_eff)`` with ``n_eff``
    the checkpoints discounted for AR(1) correlation; ``sigma_seed`` (log) ``1/sqrt(2 runs)``;
    ``ar_rho`` (logit) the AR(1) estimator's sd; ``mu_theta`` the starting family spread over
    ``sqrt(families)``. Within a factor of a few is enough: the mass matrix adapts the rest.
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rho = float(point["ar_rho"]) if "ar_rho" in point else 0.0
    n_eff = max(design.n_obs * (1 - rho) / (1 + rho), 2.0)
    out["sigma_obs"] = (np.log(point["sigma_obs"]), np.asarray(1 / np.sqrt(2 * n_eff)))
    out["sigma_seed"] = (np.log(point["sigma_seed"]), np.asarray(1 / np.sqrt(2 * len(design.runs))))
    if "ar_rho" in point:
        sd = np.sqrt((1 - rho**2) / design.n_obs) / (rho * (1 - rho))
        out["ar_rho"] = (np.log(rho / (1 - rho)), np.asarray(np.clip(sd, 0.02, 1.0)))
    if "mu_theta" in point and "tau_theta" in point:
        n_fam = len(design.families)
        out["mu_theta"] = (np.asarray(point["mu_theta"]),
                           np.asarray(point["tau_theta"]) / np.sqrt(n_fam))
    return out
