"""Tests for the tidy run-table validator :func:`bayescale.data.validate`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayescale import DataError
from bayescale.data import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, validate
from bayescale.data.schedule import run_schedule
from bayescale.data.validate import runs_without_schedule

NUMERIC = ("params", "tokens", "loss")


def _table(**overrides: object) -> pd.DataFrame:
    """Two runs of one family plus one run of another, deliberately out of order."""
    data: dict[str, object] = {
        "family": ["fa", "fa", "fa", "fa", "fb", "fb"],
        "run": ["r2", "r1", "r1", "r2", "q1", "q1"],
        "params": [2e8, 1e8, 1e8, 2e8, 5e7, 5e7],
        "tokens": [4e9, 3e9, 1e9, 2e9, 1e10, 5e9],
        "loss": [2.9, 3.1, 3.5, 3.2, 2.7, 2.8],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def _raises(df: pd.DataFrame, *fragments: str, **kwargs: bool) -> str:
    with pytest.raises(DataError) as info:
        validate(df, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------- valid input


def test_valid_table_is_sorted_typed_and_unchanged() -> None:
    df = _table(seed=[0, 1, 2, 3, 4, 5], note=["a", "b", "c", "d", "e", "f"])
    before = df.copy(deep=True)
    out = validate(df)
    pd.testing.assert_frame_equal(df, before)  # input not mutated
    assert out is not df
    assert list(out.columns) == list(df.columns)
    assert out["run"].tolist() == ["r1", "r1", "r2", "r2", "q1", "q1"]
    assert out["tokens"].tolist() == [1e9, 3e9, 2e9, 4e9, 5e9, 1e10]
    assert out["loss"].tolist() == [3.5, 3.1, 3.2, 2.9, 2.8, 2.7]
    assert out["seed"].tolist() == [2, 1, 3, 0, 5, 4]
    assert out["note"].tolist() == ["c", "b", "d", "a", "f", "e"]
    assert list(out.index) == list(range(6))
    for col in NUMERIC:
        assert out[col].dtype == np.float64


def test_integer_and_numeric_string_labels_are_canonicalised() -> None:
    params = [200_000_000, 100_000_000, 100_000_000, 200_000_000, 50_000_000, 50_000_000]
    df = _table(run=[2, 1, 1, 2, 3, 3], params=params)
    out = validate(df)
    assert set(out["run"]) == {"1", "2", "3"}
    assert out["params"].dtype == np.float64


def test_column_constants() -> None:
    assert REQUIRED_COLUMNS == ("family", "run", "params", "tokens", "loss")
    assert set(OPTIONAL_COLUMNS) == {
        "seed", "arch", "config", "step", "batch_size", "run_tokens", "dataset",
        "lr_schedule", "source", "schedule", "warmup_tokens", "final_lr_fraction",
        "schedule_tokens", "decay_tokens", "lr",
    }  # fmt: skip


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- structural errors


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_missing_required_column(column: str) -> None:
    _raises(_table().drop(columns=column), "missing required column", repr(column))


def test_all_missing_columns_are_named() -> None:
    _raises(_table().drop(columns=["params", "loss"]), "'params'", "'loss'")


def test_not_a_dataframe() -> None:
    _raises({"family": ["a"]}, "DataFrame")  # type: ignore[arg-type]


def test_empty_table() -> None:
    _raises(_table().iloc[:0], "no rows")


def test_duplicate_column_names() -> None:
    df = _table()
    df = pd.concat([df, df[["loss"]]], axis=1)
    _raises(df, "duplicate column", "'loss'")


# --------------------------------------------------------------------------- value errors


@pytest.mark.parametrize("column", NUMERIC)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
def test_non_finite_values(column: str, bad: object) -> None:
    df = _table()
    df[column] = df[column].astype(object)
    df.loc[2, column] = bad  # row 2 belongs to run r1
    _raises(df, repr(column), "NaN or infinite", "'r1'", "index 2")


def test_nullable_float_na() -> None:
    df = _table(loss=pd.array([2.9, 3.1, pd.NA, 3.2, 2.7, 2.8], dtype="Float64"))
    _raises(df, "'loss'", "'r1'", "index 2")


@pytest.mark.parametrize("column", NUMERIC)
@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_values(column: str, bad: float) -> None:
    df = _table()
    df.loc[4, column] = bad  # row 4 belongs to run q1
    _raises(df, repr(column), "must be positive", "'q1'", "index 4")


@pytest.mark.parametrize("column", ["family", "run"])
def test_missing_labels(column: str) -> None:
    df = _table()
    df[column] = df[column].astype(object)
    df.loc[3, column] = None
    _raises(df, repr(column), "missing values", "rows 3")


@pytest.mark.parametrize("column", NUMERIC)
def test_non_numeric_values(column: str) -> None:
    df = _table()
    df[column] = df[column].astype(object)
    df.loc[5, column] = "1.2B"
    _raises(df, repr(column), "non-numeric", "rows 5", "'1.2B'")


def test_booleans_are_not_numbers() -> None:
    df = _table()
    df["tokens"] = df["tokens"].astype(object)
    df.loc[0, "tokens"] = True
    _raises(df, "'tokens'", "non-numeric", "True")


def test_labels_that_merge_as_text() -> None:
    # 1 and "1" are different runs in the input but would both become "1".
    df = _table(run=[1, "1", "1", 1, "q1", "q1"], params=[1e8] * 4 + [5e7] * 2)
    df["tokens"] = [1e9, 2e9, 3e9, 4e9, 1e10, 5e9]
    _raises(df, "'run'", "'1'")


def test_run_with_two_param_counts() -> None:
    df = _table()
    df.loc[1, "params"] = 1.5e8  # run r1 now has 1e8 and 1.5e8
    _raises(df, "one params", "'r1'", "parameter counts")


def test_run_with_two_families() -> None:
    df = _table()
    df.loc[5, "family"] = "fa"  # run q1 now in fa and fb
    _raises(df, "one family", "'q1'")


def test_duplicate_run_tokens() -> None:
    df = _table()
    df.loc[3, "tokens"] = 4e9  # r2 has 4e9 twice
    _raises(df, "duplicate (run, tokens)", "'r2'", "index 0, 3")


def test_same_tokens_in_different_runs_is_fine() -> None:
    df = _table()
    df.loc[3, "tokens"] = 1e9  # r2 shares 1e9 with r1
    validate(df)


def test_tokens_must_increase_with_step() -> None:
    df = _table(step=[400, 300, 100, 200, 20, 10])
    validate(df)
    df.loc[0, "step"] = 150  # r2: step 150 -> 4e9 tokens, step 200 -> 2e9 tokens
    _raises(df, "tokens must increase with step", "'r2'")


def test_duplicate_steps_are_rejected_whatever_the_row_order() -> None:
    df = _table(step=[400, 300, 100, 400, 20, 10])  # r2 has step 400 twice
    _raises(df, "step", "'r2'")
    _raises(df.iloc[::-1], "step", "'r2'")


# --------------------------------------------------------------------------- LR schedules

NAN = np.nan


def _scheduled(**overrides: object) -> pd.DataFrame:
    """``_table()`` with a schedule per run: r2 cosine, r1 linear (ends at run_tokens), q1 wsd.

    Rows 0 and 3 are r2, rows 1 and 2 are r1, rows 4 and 5 are q1. r1 logs no LR.
    """
    columns: dict[str, object] = {
        "run_tokens": [4e9, 3e9, 3e9, 4e9, 1e10, 1e10],
        "schedule": ["cosine", "linear", "linear", "cosine", "wsd", "wsd"],
        "warmup_tokens": [1e8, 0.0, 0.0, 1e8, 5e8, 5e8],
        "final_lr_fraction": [0.1, 0.0, 0.0, 0.1, 0.0, 0.0],
        "schedule_tokens": [4e9, NAN, NAN, 4e9, 1e10, 1e10],
        "decay_tokens": [NAN, NAN, NAN, NAN, 2e9, 2e9],
        "lr": [3e-4, NAN, NAN, 5e-4, 1e-4, 2e-4],
    }
    columns.update(overrides)
    return _table(**columns)


def test_valid_schedule_table_is_kept_and_typed() -> None:
    df = _scheduled(warmup_tokens=[100_000_000, 0, 0, 100_000_000, 500_000_000, 500_000_000])
    out = validate(df)
    for col in ("warmup_tokens", "final_lr_fraction", "schedule_tokens", "decay_tokens", "lr"):
        assert out[col].dtype == np.float64, col
    assert out["schedule"].tolist() == ["linear"] * 2 + ["cosine"] * 2 + ["wsd"] * 2
    assert out["lr"].tolist()[2:] == [5e-4, 3e-4, 2e-4, 1e-4]
    assert out["lr"].iloc[:2].isna().all()
    # every validated schedule can be reconstructed: peak after the warm-up, floor at the end
    for _, row in out.drop_duplicates("run").iterrows():
        sched = run_schedule(row.to_dict())
        at = [sched.warmup_tokens, sched.schedule_tokens, 2 * sched.schedule_tokens]
        h = sched.lr_fraction(np.linspace(0.0, 2.0 * sched.schedule_tokens, 50))
        assert np.isfinite(h).all() and (h >= 0).all() and (h <= 1).all()
        np.testing.assert_allclose(
            sched.lr_fraction(np.array(at)), [1.0, *[row.final_lr_fraction] * 2]
        )


def test_warmup_may_be_zero_and_columns_absent() -> None:
    df = _scheduled(warmup_tokens=[0.0] * 6).drop(columns=["lr", "schedule_tokens"])
    validate(df)
    validate(_scheduled().drop(columns=["warmup_tokens", "decay_tokens"]).iloc[:4])


def test_some_runs_without_schedule_are_valid_and_listed() -> None:
    df = _scheduled(
        schedule=["cosine", "linear", "linear", "cosine", None, None],
        decay_tokens=[NAN] * 6,
        lr=[3e-4, NAN, NAN, 5e-4, NAN, NAN],
    )
    out = validate(df)
    assert runs_without_schedule(df) == ["q1"]
    assert runs_without_schedule(out) == ["q1"]
    # an lr value alone is a schedule; so is a schedule alone (r1 logs no LR)
    assert runs_without_schedule(df.assign(schedule=None)) == ["r1", "q1"]
    assert runs_without_schedule(_table()) == ["r2", "r1", "q1"]


def test_unknown_schedule_name() -> None:
    df = _scheduled(schedule=["cosine", "linear", "linear", "cosine", "cosne", "cosne"])
    message = _raises(df, "'schedule'", "'cosne'", "'q1'")
    assert "inverse_sqrt" in message and "'r2'" not in message


@pytest.mark.parametrize(
    ("column", "value"),
    [("schedule", "linear"), ("schedule", None), ("warmup_tokens", 2e8), ("schedule_tokens", NAN)],
)
def test_schedule_columns_must_be_constant_within_a_run(column: str, value: object) -> None:
    df = _scheduled()
    df[column] = df[column].astype(object)
    df.loc[0, column] = value  # row 0 is r2
    message = _raises(df, repr(column), "one value per run", "'r2'")
    assert "'r1'" not in message and "'q1'" not in message


def test_lr_may_vary_within_a_run() -> None:
    # lr is per checkpoint: q1 logs 2e-4 at 5e9 tokens and 1e-4 at 1e10
    assert validate(_scheduled())["lr"].iloc[4:].tolist() == [2e-4, 1e-4]


def test_scheduled_run_needs_final_lr_fraction() -> None:
    df = _scheduled(final_lr_fraction=[0.1, NAN, NAN, 0.1, 0.0, 0.0])
    message = _raises(df, "'final_lr_fraction'", "'r1'")
    assert "'r2'" not in message
    _raises(_scheduled().drop(columns="final_lr_fraction"), "'final_lr_fraction'", "'q1'", "'r1'")


def test_scheduled_run_needs_an_end() -> None:
    # r1 has no schedule_tokens and falls back to run_tokens
    message = _raises(_scheduled().drop(columns="run_tokens"), "'schedule_tokens'", "'r1'")
    assert "'r2'" not in message and "'q1'" not in message
    df = _scheduled(schedule_tokens=[4e9, NAN, NAN, 4e9, NAN, NAN])
    df.loc[[4, 5], "run_tokens"] = NAN
    message = _raises(df, "'run_tokens'", "'q1'")
    assert "'r1'" not in message


def test_scheduled_run_needs_a_warmup_value() -> None:
    df = _scheduled(warmup_tokens=[NAN, 0.0, 0.0, NAN, 5e8, 5e8])
    message = _raises(df, "'warmup_tokens'", "'r2'", "0 for no warm-up")
    assert "'q1'" not in message


@pytest.mark.parametrize("bad", [1.5, -0.1, np.inf])
def test_final_lr_fraction_outside_unit_interval(bad: float) -> None:
    df = _scheduled(final_lr_fraction=[0.1, 0.0, 0.0, 0.1, bad, bad])
    _raises(df, "'final_lr_fraction'", "[0, 1]", "'q1'", "index 4, 5")


@pytest.mark.parametrize("bad", [-1.0, -np.inf])
def test_negative_warmup(bad: float) -> None:
    df = _scheduled(warmup_tokens=[1e8, bad, bad, 1e8, 5e8, 5e8])
    _raises(df, "'warmup_tokens'", ">= 0", "'r1'")


@pytest.mark.parametrize(
    ("warmup", "run"),
    [([4e9, 0.0, 0.0, 4e9, 5e8, 5e8], "'r2'"), ([1e8, 3e9, 3e9, 1e8, 5e8, 5e8], "'r1'")],
)
def test_warmup_must_end_before_the_schedule(warmup: list[float], run: str) -> None:
    message = _raises(_scheduled(warmup_tokens=warmup), "'warmup_tokens'", "end before", run)
    assert "'q1'" not in message


@pytest.mark.parametrize("decay", [NAN, 0.0, -1e9])
def test_wsd_needs_positive_decay_tokens(decay: float) -> None:
    df = _scheduled(decay_tokens=[NAN, NAN, NAN, NAN, decay, decay])
    message = _raises(df, "'decay_tokens'", "'q1'")
    assert "'r2'" not in message


def test_wsd_decay_must_fit_after_the_warmup() -> None:
    # q1: schedule ends at 1e10, warm-up 5e8 -> at most 9.5e9 of decay
    validate(_scheduled(decay_tokens=[NAN] * 4 + [9.5e9] * 2))
    df = _scheduled(decay_tokens=[NAN] * 4 + [9.6e9] * 2)
    _raises(df, "'decay_tokens'", "'wsd'", "'q1'")


@pytest.mark.parametrize("bad", [NAN, np.inf, 0.0, -3e-4])
def test_logged_lr_must_be_finite_and_positive(bad: float) -> None:
    df = _scheduled(lr=[3e-4, NAN, NAN, 5e-4, bad, 2e-4])  # row 4 is q1
    message = _raises(df, "'lr'", "'q1'", "index 4")
    assert "'r1'" not in message  # r1 logs no LR at all, which is allowed


def test_non_numeric_schedule_values() -> None:
    df = _scheduled()
    df["lr"] = df["lr"].astype(object)
    df.loc[5, "lr"] = "3e-4/s"
    _raises(df, "'lr'", "non-numeric", "'q1'", "'3e-4/s'")
    df = _scheduled()
    df["warmup_tokens"] = df["warmup_tokens"].astype(object)
    df.loc[[1, 2], "warmup_tokens"] = True
    _raises(df, "'warmup_tokens'", "non-numeric", "'r1'")


# --------------------------------------------------------------------------- unit heuristics


def test_perplexity_like_losses_need_override() -> None:
    df = _table(loss=np.exp([3.9, 4.1, 4.5, 4.2, 3.7, 3.8]))
    message = _raises(df, "'loss'", "perplexit", "allow_perplexity=True", "numpy.log")
    assert "20" in message
    out = validate(df, allow_perplexity=True)
    assert sorted(out["loss"]) == sorted(df["loss"])


def test_one_small_loss_is_enough_to_pass() -> None:
    df = _table(loss=[25.0, 30.0, 40.0, 22.0, 21.0, 20.0])
    assert len(validate(df)) == 6


@pytest.mark.parametrize(
    "tokens", [[4.0, 3.0, 1.0, 2.0, 10.0, 5.0], [9.6, 9.5, 9.0, 9.3, 10.0, 9.7]]
)
def test_tokens_in_billions_or_log10_need_override(tokens: list[float]) -> None:
    df = _table(tokens=tokens)
    _raises(df, "'tokens'", "1e9", "10**tokens", "allow_small_tokens=True")
    out = validate(df, allow_small_tokens=True)
    assert sorted(out["tokens"]) == sorted(tokens)


def test_one_large_token_count_is_enough_to_pass() -> None:
    df = _table(tokens=[4.0, 3.0, 1.0, 2.0, 1e6, 5.0])
    assert len(validate(df)) == 6


# --------------------------------------------------------------------------- property tests

_LABEL = st.text(alphabet="abcxyzAZ09_-.é", min_size=1, max_size=6)


@st.composite
def valid_tables(draw: st.DrawFn) -> pd.DataFrame:
    families = draw(st.lists(_LABEL, min_size=1, max_size=3, unique=True))
    run_names = draw(st.lists(_LABEL, min_size=len(families), max_size=8, unique=True))
    with_step = draw(st.booleans())
    rows = []
    for i, run in enumerate(run_names):
        family = families[i % len(families)]
        params = draw(
            st.one_of(
                st.integers(10**6, 10**11),
                st.floats(1e6, 1e11, allow_nan=False, allow_infinity=False),
            )
        )
        tokens = draw(
            st.lists(
                st.floats(1e6, 1e13, allow_nan=False, allow_infinity=False),
                min_size=1,
                max_size=6,
                unique=True,
            )
        )
        for step, tok in enumerate(sorted(tokens), start=1):
            row = {
                "family": family,
                "run": run,
                "params": params,
                "tokens": tok,
                "loss": draw(st.floats(0.05, 20.0, allow_nan=False)),
                "seed": draw(st.integers(0, 5)),
                "source": draw(st.sampled_from(["paper", "wandb", None])),
                "extra": draw(st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3))),
                "run_tokens": max(tokens),
            }
            if with_step:
                row["step"] = step * 10
            rows.append(row)
    df = pd.DataFrame(rows)
    order = draw(st.permutations(range(len(df))))
    df = df.iloc[list(order)]
    df.index = draw(
        st.lists(st.integers(-1000, 1000), min_size=len(df), max_size=len(df), unique=True)
    )
    return df


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["family"] = out["family"].astype(str)
    out["run"] = out["run"].astype(str)
    for col in NUMERIC:
        out[col] = out[col].astype("float64")
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_tables())
def test_valid_tables_round_trip(df: pd.DataFrame) -> None:
    before = df.copy(deep=True)
    out = validate(df)
    pd.testing.assert_frame_equal(df, before)  # input not mutated
    assert list(out.columns) == list(df.columns)  # extra columns kept, in order
    assert len(out) == len(df)
    assert list(out.index) == list(range(len(df)))
    # Same multiset of rows: (run, tokens) is a key, so sorting by it aligns both frames.
    expected = _canonical(df).sort_values(["family", "run", "tokens"], kind="mergesort")
    pd.testing.assert_frame_equal(out, expected.reset_index(drop=True))
    keys = list(zip(out["family"], out["run"], out["tokens"], strict=True))
    assert keys == sorted(keys)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    valid_tables(),
    st.sampled_from(NUMERIC),
    st.sampled_from([np.nan, np.inf, 0.0, -3.0]),
    st.data(),
)
def test_one_bad_value_is_always_caught(
    df: pd.DataFrame, column: str, bad: float, data: st.DataObject
) -> None:
    pos = data.draw(st.integers(0, len(df) - 1))
    df = df.copy()
    df[column] = df[column].astype("float64")
    df.iloc[pos, df.columns.get_loc(column)] = bad
    _raises(df, repr(column), repr(str(df["run"].iloc[pos])))
