"""The interval helpers that prediction and derived-quantity datasets share."""

from __future__ import annotations

import numpy as np
import pytest

from bayescale.derived import quantity_dataset
from bayescale.intervals import (
    broadcast_inputs,
    broadcast_points,
    equal_tailed,
    interval_levels,
    level_coords,
    prediction_dataset,
    quantiles,
)


def test_broadcast_points_is_broadcast_inputs_of_params_and_tokens():
    n, d = broadcast_points([1e8, 2e8], 1e10)
    both = broadcast_inputs(params=[1e8, 2e8], tokens=1e10)
    assert np.array_equal(n, both["params"]) and np.array_equal(d, both["tokens"])
    assert d.tolist() == [1e10, 1e10]
    with pytest.raises(ValueError, match="tokens must be positive"):
        broadcast_points(1e8, -1.0)
    with pytest.raises(ValueError, match="loss is empty"):
        broadcast_inputs(loss=[])


def test_levels_quantiles_and_equal_tailed_intervals():
    assert interval_levels([0.5, 0.9]) == (0.5, 0.9)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        interval_levels([0.9, 1.0])
    samples = np.arange(101.0)[:, None] * np.array([1.0, 2.0])
    bounds = equal_tailed(samples, (0.5, 0.9))
    assert bounds.shape == (2, 2, 2)
    assert np.allclose(bounds[0], [[25.0, 75.0], [5.0, 95.0]])
    assert np.array_equal(bounds[1], 2 * bounds[0])
    with_inf = np.r_[np.arange(10.0), np.full(10, np.inf)][:, None]
    assert quantiles(with_inf, np.array([0.25, 0.95]))[:, 0].tolist() == [4.75, np.inf]
    assert set(level_coords((0.5,))) == {"level", "bound"}


def test_both_datasets_use_the_same_intervals():
    rng = np.random.default_rng(1)
    samples = rng.lognormal(size=(200, 3))
    pred = prediction_dataset(np.ones(3), np.ones(3), np.median(samples, 0), {"mean": samples})
    quantity = quantity_dataset({"loss": samples}, {"params": np.ones(3)})
    assert np.array_equal(pred["mean"].values, quantity["loss_interval"].values)
    assert np.array_equal(pred["median"].values, quantity["loss"].values)
