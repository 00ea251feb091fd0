"""Tidy run tables: validation, preparation helpers and bundled datasets."""

from bayescale.data.prepare import (
    ProtocolSplit,
    drop_warmup,
    final_fraction,
    max_param_runs,
    protocol_split,
    thin_log_spaced,
)
from bayescale.data.validate import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, validate

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ProtocolSplit",
    "drop_warmup",
    "final_fraction",
    "max_param_runs",
    "protocol_split",
    "thin_log_spaced",
    "validate",
]
