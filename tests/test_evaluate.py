"""Tests of bayescale.evaluate: metrics, scoring, the protocol loop and the grids (baselines only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import bayescale
from bayescale.evaluate import (
    absolute_relative_error,
    are_grid_models_fraction,
    are_grid_models_scaleup,
    crps_from_samples,
    evaluate,
    interval_coverage,
    interval_width,
    plot_are_heatmap,
    score_prediction,
    signed_relative_error,
)
from bayescale.intervals import prediction_dataset

SIZES = (1e9, 2e9, 4e9, 8e9)
ZERO_SD = {"log_E": 0.0, "a": 0.0, "log_alpha": 0.0, "b": 0.0, "log_beta": 0.0}
BASELINES = ("curve_fit", "best_loss", "most_trained")


def _family(sigma: float = 1e-5, sizes=SIZES, seed: int = 0) -> bayescale.Simulation:
    """One simulated family; runs of 20 tokens/param, so every size passes the 10B cut."""
    return bayescale.simulate(
        n_families=1,
        sizes=sizes,
        n_seeds=2,
        n_checkpoints=12,
        sigma_seed=sigma,
        sigma_obs=sigma,
        family_sd=ZERO_SD,
        random_seed=seed,
    )


# ------------------------------------------------------------------------------------ metrics


def test_absolute_and_signed_relative_error_by_hand():
    y, yhat = [2.0, 4.0], [2.2, 3.8]
    # |0.2|/2 = 0.1 and |-0.2|/4 = 0.05
    assert absolute_relative_error(y, yhat) == pytest.approx(0.075)
    # (+0.1 - 0.05) / 2
    assert signed_relative_error(y, yhat) == pytest.approx(0.025)
    assert absolute_relative_error(y, y) == 0.0
    assert np.isnan(absolute_relative_error([], []))


def test_interval_coverage_by_hand():
    y = [1.0, 2.0, 3.0, 4.0]
    lower = [0.5, 2.5, 2.0, 4.0]
    upper = [1.5, 3.0, 3.0, 5.0]
    # inside, below, on the upper bound, on the lower bound -> 3 of 4
    assert interval_coverage(y, lower, upper) == pytest.approx(0.75)


def test_interval_width_by_hand():
    # (0.4 / 2 + 2 / 4) / 2
    assert interval_width([2.0, 4.0], [1.8, 3.0], [2.2, 5.0]) == pytest.approx(0.35)


def test_crps_by_hand():
    # samples {0, 1}, y = 0: E|X - y| = 0.5, E|X - X'| = (0 + 1 + 1 + 0) / 4 = 0.5
    assert crps_from_samples(0.0, [0.0, 1.0]) == pytest.approx([0.25])
    # one sample: CRPS is the absolute error
    assert crps_from_samples([1.0, 2.0], [[3.0, 1.5]]) == pytest.approx([2.0, 0.5])
    # vectorized over points: the same as one point at a time
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=3)
    each = [crps_from_samples(y[j], x[:, j])[0] for j in range(3)]
    assert crps_from_samples(y, x) == pytest.approx(each)


def test_crps_matches_closed_form_normal():
    mu, sigma = 1.0, 0.5
    y = np.array([0.2, 1.0, 1.7, 3.0])
    z = (y - mu) / sigma
    exact = sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    samples = np.random.default_rng(1).normal(mu, sigma, size=(40_000, y.size))
    assert crps_from_samples(y, samples) == pytest.approx(exact, rel=0.02)


def test_crps_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        crps_from_samples([1.0, 2.0], np.ones((10, 3)))


# ------------------------------------------------------------------------------------ scoring


def test_score_prediction_with_band():
    target = pd.DataFrame(
        {
            "run": ["a", "a", "b"],
            "params": [1e9, 1e9, 1e9],
            "tokens": [1e10, 2e10, 2e10],
            "loss": [2.0, 2.0, 4.0],
        }
    )
    # samples uniform on [yhat - 0.5, yhat + 0.5] around medians 2.2, 2.0, 3.0
    med = np.array([2.2, 2.0, 3.0])
    samples = med + np.linspace(-0.5, 0.5, 1001)[:, None]
    pred = prediction_dataset(
        target["params"].to_numpy(), target["tokens"].to_numpy(), med, {"observed": samples}
    )
    s = score_prediction(target, pred, samples=samples)
    assert s["n_target"] == 3 and s["n_final"] == 2  # the 2e10 rows of runs a and b
    assert s["are"] == pytest.approx((0.1 + 0 + 0.25) / 3)
    assert s["are_final"] == pytest.approx((0 + 0.25) / 2)
    # 90% band: +-0.45, 50% band: +-0.25 around the medians
    assert s["coverage_90"] == pytest.approx(2 / 3)
    assert s["coverage_50"] == pytest.approx(2 / 3)
    assert s["coverage_90_final"] == pytest.approx(0.5)
    assert s["width_90"] == pytest.approx(np.mean(0.9 / target["loss"]), rel=1e-3)
    assert np.isfinite(s["crps"]) and np.isfinite(s["crps_rel"])
    # a point prediction has no band: coverage and width are NaN
    point = prediction_dataset(target["params"].to_numpy(), target["tokens"].to_numpy(), med)
    s = score_prediction(target, point)
    assert np.isnan(s["coverage_90"]) and np.isnan(s["width_50"]) and np.isnan(s["crps"])
    with pytest.raises(ValueError, match="points"):
        score_prediction(target.iloc[:2], pred)


# ------------------------------------------------------------------------------------ protocol


def test_protocol_split_on_simulated_family():
    runs = _family().runs
    split = bayescale.protocol_split(runs)
    assert set(split.train["params"]) == {1e9, 2e9, 4e9}
    assert (split.train["tokens"] >= 1e10).all()
    # the 1e9 runs end at 2e10 tokens: only their checkpoints past 10B are kept
    small = runs[(runs["params"] == 1e9) & (runs["tokens"] >= 1e10)]
    assert len(split.train[split.train["params"] == 1e9]) == len(small) > 0
    assert set(split.target["params"]) == {8e9}
    assert set(split.target["run"]) == set(runs.loc[runs["params"] == 8e9, "run"])
    assert (split.target["tokens"] >= 0.7 * 1.6e11 * (1 - 1e-9)).all()
    n_late = int((runs.loc[runs["params"] == 8e9, "tokens"] >= 0.7 * 1.6e11 * (1 - 1e-9)).sum())
    assert len(split.target) == n_late


def test_evaluate_baselines_recover_law_and_skip_small_family(capsys):
    big = _family(seed=1).runs
    small = _family(sizes=(2e9, 8e9), seed=2).runs.assign(family="tiny")
    runs = pd.concat([big, small], ignore_index=True)
    out = evaluate(runs, methods=(*BASELINES, "huber_bootstrap"), n_boot=5)
    assert len(out) == 2 * 4  # family x method
    assert {"family", "method", "status", "reason", "are", "coverage_90", "seconds"} <= set(
        out.columns
    )
    ok = out[out["family"] == "fam0"].set_index("method")
    assert (ok["status"] == "ok").all()
    assert ok.loc["curve_fit", "are"] < 1e-3
    assert ok.loc["best_loss", "are"] > 10 * ok.loc["curve_fit", "are"]
    assert np.isnan(ok.loc["curve_fit", "coverage_90"])
    assert 0 <= ok.loc["huber_bootstrap", "coverage_90"] <= 1
    assert ok.loc["curve_fit", "n_target"] > 0
    skipped = out[out["family"] == "tiny"]
    assert (skipped["status"] == "skipped").all()
    assert skipped["reason"].str.contains("min_models").all()
    assert skipped["are"].isna().all()
    printed = capsys.readouterr().out
    assert "fam0 / curve_fit" in printed and "tiny: skipped" in printed


def test_evaluate_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown methods"):
        evaluate(_family().runs, methods=("nope",))


# ------------------------------------------------------------------------------------ grids


def test_grid_models_fraction_dims_and_coords():
    fam = _family(sizes=(1e9, 2e9, 4e9, 8e9, 16e9)).runs
    da = are_grid_models_fraction(fam, "curve_fit", fractions=(0.5, 1.0))
    assert isinstance(da, xr.DataArray)
    assert da.dims == ("n_models", "fraction")
    assert da["n_models"].values.tolist() == [2, 3, 4]
    assert da["fraction"].values.tolist() == [0.5, 1.0]
    assert da.attrs["method"] == "curve_fit" and da.attrs["family"] == "fam0"
    assert np.all(da.sel(fraction=1.0).values < 1e-2)
    naive = are_grid_models_fraction(fam, "best_loss", n_models=[1, 4], fractions=(1.0,))
    assert naive["n_models"].values.tolist() == [1, 4]
    assert np.isfinite(naive.values).all()


def test_grid_models_scaleup_dims_and_coords():
    fam = _family(sizes=(1e9, 2e9, 4e9, 8e9, 16e9)).runs
    da = are_grid_models_scaleup(fam, "curve_fit")
    assert da.dims == ("n_models", "scale_up")
    assert da["scale_up"].values == pytest.approx([2.0, 4.0, 8.0, 16.0])
    assert da["max_train_params"].values == pytest.approx([8e9, 4e9, 2e9, 1e9])
    # k models need k sizes at or below the largest one used
    assert np.isfinite(da.sel(n_models=4, scale_up=2.0))
    assert np.isnan(da.sel(n_models=3, scale_up=8.0))
    assert np.isnan(da.sel(n_models=2, scale_up=16.0))
    fig = plot_are_heatmap(da)
    assert len(fig.axes) == 2  # heatmap + colorbar
