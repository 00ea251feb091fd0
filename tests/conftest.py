"""Keep the tests' compile cache inside the project (as ``make test`` does), not in the user's
cache directory; set before any test module imports bayescale, which reads it."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault(
    "BAYESCALE_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "bayescale")
)
