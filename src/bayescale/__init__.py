"""bayescale: hierarchical Bayesian estimation of neural scaling laws."""

from bayescale.errors import DataError, SamplingWarning

__version__ = "0.1.0"

__all__ = ["DataError", "SamplingWarning", "__version__"]
