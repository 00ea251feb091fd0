"""The compiled run-sums kernel against the numpy reference, finite differences and the
plain-PyTensor graph of the same model."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayescale.data.validate import validate
from bayescale.models.design import build_design
from bayescale.models.hierarchical import build_model
from bayescale.models.likelihood import (
    ar_exponent,
    ar_phi,
    numpy_segment_sum,
    residual_sums,
)
from bayescale.models.options import ModelOptions
from bayescale.models.priors import resolve_priors
from bayescale.models.run_sums import ResidualRunSums, exponent_table, residual_run_sums
from bayescale.simulate import simulate


def _layout(rng, sizes, grid):
    obs_run = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    prev = np.arange(obs_run.size) - 1
    prev[starts[:-1]] = -1
    if grid:  # evenly log-spaced checkpoints: every gap, hence every exponent, is the same
        log_d = np.concatenate([np.linspace(-3, -3 + 0.15 * (n - 1), n) for n in sizes])
    else:
        log_d = np.concatenate([np.sort(rng.uniform(-3, 3, n)) for n in sizes])
    gap = np.where(prev < 0, 0.0, log_d - log_d[np.maximum(prev, 0)])
    return obs_run, starts, prev, log_d, gap


@pytest.fixture(scope="module", params=["irregular", "grid"])
def case(request):
    """Runs of 1-40 checkpoints, irregularly spaced or on one log-spaced grid."""
    rng = np.random.default_rng(7)
    sizes = np.array([1, 2, 9, 23, 40])
    obs_run, starts, prev, log_d, gap = _layout(rng, sizes, request.param == "grid")
    n_runs = len(sizes)
    c = rng.normal(0.8, 0.3, n_runs)
    b = rng.normal(0.0, 0.6, n_runs)
    beta = rng.uniform(0.2, 0.6, n_runs)
    kappa = rng.uniform(0.02, 0.1, n_runs)
    tilt = rng.normal(0.0, 0.03, n_runs)
    anneal = rng.uniform(0.0, 0.9, obs_run.size)  # the schedule covariate of each checkpoint
    tilt_cov = rng.uniform(0.0, 1.5, obs_run.size)
    mu = np.logaddexp(c[obs_run], b[obs_run] - beta[obs_run] * log_d) + kappa[obs_run] * anneal
    mu = mu + tilt[obs_run] * tilt_cov
    y = mu + rng.normal(0, 0.02, obs_run.size)
    return dict(sizes=sizes, obs_run=obs_run, starts=starts, prev=prev, log_d=log_d, gap=gap,
                c=c, b=b, beta=beta, kappa=kappa, tilt=tilt, anneal=anneal, tilt_cov=tilt_cov,
                y=y)


def _kernel(case, mode, c=None, b=None, beta=None, kappa=None, tilt=None, rho=0.93):
    expo = ar_exponent(case["gap"], case["prev"], mode if mode != "none" else "order")
    return residual_run_sums(
        case["c"] if c is None else c, case["b"] if b is None else b,
        case["beta"] if beta is None else beta, case["kappa"] if kappa is None else kappa,
        case["tilt"] if tilt is None else tilt, np.array([rho]), case["y"], case["log_d"], case["anneal"], case["tilt_cov"],
        *exponent_table(expo), case["starts"], mode != "none",
    )


@pytest.mark.parametrize("mode", ["none", "order", "log_tokens"])
def test_sums_match_numpy_reference(case, mode):
    obs_run = case["obs_run"]
    mu = np.logaddexp(case["c"][obs_run], case["b"][obs_run] - case["beta"][obs_run] * case["log_d"])
    mu = mu + case["kappa"][obs_run] * case["anneal"] + case["tilt"][obs_run] * case["tilt_cov"]
    phi = None if mode == "none" else ar_phi(0.93, case["gap"], case["prev"], mode)
    want = residual_sums(case["y"] - mu, case["sizes"].astype(float),
                     numpy_segment_sum(case["starts"][:-1]), phi, case["prev"], np)
    got, _ = _kernel(case, mode)
    for k, ref in enumerate(want):
        np.testing.assert_allclose(got[:, k], np.broadcast_to(ref, got[:, k].shape),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["none", "log_tokens"])
def test_jacobian_matches_finite_differences(case, mode):
    _, jac = _kernel(case, mode)
    h = 1e-6
    for j, name in enumerate(("c", "b", "beta", "kappa", "tilt")):
        for r in range(len(case["sizes"])):
            up, down = case[name].copy(), case[name].copy()
            up[r] += h
            down[r] -= h
            fd = (_kernel(case, mode, **{name: up})[0][r] - _kernel(case, mode, **{name: down})[0][r])
            np.testing.assert_allclose(jac[r, :, j], fd / (2 * h), rtol=1e-6, atol=1e-7)
    fd_rho = (_kernel(case, mode, rho=0.93 + h)[0] - _kernel(case, mode, rho=0.93 - h)[0]) / (2 * h)
    np.testing.assert_allclose(jac[:, :, 5], fd_rho, rtol=1e-6, atol=1e-7)
    if mode == "none":
        assert np.all(jac[:, :, 5] == 0)


def test_rho_near_one_keeps_precision(case):
    """1 - phi comes from expm1: at rho = 1 - 1e-9 the log-determinant stays finite and exact."""
    rho = 1 - 1e-9
    sums, _ = _kernel(case, "log_tokens", rho=rho)
    expo = ar_exponent(case["gap"], case["prev"], "log_tokens")
    first = case["prev"] < 0
    one_minus_phi = -np.expm1(expo * np.log(rho))
    want = np.where(first, 0.0, np.log(one_minus_phi * (2 - one_minus_phi)))
    np.testing.assert_allclose(sums[:, 3], np.add.reduceat(want, case["starts"][:-1]), rtol=1e-12)


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_op_gradient_through_pytensor(case, mode):
    """The Op's gradient (Jacobian contraction) equals finite differences of a scalar cost."""
    weights = np.random.default_rng(1).normal(size=(len(case["sizes"]), 4))
    expo = ar_exponent(case["gap"], case["prev"], "log_tokens")
    c, b, beta, kappa, tilt, rho = (
        pt.vector(k) for k in ("c", "b", "beta", "kappa", "tilt", "rho")
    )
    sums, _ = ResidualRunSums(True)(c, b, beta, kappa, tilt, rho, case["y"], case["log_d"],
                                    case["anneal"], case["tilt_cov"], *exponent_table(expo),
                                    case["starts"])
    cost = (sums * weights).sum()
    inputs = [c, b, beta, kappa, tilt, rho]
    f = pytensor.function(inputs, [cost, *pt.grad(cost, inputs)], mode=mode)
    args = [case["c"], case["b"], case["beta"], case["kappa"], case["tilt"], np.array([0.9])]
    _, *grads = f(*args)
    h = 1e-6
    for j, arg in enumerate(args):
        for r in range(arg.size):
            up, down = [a.copy() for a in args], [a.copy() for a in args]
            up[j][r] += h
            down[j][r] -= h
            fd = (f(*up)[0] - f(*down)[0]) / (2 * h)
            assert grads[j][r] == pytest.approx(fd, rel=1e-6, abs=1e-6)


def test_second_derivatives_refused(case):
    expo = ar_exponent(case["gap"], case["prev"], "order")
    c = pt.vector("c")
    _, jac = ResidualRunSums(True)(c, c, c, c, c, pt.ones(1) * 0.5, case["y"], case["log_d"],
                                    case["anneal"], case["tilt_cov"], *exponent_table(expo),
                                    case["starts"])
    with pytest.raises(NotImplementedError, match="first derivatives"):
        pt.grad(jac.sum(), c)


@pytest.mark.parametrize("config_effects", [False, True])
def test_model_logp_and_gradient_match_portable_graph(config_effects):
    """The kernel model and the plain-PyTensor model have the same log density and gradient."""
    sim = simulate(n_families=2, sizes=(2e7, 2e8, 2e9), n_seeds=2, n_checkpoints=12,
                   random_seed=4)
    design = build_design(validate(sim.runs))
    priors = resolve_priors(design.n0, design.d0, None)
    options = ModelOptions(config_effects=config_effects)
    rng = np.random.default_rng(2)
    values = None
    out = []
    for portable in (True, False):
        model = build_model(design, priors, options, portable=portable)
        logp = model.logp()
        f = pytensor.function(model.value_vars, [logp, *pt.grad(logp, model.value_vars)])
        if values is None:
            point = model.initial_point()
            values = [point[v.name] + 0.05 * rng.normal(size=np.shape(point[v.name]))
                      for v in model.value_vars]
        out.append(f(*values))
    for a, b in zip(*out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_exponent_table_maps_every_checkpoint_to_its_exponent(case):
    expo = ar_exponent(case["gap"], case["prev"], "log_tokens")
    values, index = exponent_table(expo)
    np.testing.assert_allclose(values[index], expo, rtol=1e-12, atol=0)
    assert np.all(np.diff(values) > 0)
    if case["gap"][case["prev"] >= 0].std() < 1e-12:  # the grid: first checkpoints and gaps
        assert values.size <= 2


def test_exponent_table_keeps_tiny_exponents_positive():
    # a gap of 1e-13 median gaps (checkpoints a hair apart) must not round to an exponent of 0,
    # where 1 - phi^2 = 0; gaps equal up to floating-point rounding still share an entry
    expo = np.array([1.0, 1e-13, 1.0 + 1e-15, 0.3, 0.1 + 0.2])
    values, index = exponent_table(expo)
    np.testing.assert_allclose(values, [1e-13, 0.3, 1.0], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(index, [2, 0, 2, 1, 1])
    sums, jac = residual_run_sums(
        np.array([0.5]), np.array([0.0]), np.array([0.3]), np.array([0.0]), np.array([0.0]),
        np.array([0.9]), np.array([1.0, 1.0, 1.0]), np.array([0.0, 1e-13, 0.2]), np.zeros(3),
        np.zeros(3),
        *exponent_table(np.array([1.0, 1e-13, 1.0])), np.array([0, 3]), True,
    )
    assert np.all(np.isfinite(sums)) and np.all(np.isfinite(jac))
