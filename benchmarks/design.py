"""Which run to train next (issue 21): is ``fit.next_runs`` right, and does its plan beat habits?

Prints three tables (Markdown):

1. **Expected against realised.** Simulated ladders with known truth (families fam0, fam1 at
   3e7, 1e8, 3e8 parameters, one seed each, 20 tokens per parameter; a third family withheld
   as the "new family"). Target: fam0's final loss at (3e9, 6e10), 90% ``observed`` band.
   For the recommended run (the plan's first step) and for the candidate with the largest
   expected reduction, the expected width is compared with the width after actually refitting
   with the run, drawn from the true law and noise: median relative error (target <= 15%).
2. **The plan against habits at equal compute.** Budget = the cost of one more seed of every
   existing configuration. Strategies: the greedy plan, cheapest-first,
   largest-affordable-first, random (affordable runs in a random order) and one more seed of
   everything; realised width after the refit (ratio plan / habit: median with a bootstrap
   interval over cases, share of cases where the plan is narrower) and coverage of the truth.
3. **OLMo-ladder retrospective.** Fit the 190M and 370M runs; candidates: the 760M and 1B runs
   at their real budgets; target: the 3B-1xC final loss; budget: half the cost of that run.
   Replay the plan and the habits with the real withheld runs: realised band width and error
   after each step.

Refits of simulated ladders go through :func:`bayescale.refit.fit_same_layout` (the model
compiled once per layout of runs; the posterior is :func:`bayescale.fit`'s), after the default
fit window.

Usage: ``python benchmarks/design.py [--quick] [--cases 20] [--plan-cases N] [--draws 1000]
[--skip-sim] [--skip-olmo]``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

import bayescale
import bayescale.refit
from bayescale.planning import UnreliableEstimateWarning, next_runs, target_band
from bayescale.report.table import to_markdown

SIZES = (3e7, 1e8, 3e8)
TPP = 20.0  # tokens per parameter
TARGET = (3e9, 6e10)
CONSTANT = {"schedule": "constant", "warmup_tokens": 0.0, "final_lr_fraction": 0.1,
            "decay_tokens": np.nan}
N_CHECKPOINTS = 6  # per run in its fit window, as the simulated ladder has
SECOND_SEED = 10_000  # a second sampler seed of each ladder's fit: the refit's own noise
STRATEGIES = ("plan", "cheapest-first", "largest-affordable-first", "random",
              "one more seed of everything")


def _load() -> str:
    import os

    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# ----------------------------------------------------------------------------- simulated
def _candidates() -> pd.DataFrame:
    rows = []
    for fam in ("fam0", "fam1"):
        for n in SIZES:
            rows.append({"candidate": f"{fam} seed {n:.0e}", "family": fam, "params": n,
                         "tokens": TPP * n})
    rows += [
        {"candidate": "fam0 4e8 (larger)", "family": "fam0", "params": 4e8, "tokens": 8e9},
        {"candidate": "fam1 4e8 (larger)", "family": "fam1", "params": 4e8, "tokens": 8e9},
        {"candidate": "fam0 3e8 x2 (longer)", "family": "fam0", "params": 3e8, "tokens": 1.2e10},
        {"candidate": "fam2 1e8 (new family)", "family": "fam2", "params": 1e8, "tokens": 2e9},
    ]
    out = pd.DataFrame(rows).assign(**CONSTANT)
    out["schedule_tokens"] = out["tokens"]
    return out


def _truth_run(sim, row: pd.Series, rng: np.random.Generator) -> pd.DataFrame:
    """The candidate run drawn from the simulation's true law and noise, with the checkpoints
    next_runs plans (log-spaced over the fit window)."""
    law = sim.families.loc[row["family"]]
    n, d = row["params"], row["tokens"]
    t = np.geomspace(0.2 * d, d, N_CHECKPOINTS)
    log_mu = np.log(law.E + law.A / n**law.alpha + law.B / t**law.beta)
    loss = np.exp(log_mu + sim.sigma_seed * rng.standard_normal()
                  + sim.sigma_obs * rng.standard_normal(t.size))
    return pd.DataFrame({
        "family": row["family"], "run": row["candidate"], "params": n, "tokens": t,
        "loss": loss, "seed": 0, "config": row["candidate"], "run_tokens": d, **CONSTANT,
        "schedule_tokens": d,
    })


def _truth_at_target(sim, rng: np.random.Generator) -> tuple[float, float]:
    """The true mean loss of fam0 at the target, and one new run's observed final loss."""
    mean = float(sim.true_loss("fam0", np.array([TARGET[0]]), np.array([TARGET[1]]))[0])
    return mean, mean * float(np.exp(sim.sigma_seed * rng.standard_normal()
                                     + sim.sigma_obs * rng.standard_normal()))


class _Case:
    """One simulated ladder: its fit, the candidates' true data, and refits (cached by set)."""

    def __init__(self, case: int, args: argparse.Namespace):
        self.case, self.args = case, args
        self.sim = bayescale.simulate(n_families=3, sizes=SIZES, n_seeds=1, n_checkpoints=12,
                                      random_seed=1000 + case)
        runs = self.sim.runs[self.sim.runs["family"] != "fam2"]
        self.train = bayescale.fit_window(bayescale.validate(runs)).runs
        self.cands = _candidates()
        rng = np.random.default_rng([case, 7])
        self.new = {r["candidate"]: _truth_run(self.sim, r, rng)
                    for _, r in self.cands.iterrows()}
        self.truth_mean, self.truth_obs = _truth_at_target(self.sim, rng)
        self._fits: dict[frozenset[str], object] = {}
        self.fit = self.refit(())

    def refit(self, names: Sequence[str], seed: int | None = None):
        """The fit with runs ``names`` added (kept on disk under ``--cache``: refits depend
        on the data only, so reruns of the benchmark reuse them); ``seed``: another sampler
        seed than the case's."""
        key = frozenset(names) if seed is None else frozenset([*names, f"(seed {seed})"])
        if key not in self._fits:
            path = _cache_path(self.args, f"sim{self.case}", key)
            if path is not None and path.exists():
                self._fits[key] = bayescale.load(path)
                return self._fits[key]
            runs = pd.concat([self.train, *(self.new[n] for n in sorted(names))],
                             ignore_index=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", bayescale.SamplingWarning)
                fit = bayescale.refit.fit_same_layout(
                    runs, random_seed=self.case if seed is None else seed,
                    draws=self.args.draws, tune=self.args.draws,
                    chains=self.args.chains,
                )
            if path is not None:
                fit.save(path)
            self._fits[key] = fit
        return self._fits[key]

    def band(self, names: Sequence[str], band: str = "observed",
             seed: int | None = None) -> pd.Series:
        return target_band(self.refit(names, seed), TARGET, family="fam0", band=band).iloc[0]


def _cache_path(args: argparse.Namespace, tag: str, names: frozenset[str]):
    """Where a refit is kept (``None`` without ``--cache``)."""
    import hashlib
    from pathlib import Path

    if not args.cache:
        return None
    key = f"{tag}|{args.chains}x{args.draws}|" + "|".join(sorted(names))
    return Path(args.cache) / f"{tag}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.nc"


def _fixed_sets(cands: pd.DataFrame, budget: float, case: int) -> dict[str, list[str]]:
    """The habits' runs, which do not depend on the posterior."""
    cost = dict(zip(cands["candidate"], 6 * cands["params"] * cands["tokens"], strict=True))

    def fill(order: Sequence[str]) -> list[str]:
        chosen, spent = [], 0.0
        for name in order:
            if spent + cost[name] <= budget * (1 + 1e-9):
                chosen.append(name)
                spent += cost[name]
        return chosen

    by_size = cands.sort_values(["params", "tokens"], ascending=False, kind="mergesort")
    return {
        "cheapest-first": fill(sorted(cost, key=cost.get)),
        "largest-affordable-first": fill(list(by_size["candidate"])),
        "random": _random_order(cands, budget, np.random.default_rng([case, 3])),
        "one more seed of everything": [c for c in cands["candidate"] if " seed " in c],
    }


def prefit(args: argparse.Namespace) -> None:
    """Fit (and keep under ``--cache``) every refit the simulated tables may need that does
    not depend on the method: each ladder, each ladder plus each candidate, and the habits."""
    bayescale.refit.REFIT_CACHE_SIZE = 256
    cands = _candidates()
    seeds = [c for c in cands["candidate"] if " seed " in c]
    budget = float(sum(6 * r.params * r.tokens for r in cands.itertuples() if r.candidate in seeds))
    for case in range(args.cases):
        t0 = time.perf_counter()
        c = _Case(case, args)
        c.refit([], seed=SECOND_SEED)
        for name in cands["candidate"]:
            c.refit([name])
        if case < args.plan_cases:
            for names in _fixed_sets(cands, budget, case).values():
                c.refit(names)
        print(f"  prefit case {case}: {time.perf_counter() - t0:.0f} s ({_load()})", flush=True)


def _bootstrap_median(x: np.ndarray, seed: int, reps: int = 4000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(reps, x.size))
    meds = np.median(x[idx], axis=1)
    return float(np.quantile(meds, 0.05)), float(np.quantile(meds, 0.95))


def _random_order(cands: pd.DataFrame, budget: float, rng: np.random.Generator) -> list[str]:
    chosen, spent = [], 0.0
    for i in rng.permutation(len(cands)):
        row = cands.iloc[i]
        cost = 6 * row["params"] * row["tokens"]
        if spent + cost <= budget * (1 + 1e-9):
            chosen.append(row["candidate"])
            spent += cost
    return chosen


def simulated(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    bayescale.refit.REFIT_CACHE_SIZE = 256  # layouts recur across cases: compile each once
    seeds = [c for c in _candidates()["candidate"] if " seed " in c]
    budget = float(sum(6 * r.params * r.tokens for r in _candidates().itertuples()
                       if r.candidate in seeds))
    rows1, rows2 = [], []
    t_start = time.perf_counter()
    for case in range(args.cases):
        t0 = time.perf_counter()
        c = _Case(case, args)
        res = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnreliableEstimateWarning)
            for band in ("observed", "mean"):
                res[band] = next_runs(c.fit, TARGET, c.cands, budget, family="fam0", band=band,
                                      n_simulations=args.simulations,
                                      n_checkpoints=N_CHECKPOINTS, random_seed=case)
        obs = res["observed"]
        for band in ("observed", "mean"):
            a, b = c.band([], band)["width"], c.band([], band, seed=SECOND_SEED)["width"]
            rows1.append({"case": case, "which": "same data, another sampler seed",
                          "band": band, "rel_error": (b - a) / a})
        table = obs.table.set_index("candidate")
        recommended = (obs.plan["candidate"].iloc[0] if len(obs.plan)
                       else table.index[0])
        most = table["expected_reduction"].idxmax()
        for which, name in (("recommended", recommended), ("largest reduction", most)):
            for band in ("observed", "mean"):
                row = res[band].table.set_index("candidate").loc[name]
                realised = c.band([name], band)["width"]
                now = res[band].current_width
                rows1.append({
                    "case": case, "which": which, "band": band, "candidate": name,
                    "current": now, "expected": row["expected_width"], "realised": realised,
                    "rel_error": (row["expected_width"] - realised) / realised,
                    "expected_reduction": row["expected_reduction"] / now,
                    "realised_reduction": (now - realised) / now,
                    "spread": row["reduction_se"] * np.sqrt(args.simulations)
                    / row["expected_width"],
                    "pareto_k_max": row["pareto_k_max"], "share_k_high": row["share_k_high"],
                    "reliable": bool(row["reliable"]),
                })
        if case >= args.plan_cases:
            print(f"  case {case}: {time.perf_counter() - t0:.0f} s ({_load()}); recommended "
                  f"{recommended!r}", flush=True)
            continue
        sets = {"plan": list(obs.plan["candidate"]), **_fixed_sets(c.cands, budget, case)}
        for name in ("cheapest-first", "largest-affordable-first"):  # the same habits
            assert sets[name] == list(obs.alternatives[name]["candidate"]), name
        plan_expected = (float(obs.plan["expected_width"].iloc[-1]) if len(obs.plan)
                         else obs.current_width)
        for strategy, names in sets.items():
            band_obs = c.band(names, "observed")
            band_mean = c.band(names, "mean")
            cost = float(sum(6 * r.params * r.tokens for r in c.cands.itertuples()
                             if r.candidate in names))
            rows2.append({
                "case": case, "strategy": strategy, "runs": len(names), "cost": cost,
                "width": band_obs["width"], "mean_width": band_mean["width"],
                "expected": plan_expected if strategy == "plan" else np.nan,
                "covers_observed": band_obs["lower"] <= c.truth_obs <= band_obs["upper"],
                "covers_mean": band_mean["lower"] <= c.truth_mean <= band_mean["upper"],
                "plan": " + ".join(names) if strategy == "plan" else "",
            })
        print(f"  case {case}: {time.perf_counter() - t0:.0f} s ({_load()}); recommended "
              f"{recommended!r}, plan {sets['plan']}", flush=True)
    print(f"simulated cases: {time.perf_counter() - t_start:.0f} s in all", flush=True)
    return pd.DataFrame(rows1), pd.DataFrame(rows2)


def _table1(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (which, band), g in df.groupby(["which", "band"], sort=False):
        if which.startswith("same data"):  # the sampler's own noise in a realised width
            out.append({"run": which, "band": band, "cases": len(g),
                        "median |rel. error| %": 100 * g["rel_error"].abs().median(),
                        "median rel. error %": 100 * g["rel_error"].median(),
                        "90% of |rel. error| below %": 100 * g["rel_error"].abs().quantile(0.9)})
            continue
        out.append({
            "run": which, "band": band, "cases": len(g),
            "median |rel. error| %": 100 * g["rel_error"].abs().median(),
            "median rel. error %": 100 * g["rel_error"].median(),
            "90% of |rel. error| below %": 100 * g["rel_error"].abs().quantile(0.9),
            "spread of widths over data %": 100 * g["spread"].median(),
            "expected reduction %": 100 * g["expected_reduction"].median(),
            "realised reduction %": 100 * g["realised_reduction"].median(),
            "reliable": f"{int(g['reliable'].sum())}/{len(g)}",
            "median k max": g["pareto_k_max"].median(),
        })
    return pd.DataFrame(out)


def _table2(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    wide = df.pivot(index="case", columns="strategy", values="width")
    out = []
    for strategy in STRATEGIES:
        g = df[df["strategy"] == strategy]
        row = {"strategy": strategy, "median cost": g["cost"].median(),
               "median width": g["width"].median(),
               "observed covered": f"{int(g['covers_observed'].sum())}/{len(g)}",
               "mean covered": f"{int(g['covers_mean'].sum())}/{len(g)}"}
        if strategy != "plan":
            ratio = (wide["plan"] / wide[strategy]).to_numpy()
            lo, hi = _bootstrap_median(ratio, seed)
            row.update({"plan / this: median": float(np.median(ratio)),
                        "90% bootstrap": f"[{lo:.3f}, {hi:.3f}]",
                        "plan narrower": f"{int(np.sum(ratio < 1 - 1e-9))}/{ratio.size}",
                        "plan equal": f"{int(np.sum(np.abs(ratio - 1) <= 1e-9))}/{ratio.size}"})
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- OLMo ladder
OLMO_TARGET = "3B-1xC"
OLMO_THIN = 20
OLMO_SCHEDULE = ["schedule", "warmup_tokens", "final_lr_fraction", "schedule_tokens",
                 "batch_size"]


def _olmo_setup():
    runs = bayescale.load_dataset("olmo-ladder")
    runs = runs[runs["tokens"] > runs["warmup_tokens"]]
    thin = bayescale.thin_log_spaced(runs, OLMO_THIN)
    train = thin[thin["params"] < 5e8]
    pool = thin[(thin["params"] > 5e8) & (thin["params"] < 2e9)
                & ~thin["run"].str.contains("seed1")]
    first = pool.groupby("run").first()
    cands = pd.DataFrame({
        "candidate": first.index, "family": first["family"], "params": first["params"],
        "tokens": first["run_tokens"], **{c: first[c] for c in OLMO_SCHEDULE},
    }).reset_index(drop=True)
    target_rows = runs[runs["run"] == OLMO_TARGET].sort_values("tokens")
    truth = float(target_rows["loss"].iloc[-1])
    target = (float(target_rows["params"].iloc[0]), float(target_rows["run_tokens"].iloc[0]))
    budget = 0.5 * 6 * target[0] * target[1]
    return train, pool, cands, target, truth, budget


def _olmo_orders(cands: pd.DataFrame, budget: float, n_random: int) -> dict[str, list[str]]:
    fixed = _fixed_sets(cands, budget, 0)
    orders = {k: fixed[k] for k in ("cheapest-first", "largest-affordable-first")}
    rng = np.random.default_rng(21)
    for i in range(n_random):
        orders[f"random {i + 1}"] = _random_order(cands, budget, rng)
    return orders


def _olmo_refit(args: argparse.Namespace, train: pd.DataFrame, pool: pd.DataFrame,
                names: Sequence[str]):
    key = frozenset(names)
    path = _cache_path(args, "olmo", key)
    if path is not None and path.exists():
        return bayescale.load(path)
    data = pd.concat([train, *(pool[pool["run"] == n] for n in sorted(key))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ScheduleWarning)
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        fit = bayescale.fit(data, draws=args.draws, tune=args.draws, chains=args.chains,
                            random_seed=0, progressbar=False)
    if path is not None:
        fit.save(path)
    return fit


def _steps(strategy: str, n: int, quick: bool) -> list[int]:
    """Which prefixes of a strategy's runs are refitted (every one, or in quick mode the
    habits' final sets only)."""
    return list(range(n + 1)) if (strategy == "plan" or not quick) else [0, n]


def olmo(args: argparse.Namespace) -> pd.DataFrame:
    train, pool, cands, target, truth, budget = _olmo_setup()
    cost = dict(zip(cands["candidate"], 6 * cands["params"] * cands["tokens"], strict=True))
    fits: dict[frozenset[str], object] = {}

    def refit(names: Sequence[str]):
        key = frozenset(names)
        if key not in fits:
            fits[key] = _olmo_refit(args, train, pool, names)
        return fits[key]

    t0 = time.perf_counter()
    base = refit(())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        res = next_runs(base, target, cands, budget, family="olmo-ladder",
                        n_simulations=args.simulations, n_checkpoints=10, random_seed=0)
    print(f"OLMo: base fit + next_runs {time.perf_counter() - t0:.0f} s ({_load()}); budget "
          f"{budget:.3g} FLOPs; current width {res.current_width:.4f}", flush=True)
    print(to_markdown(res.table[["candidate", "kind", "cost", "expected_width",
                                 "expected_reduction", "reduction_se", "reduction_per_flop",
                                 "pareto_k_max", "share_k_high", "reliable"]]), flush=True)
    for note in res.notes:
        print(f"note: {note}")
    if args.plot:
        import matplotlib.pyplot as plt

        ax = res.plot()
        ax.set_title("OLMo ladder from 190M-370M: expected 90% band at 3B-1xC")
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        plt.close(ax.figure)
        print(f"plot -> {args.plot}")
    paths = {"plan": res.plan, **res.alternatives}
    for name, order in _olmo_orders(cands, budget, args.olmo_random).items():
        if name.startswith("random"):
            paths[name] = pd.DataFrame({"candidate": order})
    rows = []
    for strategy, path in paths.items():
        names = list(path["candidate"])
        for k in _steps(strategy, len(names), args.quick):
            fit = refit(names[:k])
            band = target_band(fit, target, family="olmo-ladder").iloc[0]
            median = float(fit.predict(*target, family="olmo-ladder")["median"].item())
            expected = res.current_width if k == 0 else (
                float(path["expected_width"].iloc[k - 1]) if "expected_width" in path
                else np.nan)
            rows.append({
                "strategy": strategy, "step": k, "added": names[k - 1] if k else "(start)",
                "cumulative cost": float(sum(cost[n] for n in names[:k])),
                "expected width": expected, "realised width": band["width"],
                "median": median, "error %": 100 * (median - truth) / truth,
                "covered": bool(band["lower"] <= truth <= band["upper"]),
            })
        print(f"  {strategy}: {len(names)} runs, {time.perf_counter() - t0:.0f} s ({_load()})",
              flush=True)
    print(f"OLMo target {OLMO_TARGET} final loss {truth:.4f}")
    return pd.DataFrame(rows)


def prefit_olmo(args: argparse.Namespace) -> None:
    train, pool, cands, _, _, budget = _olmo_setup()
    for strategy, names in {"base": [], **_olmo_orders(cands, budget, args.olmo_random)}.items():
        t0 = time.perf_counter()
        for k in _steps(strategy, len(names), args.quick):
            _olmo_refit(args, train, pool, names[:k])
        print(f"  prefit OLMo {strategy}: {time.perf_counter() - t0:.0f} s ({_load()})",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="100 simulations, strategies replayed on 8 "
                             "ladders, OLMo baselines' final sets only and one random order")
    parser.add_argument("--cases", type=int, default=20, help="simulated ladders (table 1)")
    parser.add_argument("--plan-cases", type=int, default=None,
                        help="of which table 2 replays the strategies (default: all; quick: 8)")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--olmo-random", type=int, default=3, help="random orders replayed")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--cache", default=".cache/design_bench",
                        help="keep refits here and reuse them ('' to keep none)")
    parser.add_argument("--plot", default="benchmarks/results/design_olmo_plan.png",
                        help="where the OLMo plan's width-against-compute plot goes ('': none)")
    parser.add_argument("--csv", default="benchmarks/results/design",
                        help="prefix of the CSV files of every row ('' for none)")
    parser.add_argument("--prefit", action="store_true",
                        help="only fit and keep the refits that do not depend on the method")
    parser.add_argument("--skip-olmo", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.simulations, args.olmo_random = 100, 1
        args.plan_cases = 8 if args.plan_cases is None else args.plan_cases
    if args.plan_cases is None:
        args.plan_cases = args.cases
    print(f"# design benchmark: {args.cases} cases, {args.chains} chains x {args.draws} draws, "
          f"{args.simulations} simulations per candidate; start {_load()}", flush=True)
    t0 = time.perf_counter()
    if args.cache:
        from pathlib import Path

        Path(args.cache).mkdir(parents=True, exist_ok=True)
    if args.prefit:
        if not args.skip_sim:
            prefit(args)
        if not args.skip_olmo:
            prefit_olmo(args)
        print(f"prefit: {time.perf_counter() - t0:.0f} s; end {_load()}")
        return
    if not args.skip_sim:
        rows1, rows2 = simulated(args)
        if args.csv:
            rows1.to_csv(f"{args.csv}_expected.csv", index=False)
            rows2.to_csv(f"{args.csv}_strategies.csv", index=False)
        print("\n## 1. Expected against realised band width (simulated ladders)\n")
        print(to_markdown(_table1(rows1), digits=3))
        print("\n## 2. The plan against habits at equal compute (simulated ladders)\n")
        print(to_markdown(_table2(rows2, seed=1), digits=3))
        plan = rows2[rows2["strategy"] == "plan"]
        err = (plan["expected"] - plan["width"]) / plan["width"]
        print(f"\nplan's expected final width against realised: median rel. error "
              f"{100 * err.median():+.1f}%, median |rel. error| {100 * err.abs().median():.1f}%")
        print("plans chosen:", plan["plan"].value_counts().to_dict())
    if not args.skip_olmo:
        print("\n## 3. OLMo-ladder retrospective\n", flush=True)
        table3 = olmo(args)
        if args.csv:
            table3.to_csv(f"{args.csv}_olmo.csv", index=False)
        print(to_markdown(table3, digits=4))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; end {_load()}")


if __name__ == "__main__":
    main()
