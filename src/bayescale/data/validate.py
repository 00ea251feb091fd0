"""Validation of the tidy run table: one row per evaluated checkpoint.

The validator never drops or alters a value. It either returns a copy with canonical dtypes,
sorted by ``(family, run, tokens)``, or raises :class:`bayescale.DataError` naming the problem
and the offending rows, runs or columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

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
    "source",
)
NUMERIC_COLUMNS: tuple[str, ...] = ("params", "tokens", "loss")
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
        ``dataset``, ``lr_schedule``, ``source``. Other columns are kept as they are.
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
        ``params``/``tokens``/``loss`` as float64, sorted by ``(family, run, tokens)`` with a
        fresh index.

    Raises
    ------
    DataError
        On missing required (or ``require``-d) columns, missing or non-finite values, non-positive
        params/tokens/loss, a run with two parameter counts or two families, duplicate
        ``(run, tokens)`` pairs, and on perplexity-like losses or tiny token counts unless
        explicitly allowed. The message names the offending rows, runs or columns.
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
}
_POSITIVE_EXTRAS = tuple(_EXTRA_MEANING)


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
