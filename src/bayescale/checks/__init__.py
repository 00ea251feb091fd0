"""Checks of the model: prior predictive, simulated data, SBC and predictive coverage.

* :func:`prior_predictive` (:mod:`~bayescale.checks.prior`): what losses the priors imply for
  the runs of a table;
* :func:`simulate` and :func:`simulate_kaplan`: synthetic run tables from known laws (defined in
  :mod:`bayescale.simulate` and :mod:`bayescale.simulate_kaplan`, re-exported here);
* simulation-based calibration (:mod:`~bayescale.checks.sbc`): prior draws of parameters and
  data (:func:`sbc_design`, :func:`draw_from_prior`), ranks of the truth among thinned posterior
  draws (:func:`sbc_ranks`), their uniformity (:func:`rank_uniformity`,
  :func:`plot_rank_histograms`) and one replication (:func:`run_sbc_replication`);
* predictive coverage (:mod:`~bayescale.checks.coverage`): the share of held-out checkpoints
  inside the predictive bands (:func:`split_held_out`, :func:`predictive_coverage`,
  :func:`run_coverage_replication`, :func:`summarise_coverage`);
* :func:`run_parallel` (:mod:`~bayescale.checks.parallel`): replications on Dask worker
  processes, each seeded by its index.

``benchmarks/sbc.py``, ``benchmarks/robustness.py`` and ``benchmarks/band_coverage.py`` run
these checks at scale.
"""

from bayescale.checks.coverage import (
    inject_spike,
    predictive_coverage,
    run_coverage_replication,
    split_held_out,
    summarise_coverage,
)
from bayescale.checks.parallel import run_parallel
from bayescale.checks.prior import prior_predictive
from bayescale.checks.sbc import (
    SBC_EXTRA,
    SBC_MAIN,
    PriorDraw,
    Uniformity,
    ar1_noise,
    draw_from_prior,
    plot_rank_histograms,
    posterior_sbc_draws,
    rank_uniformity,
    run_sbc_replication,
    sbc_design,
    sbc_ranks,
    thin_indices,
)
from bayescale.simulate import simulate
from bayescale.simulate_kaplan import simulate_kaplan

__all__ = [
    "SBC_EXTRA",
    "SBC_MAIN",
    "PriorDraw",
    "Uniformity",
    "ar1_noise",
    "draw_from_prior",
    "inject_spike",
    "plot_rank_histograms",
    "posterior_sbc_draws",
    "predictive_coverage",
    "prior_predictive",
    "rank_uniformity",
    "run_coverage_replication",
    "run_parallel",
    "run_sbc_replication",
    "sbc_design",
    "sbc_ranks",
    "simulate",
    "simulate_kaplan",
    "split_held_out",
    "summarise_coverage",
    "thin_indices",
]
