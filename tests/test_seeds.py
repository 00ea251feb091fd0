"""Seed variability from replicate runs: the replicate table, the gap probability, recovery."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import bayescale
from bayescale.seeds import SeedVariability, replicate_table, seed_variability


def _replicates(sigmas: dict[str, float], n_configs: int, n_seeds: int, seed: int = 0):
    """Final-checkpoint run table: per group, configs at different sizes, seeds around them."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, sigma in sigmas.items():
        for c in range(n_configs):
            params = 1e8 * (c + 1)
            base = 3.5 - 0.1 * c
            for s in range(n_seeds):
                loss = base * np.exp(sigma * rng.standard_normal())
                rows.append({"family": group, "run": f"{group}-c{c}-s{s}", "params": params,
                             "tokens": 2e9 * (c + 1), "loss": loss, "config": f"c{c}"})
    return pd.DataFrame(rows)


def test_replicate_table_keeps_replicated_configs_and_drops_short_runs():
    runs = _replicates({"g": 0.01}, n_configs=2, n_seeds=2)
    lone = runs.iloc[[0]].assign(run="lone", config="alone")
    short = runs.iloc[[0]].assign(run="short", tokens=1e9)  # crashed seed of config c0
    with pytest.warns(UserWarning, match="1 run"):
        table = replicate_table(pd.concat([runs, lone, short]))
    assert sorted(table["run"]) == sorted(runs["run"])
    assert set(table["config"]) == {"g/c0", "g/c1"}
    np.testing.assert_allclose(table["log_loss"], np.log(table["loss"]))


def test_replicate_table_says_what_is_missing():
    runs = _replicates({"g": 0.01}, n_configs=1, n_seeds=2)
    with pytest.raises(bayescale.DataError, match="'config' column"):
        replicate_table(runs.drop(columns="config"))
    with pytest.raises(bayescale.DataError, match="two or more runs"):
        replicate_table(runs.assign(config=["a", "b"]))


def test_gap_probability_matches_the_normal_difference_of_two_seeds():
    sigma = np.full((2, 50), 0.01)
    post = {"sigma_seed_pop": sigma, "sigma_seed": sigma[..., None], "tau": sigma}
    idata = az.from_dict(posterior=post, coords={"group": ["g"]},
                         dims={"sigma_seed": ["group"]})
    sv = SeedVariability(idata=idata, replicates=pd.DataFrame())
    got = sv.gap_probability([0.01, 0.04])
    # log L1 - log L2 ~ N(0, 2 sigma^2): P(|diff| >= log 1.01)
    want = 2 * norm.sf(np.log([1.01, 1.04]) / (np.sqrt(2) * 0.01))
    np.testing.assert_allclose(got["mean"].values, want, rtol=1e-12)
    np.testing.assert_allclose(sv.gap_probability(0.01, group="g")["median"].values, want[:1])
    with pytest.raises(KeyError, match="unknown group"):
        sv.gap_probability(0.01, group="nope")


@pytest.mark.slow
def test_seed_sd_per_group_is_recovered():
    sigmas = {"a": 0.002, "b": 0.004, "c": 0.008, "d": 0.003}
    runs = _replicates(sigmas, n_configs=8, n_seeds=3, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        sv = seed_variability(runs, draws=500, tune=500, chains=2, random_seed=1)
    table = replicate_table(runs)
    for group in sigmas:
        rows = table[table["group"] == group]
        within = rows["log_loss"] - rows.groupby("config")["log_loss"].transform("mean")
        realised = np.sqrt((within**2).sum() / (len(rows) - rows["config"].nunique()))
        draws = sv.idata.posterior["sigma_seed"].sel(group=group).values
        lo, hi = np.quantile(draws, [0.05, 0.95])
        assert lo < realised < hi, (group, lo, realised, hi)
    # the largest and the smallest seed sd are told apart
    post = sv.idata.posterior["sigma_seed"]
    assert float((post.sel(group="c") > post.sel(group="a")).mean()) > 0.99
