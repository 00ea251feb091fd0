"""Model builders: design arrays, priors, the hierarchical PyMC model and its start values."""

from bayescale.models.design import Design, build_design
from bayescale.models.hierarchical import build_model, log_mean_curve
from bayescale.models.options import ModelOptions
from bayescale.models.priors import DEFAULT_PRIORS, THETA_NAMES, resolve_priors
from bayescale.models.start import initial_point

__all__ = [
    "DEFAULT_PRIORS",
    "THETA_NAMES",
    "Design",
    "ModelOptions",
    "build_design",
    "build_model",
    "initial_point",
    "log_mean_curve",
    "resolve_priors",
]
