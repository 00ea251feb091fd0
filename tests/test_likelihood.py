"""The closed-form per-run marginal likelihood against scipy's multivariate normal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayescale.models.likelihood import (
    ar_phi,
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
