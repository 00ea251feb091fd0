"""Which ingredient moves the 3B final-loss predictions of section 1: the priors or the checkpoints?

Reuses section 1 of ``real_extrapolation.py`` (fit the OLMo ladder's 190M-1B runs, predict the
six 3B final losses and the 3B curves) and varies one thing at a time:

* ``default``: every checkpoint past the warm-up, 40 per run, default priors and fit window;
* ``finals``: the same runs' final losses only (``autocorrelation="none"``,
  ``target_accept=0.98``, as for selection (a) of ``REAL_EXTRAPOLATION.md``);
* ``default-wide`` / ``finals-wide``: the same with the population sds of
  ``log_E, a, log_alpha, b, log_beta`` multiplied by ``--widen``;
* ``half``: the default fit with ``fit_from=0.5``;
* ``huber``: Huber on the final losses, for reference.

Prints one row per variant: 3B finals ARE, 90% coverage and band width, 3B curves ARE and
coverage, posterior medians of ``E, alpha, beta``, divergences and max R-hat.

Usage: ``python benchmarks/real_extrapolation_priors.py [--variants default,finals,...]``
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

import bayescale
from bayescale.baselines import fit_huber
from bayescale.models.priors import DEFAULT_PRIORS, THETA_NAMES

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from real_extrapolation import SCHEDULE_COLUMNS, _fit, _score

VARIANTS = ("default", "finals", "default-wide", "finals-wide", "half", "huber")
FINALS_KW = {"autocorrelation": "none", "target_accept": 0.98}


def _targets(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    test = runs[runs["params"] > 3e9].sort_values(["run", "tokens"])
    return {
        "finals": test.groupby("run").tail(1),
        "curves": test[test["tokens"] >= 0.3 * test["run_tokens"]],
    }


def run_variant(name: str, runs: pd.DataFrame, args: argparse.Namespace) -> dict:
    past_warmup = runs[runs["tokens"] > runs["warmup_tokens"]]
    train = past_warmup[past_warmup["params"] < 3e9].sort_values(["run", "tokens"])
    finals_train = train.groupby("run").tail(1)
    wide = {k: {"sigma": args.widen * DEFAULT_PRIORS[k]["sigma"]} for k in THETA_NAMES}
    row: dict = {"variant": name}
    if name == "huber":
        model = fit_huber(
            runs[runs["params"] < 3e9].sort_values(["run", "tokens"]).groupby("run").tail(1)
        )
        row.update({k: model.params[k] for k in ("E", "alpha", "beta")})
    else:
        thinned = bayescale.thin_log_spaced(train, args.thin) if args.thin else train
        data, kw = {
            "default": (thinned, {}),
            "finals": (finals_train, FINALS_KW),
            "default-wide": (thinned, {"priors": wide}),
            "finals-wide": (finals_train, {**FINALS_KW, "priors": wide}),
            "half": (thinned, {"fit_from": 0.5}),
        }[name]
        model, seconds = _fit(data, args, **kw)
        law = model.law_parameters("olmo-ladder")
        row.update({k: float(np.median(law[k].values)) for k in ("E", "alpha", "beta")})
        row.update(
            {
                "checkpoints": len(model.data),
                "divergences": model.diagnostics.divergences,
                "max R-hat": round(model.diagnostics.max_rhat, 4),
                "seconds": round(seconds),
            }
        )
    for target, rows_ in _targets(runs).items():
        y = rows_["loss"].to_numpy(dtype=float)
        n, d = rows_["params"].to_numpy(dtype=float), rows_["tokens"].to_numpy(dtype=float)
        if name == "huber":
            pred = model.predict(n, d)
        else:
            pred = model.predict(n, d, family="olmo-ladder", schedule=rows_[SCHEDULE_COLUMNS])
        score = _score(y, pred)
        row[f"{target} ARE %"] = score["ARE %"]
        row[f"{target} in 90%"] = score.get("in 90%", "-")
        row[f"{target} width %"] = score.get("band width %", np.nan)
        if target == "finals":
            err = 100 * (pred["median"].values - y) / y
            row["finals signed errors %"] = " ".join(f"{e:+.2f}" for e in err)
    row["load"] = os.getloadavg()[0]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--thin", type=int, default=40, help="checkpoints per run (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widen", type=float, default=3.0, help="factor on the population sds")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    runs = bayescale.load_dataset("olmo-ladder")
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    rows = []
    for name in args.variants.split(","):
        rows.append(run_variant(name, runs, args))
        print(pd.DataFrame(rows[-1:]).round(4).to_string(index=False), flush=True)
    print("\n" + pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
