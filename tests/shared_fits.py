"""Simulated tables and fits that more than one test module uses (the session fixtures in
``conftest.py`` fit them once per test session: a new fit costs a model compile, 10-40 s on
2 cores, far more than its sampling)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

import bayescale

HEAVY = "fam0-2e+07"  # the ladder's configuration observed with six seeds


def ladder(seed: int = 4):
    """Two families at 2e7, 6e7, 2e8; fam0's smallest configuration with six seeds, every other
    configuration with one."""
    sim = bayescale.simulate(
        n_families=2, sizes=(2e7, 6e7, 2e8), n_seeds=6, n_checkpoints=10, random_seed=seed
    )
    runs = sim.runs
    keep = (runs["config"] == HEAVY) | runs["run"].str.endswith("-s0")
    return sim, runs[keep].reset_index(drop=True)


def fit_ladder(runs: pd.DataFrame, draws: int = 200, tune: int = 300):
    """The default model on a ladder table, 2 chains (its SamplingWarnings not shown)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        return bayescale.fit(runs, draws=draws, tune=tune, chains=2, random_seed=0,
                             progressbar=False)


def report_split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three families (fam2 a MoE, the others dense) at four sizes; the largest size held out:
    ``(train, held)``."""
    sim = bayescale.simulate(
        n_families=3, sizes=(2e7, 6e7, 2e8, 6e8), n_checkpoints=8, random_seed=3
    )
    runs = sim.runs.copy()
    runs["arch"] = np.where(runs["family"] == "fam2", "moe", "dense")
    held = runs["params"] == runs["params"].max()
    return runs[~held].reset_index(drop=True), runs[held].reset_index(drop=True)


ARCH_OPTIONS = {"hierarchy": ("arch", "family")}


def fit_arch(train: pd.DataFrame) -> tuple[bayescale.ScalingLawFit, list]:
    """The arch > family model on the report's training table, and every warning it raised
    (recorded, so that a test can check that no other library's warning reaches the user)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bayescale.fit(train, **ARCH_OPTIONS, draws=250, tune=300, chains=2, random_seed=1,
                            progressbar=False)
    return fit, list(caught)
