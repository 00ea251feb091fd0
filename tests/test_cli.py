"""The ``bayescale`` command, driven in a subprocess like a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayescale

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m bayescale.cli <args>`` and capture its output."""
    env = dict(os.environ)  # with the compile cache bayescale set up (tests/conftest.py)
    env.setdefault("MPLBACKEND", "Agg")
    return subprocess.run(
        [sys.executable, "-m", "bayescale.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, one ``bayescale: error: ...`` line on stderr naming the problem."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bayescale: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_runs() -> pd.DataFrame:
    sim = bayescale.simulate(n_families=2, sizes=(2e7, 2e8), n_seeds=1, n_checkpoints=10)
    return sim.runs


@pytest.fixture
def good_csv(tmp_path: Path, tiny_runs: pd.DataFrame) -> Path:
    path = tmp_path / "runs.csv"
    tiny_runs.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------ datasets
def test_datasets_lists_the_four_bundled_datasets():
    proc = run_cli("datasets")
    assert proc.returncode == 0, proc.stderr
    for name in ("olmo-ladder", "hitchhiker", "deepmind-routing", "nanogpt-replicates"):
        assert name in proc.stdout


def test_help_lists_every_subcommand():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("datasets", "validate", "fit", "predict", "compare", "report", "evaluate", "demo",
                "cache"):
        assert cmd in proc.stdout


# ------------------------------------------------------------------------------ validate
def test_validate_good_csv(good_csv: Path, tiny_runs: pd.DataFrame):
    proc = run_cli("validate", str(good_csv))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: ")
    assert f"{len(tiny_runs)} checkpoints" in proc.stdout
    assert f"{tiny_runs['run'].nunique()} runs" in proc.stdout
    assert "2 families" in proc.stdout


def test_validate_parquet(tmp_path: Path, tiny_runs: pd.DataFrame):
    pytest.importorskip("pyarrow")
    path = tmp_path / "runs.parquet"
    runs = tiny_runs.copy()
    runs["run_tokens"] = runs["run_tokens"].astype("Int64")  # a nullable integer column
    runs.to_parquet(path, index=False)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 0, proc.stderr
    assert f"{len(runs)} checkpoints" in proc.stdout


def _bad(tiny_runs: pd.DataFrame, problem: str) -> pd.DataFrame:
    df = tiny_runs.copy()
    if problem == "missing column":
        return df.drop(columns=["tokens"])
    if problem == "nan":
        df.loc[df.index[3], "loss"] = np.nan
        return df
    if problem == "perplexity":
        df["loss"] = np.exp(df["loss"]) * 10  # perplexities of a weak model: all > 20
        return df
    raise AssertionError(problem)


@pytest.mark.parametrize(
    ("problem", "needles"),
    [
        ("missing column", ("missing required column", "'tokens'")),
        ("nan", ("'loss'", "NaN")),
        ("perplexity", ("perplexities", "--allow-perplexity")),
    ],
)
def test_validate_bad_input_is_one_line_error(tmp_path, tiny_runs, problem, needles):
    path = tmp_path / "bad.csv"
    _bad(tiny_runs, problem).to_csv(path, index=False)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert_one_line_error(proc, *needles)
    assert proc.stdout == ""


def test_validate_allow_perplexity_flag(tmp_path, tiny_runs):
    path = tmp_path / "ppl.csv"
    _bad(tiny_runs, "perplexity").to_csv(path, index=False)
    proc = run_cli("validate", str(path), "--allow-perplexity")
    assert proc.returncode == 0, proc.stderr


def test_debug_shows_the_traceback(tmp_path, tiny_runs):
    path = tmp_path / "bad.csv"
    _bad(tiny_runs, "nan").to_csv(path, index=False)
    for args in (("--debug", "validate", str(path)), ("validate", str(path), "--debug")):
        proc = run_cli(*args)
        assert proc.returncode != 0
        assert "Traceback" in proc.stderr
        assert "DataError" in proc.stderr
        assert "bayescale: error:" not in proc.stderr


def test_missing_file_is_one_line_error(tmp_path):
    proc = run_cli("validate", str(tmp_path / "nope.csv"))
    assert_one_line_error(proc, "no such file", "nope.csv")


def test_usage_errors_exit_non_zero():
    proc = run_cli("predict", "fit.nc")  # --params and --tokens are required
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--params" in proc.stderr


def test_compare_needs_a_target_before_loading(tmp_path):
    proc = run_cli("compare", str(tmp_path / "fit.nc"), "a", "b", "--params", "1e9")
    assert_one_line_error(proc, "--params and --tokens, or --compute")


# ------------------------------------------------------------------------------ fit round trip
@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_runs) -> Path:
    """``bayescale fit`` on the tiny simulated table written to CSV."""
    tmp = tmp_path_factory.mktemp("cli_fit")
    table = tmp / "runs.csv"
    tiny_runs.to_csv(table, index=False)
    out = tmp / "fit.nc"
    sampler = "--draws 100 --tune 200 --chains 2".split()
    proc = run_cli("fit", str(table), "--out", str(out), *sampler, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp / "fit.stderr").write_text(proc.stderr)
    assert "diagnostics:" in proc.stdout
    assert f"saved fit to {out}" in proc.stdout
    assert out.exists()
    return out


def assert_only_bayescale_lines(stderr: str) -> None:
    """Every line on stderr is bayescale's own (``bayescale: warning: ...``)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    foreign = [ln for ln in lines if not ln.startswith("bayescale: ")]
    assert not foreign, stderr


def test_fit_and_report_print_only_bayescale_lines(fitted: Path, tmp_path: Path):
    assert_only_bayescale_lines((fitted.parent / "fit.stderr").read_text())
    proc = run_cli("report", str(fitted), "--html", str(tmp_path / "index.html"))
    assert proc.returncode == 0, proc.stderr
    assert_only_bayescale_lines(proc.stderr)


@pytest.mark.slow
def test_fit_predict_round_trip(fitted: Path, tiny_runs: pd.DataFrame):
    fit = bayescale.load(fitted)
    assert fit.idata.posterior.sizes["chain"] == 2
    assert fit.idata.posterior.sizes["draw"] == 100
    assert sorted(fit.families) == sorted(tiny_runs["family"].unique())

    family = fit.families[0]
    target = "--params 2e8 --tokens 1e9 4e9".split()
    proc = run_cli("predict", str(fitted), *target, "--family", family, "--csv")
    assert proc.returncode == 0, proc.stderr
    from io import StringIO

    table = pd.read_csv(StringIO(proc.stdout))
    assert len(table) == 2
    np.testing.assert_allclose(table["tokens"], [1e9, 4e9])
    for band in ("mean", "new_seed", "observed"):
        for level in (50, 90):
            lo, hi = table[f"{band}_{level}_lower"], table[f"{band}_{level}_upper"]
            assert (lo < table["median"]).all() and (table["median"] < hi).all()
    # the CLI agrees with the library on the same saved fit
    pred = fit.predict(2e8, [1e9, 4e9], family=family)
    np.testing.assert_allclose(table["median"], pred["median"].values, rtol=1e-10)
    # loss falls with tokens, and the truth of the simulated family is nearby
    assert table["median"].iloc[1] < table["median"].iloc[0]
    sub = tiny_runs[(tiny_runs["family"] == family) & (tiny_runs["params"] == 2e8)]
    assert abs(table["median"].iloc[1] / sub["loss"].iloc[-1] - 1) < 0.1

    proc = run_cli("predict", str(fitted), "--params", "2e8", "--tokens", "4e9")
    assert proc.returncode == 0, proc.stderr
    assert "median" in proc.stdout and "observed_90_upper" in proc.stdout

    run = str(fit.data["run"].iloc[0])
    proc = run_cli("predict", str(fitted), "--params", "2e8", "--tokens", "4e9", "--run", run)
    assert proc.returncode == 0, proc.stderr
    assert "new_seed" not in proc.stdout  # a seen run keeps its own seed offset

    proc = run_cli("predict", str(fitted), "--params", "2e8", "--tokens", "4e9", "--run", "nope")
    assert_one_line_error(proc, "unknown run 'nope'")


@pytest.mark.slow
def test_compare_and_report_subcommands(fitted: Path, tmp_path: Path):
    fit = bayescale.load(fitted)
    a, b = fit.families
    proc = run_cli("compare", str(fitted), a, b, "--params", "2e8", "--tokens", "4e9")
    assert proc.returncode == 0, proc.stderr
    assert f"P({a} better) = " in proc.stdout
    assert "crossover_compute" in proc.stdout

    proc = run_cli("compare", str(fitted), a, b, "--compute", "1e19", "--csv")
    assert proc.returncode == 0, proc.stderr
    from io import StringIO

    from bayescale.compare import compare

    table = pd.read_csv(StringIO(proc.stdout))
    lib = compare(fit, a, b, compute=1e19).summary()
    got = table.set_index("quantity")["probability"]["P(a better)"]
    assert got == pytest.approx(lib.set_index("quantity")["probability"]["P(a better)"])

    proc = run_cli("compare", str(fitted), a, "no-such", "--params", "2e8", "--tokens", "4e9")
    assert_one_line_error(proc, "no-such")

    out = tmp_path / "report" / "index.html"
    proc = run_cli("report", str(fitted), "--html", str(out), "--title", "tiny fit")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert "tiny fit" in text and "<img" in text

    proc = run_cli("report", str(tmp_path / "missing.nc"), "--html", str(out))
    assert_one_line_error(proc)


# ------------------------------------------------------------------------------ evaluate
@pytest.fixture(scope="module")
def protocol_csv(tmp_path_factory) -> Path:
    """Two simulated families with 3 sizes each, long enough to pass the 10B-token cut."""
    sim = bayescale.simulate(
        n_families=2, sizes=(1e9, 2e9, 4e9), n_seeds=1, n_checkpoints=8, random_seed=1
    )
    path = tmp_path_factory.mktemp("cli_evaluate") / "runs.csv"
    sim.runs.to_csv(path, index=False)
    return path


def test_evaluate_baselines_table_and_csv(protocol_csv: Path, tmp_path: Path):
    out = tmp_path / "results.csv"
    proc = run_cli(
        "evaluate",
        str(protocol_csv),
        "--methods",
        "curve_fit,best_loss",
        "most_trained",
        "--csv",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "ARE curve_fit" in proc.stdout and "ARE most_trained" in proc.stdout
    assert "2 of 2 families evaluated" in proc.stdout
    results = pd.read_csv(out)
    assert len(results) == 2 * 3
    assert set(results["method"]) == {"curve_fit", "best_loss", "most_trained"}
    assert (results["status"] == "ok").all()
    assert (results["are"] < 0.2).all()


# starts a LocalCluster in a subprocess (~20 s); in the default suite test_batch's
# test_evaluate_on_dask_equals_evaluate_here runs evaluate on a local Dask cluster against the
# serial run, and test_cli_grid_on_a_scheduler_address the CLI's --scheduler option
@pytest.mark.slow
def test_evaluate_on_a_local_dask_cluster_equals_the_serial_run(protocol_csv: Path, tmp_path):
    serial, dask = tmp_path / "serial.csv", tmp_path / "dask.csv"
    args = ("evaluate", str(protocol_csv), "--methods", "curve_fit", "most_trained", "--csv")
    assert run_cli(*args, str(serial)).returncode == 0
    proc = run_cli(*args, str(dask), "--scheduler", "local")
    assert proc.returncode == 0, proc.stderr
    cols = ["family", "method", "status", "are"]
    a = pd.read_csv(serial)[cols].sort_values(cols[:2]).reset_index(drop=True)
    b = pd.read_csv(dask)[cols].sort_values(cols[:2]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_evaluate_min_models_skips_every_family(protocol_csv: Path):
    proc = run_cli("evaluate", str(protocol_csv), "--methods", "curve_fit", "--min-models", "4")
    assert_one_line_error(proc, "no family could be evaluated", "min_models=4")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--methods", "curve_fit,nope"), ("unknown --methods", "nope")),
        (("--max-points", "1"), ("--max-points",)),
    ],
)
def test_evaluate_bad_options_are_one_line_errors(protocol_csv: Path, args, needles):
    assert_one_line_error(run_cli("evaluate", str(protocol_csv), *args), *needles)


def test_evaluate_bad_input_is_one_line_error(tmp_path, tiny_runs):
    path = tmp_path / "bad.csv"
    _bad(tiny_runs, "missing column").to_csv(path, index=False)
    proc = run_cli("evaluate", str(path), "--methods", "curve_fit")
    assert_one_line_error(proc, "missing required column", "'tokens'")
    assert_one_line_error(run_cli("evaluate", str(tmp_path / "nope.csv")), "no such file")


@pytest.mark.slow
def test_evaluate_bayescale_reports_coverage(protocol_csv: Path, tmp_path: Path):
    out = tmp_path / "results.csv"
    sampler = "--draws 100 --tune 200 --chains 2 --max-points 5".split()
    proc = run_cli(
        "evaluate",
        str(protocol_csv),
        "--methods",
        "bayescale",
        *sampler,
        "--csv",
        str(out),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cov90 bayescale" in proc.stdout
    results = pd.read_csv(out)
    assert (results["status"] == "ok").all()
    assert results["coverage_90"].between(0, 1).all()


def test_fit_takes_the_sampler_settings_its_warnings_advise(good_csv, tmp_path, monkeypatch):
    """``--target-accept`` and ``--max-tree-depth`` reach ``bayescale.fit`` (in this process)."""
    from bayescale.cli import main

    seen: dict = {}

    class Stop(Exception):
        pass

    def fake_fit(runs, **kwargs):
        seen.update(kwargs)
        raise Stop("stop before sampling")

    monkeypatch.setattr(bayescale, "fit", fake_fit)
    code = main(["fit", str(good_csv), "--out", str(tmp_path / "f.nc"), "--draws", "7",
                 "--target-accept", "0.97", "--max-tree-depth", "12"])
    assert code == 2 and not (tmp_path / "f.nc").exists()
    assert {k: seen[k] for k in ("draws", "target_accept", "max_tree_depth")} == {
        "draws": 7, "target_accept": 0.97, "max_tree_depth": 12}
    main(["fit", str(good_csv), "--out", str(tmp_path / "g.nc")])
    assert (seen["target_accept"], seen["max_tree_depth"]) == (0.9, 10)
