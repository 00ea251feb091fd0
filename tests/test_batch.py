"""Many fits on Dask (bayescale.batch): failures, a killed worker, resuming, serial equality.

All tests share one 2-worker LocalCluster (worker processes). The fault tests use the fast
point methods (seeded bootstrap fits, and a Bayesian task that fails at validation); one test
runs tiny Bayesian fits (each worker compiles the model once: 1.5-3 minutes on 2 busy cores)
and checks them against a serial run and the compile-once path.
"""

from __future__ import annotations

import json
import os
from functools import partial

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale import batch
from bayescale.batch import FitTask, fit_many, grid_arrays, grid_tasks, task_key
from bayescale.validation import run_parallel, split_held_out

SIM = bayescale.simulate(
    n_families=2, sizes=(2e7, 6e7, 2e8, 6e8), n_seeds=1, n_checkpoints=10, random_seed=0
)
TRAIN, TARGET = split_held_out(SIM.runs, 6e8)
TINY = {"draws": 100, "tune": 100, "chains": 2}


@pytest.fixture(scope="module")
def client():
    dask_client = batch.local_client(n_workers=2)
    yield dask_client
    batch._close_quietly(dask_client)


def _boot_tasks(n: int) -> list[FitTask]:
    """Seeded bootstrap fits (fast, and random: a seed mix-up changes the results)."""
    return [
        FitTask(TRAIN, TARGET, "huber_bootstrap", random_seed=s, n_boot=10,
                coords={"seed": s}, family="fam0")
        for s in range(n)
    ]


def test_task_key_is_content_only():
    a = FitTask(TRAIN, TARGET, "curve_fit", coords={"x": 1}, name="a")
    b = FitTask(TRAIN.copy(), TARGET.copy(), "curve_fit", coords={"x": 2}, name="b")
    assert task_key(a) == task_key(b)  # name and coordinates are not content
    changed = TRAIN.copy()
    changed.loc[3, "loss"] *= 1.0001
    assert task_key(FitTask(changed, TARGET, "curve_fit")) != task_key(a)
    assert task_key(FitTask(TRAIN, TARGET, random_seed=1)) != task_key(FitTask(TRAIN, TARGET))
    assert task_key(FitTask(TRAIN, TARGET), True) != task_key(FitTask(TRAIN, TARGET), False)


def test_failed_task_is_recorded_and_the_others_complete(client, tmp_path):
    bad = TRAIN.copy()
    bad.loc[0, "loss"] = -1.0
    tasks = [
        FitTask(TRAIN, TARGET, "curve_fit", coords={"case": "ok"}),
        FitTask(bad, TARGET, "bayescale", TINY, coords={"case": "bad"}),
        FitTask(TRAIN, TARGET, "best_loss", coords={"case": "naive"}),
    ]
    out = fit_many(tasks, client, tmp_path, progress=False)
    assert out.loc["bad", "status"] == "failed"
    assert "DataError" in out.loc["bad", "error"] and "loss" in out.loc["bad", "error"]
    assert (out.loc[["ok", "naive"], "status"] == "ok").all()
    assert np.isfinite(out.loc[["ok", "naive"], "are"]).all()
    stored = json.loads((tmp_path / f"{out.loc['bad', 'key']}.json").read_text())
    assert stored["status"] == "failed"
    again = fit_many(tasks, client, tmp_path, progress=False)
    assert again["cached"].all()  # a recorded failure is a result: not run again
    rerun = fit_many(tasks, client, tmp_path, progress=False, rerun_failed=True)
    assert not rerun.loc["bad", "cached"] and rerun.loc["ok", "cached"]


def test_killed_worker_grid_completes(client, tmp_path):
    from distributed import WorkerPlugin

    marker = tmp_path / "killed"

    class KillOnce(WorkerPlugin):
        """Kill this worker process when a fit starts, the first time only."""

        def transition(self, key, start, finish, **kwargs):
            name = key if isinstance(key, str) else str(key)
            if finish == "executing" and name.startswith("bayescale-fit-"):
                if not marker.exists():
                    marker.write_text(str(os.getpid()))
                    os._exit(1)

    client.register_plugin(KillOnce(), name="kill-once")
    try:
        out = fit_many(_boot_tasks(6), client, tmp_path / "results", progress=False)
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.exists(), "no worker was killed"
    killed = marker.read_text()
    assert (out["status"] == "ok").all(), out[["status", "error"]]
    assert len(out) == 6 and np.isfinite(out["are"]).all()
    assert not out["worker"].str.endswith(f":{killed}").any()  # its task ran again elsewhere
    assert len(list((tmp_path / "results").glob("*.json"))) == 6


def test_interrupted_grid_resumes_without_refitting(client, tmp_path, monkeypatch):
    tasks = _boot_tasks(8)
    store, stored = batch._store, []

    def store_then_interrupt(results_dir, key, record):
        out = store(results_dir, key, record)
        stored.append(key)
        if len(stored) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the grid
        return out

    monkeypatch.setattr(batch, "_store", store_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit_many(tasks, client, tmp_path, progress=False)
    monkeypatch.setattr(batch, "_store", store)
    assert len(list(tmp_path.glob("*.json"))) == 3
    (tmp_path / "broken.json").write_text("{")  # not a task: ignored
    resumed = fit_many(tasks, client, tmp_path, progress=False)
    assert (resumed["status"] == "ok").all()
    assert set(resumed.loc[resumed["cached"], "key"]) == set(stored)  # not fitted again
    assert (~resumed["cached"]).sum() == 5
    again = fit_many(tasks, client, tmp_path, progress=False)
    assert again["cached"].all()
    pd.testing.assert_series_equal(again["are"], resumed["are"])


def test_point_results_equal_a_serial_run(client):
    tasks = _boot_tasks(4)
    dist = fit_many(tasks, client, progress=False)
    serial = fit_many(tasks, "serial", progress=False)
    cols = ["status", "are", "coverage_90", "width_90", "key"]
    pd.testing.assert_frame_equal(dist[cols], serial[cols])
    assert dist["width_90"].nunique() == 4  # the seeds matter (the bootstrap band)


@pytest.mark.slow  # one compile per worker: minutes on 2 cores
def test_bayesian_results_equal_a_serial_run_and_compile_once_per_worker(client, tmp_path):
    tasks = [
        FitTask(TRAIN, TARGET, "bayescale", TINY, random_seed=s, coords={"seed": s},
                family="fam0")
        for s in range(5)
    ]
    dist = fit_many(tasks, client, tmp_path, keep_posterior=True, progress=False)
    assert (dist["status"] == "ok").all(), dist[["status", "error"]]
    assert (dist["compiled"].isin(["compiled", "reused"])).all()
    for _, rows in dist.groupby("worker"):  # one compile per worker, later tasks reuse it
        assert (rows["compiled"] == "compiled").sum() == 1
        first = rows.loc[rows["compiled"] == "compiled"]
        later = rows.loc[rows["compiled"] == "reused"]
        assert (later["compile_seconds"] == 0).all()
        assert (later["total_seconds"] < first["total_seconds"].iloc[0]).all()
    assert np.isfinite(dist[["are", "coverage_90", "width_90", "max_rhat"]]).all().all()
    fit = bayescale.load(dist["posterior"].iloc[0])
    assert fit.idata.posterior.sizes["draw"] == TINY["draws"]
    # the same tasks one after another in one process: a worker that compiled the layout
    pids = client.run(os.getpid)
    compiled_on = dist.loc[dist["compiled"] == "compiled", "worker"].iloc[0]
    address = next(a for a, pid in pids.items() if compiled_on.endswith(f":{pid}"))
    serial = client.submit(
        fit_many, tasks, "serial", progress=False, workers=[address], pure=False
    ).result()
    cols = ["are", "coverage_90", "width_90", "max_rhat", "divergences", "min_ess_bulk", "key"]
    pd.testing.assert_frame_equal(dist[cols], serial[cols])
    assert dist["are"].nunique() == 5


def test_run_parallel_on_dask(client, tmp_path):
    out = tmp_path / "records.jsonl"
    records = run_parallel(partial(_square_job, offset=1), range(5), 2, out, "sq", client=client)
    assert {i: r["value"] for i, r in records.items()} == {i: i * i + 1 for i in range(5)}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["index"] for r in lines) == list(range(5))
    assert {r["label"] for r in lines} == {"sq"}


def _square_job(index: int, offset: int = 0) -> dict:
    return {"index": index, "value": index * index + offset, "seconds": 0.0}


def test_grid_tasks_cover_models_fractions_and_scale_up():
    runs = bayescale.simulate(
        n_families=1, sizes=(2e8, 6e8, 2e9, 6e9), n_seeds=1, n_checkpoints=12, random_seed=1
    ).runs
    tasks = grid_tasks(
        runs, methods=("curve_fit",), fractions=(0.5, 1.0), max_points=6, warmup_tokens=None
    )
    coords = pd.DataFrame([t.coords for t in tasks])
    # sizes below the target: 2e9, 6e8, 2e8 -> (m=1: k=2,3), (m=2: k=2) per fraction
    assert len(tasks) == 3 * 2
    assert sorted(coords["scale_up"].round(6).unique()) == [3.0, 10.0]
    assert set(coords["n_models"]) == {2, 3}
    assert all(t.runs.groupby("run").size().max() <= 6 for t in tasks)
    assert all(t.target is tasks[0].target for t in tasks)
    table = fit_many(tasks, "serial", progress=False)
    grid = grid_arrays(table, "are", "curve_fit")
    assert grid.dims == ("scale_up", "n_models", "fraction")
    assert list(grid["scale_up"].values) == [4.0, 16.0]
    assert int(grid["n_families"].sum()) == 6


def test_evaluate_on_dask_equals_evaluate_here(client):
    from bayescale.evaluate import evaluate

    runs = bayescale.simulate(
        n_families=2, sizes=(2e9, 4e9, 8e9), n_seeds=1, n_checkpoints=10, random_seed=3
    ).runs
    methods = ("curve_fit", "huber_bootstrap", "best_loss")
    here = evaluate(runs, methods=methods, n_boot=5, verbose=False)
    there = evaluate(runs, methods=methods, n_boot=5, verbose=False, client=client)
    cols = ["family", "method", "status", "n_train", "are", "coverage_90", "width_90"]
    assert (here["status"] == "ok").all()
    pd.testing.assert_frame_equal(here[cols], there[cols])


def test_cli_grid_on_a_scheduler_address(client, tmp_path, capsys):
    from bayescale.cli import main

    runs = bayescale.simulate(
        n_families=2, sizes=(2e8, 6e8, 2e9, 6e9), n_seeds=1, n_checkpoints=12, random_seed=1
    ).runs
    runs.to_csv(tmp_path / "runs.csv", index=False)
    argv = ["grid", str(tmp_path / "runs.csv"), "--scheduler", client.scheduler.address,
            "--out", str(tmp_path / "grid"), "--methods", "curve_fit", "--warmup-tokens", "0",
            "--fractions", "0.5", "1.0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "12 fits (2 families" in printed and "curve_fit" in printed
    table = pd.read_csv(tmp_path / "grid" / "grid.csv")
    assert len(table) == 12 and (table["status"] == "ok").all()
    assert (tmp_path / "grid" / "grid_are_curve_fit.png").exists()
    assert len(list((tmp_path / "grid" / "results").glob("*.json"))) == 12
    assert main(argv) == 0  # resumes: nothing left to fit
    assert "12 done before, 0 to run" in capsys.readouterr().out
