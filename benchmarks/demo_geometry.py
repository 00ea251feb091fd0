"""How the demo's two fits sample under each parameterization, acceptance target and seed.

``--fit routing`` fits the demo's routing data (``bayescale.demo.routing_data``: dense plus
S-Base/Hash/RL-R at 8/64/512 experts, every run ending at ~130B tokens, all checkpoints) with
an arch level; ``--fit language`` fits the demo's language-model data
(``bayescale.demo.language_data``: the OLMo ladder and eight Hitchhiker families, the largest
model of each held out). One row per variant, acceptance target and sampler seed: seconds
(total and sampling), divergences, max R-hat and its parameter, min bulk ESS, the share of
draws at the maximum tree depth, mean leapfrog steps per draw, and the fit's headline result
(routing: S-Base vs Dense at 1.3B, median and 90% interval of the relative difference;
language: the held-out final losses' mean ARE and 90% band coverage). Results:
``benchmarks/results/ROUTING_GEOMETRY.md`` and ``benchmarks/results/LANGUAGE_GEOMETRY.md``.

Usage::

    python benchmarks/demo_geometry.py --fit routing --seeds 0 1 2 --variants noncentered
    python benchmarks/demo_geometry.py --fit language --target-accept 0.99 0.995
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd

import bayescale
from bayescale.demo import ROUTING_PARAMS, held_out_targets, language_data, routing_data
from bayescale.report import prediction_table

#: fit -> variant name -> fit options (on top of the demo's data and checkpoint window)
VARIANTS: dict[str, dict[str, dict]] = {
    "routing": {
        "noncentered": {"family_parameterization": "noncentered"},
        "local": {"family_parameterization": "local"},
        "shared-bbeta": {"family_parameterization": "noncentered", "shared": ("b", "log_beta")},
        "local-shared-bbeta": {"family_parameterization": "local", "shared": ("b", "log_beta")},
        "centered-shared-Ebbeta": {"family_parameterization": "centered",
                                   "shared": ("log_E", "b", "log_beta")},
        "shared-Ebbeta": {"family_parameterization": "noncentered",
                          "shared": ("log_E", "b", "log_beta")},
    },
    "language": {
        "noncentered": {"family_parameterization": "noncentered"},
        "centered": {"family_parameterization": "centered"},
        "local": {"family_parameterization": "local"},
        "noncentered-no-config": {"family_parameterization": "noncentered",
                                  "config_effects": False},
    },
}
#: fit -> the demo's options every variant shares
BASE: dict[str, dict] = {
    "routing": {"hierarchy": ("arch", "family"), "unscheduled_from": None, "fit_from": None},
    "language": {},
}


def _headline(which: str, fit: bayescale.ScalingLawFit, runs: pd.DataFrame,
              held: pd.DataFrame | None) -> dict:
    if which == "routing":
        comp = bayescale.compare(fit, "S-Base", "Dense", params=ROUTING_PARAMS,
                                 tokens=float(runs["tokens"].max()), kind="arch",
                                 arch_curve="centre")
        lo, hi = comp.interval(comp.rel_diff, 0.9)
        return {"sbase_vs_dense_%": round(100 * float(np.median(comp.rel_diff)), 2),
                "interval_90_%": f"[{100 * lo:.2f}, {100 * hi:.2f}]"}
    preds = prediction_table(fit, held_out_targets(held), levels=(0.9,))
    return {"held_out_are_%": round(100 * float(preds["are"].mean()), 2),
            "inside_90": f"{int(preds['inside_observed_90'].sum())}/{len(preds)}"}


def run(which: str, variant: str, seed: int, chains: int, draws: int, tune: int,
        target_accept: float, max_tree_depth: int) -> dict:
    held = None
    runs = routing_data() if which == "routing" else None
    if runs is None:
        runs, held = language_data()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)  # reported in the row
        warnings.simplefilter("ignore", bayescale.ScheduleWarning)  # the demo's note
        fit = bayescale.fit(
            runs, chains=chains, draws=draws, tune=tune, target_accept=target_accept,
            max_tree_depth=max_tree_depth, random_seed=seed, progressbar=False,
            **BASE[which], **VARIANTS[which][variant],
        )
    seconds = time.perf_counter() - t0
    d = fit.diagnostics
    return {
        "fit": which, "variant": variant, "seed": seed, "target_accept": target_accept,
        "seconds": round(seconds, 1),
        "sampling_s": round(float(fit.meta.get("sampling_seconds", np.nan)), 1),
        "divergences": d.divergences, "max_rhat": round(d.max_rhat, 4), "worst": d.worst_rhat,
        "min_ess_bulk": round(d.min_ess_bulk), "max_depth_share": round(d.max_tree_depth_share, 3),
        "steps": round(float(fit.idata.sample_stats["n_steps"].mean()), 1),
        **_headline(which, fit, runs, held),
        "load": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", choices=list(VARIANTS), default="routing")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="default: every variant of the fit")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=None,
                        help="default: the demo's (routing 1500, language 1000)")
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--target-accept", type=float, nargs="+", default=[0.99])
    parser.add_argument("--max-tree-depth", type=int, default=10)
    parser.add_argument("--csv", default=None, help="also write the table here")
    args = parser.parse_args()
    variants = args.variants or list(VARIANTS[args.fit])
    unknown = [v for v in variants if v not in VARIANTS[args.fit]]
    if unknown:
        parser.error(f"unknown {args.fit} variants {unknown}; choose from "
                     f"{list(VARIANTS[args.fit])}")
    draws = args.draws or (1500 if args.fit == "routing" else 1000)
    rows = []
    for variant in variants:
        for target_accept in args.target_accept:
            for seed in args.seeds:
                rows.append(run(args.fit, variant, seed, args.chains, draws, args.tune,
                                target_accept, args.max_tree_depth))
                print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1),
                      flush=True)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
