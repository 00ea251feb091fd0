"""Validation helpers: SBC ranks, uniformity test, prior-draw simulator, predictive coverage."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import bayescale
from bayescale.intervals import prediction_dataset
from bayescale.models.hierarchical import log_mean_curve
from bayescale.models.likelihood import ar_phi
from bayescale.validation import (
    SBC_EXTRA,
    SBC_MAIN,
    RefitModel,
    ar1_noise,
    draw_from_prior,
    inject_spike,
    plot_rank_histograms,
    predictive_coverage,
    rank_uniformity,
    run_parallel,
    run_sbc_replication,
    sbc_design,
    sbc_ranks,
    split_held_out,
    thin_indices,
)

# --------------------------------------------------------------------------- ranks and chi2


def test_exactly_uniform_ranks_give_p_one():
    ranks = np.tile(np.arange(100), 3)  # every rank 0..99 three times
    u = rank_uniformity(ranks, n_keep=99, n_bins=10)
    assert u.chi2 == pytest.approx(0.0)
    assert u.p_value == pytest.approx(1.0)
    assert np.all(u.counts == 30)
    assert u.tail_share == pytest.approx(0.2, abs=0.01)
    assert u.mean_rank == pytest.approx(0.5)


def test_ranks_in_one_bin_give_tiny_p():
    u = rank_uniformity(np.full(100, 99), n_keep=99, n_bins=10)
    # chi2 = (100 - 10)^2/10 + 9 * 10 = 900 with 9 dof
    assert u.chi2 == pytest.approx(900.0)
    assert u.p_value < 1e-100
    assert u.tail_share == 1.0


def test_chi2_matches_hand_computation_with_unequal_bins():
    # L = 9: ranks 0..9 in 4 bins of widths 3, 2, 3, 2 (r * 4 // 10)
    ranks = np.array([0, 1, 2, 2, 3, 5, 6, 7, 7, 7, 8, 9, 9, 0, 4, 4, 5, 1, 2, 3])
    u = rank_uniformity(ranks, n_keep=9, n_bins=4)
    counts = np.array([7, 4, 6, 3])
    expected = 20 * np.array([3, 2, 3, 2]) / 10
    assert np.array_equal(u.counts, counts)
    assert np.allclose(u.expected, expected)
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert u.chi2 == pytest.approx(chi2)
    assert u.p_value == pytest.approx(stats.chi2.sf(chi2, 3))


def test_rank_uniformity_rejects_bad_input():
    with pytest.raises(ValueError):
        rank_uniformity([0, 100], n_keep=99, n_bins=10)
    with pytest.raises(ValueError):
        rank_uniformity([0, 1], n_keep=9, n_bins=11)


def test_uniform_random_ranks_are_not_rejected_too_often():
    rng = np.random.default_rng(0)
    p = [rank_uniformity(rng.integers(0, 100, 100), 99, 10).p_value for _ in range(400)]
    # p-values of a valid test are ~U(0, 1): 1% of them below 0.01 (binomial sd 0.5%)
    assert np.mean(np.array(p) < 0.01) < 0.035
    assert 0.4 < np.mean(p) < 0.6


def test_thin_indices_are_even_and_in_range():
    idx = thin_indices(1000, 99)
    assert idx.size == 99 and np.unique(idx).size == 99
    assert idx.min() >= 0 and idx.max() < 1000
    assert np.all(np.diff(idx) >= 10) and np.all(np.diff(idx) <= 11)
    with pytest.raises(ValueError):
        thin_indices(50, 99)


def test_sbc_ranks_count_thinned_draws_below_truth():
    draws = np.arange(1000.0).reshape(2, 500)  # chain 0: 0..499, chain 1: 500..999
    post = xr.Dataset(
        {
            "mu_theta": (("chain", "draw", "component"), np.stack([draws] * 5, axis=-1)),
            "sigma_obs": (("chain", "draw"), draws),
        },
        coords={"component": ["log_E", "a", "log_alpha", "b", "log_beta"]},
    )
    truth = {"mu_log_alpha": 500.0, "sigma_obs": -1.0}
    ranks, ess = sbc_ranks(post, truth, ["mu_log_alpha", "sigma_obs"], n_keep=99)
    kept = np.arange(1000.0)[thin_indices(1000, 99)]
    assert ranks["mu_log_alpha"] == int(np.sum(kept < 500.0))
    assert 45 <= ranks["mu_log_alpha"] <= 55
    assert ranks["sigma_obs"] == 0
    assert set(ess) == {"mu_log_alpha", "sigma_obs"}


def test_plot_rank_histograms_writes_png(tmp_path):
    rng = np.random.default_rng(1)
    ranks = {name: rng.integers(0, 20, 30) for name in SBC_MAIN}
    path = plot_rank_histograms(ranks, 19, 4, tmp_path / "ranks.png", title="test")
    assert path.exists() and path.stat().st_size > 1000


# --------------------------------------------------------------------------- prior draws


def test_prior_draw_shapes_and_reproducibility():
    template = sbc_design(n_families=3, sizes=(2e7, 2e8), n_seeds=2, n_checkpoints=10)
    draw = draw_from_prior(template, 5)
    assert len(draw.runs) == 3 * 2 * 2 * 10
    assert draw.theta.shape == (3, 5)
    assert draw.run_effects.shape == (12,)
    assert set(draw.truth) == set(SBC_MAIN) | set(SBC_EXTRA)
    assert draw.truth["sigma_obs"] > 0 and draw.truth["sigma_seed"] > 0
    assert 0 < draw.truth["ar_rho"] < 1
    assert np.all(np.isfinite(draw.runs["loss"])) and np.all(draw.runs["loss"] > 0)
    again = draw_from_prior(template, 5)
    assert np.array_equal(again.runs["loss"], draw.runs["loss"])
    other = draw_from_prior(template, 6)
    assert not np.allclose(other.runs["loss"], draw.runs["loss"])
    # reference scales default to the design's geometric means, and can be set
    fixed = draw_from_prior(template, 5, n0=1e8, d0=1e10)
    assert (fixed.n0, fixed.d0) == (1e8, 1e10)


def test_prior_draw_follows_priors_override():
    template = sbc_design(n_families=2, sizes=(2e7, 2e8), n_seeds=1, n_checkpoints=5)
    tight = {"log_E": {"mu": np.log(2.0), "sigma": 1e-6}}
    mu_e = [draw_from_prior(template, i, priors=tight).truth["mu_log_E"] for i in range(5)]
    assert np.allclose(mu_e, np.log(2.0), atol=1e-4)


def test_ar1_noise_has_the_requested_lag_one_correlation():
    rng = np.random.default_rng(3)
    n = 50
    prev = np.arange(n) - 1
    phi = np.r_[0.0, np.full(n - 1, 0.6)]
    x = ar1_noise(phi, prev, rng, size=4000)
    lag1 = np.corrcoef(x[:, 10], x[:, 11])[0, 1]
    lag2 = np.corrcoef(x[:, 10], x[:, 12])[0, 1]
    # 4000 pairs: se of a correlation ~ (1 - 0.36) / sqrt(4000) = 0.01
    assert lag1 == pytest.approx(0.6, abs=0.04)
    assert lag2 == pytest.approx(0.36, abs=0.05)
    assert x[:, 0].std() == pytest.approx(1.0, abs=0.04)  # stationary from the start
    assert x[:, -1].std() == pytest.approx(1.0, abs=0.04)


def test_prior_draw_checkpoint_noise_is_ar1_in_log_tokens():
    template = sbc_design(n_families=4, sizes=(2e7, 6e7, 2e8, 6e8), n_seeds=4, n_checkpoints=50)
    # concentrate the AR prior (Beta(400, 100): rho = 0.8 +- 0.02) to test the recursion
    priors = {"ar_rho": {"alpha": 400.0, "beta": 100.0}}
    draw = draw_from_prior(template, 11, priors=priors)
    design = draw.extra["design"]
    eps = (np.log(draw.runs["loss"].to_numpy()) - log_mean_curve(draw.theta, design, math=np)
           - draw.run_effects[design.obs_run]) / draw.truth["sigma_obs"]
    has_prev = design.obs_prev >= 0
    # log-spaced checkpoints: every gap equals the median gap, so phi = rho everywhere
    phi = ar_phi(draw.truth["ar_rho"], design.obs_gap, design.obs_prev, "log_tokens")
    assert np.allclose(phi[has_prev], draw.truth["ar_rho"])
    lag1 = np.corrcoef(eps[has_prev], eps[design.obs_prev[has_prev]])[0, 1]
    # 3,136 pairs of a strongly correlated series: se of the estimate ~ 0.02
    assert lag1 == pytest.approx(draw.truth["ar_rho"], abs=0.07)
    assert eps.std() == pytest.approx(1.0, abs=0.15)


# --------------------------------------------------------------------------- coverage helpers


class _StubFit:
    """Predicts a Normal(log 2, 0.1) loss on log scale for every point."""

    def predict(self, params, tokens, family=None, levels=(0.5, 0.9)):
        rng = np.random.default_rng(0)
        n = np.asarray(params, dtype=float)
        samples = np.exp(np.log(2.0) + 0.1 * rng.standard_normal((20_000, n.size)))
        return prediction_dataset(n, np.asarray(tokens, dtype=float), np.full(n.size, 2.0),
                                  {"observed": samples}, levels=levels)


def test_predictive_coverage_flags_points_inside_bands():
    z90 = stats.norm.ppf(0.95)
    assert 1.0 < z90 < 2.0  # the 1-sd loss is inside the 90% band, the 2-sd one outside
    losses = 2.0 * np.exp(0.1 * np.array([0.0, 0.5, 1.0, 2.0, -3.0]))
    targets = pd.DataFrame({
        "family": "f", "run": ["r1"] * 3 + ["r2"] * 2, "params": 1e9,
        "tokens": [1e9, 2e9, 4e9, 1e9, 4e9], "loss": losses,
    })
    out = predictive_coverage(_StubFit(), targets)
    # 50% band is +-0.674 sd, 90% band +-1.645 sd
    assert out["inside_0.5"].tolist() == [True, True, False, False, False]
    assert out["inside_0.9"].tolist() == [True, True, True, False, False]
    assert out["final"].tolist() == [False, False, True, False, True]


def test_split_held_out_and_inject_spike():
    template = sbc_design(n_families=2, sizes=(2e7, 2e8), n_seeds=1, n_checkpoints=10)
    train, targets = split_held_out(template, 1e8)
    assert set(train["params"]) == {2e7} and set(targets["params"]) == {2e8}
    spiked, row = inject_spike(train, np.random.default_rng(0), size=0.1, min_fraction=0.5)
    ratio = spiked["loss"].to_numpy() / train["loss"].to_numpy()
    assert np.flatnonzero(~np.isclose(ratio, 1.0)).tolist() == [row]
    assert ratio[row] == pytest.approx(np.exp(0.1))
    assert spiked.loc[row, "tokens"] >= 0.5 * spiked.loc[row, "run_tokens"]


# --------------------------------------------------------------------------- SBC smoke test

SMOKE_PRIORS = {
    "log_E": {"sigma": 0.2},
    "a": {"sigma": 0.5},
    "log_alpha": {"sigma": 0.25},
    "b": {"sigma": 0.5},
    "log_beta": {"sigma": 0.25},
    "family_sd": {"log_E": 0.1, "a": 0.2, "log_alpha": 0.1, "b": 0.2, "log_beta": 0.1},
}


@pytest.mark.slow
def test_sbc_smoke():
    """20 SBC replications with few draws: no gross miscalibration of the default model."""
    n_keep, reps = 19, 20
    job = partial(
        run_sbc_replication,
        base_seed=99,
        priors=SMOKE_PRIORS,
        design={"n_families": 3, "sizes": (2e7, 6e7, 2e8), "n_seeds": 2, "n_checkpoints": 12},
        draws=100,
        tune=300,
        chains=2,
        n_keep=n_keep,
        names=SBC_MAIN,
    )
    records = run_parallel(job, range(reps), workers=2)
    extremes = 0
    for name in SBC_MAIN:
        ranks = np.array([records[i]["ranks"][name] for i in range(reps)])
        u = rank_uniformity(ranks, n_keep, n_bins=4)
        assert u.p_value > 0.001, f"{name}: ranks {sorted(ranks)} (p = {u.p_value:.2g})"
        share = np.mean((ranks == 0) | (ranks == n_keep))
        assert share < 0.5, f"{name}: {share:.0%} of ranks at the extremes"
        extremes += int(np.sum((ranks == 0) | (ranks == n_keep)))
    # expected share of extreme ranks 2/20 = 10%; a sampler stuck at its start or a wrong
    # likelihood puts most truths outside the posterior
    assert extremes / (reps * len(SBC_MAIN)) < 0.25


@pytest.mark.slow
def test_refit_model_gives_the_posterior_of_fit():
    """Compiling once and swapping data, start and coordinates gives fit's model and posterior."""
    import warnings

    from bayescale.data.validate import validate
    from bayescale.models.design import build_design
    from bayescale.models.hierarchical import build_model
    from bayescale.models.priors import resolve_priors
    from bayescale.models.scaling import sampling_coordinates

    template = sbc_design(n_families=2, sizes=(2e7, 2e8), n_seeds=2, n_checkpoints=8)
    draws = [draw_from_prior(template, i, priors=SMOKE_PRIORS) for i in (1, 2)]
    settings = {"draws": 400, "tune": 400, "chains": 2}
    refit = RefitModel(template, priors=SMOKE_PRIORS, n0=draws[0].n0, d0=draws[0].d0, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for draw in draws:  # the second data set needs the swapped data, start and coordinates
            ours = refit.fit(draw.runs, random_seed=3)
            ref = bayescale.fit(draw.runs, priors=SMOKE_PRIORS, n0=draw.n0, d0=draw.d0,
                                random_seed=3, progressbar=False, **settings)
            # the same log density as the model fit builds for this data set, at its draws
            design = build_design(validate(draw.runs), n0=draw.n0, d0=draw.d0)
            priors = resolve_priors(design.n0, design.d0, SMOKE_PRIORS)
            # the options fit and RefitModel chose alike (config effects: the runs have seeds)
            assert refit.options == ref.options and ref.options.config_effects
            coords = sampling_coordinates(design, priors, ref.options)
            fresh = build_model(design, priors, ref.options, **coords.model_inputs())
            logp_fresh, logp_refit = fresh.compile_logp(), refit.model.compile_logp()
            post = ref.idata.posterior
            for k in (0, 57, 311):
                point = {}
                for value in fresh.value_vars:
                    base = value.name.removesuffix("_log__")
                    x = post[base].isel(chain=0, draw=k).values
                    point[value.name] = np.log(x) if value.name.endswith("_log__") else x
                assert logp_refit(point) == pytest.approx(logp_fresh(point), rel=1e-10)
            ours_mean, ref_mean = (float(f.idata.posterior["mu_theta"].mean()) for f in (ours, ref))
            sd = float(ref.idata.posterior["mu_theta"].std(("chain", "draw")).mean())
            assert abs(ours_mean - ref_mean) < 0.5 * sd
    other = sbc_design(n_families=2, sizes=(2e7, 6e7), n_seeds=2, n_checkpoints=8)
    with pytest.raises(ValueError, match="template"):
        refit.fit(other)
