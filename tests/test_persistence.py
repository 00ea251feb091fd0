"""A run table survives a NetCDF file unchanged (the ``fit_data`` group of a saved fit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.persistence import dataset_to_frame, frame_to_dataset


def test_missing_text_values_come_back_missing_through_a_netcdf_file(tmp_path):
    runs = pd.DataFrame({
        "family": ["a", "a", "b"],
        "run": ["a-1", "a-2", "b-1"],
        "params": [1e8, 2e8, 1e8],
        "schedule": ["cosine", np.nan, "linear"],
        "arch": [np.nan, "dense", "moe"],
        "seed": pd.array([0, pd.NA, 1], dtype="Int64"),
    })
    path = tmp_path / "runs.nc"
    frame_to_dataset(runs).to_netcdf(path)
    with xr.open_dataset(path) as ds:
        back = dataset_to_frame(ds.load())
    assert list(back.columns) == list(runs.columns)
    assert back["schedule"].isna().tolist() == [False, True, False]
    assert back["arch"].isna().tolist() == [True, False, False]
    assert back.loc[[0, 2], "schedule"].tolist() == ["cosine", "linear"]
    assert back["family"].tolist() == ["a", "a", "b"]
    np.testing.assert_array_equal(back["seed"].to_numpy(float), [0.0, np.nan, 1.0])
