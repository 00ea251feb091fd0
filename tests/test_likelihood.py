"""The closed-form per-run marginal likelihood against scipy's multivariate normal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayescale.models.likelihood import (
    ar_phi,
    config_effect_conditional,
    config_marginal_loglik,
    numpy_segment_sum,
    run_effect_conditional,
    run_marginal_loglik,
)


def _runs(rng, sizes):
    obs_run = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    prev = np.arange(obs_run.size) - 1
    prev[starts] = -1
    log_d = np.concatenate([np.sort(rng.uniform(0, 3, n)) for n in sizes])
    gap = np.where(prev < 0, 0.0, log_d - log_d[np.maximum(prev, 0)])
    return obs_run, starts, prev, gap


def _ar_corr(phi_run: np.ndarray) -> np.ndarray:
    """Correlation matrix of a non-stationary AR(1) with lag-one correlations phi_run[1:]."""
    n = phi_run.size
    corr = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            corr[i, j] = corr[j, i] = np.prod(phi_run[i + 1 : j + 1])
    return corr


@pytest.mark.parametrize("mode", ["none", "order", "log_tokens"])
def test_marginal_matches_dense_gaussian(mode):
    rng = np.random.default_rng(3)
    sizes = np.array([1, 4, 7, 12])
    obs_run, starts, prev, gap = _runs(rng, sizes)
    resid = rng.normal(0, 0.02, obs_run.size)
    sigma, rho = 0.013, 0.6
    tau = np.array([0.004, 0.02, 0.01, 0.03])
    phi = None if mode == "none" else ar_phi(rho, gap, prev, mode)
    got = run_marginal_loglik(
        resid, sigma, tau, sizes.astype(float), numpy_segment_sum(starts), phi=phi, prev=prev
    )
    for r, n in enumerate(sizes):
        sl = slice(starts[r], starts[r] + n)
        corr = np.eye(n) if phi is None else _ar_corr(np.asarray(phi)[sl])
        cov = sigma**2 * corr + tau[r] ** 2 * np.ones((n, n))
        want = multivariate_normal(np.zeros(n), cov).logpdf(resid[sl])
        assert got[r] == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("mode", ["none", "order"])
def test_run_effect_conditional_matches_gaussian_conditioning(mode):
    rng = np.random.default_rng(5)
    sizes = np.array([3, 9])
    obs_run, starts, prev, gap = _runs(rng, sizes)
    resid = rng.normal(0.01, 0.02, obs_run.size)
    sigma, tau = 0.015, np.array([0.02, 0.005])
    phi = None if mode == "none" else ar_phi(0.5, gap, prev, mode)
    mean, sd = run_effect_conditional(
        resid, sigma, tau, sizes.astype(float), numpy_segment_sum(starts), phi=phi, prev=prev
    )
    for r, n in enumerate(sizes):
        sl = slice(starts[r], starts[r] + n)
        corr = np.eye(n) if phi is None else _ar_corr(np.asarray(phi)[sl])
        noise = sigma**2 * corr
        # joint (u, e): e = u 1 + eps; condition u on e
        cov_e = noise + tau[r] ** 2 * np.ones((n, n))
        cov_ue = tau[r] ** 2 * np.ones(n)
        want_mean = cov_ue @ np.linalg.solve(cov_e, resid[sl])
        want_var = tau[r] ** 2 - cov_ue @ np.linalg.solve(cov_e, cov_ue)
        assert mean[r] == pytest.approx(want_mean, rel=1e-9)
        assert sd[r] == pytest.approx(np.sqrt(want_var), rel=1e-9)


def test_first_checkpoints_are_uncorrelated_with_previous_run():
    prev = np.array([-1, 0, 1, -1, 3])
    gap = np.array([0.0, 0.1, 0.2, 0.0, 0.1])
    phi = ar_phi(0.7, gap, prev, "log_tokens")
    assert phi[0] == 0 and phi[3] == 0
    # median gap 0.1 -> phi = rho at the median spacing, rho^2 at twice it
    assert phi[1] == pytest.approx(0.7)
    assert phi[2] == pytest.approx(0.49)


def _config_sum(run_config: np.ndarray, n_configs: int):
    def _sum(x):
        x = np.asarray(x, dtype=float)
        out = np.zeros((*x.shape[:-1], n_configs))
        np.add.at(out, (..., run_config), x)
        return out

    return _sum


def _nested_cov(sizes, run_config, phi, sigma, tau, tau_c):
    """Dense covariance of all residuals: AR noise + seed offsets + config offsets."""
    n = int(sizes.sum())
    obs_run = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    cov = np.zeros((n, n))
    for r, m in enumerate(sizes):
        sl = slice(starts[r], starts[r] + m)
        corr = np.eye(m) if phi is None else _ar_corr(np.asarray(phi)[sl])
        cov[sl, sl] += sigma**2 * corr + tau[r] ** 2
    same_config = run_config[obs_run][:, None] == run_config[obs_run][None, :]
    return cov + tau_c**2 * same_config, obs_run


@pytest.mark.parametrize("mode", ["none", "log_tokens"])
def test_config_marginal_matches_dense_gaussian(mode):
    rng = np.random.default_rng(11)
    sizes = np.array([3, 5, 1, 6, 4])
    run_config = np.array([0, 0, 1, 2, 2])  # configs with 2, 1 and 2 seeds
    obs_run, starts, prev, gap = _runs(rng, sizes)
    resid = rng.normal(0.01, 0.02, obs_run.size)
    sigma, tau, tau_c = 0.011, np.array([0.004, 0.004, 0.02, 0.01, 0.01]), 0.017
    phi = None if mode == "none" else ar_phi(0.7, gap, prev, mode)
    got = config_marginal_loglik(
        resid, sigma, tau, tau_c, sizes.astype(float), numpy_segment_sum(starts),
        _config_sum(run_config, 3), phi=phi, prev=prev,
    )
    cov, obs_run = _nested_cov(sizes, run_config, phi, sigma, tau, tau_c)
    for c in range(3):
        idx = np.flatnonzero(run_config[obs_run] == c)
        want = multivariate_normal(np.zeros(idx.size), cov[np.ix_(idx, idx)]).logpdf(resid[idx])
        assert got[c] == pytest.approx(want, rel=1e-10, abs=1e-10)


def test_config_marginal_reduces_to_run_marginal_without_config_spread():
    rng = np.random.default_rng(2)
    sizes = np.array([4, 6])
    obs_run, starts, _, _ = _runs(rng, sizes)
    resid = rng.normal(0, 0.02, obs_run.size)
    seg = numpy_segment_sum(starts)
    per_config = config_marginal_loglik(
        resid, 0.01, np.array([0.02, 0.02]), 0.0, sizes.astype(float), seg,
        _config_sum(np.array([0, 0]), 1),
    )
    per_run = run_marginal_loglik(resid, 0.01, np.array([0.02, 0.02]), sizes.astype(float), seg)
    assert per_config[0] == pytest.approx(per_run.sum(), rel=1e-12)


def test_config_effect_conditional_matches_gaussian_conditioning():
    rng = np.random.default_rng(8)
    sizes = np.array([4, 2, 7])
    run_config = np.array([0, 0, 1])
    obs_run, starts, prev, gap = _runs(rng, sizes)
    resid = rng.normal(0.02, 0.02, obs_run.size)
    sigma, tau, tau_c = 0.012, np.array([0.006, 0.006, 0.01]), 0.03
    phi = ar_phi(0.5, gap, prev, "order")
    mean, sd = config_effect_conditional(
        resid, sigma, tau, tau_c, sizes.astype(float), numpy_segment_sum(starts),
        _config_sum(run_config, 2), phi=phi, prev=prev,
    )
    cov, obs_run = _nested_cov(sizes, run_config, phi, sigma, tau, tau_c)
    for c in range(2):
        idx = np.flatnonzero(run_config[obs_run] == c)
        cov_ve = np.full(idx.size, tau_c**2)
        want_mean = cov_ve @ np.linalg.solve(cov[np.ix_(idx, idx)], resid[idx])
        want_var = tau_c**2 - cov_ve @ np.linalg.solve(cov[np.ix_(idx, idx)], cov_ve)
        assert mean[c] == pytest.approx(want_mean, rel=1e-9)
        assert sd[c] == pytest.approx(np.sqrt(want_var), rel=1e-9)
