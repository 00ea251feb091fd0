"""The file format of a saved fit: a run table stored in InferenceData, and reading it back.

A fit is written as one NetCDF file by :meth:`bayescale.fit_base.FitBase.save`: the sampler's
groups plus ``observed_data`` and ``fit_data`` (the run table, one row per ``obs``). The
attributes of ``fit_data`` carry the fit's metadata (``bayescale_meta``, JSON), the format
version (``bayescale_format``) and the run table's column order (``columns``).
:func:`bayescale.load` reads it back with :func:`read_fit_file` and picks the fit class by law.

This module sits below every fit class: it knows the file layout, not the fits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayescale.quiet import quiet_arviz

__all__ = ["FORMAT_VERSION", "dataset_to_frame", "fit_data_group", "frame_to_dataset",
           "read_fit_file"]

#: Version of the saved-fit layout, stored as the ``bayescale_format`` attribute of ``fit_data``.
FORMAT_VERSION = 1


def frame_to_dataset(df: pd.DataFrame) -> xr.Dataset:
    """A run table as an :class:`xarray.Dataset` over ``obs`` that NetCDF can store.

    Parameters
    ----------
    df
        The run table (any index; it is dropped).

    Returns
    -------
    xarray.Dataset
        One variable per column over dim ``obs``. Nullable numeric and boolean columns become
        float64 (missing values NaN, as NetCDF has no NA); other non-numeric columns become
        strings. The attribute ``columns`` (JSON) keeps the column order.
    """
    frame = df.reset_index(drop=True).copy()
    for col in frame.columns:
        series = frame[col]
        if isinstance(series.dtype, pd.api.extensions.ExtensionDtype) and (
            pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
        ):
            # nullable Int64/Float64/boolean: NetCDF has no NA; missing values become NaN
            frame[col] = series.to_numpy(dtype="float64", na_value=np.nan)
        elif not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
            frame[col] = series.astype(str).to_numpy(dtype=object)
    frame.index.name = "obs"
    ds = xr.Dataset.from_dataframe(frame)
    ds.attrs["columns"] = json.dumps(list(frame.columns))
    return ds


def dataset_to_frame(ds: xr.Dataset) -> pd.DataFrame:
    """The run table stored by :func:`frame_to_dataset`, columns in their original order.

    Parameters
    ----------
    ds
        A dataset written by :func:`frame_to_dataset` (e.g. a saved fit's ``fit_data``).

    Returns
    -------
    pandas.DataFrame
        The run table with a fresh ``RangeIndex``; ``family`` and ``run`` are strings. In the
        other text columns an empty string is a missing value (NaN), as it was before saving.
    """
    columns = json.loads(ds.attrs["columns"])
    frame = ds.to_dataframe().reset_index(drop=True)[columns]
    for col in ("family", "run"):
        frame[col] = frame[col].astype(str)
    for col in frame.columns:
        # NetCDF writes a missing string as "": read it back as missing, or a run without a
        # schedule would come back with schedule "" (a schedule to reconstruct)
        if col not in ("family", "run") and not (
            pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col])
        ):
            frame[col] = frame[col].mask(frame[col].astype(str) == "")
    return frame


def fit_data_group(data: pd.DataFrame, meta: dict[str, Any]) -> xr.Dataset:
    """The ``fit_data`` group of a saved fit: its run table, metadata and format version.

    Parameters
    ----------
    data
        The run table the fit was fitted to.
    meta
        The fit's metadata (JSON-serialisable).

    Returns
    -------
    xarray.Dataset
        :func:`frame_to_dataset` of ``data`` with the attributes ``bayescale_meta`` and
        ``bayescale_format``.
    """
    fit_data = frame_to_dataset(data)
    fit_data.attrs["bayescale_meta"] = json.dumps(meta)
    fit_data.attrs["bayescale_format"] = FORMAT_VERSION
    return fit_data


def read_fit_file(path: str | Path) -> tuple[az.InferenceData, pd.DataFrame, dict[str, Any]]:
    """Read a saved fit into memory: its InferenceData, run table and metadata.

    Parameters
    ----------
    path
        A NetCDF file written by a fit's ``save``.

    Returns
    -------
    tuple of (arviz.InferenceData, pandas.DataFrame, dict)
        The loaded InferenceData (all groups in memory), the run table of ``fit_data`` and the
        metadata (``meta["law"]`` names the fit's law).

    Raises
    ------
    ValueError
        If the file has no ``fit_data`` group (it is not a bayescale fit).
    """
    with quiet_arviz():
        idata = az.from_netcdf(str(path))
    if "fit_data" not in idata.groups():
        raise ValueError(f"{path} is not a bayescale fit (no fit_data group)")
    idata.load()
    fit_data = idata["fit_data"]
    meta = json.loads(fit_data.attrs["bayescale_meta"])
    return idata, dataset_to_frame(fit_data), meta
