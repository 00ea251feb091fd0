"""bayescale's persistent compile cache: where PyTensor and numba keep what they compile.

A fit spends most of its first seconds compiling its model (PyTensor's graph, in numba). What
PyTensor and numba can reuse across processes is kept in one folder:

* the cache root is ``platformdirs.user_cache_dir("bayescale")`` (``~/.cache/bayescale`` on
  Linux), or the folder named by the environment variable ``BAYESCALE_CACHE_DIR``;
* inside it, one subfolder per software stack, named by a hash of the versions of Python,
  bayescale, PyTensor, numba, nutpie, PyMC and numpy (:func:`stack_versions`), so that an
  upgrade of any of them starts a new, empty cache instead of serving stale kernels; the
  subfolder's ``versions.json`` says which versions it holds;
* ``pytensor/`` in that subfolder is PyTensor's ``base_compiledir`` (its C modules and its
  numba cache of compiled Ops) and ``numba/`` is ``NUMBA_CACHE_DIR`` (numba's cache of
  functions compiled with ``cache=True``).

:func:`configure` runs once, when bayescale is imported, before bayescale imports PyTensor, and
costs a file lookup and an access check once the stack folder exists (the folder is created
and its marker written, which doubles as the writability probe, only the first time). It
sets ``PYTENSOR_FLAGS`` and ``NUMBA_CACHE_DIR`` in ``os.environ``, which child processes (Dask
workers, subprocesses) inherit. A setting the user made is left as it is: ``base_compiledir``
or ``compiledir`` in ``PYTENSOR_FLAGS`` or in a ``.pytensorrc`` file, and ``NUMBA_CACHE_DIR``.
PyTensor reads its compile directory when it is imported, so when PyTensor (or PyMC) was
imported before bayescale, PyTensor keeps its own default (``~/.pytensor``) for that process;
numba rereads its environment before each compilation and follows ``NUMBA_CACHE_DIR`` anyway.

When the cache folder cannot be written (a read-only or missing disk), compilation goes to a
temporary folder that lives as long as the process, and the first fit says so once
(:func:`warn_if_uncached`).

``bayescale cache info`` prints the folders and their size; ``bayescale cache clear`` removes
bayescale's cache (:func:`clear`).
"""

from __future__ import annotations

import atexit
import configparser
import json
import os
import platform
import shlex
import shutil
import tempfile
import warnings
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import platformdirs

from bayescale.compiled import text_cache_key
from bayescale.errors import CacheWarning

__all__ = [
    "ENV_VAR",
    "CacheState",
    "cache_root",
    "clear",
    "configure",
    "contiguous_constants",
    "folder_size",
    "prepare_compile",
    "stack_dir",
    "stack_folders",
    "stack_versions",
    "state",
    "user_pytensor_dir",
    "warn_if_uncached",
]

#: The environment variable that moves bayescale's cache.
ENV_VAR = "BAYESCALE_CACHE_DIR"
#: The distributions whose versions key the cache (with Python's own version).
KEYED_PACKAGES = ("bayescale", "pytensor", "numba", "nutpie", "pymc", "numpy")
#: The file that marks a subfolder of the cache root as bayescale's (and lists its versions).
MARKER = "versions.json"
_PYTENSOR_KEYS = ("base_compiledir", "compiledir")


@dataclass(frozen=True)
class CacheState:
    """Where this process compiles, as set up by :func:`configure`.

    Attributes
    ----------
    root
        bayescale's cache root (``BAYESCALE_CACHE_DIR`` or the user cache directory).
    folder
        The subfolder of ``root`` for this software stack, or ``None`` when it cannot be written.
    pytensor_dir
        PyTensor's ``base_compiledir`` as configured here, or ``None`` when it is the user's
        setting or PyTensor's default (PyTensor was imported first).
    numba_dir
        ``NUMBA_CACHE_DIR`` as configured here, or ``None`` when the user set it.
    problem
        Why the cache cannot be written (empty when it can).
    """

    root: Path
    folder: Path | None
    pytensor_dir: Path | None
    numba_dir: Path | None
    problem: str = ""


_state: CacheState | None = None
_warned = False


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """bayescale's cache root: ``BAYESCALE_CACHE_DIR``, else the user's cache directory.

    Parameters
    ----------
    environ
        The environment to read (default ``os.environ``).

    Returns
    -------
    pathlib.Path
        The folder (which may not exist yet).
    """
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR, "").strip()
    if value:
        return Path(value).expanduser().absolute()
    return Path(platformdirs.user_cache_dir("bayescale", appauthor=False))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not-installed"


def stack_versions() -> dict[str, str]:
    """The versions that key the cache: Python's and those of :data:`KEYED_PACKAGES`.

    Read from the installed distributions' metadata, without importing them.

    Returns
    -------
    dict of str to str
        ``{"python": "3.11.9", "bayescale": "0.1.0", ...}``.
    """
    return {"python": platform.python_version(), **{n: _version(n) for n in KEYED_PACKAGES}}


def stack_dir(root: Path, versions: Mapping[str, str] | None = None) -> Path:
    """The subfolder of ``root`` for one software stack.

    Parameters
    ----------
    root
        The cache root (:func:`cache_root`).
    versions
        The stack's versions (default :func:`stack_versions`); any change gives another folder.

    Returns
    -------
    pathlib.Path
        ``root / "py<python>-<hash of all versions>"``.
    """
    versions = stack_versions() if versions is None else versions
    key = text_cache_key(*(f"{name}={versions[name]}" for name in sorted(versions)))
    return root / f"py{versions.get('python', 'unknown')}-{key:014x}"


def _pytensor_flags(environ: Mapping[str, str]) -> dict[str, str]:
    """``PYTENSOR_FLAGS`` as PyTensor parses it (comma-separated ``key=value``)."""
    lexer = shlex.shlex(environ.get("PYTENSOR_FLAGS", ""), posix=True)
    lexer.whitespace = ","
    lexer.whitespace_split = True
    flags = {}
    for item in lexer:
        key, sep, value = item.strip().partition("=")
        if sep:
            flags[key.strip()] = value.strip()
    return flags


def _rc_compiledir(environ: Mapping[str, str]) -> str | None:
    """A compile directory set in a ``.pytensorrc`` file (``PYTENSORRC``), if any."""
    parser = configparser.ConfigParser(interpolation=None)
    for name in environ.get("PYTENSORRC", "~/.pytensorrc").split(os.pathsep):
        try:
            parser.read(Path(name).expanduser())
        except (OSError, configparser.Error):  # an unreadable rc file: PyTensor's problem
            continue
    for key in _PYTENSOR_KEYS:
        if parser.has_option("global", key):
            return parser.get("global", key)
    return None


def user_pytensor_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """PyTensor's compile directory as the user set it, or ``None`` when it is not set.

    Parameters
    ----------
    environ
        The environment to read (default ``os.environ``).

    Returns
    -------
    str or None
        ``base_compiledir`` or ``compiledir`` from ``PYTENSOR_FLAGS``, else from the
        ``.pytensorrc`` files PyTensor reads.
    """
    environ = os.environ if environ is None else environ
    flags = _pytensor_flags(environ)
    for key in _PYTENSOR_KEYS:
        if key in flags:
            return flags[key]
    return _rc_compiledir(environ)


def _usable(folder: Path, versions: Mapping[str, str]) -> str:
    """Make ``folder`` bayescale's stack folder; the error's text if it cannot be written.

    A folder that already holds :data:`MARKER` and that the operating system reports writable
    is taken as it is: a lookup and an access check, no write, on every import after the first.
    Otherwise the folder is created and the marker written (atomically), which is the probe.
    """
    marker = folder / MARKER
    try:
        if marker.is_file() and os.access(folder, os.W_OK | os.X_OK):
            return ""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{MARKER}.{os.getpid()}"
        tmp.write_text(json.dumps(dict(versions), indent=1, sort_keys=True) + "\n")
        tmp.replace(marker)  # atomic: concurrent processes write the same content
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def _same(setting: str, path: Path) -> bool:
    """Whether a folder set in the environment is ``path`` (as set by a parent process)."""
    return Path(setting).expanduser().absolute() == path.absolute()


def configure(
    environ: MutableMapping[str, str] | None = None,
    *,
    pytensor_imported: bool | None = None,
    versions: Mapping[str, str] | None = None,
) -> CacheState:
    """Point PyTensor's and numba's caches at bayescale's cache folder, unless the user did.

    Sets ``base_compiledir`` in ``PYTENSOR_FLAGS`` (appended to the user's other flags) and
    ``NUMBA_CACHE_DIR``. Called once when bayescale is imported; PyTensor must not have been
    imported yet for its part to take effect (it reads its flags once, at import).

    Parameters
    ----------
    environ
        The environment to read and change (default ``os.environ``).
    pytensor_imported
        Whether PyTensor is already imported in this process (default: look it up).
    versions
        The stack's versions (default :func:`stack_versions`).

    Returns
    -------
    CacheState
        The folders in use; also kept for :func:`state` when ``environ`` is ``os.environ``.
    """
    global _state
    live = environ is None
    environ = os.environ if environ is None else environ
    if pytensor_imported is None:
        import sys

        pytensor_imported = "pytensor" in sys.modules
    versions = stack_versions() if versions is None else versions
    root = cache_root(environ)
    folder: Path | None = stack_dir(root, versions)
    problem = _usable(folder, versions)
    if problem:
        folder = None
    # An unwritable cache: compile into a folder that lives as long as the process, so that a
    # read-only home or cache directory does not break fitting.
    base = folder
    if base is None:
        try:
            base = Path(tempfile.mkdtemp(prefix="bayescale-compile-"))
        except OSError:  # no writable folder at all: leave PyTensor and numba to themselves
            base = None
        else:
            if live:
                atexit.register(shutil.rmtree, base, ignore_errors=True)
    if base is None:
        result = CacheState(root, None, None, None, problem)
        if live:
            _state = result
        return result

    pytensor_dir: Path | None = base / "pytensor"
    explicit = user_pytensor_dir(environ)
    if explicit is None and not pytensor_imported:
        flags = environ.get("PYTENSOR_FLAGS", "").strip().strip(",")
        setting = f"base_compiledir={shlex.quote(str(pytensor_dir))}"
        environ["PYTENSOR_FLAGS"] = f"{flags},{setting}" if flags else setting
    elif explicit is None or not _same(explicit, pytensor_dir):  # the user's, or the default
        pytensor_dir = None
    numba_dir: Path | None = base / "numba"
    explicit = environ.get("NUMBA_CACHE_DIR", "").strip()
    if not explicit:
        environ["NUMBA_CACHE_DIR"] = str(numba_dir)
    elif not _same(explicit, numba_dir):
        numba_dir = None
    result = CacheState(root, folder, pytensor_dir, numba_dir, problem)
    if live:
        _state = result
    return result


def state() -> CacheState:
    """The cache set up for this process (:func:`configure` runs on first use)."""
    return _state if _state is not None else configure()


def warn_if_uncached() -> None:
    """Warn once per process when the compile cache cannot be written.

    Called before a model is compiled, so that the warning reaches the user with the fit.
    """
    global _warned
    current = state()
    if current.problem and not _warned:
        _warned = True
        warnings.warn(
            f"cannot write the compile cache in {current.root} ({current.problem}); this "
            f"process compiles into a temporary folder, so the next one compiles from scratch. "
            f"Set {ENV_VAR} to a writable folder to keep compiled models.",
            CacheWarning,
            stacklevel=2,
        )


def prepare_compile() -> None:
    """What every compilation of a bayescale model needs first (idempotent).

    Warns if the cache cannot be written (:func:`warn_if_uncached`) and registers
    :func:`contiguous_constants` with PyTensor's rewrites of the numba mode.
    """
    warn_if_uncached()
    _register_contiguous_constants()


_REWRITE_NAME = "bayescale_contiguous_constants"


def contiguous_constants(fgraph: Any, node: Any) -> list[Any] | None:
    """Give ``node`` C-contiguous copies of its non-contiguous array constants.

    Constant folding of a slice of a constant (``loc[:, k]`` of a families x components array)
    leaves a strided view in the graph. numba cannot bake a non-contiguous array into compiled
    code: it embeds the array's memory address instead (a "dynamic global"), and code holding
    an address cannot be written to numba's cache. PyTensor's numba cache then refuses the whole
    graph's function, which is compiled again in every process. A contiguous copy holds the same
    numbers and is compiled in as a constant, so the graph's function can be cached.

    Parameters
    ----------
    fgraph
        The ``pytensor.graph.FunctionGraph`` being rewritten (unused).
    node
        An ``Apply`` node of it.

    Returns
    -------
    list or None
        The outputs of the node rebuilt on the copies, or ``None`` when it has no such input.
    """
    import numpy as np
    from pytensor.tensor.variable import TensorConstant

    inputs, changed = [], False
    for var in node.inputs:
        data = getattr(var, "data", None)
        if (
            isinstance(var, TensorConstant)
            and isinstance(data, np.ndarray)
            and not (data.flags.c_contiguous or data.flags.f_contiguous)
        ):
            inputs.append(TensorConstant(var.type, np.ascontiguousarray(data), name=var.name))
            changed = True
        else:
            inputs.append(var)
    if not changed:
        return None
    return node.op.make_node(*inputs).outputs


def _register_contiguous_constants() -> None:
    from pytensor.compile.mode import optdb
    from pytensor.graph.rewriting.basic import in2out, node_rewriter

    if _REWRITE_NAME in optdb:
        return
    # Tagged "numba" only, so that only graphs compiled for numba see it; after constant
    # folding (canonicalize/specialize/uncanonicalize, positions up to 3) and the merge at 49,
    # before the destroy handler and inplace rewrites (49.5 on).
    optdb.register(
        _REWRITE_NAME,
        in2out(node_rewriter(None)(contiguous_constants), ignore_newtrees=True),
        "numba",
        position=49.05,
    )


def folder_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 when it does not exist).

    Parameters
    ----------
    path
        A file or folder.

    Returns
    -------
    int
        The sum of the files' sizes; symbolic links are not followed.
    """
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                stat = os.lstat(os.path.join(dirpath, name))
            except OSError:  # removed meanwhile
                continue
            total += stat.st_size
    return total


def stack_folders(root: Path) -> list[Path]:
    """The subfolders of ``root`` that bayescale made (those holding :data:`MARKER`).

    Parameters
    ----------
    root
        The cache root.

    Returns
    -------
    list of pathlib.Path
        Sorted by name; empty when ``root`` does not exist.
    """
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / MARKER).is_file())


def clear(root: Path | None = None) -> list[tuple[Path, int]]:
    """Remove bayescale's cache: every stack folder under ``root``, then ``root`` if empty.

    Only folders that bayescale made are removed (:func:`stack_folders`), so a cache root set
    to a folder that holds other files loses nothing else. A compile directory the user set
    for PyTensor (``PYTENSOR_FLAGS``) or numba (``NUMBA_CACHE_DIR``) is not touched.

    Parameters
    ----------
    root
        The cache root (default :func:`cache_root`).

    Returns
    -------
    list of (pathlib.Path, int)
        Each folder removed and its size in bytes.
    """
    root = cache_root() if root is None else root
    removed = []
    for folder in stack_folders(root):
        size = folder_size(folder)
        shutil.rmtree(folder)
        removed.append((folder, size))
    try:
        root.rmdir()  # only when nothing else is left in it
    except OSError:
        pass
    return removed
