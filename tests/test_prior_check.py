"""Prior predictive check."""

from __future__ import annotations

import numpy as np

import bayescale
from bayescale.models.options import ModelOptions
from bayescale.prior_check import prior_predictive


def test_prior_predictive_covers_realistic_losses():
    runs = bayescale.load_dataset("olmo-ladder")
    runs = bayescale.thin_log_spaced(bayescale.drop_warmup(runs), max_points=5)
    idata = prior_predictive(runs, draws=200, random_seed=1)
    loss = idata.prior_predictive["loss"].values[0]
    assert loss.shape == (200, len(runs))
    assert np.isfinite(loss).all() and (loss > 0).all()
    # weakly informative: the observed losses sit inside the prior predictive 1-99% range,
    # which is neither absurdly wide nor narrow
    lo, hi = np.quantile(loss, [0.01, 0.99], axis=0)
    observed = idata.observed_data["loss"].values
    assert ((lo < observed) & (observed < hi)).mean() > 0.95
    assert np.median(hi / lo) < 50


def test_prior_predictive_is_seeded_and_has_ar_noise():
    sim = bayescale.simulate(n_families=2, sizes=(2e7, 2e8), n_seeds=1, n_checkpoints=15)
    a = prior_predictive(sim.runs, draws=50, random_seed=3)
    b = prior_predictive(sim.runs, draws=50, random_seed=3)
    np.testing.assert_array_equal(a.prior_predictive["loss"], b.prior_predictive["loss"])
    iid = prior_predictive(sim.runs, ModelOptions(autocorrelation="none"), draws=50,
                           random_seed=3)
    # AR(1) noise is smoother along a run than independent noise with the same draws
    def roughness(idata):
        x = np.log(idata.prior_predictive["loss"].values[0])
        return np.median(np.abs(np.diff(x[:, :15], axis=1)))
    assert roughness(a) < roughness(iid)
