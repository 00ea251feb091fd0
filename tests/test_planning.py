"""Experiment design (``fit.next_runs``): preposterior importance sampling on a small simulated
ladder (one shared fit, 2 chains x 200 draws; the exact-refit check is ``slow``)."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from bayescale.errors import DataError, ScheduleWarning
from bayescale.planning import (
    NextRuns,
    UnreliableEstimateWarning,
    next_runs,
    plot_next_runs,
    reweighted_band,
    target_band,
)
from shared_fits import fit_ladder as _fit
from shared_fits import ladder as _ladder

TARGET = (2e9, 4e10)  # 10x the largest simulated size, 20 tokens per parameter
CONSTANT = {"schedule": "constant", "warmup_tokens": 0.0, "final_lr_fraction": 0.1}
@pytest.fixture(scope="module")
def ladder(ladder_sim):
    return ladder_sim


@pytest.fixture(scope="module")
def fitted(ladder_fit):
    """The session's fit of the ladder (tests/conftest.py; test_scaling uses it too)."""
    return ladder_fit


def _candidates(**extra) -> pd.DataFrame:
    rows = [
        {"candidate": "repeat", "family": "fam0", "params": 2e7, "tokens": 4e8},
        {"candidate": "larger", "family": "fam0", "params": 6e8, "tokens": 1.2e10},
        {"candidate": "longer", "family": "fam0", "params": 2e8, "tokens": 1.6e10},
        {"candidate": "new family", "family": "famX", "params": 2e8, "tokens": 4e9},
    ]
    return pd.DataFrame(rows).assign(**CONSTANT, **extra)


@pytest.fixture(scope="module")
def result(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        return fitted.next_runs(TARGET, _candidates(), budget=6e19, family="fam0",
                                n_simulations=150, random_seed=1)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.drop(columns="tokens"), "lack column"),
        (lambda c: c.assign(params=[2e7, -1.0, 2e8, 2e8]), "rows 1: params"),
        (lambda c: c.assign(tokens=[4e8, np.nan, 1e10, np.inf]), "rows 1, 3: tokens"),
        (lambda c: c.assign(n_seeds=[1, 0, 2.5, 1]), "rows 1, 2: n_seeds"),
        (lambda c: c.assign(cost=[1e18, 0.0, None, 1e18]), "rows 1: cost"),
        (lambda c: c.assign(family=["fam0", None, "fam0", "fam0"]), "rows 1: family"),
        (lambda c: c.assign(candidate=["a", "b", "a", "c"]), "repeated: a"),
        (lambda c: c.assign(schedule="cosinus"), "schedule"),
        (lambda c: c.iloc[:0], "empty"),
    ],
)
def test_bad_candidates_raise_data_errors_naming_rows(fitted, change, message):
    with pytest.raises(DataError, match=message):
        next_runs(fitted, TARGET, change(_candidates()), family="fam0", n_simulations=4)


def test_bad_targets_and_options_raise(fitted):
    cands = _candidates()
    with pytest.raises(DataError, match="family"):  # two families: say which one
        next_runs(fitted, TARGET, cands, n_simulations=4)
    with pytest.raises(DataError, match="rows 0: params"):
        next_runs(fitted, (0.0, 4e10), cands, family="fam0", n_simulations=4)
    with pytest.raises(ValueError, match="band"):
        next_runs(fitted, TARGET, cands, family="fam0", band="wide", n_simulations=4)
    with pytest.raises(ValueError, match="budget"):
        next_runs(fitted, TARGET, cands, budget=-1.0, family="fam0", n_simulations=4)
    with pytest.raises(DataError, match="candidates must be a pandas DataFrame"):
        next_runs(fitted, TARGET, [{"family": "fam0"}], family="fam0", n_simulations=4)


# ----------------------------------------------------------------------------- the table
def test_table_plan_and_alternatives(result):
    assert isinstance(result, NextRuns)
    table = result.table
    assert list(table["reduction_per_flop"]) == sorted(table["reduction_per_flop"], reverse=True)
    kinds = dict(zip(table["candidate"], table["kind"], strict=True))
    assert kinds == {"repeat": "another seed", "larger": "larger model", "longer": "longer run",
                     "new family": "new family"}
    np.testing.assert_allclose(table["expected_reduction"],
                               result.current_width - table["expected_width"])
    assert table["pareto_k_max"].ge(table["pareto_k_mean"]).all()
    # the plan stays within the budget; each alternative is a path from the same start
    assert result.plan["cumulative_cost"].max() <= 6e19 * (1 + 1e-9)
    assert set(result.alternatives) == {"cheapest-first", "largest-affordable-first"}
    cheapest = result.alternatives["cheapest-first"]
    assert list(cheapest["cost"]) == sorted(cheapest["cost"])
    largest = result.alternatives["largest-affordable-first"]
    assert largest["candidate"].iloc[0] == "larger"
    assert "current width" in repr(result)


def test_heavily_observed_configuration_has_little_value(result):
    """Another seed of a configuration already seen six times narrows the band at a far target
    by little; a larger model (closer to the target) by much more."""
    table = result.table.set_index("candidate")
    repeat, larger = table.loc["repeat"], table.loc["larger"]
    assert larger["relative_reduction"] > 0.2
    assert abs(repeat["expected_reduction"]) < 0.1 * larger["expected_reduction"]
    assert abs(repeat["relative_reduction"]) < 0.03


def test_default_and_overridden_cost(fitted, result):
    table = result.table.set_index("candidate")
    assert table.loc["larger", "cost"] == pytest.approx(6 * 6e8 * 1.2e10)
    cands = _candidates(n_seeds=[1, 2, 1, 1])
    cands["cost"] = [np.nan, np.nan, 5.0, 7.0]  # per-row override; NaN keeps the default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        res = next_runs(fitted, TARGET, cands, budget=12.0, family="fam0", n_simulations=40,
                        random_seed=1)
    table = res.table.set_index("candidate")
    assert table.loc["longer", "cost"] == 5.0
    assert table.loc["new family", "cost"] == 7.0
    assert table.loc["larger", "cost"] == pytest.approx(2 * 6 * 6e8 * 1.2e10)
    np.testing.assert_allclose(table["reduction_per_flop"],
                               table["expected_reduction"] / table["cost"])
    # a budget of 12 buys the two overridden runs at most
    assert set(res.plan["candidate"]) <= {"longer", "new family"}
    assert res.plan["cumulative_cost"].max() <= 12.0


def test_new_family_candidate_goes_through_the_hierarchy(fitted, result):
    table = result.table.set_index("candidate")
    new = table.loc["new family"]
    # a run of another family says little about fam0's extrapolation
    assert abs(new["expected_reduction"]) < 0.5 * table.loc["larger", "expected_reduction"]
    assert new["pareto_k_mean"] < 0.7
    # a target in the new family itself: a run of that family narrows its band a lot
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        res = next_runs(fitted, (6e8, 1.2e10), _candidates().iloc[[3]], family="famX",
                        n_simulations=40, random_seed=2)
    assert res.table["relative_reduction"].iloc[0] > 0.2


def test_high_pareto_k_is_reported(fitted):
    """Thirty seeds with many checkpoints near the target pin the law far beyond what 400
    draws can represent: flagged in the table and warned about, never silently."""
    cands = pd.DataFrame([{"candidate": "flood", "family": "fam0", "params": 1e9,
                           "tokens": 2e10, "n_seeds": 30, **CONSTANT}])
    with pytest.warns(UnreliableEstimateWarning, match="flood"):
        res = next_runs(fitted, TARGET, cands, family="fam0", n_simulations=40,
                        n_checkpoints=20, random_seed=3)
    row = res.table.iloc[0]
    assert row["pareto_k_max"] > 0.7
    assert row["share_k_high"] > 0.1
    assert not row["reliable"]
    assert not res.plan["reliable"].iloc[0]


def test_reproducible_with_a_seed(fitted):
    cands = _candidates().iloc[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableEstimateWarning)
        a = next_runs(fitted, TARGET, cands, family="fam0", n_simulations=30, random_seed=5)
        b = next_runs(fitted, TARGET, cands, family="fam0", n_simulations=30, random_seed=5)
    pd.testing.assert_frame_equal(a.table, b.table)


def test_target_band_matches_predict(fitted):
    """The width next_runs starts from is the fit's own predictive band (computed exactly from
    the mixture rather than from samples)."""
    for band in ("mean", "observed"):
        width = target_band(fitted, TARGET, family="fam0", band=band)["width"].iloc[0]
        pred = fitted.predict(*TARGET, family="fam0", levels=(0.9,))[band].sel(level=0.9)
        sampled = (pred.sel(bound="upper") - pred.sel(bound="lower")).item()
        assert width == pytest.approx(sampled, rel=0.05)


def test_scheduled_candidate_on_a_fit_without_kappa(fitted):
    """A cosine run's checkpoints before its anneal need kappa, which a fit of constant-LR runs
    does not have: only its final checkpoint is used, with a warning that says so."""
    cands = pd.DataFrame([{"candidate": "cosine", "family": "fam0", "params": 2e8,
                           "tokens": 8e9, "schedule": "cosine", "warmup_tokens": 1e8,
                           "final_lr_fraction": 0.1}])
    with pytest.warns(ScheduleWarning, match="cosine"):
        res = next_runs(fitted, TARGET, cands, family="fam0", n_simulations=10,
                        alternatives=False)
    assert res.table["checkpoints"].iloc[0] == 1
    assert res.notes


def test_plot(result):
    import matplotlib.pyplot as plt

    ax = plot_next_runs(result)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "recommended plan" in labels and "cheapest-first" in labels
    plt.close(ax.figure)


def test_cli_design(fitted, tmp_path, capsys):
    from bayescale.cli import build_parser, main

    assert "design" in build_parser().format_help()
    path = fitted.save(tmp_path / "fit.nc")
    cands = tmp_path / "candidates.csv"
    _candidates().iloc[:2].to_csv(cands, index=False)
    plot = tmp_path / "plan.png"
    code = main(["design", str(path), "--candidates", str(cands), "--params", "2e9",
                 "--tokens", "4e10", "--family", "fam0", "--simulations", "20", "--budget",
                 "1e20", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    assert "larger" in out and "greedy plan" in out
    assert plot.exists()
    code = main(["design", str(path), "--candidates", str(cands), "--family", "fam0"])
    assert code == 2
    assert "--params and --tokens" in capsys.readouterr().err


# ----------------------------------------------------------------------------- exact refit
def _truth_run(sim, name: str, family: str, params: float, tokens: float, seed: int,
               n_checkpoints: int = 8) -> pd.DataFrame:
    """A new run drawn from the simulation's true law and noise, checkpoints over its last
    80% (the part a fit uses)."""
    rng = np.random.default_rng(seed)
    law = sim.families.loc[family]
    t = np.geomspace(0.2 * tokens, tokens, n_checkpoints)
    log_mu = np.log(law.E + law.A / params**law.alpha + law.B / t**law.beta)
    loss = np.exp(log_mu + sim.sigma_seed * rng.standard_normal()
                  + sim.sigma_obs * rng.standard_normal(t.size))
    return pd.DataFrame({"family": family, "run": name, "params": params, "tokens": t,
                         "loss": loss, "seed": 0, "config": name, "run_tokens": tokens,
                         "schedule_tokens": tokens, "decay_tokens": np.nan, **CONSTANT})


@pytest.mark.slow
def test_importance_sampling_agrees_with_an_exact_refit():
    """Reweighting the draws by a new run's likelihood gives the band an actual refit with the
    run gives (2 chains x 1000 draws; within 10%)."""
    sim, runs = _ladder(seed=7)
    fit = _fit(runs, draws=1000, tune=1000)
    before = target_band(fit, TARGET, family="fam0")["width"].iloc[0]
    for name, family, params, tokens in (("new-6e8", "fam0", 6e8, 1.2e10),
                                         ("new-fam1", "fam1", 6e8, 1.2e10)):
        new = _truth_run(sim, name, family, params, tokens, seed=11)
        expected, k = reweighted_band(fit, TARGET, new, family="fam0")
        expected = expected["width"].iloc[0]
        refit = _fit(pd.concat([runs, new], ignore_index=True), draws=1000, tune=1000)
        realised = target_band(refit, TARGET, family="fam0")["width"].iloc[0]
        assert k < 0.7
        assert expected == pytest.approx(realised, rel=0.1), (name, before)

