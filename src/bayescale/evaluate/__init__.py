"""Held-out evaluation of scaling-law predictors, following the Hitchhiker's Guide protocol.

"A Hitchhiker's Guide to Scaling Law Estimation" (Choshen, Zhang, Andreas) scores a fitted law by
predicting the largest model of a family from the smaller ones:

* ``F_train``: the runs of a family except the largest-N ones, past a 10B-token warm-up cut;
* ``F_target``: the checkpoints of the largest-N runs in the last 30% of each run;
* ARE: mean over ``F_target`` of ``|L - L_hat| / L``.

This package holds, one module each,

* :func:`evaluate`, which runs the protocol family by family for several methods
  (:mod:`~bayescale.evaluate.protocol`);
* the paper's grids :func:`are_grid_models_fraction` and :func:`are_grid_models_scaleup`, and
  :func:`plot_are_heatmap` (:mod:`~bayescale.evaluate.grids`);
* :func:`transfer`: a new family predicted from one of its runs, by hierarchical borrowing from
  the other families or with the guide's borrowed ``(A, alpha)`` of Muennighoff et al.
  (:mod:`~bayescale.evaluate.single_run`);
* :func:`paper_findings`: the guide's headline findings (intermediate checkpoints, the 10B-token
  cut, the number of models) as paired per-family ARE differences with bootstrap intervals
  (:func:`summarize_differences`, :func:`bootstrap_mean_interval`;
  :mod:`~bayescale.evaluate.findings`).

:mod:`~bayescale.evaluate.common` holds what they share. Every public name is importable from
``bayescale.evaluate`` itself; ``bayescale.evaluate`` reached as an attribute of the package
``bayescale`` is the function :func:`evaluate`.

The metrics (:func:`absolute_relative_error`, :func:`signed_relative_error`,
:func:`interval_coverage`, :func:`interval_width`, :func:`crps_from_samples`), the scoring of
one prediction dataset (:func:`score_prediction`), one method fitted and predicting
(:func:`fit_and_predict`) and :func:`plot_are_heatmap` live in :mod:`bayescale.scoring`, below
:mod:`bayescale.batch`, and are importable from here too.

Method names
------------
``"bayescale"`` (:func:`bayescale.fit`, band ``observed``), ``"curve_fit"``
(:func:`bayescale.baselines.fit_least_squares`), ``"huber"``
(:func:`bayescale.baselines.fit_huber`), ``"huber_bootstrap"``
(:func:`bayescale.baselines.bootstrap_huber`, band ``observed``), ``"best_loss"`` and
``"most_trained"`` (the naive baselines of the paper).
"""

from bayescale.evaluate.findings import FINDINGS, Findings, paper_findings, summarize_differences
from bayescale.evaluate.grids import are_grid_models_fraction, are_grid_models_scaleup
from bayescale.evaluate.protocol import evaluate
from bayescale.evaluate.single_run import TRANSFER_METHODS, choose_source_run, transfer
from bayescale.scoring import (
    METHODS,
    absolute_relative_error,
    bootstrap_mean_interval,
    crps_from_samples,
    fit_and_predict,
    interval_coverage,
    interval_width,
    plot_are_heatmap,
    score_prediction,
    signed_relative_error,
)

__all__ = [
    "FINDINGS",
    "METHODS",
    "TRANSFER_METHODS",
    "Findings",
    "absolute_relative_error",
    "are_grid_models_fraction",
    "are_grid_models_scaleup",
    "bootstrap_mean_interval",
    "choose_source_run",
    "crps_from_samples",
    "evaluate",
    "fit_and_predict",
    "interval_coverage",
    "interval_width",
    "paper_findings",
    "plot_are_heatmap",
    "score_prediction",
    "signed_relative_error",
    "summarize_differences",
    "transfer",
]
