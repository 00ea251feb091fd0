"""Scaling-law formulas, usable with numpy arrays and PyTensor tensors alike."""

from bayescale.laws.chinchilla import (
    CHINCHILLA_PARAMS,
    PUBLISHED_FITS,
    chinchilla_log_loss_ref,
    chinchilla_loss,
    from_reference_scale,
    to_reference_scale,
)

__all__ = [
    "CHINCHILLA_PARAMS",
    "PUBLISHED_FITS",
    "chinchilla_log_loss_ref",
    "chinchilla_loss",
    "from_reference_scale",
    "to_reference_scale",
]
