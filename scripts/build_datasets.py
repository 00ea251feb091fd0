#!/usr/bin/env python
"""Rebuild bayescale's bundled tidy loss-curve tables from the raw public files.

Usage (from the repository root)::

    python scripts/build_datasets.py --raw ../shared/data --out data

Reads the raw folders ``olmo-ladder``, ``colpret-hitchhiker``, ``deepmind-routing`` and
``modded-nanogpt-replicates`` (see each folder's ``SOURCE.md``), writes one gzip CSV per
dataset (``<out>/<name>.csv.gz``) and prints the summary tables and conversion counts that
``data/README.md`` quotes. Pure pandas/numpy plus bayescale's own schedule reconstruction
(:mod:`bayescale.data.schedule`), no network. The output is byte-identical on every rerun:
rows are sorted by (family, run, tokens), floats are written with ``%.10g``, params/tokens
(and the other token counts) are integers, and gzip is written with ``mtime=0`` and no file
name.

Where a raw file logs the learning rate, the script checks that the schedule written into the
schedule columns reproduces it (``RunSchedule.lr_fraction(tokens) * peak``), prints the
largest relative error per dataset and fails above :data:`LR_TOLERANCE`.
"""

from __future__ import annotations

import argparse
import gzip
import io
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

try:
    from bayescale.data.schedule import RunSchedule, run_schedule
    from bayescale.data.validate import validate
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from bayescale.data.schedule import RunSchedule, run_schedule
    from bayescale.data.validate import validate

FLOAT_FORMAT = "%.10g"
#: Largest relative error allowed between a reconstructed and a logged learning rate.
LR_TOLERANCE = 1e-3

REQUIRED = ["family", "run", "params", "tokens", "loss"]
OPTIONAL = [
    "seed",
    "config",
    "arch",
    "step",
    "batch_size",
    "run_tokens",
    "dataset",
    "lr_schedule",
    "schedule",
    "warmup_tokens",
    "final_lr_fraction",
    "schedule_tokens",
    "decay_tokens",
    "lr",
    "source",
]
#: Columns written as (nullable) integers.
INT_COLUMNS = [
    "params", "tokens", "step", "batch_size", "run_tokens", "warmup_tokens", "schedule_tokens",
    "decay_tokens",
]  # fmt: skip
#: Per-run schedule columns (``lr`` is per checkpoint).
SCHEDULE_COLUMNS = ["schedule", "warmup_tokens", "final_lr_fraction", "schedule_tokens"]

Notes = list[str]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _round_int(values: pd.Series | np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(values, dtype="float64")).astype("int64")


def finalize(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Order columns, cast dtypes, sort, and check every tidy-table rule (raises on failure)."""
    df = df.copy()
    for col in ("params", "tokens"):
        df[col] = _round_int(df[col])
    for col in INT_COLUMNS[2:]:
        if col in df.columns:
            vals = pd.to_numeric(df[col], errors="raise").astype("float64")
            out = pd.array(np.where(vals.isna(), 0, np.rint(vals)).astype("int64"), dtype="Int64")
            out[vals.isna().to_numpy()] = pd.NA
            df[col] = out
    df["loss"] = df["loss"].astype("float64")
    for col in ("family", "run"):
        df[col] = df[col].astype(str)

    ordered = [c for c in REQUIRED + OPTIONAL if c in df.columns]
    extras = [c for c in df.columns if c not in ordered]
    df = df[ordered + extras]
    df = df.sort_values(["family", "run", "tokens"], kind="mergesort").reset_index(drop=True)

    problems = []
    for col in REQUIRED:
        if df[col].isna().any():
            problems.append(f"{col} has missing values")
    for col in ("params", "tokens", "loss"):
        vals = df[col].to_numpy(dtype="float64")
        if not np.isfinite(vals).all():
            problems.append(f"{col} has non-finite values")
        if (vals <= 0).any():
            problems.append(f"{col} has non-positive values")
    per_run = df.groupby("run", sort=False)
    if (per_run["params"].nunique() > 1).any():
        problems.append("a run has several params")
    if (per_run["family"].nunique() > 1).any():
        problems.append("a run has several families")
    if (per_run["tokens"].diff().dropna() <= 0).any():
        problems.append("tokens not strictly increasing within a run")
    if problems:
        raise SystemExit(f"[{name}] tidy-table check failed: {'; '.join(problems)}")
    try:  # also every rule of the package's validator (schedule columns included)
        validate(df)
    except ValueError as err:
        raise SystemExit(f"[{name}] validation failed: {err}") from err
    return df


def set_schedule(
    df: pd.DataFrame,
    mask: pd.Series | np.ndarray,
    shape: str,
    warmup_tokens: float | pd.Series,
    final_lr_fraction: float,
    schedule_tokens: float | pd.Series,
    text: str,
) -> None:
    """Write one schedule (and its ``lr_schedule`` text) into the rows selected by ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    for col, value in zip(
        [*SCHEDULE_COLUMNS, "lr_schedule"],
        [shape, warmup_tokens, final_lr_fraction, schedule_tokens, text],
        strict=True,
    ):
        if col not in df.columns:
            df[col] = pd.Series(
                np.nan,
                index=df.index,
                dtype=object if col in ("schedule", "lr_schedule") else "float64",
            )
        df.loc[mask, col] = value.loc[mask] if isinstance(value, pd.Series) else value


def lr_errors(
    df: pd.DataFrame, peak: pd.Series | float, schedule: RunSchedule | None = None
) -> dict[str, float]:
    """Largest ``|RunSchedule.lr_fraction(tokens) * peak / lr - 1|`` of every run with an ``lr``.

    The schedule is each run's own columns (:func:`bayescale.data.schedule.run_schedule`)
    unless ``schedule`` is given; ``peak`` is one value or a per-row column.
    """
    peaks = peak if isinstance(peak, pd.Series) else pd.Series(peak, index=df.index)
    errors = {}
    for run, rows in df[df["lr"].notna()].groupby("run", sort=True):
        sched = schedule or run_schedule(rows.iloc[0].to_dict())
        tokens = rows["tokens"].to_numpy(dtype="float64")
        rebuilt = sched.lr_fraction(tokens) * peaks.loc[rows.index].to_numpy(dtype="float64")
        errors[str(run)] = float(np.max(np.abs(rebuilt / rows["lr"].to_numpy(dtype="float64") - 1)))
    return errors


def check_lr(label: str, errors: dict[str, float], notes: Notes) -> float:
    """Note the worst reconstruction error of ``errors`` and fail above :data:`LR_TOLERANCE`."""
    worst = max(errors, key=errors.__getitem__)
    notes.append(
        f"{label}: reconstructed LR vs logged LR on {len(errors)} runs: max relative error "
        f"{errors[worst]:.2e} ({worst})"
    )
    if errors[worst] > LR_TOLERANCE:
        raise SystemExit(
            f"{label}: the schedule columns do not reproduce the logged LR of run {worst!r} "
            f"(relative error {errors[worst]:.3g} > {LR_TOLERANCE:g})"
        )
    return errors[worst]


def write_csv_gz(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` as a deterministic gzip CSV (fixed float format, mtime=0, no file name)."""
    text = df.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    path.write_bytes(buf.getvalue())


def clean_digitized(
    df: pd.DataFrame, label: str, notes: Notes, *, token_col: str = "tokens"
) -> pd.DataFrame:
    """Sort one digitized curve by tokens and average losses that share a token value.

    Digitized figures give several y values for one pixel column (identical x) and points whose
    x goes backwards. We keep every point, sort by tokens (stable), and replace each group of
    rows with identical (integer) tokens by one row with the mean loss; ``n_raw`` records how
    many raw points each row averages.
    """
    d = df.reset_index(drop=True).copy()
    d[token_col] = _round_int(d[token_col])
    n_back = int((np.diff(d[token_col].to_numpy()) < 0).sum())
    d = d.sort_values(token_col, kind="mergesort")
    grouped = d.groupby(token_col, sort=True)
    out = grouped.first()
    out["loss"] = grouped["loss"].mean()
    out["n_raw"] = grouped.size()
    out = out.reset_index()
    n_dup_tokens = int((out["n_raw"] > 1).sum())
    n_dup_rows = int(out.loc[out["n_raw"] > 1, "n_raw"].sum())
    notes.append(
        f"{label}: {len(d)} raw points, {n_back} step backwards in file order (re-sorted); "
        f"{n_dup_tokens} token values had 2+ points ({n_dup_rows} raw rows) -> averaged; "
        f"{len(out)} rows kept"
    )
    return out


# --------------------------------------------------------------------------------------
# 1. OLMo ladder
# --------------------------------------------------------------------------------------
OLMO_LADDER_PARAMS = {  # SOURCE.md: the repo's MODEL_PARAMS ("actual Peteish count")
    "190M": 190_354_176,
    "370M": 371_262_464,
    "760M": 758_220_288,
    "1B": 1_279_395_840,
    "3B": 3_169_537_280,
}
OLMO_LADDER_BATCH = {  # SOURCE.md, checked against the files below
    "190M": 524_288,
    "370M": 786_432,
    "760M": 1_310_720,
    "1B": 1_572_864,
    "3B": 3_145_728,
}
OLMO_LADDER_MULTIPLES = {"0.5": 0.5, "1": 1.0, "2": 2.0, "5": 5.0, "10": 10.0}
C4_COL = "eval/c4_en-validation/CrossEntropyLoss"
OLMO_LADDER_LR_COL = "optim/learning_rate_group0"  # absent from the seed-variant files
OLMO_LADDER_FLOOR = 0.1  # ladder.py: alpha_f = 0.1


def olmo_ladder_peak_lr(n: float) -> float:
    """Peak LR of the ladder (allenai/OLMo-ladder ``src/ladder/ladder.py``): ÷4 at length 4096."""
    return 0.0047 * (n / 108_000_000) ** (-1 / 3) / 4


def olmo_ladder_schedule_steps(n: int, k: float, batch: int) -> tuple[int, int]:
    """``(warm-up steps, last step of the cosine)`` of one ladder run.

    ladder.py sets ``t_warmup = round(N / tokens_per_step)`` and ``max_duration`` = the run's
    tokens; the scheduler counts whole optimizer steps, so the cosine reaches its floor at
    ``ceil(run_tokens / tokens_per_step)``. That is what the logged LR shows (exactly): ending
    at ``run_tokens`` instead would be off by up to 4e-4 in relative LR.
    """
    run_tokens = round(k * 20 * n)
    return round(n / batch), -(-run_tokens // batch)


def build_olmo_ladder(raw: Path) -> tuple[pd.DataFrame, Notes]:
    root = raw / "olmo-ladder"
    notes: Notes = []
    specs = []  # (path, size, mult, run, seed)
    for size in OLMO_LADDER_PARAMS:
        for mult in OLMO_LADDER_MULTIPLES:
            specs.append(
                (
                    root / "ladder-runs" / f"{size}-{mult}xC.csv",
                    size,
                    mult,
                    f"{size}-{mult}xC",
                    "orig",
                )
            )
        specs.append(
            (
                root / "ladder-runs" / f"{size}-1xC-rerun.csv",
                size,
                "1",
                f"{size}-1xC-rerun",
                "rerun",
            )
        )
    for variant, suffix, seed in (
        ("peteish-seed-1", "seed1", "seed1"),
        ("peteish-seed-1-init", "seed1-init", "seed1-init"),
    ):
        for size in ("190M", "1B"):
            specs.append(
                (
                    root / "seed-variants" / variant / f"{size}-1xC.csv",
                    size,
                    "1",
                    f"{size}-1xC-{suffix}",
                    seed,
                )
            )

    frames = []
    n_missing = 0
    n_tt_checked = 0
    n_no_lr = 0
    for path, size, mult, run, seed in specs:
        raw_df = pd.read_csv(path)
        batch = raw_df["batch_size_in_tokens"].unique()
        if len(batch) != 1 or int(batch[0]) != OLMO_LADDER_BATCH[size]:
            raise SystemExit(f"{path}: unexpected batch_size_in_tokens {batch}")
        tokens = raw_df["_step"].astype("int64") * int(batch[0])
        if "throughput/total_tokens" in raw_df.columns:
            tt = raw_df["throughput/total_tokens"]
            ok = tt.isna() | (tt.astype("float64") == tokens.astype("float64"))
            if not ok.all():
                raise SystemExit(f"{path}: _step x batch != throughput/total_tokens")
            n_tt_checked += int(tt.notna().sum())
        missing = raw_df[C4_COL].isna()
        n_missing += int(missing.sum())
        n = OLMO_LADDER_PARAMS[size]
        k = OLMO_LADDER_MULTIPLES[mult]
        peak = raw_df["learning_rate_peak"].unique()
        if len(peak) != 1 or not math.isclose(peak[0], olmo_ladder_peak_lr(n), rel_tol=1e-9):
            raise SystemExit(f"{path}: learning_rate_peak {peak} != the ladder's formula")
        if OLMO_LADDER_LR_COL in raw_df.columns:
            lr = raw_df.loc[~missing, OLMO_LADDER_LR_COL].to_numpy(dtype="float64")
        else:
            lr = np.full(int((~missing).sum()), np.nan)
            n_no_lr += 1
        warmup_steps, end_step = olmo_ladder_schedule_steps(n, k, int(batch[0]))
        frames.append(
            pd.DataFrame(
                {
                    "family": "olmo-ladder",
                    "run": run,
                    "params": n,
                    "tokens": tokens[~missing].to_numpy(),
                    "loss": raw_df.loc[~missing, C4_COL].to_numpy(),
                    "seed": seed,
                    "config": f"{size}-{mult}xC",
                    "arch": "dec",
                    "step": raw_df.loc[~missing, "_step"].to_numpy(),
                    "batch_size": int(batch[0]),
                    "run_tokens": k * 20 * n,
                    "dataset": "c4_en-validation CrossEntropyLoss",
                    "lr_schedule": (
                        "cosine (OLMo-ladder ladder.py): linear warm-up from 0 over "
                        "round(N / batch_size) steps, then to 10% of the peak at "
                        "ceil(run_tokens / batch_size) steps; floor after"
                    ),
                    "schedule": "cosine",
                    "warmup_tokens": warmup_steps * int(batch[0]),
                    "final_lr_fraction": OLMO_LADDER_FLOOR,
                    "schedule_tokens": end_step * int(batch[0]),
                    "lr": lr,
                    "source": "bhagia2024ladder",
                    "size": size,
                    "chinchilla_multiple": k,
                    "lr_peak": peak[0],
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    notes.append(f"{len(specs)} run files read; rows with missing c4_en loss dropped: {n_missing}")
    notes.append(
        f"tokens = _step x batch_size_in_tokens matched throughput/total_tokens on {n_tt_checked} rows"
    )
    notes.append(
        f"lr = {OLMO_LADDER_LR_COL} ({len(specs) - n_no_lr} files; {n_no_lr} seed-variant files "
        "do not log it); lr_peak = learning_rate_peak, equal to 0.0047 (N/1.08e8)^(-1/3) / 4"
    )
    check_lr("olmo-ladder", lr_errors(df, df["lr_peak"]), notes)
    # what the documented end (schedule_tokens = run_tokens) would give instead
    at_run_tokens = lr_errors(df.assign(schedule_tokens=np.nan), df["lr_peak"])
    notes.append(
        "  with schedule_tokens = run_tokens instead: max relative error "
        f"{max(at_run_tokens.values()):.2e}; with peak = the largest logged LR: "
        f"{max(lr_errors(df, df.groupby('run')['lr'].transform('max')).values()):.2e}"
    )
    per_run = df.groupby("run").agg(
        step=("step", "max"), batch=("batch_size", "first"), end=("schedule_tokens", "first")
    )
    past = sorted(set(per_run["step"] - per_run["end"] // per_run["batch"]))
    notes.append(
        f"last checkpoint of every run: {past} step(s) after its cosine ends (at the floor)"
    )
    return df, notes


# --------------------------------------------------------------------------------------
# 2. Hitchhiker (ColPret)
# --------------------------------------------------------------------------------------
def _nominal(label: str) -> float:
    label = label.strip().upper()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[label[-1]]
    return float(label[:-1]) * scale


GPT3_SIZES = {  # GPT-3 Table 2.1 (same as raw_data/gpt3/gpt3_metadata.xlsx)
    "small": "125M",
    "medium": "350M",
    "large": "760M",
    "xl": "1.3B",
    "2.7b": "2.7B",
    "6.7b": "6.7B",
    "13b": "13B",
    "175b": "175B",
}
PILE_T5_PARAMS = {  # ColPret util/read_data.py name_to_param
    "base": 247_586_304,
    "large": 783_173_632,
    "xl": 2_849_804_288,
    "xxl": 11_135_426_560,
}
# OLMo (v1): parameter counts from the published architectures (no biases, non-parametric
# LayerNorm, vocab padded to 50304, SwiGLU): 1B = 16 x (4 d^2 + 3 d 8192) + 50304 d with d=2048
# and tied embeddings; 7B = 32 x (4 d^2 + 3 d 11008) + 2 x 50304 d with d=4096 (untied).
OLMO_V1_PARAMS = {
    "OLMo-1B": 16 * (4 * 2048**2 + 3 * 2048 * 8192) + 50304 * 2048,
    "OLMo-7B": 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 2 * 50304 * 4096,
    "OLMo-7B-Twin-2T": 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 2 * 50304 * 4096,
}
# Tokens per optimizer step, from the Hugging Face revision names (stepN-tokensMB):
# OLMo-1B "step20000-tokens84B" and OLMo-7B-Twin-2T "step20000-tokens84B" -> 2048 x 2048;
# OLMo-7B "step556000-tokens2460B" / "step452000-tokens2000B" -> 2160 x 2048.
OLMO_V1_BATCH = {"OLMo-1B": 2048 * 2048, "OLMo-7B": 2160 * 2048, "OLMo-7B-Twin-2T": 2048 * 2048}
# allenai/OLMo configs/official: OLMo-1B.yaml cosine_with_warmup, t_warmup 2000, alpha_f 0.1,
# max_duration 739,328 steps; OLMo-7B.yaml linear_with_warmup, t_warmup 5000, alpha_f 0.1,
# max_duration 2e12 tokens (whole steps: ceil(2e12 / batch)), after which the LR stays at the
# floor (the final anneal to 0 comes after step 556,000, the last checkpoint here). No config
# of the LUMI twin is published, so OLMo-7B-Twin-2T gets no schedule.
OLMO_V1_SCHEDULE = {
    "OLMo-1B": (
        "cosine", 2000, 739_328,
        "cosine to 10% at step 739,328 after 2000 warm-up steps (OLMo configs/official/"
        "OLMo-1B.yaml)",
    ),
    "OLMo-7B": (
        "linear", 5000, -(-2_000_000_000_000 // OLMO_V1_BATCH["OLMo-7B"]),
        "linear to 10% at 2T tokens after 5000 warm-up steps, then 10% (OLMo configs/official/"
        "OLMo-7B.yaml; OLMo-7B model card)",
    ),
}  # fmt: skip
OLMO_V1_LOSS_COL = {
    "OLMo-1B": ("v3-small-c4_en-validation/CrossEntropyLoss", False),
    "OLMo-7B": ("c4_en-validation/CrossEntropyLoss", False),
    "OLMo-7B-Twin-2T": ("c4_en-validation/Perplexity", True),  # no CE column for Twin: ln(ppl)
}


def _hh_datablations(root: Path, notes: Notes) -> pd.DataFrame:
    d = pd.read_csv(root / "aggregated_eval" / "datablations_losses.csv")
    runs_per_id = d.groupby("model_args")[["data", "epochs", "num_params"]].nunique()
    if (runs_per_id > 1).any().any():
        raise SystemExit("datablations: a tensorboard id maps to several (data, epochs, size)")
    ids_per_run = d.groupby(["data", "epochs", "num_params"])["model_args"].nunique()
    if (ids_per_run != 1).any():
        raise SystemExit("datablations: a (data, epochs, size) has several tensorboard ids")
    fam = "datablations-" + d["data"] + "-" + d["epochs"].astype(str) + "ep"
    out = pd.DataFrame(
        {
            "family": fam,
            "run": fam + "-" + d["num_params"].str.strip(),
            "params": d["num_params"].map(_nominal),
            "tokens": d["token_num"],
            "loss": d["loss"],
            "arch": "dec",
            "run_tokens": np.rint(d["tokens_per_epoch"] * d["epochs"]),
            "dataset": d["data"] + " held-out validation loss",
            "source": "muennighoff2023datablations",
            "train_data": d["data"],
            "epochs": d["epochs"],
            "tokens_per_epoch": np.rint(d["tokens_per_epoch"]),
        }
    )
    out["config"] = out["run"]
    notes.append(
        f"datablations: {len(d)} rows, {out['run'].nunique()} runs in {out['family'].nunique()} "
        "data x epochs families; params are the nominal sizes 2.8e9/4.2e9/8.7e9"
    )
    return out


def _hh_gpt3(root: Path, notes: Notes) -> pd.DataFrame:
    g = pd.read_csv(root / "raw_data" / "gpt3" / "extracted.csv")
    n_train_only = int(g["val_loss"].isna().sum())
    g = g.dropna(subset=["val_loss"])
    frames = []
    for model, label in GPT3_SIZES.items():
        x = g[g["model"] == model]
        cur = pd.DataFrame({"tokens": x["step"].to_numpy() * 1e9, "loss": x["val_loss"].to_numpy()})
        cur = clean_digitized(cur, f"gpt3 {label}", notes)
        cur["run"] = f"gpt3-{label}"
        cur["params"] = _nominal(label)
        frames.append(cur)
    out = pd.concat(frames, ignore_index=True)
    out["family"] = "gpt3"
    out["arch"] = "dec"
    out["run_tokens"] = 300e9
    out["dataset"] = "GPT-3 validation loss (digitized figure)"
    out["source"] = "brown2020gpt3"
    out["config"] = out["run"]
    # Brown et al. 2020, App. B: cosine to 10% over 260B tokens (then 10% to 300B), linear
    # warm-up over 375M tokens, all sizes; in tokens, so the batch-size ramp does not matter.
    set_schedule(
        out, np.ones(len(out)), "cosine", 375e6, 0.1, 260e9,
        "cosine to 10% over 260B tokens after a 375M-token linear warm-up, then 10% to 300B "
        "(Brown et al. 2020, App. B)",
    )  # fmt: skip
    notes.append(f"gpt3: {n_train_only} train-loss-only rows skipped (val_loss empty)")
    return out


OPT_MANUAL_LR_RUN = "opt-175b"


def _hh_opt(root: Path, notes: Notes) -> pd.DataFrame:
    o = pd.read_csv(root / "aggregated_eval" / "opt_trajectories.csv")
    tokens = np.rint(10.0 ** o["num_token"])
    batch = tokens / o["steps"]
    colpret_batch = (
        o["model_size"]
        .map(_nominal)
        .map(
            lambda n: (
                5e5
                if n < 1e9
                else 1e6
                if n < 6e9
                else 2e6
                if n < 10e9
                else 4e6
                if n < 60e9
                else 2e6
            )
        )
    )
    if not np.allclose(batch, colpret_batch, rtol=1e-6):
        raise SystemExit("opt: 10**num_token != steps x ColPret batch size")
    out = pd.DataFrame(
        {
            "family": "opt",
            "run": "opt-" + o["model_size"],
            "params": o["model_size"].map(_nominal),
            "tokens": tokens,
            "loss": np.log(o["ppl"]),
            "arch": "dec",
            "step": o["steps"],
            "batch_size": np.rint(batch),
            "dataset": "ln(perplexity) from Xia et al. 2023 training trajectories",
            "source": "xia2023trajectories",
        }
    )
    out["config"] = out["run"]
    # Zhang et al. 2022 (OPT), Sec. 2.2: linear warm-up over 375M tokens for the smaller
    # models, then linear decay to 10% over 300B tokens. OPT-175B (2000-step warm-up) had its
    # LR lowered by hand at restarts (Sec. 2.5), so its schedule is not the planned one.
    set_schedule(
        out, out["run"] != OPT_MANUAL_LR_RUN, "linear", 375e6, 0.1, 300e9,
        "linear to 10% over 300B tokens after a 375M-token linear warm-up (Zhang et al. 2022)",
    )  # fmt: skip
    out.loc[out["run"] == OPT_MANUAL_LR_RUN, "lr_schedule"] = (
        "planned: linear to 10% over 300B tokens after 2000 warm-up steps; LR lowered by hand "
        "mid-run (Zhang et al. 2022, Sec. 2.5): not reconstructable"
    )
    notes.append(f"opt: {len(o)} rows; loss = ln(ppl); tokens = 10**num_token (= steps x batch)")
    return out


T5_LR_COL = "learning_rate/current"  # `learning_rate` is the mean over the logging window
T5_WARMUP_STEPS = 10_000
T5_GIN = (
    "create_learning_rate_scheduler.base_learning_rate = 1.0",
    "create_learning_rate_scheduler.factors = 'constant * rsqrt_decay'",
    f"create_learning_rate_scheduler.warmup_steps = {T5_WARMUP_STEPS}",
)


def _hh_t5_pile(root: Path, notes: Notes) -> pd.DataFrame:
    t = pd.read_csv(
        root / "aggregated_eval" / "t5_pile.csv",
        usecols=["model_name", "steps", "val_perplexity", T5_LR_COL, "config"],
    )
    # The gin configs in the file fix the schedule: base 1.0, 'constant * rsqrt_decay',
    # warmup_steps 10000, i.e. LR = 1 / sqrt(max(step, 10000)) (constant, not ramped, first).
    configs = t["config"].dropna().astype(str)
    for key in T5_GIN:
        if not configs.str.contains(key, regex=False).all():
            raise SystemExit(f"t5-pile: a gin config lacks {key!r}")
    n0 = int((t["steps"] == 0).sum())
    n_na = int(t["val_perplexity"].isna().sum())
    t = t[(t["steps"] > 0) & t["val_perplexity"].notna()]
    n_back = int(
        sum(
            (np.diff(x["steps"].to_numpy()) < 0).sum()
            for _, x in t.groupby("model_name", sort=True)
        )
    )
    if t.duplicated(["model_name", "steps"]).any():
        raise SystemExit("t5-pile: duplicate steps")
    out = pd.DataFrame(
        {
            "family": "t5-pile",
            "run": "t5-pile-" + t["model_name"],
            "params": t["model_name"].map(PILE_T5_PARAMS),
            "tokens": t["steps"] * 1e6,
            "loss": t["val_perplexity"],
            "arch": "enc-dec",
            "step": t["steps"],
            "batch_size": 1e6,
            "dataset": "UNKNOWN SCALE: Pile-T5 val_perplexity column as used by ColPret (1.03-1.84), not nats",
            "lr_schedule": (
                "t5x 'constant * rsqrt_decay', warmup_steps 10000: LR = 1/sqrt(max(step, 10000)) "
                "(gin config in t5_pile.csv); logged in lr"
            ),
            "lr": t[T5_LR_COL],
            "source": "sutawika2024pilet5",
        }
    )
    out["config"] = out["run"]
    # The held-constant first 10k steps are no `inverse_sqrt` warm-up ramp, so the schedule
    # columns stay empty and the logged LR is the schedule. Check it against the gin formula:
    # every checkpoint is past step 10000, where the two coincide.
    rsqrt = RunSchedule("inverse_sqrt", T5_WARMUP_STEPS * 1e6, 0.0, float(out["tokens"].max()))
    check_lr("t5-pile", lr_errors(out, 1 / math.sqrt(T5_WARMUP_STEPS), rsqrt), notes)
    # the residual is a one-step lag: the value logged at step s is the LR of step s - 1
    lagged = 1 / np.sqrt(np.maximum(out["step"].to_numpy(dtype="float64") - 1, T5_WARMUP_STEPS))
    notes.append(
        "  t5-pile: lr = learning_rate/current equals 1/sqrt(max(step - 1, 10000)) to "
        f"{np.max(np.abs(out['lr'].to_numpy() / lagged - 1)):.1e} (float32): the LR of the step "
        "before each checkpoint"
    )
    notes.append(
        f"t5-pile: dropped {n0} step-0 rows and {n_na} rows without val_perplexity; "
        f"{n_back} rows out of step order (re-sorted); tokens = steps x 1e6 (ColPret convention)"
    )
    return out


def _hh_revisiting(root: Path, notes: Notes) -> pd.DataFrame:
    r = pd.read_csv(root / "aggregated_eval" / "revisiting_lang.csv")
    lm = r[r["Domain"] == "LM"].copy()
    n_lm = len(lm)
    conflict = lm.groupby(["Model", "Seen Examples"])[["Loss", "Training"]].nunique()
    if (conflict > 1).any().any():
        raise SystemExit("revisiting: duplicate (model, tokens) rows with different values")
    lm = lm.drop_duplicates(["Model", "Seen Examples"], keep="first")
    out = pd.DataFrame(
        {
            "family": "revisiting-lm",
            "run": "revisiting-lm-" + lm["Model"],
            "params": lm["Model"].astype(float),
            "tokens": lm["Seen Examples"],
            "loss": lm["Loss"],
            "arch": "dec",
            "dataset": "UNKNOWN SCALE: LM val_loss of the Alabdulmohsin et al. 2022 benchmark (0.85-0.999)",
            "source": "alabdulmohsin2022revisiting",
            "revisiting_train_split": lm["Training"],
        }
    )
    out["config"] = out["run"]
    notes.append(
        f"revisiting-lm: {len(r) - n_lm} non-LM rows skipped; {n_lm} LM rows are 4 identical copies "
        f"of each curve -> {n_lm - len(lm)} exact duplicates dropped, {len(lm)} kept"
    )
    return out


def _hh_olmo(root: Path, notes: Notes) -> pd.DataFrame:
    o = pd.read_csv(root / "aggregated_eval" / "olmo.csv")
    o["model_name"] = o["model_name"].str.strip()  # "OLMo-1B " has a trailing space
    frames = []
    for name, (col, is_ppl) in OLMO_V1_LOSS_COL.items():
        x = o[o["model_name"] == name]
        x = x[x[col].notna()]
        if x["Step"].duplicated().any() or not x["Step"].is_monotonic_increasing:
            raise SystemExit(f"olmo {name}: steps not unique/increasing")
        loss = np.log(x[col]) if is_ppl else x[col]
        frames.append(
            pd.DataFrame(
                {
                    "run": name,
                    "params": OLMO_V1_PARAMS[name],
                    "tokens": x["Step"] * OLMO_V1_BATCH[name],
                    "loss": loss.to_numpy(),
                    "seed": 1 if name == "OLMo-7B-Twin-2T" else 0,
                    "config": "OLMo-7B" if name.startswith("OLMo-7B") else name,
                    "step": x["Step"],
                    "batch_size": OLMO_V1_BATCH[name],
                    "dataset": (f"ln({col})" if is_ppl else col),
                }
            )
        )
        notes.append(
            f"olmo {name}: {len(x)} rows from column {col!r}{' (ln of perplexity)' if is_ppl else ''}"
        )
    out = pd.concat(frames, ignore_index=True)
    out["family"] = "olmo"
    out["arch"] = "dec"
    out["source"] = "groeneveld2024olmo"
    for name, (shape, warmup_steps, end_steps, text) in OLMO_V1_SCHEDULE.items():
        batch = OLMO_V1_BATCH[name]
        set_schedule(
            out, out["run"] == name, shape, warmup_steps * batch, 0.1, end_steps * batch, text
        )
    return out


def _hh_redpajama(root: Path, notes: Notes) -> pd.DataFrame:
    frames = []
    for label in ("2.4B", "6.7B"):
        x = pd.read_csv(
            root / "raw_data" / "redPajama" / f"{label}.csv", header=None, names=["b", "loss"]
        )
        cur = pd.DataFrame({"tokens": x["b"] * 1e9, "loss": x["loss"]})
        cur = clean_digitized(cur, f"redpajama-incite {label}", notes)
        cur["run"] = f"redpajama-incite-{label}"
        cur["params"] = _nominal(label)
        frames.append(cur)
    out = pd.concat(frames, ignore_index=True)
    out["family"] = "redpajama-incite"
    out["arch"] = "dec"
    out["dataset"] = "TRAINING loss (digitized blog figure), not held-out"
    out["source"] = "together2023redpajama"
    out["config"] = out["run"]
    return out


def _hh_chinchilla(root: Path, notes: Notes) -> pd.DataFrame:
    c = pd.read_csv(root / "raw_data" / "chinchila_extracted.csv")
    c = c.sort_values(["Training FLOP", "Model Size"], kind="mergesort").reset_index(drop=True)
    n = c["Model Size"].to_numpy()
    flops = c["Training FLOP"].to_numpy()
    out = pd.DataFrame(
        {
            "family": "chinchilla-isoflop",
            "run": [f"chinchilla-isoflop-{i:03d}" for i in range(len(c))],
            "params": n,
            "tokens": flops / (6.0 * n),
            "loss": c["loss"].to_numpy(),
            "arch": "dec",
            "dataset": "Chinchilla final loss (digitized figure)",
            "source": "hoffmann2022chinchilla",
            "flops": flops,
        }
    )
    out["config"] = out["run"]
    # Hoffmann et al. 2022, Sec. 3.2 and App. B: a 10x cosine decay whose length matches the
    # run's tokens, so each final point sits at the end of its own schedule. The warm-up of
    # these runs is not stated: 0 is written (it does not change the LR at the final point).
    set_schedule(
        out, np.ones(len(out)), "cosine", 0.0, 0.1, np.rint(out["tokens"]),
        "cosine decaying 10x over the run's own tokens (Hoffmann et al. 2022, Sec. 3.2, "
        "App. B); warm-up not stated (0 written)",
    )  # fmt: skip
    notes.append(f"chinchilla-isoflop: {len(c)} final-only points, each its own run; D = FLOP/(6N)")
    return out


def build_hitchhiker(raw: Path) -> tuple[pd.DataFrame, Notes]:
    root = raw / "colpret-hitchhiker"
    notes: Notes = []
    parts = [
        _hh_datablations(root, notes),
        _hh_gpt3(root, notes),
        _hh_opt(root, notes),
        _hh_t5_pile(root, notes),
        _hh_revisiting(root, notes),
        _hh_olmo(root, notes),
        _hh_redpajama(root, notes),
        _hh_chinchilla(root, notes),
    ]
    df = pd.concat(parts, ignore_index=True)
    df["seed"] = df["seed"].fillna(0).astype("int64")
    df["digitized"] = df["family"].isin(["gpt3", "redpajama-incite", "chinchilla-isoflop"])
    df["n_raw"] = df["n_raw"].fillna(1).astype("int64")
    return df, notes


# --------------------------------------------------------------------------------------
# 3. DeepMind routing
# --------------------------------------------------------------------------------------
DM_TOKENS_PER_STEP = 256 * 2048  # ASSUMED (SOURCE.md): not stated in the repo
DM_PLANNED_STEPS = 250_000
DM_ROUTER = {"S-Base": "s-base", "Hash": "hash", "RL-R": "rl-r"}
DM_CONFIG_COLS = [
    "router_type", "num_experts", "k", "routing_frequency", "flop_increase", "d_model",
    "num_blocks", "num_heads", "kqv_size", "seed", "model_size_label",
    "total_parameter_count", "dense_parameter_count", "flops_per_step",
]  # fmt: skip
DM_EXPECTED_DUPLICATES = [[28, 67], [47, 56], [49, 57], [54, 66]]


def _dm_family(row: pd.Series) -> str:
    if row["router_type"] == "Dense":
        fi = row["flop_increase"]
        return "dense" if fi == 1 else f"dense-flop{int(fi)}"
    name = f"{DM_ROUTER[row['router_type']]}-e{int(row['num_experts'])}"
    if row["k"] != 1:
        name += f"-k{int(row['k'])}"
    if not math.isclose(row["routing_frequency"], 0.5):
        name += f"-rf{row['routing_frequency']:.3g}"
    return name


def build_deepmind_routing(raw: Path) -> tuple[pd.DataFrame, Notes]:
    notes: Notes = []
    d = pd.read_csv(raw / "deepmind-routing" / "curves.csv.gz", compression="gzip")
    n_rows, n_runs = len(d), d["hyper_id"].nunique()
    runs = d.drop_duplicates("hyper_id")
    dup = runs.groupby(DM_CONFIG_COLS, dropna=False)["hyper_id"].agg(sorted)
    dup = sorted(ids for ids in dup if len(ids) > 1)
    if dup != DM_EXPECTED_DUPLICATES:
        raise SystemExit(f"deepmind-routing: unexpected identical-config runs {dup}")
    dropped_ids = [ids[1] for ids in dup]
    n_dup_rows = int(d["hyper_id"].isin(dropped_ids).sum())
    d = d[~d["hyper_id"].isin(dropped_ids)]
    n_step0 = int((d["step"] == 0).sum())
    d = d[d["step"] > 0]
    n_nan = int(d["loss_validation"].isna().sum())
    d = d.dropna(subset=["loss_validation"])

    fam_by_id = runs.set_index("hyper_id").apply(_dm_family, axis=1)
    fam = d["hyper_id"].map(fam_by_id)
    seed_suffix = np.where(d["seed"] == 42, "", "-seed" + d["seed"].astype(str))
    out = pd.DataFrame(
        {
            "family": fam,
            "run": fam + "-" + d["model_size_label"] + seed_suffix,
            "params": d["dense_parameter_count"],
            "tokens": d["step"] * DM_TOKENS_PER_STEP,
            "loss": d["loss_validation"],
            "seed": d["seed"],
            "config": fam + "-" + d["model_size_label"],
            "arch": d["router_type"],
            "step": d["step"],
            "batch_size": DM_TOKENS_PER_STEP,
            "run_tokens": DM_PLANNED_STEPS * DM_TOKENS_PER_STEP,
            "dataset": "MassiveText held-out validation (loss_validation)",
            "lr_schedule": "cosine over 250k steps (per SOURCE.md, unverified)",
            "source": "clark2022routing",
            "hyper_id": d["hyper_id"],
            "model_size_label": d["model_size_label"],
            "num_experts": d["num_experts"],
            "k": d["k"],
            "routing_frequency": d["routing_frequency"],
            "flop_increase": d["flop_increase"],
            "total_parameter_count": np.rint(d["total_parameter_count"]).astype("int64"),
            "loss_c4": d["loss_c4"],
            "loss_curation_corpus": d["loss_curation_corpus"],
            "loss_lambada": d["loss_lambada"],
            "loss_pile": d["loss_pile"],
            "loss_wikitext103": d["loss_wikitext103"],
        }
    )
    if out.groupby("run")["hyper_id"].nunique().max() != 1:
        raise SystemExit("deepmind-routing: run ids are not unique per hyper_id")
    notes.append(f"raw: {n_rows} rows, {n_runs} runs (hyper_id)")
    notes.append(
        f"identical-config S-Base-25M pairs {dup}: kept the lower hyper_id, dropped "
        f"{dropped_ids} ({n_dup_rows} rows)"
    )
    notes.append(f"dropped {n_step0} step-0 rows and {n_nan} rows with NaN loss_validation")
    notes.append(f"tokens = step x {DM_TOKENS_PER_STEP} (ASSUMED tokens/step)")
    return out, notes


# --------------------------------------------------------------------------------------
# 4. modded-nanogpt replicates (track 3)
# --------------------------------------------------------------------------------------
# Track 3 architecture (records/track_3_optimization/*/train_gpt_simple*.py): GPT(vocab 50304,
# 12 layers, dim 768), every Linear has a bias, RMSNorm with gains, untied embedding and head.
_D, _V, _L = 768, 50304, 12
NANOGPT_PARAMS = (
    _V * _D  # token embedding
    + _L * (4 * (_D * _D + _D) + (_D * 4 * _D + 4 * _D) + (4 * _D * _D + _D) + 2 * _D)  # blocks
    + (_D * _V + _V)  # LM head (untied, with bias)
    + 2 * _D  # two final RMSNorm gains
)
NANOGPT_TOKENS_PER_STEP = 8 * 64 * 1024
NANOGPT_MIN_COMPLETE = 3
NANOGPT_TRACK = "track_3_optimization"
# Groups whose curves all duplicate runs kept elsewhere (checked below).
NANOGPT_EXCLUDED_GROUPS = {
    "20260518_soda_fade_3000_n9@3040": (
        "batch_combined_stdout.txt repeats 7 of the 9 runs in 20260518_soda_fade_3000_n9/code_logs,"
        " each followed by a 3-point fragment (steps 3000-3040) re-printing that run's tail"
    ),
}


def build_nanogpt(raw: Path) -> tuple[pd.DataFrame, Notes]:
    notes: Notes = []
    root = raw / "modded-nanogpt-replicates"
    runs = pd.read_csv(root / "runs.csv")
    runs = runs[runs["track"] == NANOGPT_TRACK].copy()
    # Top-level files in results/ are each their own config (SOURCE.md): split the upstream
    # "(top-level)|<steps>" groups by log file.
    top = runs["record"] == "(top-level)"
    rec = runs["record"].where(~top, "top-level/" + runs["log_file"].str.removesuffix(".txt"))
    runs["family"] = rec + "@" + runs["train_steps"].astype(str)
    n_complete = runs.groupby("family")["complete"].sum()
    keep_fam = set(n_complete[n_complete >= NANOGPT_MIN_COMPLETE].index) - set(
        NANOGPT_EXCLUDED_GROUPS
    )
    upstream_groups = runs.loc[runs["group_n_complete"] >= NANOGPT_MIN_COMPLETE, "group"].nunique()
    kept = runs[runs["family"].isin(keep_fam)].copy()
    kept = kept.sort_values(["family", "log_file", "run_in_file"], kind="mergesort")
    kept["seed"] = kept.groupby("family").cumcount()
    kept["run"] = (
        kept["family"]
        + "/"
        + kept["log_file"].str.removesuffix(".txt")
        + "#"
        + kept["run_in_file"].astype(str)
    )

    v = pd.read_csv(root / "val_loss_curves.csv", dtype={"val_loss": str})
    v = v[v["track"] == NANOGPT_TRACK]
    key = ["record", "log_file", "run_in_file"]
    v = v.merge(
        kept[[*key, "family", "run", "seed", "train_steps", "complete"]],
        on=[*key, "train_steps"],
        how="inner",
    )
    n_step0 = int((v["step"] == 0).sum())
    v = v[v["step"] > 0]
    loss = pd.to_numeric(v["val_loss"], errors="coerce")
    if loss.isna().any():
        raise SystemExit("nanogpt: non-numeric val_loss")
    sig = v.assign(p=v["step"].astype(str) + ":" + v["val_loss"]).groupby("run")["p"].agg("|".join)
    if sig.duplicated().any():
        raise SystemExit(
            f"nanogpt: duplicate curves among kept runs: {sorted(sig[sig.duplicated(keep=False)].index)[:6]}"
        )
    out = pd.DataFrame(
        {
            "family": v["family"],
            "run": v["run"],
            "params": NANOGPT_PARAMS,
            "tokens": v["step"] * NANOGPT_TOKENS_PER_STEP,
            "loss": loss,
            "seed": v["seed"],
            "config": v["family"],
            "arch": "dec",
            "step": v["step"],
            "batch_size": NANOGPT_TOKENS_PER_STEP,
            "run_tokens": v["train_steps"] * NANOGPT_TOKENS_PER_STEP,
            "dataset": "FineWeb-10B validation slice (10,485,760 tokens)",
            "lr_schedule": "record-specific; decays to the end of train_steps",
            "source": "jordan2024moddednanogpt",
            "record": v["record"],
            "train_steps": v["train_steps"],
            "complete": v["complete"].astype(bool),
        }
    )
    n_top_groups = runs.loc[top, "group"].nunique()
    notes.append(
        f"track 3: {len(runs)} runs; upstream groups with group_n_complete >= 3: {upstream_groups}; "
        f"'(top-level)' groups ({n_top_groups}) split by log file"
    )
    for fam, why in NANOGPT_EXCLUDED_GROUPS.items():
        notes.append(f"excluded {fam} ({int((runs['family'] == fam).sum())} runs): {why}")
    notes.append(
        f"kept {len(keep_fam)} groups, {len(kept)} runs ({int((~kept['complete']).sum())} stopped "
        f"before train_steps, flagged complete=False); dropped {n_step0} step-0 rows"
    )
    notes.append(
        f"N = {NANOGPT_PARAMS:,} (all parameters incl. embedding and head); tokens = step x {NANOGPT_TOKENS_PER_STEP:,}"
    )
    return out, notes


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
BUILDERS: dict[str, Callable[[Path], tuple[pd.DataFrame, Notes]]] = {
    "olmo-ladder": build_olmo_ladder,
    "hitchhiker": build_hitchhiker,
    "deepmind-routing": build_deepmind_routing,
    "nanogpt-replicates": build_nanogpt,
}


#: License texts copied verbatim into ``<out>/licenses/`` (raw path -> bundled name).
LICENSES = {
    "olmo-ladder/LICENSE.OLMo-ladder-Apache-2.0.txt": "olmo-ladder-OLMo-ladder-Apache-2.0.txt",
    "colpret-hitchhiker/LICENSE.ColPret-MIT.txt": "hitchhiker-ColPret-MIT.txt",
    "deepmind-routing/LICENSE-NOTICE.txt": "deepmind-routing-CC-BY-4.0-NOTICE.txt",
    "modded-nanogpt-replicates/LICENSE.modded-nanogpt-MIT.txt": (
        "nanogpt-replicates-modded-nanogpt-MIT.txt"
    ),
}


def copy_licenses(raw: Path, out: Path) -> None:
    (out / "licenses").mkdir(parents=True, exist_ok=True)
    for src, dst in LICENSES.items():
        (out / "licenses" / dst).write_bytes((raw / src).read_bytes())


def summarize(df: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    groups = [("all", df)] if by is None else list(df.groupby(by, sort=True))
    rows = []
    for key, g in groups:
        rows.append(
            {
                by or "dataset": key,
                "rows": len(g),
                "runs": g["run"].nunique(),
                "families": g["family"].nunique(),
                "params_min": g["params"].min(),
                "params_max": g["params"].max(),
                "tokens_min": g["tokens"].min(),
                "tokens_max": g["tokens"].max(),
            }
        )
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    fmt = {c: (lambda v: f"{v:.4g}") for c in cols if c.startswith(("params", "tokens"))}
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(fmt.get(c, str)(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--raw", type=Path, required=True, help="folder holding the raw dataset folders"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (e.g. data)")
    parser.add_argument(
        "--only", nargs="*", choices=sorted(BUILDERS), help="build only these datasets"
    )
    args = parser.parse_args(argv)
    if not args.raw.is_dir():
        parser.error(f"--raw {args.raw} is not a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    copy_licenses(args.raw, args.out)

    summaries = []
    for name, builder in BUILDERS.items():
        if args.only and name not in args.only:
            continue
        df, notes = builder(args.raw)
        df = finalize(df, name)
        path = args.out / f"{name}.csv.gz"
        write_csv_gz(df, path)
        s = summarize(df)
        s["dataset"] = name
        summaries.append(s)
        print(f"\n## {name}  ->  {path} ({path.stat().st_size:,} bytes)")
        for line in notes:
            print(f"- {line}")
        if "lr" not in df.columns or df["lr"].isna().all():
            print("- no logged LR in the raw files: no schedule reconstruction to check")
        if name in ("hitchhiker", "nanogpt-replicates"):
            fam = summarize(df, by="family")
            if name == "nanogpt-replicates":
                fam = fam.drop(columns=["families", "params_min", "params_max"])
            else:
                fam = fam.drop(columns=["families"])
            print()
            print(_markdown(fam))
    if summaries:
        print("\n## Summary\n")
        print(_markdown(pd.concat(summaries, ignore_index=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
