"""The guide's headline findings (intermediate checkpoints, the 10B-token cut, the number of
models) as paired per-family ARE differences with bootstrap intervals."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.prepare import (
    DEFAULT_TARGET_FRACTION,
    DEFAULT_WARMUP_TOKENS,
    protocol_split,
    thin_log_spaced,
)
from bayescale.evaluate.common import LAW_METHODS
from bayescale.scoring import (
    METHODS,
    SCORED_BAND,
    bootstrap_mean_interval,
    fit_and_predict,
    score_prediction,
    summarize_warnings,
)

__all__ = ["FINDINGS", "Findings", "paper_findings", "summarize_differences"]


#: Findings of :func:`paper_findings` and the variants each compares with ``"all"``.
FINDINGS: tuple[str, ...] = ("checkpoints", "warmup_cut", "n_models")


@dataclass(frozen=True)
class Findings:
    """Result of :func:`paper_findings`.

    Attributes
    ----------
    per_family
        One row per family x method x variant (``are``, ``coverage_90``, ...).
    summary
        One row per comparison x method: the paired per-family ARE differences ``variant -
        all`` with a bootstrap interval over families (see :func:`summarize_differences`).
    """

    per_family: pd.DataFrame
    summary: pd.DataFrame


def summarize_differences(
    per_family: pd.DataFrame,
    reference: str = "all",
    metric: str = "are",
    n_boot: int = 2000,
    level: float = 0.9,
    random_seed: int = 0,
) -> pd.DataFrame:
    """Paired per-family differences of every variant against ``reference``, with intervals.

    For every ``(finding, method, variant)`` of ``per_family`` with ``variant != reference``,
    the difference ``metric[variant] - metric[reference]`` is taken family by family (families
    where either is NaN are dropped) and summarized by its mean with a
    :func:`bootstrap_mean_interval` over families. A positive ARE difference means the
    reference (the paper's recommendation) predicts better.

    Parameters
    ----------
    per_family
        Tidy table with columns ``finding``, ``family``, ``method``, ``variant`` and
        ``metric``; the reference rows may be listed under any finding (they are matched by
        family and method).
    reference
        The variant every other is compared with.
    metric
        Column to compare (``"are"`` by default).
    n_boot, level, random_seed
        Bootstrap settings (the same seed for every comparison).

    Returns
    -------
    pandas.DataFrame
        One row per finding x method x variant: ``finding``, ``method``, ``variant``,
        ``reference``, ``n_families``, ``mean_variant``, ``mean_reference``, ``mean_diff``,
        ``diff_lower``, ``diff_upper`` (the ``level`` interval of the mean difference),
        ``median_diff`` and ``share_reference_better`` (families where the reference's metric
        is lower).
    """
    need = {"finding", "family", "method", "variant", metric}
    if not need <= set(per_family.columns):
        raise ValueError(f"per_family needs columns {sorted(need)}")
    ref = (
        per_family.loc[per_family["variant"] == reference]
        .drop_duplicates(["family", "method"])
        .set_index(["family", "method"])[metric]
    )
    rows = []
    others = per_family.loc[per_family["variant"] != reference]
    for (finding, method, variant), sub in others.groupby(
        ["finding", "method", "variant"], sort=False
    ):
        keys = list(zip(sub["family"], sub["method"], strict=True))
        base = ref.reindex(pd.MultiIndex.from_tuples(keys, names=["family", "method"])).to_numpy()
        value = sub[metric].to_numpy(dtype=float)
        ok = np.isfinite(value) & np.isfinite(base)
        diff = value[ok] - base[ok]
        mean, lower, upper = bootstrap_mean_interval(diff, n_boot, level, random_seed)
        rows.append(
            {
                "finding": finding,
                "method": method,
                "variant": variant,
                "reference": reference,
                "n_families": int(ok.sum()),
                "mean_variant": float(np.mean(value[ok])) if ok.any() else np.nan,
                "mean_reference": float(np.mean(base[ok])) if ok.any() else np.nan,
                "mean_diff": mean,
                "diff_lower": lower,
                "diff_upper": upper,
                "median_diff": float(np.median(diff)) if diff.size else np.nan,
                "share_reference_better": float(np.mean(diff > 0)) if diff.size else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _variant_train(
    family_runs: pd.DataFrame,
    variant: str,
    warmup_tokens: float | None,
    target_fraction: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(F_train, F_target)`` of one family under a protocol variant."""
    cut = None if variant == "no_cut" else warmup_tokens
    split = protocol_split(family_runs, warmup_tokens=cut, target_fraction=target_fraction)
    train = split.train
    if variant == "final_only":
        last = train.groupby("run", sort=False)["tokens"].transform("max")
        train = train.loc[train["tokens"] >= last].reset_index(drop=True)
    elif variant.startswith("k_models_"):
        k = int(variant.removeprefix("k_models_"))
        sizes = np.sort(train["params"].unique())[::-1][:k]
        train = train.loc[train["params"].isin(sizes)].reset_index(drop=True)
    elif variant not in ("all", "no_cut"):
        raise ValueError(f"unknown variant {variant!r}")
    # the target never depends on the variant: always the protocol's F_target
    target = protocol_split(
        family_runs, warmup_tokens=warmup_tokens, target_fraction=target_fraction
    ).target
    return train, target


def paper_findings(
    runs: pd.DataFrame,
    methods: Sequence[str] = ("curve_fit",),
    families: Sequence[str] | None = None,
    findings: Sequence[str] = FINDINGS,
    n_models: Sequence[int] = (2, 3, 4, 5),
    fit_kwargs: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    *,
    n_boot: int = 2000,
    level: float = 0.9,
    min_models: int = 3,
    max_points: int | None = None,
    warmup_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
    verbose: bool = True,
) -> Findings:
    """The Hitchhiker's headline findings as paired per-family differences with intervals.

    Every family is run through the protocol under the reference variant ``"all"`` (every
    checkpoint of every ``F_train`` run past the warm-up cut) and under the variants of each
    finding; ``F_target`` is always the protocol's. The findings:

    * ``"checkpoints"`` -- variant ``"final_only"``: only the final checkpoint of each
      training run (the paper: intermediate checkpoints help);
    * ``"warmup_cut"`` -- variant ``"no_cut"``: no 10B-token cut (the paper: the cut helps);
    * ``"n_models"`` -- variants ``"k_models_<k>"``: only the ``k`` largest training sizes,
      for each ``k`` in ``n_models``, scored on families with more than ``k`` training sizes
      (the paper: about 5 models are a safe minimum).

    The summary reports, per finding, method and variant, the mean over families of
    ``ARE(variant) - ARE(all)`` with a seeded percentile-bootstrap interval over families
    (:func:`summarize_differences`); positive values favour the paper's recommendation.

    Parameters
    ----------
    runs
        Run table (``family``, ``run``, ``params``, ``tokens``, ``loss``).
    methods
        Methods of :data:`METHODS` (``"bayescale"`` is one NUTS fit per family and variant: use
        few families, ``max_points`` and short chains).
    families
        Families to use (default: all with at least ``min_models`` sizes).
    findings
        Subset of :data:`FINDINGS`.
    n_models
        The ``k`` of the ``"n_models"`` finding.
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit`.
    random_seed
        Seed of the fits and of the bootstrap.
    n_boot, level
        Bootstrap replicates and interval level of the summary.
    min_models
        Families with fewer distinct sizes (``F_max`` included) are left out.
    max_points
        Thin every training run to at most this many log-spaced checkpoints (after the
        variant's selection).
    warmup_tokens, target_fraction
        Protocol settings.
    verbose
        Print one line per family, method and variant.

    Returns
    -------
    Findings
        ``per_family``: one row per finding x family x method x variant (the reference rows
        under ``finding="reference"``) with ``status``, ``reason``, ``n_train``,
        ``n_train_sizes``, ``are``, ``coverage_90``, ``seconds``, ``warnings``; ``summary``:
        see :func:`summarize_differences`.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    bad = [f for f in findings if f not in FINDINGS]
    if bad:
        raise ValueError(f"unknown findings {bad}; choose from {FINDINGS}")
    if families is None:
        sizes = runs.groupby("family")["params"].nunique()
        families = sorted(str(f) for f in sizes.index[sizes >= min_models])
    plan: list[tuple[str, str]] = [("reference", "all")]
    if "checkpoints" in findings:
        plan.append(("checkpoints", "final_only"))
    if "warmup_cut" in findings:
        plan.append(("warmup_cut", "no_cut"))
    if "n_models" in findings:
        plan.extend(("n_models", f"k_models_{int(k)}") for k in n_models)
    rows: list[dict[str, Any]] = []
    for family in families:
        fam_runs = runs.loc[runs["family"] == family]
        n_train_sizes = (
            protocol_split(fam_runs, warmup_tokens=warmup_tokens, target_fraction=target_fraction)
            .train["params"]
            .nunique()
        )
        for finding, variant in plan:
            if variant.startswith("k_models_") and int(variant[9:]) >= n_train_sizes:
                continue  # k would be all sizes: no comparison
            train, target = _variant_train(fam_runs, variant, warmup_tokens, target_fraction)
            if max_points is not None and len(train):
                train = thin_log_spaced(train, max_points=max_points)
            for method in methods:
                row = _findings_cell(method, train, target, family, fit_kwargs, random_seed)
                row |= {
                    "finding": finding,
                    "family": family,
                    "method": method,
                    "variant": variant,
                    "n_train": len(train),
                    "n_train_sizes": int(train["params"].nunique()) if len(train) else 0,
                }
                rows.append(row)
                if verbose:
                    what = (
                        f"ARE {100 * row['are']:.2f}%" if row["status"] == "ok" else row["reason"]
                    )
                    print(
                        f"[findings] {family} / {method} / {variant}: {what} "
                        f"({row['seconds']:.1f} s)",
                        flush=True,
                    )
    cols = [
        "finding",
        "family",
        "method",
        "variant",
        "status",
        "reason",
        "n_train",
        "n_train_sizes",
        "are",
        "coverage_90",
        "seconds",
        "warnings",
    ]
    per_family = pd.DataFrame(rows, columns=cols)
    summary = summarize_differences(
        per_family, "all", "are", n_boot=n_boot, level=level, random_seed=random_seed
    )
    return Findings(per_family=per_family, summary=summary)


def _findings_cell(
    method: str,
    train: pd.DataFrame,
    target: pd.DataFrame,
    family: str,
    fit_kwargs: Mapping[str, Any] | None,
    random_seed: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    out: dict[str, Any] = {"are": np.nan, "coverage_90": np.nan, "warnings": ""}
    need_sizes = 2 if method in LAW_METHODS else 1
    if len(target) == 0:
        return out | {"status": "skipped", "reason": "empty F_target", "seconds": 0.0}
    if len(train) == 0 or train["params"].nunique() < need_sizes:
        reason = f"F_train has {train['params'].nunique() if len(train) else 0} sizes"
        return out | {"status": "skipped", "reason": reason, "seconds": 0.0}
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred, samples = fit_and_predict(
                method, train, target, family, fit_kwargs, random_seed=random_seed
            )
        scores = score_prediction(target, pred, SCORED_BAND.get(method, "observed"), samples)
        out |= {"are": scores["are"], "coverage_90": scores.get("coverage_90", np.nan)}
        out |= {"status": "ok", "reason": ""}
    except Exception as err:  # e.g. too few rows for a 5-parameter least-squares fit
        out |= {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
    out["warnings"] = summarize_warnings(caught)
    out["seconds"] = time.perf_counter() - t0
    return out
