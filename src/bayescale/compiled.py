"""Cache keys for PyTensor Ops with numba implementations."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any


def source_cache_key(*funcs: Callable[..., Any]) -> int:
    """An integer that changes whenever the source of any of ``funcs`` changes.

    PyTensor's numba backend caches compiled Ops on disk under a key made of the Op's class and
    properties only; returned with the numba function, this integer joins that key, so an edited
    kernel is never served from a stale cache.
    """
    chunks = []
    for func in funcs:
        try:
            chunks.append(inspect.getsource(func).encode())
        except (OSError, TypeError):  # pragma: no cover - source unavailable (frozen installs)
            chunks.append(func.__code__.co_code)
    return _digest(chunks)


def text_cache_key(*texts: str) -> int:
    """An integer that changes whenever any of ``texts`` changes (or their order).

    The key of bayescale's on-disk compile cache folder (:mod:`bayescale.cache`), made from the
    versions of the software stack, in the same way as :func:`source_cache_key`.

    Parameters
    ----------
    *texts
        The strings to key on.

    Returns
    -------
    int
        A 56-bit integer.
    """
    return _digest(["\0".join(texts).encode()])


def _digest(chunks: Iterable[bytes]) -> int:
    """56 bits of the SHA-256 of the concatenated ``chunks``."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return int.from_bytes(digest.digest()[:7], "big")
