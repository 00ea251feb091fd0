"""The end-to-end demo behind ``make demo`` / ``bayescale demo``.

It fits two hierarchical models to the bundled public data, predicts held-out models and
compares architectures, and writes one self-contained HTML report:

1. **Language models** (one fit): the OLMo-2 ladder 190M-1B (3B held out) together with the
   Hitchhiker's-Guide families that have loss curves (GPT-3, OPT, OLMo-1, RedPajama-INCITE and
   the 1- and 4-epoch Datablations families; each family's largest model held out). The held-out
   final losses are predicted with bands and scored (absolute relative error, coverage).
2. **Routed language models** (Clark et al. 2022; one fit with an architecture level): Dense,
   S-Base, Hash and RL-R families, compared at 1.3B parameters.

Left out for speed or because they cannot be pooled: Chinchilla IsoFLOP (final losses only),
Pile-T5 and Revisiting-LM (loss on an unknown scale), the Datablations families trained for
2, 3, 5, 7, 14 or 44 epochs, the FFN-widened Dense runs and the routing ablations (k > 1,
routing frequency), and nanogpt-replicates (one model size).

**Which checkpoints.** By default (``checkpoints="curves"``) whole curves are used after the
Hitchhiker's warm-up cut (checkpoints with fewer than 10B tokens are dropped, also for the OLMo
ladder, whose 190M runs at 0.5x-2x Chinchilla then drop out entirely), thinned to at most 16
log-spaced checkpoints per run (6 for the routing runs). :func:`bayescale.fit` then leaves out
the first fifth of every run, and keeps only the last tenth of runs whose learning-rate schedule
is unknown (the Datablations runs, and RedPajama's, which all end at one length): their mid-run
losses are not the final losses of shorter runs. ``checkpoints="late"`` keeps only the last 30%
of each run instead.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

import bayescale
from bayescale.compare import Comparison, compare
from bayescale.data.prepare import final_fraction
from bayescale.data.schedule import SCHEDULE_COLUMNS as _SCHEDULE_SPEC

__all__ = ["DemoResult", "run_demo"]

#: Hitchhiker families with loss curves in nats that the demo pools with the OLMo ladder.
HITCHHIKER_FAMILIES = (
    "gpt3",
    "opt",
    "olmo",
    "redpajama-incite",
    "datablations-c4-1ep",
    "datablations-c4-4ep",
    "datablations-oscar-1ep",
    "datablations-oscar-4ep",
)
#: Routing families kept (default top-1 routing, routing frequency 0.5).
ROUTING_EXPERTS = (8, 64, 512)
#: Columns the schedule-aware law reads (the schedule, its length, the steps' size, the LR).
SCHEDULE_COLUMNS = (*_SCHEDULE_SPEC, "run_tokens", "batch_size", "lr")
ROUTERS = ("s-base", "hash", "rl-r")
#: The comparison target of the routing demo: the largest size, at the end of training.
ROUTING_PARAMS = 1.3e9
#: Law parameters every routing family shares: same data, same token budget (see run_demo).
ROUTING_SHARED = ("log_E", "b", "log_beta")

Checkpoints = Literal["curves", "late"]
#: The Hitchhiker's Guide warm-up cut, applied to every dataset of the demo.
WARMUP_TOKENS = 1e10


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    out_dir, html
        The output folder and the HTML report.
    predictions
        Prediction table of the held-out targets (with ``are`` and ``inside_*`` columns).
    comparisons
        Name -> :class:`bayescale.compare.Comparison`.
    fits
        ``{"language": fit, "routing": fit}``.
    seconds
        Wall time of the demo.
    files
        Every file written.
    """

    out_dir: Path
    html: Path
    predictions: pd.DataFrame
    comparisons: dict[str, Comparison]
    fits: dict[str, bayescale.ScalingLawFit]
    seconds: float
    files: list[Path] = field(default_factory=list)


class _Clock:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.echo = echo

    def step(self, text: str) -> None:
        now = time.perf_counter()
        self.echo(f"[{now - self.t0:6.1f}s] {text}")
        self.last = now

    def done(self, text: str) -> None:
        now = time.perf_counter()
        self.echo(f"[{now - self.t0:6.1f}s]   ... {text} ({now - self.last:.1f}s)")
        self.last = now

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def _plain_numeric(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer columns as float (they do not survive NetCDF export)."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.Int64Dtype):
            out[col] = out[col].astype(float)
    return out


def _select_checkpoints(runs: pd.DataFrame, checkpoints: Checkpoints, per_run: int) -> pd.DataFrame:
    if checkpoints == "curves":
        sub = bayescale.drop_warmup(runs, min_tokens=WARMUP_TOKENS)
    elif checkpoints == "late":
        sub = bayescale.drop_warmup(final_fraction(runs, q=0.3), min_tokens=WARMUP_TOKENS)
    else:
        raise ValueError(f"checkpoints must be 'curves' or 'late'; got {checkpoints!r}")
    return bayescale.thin_log_spaced(sub, max_points=per_run)


def language_data(
    checkpoints: Checkpoints = "curves", per_run: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training checkpoints and held-out largest models of the language-model demo fit.

    Returns
    -------
    train, held_out
        ``train``: the selected, thinned checkpoints of every family's non-largest runs;
        ``held_out``: all checkpoints of each family's largest runs (OLMo ladder: 3B).
    """
    per_run = per_run or (8 if checkpoints == "late" else 16)
    olmo = _plain_numeric(bayescale.load_dataset("olmo-ladder"))
    hh = _plain_numeric(bayescale.load_dataset("hitchhiker"))
    hh = hh[hh["family"].isin(HITCHHIKER_FAMILIES)]
    frames_train, frames_held = [], []
    for runs in (olmo, hh):
        largest = runs.groupby("family")["params"].transform("max")
        is_max = (runs["params"] == largest).to_numpy()
        frames_held.append(runs.loc[is_max])
        frames_train.append(_select_checkpoints(runs.loc[~is_max], checkpoints, per_run))
    common = ["family", "run", "params", "tokens", "loss", "seed", "config", "arch", "source",
              *SCHEDULE_COLUMNS]
    train = pd.concat([f[[c for c in common if c in f.columns]] for f in frames_train])
    held = pd.concat([f[[c for c in common if c in f.columns]] for f in frames_held])
    return train.reset_index(drop=True), held.reset_index(drop=True)


def routing_data(checkpoints: Checkpoints = "curves", per_run: int | None = None) -> pd.DataFrame:
    """Checkpoints of the routing demo: dense plus S-Base/Hash/RL-R at :data:`ROUTING_EXPERTS`."""
    per_run = per_run or 6
    dm = _plain_numeric(bayescale.load_dataset("deepmind-routing"))
    keep = ["dense"] + [f"{r}-e{e}" for r in ROUTERS for e in ROUTING_EXPERTS]
    dm = dm[dm["family"].isin(keep)]
    sub = _select_checkpoints(dm, checkpoints, per_run)
    cols = ["family", "run", "params", "tokens", "loss", "seed", "config", "arch", "num_experts",
            *SCHEDULE_COLUMNS]
    return sub[[c for c in cols if c in sub.columns]].reset_index(drop=True)


def held_out_targets(held: pd.DataFrame) -> pd.DataFrame:
    """The final checkpoint of every held-out run, as a target table for prediction."""
    final = held.sort_values(["run", "tokens"]).groupby("run", sort=False).tail(1)
    out = final[["family", "run", "params", "tokens", "loss"]].rename(columns={"run": "target"})
    return out.sort_values(["family", "params", "tokens"]).reset_index(drop=True)


def run_demo(
    out_dir: str | Path = "reports/demo",
    quick: bool = False,
    *,
    checkpoints: Checkpoints = "curves",
    draws: int | None = None,
    tune: int | None = None,
    chains: int = 2,
    random_seed: int = 0,
    progressbar: bool = True,
    echo: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo and write ``<out_dir>/index.html``, the PNGs and the CSV tables.

    Parameters
    ----------
    out_dir
        Output folder (created).
    quick
        Fewer draws and checkpoints per run (a smoke run; about 2/3 of the time).
    checkpoints
        ``"curves"`` (default: whole curves after the 10B-token warm-up cut, thinned) or
        ``"late"`` (the last 30% of each run).
    draws, tune, chains
        Sampler settings (default 400/400/2, quick 200/300/2), raised by the full demo to
        4 chains of 1000 draws (routing: 1500) after 1000 tuning steps, and
        with the routing fit tuning 300 steps longer in quick mode.
    random_seed
        Seed of both fits.
    progressbar
        Show the sampler's progress bars.
    echo
        Where progress lines go (default ``print``).

    Returns
    -------
    DemoResult
    """
    echo = echo or (lambda s: print(s, flush=True))
    clock = _Clock(echo)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    draws = draws or (200 if quick else 400)
    tune = tune or (300 if quick else 400)
    per_run = None if not quick else (5 if checkpoints == "late" else 8)
    sampler_kw = dict(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                      progressbar=progressbar)
    sampling_notes: list[str] = []

    def fit_quietly(runs: pd.DataFrame, name: str, **kw) -> bayescale.ScalingLawFit:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", bayescale.SamplingWarning)
            warnings.simplefilter("always", bayescale.ScheduleWarning)
            result = bayescale.fit(runs, **{**sampler_kw, **kw})
        for w in caught:
            if issubclass(w.category, bayescale.SamplingWarning):
                sampling_notes.append(f"{name} fit: {w.message}")
                echo(f"           warning: {w.message}")
            elif issubclass(w.category, bayescale.ScheduleWarning):
                # reported in the report's caveats: which runs are fitted from their end only
                sampling_notes.append(f"{name} fit: {w.message}")
                echo(f"           note: {w.message}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return result

    # ------------------------------------------------------------------ 1. language models
    clock.step("1/6 loading OLMo ladder + Hitchhiker families")
    train, held = language_data(checkpoints, per_run)
    clock.done(
        f"{train['family'].nunique()} families, {train['run'].nunique()} runs, "
        f"{len(train)} checkpoints for fitting; {held['run'].nunique()} held-out runs"
    )
    # Families seen at one or two sizes (RedPajama, OLMo-1, datablations) leave parameters to
    # the family spread: a funnel that mixes far better in non-centred coordinates, with small
    # steps (0.99: no divergence over three sampler seeds; 0.995 sent 5% of the draws to the
    # maximum tree depth; benchmarks/results/LANGUAGE_GEOMETRY.md) and four chains of 1500
    # draws (with 1000, R-hat of the family spread came out at 1.005-1.016 depending on the
    # machine's compiled code, i.e. at the warning's threshold).
    lang_kw = {"family_parameterization": "noncentered", "target_accept": 0.99}
    if not quick:
        lang_kw.update(chains=max(chains, 4), draws=max(draws, 1500), tune=max(tune, 1000))
    lang_draws, lang_chains = lang_kw.get("draws", draws), lang_kw.get("chains", chains)
    clock.step(f"2/6 fitting the language-model hierarchy ({lang_draws} draws x "
               f"{lang_chains} chains)")
    lang = fit_quietly(train, "language", **lang_kw)
    d = lang.diagnostics
    clock.done(f"divergences {d.divergences}, max R-hat {d.max_rhat:.3f}, "
               f"min bulk ESS {d.min_ess_bulk:.0f}")

    clock.step("3/6 predicting the held-out largest models")
    from bayescale.report import prediction_table

    targets = held_out_targets(held)
    preds = prediction_table(lang, targets, levels=(0.5, 0.9))
    for _, row in preds.iterrows():
        echo(
            f"           {row['target']:<28s} N={row['params']:.3g} D={row['tokens']:.3g} "
            f"true {row['loss']:.3f} pred {row['median']:.3f} "
            f"[{row['observed_lower_90']:.3f}, {row['observed_upper_90']:.3f}] "
            f"ARE {100 * row['are']:.2f}% {'in' if row['inside_observed_90'] else 'OUT'}"
        )
    clock.done(
        f"mean ARE {100 * preds['are'].mean():.2f}%, 90% observed-band coverage "
        f"{preds['inside_observed_90'].sum()}/{len(preds)}"
    )

    # ------------------------------------------------------------------ 2. routing
    clock.step("4/6 fitting the routing models with an architecture level")
    routing_runs = routing_data(checkpoints, per_run)
    echo(f"           {routing_runs['family'].nunique()} families in "
         f"{routing_runs['arch'].nunique()} archs, {routing_runs['run'].nunique()} runs, "
         f"{len(routing_runs)} checkpoints")
    # The routing runs' schedule is not published and every run ends at the same ~130B tokens,
    # so only their mid-run checkpoints say how loss falls with D: fit them all (as though the
    # LR were constant) rather than the last tenth. The comparisons are made at that common
    # end, where every family is at the same point of the same schedule. Every family trains
    # on the same data for the same tokens, so they share the irreducible loss E and the data
    # term B/D^beta (per family, one budget leaves them to the family spread: funnels and
    # NUTS trees at their maximum depth); the routers and expert counts differ in A/N^alpha.
    # The arch level (few archs, one dense family) still needs small steps. One configuration
    # has replicates (three seeds of dense 130M), which would turn config effects on: their
    # seed sd would rest on two degrees of freedom, and the fit then left a divergence and a
    # bulk ESS below 400. The comparisons are between family curves, which config effects
    # do not change, so the routing fit keeps one offset per run.
    routing_kw: dict = {"tune": tune + 300, "target_accept": 0.95, "config_effects": False}
    if not quick:
        routing_kw.update(chains=max(chains, 4), draws=max(draws, 1500), tune=max(tune, 1000),
                          target_accept=0.99)
    routing = fit_quietly(
        routing_runs, "routing", hierarchy=("arch", "family"), **routing_kw,
        unscheduled_from=None, fit_from=None, family_parameterization="noncentered",
        shared=ROUTING_SHARED,
    )
    d = routing.diagnostics
    clock.done(f"divergences {d.divergences}, max R-hat {d.max_rhat:.3f}, "
               f"min bulk ESS {d.min_ess_bulk:.0f}")

    clock.step("5/6 comparisons")
    d_end = float(routing_runs["tokens"].max())
    comparisons: dict[str, Comparison] = {}
    for arch in ("S-Base", "Hash", "RL-R"):
        comparisons[f"{arch} vs Dense (typical family, N=1.3B)"] = compare(
            routing, arch, "Dense", params=ROUTING_PARAMS, tokens=d_end, kind="arch",
            arch_curve="centre",
        )
    comparisons["S-Base vs Dense (new families, N=1.3B)"] = compare(
        routing, "S-Base", "Dense", params=ROUTING_PARAMS, tokens=d_end, kind="arch"
    )
    for experts in (8, 512):
        comparisons[f"s-base-e{experts} vs dense (N=1.3B)"] = compare(
            routing, f"s-base-e{experts}", "dense", params=ROUTING_PARAMS, tokens=d_end
        )
    big = held[held["family"] == "datablations-c4-4ep"]
    if len(big):
        n_big, d_big = float(big["params"].max()), float(big["tokens"].max())
        comparisons["datablations c4: 4 epochs vs 1 epoch (N=8.7B)"] = compare(
            lang, "datablations-c4-4ep", "datablations-c4-1ep", params=n_big, tokens=d_big
        )
        comparisons["datablations c4: 4 epochs vs 1 epoch (compute-optimal)"] = compare(
            lang, "datablations-c4-4ep", "datablations-c4-1ep", compute=6 * n_big * d_big
        )
    for name, comp in comparisons.items():
        lo, hi = comp.interval(comp.rel_diff, 0.9)
        echo(
            f"           {name:<45s} rel diff {100 * np.median(comp.rel_diff):+6.2f}% "
            f"[{100 * lo:+.2f}, {100 * hi:+.2f}]  P(a better) {comp.p_a_better:.3f}  "
            f"P(|d|>1%) {comp.p_outside_rope:.3f}"
        )
    clock.done(f"{len(comparisons)} comparisons")

    # ------------------------------------------------------------------ 3. report
    clock.step("6/6 writing the report")
    files = _write_report(
        out, lang, routing, held, preds, comparisons, checkpoints, sampling_notes, clock
    )
    clock.done(f"{len(files)} files")
    seconds = clock.elapsed
    echo(f"Report: {(out / 'index.html').resolve()}  (demo took {seconds:.0f}s)")
    return DemoResult(
        out_dir=out,
        html=out / "index.html",
        predictions=preds,
        comparisons=comparisons,
        fits={"language": lang, "routing": routing},
        seconds=seconds,
        files=files,
    )


def _write_report(
    out: Path,
    lang: bayescale.ScalingLawFit,
    routing: bayescale.ScalingLawFit,
    held: pd.DataFrame,
    preds: pd.DataFrame,
    comparisons: dict[str, Comparison],
    checkpoints: Checkpoints,
    sampling_notes: list[str],
    clock: _Clock,
) -> list[Path]:
    from bayescale import report

    files: list[Path] = []
    ci = pd.concat(
        [
            report.credible_intervals(lang).assign(fit="language"),
            report.credible_intervals(routing).assign(fit="routing"),
        ],
        ignore_index=True,
    )
    ci = ci[["fit", *[c for c in ci.columns if c != "fit"]]]
    for name, table in (
        ("credible_intervals.csv", ci),
        ("predictions.csv", preds),
        (
            "comparisons.csv",
            pd.concat(
                [c.summary().assign(comparison=n) for n, c in comparisons.items()],
                ignore_index=True,
            ),
        ),
    ):
        table.to_csv(out / name, index=False)
        files.append(out / name)

    # extra figures: prediction fans of the held-out flagships
    figures = {}
    fans = (
        ("olmo-ladder", "3B-1xC"),
        ("olmo-ladder", "3B-10xC"),
        ("gpt3", None),
        ("opt", None),
    )
    for family, run in fans:
        sub = held[held["family"] == family]
        if run is not None:
            sub = sub[sub["run"] == run]
        if not len(sub):
            continue
        run_name = run or str(sub.loc[sub["params"].idxmax(), "run"])
        sub = sub[sub["run"] == run_name]
        n, d = float(sub["params"].iloc[0]), float(sub["tokens"].max())
        truth = sub[sub["tokens"] >= max(d / 30, WARMUP_TOKENS)]
        figures[f"prediction fan: {family} {run_name} (held out)"] = report.plot_prediction_fan(
            lang, n, d, family=family, truth=truth
        )

    coverage = preds["inside_observed_90"].mean()
    notes = [
        "Language fit: OLMo-2 ladder 190M-1B (3B held out) pooled with the Hitchhiker's Guide "
        f"families {', '.join(HITCHHIKER_FAMILIES)}; each family's largest model is held out. "
        "Left out: chinchilla-isoflop (final losses only), t5-pile and revisiting-lm (loss on an "
        "unknown scale), the 2/3/5/7/14/44-epoch Datablations families (for speed; >4 epochs "
        "also bend the law), and nanogpt-replicates (one model size).",
        "Routing fit (Clark et al. 2022): dense and S-Base/Hash/RL-R with "
        f"{', '.join(map(str, ROUTING_EXPERTS))} experts (top-1, routing frequency 0.5), one "
        "family per configuration, with an architecture level; FFN-widened dense runs and "
        "routing ablations left out. All families share E and B/D^beta (same data, same "
        "number of tokens); routers and expert counts differ in A/N^alpha.",
        (
            "Checkpoints: whole curves after the Hitchhiker's warm-up cut (fewer than 10B "
            "tokens dropped, also for the OLMo ladder, so its 190M runs at 0.5x-2x budgets drop "
            "out), thinned log-spaced; the fit leaves out the first fifth of every run and, for "
            "runs without a known learning-rate schedule, all but the last tenth. Runs with a "
            "schedule are fitted with the schedule-aware law, so their mid-run checkpoints "
            "count."
            if checkpoints == "curves"
            else "Checkpoints: the last 30% of every run (after the 10B-token warm-up cut), "
            "thinned."
        ),
        "Noise scales (sigma_seed, sigma_config, sigma_obs, AR(1) rho) are shared by all "
        "families of a fit: the digitized GPT-3/RedPajama curves widen the bands of the clean "
        "OLMo ladder too. The language fit separates configuration offsets from seed offsets "
        "(the OLMo ladder has reruns and seed variants); the routing fit keeps one offset per "
        "run. "
        "RedPajama-INCITE reports training loss; the routing runs all have the same length, "
        "so their beta describes the learning-rate schedule along a run, not data scaling.",
        f"Held-out predictions: mean absolute relative error {100 * preds['are'].mean():.2f}%; "
        f"{100 * coverage:.0f}% of the held-out final losses inside the 90% band for a new "
        "observation (observed).",
        *sampling_notes,
    ]
    html_path = report.html(
        {"language": lang, "routing": routing},
        out / "index.html",
        comparisons=comparisons,
        predictions={"held-out largest models (final checkpoint)": preds},
        title="bayescale demo: hierarchical scaling laws on public loss curves",
        notes=notes,
        held_out={"language": bayescale.drop_warmup(held, min_tokens=WARMUP_TOKENS)},
        figures=figures,
        png_dir=out,
        curve_families={
            "routing": ["dense", *[f"{r}-e64" for r in ROUTERS], "s-base-e512", "s-base-e8"],
        },
    )
    files.append(html_path)
    files += sorted(out.glob("*.png"))
    return files
