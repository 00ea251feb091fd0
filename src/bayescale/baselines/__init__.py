"""Classic (non-Bayesian) baselines for the Chinchilla form ``L = E + A/N^alpha + B/D^beta``.

Four kinds of predictors, all with the same ``.predict(params, tokens)`` interface and all
returning the prediction-dataset shape of :mod:`bayescale.intervals`:

* :func:`fit_least_squares` -- the method of "A Hitchhiker's Guide to Scaling Law Estimation"
  (Choshen, Zhang, Andreas): ``scipy.optimize.curve_fit`` of the loss itself, started from the
  Muennighoff et al. (2023) fit.
* :func:`fit_huber` -- the method of Hoffmann et al. (2022) as re-run by Besiroglu et al. (2024):
  Huber loss (``delta = 1e-3``) of log-loss residuals, minimized with L-BFGS-B from a grid of
  starting points.
* :func:`bootstrap_huber` -- the Huber fit bootstrapped over *runs*, giving parameter confidence
  intervals, a confidence band for the mean curve and a prediction band for new checkpoints.
* :func:`best_loss_baseline` and :func:`most_trained_baseline` -- the two naive baselines of the
  Hitchhiker's guide (lowest training loss; loss of the training model with the largest N*D).
* :func:`fit_fixed_a_alpha` -- the guide's single-run transfer: ``(A, alpha)`` held at another
  family's values (Muennighoff et al. 2023 by default) and ``E, B, beta`` fitted by least squares
  on one run of the new family.

Every fitter takes a tidy run table with columns ``params`` (N), ``tokens`` (D) and ``loss``
(nats per token); the bootstrap also needs ``run`` (and uses ``family`` when present). A fitter
fits ONE law to all rows it is given, so select a family first.

Modules: :mod:`~bayescale.baselines.base` (result classes, input checks, bounds),
:mod:`~bayescale.baselines.least_squares`, :mod:`~bayescale.baselines.huber`,
:mod:`~bayescale.baselines.bootstrap`, :mod:`~bayescale.baselines.fixed_term` and
:mod:`~bayescale.baselines.naive`; every public name is importable from here.
"""

from bayescale.baselines.base import EXPONENT_BOUNDS, ConstantFit, PointFit
from bayescale.baselines.bootstrap import BootstrapFit, bootstrap_huber
from bayescale.baselines.fixed_term import (
    MUENNIGHOFF_ALPHA,
    MUENNIGHOFF_LOG_A,
    FixedTermFit,
    fit_fixed_a_alpha,
)
from bayescale.baselines.huber import DEFAULT_HUBER_GRID, HOFFMANN_GRID, fit_huber, huber_grid
from bayescale.baselines.least_squares import fit_least_squares
from bayescale.baselines.naive import best_loss_baseline, most_trained_baseline

__all__ = [
    "DEFAULT_HUBER_GRID",
    "EXPONENT_BOUNDS",
    "HOFFMANN_GRID",
    "MUENNIGHOFF_ALPHA",
    "MUENNIGHOFF_LOG_A",
    "BootstrapFit",
    "ConstantFit",
    "FixedTermFit",
    "PointFit",
    "best_loss_baseline",
    "bootstrap_huber",
    "fit_fixed_a_alpha",
    "fit_huber",
    "fit_least_squares",
    "huber_grid",
    "most_trained_baseline",
]
