"""Every modelling option builds, samples and predicts (tiny fits: structure, not accuracy)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayescale
from bayescale.quiet import is_bayescale_warning

TINY = {"draws": 100, "tune": 200, "chains": 2, "progressbar": False, "random_seed": 0}


@pytest.fixture(scope="module")
def runs():
    sim = bayescale.simulate(n_families=3, sizes=(2e7, 1e8, 5e8), n_seeds=2, n_checkpoints=12,
                             random_seed=8)
    arch = sim.runs["family"].map({"fam0": "dense", "fam1": "dense", "fam2": "moe"})
    return sim.runs.assign(arch=arch)


@pytest.mark.parametrize(
    "options, extra",
    [
        # the arch > family model with the default parameterization: test_arch_option_... below
        ({"autocorrelation": "none", "family_parameterization": "centered"}, None),
        # the non-centred branch (z_theta offsets) is sampled in the default suite by the next
        # case, which adds arch and shared components to it
        pytest.param({"family_parameterization": "noncentered"}, "z_theta",
                     marks=pytest.mark.slow),
        ({"hierarchy": ("arch", "family"), "family_parameterization": "noncentered",
          "shared": ("b", "log_beta")}, "tau_theta_free"),
        ({"family_parameterization": "centered", "shared": ("log_beta",)}, "theta_free"),
        ({"shared": ("b", "log_beta")}, "theta_local_z"),
        # ~45-120 s each at these settings (LKJ: the centred MvNormal samples slowly)
        pytest.param({"correlated_families": True}, "family_chol", marks=pytest.mark.slow),
        pytest.param({"likelihood": "student_t"}, "nu", marks=pytest.mark.slow),
        pytest.param({"seed_by_size": True}, "seed_size_slope", marks=pytest.mark.slow),
    ],
)
def test_option_samples_and_predicts(runs, options, extra):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bayescale.fit(runs, **options, **TINY)
    _check_option_fit(fit, caught, options, extra)


def test_arch_option_samples_and_predicts(arch_fit_and_warnings):
    """``hierarchy=("arch", "family")``, checked like the options above on the session's fit of
    test_report's table (three families, fam2 a MoE; tests/conftest.py): one compile fewer."""
    from shared_fits import ARCH_OPTIONS

    fit, caught = arch_fit_and_warnings
    _check_option_fit(fit, caught, ARCH_OPTIONS, "theta_arch")


def _check_option_fit(fit, caught, options, extra):
    """A fit with ``options`` sampled and predicts; ``caught`` are the warnings it raised."""
    # every option compiles without another library's warning reaching the user
    foreign = [f"{w.category.__name__}: {w.message}" for w in caught
               if not is_bayescale_warning(w.category, w.filename)]
    assert foreign == []
    post = fit.idata.posterior
    if extra:
        assert extra in post
    for name in ("E", "alpha", "beta", "sigma_seed", "sigma_obs", "run_effect"):
        assert np.isfinite(post[name].values).all()
    assert np.isfinite(fit.idata.log_likelihood["log_loss"].values).all()
    pred = fit.predict(params=1e9, tokens=2e10, family="fam0")
    assert float(pred["observed"].sel(level=0.9, bound="lower")[0]) < float(pred["median"][0])
    for name in options.get("shared", ()):
        # every family (and arch) takes the population value: no spread, no offsets
        k = list(post["component"].values).index(name)
        theta, mu = post["theta"].values[..., k], post["mu_theta"].values[..., k]
        np.testing.assert_array_equal(theta, np.repeat(mu[..., None], theta.shape[-1], -1))
        for spread in ("tau_theta", "tau_arch"):
            if spread in post:
                assert (post[spread].values[..., k] == 0).all()
        assert name not in post["free_component"].values
    if options.get("shared"):
        # a zero spread has no R-hat: NaN in the table, and no 0/0 warning from ArviZ
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            table = fit.credible_intervals()
        zero = table[(table["scope"] == "spread") & (table["sd"] == 0)]
        assert len(zero) >= len(options["shared"]) and zero["r_hat"].isna().all()
    if "arch" in options.get("hierarchy", ()):
        new_moe = fit.predict(params=1e9, tokens=2e10, arch="moe")
        assert np.isfinite(new_moe["median"].values).all()
        assert list(post["arch"].values) == ["dense", "moe"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shared": ("b", "x")}, r"shared must name law parameters .*\['x'\]"),
        ({"shared": ("b", "b"), "family_parameterization": "noncentered"}, "twice"),
        ({"shared": ("log_E", "a", "log_alpha", "b", "log_beta"),
          "family_parameterization": "noncentered"}, "every law parameter"),
        ({"shared": ("a",)}, r"only \('b', 'log_beta'\) can be shared .*\['a'\]"),
        ({"shared": ("b",), "family_parameterization": "noncentered",
          "correlated_families": True}, "correlated_families=False"),
    ],
)
def test_shared_parameters_that_cannot_be_honoured_raise(runs, options, message):
    with pytest.raises(ValueError, match=message):
        bayescale.fit(runs, **options, **TINY)


def test_shared_options_round_trip_through_a_saved_fit(runs, tmp_path):
    from bayescale.models import ModelOptions

    options = ModelOptions(family_parameterization="noncentered", shared=["b", "log_beta"])
    assert options.shared == ("b", "log_beta")
    assert options.free_components == (0, 1, 2)
    assert ModelOptions(**options.to_dict()) == options


@pytest.mark.slow
def test_shared_data_term_is_recovered():
    """Families that truly share B and beta: the shared fit's 90% intervals hold the truth."""
    sim = bayescale.simulate(n_families=4, sizes=(2e7, 6e7, 2e8, 6e8), n_seeds=1,
                             n_checkpoints=15, family_sd={"b": 0.0, "log_beta": 0.0},
                             random_seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)  # checked below
        fit = bayescale.fit(sim.runs, shared=("b", "log_beta"), draws=500, tune=800, chains=2,
                            target_accept=0.95, progressbar=False, random_seed=1)
    assert fit.diagnostics.divergences <= 5  # of 1,000 draws
    assert fit.diagnostics.max_rhat < 1.02
    for name in ("B", "beta"):
        draws = fit.idata.posterior[name].values[..., 0].ravel()
        truth = float(sim.families[name].iloc[0])
        lo, hi = np.quantile(draws, [0.05, 0.95])
        assert lo < truth < hi, (name, lo, truth, hi)
        # one value for every family
        assert np.ptp(fit.idata.posterior[name].values, axis=-1).max() < 1e-9 * truth
