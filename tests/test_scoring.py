"""The helpers batch and evaluate share (bayescale.scoring) and the names made public with them."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.batch import client_for
from bayescale.fit import warn_if_unscheduled
from bayescale.scoring import bayescale_fit_kwargs, grid_split, summarize_warnings
from bayescale.simulate import checkpoint_noise


def test_summarize_warnings_keeps_distinct_first_lines_and_drops_deprecations():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("slow\nsecond line", bayescale.SamplingWarning, stacklevel=1)
        warnings.warn("slow\nother", bayescale.SamplingWarning, stacklevel=1)
        warnings.warn("old", DeprecationWarning, stacklevel=1)
        warnings.warn("cut", bayescale.ScheduleWarning, stacklevel=1)
    assert summarize_warnings(caught) == "SamplingWarning: slow; ScheduleWarning: cut"
    assert summarize_warnings([]) == ""


def test_bayescale_fit_kwargs_defaults_and_single_checkpoint_runs():
    many = pd.DataFrame({"run": ["a", "a", "b"]})
    assert bayescale_fit_kwargs(many, None, 3) == {"progressbar": False, "random_seed": 3}
    single = pd.DataFrame({"run": ["a", "b"]})
    assert bayescale_fit_kwargs(single, {"random_seed": 5}, 3) == {
        "progressbar": False, "random_seed": 5, "autocorrelation": "none"
    }
    assert bayescale_fit_kwargs(single, {"autocorrelation": "order"}, 0)["autocorrelation"] == (
        "order"
    )


def test_grid_split_holds_out_the_largest_model():
    runs = bayescale.simulate(n_families=1, sizes=(2e7, 6e7, 2e8), n_seeds=1,
                              n_checkpoints=10, random_seed=0).runs
    train, target, sizes = grid_split(runs, None, 0.3)
    assert list(sizes) == sorted(train["params"].unique(), reverse=True)
    assert set(target["params"]) == {runs["params"].max()}
    assert (train["_run_end"] >= train["tokens"]).all()
    with pytest.raises(ValueError, match="single family"):
        grid_split(pd.concat([runs, runs.assign(family="other")]), None, 0.3)


def test_checkpoint_noise_is_seeded_and_ar1():
    a = checkpoint_noise(np.random.default_rng(0), 5000, 0.1, "normal", 3.0, 0.9)
    b = checkpoint_noise(np.random.default_rng(0), 5000, 0.1, "normal", 3.0, 0.9)
    np.testing.assert_array_equal(a, b)
    assert np.corrcoef(a[1:], a[:-1])[0, 1] == pytest.approx(0.9, abs=0.03)
    assert np.std(a) == pytest.approx(0.1, rel=0.15)
    white = checkpoint_noise(np.random.default_rng(0), 5000, 0.1, "student_t", 3.0, 0.0)
    assert abs(np.corrcoef(white[1:], white[:-1])[0, 1]) < 0.05


def test_warn_if_unscheduled_names_the_runs():
    runs = bayescale.simulate(n_families=1, sizes=(2e7, 6e7), n_seeds=1, n_checkpoints=10,
                              random_seed=0).runs[["family", "run", "params", "tokens", "loss"]]
    window = bayescale.fit_window(bayescale.validate(runs), 0.2, 0.9)
    assert window.unscheduled
    with pytest.warns(bayescale.ScheduleWarning, match="no learning-rate schedule"):
        warn_if_unscheduled(window, 0.9)


def test_client_for_passes_a_given_client_through():
    given = object()
    with client_for(given, None) as client:  # type: ignore[arg-type]
        assert client is given
