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
        ({"hierarchy": ("arch", "family")}, "theta_arch"),
        ({"autocorrelation": "none", "family_parameterization": "centered"}, None),
        ({"family_parameterization": "noncentered"}, "z_theta"),
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
    if "arch" in options.get("hierarchy", ()):
        new_moe = fit.predict(params=1e9, tokens=2e10, arch="moe")
        assert np.isfinite(new_moe["median"].values).all()
        assert list(post["arch"].values) == ["dense", "moe"]
