"""Fitting the hierarchical Kaplan/Su law with steps and batch size, and its fit object.

``bayescale.fit(runs, law="kaplan")`` lands here. The run table needs ``step`` and
``batch_size`` (tokens per step) columns, one batch size per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pytensor
import xarray as xr

from bayescale.data.validate import validate
from bayescale.derived import broadcast_inputs, quantity_dataset
from bayescale.fit_base import FitBase
from bayescale.inference import (
    Sampler,
    SamplerSettings,
    sample_model,
    sampling_meta,
    warn_on_problems,
)
from bayescale.intervals import DEFAULT_LEVELS, prediction_dataset
from bayescale.laws import kaplan as law
from bayescale.laws.kaplan import KAPLAN_PARAMS, KAPLAN_THETA
from bayescale.models.design import Design
from bayescale.models.kaplan import (
    KaplanDesign,
    build_kaplan_design,
    build_kaplan_model,
    kaplan_initial_point,
    kaplan_log_mean,
    resolve_kaplan_priors,
)
from bayescale.models.likelihood import run_effect_conditional, run_marginal_loglik
from bayescale.parameter_table import parameter_intervals

__all__ = ["KaplanFit", "fit_kaplan"]

#: Columns the Kaplan law needs on top of the required ones.
KAPLAN_COLUMNS: tuple[str, ...] = ("step", "batch_size")
_AUTOCORRELATION = ("none", "order", "log_tokens")


def fit_kaplan(
    runs: pd.DataFrame,
    hierarchy: Sequence[str] = ("family",),
    *,
    autocorrelation: str | None = "log_tokens",
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
    s0: float | None = None,
    l0: float | None = None,
) -> KaplanFit:
    """Fit the hierarchical Kaplan/Su law ``L(N, S, B)`` with NUTS.

    ``L = (Nc/N)^alphaN + (Sc/Smin)^alphaS`` with ``Smin = S / (1 + Bcrit(L)/B)`` and
    ``Bcrit(L) = Bstar / L^(1/alphaB)``, solved per checkpoint (see
    :mod:`bayescale.laws.kaplan`); the six constants vary by family around population values
    (see :mod:`bayescale.models.kaplan` for the model and its default priors).

    Parameters
    ----------
    runs
        Run table with ``step`` and ``batch_size`` (tokens per step) columns, one batch size
        per run.
    hierarchy
        ``("family",)`` (the only hierarchy of this law).
    autocorrelation
        AR(1) checkpoint noise: ``"log_tokens"`` (default), ``"order"`` or ``"none"``.
    priors
        Partial overrides of :data:`bayescale.models.kaplan.KAPLAN_DEFAULT_PRIORS`.
    sampler, draws, tune, chains, random_seed, target_accept, progressbar, max_tree_depth
        As in :func:`bayescale.fit`.
    n0, s0, l0
        Reference parameter count, steps and loss (default: geometric means of the data).

    Returns
    -------
    KaplanFit

    Raises
    ------
    bayescale.DataError
        If ``step`` or ``batch_size`` is missing or invalid, or a run changes batch size.

    Warns
    -----
    bayescale.SamplingWarning
        On divergences, R-hat > 1.01 or low effective sample size.
    """
    settings = SamplerSettings(
        sampler=sampler, draws=draws, tune=tune, chains=chains, random_seed=random_seed,
        target_accept=target_accept, progressbar=progressbar, max_tree_depth=max_tree_depth,
    )
    if tuple(hierarchy) != ("family",):
        raise ValueError(f"law='kaplan' supports hierarchy=('family',) only; got {hierarchy}")
    autocorrelation = "log_tokens" if autocorrelation is None else autocorrelation
    if autocorrelation not in _AUTOCORRELATION:
        raise ValueError(f"autocorrelation must be one of {_AUTOCORRELATION}")
    data = validate(runs, require=KAPLAN_COLUMNS)
    design = build_kaplan_design(data, n0=n0, s0=s0, l0=l0)
    resolved = resolve_kaplan_priors(design.n0, design.s0, design.l0, priors)
    model = build_kaplan_model(design, resolved, autocorrelation)
    start = kaplan_initial_point(design, resolved, autocorrelation)
    # PyTensor's numba disk cache returns this model's log density with different last bits
    # than a fresh compile (the Chinchilla model's are identical), so the same random_seed gave
    # different draws on a machine's first and later fits; compiling afresh keeps them equal.
    with pytensor.config.change_flags(numba__cache=False):
        idata = sample_model(
            model, start, settings, jitter=("tau_theta", "sigma_seed", "sigma_obs")
        )
    meta = {
        "law": "kaplan",
        "options": {"hierarchy": ["family"], "autocorrelation": autocorrelation},
        "priors": resolved,
        "n0": design.n0,
        "s0": design.s0,
        "l0": design.l0,
        **sampling_meta(settings, idata),
    }
    result = KaplanFit.from_idata(idata, data, meta, design=design)
    warn_on_problems(result.diagnostics, chains, target_accept)
    return result


@dataclass(repr=False)
class KaplanFit(FitBase[KaplanDesign]):
    """A fitted hierarchical Kaplan/Su law (steps and batch size).

    Attributes
    ----------
    idata
        :class:`arviz.InferenceData`: ``posterior`` (dims ``family``, ``run``, ``component``;
        reference-scale ``mu_theta``, ``tau_theta``, ``theta`` and the usual-convention
        ``Nc, alphaN, Sc, alphaS, Bstar, alphaB`` per family and ``*_pop``), ``sample_stats``,
        ``log_likelihood`` (per run, offsets integrated out), ``observed_data``, ``fit_data``.
    data
        The validated run table the model was fitted to.
    meta
        Law, options, resolved priors, reference scales ``n0, s0, l0``, seed, sampler timing.

    Derived quantities (:meth:`lowest_loss`, :meth:`min_steps`, :meth:`min_tokens`,
    :meth:`critical_batch_size`, :meth:`steps_to_loss`) are computed on every posterior draw
    and summarised as in :mod:`bayescale.derived`; :meth:`trajectory` returns the layout of
    :func:`bayescale.intervals.prediction_dataset`.
    """

    idata: az.InferenceData
    data: pd.DataFrame
    meta: dict[str, Any]

    _LAW_PARAMS = KAPLAN_PARAMS
    _CHECKED_VARS = ("mu_theta", "tau_theta", "theta", "sigma_seed", "sigma_obs", "ar_rho")
    _SUMMARY_OPTIONAL = ("ar_rho",)

    # ----------------------------------------------------------------- basics
    @property
    def design(self) -> KaplanDesign:
        """Index arrays of the run table (rebuilt on demand after loading)."""
        if self._design is None:
            self._design = build_kaplan_design(self.data, n0=self.n0, s0=self.s0, l0=self.l0)
        return self._design

    def _checkpoint_design(self) -> Design:
        return self.design.base

    @property
    def n0(self) -> float:
        """Reference parameter count."""
        return float(self.meta["n0"])

    @property
    def s0(self) -> float:
        """Reference number of steps."""
        return float(self.meta["s0"])

    @property
    def l0(self) -> float:
        """Reference loss."""
        return float(self.meta["l0"])

    @property
    def autocorrelation(self) -> str:
        """AR(1) mode of the checkpoint noise."""
        return str(self.meta["options"]["autocorrelation"])

    # ----------------------------------------------------------------- post-processing
    def _add_run_effects_and_loglik(self) -> None:
        design, base = self.design, self.design.base
        theta = self.posterior_draws("theta")
        sigma = self.posterior_draws("sigma_obs")[:, None]
        tau = self.posterior_draws("sigma_seed")[:, None] * np.ones(len(base.runs))
        seg, counts = self._run_segments(base)
        phi_all = self._ar_phi(base, self.autocorrelation)
        loglik = np.empty((theta.shape[0], len(base.runs)))
        effects = np.empty_like(loglik)
        rng = self._rng(1)
        chunk = max(1, 1_000_000 // max(base.n_obs, 1))
        for lo in range(0, theta.shape[0], chunk):
            sl = slice(lo, lo + chunk)
            resid = base.log_loss - kaplan_log_mean(theta[sl], design)
            phi = None if phi_all is None else phi_all[sl]
            args = (resid, sigma[sl], tau[sl], counts, seg)
            loglik[sl] = run_marginal_loglik(*args, phi=phi, prev=base.obs_prev)
            mean, sd = run_effect_conditional(*args, phi=phi, prev=base.obs_prev)
            effects[sl] = mean + sd * rng.standard_normal(mean.shape)
        if "run_effect" not in self.idata.posterior:
            self._store_draws(
                "run_effect", "run", base.runs, effects,
                note="drawn after sampling from its conditional Normal given the other parameters",
            )
        self._store_log_likelihood(loglik, "run", base.runs)

    # ----------------------------------------------------------------- parameters
    def credible_intervals(self, level: float = 0.9) -> pd.DataFrame:
        """Tidy table of parameter credible intervals, ready for a paper.

        Parameters
        ----------
        level
            Probability of the central (equal-tailed) interval.

        Returns
        -------
        pandas.DataFrame
            :func:`bayescale.parameter_table.parameter_intervals` of the posterior: rows for
            ``Nc, alphaN, Sc, alphaS, Bstar, alphaB`` per family and for the population, the
            noise scales (``sigma_seed``, ``sigma_obs``, ``ar_rho``) and the family spreads
            ``family_sd[...]`` of :data:`bayescale.laws.kaplan.KAPLAN_THETA`.
        """
        return parameter_intervals(
            self.idata.posterior, n0=self.n0, d0=float("nan"), use_arch=False, level=level,
            law_params=KAPLAN_PARAMS, theta_names=KAPLAN_THETA,
        )

    def prior_vs_posterior(self, family: str | None = None) -> pd.DataFrame:
        """How much the data narrowed each reference-scale constant.

        Returns
        -------
        pandas.DataFrame
            Per component of ``theta`` (:data:`bayescale.laws.kaplan.KAPLAN_THETA`): prior and
            posterior sd and their ratio (near 1: the posterior is the prior, the data say
            little; near 0: well identified). ``family=None`` uses the population means.
        """
        priors = self.meta["priors"]
        if family is None:
            post = self.posterior_draws("mu_theta")
        else:
            post = self.posterior_draws("theta")[:, self.families.index(self._check_family(family))]
        rows = []
        for i, name in enumerate(KAPLAN_THETA):
            prior_sd = float(priors[name]["sigma"])
            post_sd = float(np.std(post[:, i]))
            rows.append({
                "component": name, "prior_mean": float(priors[name]["mu"]), "prior_sd": prior_sd,
                "posterior_mean": float(np.mean(post[:, i])), "posterior_sd": post_sd,
                "sd_ratio": post_sd / prior_sd,
            })
        return pd.DataFrame(rows).set_index("component")

    def constant_draws(
        self, family: str | None = None, random_seed: int | None = None
    ) -> dict[str, np.ndarray]:
        """Posterior draws (flattened) of the six constants of ``family``.

        A family not in the fit (or ``None``) is a *new* family drawn from the population.
        """
        theta = self._theta_draws(family, self._rng(3, random_seed))
        return law.from_reference_scale(
            *(theta[:, i] for i in range(6)), n0=self.n0, s0=self.s0, l0=self.l0
        )

    def _theta_draws(self, family: str | None, rng: np.random.Generator) -> np.ndarray:
        if family is not None and family in self.families:
            return self.posterior_draws("theta")[:, self.families.index(family), :]
        centre = self.posterior_draws("mu_theta")
        return centre + self.posterior_draws("tau_theta") * rng.standard_normal(centre.shape)

    # ----------------------------------------------------------------- derived quantities
    def lowest_loss(
        self,
        params: Any,
        family: str | None = None,
        *,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Lowest reachable loss ``(Nc/N)^alphaN`` of size-``params`` models.

        Returns
        -------
        xarray.Dataset
            Over ``point`` (coord ``params``): ``loss`` (posterior median) and
            ``loss_interval`` (point, level, bound).
        """
        x = broadcast_inputs(params=params)
        c = self.constant_draws(family, random_seed)
        draws = law.lowest_loss(x["params"][None, :], c["Nc"][:, None], c["alphaN"][:, None])
        return quantity_dataset({"loss": draws}, x, levels, self._attrs(family))

    def critical_batch_size(
        self,
        loss: Any,
        family: str | None = None,
        *,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Critical batch size ``Bcrit(L) = Bstar / L^(1/alphaB)`` (tokens) at ``loss``.

        Returns
        -------
        xarray.Dataset
            Over ``point`` (coord ``loss``): ``batch_size`` and ``batch_size_interval``.
        """
        x = broadcast_inputs(loss=loss)
        c = self.constant_draws(family, random_seed)
        draws = law.critical_batch_size(
            x["loss"][None, :], c["Bstar"][:, None], c["alphaB"][:, None]
        )
        return quantity_dataset({"batch_size": draws}, x, levels, self._attrs(family))

    def min_steps(
        self,
        params: Any,
        loss: Any,
        family: str | None = None,
        *,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Minimum steps ``Smin = Sc (L - L(N))^(-1/alphaS)`` (at ``B >> Bcrit``) to reach
        ``loss`` with a size-``params`` model.

        Draws in which the loss is below the model's lowest reachable loss give ``inf``.

        Returns
        -------
        xarray.Dataset
            Over ``point`` (coords ``params``, ``loss``): ``steps``, ``steps_interval`` and
            ``reachable`` (posterior probability that ``loss`` can be reached at all).
        """
        x = broadcast_inputs(params=params, loss=loss)
        c = self.constant_draws(family, random_seed)
        draws = law.min_steps(
            x["params"][None, :], x["loss"][None, :], *(c[k][:, None] for k in KAPLAN_PARAMS[:4])
        )
        ds = quantity_dataset({"steps": draws}, x, levels, self._attrs(family))
        return ds.assign(reachable=("point", np.mean(np.isfinite(draws), axis=0)))

    def min_tokens(
        self,
        params: Any,
        loss: Any,
        family: str | None = None,
        *,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Minimum tokens ``Emin = Bcrit(L) Smin(L)`` (at ``B << Bcrit``) to reach ``loss``.

        Returns
        -------
        xarray.Dataset
            Over ``point`` (coords ``params``, ``loss``): ``tokens``, ``tokens_interval`` and
            ``reachable``.
        """
        x = broadcast_inputs(params=params, loss=loss)
        c = self.constant_draws(family, random_seed)
        draws = law.min_tokens(
            x["params"][None, :], x["loss"][None, :], *(c[k][:, None] for k in KAPLAN_PARAMS)
        )
        ds = quantity_dataset({"tokens": draws}, x, levels, self._attrs(family))
        return ds.assign(reachable=("point", np.mean(np.isfinite(draws), axis=0)))

    def steps_to_loss(
        self,
        params: Any,
        batch_size: Any,
        loss: Any,
        family: str | None = None,
        *,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Steps ``S = Smin(L) (1 + Bcrit(L)/B)`` to reach ``loss`` at ``batch_size``.

        Returns
        -------
        xarray.Dataset
            Over ``point`` (coords ``params``, ``batch_size``, ``loss``): ``steps``,
            ``steps_interval``, ``tokens`` (``B S``), ``tokens_interval`` and ``reachable``.
        """
        x = broadcast_inputs(params=params, batch_size=batch_size, loss=loss)
        c = self.constant_draws(family, random_seed)
        steps = law.steps_to_loss(
            x["params"][None, :], x["loss"][None, :], x["batch_size"][None, :],
            *(c[k][:, None] for k in KAPLAN_PARAMS),
        )
        ds = quantity_dataset(
            {"steps": steps, "tokens": steps * x["batch_size"][None, :]}, x, levels,
            self._attrs(family),
        )
        return ds.assign(reachable=("point", np.mean(np.isfinite(steps), axis=0)))

    # ----------------------------------------------------------------- prediction
    def predict(
        self,
        params: Any,
        tokens: Any,
        family: str | None = None,
        *,
        batch_size: Any,
        run: str | None = None,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Posterior predictive loss after ``tokens`` at ``batch_size`` tokens per step.

        The prediction of :meth:`bayescale.ScalingLawFit.predict` for this law: the number of
        steps is ``tokens / batch_size``.

        Parameters
        ----------
        params, tokens
            ``N`` and ``D`` (broadcast against each other and ``batch_size``).
        family
            A family of the fit; a name not in the fit (or ``None``) predicts a *new* family
            drawn from the population.
        batch_size
            ``B``, tokens per step (the law needs it: there is no default).
        run
            A run of the fit: predict with that run's own offset.
        levels
            Central interval probabilities of the bands.
        random_seed
            Seed of the predictive draws (default: the fit's seed).

        Returns
        -------
        xarray.Dataset
            The layout of :func:`bayescale.intervals.prediction_dataset` over ``point``
            (coords ``params``, ``tokens``, plus ``batch_size`` and ``steps``): ``median`` of
            the mean curve, and bands ``mean`` (parameter uncertainty), ``new_seed``
            (+ seed-to-seed variability; omitted with ``run``) and ``observed`` (+ checkpoint
            noise).

        Raises
        ------
        ValueError
            If an input is not positive and finite.
        KeyError
            If ``run`` is not a run of the fit.
        """
        x = self._tokens_inputs(params, tokens, batch_size)
        return self._prediction(x, family, run, levels, random_seed)

    def predictive_draws(
        self,
        params: Any,
        tokens: Any,
        family: str | None = None,
        *,
        batch_size: Any,
        run: str | None = None,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """Draws of the loss after ``tokens`` at ``batch_size`` for each band.

        See :meth:`predict` for the arguments; useful for CRPS and custom summaries.

        Returns
        -------
        xarray.Dataset
            ``mean``, ``new_seed`` (or the run's own offset with ``run``) and ``observed``
            with dims ``(sample, point)``; coords ``params``, ``tokens``, ``batch_size`` and
            ``steps``.
        """
        x = self._tokens_inputs(params, tokens, batch_size)
        return self._draws(x, family, run, random_seed)

    def trajectory_draws(
        self,
        params: Any,
        batch_size: Any,
        steps: Any,
        family: str | None = None,
        *,
        run: str | None = None,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """:meth:`predictive_draws` in the law's own coordinates, steps instead of tokens.

        Kept as an alias of :meth:`predictive_draws` with ``tokens = batch_size * steps``;
        see :meth:`trajectory` for the arguments.

        Returns
        -------
        xarray.Dataset
            ``mean``, ``new_seed`` (or the run's own offset with ``run``) and ``observed``
            with dims ``(sample, point)``; coords ``params``, ``batch_size`` and ``steps``.
        """
        x = broadcast_inputs(params=params, batch_size=batch_size, steps=steps)
        return self._draws(x, family, run, random_seed)

    def trajectory(
        self,
        params: Any,
        batch_size: Any,
        steps: Any,
        family: str | None = None,
        *,
        run: str | None = None,
        levels: Sequence[float] = DEFAULT_LEVELS,
        random_seed: int | None = None,
    ) -> xr.Dataset:
        """:meth:`predict` in the law's own coordinates: a loss trajectory over ``steps``.

        Kept as an alias of :meth:`predict` with ``tokens = batch_size * steps`` (the same
        draws, given the same steps).

        Parameters
        ----------
        params, batch_size, steps
            ``N``, ``B`` (tokens per step) and ``S`` (broadcast against each other).
        family
            A family of the fit; a name not in the fit (or ``None``) predicts a *new* family
            drawn from the population.
        run
            A run of the fit: predict with that run's own offset.
        levels
            Central interval probabilities.
        random_seed
            Seed of the predictive draws (default: the fit's seed).

        Returns
        -------
        xarray.Dataset
            As :meth:`predict` (coords ``params``, ``tokens = B S``, ``batch_size`` and
            ``steps``).
        """
        x = broadcast_inputs(params=params, batch_size=batch_size, steps=steps)
        return self._prediction(x, family, run, levels, random_seed)

    @staticmethod
    def _tokens_inputs(params: Any, tokens: Any, batch_size: Any) -> dict[str, np.ndarray]:
        """Broadcast ``(params, tokens, batch_size)`` and add ``steps = tokens / batch_size``."""
        x = broadcast_inputs(params=params, tokens=tokens, batch_size=batch_size)
        return {**x, "steps": x["tokens"] / x["batch_size"]}

    def _draws(
        self,
        x: dict[str, np.ndarray],
        family: str | None,
        run: str | None,
        random_seed: int | None,
    ) -> xr.Dataset:
        """Draws of each band at the points ``x`` (``params``, ``batch_size``, ``steps``)."""
        rng = self._rng(2, random_seed)
        if run is not None:
            run_index, family = self._check_run(run)
        theta = self._theta_draws(family, rng)
        log_mu = law.reference_log_loss(
            theta[:, None, :],
            np.log(x["params"] / self.n0)[None, :],
            np.log(x["steps"] / self.s0)[None, :],
            np.log(x["batch_size"])[None, :],
            float(np.log(self.l0)),
        )
        out = {"mean": np.exp(log_mu)}
        if run is not None:
            base = log_mu + self.posterior_draws("run_effect")[:, run_index][:, None]
            out["mean"] = np.exp(base)
        else:
            base = log_mu + rng.standard_normal((theta.shape[0], 1)) * self.posterior_draws(
                "sigma_seed"
            )[:, None]
            out["new_seed"] = np.exp(base)
        noise = rng.standard_normal(base.shape) * self.posterior_draws("sigma_obs")[:, None]
        out["observed"] = np.exp(base + noise)
        coords = {k: ("point", v) for k, v in x.items()}
        return xr.Dataset({k: (("sample", "point"), v) for k, v in out.items()}, coords=coords)

    def _prediction(
        self,
        x: dict[str, np.ndarray],
        family: str | None,
        run: str | None,
        levels: Sequence[float],
        random_seed: int | None,
    ) -> xr.Dataset:
        """The prediction dataset at the points ``x`` (``tokens`` = ``B S`` unless given)."""
        draws = self._draws(x, family, run, random_seed)
        bands = {k: draws[k].values for k in draws.data_vars}
        batch, steps = x["batch_size"], x["steps"]
        tokens = x["tokens"] if "tokens" in x else batch * steps
        ds = prediction_dataset(
            x["params"], tokens, np.median(bands["mean"], axis=0), bands,
            levels=levels, attrs={**self._attrs(family), "run": run or ""},
        )
        return ds.assign_coords(batch_size=("point", batch), steps=("point", steps))

    def _attrs(self, family: str | None) -> dict[str, str]:
        known = family is not None and family in self.families
        return {"family": family if known else "(new family)", "law": "kaplan"}


def check_identities(
    fit: KaplanFit,
    params: float,
    batch_size: Any,
    steps: Any,
    family: str | None = None,
) -> xr.Dataset:
    """Check Kaplan's identities on every posterior draw of the trajectory.

    For each draw: ``L`` = the solved loss at ``(params, batch_size, steps)``,
    ``Smin = S/(1 + Bcrit(L)/B)``, ``Emin = B S/(1 + B/Bcrit(L))``; and
    ``Smin`` recomputed from ``L`` by ``Sc (L - L(N))^(-1/alphaS)``.

    Returns
    -------
    xarray.Dataset
        Over ``(sample, point)``: ``product = (S/Smin - 1)(E/Emin - 1)`` (should be 1) and
        ``smin_ratio`` = the defining ``Smin`` over the one recomputed from the solved loss
        (should be 1: the solve is consistent with :func:`bayescale.laws.kaplan.min_steps`).
    """
    x = broadcast_inputs(params=params, batch_size=batch_size, steps=steps)
    c = fit.constant_draws(family)
    cc = {k: v[:, None] for k, v in c.items()}
    n, b, s = x["params"][None, :], x["batch_size"][None, :], x["steps"][None, :]
    loss = law.kaplan_loss(n, s, b, **cc)
    bcrit = law.critical_batch_size(loss, cc["Bstar"], cc["alphaB"])
    s_min = s / (1 + bcrit / b)
    e = b * s
    e_min = e / (1 + b / bcrit)
    recomputed = law.min_steps(n, loss, cc["Nc"], cc["alphaN"], cc["Sc"], cc["alphaS"])
    return xr.Dataset({
        "product": (("sample", "point"), (s / s_min - 1) * (e / e_min - 1)),
        "smin_ratio": (("sample", "point"), s_min / recomputed),
    })
