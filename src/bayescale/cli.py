"""Command-line interface: ``bayescale <command> ...``.

Errors are printed as one line (``bayescale: error: ...``) with exit status 2; ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def _read_table(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if p.suffix == ".parquet":
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
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
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
    pred = fit.predict(params=args.params, tokens=args.tokens, family=args.family)
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from bayescale.demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescale`` command."""
    parser = argparse.ArgumentParser(
        prog="bayescale", description="Hierarchical Bayesian scaling-law estimation."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the bundled datasets")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("validate", help="check a run table (CSV or Parquet)")
    p.add_argument("table")
    p.add_argument("--allow-perplexity", action="store_true")
    p.add_argument("--allow-small-tokens", action="store_true")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("fit", help="fit the hierarchical model and save it to NetCDF")
    p.add_argument("table")
    p.add_argument("--law", default="chinchilla")
    p.add_argument("--hierarchy", default="family", help="'family' or 'arch,family'")
    p.add_argument("--out", required=True)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="nutpie", choices=["nutpie", "pymc", "numpyro"])
    p.add_argument("--family-col", default="family")
    p.add_argument("--max-points", type=int, default=0, help="thin to at most k checkpoints/run")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", help="predict loss with intervals from a saved fit")
    p.add_argument("fit")
    p.add_argument("--params", type=float, nargs="+", required=True)
    p.add_argument("--tokens", type=float, nargs="+", required=True)
    p.add_argument("--family", default=None)
    p.add_argument("--csv", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("demo", help="fit bundled real data and write the HTML report")
    p.add_argument("--out", default="reports/demo")
    p.add_argument("--quick", action="store_true", help="fewer draws (for smoke tests)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayescale`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("bayescale: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"bayescale: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
