"""The Chinchilla form L(N, D) = E + A / N^alpha + B / D^beta.

Two parameterizations are provided:

* the usual one, ``(E, A, alpha, B, beta)``;
* the reference-scale one used by the Bayesian model, ``(log_E, a, alpha, b, beta)`` with
  ``A / N^alpha = exp(a - alpha * log(N / N0))`` and ``B / D^beta = exp(b - beta * log(D / D0))``,
  which removes most of the near-collinearity between ``A`` and ``alpha`` (and ``B`` and ``beta``).

Every function takes a ``math`` module argument (``numpy`` by default, ``pytensor.tensor`` in
the model) so the same formula serves numpy and PyTensor.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

CHINCHILLA_PARAMS = ("E", "A", "alpha", "B", "beta")

#: Published fits of the Chinchilla form (see data/README.md and the project's REFERENCE notes).
PUBLISHED_FITS: dict[str, dict[str, float]] = {
    "hoffmann2022": {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28},
    "besiroglu2024": {"E": 1.8169, "A": 482.01, "alpha": 0.3478, "B": 2085.43, "beta": 0.3658},
    "muennighoff2023": {"E": 1.869, "A": 520.8, "alpha": 0.3527, "B": 1487.7, "beta": 0.3527},
}


def chinchilla_loss(
    params: Any, tokens: Any, E: Any, A: Any, alpha: Any, B: Any, beta: Any, math: ModuleType = np
) -> Any:
    """Loss ``E + A / N^alpha + B / D^beta``, computed through logs for numerical safety.

    Parameters
    ----------
    params, tokens
        Parameter count ``N`` and training tokens ``D`` (broadcastable).
    E, A, alpha, B, beta
        Law parameters in the usual convention.
    math
        ``numpy`` (default) or ``pytensor.tensor``.

    Returns
    -------
    array-like
        Predicted loss in nats per token.
    """
    return (
        E
        + math.exp(math.log(A) - alpha * math.log(params))
        + math.exp(math.log(B) - beta * math.log(tokens))
    )


def chinchilla_log_loss_ref(
    log_n_rel: Any,
    log_d_rel: Any,
    log_E: Any,
    a: Any,
    alpha: Any,
    b: Any,
    beta: Any,
    math: ModuleType = np,
) -> Any:
    """Log-loss in the reference-scale parameterization.

    Parameters
    ----------
    log_n_rel, log_d_rel
        ``log(N / N0)`` and ``log(D / D0)``.
    log_E, a, alpha, b, beta
        Reference-scale parameters (see module docstring).
    math
        ``numpy`` (default) or ``pytensor.tensor``.

    Returns
    -------
    array-like
        ``log L`` = ``log(exp(log_E) + exp(a - alpha*log_n_rel) + exp(b - beta*log_d_rel))``.
    """
    terms = [log_E + 0 * log_n_rel, a - alpha * log_n_rel, b - beta * log_d_rel]
    if math is np:
        return np.logaddexp(np.logaddexp(terms[0], terms[1]), terms[2])
    return math.logsumexp(math.stack(terms, axis=0), axis=0)


def to_reference_scale(
    E: float, A: float, alpha: float, B: float, beta: float, n0: float, d0: float
) -> dict[str, float]:
    """Convert usual-convention parameters to the reference-scale ones at ``(N0, D0)``."""
    return {
        "log_E": float(np.log(E)),
        "a": float(np.log(A) - alpha * np.log(n0)),
        "alpha": float(alpha),
        "b": float(np.log(B) - beta * np.log(d0)),
        "beta": float(beta),
    }


def from_reference_scale(
    log_E: Any, a: Any, alpha: Any, b: Any, beta: Any, n0: float, d0: float
) -> dict[str, Any]:
    """Convert reference-scale parameters back to ``(E, A, alpha, B, beta)``.

    Works elementwise on numpy arrays or xarray objects (e.g. posterior draws).
    """
    return {
        "E": np.exp(log_E),
        "A": np.exp(a + alpha * np.log(n0)),
        "alpha": alpha,
        "B": np.exp(b + beta * np.log(d0)),
        "beta": beta,
    }
