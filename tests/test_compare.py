"""Posterior comparisons on a simulated pair with a known difference (one small shared fit)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale
from bayescale.compare import Comparison, compare, compare_models, compute_optimal

ZERO_SD = {k: 0.0 for k in ("log_E", "a", "log_alpha", "b", "log_beta")}
E_GAP = 0.1  # "better" has log E lower by 0.1 (E 1.63 vs 1.80): a large, constant gap
TARGET = {"params": 6e8, "tokens": 1.2e10}  # the largest simulated run's final checkpoint


def _rename(df: pd.DataFrame, name: str, arch: str) -> pd.DataFrame:
    out = df.copy()
    for col in ("run", "config"):
        out[col] = out[col].str.replace("fam0", name, regex=False)
    out["family"] = name
    out["arch"] = arch
    return out


@pytest.fixture(scope="module")
def sims():
    base = bayescale.simulate(n_families=1, family_sd=ZERO_SD, n_checkpoints=10, random_seed=1)
    better = bayescale.simulate(
        n_families=1,
        population={"log_E": float(np.log(1.8) - E_GAP)},
        family_sd=ZERO_SD,
        n_checkpoints=10,
        random_seed=2,
    )
    return base, better


@pytest.fixture(scope="module")
def fitted(sims):
    """Families ``base``, ``better`` (lower E) and ``copy`` (the very same runs as base)."""
    base, better = sims
    runs = pd.concat(
        [
            _rename(base.runs, "base", "dense"),
            _rename(better.runs, "better", "moe"),
            _rename(base.runs, "copy", "dense"),
        ],
        ignore_index=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.SamplingWarning)
        return bayescale.fit(
            runs,
            hierarchy=("arch", "family"),
            # 3 families in 2 archs mix slowly (R-hat up to 1.4 at 300 draws in some seeds);
            # 1000 + 1000 keep P(a better) of identical data within 0.45-0.52 over seeds
            draws=1000,
            tune=1000,
            chains=2,
            random_seed=0,
            progressbar=False,
        )


def _true_diff(sims, params, tokens):
    base, better = sims
    return float(better.true_loss("fam0", params, tokens) - base.true_loss("fam0", params, tokens))


def test_large_gap_interval_contains_truth_and_p_better_near_one(fitted, sims):
    res = compare(fitted, "better", "base", **TARGET, levels=(0.5, 0.95))
    assert isinstance(res, Comparison)
    assert (res.kind_a, res.kind_b) == ("family", "family")
    truth = _true_diff(sims, **TARGET)
    lo, hi = res.interval(res.diff, 0.95)
    assert lo <= truth <= hi
    assert res.p_a_better > 0.97
    assert res.p_outside_rope > 0.9
    assert res.p_a_better_beyond_rope > 0.9
    # ratio and relative difference are consistent with the two loss draws
    np.testing.assert_allclose(res.ratio, res.loss_a / res.loss_b)
    np.testing.assert_allclose(res.rel_diff, res.ratio - 1)
    # the reverse comparison mirrors it
    rev = compare(fitted, "base", "better", **TARGET)
    assert rev.p_a_better < 0.03
    np.testing.assert_allclose(rev.diff, -res.diff)


def test_identical_families_p_better_near_half(fitted):
    res = compare(fitted, "copy", "base", **TARGET)
    assert 0.3 < res.p_a_better < 0.7
    lo, hi = res.interval(res.diff, 0.9)
    assert lo < 0 < hi
    # exponent contrasts of identical data are centred on zero
    for name in ("alpha", "beta", "E"):
        lo, hi = res.interval(res.contrasts[name], 0.9)
        assert lo < 0 < hi, name


def test_contrasts_recover_the_gap_in_E(fitted, sims):
    res = compare(fitted, "better", "base", **TARGET)
    base, better = sims
    true_e = better.families.loc["fam0", "E"] - base.families.loc["fam0", "E"]
    lo, hi = res.interval(res.contrasts["E"], 0.95)
    assert lo <= true_e <= hi
    assert np.median(res.contrasts["E"]) < 0


def test_compute_target_and_frontier(fitted):
    res = compare(fitted, "better", "base", compute=1e19)
    assert res.target == {"compute": 1e19}
    assert res.optimal_params_a is not None and res.optimal_params_b is not None
    assert np.all(res.optimal_params_a > 0)
    assert res.p_a_better > 0.95
    assert res.frontier_a.shape == (res.n_draws, res.compute_grid.size)
    # the compute-optimal loss is the minimum over N at fixed compute
    theta = fitted.idata.posterior["theta"].sel(family="base").values.reshape(-1, 5)[:50]
    loss, n_opt, _ = compute_optimal(theta, [1e19], fitted.n0, fitted.d0)
    for scale in (0.5, 2.0):
        n = n_opt[:, 0] * scale
        d = 1e19 / (6 * n)
        other = bayescale.models.hierarchical.reference_log_loss(
            theta[:, None, :], np.log(n / fitted.n0)[:, None], np.log(d / fitted.d0)[:, None]
        )
        assert np.all(loss[:, 0] <= np.exp(other[:, 0, 0]) + 1e-9)


def test_compute_optimal_is_the_minimum_on_a_fine_grid_and_flags_the_edges():
    rng = np.random.default_rng(3)
    n = 300
    theta = np.column_stack([
        rng.normal(0.5, 0.1, n), rng.normal(0.0, 0.4, n), np.log(rng.uniform(0.15, 0.6, n)),
        rng.normal(0.0, 0.4, n), np.log(rng.uniform(0.15, 0.6, n)),
    ])
    n0, d0 = 1e8, 2e9
    budgets = np.array([1e18, 1e21, 1e24])
    loss, n_opt, at_edge = compute_optimal(theta, budgets, n0, d0)
    # convex in log N: an optimum outside the searched range is at its nearest edge, as on
    # the grid below (which spans that range)
    assert at_edge.mean() < 0.2
    for k, c in enumerate(budgets):
        log_n = np.linspace(0.5 * np.log(c / 6e4), 0.5 * np.log(c / 6e-2), 40001)
        y = bayescale.models.hierarchical.reference_log_loss(
            theta, log_n - np.log(n0), np.log(c / 6) - log_n - np.log(d0)
        )
        np.testing.assert_allclose(loss[:, k], np.exp(y.min(axis=1)), rtol=1e-7)
        np.testing.assert_allclose(n_opt[:, k], np.exp(log_n[y.argmin(axis=1)]), rtol=1e-3)
    # a range of tokens per parameter that excludes every optimum: its edge, flagged
    lo_loss, lo_n, lo_edge = compute_optimal(theta, [1e21], n0, d0, tokens_per_param=(1e6, 1e7))
    assert lo_edge.all()
    # the optimum has far fewer tokens per parameter: the range's lower edge, 1e6
    np.testing.assert_allclose(lo_n[:, 0], np.sqrt(1e21 / (6 * 1e6)))
    inside = ~at_edge[:, 1]  # an upper bound of the loss at the optimum found before
    assert np.all(lo_loss[inside, 0] >= loss[inside, 1])


def test_no_crossover_when_only_E_differs(fitted):
    # crossover searched above the data, where the constant E gap dominates
    res = compare(fitted, "better", "base", **TARGET, compute_range=(1e20, 1e24))
    assert res.p_no_crossover > 0.9
    crossed = res.crossover[np.isfinite(res.crossover)]
    assert np.all((crossed >= 1e20) & (crossed <= 1e24))


def test_arch_level_comparison(fitted):
    res = compare(fitted, "moe", "dense", **TARGET)
    assert (res.kind_a, res.kind_b) == ("arch", "arch")
    assert np.all(np.isfinite(res.diff))
    # a new family of an arch is more uncertain than a fitted family or the arch's centre
    fam = compare(fitted, "better", "base", **TARGET)
    assert np.std(res.diff) > np.std(fam.diff)
    centre = compare(fitted, "moe", "dense", **TARGET, arch_curve="centre")
    assert np.std(centre.diff) < np.std(res.diff)
    # the parameter contrasts use the centre either way
    np.testing.assert_allclose(centre.contrasts["alpha"], res.contrasts["alpha"])


def test_summary_and_xarray(fitted):
    res = compare(fitted, "better", "base", **TARGET, levels=(0.5, 0.9))
    table = res.summary()
    for col in ("quantity", "mean", "median", "lower_90", "upper_90", "lower_50", "probability"):
        assert col in table.columns
    assert table["quantity"].is_unique
    p_row = table.set_index("quantity").loc["P(a better)", "probability"]
    assert p_row == pytest.approx(res.p_a_better)
    assert table.loc[table["quantity"] == "diff", "lower_90"].iloc[0] < 0
    ds = res.to_xarray()
    assert isinstance(ds, xr.Dataset)
    assert ds.sizes["sample"] == res.n_draws
    assert {"diff", "ratio", "alpha_diff", "beta_diff", "E_diff", "crossover_compute"} <= set(
        ds.data_vars
    )
    assert ds.attrs["p_a_better"] == pytest.approx(res.p_a_better)
    assert "better" in repr(res)


def test_new_seed_band_is_wider(fitted):
    mean = compare(fitted, "better", "base", **TARGET)
    seed = compare(fitted, "better", "base", **TARGET, band="new_seed")
    assert np.std(seed.diff) > np.std(mean.diff)


def test_argument_errors(fitted):
    with pytest.raises(ValueError):
        compare(fitted, "better", "base")
    with pytest.raises(ValueError):
        compare(fitted, "better", "base", params=1e9, tokens=1e10, compute=1e20)
    with pytest.raises(KeyError):
        compare(fitted, "nope", "base", **TARGET)
    with pytest.raises(KeyError):
        compare(fitted, "dense", "base", **TARGET, kind="family")


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore:.*inplace.*")
def test_compare_models_loo(fitted):
    table = compare_models({"a": fitted, "b": fitted})
    assert list(table.columns[:2]) == ["rank", "elpd_loo"]
    assert set(table.index) == {"a", "b"}
    with pytest.raises(ValueError):
        compare_models({"a": fitted})


def test_compare_models_refuses_fits_scored_on_other_units():
    """A fit with config effects is scored per config, one without per run: not comparable,
    and the error says how to make them so."""
    import arviz as az

    def scored(unit: str, labels: list[str]):
        idata = az.from_dict(log_likelihood={"log_loss": np.zeros((1, 5, len(labels)))},
                             coords={unit: labels}, dims={"log_loss": [unit]})
        return type("Scored", (), {"idata": idata})()

    with pytest.raises(ValueError, match="same config_effects"):
        compare_models({"runs": scored("run", ["r1", "r2"]),
                        "configs": scored("config", ["c1"])})


def test_theta_draws_and_per_draw_seed_sd(fitted):
    """The public fit methods compare builds on: a family's or a new family's theta, and each
    draw's seed sd at its own parameter count."""
    known = fitted.theta_draws("base")
    np.testing.assert_array_equal(
        known, fitted.posterior_draws("theta")[:, fitted.families.index("base"), :]
    )
    new = fitted.theta_draws(None, arch="moe", random_seed=3)
    assert new.shape == known.shape
    np.testing.assert_array_equal(new, fitted.theta_draws(None, arch="moe", random_seed=3))
    rng = np.random.default_rng(0)
    assert not np.array_equal(
        fitted.theta_draws("x", arch="moe", random_seed=rng),
        fitted.theta_draws("x", arch="moe", random_seed=rng),
    )
    with pytest.raises(ValueError, match="either a known family or an arch"):
        fitted.theta_draws("base", arch="moe")
    n = np.geomspace(1e7, 1e9, fitted.posterior_draws("sigma_seed").shape[0])
    per_draw = fitted.seed_sd(n[:, None])
    assert per_draw.shape == (n.size, 1)
    grid = fitted.seed_sd(n[:3])
    np.testing.assert_allclose(per_draw[:3, 0], np.diag(grid[:3]))
