"""Exceptions and warnings raised by bayescale."""

from __future__ import annotations


class DataError(ValueError):
    """A run table is malformed; the message names the problem and the offending rows or runs."""


class SamplingWarning(UserWarning):
    """The sampler's diagnostics (divergences, R-hat, ESS) say the posterior may not be trustworthy."""


class ScheduleWarning(UserWarning):
    """Runs without a learning-rate schedule: only their late checkpoints are fitted."""


class CacheWarning(UserWarning):
    """bayescale's compile cache cannot be written: every process compiles from scratch."""
