"""Benchmark the hierarchical model on synthetic data with known parameters.

8 families x 5 sizes x 3 seeds x 60 checkpoints (7,200 points), 4 chains x (1000 tune + 1000
draws). For each backend prints compile+sampling seconds, divergences, max R-hat, min ESS
(bulk), ESS/s and how many of the 40 family x parameter 90% intervals contain the truth.

``--samplers pymc-defaults`` adds the reference a PyMC user gets with ``pm.sample()`` left at
its defaults on the same model: the model's own initial point with PyMC's ``jitter+adapt_diag``
initialisation and ``target_accept=0.8`` (``pymc`` is bayescale's ``sampler="pymc"``: the
least-squares start, unit-scale jitter only, ``target_accept=0.9``).

Usage::

    python benchmarks/model_synthetic.py                 # nutpie (default) and pymc
    python benchmarks/model_synthetic.py --samplers nutpie --draws 500
    python benchmarks/model_synthetic.py --samplers nutpie pymc pymc-defaults
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import pymc as pm

import bayescale
from bayescale.fit import prepare_model
from bayescale.inference import SamplerSettings
from bayescale.models import ModelOptions
from bayescale.models.hierarchical import LAW_PARAMS


def coverage(fit: bayescale.ScalingLawFit, truth: pd.DataFrame, level: float = 0.9):
    """Count family x parameter intervals containing the truth; list the misses."""
    lo, hi = (1 - level) / 2, (1 + level) / 2
    hits, misses = 0, []
    for fam in truth.index:
        draws = fit.law_parameters(fam)
        for p in LAW_PARAMS:
            q = np.quantile(draws[p].values, [lo, hi])
            value = truth.loc[fam, p]
            if q[0] <= value <= q[1]:
                hits += 1
            else:
                misses.append(f"{p}[{fam}] true {value:.4g} not in [{q[0]:.4g}, {q[1]:.4g}]")
    return hits, misses


def fit_with_pm_sample_defaults(
    runs: pd.DataFrame, args: argparse.Namespace, parameterization: str
) -> bayescale.ScalingLawFit:
    """Build bayescale's model as ``fit`` does, then call ``pm.sample()`` with its defaults."""
    options = ModelOptions(family_parameterization=parameterization)  # fit's other defaults
    prepared = prepare_model(runs, options)
    t0 = time.perf_counter()
    with prepared.model:
        idata = pm.sample(draws=args.draws, tune=args.tune, chains=args.chains,
                          random_seed=0, progressbar=False, compute_convergence_checks=False)
    idata.sample_stats.attrs.update(compile_seconds=0.0,
                                    sampling_seconds=time.perf_counter() - t0)
    settings = SamplerSettings(sampler="pymc", draws=args.draws, tune=args.tune,
                               chains=args.chains, target_accept=0.8)
    return prepared.to_fit(idata, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", default=["nutpie", "pymc"])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--parameterizations", nargs="+", default=["local"])
    parser.add_argument("--target-accept", type=float, default=0.9)
    args = parser.parse_args()

    sim = bayescale.simulate(
        n_families=8,
        sizes=(2e7, 6e7, 2e8, 6e8, 2e9),
        n_seeds=3,
        n_checkpoints=60,
        random_seed=args.data_seed,
    )
    rows = []
    configs = [(s, p) for s in args.samplers for p in args.parameterizations]
    for sampler, parameterization in configs:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if sampler == "pymc-defaults":
                fit = fit_with_pm_sample_defaults(sim.runs, args, parameterization)
            else:
                fit = bayescale.fit(
                    sim.runs,
                    sampler=sampler,
                    draws=args.draws,
                    tune=args.tune,
                    chains=args.chains,
                    random_seed=0,
                    progressbar=False,
                    target_accept=args.target_accept,
                    family_parameterization=parameterization,
                )
        total = time.perf_counter() - t0
        diag = fit.diagnostics
        hits, misses = coverage(fit, sim.families)
        rows.append(
            {
                "sampler": sampler,
                "families": parameterization,
                "compile s": round(fit.meta["compile_seconds"], 1),
                "sample s": round(fit.meta["sampling_seconds"], 1),
                "total s": round(total, 1),
                "divergences": diag.divergences,
                "max R-hat": round(diag.max_rhat, 4),
                "min ESS bulk": round(diag.min_ess_bulk),
                "ESS/s": round(diag.min_ess_bulk / fit.meta["sampling_seconds"], 1),
                "90% CIs with truth": f"{hits}/{len(misses) + hits}",
                "sigma_seed (true 0.01)": round(float(fit.idata.posterior.sigma_seed.median()), 4),
                "sigma_obs (true 0.005)": round(float(fit.idata.posterior.sigma_obs.median()), 5),
            }
        )
        if args.show_misses:
            print(f"[{sampler}/{parameterization}] misses:", *misses, sep="\n  ")
    table = pd.DataFrame(rows)
    print(f"synthetic: {len(sim.runs)} points, {args.chains} chains x ({args.tune} tune + "
          f"{args.draws} draws)")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
