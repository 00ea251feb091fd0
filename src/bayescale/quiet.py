"""The one place where other libraries' warnings are handled, each for a stated reason.

bayescale's own warnings (:class:`bayescale.SamplingWarning`, :class:`bayescale.ScheduleWarning`)
are never silenced here: they carry advice about the user's fit. What is silenced is noise
about code paths bayescale does not use, or about its own file format; and on the command
line, whatever other libraries say (:func:`own_warnings_only`).
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from bayescale import errors
from bayescale.errors import PACKAGE_DIR

__all__ = [
    "foreign_warnings",
    "is_bayescale_warning",
    "own_warnings_only",
    "quiet_arviz",
    "quiet_compile",
    "resolve_blas_flags",
]

_BLAS_MESSAGE = "PyTensor could not link to a BLAS installation"


def resolve_blas_flags() -> str:
    """Look up PyTensor's BLAS link flags once, without its "could not link" warning.

    bayescale's graphs run in numba (through nutpie), which calls numpy's own BLAS; PyTensor
    reads ``blas__ldflags`` only while rewriting the graph. On a pip install without a system
    BLAS the lookup warns, at length, about C code that bayescale never runs. The looked-up
    value is cached by PyTensor, so a machine that has a BLAS still links it for the user's
    own C-compiled graphs, and a value the user configured is left as it is.

    Returns
    -------
    str
        The flags PyTensor will use (empty when no BLAS was found).
    """
    import pytensor

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_BLAS_MESSAGE, category=UserWarning)
        return str(pytensor.config.blas__ldflags)


@contextmanager
def quiet_arviz() -> Iterator[None]:
    """Silence ArviZ's warnings about the ``fit_data`` group that bayescale adds to its files.

    A saved fit keeps its run table in a non-standard InferenceData group; ArviZ warns about
    any such group when it reads or writes the file, although it is carried along intact.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fit_data.*")
        warnings.filterwarnings("ignore", message=".*is not a valid InferenceData group.*")
        yield


@contextmanager
def quiet_compile() -> Iterator[None]:
    """Silence numba's performance hints while nutpie compiles a bayescale model.

    numba advises on the code it generates from the model's graph (``np.dot`` on
    non-contiguous views in the correlated-families model, for one). That code is bayescale's
    rendering of the model, not the user's, and the hint names nothing the user can change.
    """
    from numba.core.errors import NumbaPerformanceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        yield


def is_bayescale_warning(category: type[Warning], filename: str) -> bool:
    """Whether a warning is bayescale's own: its class or the code that issued it."""
    return category.__module__.startswith("bayescale") or PACKAGE_DIR in str(filename)


#: bayescale's warning classes (all defined in :mod:`bayescale.errors`), by name.
OWN_WARNING_NAMES = frozenset(
    name for name, obj in vars(errors).items()
    if isinstance(obj, type) and issubclass(obj, Warning)
)
# Python's warning format: "<file>:<line>: <Category>: <message>"
_WARNING_LINE = re.compile(r"^(?P<filename>\S.*?):\d+: (?P<category>[A-Za-z_]\w*): ")


def foreign_warnings(text: str) -> list[str]:
    """The lines of captured output that are other libraries' warnings.

    A warning line (Python's ``<file>:<line>: <Category>: <message>`` format) is bayescale's
    own when its category is one of bayescale's classes (they point at the user's code, so the
    file is the caller's) or when it was issued from bayescale's package directory.

    Parameters
    ----------
    text
        Captured standard error, e.g. a notebook cell's ``stderr`` stream.

    Returns
    -------
    list of str
        The foreign warning lines, in order (empty when everything came from bayescale).
    """
    out = []
    for line in text.splitlines():
        match = _WARNING_LINE.match(line)
        if match is None:
            continue
        if match["category"] in OWN_WARNING_NAMES or PACKAGE_DIR in match["filename"]:
            continue
        out.append(line)
    return out


@contextmanager
def own_warnings_only(stream: TextIO | None = None) -> Iterator[None]:
    """Print bayescale's warnings as one line each, and drop other libraries' warnings.

    For the command line: what reaches the terminal is advice about the user's fit, not the
    stack's deprecation notices and environment chatter, which the user cannot act on
    (``--debug`` shows them, with the standard format).

    Parameters
    ----------
    stream
        Where the lines go (default ``sys.stderr`` at the time of the warning).
    """

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if is_bayescale_warning(category, filename):
            text = " ".join(str(message).split())
            print(f"bayescale: warning: {text}", file=stream or sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
