"""Extra PyMC transforms that change only the coordinates NUTS samples in."""

from __future__ import annotations

from typing import Any

import pytensor.tensor as pt
from pymc.distributions.transforms import Transform


class UnitScale(Transform):
    """Affine transform ``value = loc + scale * z`` after a variable's default transform.

    Chained after the default transform (log, logit) through PyMC's ``transform=`` argument,
    so ``z`` is near unit scale for NUTS; the log-Jacobian is the constant ``log(scale)``.
    """

    name = "unitscale"

    def __init__(self, loc: Any, scale: Any) -> None:
        self.loc = loc
        self.scale = scale

    def forward(self, value: Any, *inputs: Any) -> Any:
        return (value - self.loc) / self.scale

    def backward(self, value: Any, *inputs: Any) -> Any:
        return self.loc + self.scale * value

    def log_jac_det(self, value: Any, *inputs: Any) -> Any:
        return pt.log(self.scale) * pt.ones_like(value)
