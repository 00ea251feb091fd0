"""Validation of the tidy run table: one row per evaluated checkpoint.

The validator never drops or alters a value. It either returns a copy with canonical dtypes,
sorted by ``(family, run, tokens)``, or raises :class:`bayescale.DataError` naming the problem
and the offending rows, runs or columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

import numpy as np
import pandas as pd

from bayescale.data.schedule import SCHEDULE_COLUMNS, SCHEDULES
from bayescale.errors import DataError

REQUIRED_COLUMNS: tuple[str, ...] = ("family", "run", "params", "tokens", "loss")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "seed",
    "arch",
    "config",
    "step",
    "batch_size",
    "run_tokens",
    "dataset",
    "lr_schedule",
    *SCHEDULE_COLUMNS,
    "lr",
    "source",
)
NUMERIC_COLUMNS: tuple[str, ...] = ("params", "tokens", "loss")
#: Optional numeric columns of the LR schedule, coerced to float64 when present.
SCHEDULE_NUMERIC_COLUMNS: tuple[str, ...] = (
    "warmup_tokens",
    "final_lr_fraction",
    "schedule_tokens",
    "decay_tokens",
    "lr",
)
LABEL_COLUMNS: tuple[str, ...] = ("family", "run")

#: Losses above this everywhere look like perplexities, not nats per token.
PERPLEXITY_THRESHOLD = 20.0
#: Tokens below this everywhere look like billions or log10 units, not raw counts.
SMALL_TOKENS_THRESHOLD = 1e6
_MAX_LISTED = 5


def _listing(items: Iterable[object], limit: int = _MAX_LISTED) -> str:
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{shown}{more}"


def validate(
    df: pd.DataFrame,
    *,
    allow_perplexity: bool = False,
    allow_small_tokens: bool = False,
    require: Sequence[str] = (),
) -> pd.DataFrame:
    """Check a run table and return it with canonical dtypes, sorted by family, run and tokens.

    Parameters
    ----------
    df
        One row per evaluated checkpoint with required columns ``family``, ``run``, ``params``
        (parameter count N), ``tokens`` (training tokens D seen at the checkpoint) and ``loss``
        (held-out loss in nats per token). Optional columns: ``seed``, ``arch``, ``config``,
        ``step``, ``batch_size`` (tokens per step), ``run_tokens`` (planned run length),
        ``dataset``, ``lr_schedule`` (free text), ``source``, and the learning-rate schedule
        of :mod:`bayescale.data.schedule`: per run ``schedule`` (one of
        :data:`~bayescale.data.schedule.SCHEDULES`), ``warmup_tokens``, ``final_lr_fraction``,
        ``schedule_tokens`` (defaults to ``run_tokens``), ``decay_tokens`` (``wsd`` only), and
        per checkpoint ``lr`` (logged LR, any units). Other columns are kept as they are.
    allow_perplexity
        Accept losses that all exceed 20 (they usually are perplexities; pass ``True`` if they
        really are losses).
    allow_small_tokens
        Accept token counts that are all below 1e6 (they usually are billions or log10 values).
    require
        Optional columns this use needs on top of the required ones, e.g.
        ``("step", "batch_size")`` for the Kaplan law. They must be present, and the numeric
        ones among them (``step``, ``batch_size``, ``run_tokens``) finite and positive.

    Returns
    -------
    pandas.DataFrame
        A new frame with the same rows and values, ``family``/``run`` as strings,
        ``params``/``tokens``/``loss`` and the numeric schedule columns present
        (``warmup_tokens``, ``final_lr_fraction``, ``schedule_tokens``, ``decay_tokens``,
        ``lr``) as float64, sorted by ``(family, run, tokens)`` with a fresh index.

    Raises
    ------
    DataError
        On missing required (or ``require``-d) columns, missing or non-finite values, non-positive
        params/tokens/loss, a run with two parameter counts or two families, duplicate
        ``(run, tokens)`` pairs, and on perplexity-like losses or tiny token counts unless
        explicitly allowed. Schedule columns: a ``schedule`` not in ``SCHEDULES``, schedule
        columns that vary within a run, a scheduled run without ``final_lr_fraction``, without
        an end (``schedule_tokens`` or ``run_tokens``) or with a missing ``warmup_tokens``
        value, ``final_lr_fraction`` outside [0, 1], negative ``warmup_tokens``, a warm-up that
        does not end before the schedule, a ``wsd`` run without a positive ``decay_tokens`` or
        whose decay is longer than the schedule after the warm-up, and non-finite or
        non-positive ``lr`` values in a run that logs one. A table where only some runs have a
        schedule is valid (see :func:`runs_without_schedule`). The message names the
        offending rows, runs or columns.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"missing required column(s) {_listing(missing)}; "
            f"a run table needs {', '.join(REQUIRED_COLUMNS)} (found {_listing(df.columns, 12)})"
        )
    _check_required_extras(df, require)
    if df.columns.duplicated().any():
        raise DataError(f"duplicate column names: {_listing(df.columns[df.columns.duplicated()])}")
    if len(df) == 0:
        raise DataError("the run table has no rows")

    out = df.copy()
    for col in LABEL_COLUMNS:
        null = out[col].isna()
        if null.any():
            raise DataError(
                f"column {col!r} has missing values in rows {_listing(out.index[null])}"
            )
        as_str = out[col].astype(str)
        _check_labels_stay_distinct(out[col], as_str, col)
        out[col] = as_str
    for col in NUMERIC_COLUMNS:
        original = out[col]
        values = pd.to_numeric(original, errors="coerce")
        # Booleans would silently become 0/1; treat them as the non-numeric values they are.
        is_bool = _bool_mask(original)
        bad_type = (values.isna() & original.notna()).to_numpy(dtype=bool) | is_bool
        if bad_type.any():
            rows = out.index[bad_type]
            raise DataError(
                f"column {col!r} has non-numeric values in rows {_listing(rows)} "
                f"(e.g. {original[bad_type].iloc[0]!r})"
            )
        out[col] = values.astype("float64")

    for col in NUMERIC_COLUMNS:
        values = out[col].to_numpy()
        not_finite = ~np.isfinite(values)
        if not_finite.any():
            _raise_rows(out, not_finite, f"column {col!r} has NaN or infinite values")
        non_positive = values <= 0
        if non_positive.any():
            _raise_rows(out, non_positive, f"column {col!r} must be positive")

    _check_one_value_per_run(out, "params", "parameter counts")
    _check_one_value_per_run(out, "family", "families")

    duplicated = out.duplicated(subset=["run", "tokens"], keep=False)
    if duplicated.any():
        _raise_rows(out, duplicated.to_numpy(), "duplicate (run, tokens) pairs")

    if "step" in out.columns:
        _check_tokens_follow_steps(out)

    for col in SCHEDULE_NUMERIC_COLUMNS:
        if col in out.columns:
            out[col] = _optional_numeric(out, col)
    _check_schedule(out)

    if not allow_perplexity and (out["loss"] > PERPLEXITY_THRESHOLD).all():
        raise DataError(
            f"every value in column 'loss' is above {PERPLEXITY_THRESHOLD:g} "
            f"(min {out['loss'].min():.4g}); these "
            "look like perplexities. Convert with numpy.log(perplexity) to nats per token, or "
            "pass allow_perplexity=True if they really are losses."
        )
    if not allow_small_tokens and (out["tokens"] < SMALL_TOKENS_THRESHOLD).all():
        raise DataError(
            f"every value in column 'tokens' is below {SMALL_TOKENS_THRESHOLD:g} "
            f"(max {out['tokens'].max():.4g});"
            " tokens must be raw counts. If they are in billions multiply by 1e9; if they are "
            "log10 values use 10**tokens; or pass allow_small_tokens=True if they are right."
        )

    out = out.sort_values(["family", "run", "tokens"], kind="mergesort").reset_index(drop=True)
    return out


_EXTRA_MEANING = {
    "step": "the optimizer step of each checkpoint",
    "batch_size": "tokens per optimizer step",
    "run_tokens": "planned total tokens of the run",
    "schedule": f"the run's LR schedule shape, one of {', '.join(SCHEDULES)}",
    "warmup_tokens": "length of the run's linear LR warm-up in tokens (0 for none)",
    "final_lr_fraction": "LR at the end of the decay as a fraction of the peak",
    "schedule_tokens": "tokens at which the LR decay ends (default: run_tokens)",
    "decay_tokens": "length of the final decay of a warm-up-stable-decay run, in tokens",
    "lr": "the logged learning rate at each checkpoint",
}
#: Required extras that must be finite and positive in every row.
_POSITIVE_EXTRAS = ("step", "batch_size", "run_tokens", "schedule_tokens", "decay_tokens", "lr")


def _check_required_extras(df: pd.DataFrame, require: Sequence[str]) -> None:
    """Refuse a table without the optional columns a law needs, naming what they mean."""
    require = [require] if isinstance(require, str) else list(require)
    missing = [c for c in require if c not in df.columns]
    if missing:
        described = ", ".join(
            f"{c!r} ({_EXTRA_MEANING[c]})" if c in _EXTRA_MEANING else repr(c) for c in missing
        )
        raise DataError(
            f"this law needs column(s) {described}, missing from the run table "
            f"(found {_listing(df.columns, 12)}); e.g. law='kaplan' needs 'step' and "
            "'batch_size' for every checkpoint"
        )
    for col in require:
        if col not in _POSITIVE_EXTRAS:
            continue
        original = df[col]
        values = pd.to_numeric(original, errors="coerce").astype("float64").to_numpy()
        bad = ~np.isfinite(values) | (np.nan_to_num(values, nan=-1.0) <= 0) | _bool_mask(original)
        if bad.any():
            rows = df.index[bad]
            runs = pd.unique(df.loc[bad, "run"]) if "run" in df.columns else []
            raise DataError(
                f"column {col!r} ({_EXTRA_MEANING[col]}) must be a positive number in every row "
                f"this law uses; {int(bad.sum())} row(s) are missing, non-numeric or not "
                f"positive: index {_listing(rows)}, in run(s) {_listing(runs)}"
            )


def _raise_rows(df: pd.DataFrame, mask: np.ndarray, problem: str) -> None:
    bad = df.loc[mask]
    runs = pd.unique(bad["run"])
    raise DataError(
        f"{problem}: {int(mask.sum())} row(s), index {_listing(bad.index)}, "
        f"in run(s) {_listing(runs)}"
    )


def _check_one_value_per_run(df: pd.DataFrame, column: str, what: str) -> None:
    counts = df.groupby("run", sort=True)[column].nunique()
    bad = counts[counts > 1]
    if len(bad):
        examples = {
            run: sorted(df.loc[df["run"] == run, column].unique().tolist())[:3]
            for run in bad.index[:_MAX_LISTED]
        }
        detail = "; ".join(f"{run!r}: {vals}" for run, vals in examples.items())
        raise DataError(
            f"a run must have one {column}, but run(s) {_listing(bad.index)} have several "
            f"{what} ({detail})"
        )


def _bool_mask(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.notna().to_numpy(dtype=bool)
    if values.dtype == object:
        return values.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    return np.zeros(len(values), dtype=bool)


def _check_labels_stay_distinct(original: pd.Series, as_str: pd.Series, column: str) -> None:
    """Refuse labels whose text form is not one-to-one with them (``1`` and ``"1"`` merge)."""
    orig_codes, _ = pd.factorize(original)
    str_codes, _ = pd.factorize(as_str)
    pairs = pd.DataFrame({"o": orig_codes, "s": str_codes}).drop_duplicates()
    clashing = pairs["s"].duplicated(keep=False) | pairs["o"].duplicated(keep=False)
    if clashing.any():
        labels = pd.unique(as_str.to_numpy()[np.isin(str_codes, pairs.loc[clashing, "s"])])
        raise DataError(
            f"column {column!r} mixes value types so that labels merge or split when read as "
            f"text ({_listing(labels)}), e.g. 1 and '1'; use one type per label column"
        )


def _check_tokens_follow_steps(df: pd.DataFrame) -> None:
    steps = pd.to_numeric(df["step"], errors="coerce")
    # Sorting ties by tokens makes the check independent of the input row order.
    ordered = (
        df.assign(_step=steps)
        .dropna(subset=["_step"])
        .sort_values(["run", "_step", "tokens"], kind="mergesort")
    )
    grouped = ordered.groupby("run", sort=False)
    not_increasing = (grouped["tokens"].diff() <= 0) | (grouped["_step"].diff() <= 0)
    if not_increasing.any():
        runs = pd.unique(ordered.loc[not_increasing, "run"])
        raise DataError(
            "tokens must increase with step within a run (one step per checkpoint), but they do "
            f"not in run(s) {_listing(runs)} "
            f"(rows {_listing(ordered.index[not_increasing.to_numpy()])})"
        )


def runs_without_schedule(runs: pd.DataFrame) -> list[str]:
    """Runs that carry no learning-rate schedule: neither an ``lr`` value nor a ``schedule``.

    A table may mix runs with and without a schedule (:func:`validate` accepts it); a
    schedule-aware model can use this list to decide what to do with the others.

    Parameters
    ----------
    runs
        A run table with a ``run`` column (validated or not).

    Returns
    -------
    list of str
        The run names (as text), in order of first appearance; all runs when the table has
        neither an ``lr`` nor a ``schedule`` column.
    """
    if "run" not in runs.columns:
        raise DataError("the run table has no 'run' column")
    has = np.zeros(len(runs), dtype=bool)
    for col in ("lr", "schedule"):
        if col in runs.columns:
            has |= runs[col].notna().to_numpy(dtype=bool)
    per_run = pd.Series(has, index=runs.index).groupby(runs["run"].astype(str), sort=False).any()
    return [str(run) for run, scheduled in per_run.items() if not scheduled]


def _optional_numeric(df: pd.DataFrame, col: str) -> pd.Series:
    """An optional numeric column as float64 (missing values kept as NaN); non-numbers refused."""
    original = df[col]
    values = pd.to_numeric(original, errors="coerce")
    bad_type = (values.isna() & original.notna()).to_numpy(dtype=bool) | _bool_mask(original)
    if bad_type.any():
        bad = df.loc[bad_type]
        raise DataError(
            f"column {col!r} has non-numeric values in rows {_listing(bad.index)}, in run(s) "
            f"{_listing(pd.unique(bad['run']))} (e.g. {original[bad_type].iloc[0]!r})"
        )
    return pd.Series(
        pd.array(values).to_numpy(dtype="float64", na_value=np.nan), index=df.index, name=col
    )


def _raise_runs(runs: Iterable[object], problem: str) -> NoReturn:
    runs = list(runs)
    raise DataError(f"{problem}: run(s) {_listing(runs)}")


def _check_schedule(df: pd.DataFrame) -> None:
    """Check the optional LR-schedule columns (numeric ones already float64)."""
    if "schedule" in df.columns:
        shape = df["schedule"]
        unknown = shape.notna() & ~shape.isin(SCHEDULES)
        if unknown.any():
            values = sorted({repr(v) for v in shape[unknown]})[:3]
            _raise_runs(
                pd.unique(df.loc[unknown, "run"]),
                f"column 'schedule' has values {', '.join(values)} that are not one of "
                f"{', '.join(SCHEDULES)}",
            )
    present = [c for c in SCHEDULE_COLUMNS if c in df.columns]
    if present:
        # A missing value next to a given one also counts as varying.
        counts = df.groupby("run", sort=True)[present].nunique(dropna=False)
        varying = counts.columns[(counts > 1).any()].tolist()
        if varying:
            _raise_runs(
                counts.index[(counts[varying] > 1).any(axis=1)],
                f"schedule column(s) {_listing(varying)} must have one value per run (only "
                "'lr' may change between checkpoints), but have several in",
            )
    _check_range(df, "final_lr_fraction", lambda v: (v >= 0) & (v <= 1), "must be in [0, 1]")
    _check_range(df, "warmup_tokens", lambda v: v >= 0, "must be finite and >= 0")
    for col in ("schedule_tokens", "decay_tokens"):
        _check_range(df, col, lambda v: v > 0, "must be finite and positive")
    if "lr" in df.columns:
        _check_logged_lr(df)
    if "schedule" in df.columns and df["schedule"].notna().any():
        _check_scheduled_runs(df)


def _check_range(
    df: pd.DataFrame, col: str, ok: Callable[[np.ndarray], np.ndarray], what: str
) -> None:
    if col not in df.columns:
        return
    values = df[col].to_numpy(dtype="float64")
    given = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(values) & ok(values)
    bad = given & ~good
    if bad.any():
        _raise_rows(df, bad, f"column {col!r} {what}")


def _check_logged_lr(df: pd.DataFrame) -> None:
    """An ``lr`` column may be empty for whole runs; a run that logs it needs it everywhere."""
    lr = df["lr"].to_numpy(dtype="float64")
    logs = pd.Series(~np.isnan(lr), index=df.index).groupby(df["run"]).transform("any")
    with np.errstate(invalid="ignore"):
        bad = logs.to_numpy(dtype=bool) & ~(np.isfinite(lr) & (lr > 0))
    if bad.any():
        _raise_rows(
            df,
            bad,
            "column 'lr' must be finite and positive at every checkpoint of a run that "
            "logs it (leave it empty for the whole run otherwise)",
        )


def _check_scheduled_runs(df: pd.DataFrame) -> None:
    """Per run with a ``schedule``: the values needed to reconstruct it, and their consistency."""
    first = df.loc[df["schedule"].notna()].drop_duplicates("run").set_index("run")
    nan = pd.Series(np.nan, index=first.index)

    def column(name: str) -> pd.Series:
        return first[name].astype("float64") if name in first.columns else nan

    final = column("final_lr_fraction")
    if final.isna().any():
        _raise_runs(
            final.index[final.isna()],
            "a run with a 'schedule' needs 'final_lr_fraction' (the LR at the end of the decay "
            "as a fraction of the peak), missing in",
        )
    if "warmup_tokens" in first.columns and first["warmup_tokens"].isna().any():
        _raise_runs(
            first.index[first["warmup_tokens"].isna()],
            "a run with a 'schedule' needs a 'warmup_tokens' value (0 for no warm-up), missing in",
        )
    run_tokens = nan
    if "run_tokens" in first.columns:
        run_tokens = pd.to_numeric(first["run_tokens"], errors="coerce").astype("float64")
        run_tokens = run_tokens.where(~pd.Series(_bool_mask(first["run_tokens"]), first.index))
    end = column("schedule_tokens").fillna(run_tokens)
    no_end = ~(np.isfinite(end) & (end > 0))
    if no_end.any():
        _raise_runs(
            end.index[no_end],
            "a run with a 'schedule' needs where its decay ends: 'schedule_tokens' or, when that "
            "is empty, a positive 'run_tokens'; both are missing in",
        )
    warmup = column("warmup_tokens").fillna(0.0)
    late = warmup >= end
    if late.any():
        _raise_runs(
            end.index[late],
            "'warmup_tokens' must end before the schedule does ('schedule_tokens', or "
            "'run_tokens' when that is empty), but does not in",
        )
    wsd = first["schedule"] == "wsd"
    decay = column("decay_tokens")
    no_decay = wsd & ~(decay > 0)
    if no_decay.any():
        _raise_runs(
            first.index[no_decay],
            "a 'wsd' run needs a positive 'decay_tokens' (the length of its final decay), "
            "missing in",
        )
    too_long = wsd & (decay > end - warmup)
    if too_long.any():
        _raise_runs(
            first.index[too_long],
            "'decay_tokens' of a 'wsd' run must fit between the end of the warm-up and the end "
            "of the schedule (decay_tokens <= schedule end - warmup_tokens), but does not in",
        )
