"""Coverage of the posterior predictive bands on a held-out larger size.

Over ``--reps`` data sets from :func:`bayescale.simulate` (4 families x sizes 2e7-6e8 fitted,
2e9 held out, 2 seeds, 20 checkpoints; Normal checkpoint noise sd 0.005 with AR(1) correlation
``--ar-rho`` between consecutive log-spaced checkpoints, seed sd 0.01), fit the default model
to the smaller sizes and count the held-out checkpoints inside the 50% and 90% ``observed``
bands (new seed of the same family, checkpoint noise included). Target: within 5 points of
nominal.

Measured (50 data sets, 8,000 held-out checkpoints, 2 chains x 500 draws): 50% band 0.531
(se 0.017), 90% band 0.928 (se 0.012); final checkpoints 0.532 and 0.927. Both within 5 points
of nominal, slightly conservative.

Usage::

    python benchmarks/band_coverage.py --reps 50 --workers 2
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

from bayescale.validation import run_coverage_replication, run_parallel, summarise_coverage

RESULTS = Path(__file__).parent / "results"
LEVELS = (0.5, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--ar-rho", type=float, default=0.5)
    parser.add_argument("--base-seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "coverage.jsonl")
    args = parser.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.unlink(missing_ok=True)
    sim = {"n_families": 4, "sizes": (2e7, 6e7, 2e8, 6e8, 2e9), "n_seeds": 2,
           "n_checkpoints": 20, "ar_rho": args.ar_rho}
    job = partial(
        run_coverage_replication,
        base_seed=args.base_seed,
        simulate_kwargs=sim,
        held_out_params=2e9,
        fit_kwargs={"draws": args.draws, "tune": args.tune, "chains": args.chains},
        levels=LEVELS,
    )
    print(f"coverage: {args.reps} data sets, {args.workers} workers, {args.chains} chains x "
          f"{args.draws} draws (+{args.tune} tune), AR(1) rho {args.ar_rho}", flush=True)
    t0 = time.perf_counter()
    done = run_parallel(job, list(range(args.reps)), args.workers, args.out, "default")
    wall = time.perf_counter() - t0
    s = summarise_coverage([done[i] for i in sorted(done)], LEVELS)
    n_targets = sum(r["n_targets"] for r in done.values())
    print(f"\n{len(done)} data sets, {n_targets} held-out checkpoints (params 2e9); wall time "
          f"{wall:.0f}s, {s['seconds']:.0f}s per fit (median); fits with divergences "
          f"{s['divergent_share']:.0%}")
    print(f"{'band':<8}{'nominal':>8}{'all ckpts':>11}{'+-se':>7}{'final ckpt':>12}{'target':>12}")
    for q in LEVELS:
        key = f"{q:g}"
        ok = abs(s[f"pooled_{key}"] - q) <= 0.05
        print(f"{key:<8}{q:8.2f}{s[f'pooled_{key}']:11.3f}{s[f'se_{key}']:7.3f}"
              f"{s[f'final_{key}']:12.3f}{'met' if ok else 'MISSED':>12}")
    print("(se: standard error over data sets; final ckpt: last checkpoint of each held-out run)")


if __name__ == "__main__":
    main()
