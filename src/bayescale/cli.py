"""Command-line interface: ``bayescale <command> ...``.

Errors are printed as one line (``bayescale: error: ...``) with exit status 2, and bayescale's
warnings as one line each (``bayescale: warning: ...``); other libraries' warnings are not shown.
``--debug`` shows the traceback and every warning in Python's usual format.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale.quiet import own_warnings_only


def _read_table(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if p.suffix in (".parquet", ".pq"):
        return pd.read_parquet(p)
    return pd.read_csv(p)


def _cmd_datasets(args: argparse.Namespace) -> int:
    from bayescale.data.datasets import list_datasets

    print(list_datasets().to_string(index=False))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from bayescale.data.validate import validate

    runs = validate(
        _read_table(args.table),
        allow_perplexity=args.allow_perplexity,
        allow_small_tokens=args.allow_small_tokens,
    )
    print(
        f"ok: {len(runs)} checkpoints, {runs['run'].nunique()} runs, "
        f"{runs['family'].nunique()} families"
    )
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import bayescale

    runs = _read_table(args.table)
    if args.family_col != "family":
        if args.family_col not in runs.columns:
            raise ValueError(f"--family-col {args.family_col!r} is not a column of {args.table}")
        runs = runs.drop(columns=["family"], errors="ignore").rename(
            columns={args.family_col: "family"}
        )
    if args.max_points:
        runs = bayescale.thin_log_spaced(bayescale.validate(runs), max_points=args.max_points)
    fit = bayescale.fit(
        runs,
        law=args.law,
        hierarchy=tuple(args.hierarchy.split(",")),
        **_sampler_kwargs(args),
        random_seed=args.seed,
        sampler=args.sampler,
    )
    fit.save(args.out)
    d = fit.diagnostics
    print(
        f"diagnostics: {d.divergences} divergences, max R-hat {d.max_rhat:.3f}, "
        f"min ESS bulk {d.min_ess_bulk:.0f}"
    )
    print(fit.summary().round(4).to_string())
    print(f"saved fit to {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import bayescale

    fit = bayescale.load(args.fit)
    pred = fit.predict(
        params=args.params, tokens=args.tokens, family=args.family, arch=args.arch, run=args.run
    )
    rows = []
    for i in range(pred.sizes["point"]):
        row = {
            "params": float(pred.params[i]),
            "tokens": float(pred.tokens[i]),
            "median": float(pred["median"][i]),
        }
        for band in ("mean", "new_seed", "observed"):
            if band not in pred:
                continue
            for level in pred.level.values:
                lo, hi = pred[band].sel(level=level).isel(point=i).values
                row[f"{band}_{int(level * 100)}_lower"] = float(lo)
                row[f"{band}_{int(level * 100)}_upper"] = float(hi)
        rows.append(row)
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(sys.stdout, index=False)
    else:
        print(table.T.to_string(header=False))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import bayescale
    from bayescale.compare import compare

    if args.compute is None and (args.params is None or args.tokens is None):
        raise ValueError("give --params and --tokens, or --compute")
    if args.compute is not None and (args.params is not None or args.tokens is not None):
        raise ValueError("give either --params and --tokens, or --compute, not both")
    fit = bayescale.load(args.fit)
    comp = compare(
        fit,
        args.a,
        args.b,
        params=args.params,
        tokens=args.tokens,
        compute=args.compute,
        rope=args.rope,
        kind=args.kind,
        band=args.band,
        arch_curve=args.arch_curve,
    )
    table = comp.summary()
    if args.csv:
        table.to_csv(sys.stdout, index=False)
        return 0
    lo, hi = comp.interval(comp.rel_diff, 0.9)
    print(f"{args.a} vs {args.b} {comp.target_label()}")
    print(
        f"P({args.a} better) = {comp.p_a_better:.3f}; relative difference "
        f"{100 * float(np.median(comp.rel_diff)):+.2f}% (90% interval "
        f"[{100 * lo:+.2f}%, {100 * hi:+.2f}%]); "
        f"P(|difference| > {100 * comp.rope:g}%) = {comp.p_outside_rope:.3f}"
    )
    for note in comp.notes:
        print(f"note: {note}")
    cols = [c for c in table.columns if c not in ("sd", "description")]
    print(table[cols].to_string(index=False))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import bayescale
    from bayescale.report.html import html

    fit = bayescale.load(args.fit)
    held_out = None
    if args.held_out:
        held_out = bayescale.validate(_read_table(args.held_out))
    out = html(fit, args.html, title=args.title, held_out=held_out, level=args.level)
    print(f"wrote {out}")
    return 0


def _methods(items: Sequence[str]) -> list[str]:
    """The ``--methods`` values (space- or comma-separated), each a known method."""
    from bayescale.evaluate import METHODS

    methods = [m for item in items for m in item.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    return methods


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import bayescale
    from bayescale.evaluate import evaluate

    methods = _methods(args.methods)
    if args.min_models < 2:
        raise ValueError(f"--min-models must be at least 2; got {args.min_models}")
    if args.max_points is not None and args.max_points < 2:
        raise ValueError(f"--max-points must be at least 2; got {args.max_points}")
    runs = bayescale.validate(_read_table(args.table))
    warmup = args.warmup_tokens if args.warmup_tokens > 0 else None
    results = evaluate(
        runs,
        methods=methods,
        min_models=args.min_models,
        fit_kwargs=_sampler_kwargs(args),
        random_seed=args.seed,
        n_boot=args.n_boot,
        warmup_tokens=warmup,
        max_points=args.max_points,
        verbose=args.verbose,
        client=args.scheduler,
    )
    if args.csv:
        results.to_csv(args.csv, index=False)
    n_ok = results.loc[results["status"] == "ok", "family"].nunique()
    if n_ok == 0:
        reasons = "; ".join(
            f"{r.family}: {r.reason}" for r in results.drop_duplicates("family").itertuples()
        )
        raise ValueError(f"no family could be evaluated ({reasons})")
    print(_protocol_table(results, methods).to_string(na_rep="-"))
    n_fam = results["family"].nunique()
    print(f"{n_ok} of {n_fam} families evaluated (ARE, coverage and width in %)")
    if args.csv:
        print(f"results -> {args.csv}")
    return 0


def _protocol_table(results: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Rows = families; ARE per method and 90% coverage / width of the banded methods (%)."""
    families = sorted(results["family"].unique())
    table = pd.DataFrame(index=pd.Index(families, name="family"))
    ok = results[results["status"] == "ok"]
    table["models"] = results.groupby("family")["n_models"].first()
    table["target N"] = results.groupby("family")["target_params"].first().map("{:.3g}".format)
    for m in methods:
        sub = ok[ok["method"] == m].set_index("family")
        table[f"ARE {m}"] = (100 * sub["are"]).round(2)
        if m in ("bayescale", "huber_bootstrap") and len(sub):
            table[f"cov90 {m}"] = (100 * sub["coverage_90"]).round(0)
            table[f"width90 {m}"] = (100 * sub["width_90"]).round(2)
    notes = (
        results[results["status"] != "ok"]
        .assign(note=lambda x: x["status"] + ": " + x["reason"].astype(str))
        .groupby("family")["note"]
        .agg(lambda s: "; ".join(dict.fromkeys(s)))
    )
    table["note"] = notes.reindex(table.index).fillna("")
    return table


def _cmd_design(args: argparse.Namespace) -> int:
    import bayescale
    from bayescale.planning import next_runs

    if (args.target is None) == (args.params is None or args.tokens is None):
        raise ValueError("give --params and --tokens, or --target (a table of points)")
    fit = bayescale.load(args.fit)
    target = (_read_table(args.target) if args.target is not None
              else list(zip(*np.broadcast_arrays(args.params, args.tokens), strict=True)))
    result = next_runs(
        fit, target, _read_table(args.candidates), args.budget, family=args.family,
        band=args.band, level=args.level, n_simulations=args.simulations,
        n_checkpoints=args.checkpoints, random_seed=args.seed,
    )
    if args.plot:
        import matplotlib.pyplot as plt

        ax = result.plot()
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        plt.close(ax.figure)
    if args.csv:
        result.table.to_csv(sys.stdout, index=False)
        return 0
    print(f"current {args.level:.0%} {args.band} band width at the target: "
          f"{result.current_width:.4g} ({result.n_simulations} simulations per candidate)")
    cols = ["candidate", "kind", "cost", "expected_width", "expected_reduction", "reduction_se",
            "reduction_per_flop", "pareto_k_max", "share_k_high", "reliable"]
    print(result.table[cols].to_string(index=False, float_format="{:.4g}".format))
    budget = "no budget" if args.budget is None else f"budget {args.budget:.3g}"
    print(f"\ngreedy plan ({budget}):")
    if len(result.plan):
        print(result.plan.to_string(index=False, float_format="{:.4g}".format))
    else:
        print("(no affordable candidate is expected to narrow the band)")
    for note in result.notes:
        print(f"note: {note}")
    if args.plot:
        print(f"plot -> {args.plot}")
    return 0


def _cmd_grid(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt

    import bayescale
    from bayescale.batch import fit_many, grid_contrast, grid_summary, grid_tasks, plot_grid

    methods = _methods(args.methods)
    runs = bayescale.validate(_read_table(args.table))
    tasks = grid_tasks(
        runs,
        methods=methods,
        fractions=args.fractions,
        families=args.families,
        min_models=args.min_models,
        max_points=args.max_points or None,
        fit_kwargs=_sampler_kwargs(args),
        random_seed=args.seed,
        warmup_tokens=args.warmup_tokens if args.warmup_tokens > 0 else None,
    )
    if not tasks:
        raise ValueError(
            f"no grid cell to fit: a family needs >= {args.min_models} sizes and, below its "
            "largest, two sizes with runs past the warm-up cut (--warmup-tokens)"
        )
    out = Path(args.out)
    n_fam = len({t.family for t in tasks})
    where = args.scheduler or "a local cluster"
    print(f"{len(tasks)} fits ({n_fam} families, methods {', '.join(methods)}) on {where}; "
          f"results -> {out / 'results'}", flush=True)
    results = fit_many(tasks, args.scheduler, out / "results", args.keep_posterior,
                       n_workers=args.workers)
    results.reset_index().to_csv(out / "grid.csv", index=False)
    print(grid_summary(results).to_string(float_format="{:.4g}".format))
    if {"bayescale", "curve_fit"} <= set(methods):
        contrast = grid_contrast(results, "bayescale", "curve_fit")
        if len(contrast):
            print("ARE bayescale - curve_fit (mean over families, 90% bootstrap interval):")
            print(contrast.to_string(index=False, float_format="{:.4g}".format))
    for method in methods:
        metrics = ["are"] + (["coverage_90", "width_90"] if method in ("bayescale",
                                                                       "huber_bootstrap") else [])
        for metric in metrics:
            plt.close(plot_grid(results, metric, method, out / f"grid_{metric}_{method}.png"))
    print(f"grid -> {out / 'grid.csv'}; heatmaps -> {out}/grid_*.png")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from bayescale.demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick)
    return 0


def _size(n: int) -> str:
    """Bytes as ``12.3 MB (12,345,678 bytes)``."""
    if n < 1000:
        return f"{n:,} bytes"
    value, units = n / 1000, ["kB", "MB", "GB", "TB"]
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]} ({n:,} bytes)"


def _cmd_cache(args: argparse.Namespace) -> int:
    from bayescale import cache

    root = cache.cache_root()
    if args.action == "clear":
        removed = cache.clear(root)
        if not removed:
            print(f"nothing to remove: no bayescale cache in {root}")
            return 0
        for folder, size in removed:
            print(f"removed {folder} ({_size(size)})")
        total = sum(size for _, size in removed)
        print(f"removed {len(removed)} folder(s), {_size(total)} in all")
        return 0

    import numba.core.config
    import pytensor

    current = cache.state()
    folders = cache.stack_folders(root)
    sizes = {folder: cache.folder_size(folder) for folder in folders}
    if os.environ.get(cache.ENV_VAR, "").strip():
        print(f"cache: {root} (from {cache.ENV_VAR})")
    else:
        print(f"cache: {root} (the default; set {cache.ENV_VAR} to move it)")
    print(f"size: {_size(sum(sizes.values()))} in {len(folders)} folder(s)")
    for folder in folders:
        mark = "  (this Python and these package versions)" if folder == current.folder else ""
        print(f"  {folder.name}  {_size(sizes[folder])}{mark}")
    if current.problem:
        print(f"not writable: {current.problem}; compiling into a temporary folder")
    pytensor_dir = pytensor.config.base_compiledir
    note = "" if current.pytensor_dir else "  (set by the user: not in bayescale's cache)"
    print(f"PyTensor compile directory: {pytensor_dir}{note}")
    note = "" if current.numba_dir else "  (set by the user: not in bayescale's cache)"
    print(f"numba cache directory: {numba.core.config.CACHE_DIR or '(numba default)'}{note}")
    return 0


def _add_sampler_options(
    p: argparse.ArgumentParser, draws: int = 1000, tune: int = 1000, chains: int = 4
) -> None:
    """``--draws``, ``--tune``, ``--chains``, ``--target-accept`` and ``--max-tree-depth`` of a
    command that samples (the last two are what bayescale's sampler warnings advise)."""
    p.add_argument("--draws", type=int, default=draws)
    p.add_argument("--tune", type=int, default=tune)
    p.add_argument("--chains", type=int, default=chains)
    p.add_argument("--target-accept", type=float, default=0.9, help="NUTS target acceptance")
    p.add_argument("--max-tree-depth", type=int, default=10, help="NUTS's largest tree depth")


def _sampler_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The fit keywords of :func:`_add_sampler_options`' arguments."""
    return {"draws": args.draws, "tune": args.tune, "chains": args.chains,
            "target_accept": args.target_accept, "max_tree_depth": args.max_tree_depth}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescale`` command."""
    parser = argparse.ArgumentParser(
        prog="bayescale", description="Hierarchical Bayesian scaling-law estimation."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # --debug is accepted after the subcommand too (SUPPRESS keeps the top-level value)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", parents=[common], help="list the bundled datasets")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("validate", parents=[common], help="check a run table (CSV or Parquet)")
    p.add_argument("table")
    p.add_argument("--allow-perplexity", action="store_true")
    p.add_argument("--allow-small-tokens", action="store_true")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "fit", parents=[common], help="fit the hierarchical model and save it to NetCDF"
    )
    p.add_argument("table")
    p.add_argument("--law", default="chinchilla")
    p.add_argument("--hierarchy", default="family", help="'family' or 'arch,family'")
    p.add_argument("--out", required=True)
    _add_sampler_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="nutpie", choices=["nutpie", "pymc", "numpyro"])
    p.add_argument("--family-col", default="family")
    p.add_argument("--max-points", type=int, default=0, help="thin to at most k checkpoints/run")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser(
        "predict", parents=[common], help="predict loss with intervals from a saved fit"
    )
    p.add_argument("fit")
    p.add_argument("--params", type=float, nargs="+", required=True)
    p.add_argument("--tokens", type=float, nargs="+", required=True)
    p.add_argument("--family", default=None, help="a family of the fit (default: a new one)")
    p.add_argument("--arch", default=None, help="a new family of this architecture")
    p.add_argument("--run", default=None, help="a run of the fit (its own seed offset)")
    p.add_argument("--csv", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "compare", parents=[common], help="compare two families or architectures of a saved fit"
    )
    p.add_argument("fit")
    p.add_argument("a", help="family or architecture (differences are a - b)")
    p.add_argument("b")
    p.add_argument("--params", type=float, help="target parameter count N")
    p.add_argument("--tokens", type=float, help="target tokens D")
    p.add_argument("--compute", type=float, help="target compute in FLOPs (instead of N, D)")
    p.add_argument("--rope", type=float, default=0.01, help="practical-equivalence half-width")
    p.add_argument("--kind", default="auto", choices=["auto", "family", "arch"])
    p.add_argument("--band", default="mean", choices=["mean", "new_seed"])
    p.add_argument("--arch-curve", default="new_family", choices=["new_family", "centre"])
    p.add_argument("--csv", action="store_true", help="print the summary table as CSV")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("report", parents=[common], help="write an HTML report of a saved fit")
    p.add_argument("fit")
    p.add_argument("--html", required=True, help="output HTML file")
    p.add_argument("--title", default="bayescale report")
    p.add_argument("--held-out", default=None, help="run table of held-out checkpoints to draw")
    p.add_argument("--level", type=float, default=0.9)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="the Hitchhiker's held-out protocol (predict each family's largest model)",
        description=(
            "Fit each method on the smaller models of every family (past the warm-up cut) and "
            "score its prediction of the last 30%% of the largest model's run(s): ARE per "
            "method and, for bayescale and huber_bootstrap, the coverage and width of the 90%% "
            "interval."
        ),
    )
    p.add_argument("table", help="run table (CSV or Parquet) with one or more families")
    p.add_argument(
        "--methods",
        nargs="+",
        default=["bayescale", "curve_fit", "best_loss", "most_trained"],
        help="methods (space- or comma-separated): bayescale, curve_fit, huber, "
        "huber_bootstrap, best_loss, most_trained",
    )
    p.add_argument("--min-models", type=int, default=3, help="skip families with fewer sizes")
    p.add_argument(
        "--warmup-tokens", type=float, default=1e10, help="drop earlier checkpoints (0: none)"
    )
    p.add_argument("--max-points", type=int, default=None, help="thin to k checkpoints/run")
    _add_sampler_options(p)
    p.add_argument("--n-boot", type=int, default=200, help="replicates of huber_bootstrap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", default=None, help="write the tidy family x method results here")
    p.add_argument("--verbose", action="store_true", help="one line per family and method")
    p.add_argument("--scheduler", default=None,
                   help="run the fits as one batch on Dask: a scheduler address (e.g. "
                   "tcp://host:8786) or 'local' for a local cluster (default: one after another)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "design", parents=[common],
        help="which run to train next: rank candidate runs by expected band reduction per FLOP",
    )
    p.add_argument("fit", help="a fit saved by 'bayescale fit'")
    p.add_argument("--candidates", required=True,
                   help="table (CSV or Parquet): family, params, tokens [, n_seeds, cost, ...]")
    p.add_argument("--params", type=float, nargs="+", help="target parameter count(s) N")
    p.add_argument("--tokens", type=float, nargs="+", help="target tokens D")
    p.add_argument("--target", default=None, help="table of target points instead")
    p.add_argument("--family", default=None, help="the target's family")
    p.add_argument("--budget", type=float, default=None, help="budget of the greedy plan")
    p.add_argument("--band", default="observed", choices=["observed", "new_seed", "mean"])
    p.add_argument("--level", type=float, default=0.9)
    p.add_argument("--simulations", type=int, default=200)
    p.add_argument("--checkpoints", type=int, default=8, help="simulated checkpoints per run")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--plot", default=None, help="write width against compute here (PNG)")
    p.add_argument("--csv", action="store_true", help="print the ranked table as CSV")
    p.set_defaults(func=_cmd_design)

    p = sub.add_parser(
        "grid",
        parents=[common],
        help="the Hitchhiker's grid (models x share of training x scale-up) on Dask",
        description=(
            "Fit every cell of the Hitchhiker's grid of every family with enough sizes "
            "(bayescale.fit_many): the number of models, the share of each training run and "
            "the scale-up to the largest model. Results are written as they complete to "
            "OUT/results (rerunning resumes), the table to OUT/grid.csv and heatmaps to "
            "OUT/grid_*.png."
        ),
    )
    p.add_argument("table", help="run table (CSV or Parquet) with one or more families")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address, e.g. tcp://host:8786 (default: a local cluster)")
    p.add_argument("--out", default="grid", help="output folder")
    p.add_argument("--workers", type=int, default=None,
                   help="workers of the local cluster (default: one per core)")
    p.add_argument("--methods", nargs="+", default=["bayescale", "curve_fit"])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.4, 0.6, 0.8, 1.0])
    p.add_argument("--families", nargs="+", default=None, help="families (default: all)")
    p.add_argument("--min-models", type=int, default=3, help="skip families with fewer sizes")
    p.add_argument(
        "--warmup-tokens", type=float, default=1e10, help="drop earlier checkpoints (0: none)"
    )
    p.add_argument("--max-points", type=int, default=20, help="checkpoints per run (0: all)")
    _add_sampler_options(p, draws=500, tune=500, chains=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-posterior", action="store_true", help="save every posterior (NetCDF)")
    p.set_defaults(func=_cmd_grid)

    p = sub.add_parser(
        "demo", parents=[common], help="fit bundled real data and write the HTML report"
    )
    p.add_argument("--out", default="reports/demo")
    p.add_argument("--quick", action="store_true", help="fewer draws (for smoke tests)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "cache",
        parents=[common],
        help="the compile cache: 'info' (where, how big) or 'clear' (remove it)",
        description=(
            "bayescale keeps what PyTensor and numba compile in a cache folder (the user's "
            "cache directory, or BAYESCALE_CACHE_DIR), one subfolder per version of Python "
            "and of the packages that compile. 'info' prints the folder and its size; 'clear' "
            "removes bayescale's subfolders (the next fit compiles from scratch)."
        ),
    )
    p.add_argument("action", choices=["info", "clear"])
    p.set_defaults(func=_cmd_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayescale`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.debug:
            return int(args.func(args) or 0)
        with own_warnings_only():
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("bayescale: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"bayescale: error: {_one_line(exc)}", file=sys.stderr)
        return 2


#: Keyword arguments named in library messages -> the command-line flags that set them.
_FLAG_NAMES = {
    "allow_perplexity=True": "--allow-perplexity",
    "allow_small_tokens=True": "--allow-small-tokens",
}


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (KeyError without its repr quotes)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    text = str(text).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    for name, flag in _FLAG_NAMES.items():
        line = line.replace(name, flag)
    return line


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
