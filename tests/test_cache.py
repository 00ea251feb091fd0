"""bayescale's on-disk compile cache (``bayescale.cache``) and ``bayescale cache info|clear``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import platformdirs
import pytest

from bayescale import cache
from bayescale.cli import main
from bayescale.errors import CacheWarning

VERSIONS = {
    "python": "3.11.9",
    "bayescale": "0.1.0",
    "pytensor": "2.38.3",
    "numba": "0.65.1",
    "nutpie": "0.16.8",
    "pymc": "5.28.5",
    "numpy": "2.4.6",
}


def pytensor_flags(environ: dict[str, str]) -> dict[str, str]:
    """``PYTENSOR_FLAGS`` parsed by PyTensor's own parser."""
    from pytensor.configparser import parse_config_string

    return parse_config_string(environ.get("PYTENSOR_FLAGS", ""))


def test_env_var_moves_the_cache(tmp_path: Path):
    environ = {cache.ENV_VAR: str(tmp_path / "here")}
    state = cache.configure(environ, pytensor_imported=False, versions=VERSIONS)
    assert state.root == tmp_path / "here"
    assert state.folder is not None and state.folder.parent == tmp_path / "here"
    assert state.problem == ""
    assert pytensor_flags(environ)["base_compiledir"] == str(state.folder / "pytensor")
    assert environ["NUMBA_CACHE_DIR"] == str(state.folder / "numba")
    assert state.pytensor_dir == state.folder / "pytensor"
    assert state.numba_dir == state.folder / "numba"
    assert json.loads((state.folder / cache.MARKER).read_text()) == VERSIONS


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_CACHE_HOME is the Linux convention")
def test_default_root_is_the_user_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root({}) == tmp_path / "xdg" / "bayescale"
    assert cache.cache_root({cache.ENV_VAR: "  "}) == tmp_path / "xdg" / "bayescale"
    assert cache.cache_root({}) == Path(platformdirs.user_cache_dir("bayescale", appauthor=False))


@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_each_version_keys_the_folder(tmp_path: Path, name: str):
    same = cache.stack_dir(tmp_path, dict(VERSIONS))
    assert same == cache.stack_dir(tmp_path, dict(VERSIONS))
    changed = cache.stack_dir(tmp_path, {**VERSIONS, name: VERSIONS[name] + ".post1"})
    assert changed != same
    assert changed.parent == same.parent == tmp_path


def test_an_installed_version_change_moves_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    before = cache.stack_dir(tmp_path)
    assert cache.stack_versions()["numba"] != "0.0.1"
    real = cache._version
    monkeypatch.setattr(cache, "_version", lambda n: "0.0.1" if n == "numba" else real(n))
    after = cache.stack_dir(tmp_path)
    assert after != before
    state = cache.configure({cache.ENV_VAR: str(tmp_path)}, pytensor_imported=False)
    assert state.folder == after
    assert json.loads((after / cache.MARKER).read_text())["numba"] == "0.0.1"


@pytest.mark.parametrize("key", ["base_compiledir", "compiledir"])
def test_the_users_settings_are_kept(tmp_path: Path, key: str):
    flags = f"floatX=float64,{key}={tmp_path / 'mine'}"
    environ = {
        cache.ENV_VAR: str(tmp_path / "bayescale"),
        "PYTENSOR_FLAGS": flags,
        "NUMBA_CACHE_DIR": str(tmp_path / "numba-mine"),
    }
    state = cache.configure(environ, pytensor_imported=False, versions=VERSIONS)
    assert environ["PYTENSOR_FLAGS"] == flags
    assert environ["NUMBA_CACHE_DIR"] == str(tmp_path / "numba-mine")
    assert state.pytensor_dir is None and state.numba_dir is None


def test_a_pytensorrc_setting_is_kept(tmp_path: Path):
    rc = tmp_path / "pytensorrc"
    rc.write_text(f"[global]\nbase_compiledir = {tmp_path / 'rc'}\n")
    environ = {cache.ENV_VAR: str(tmp_path / "bayescale"), "PYTENSORRC": str(rc)}
    state = cache.configure(environ, pytensor_imported=False, versions=VERSIONS)
    assert "PYTENSOR_FLAGS" not in environ
    assert state.pytensor_dir is None
    assert state.numba_dir == state.folder / "numba"  # numba's is still bayescale's


def test_other_flags_are_kept_and_odd_paths_quoted(tmp_path: Path):
    root = tmp_path / "a b,c"
    environ = {cache.ENV_VAR: str(root), "PYTENSOR_FLAGS": "floatX=float32,"}
    state = cache.configure(environ, pytensor_imported=False, versions=VERSIONS)
    flags = pytensor_flags(environ)
    assert flags == {"floatX": "float32", "base_compiledir": str(state.folder / "pytensor")}


def test_pytensor_imported_first_keeps_its_compiledir(tmp_path: Path):
    environ = {cache.ENV_VAR: str(tmp_path)}
    state = cache.configure(environ, pytensor_imported=True, versions=VERSIONS)
    assert "PYTENSOR_FLAGS" not in environ  # too late: PyTensor read its flags at import
    assert state.pytensor_dir is None
    assert environ["NUMBA_CACHE_DIR"] == str(state.folder / "numba")  # numba rereads


def test_a_child_process_sees_its_parents_folders_as_bayescales(tmp_path: Path):
    environ = {cache.ENV_VAR: str(tmp_path)}
    parent = cache.configure(environ, pytensor_imported=False, versions=VERSIONS)
    child_env = dict(environ)
    child = cache.configure(child_env, pytensor_imported=False, versions=VERSIONS)
    assert child_env == environ  # nothing appended twice
    assert child == parent


def test_an_unwritable_cache_falls_back_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    environ = {cache.ENV_VAR: str(blocker)}
    state = cache.configure(environ, pytensor_imported=False, versions=VERSIONS)
    try:
        assert state.folder is None and state.problem
        temp = state.pytensor_dir.parent
        assert temp.is_dir() and not temp.is_relative_to(blocker)
        assert environ["NUMBA_CACHE_DIR"] == str(temp / "numba")
        monkeypatch.setattr(cache, "_state", state)
        monkeypatch.setattr(cache, "_warned", False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cache.warn_if_uncached()
            cache.warn_if_uncached()
        assert [w.category for w in caught] == [CacheWarning]
        assert str(blocker) in str(caught[0].message)
        assert cache.ENV_VAR in str(caught[0].message)
    finally:
        shutil.rmtree(state.pytensor_dir.parent, ignore_errors=True)


def _refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied (test)")


def test_an_existing_stack_folder_is_used_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The probe is the first ``configure``'s: later imports only look the marker up."""
    environ = {cache.ENV_VAR: str(tmp_path)}
    first = cache.configure(dict(environ), pytensor_imported=False, versions=VERSIONS)
    monkeypatch.setattr(Path, "mkdir", _refuse)
    monkeypatch.setattr(Path, "write_text", _refuse)
    again = cache.configure(dict(environ), pytensor_imported=False, versions=VERSIONS)
    assert again == first and again.problem == ""


def test_a_stack_folder_that_became_unwritable_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    environ = {cache.ENV_VAR: str(tmp_path)}
    first = cache.configure(dict(environ), pytensor_imported=False, versions=VERSIONS)
    monkeypatch.setattr(cache.os, "access", lambda *args, **kwargs: False)
    monkeypatch.setattr(Path, "write_text", _refuse)
    state = cache.configure(dict(environ), pytensor_imported=False, versions=VERSIONS)
    try:
        assert state.folder is None and "PermissionError" in state.problem
        assert state.pytensor_dir is not None
        assert not state.pytensor_dir.is_relative_to(first.folder)
    finally:
        shutil.rmtree(state.pytensor_dir.parent, ignore_errors=True)


def test_a_writable_cache_does_not_warn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    state = cache.configure({cache.ENV_VAR: str(tmp_path)}, pytensor_imported=False)
    monkeypatch.setattr(cache, "_state", state)
    monkeypatch.setattr(cache, "_warned", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.warn_if_uncached()


def _fill(root: Path, versions: dict[str, str]) -> tuple[Path, int]:
    """A stack folder as ``configure`` makes it, with files of known size."""
    state = cache.configure({cache.ENV_VAR: str(root)}, pytensor_imported=False,
                            versions=versions)
    (state.folder / "pytensor" / "numba").mkdir(parents=True)
    (state.folder / "pytensor" / "numba" / "kernel.nbc").write_bytes(b"x" * 1500)
    (state.folder / "numba").mkdir()
    (state.folder / "numba" / "f.nbi").write_bytes(b"y" * 250)
    return state.folder, cache.folder_size(state.folder)


def test_cache_clear_removes_bayescales_folders_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    root = tmp_path / "cache"
    old, old_size = _fill(root, {**VERSIONS, "numba": "0.64.0"})
    new, new_size = _fill(root, VERSIONS)
    assert new_size >= 1750
    (root / "notes.txt").write_text("the user's own file")
    (root / "other").mkdir()
    monkeypatch.setenv(cache.ENV_VAR, str(root))

    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert not old.exists() and not new.exists()
    assert (root / "notes.txt").read_text() == "the user's own file"
    assert (root / "other").is_dir()  # not bayescale's: no marker
    assert f"removed {old} (" in out and f"({old_size:,} bytes)" in out
    assert f"removed {new} (" in out and f"({new_size:,} bytes)" in out
    assert f"2 folder(s), {(old_size + new_size) / 1000:.1f} kB" in out

    assert main(["cache", "clear"]) == 0
    assert f"nothing to remove: no bayescale cache in {root}" in capsys.readouterr().out


def test_cache_clear_removes_an_emptied_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "cache"
    _fill(root, VERSIONS)
    monkeypatch.setenv(cache.ENV_VAR, str(root))
    assert main(["cache", "clear"]) == 0
    assert not root.exists()


def test_cache_info_in_a_fresh_process(tmp_path: Path):
    """``import bayescale`` points PyTensor at the cache before PyTensor reads its flags; a
    ``NUMBA_CACHE_DIR`` of the user's is kept."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "PYTENSORRC")}
    env.update({cache.ENV_VAR: str(tmp_path / "c"), "NUMBA_CACHE_DIR": str(tmp_path / "nb"),
                "PYTENSORRC": str(tmp_path / "none")})
    proc = subprocess.run(
        [sys.executable, "-m", "bayescale.cli", "cache", "info"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    folder = cache.stack_dir(tmp_path / "c")
    assert lines[0] == f"cache: {tmp_path / 'c'} (from {cache.ENV_VAR})"
    assert f"  {folder.name}  " in proc.stdout
    assert f"PyTensor compile directory: {folder / 'pytensor'}" in lines
    assert f"numba cache directory: {tmp_path / 'nb'}" in proc.stdout
    assert "set by the user" in proc.stdout.split("numba cache directory:")[1]
    assert proc.stderr == ""


def _array_constants(fn) -> list:
    import numpy as np
    from pytensor.graph.basic import Constant

    return [v.data for v in fn.maker.fgraph.variables
            if isinstance(v, Constant) and isinstance(v.data, np.ndarray) and v.data.ndim]


def test_numba_graphs_get_contiguous_constants_that_numba_can_cache():
    """A column of a constant matrix is folded into a strided view; numba would embed its
    address (a dynamic global), which makes the compiled graph uncachable."""
    import numpy as np
    import pytensor
    import pytensor.tensor as pt

    table = np.arange(20.0).reshape(4, 5)
    x = pt.vector("x", shape=(4,))
    out = pt.exp(x) * pt.as_tensor(table)[:, 2]

    plain = pytensor.function([x], out, mode="FAST_RUN")  # C/Python mode: not rewritten
    assert any(not d.flags.c_contiguous for d in _array_constants(plain))

    cache.prepare_compile()
    cache.prepare_compile()  # idempotent
    fn = pytensor.function([x], out, mode="NUMBA")
    consts = _array_constants(fn)
    assert consts and all(d.flags.c_contiguous for d in consts)
    value = np.linspace(-1.0, 1.0, 4)
    np.testing.assert_allclose(fn(value), np.exp(value) * table[:, 2])
    jitted = fn.vm.jit_fn
    assert jitted.overloads
    assert not any(c.library.has_dynamic_globals for c in jitted.overloads.values())
