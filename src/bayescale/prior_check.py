"""Old home of the prior predictive check, which lives in :mod:`bayescale.checks.prior` now;
:func:`prior_predictive` stays importable from here."""

from bayescale.checks.prior import prior_predictive

__all__ = ["prior_predictive"]
