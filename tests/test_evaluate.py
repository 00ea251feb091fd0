"""Tests of bayescale.evaluate: metrics, scoring, the protocol loop and the grids (baselines only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import bayescale
from bayescale.baselines import MUENNIGHOFF_ALPHA, MUENNIGHOFF_LOG_A
from bayescale.evaluate import (
    Findings,
    absolute_relative_error,
    are_grid_models_fraction,
    are_grid_models_scaleup,
    bootstrap_mean_interval,
    choose_source_run,
    crps_from_samples,
    evaluate,
    interval_coverage,
    interval_width,
    paper_findings,
    plot_are_heatmap,
    score_prediction,
    signed_relative_error,
    summarize_differences,
    transfer,
)
from bayescale.intervals import prediction_dataset
from bayescale.laws.chinchilla import chinchilla_loss

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


# ------------------------------------------------------------------------------------ findings


def test_bootstrap_mean_interval_by_hand():
    values = np.array([0.01, -0.02, 0.03, 0.05, np.nan])
    mean, lo, hi = bootstrap_mean_interval(values, n_boot=500, level=0.8, random_seed=7)
    x = values[:4]
    idx = np.random.default_rng(7).integers(0, 4, size=(500, 4))
    means = x[idx].mean(axis=1)
    assert mean == pytest.approx(x.mean())
    assert lo == pytest.approx(np.quantile(means, 0.1))
    assert hi == pytest.approx(np.quantile(means, 0.9))
    assert lo < mean < hi
    # one value: a degenerate interval; none: NaN
    assert bootstrap_mean_interval([0.3]) == pytest.approx((0.3, 0.3, 0.3))
    assert np.isnan(bootstrap_mean_interval([np.nan])).all()
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean_interval(values, level=1.5)


def test_bootstrap_two_values_exact_quantiles():
    # two families: each resampled mean is a (prob 1/4), (a + b) / 2 (1/2) or b (1/4), so with
    # many replicates the 10% and 90% quantiles are a and b themselves
    mean, lo, hi = bootstrap_mean_interval([1.0, 3.0], n_boot=20_000, level=0.8, random_seed=1)
    assert (mean, lo, hi) == (2.0, 1.0, 3.0)


def test_summarize_differences_matches_hand_computation():
    are = {  # family -> (all, final_only)
        "f1": (0.02, 0.05),
        "f2": (0.03, 0.02),
        "f3": (0.04, 0.10),
        "f4": (0.01, np.nan),  # final-only fit failed: dropped from the pairs
    }
    rows = []
    for fam, (ref, var) in are.items():
        rows.append(
            {"finding": "reference", "family": fam, "method": "m", "variant": "all", "are": ref}
        )
        rows.append(
            {
                "finding": "checkpoints",
                "family": fam,
                "method": "m",
                "variant": "final_only",
                "are": var,
            }
        )
    table = pd.DataFrame(rows)
    out = summarize_differences(table, n_boot=300, level=0.9, random_seed=4)
    assert len(out) == 1
    row = out.iloc[0]
    diff = np.array([0.03, -0.01, 0.06])
    idx = np.random.default_rng(4).integers(0, 3, size=(300, 3))
    lo, hi = np.quantile(diff[idx].mean(axis=1), [0.05, 0.95])
    assert row["finding"] == "checkpoints" and row["variant"] == "final_only"
    assert row["reference"] == "all" and row["n_families"] == 3
    assert row["mean_diff"] == pytest.approx(diff.mean())
    assert row["diff_lower"] == pytest.approx(lo) and row["diff_upper"] == pytest.approx(hi)
    assert row["median_diff"] == pytest.approx(0.03)
    assert row["share_reference_better"] == pytest.approx(2 / 3)
    assert row["mean_variant"] == pytest.approx((0.05 + 0.02 + 0.10) / 3)
    assert row["mean_reference"] == pytest.approx((0.02 + 0.03 + 0.04) / 3)


def _warmup_families(n: int = 3, sizes=(1e9, 2e9, 4e9, 8e9, 16e9)) -> pd.DataFrame:
    """Simulated families whose first checkpoints (< 1B tokens) sit far above the law."""
    return bayescale.simulate(
        n_families=n,
        sizes=sizes,
        n_seeds=2,
        n_checkpoints=10,
        sigma_seed=1e-4,
        sigma_obs=1e-4,
        warmup_checkpoints=4,
        warmup_excess=0.3,
        random_seed=5,
    ).runs


def test_paper_findings_with_curve_fit():
    runs = _warmup_families()
    out = paper_findings(runs, methods=("curve_fit",), n_models=(2, 3), n_boot=200, verbose=False)
    assert isinstance(out, Findings)
    pf = out.per_family
    assert set(pf["variant"]) == {"all", "final_only", "no_cut", "k_models_2", "k_models_3"}
    assert (pf["status"] == "ok").all()
    ref = pf[pf["variant"] == "all"]
    assert (ref["are"] < 5e-3).all()  # near noise-free data: the law is recovered
    # final-only keeps one checkpoint per training run (4 training sizes, two seeds each)
    assert (pf.loc[pf["variant"] == "final_only", "n_train"] == 8).all()
    assert (pf.loc[pf["variant"] == "k_models_2", "n_train_sizes"] == 2).all()
    summary = out.summary.set_index("variant")
    assert set(summary.index) == {"final_only", "no_cut", "k_models_2", "k_models_3"}
    assert (summary["n_families"] == 3).all()
    # the warm-up checkpoints the law does not describe: dropping them (the 10B cut) helps
    assert summary.loc["no_cut", "diff_lower"] > 0
    assert summary.loc["no_cut", "share_reference_better"] == 1.0
    # the summary is summarize_differences of the per-family table
    again = summarize_differences(pf, n_boot=200).set_index("variant")
    pd.testing.assert_frame_equal(summary, again)


def test_paper_findings_skips_k_at_or_above_the_training_sizes():
    runs = _warmup_families(n=1, sizes=(1e9, 2e9, 4e9, 8e9))
    out = paper_findings(runs, findings=("n_models",), n_models=(2, 3, 4), verbose=False)
    assert set(out.per_family["variant"]) == {"all", "k_models_2"}  # 3 training sizes
    with pytest.raises(ValueError, match="unknown findings"):
        paper_findings(runs, findings=("nope",))


# ------------------------------------------------------------------------------------ transfer


def _muennighoff_families(sigma: float = 0.0) -> pd.DataFrame:
    """Three families sharing Muennighoff's (A, alpha) with different E, B, beta."""
    A, alpha = np.exp(MUENNIGHOFF_LOG_A), MUENNIGHOFF_ALPHA
    rng = np.random.default_rng(0)
    frames = []
    for f, (E, B, beta) in enumerate([(1.8, 1500.0, 0.35), (2.1, 900.0, 0.3), (1.6, 3000.0, 0.4)]):
        for n in (5e8, 1e9, 2e9, 4e9):
            tokens = np.geomspace(2e9, 20 * n, 12)
            loss = chinchilla_loss(n, tokens, E=E, A=A, alpha=alpha, B=B, beta=beta)
            frames.append(
                pd.DataFrame(
                    {
                        "family": f"f{f}",
                        "run": f"f{f}-{n:.0e}",
                        "params": n,
                        "tokens": tokens,
                        "loss": loss * np.exp(sigma * rng.standard_normal(tokens.size)),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def test_choose_source_run_prefers_the_largest_then_longest_run():
    train = pd.DataFrame(
        {
            "run": ["a", "a", "a", "b", "b", "b", "c", "c", "c", "c", "d", "d"],
            "params": [1e9] * 3 + [2e9] * 3 + [2e9] * 4 + [4e9] * 2,
            "tokens": [1, 2, 3, 1, 2, 5, 1, 2, 3, 4, 1, 2],
        }
    )
    # d is largest but has 2 checkpoints; b and c tie on size, b runs longer
    assert choose_source_run(train) == "b"
    assert choose_source_run(train, min_rows=2) == "d"
    with pytest.raises(ValueError, match="checkpoints"):
        choose_source_run(train, min_rows=5)


def test_transfer_baselines_on_families_with_muennighoffs_term():
    runs = _muennighoff_families()
    out = transfer(runs, methods=("muennighoff", "curve_fit_all"), verbose=False)
    assert len(out) == 3 * 2
    assert (out["status"] == "ok").all()
    assert (out["source_params"] == 2e9).all() and (out["target_params"] == 4e9).all()
    assert (out["scale_up"] == 2.0).all() and (out["n_other_families"] == 2).all()
    m = out[out["method"] == "muennighoff"]
    # the borrowed term is the true one: exact transfer from a single run
    assert (m["are"] < 1e-8).all()
    n_past_cut = int((np.geomspace(2e9, 4e10, 12) >= 1e10).sum())  # the 2e9 run past 10B tokens
    assert (m["n_train"] == n_past_cut).all()
    assert (out.loc[out["method"] == "curve_fit_all", "are"] < 1e-4).all()
    assert m["coverage_90"].notna().all()  # the fixed-term fit has a band


def test_transfer_source_run_override_and_skips():
    runs = _muennighoff_families()
    lone = runs[runs["params"] == 1e9].assign(family="lone", run=lambda x: "lone-" + x["run"])
    runs = pd.concat([runs, lone], ignore_index=True)
    out = transfer(
        runs,
        families=["f0", "lone"],
        methods=("muennighoff",),
        source_runs={"f0": "f0-1e+09"},
        verbose=False,
    )
    row = out.set_index("family")
    assert row.loc["f0", "source_run"] == "f0-1e+09" and row.loc["f0", "scale_up"] == 4.0
    assert row.loc["f0", "are"] < 1e-8
    assert row.loc["lone", "status"] == "skipped"
    with pytest.raises(ValueError, match="not in runs"):
        transfer(runs, families=["nope"])
    with pytest.raises(ValueError, match="unknown methods"):
        transfer(runs, methods=("nope",))


@pytest.mark.slow
def test_transfer_bayescale_borrows_from_other_families():
    runs = _muennighoff_families(sigma=0.003)
    out = transfer(
        runs,
        families=["f1"],
        methods=("bayescale", "muennighoff"),
        fit_kwargs={"draws": 150, "tune": 250, "chains": 2},
        max_points=6,
        verbose=False,
    )
    row = out.set_index("method")
    assert (row["status"] == "ok").all(), row["reason"].tolist()
    assert row.loc["bayescale", "n_train"] > row.loc["muennighoff", "n_train"]
    assert row.loc["bayescale", "are"] < 0.05
    assert 0 <= row.loc["bayescale", "coverage_90"] <= 1


@pytest.mark.slow
def test_paper_findings_with_bayescale_small():
    runs = _warmup_families(n=1, sizes=(1e9, 2e9, 4e9))
    out = paper_findings(
        runs,
        methods=("bayescale",),
        findings=("checkpoints",),  # final-only: one checkpoint per run (AR(1) switched off)
        fit_kwargs={"draws": 150, "tune": 250, "chains": 2},
        max_points=6,
        verbose=False,
    )
    pf = out.per_family
    assert (pf["status"] == "ok").all(), pf["reason"].tolist()
    assert pf["coverage_90"].notna().all()
    assert out.summary["n_families"].tolist() == [1]
