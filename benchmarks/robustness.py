"""Robustness of the predictive bands to a misspecified noise model.

Data from :func:`bayescale.simulate` with everything the default model does not assume:
Student-t checkpoint noise (3 degrees of freedom, scale 0.005, so outliers), AR(1) residuals
(rho 0.7 between consecutive checkpoints), one loss spike (+10% on one fitted checkpoint) and a
warm-up (3 extra early checkpoints up to 35% above the law) left in the fitted data. 4 families
x sizes 2e7-6e8 are fitted under each likelihood option; the 2e9 runs are held out and the
table reports how many of their checkpoints (after the warm-up) fall inside the 50% and 90%
``observed`` bands. The default options should keep the 90% coverage at 80% or more.

Usage::

    python benchmarks/robustness.py --reps 10 --workers 2
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

from bayescale.validation import run_coverage_replication, run_parallel, summarise_coverage

RESULTS = Path(__file__).parent / "results"

#: Likelihood options compared: label -> fit keyword arguments.
OPTIONS: dict[str, dict[str, str]] = {
    "normal+log_tokens (default)": {"likelihood": "normal", "autocorrelation": "log_tokens"},
    "normal+none": {"likelihood": "normal", "autocorrelation": "none"},
    "student_t": {"likelihood": "student_t"},
}

LEVELS = (0.5, 0.9)
FIRST_FRACTION = 0.05  # simulate's first regular checkpoint; earlier ones are the warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--ar-rho", type=float, default=0.7)
    parser.add_argument("--nu", type=float, default=3.0)
    parser.add_argument("--spike", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--base-seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=RESULTS / "robustness.jsonl")
    args = parser.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.unlink(missing_ok=True)
    sim = {
        "n_families": 4, "sizes": (2e7, 6e7, 2e8, 6e8, 2e9), "n_seeds": 2, "n_checkpoints": 20,
        "first_fraction": FIRST_FRACTION, "noise": "student_t", "nu": args.nu,
        "ar_rho": args.ar_rho, "warmup_checkpoints": args.warmup,
    }
    print(f"robustness: {args.reps} data sets x {len(args.options)} options, {args.workers} "
          f"workers; t({args.nu:g}) noise, AR(1) rho {args.ar_rho}, one spike of "
          f"{args.spike:g}, {args.warmup} warm-up checkpoints", flush=True)
    rows = {}
    t0 = time.perf_counter()
    for label in args.options:
        job = partial(
            run_coverage_replication,
            base_seed=args.base_seed,  # same data sets for every option
            simulate_kwargs=sim,
            held_out_params=2e9,
            fit_kwargs={"draws": args.draws, "tune": args.tune, "chains": args.chains,
                        **OPTIONS[label]},
            spike_size=args.spike,
            eval_from_fraction=FIRST_FRACTION * (1 - 1e-9),
            levels=LEVELS,
        )
        t1 = time.perf_counter()
        done = run_parallel(job, list(range(args.reps)), args.workers, args.out, label)
        rows[label] = {**summarise_coverage([done[i] for i in sorted(done)], LEVELS),
                       "wall": time.perf_counter() - t1}
    print(f"\nwall time {time.perf_counter() - t0:.0f}s; {args.reps} data sets, held-out "
          "checkpoints of the 2e9 runs after the warm-up")
    header = (f"{'option':<30}{'50% band':>10}{'90% band':>10}{'+-se':>7}{'90% final':>11}"
              f"{'div. fits':>11}{'s/fit':>7}{'>=80%':>7}")
    print(header)
    print("-" * len(header))
    for label, s in rows.items():
        ok = "yes" if s["pooled_0.9"] >= 0.8 else "NO"
        print(f"{label:<30}{s['pooled_0.5']:10.3f}{s['pooled_0.9']:10.3f}{s['se_0.9']:7.3f}"
              f"{s['final_0.9']:11.3f}{s['divergent_share']:11.0%}{s['seconds']:7.0f}{ok:>7}")


if __name__ == "__main__":
    main()
