"""Prior predictive check: what losses do the priors imply for the runs of a table?"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from bayescale.data.validate import validate
from bayescale.models.design import build_design
from bayescale.models.hierarchical import build_model, log_mean_curve
from bayescale.models.likelihood import ar_phi
from bayescale.models.options import ModelOptions
from bayescale.models.priors import resolve_priors
from bayescale.quiet import resolve_blas_flags


def prior_predictive(
    runs: pd.DataFrame,
    options: ModelOptions | None = None,
    priors: Mapping[str, Mapping[str, float]] | None = None,
    draws: int = 500,
    random_seed: int = 0,
) -> az.InferenceData:
    """Draw parameters from the prior and simulate every checkpoint of ``runs``.

    Parameters
    ----------
    runs
        Run table whose families, runs, sizes and tokens define the design.
    options
        Modelling options (default :class:`ModelOptions`).
    priors
        Prior overrides, as for :func:`bayescale.fit`.
    draws
        Prior draws.
    random_seed
        Seed of every draw.

    Returns
    -------
    arviz.InferenceData
        ``prior`` (parameters, including ``E, A, alpha, B, beta`` per family) and
        ``prior_predictive`` with ``loss`` (chain, draw, obs); ``observed_data`` holds the
        actual ``loss`` for comparison, e.g. with ``az.plot_ppc(idata, group="prior")``.
    """
    options = options or ModelOptions()
    data = validate(runs)
    design = build_design(data, use_arch=options.use_arch)
    resolved = resolve_priors(design.n0, design.d0, priors)
    # The local coordinates are flat-based (not forward-samplable); the centred form is the
    # same model, so draw the prior from it.
    centred = ModelOptions(**{**options.to_dict(), "hierarchy": options.hierarchy,
                              "family_parameterization": "centered"})
    model = build_model(design, resolved, centred)
    resolve_blas_flags()
    with model, warnings.catch_warnings():
        # the only Potential is the likelihood, which a prior draw must ignore
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=draws, random_seed=random_seed)
    post = prior.prior
    rng = np.random.default_rng([random_seed, 3])
    theta = post["theta"].values.reshape(draws, len(design.families), -1)
    log_mu = log_mean_curve(theta, design, math=np)
    sigma_seed = post["sigma_seed"].values.reshape(draws, 1)
    slope = (
        post["seed_size_slope"].values.reshape(draws, 1)
        if "seed_size_slope" in post
        else np.zeros((draws, 1))
    )
    tau_run = sigma_seed * np.exp(slope * design.run_log_n)
    offsets = rng.standard_normal(tau_run.shape) * tau_run
    sigma = post["sigma_obs"].values.reshape(draws, 1)
    if options.likelihood == "student_t":
        nu = post["nu"].values.reshape(draws, 1)
        noise = rng.standard_t(nu, size=log_mu.shape) * sigma
    elif options.autocorrelation != "none":
        rho = post["ar_rho"].values.reshape(draws, 1)
        phi = ar_phi(rho, design.obs_gap, design.obs_prev, options.autocorrelation)
        innov = rng.standard_normal(log_mu.shape)
        noise = np.empty_like(innov)
        for i in range(design.n_obs):  # sequential AR(1) recursion along each run
            prev = design.obs_prev[i]
            carried = phi[:, i] * noise[:, prev] if prev >= 0 else 0.0
            noise[:, i] = carried + np.sqrt(1 - phi[:, i] ** 2) * innov[:, i]
        noise *= sigma
    else:
        noise = rng.standard_normal(log_mu.shape) * sigma
    loss = np.exp(log_mu + offsets[:, design.obs_run] + noise)
    predictive = xr.Dataset(
        {"loss": (("chain", "draw", "obs"), loss[None])},
        coords={"chain": [0], "draw": np.arange(draws), "obs": np.arange(design.n_obs)},
    )
    observed = xr.Dataset({"loss": ("obs", np.exp(design.log_loss))},
                          coords={"obs": np.arange(design.n_obs)})
    return az.InferenceData(prior=post, prior_predictive=predictive, observed_data=observed)
