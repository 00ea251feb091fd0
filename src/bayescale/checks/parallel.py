"""Replications of a check on Dask worker processes, each seeded by its index, with their records
appended to a JSON-lines file as they finish."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_parallel"]


def run_parallel(
    job: Callable[[int], dict[str, Any]],
    indices: Sequence[int],
    workers: int,
    out: str | Path | None = None,
    label: str = "",
    client: Any | None = None,
) -> dict[int, dict[str, Any]]:
    """Run ``job(index)`` for each index on Dask worker processes (:mod:`bayescale.batch`).

    Each replication seeds itself from its index, so results do not depend on ``workers`` or
    on completion order. Records are appended to ``out`` (JSON lines, with ``label``) as they
    finish; Dask's progress bar shows how far the run is. A job that raises stops the run
    (the records finished before it are in ``out``).

    Parameters
    ----------
    job
        Picklable callable returning a JSON-serialisable dict with ``index`` and ``seconds``.
    indices
        Replication numbers.
    workers
        Worker processes of the ``LocalCluster`` started for the run (one task at a time
        each; 1 runs them in one worker process, one at a time).
    out
        JSON-lines file to append to, or ``None``.
    label
        Stored with each record.
    client
        A ``distributed.Client`` or scheduler address to run on instead of a new local
        cluster (``workers`` is then ignored).

    Returns
    -------
    dict
        Index -> record.
    """
    import uuid

    from bayescale.batch import client_for, run_on_dask

    done: dict[int, dict[str, Any]] = {}
    run_id = uuid.uuid4().hex[:8]  # task keys unique to this call on a shared client
    calls = {f"bayescale-{label or 'job'}-{run_id}-{i}": (i,) for i in indices}
    fh = Path(out).open("a") if out is not None else None

    def on_done(key: str, rec: Any, error: BaseException | None) -> None:
        if error is not None:
            raise error
        done[rec["index"]] = rec
        if fh is not None:
            fh.write(json.dumps({"label": label, **rec}) + "\n")
            fh.flush()

    try:
        with client_for(client, workers) as dask_client:
            run_on_dask(job, calls, on_done, dask_client, retries=0)
    finally:
        if fh is not None:
            fh.close()
    return done
