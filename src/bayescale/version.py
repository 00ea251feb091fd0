"""The version of bayescale (also ``bayescale.__version__``; keep it equal to pyproject's)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
