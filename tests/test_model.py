"""The hierarchical model: recovery, borrowing, prediction, persistence, reproducibility.

Compilation costs ~10 s per model, so the fitted fits are module-scoped fixtures shared by the
tests below.
"""

from __future__ import annotations

import importlib
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.models.hierarchical import LAW_PARAMS

FAST = {"draws": 500, "tune": 1000, "chains": 2, "progressbar": False}


def _single_run_family(seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """One run of a new family drawn from the same population (its true law returned)."""
    sim = bayescale.simulate(n_families=1, sizes=(2e8,), n_seeds=1, n_checkpoints=20,
                             random_seed=seed)
    runs = sim.runs.assign(family="lone", run="lone-run", config="lone-2e8")
    return runs, sim.families.iloc[0]


@pytest.fixture(scope="module")
def sim():
    return bayescale.simulate(n_families=4, sizes=(2e7, 6e7, 2e8, 6e8), n_seeds=2,
                              n_checkpoints=20, random_seed=11)


@pytest.fixture(scope="module")
def lone():
    return _single_run_family(seed=99)


@pytest.fixture(scope="module")
def hier_fit(sim, lone):
    runs = pd.concat([sim.runs, lone[0]], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        # every checkpoint: this hard design (1.5 decades of sizes, a one-run family) is a
        # sampler test, and the simulated curves follow the law from their first checkpoint
        return bayescale.fit(runs, random_seed=1, fit_from=None, **FAST)


def test_posterior_structure(hier_fit):
    post = hier_fit.idata.posterior
    assert set(post["family"].values) == {"fam0", "fam1", "fam2", "fam3", "lone"}
    assert post["alpha"].dims == ("chain", "draw", "family")
    assert post["run_effect"].sizes["run"] == 4 * 4 * 2 + 1
    assert {"observed_data", "log_likelihood", "fit_data", "sample_stats"} <= set(
        hier_fit.idata.groups()
    )
    # two seeds per configuration: config effects are on by default, and the pointwise
    # log-likelihood is per configuration (leave-one-config-out units)
    assert hier_fit.options.config_effects
    assert hier_fit.idata.log_likelihood["log_loss"].dims == ("chain", "draw", "config")
    assert post["config_effect"].sizes["config"] == 4 * 4 + 1


def test_sampler_converged(hier_fit):
    d = hier_fit.diagnostics
    assert d.max_rhat < 1.05
    assert d.min_ess_bulk > 100
    # fast test settings on a deliberately hard design (1.5 decades of sizes, a one-run
    # family): allow at most 2% divergent draws (the centred parameterization gave 12%; the
    # local one gives 0.5-1.1% depending on the start point and the compile cache)
    n_draws = FAST["draws"] * FAST["chains"]
    assert d.divergences <= 0.02 * n_draws


def test_recovers_family_parameters(hier_fit, sim):
    hits = total = 0
    for fam in sim.families.index:
        draws = hier_fit.law_parameters(fam)
        for p in LAW_PARAMS:
            lo, hi = np.quantile(draws[p].values, [0.05, 0.95])
            hits += lo <= sim.families.loc[fam, p] <= hi
            total += 1
    # 20 correlated intervals at 90%: the nominal expectation is 18; allow for the
    # within-family correlation of misses (the E-A-alpha ridge)
    assert hits >= 14, f"only {hits}/{total} 90% intervals contain the truth"


def test_recovers_noise_scales(hier_fit, sim):
    post = hier_fit.idata.posterior
    for name, truth in (("sigma_seed", sim.sigma_seed), ("sigma_obs", sim.sigma_obs)):
        lo, hi = np.quantile(post[name].values, [0.025, 0.975])
        assert lo <= truth <= hi, f"{name}: {truth} not in [{lo:.4g}, {hi:.4g}]"


def test_run_effects_track_the_truth(hier_fit, sim):
    est = hier_fit.idata.posterior["run_effect"].mean(("chain", "draw")).to_series()
    truth = sim.run_effects
    common = truth.index.intersection(est.index)
    assert np.corrcoef(est[common], truth[common])[0, 1] > 0.8


def test_single_run_family_is_covered_by_the_population(hier_fit, lone):
    _, truth = lone
    lo, hi = np.quantile(hier_fit.law_parameters("lone")["alpha"].values, [0.05, 0.95])
    assert lo <= truth["alpha"] <= hi


@pytest.mark.slow  # its own fit of the lone family; the interval check above stays in the default
def test_single_run_family_borrows_from_population(hier_fit, lone):
    runs, truth = lone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        alone = bayescale.fit(runs, random_seed=1, **FAST)
    width_hier = np.ptp(np.quantile(hier_fit.law_parameters("lone")["alpha"].values, [.05, .95]))
    width_alone = np.ptp(np.quantile(alone.law_parameters("lone")["alpha"].values, [.05, .95]))
    assert width_hier < 0.8 * width_alone
    lo, hi = np.quantile(hier_fit.law_parameters("lone")["alpha"].values, [0.05, 0.95])
    assert lo <= truth["alpha"] <= hi


def test_predict_bands_are_nested(hier_fit):
    tokens = np.geomspace(1e10, 1e11, 7)
    pred = hier_fit.predict(params=2e9, tokens=tokens, family="fam0")
    assert pred["median"].dims == ("point",)
    np.testing.assert_allclose(pred["tokens"].values, tokens)
    # average over points: single quantiles carry Monte-Carlo noise of a few percent
    width = {b: float((pred[b].sel(level=0.9, bound="upper")
                       - pred[b].sel(level=0.9, bound="lower")).mean())
             for b in ("mean", "new_seed", "observed")}
    assert width["mean"] < width["new_seed"] < width["observed"]
    assert bool((pred["mean"].sel(level=0.5, bound="lower") >= pred["mean"].sel(
        level=0.9, bound="lower")).all())
    # loss falls with tokens
    assert bool((np.diff(pred["median"].values) < 0).all())


def test_predict_covers_held_out_larger_model(hier_fit, sim):
    """Extrapolate 3x beyond the largest size: the truth lies in the 90% new-seed band."""
    fam = "fam1"
    tokens = np.geomspace(2e10, 4e10, 5)
    pred = hier_fit.predict(params=2e9, tokens=tokens, family=fam)
    truth = sim.true_loss(fam, 2e9, tokens)
    band = pred["new_seed"].sel(level=0.9)
    assert bool(((band.sel(bound="lower") <= truth) & (truth <= band.sel(bound="upper"))).all())


def test_new_family_is_wider_than_known_family(hier_fit):
    known = hier_fit.predict(params=1e9, tokens=2e10, family="fam0")
    new = hier_fit.predict(params=1e9, tokens=2e10, family=None)
    def w(p):
        band = p["mean"].sel(level=0.9).isel(point=0)
        return float(band.sel(bound="upper") - band.sel(bound="lower"))
    assert w(new) > 2 * w(known)


def test_predict_for_a_seen_run_uses_its_offset(hier_fit, sim):
    run = sim.runs["run"].iloc[0]
    pred = hier_fit.predict(params=2e7, tokens=4e8, run=run)
    assert "new_seed" not in pred
    offset = float(hier_fit.idata.posterior["run_effect"].sel(run=run).mean())
    base = hier_fit.predict(params=2e7, tokens=4e8, family="fam0")
    ratio = float(pred["median"].values[0] / base["median"].values[0])
    assert ratio == pytest.approx(np.exp(offset), rel=5e-3)


def test_predict_is_reproducible_and_seedable(hier_fit):
    a = hier_fit.predict(params=1e9, tokens=2e10, family=None)
    b = hier_fit.predict(params=1e9, tokens=2e10, family=None)
    c = hier_fit.predict(params=1e9, tokens=2e10, family=None, random_seed=123)
    assert a.identical(b)
    assert not a["observed"].equals(c["observed"])


def test_summary_table(hier_fit):
    table = hier_fit.summary()
    for col in ("mean", "sd", "q5", "q50", "q95", "r_hat", "ess_bulk", "ess_tail"):
        assert col in table.columns
    assert {"alpha[fam0]", "alpha_pop", "sigma_seed", "sigma_obs"} <= set(table.index)
    assert (table["q5"] <= table["q50"]).all() and (table["q50"] <= table["q95"]).all()


def test_save_load_predicts_identically(hier_fit, tmp_path):
    path = hier_fit.save(tmp_path / "fit.nc")
    loaded = bayescale.load(path)
    assert loaded.options == hier_fit.options
    pd.testing.assert_frame_equal(loaded.data, hier_fit.data, check_dtype=False)
    tokens = np.geomspace(1e9, 1e11, 5)
    for family in ("fam2", None):
        a = hier_fit.predict(params=5e8, tokens=tokens, family=family)
        b = loaded.predict(params=5e8, tokens=tokens, family=family)
        for name in a.data_vars:
            np.testing.assert_array_equal(a[name].values, b[name].values)


def test_from_idata_rebuilds_a_fit_without_touching_its_idata(hier_fit):
    """The one constructor: a saved fit's InferenceData (with fit_data) is used as it is."""
    ll = hier_fit.idata.log_likelihood["log_loss"].values.copy()
    rebuilt = bayescale.ScalingLawFit.from_idata(hier_fit.idata, hier_fit.data, hier_fit.meta)
    assert rebuilt.idata is hier_fit.idata and rebuilt.options == hier_fit.options
    np.testing.assert_array_equal(rebuilt.idata.log_likelihood["log_loss"].values, ll)
    a = hier_fit.predict(params=5e8, tokens=1e10, family="fam1")
    b = rebuilt.predict(params=5e8, tokens=1e10, family="fam1")
    np.testing.assert_array_equal(a["observed"].values, b["observed"].values)
    # fit_meta's keys, the window included
    assert list(hier_fit.meta)[:7] == [
        "law", "options", "priors", "n0", "d0", "fit_from", "unscheduled_from"
    ]
    assert hier_fit.meta["fit_from"] is None


def test_unknown_family_and_bad_points_raise(hier_fit):
    with pytest.raises(KeyError):
        hier_fit.law_parameters("nope")
    with pytest.raises(ValueError):
        hier_fit.predict(params=-1, tokens=1e9)
    with pytest.raises(ValueError):
        hier_fit.predict(params=1e9, tokens=1e9, arch="dense")


@pytest.fixture(scope="module")
def tiny_runs():
    # test_cli's table (random_seed=0): its `bayescale fit` leaves this model's compiled kernels
    # in the compile cache, so a fresh cache (CI) compiles them once for both modules
    return bayescale.simulate(n_families=2, sizes=(2e7, 2e8), n_seeds=1, n_checkpoints=10,
                              random_seed=0).runs


#: One short fit of ``tiny_runs`` shared by the reproducibility, unconverged-warning and
#: tree-depth tests below (a new fit costs a compile, several times its sampling). A depth of 2
#: caps every draw at 4 leapfrog steps, and 50 draws of 2 chains cannot reach the effective
#: sample size a converged fit needs.
CAPPED = {"random_seed": 0, "draws": 50, "tune": 50, "chains": 2, "progressbar": False,
          "max_tree_depth": 2}


@pytest.fixture(scope="module")
def capped_fit(tiny_runs):
    """The short, depth-capped fit and the SamplingWarnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bayescale.SamplingWarning)
        fit = bayescale.fit(tiny_runs, **CAPPED)
    return fit, [w for w in caught if issubclass(w.category, bayescale.SamplingWarning)]


def test_same_seed_same_draws(tiny_runs, capped_fit):
    a, _ = capped_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        b = bayescale.fit(tiny_runs, **CAPPED)
    np.testing.assert_array_equal(a.idata.posterior["theta"].values,
                                  b.idata.posterior["theta"].values)
    np.testing.assert_array_equal(a.idata.posterior["run_effect"].values,
                                  b.idata.posterior["run_effect"].values)


def test_warns_on_unconverged_fit(capped_fit):
    _, caught = capped_fit
    assert any(re.search("effective sample size|R-hat", str(w.message)) for w in caught), [
        str(w.message) for w in caught]
    # the warning points at the line that called fit
    assert {w.filename for w in caught} == {__file__}


def test_max_tree_depth_reaches_nutpie_and_its_hits_are_counted(capped_fit):
    """A depth of 2 caps every draw at 4 leapfrog steps; the fit says how often it hit it."""
    fit, caught = capped_fit  # this short fit fails other checks too
    assert any("raise max_tree_depth" in str(w.message) for w in caught)
    stats = fit.idata.sample_stats
    assert int(stats["depth"].max()) <= 2 and int(stats["n_steps"].max()) <= 4
    assert fit.diagnostics.max_tree_depth_share == pytest.approx(
        float(stats["maxdepth_reached"].mean()))
    assert fit.diagnostics.max_tree_depth_share > 0.05
    assert fit.meta["sampler_settings"]["max_tree_depth"] == 2


def test_fit_warns_before_sampling_when_every_family_is_at_one_size(tiny_runs, monkeypatch):
    """One size per family leaves E, A and alpha to the priors: say so before the long wait."""
    fit_module = importlib.import_module("bayescale.fit")  # the module, not bayescale.fit()

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(fit_module, "sampling_coordinates", stop)
    one_size = tiny_runs[tiny_runs["params"] == 2e8]
    with pytest.warns(UserWarning, match="single model size") as record, pytest.raises(Stop):
        bayescale.fit(one_size, progressbar=False)
    # the warning points at the line that called fit
    assert any(w.filename == __file__ for w in record if "single model size" in str(w.message))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(Stop):  # two sizes: no warning
            bayescale.fit(tiny_runs, progressbar=False)


def test_invalid_options_are_rejected(tiny_runs):
    with pytest.raises(ValueError, match="hierarchy"):
        bayescale.fit(tiny_runs, hierarchy=("seed",))
    with pytest.raises(ValueError, match="law"):
        bayescale.fit(tiny_runs, law="kaplan-typo")
    with pytest.raises(ValueError, match="autocorrelated"):
        bayescale.fit(tiny_runs, likelihood="student_t", autocorrelation="order")
    with pytest.raises(bayescale.DataError, match="arch"):
        bayescale.fit(tiny_runs, hierarchy=("arch", "family"))
    with pytest.raises(ValueError, match="unknown prior"):
        bayescale.fit(tiny_runs, priors={"gamma": {"sigma": 1.0}})


def test_run_order_follows_observations_not_names():
    """Run labels that sort differently from their families keep their own effects."""
    from bayescale.data.validate import validate
    from bayescale.models.design import build_design

    runs = pd.DataFrame({
        "family": ["b", "b", "a", "a", "a"],
        "run": ["a-run", "a-run", "z-run", "z-run", "y-run"],
        "params": [1e8, 1e8, 2e8, 2e8, 3e8],
        "tokens": [1e9, 2e9, 1e9, 2e9, 1e9],
        "loss": [3.0, 2.9, 2.8, 2.7, 2.6],
    })
    design = build_design(validate(runs))
    labels = design.runs[design.obs_run]
    data = validate(runs)
    np.testing.assert_array_equal(labels, data["run"].to_numpy())
    np.testing.assert_array_equal(design.run_counts, data.groupby("run", sort=False).size())
    starts = np.flatnonzero(np.r_[True, design.obs_run[1:] != design.obs_run[:-1]])
    np.testing.assert_array_equal(design.runs, data["run"].to_numpy()[starts])


def test_save_load_with_nullable_columns(hier_fit, tmp_path):
    fit = bayescale.ScalingLawFit(
        idata=hier_fit.idata.copy(),
        data=hier_fit.data.assign(step=pd.array([1] * (len(hier_fit.data) - 1) + [None],
                                                dtype="Int64")),
        options=hier_fit.options,
        meta=hier_fit.meta,
    )
    loaded = bayescale.load(fit.save(tmp_path / "nullable.nc"))
    assert np.isnan(loaded.data["step"].iloc[-1])
    assert (loaded.data["step"].iloc[:-1] == 1).all()
