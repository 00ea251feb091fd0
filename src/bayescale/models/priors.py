"""Default priors of the hierarchical Chinchilla model, and how to override them.

All parameters live on log scales. The family parameters are the reference-scale vector

    theta_f = (log_E, a, log_alpha, b, log_beta)

with ``A / N^alpha = exp(a - alpha log(N/N0))`` and ``B / D^beta = exp(b - beta log(D/D0))``.

Population means are weakly informative and centred on published fits of the Chinchilla form:
``E``, ``alpha`` and ``beta`` near Besiroglu et al. (2024)'s replication (E = 1.82,
alpha = 0.35, beta = 0.37) with standard deviations wide enough to cover Hoffmann et al. (2022)
and Muennighoff et al. (2023) and very different loss scales; ``a`` and ``b`` are the published
``log A - alpha log N0`` and ``log B - beta log D0`` at the data's reference scales, with sd 1.5
(a factor of ~4.5 on each power-law term).

Override any entry by passing ``priors={"log_alpha": {"mu": -1.2, "sigma": 0.3}, ...}`` to
:func:`bayescale.fit`; unspecified entries keep their defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from bayescale.laws.chinchilla import PUBLISHED_FITS
from bayescale.laws.schedule import DEFAULT_KAPPA

THETA_NAMES: tuple[str, ...] = ("log_E", "a", "log_alpha", "b", "log_beta")

_CENTRE = PUBLISHED_FITS["besiroglu2024"]

DEFAULT_PRIORS: dict[str, dict[str, float]] = {
    # population means of the family parameters (Normal)
    "log_E": {"mu": float(np.log(_CENTRE["E"])), "sigma": 0.5},
    "a": {"sigma": 1.5},  # mu derived from the published A, alpha at N0
    "log_alpha": {"mu": float(np.log(_CENTRE["alpha"])), "sigma": 0.5},
    "b": {"sigma": 1.5},  # mu derived from the published B, beta at D0
    "log_beta": {"mu": float(np.log(_CENTRE["beta"])), "sigma": 0.5},
    # spread of families around the population (HalfNormal scales), per component
    "family_sd": {"log_E": 0.3, "a": 0.5, "log_alpha": 0.3, "b": 0.5, "log_beta": 0.3},
    # spread of architectures around the population (HalfNormal scales)
    "arch_sd": {"log_E": 0.2, "a": 0.3, "log_alpha": 0.2, "b": 0.3, "log_beta": 0.2},
    # seed-to-seed sd of a run's log-loss offset (HalfNormal). Replicate runs of language
    # models differ by 0.03-0.5% of the loss (the bundled OLMo ladder and nanoGPT replicates:
    # 0.03%); 95% of this prior lies below 1%. A wider prior let the run offsets absorb
    # how the law misfits whole runs, which then learnt its exponents from within-run shape.
    "sigma_seed": {"sigma": 0.005},
    # sd of a configuration's log-loss offset around the law when config_effects=True
    # (HalfNormal): how far one configuration sits off the family's curve
    "sigma_config": {"sigma": 0.02},
    # slope of log sigma_seed in log(N/N0) when seed_by_size=True (Normal)
    "seed_size_slope": {"mu": 0.0, "sigma": 0.5},
    # checkpoint noise sd on log-loss (HalfNormal; the AR(1) process's stationary sd): the
    # evaluation noise of a held-out loss and the curve's wiggles, a fraction of a per cent;
    # 95% of this prior lies below 2%, so the correlated noise cannot carry run-level levels
    "sigma_obs": {"sigma": 0.01},
    # AR(1) correlation between consecutive checkpoints (Beta)
    "ar_rho": {"alpha": 2.0, "beta": 2.0},
    # Student-t degrees of freedom (Gamma)
    "nu": {"alpha": 2.0, "beta": 0.1},
    # LKJ concentration for correlated family effects
    "lkj_eta": {"eta": 2.0},
    # schedule-aware law (runs with a learning-rate schedule): log of the population scale of
    # the excess log-loss while the LR has not annealed, per unit of lagged LR fraction
    # (Normal; median 0.05, i.e. a few per cent of the loss between peak and annealed LR, a
    # factor e either way at one sd)
    "kappa": {"mu": float(np.log(DEFAULT_KAPPA)), "sigma": 1.0},
    # spread of log kappa across families (Gamma(2) with this mean)
    "kappa_sd": {"sigma": 0.5},
    # within-run tilt per unit of the tilt covariate (bayescale.laws.schedule): a few per cent
    # of the loss over a short run's fitted part, 0 (the plain schedule-aware law) by default
    "tilt": {"mu": 0.0, "sigma": 0.05},
}


def resolve_priors(
    n0: float, d0: float, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, dict[str, float]]:
    """Defaults merged with user overrides, with the ``a``/``b`` means set at ``(N0, D0)``.

    Parameters
    ----------
    n0, d0
        Reference parameter count and token count.
    overrides
        Partial prior specification; keys must be among :data:`DEFAULT_PRIORS`.

    Returns
    -------
    dict
        Full prior specification.
    """
    priors: dict[str, dict[str, Any]] = copy.deepcopy(DEFAULT_PRIORS)
    priors["a"]["mu"] = float(np.log(_CENTRE["A"]) - _CENTRE["alpha"] * np.log(n0))
    priors["b"]["mu"] = float(np.log(_CENTRE["B"]) - _CENTRE["beta"] * np.log(d0))
    for key, value in (overrides or {}).items():
        if key not in priors:
            raise ValueError(f"unknown prior {key!r}; known: {sorted(priors)}")
        unknown = set(value) - set(priors[key]) - ({"mu"} if key in ("a", "b") else set())
        if unknown:
            raise ValueError(f"prior {key!r} has no field(s) {sorted(unknown)}")
        priors[key].update({k: float(v) for k, v in value.items()})
    return priors


def theta_prior_arrays(priors: Mapping[str, Mapping[str, float]]) -> tuple[np.ndarray, ...]:
    """Population mean/sd and family/arch spread scales as arrays ordered like ``THETA_NAMES``."""
    mu = np.array([priors[k]["mu"] for k in THETA_NAMES])
    sd = np.array([priors[k]["sigma"] for k in THETA_NAMES])
    fam = np.array([priors["family_sd"][k] for k in THETA_NAMES])
    arch = np.array([priors["arch_sd"][k] for k in THETA_NAMES])
    return mu, sd, fam, arch
