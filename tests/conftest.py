"""Keep the tests' compile cache inside the project (as ``make test`` does), not in the user's
cache directory; set before any test module imports bayescale, which reads it.

Fits that several test modules use are session fixtures here (built by ``shared_fits``): a new
fit costs a model compile, 10-40 s on 2 cores, far more than its sampling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault(
    "BAYESCALE_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "bayescale")
)


@pytest.fixture(scope="session")
def ladder_sim():
    """``(simulation, runs)`` of the planning ladder (``shared_fits.ladder``)."""
    from shared_fits import ladder

    return ladder()


@pytest.fixture(scope="session")
def ladder_fit(ladder_sim):
    """The default model on the ladder, 2 chains x 200 draws: test_planning's fit, and
    test_scaling's check of the sampled coordinates' posterior scale."""
    from shared_fits import fit_ladder

    return fit_ladder(ladder_sim[1])


@pytest.fixture(scope="session")
def report_split():
    """``(train, held)``: test_report's table (``shared_fits.report_split``)."""
    from shared_fits import report_split

    return report_split()


@pytest.fixture(scope="session")
def arch_fit_and_warnings(report_split):
    """The arch > family fit of test_report and the warnings it raised (test_model_options checks
    this option on it)."""
    from shared_fits import fit_arch

    return fit_arch(report_split[0])
