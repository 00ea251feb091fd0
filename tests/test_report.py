"""Report tables, renderers, plots and the HTML page on one small simulated fit."""

from __future__ import annotations

import dataclasses
import html as _html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from bayescale import report
from bayescale.compare import compare
from bayescale.data.schedule import SCHEDULE_COLUMNS


@pytest.fixture(scope="module")
def split(report_split):
    """``(train, held)``: three families (fam2 a MoE) at four sizes, the largest held out."""
    return report_split


@pytest.fixture(scope="module")
def fitted(arch_fit_and_warnings):
    """The arch > family fit of the training part (a session fixture in tests/conftest.py that
    test_model_options checks too), 2 chains x 250 draws."""
    return arch_fit_and_warnings[0]


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


def _scatter_points(fig, label: str) -> int:
    return sum(
        len(c.get_offsets()) for ax in fig.axes for c in ax.collections if c.get_label() == label
    )


def test_loss_curves_grey_out_held_out_checkpoints_the_fit_would_leave_out(fitted, split):
    # without its schedule, a held-out run's mid-run checkpoints are not final losses: the
    # figure draws them apart from the held-out points it compares with the bands
    _, held = split
    held = held[held["family"] == "fam0"]
    fig = report.plot_loss_curves(fitted, ["fam0"], held_out=held)
    early = held["tokens"] < 0.2 * held.groupby("run")["tokens"].transform("max")  # fit_from
    assert 0 < early.sum() < len(held)
    assert _scatter_points(fig, "held out") == len(held) - early.sum()
    assert _scatter_points(fig, "held out, early (not predicted)") == early.sum()
    unscheduled = held.drop(columns=[c for c in SCHEDULE_COLUMNS if c in held.columns])
    fig = report.plot_loss_curves(fitted, ["fam0"], held_out=unscheduled)
    late = unscheduled["tokens"] >= 0.9 * unscheduled.groupby("run")["tokens"].transform("max")
    assert 0 < late.sum() < len(unscheduled)
    assert _scatter_points(fig, "held out") == late.sum()
    assert _scatter_points(fig, "held out, early (not predicted)") == (~late).sum()


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


# ------------------------------------------------------------------------------- first screen
class _Outline(HTMLParser):
    """Start tags of a page in document order, with their attributes and the open details."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None], int]] = []
        self._details = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs), self._details))
        if tag == "details":
            self._details += 1

    def handle_endtag(self, tag):
        if tag == "details":
            self._details -= 1


def _outline(text: str) -> list[tuple[str, dict[str, str | None], int]]:
    parser = _Outline()
    parser.feed(text)
    return parser.tags


def _first(tags, name: str) -> int:
    return next(i for i, (tag, _, _) in enumerate(tags) if tag == name)


def _converged(diagnostics, n_chains: int) -> bool:
    """The badge's rule, restated: no divergence, R-hat <= 1.01, ESS >= 100 per chain."""
    return (
        diagnostics.divergences == 0
        and diagnostics.max_rhat <= 1.01
        and min(diagnostics.min_ess_bulk, diagnostics.min_ess_tail) >= 100 * n_chains
    )


def _report_with_everything(fitted, targets, split, path):
    _, held = split
    comparison = compare(fitted, "fam0", "fam1", params=6e8, tokens=1.2e10)
    notes = ["first caveat", "second caveat"]
    out = report.html(
        fitted,
        path,
        comparisons={"fam0 vs fam1": comparison},
        predictions=report.prediction_table(fitted, targets),
        notes=notes,
        held_out=held,
    )
    return out, len(notes) + len(comparison.notes)


def test_html_leads_with_the_answer(fitted, targets, split, tmp_path):
    out, n_notes = _report_with_everything(fitted, targets, split, tmp_path / "lead.html")
    text = out.read_text(encoding="utf-8")
    tags = _outline(text)
    details = [i for i, (tag, _, _) in enumerate(tags) if tag == "details"]
    assert len(details) == 2, "notes and diagnostics, each collapsed"
    assert all("open" not in tags[i][1] for i in details)
    first_img, first_table = _first(tags, "img"), _first(tags, "table")
    assert first_img < details[0] and first_table < details[0]
    # the first table is the prediction table, and the curves with bands lead the page
    assert text.index("<table") > text.index('id="predictions"')
    assert text.index('id="loss-curves"') < text.index('id="predictions"')
    # predictions and comparisons, then the credible intervals, then the other figures
    order = [text.index(f'id="{a}"') for a in ("comparisons", "parameters", "figures", "data")]
    assert order == sorted(order)
    assert text.index('id="predictions"') < order[0]
    # caveats and diagnostics: only inside the collapsed blocks, with their counts
    notes = [i for i, (tag, attrs, _) in enumerate(tags) if attrs.get("class") == "note"]
    assert len(notes) == n_notes and all(tags[i][2] > 0 for i in notes)
    assert f"<summary>Notes and caveats ({n_notes})</summary>" in text
    n_problems = len(fitted.diagnostics.problems(2))
    plural = "" if n_problems == 1 else "s"
    assert f"<summary>Sampler diagnostics ({n_problems} problem{plural})</summary>" in text
    assert text.index("divergent transitions") > text.index('<details id="diagnostics"')
    assert "first caveat" in text and "second caveat" in text
    # one badge, above every result, coloured by the fit's diagnostics
    badges = [
        (i, a) for i, (_, a, _) in enumerate(tags) if "badge" in (a.get("class") or "").split()
    ]
    assert len(badges) == 1
    index, attrs = badges[0]
    assert index < first_img
    ok = _converged(fitted.diagnostics, int(fitted.idata.posterior.sizes["chain"]))
    assert attrs["class"] == f"badge badge-{'ok' if ok else 'fail'}"
    assert attrs["data-converged"] == str(ok).lower()


@pytest.mark.parametrize(
    ("change", "converged", "reason"),
    [
        ({"divergences": 0, "max_rhat": 1.004, "min_ess_bulk": 900.0, "min_ess_tail": 700.0},
         True, "max R-hat 1.004"),
        ({"divergences": 3}, False, "3 divergences"),
        ({"divergences": 0, "max_rhat": 1.023}, False, "max R-hat 1.023 &gt; 1.01"),
        ({"divergences": 0, "max_rhat": 1.0, "min_ess_bulk": 150.0}, False, "min ESS 150 &lt; 200"),
    ],
)
def test_html_badge_colour_follows_the_diagnostics(
    fitted, tmp_path, monkeypatch, change, converged, reason
):
    real = fitted.diagnostics
    base = {"min_ess_bulk": 900.0, "min_ess_tail": 900.0,
            "max_rhat": 1.0, "max_tree_depth_share": 0.0}
    diag = dataclasses.replace(real, **{**base, **change})
    assert _converged(diag, 2) is converged
    monkeypatch.setattr(type(fitted), "diagnostics", property(lambda self: diag))
    text = report.html({"one": fitted, "two": fitted}, tmp_path / "badge.html").read_text(
        encoding="utf-8"
    )
    colour = "ok" if converged else "fail"
    badges = re.findall(r'<a class="badge badge-(\w+)"[^>]*title="([^"]*)">([^<]*)</a>', text)
    assert [(b[0], b[2].split(":")[0][2:]) for b in badges] == [(colour, "one"), (colour, "two")]
    assert all(reason in title for _, title, _ in badges)
    if not converged:
        assert all(reason in label for _, _, label in badges)  # the reason is in the text too


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


_PROBE = """<script>
window.addEventListener("load", function () {
  function box(el) {
    if (!el) { return null; }
    var r = el.getBoundingClientRect();
    return {top: r.top, height: r.height, text: el.textContent.slice(0, 200)};
  }
  document.title = "PROBE" + JSON.stringify({
    width: window.innerWidth, height: window.innerHeight,
    img: box(document.querySelector("img")), table: box(document.querySelector("table")),
    details: box(document.querySelector("details"))
  });
});
</script>"""


def _run_chromium(binary: str, profile, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", f"--user-data-dir={profile}", "--window-size=1300,900", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (Debian: apt-get install "
                    "chromium; .ci/run installs it)")
def test_report_first_screen_in_chromium(fitted, targets, split, tmp_path):
    """At 1300x900 the first screen shows a result figure and a result table.

    With ``BAYESCALE_SAVE_SCREENSHOT=1`` the screenshot is also copied to
    ``docs/images/report-first-screen.png``.
    """
    out, _ = _report_with_everything(fitted, targets, split, tmp_path / "report.html")
    binary = _chromium()
    shot = tmp_path / "first-screen.png"
    _run_chromium(binary, tmp_path / "profile", f"--screenshot={shot}", out.as_uri())
    assert shot.is_file()
    with Image.open(shot) as image:
        assert image.size == (1300, 900)
    # the same page with a probe that writes the layout into the title
    probe = tmp_path / "probe.html"
    probe.write_text(
        out.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8"
    )
    dom = _run_chromium(
        binary, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom",
        probe.as_uri(),
    ).stdout
    found = re.search(r"<title>PROBE(.*?)</title>", dom, re.S)
    assert found, dom[:500]
    layout = json.loads(_html.unescape(found.group(1)))
    # headless chromium lays out --dump-dom pages 1300 px wide but shorter than the window; the
    # page's layout does not depend on the viewport's height, so the tops hold for the
    # 1300x900 screenshot
    assert layout["width"] == 1300
    screen = 900
    img, table = layout["img"], layout["table"]
    assert img["height"] > 100, "the figure was not laid out"
    # the figure's top and at least 200 px of it (or all of it), and the table's header and
    # first rows, are on the first screen; the collapsed caveats are not
    assert img["top"] >= 0 and img["top"] + min(img["height"], 200) <= screen
    assert table["top"] + min(table["height"], 60) <= screen
    assert "median" in table["text"] and "observed" in table["text"]  # the prediction table
    assert layout["details"]["top"] > screen
    if os.environ.get("BAYESCALE_SAVE_SCREENSHOT"):
        target = Path(__file__).resolve().parents[1] / "docs" / "images"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target / "report-first-screen.png")
