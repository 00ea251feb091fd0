"""Config effects: a configuration's offset (shared by its seeds) separated from seed noise."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.data.prepare import has_replicates
from bayescale.models.design import build_design

TRUE_SIGMA_CONFIG = 0.02
TRUE_SIGMA_SEED = 0.002


def test_configs_label_runs_and_prefix_clashing_labels():
    runs = pd.DataFrame({
        "family": ["f1"] * 4 + ["f2"] * 2,
        "run": ["a1", "a1", "a2", "b", "c1", "c2"],
        "params": [1e8, 1e8, 1e8, 2e8, 1e8, 1e8],
        "tokens": [1e9, 2e9, 1e9, 1e9, 1e9, 1e9],
        "loss": [3.0, 2.9, 3.0, 2.8, 3.1, 3.1],
        "config": ["small", "small", "small", None, "small", "small"],
    })
    design = build_design(bayescale.validate(runs))
    labels = dict(zip(design.runs, design.configs[design.run_config], strict=True))
    # run b has no config: it is its own; "small" is used in two families: prefixed
    assert labels == {"a1": "f1/small", "a2": "f1/small", "b": "b", "c1": "f2/small",
                      "c2": "f2/small"}
    design.check_configs()


def test_a_config_mixing_sizes_is_refused():
    runs = pd.DataFrame({
        "family": ["f"] * 2, "run": ["r1", "r2"], "params": [1e8, 2e8],
        "tokens": [1e9, 1e9], "loss": [3.0, 2.9], "config": ["same", "same"],
    })
    with pytest.raises(bayescale.DataError, match="mix sizes"):
        build_design(bayescale.validate(runs)).check_configs()


def test_replicates_are_configs_of_two_or_more_runs_of_one_size():
    runs = pd.DataFrame({
        "family": ["f"] * 3 + ["g"], "run": ["r1", "r2", "r3", "r4"],
        "params": [1e8, 1e8, 2e8, 1e8], "tokens": 1e9, "loss": 3.0,
        "config": ["c1", "c1", "c2", "c1"],
    })
    assert has_replicates(runs)
    assert not has_replicates(runs.drop(columns="config"))
    # "c1" of family g is another config: one run each
    assert not has_replicates(runs.assign(config=["c1", "c2", "c3", "c1"]))
    assert not has_replicates(runs.assign(config=None))
    # a config that mixes sizes cannot have config effects: no replicates then
    assert not has_replicates(runs.assign(config=["c1", "c1", "c1", "c4"]))


def test_config_effects_need_the_normal_likelihood():
    with pytest.raises(ValueError, match="config_effects"):
        bayescale.ModelOptions(likelihood="student_t", autocorrelation="none",
                               config_effects=True)


@pytest.fixture(scope="module")
def config_sim():
    """3 families x 4 sizes x 3 seeds; each (family, size) config sits off the law."""
    sim = bayescale.simulate(n_families=3, sizes=(2e7, 6e7, 2e8, 6e8), n_seeds=3,
                             n_checkpoints=15, sigma_seed=TRUE_SIGMA_SEED, sigma_obs=0.004,
                             random_seed=21)
    rng = np.random.default_rng(5)
    configs = sim.runs["config"].unique()
    offset = dict(zip(configs, TRUE_SIGMA_CONFIG * rng.standard_normal(configs.size),
                      strict=True))
    runs = sim.runs.assign(loss=sim.runs["loss"] * np.exp(sim.runs["config"].map(offset)))
    # the seed sd these 36 runs realise (pooled within configs): what the data can identify
    u = sim.run_effects
    config_of = sim.runs.groupby("run")["config"].first().loc[u.index].to_numpy()
    within = u - u.groupby(config_of).transform("mean")
    realised_seed_sd = float(np.sqrt((within**2).sum() / (u.size - np.unique(config_of).size)))
    return runs, offset, realised_seed_sd


@pytest.mark.slow
def test_config_and_seed_sds_are_told_apart(config_sim, tmp_path):
    runs, offset, realised_seed_sd = config_sim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        # every checkpoint: the simulated curves follow the law from the first one, and the
        # seed sd is identified from the spread of whole runs
        # config effects are on by default: the table has replicates
        fit = bayescale.fit(runs, autocorrelation="none", draws=400, tune=600, chains=2,
                            random_seed=3, progressbar=False, fit_from=None)
    assert fit.options.config_effects
    post = fit.idata.posterior
    lo_c, hi_c = np.quantile(post["sigma_config"].values, [0.05, 0.95])
    lo_s, hi_s = np.quantile(post["sigma_seed"].values, [0.05, 0.95])
    assert lo_c < TRUE_SIGMA_CONFIG < hi_c
    assert lo_s < realised_seed_sd < hi_s
    assert hi_s < 0.5 * TRUE_SIGMA_CONFIG  # the seeds, not the configs, set sigma_seed
    # each config's recovered offset tracks the truth it was given (not perfectly: with 4 sizes
    # per family the law's own curve can bend to absorb part of the offsets; measured r = 0.87)
    est = post["config_effect"].mean(("chain", "draw")).to_series()
    truth = pd.Series(offset).loc[est.index]
    assert np.corrcoef(est, truth)[0, 1] > 0.75
    # log-likelihood per config (leave-one-config-out units)
    assert fit.idata.log_likelihood["log_loss"].dims[-1] == "config"

    # a new seed of a known config is sharper than a run of a new configuration
    config = "fam0-6e+07"
    known = fit.predict(6e7, 1.2e9, config=config)
    new = fit.predict(6e7, 1.2e9, family="fam0")

    def width(p):
        band = p["new_seed"].sel(level=0.9)
        return float(band.sel(bound="upper")[0] - band.sel(bound="lower")[0])

    assert width(known) < 0.6 * width(new)
    # the known config's prediction sits on its own (offset) curve
    rows = runs[runs["config"] == config]
    final = rows[np.isclose(rows["tokens"], 1.2e9)]
    assert len(final) == 3
    assert abs(float(known["median"][0]) / final["loss"].mean() - 1) < 0.01

    path = fit.save(tmp_path / "config_fit.nc")
    again = bayescale.load(path)
    np.testing.assert_allclose(again.predict(6e7, 1.2e9, config=config)["new_seed"].values,
                               known["new_seed"].values)
    with pytest.raises(KeyError, match="unknown config"):
        fit.predict(6e7, 1.2e9, config="nope")
