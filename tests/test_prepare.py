"""Tests for the run-table preparation helpers in :mod:`bayescale.data.prepare`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayescale.data import (
    ProtocolSplit,
    drop_warmup,
    final_fraction,
    max_param_runs,
    protocol_split,
    thin_log_spaced,
    validate,
)

# A hand-built pair of families. In "toy" the largest size (1e9) has two seeds; in "mini" the
# largest size is 1e8, the same N as the *smallest* "toy" run, so "largest" must be per family.
RUNS: dict[str, tuple[str, float, list[float]]] = {
    "toy-s": ("toy", 1e8, [1e9, 5e9, 1e10, 2e10, 5e10]),
    "toy-m": ("toy", 3e8, [2e9, 1e10, 3e10, 7e10, 1e11]),
    "toy-L-a": ("toy", 1e9, [1e9, 1e10, 5e10, 1.4e11, 2e11]),  # 1.4e11 is exactly 70% of 2e11
    "toy-L-b": ("toy", 1e9, [1e10, 1e11, 1.5e11]),  # 1e11 < 70% of 1.5e11
    "mini-1": ("mini", 1e7, [5e9, 2e10]),
    "mini-2": ("mini", 1e8, [3e9, 8e9, 4e10]),
}


def _synthetic() -> pd.DataFrame:
    rows = [
        {
            "family": family,
            "run": run,
            "params": params,
            "tokens": tok,
            "loss": 2.0 + 400.0 / params**0.34 + 400.0 / tok**0.28,
            "seed": int(run.endswith("-b")),
        }
        for run, (family, params, tokens) in RUNS.items()
        for tok in tokens
    ]
    return validate(pd.DataFrame(rows).sample(frac=1.0, random_state=0))


def _keys(df: pd.DataFrame) -> set[tuple[str, float]]:
    return set(zip(df["run"], df["tokens"], strict=True))


def _by_run(pairs: set[tuple[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for run, tok in sorted(pairs):
        out.setdefault(run, []).append(tok)
    return out


def _assert_rows_of(sub: pd.DataFrame, full: pd.DataFrame) -> None:
    """Every row of ``sub`` is an unmodified row of ``full`` (same columns, same values)."""
    assert list(sub.columns) == list(full.columns)
    assert list(sub.index) == list(range(len(sub)))
    merged = sub.merge(full, how="left", on=list(full.columns), indicator=True)
    assert (merged["_merge"] == "both").all()
    assert len(merged) == len(sub)


# --------------------------------------------------------------------------- drop_warmup


def test_drop_warmup_default_is_10b_tokens() -> None:
    runs = _synthetic()
    before = runs.copy(deep=True)
    out = drop_warmup(runs)
    pd.testing.assert_frame_equal(runs, before)
    _assert_rows_of(out, runs)
    assert _keys(out) == {k for k in _keys(runs) if k[1] >= 1e10}
    assert (out["tokens"] >= 1e10).all()
    assert ("toy-s", 1e10) in _keys(out)  # the boundary is kept
    assert _by_run(_keys(out))["mini-2"] == [4e10]  # 3e9 and 8e9 are warm-up


def test_drop_warmup_configurable_threshold() -> None:
    runs = _synthetic()
    assert _keys(drop_warmup(runs, min_tokens=5e9)) == {k for k in _keys(runs) if k[1] >= 5e9}
    pd.testing.assert_frame_equal(drop_warmup(runs, min_tokens=None), runs)


def test_drop_warmup_fraction_of_last_checkpoint() -> None:
    runs = _synthetic()
    out = drop_warmup(runs, min_tokens=None, min_fraction=0.3)
    assert _by_run(_keys(out)) == {
        "toy-s": [2e10, 5e10],  # >= 1.5e10
        "toy-m": [3e10, 7e10, 1e11],  # >= 3e10 (boundary kept)
        "toy-L-a": [1.4e11, 2e11],  # >= 6e10
        "toy-L-b": [1e11, 1.5e11],  # >= 4.5e10
        "mini-1": [2e10],  # >= 6e9
        "mini-2": [4e10],  # >= 1.2e10
    }


def test_drop_warmup_fraction_uses_run_tokens_when_present() -> None:
    runs = _synthetic()
    planned = {"toy-s": 1e11, "mini-1": np.nan}  # toy-s was stopped at half its planned length
    runs["run_tokens"] = runs["run"].map(planned).astype(float)
    runs.loc[runs["run"].isin(["toy-m", "toy-L-a", "toy-L-b", "mini-2"]), "run_tokens"] = (
        runs.groupby("run")["tokens"].transform("max")
    )
    out = drop_warmup(runs, min_tokens=None, min_fraction=0.3)
    kept = _by_run(_keys(out))
    assert kept["toy-s"] == [5e10]  # >= 0.3 x 1e11, not 0.3 x 5e10
    assert kept["mini-1"] == [2e10]  # missing run_tokens falls back to the last checkpoint
    assert kept["toy-m"] == [3e10, 7e10, 1e11]
    _assert_rows_of(out, runs)


def test_drop_warmup_combines_both_cuts() -> None:
    runs = _synthetic()
    out = drop_warmup(runs, min_tokens=1e10, min_fraction=0.5)
    for run, toks in _by_run(_keys(out)).items():
        final = max(RUNS[run][2])
        assert all(t >= 1e10 and t >= 0.5 * final for t in toks)
    assert _keys(out) == {
        (r, t) for r, t in _keys(runs) if t >= 1e10 and t >= 0.5 * max(RUNS[r][2])
    }


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_drop_warmup_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="min_fraction"):
        drop_warmup(_synthetic(), min_fraction=fraction)


# --------------------------------------------------------------------------- F_max / q-maximal


def test_max_param_runs_is_per_family_and_keeps_all_seeds() -> None:
    runs = _synthetic()
    out = max_param_runs(runs)
    _assert_rows_of(out, runs)
    assert set(out["run"]) == {"toy-L-a", "toy-L-b", "mini-2"}
    assert _keys(out) == {k for k in _keys(runs) if k[0] in {"toy-L-a", "toy-L-b", "mini-2"}}


def test_final_fraction_default_last_30_percent() -> None:
    runs = _synthetic()
    out = final_fraction(runs)
    _assert_rows_of(out, runs)
    assert _by_run(_keys(out)) == {
        "toy-s": [5e10],  # >= 3.5e10
        "toy-m": [7e10, 1e11],  # >= 7e10 (boundary kept)
        "toy-L-a": [1.4e11, 2e11],  # >= 1.4e11 (boundary kept)
        "toy-L-b": [1.5e11],  # >= 1.05e11
        "mini-1": [2e10],  # >= 1.4e10
        "mini-2": [4e10],  # >= 2.8e10
    }


def test_final_fraction_boundaries_survive_rounding() -> None:
    # (1 - 0.7) * 1e10 == 3000000000.0000005 in floating point; 3e9 is still in the last 70%.
    runs = validate(
        pd.DataFrame(
            {"family": "f", "run": "r", "params": 1e8, "tokens": [1e9, 3e9, 1e10], "loss": 3.0}
        )
    )
    assert final_fraction(runs, q=0.7)["tokens"].tolist() == [3e9, 1e10]
    assert drop_warmup(runs, min_tokens=None, min_fraction=0.3)["tokens"].tolist() == [3e9, 1e10]


def test_final_fraction_q_one_keeps_everything_and_bad_q_raises() -> None:
    runs = _synthetic()
    pd.testing.assert_frame_equal(final_fraction(runs, q=1.0), runs)
    only_last = final_fraction(runs, q=1e-6)
    assert _keys(only_last) == {(r, max(toks)) for r, (_, _, toks) in RUNS.items()}
    for q in (0.0, -0.2, 1.1):
        with pytest.raises(ValueError, match="q must be"):
            final_fraction(runs, q=q)


# --------------------------------------------------------------------------- protocol split


def test_protocol_split_on_synthetic_families() -> None:
    runs = _synthetic()
    before = runs.copy(deep=True)
    split = protocol_split(runs)
    pd.testing.assert_frame_equal(runs, before)
    assert isinstance(split, ProtocolSplit)
    _assert_rows_of(split.train, runs)
    _assert_rows_of(split.target, runs)
    # F_train: the non-largest runs of each family, checkpoints with >= 10B tokens.
    assert _by_run(_keys(split.train)) == {
        "toy-s": [1e10, 2e10, 5e10],
        "toy-m": [1e10, 3e10, 7e10, 1e11],
        "mini-1": [2e10],
    }
    # F_target: the largest runs of each family (all seeds), last 30% of each run.
    assert _by_run(_keys(split.target)) == {
        "toy-L-a": [1.4e11, 2e11],
        "toy-L-b": [1.5e11],
        "mini-2": [4e10],
    }
    assert not set(split.train["run"]) & set(split.target["run"])


def test_protocol_split_options() -> None:
    runs = _synthetic()
    split = protocol_split(runs, warmup_tokens=None, target_fraction=0.5)
    assert _by_run(_keys(split.train)) == {
        "toy-s": RUNS["toy-s"][2],
        "toy-m": RUNS["toy-m"][2],
        "mini-1": RUNS["mini-1"][2],
    }
    assert _by_run(_keys(split.target)) == {
        "toy-L-a": [1.4e11, 2e11],  # >= 1e11
        "toy-L-b": [1e11, 1.5e11],  # >= 7.5e10
        "mini-2": [4e10],  # >= 2e10
    }


def test_protocol_split_single_size_family_has_no_train_rows() -> None:
    runs = _synthetic()
    one = runs[runs["run"].isin(["toy-L-a", "toy-L-b"])].reset_index(drop=True)
    split = protocol_split(one)
    assert len(split.train) == 0
    assert list(split.train.columns) == list(one.columns)
    assert set(split.target["run"]) == {"toy-L-a", "toy-L-b"}


# --------------------------------------------------------------------------- thin_log_spaced


def test_thin_log_spaced_on_dense_geometric_grid_is_even() -> None:
    tokens = np.geomspace(1e8, 1e12, 1001)
    runs = validate(
        pd.DataFrame({"family": "f", "run": "r", "params": 1e8, "tokens": tokens, "loss": 3.0})
    )
    out = thin_log_spaced(runs, max_points=11)
    assert len(out) == 11
    gaps = np.diff(np.log10(out["tokens"].to_numpy()))
    np.testing.assert_allclose(gaps, 0.4, rtol=0.02)
    assert out["tokens"].iloc[0] == tokens[0]
    assert out["tokens"].iloc[-1] == tokens[-1]


def test_thin_log_spaced_on_linear_checkpoints_favours_the_start() -> None:
    # Checkpoints every 1B tokens: a log grid keeps every early one and few late ones.
    runs = validate(
        pd.DataFrame(
            {
                "family": "f",
                "run": "r",
                "params": 1e8,
                "tokens": 1e9 * np.arange(1, 1001),
                "loss": 3.0,
            }
        )
    )
    out = thin_log_spaced(runs, max_points=20)
    tok = out["tokens"].to_numpy()
    assert 10 <= len(tok) <= 20
    assert tok[:3].tolist() == [1e9, 2e9, 3e9]
    assert tok[-1] == 1e12
    assert (tok > 5e11).sum() <= 3
    # Every gap between kept checkpoints is about one grid step, unless the two are neighbours
    # in the input (1B -> 2B is already wider than a step).
    step = np.log(1000) / 19
    pos = np.searchsorted(runs["tokens"].to_numpy(), tok)
    gaps = np.diff(np.log(tok))
    assert np.median(gaps) == pytest.approx(step, rel=0.05)
    wide = gaps > 1.5 * step
    assert wide.any()
    assert (np.diff(pos)[wide] == 1).all()


def test_thin_log_spaced_rejects_too_few_points() -> None:
    with pytest.raises(ValueError, match="max_points"):
        thin_log_spaced(_synthetic(), max_points=1)


def test_thin_log_spaced_empty_table() -> None:
    runs = _synthetic().iloc[:0]
    assert len(thin_log_spaced(runs, max_points=3)) == 0


@st.composite
def run_tables(draw: st.DrawFn) -> pd.DataFrame:
    n_runs = draw(st.integers(1, 4))
    frames = []
    for i in range(n_runs):
        tokens = draw(st.lists(st.integers(10**6, 10**13), min_size=1, max_size=40, unique=True))
        frames.append(
            pd.DataFrame(
                {
                    "family": f"fam{i % 2}",
                    "run": f"run{i}",
                    "params": float(10 ** (6 + i)),
                    "tokens": np.asarray(tokens, dtype=float),
                    "loss": 3.0,
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    if draw(st.booleans()):
        df = validate(df)
    else:  # thin_log_spaced must not rely on the input being sorted
        df = df.iloc[list(draw(st.permutations(range(len(df)))))].reset_index(drop=True)
    df["row_id"] = np.arange(len(df))
    return df


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run_tables(), st.integers(2, 12))
def test_thin_log_spaced_properties(runs: pd.DataFrame, k: int) -> None:
    before = runs.copy(deep=True)
    out = thin_log_spaced(runs, max_points=k)
    pd.testing.assert_frame_equal(runs, before)
    _assert_rows_of(out, runs)
    # A subset of the input rows, in input order.
    ids = out["row_id"].to_numpy()
    assert (np.diff(ids) > 0).all()
    pd.testing.assert_frame_equal(out, runs.iloc[ids].reset_index(drop=True))
    assert set(out["run"]) == set(runs["run"])
    for run, group in runs.groupby("run"):
        kept = out.loc[out["run"] == run, "tokens"].sort_values().to_numpy()
        all_tok = group["tokens"].sort_values().to_numpy()
        assert len(kept) <= k
        assert kept[0] == all_tok[0] and kept[-1] == all_tok[-1]
        if len(all_tok) <= k:
            np.testing.assert_array_equal(kept, all_tok)
            continue
        assert len(kept) >= 2
        # Roughly log-uniform: each point of the k-point log grid between the first and last
        # checkpoint is as close to a kept checkpoint as to any checkpoint at all.
        log_all, log_kept = np.log(all_tok), np.log(kept)
        grid = np.linspace(log_all[0], log_all[-1], k)
        nearest_any = np.abs(grid[:, None] - log_all[None, :]).min(axis=1)
        nearest_kept = np.abs(grid[:, None] - log_kept[None, :]).min(axis=1)
        np.testing.assert_allclose(nearest_kept, nearest_any, rtol=0, atol=1e-12)


def test_window_start_is_the_rule_fit_window_and_planning_share() -> None:
    from bayescale.data.prepare import run_length, window_start

    length = np.array([1e10, 1e10, 4e10])
    unscheduled = np.array([False, True, True])
    assert window_start(length, unscheduled, 0.2, 0.9).tolist() == [2e9, 9e9, 3.6e10]
    assert window_start(length, unscheduled, None, None).tolist() == [0.0, 0.0, 0.0]
    assert window_start(length, unscheduled, 0.5, None).tolist() == [5e9, 5e9, 2e10]
    assert window_start(length, unscheduled, 0.95, 0.9).tolist() == [9.5e9, 9.5e9, 3.8e10]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        window_start(length, unscheduled, 0.2, 1.0)
    # fit_window keeps exactly the checkpoints at or past the start (and each run's last one)
    from bayescale import fit_window

    runs = _synthetic()  # no schedules: every run is fitted from 0.9 of its length on
    window = fit_window(runs, 0.5, 0.9)
    start = window_start(run_length(runs), np.ones(len(runs), dtype=bool), 0.5, 0.9)
    past = runs["tokens"].to_numpy() >= start * (1 - 1e-9)
    last = runs.groupby("run")["tokens"].transform("max").to_numpy() == runs["tokens"].to_numpy()
    assert len(window.runs) == int((past | last).sum()) < len(runs)
    assert window.dropped == len(runs) - len(window.runs)


def test_run_length_prefers_schedule_then_run_tokens_then_last_checkpoint() -> None:
    from bayescale.data.prepare import run_length

    table = pd.DataFrame({"run": ["a", "a", "b", "c"], "tokens": [1.0, 2.0, 3.0, 4.0],
                          "run_tokens": [5.0, 5.0, np.nan, 6.0],
                          "schedule_tokens": [np.nan, np.nan, np.nan, 7.0]})
    assert run_length(table).tolist() == [5.0, 5.0, 3.0, 7.0]
