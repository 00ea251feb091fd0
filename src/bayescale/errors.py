"""Exceptions and warnings raised by bayescale, and where its warnings point."""

from __future__ import annotations

import sys
from pathlib import Path

#: Where bayescale's modules live: a warning issued from here is bayescale's own.
PACKAGE_DIR = str(Path(__file__).resolve().parent)


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes ``warnings.warn`` point at the first caller outside bayescale.

    Call it as the ``stacklevel`` argument of ``warnings.warn`` itself: a warning raised deep in
    a fit (``fit -> fit_kaplan -> warn_on_problems``) then names the user's line, however many
    bayescale frames lie between.
    """
    frame = sys._getframe(1)  # the function that calls warnings.warn
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(
        PACKAGE_DIR
    ):
        frame = frame.f_back
        level += 1
    return level


class DataError(ValueError):
    """A run table is malformed; the message names the problem and the offending rows or runs."""


class SamplingWarning(UserWarning):
    """The sampler's diagnostics (divergences, R-hat, ESS) say the posterior may not be trustworthy."""


class ScheduleWarning(UserWarning):
    """Runs without a learning-rate schedule: only their late checkpoints are fitted."""


class DataWarning(UserWarning):
    """The data leave something out or undetermined (runs dropped, a law term unidentified)."""


class CacheWarning(UserWarning):
    """bayescale's compile cache cannot be written: every process compiles from scratch."""


class UnreliableEstimateWarning(UserWarning):
    """An importance-sampling estimate has Pareto k above 0.7: too few draws carry the weight."""
