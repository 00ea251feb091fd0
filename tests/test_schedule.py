"""Learning-rate schedules: reconstruction, areas, the lagged LR, and the schedule-aware law."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.data.schedule import (
    SCHEDULE_COLUMNS,
    RunSchedule,
    features_from_lr,
    features_from_schedule,
    schedule_features,
)
from bayescale.laws.chinchilla import chinchilla_log_loss_ref
from bayescale.laws.schedule import point_schedule, schedule_covariates
from bayescale.models.design import build_design

T = 1e10


def test_cosine_and_linear_areas_match_closed_forms():
    f = 0.1
    t = np.linspace(0.05, 1.0, 9) * T
    cos = RunSchedule("cosine", 0.0, f, T)
    lin = RunSchedule("linear", 0.0, f, T)
    np.testing.assert_allclose(cos.lr_fraction(t), f + (1 - f) * 0.5 * (1 + np.cos(np.pi * t / T)))
    # S1 by hand: the integrals of the two shapes
    area_cos = f * t + (1 - f) / 2 * (t + T / np.pi * np.sin(np.pi * t / T))
    area_lin = t - (1 - f) * t**2 / (2 * T)
    for sched, want in ((cos, area_cos), (lin, area_lin)):
        _, area, _, area_end, _ = features_from_schedule(sched, t, lag_tokens=0.01 * T)
        np.testing.assert_allclose(area, want, rtol=1e-6)
        assert area_end == pytest.approx(T * (1 + f) / 2, rel=1e-6)


def test_warmup_wsd_and_floor_after_the_schedule():
    w = 0.01 * T
    wsd = RunSchedule("wsd", w, 0.0, T, decay_tokens=0.2 * T)
    t = np.array([0.5 * w, w, 0.5 * T, 0.8 * T, 0.9 * T, T, 1.2 * T])
    np.testing.assert_allclose(wsd.lr_fraction(t), [0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0])
    held = RunSchedule("cosine", 0.0, 0.1, 0.8 * T)  # GPT-3: the floor is held after the decay
    assert held.lr_fraction(np.array([T]))[0] == pytest.approx(0.1)
    # the area grows at the floor's rate after the schedule ends
    _, area, _, area_end, _ = features_from_schedule(held, np.array([0.8 * T, T]), 0.01 * T)
    assert area[1] - area[0] == pytest.approx(0.1 * 0.2 * T, rel=1e-6)
    assert area_end == pytest.approx(area[0])


def test_lagged_lr_is_exact_for_a_linear_decay():
    # g' = (h - g) / l with h = 1 - k t and g(0) = 1 gives g = h + k l (1 - exp(-t / l))
    lag, k = 0.05 * T, 0.9 / T
    sched = RunSchedule("linear", 0.0, 0.1, T)
    t = np.linspace(0.0, 1.0, 11) * T
    _, _, anneal, _, _ = features_from_schedule(sched, t, lag)
    want = (1 - k * t) + k * lag * (1 - np.exp(-t / lag))
    np.testing.assert_allclose(anneal, want, rtol=1e-9)


def test_logged_lr_gives_the_same_features_as_the_reconstruction():
    sched = RunSchedule("cosine", 0.0, 0.1, T)
    t = np.linspace(0.002, 1.0, 400) * T
    lr = 3e-4 * sched.lr_fraction(t)
    _, area, anneal, area_end, anneal_end = features_from_schedule(sched, t, 0.02 * T)
    _, area_lr, anneal_lr, area_end_lr, anneal_end_lr = features_from_lr(t, lr, 0.02 * T)
    np.testing.assert_allclose(area_lr, area, rtol=2e-3)
    np.testing.assert_allclose(anneal_lr, anneal, atol=2e-3)
    assert area_end_lr == pytest.approx(area_end, rel=1e-3)
    assert anneal_end_lr == pytest.approx(anneal_end, abs=1e-3)


@pytest.mark.parametrize("shape", ["cosine", "linear", "wsd", "inverse_sqrt", "constant"])
def test_law_reduces_to_chinchilla_at_the_end_of_the_schedule(shape):
    spec = {"schedule": shape, "warmup_tokens": 0.01 * T, "final_lr_fraction": 0.1,
            "schedule_tokens": T, "decay_tokens": 0.2 * T}
    d_eff, excess, _ = point_schedule(np.full(3, 1e8), np.array([0.3 * T, 0.6 * T, T]), spec)
    assert d_eff[-1] == pytest.approx(T) and excess[-1] == pytest.approx(0.0, abs=1e-12)
    if shape in ("cosine", "linear", "wsd"):
        # mid-run: more forward area than the tokens imply, and an LR not yet annealed
        assert np.all(excess[:-1] > 0)
        assert d_eff[0] > 0.3 * T
    if shape == "constant":
        np.testing.assert_allclose(excess, 0.0, atol=1e-12)


def test_predict_at_the_end_of_a_run_equals_the_plain_law():
    sim = bayescale.simulate(n_families=1, sizes=(2e7, 6e7, 2e8), n_seeds=1, n_checkpoints=12,
                             schedule="cosine", budgets=(0.5, 1.0, 2.0), random_seed=3)
    fit = bayescale.fit(sim.runs, draws=100, tune=150, chains=1, progressbar=False,
                        random_seed=1)
    assert "kappa" in fit.idata.posterior
    spec = {"schedule": "cosine", "warmup_tokens": 1e8, "final_lr_fraction": 0.1,
            "schedule_tokens": 4e10}
    end = fit.predict(2e9, 4e10, family="fam0", schedule=spec)
    plain = fit.predict(2e9, 4e10, family="fam0")
    np.testing.assert_allclose(end["median"].values, plain["median"].values, rtol=1e-9)
    mid = fit.predict(2e9, 1e10, family="fam0", schedule=spec)
    plain_mid = fit.predict(2e9, 1e10, family="fam0")
    # mid-run: the law with D_eff, kappa's excess and the tilt, computed by hand for every draw
    theta = fit.posterior_draws("theta")[:, 0, :]
    kappa = fit.posterior_draws("kappa")[:, 0]
    tilt = fit.posterior_draws("tilt")
    d_eff, excess, tilt_cov = point_schedule(np.array([2e9]), np.array([1e10]), spec)
    assert tilt_cov[0] == pytest.approx(20 * 2e9 / 4e10 * np.log(4e10 / d_eff[0]), rel=1e-12)
    by_hand = np.exp(chinchilla_log_loss_ref(
        np.log(2e9 / fit.n0), np.log(d_eff[0] / fit.d0), theta[:, 0], theta[:, 1],
        np.exp(theta[:, 2]), theta[:, 3], np.exp(theta[:, 4])) + kappa * excess[0]
        + tilt * tilt_cov[0])
    assert mid["median"].values[0] == pytest.approx(float(np.median(by_hand)), rel=1e-9)
    assert mid["median"].values[0] != pytest.approx(plain_mid["median"].values[0], rel=1e-4)


def test_design_uses_effective_tokens_and_zero_excess_at_run_ends():
    sim = bayescale.simulate(n_families=1, sizes=(2e7, 6e7), n_seeds=1, n_checkpoints=6,
                             schedule="wsd", random_seed=0)
    data = bayescale.validate(sim.runs)
    design = build_design(data)
    assert design.has_schedule
    last = np.r_[design.obs_run[1:] != design.obs_run[:-1], True]
    np.testing.assert_allclose(design.obs_anneal[last], 0.0, atol=1e-12)
    tokens = data["tokens"].to_numpy()
    np.testing.assert_allclose(np.exp(design.obs_log_d[last]) * design.d0, tokens[last],
                               rtol=1e-9)
    constant = build_design(bayescale.validate(bayescale.simulate(n_families=1,
                                                                  random_seed=0).runs))
    assert not constant.has_schedule


def test_tilt_covariate_vanishes_at_run_ends_and_without_an_anneal():
    """v = (20 N / T) log(T / D_eff) on annealing runs; 0 at each run's end, on a constant
    schedule and on runs without a schedule."""
    runs = pd.DataFrame({"run": ["a"] * 3 + ["c"] * 3 + ["u"] * 3, "family": "f",
                         "params": 1e8, "tokens": [1e9, 2e9, 4e9] * 3, "loss": 3.0,
                         "schedule": ["cosine"] * 3 + ["constant"] * 3 + [None] * 3,
                         "warmup_tokens": [1e7] * 3 + [0.0] * 3 + [np.nan] * 3,
                         "final_lr_fraction": [0.1] * 3 + [1.0] * 3 + [np.nan] * 3,
                         "schedule_tokens": [4e9] * 6 + [np.nan] * 3})
    d_eff, _, tilt, _ = schedule_covariates(runs)
    want = 20 * 1e8 / 4e9 * np.log(4e9 / d_eff[:3])
    np.testing.assert_allclose(tilt[:3], want, rtol=1e-12)
    assert tilt[0] > tilt[1] > 0
    assert tilt[2] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(tilt[3:], 0.0, atol=0)
    # at a run's end every correction vanishes, so a design of final losses has no tilt
    ends = bayescale.simulate(n_families=1, sizes=(2e7, 2e8), n_checkpoints=2, first_fraction=0.999,
                              schedule="cosine", random_seed=0).runs
    assert not build_design(bayescale.validate(ends)).has_tilt


def test_runs_without_schedule_get_the_plain_law():
    runs = pd.DataFrame({"run": ["a"] * 3 + ["b"] * 3, "family": "f", "params": 1e8,
                         "tokens": [1e9, 2e9, 4e9] * 2, "loss": 3.0,
                         "schedule": ["cosine"] * 3 + [None] * 3,
                         "warmup_tokens": [1e7] * 3 + [np.nan] * 3,
                         "final_lr_fraction": [0.1] * 3 + [np.nan] * 3,
                         "schedule_tokens": [4e9] * 3 + [np.nan] * 3})
    d_eff, excess, _, scheduled = schedule_covariates(runs)
    np.testing.assert_array_equal(scheduled, [True] * 3 + [False] * 3)
    np.testing.assert_allclose(d_eff[3:], [1e9, 2e9, 4e9])
    np.testing.assert_allclose(excess[3:], 0.0)
    assert np.all(excess[:2] > 0)


def test_unscheduled_runs_are_fitted_from_their_end_with_a_warning():
    sim = bayescale.simulate(n_families=1, sizes=(2e7, 6e7, 2e8), n_seeds=1, n_checkpoints=20,
                             random_seed=2)
    runs = sim.runs.drop(columns=["schedule"])
    window = bayescale.fit_window(bayescale.validate(runs))
    assert set(window.unscheduled) == set(runs["run"].unique())
    frac = window.runs["tokens"] / window.runs["run_tokens"]
    assert frac.min() >= 0.9 * (1 - 1e-9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = bayescale.fit(runs, draws=50, tune=50, chains=1, progressbar=False)
    schedule_warnings = [w for w in caught if issubclass(w.category, bayescale.ScheduleWarning)]
    assert len(schedule_warnings) == 1
    assert "no learning-rate schedule" in str(schedule_warnings[0].message)
    assert len(fit.data) == len(window.runs)
    # with the schedule given (constant), every checkpoint past the first fifth is fitted
    with warnings.catch_warnings():
        warnings.simplefilter("error", bayescale.ScheduleWarning)
        window = bayescale.fit_window(bayescale.validate(sim.runs))
    assert window.unscheduled == []
    assert len(window.runs) > 2 * len(fit.data)


def test_unscheduled_runs_of_one_length_are_fitted_late_with_a_warning():
    # every run ends at the same tokens (as in the routing study): their mid-run checkpoints
    # are still not final losses, so only the late part is fitted, and the warning says the
    # D-dependence then comes mostly from the priors
    runs = _one_length_runs()
    window = bayescale.fit_window(bayescale.validate(runs))
    assert set(window.unscheduled) == set(runs["run"].unique())
    assert window.one_length == list(runs["family"].unique())
    assert window.runs["tokens"].min() >= 0.9 * 4e9 * (1 - 1e-9)
    whole = bayescale.fit_window(bayescale.validate(runs), unscheduled_from=None)
    assert whole.unscheduled == [] and whole.runs["tokens"].min() >= 0.2 * 4e9 * (1 - 1e-9)
    # the warning fit gives (through warn_if_unscheduled, as the test above checks end to end);
    # the fit itself: test_unscheduled_runs_of_one_length_warn_once_in_a_fit (slow)
    fit_module = importlib.import_module("bayescale.fit")  # the module, not bayescale.fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_module.warn_if_unscheduled(window, 0.9)
    messages = [str(w.message) for w in caught if issubclass(w.category, bayescale.ScheduleWarning)]
    assert len(messages) == 1
    assert "from 90% of each run" in messages[0] and "all end at one length" in messages[0]


def _one_length_runs() -> pd.DataFrame:
    sim = bayescale.simulate(n_families=1, sizes=(2e7, 6e7, 2e8), n_seeds=1, n_checkpoints=20,
                             random_seed=2)
    runs = sim.runs.drop(columns=list(SCHEDULE_COLUMNS)).assign(run_tokens=4e9)
    runs["tokens"] = np.tile(np.geomspace(2e8, 4e9, 20), 3)
    return runs


@pytest.mark.slow  # a compile; the default suite checks the window and the warning's text above
def test_unscheduled_runs_of_one_length_warn_once_in_a_fit():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bayescale.fit(_one_length_runs(), draws=30, tune=30, chains=1, progressbar=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, bayescale.ScheduleWarning)]
    assert len(messages) == 1
    assert "from 90% of each run" in messages[0] and "all end at one length" in messages[0]


def test_unscheduled_runs_of_many_lengths_do_not_claim_one_length():
    sim = bayescale.simulate(n_families=1, sizes=(2e7, 6e7, 2e8), n_seeds=1, n_checkpoints=20,
                             random_seed=2)
    runs = sim.runs.drop(columns=list(SCHEDULE_COLUMNS))
    window = bayescale.fit_window(bayescale.validate(runs))
    lengths = runs.groupby("run")["tokens"].max()
    assert lengths.max() / lengths.min() > 1.5  # the simulated budgets differ
    assert window.one_length == []
    assert set(window.unscheduled) == set(runs["run"].unique())


def test_schedule_features_follow_table_order_within_runs():
    sim = bayescale.simulate(n_families=1, sizes=(2e7,), n_seeds=2, n_checkpoints=5,
                             schedule="cosine", random_seed=0)
    data = bayescale.validate(sim.runs)
    feats = schedule_features(data)
    per_run = pd.Series(feats.area).groupby(data["run"].to_numpy()).apply(
        lambda x: bool(np.all(np.diff(x.to_numpy()) > 0)))
    assert per_run.all()


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["cosine", "wsd"])
def test_schedule_law_parameters_are_recovered(shape):
    """Data simulated under a cosine or WSD schedule: kappa, the within-run tilt, beta and the
    final losses are recovered inside their 90% intervals."""
    sim = bayescale.simulate(n_families=2, sizes=(2e7, 6e7, 2e8, 6e8), n_seeds=1,
                             n_checkpoints=25, schedule=shape, budgets=(0.5, 1.0, 2.0),
                             kappa=0.06, tilt=0.03, sigma_seed=0.003, sigma_obs=0.003,
                             random_seed=11)
    fit = bayescale.fit(sim.runs, draws=500, tune=500, chains=2, progressbar=False,
                        random_seed=0)
    kappa = fit.posterior_draws("kappa")
    lo, hi = np.quantile(kappa, [0.05, 0.95], axis=0)
    assert np.all((lo <= 0.06) & (0.06 <= hi)), (lo, hi)
    tilt = fit.posterior_draws("tilt")
    assert np.quantile(tilt, 0.05) <= 0.03 <= np.quantile(tilt, 0.95)
    for f, fam in enumerate(fit.families):
        beta = fit.posterior_draws("beta")[:, f]
        assert np.quantile(beta, 0.05) <= sim.families.loc[fam, "beta"] <= np.quantile(beta, 0.95)
    # a larger model's final loss, extrapolated
    truth = sim.true_loss("fam0", np.array([2e9]), np.array([4e10]))[0]
    band = fit.predict(2e9, 4e10, family="fam0")["mean"].sel(level=0.9).values[0]
    assert band[0] <= truth <= band[1]
