"""Throughput of ``bayescale.fit_many`` on a LocalCluster against one fit at a time.

Equal Bayesian fits (one simulated run table, its largest size held out and scored; the seeds
differ) are run

* on two ``LocalCluster`` s started side by side, one with a single worker and one with
  ``--workers`` workers (one thread each). A **cold** batch on each makes every worker compile
  the model on its first task: the compile amortisation, first task against later tasks per
  worker;
* then, in ``--rounds`` interleaved rounds (the other jobs on the machine come and go, so
  every configuration is measured under the same load): in this process, one fit after
  another through the code a worker runs (model compiled once), at 1 and at 2 threads per
  fit: the **single-fit rate**; and a **warm** batch of ``--fits`` fits on each cluster at 1
  and at 2 threads per fit (the ``fit_many`` call's wall time);
* and, each round, the machine's **parallel capacity**: a fixed CPU-bound loop on one worker
  alone against all workers at once (``workers`` on an idle machine; less when other jobs
  hold cores).

The throughput ratio is ``batch rate / (workers x single-fit rate at the same threads per
fit)``, and beside it the ratio to ``capacity x single-fit rate`` (what the free cores allow).
The load average is printed for every round.

Usage::

    python benchmarks/fit_many.py                        # 16 fits, 2 workers, 3 rounds
    python benchmarks/fit_many.py --fits 32 --rounds 5
    python benchmarks/fit_many.py --out benchmarks/results/FIT_MANY.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import warnings

import numpy as np
import pandas as pd

import bayescale
from bayescale import batch
from bayescale.batch import FitTask, fit_many
from bayescale.validation import split_held_out


def load() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (numbers to 3 significant digits)."""

    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float | np.floating) else str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * frame.shape[1]
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([head, rule, *body])


def make_tasks(n: int, first_seed: int, fit_kwargs: dict) -> list[FitTask]:
    """``n`` equal fits (one run table and target) with seeds ``first_seed, ...``."""
    sim = bayescale.simulate(
        n_families=2, sizes=(2e7, 6e7, 2e8, 6e8), n_seeds=2, n_checkpoints=20, random_seed=0
    )
    train, target = split_held_out(sim.runs, 6e8)
    return [
        FitTask(train, target, "bayescale", fit_kwargs, random_seed=s, family="fam0",
                coords={"seed": s})
        for s in range(first_seed, first_seed + n)
    ]


def single_rate(tasks: list[FitTask], threads: int) -> float:
    """Fits per second, one after another in this process (the worker's code path)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        recs = [batch._run_task(t, True, False, threads) for t in tasks]
        wall = time.perf_counter() - t0
    assert all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    return len(tasks) / wall


def batch_rate(client, tasks: list[FitTask], threads: int) -> tuple[float, pd.DataFrame]:
    """Fits per second of one fit_many call (wall time of the call)."""
    t0 = time.perf_counter()
    table = fit_many(tasks, client, reuse_compiled=True, threads_per_fit=threads,
                     progress=False)
    wall = time.perf_counter() - t0
    bad = table[table["status"] != "ok"]
    assert bad.empty, bad[["status", "error"]]
    return len(tasks) / wall, table


def _burn(seconds: float = 2.0) -> float:
    """Wall time of a fixed CPU-bound loop (about ``seconds`` on a free core)."""
    t0 = time.perf_counter()
    x = 0.0
    for i in range(int(seconds * 1.5e7)):
        x += i * 1e-9
    return time.perf_counter() - t0


def capacity(client) -> float:
    """How many of the cluster's workers' loops run at once: ``n x t_alone / t_all``."""
    workers = list(client.scheduler_info()["workers"])
    alone = client.run(_burn, workers=workers[:1])
    together = client.run(_burn)
    t1 = next(iter(alone.values()))
    return len(workers) * t1 / float(np.mean(list(together.values())))


def _import_bayescale() -> None:
    import bayescale  # noqa: F401


def cold_batch(client, tasks: list[FitTask], label: str) -> tuple[float, list[dict]]:
    """Wall time of a batch on fresh workers and each worker's first and later tasks."""
    client.run(_import_bayescale)  # worker start-up is not part of the batch
    t0 = time.perf_counter()
    _, table = batch_rate(client, tasks, 1)
    wall = time.perf_counter() - t0
    rows = []
    for worker, sub in table.groupby("worker"):
        first = sub.loc[sub["compiled"] == "compiled", "total_seconds"]
        later = sub.loc[sub["compiled"] == "reused", "total_seconds"]
        rows.append({
            "cluster": label,
            "worker": worker,
            "tasks": len(sub),
            "first task s": float(first.iloc[0]) if len(first) else np.nan,
            "of which compile s": float(sub["compile_seconds"].max()),
            "later tasks s (mean)": float(later.mean()) if len(later) else np.nan,
        })
    return wall, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=16, help="fits per batch (>= 16)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=6, help="fits timed in this process")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the report (Markdown) here")
    args = parser.parse_args()
    fit_kwargs = {"draws": args.draws, "tune": args.tune, "chains": args.chains}
    started = time.perf_counter()
    head = [
        f"# fit_many throughput ({dt.date.today().isoformat()})",
        "",
        f"`python benchmarks/fit_many.py {' '.join(sys.argv[1:])}` on {os.cpu_count()} cores "
        f"({platform.machine()}); load average at start {load()}. Equal "
        f"fits: 2 families x 4 sizes x 2 seeds x 20 checkpoints (largest size held out and "
        f"scored), {args.chains} chains x ({args.tune} tune + {args.draws} draws); after its "
        "first task a worker reuses the compiled model (`reuse_compiled=True`). Each fit "
        "includes predicting and scoring the held-out runs.",
        "",
    ]
    print("\n".join(head), flush=True)

    local = make_tasks(args.single + 1, 10_000, fit_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        batch._run_task(local[0], True, False, None)  # compiles this process's model
    print(f"compile + first fit in this process: {time.perf_counter() - t0:.0f} s", flush=True)

    sizes = {"1 worker": 1, f"{args.workers} workers": args.workers}
    clients = {name: batch.local_client(n_workers=n) for name, n in sizes.items()}
    amort, cold = [], {}
    try:
        for i, (name, client) in enumerate(clients.items()):
            cold[name], rows = cold_batch(client, make_tasks(args.fits, 100 * i, fit_kwargs),
                                          name)
            amort += rows
            print(f"cold batch on {name}: {cold[name]:.0f} s (load {load()})", flush=True)
        records = []
        for r in range(args.rounds):
            rec = {"round": r + 1, "load start": load()}
            for threads in (1, 2):
                rec[f"single {threads}t"] = single_rate(local[1:], threads)
            rec["capacity"] = capacity(clients[f"{args.workers} workers"])
            for name, client in clients.items():
                for threads in (1, 2):
                    seeds = 1_000 * (r + 1) + 100 * threads + 10 * sizes[name]
                    rate, _ = batch_rate(client, make_tasks(args.fits, seeds, fit_kwargs),
                                         threads)
                    rec[f"{name} {threads}t"] = rate
            rec["load end"] = load()
            records.append(rec)
            print(rec, flush=True)
    finally:
        for client in clients.values():
            batch._close_quietly(client)

    rounds = pd.DataFrame(records)
    mean = rounds.mean(numeric_only=True)
    rows = []
    for name, n in sizes.items():
        for threads in (1, 2):
            single = mean[f"single {threads}t"]
            rate = mean[f"{name} {threads}t"]
            cap = min(n, mean["capacity"]) if n > 1 else 1.0
            rows.append({
                "workers x threads/fit": f"{n} x {threads}",
                "batch fits/s": rate,
                "single-fit fits/s": single,
                "ratio to workers x single": rate / (n * single),
                "ratio to capacity x single": rate / (cap * single),
            })
    summary = pd.DataFrame(rows)
    best = summary.loc[summary["batch fits/s"].idxmax(), "workers x threads/fit"]
    report = [
        *head,
        f"## Steady state: batches of {args.fits} equal fits (mean of {args.rounds} "
        "interleaved rounds)",
        "",
        markdown(summary),
        "",
        f"Highest throughput: {best}. Capacity = how many workers' CPU-bound loops ran at once "
        f"({mean['capacity']:.2f} of {args.workers}); the ratio to capacity x single is the "
        "scaling the free cores allow.",
        "",
        "## Rounds (fits/s; load average at start and end)",
        "",
        markdown(rounds),
        "",
        "## Compile amortisation (cold batches): first task against later tasks per worker",
        "",
        markdown(pd.DataFrame(amort)),
        "",
        "Cold batch wall time: "
        + "; ".join(f"{name} {wall:.0f} s" for name, wall in cold.items())
        + f". Total benchmark time {time.perf_counter() - started:.0f} s; load at end {load()}.",
    ]
    text = "\n".join(report) + "\n"
    print(text, flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
