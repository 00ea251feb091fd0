"""Benchmark the hierarchical model on all bundled real families with loss curves.

Every family of olmo-ladder, hitchhiker (except the final-only Chinchilla IsoFLOP points),
deepmind-routing and nanogpt-replicates, past the 10B-token warm-up cut where the runs are long
enough (the nanogpt runs are 1.5-4.5B tokens, so they keep checkpoints past 25% of each run),
thinned to at most ``--max-points`` checkpoints per run. Prints one table: points, runs,
families, compile and sampling seconds, divergences, max R-hat, min ESS, ESS/s and peak memory.

Usage::

    python benchmarks/model_real.py [--max-points 40] [--draws 1000] [--tune 1000]
    python benchmarks/model_real.py --per-dataset --datasets olmo-ladder hitchhiker
    python benchmarks/model_real.py --datasets deepmind-routing \
        --family-parameterization noncentered
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import pandas as pd

import bayescale


def real_curves(max_points: int, datasets: list[str]) -> pd.DataFrame:
    """All bundled curve families past the warm-up, thinned, with dataset-prefixed names."""
    frames = []
    for name in datasets:
        runs = bayescale.load_dataset(name)
        runs = runs[runs["family"] != "chinchilla-isoflop"]
        if name == "nanogpt-replicates":
            runs = bayescale.drop_warmup(runs, min_tokens=None, min_fraction=0.25)
        else:
            runs = bayescale.drop_warmup(runs)
        runs = bayescale.thin_log_spaced(runs, max_points=max_points)
        keep = ["family", "run", "params", "tokens", "loss"]
        frames.append(runs[keep].assign(family=name + "/" + runs["family"],
                                        run=name + "/" + runs["run"]))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-points", type=int, default=40)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--random-seeds", type=int, nargs="+", default=[0],
                        help="sampler seeds; one row per seed and data set")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["olmo-ladder", "hitchhiker", "deepmind-routing", "nanogpt-replicates"],
    )
    parser.add_argument(
        "--family-parameterization", default="local",
        choices=["local", "centered", "noncentered"],
    )
    parser.add_argument(
        "--per-dataset", action="store_true",
        help="fit each dataset on its own (one row each) instead of all in one population",
    )
    args = parser.parse_args()

    groups = [[d] for d in args.datasets] if args.per_dataset else [args.datasets]
    rows = [benchmark_row(real_curves(args.max_points, g), args, seed)
            for g in groups for seed in args.random_seeds]
    print(f"real data, {args.chains} chains x ({args.tune} tune + {args.draws} draws), "
          f"<= {args.max_points} checkpoints per run, families "
          f"{args.family_parameterization}; peak RSS is the process maximum so far")
    print(pd.DataFrame(rows).to_string(index=False))


def benchmark_row(runs: pd.DataFrame, args: argparse.Namespace, seed: int = 0) -> dict:
    """Fit ``runs`` with sampler seed ``seed`` and return the table row."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bayescale.fit(runs, draws=args.draws, tune=args.tune, chains=args.chains,
                            random_seed=seed, progressbar=False,
                            family_parameterization=args.family_parameterization)
    total = time.perf_counter() - t0
    diag = fit.diagnostics
    steps = fit.idata.sample_stats["n_steps"] if "n_steps" in fit.idata.sample_stats else None
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "data": " + ".join(sorted({f.split("/")[0] for f in runs["family"]})),
        "seed": seed,
        "points": len(runs),
        "runs": runs["run"].nunique(),
        "families": runs["family"].nunique(),
        "compile s": round(fit.meta["compile_seconds"], 1),
        "sample s": round(fit.meta["sampling_seconds"], 1),
        "total s": round(total, 1),
        "divergences": diag.divergences,
        "max R-hat": round(diag.max_rhat, 4),
        "min ESS bulk": round(diag.min_ess_bulk),
        "ESS/s": round(diag.min_ess_bulk / fit.meta["sampling_seconds"], 2),
        "steps/draw": round(float(steps.mean()), 1) if steps is not None else float("nan"),
        "peak RSS GB": round(peak_gb, 2),
        "sigma_seed": round(float(fit.idata.posterior["sigma_seed"].median()), 4),
        "ar_rho": round(float(fit.idata.posterior["ar_rho"].median()), 4),
    }


if __name__ == "__main__":
    main()
