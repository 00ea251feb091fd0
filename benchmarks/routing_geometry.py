"""How the routing demo fit samples under each parameterization and shared-parameter choice.

Fits the demo's routing data (``bayescale.demo.routing_data``: dense plus S-Base/Hash/RL-R at
8/64/512 experts, every run ending at ~130B tokens, all checkpoints) with an arch level, for
each variant and sampler seed, and prints one row per fit: seconds (total and sampling),
divergences, max R-hat and its parameter, min bulk ESS, the share of draws at the maximum tree
depth, mean leapfrog steps per draw, and the S-Base-vs-Dense comparison at 1.3B (median and
90% interval of the relative difference). Results: ``benchmarks/results/ROUTING_GEOMETRY.md``.

Usage::

    python benchmarks/routing_geometry.py --seeds 0 1 2 --variants noncentered shared-bbeta
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd

import bayescale
from bayescale.demo import ROUTING_PARAMS, routing_data

#: name -> fit options (on top of the demo's: arch level, every checkpoint)
VARIANTS: dict[str, dict] = {
    "noncentered": {"family_parameterization": "noncentered"},
    "local": {"family_parameterization": "local"},
    "shared-bbeta": {"family_parameterization": "noncentered", "shared": ("b", "log_beta")},
    "local-shared-bbeta": {"family_parameterization": "local", "shared": ("b", "log_beta")},
    "centered-shared-Ebbeta": {"family_parameterization": "centered",
                               "shared": ("log_E", "b", "log_beta")},
    "shared-Ebbeta": {"family_parameterization": "noncentered",
                      "shared": ("log_E", "b", "log_beta")},
}


def run(variant: str, seed: int, chains: int, draws: int, tune: int, target_accept: float,
        max_tree_depth: int) -> dict:
    runs = routing_data()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)  # reported in the row
        fit = bayescale.fit(
            runs, hierarchy=("arch", "family"), unscheduled_from=None, fit_from=None,
            chains=chains, draws=draws, tune=tune, target_accept=target_accept,
            max_tree_depth=max_tree_depth, random_seed=seed, progressbar=False,
            **VARIANTS[variant],
        )
    seconds = time.perf_counter() - t0
    d = fit.diagnostics
    comp = bayescale.compare(fit, "S-Base", "Dense", params=ROUTING_PARAMS,
                             tokens=float(runs["tokens"].max()), kind="arch",
                             arch_curve="centre")
    lo, hi = comp.interval(comp.rel_diff, 0.9)
    return {
        "variant": variant, "seed": seed, "target_accept": target_accept,
        "seconds": round(seconds, 1),
        "sampling_s": round(float(fit.meta.get("sampling_seconds", np.nan)), 1),
        "divergences": d.divergences, "max_rhat": round(d.max_rhat, 4), "worst": d.worst_rhat,
        "min_ess_bulk": round(d.min_ess_bulk), "max_depth_share": round(d.max_tree_depth_share, 3),
        "steps": round(float(fit.idata.sample_stats["n_steps"].mean()), 1),
        "sbase_vs_dense_%": round(100 * float(np.median(comp.rel_diff)), 2),
        "interval_90_%": f"[{100 * lo:.2f}, {100 * hi:.2f}]",
        "load": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1500)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--target-accept", type=float, default=0.99)
    parser.add_argument("--max-tree-depth", type=int, default=10)
    parser.add_argument("--csv", default=None, help="also write the table here")
    args = parser.parse_args()
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            rows.append(run(variant, seed, args.chains, args.draws, args.tune,
                            args.target_accept, args.max_tree_depth))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1),
                  flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
