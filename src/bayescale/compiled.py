"""Cache keys for PyTensor Ops with numba implementations."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any


def source_cache_key(*funcs: Callable[..., Any]) -> int:
    """An integer that changes whenever the source of any of ``funcs`` changes.

    PyTensor's numba backend caches compiled Ops on disk under a key made of the Op's class and
    properties only; returned with the numba function, this integer joins that key, so an edited
    kernel is never served from a stale cache.
    """
    digest = hashlib.sha256()
    for func in funcs:
        try:
            text = inspect.getsource(func).encode()
        except (OSError, TypeError):  # pragma: no cover - source unavailable (frozen installs)
            text = func.__code__.co_code
        digest.update(text)
    return int.from_bytes(digest.digest()[:7], "big")
