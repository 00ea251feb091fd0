"""Report tables, renderers, plots and the HTML page on one small simulated fit."""

from __future__ import annotations

import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import bayescale
from bayescale import report
from bayescale.compare import compare


@pytest.fixture(scope="module")
def sim():
    return bayescale.simulate(
        n_families=3, sizes=(2e7, 6e7, 2e8, 6e8), n_checkpoints=8, random_seed=3
    )


@pytest.fixture(scope="module")
def split(sim):
    runs = sim.runs.copy()
    runs["arch"] = np.where(runs["family"] == "fam2", "moe", "dense")
    held = runs["params"] == runs["params"].max()
    return runs[~held].reset_index(drop=True), runs[held].reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted(split):
    train, _ = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        return bayescale.fit(
            train,
            hierarchy=("arch", "family"),
            draws=250,
            tune=300,
            chains=2,
            random_seed=1,
            progressbar=False,
        )


@pytest.fixture(scope="module")
def targets(split):
    _, held = split
    final = held.sort_values("tokens").groupby("run").tail(1)
    return final[["family", "run", "params", "tokens", "loss"]].rename(columns={"run": "label"})


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------- tables
def test_credible_intervals_columns_and_dtypes(fitted):
    table = report.credible_intervals(fitted, level=0.8)
    assert tuple(table.columns) == report.CREDIBLE_INTERVAL_COLUMNS
    for col in ("parameter", "scope", "group"):
        assert pd.api.types.is_string_dtype(table[col]), col
    for col in ("mean", "sd", "median", "lower", "upper", "level", "r_hat", "ess", "ess_tail"):
        assert table[col].dtype == np.float64, col
    assert (table["level"] == 0.8).all()
    assert (table["lower"] <= table["median"]).all() and (table["median"] <= table["upper"]).all()
    fam = table[table["scope"] == "family"]
    assert set(fam["group"]) == set(fitted.families)
    assert set(fam["parameter"]) == {"E", "A", "alpha", "B", "beta"}
    assert len(fam) == 5 * len(fitted.families)
    assert set(table.loc[table["scope"] == "arch", "group"]) == {"dense", "moe"}
    assert (table["scope"] == "population").sum() == 5
    noise = set(table.loc[table["scope"] == "noise", "parameter"])
    assert {"sigma_seed", "sigma_obs"} <= noise
    # agrees with the posterior
    alpha0 = fitted.idata.posterior["alpha"].sel(family="fam0").values
    row = fam[(fam["group"] == "fam0") & (fam["parameter"] == "alpha")].iloc[0]
    assert row["mean"] == pytest.approx(alpha0.mean())
    assert np.isfinite(table["r_hat"]).all() and (table["ess"] > 0).all()


def test_prediction_table_scores_the_truth(fitted, targets):
    table = report.prediction_table(fitted, targets, levels=(0.5, 0.9))
    assert len(table) == len(targets)
    assert (table["label"].to_numpy() == targets["label"].to_numpy()).all()
    for band in ("mean", "new_seed", "observed"):
        for bound in ("lower", "upper"):
            assert table[f"{band}_{bound}_90"].dtype == np.float64
    width = {b: table[f"{b}_upper_90"] - table[f"{b}_lower_90"] for b in ("mean", "new_seed")}
    assert (width["mean"] < width["new_seed"]).all()  # seed variability widens the band
    assert table["inside_new_seed_90"].dtype == bool
    np.testing.assert_allclose(table["are"], np.abs(table["median"] / table["loss"] - 1))
    assert table["are"].max() < 0.2


def test_prediction_table_new_family_and_arch(fitted):
    targets = pd.DataFrame(
        {
            "family": ["fam0", "unseen", None],
            "arch": [None, None, "moe"],
            "params": [1e9, 1e9, 1e9],
            "tokens": [2e10, 2e10, 2e10],
        }
    )
    table = report.prediction_table(fitted, targets, levels=(0.9,))
    assert np.isfinite(table["median"]).all()
    assert "are" not in table.columns
    width = table["mean_upper_90"] - table["mean_lower_90"]
    assert width.iloc[1] > width.iloc[0]  # a new family is more uncertain than a fitted one


def test_data_summary_and_diagnostics(fitted):
    summary = report.data_summary(fitted)
    assert list(summary["family"]) == sorted(fitted.families)
    assert summary["runs"].dtype == np.int64
    assert "arch" in summary.columns
    diag = report.diagnostics_table(fitted)
    assert list(diag.columns) == ["check", "value", "ok"]
    assert diag["ok"].dtype == bool


def test_markdown_and_latex():
    df = pd.DataFrame(
        {"name": ["a_b", "c|d"], "value": [1.23456789, np.nan], "flag": [True, False]}
    )
    md = report.to_markdown(df, digits=3)
    lines = md.strip().splitlines()
    assert lines[0] == "| name | value | flag |"
    assert lines[1] == "|:---|---:|:---|"
    assert "| a_b | 1.23 | yes |" in md
    assert r"c\|d" in md
    tex = report.to_latex(df, caption="Fit 50%", label="tab:x")
    assert r"\begin{tabular}{lrl}" in tex
    assert r"a\_b" in tex and r"Fit 50\%" in tex and r"\label{tab:x}" in tex
    assert tex.count(r"\\") == 3


# ------------------------------------------------------------------------------- plots
def test_plots_render(fitted, split, targets):
    _, held = split
    figs = [
        report.plot_loss_curves(fitted, held_out=held),
        report.plot_loss_curves(fitted, ["fam1"], level=0.5, max_sizes=2),
        report.plot_prediction_fan(
            fitted, 6e8, 1.2e10, family="fam0", truth=held[held["family"] == "fam0"]
        ),
        report.plot_prediction_fan(fitted, 6e8, np.geomspace(1e9, 1e10, 5), arch="moe"),
        report.plot_forest(fitted),
        report.plot_comparison(compare(fitted, "fam0", "fam1", params=6e8, tokens=1.2e10)),
        report.plot_comparison(compare(fitted, "moe", "dense", compute=1e19)),
        report.plot_sigma_seed(fitted),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        fig.canvas.draw()
        assert report.figure_to_base64(fig).startswith("iVBOR")  # PNG magic


def test_replicate_spread(fitted):
    reps = report.replicate_spread(fitted.data)
    # the simulator makes two seeds per config
    assert len(reps) == fitted.data["config"].nunique()
    assert (reps["n_runs"] == 2).all() and (reps["sd_log_loss"] >= 0).all()


# ------------------------------------------------------------------------------- html
def test_html_is_self_contained(fitted, targets, split, tmp_path):
    _, held = split
    comparison = compare(fitted, "fam0", "fam1", params=6e8, tokens=1.2e10)
    preds = report.prediction_table(fitted, targets)
    out = report.html(
        fitted,
        tmp_path / "sub" / "report.html",
        comparisons=[comparison],
        predictions=preds,
        notes="a note with <angle> brackets",
        held_out=held,
        png_dir=tmp_path / "png",
        figures={"extra fan": report.plot_prediction_fan(fitted, 6e8, 1.2e10, family="fam2")},
    )
    assert out.is_file()
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", text)
    assert refs, "expected embedded images"
    assert not [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "<script" not in text
    for fam in fitted.families:
        assert fam in text
    assert "data:image/png;base64," in text
    assert "&lt;angle&gt;" in text
    assert "fam0 vs fam1" in text
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert "loss-curves.png" in pngs and "comparison-fam0-vs-fam1.png" in pngs


def test_html_several_fits_and_target_tables(fitted, targets, tmp_path):
    out = report.html(
        {"one": fitted, "two": fitted},
        tmp_path / "two.html",
        predictions={"held out": targets},  # predicted with the first fit
    )
    text = out.read_text(encoding="utf-8")
    assert "one: data" in text and "two: parameters" in text
    assert "Mean absolute relative error" in text
