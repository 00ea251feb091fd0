"""Fitting the hierarchical scaling-law model and the fit object users work with."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import t as student_t

from bayescale.data.prepare import (
    DEFAULT_FIT_FROM,
    DEFAULT_UNSCHEDULED_FROM,
    FitWindow,
    fit_window,
    has_replicates,
)
from bayescale.data.validate import validate
from bayescale.derived import broadcast_inputs, chinchilla_compute_optimal, quantity_dataset
from bayescale.errors import DataWarning, ScheduleWarning, user_stacklevel
from bayescale.fit_base import FitBase
from bayescale.inference import (
    Sampler,
    SamplerSettings,
    sample_model,
    sampling_meta,
    warn_on_problems,
)
from bayescale.intervals import DEFAULT_LEVELS, broadcast_points, prediction_dataset
from bayescale.kaplan_fit import KaplanFit, fit_kaplan
from bayescale.laws.chinchilla import from_reference_scale
from bayescale.laws.schedule import point_schedule
from bayescale.models.design import Design, build_design
from bayescale.models.hierarchical import (
    LAW_PARAMS,
    build_model,
    log_mean_curve,
    reference_log_loss,
)
from bayescale.models.likelihood import (
    config_effect_conditional,
    config_marginal_loglik,
    run_effect_conditional,
    run_marginal_loglik,
)
from bayescale.models.options import ModelOptions
from bayescale.models.priors import resolve_priors
from bayescale.models.scaling import sampling_coordinates
from bayescale.parameter_table import parameter_intervals
from bayescale.persistence import read_fit_file

if TYPE_CHECKING:
    import pymc as pm

__all__ = ["PreparedModel", "ScalingLawFit", "default_config_effects", "fit", "fit_meta", "load",
           "prepare_model", "warn_if_unscheduled"]

SUPPORTED_LAWS = ("chinchilla", "kaplan")


def fit(
    runs: pd.DataFrame,
    law: str = "chinchilla",
    hierarchy: Sequence[str] = ("family",),
    *,
    likelihood: str = "normal",
    autocorrelation: str | None = None,
    seed_by_size: bool = False,
    correlated_families: bool = False,
    family_parameterization: str = "local",
    config_effects: bool | None = None,
    shared: Sequence[str] = (),
    priors: Mapping[str, Mapping[str, float]] | None = None,
    sampler: Sampler = "nutpie",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int = 0,
    target_accept: float = 0.9,
    progressbar: bool = True,
    max_tree_depth: int = 10,
    n0: float | None = None,
    d0: float | None = None,
    fit_from: float | None = DEFAULT_FIT_FROM,
    unscheduled_from: float | None = DEFAULT_UNSCHEDULED_FROM,
    s0: float | None = None,
    l0: float | None = None,
) -> ScalingLawFit | KaplanFit:
    """Fit the hierarchical Bayesian scaling law to a run table with NUTS.

    Parameters
    ----------
    runs
        Tidy run table, one row per checkpoint (see :func:`bayescale.validate`).
    law
        ``"chinchilla"``: ``L = E + A/N^alpha + B/D^beta``. ``"kaplan"``: the Kaplan/Su law
        with steps and batch size (needs ``step`` and ``batch_size`` columns; returns a
        :class:`bayescale.KaplanFit`, see :func:`bayescale.kaplan_fit.fit_kaplan`; takes
        ``hierarchy``, ``autocorrelation``, ``priors``, the sampler settings, ``n0``, ``s0``
        and ``l0``, fits every checkpoint, and raises on any other option that is set).
    hierarchy
        ``("family",)`` or ``("arch", "family")``.
    likelihood, autocorrelation, seed_by_size, correlated_families, family_parameterization, \
config_effects, shared
        Modelling options, see :class:`bayescale.models.ModelOptions`. ``autocorrelation``
        defaults to ``"log_tokens"`` with the normal likelihood and ``"none"`` with Student-t.
        ``config_effects`` defaults to on when the table has replicates (a ``config`` shared
        by two or more runs of one size, :func:`bayescale.data.prepare.has_replicates`) and
        the likelihood is normal: the seed sd is then learnt from the replicates, and how far
        each configuration's runs sit from the law is a configuration offset, whose spread
        widens the bands of a new configuration.
        ``shared=("b", "log_beta")`` gives every family the same data term ``B/D^beta``: for
        runs that all end at one token budget.
    priors
        Partial overrides of :data:`bayescale.models.DEFAULT_PRIORS`.
    sampler
        ``"nutpie"`` (default; see ``benchmarks/results/MODEL_SPEED.md``), ``"pymc"`` or
        ``"numpyro"``.
    draws, tune, chains
        Posterior draws and tuning steps per chain, and the number of chains.
    random_seed
        Seed of the sampler and of every later random draw (run effects, predictions).
    target_accept
        NUTS target acceptance rate (0.9 by default because the E-A-alpha ridge is curved;
        raise it when the fit reports divergences).
    progressbar
        Show the sampler's progress bar.
    max_tree_depth
        NUTS's largest tree depth (at most ``2**max_tree_depth`` leapfrog steps per draw);
        raise it when the fit reports draws that hit it.
    n0, d0
        Reference scales of the power-law terms (default: geometric means of the data).
    fit_from
        Fit each run's checkpoints from this fraction of its length on (``schedule_tokens``,
        else ``run_tokens``, else its last checkpoint); every run keeps its last checkpoint.
        Early checkpoints fall faster than any law in ``D``. ``None`` fits them all.
    unscheduled_from
        The same for runs without a learning-rate schedule (no ``schedule`` and no ``lr``
        column value): their mid-run checkpoints are not final losses, so only their late
        part is fitted, with a :class:`bayescale.ScheduleWarning` (where a family's runs all
        end at one length, how its loss falls with D then comes mostly from the priors).
        ``None`` fits every such run whole, as though its LR were constant, silently.
    s0, l0
        ``law="kaplan"`` only: reference steps and loss (default: geometric means of the data).

    Returns
    -------
    ScalingLawFit or KaplanFit

    Raises
    ------
    ValueError
        If ``law`` is unknown, or ``law="kaplan"`` is given an option it does not have (the
        message names it).
    TypeError
        If ``s0`` or ``l0`` is given without ``law="kaplan"``.

    Warns
    -----
    bayescale.SamplingWarning
        On divergences, R-hat > 1.01 or low effective sample size.
    bayescale.ScheduleWarning
        When checkpoints of runs without a schedule are left out.

    Notes
    -----
    With a learning-rate schedule (columns ``schedule``, ``warmup_tokens``,
    ``final_lr_fraction``, ``schedule_tokens``/``run_tokens``, ``decay_tokens``, or an ``lr``
    column; see :mod:`bayescale.data.schedule`) the law is schedule-aware
    (:mod:`bayescale.laws.schedule`): at the end of every run it is ``E + A/N^alpha +
    B/D^beta``, and mid-run checkpoints add the schedule's effect.
    """
    if law not in SUPPORTED_LAWS:
        raise ValueError(f"law must be one of {SUPPORTED_LAWS}; got {law!r}")
    if law == "kaplan":
        _check_kaplan_options(
            likelihood=likelihood, seed_by_size=seed_by_size,
            correlated_families=correlated_families,
            family_parameterization=family_parameterization, config_effects=config_effects,
            shared=tuple(shared), d0=d0, fit_from=fit_from, unscheduled_from=unscheduled_from,
        )
        return fit_kaplan(
            runs, hierarchy, autocorrelation=autocorrelation, priors=priors, sampler=sampler,
            draws=draws, tune=tune, chains=chains, random_seed=random_seed,
            target_accept=target_accept, progressbar=progressbar,
            max_tree_depth=max_tree_depth, n0=n0, s0=s0, l0=l0,
        )
    given = [name for name, value in (("s0", s0), ("l0", l0)) if value is not None]
    if given:
        raise TypeError(
            f"{' and '.join(given)} {'is an option' if len(given) == 1 else 'are options'} of "
            f"law='kaplan' only (reference steps and loss); law={law!r} does not take it"
        )
    settings = SamplerSettings(
        sampler=sampler, draws=draws, tune=tune, chains=chains, random_seed=random_seed,
        target_accept=target_accept, progressbar=progressbar, max_tree_depth=max_tree_depth,
    )
    if autocorrelation is None:  # AR(1) needs the Gaussian likelihood
        autocorrelation = "log_tokens" if likelihood == "normal" else "none"
    if config_effects is None:
        config_effects = default_config_effects(runs, likelihood)
    options = ModelOptions(
        hierarchy=tuple(hierarchy),
        likelihood=likelihood,  # type: ignore[arg-type]
        autocorrelation=autocorrelation,  # type: ignore[arg-type]
        seed_by_size=seed_by_size,
        correlated_families=correlated_families,
        family_parameterization=family_parameterization,  # type: ignore[arg-type]
        config_effects=config_effects,
        shared=tuple(shared),
    )
    prepared = prepare_model(
        runs, options, priors=priors, n0=n0, d0=d0, portable=sampler == "numpyro",
        fit_from=fit_from, unscheduled_from=unscheduled_from,
    )
    idata = sample_model(prepared.model, prepared.start, settings, jitter=prepared.jitter)
    result = prepared.to_fit(idata, settings)
    warn_on_problems(result.diagnostics, chains, target_accept)
    return result


def default_config_effects(runs: pd.DataFrame, likelihood: str) -> bool:
    """Whether :func:`fit` uses config effects when it is not told: with replicates (see
    :func:`bayescale.data.prepare.has_replicates`) and the normal likelihood, which they need.

    Parameters
    ----------
    runs
        Run table.
    likelihood
        ``"normal"`` or ``"student_t"``.

    Returns
    -------
    bool
    """
    return likelihood == "normal" and has_replicates(runs)


#: Options of :func:`fit` the Kaplan law does not have, with the values that leave them unused.
_NOT_KAPLAN: dict[str, tuple[Any, ...]] = {
    "likelihood": ("normal",),
    "seed_by_size": (False,),
    "correlated_families": (False,),
    "family_parameterization": ("local",),
    "config_effects": (None, False),
    "shared": ((),),
    "d0": (None,),
    "fit_from": (DEFAULT_FIT_FROM, None),  # the Kaplan fit takes every checkpoint
    "unscheduled_from": (DEFAULT_UNSCHEDULED_FROM, None),
}


def _check_kaplan_options(**options: Any) -> None:
    """Raise on an option of :func:`fit` set to a value the Kaplan law cannot honour."""
    unsupported = [
        f"{name}={value!r}" for name, value in options.items()
        if not any(value is ok or value == ok for ok in _NOT_KAPLAN[name])
    ]
    if unsupported:
        raise ValueError(
            f"law='kaplan' does not support {', '.join(unsupported)}: it has the normal "
            "likelihood, one seed sd, independent families and no config effects, and fits "
            "every checkpoint; leave these options at their defaults"
        )


@dataclass(frozen=True)
class PreparedModel:
    """The PyMC model :func:`fit` samples, and what turns its draws into a fit.

    Attributes
    ----------
    model
        The hierarchical model (unit-scale sampling coordinates included).
    start, jitter
        Starting point and the variables jittered per chain, as :func:`fit` passes them.
    data, design, options, priors
        Validated run table, its design, the model options and the resolved priors.
    window
        The ``fit_from`` and ``unscheduled_from`` that chose the fitted checkpoints.
    """

    model: pm.Model
    start: dict[str, np.ndarray]
    jitter: tuple[str, ...]
    data: pd.DataFrame
    design: Design
    options: ModelOptions
    priors: dict[str, dict[str, float]]
    window: dict[str, float | None] = field(default_factory=dict)

    def to_fit(self, idata: az.InferenceData, settings: SamplerSettings) -> ScalingLawFit:
        """The :class:`ScalingLawFit` of draws ``idata`` sampled from :attr:`model`.

        Parameters
        ----------
        idata
            The sampler's InferenceData (completed in place, see
            :meth:`ScalingLawFit.from_idata`).
        settings
            The sampler settings ``idata`` was drawn with.

        Returns
        -------
        ScalingLawFit
        """
        meta = fit_meta(self.options, self.priors, self.design, settings, idata, self.window)
        return ScalingLawFit.from_idata(idata, self.data, meta, design=self.design)


def fit_meta(
    options: ModelOptions,
    priors: Mapping[str, Mapping[str, float]],
    design: Design,
    settings: SamplerSettings,
    idata: az.InferenceData,
    window: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """The metadata of a Chinchilla-form fit, as :meth:`ScalingLawFit.from_idata` takes it.

    Parameters
    ----------
    options
        Modelling options.
    priors
        The resolved priors.
    design
        The model's design (its reference scales ``n0`` and ``d0``).
    settings
        The sampler settings.
    idata
        The sampler's InferenceData (its compile and sampling seconds).
    window
        ``fit_from`` and ``unscheduled_from`` where the fitted checkpoints were chosen by
        them (see :attr:`PreparedModel.window`); left out of the metadata when ``None``.

    Returns
    -------
    dict
        ``law``, ``options``, ``priors``, ``n0``, ``d0``, the window's entries, and
        :func:`bayescale.inference.sampling_meta` (seed, sampler settings and timing).
    """
    return {
        "law": "chinchilla",
        "options": options.to_dict(),
        "priors": priors,
        "n0": design.n0,
        "d0": design.d0,
        **(window or {}),
        **sampling_meta(settings, idata),
    }


def prepare_model(
    runs: pd.DataFrame,
    options: ModelOptions,
    *,
    priors: Mapping[str, Mapping[str, float]] | None = None,
    n0: float | None = None,
    d0: float | None = None,
    portable: bool = False,
    fit_from: float | None = DEFAULT_FIT_FROM,
    unscheduled_from: float | None = DEFAULT_UNSCHEDULED_FROM,
) -> PreparedModel:
    """Validate ``runs`` and build the Chinchilla-form model that :func:`fit` samples.

    For sampling the model some other way (``pm.sample`` with its own settings, say) and still
    getting a :class:`ScalingLawFit`: ``prepared.to_fit(idata, settings)``.

    Parameters
    ----------
    runs
        Tidy run table (see :func:`bayescale.validate`).
    options
        Modelling options.
    priors, n0, d0
        As for :func:`fit`.
    portable
        Build the likelihood from PyTensor ops only (for JAX-based samplers) instead of the
        compiled run-sums kernel.
    fit_from, unscheduled_from
        Which checkpoints are fitted (see :func:`fit`).

    Returns
    -------
    PreparedModel

    Warns
    -----
    UserWarning
        When every family's runs are at a single model size.
    """
    window = fit_window(validate(runs), fit_from, unscheduled_from)
    data = window.runs
    warn_if_unscheduled(window, unscheduled_from)
    design = build_design(data, use_arch=options.use_arch, n0=n0, d0=d0)
    if options.config_effects:
        design.check_configs()
    _warn_if_one_size(design)
    resolved = resolve_priors(design.n0, design.d0, priors)
    # The coordinates enter as constants: shared variables (as in RefitModel) compile more
    # slowly in numba (benchmarks/results/MODEL_SPEED.md).
    coordinates = sampling_coordinates(design, resolved, options)
    model = build_model(design, resolved, options, portable=portable,
                        **coordinates.model_inputs())
    return PreparedModel(model, coordinates.start, coordinates.jitter, data, design, options,
                         resolved, {"fit_from": fit_from, "unscheduled_from": unscheduled_from})


def warn_if_unscheduled(window: FitWindow, unscheduled_from: float | None) -> None:
    """Say once how runs without a learning-rate schedule are fitted, and how to do better.

    :func:`fit` calls it through :func:`prepare_model`; a fit made some other way on the
    same window (:func:`bayescale.fit_many` through a compiled model) calls it to warn alike.

    Parameters
    ----------
    window
        The fit window of the run table (:func:`bayescale.fit_window`).
    unscheduled_from
        The share of each unscheduled run left out, as given to :func:`fit`.

    Warns
    -----
    bayescale.ScheduleWarning
        When the window has runs without a schedule (stack level: the caller of ``fit``).
    """
    advice = (
        "Give the schedule (columns schedule, warmup_tokens, final_lr_fraction, run_tokens, or "
        "an lr column; schedule='constant' for a constant LR) to fit every checkpoint"
    )

    def listing(runs: list[str]) -> str:
        shown = ", ".join(repr(r) for r in runs[:3])
        return shown + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")

    if window.unscheduled:
        one_length = ""
        if window.one_length:
            one_length = (
                f" The runs of {listing(window.one_length)} all end at one length, so how their "
                "loss falls with D comes mostly from the priors: predictions at other token "
                "counts have wide bands."
            )
        warnings.warn(
            f"{len(window.unscheduled)} runs have no learning-rate schedule "
            f"({listing(window.unscheduled)}): fitting only their checkpoints from "
            f"{unscheduled_from:.0%} of each run on, because a mid-run checkpoint of a decaying "
            f"schedule is not the final loss of a run that long.{one_length} {advice}",
            ScheduleWarning,
            stacklevel=user_stacklevel(),
        )


def _warn_if_one_size(design: Design) -> None:
    """Warn before sampling when no family's runs span more than one model size."""
    if len(design.families) > 1 and design.family_n_sizes.max() == 1:
        warnings.warn(
            "every family's runs are at a single model size, so the data say nothing about how "
            "loss falls with N: E, A and alpha come from the priors alone and NUTS mixes "
            "slowly, so expect a long fit and high R-hat. For seed-to-seed spread at one size "
            "use bayescale.seed_variability; for the scaling law, add runs at other sizes",
            DataWarning,
            stacklevel=user_stacklevel(),
        )


@dataclass(repr=False)
class ScalingLawFit(FitBase[Design]):
    """A fitted hierarchical scaling law: the posterior and everything to use it.

    Attributes
    ----------
    idata
        :class:`arviz.InferenceData` with groups ``posterior`` (dims ``family``, ``run``,
        ``arch``, ``theta``), ``sample_stats``, ``log_likelihood`` (per run, offsets integrated
        out), ``observed_data`` and ``fit_data`` (the run table used).
    data
        The validated run table the model was fitted to.
    options
        Modelling options.
    meta
        Law, resolved priors, reference scales, seed and sampler timing.
    """

    idata: az.InferenceData
    data: pd.DataFrame
    options: ModelOptions
    meta: dict[str, Any]

    _LAW_PARAMS = LAW_PARAMS
    _CHECKED_VARS = (
        "mu_theta", "tau_theta", "theta", "sigma_seed", "sigma_obs", "sigma_config",
        "ar_rho", "nu", "seed_size_slope", "tau_arch", "theta_arch", "log_kappa_pop",
        "kappa_sd", "kappa", "tilt", "tau_theta_free", "tau_arch_free",
    )
    _SUMMARY_OPTIONAL = ("kappa", "tilt", "sigma_config", "seed_size_slope", "ar_rho", "nu")

    # ----------------------------------------------------------------- construction
    @classmethod
    def _fields_from_meta(cls, meta: dict[str, Any]) -> dict[str, Any]:
        return {"options": ModelOptions(**meta["options"])}  # hierarchy: list -> tuple

    @property
    def design(self) -> Design:
        """Index arrays of the run table (rebuilt on demand after loading)."""
        if self._design is None:
            self._design = build_design(
                self.data, use_arch=self.options.use_arch, n0=self.n0, d0=self.d0
            )
        return self._design

    def _checkpoint_design(self) -> Design:
        return self.design

    @property
    def n0(self) -> float:
        """Reference parameter count of the power-law term ``A/N^alpha``."""
        return float(self.meta["n0"])

    @property
    def d0(self) -> float:
        """Reference token count of the data term ``B/D^beta``."""
        return float(self.meta["d0"])

    def _tau_run(self, log_n: np.ndarray) -> np.ndarray:
        sigma_seed = self.posterior_draws("sigma_seed")[:, None]
        if "seed_size_slope" in self.idata.posterior:
            return sigma_seed * np.exp(self.posterior_draws("seed_size_slope")[:, None] * log_n)
        return sigma_seed * np.ones_like(log_n)

    def _add_run_effects_and_loglik(self) -> None:
        design = self.design
        theta = self.posterior_draws("theta")
        tau_run = self._tau_run(design.run_log_n)
        sigma = self.posterior_draws("sigma_obs")[:, None]
        seg, counts = self._run_segments(design)
        nested = self.options.config_effects
        n_units = len(design.configs) if nested else len(design.runs)
        loglik = np.empty((theta.shape[0], n_units))
        effects = np.empty((theta.shape[0], len(design.runs)))
        config_effects = np.empty((theta.shape[0], len(design.configs)))
        one_hot = np.eye(len(design.configs))[design.run_config]  # runs x configs

        def config_sum(x):
            return np.asarray(x, dtype=float) @ one_hot

        rng = self._rng(1)
        chunk = max(1, 2_000_000 // max(design.n_obs, 1))
        phi_all = self._ar_phi(design, self.options.autocorrelation)
        kappa_run = self._kappa_draws()
        if kappa_run is not None:
            kappa_run = kappa_run[:, design.run_family]
        tilt = self.tilt_draws() if design.has_tilt else None
        for lo in range(0, theta.shape[0], chunk):
            sl = slice(lo, lo + chunk)
            k_sl = None if kappa_run is None else kappa_run[sl]
            t_sl = None if tilt is None else tilt[sl]
            resid = design.log_loss - log_mean_curve(
                theta[sl], design, math=np, kappa_run=k_sl, tilt=t_sl
            )
            phi = None if phi_all is None else phi_all[sl]
            if nested:
                tau_c = self.posterior_draws("sigma_config")[sl, None]
                args = (counts, seg, config_sum)
                loglik[sl] = config_marginal_loglik(
                    resid, sigma[sl], tau_run[sl], tau_c, *args, phi=phi, prev=design.obs_prev
                )
                v_mean, v_sd = config_effect_conditional(
                    resid, sigma[sl], tau_run[sl], tau_c, *args, phi=phi, prev=design.obs_prev
                )
                v = v_mean + v_sd * rng.standard_normal(v_mean.shape)
                v_run = v[:, design.run_config]
                mean, sd = run_effect_conditional(
                    resid - v_run[:, design.obs_run], sigma[sl], tau_run[sl], counts, seg,
                    phi=phi, prev=design.obs_prev,
                )
                effects[sl] = v_run + mean + sd * rng.standard_normal(mean.shape)
                config_effects[sl] = v
            elif self.options.likelihood == "normal":
                loglik[sl] = run_marginal_loglik(
                    resid, sigma[sl], tau_run[sl], counts, seg, phi=phi, prev=design.obs_prev
                )
                mean, sd = run_effect_conditional(
                    resid, sigma[sl], tau_run[sl], counts, seg, phi=phi, prev=design.obs_prev
                )
                effects[sl] = mean + sd * rng.standard_normal(mean.shape)
            else:
                u = self.posterior_draws("run_effect")[sl]
                nu = self.posterior_draws("nu")[sl, None]
                pointwise = student_t.logpdf(
                    resid - u[:, design.obs_run], df=nu, scale=sigma[sl]
                )
                loglik[sl] = seg(pointwise)
        if "run_effect" not in self.idata.posterior:
            self._store_draws(
                "run_effect", "run", design.runs, effects,
                note="drawn after sampling from its conditional Normal given the other parameters"
                + ("; the run's whole offset: its config's plus its seed's" if nested else ""),
            )
            if nested:
                self._store_draws("config_effect", "config", design.configs, config_effects)
        unit = "config" if nested else "run"
        self._store_log_likelihood(loglik, unit, design.configs if nested else design.runs)

    @property
    def schedule_aware(self) -> bool:
        """Whether the fit has the learning-rate schedule's ``kappa`` (its training runs had
        checkpoints before their LR annealed), so that it predicts checkpoints *during* a
        scheduled run (``predict(..., schedule=...)``)."""
        return "kappa" in self.idata.posterior

    def _kappa_draws(self) -> np.ndarray | None:
        """Draws of each family's schedule scale ``kappa`` (sample, family), or ``None``."""
        if "kappa" not in self.idata.posterior:
            return None
        return self.posterior_draws("kappa")

    # ----------------------------------------------------------------- parameters
    def credible_intervals(self, level: float = 0.9) -> pd.DataFrame:
        """Tidy table of parameter credible intervals (see
        :func:`bayescale.parameter_table.parameter_intervals`), ready for a paper via
        :func:`bayescale.report.table.to_latex` or ``to_markdown``."""
        return parameter_intervals(
            self.idata.posterior, n0=self.n0, d0=self.d0, use_arch=self.options.use_arch,
            level=level,
        )

    # ----------------------------------------------------------------- prediction
    def _theta_draws(self, family: str | None, arch: str | None, rng: np.random.Generator):
        if family is not None and family in self.families:
            if arch is not None:
                raise ValueError("give either a known family or an arch, not both")
            return self.posterior_draws("theta")[:, self.families.index(family), :]
        # a family never seen: draw one from the population (or from its arch level)
        if arch is not None:
            if not self.options.use_arch:
                raise ValueError("this fit has no arch level; refit with hierarchy=('arch', 'family')")
            archs = [str(a) for a in self.idata.posterior["arch"].values]
            if arch not in archs:
                raise KeyError(f"unknown arch {arch!r}; archs in this fit: {archs}")
            centre = self.posterior_draws("theta_arch")[:, archs.index(arch), :]
        else:
            centre = self.posterior_draws("mu_theta")
        z = rng.standard_normal(centre.shape)
        if "family_chol" in self.idata.posterior:
            chol = self.posterior_draws("family_chol")
            return centre + np.einsum("sij,sj->si", chol, z)
        return centre + self.posterior_draws("tau_theta") * z

    def predict(
        self,
        params: float | Sequence[float] | np.ndarray,
        tokens: float | Sequence[float] | np.ndarray,
        family: str | None = None,
        *,
        arch: str | None = None,
        run: str | None = None,
        config: str | None = None,
        schedule: Mapping[str, Any] | pd.DataFrame | None = None,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Posterior predictive loss at ``(params, tokens)``.

        Parameters
        ----------
        params, tokens
            Parameter counts and tokens (broadcast against each other).
        family
            A family of the fit; a name not in the fit (or ``None``) predicts a *new* family
            drawn from the population (or from ``arch``'s level when given).
        arch
            For a new family of a known architecture (needs an arch level).
        run
            A run of the fit: predict *that* run (its own seed offset) instead of a new seed.
        config
            A config of a fit with ``config_effects``: predict a new seed of that
            configuration (its config offset, a new seed offset).
        schedule
            The learning-rate schedule of the run(s) to predict, for checkpoints *during* a
            run: a mapping of the schedule columns (``schedule``, ``warmup_tokens``,
            ``final_lr_fraction``, ``schedule_tokens``, ``decay_tokens``, ``batch_size``; see
            :mod:`bayescale.data.schedule`) when every point is a checkpoint of one run, or a
            DataFrame with one row per point (``run`` and the schedule columns, e.g. the
            held-out rows of a run table). ``None`` (default): each point is the end of a run
            trained to ``tokens`` with the training runs' kind of schedule, where the law is
            ``E + A/N^alpha + B/D^beta`` (see :mod:`bayescale.laws.schedule`).
        levels
            Central interval probabilities of the bands.
        random_seed
            Seed of the predictive draws (default: the fit's seed).

        Returns
        -------
        xarray.Dataset
            Over dim ``point`` (coords ``params``, ``tokens``): ``median`` of the mean curve
            and bands (point, level, bound): ``mean`` (parameter uncertainty only),
            ``new_seed`` (+ seed-to-seed variability, and with ``config_effects`` the spread of
            a new configuration unless ``config`` is given; omitted with ``run``) and
            ``observed`` (+ checkpoint noise).
        """
        draws = self.predictive_draws(
            params, tokens, family, arch=arch, run=run, config=config, schedule=schedule,
            random_seed=random_seed,
        )
        n, d = broadcast_points(params, tokens)
        bands = {k: draws[k].values for k in draws.data_vars}
        attrs = {
            "family": family if family is not None else "(new family)",
            "run": run or "",
            "config": config or "",
        }
        return prediction_dataset(
            n, d, np.median(bands["mean"], axis=0), bands, levels=levels, attrs=attrs
        )

    def predictive_draws(
        self,
        params: Any,
        tokens: Any,
        family: str | None = None,
        *,
        arch: str | None = None,
        run: str | None = None,
        config: str | None = None,
        schedule: Mapping[str, Any] | pd.DataFrame | None = None,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Draws of the loss at ``(params, tokens)`` for each band (dims ``sample``, ``point``).

        See :meth:`predict` for the arguments; useful for CRPS and custom summaries.
        """
        n, d = broadcast_points(params, tokens)
        rng = self._rng(2, random_seed)
        if run is not None:
            run_index, family = self._check_run(run)
        config_offset = self._config_offset(config, run)
        if config is not None:
            first_run = np.flatnonzero(self.design.run_config == config_offset[1])[0]
            family = self.families[self.design.run_family[first_run]]
        d_eff, excess, tilt_cov = point_schedule(n, d, schedule)
        theta = self._theta_draws(family, arch, rng)
        log_n, log_d = np.log(n / self.n0), np.log(d_eff / self.d0)
        log_mu = reference_log_loss(theta, log_n, log_d)
        if np.any(excess != 0):
            kappa = self._kappa_family_draws(family, arch, rng)
            log_mu = log_mu + kappa[:, None] * excess
        if np.any(tilt_cov != 0):
            log_mu = log_mu + self.tilt_draws()[:, None] * tilt_cov
        out = {}
        if run is not None:
            offset = self.posterior_draws("run_effect")[:, run_index][:, None]
            out["mean"] = np.exp(log_mu + offset)
            base = log_mu + offset
        else:
            if config is not None:  # a known configuration's offset
                log_mu = log_mu + self.posterior_draws("config_effect")[:, [config_offset[1]]]
            out["mean"] = np.exp(log_mu)
            seed_offset = rng.standard_normal((theta.shape[0], 1)) * self._tau_run(log_n)
            if self.options.config_effects and config is None:  # a new configuration
                sigma_config = self.posterior_draws("sigma_config")[:, None]
                seed_offset = seed_offset + rng.standard_normal(seed_offset.shape) * sigma_config
            out["new_seed"] = np.exp(log_mu + seed_offset)
            base = log_mu + seed_offset
        sigma = self.posterior_draws("sigma_obs")[:, None]
        if self.options.likelihood == "student_t":
            nu = self.posterior_draws("nu")[:, None]
            noise = rng.standard_t(nu, size=base.shape) * sigma
        else:
            noise = rng.standard_normal(base.shape) * sigma
        with np.errstate(over="ignore"):  # Student-t tails can exceed exp's range: inf is right
            out["observed"] = np.exp(base + noise)
        coords = {"params": ("point", n), "tokens": ("point", d)}
        return xr.Dataset({k: (("sample", "point"), v) for k, v in out.items()}, coords=coords)

    def tilt_draws(self) -> np.ndarray:
        """Draws of the within-run tilt (sample,); zeros for a fit whose runs had none.

        See :mod:`bayescale.laws.schedule`: it shapes checkpoints before a run's schedule ends
        and is zero at the end, so it never moves a prediction of a final loss.
        """
        if "tilt" in self.idata.posterior:
            return self.posterior_draws("tilt")
        return np.zeros(self.posterior_draws("sigma_obs").shape)

    def _kappa_family_draws(
        self, family: str | None, arch: str | None, rng: np.random.Generator
    ) -> np.ndarray:
        """Draws of ``kappa`` for a known family, or for a new family from the population."""
        if "kappa" not in self.idata.posterior:
            raise ValueError(
                "this fit has no learning-rate schedule, so it cannot predict checkpoints during "
                "a scheduled run; refit with the schedule columns (or drop schedule=)"
            )
        if family is not None and family in self.families:
            return self.posterior_draws("kappa")[:, self.families.index(family)]
        log_kappa = self.posterior_draws("log_kappa_pop")
        if "kappa_sd" in self.idata.posterior:
            sd = self.posterior_draws("kappa_sd")
            log_kappa = log_kappa + sd * rng.standard_normal(sd.shape)
        return np.exp(log_kappa)

    def _config_offset(self, config: str | None, run: str | None) -> tuple[str, int]:
        """``(config, index)`` of a known config, checked; ``("", -1)`` when none is asked."""
        if config is None:
            return "", -1
        if run is not None:
            raise ValueError("give either a run or a config, not both")
        if not self.options.config_effects:
            raise ValueError("predicting a known config needs a fit with config_effects=True")
        configs = [str(c) for c in self.design.configs]
        if config not in configs:
            raise KeyError(f"unknown config {config!r}; configs in this fit: {configs[:10]}")
        return config, configs.index(config)

    # ----------------------------------------------------------------- experiment design
    def theta_draws(
        self,
        family: str | None,
        *,
        arch: str | None = None,
        random_seed: int | np.random.Generator | None = None,
    ) -> np.ndarray:
        """Per-draw law parameters ``theta`` (sample, 5) of one family.

        ``theta`` is ``(log E, a, log alpha, b, log beta)`` at the fit's reference scales
        (:attr:`n0`, :attr:`d0`; see :func:`bayescale.models.hierarchical.reference_log_loss`).

        Parameters
        ----------
        family
            A family of the fit (its posterior draws), or any other name or ``None`` for one
            new family per posterior draw from the population (or from ``arch``'s level), as
            :meth:`predict` draws it.
        arch
            For a new family of a known architecture (needs an arch level; not with a known
            ``family``).
        random_seed
            Seed of the new-family draws (default: the fit's seed), or a generator, which gives
            independent families on each call.

        Returns
        -------
        numpy.ndarray
            Shape (sample, 5).

        Raises
        ------
        ValueError
            If both a known family and ``arch`` are given, or ``arch`` without an arch level.
        KeyError
            If ``arch`` is not an architecture of the fit.
        """
        rng = (random_seed if isinstance(random_seed, np.random.Generator)
               else self._rng(5, random_seed))
        return self._theta_draws(family, arch, rng)

    def family_draws(
        self,
        family: str | None,
        *,
        arch: str | None = None,
        random_seed: int | np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-draw parameters of one family: ``theta`` (sample, 5) and ``kappa`` (sample,).

        ``theta`` is ``(log E, a, log alpha, b, log beta)`` at the fit's reference scales
        (:attr:`n0`, :attr:`d0`; see :func:`bayescale.models.hierarchical.reference_log_loss`).
        For a family of the fit these are its posterior draws; for any other name (or
        ``None``), one new family per posterior draw from the population (or ``arch``'s level),
        as :meth:`predict` draws it. ``kappa`` is ``None`` when the fit has no learning-rate
        schedule. ``random_seed`` (an int or a generator) seeds the new-family draws (default:
        the fit's seed); a generator gives independent families on each call.
        """
        rng = (random_seed if isinstance(random_seed, np.random.Generator)
               else self._rng(5, random_seed))
        theta = self.theta_draws(family, arch=arch, random_seed=rng)
        kappa = self._kappa_family_draws(family, arch, rng) if self.schedule_aware else None
        return theta, kappa

    def seed_sd(self, params: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """Draws of the seed sd on log-loss at each parameter count (sample, point).

        Parameters
        ----------
        params
            Parameter counts (point,), the same for every draw; or a 2-D array (sample, point)
            with each posterior draw's own parameter counts (e.g. a per-draw optimum).

        Returns
        -------
        numpy.ndarray
            Shape (sample, point).
        """
        n = np.asarray(params, dtype=float)
        if n.ndim == 2:  # per-draw parameter counts
            return self._tau_run(np.log(n / self.n0))
        n = np.atleast_1d(n)
        return self._tau_run(np.log(n / self.n0)[None, :])

    def next_runs(self, target: Any, candidates: pd.DataFrame, budget: float | None = None,
                  **kwargs: Any):
        """Which runs to train next: see :func:`bayescale.planning.next_runs`."""
        from bayescale.planning import next_runs

        return next_runs(self, target, candidates, budget, **kwargs)

    def compute_optimal(
        self,
        flops: float | Sequence[float] | np.ndarray,
        family: str | None = None,
        *,
        arch: str | None = None,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Compute-optimal parameters and tokens for a budget of ``flops`` (``C = 6 N D``).

        Per posterior draw of ``(E, A, alpha, B, beta)``:
        ``N_opt = G (C/6)^(beta/(alpha+beta))``, ``D_opt = C / (6 N_opt)`` with
        ``G = (alpha A / (beta B))^(1/(alpha+beta))`` (see
        :func:`bayescale.derived.chinchilla_compute_optimal`).

        Parameters
        ----------
        flops
            Training compute budgets ``C`` in FLOPs.
        family, arch
            As in :meth:`predict` (``None`` or an unknown name: a new family).
        levels
            Central interval probabilities.
        random_seed
            Seed of the new-family draws (default: the fit's seed).

        Returns
        -------
        xarray.Dataset
            Over ``point`` (coord ``flops``): ``params``, ``tokens``, ``loss`` (posterior
            medians; ``loss`` is the mean loss at the optimum) and ``params_interval``,
            ``tokens_interval``, ``loss_interval`` (point, level, bound); see
            :mod:`bayescale.derived`.
        """
        x = broadcast_inputs(flops=flops)
        theta = self._theta_draws(family, arch, self._rng(4, random_seed))
        usual = from_reference_scale(
            theta[:, 0], theta[:, 1], np.exp(theta[:, 2]), theta[:, 3], np.exp(theta[:, 4]),
            self.n0, self.d0,
        )
        draws = chinchilla_compute_optimal(
            x["flops"][None, :], *(usual[k][:, None] for k in LAW_PARAMS)
        )
        known = family is not None and family in self.families
        attrs = {"family": family if known else "(new family)", "law": "chinchilla"}
        return quantity_dataset(draws, x, levels, attrs)

    def _repr_fields(self) -> dict[str, Any]:
        return {"law": self.meta["law"], **super()._repr_fields()}


def load(path: str | Path) -> ScalingLawFit | KaplanFit:
    """Load a fit written by :meth:`ScalingLawFit.save` or :meth:`KaplanFit.save`.

    The law stored in the file decides the class. The loaded fit predicts identically to the
    saved one.
    """
    idata, data, meta = read_fit_file(path)
    cls = KaplanFit if meta.get("law") == "kaplan" else ScalingLawFit
    return cls.from_idata(idata, data, meta)
