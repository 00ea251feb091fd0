"""The Hitchhiker's grid as Bayesian fits: models x share of training x scale-up, on Dask.

For every bundled family with at least three sizes (the families of ``benchmarks/accuracy.py``:
the Hitchhiker collection, the OLMo ladder and the DeepMind routing base families), every cell
of the grid (:func:`bayescale.batch.grid_tasks`: the ``k`` largest training sizes at or below
a size ``s_m``, each run cut at a share ``q`` of its training, scored on the protocol's
``F_target``) is fitted with bayescale and with ``curve_fit`` through
:func:`bayescale.fit_many` (a ``LocalCluster``, or ``--scheduler``). Results are written as
they complete to ``--out``/grid_results (an interrupted run resumes).

Prints the cells per method, the mean ARE / 90% coverage / band width over families, the
paired ARE contrast bayescale - curve_fit with a bootstrap interval over families (overall
and by number of models), the wall time and the estimated time of the full grid; writes
``grid.csv`` and the heatmaps (ARE for both methods, coverage and band width for bayescale;
one panel per scale-up bin, rows = number of models, columns = share of training).

Usage::

    python benchmarks/grid.py --quick                 # 2 families, a corner of the grid
    python benchmarks/grid.py                         # every family (hours: see the estimate)
    python benchmarks/grid.py --scheduler tcp://host:8786
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import bundled_families

from bayescale.batch import (
    fit_many,
    grid_contrast,
    grid_summary,
    grid_tasks,
    plot_grid,
)

#: Families of ``--quick`` (several sizes, curves past 10B tokens, fast fits).
QUICK_FAMILIES = ("hitchhiker/revisiting-lm", "olmo-ladder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{', '.join(QUICK_FAMILIES)}; 2-3 models, shares 0.5 and 1, "
                             "the two smallest scale-ups; 2 chains x (300 + 300)")
    parser.add_argument("--families", nargs="+", default=None, help="glob patterns")
    parser.add_argument("--fractions", type=float, nargs="+", default=None)
    parser.add_argument("--max-models", type=int, default=None,
                        help="largest number of models (default 10; --quick 3)")
    parser.add_argument("--max-scale-ups", type=int, default=None,
                        help="smallest scale-ups used per family (default 10; --quick 2)")
    parser.add_argument("--max-points", type=int, default=20, help="checkpoints per run")
    parser.add_argument("--draws", type=int, default=None, help="(default 500; --quick 300)")
    parser.add_argument("--tune", type=int, default=None, help="(default 500; --quick 300)")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument("--workers", type=int, default=None, help="local cluster workers")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    quick = args.quick
    fractions = args.fractions or ([0.5, 1.0] if quick else [0.2, 0.4, 0.6, 0.8, 1.0])
    max_models = args.max_models or (3 if quick else 10)
    max_scale_ups = args.max_scale_ups or (2 if quick else 10)
    draws = args.draws or (300 if quick else 500)
    tune = args.tune or (300 if quick else 500)
    tag = "grid_quick" if quick else "grid"

    runs = bundled_families()
    patterns = args.families or (list(QUICK_FAMILIES) if quick else ["*"])
    names = sorted(runs["family"].unique())
    chosen = [f for f in names if any(fnmatch.fnmatch(f, p) for p in patterns)]
    t0 = time.perf_counter()
    settings = {
        "fractions": fractions,
        "n_models": range(2, max_models + 1),
        "max_scale_ups": max_scale_ups,
        "max_points": args.max_points or None,
        "fit_kwargs": {"draws": draws, "tune": tune, "chains": args.chains},
        "random_seed": args.seed,
    }
    tasks = grid_tasks(runs, ("bayescale", "curve_fit"), families=chosen, **settings)
    n_bayes = sum(t.method == "bayescale" for t in tasks)
    print(f"{len(tasks)} fits ({n_bayes} bayescale + {len(tasks) - n_bayes} curve_fit) over "
          f"{len({t.family for t in tasks})} families; grid built in "
          f"{time.perf_counter() - t0:.0f} s; load {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    results = fit_many(tasks, args.scheduler, args.out / f"{tag}_results",
                       n_workers=args.workers)
    wall = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    results.reset_index().to_csv(args.out / f"{tag}.csv", index=False)

    pd.set_option("display.width", 200)
    fmt = "{:.4g}".format
    print("\nper method (ARE, coverage and width are fractions; mean over families):")
    print(grid_summary(results).to_string(float_format=fmt))
    print("\nARE bayescale - curve_fit over the cells both fitted (mean over families of each "
          "family's mean; 90% bootstrap interval over families):")
    print(grid_contrast(results).to_string(index=False, float_format=fmt))
    print(grid_contrast(results, by=("n_models",)).to_string(index=False, float_format=fmt))
    print(grid_contrast(results, by=("fraction",)).to_string(index=False, float_format=fmt))

    figures = []
    for method, metrics in (("bayescale", ("are", "coverage_90", "width_90")),
                            ("curve_fit", ("are",))):
        for metric in metrics:
            path = args.out / f"{tag}_{metric}_{method}.png"
            plt.close(plot_grid(results, metric, method, path))
            figures.append(path.name)

    # the full grid's cost from the task times (stored with each result, also when resumed)
    per_fit = results.reset_index().groupby("method")["total_seconds"].mean()
    n_workers = args.workers or (os.cpu_count() or 1) if args.scheduler is None else max(
        1, results["worker"].nunique())
    print(f"\nwall time {wall:.0f} s for {int((~results['cached']).sum())} fits not done "
          f"before, on {n_workers} workers; mean task seconds {per_fit.round(1).to_dict()}; "
          f"load {os.getloadavg()[0]:.2f}")
    if quick and "bayescale" in per_fit:
        full = grid_tasks(runs, ("bayescale",), families=sorted(names), **{
            **settings, "fractions": [0.2, 0.4, 0.6, 0.8, 1.0], "n_models": range(2, 11),
            "max_scale_ups": 10,
        })
        hours = len(full) * per_fit["bayescale"] / n_workers / 3600
        print(f"the full grid (every family, 5 shares, up to 10 models and 10 scale-ups) has "
              f"{len(full)} Bayesian fits: about {hours:.1f} h on {n_workers} workers at this "
              "run's mean task time (curve_fit adds minutes)")
    print(f"results -> {args.out / (tag + '.csv')}; heatmaps -> {', '.join(figures)}")


if __name__ == "__main__":
    main()
