"""Held-out extrapolation on real runs: bayescale's default fit against Huber on final losses.

Prints one table per check (ARE, 90% coverage, band width against the realised errors,
sampling time and diagnostics), for bayescale and for a Huber fit of final losses on the same
split:

1. OLMo ladder: fit on 190M-1B with every checkpoint past the LR warm-up; predict the six 3B
   final losses, and the 3B curves (last 70% of each run, with each run's schedule).
2. Robustness to the checkpoint selection: fit the ladder <= 3B on (a) final losses, (b)
   checkpoints past 10B tokens, (c) checkpoints from 10% of each run; medians and 90% bands at
   (7e9, 4e12) and (1.3e10, 5e12).
3. The fitted seed sd against ``bayescale.seed_variability`` on the ladder's replicates.

Usage: ``python benchmarks/real_extrapolation.py [--draws 1000] [--chains 4] [--thin 40]``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

import bayescale
from bayescale.baselines import fit_huber

SCHEDULE_COLUMNS = [
    "run", "schedule", "warmup_tokens", "final_lr_fraction", "schedule_tokens", "run_tokens",
    "batch_size",
]
FAR_TARGETS = ((7e9, 4e12), (1.3e10, 5e12))


def _fit(train: pd.DataFrame, args: argparse.Namespace, **kw) -> tuple[object, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ScheduleWarning)
        fit = bayescale.fit(
            train, draws=args.draws, tune=args.draws, chains=args.chains,
            random_seed=args.seed, progressbar=False, **kw,
        )
    return fit, time.perf_counter() - t0


def _score(y: np.ndarray, pred) -> dict[str, float]:
    med = pred["median"].values
    band = pred["observed"].sel(level=0.9) if "observed" in pred else None
    out = {"ARE %": 100 * float(np.mean(np.abs(med - y) / y)), "n": len(y)}
    if band is not None:
        lo, hi = band.sel(bound="lower").values, band.sel(bound="upper").values
        out["in 90%"] = f"{int(np.sum((y >= lo) & (y <= hi)))}/{len(y)}"
        out["band width %"] = 100 * float(np.mean((hi - lo) / y))
    out["error spread %"] = 100 * float(np.std((med - y) / y) * 2 * 1.645)
    return out


def olmo_heldout(args: argparse.Namespace) -> pd.DataFrame:
    runs = bayescale.load_dataset("olmo-ladder")
    past_warmup = runs[runs["tokens"] > runs["warmup_tokens"]]
    train = past_warmup[past_warmup["params"] < 3e9]
    if args.thin:
        train = bayescale.thin_log_spaced(train, args.thin)
    test = runs[runs["params"] > 3e9].sort_values(["run", "tokens"])
    finals = test.groupby("run").tail(1)
    curves = test[test["tokens"] >= 0.3 * test["run_tokens"]]
    kw = {"config_effects": True} if args.config_effects else {}
    if args.priors:
        kw["priors"] = json.loads(args.priors)
    fit, seconds = _fit(train, args, **kw)
    huber = fit_huber(runs[runs["params"] < 3e9].sort_values(["run", "tokens"])
                      .groupby("run").tail(1))
    rows = []
    for name, rows_ in (("3B finals", finals), ("3B curves (last 70%)", curves)):
        y = rows_["loss"].to_numpy(dtype=float)
        n, d = rows_["params"].to_numpy(dtype=float), rows_["tokens"].to_numpy(dtype=float)
        pred = fit.predict(n, d, family="olmo-ladder", schedule=rows_[SCHEDULE_COLUMNS])
        rows.append({"target": name, "method": "bayescale", **_score(y, pred)})
        rows.append({"target": name, "method": "huber (finals)", **_score(y, huber.predict(n, d))})
    diag = fit.diagnostics
    print(f"bayescale fit: {seconds:.0f} s in all ({fit.meta['sampling_seconds']:.1f} s sampling), "
          f"{diag.divergences} divergences, max R-hat {diag.max_rhat:.4f}, "
          f"{len(fit.data)} checkpoints of {fit.data['run'].nunique()} runs")
    if args.config_effects:
        sc = fit.posterior_draws("sigma_config")
        print(f"sigma_config {np.median(sc):.5f} [{np.quantile(sc, 0.05):.5f}, "
              f"{np.quantile(sc, 0.95):.5f}]")
    sigma = fit.posterior_draws("sigma_seed")
    rep = bayescale.seed_variability(runs, random_seed=args.seed).summary()
    rep_sd = float(rep.loc["sigma_seed[olmo-ladder]", "mean"])
    print(f"sigma_seed {np.median(sigma):.5f} [{np.quantile(sigma, 0.05):.5f}, "
          f"{np.quantile(sigma, 0.95):.5f}]; replicates (seed_variability) {rep_sd:.5f}: "
          f"ratio {np.median(sigma) / rep_sd:.1f}")
    return pd.DataFrame(rows)


def selection_robustness(args: argparse.Namespace) -> pd.DataFrame:
    runs = bayescale.load_dataset("olmo-ladder")
    runs = runs[runs["tokens"] > runs["warmup_tokens"]].sort_values(["run", "tokens"])
    selections = {
        "(a) final losses": (runs.groupby("run").tail(1), {"autocorrelation": "none"}),
        "(b) past 10B tokens": (runs[runs["tokens"] > 1e10], {}),
        "(c) from 10% of each run": (runs[runs["tokens"] >= 0.1 * runs["run_tokens"]], {}),
    }
    bands = {}
    rows = []
    for name, (sub, kw) in selections.items():
        if args.thin:
            sub = bayescale.thin_log_spaced(sub, args.thin)
        fit, seconds = _fit(sub, args, **kw)
        n, d = np.array(FAR_TARGETS).T
        pred = fit.predict(n, d, family="olmo-ladder")
        band = pred["observed"].sel(level=0.9)
        bands[name] = (pred["median"].values, band.sel(bound="lower").values,
                       band.sel(bound="upper").values)
        diag = fit.diagnostics
        for i, (nn, dd) in enumerate(FAR_TARGETS):
            rows.append({"selection": name, "target": f"({nn:.2g}, {dd:.2g})",
                         "median": bands[name][0][i], "lower 90%": bands[name][1][i],
                         "upper 90%": bands[name][2][i], "seconds": round(seconds),
                         "divergences": diag.divergences, "max R-hat": round(diag.max_rhat, 4)})
    out = pd.DataFrame(rows)
    for i in range(len(FAR_TARGETS)):
        meds = np.array([b[0][i] for b in bands.values()])
        inside = all(
            lo[i] <= other[0][i] <= hi[i]
            for k, (_, lo, hi) in bands.items() for j, other in bands.items() if j != k
        )
        print(f"target {FAR_TARGETS[i]}: medians spread {100 * (meds.max() / meds.min() - 1):.2f}%, "
              f"each inside the others' 90% bands: {inside}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--thin", type=int, default=40, help="checkpoints per run (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-selection", action="store_true")
    parser.add_argument("--priors", default="", help="prior overrides as JSON")
    parser.add_argument("--config-effects", action="store_true",
                        help="the main fit splits run offsets into config and seed offsets")
    args = parser.parse_args()
    pd.set_option("display.width", 160)
    print("== OLMo ladder: fit 190M-1B (every checkpoint past warm-up), predict 3B ==")
    print(olmo_heldout(args).round(3).to_string(index=False))
    if not args.skip_selection:
        print("\n== OLMo ladder <= 3B: robustness to the checkpoint selection ==")
        print(selection_robustness(args).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
