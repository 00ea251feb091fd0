"""Matplotlib figures of a fit and of comparisons (work with the ``Agg`` backend).

Every function returns a :class:`matplotlib.figure.Figure` (the caller saves and closes it).

* :func:`plot_loss_curves`: data and the three nested predictive bands per family;
* :func:`plot_prediction_fan`: a fan of intervals along tokens for one target size;
* :func:`plot_forest`: forest plot of the family parameters (ArviZ);
* :func:`plot_comparison`: posterior of the relative difference with the ROPE shaded, and the
  difference along the compute-optimal frontier;
* :func:`plot_sigma_seed`: the seed-to-seed sd against model size, with replicate spreads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayescale.data.prepare import DEFAULT_FIT_FROM, DEFAULT_UNSCHEDULED_FROM, fit_window
from bayescale.data.schedule import SCHEDULE_COLUMNS
from bayescale.data.validate import validate

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bayescale.compare import Comparison
    from bayescale.fit import ScalingLawFit

__all__ = [
    "plot_comparison",
    "plot_forest",
    "plot_loss_curves",
    "plot_prediction_fan",
    "plot_sigma_seed",
]

#: Band name -> (label, opacity) from the widest to the narrowest.
_BANDS = (
    ("observed", "+ checkpoint noise", 0.12),
    ("new_seed", "+ seed variability", 0.22),
    ("mean", "curve (parameters)", 0.4),
)


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _log_x(ax) -> None:
    """Log x axis without minor tick labels (they overlap on short ranges)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _fmt_size(n: float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def _curves(
    fit: ScalingLawFit, pts: pd.DataFrame, n_tokens: int
) -> list[tuple[np.ndarray, dict | None]]:
    """The curves drawn for one model size: ``(tokens, schedule)`` pairs.

    A schedule-aware fit draws every distinct schedule among the size's runs along its own
    tokens (mid-run checkpoints follow their run's schedule); otherwise one curve of final
    losses ``L(N, D)`` over the size's token range.
    """
    if fit.schedule_aware and "schedule" in pts.columns and pts["schedule"].notna().any():
        out = []
        specs = [c for c in (*SCHEDULE_COLUMNS, "run_tokens", "batch_size") if c in pts.columns]
        scheduled = pts[pts["schedule"].notna()]
        for _, rows in scheduled.groupby(specs, sort=False, dropna=False):
            spec = {k: v for k, v in rows.iloc[0][specs].items() if pd.notna(v)}
            out.append((np.geomspace(rows["tokens"].min(), rows["tokens"].max(), n_tokens), spec))
        return out
    return [(np.geomspace(pts["tokens"].min(), pts["tokens"].max(), n_tokens), None)]


def _in_fit_window(fit: ScalingLawFit, rows: pd.DataFrame) -> np.ndarray:
    """Which ``rows`` the fit's window would have fitted (the others are early checkpoints).

    Early checkpoints of a decaying schedule lie above the law of final losses; without the
    run's schedule the fit cannot predict them, so plots mark them instead of comparing.
    """
    window = fit_window(
        validate(rows),
        fit.meta.get("fit_from", DEFAULT_FIT_FROM),
        fit.meta.get("unscheduled_from", DEFAULT_UNSCHEDULED_FROM),
    ).runs
    kept = set(zip(window["run"].astype(str), window["tokens"].astype(float), strict=True))
    return np.array([
        (str(r), float(t)) in kept
        for r, t in zip(rows["run"], rows["tokens"], strict=True)
    ], dtype=bool)


def _pick(values: np.ndarray, k: int) -> np.ndarray:
    values = np.unique(values)
    if values.size <= k:
        return values
    idx = np.unique(np.round(np.linspace(0, values.size - 1, k)).astype(int))
    return values[idx]


def plot_loss_curves(
    fit: ScalingLawFit,
    families: Sequence[str] | None = None,
    *,
    held_out: pd.DataFrame | None = None,
    level: float = 0.9,
    ncols: int = 3,
    max_sizes: int = 6,
    n_tokens: int = 60,
    max_points: int = 400,
) -> Figure:
    """Loss curves of each family: data points and the nested predictive bands.

    For each model size of a family (at most ``max_sizes``) the median curve along tokens is
    drawn with three nested ``level`` bands: the mean curve (parameter uncertainty), + seed
    variability (a new run) and + checkpoint noise (a new observation). A schedule-aware fit
    draws one curve per learning-rate schedule among the size's runs, each under its schedule
    (a run's checkpoints before its LR annealed lie above the final losses of shorter runs).

    Parameters
    ----------
    fit
        A fitted :class:`bayescale.ScalingLawFit`.
    families
        Families to draw (default: all of the fit).
    held_out
        Optional run table of held-out checkpoints (e.g. the largest models): drawn as open
        markers with their own predicted curves. Checkpoints the fit's window would have left
        out (each run's first fifth; all but the end of a run without a learning-rate
        schedule, which lies above the law of final losses) are drawn in grey.
    level
        Interval probability of the bands.
    ncols
        Panels per row.
    max_sizes
        Largest number of model sizes drawn per family (evenly spread in size).
    n_tokens
        Points per predicted curve.
    max_points
        Largest number of data points drawn per family (thinned evenly).
    """
    plt = _pyplot()
    families = list(fit.families if families is None else families)
    if not families:
        raise ValueError("no families to plot")
    ncols = max(1, min(ncols, len(families)))
    nrows = int(np.ceil(len(families) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False, constrained_layout=True
    )
    cmap = plt.get_cmap("viridis")
    data = fit.data
    for ax, fam in zip(axes.ravel(), families, strict=False):
        sub = data[data["family"] == fam]
        held = (
            held_out[held_out["family"] == fam]
            if held_out is not None and "family" in held_out.columns
            else None
        )
        sizes = sub["params"].to_numpy(float)
        held_sizes = held["params"].to_numpy(float) if held is not None else np.array([])
        all_sizes = np.unique(np.r_[sizes, held_sizes])
        if all_sizes.size == 0:
            ax.set_visible(False)
            continue
        drawn = np.unique(np.r_[_pick(np.unique(sizes), max_sizes), np.unique(held_sizes)])
        lo_n, hi_n = np.log(all_sizes.min()), np.log(all_sizes.max())

        def color(n, lo_n=lo_n, hi_n=hi_n):
            return cmap(0.1 + 0.8 * (np.log(n) - lo_n) / max(hi_n - lo_n, 1e-9))

        for n in drawn:
            pts = pd.concat([sub[sub["params"] == n], held[held["params"] == n]]) if (
                held is not None
            ) else sub[sub["params"] == n]
            c = color(n)
            for i, (tok, schedule) in enumerate(_curves(fit, pts, n_tokens)):
                pred = fit.predict(n, tok, family=fam, levels=(level,), schedule=schedule)
                for band, _, alpha in _BANDS:
                    if band in pred:
                        ax.fill_between(
                            tok,
                            pred[band].sel(level=level, bound="lower").values,
                            pred[band].sel(level=level, bound="upper").values,
                            color=c,
                            alpha=alpha,
                            lw=0,
                        )
                ax.plot(tok, pred["median"].values, color=c, lw=1.2,
                        label=_fmt_size(n) if i == 0 else None)
        if len(sub) > max_points:
            sub = sub.iloc[np.linspace(0, len(sub) - 1, max_points).astype(int)]
        ax.scatter(
            sub["tokens"], sub["loss"], s=6, c=[color(n) for n in sub["params"]], zorder=3, lw=0
        )
        if held is not None and len(held):
            hp = held.iloc[np.linspace(0, len(held) - 1, min(len(held), max_points)).astype(int)]
            fitted = _in_fit_window(fit, hp)
            for keep, colour, label in ((fitted, "crimson", "held out"),
                                        (~fitted, "0.6", "held out, early (not predicted)")):
                if keep.any():
                    ax.scatter(
                        hp.loc[keep, "tokens"],
                        hp.loc[keep, "loss"],
                        s=14,
                        facecolors="none",
                        edgecolors=colour,
                        lw=0.8,
                        zorder=4,
                        label=label,
                    )
        _log_x(ax)
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("tokens D")
        ax.set_ylabel("loss")
        ax.legend(fontsize=6, ncol=2, loc="upper right", title="N", title_fontsize=6)
    for ax in axes.ravel()[len(families):]:
        ax.set_visible(False)
    fig.suptitle(
        f"Loss curves with {100 * level:g}% bands: curve / + seed / + checkpoint noise",
        fontsize=11,
    )
    return fig


def plot_prediction_fan(
    fit: ScalingLawFit,
    params: float,
    tokens: float | Sequence[float] | np.ndarray,
    family: str | None = None,
    *,
    arch: str | None = None,
    band: str = "new_seed",
    levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    truth: pd.DataFrame | None = None,
    n_tokens: int = 80,
    ax: Axes | None = None,
) -> Figure:
    """A fan of nested intervals of the predicted loss along tokens for one model size.

    Parameters
    ----------
    fit
        A fitted :class:`bayescale.ScalingLawFit`.
    params
        Target parameter count.
    tokens
        A target token count (the fan spans ``[target / 30, 1.2 x target]`` and the target is
        marked) or an explicit token grid.
    family, arch
        As in :meth:`bayescale.ScalingLawFit.predict`.
    band
        Which band to fan out: ``"mean"``, ``"new_seed"`` or ``"observed"``.
    levels
        Interval probabilities of the fan, drawn from the widest to the narrowest.
    truth
        Observed checkpoints to overlay (columns ``tokens`` and ``loss``).
    """
    plt = _pyplot()
    tok_arr = np.atleast_1d(np.asarray(tokens, dtype=float))
    target = float(tok_arr[0]) if tok_arr.size == 1 else None
    grid = np.geomspace(target / 30, 1.2 * target, n_tokens) if target is not None else tok_arr
    pred = fit.predict(params, grid, family=family, arch=arch, levels=tuple(sorted(levels)))
    if band not in pred:
        raise ValueError(f"band {band!r} is not in this prediction; have {list(pred.data_vars)}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    else:
        fig = ax.figure
    cmap = plt.get_cmap("Blues")
    for i, q in enumerate(sorted(levels, reverse=True)):
        ax.fill_between(
            grid,
            pred[band].sel(level=q, bound="lower").values,
            pred[band].sel(level=q, bound="upper").values,
            color=cmap(0.3 + 0.5 * i / max(len(levels) - 1, 1)),
            lw=0,
            label=f"{100 * q:g}%",
        )
    ax.plot(grid, pred["median"].values, color="navy", lw=1.4, label="median")
    if truth is not None and len(truth):
        ax.scatter(truth["tokens"], truth["loss"], s=10, color="crimson", zorder=4, label="truth")
    if target is not None:
        ax.axvline(target, color="grey", ls=":", lw=1)
    _log_x(ax)
    ax.set_xlabel("tokens D")
    ax.set_ylabel("loss")
    who = family if family is not None else (f"new {arch} family" if arch else "new family")
    ax.set_title(f"{who}, N = {_fmt_size(float(params))} ({band} band)", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def plot_forest(
    fit: ScalingLawFit,
    var_names: Sequence[str] = ("E", "alpha", "beta"),
    families: Sequence[str] | None = None,
    hdi_prob: float = 0.9,
) -> Figure:
    """Forest plot of the family parameters (one panel per parameter, ArviZ).

    Parameters
    ----------
    fit
        A fitted :class:`bayescale.ScalingLawFit`.
    var_names
        Posterior variables with a ``family`` dim (``E``, ``A``, ``alpha``, ``B``, ``beta``).
    families
        Subset of families (default: all).
    hdi_prob
        Probability of the highest-density intervals drawn.
    """
    import arviz as az

    plt = _pyplot()
    fams = list(fit.families if families is None else families)
    n = len(fams)
    fig, axes = plt.subplots(
        1,
        len(var_names),
        figsize=(3.2 * len(var_names) + 1.5, 0.3 * n + 1.4),
        squeeze=False,
    )
    for i, (ax, name) in enumerate(zip(axes[0], var_names, strict=False)):
        az.plot_forest(
            fit.idata,
            var_names=[name],
            coords={"family": fams},
            combined=True,
            hdi_prob=hdi_prob,
            ax=ax,
            textsize=8,
        )
        ax.set_title(name, fontsize=10)
        if i == 0:
            ax.set_yticklabels(list(reversed(fams)) if len(ax.get_yticks()) == n else
                               [t.get_text() for t in ax.get_yticklabels()])
        else:
            ax.set_yticklabels([])
    fig.suptitle(f"Family parameters ({100 * hdi_prob:g}% HDI)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_comparison(comparison: Comparison, level: float = 0.9) -> Figure:
    """Posterior of ``L_a / L_b - 1`` at the target, and along the compute-optimal frontier.

    The ROPE (``+-rope``) is shaded in both panels; the right panel shows the median and the
    ``level`` band of the relative difference on the frontier, with the median crossover.
    """
    plt = _pyplot()
    c = comparison
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    rel = 100 * c.rel_diff
    rope = 100 * c.rope
    ax1.axvspan(-rope, rope, color="gold", alpha=0.35, lw=0, label=f"ROPE \u00b1{rope:g}%")
    view_lo, view_hi = np.quantile(rel, [0.005, 0.995])
    view_lo, view_hi = min(view_lo, -1.5 * rope), max(view_hi, 1.5 * rope)
    ax1.hist(rel[(rel >= view_lo) & (rel <= view_hi)], bins=50, color="steelblue", alpha=0.85,
             density=True)
    ax1.set_xlim(view_lo, view_hi)
    ax1.axvline(0, color="black", lw=0.8)
    lo, hi = c.interval(rel, level)
    ax1.axvline(lo, color="navy", ls="--", lw=0.8)
    ax1.axvline(hi, color="navy", ls="--", lw=0.8, label=f"{100 * level:g}% interval")
    ax1.set_xlabel(f"100 x (L[{c.a}] / L[{c.b}] - 1)  (%)")
    ax1.set_ylabel("posterior density")
    ax1.set_title(
        f"{c.target_label()}\nP({c.a} better) = {c.p_a_better:.3f}, "
        f"P(|diff| > ROPE) = {c.p_outside_rope:.3f}",
        fontsize=9,
    )
    ax1.legend(fontsize=7)

    front = 100 * c.frontier_rel_diff
    grid = c.compute_grid
    ql, qm, qh = np.quantile(front, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    ax2.axhspan(-rope, rope, color="gold", alpha=0.35, lw=0)
    ax2.fill_between(grid, ql, qh, color="steelblue", alpha=0.3, lw=0)
    ax2.plot(grid, qm, color="navy", lw=1.3)
    ax2.axhline(0, color="black", lw=0.8)
    if "compute" in c.target:
        ax2.axvline(c.target["compute"], color="grey", ls=":", lw=1)
    cross = c.crossover[np.isfinite(c.crossover)]
    if cross.size >= 0.5 * c.crossover.size:  # a median over a minority of draws misleads
        share = cross.size / c.crossover.size
        ax2.axvline(np.median(cross), color="crimson", ls="--", lw=0.9,
                    label=f"median crossover ({share:.0%} of draws cross)")
        ax2.legend(fontsize=7)
    _log_x(ax2)
    ax2.set_xlabel("compute C = 6ND (FLOPs)")
    ax2.set_ylabel("relative difference on frontier (%)")
    ax2.set_title(f"compute-optimal frontier; P(no crossover) = {c.p_no_crossover:.2f}", fontsize=9)
    fig.suptitle(f"{c.a} vs {c.b}", fontsize=11)
    return fig


def replicate_spread(data: pd.DataFrame, rtol: float = 0.02) -> pd.DataFrame:
    """Empirical seed spread: sd of the final log-loss across replicate runs of one config.

    Replicates are runs sharing ``config`` (or ``family`` and ``params`` without a ``config``
    column) whose final checkpoints are at the same tokens (within ``rtol``).

    Returns
    -------
    pandas.DataFrame
        Columns ``config``, ``family``, ``params``, ``n_runs``, ``sd_log_loss``.
    """
    final = data.sort_values("tokens").groupby("run").tail(1)
    key = "config" if "config" in final.columns else None
    if key is None:
        final = final.assign(config=final["family"] + "@" + final["params"].astype(str))
    rows = []
    for cfg, g in final.groupby("config"):
        if len(g) < 2:
            continue
        t = g["tokens"].to_numpy(float)
        if t.max() > (1 + rtol) * t.min():
            continue
        rows.append(
            {
                "config": str(cfg),
                "family": str(g["family"].iloc[0]),
                "params": float(g["params"].iloc[0]),
                "n_runs": len(g),
                "sd_log_loss": float(np.std(np.log(g["loss"].to_numpy(float)), ddof=1)),
            }
        )
    return pd.DataFrame(rows, columns=["config", "family", "params", "n_runs", "sd_log_loss"])


def plot_sigma_seed(fit: ScalingLawFit, level: float = 0.9) -> Figure:
    """Seed-to-seed sd of the log-loss against model size.

    Draws the posterior of ``sigma_seed`` (size-dependent when the fit has ``seed_by_size``)
    with its ``level`` band, and the empirical sd of the final log-loss across replicate runs
    of the same config (marker area ~ number of runs).
    """
    plt = _pyplot()
    post = fit.idata.posterior
    sizes = fit.data["params"].to_numpy(float)
    n_grid = np.geomspace(sizes.min() / 1.5, sizes.max() * 1.5, 50)
    sigma = post["sigma_seed"].values.reshape(-1, 1)
    if "seed_size_slope" in post:
        slope = post["seed_size_slope"].values.reshape(-1, 1)
        draws = sigma * np.exp(slope * np.log(n_grid / fit.n0))
    else:
        draws = np.repeat(sigma, n_grid.size, axis=1)
    lo, med, hi = np.quantile(draws, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.fill_between(n_grid, lo, hi, color="steelblue", alpha=0.3, lw=0,
                    label=f"posterior sigma_seed ({100 * level:g}%)")
    ax.plot(n_grid, med, color="navy", lw=1.3)
    reps = replicate_spread(fit.data)
    if len(reps):
        for fam, g in reps.groupby("family"):
            ax.scatter(g["params"], g["sd_log_loss"], s=12 * g["n_runs"], alpha=0.8,
                       label=f"replicates: {fam}")
    _log_x(ax)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("sd of log-loss between seeds")
    ax.set_title("Seed-to-seed variability vs model size", fontsize=10)
    ax.legend(fontsize=7)
    return fig
