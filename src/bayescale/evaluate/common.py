"""What the evaluation modules share: one method fitted and scored on one family (an attempt)
and its progress line, the column order of a result table, and the methods that fit a law."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayescale.scoring import score_prediction, summarize_warnings

__all__ = ["LAW_METHODS", "Attempt", "columns_first", "print_attempt", "run_attempt"]


#: Methods that fit a law: they need two model sizes (and five rows) to be fitted at all.
LAW_METHODS = ("bayescale", "curve_fit", "huber", "huber_bootstrap")


@dataclass(frozen=True)
class Attempt:
    """One method fitted and scored on one family (a raised error is a result, not the end)."""

    status: str  # "ok" or "failed"
    reason: str  # the error of a failed attempt
    seconds: float
    scores: dict[str, Any]  # metrics of score_prediction (none if failed) and "warnings"
    output: tuple[Any, ...] | None  # what the fit returned (None if failed)


def run_attempt(call: Callable[[], tuple[Any, ...]], target: pd.DataFrame, band: str) -> Attempt:
    """Time ``call``, record its warnings and score its prediction of ``target``.

    ``call`` fits a method and returns the prediction dataset and the band's draws (or
    ``None``) first; any exception it or the scoring raises makes a ``"failed"`` attempt.
    """
    t0 = time.perf_counter()
    caught: list[warnings.WarningMessage] = []
    output = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = call()
        scores = score_prediction(target, result[0], band, result[1])
        status, why, output = "ok", "", result
    except Exception as err:  # a failed fit is a result, not the end of the benchmark
        scores, status, why = {}, "failed", f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - t0
    scores["warnings"] = summarize_warnings(caught)
    return Attempt(status, why, seconds, scores, output)


def print_attempt(tag: str, family: str, method: str, attempt: Attempt) -> None:
    """One progress line: ARE (and 90% coverage where there is a band) or the error."""
    ok = attempt.status == "ok"
    what = f"ARE {100 * attempt.scores['are']:.2f}%" if ok else attempt.reason
    cover = attempt.scores.get("coverage_90", np.nan)
    if ok and np.isfinite(cover):
        what += f", 90% coverage {100 * cover:.0f}%"
    print(f"[{tag}] {family} / {method}: {what} ({attempt.seconds:.1f} s)", flush=True)


def columns_first(out: pd.DataFrame, first: Sequence[str]) -> pd.DataFrame:
    """``out`` with those of the ``first`` columns it has in front, in that order."""
    lead = [c for c in first if c in out.columns]
    return out[lead + [c for c in out.columns if c not in lead]]
