"""Old home of SBC and predictive coverage, which live in :mod:`bayescale.checks` now
(:mod:`~bayescale.checks.sbc`, :mod:`~bayescale.checks.coverage`,
:mod:`~bayescale.checks.parallel`); their names, and those of the compiled refits of
:mod:`bayescale.refit`, stay importable from here."""

from bayescale.checks.coverage import (
    inject_spike,
    predictive_coverage,
    run_coverage_replication,
    split_held_out,
    summarise_coverage,
)
from bayescale.checks.parallel import run_parallel
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
from bayescale.refit import RefitModel, cached_refit_model, fit_same_layout, layout_key

__all__ = [
    "SBC_EXTRA",
    "SBC_MAIN",
    "PriorDraw",
    "RefitModel",
    "Uniformity",
    "ar1_noise",
    "cached_refit_model",
    "draw_from_prior",
    "fit_same_layout",
    "inject_spike",
    "layout_key",
    "plot_rank_histograms",
    "posterior_sbc_draws",
    "predictive_coverage",
    "rank_uniformity",
    "run_coverage_replication",
    "run_parallel",
    "run_sbc_replication",
    "sbc_design",
    "sbc_ranks",
    "split_held_out",
    "summarise_coverage",
    "thin_indices",
]
