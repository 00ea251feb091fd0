"""Predictive coverage: the share of held-out checkpoints inside a fit's predictive bands, over
simulated data sets (optionally with a loss spike or a dropped warm-up)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.prepare import drop_warmup
from bayescale.refit import fit_same_layout
from bayescale.simulate import simulate

__all__ = [
    "inject_spike",
    "predictive_coverage",
    "run_coverage_replication",
    "split_held_out",
    "summarise_coverage",
]


def split_held_out(runs: pd.DataFrame, held_out_params: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a run table into runs with ``params < held_out_params`` (fit) and the rest (targets)."""
    mask = runs["params"] >= held_out_params
    return runs.loc[~mask].reset_index(drop=True), runs.loc[mask].reset_index(drop=True)


def predictive_coverage(
    fit: Any,
    targets: pd.DataFrame,
    levels: Sequence[float] = (0.5, 0.9),
    band: str = "observed",
) -> pd.DataFrame:
    """Whether each target checkpoint lies inside the fit's predictive bands.

    Each target is predicted for its own family (a known family of the fit) at a new seed:
    the ``observed`` band includes parameter uncertainty, seed-to-seed variability and
    checkpoint noise.

    Parameters
    ----------
    fit
        A :class:`bayescale.ScalingLawFit`.
    targets
        Held-out checkpoints (columns family, run, params, tokens, loss).
    levels
        Central interval probabilities.
    band
        ``"observed"``, ``"new_seed"`` or ``"mean"``.

    Returns
    -------
    pandas.DataFrame
        The targets with columns ``inside_<level>`` (bool) and ``final`` (the run's last
        checkpoint).
    """
    out = []
    for fam, group in targets.groupby("family", sort=False):
        points = group[["params", "tokens"]].drop_duplicates().reset_index(drop=True)
        pred = fit.predict(points["params"].to_numpy(), points["tokens"].to_numpy(),
                           family=str(fam), levels=levels)
        key = pd.MultiIndex.from_frame(points)
        g = group.copy()
        pos = key.get_indexer(pd.MultiIndex.from_frame(g[["params", "tokens"]]))
        for q in levels:
            lo = pred[band].sel(level=q, bound="lower").values[pos]
            hi = pred[band].sel(level=q, bound="upper").values[pos]
            g[f"inside_{q:g}"] = (g["loss"].to_numpy() >= lo) & (g["loss"].to_numpy() <= hi)
        out.append(g)
    result = pd.concat(out, ignore_index=True)
    last = result.groupby("run")["tokens"].transform("max")
    result["final"] = result["tokens"] == last
    return result


def inject_spike(
    runs: pd.DataFrame, rng: np.random.Generator, size: float = 0.1, min_fraction: float = 0.0
) -> tuple[pd.DataFrame, int]:
    """Add one loss spike: multiply one random checkpoint's loss by ``exp(size)``.

    Parameters
    ----------
    runs
        Run table (needs ``run_tokens`` when ``min_fraction > 0``).
    rng
        Random generator choosing the checkpoint.
    size
        Spike height on log-loss.
    min_fraction
        Only checkpoints at or after this fraction of their run are eligible (keeps the spike
        out of a warm-up).

    Returns
    -------
    runs, row
        A copy with the spike, and the (positional) row that got it.
    """
    out = runs.reset_index(drop=True).copy()
    eligible = np.flatnonzero(out["tokens"].to_numpy() >= min_fraction * _run_tokens(out))
    row = int(rng.choice(eligible))
    out.loc[row, "loss"] = out.loc[row, "loss"] * np.exp(size)
    return out, row


def _run_tokens(runs: pd.DataFrame) -> np.ndarray:
    if "run_tokens" in runs:
        return runs["run_tokens"].to_numpy(dtype=float)
    return runs.groupby("run")["tokens"].transform("max").to_numpy(dtype=float)


def run_coverage_replication(
    index: int,
    *,
    base_seed: int = 7,
    simulate_kwargs: Mapping[str, Any] | None = None,
    held_out_params: float = 2e9,
    fit_kwargs: Mapping[str, Any] | None = None,
    spike_size: float | None = None,
    eval_from_fraction: float = 0.0,
    drop_warmup_fraction: float | None = None,
    levels: Sequence[float] = (0.5, 0.9),
) -> dict[str, Any]:
    """Simulate, hold out the largest size, fit the rest and score the predictive bands.

    The fit is :func:`bayescale.fit`'s, made through :func:`fit_same_layout`.

    Parameters
    ----------
    index
        Replication number; the data use seed ``(base_seed, index)``, the fit
        ``base_seed * 100_000 + index``.
    base_seed
        Seed shared by the replications of a study.
    simulate_kwargs
        Arguments of :func:`bayescale.simulate` (``random_seed`` is set here); its ``sizes``
        must include ``held_out_params``.
    held_out_params
        Runs with at least this many parameters are held out as targets.
    fit_kwargs
        Arguments of :func:`bayescale.fit` (likelihood options, draws, ...).
    spike_size
        When given, one loss spike of this height on log-loss is added to the fitted runs.
    eval_from_fraction
        Score only target checkpoints at or after this fraction of their run (e.g. the end of
        a simulated warm-up the law does not describe).
    drop_warmup_fraction
        When given, fit only checkpoints at or after this fraction of their run
        (:func:`bayescale.drop_warmup` with ``min_fraction``), after adding the spike.
    levels
        Central probabilities of the ``observed`` bands scored.

    Returns
    -------
    dict
        ``index``, ``inside`` and ``inside_final`` (level -> share of target checkpoints / of
        final checkpoints inside the band), ``n_targets``, ``divergences``, ``max_rhat``,
        ``seconds``.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng((base_seed, index))
    sim = simulate(**{**(simulate_kwargs or {}), "random_seed": rng})
    train, targets = split_held_out(sim.runs, held_out_params)
    if targets.empty:
        raise ValueError(f"no run with params >= {held_out_params:g} to hold out")
    if spike_size is not None:
        train, _ = inject_spike(train, rng, spike_size, min_fraction=eval_from_fraction)
    if drop_warmup_fraction is not None:
        train = drop_warmup(train, min_tokens=None, min_fraction=drop_warmup_fraction)
    targets = targets.loc[targets["tokens"].to_numpy() >= eval_from_fraction * _run_tokens(targets)]
    kwargs = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False,
              **(fit_kwargs or {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_same_layout(train, random_seed=base_seed * 100_000 + index, **kwargs)
    scored = predictive_coverage(result, targets, levels=levels)
    diag = result.diagnostics
    return {
        "index": index,
        "inside": {f"{q:g}": float(scored[f"inside_{q:g}"].mean()) for q in levels},
        "inside_final": {
            f"{q:g}": float(scored.loc[scored["final"], f"inside_{q:g}"].mean()) for q in levels
        },
        "n_targets": len(scored),
        "divergences": diag.divergences,
        "max_rhat": diag.max_rhat,
        "seconds": time.perf_counter() - t0,
    }


def summarise_coverage(
    records: Sequence[Mapping[str, Any]], levels: Sequence[float] = (0.5, 0.9)
) -> dict[str, float]:
    """Pool the records of :func:`run_coverage_replication`.

    Returns
    -------
    dict
        ``pooled_<level>`` (share of all target checkpoints inside), ``se_<level>`` (standard
        error over data sets), ``final_<level>`` (share of final checkpoints inside),
        ``divergent_share`` (fits with any divergence) and ``seconds`` (median per fit).
    """
    out: dict[str, float] = {}
    n_t = np.array([r["n_targets"] for r in records], dtype=float)
    for q in levels:
        key = f"{q:g}"
        per = np.array([r["inside"][key] for r in records])
        out[f"pooled_{key}"] = float(np.sum(per * n_t) / n_t.sum())
        out[f"se_{key}"] = float(per.std(ddof=1) / np.sqrt(per.size)) if per.size > 1 else np.nan
        out[f"final_{key}"] = float(np.mean([r["inside_final"][key] for r in records]))
    out["divergent_share"] = float(np.mean([r["divergences"] > 0 for r in records]))
    out["seconds"] = float(np.median([r["seconds"] for r in records]))
    return out
