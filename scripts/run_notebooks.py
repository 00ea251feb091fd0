"""Execute the worked examples in ``notebooks/`` and save them with their outputs (``make notebooks``).

The notebooks are committed executed, so that a reader on a code host sees their figures and
numbers. This script runs each one top to bottom in a fresh kernel with the sampler settings the
notebook itself recommends (or smaller ones with ``--small``, the settings the test suite uses),
fails on an error or on another library's warning in any cell's output, and writes the executed
notebook back in place (or to ``--out``).

Usage: ``python scripts/run_notebooks.py [notebooks/01_quickstart.ipynb ...] [--small] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat
from jupyter_client.manager import KernelManager

from bayescale.quiet import foreign_warnings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
#: What the test suite runs the notebooks with: a few minutes each.
SMALL_SETTINGS = {
    "BAYESCALE_NB_DRAWS": "200",
    "BAYESCALE_NB_TUNE": "400",
    "BAYESCALE_NB_CHAINS": "2",
}
CELL_TIMEOUT = 3600


def kernel_spec(folder: Path) -> str:
    """Write a ``python3`` kernel spec that runs *this* interpreter, first on ``JUPYTER_PATH``.

    A ``python3`` kernel of another environment (the user's or the system's) would run the
    notebooks against another installation of bayescale.
    """
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (str(folder), os.environ.get("JUPYTER_PATH", "")) if p
    )
    return "python3"


def output_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Errors and other libraries' warnings in an executed notebook's outputs, one line each."""
    problems = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {index}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                problems += [f"cell {index}: {line}" for line in foreign_warnings(out["text"])]
    return problems


def run_notebook(path: Path, kernel: str) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``path`` in a fresh kernel (working directory: the notebook's folder)."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as sockets:
        # local sockets rather than TCP: nothing listens on the network, and the kernel has no
        # unencrypted-transport warning to print
        km = KernelManager(kernel_name=kernel, transport="ipc",
                           connection_file=str(Path(sockets) / "kernel.json"))
        client = nbclient.NotebookClient(
            nb,
            km=km,
            timeout=CELL_TIMEOUT,
            kernel_name=kernel,
            resources={"metadata": {"path": str(path.parent)}},
        )
        t0 = time.perf_counter()
        client.execute(cleanup_kc=True)  # shut the kernel down here, not when we exit
    # the kernel spec is this interpreter's: keep the portable name in the saved file
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook")
    parser.add_argument("--small", action="store_true", help="the test suite's small settings")
    parser.add_argument("--out", type=Path, help="write here instead of in place")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if args.small:
        os.environ.update(SMALL_SETTINGS)
    # inline figures are what a reader of the saved notebook sees
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        kernel = kernel_spec(Path(tmp))
        for path in paths:
            print(f"{path.name}: running ...", flush=True)
            try:
                nb, seconds = run_notebook(path, kernel)
            except nbclient.exceptions.CellExecutionError as exc:
                print(f"{path.name}: FAILED\n{exc}", file=sys.stderr, flush=True)
                failed += 1
                continue
            problems = output_problems(nb)
            for line in problems:
                print(f"{path.name}: {line}", file=sys.stderr, flush=True)
            failed += bool(problems)
            target = (args.out / path.name) if args.out else path
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
            print(f"{path.name}: {seconds:.0f} s, {'written' if not problems else 'PROBLEMS'} "
                  f"-> {target}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
