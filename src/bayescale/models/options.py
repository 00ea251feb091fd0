"""Modelling choices of the hierarchical scaling-law model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from bayescale.models.priors import THETA_NAMES

Likelihood = Literal["normal", "student_t"]
Autocorrelation = Literal["none", "order", "log_tokens"]
FamilyParameterization = Literal["local", "centered", "noncentered"]

_HIERARCHIES = {("family",), ("arch", "family")}
# the law parameters that are local coordinates of their own (models.hierarchical.local_to_theta)
_LOCAL_SHAREABLE = ("b", "log_beta")


@dataclass(frozen=True)
class ModelOptions:
    """How the hierarchical model is built.

    Attributes
    ----------
    hierarchy
        ``("family",)`` (population -> family) or ``("arch", "family")`` (population -> arch ->
        family).
    likelihood
        ``"normal"``: Gaussian checkpoint noise on log-loss with the per-run seed offsets
        integrated out in closed form (fast, default). ``"student_t"``: robust Student-t noise with
        explicit, centred per-run offsets.
    autocorrelation
        ``"log_tokens"`` (default): AR(1) correlation ``rho ** (gap / median_gap)`` decaying
        with the distance in log tokens; ``"order"``: AR(1) between consecutive checkpoints;
        ``"none"``: independent checkpoints. Real curves are strongly autocorrelated (rho ~
        0.99 on the OLMo ladder); ignoring it made the 3B bands miss and pushed run-level misfit
        into sigma_seed. Only with the normal likelihood.
    seed_by_size
        Let the seed sd vary log-linearly with ``log(N / N0)``.
    correlated_families
        Correlated family effects through an LKJ prior on the 5x5 family covariance.
    shared
        Law parameters (names of ``THETA_NAMES``: ``log_E``, ``a``, ``log_alpha``, ``b``,
        ``log_beta``) that every family shares: they take the population value, with no family
        or arch spread. For runs that all end at one token budget (``B``/``beta`` are then
        learnt from mid-run checkpoints only, and per family they are barely identified). Not
        with ``correlated_families``; with the ``"local"`` parameterization only ``b`` and
        ``log_beta``.
    family_parameterization
        How NUTS sees the family parameters (the model is the same): ``"local"`` (default)
        samples each family at its own reference size in coordinates its data pin (converged
        loss, its log-log slope, the irreducible share; see
        :func:`bayescale.models.hierarchical.local_to_theta`); ``"centered"`` samples
        ``theta`` directly; ``"noncentered"`` samples standardised offsets.
    """

    hierarchy: tuple[str, ...] = ("family",)
    likelihood: Likelihood = "normal"
    autocorrelation: Autocorrelation = "log_tokens"
    seed_by_size: bool = False
    correlated_families: bool = False
    family_parameterization: FamilyParameterization = "local"
    config_effects: bool = False
    shared: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hierarchy", tuple(self.hierarchy))
        object.__setattr__(self, "shared", tuple(self.shared))
        self._check_shared()
        if self.hierarchy not in _HIERARCHIES:
            raise ValueError(
                f"hierarchy must be one of {sorted(_HIERARCHIES)}; got {self.hierarchy}"
            )
        if self.likelihood not in ("normal", "student_t"):
            raise ValueError(f"likelihood must be 'normal' or 'student_t'; got {self.likelihood!r}")
        if self.autocorrelation not in ("none", "order", "log_tokens"):
            raise ValueError(
                "autocorrelation must be 'none', 'order' or 'log_tokens'; "
                f"got {self.autocorrelation!r}"
            )
        if self.autocorrelation != "none" and self.likelihood != "normal":
            raise ValueError("autocorrelated residuals are only available with likelihood='normal'")
        if self.config_effects and self.likelihood != "normal":
            raise ValueError("config_effects are only available with likelihood='normal'")
        if self.family_parameterization not in ("local", "centered", "noncentered"):
            raise ValueError(
                "family_parameterization must be 'local', 'centered' or 'noncentered'; "
                f"got {self.family_parameterization!r}"
            )

    def _check_shared(self) -> None:
        unknown = [name for name in self.shared if name not in THETA_NAMES]
        if unknown:
            raise ValueError(f"shared must name law parameters {THETA_NAMES}; got {unknown}")
        if len(set(self.shared)) != len(self.shared):
            raise ValueError(f"shared names a parameter twice: {list(self.shared)}")
        if len(self.shared) == len(THETA_NAMES):
            raise ValueError("shared may not hold every law parameter: families would be equal")
        if self.shared and self.correlated_families:
            raise ValueError(
                "shared parameters need correlated_families=False (the LKJ prior mixes every "
                "component of a family)"
            )
        mixed = [name for name in self.shared if name not in _LOCAL_SHAREABLE]
        if mixed and self.family_parameterization == "local":
            raise ValueError(
                f"with family_parameterization='local' only {_LOCAL_SHAREABLE} can be shared "
                f"(the local coordinates mix log_E, a and log_alpha); got {mixed}: use "
                "family_parameterization='centered' or 'noncentered'"
            )

    @property
    def free_components(self) -> tuple[int, ...]:
        """Indices (in ``THETA_NAMES`` order) of the law parameters that vary by family."""
        return tuple(i for i, name in enumerate(THETA_NAMES) if name not in self.shared)

    @property
    def shared_components(self) -> tuple[int, ...]:
        """Indices (in ``THETA_NAMES`` order) of the ``shared`` law parameters."""
        return tuple(i for i, name in enumerate(THETA_NAMES) if name in self.shared)

    @property
    def use_arch(self) -> bool:
        """Whether the model has an arch level."""
        return "arch" in self.hierarchy

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        out = asdict(self)
        out["hierarchy"] = list(self.hierarchy)
        out["shared"] = list(self.shared)
        return out
