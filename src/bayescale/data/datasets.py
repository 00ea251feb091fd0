"""Bundled public loss-curve datasets, converted to the tidy run-table schema.

The files live in the repository's ``data/`` folder (rebuilt by ``scripts/build_datasets.py``
from the raw public releases) and are shipped inside the wheel as ``bayescale/_bundled_data``.
``data/README.md`` is the data card: origin, license, units and every conversion choice.

>>> from bayescale.data.datasets import list_datasets, load_dataset
>>> list_datasets()[["name", "rows", "runs"]]  # doctest: +SKIP
>>> df = load_dataset("olmo-ladder")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bayescale.data.validate import validate

__all__ = ["DATASETS", "list_datasets", "load_dataset"]


@dataclass(frozen=True)
class _DatasetInfo:
    description: str
    license: str


DATASETS: dict[str, _DatasetInfo] = {
    "olmo-ladder": _DatasetInfo(
        "OLMo-2 model ladder (Bhagia et al. 2024): 190M-3B x 5 token budgets, C4 loss curves, "
        "with 1xC reruns and seed variants",
        "Apache-2.0",
    ),
    "hitchhiker": _DatasetInfo(
        "Hitchhiker's Guide (ColPret) families: Datablations, GPT-3, OPT, Pile-T5, "
        "Revisiting-LM, OLMo, RedPajama-INCITE curves and Chinchilla IsoFLOP points",
        "MIT (ColPret); original data from the cited papers",
    ),
    "deepmind-routing": _DatasetInfo(
        "Clark et al. 2022 routed LMs: Dense/S-Base/Hash/RL-R, 15M-1.3B, up to 512 experts, "
        "validation-loss curves over 250k steps",
        "CC-BY-4.0",
    ),
    "nanogpt-replicates": _DatasetInfo(
        "modded-nanogpt track-3 replicate runs: one 162M GPT, 39 optimizer configs with "
        "3-30 replicate val-loss curves each",
        "MIT",
    ),
}

#: Columns holding integer counts that may be missing for some rows.
_NULLABLE_INT_COLUMNS = ("step", "batch_size", "run_tokens")
#: Learning-rate schedule columns read as floats (NaN where a run has no schedule); the
#: token counts among them are written as integers but are read as floats, like the
#: validator's output.
_FLOAT_COLUMNS = ("warmup_tokens", "final_lr_fraction", "schedule_tokens", "decay_tokens", "lr")
#: Text columns that may be empty in every row of a file (read back as ``str``, NaN kept).
_STRING_COLUMNS = ("schedule", "lr_schedule")


def _data_dir() -> Path:
    """Folder with the bundled ``<name>.csv.gz`` files (wheel first, then the repository)."""
    try:
        bundled = importlib.resources.files("bayescale") / "_bundled_data"
        if bundled.is_dir():
            return Path(str(bundled))
    except (ModuleNotFoundError, NotADirectoryError, TypeError):  # pragma: no cover
        pass
    # Editable install / source checkout: <repo>/src/bayescale/data/datasets.py -> <repo>/data
    return Path(__file__).resolve().parents[3] / "data"


def _path(name: str) -> Path:
    if name not in DATASETS:
        valid = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {name!r}; valid names: {valid}")
    path = _data_dir() / f"{name}.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled dataset file {path} is missing; rebuild it with "
            "`python scripts/build_datasets.py --raw ../shared/data --out data`"
        )
    return path


def _plain_strings(df: pd.DataFrame) -> pd.DataFrame:
    for col in df.columns:
        dtype = df[col].dtype
        if pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype):
            df[col] = df[col].astype(str)  # pandas 3: the default ``str`` dtype, NaN kept
    return df


def load_dataset(name: str) -> pd.DataFrame:
    """Load one bundled dataset as a validated tidy run table.

    Parameters
    ----------
    name
        One of ``list_datasets()["name"]``: ``"olmo-ladder"``, ``"hitchhiker"``,
        ``"deepmind-routing"`` or ``"nanogpt-replicates"``.

    Returns
    -------
    pandas.DataFrame
        One row per evaluated checkpoint, sorted by ``(family, run, tokens)``, with the required
        columns ``family``, ``run``, ``params``, ``tokens``, ``loss`` (nats per token, except where
        the ``dataset`` column says the scale is unknown), the optional columns that the source
        provides (``seed``, ``config``, ``arch``, ``step``, ``batch_size``, ``run_tokens``,
        ``dataset``, ``lr_schedule``, ``source``; the learning-rate schedule columns
        ``schedule``, ``warmup_tokens``, ``final_lr_fraction``, ``schedule_tokens``,
        ``decay_tokens`` and ``lr`` where the data card gives a source for them) and
        dataset-specific extras. String columns (``schedule`` included) have the plain
        ``str`` dtype; ``step``/``batch_size``/``run_tokens`` are nullable ``Int64``; the
        numeric schedule columns are float64, NaN for runs without a known schedule.

    Raises
    ------
    ValueError
        If ``name`` is not a bundled dataset (the message lists the valid names).
    bayescale.DataError
        If the bundled file does not pass :func:`bayescale.data.validate.validate`.
    """
    df = pd.read_csv(_path(name), compression="gzip", low_memory=False)
    for col in _NULLABLE_INT_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype("Int64")
    for col in _FLOAT_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype("float64")
    for col in _STRING_COLUMNS:
        if col in df.columns:
            # an all-empty column is read as float; keep its NaN as missing, not as "nan"
            df[col] = df[col].astype(str).where(df[col].notna())
    df = _plain_strings(df)
    df = validate(df)
    return _plain_strings(df)


def list_datasets() -> pd.DataFrame:
    """Describe the bundled datasets.

    Returns
    -------
    pandas.DataFrame
        One row per dataset with columns ``name``, ``description`` (one line), ``rows``,
        ``runs``, ``families`` and ``license``. Counts are read from the bundled files.
    """
    records = []
    for name, info in DATASETS.items():
        ids = pd.read_csv(_path(name), compression="gzip", usecols=["family", "run"])
        records.append(
            {
                "name": name,
                "description": info.description,
                "rows": len(ids),
                "runs": ids["run"].nunique(),
                "families": ids["family"].nunique(),
                "license": info.license,
            }
        )
    out = pd.DataFrame.from_records(records)
    for col in ("name", "description", "license"):
        out[col] = out[col].astype(str)
    return out
