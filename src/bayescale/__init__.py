"""bayescale: hierarchical Bayesian estimation of neural scaling laws.

Typical use::

    import bayescale
    runs = bayescale.load_dataset("olmo-ladder")
    fit = bayescale.fit(runs, random_seed=0)
    fit.summary()
    fit.predict(params=3.2e9, tokens=6e11, family="olmo-ladder")
    bayescale.compare(fit, "olmo-ladder", "other-family", params=3.2e9, tokens=6e11)
    bayescale.report.html(fit, "report.html")

``import bayescale`` is quick: the names in ``__all__`` are imported when first used (PEP 562),
so PyMC, ArviZ and matplotlib load with the first fit, report or data helper that needs them.
Every bayescale submodule is reachable as an attribute in the same way.

The functions ``fit``, ``simulate``, ``simulate_kaplan``, ``compare`` and ``evaluate`` share
their names with the modules that define them (``evaluate`` with a subpackage), and the
package attribute is the function: import from those modules with
``from bayescale.compare import compare_models`` or ``from bayescale.evaluate import grids``
(or ``importlib.import_module("bayescale.compare")``), not ``import bayescale.compare as ...``
or ``import bayescale.evaluate.grids as ...``. ``bayescale.report``, ``bayescale.baselines``
and ``bayescale.checks`` (prior predictive, simulation, SBC, coverage) are the subpackages
themselves.
"""

# Before anything imports PyTensor or numba: point their compile caches at bayescale's cache
# folder (see bayescale.cache; PyTensor reads its compile directory once, at import).
from bayescale.cache import configure as _configure_cache

_configure_cache()

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

from bayescale.errors import (
    CacheWarning,
    DataError,
    DataWarning,
    SamplingWarning,
    ScheduleWarning,
    UnreliableEstimateWarning,
)
from bayescale.version import __version__

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and editors
    from bayescale import baselines, checks, report
    from bayescale.batch import FitTask, fit_many
    from bayescale.checks.prior import prior_predictive
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
    from bayescale.evaluate import evaluate
    from bayescale.fit import ScalingLawFit, fit, load
    from bayescale.inference import SamplerSettings
    from bayescale.intervals import prediction_dataset
    from bayescale.kaplan_fit import KaplanFit, fit_kaplan
    from bayescale.laws.kaplan import KAPLAN_2020
    from bayescale.models.options import ModelOptions
    from bayescale.models.priors import DEFAULT_PRIORS
    from bayescale.planning import NextRuns, next_runs
    from bayescale.report import credible_intervals
    from bayescale.seeds import SeedVariability, seed_variability
    from bayescale.simulate import Simulation, simulate
    from bayescale.simulate_kaplan import KaplanSimulation, simulate_kaplan

__all__ = [
    "DEFAULT_PRIORS",
    "KAPLAN_2020",
    "CacheWarning",
    "Comparison",
    "DataError",
    "DataWarning",
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
    "UnreliableEstimateWarning",
    "__version__",
    "baselines",
    "checks",
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

#: The module (relative to ``bayescale``) that defines each lazily imported name of ``__all__``.
_LAZY: dict[str, str] = {
    "baselines": "baselines",
    "checks": "checks",
    "report": "report",
    "credible_intervals": "report",
    "FitTask": "batch",
    "fit_many": "batch",
    "Comparison": "compare",
    "compare": "compare",
    "compare_models": "compare",
    "list_datasets": "data.datasets",
    "load_dataset": "data.datasets",
    "ProtocolSplit": "data.prepare",
    "drop_warmup": "data.prepare",
    "final_fraction": "data.prepare",
    "fit_window": "data.prepare",
    "max_param_runs": "data.prepare",
    "protocol_split": "data.prepare",
    "thin_log_spaced": "data.prepare",
    "validate": "data.validate",
    "evaluate": "evaluate",
    "ScalingLawFit": "fit",
    "fit": "fit",
    "load": "fit",
    "SamplerSettings": "inference",
    "prediction_dataset": "intervals",
    "KaplanFit": "kaplan_fit",
    "fit_kaplan": "kaplan_fit",
    "KAPLAN_2020": "laws.kaplan",
    "ModelOptions": "models.options",
    "DEFAULT_PRIORS": "models.priors",
    "NextRuns": "planning",
    "next_runs": "planning",
    "prior_predictive": "checks.prior",
    "SeedVariability": "seeds",
    "seed_variability": "seeds",
    "Simulation": "simulate",
    "simulate": "simulate",
    "KaplanSimulation": "simulate_kaplan",
    "simulate_kaplan": "simulate_kaplan",
}

#: The public names that are modules; every other name of ``__all__`` is an object of its module.
_MODULES = frozenset({"baselines", "checks", "report"})

#: Objects named like the module that defines them: the package attribute is the object.
_SHADOWING = frozenset(
    name for name, module in _LAZY.items() if module.rsplit(".", 1)[-1] == name
) - _MODULES


def __getattr__(name: str) -> Any:
    """Import a name of ``__all__``, or a bayescale submodule, on first use (PEP 562).

    Parameters
    ----------
    name
        The attribute asked for.

    Returns
    -------
    object
        The public object, which stays in the package's namespace afterwards.

    Raises
    ------
    AttributeError
        When ``name`` is neither a public name nor a submodule of bayescale.
    """
    module_name = _LAZY.get(name)
    if module_name is None:
        if (
            name.startswith("_")
            or not name.isidentifier()
            or importlib.util.find_spec(f"{__name__}.{name}") is None
        ):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f"{__name__}.{name}")  # the import binds it here
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The package's names: those already loaded and everything in ``__all__``."""
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """bayescale's module type: keeps the names of :data:`_SHADOWING` (``fit``, ``simulate``, ...)
    the functions when the import system binds the submodules of the same name to the package."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            name in _SHADOWING
            and isinstance(value, types.ModuleType)
            and value.__name__ == f"{__name__}.{name}"
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
