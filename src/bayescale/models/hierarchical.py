"""PyMC builder of the hierarchical Chinchilla-form model.

Levels: population -> (arch) -> family -> run (seed offset) -> checkpoint.

* Family parameters ``theta_f = (log_E, a, log_alpha, b, log_beta)`` at reference scales
  ``(N0, D0)``: ``log mu(N, D) = logsumexp(log_E, a - alpha log(N/N0), b - beta log(D/D0))``.
* Run offsets ``u_r ~ N(0, sigma_seed_r)`` on log-loss; ``sigma_seed_r = sigma_seed`` or
  ``sigma_seed * exp(slope * log(N_r/N0))``.
* Checkpoint noise on log-loss: Normal (offsets integrated out in closed form, optionally AR(1))
  or Student-t (explicit centred offsets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayescale.laws.chinchilla import CHINCHILLA_PARAMS, chinchilla_log_loss_ref
from bayescale.models.design import Design
from bayescale.models.likelihood import (
    ar_exponent,
    ar_phi,
    config_loglik_from_sums,
    residual_sums,
    run_loglik_from_sums,
)
from bayescale.models.options import ModelOptions
from bayescale.models.priors import THETA_NAMES, theta_prior_arrays
from bayescale.models.run_sums import ResidualRunSums, exponent_table

#: The law parameters the model reports per family (the law's own names).
LAW_PARAMS = CHINCHILLA_PARAMS
#: Sampling coordinates of a family under ``family_parameterization="local"``.
LOCAL_NAMES = ("log_asymptote", "logit_irreducible", "log_slope", "b", "log_beta")


def uses_local_coordinates(options: ModelOptions) -> bool:
    """Whether families are sampled in the local coordinates of :func:`local_to_theta`."""
    return options.family_parameterization == "local" and not options.correlated_families


def local_to_theta(local, log_n_ref, math=np, alpha_coordinate=None):
    """Map local coordinates to ``theta = (log_E, a, log_alpha, b, log_beta)``.

    At each family's reference size ``N_f`` (``log_n_ref = log(N_f/N0)``):
    ``c = log(E + A/N_f^alpha)`` is the log of the converged loss, ``eta = logit(E / e^c)``
    the share of it that is irreducible, and ``log_s = log(alpha (1 - E/e^c))`` the log of its
    local log-log slope in N. Data pin ``c`` and ``log_s`` well; only ``eta`` (how the converged
    loss splits into E and A/N^alpha) is weakly identified, along one axis instead of the
    curved E-A-alpha ridge. The map has Jacobian determinant -1.

    Families flagged in ``alpha_coordinate`` (one value per family, > 0.5 for yes) use
    ``log_alpha`` itself as their third coordinate instead of ``log_s``, also with Jacobian
    determinant -1: for families whose data pin alpha, so that a move of ``tau_theta[log_alpha]``
    acts linearly on their coordinates (see :mod:`bayescale.models.scaling`).
    """
    c, eta, third = local[..., 0], local[..., 1], local[..., 2]
    log_frac_e = -math.log1p(math.exp(-eta))  # log sigmoid(eta)
    log_frac_a = -math.log1p(math.exp(eta))  # log sigmoid(-eta)
    log_alpha = third - log_frac_a
    if alpha_coordinate is not None:
        log_alpha = math.where(alpha_coordinate > 0.5, third, log_alpha)
    a = c + log_frac_a + math.exp(log_alpha) * log_n_ref
    return math.stack([c + log_frac_e, a, log_alpha, local[..., 3], local[..., 4]], axis=-1)


def theta_to_local(
    theta: np.ndarray, log_n_ref: np.ndarray, alpha_coordinate: np.ndarray | None = None
) -> np.ndarray:
    """Inverse of :func:`local_to_theta` (numpy)."""
    log_e, a, log_alpha = theta[..., 0], theta[..., 1], theta[..., 2]
    log_a_term = a - np.exp(log_alpha) * log_n_ref
    c = np.logaddexp(log_e, log_a_term)
    eta = log_e - log_a_term
    third = log_alpha + log_a_term - c
    if alpha_coordinate is not None:
        third = np.where(alpha_coordinate > 0.5, log_alpha, third)
    return np.stack([c, eta, third, theta[..., 3], theta[..., 4]], axis=-1)


def build_model(
    design: Design,
    priors: Mapping[str, Mapping[str, float]],
    options: ModelOptions,
    portable: bool = False,
    local_affine: tuple[Any, Any] | None = None,
    scales: Mapping[str, tuple[Any, Any]] | None = None,
    alpha_direction: Mapping[str, Any] | None = None,
) -> pm.Model:
    """Build the PyMC model.

    Parameters
    ----------
    design
        Index arrays from :func:`bayescale.models.design.build_design`.
    priors
        Full prior specification from :func:`bayescale.models.priors.resolve_priors`.
    options
        Modelling choices.
    portable
        Build the Gaussian likelihood from plain PyTensor ops (any backend, e.g. JAX for
        numpyro) instead of the compiled run-sums kernel (numba / C backends; a log-density
        gradient at 7,200 points takes 0.40 ms instead of 0.70 ms). The model is the same.
    local_affine
        ``(loc, chol)`` (family x 5, family x 5 x 5; arrays or shared variables): sample the
        local coordinates as ``theta_local_z`` with ``theta_local = loc + chol @ z`` (see
        :mod:`bayescale.models.scaling`). Only with local coordinates; the model is the same.
    scales
        ``(loc, scale)`` by variable name (``mu_theta``, ``sigma_seed``, ``sigma_obs``,
        ``ar_rho``; arrays or shared variables): sample ``name_z`` with
        ``link(name) = loc + scale * name_z`` (identity, log or logit link; see
        :func:`_free_variable`). NUTS's coordinates only; the model is the same.
    alpha_direction
        With ``local_affine`` and several families: arrays of
        :func:`bayescale.models.scaling.alpha_direction`; ``theta_local_z`` is rescaled along
        each family's log-alpha direction as ``tau_theta[log_alpha]`` moves (exact, with its
        log-Jacobian), and ``mu_theta`` with ``tau_theta`` (:func:`_mu_given_tau`).
        NUTS's coordinates only; the model is the same.

    Returns
    -------
    pymc.Model
        Free variables ``mu_theta``, ``tau_theta`` (+ ``theta_arch``, ``tau_arch``),
        ``theta`` (family x theta), ``sigma_seed``, ``sigma_obs`` and the options' extras;
        deterministics ``E, A, alpha, B, beta`` per family and ``*_pop`` for the population.
    """
    coords = {
        **design.coords(),
        "component": list(THETA_NAMES),
        "local_component": list(LOCAL_NAMES),
    }
    if options.shared:
        coords["free_component"] = [THETA_NAMES[i] for i in options.free_components]
        if uses_local_coordinates(options) and not (len(design.families) == 1
                                                    and not options.use_arch):
            coords["local_component"] = [LOCAL_NAMES[i] for i in options.free_components]
    mu0, sd0, fam_scale, arch_scale = theta_prior_arrays(priors)
    n_fam = len(design.families)
    single = n_fam == 1 and not options.use_arch
    local_single = single and uses_local_coordinates(options)
    with pm.Model(coords=coords) as model:
        # the spreads first: the population means are sampled given them (_mu_given_tau)
        if options.correlated_families:
            chol, _, _ = pm.LKJCholeskyCov(
                "family_chol",
                n=len(THETA_NAMES),
                eta=priors["lkj_eta"]["eta"],
                sd_dist=pm.HalfNormal.dist(sigma=fam_scale, shape=len(THETA_NAMES)),
                compute_corr=True,
            )
            tau_theta = pm.Deterministic(
                "tau_theta", pt.sqrt(pt.diag(chol @ chol.T)), dims="component"
            )
        else:
            chol = None
            tau_theta = _spread("tau_theta", fam_scale, options)

        if local_single:
            # a lone family is the population; sample it in local coordinates (see below)
            local = _local_coordinates(local_affine)
            theta = pm.Deterministic(
                "theta", local_to_theta(local, design.family_log_n_ref, math=pt),
                dims=("family", "component"),
            )
            mu_theta = pm.Deterministic("mu_theta", theta[0], dims="component")
            pm.Potential(
                "population_prior", pm.logp(pm.Normal.dist(mu=mu0, sigma=sd0), mu_theta).sum()
            )
        else:
            adjust = None
            if alpha_direction is not None and not options.use_arch:
                adjust = _mu_given_tau(alpha_direction, tau_theta, mu0, sd0)
            mu_theta = _free_variable(
                "mu_theta", pm.Normal, {"mu": mu0, "sigma": sd0}, "identity", scales, "component",
                adjust=adjust,
            )

        if options.use_arch:
            tau_arch = _spread("tau_arch", arch_scale, options)
            theta_arch = pm.Deterministic(
                "theta_arch",
                mu_theta + _scaled_offsets("z_arch", tau_arch, "arch", len(design.archs), options),
                dims=("arch", "component"),
            )
            centre = theta_arch[design.family_arch]
        else:
            centre = pt.broadcast_to(mu_theta, (n_fam, len(THETA_NAMES)))

        if single:
            # A lone family is the population: no funnel between mu and tau. tau keeps its prior
            # and is used only to predict new families.
            if not local_single:
                theta = pm.Deterministic("theta", centre, dims=("family", "component"))
        elif chol is not None:
            # correlated effects: centred MvNormal unless non-centred is asked for
            if options.family_parameterization != "noncentered":
                theta = pm.MvNormal("theta", mu=centre, chol=chol, dims=("family", "component"))
            else:
                z = pm.Normal("z_theta", 0.0, 1.0, dims=("family", "component"))
                theta = pm.Deterministic("theta", centre + z @ chol.T, dims=("family", "component"))
        elif options.family_parameterization == "centered" and options.shared:
            free = list(options.free_components)
            theta_free = pm.Normal("theta_free", mu=centre[:, free], sigma=tau_theta[free],
                                   dims=("family", "free_component"))
            theta = pm.Deterministic(
                "theta", pt.set_subtensor(centre[:, free], theta_free), dims=("family", "component")
            )
        elif options.family_parameterization == "centered":
            theta = pm.Normal("theta", mu=centre, sigma=tau_theta, dims=("family", "component"))
        elif uses_local_coordinates(options):
            # Same model, sampled in coordinates the data pin (see local_to_theta); the map is
            # volume-preserving (|Jacobian| = 1), so the prior is added as it stands.
            k = THETA_NAMES.index("log_alpha")
            local = _local_coordinates(
                local_affine, alpha_direction, centre[:, k], tau_theta[k]
            )
            # without shared components, index nothing: the log density's graph stays as it was
            free = list(options.free_components) if options.shared else slice(None)
            if options.shared:
                # shared b / log_beta are local coordinates 3 and 4 themselves (local_to_theta
                # passes them through): the population's value, not sampled per family
                local = pt.set_subtensor(centre[:, free], local)
            flag = None if alpha_direction is None else alpha_direction["active"]
            theta = pm.Deterministic(
                "theta", local_to_theta(local, design.family_log_n_ref, math=pt,
                                        alpha_coordinate=flag),
                dims=("family", "component"),
            )
            pm.Potential(
                "family_prior",
                pm.logp(pm.Normal.dist(mu=centre[:, free], sigma=tau_theta[free]),
                        theta[:, free]).sum(),
            )
        else:
            theta = pm.Deterministic(
                "theta", centre + _scaled_offsets("z_theta", tau_theta, "family", n_fam, options),
                dims=("family", "component"),
            )

        _law_deterministics(mu_theta, theta, design)
        kappa_run = None
        if design.has_schedule:
            kappa_run = schedule_kappa(design, priors)[design.run_family]
        tilt = None
        if design.has_tilt:
            # one coefficient for the fit: the misfit it takes up depends on the run's length
            # for its model size, not on the family (see bayescale.laws.schedule)
            tilt = pm.Normal("tilt", mu=priors["tilt"]["mu"], sigma=priors["tilt"]["sigma"])

        sigma_seed = _free_variable(
            "sigma_seed", pm.HalfNormal, {"sigma": priors["sigma_seed"]["sigma"]}, "log", scales
        )
        if options.seed_by_size:
            slope = pm.Normal(
                "seed_size_slope",
                mu=priors["seed_size_slope"]["mu"],
                sigma=priors["seed_size_slope"]["sigma"],
            )
            tau_run = sigma_seed * pt.exp(slope * design.run_log_n)
        else:
            tau_run = sigma_seed * pt.ones(len(design.runs))
        sigma_obs = _free_variable(
            "sigma_obs", pm.HalfNormal, {"sigma": priors["sigma_obs"]["sigma"]}, "log", scales
        )

        if options.likelihood == "normal":
            _normal_marginal(
                design, options, priors, theta, sigma_obs, tau_run, portable, scales, kappa_run,
                tilt,
            )
        else:
            log_mu = log_mean_curve(theta, design, kappa_run=kappa_run, tilt=tilt)
            nu = pm.Gamma("nu", alpha=priors["nu"]["alpha"], beta=priors["nu"]["beta"])
            run_effect = pm.Normal("run_effect", 0.0, tau_run, dims="run")
            pm.StudentT(
                "log_loss",
                nu=nu,
                mu=log_mu + run_effect[design.obs_run],
                sigma=sigma_obs,
                observed=design.log_loss,
                dims="obs",
            )
    return model


def schedule_kappa(design: Design, priors: Mapping[str, Mapping[str, float]]):
    """Per-family scale ``kappa`` of the learning-rate schedule's excess (``log`` hierarchical).

    ``log kappa_f = log_kappa_pop + kappa_sd z_f`` (non-centred: most families say little about
    their own ``kappa``); one family is the population. Returns the ``kappa`` deterministic
    (dim ``family``).
    """
    log_pop = pm.Normal(
        "log_kappa_pop", mu=priors["kappa"]["mu"], sigma=priors["kappa"]["sigma"]
    )
    if len(design.families) == 1:
        log_kappa = pt.reshape(log_pop, (1,))
    else:
        # Gamma(2) for the reason tau_theta has one: few families cannot tell sd 0 from small
        sd = pm.Gamma("kappa_sd", alpha=2.0, beta=2.0 / priors["kappa_sd"]["sigma"])
        z = pm.Normal("kappa_z", 0.0, 1.0, dims="family")
        log_kappa = log_pop + sd * z
    return pm.Deterministic("kappa", pt.exp(log_kappa), dims="family")


def _spread(name: str, scale: np.ndarray, options: ModelOptions) -> pt.TensorVariable:
    """Spread ``name ~ Gamma(2, 2/scale)`` per component; 0 for ``options.shared`` components.

    Gamma(2) keeps the spread away from 0, where few groups cannot tell tau = 0 from tau small
    (a funnel); its mean is the scale. Shared components have no spread variable at all (a
    free one would be sampled from its prior alone): ``name_free`` holds the others.
    """
    if not options.shared:
        return pm.Gamma(name, alpha=2.0, beta=2.0 / scale, dims="component")
    free = list(options.free_components)
    tau_free = pm.Gamma(f"{name}_free", alpha=2.0, beta=2.0 / scale[free], dims="free_component")
    return pm.Deterministic(
        name, pt.set_subtensor(pt.zeros(len(THETA_NAMES))[free], tau_free), dims="component"
    )


def _scaled_offsets(
    name: str, tau: pt.TensorVariable, dim: str, n_rows: int, options: ModelOptions
) -> pt.TensorVariable:
    """Non-centred offsets ``tau * z`` with ``z ~ N(0, 1)`` (rows x components).

    ``z`` has no column for a shared component (its offset is 0), so that no coordinate is
    left to its prior alone.
    """
    if not options.shared:
        return tau * pm.Normal(name, 0.0, 1.0, dims=(dim, "component"))
    free = list(options.free_components)
    z = pm.Normal(name, 0.0, 1.0, dims=(dim, "free_component"))
    return pt.set_subtensor(pt.zeros((n_rows, len(THETA_NAMES)))[:, free], tau[free] * z)


def _free_variable(
    name: str,
    dist: type[pm.Distribution],
    params: Mapping[str, Any],
    link: str,
    scales: Mapping[str, tuple[Any, Any]] | None,
    dims: str | None = None,
    adjust: Any = None,
) -> pt.TensorVariable:
    """``name ~ dist(**params)``, sampled directly or in a unit-scale coordinate.

    Without ``scales[name]``: a PyMC random variable with its default transform. With
    ``(loc, scale)``: a flat ``name_z`` with ``link(name) = loc + scale * name_z``; the prior
    and the link's log-Jacobian enter as a Potential (the constant ``log scale`` is left out),
    so the model is the same. The link is ``"identity"``, ``"log"`` or ``"logit"``, matching
    PyMC's default transform of ``dist``. ``adjust(y)`` (optional) returns a further bijection
    of ``y`` and its log-Jacobian, applied before the link.
    """
    if not scales or name not in scales:
        return dist(name, **params, dims=dims)
    loc, scale = scales[name]
    z = pm.Flat(f"{name}_z", dims=dims)
    y = loc + scale * z
    adjust_jac = 0.0
    if adjust is not None:
        y, adjust_jac = adjust(y)
    if link == "log":
        value, log_jac = pt.exp(y), y
    elif link == "logit":
        value, log_jac = pt.sigmoid(y), -pt.softplus(-y) - pt.softplus(y)
    elif link == "identity":
        value, log_jac = y, pt.zeros_like(y)
    else:
        raise ValueError(f"unknown link {link!r}")
    value = pm.Deterministic(name, value, dims=dims)
    pm.Potential(
        f"{name}_prior", (pm.logp(dist.dist(**params), value) + log_jac).sum() + adjust_jac
    )
    return value


def _mu_given_tau(direction, tau_theta, mu0, sd0):
    """Rescale ``mu_theta`` with ``tau_theta`` (exact, with Jacobian), per component.

    Under the Gaussian approximation of the pinned families' parameters (component k: data
    mean ``xhat_fk``, precision ``prec_fk``), ``mu_k | tau_k`` is Normal with precision
    ``P_k(tau) = sd0_k^-2 + sum_f prec_fk / (1 + tau^2 prec_fk)`` and mean ``m_k(tau)``. The
    sampled value ``y_k`` (the plain coordinate at the starting tau0) is mapped to
    ``m_k(tau) + sqrt(P_k(tau0) / P_k(tau)) (y_k - m_k(tau0))``.
    """
    prec = direction["comp_prec"] * direction["active"][:, None]
    xhat = direction["comp_xhat"]

    def moments(tau):
        w = prec / (1.0 + tau**2 * prec)
        p = sd0**-2 + w.sum(axis=0)
        return (mu0 * sd0**-2 + (w * xhat).sum(axis=0)) / p, p

    m0, p0 = moments(direction["tau0"])
    m, p = moments(tau_theta)

    def adjust(y):
        return m + pt.sqrt(p0 / p) * (y - m0), 0.5 * (pt.log(p0) - pt.log(p)).sum()

    return adjust


def _local_coordinates(
    local_affine: tuple[Any, Any] | None,
    alpha_direction: Mapping[str, Any] | None = None,
    mu_alpha: Any = None,
    tau_alpha: Any = None,
) -> pt.TensorVariable:
    """The families' local coordinates: sampled directly, or as ``loc + chol @ z``.

    With ``alpha_direction``, ``z`` is first moved along each family's log-alpha direction
    ``u``: ``w = z + ((r - 1) (u . z) + shift) u`` with ``r = sd(tau) / sd0`` and ``shift`` the
    Laplace mean's move in units of ``sd0`` (see
    :func:`bayescale.models.scaling.alpha_direction`). Exact: the log-Jacobian ``log r`` enters
    as a Potential.
    """
    if local_affine is None:
        return pm.Flat("theta_local", dims=("family", "local_component"))
    loc, chol = local_affine
    z = pm.Flat("theta_local_z", dims=("family", "local_component"))
    if alpha_direction is not None:
        d = alpha_direction
        prec = d["comp_prec"][:, THETA_NAMES.index("log_alpha")]
        var = 1.0 / (prec + tau_alpha**-2)
        r = pt.sqrt(var) / d["sd0"]
        shift = (var * (d["info"] + mu_alpha / tau_alpha**2) - d["mean0"]) / d["sd0"]
        along = (r - 1.0) * (d["u"] * z).sum(axis=-1) + shift
        z = z + along[:, None] * d["u"]
        pm.Potential("alpha_direction_jacobian", (d["active"] * pt.log(r)).sum())
    # constant Jacobian: the affine map leaves the model unchanged
    return pm.Deterministic(
        "theta_local", loc + (chol * z[:, None, :]).sum(axis=-1),
        dims=("family", "local_component"),
    )


def _law_deterministics(mu_theta: pt.TensorVariable, theta: pt.TensorVariable, design: Design):
    log_n0, log_d0 = np.log(design.n0), np.log(design.d0)
    for suffix, vec, dims in (("", theta, "family"), ("_pop", mu_theta, None)):
        log_e, a, log_alpha, b, log_beta = (vec[..., i] for i in range(len(THETA_NAMES)))
        alpha, beta = pt.exp(log_alpha), pt.exp(log_beta)
        pm.Deterministic(f"E{suffix}", pt.exp(log_e), dims=dims)
        pm.Deterministic(f"A{suffix}", pt.exp(a + alpha * log_n0), dims=dims)
        pm.Deterministic(f"alpha{suffix}", alpha, dims=dims)
        pm.Deterministic(f"B{suffix}", pt.exp(b + beta * log_d0), dims=dims)
        pm.Deterministic(f"beta{suffix}", beta, dims=dims)


def run_curve_terms(theta, design: Design, math=pt):
    """Per-run terms of the mean curve for family parameters ``theta[..., family, 5]``.

    Returns ``(c, b, beta)`` per run, with ``log mu = logaddexp(c, b - beta log(D/D0))`` and
    ``c = log(E + A/N^alpha)`` the run's converged log-loss (computed once per run, not per
    checkpoint).
    """
    th_run = theta[..., design.run_family, :]
    asym = math.logaddexp(
        th_run[..., 0], th_run[..., 1] - math.exp(th_run[..., 2]) * design.run_log_n
    )
    return asym, th_run[..., 3], math.exp(th_run[..., 4])


def log_mean_curve(theta, design: Design, math=pt, kappa_run=None, tilt=None):
    """log mu per checkpoint for family parameters ``theta[..., family, 5]``.

    Works on a PyTensor matrix (family x 5) or a numpy array of draws (..., family x 5).
    ``kappa_run[..., run]`` adds the learning-rate schedule's excess ``kappa s`` and ``tilt``
    (a scalar, or draws ``(...)``) the within-run tilt ``tilt v`` (see
    :mod:`bayescale.laws.schedule`); ``design.obs_log_d`` already holds the effective tokens.
    """
    asym, b_run, beta_run = run_curve_terms(theta, design, math)
    obs = design.obs_run
    log_mu = math.logaddexp(
        asym[..., obs], b_run[..., obs] - beta_run[..., obs] * design.obs_log_d
    )
    if kappa_run is not None:
        log_mu = log_mu + kappa_run[..., obs] * design.obs_anneal
    if tilt is not None:
        log_mu = log_mu + (tilt[..., None] if tilt.ndim else tilt) * design.obs_tilt
    return log_mu


def _normal_marginal(
    design, options, priors, theta, sigma_obs, tau_run, portable, scales, kappa_run=None,
    tilt=None,
) -> None:
    rho = None
    if options.autocorrelation != "none":
        rho = _free_variable(
            "ar_rho",
            pm.Beta,
            {"alpha": priors["ar_rho"]["alpha"], "beta": priors["ar_rho"]["beta"]},
            "logit",
            scales,
        )
    if portable:
        sums = _run_sums_graph(design, options, theta, rho, kappa_run, tilt)
    else:
        sums = _run_sums_kernel(design, options, theta, rho, kappa_run, tilt)
    counts = design.run_counts.astype(float)
    if options.config_effects:
        sigma_config = pm.HalfNormal("sigma_config", sigma=priors["sigma_config"]["sigma"])
        n_configs = len(design.configs)

        def config_sum(x):
            return pt.inc_subtensor(pt.zeros(n_configs)[design.run_config], x)

        loglik = config_loglik_from_sums(
            *sums, sigma_obs, tau_run, sigma_config, counts, config_sum, math=pt
        )
        pm.Potential("config_marginal_loglik", loglik.sum())
        return
    loglik = run_loglik_from_sums(*sums, sigma_obs, tau_run, counts, math=pt)
    pm.Potential("run_marginal_loglik", loglik.sum())


def _run_sums_kernel(design, options, theta, rho, kappa_run=None, tilt=None):
    """The four run sums from the compiled kernel (:mod:`bayescale.models.run_sums`)."""
    autocorrelated = rho is not None
    expo = (
        ar_exponent(design.obs_gap, design.obs_prev, options.autocorrelation)
        if autocorrelated
        else np.ones(design.n_obs)
    )
    starts = np.r_[0, np.cumsum(design.run_counts)].astype(np.int64)
    c, b, beta = run_curve_terms(theta, design)
    n_runs = len(design.runs)
    if kappa_run is None:
        kappa_run = pt.zeros(n_runs)
    tilt_run = pt.zeros(n_runs) if tilt is None else tilt * pt.ones(n_runs)
    sums, _ = ResidualRunSums(autocorrelated)(
        c, b, beta, kappa_run, tilt_run,
        pt.reshape(rho if autocorrelated else pt.constant(0.5), (1,)),
        design.log_loss, design.obs_log_d, design.obs_anneal, design.obs_tilt,
        *exponent_table(expo), starts,
    )
    return sums[:, 0], sums[:, 1], sums[:, 2], sums[:, 3]


def _run_sums_graph(design, options, theta, rho, kappa_run=None, tilt=None):
    """The same sums as plain PyTensor ops (any backend, e.g. JAX for numpyro)."""
    n_runs = len(design.runs)
    resid = design.log_loss - log_mean_curve(theta, design, kappa_run=kappa_run, tilt=tilt)
    phi = None
    if rho is not None:
        phi = ar_phi(rho, design.obs_gap, design.obs_prev, options.autocorrelation, math=pt)

    def segment_sum(x):
        return pt.inc_subtensor(pt.zeros(n_runs)[design.obs_run], x)

    counts = design.run_counts.astype(float)
    return residual_sums(resid, counts, segment_sum, phi, design.obs_prev, math=pt)


def reference_log_loss(theta: np.ndarray, log_n_rel: np.ndarray, log_d_rel: np.ndarray):
    """Numpy log mean curve for reference-scale parameter draws ``theta[..., 5]``."""
    return chinchilla_log_loss_ref(
        log_n_rel,
        log_d_rel,
        theta[..., 0:1],
        theta[..., 1:2],
        np.exp(theta[..., 2:3]),
        theta[..., 3:4],
        np.exp(theta[..., 4:5]),
    )
