"""Execute every worked example in ``notebooks/`` and fail on any error.

The notebooks read their sampler settings from ``BAYESCALE_NB_DRAWS``, ``BAYESCALE_NB_TUNE`` and
``BAYESCALE_NB_CHAINS``; the test shrinks them so that each notebook runs in a few minutes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

CI_SETTINGS = {
    "BAYESCALE_NB_DRAWS": "200",
    "BAYESCALE_NB_TUNE": "400",
    "BAYESCALE_NB_CHAINS": "2",
}
CELL_TIMEOUT = 900


def test_notebooks_are_committed_without_outputs():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [], f"{path.name}: strip the outputs"
                assert cell["execution_count"] is None, f"{path.name}: strip execution counts"


@pytest.fixture
def python3_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernel spec that runs ipykernel from *this* interpreter.

    Written to a temporary Jupyter path (first on ``JUPYTER_PATH``), so it never touches the
    user's or the system's kernels and never picks up a ``python3`` kernel of another
    environment.
    """
    pytest.importorskip("ipykernel")
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (bayescale tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, python3_kernel: str, monkeypatch: pytest.MonkeyPatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for key, value in CI_SETTINGS.items():
        monkeypatch.setenv(key, value)
    # ipykernel's inline backend (headless) renders every figure, so drawing code runs too
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=python3_kernel,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:  # pragma: no cover - on failure
        pytest.fail(f"{path.name} failed:\n{exc}")
