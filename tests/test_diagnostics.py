"""Sampler diagnostics: the worst R-hat is named and the advice fits it."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from bayescale.inference import Diagnostics, diagnose

COMPONENTS = ["log_E", "a", "log_alpha", "b", "log_beta"]


def _idata(stuck: str, rng: np.random.Generator) -> az.InferenceData:
    """Two chains of well-mixed draws, except one element whose chains sit apart."""
    post = {
        "tau_theta": rng.normal(1.0, 0.1, size=(2, 200, 5)),
        "sigma_obs": rng.normal(0.01, 0.001, size=(2, 200)),
    }
    if stuck == "tau_theta":
        post["tau_theta"][1, :, 2] += 0.5
    else:
        post["sigma_obs"][1] += 0.005
    return az.from_dict(
        posterior=post,
        sample_stats={"diverging": np.zeros((2, 200), dtype=bool)},
        coords={"component": COMPONENTS},
        dims={"tau_theta": ["component"]},
    )


def test_worst_rhat_is_named_and_a_spread_funnel_points_to_noncentred():
    rng = np.random.default_rng(0)
    d = diagnose(_idata("tau_theta", rng), ["tau_theta", "sigma_obs"])
    assert d.worst_rhat == "tau_theta[log_alpha]"
    assert d.max_rhat > 1.5
    (problem,) = [p for p in d.problems(2) if "R-hat" in p]
    assert "worst: tau_theta[log_alpha]" in problem and "noncentered" in problem

    other = diagnose(_idata("sigma_obs", rng), ["tau_theta", "sigma_obs"])
    assert other.worst_rhat == "sigma_obs"
    (problem,) = [p for p in other.problems(2) if "R-hat" in p]
    assert "worst: sigma_obs" in problem and "multimodality" in problem


def test_divergence_advice_follows_the_target_accept_used():
    d = Diagnostics(3, 1.0, 1000.0, 1000.0, 0.0)

    def advice(target_accept):
        (problem,) = d.problems(2, target_accept)
        return problem

    assert "try target_accept=0.95" in advice(None)
    assert "try target_accept=0.95" in advice(0.9)
    assert "target_accept=0.95 was not enough: try 0.99" in advice(0.95)
    assert "even target_accept=0.99" in advice(0.99) and "try target_accept" not in advice(0.99)


def test_tree_depth_share_is_read_from_each_samplers_flag_and_advises_a_deeper_tree():
    rng = np.random.default_rng(1)
    for flag in ("maxdepth_reached", "reached_max_treedepth"):  # nutpie's, PyMC's
        reached = np.zeros((2, 200), dtype=bool)
        reached[:, :30] = True
        idata = az.from_dict(
            posterior={"sigma_obs": rng.normal(0.01, 0.001, size=(2, 200))},
            sample_stats={"diverging": np.zeros((2, 200), dtype=bool), flag: reached},
        )
        d = diagnose(idata, ["sigma_obs"])
        assert d.max_tree_depth_share == pytest.approx(0.15)
        (problem,) = [p for p in d.problems(2) if "tree depth" in p]
        assert problem.startswith("15% of draws") and "raise max_tree_depth" in problem
