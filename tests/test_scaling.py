"""Unit-scale sampling coordinates: exact (the model is unchanged) and of unit posterior scale."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
import pytest

import bayescale
from bayescale.data.validate import validate
from bayescale.inference import SamplerSettings
from bayescale.models.design import build_design
from bayescale.models.hierarchical import build_model, local_to_theta, theta_to_local
from bayescale.models.options import ModelOptions
from bayescale.models.priors import THETA_NAMES, resolve_priors
from bayescale.models.scaling import (
    family_laplace_factors,
    family_log_density,
    sampling_coordinates,
)
from bayescale.models.start import initial_point


@pytest.fixture(scope="module")
def sim_runs():
    return bayescale.simulate(n_families=3, sizes=(5e7, 2e8, 8e8), n_seeds=2, n_checkpoints=15,
                              random_seed=4).runs


@pytest.fixture(scope="module")
def setup():
    # five sizes: the data pin each family's alpha, which is then sampled as a coordinate
    runs = bayescale.simulate(n_families=3, sizes=(2e7, 6e7, 2e8, 6e8, 2e9), n_seeds=2,
                              n_checkpoints=15, random_seed=4).runs
    design = build_design(validate(runs))
    options = ModelOptions()
    priors = resolve_priors(design.n0, design.d0, None)
    return design, options, priors, sampling_coordinates(design, priors, options)


def _unconstrained(model, point):
    out = {}
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        transform = model.rvs_to_transforms.get(rv)
        x = pt.as_tensor_variable(np.asarray(point[rv.name], dtype=float))
        out[value.name] = (transform.forward(x, *rv.owner.inputs) if transform else x).eval()
    return out


_LINKS = {"mu_theta": lambda x: x, "sigma_seed": np.log, "sigma_obs": np.log,
          "ar_rho": lambda x: np.log(x / (1 - x))}


def _alpha_moved(z, direction, mu, tau):
    """``w`` and ``log r`` of the log-alpha rescaling, written out independently in numpy."""
    d = direction
    var = 1.0 / (d["comp_prec"][:, 2] + tau[2] ** -2)
    r = np.sqrt(var) / d["sd0"]
    shift = (var * (d["info"] + mu[2] / tau[2] ** 2) - d["mean0"]) / d["sd0"]
    w = z + ((r - 1) * np.sum(d["u"] * z, axis=1) + shift)[:, None] * d["u"]
    return w, float(np.sum(d["active"] * np.log(r)))


def _mu_moments(d, priors, tau):
    """Precision and mean of ``mu_theta | tau_theta`` under the Gaussian approximation."""
    mu0 = np.array([priors[name]["mu"] for name in THETA_NAMES])
    sd0 = np.array([priors[name]["sigma"] for name in THETA_NAMES])
    w = d["active"][:, None] * d["comp_prec"] / (1 + tau**2 * d["comp_prec"])
    p = sd0**-2 + w.sum(axis=0)
    return (mu0 * sd0**-2 + (w * d["comp_xhat"]).sum(axis=0)) / p, p


def test_scaled_model_has_the_same_log_density(setup):
    """logp in unit-scale coordinates equals the plain model's at the same parameters.

    Families whose data pin alpha use log alpha as a coordinate, rescaled with
    ``tau_theta[log_alpha]``: the log density gains that rescaling's log-Jacobian.
    """
    design, options, priors, coords = setup
    plain = build_model(design, priors, options)
    scaled = build_model(design, priors, options, **coords.model_inputs())
    flag = coords.alpha_direction["active"]
    assert flag.sum() > 0
    assert set(coords.scales) == set(_LINKS)
    logp_plain = plain.compile_logp(jacobian=True)
    logp_scaled = scaled.compile_logp(jacobian=True)
    loc, chol = coords.local_affine
    rng = np.random.default_rng(0)
    for _ in range(4):
        z = rng.normal(size=loc.shape)
        mu = coords.scales["mu_theta"][0] + 0.05 * rng.normal(size=5)
        tau = coords.start["tau_theta"] * np.exp(0.3 * rng.normal(size=5))
        w, log_jacobian = _alpha_moved(z, coords.alpha_direction, mu, tau)
        local = loc + np.einsum("fij,fj->fi", chol, w)  # log alpha as coordinate where flagged
        theta = local_to_theta(local, design.family_log_n_ref, alpha_coordinate=flag)
        point = {
            "theta_local": theta_to_local(theta, design.family_log_n_ref),
            "mu_theta": mu,
            "tau_theta": tau,
            "sigma_seed": np.exp(coords.scales["sigma_seed"][0] + 0.2 * rng.normal()),
            "sigma_obs": np.exp(coords.scales["sigma_obs"][0] + 0.2 * rng.normal()),
            "ar_rho": np.asarray(rng.uniform(0.1, 0.9)),
        }
        scaled_point = {"theta_local_z": z, "tau_theta": point["tau_theta"]}
        for name, link in _LINKS.items():
            loc_, scale = coords.scales[name]
            scaled_point[f"{name}_z"] = (link(point[name]) - loc_) / scale
        d = coords.alpha_direction
        m_tau, p_tau = _mu_moments(d, priors, tau)
        m_0, p_0 = _mu_moments(d, priors, d["tau0"])
        y = m_0 + (mu - m_tau) * np.sqrt(p_tau / p_0)
        loc_, scale = coords.scales["mu_theta"]
        scaled_point["mu_theta_z"] = (y - loc_) / scale
        log_jacobian += 0.5 * np.sum(np.log(p_0) - np.log(p_tau))
        plain_value = logp_plain(_unconstrained(plain, point))
        scaled_value = logp_scaled(_unconstrained(scaled, scaled_point))
        assert np.isfinite(plain_value)
        assert scaled_value == pytest.approx(plain_value + log_jacobian, rel=1e-9, abs=1e-7)


def _inverse(name, y):
    return {"mu_theta": y, "ar_rho": 1 / (1 + np.exp(-y))}.get(name, np.exp(y))


def test_laplace_factor_whitens_the_family_density(setup):
    """The Laplace factor is deterministic, positive definite and of unit curvature."""
    design, options, _, coords = setup
    loc, chol = coords.local_affine
    context = {**coords.start, **{name: _inverse(name, loc_) for name, (loc_, _) in
                                   coords.scales.items()}}
    flag = coords.alpha_direction["active"]
    again = family_laplace_factors(loc, design, options, context, flag)
    np.testing.assert_allclose(again, chol)
    cov = np.einsum("fij,fkj->fik", chol, chol)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    # Curvature of the log density along the first factor column is -1 (unit scale), checked
    # with an independent second difference along that direction.
    h = 1e-3
    for f in range(loc.shape[0]):
        direction = np.zeros_like(loc)
        direction[f] = chol[f][:, 0]
        vals = [family_log_density(loc + s * h * direction, design, options, context, flag)[f]
                for s in (-1, 0, 1)]
        curvature = (vals[0] - 2 * vals[1] + vals[2]) / h**2
        assert curvature == pytest.approx(-1.0, rel=0.05)


def test_fitted_unit_coordinates_have_order_one_spread(ladder_fit):
    """Posterior sds of the sampled family coordinates are of order one, as intended.

    On the session's default-model fit of the planning ladder (tests/conftest.py): two families
    at three sizes each, so both are sampled in the rescaled local coordinates."""
    fit = ladder_fit
    assert (fit.data.groupby("family")["params"].nunique() >= 3).all()
    sd = fit.idata.posterior["theta_local_z"].std(("chain", "draw")).values
    assert np.all(sd > 0.2) and np.all(sd < 5.0), sd
    assert fit.meta["compile_seconds"] >= 0 and fit.meta["sampling_seconds"] > 0
    assert fit.meta["sampler_settings"]["draws"] == 200


def test_sampler_settings_reject_bad_values():
    with pytest.raises(ValueError, match="sampler"):
        SamplerSettings(sampler="stan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="draws"):
        SamplerSettings(draws=0)
    with pytest.raises(ValueError, match="tune"):
        SamplerSettings(tune=-1)
    with pytest.raises(ValueError, match="target_accept"):
        SamplerSettings(target_accept=1.0)
    for depth in (0, 2.5, 21):
        with pytest.raises(ValueError, match="max_tree_depth"):
            SamplerSettings(max_tree_depth=depth)  # type: ignore[arg-type]


def test_families_with_few_sizes_keep_plain_local_coordinates(sim_runs):
    """A family at one or two sizes is sampled in its plain local coordinates (z = local)."""
    two_sizes = sim_runs[sim_runs["params"] < 5e8]
    design = build_design(validate(two_sizes))
    options = ModelOptions()
    priors = resolve_priors(design.n0, design.d0, None)
    coords = sampling_coordinates(design, priors, options)
    loc, chol = coords.local_affine
    np.testing.assert_array_equal(loc, 0.0)
    np.testing.assert_array_equal(chol, np.broadcast_to(np.eye(5), chol.shape))
    assert np.abs(coords.start["theta_local_z"]).max() > 0.1  # the start itself
    noncentered = sampling_coordinates(design, priors, ModelOptions(
        family_parameterization="noncentered"))
    assert noncentered.local_affine is None and "mu_theta" not in noncentered.scales


def test_lone_family_starts_where_its_least_squares_fit_is(sim_runs):
    """One family is its own population: no rescaling with tau, and the model's theta at the
    start is the starting point's (its coordinates are read in the frame they were made in)."""
    one = sim_runs[sim_runs["family"] == sim_runs["family"].iloc[0]]
    design = build_design(validate(one))
    options = ModelOptions()
    priors = resolve_priors(design.n0, design.d0, None)
    point = initial_point(design, priors, options)
    coords = sampling_coordinates(design, priors, options)
    assert coords.alpha_direction is None
    model = build_model(design, priors, options, **coords.model_inputs())
    values = _unconstrained(model, coords.start)
    theta = model.replace_rvs_by_values([model["theta"]])[0]
    theta_at_start = model.compile_fn(
        theta, inputs=model.value_vars, on_unused_input="ignore"
    )(values)
    expected = local_to_theta(point["theta_local"], design.family_log_n_ref)
    np.testing.assert_allclose(theta_at_start, expected, rtol=1e-9, atol=1e-9)
