"""The Kaplan/Su law with steps and batch size: solver, gradient, identities, data checks.

Fast (no sampling).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from bayescale import DataError, validate
from bayescale.derived import chinchilla_compute_optimal, quantity_dataset
from bayescale.laws.kaplan import (
    KAPLAN_2020,
    KAPLAN_PARAMS,
    KAPLAN_THETA,
    NEWTON_STEPS,
    critical_batch_size,
    from_reference_scale,
    kaplan_loss,
    lowest_loss,
    min_steps,
    min_tokens,
    reference_log_loss,
    solve_log_loss,
    steps_to_loss,
    to_reference_scale,
)
from bayescale.models.kaplan import build_kaplan_design, resolve_kaplan_priors
from bayescale.simulate_kaplan import simulate_kaplan


def _random_grid(n: int, seed: int) -> dict[str, np.ndarray]:
    """Constants, sizes, steps and batch sizes over many orders of magnitude."""
    rng = np.random.default_rng(seed)

    def log_uniform(lo, hi):
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))

    return {
        "Nc": log_uniform(1e8, 1e16),
        "alphaN": log_uniform(0.03, 0.5),
        "Sc": log_uniform(1e1, 1e5),
        "alphaS": log_uniform(0.1, 3.0),
        "Bstar": log_uniform(1e5, 1e11),
        "alphaB": log_uniform(0.02, 2.0),
        "params": log_uniform(1e5, 1e12),
        "steps": log_uniform(1.0, 1e7),
        "batch_size": log_uniform(1e2, 1e9),
    }


def _brentq_loss(g: dict[str, np.ndarray], i: int) -> float:
    """Reference root by brentq on ``log L - log(L_N + T(L))`` (logs avoid overflow)."""
    nc, an, sc, a_s, bs, ab = (g[k][i] for k in KAPLAN_PARAMS)
    n, s, b = g["params"][i], g["steps"][i], g["batch_size"][i]
    log_l_n = an * np.log(nc / n)

    def log_term(log_loss):
        log_ratio = np.log(bs / b) - log_loss / ab  # log(Bcrit/B)
        return a_s * (np.log(sc / s) + np.logaddexp(0.0, log_ratio))

    def f(log_loss):
        return log_loss - np.logaddexp(log_l_n, log_term(log_loss))

    lo = np.logaddexp(log_l_n, a_s * np.log(sc / s))
    hi = np.logaddexp(log_l_n, log_term(lo))
    if not hi > lo:  # batch term negligible at double precision
        return float(np.exp(lo))
    pad = 1e-12 * (1 + abs(hi))
    return float(np.exp(brentq(f, lo - pad, hi + pad, xtol=1e-15, rtol=4 * np.finfo(float).eps)))


def test_solver_matches_brentq_over_a_wide_grid():
    g = _random_grid(3000, seed=0)
    ref = np.array([_brentq_loss(g, i) for i in range(3000)])
    log_ratio = np.log(g["Bstar"] / g["batch_size"]) - np.log(ref) / g["alphaB"]  # Bcrit/B
    # the grid spans batch sizes far below and far above the critical batch size
    assert log_ratio.min() < -5 * np.log(10) and log_ratio.max() > 5 * np.log(10)
    ours = kaplan_loss(g["params"], g["steps"], g["batch_size"], *(g[k] for k in KAPLAN_PARAMS))
    rel = np.abs(ours / ref - 1)
    assert rel.max() < 1e-10, rel.max()


def test_solver_converges_before_its_last_steps():
    """Documented convergence: NEWTON_STEPS - 4 steps already agree to 1e-9 on the grid."""
    g = _random_grid(3000, seed=1)
    args = (
        g["alphaN"] * np.log(g["Nc"] / g["params"]),
        g["alphaS"] * np.log(g["Sc"] / g["steps"]),
        np.log(g["Bstar"] / g["batch_size"]),
        1 / g["alphaB"],
        g["alphaS"],
    )
    full = solve_log_loss(*args)
    early = solve_log_loss(*args, n_steps=NEWTON_STEPS - 4)
    assert np.abs(early - full).max() < 1e-9
    # and the solution solves the equation
    loss = np.exp(full)
    rhs = lowest_loss(g["params"], g["Nc"], g["alphaN"]) + (
        g["Sc"] / g["steps"] * (1 + critical_batch_size(loss, g["Bstar"], g["alphaB"]) / g["batch_size"])
    ) ** g["alphaS"]
    assert np.abs(rhs / loss - 1).max() < 1e-12


def test_limits_of_the_batch_size():
    n, s = 1e8, np.geomspace(1e2, 1e6, 9)
    c = KAPLAN_2020
    huge = kaplan_loss(n, s, 1e20, *(c[k] for k in KAPLAN_PARAMS))
    infinite_batch = lowest_loss(n, c["Nc"], c["alphaN"]) + (c["Sc"] / s) ** c["alphaS"]
    np.testing.assert_allclose(huge, infinite_batch, rtol=1e-10)
    # a smaller batch needs more steps: loss decreases with B at fixed steps
    by_batch = [kaplan_loss(n, 1e4, b, *(c[k] for k in KAPLAN_PARAMS)) for b in (1e4, 1e5, 1e6)]
    assert by_batch[0] > by_batch[1] > by_batch[2]


def test_gradient_matches_finite_differences():
    pytensor = pytest.importorskip("pytensor")
    pt = pytest.importorskip("pytensor.tensor")
    rng = np.random.default_rng(2)
    n = 40
    log_n, log_s = rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)
    log_b, log_l0 = rng.uniform(9, 17, n), float(np.log(3.0))
    theta = pt.dvector("theta")
    out = reference_log_loss(theta, log_n, log_s, log_b, log_l0, math=pt)
    jac = pytensor.function([theta], pytensor.gradient.jacobian(out, theta))
    value = pytensor.function([theta], out)
    for centre in (KAPLAN_2020, {**KAPLAN_2020, "alphaB": 0.5, "alphaS": 1.2, "Bstar": 1e10}):
        x = np.array(list(to_reference_scale(**centre, n0=1e7, s0=1e4, l0=3.0).values()))
        np.testing.assert_allclose(value(x), reference_log_loss(x, log_n, log_s, log_b, log_l0))
        eps = 1e-6
        numeric = np.stack(
            [
                (
                    reference_log_loss(x + eps * e, log_n, log_s, log_b, log_l0)
                    - reference_log_loss(x - eps * e, log_n, log_s, log_b, log_l0)
                )
                / (2 * eps)
                for e in np.eye(6)
            ],
            axis=1,
        )
        np.testing.assert_allclose(jac(x), numeric, atol=1e-7, rtol=1e-6)


def test_identities():
    c = KAPLAN_2020
    consts = [c[k] for k in KAPLAN_PARAMS]
    n, b, s = 3e7, np.array([1e4, 3e5, 1e7]), np.array([3e3, 1e4, 5e4])
    loss = kaplan_loss(n, s, b, *consts)
    bcrit = critical_batch_size(loss, c["Bstar"], c["alphaB"])
    s_min, e = s / (1 + bcrit / b), b * s
    e_min = e / (1 + b / bcrit)
    np.testing.assert_allclose((s / s_min - 1) * (e / e_min - 1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(s_min, min_steps(n, loss, *consts[:4]), rtol=1e-9)
    # at B = Bcrit(L): S = 2 Smin and E = 2 Emin
    target = np.array([3.2, 3.5, 4.0])
    b_at_crit = critical_batch_size(target, c["Bstar"], c["alphaB"])
    s_needed = steps_to_loss(n, target, b_at_crit, *consts)
    np.testing.assert_allclose(s_needed, 2 * min_steps(n, target, *consts[:4]), rtol=1e-12)
    np.testing.assert_allclose(kaplan_loss(n, s_needed, b_at_crit, *consts), target, rtol=1e-10)
    np.testing.assert_allclose(
        b_at_crit * s_needed, 2 * min_tokens(n, target, *consts), rtol=1e-12
    )


def test_unreachable_loss_needs_infinite_steps():
    c = KAPLAN_2020
    floor = lowest_loss(1e8, c["Nc"], c["alphaN"])
    out = min_steps(1e8, np.array([floor * 0.99, floor * 1.01]), c["Nc"], c["alphaN"], c["Sc"], c["alphaS"])
    assert np.isinf(out[0]) and np.isfinite(out[1])


def test_reference_scale_round_trip():
    theta = to_reference_scale(**KAPLAN_2020, n0=2e7, s0=5e3, l0=3.3)
    assert list(theta) == list(KAPLAN_THETA)
    back = from_reference_scale(**theta, n0=2e7, s0=5e3, l0=3.3)
    for k in KAPLAN_PARAMS:
        assert back[k] == pytest.approx(KAPLAN_2020[k], rel=1e-12)


def test_compute_optimal_minimises_loss_on_the_budget():
    e, a, alpha, b, beta = 1.69, 406.4, 0.34, 410.7, 0.28
    flops = 5.76e23
    opt = chinchilla_compute_optimal(flops, e, a, alpha, b, beta)
    assert 6 * opt["params"] * opt["tokens"] == pytest.approx(flops)
    ns = opt["params"] * np.geomspace(0.5, 2, 41)
    losses = e + a / ns**alpha + b / (flops / 6 / ns) ** beta
    assert losses.min() >= opt["loss"] - 1e-12
    assert opt["params"] == pytest.approx(ns[np.argmin(losses)], rel=0.05)


def test_quantity_dataset_layout():
    rng = np.random.default_rng(0)
    ds = quantity_dataset({"steps": rng.normal(size=(4000, 3))}, {"loss": np.array([1, 2, 3.0])})
    assert ds["steps"].dims == ("point",)
    assert ds["steps_interval"].dims == ("point", "level", "bound")
    lo, hi = ds["steps_interval"].sel(level=0.9).values.T
    np.testing.assert_allclose(lo, -1.645, atol=0.1)
    np.testing.assert_allclose(hi, 1.645, atol=0.1)


# ----------------------------------------------------------------- data checks
def test_validator_names_missing_step_and_batch_size():
    runs = simulate_kaplan(n_families=1, sizes=(1e6,), batch_sizes=(2**16,), random_seed=0).runs
    with pytest.raises(DataError, match=r"'step' \(the optimizer step.*'batch_size' \(tokens per"):
        validate(runs.drop(columns=["step", "batch_size"]), require=("step", "batch_size"))
    with pytest.raises(DataError, match=r"needs column\(s\) 'batch_size'"):
        validate(runs.drop(columns=["batch_size"]), require=("step", "batch_size"))
    validate(runs.drop(columns=["batch_size"]))  # not required: fine


def test_validator_rejects_bad_batch_sizes():
    runs = simulate_kaplan(n_families=1, sizes=(1e6,), batch_sizes=(2**16,), random_seed=0).runs
    bad = runs.astype({"batch_size": object})
    bad.loc[3, "batch_size"] = np.nan
    bad.loc[5, "batch_size"] = -1.0
    with pytest.raises(DataError, match=r"'batch_size' .* 2 row\(s\).*index 3, 5"):
        validate(bad, require=("step", "batch_size"))


def test_fit_with_kaplan_law_says_which_columns_are_missing():
    from bayescale import fit

    runs = simulate_kaplan(n_families=1, sizes=(1e6,), batch_sizes=(2**16,), random_seed=0).runs
    with pytest.raises(DataError, match="'step'"):
        fit(runs.drop(columns=["step"]), law="kaplan")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("likelihood", "student_t"),
        ("seed_by_size", True),
        ("correlated_families", True),
        ("family_parameterization", "noncentered"),
        ("config_effects", True),
        ("shared", ("b",)),
        ("d0", 1e9),
        ("fit_from", 0.5),
        ("unscheduled_from", 0.5),
    ],
)
def test_fit_with_kaplan_law_names_an_option_it_does_not_support(option, value):
    from bayescale import fit

    runs = simulate_kaplan(n_families=1, sizes=(1e6,), batch_sizes=(2**16,), random_seed=0).runs
    with pytest.raises(ValueError, match=rf"law='kaplan' does not support {option}="):
        fit(runs, law="kaplan", **{option: value})


@pytest.mark.parametrize("option", ["s0", "l0"])
def test_kaplan_only_options_are_refused_by_the_chinchilla_law(option):
    from bayescale import fit

    runs = simulate_kaplan(n_families=1, sizes=(1e6,), batch_sizes=(2**16,), random_seed=0).runs
    with pytest.raises(TypeError, match=rf"{option} is an option of law='kaplan' only"):
        fit(runs, **{option: 1.0})


def test_fit_passes_kaplan_options_through(monkeypatch):
    import importlib

    fit_module = importlib.import_module("bayescale.fit")
    seen = {}

    def fake_fit_kaplan(runs, hierarchy, **kwargs):
        seen.update(kwargs, hierarchy=hierarchy)
        return "fitted"

    monkeypatch.setattr(fit_module, "fit_kaplan", fake_fit_kaplan)
    runs = simulate_kaplan(n_families=1, sizes=(1e6,), batch_sizes=(2**16,), random_seed=0).runs
    out = fit_module.fit(
        runs, law="kaplan", s0=2e3, l0=3.5, n0=1e6, autocorrelation="none", fit_from=None,
        priors={"sigma_obs": {"sigma": 0.1}}, draws=10, tune=20, chains=1, random_seed=4,
    )
    assert out == "fitted"
    assert seen["s0"] == 2e3 and seen["l0"] == 3.5 and seen["n0"] == 1e6
    assert seen["autocorrelation"] == "none" and seen["priors"] == {"sigma_obs": {"sigma": 0.1}}
    assert (seen["draws"], seen["tune"], seen["chains"], seen["random_seed"]) == (10, 20, 1, 4)


def test_design_refuses_a_batch_ramp():
    runs = simulate_kaplan(n_families=1, sizes=(1e6,), batch_sizes=(2**16,), random_seed=0).runs
    runs.loc[0, "batch_size"] = 2**15
    with pytest.raises(DataError, match="one batch size per run"):
        build_kaplan_design(validate(runs, require=("step", "batch_size")))


def test_design_and_priors_reference_scales():
    runs = simulate_kaplan(n_families=2, random_seed=0).runs
    design = build_kaplan_design(validate(runs, require=("step", "batch_size")))
    assert design.s0 == pytest.approx(np.exp(np.mean(np.log(runs["step"]))))
    assert design.l0 == pytest.approx(np.exp(np.mean(np.log(runs["loss"]))))
    # steps follow the same order as the Chinchilla design's observations
    ordered = validate(runs).sort_values(["family", "run", "tokens"], kind="mergesort")
    np.testing.assert_allclose(np.exp(design.obs_log_s) * design.s0, ordered["step"].to_numpy())
    np.testing.assert_allclose(
        design.run_batch[design.base.obs_run], ordered["batch_size"].to_numpy()
    )
    priors = resolve_kaplan_priors(design.n0, design.s0, design.l0, {"b_crit": {"sigma": 3.0}})
    assert priors["b_crit"]["sigma"] == 3.0
    centre = to_reference_scale(**KAPLAN_2020, n0=design.n0, s0=design.s0, l0=design.l0)
    assert priors["c_N"]["mu"] == pytest.approx(centre["c_N"])
    with pytest.raises(ValueError, match="unknown prior"):
        resolve_kaplan_priors(1e7, 1e4, 3.0, {"nope": {"mu": 0.0}})


def test_simulator_is_seeded_and_follows_the_law():
    a = simulate_kaplan(random_seed=3, sigma_obs=0.0, sigma_seed=0.0)
    b = simulate_kaplan(random_seed=3, sigma_obs=0.0, sigma_seed=0.0)
    pd.testing.assert_frame_equal(a.runs, b.runs)
    row = a.runs.iloc[7]
    expected = a.true_loss(row["family"], row["params"], row["step"], row["batch_size"])
    assert row["loss"] == pytest.approx(float(expected), rel=1e-12)
    np.testing.assert_allclose(a.runs["tokens"], a.runs["step"] * a.runs["batch_size"])


def test_numba_solver_matches_brentq():
    """The compiled per-point loop nutpie runs agrees with brentq like the numpy one."""
    pytensor = pytest.importorskip("pytensor")
    pt = pytest.importorskip("pytensor.tensor")
    g = _random_grid(2000, seed=4)
    ref = np.array([_brentq_loss(g, i) for i in range(2000)])
    inputs = [pt.dvector(name) for name in ("a", "s", "r0", "p", "q")]
    fn = pytensor.function(inputs, solve_log_loss(*inputs, math=pt), mode="NUMBA")
    x = fn(
        g["alphaN"] * np.log(g["Nc"] / g["params"]),
        g["alphaS"] * np.log(g["Sc"] / g["steps"]),
        np.log(g["Bstar"] / g["batch_size"]),
        1 / g["alphaB"],
        g["alphaS"],
    )
    assert np.abs(np.exp(x) / ref - 1).max() < 1e-10


def test_sampling_warnings_of_fit_law_kaplan_point_at_the_callers_line():
    # fit -> fit_kaplan -> warn_on_problems: the warning names this file, not bayescale's
    import warnings

    from bayescale import SamplingWarning, fit

    runs = simulate_kaplan(n_families=1, sizes=(1e6, 4e6), batch_sizes=(2**16,),
                           random_seed=0).runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(runs, law="kaplan", draws=10, tune=10, chains=2, progressbar=False)
    sampling = [w for w in caught if issubclass(w.category, SamplingWarning)]
    assert sampling, "ten draws should fail a diagnostic"
    assert {w.filename for w in sampling} == {__file__}
