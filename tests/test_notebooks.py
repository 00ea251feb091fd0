"""The worked examples in ``notebooks/``: committed executed, and still executing cleanly.

``make notebooks`` (``scripts/run_notebooks.py``) runs them with the settings they recommend and
saves their outputs, so that a reader on a code host sees the figures and numbers. The slow test
re-executes each one with small sampler settings (``BAYESCALE_NB_*``) and fails on an error or
on another library's warning in any cell's output.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _runner():
    """``scripts/run_notebooks.py`` as a module (scripts/ is not a package)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_executed_without_problems(path: Path):
    """Every code cell ran, in order, in one kernel; no error and no foreign warning is saved."""
    nbformat = pytest.importorskip("nbformat")
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: run `make notebooks` (execution counts {counts})"
    )
    problems = _runner().output_problems(nbformat.reads(path.read_text(encoding="utf-8"), 4))
    assert problems == [], problems
    images = sum("image/png" in out.get("data", {}) for c in nb["cells"]
                 for out in c.get("outputs", []))
    assert images > 0, f"{path.name}: no figure saved"


def test_output_problems_flags_errors_and_foreign_warnings_only():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    ours = "/tmp/ipykernel_1/2.py:3: SamplingWarning: 1 divergent transition\n  fit = bs.fit(x)\n"
    theirs = "/site-packages/arviz/__init__.py:39: FutureWarning: ArviZ is changing\n"
    nb.cells = [
        nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("stream", name="stderr",
                                                                   text=ours)]),
        nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("stream", name="stderr",
                                                                   text=theirs)]),
        nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
            "error", ename="ValueError", evalue="bad", traceback=[])]),
    ]
    assert _runner().output_problems(nb) == [
        "cell 1: " + theirs.strip(), "cell 2: ValueError: bad",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runner = _runner()
    for key, value in runner.SMALL_SETTINGS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("JUPYTER_PATH", "")
    kernel = runner.kernel_spec(tmp_path / "jupyter")
    try:
        nb, _ = runner.run_notebook(path, kernel)
    except Exception as exc:  # pragma: no cover - on failure
        pytest.fail(f"{path.name} failed:\n{exc}")
    assert runner.output_problems(nb) == []
