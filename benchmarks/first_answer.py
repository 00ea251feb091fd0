"""Time to first answer: cold and warm wall times of a fit, each in a fresh process.

Three cases (issue 23):

* ``sim640``: ``bayescale.simulate(random_seed=0)`` (640 rows), 2 chains x (200 tune + 200 draws);
* ``quickstart``: the README quickstart (OLMo ladder below 3B, 40 checkpoints per run), the
  fit's defaults;
* ``synthetic7200``: the 7,200-point synthetic benchmark of ``model_synthetic.py``, compile only
  (sampling 0 draws is not possible, so it samples 10 + 10).

Every process gets bayescale's compile cache (``BAYESCALE_CACHE_DIR``: PyTensor's compile
directory and numba's cache) in a fresh temporary folder per case. "Cold" runs with the empty
cache; "warm" runs with the cache the cold run filled, on a *different* data set with the same
options (another simulation seed; for the quickstart, the ladder below 1B); "rerun" fits the
cold run's data set again (a notebook run a second time). Prints one row per case and state:
import, compile and sampling seconds and the whole process's wall time.

Usage::

    python benchmarks/first_answer.py                    # all three cases
    python benchmarks/first_answer.py --cases sim640 --states cold warm
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

#: What one fresh process runs: build the data of ``case`` (variant 0 or 1) and fit it.
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import bayescale
t_import = time.perf_counter() - t0
case, variant = sys.argv[1], int(sys.argv[2])
if case == "sim640":
    runs = bayescale.simulate(random_seed=variant).runs
    kw = dict(draws=200, tune=200, chains=2)
elif case == "quickstart":
    ladder = bayescale.load_dataset("olmo-ladder")
    limit = 3e9 if variant == 0 else 1.5e9
    runs = bayescale.thin_log_spaced(ladder[ladder.params < limit], max_points=40)
    kw = {}
else:
    runs = bayescale.simulate(n_families=8, sizes=(2e7, 6e7, 2e8, 6e8, 2e9), n_seeds=3,
                              n_checkpoints=60, random_seed=1 + variant).runs
    kw = dict(draws=10, tune=10, chains=2)
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fit = bayescale.fit(runs, random_seed=0, progressbar=False, **kw)
meta = fit.meta
print(json.dumps(dict(rows=len(runs), import_s=t_import,
                      compile_s=meta.get("compile_seconds", float("nan")),
                      sampling_s=meta.get("sampling_seconds", float("nan")))))
"""


def run_case(case: str, variant: int, cache_dir: Path) -> dict:
    """Fit ``case`` in a fresh process with ``cache_dir`` as bayescale's compile cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env.update(BAYESCALE_CACHE_DIR=str(cache_dir), MPLBACKEND="Agg")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, case, str(variant)],
                          capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"case": case, **out, "process_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["sim640", "quickstart", "synthetic7200"])
    parser.add_argument("--states", nargs="+", default=["cold", "warm", "rerun"],
                        choices=["cold", "warm", "rerun"], help="run in this order, per case")
    args = parser.parse_args()
    variants = {"cold": 0, "warm": 1, "rerun": 0}
    rows = []
    for case in args.cases:
        with tempfile.TemporaryDirectory(prefix="bayescale-first-answer-") as tmp:
            for state in args.states:
                row = run_case(case, variants[state], Path(tmp))
                rows.append({**row, "state": state, "load": os.getloadavg()[0]})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)[["case", "state", "rows", "import_s", "compile_s", "sampling_s",
                                "process_s", "load"]]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(table.round(1).to_string(index=False))


if __name__ == "__main__":
    main()
