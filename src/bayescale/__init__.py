"""bayescale: hierarchical Bayesian estimation of neural scaling laws.

Typical use::

    import bayescale
    runs = bayescale.load_dataset("olmo-ladder")
    fit = bayescale.fit(runs, random_seed=0)
    fit.summary()
    fit.predict(params=3.2e9, tokens=6e11, family="olmo-ladder")
    bayescale.compare(fit, "olmo-ladder", "other-family", params=3.2e9, tokens=6e11)
    bayescale.report.html(fit, "report.html")

The functions ``fit``, ``simulate``, ``compare`` and ``evaluate`` share their names with the
modules that define them, and the package attribute is the function: import from those
modules with ``from bayescale.compare import compare_models`` (or
``importlib.import_module("bayescale.compare")``), not ``import bayescale.compare as ...``.
``bayescale.report`` and ``bayescale.baselines`` are the subpackage and module themselves.
"""

# Before anything imports PyTensor or numba: point their compile caches at bayescale's cache
# folder (see bayescale.cache; PyTensor reads its compile directory once, at import).
from bayescale.cache import configure as _configure_cache

_configure_cache()

from bayescale import baselines, report
from bayescale.batch import FitTask, fit_many
from bayescale.compare import Comparison, compare, compare_models
from bayescale.data.datasets import list_datasets, load_dataset
from bayescale.data.prepare import (
    ProtocolSplit,
    drop_warmup,
    final_fraction,
    fit_window,
    max_param_runs,
    protocol_split,
    thin_log_spaced,
)
from bayescale.data.validate import validate
from bayescale.errors import CacheWarning, DataError, SamplingWarning, ScheduleWarning
from bayescale.evaluate import evaluate
from bayescale.fit import ScalingLawFit, fit, load
from bayescale.inference import SamplerSettings
from bayescale.intervals import prediction_dataset
from bayescale.kaplan_fit import KaplanFit, fit_kaplan
from bayescale.laws.kaplan import KAPLAN_2020
from bayescale.models.options import ModelOptions
from bayescale.models.priors import DEFAULT_PRIORS
from bayescale.planning import NextRuns, next_runs
from bayescale.prior_check import prior_predictive
from bayescale.report import credible_intervals
from bayescale.seeds import SeedVariability, seed_variability
from bayescale.simulate import Simulation, simulate
from bayescale.simulate_kaplan import KaplanSimulation, simulate_kaplan
from bayescale.version import __version__

__all__ = [
    "DEFAULT_PRIORS",
    "KAPLAN_2020",
    "CacheWarning",
    "Comparison",
    "DataError",
    "FitTask",
    "KaplanFit",
    "KaplanSimulation",
    "ModelOptions",
    "NextRuns",
    "ProtocolSplit",
    "SamplerSettings",
    "SamplingWarning",
    "ScalingLawFit",
    "ScheduleWarning",
    "SeedVariability",
    "Simulation",
    "__version__",
    "baselines",
    "compare",
    "compare_models",
    "credible_intervals",
    "drop_warmup",
    "evaluate",
    "final_fraction",
    "fit",
    "fit_kaplan",
    "fit_many",
    "fit_window",
    "list_datasets",
    "load",
    "load_dataset",
    "max_param_runs",
    "next_runs",
    "prediction_dataset",
    "prior_predictive",
    "protocol_split",
    "report",
    "seed_variability",
    "simulate",
    "simulate_kaplan",
    "thin_log_spaced",
    "validate",
]
