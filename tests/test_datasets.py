"""Bundled datasets: counts match the data card, values match the raw public files."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayescale.data.datasets import list_datasets, load_dataset
from bayescale.data.schedule import SCHEDULES, run_schedule
from bayescale.data.validate import runs_without_schedule

REPO = Path(__file__).resolve().parents[1]
RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAMES = ["olmo-ladder", "hitchhiker", "deepmind-routing", "nanogpt-replicates"]

# The summary table of data/README.md (printed by scripts/build_datasets.py).
CARD = {
    "olmo-ladder": dict(
        rows=3805, runs=34, families=1,
        params=(190_354_176, 3_169_537_280), tokens=(26_214_400, 633_939_689_472),
    ),
    "hitchhiker": dict(
        rows=16534, runs=321, families=23,
        params=(16_800_000, 175_000_000_000), tokens=(104_857_600, 3_095_396_352_000),
    ),
    "deepmind-routing": dict(
        rows=5468, runs=219, families=60,
        params=(16_527_360, 1_308_819_456), tokens=(5_242_880_000, 131_072_000_000),
    ),
    "nanogpt-replicates": dict(
        rows=16869, runs=496, families=39,
        params=(162_354_816, 162_354_816), tokens=(65_536_000, 4_456_448_000),
    ),
}  # fmt: skip

needs_raw = pytest.mark.skipif(not RAW.is_dir(), reason=f"raw data folder {RAW} not present")


@cache
def _load(name: str) -> pd.DataFrame:
    return load_dataset(name)


def data(name: str) -> pd.DataFrame:
    return _load(name).copy()


def final_row(df: pd.DataFrame, run: str) -> pd.Series:
    rows = df[df["run"] == run]
    assert len(rows), f"run {run!r} missing"
    return rows.iloc[-1]


# ------------------------------------------------------------------------------------------
# card numbers and schema
# ------------------------------------------------------------------------------------------
def test_list_datasets_matches_card() -> None:
    listing = list_datasets()
    assert list(listing.columns) == ["name", "description", "rows", "runs", "families", "license"]
    assert listing["name"].tolist() == NAMES
    for _, row in listing.iterrows():
        card = CARD[row["name"]]
        assert (row["rows"], row["runs"], row["families"]) == (
            card["rows"],
            card["runs"],
            card["families"],
        )
        assert row["description"] and "\n" not in row["description"]
    assert str(listing["name"].dtype) == "str"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="valid names: deepmind-routing, hitchhiker"):
        load_dataset("pythia")


@pytest.mark.parametrize("name", NAMES)
def test_counts_and_ranges_match_card(name: str) -> None:
    df = data(name)
    card = CARD[name]
    assert len(df) == card["rows"]
    assert df["run"].nunique() == card["runs"]
    assert df["family"].nunique() == card["families"]
    assert (df["params"].min(), df["params"].max()) == card["params"]
    assert (df["tokens"].min(), df["tokens"].max()) == card["tokens"]


@pytest.mark.parametrize("name", NAMES)
def test_tidy_schema(name: str) -> None:
    df = data(name)
    for col in ("family", "run", "config", "arch", "dataset", "source"):
        assert str(df[col].dtype) == "str", col
    for col in ("params", "tokens", "loss"):
        assert df[col].dtype == np.float64
        assert np.isfinite(df[col]).all() and (df[col] > 0).all()
    assert df["step"].dtype == "Int64"
    per_run = df.groupby("run", sort=False)
    assert (per_run["params"].nunique() == 1).all()
    assert (per_run["family"].nunique() == 1).all()
    assert (per_run["config"].nunique() == 1).all()
    assert (per_run["tokens"].diff().dropna() > 0).all()
    ordered = df.sort_values(["family", "run", "tokens"], kind="mergesort")
    assert df.index.equals(ordered.index)
    # replicates of one config are told apart by seed
    assert not df.drop_duplicates("run").duplicated(["config", "seed"]).any()
    # LR schedule columns, where a dataset has them: text shape, float numbers
    if "schedule" in df.columns:
        assert str(df["schedule"].dtype) == "str"
        assert set(df["schedule"].dropna()) <= set(SCHEDULES)
    for col in ("warmup_tokens", "final_lr_fraction", "schedule_tokens", "lr"):
        if col in df.columns:
            assert df[col].dtype == np.float64, col


# ------------------------------------------------------------------------------------------
# learning-rate schedules
# ------------------------------------------------------------------------------------------
SCHEDULE_COLUMNS = ["schedule", "warmup_tokens", "final_lr_fraction", "schedule_tokens"]


def _olmo_ladder_peak(params: float) -> float:
    # allenai/OLMo-ladder src/ladder/ladder.py: 0.0047 (N / 1.08e8)^(-1/3), /4 at length 4096
    return 0.0047 * (params / 108_000_000) ** (-1 / 3) / 4


def test_olmo_ladder_schedule_reproduces_the_logged_lr() -> None:
    df = data("olmo-ladder")
    assert runs_without_schedule(df) == []
    assert df[SCHEDULE_COLUMNS].notna().all().all()
    assert (df["schedule"] == "cosine").all() and (df["final_lr_fraction"] == 0.1).all()
    np.testing.assert_allclose(df["lr_peak"], _olmo_ladder_peak(df["params"]), rtol=1e-9)
    logged = 0
    for run, rows in df.groupby("run"):
        first = rows.iloc[0]
        # ladder.py: warm-up of round(N / tokens per step) steps; the cosine ends with the run
        batch = first["batch_size"]
        assert first["warmup_tokens"] == round(first["params"] / batch) * batch
        assert 0 <= first["schedule_tokens"] - first["run_tokens"] < batch, run
        if rows["lr"].isna().all():  # the seed-variant files do not log the LR
            assert "seed1" in str(run)
            continue
        logged += 1
        assert rows["lr"].notna().all()
        sched = run_schedule(first.to_dict())
        rebuilt = sched.lr_fraction(rows["tokens"].to_numpy()) * _olmo_ladder_peak(first["params"])
        np.testing.assert_allclose(rebuilt, rows["lr"], rtol=1e-3, err_msg=str(run))
        # in fact exact up to the 10 digits written: a schedule ending at run_tokens would be
        # off by up to 4e-4, which the looser bound above would not catch
        np.testing.assert_allclose(rebuilt, rows["lr"], rtol=1e-8, err_msg=str(run))
    assert logged == 30


def test_hitchhiker_schedules() -> None:
    df = data("hitchhiker")
    runs = df.drop_duplicates("run").set_index("run")
    # every schedule column is filled together, and lr_schedule says where it comes from
    filled = runs[SCHEDULE_COLUMNS].notna()
    assert (filled.all(axis=1) | ~filled.any(axis=1)).all()
    assert runs.loc[filled.all(axis=1), "lr_schedule"].notna().all()
    scheduled = set(runs.index[filled.all(axis=1)])
    # the data card's list of families / runs without a confirmed schedule
    unknown = {r for r in runs.index if runs.loc[r, "family"].startswith("datablations-")}
    unknown |= set(runs.index[runs["family"].isin(["revisiting-lm", "redpajama-incite"])])
    unknown |= {"opt-175b", "OLMo-7B-Twin-2T"}
    t5 = set(runs.index[runs["family"] == "t5-pile"])
    assert scheduled == set(runs.index) - unknown - t5
    assert set(runs_without_schedule(df)) == unknown  # t5-pile has its logged LR instead
    gpt3 = runs[runs["family"] == "gpt3"]
    assert (gpt3["schedule"] == "cosine").all()
    numbers = gpt3[["warmup_tokens", "final_lr_fraction", "schedule_tokens"]]
    assert (numbers == [375e6, 0.1, 260e9]).all().all()  # Brown et al. 2020, App. B
    opt = runs[(runs["family"] == "opt") & runs["schedule"].notna()]
    assert len(opt) == 5 and (opt["schedule"] == "linear").all()
    assert (opt["schedule_tokens"] == 300e9).all() and (opt["final_lr_fraction"] == 0.1).all()
    assert runs.loc["OLMo-1B", "schedule"] == "cosine"
    assert runs.loc["OLMo-7B", "schedule"] == "linear"
    assert runs.loc["OLMo-1B", "schedule_tokens"] == 739_328 * runs.loc["OLMo-1B", "batch_size"]
    # a Chinchilla IsoFLOP point is the end of its own cosine: the LR is at the 10% floor
    chin = df[df["family"] == "chinchilla-isoflop"]
    assert (chin["schedule_tokens"] == chin["tokens"]).all()
    for _, row in chin.iloc[::40].iterrows():
        h = run_schedule(row.to_dict()).lr_fraction(np.array([row["tokens"]]))
        assert h == pytest.approx(0.1)


def test_t5_pile_logged_lr_follows_the_gin_schedule() -> None:
    t5 = data("hitchhiker").query("family == 't5-pile'")
    assert t5["lr"].notna().all() and t5["schedule"].isna().all()
    # t5x 'constant * rsqrt_decay', warmup_steps 10000: 1 / sqrt(max(step, 10000)); the logged
    # value at a checkpoint is the LR of the step before it (1/(2 step) relative difference)
    step = t5["step"].to_numpy(dtype=float)
    np.testing.assert_allclose(t5["lr"], 1 / np.sqrt(np.maximum(step - 1, 10_000)), rtol=1e-6)


def test_deepmind_and_nanogpt_have_no_schedule_columns() -> None:
    for name in ("deepmind-routing", "nanogpt-replicates"):
        df = data(name)
        assert not {"schedule", "lr", *SCHEDULE_COLUMNS} & set(df.columns)
        assert len(runs_without_schedule(df)) == CARD[name]["runs"]


# ------------------------------------------------------------------------------------------
# known values, as literals copied from the raw files
# ------------------------------------------------------------------------------------------
def test_olmo_ladder_known_values() -> None:
    df = data("olmo-ladder")
    last = final_row(df, "3B-10xC")
    # ladder-runs/3B-10xC.csv: last row, eval/c4_en-validation/CrossEntropyLoss
    assert last["loss"] == pytest.approx(2.6643989086151123, rel=1e-9)
    assert last["step"] == 201524
    assert last["tokens"] == 201524 * 3_145_728
    assert last["params"] == 3_169_537_280
    assert last["run_tokens"] == 10 * 20 * 3_169_537_280
    runs = df.drop_duplicates("run").set_index("run")
    for size in ("190M", "1B"):
        reps = runs[runs["config"] == f"{size}-1xC"]
        assert sorted(reps["seed"]) == ["orig", "rerun", "seed1", "seed1-init"]
    assert (runs.groupby("config").size().drop(["190M-1xC", "1B-1xC"]) <= 2).all()


def test_deepmind_known_values() -> None:
    df = data("deepmind-routing")
    last = final_row(df, "dense-130M-seed1")
    # curves.csv.gz: hyper_id 9 (Dense 130M, seed 1), step 249000, loss_validation
    assert last["loss"] == pytest.approx(2.6567938700173284, rel=1e-9)
    assert (last["step"], last["hyper_id"], last["seed"]) == (249000, 9, 1)
    assert last["tokens"] == 249000 * 524_288
    seeds = df[df["config"] == "dense-130M"].drop_duplicates("run")
    assert sorted(seeds["seed"]) == [1, 2, 3]
    # identical-config S-Base-25M pairs: the higher hyper_id is dropped
    ids = set(df["hyper_id"])
    assert {28, 47, 49, 54} <= ids and not ({56, 57, 66, 67} & ids)
    assert (df["step"] > 0).all()
    assert set(df["arch"]) == {"Dense", "S-Base", "Hash", "RL-R"}
    assert "hash-e8-rf0.25" in set(df["family"]) and "s-base-e64" in set(df["family"])


def test_hitchhiker_known_values() -> None:
    df = data("hitchhiker")
    # opt_trajectories.csv: OPT 175b, steps 140000, ppl 9.768875130499486, num_token 11.447...
    opt = final_row(df, "opt-175b")
    assert opt["loss"] == pytest.approx(np.log(9.768875130499486), rel=1e-9)
    assert (opt["tokens"], opt["step"], opt["batch_size"]) == (2.8e11, 140000, 2_000_000)
    first = df[df["run"] == "opt-125m"].iloc[0]
    assert first["loss"] == pytest.approx(np.log(67.52265444265277), rel=1e-9)
    assert first["tokens"] == 1e9  # 10 ** 9.0
    # olmo.csv: OLMo-7B-Twin-2T has only c4_en Perplexity -> ln(ppl); Step 450000 = 10.999106407...
    twin = final_row(df, "OLMo-7B-Twin-2T")
    assert twin["loss"] == pytest.approx(np.log(10.999106407165527), rel=1e-9)
    assert twin["tokens"] == 450000 * 2048 * 2048
    assert twin["config"] == "OLMo-7B" and twin["seed"] == 1
    assert final_row(df, "OLMo-7B")["seed"] == 0
    # gpt3/extracted.csv: 5 digitized val_loss points of "small" at 12.63009625 B tokens, averaged
    gpt = df[(df["run"] == "gpt3-125M") & (df["tokens"] == 12_630_096_250)]
    assert len(gpt) == 1 and gpt["n_raw"].iloc[0] == 5
    assert gpt["loss"].iloc[0] == pytest.approx(3.4599539835999997, rel=1e-9)
    families = set(df["family"])
    assert {"gpt3", "opt", "t5-pile", "revisiting-lm", "olmo", "redpajama-incite"} <= families
    assert "datablations-c4-4ep" in families and "chinchilla-isoflop" in families
    assert sum(f.startswith("datablations-") for f in families) == 16
    assert df.loc[df["family"] == "t5-pile", "dataset"].str.startswith("UNKNOWN SCALE").all()
    assert df.loc[df["family"] == "redpajama-incite", "dataset"].str.contains("TRAINING").all()
    chin = df[df["family"] == "chinchilla-isoflop"]
    assert chin["run"].is_unique and len(chin) == 245
    assert np.allclose(chin["tokens"], chin["flops"] / (6 * chin["params"]), rtol=1e-6)


def test_nanogpt_known_values() -> None:
    df = data("nanogpt-replicates")
    run = "top-level/1bd8db7a-f3a3-4195-856d-cab7e0816443@3350/1bd8db7a-f3a3-4195-856d-cab7e0816443#0"
    last = final_row(df, run)
    # runs.csv: final_val_loss 3.27874 at step 3350 for this file's run 0
    assert last["loss"] == pytest.approx(3.27874, abs=1e-12)
    assert (last["step"], last["tokens"]) == (3350, 3350 * 524_288)
    assert (df["seed"] >= 0).all() and (df["step"] > 0).all()
    reps = df.drop_duplicates("run").groupby("family")
    assert (reps["complete"].sum() >= 3).all()
    assert "20260518_soda_fade_3000_n9@3040" not in set(df["family"])


# ------------------------------------------------------------------------------------------
# comparisons against the raw files (skipped when ../shared/data is absent)
# ------------------------------------------------------------------------------------------
@needs_raw
def test_olmo_ladder_against_raw() -> None:
    df = data("olmo-ladder")
    raw = RAW / "olmo-ladder"
    checked = 0
    for path in sorted((raw / "ladder-runs").glob("*.csv")):
        x = pd.read_csv(path, usecols=["_step", "eval/c4_en-validation/CrossEntropyLoss"])
        got = df[df["run"] == path.stem]
        assert len(got) == len(x)
        np.testing.assert_allclose(
            got["loss"], x["eval/c4_en-validation/CrossEntropyLoss"], rtol=1e-9
        )
        assert got["step"].tolist() == x["_step"].tolist()
        lr = pd.read_csv(path, usecols=["optim/learning_rate_group0"]).iloc[:, 0]
        np.testing.assert_allclose(got["lr"], lr, rtol=1e-9)
        checked += 1
    assert checked == 30


@needs_raw
def test_hitchhiker_t5_pile_lr_against_raw() -> None:
    df = data("hitchhiker").query("family == 't5-pile'")
    raw = pd.read_csv(
        RAW / "colpret-hitchhiker" / "aggregated_eval" / "t5_pile.csv",
        usecols=["model_name", "steps", "learning_rate/current"],
    )
    got = df.merge(
        raw.assign(run="t5-pile-" + raw["model_name"]), left_on=["run", "step"],
        right_on=["run", "steps"], validate="1:1",
    )  # fmt: skip
    assert len(got) == len(df)
    np.testing.assert_allclose(got["lr"], got["learning_rate/current"], rtol=1e-9)


@needs_raw
def test_deepmind_against_raw() -> None:
    df = data("deepmind-routing")
    raw = pd.read_csv(RAW / "deepmind-routing" / "curves.csv.gz", compression="gzip")
    raw = raw[(raw["step"] > 0) & raw["loss_validation"].notna()]
    raw = raw[raw["hyper_id"].isin(set(df["hyper_id"]))]
    merged = df.merge(raw, on=["hyper_id", "step"], suffixes=("", "_raw"), validate="1:1")
    assert len(merged) == len(df) == len(raw)
    np.testing.assert_allclose(merged["loss"], merged["loss_validation"], rtol=1e-9)
    np.testing.assert_allclose(merged["params"], merged["dense_parameter_count"])


@needs_raw
def test_hitchhiker_opt_against_raw() -> None:
    df = data("hitchhiker")
    raw = pd.read_csv(RAW / "colpret-hitchhiker" / "aggregated_eval" / "opt_trajectories.csv")
    got = df[df["family"] == "opt"].merge(
        raw.assign(run="opt-" + raw["model_size"]), left_on=["run", "step"], right_on=["run", "steps"]
    )
    assert len(got) == len(raw) == 142
    np.testing.assert_allclose(got["loss"], np.log(got["ppl"]), rtol=1e-9)
    np.testing.assert_allclose(got["tokens"], 10.0 ** got["num_token"], rtol=1e-9)


@needs_raw
def test_nanogpt_against_raw() -> None:
    df = data("nanogpt-replicates")
    runs = pd.read_csv(RAW / "modded-nanogpt-replicates" / "runs.csv")
    last = df.groupby("run").tail(1).copy()
    last["log_file"] = last["run"].str.split("/").str[-1].str.split("#").str[0] + ".txt"
    last["run_in_file"] = last["run"].str.split("#").str[-1].astype(int)
    merged = last.merge(runs, on=["record", "log_file", "run_in_file"], validate="1:1")
    assert len(merged) == len(last) == CARD["nanogpt-replicates"]["runs"]
    np.testing.assert_allclose(merged["loss"], merged["final_val_loss"], rtol=1e-9)
    assert (merged["step"] == merged["last_step"]).all()


@needs_raw
def test_build_script_is_byte_identical(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "scripts" / "build_datasets.py"), "--raw", str(RAW)]
    subprocess.run([*cmd, "--out", str(tmp_path)], check=True, capture_output=True, timeout=120)
    for name in NAMES:
        rebuilt = (tmp_path / f"{name}.csv.gz").read_bytes()
        assert rebuilt == (REPO / "data" / f"{name}.csv.gz").read_bytes(), name
    for lic in (REPO / "data" / "licenses").iterdir():
        assert (tmp_path / "licenses" / lic.name).read_bytes() == lic.read_bytes()
