r"""Experiment design: which run to train next for the most certainty per FLOP.

Preposterior analysis on the current posterior. For a candidate run (a family, a model size
``N``, a planned length ``D``, a schedule, a number of seeds and a cost) the question is how
narrow the predictive band at a target ``(N*, D*)`` would be *after* training it. The run's
data are unknown, so the width is averaged over what the data could be:

1. draw ``S`` posterior draws ``m_1..m_S`` (the same for every candidate, so that sets of
   candidates are simulated jointly);
2. simulate each candidate's checkpoints under draw ``m_j``: a few log-spaced checkpoints over
   the part of the run a fit uses, with a new seed offset per seed, the AR(1) checkpoint noise
   and, under a learning-rate schedule, the schedule's ``kappa`` term;
3. reweight every posterior draw ``m`` by the likelihood of the simulated data
   ``p(y_j | theta_m)``, with the new runs' seed offsets integrated out in closed form
   (covariance ``sigma_seed^2 1 1' + sigma_obs^2 R`` on log-loss, ``R`` the AR(1)
   correlation), and smooth the weights with Pareto-smoothed importance sampling
   (:func:`arviz.psislw`), which also gives the Pareto ``k`` of each simulation;
4. read the weighted 90% band at the target and average its width over the ``S`` simulations.

A greedy plan under a budget adds, one at a time, the candidate with the largest expected
reduction per unit of cost, conditioning on the runs already in the plan by simulating them
jointly with the next one (their likelihoods add). A run enters only if its expected
reduction exceeds two Monte Carlo standard errors; and because reduction per FLOP alone can
spend a budget on cheap runs and leave too little for the run that matters (the knapsack
problem's trap), the plan that starts with the affordable run of largest expected reduction
is also built, and the one expected to end narrower is returned.

Approximations (also in :func:`next_runs`):

* importance sampling from the current draws: when a candidate's data would move the
  posterior far, few draws carry the weight; the Pareto ``k`` of each simulation says so
  (``k > 0.7``: that simulation's band is unreliable, and usually too narrow). The table
  reports the largest ``k`` and the share of simulations above 0.7, and flags an expected
  width as unreliable, with a warning, when that share exceeds 10%. No approximate refit
  replaces such simulations: moment matching with a Gaussian stand-in for the posterior's
  density was tried and made a 5-run set's estimate worse (0.112 against a refit's 0.230,
  plain reweighting 0.194), because the posterior of an extrapolation is far from Gaussian;
* a weighted band from an effective sample of ``n_eff`` draws would be short by roughly
  ``1/n_eff``; the draws' spread about their weighted mean is widened by
  ``1 / sqrt(1 - sum w^2)``, the factor that makes a weighted variance unbiased;
* the Gaussian likelihood only (fits with ``likelihood="student_t"`` are refused);
* the new run's offset is integrated out given each draw's ``sigma_seed``; under
  ``config_effects`` a known configuration's offset is its conditional posterior draw (as
  :meth:`~bayescale.ScalingLawFit.predict` uses it), a new one's is integrated out too;
* a new family's parameters come from the population. For a candidate in a new family that
  is not the target's, they are integrated out of each draw's weight in closed form after
  linearising the law around the simulating family draw (whose noise scales and ``kappa`` are
  taken as known); a target in a new family shares one family draw per posterior draw with
  the candidates in that family (plain importance sampling, usually with a high Pareto k);
* the AR(1) correlation of the new checkpoints is each draw's ``rho`` at the fit's scale of
  log-token gaps; a refit would also move its reference scales ``N0, D0`` and that gap
  scale, which reweighting cannot;
* a candidate without a schedule is simulated, as :func:`bayescale.fit` would fit it, only
  from ``unscheduled_from`` of its run on, under the law of final losses; a scheduled
  candidate's checkpoints before its anneal need a schedule-aware fit (otherwise only its
  checkpoints after the anneal are used, with a :class:`bayescale.ScheduleWarning`);
* the within-run tilt of the schedule-aware law (:mod:`bayescale.laws.schedule`) is left out of
  the simulated checkpoints and of their weights alike: it is zero at each run's end, where a
  candidate's information about the law of final losses lies.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from bayescale.data.prepare import (
    DEFAULT_FIT_FROM,
    DEFAULT_UNSCHEDULED_FROM,
    run_length,
    window_start,
)
from bayescale.data.schedule import SCHEDULE_COLUMNS
from bayescale.errors import DataError, ScheduleWarning, UnreliableEstimateWarning
from bayescale.laws.schedule import point_schedule
from bayescale.models.hierarchical import reference_log_loss
from bayescale.models.likelihood import (
    config_loglik_from_sums,
    numpy_segment_sum,
    residual_sums,
    run_loglik_from_sums,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from bayescale.fit import ScalingLawFit

__all__ = [
    "MAX_SHARE_HIGH_K",
    "PARETO_K_THRESHOLD",
    "NextRuns",
    "UnreliableEstimateWarning",
    "next_runs",
    "plot_next_runs",
    "reweighted_band",
    "target_band",
]

#: Pareto k above which an importance-sampling estimate is unreliable (Vehtari et al. 2024).
PARETO_K_THRESHOLD = 0.7
#: An expected width (an average over simulations) is unreliable when more than this share of
#: its simulations have Pareto k above :data:`PARETO_K_THRESHOLD`.
MAX_SHARE_HIGH_K = 0.1
#: A run enters the greedy plan only if its expected reduction exceeds this many Monte Carlo
#: standard errors (over the common simulations).
MIN_Z = 2.0
#: Bands a target can be read from (see :meth:`bayescale.ScalingLawFit.predict`).
BANDS = ("mean", "new_seed", "observed")
#: Below this the schedule covariate counts as zero (as :mod:`bayescale.models.design`).
_MIN_ANNEAL = 1e-3
#: Largest array (elements) built at once when computing likelihoods.
_CHUNK = 4_000_000


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class NextRuns:
    """Expected band widths at the target after training each candidate, and a greedy plan.

    Attributes
    ----------
    table
        One row per candidate, best first (largest expected reduction per unit of cost):
        ``candidate, family, params, tokens, n_seeds, kind, checkpoints, cost,
        expected_width, expected_reduction, reduction_se, relative_reduction,
        reduction_per_flop, pareto_k_max, pareto_k_mean, share_k_high, reliable``. Widths are
        in loss units (the mean over target points of the band's upper minus lower bound);
        ``reduction_se`` is the Monte Carlo standard error over simulations; ``share_k_high``
        the fraction of simulations with Pareto ``k > 0.7`` (each such simulation's weighted
        band is unreliable); ``reliable`` is ``False`` when that fraction exceeds
        :data:`MAX_SHARE_HIGH_K` (10%).
    plan
        The greedy plan under ``budget`` (see the module docstring): one row per step with the
        candidate added, its cost, the cumulative cost, the expected width after the step
        (all the plan's runs so far simulated jointly), the step's reduction per unit of cost,
        ``pareto_k_max``, ``share_k_high`` and ``reliable`` of that joint estimate (sets of
        several runs move the posterior further, so later steps are less often reliable).
    alternatives
        The same path for simple habits at the same budget: ``"cheapest-first"`` and
        ``"largest-affordable-first"`` (largest model, then longest run, that still fits).
    current_width
        The band's width now (mean over target points).
    target
        The target points (``family, params, tokens``) and their current bands.
    band, level, budget, n_simulations
        What was asked.
    notes
        What the caller should know (e.g. checkpoints that could not be simulated, or that the
        plan starts with the run of largest reduction rather than the best per FLOP).
    """

    table: pd.DataFrame
    plan: pd.DataFrame
    alternatives: dict[str, pd.DataFrame]
    current_width: float
    target: pd.DataFrame
    band: str
    level: float
    budget: float | None
    n_simulations: int
    notes: tuple[str, ...] = field(default=())

    def plot(self, ax: Axes | None = None) -> Axes:
        """Expected width against cumulative compute (see :func:`plot_next_runs`)."""
        return plot_next_runs(self, ax=ax)

    def __repr__(self) -> str:
        cols = ["candidate", "kind", "cost", "expected_width", "expected_reduction",
                "reduction_per_flop", "pareto_k_max", "reliable"]
        lines = [
            f"NextRuns(band={self.band!r} {self.level:.0%}, current width "
            f"{self.current_width:.4g}, {self.n_simulations} simulations, budget {self.budget})",
            self.table[cols].to_string(index=False),
        ]
        if len(self.plan):
            lines += ["plan:", self.plan.to_string(index=False)]
        return "\n".join(lines)


# --------------------------------------------------------------------------- posterior
@dataclass
class _Family:
    """Draws of one family's law, ``theta`` (M, 5) and ``kappa`` (M,) (None without a
    schedule). ``marginal``: a new family whose parameters are integrated out of the weights
    (``centre`` (M, 5) and ``cov`` (M, 5, 5) of its population); ``theta`` then only
    simulates data."""

    theta: np.ndarray
    kappa: np.ndarray | None
    marginal: bool = False
    centre: np.ndarray | None = None
    cov: np.ndarray | None = None


class _Posterior:
    """The per-draw quantities the design needs, read through the fit's public accessors."""

    def __init__(self, fit: ScalingLawFit, rng: np.random.Generator,
                 shared_families: set[str]):
        if fit.options.likelihood != "normal":
            raise ValueError(
                "next_runs needs a fit with the normal likelihood (the Student-t likelihood has "
                "no closed-form marginal over a new run's offset)"
            )
        self.fit = fit
        self.rng = rng
        self.sigma_obs = fit.posterior_draws("sigma_obs")
        self.m = self.sigma_obs.shape[0]
        self.mode = fit.options.autocorrelation
        self.rho = fit.posterior_draws("ar_rho") if self.mode != "none" else None
        design = fit.design
        positive = design.obs_gap[design.obs_prev >= 0]
        self.gap_scale = float(np.median(positive)) if positive.size else 1.0
        self.nested = fit.options.config_effects
        self.sigma_config = fit.posterior_draws("sigma_config") if self.nested else None
        self.shared = shared_families
        self._families: dict[str, _Family] = {}
        self._archs: dict[str, str | None] = {}

    def family(self, name: str, arch: str | None = None) -> _Family:
        """Draws of family ``name`` (the same draws on every call, so that a new family's
        candidates and target share them)."""
        if name in self._families:
            if arch is not None and self._archs[name] not in (None, arch):
                raise DataError(f"new family {name!r} is given two archs: "
                                f"{self._archs[name]!r} and {arch!r}")
            return self._families[name]
        self._archs[name] = arch
        fit = self.fit
        if name in fit.families:
            fam = _Family(*fit.family_draws(name))
        elif name in self.shared:  # a new family the target is in: one draw, shared
            fam = _Family(*fit.family_draws(name, arch=arch, random_seed=self.rng))
        else:  # a new family only candidates are in: integrated out of the weights
            theta, kappa = fit.family_draws(name, arch=arch, random_seed=self.rng)
            centre, cov = self._population(arch)
            fam = _Family(theta, kappa, True, centre, cov)
        self._families[name] = fam
        return fam

    def _population(self, arch: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Centre (M, 5) and covariance (M, 5, 5) of a new family's parameters."""
        fit = self.fit
        post = fit.idata.posterior
        if arch is not None and "theta_arch" in post:
            archs = [str(a) for a in post["arch"].values]
            if arch not in archs:
                raise DataError(f"unknown arch {arch!r}; archs in this fit: {archs}")
            centre = fit.posterior_draws("theta_arch")[:, archs.index(arch), :]
        else:
            centre = fit.posterior_draws("mu_theta")
        if "family_chol" in post:
            chol = fit.posterior_draws("family_chol")
            cov = np.einsum("mij,mkj->mik", chol, chol)
        else:
            tau = fit.posterior_draws("tau_theta")
            cov = tau[:, :, None] ** 2 * np.eye(tau.shape[1])[None]
        return centre, cov

    def ar_exponent(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exponents ``x_i`` in ``phi_i = rho ** x_i`` of a run's checkpoints at ``tokens``
        (the fit's scale of log-token gaps, see :func:`~bayescale.models.likelihood.ar_phi`),
        and which checkpoint is the run's first."""
        first = np.arange(tokens.size) == 0
        if self.mode != "log_tokens":
            return np.ones(tokens.size), first
        gaps = np.r_[0.0, np.diff(np.log(tokens))]
        return np.where(first, 1.0, np.maximum(gaps, 1e-12) / self.gap_scale), first

    def phi(self, exponent: np.ndarray, first: np.ndarray) -> np.ndarray | None:
        """AR(1) correlation of each checkpoint with its predecessor, per draw (M, n)."""
        if self.rho is None:
            return None
        return np.where(first, 0.0, self.rho[:, None] ** exponent[None, :])


# --------------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class _Unit:
    """One candidate: its planned checkpoints (per seed) and how it enters the likelihood."""

    name: str
    family: str
    arch: str | None
    params: float
    tokens: float
    n_seeds: int
    cost: float
    kind: str
    log_n: float
    log_d: np.ndarray
    excess: np.ndarray
    exponent: np.ndarray
    first: np.ndarray
    config: int = -1

    @property
    def n(self) -> int:
        return int(self.log_d.size)


def _listing(rows: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(str(r) for r in list(rows)[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _check_candidates(candidates: pd.DataFrame) -> pd.DataFrame:
    """Validated copy of the candidate table with ``candidate, n_seeds, cost`` filled in."""
    if not isinstance(candidates, pd.DataFrame):
        raise DataError(f"candidates must be a pandas DataFrame; got {type(candidates).__name__}")
    if candidates.empty:
        raise DataError("candidates is empty: give at least one run that could be trained")
    missing = [c for c in ("family", "params", "tokens") if c not in candidates.columns]
    if missing:
        raise DataError(
            f"candidates lack column(s) {missing}; each row needs family, params (N) and tokens "
            "(the planned D), optionally n_seeds, cost, candidate, arch, config and the "
            f"schedule columns {list(SCHEDULE_COLUMNS)}"
        )
    cand = candidates.reset_index(drop=True).copy()
    for col in ("params", "tokens"):
        values = pd.to_numeric(cand[col], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        if bad.size:
            raise DataError(f"candidates rows {_listing(bad.tolist())}: {col} must be positive "
                            f"and finite (got {_listing(cand[col].iloc[bad].tolist())})")
        cand[col] = values
    fam = cand["family"]
    bad = np.flatnonzero(fam.isna().to_numpy() | (fam.astype(str).str.strip() == "").to_numpy())
    if bad.size:
        raise DataError(f"candidates rows {_listing(bad.tolist())}: family is missing")
    cand["family"] = fam.astype(str)
    if "n_seeds" in cand.columns:
        given = cand["n_seeds"].notna().to_numpy()
        seeds = pd.to_numeric(cand["n_seeds"], errors="coerce").to_numpy(dtype=float, copy=True)
        seeds[~given] = 1.0  # a missing value is the default, one seed
        bad = np.flatnonzero(~(np.isfinite(seeds) & (seeds >= 1) & (seeds == np.round(seeds))))
        if bad.size:
            raise DataError(f"candidates rows {_listing(bad.tolist())}: n_seeds must be a "
                            f"positive integer (got {_listing(cand['n_seeds'].iloc[bad].tolist())})")
        cand["n_seeds"] = seeds.astype(int)
    else:
        cand["n_seeds"] = 1
    default_cost = 6.0 * cand["params"] * cand["tokens"] * cand["n_seeds"]
    if "cost" in cand.columns:
        cost = pd.to_numeric(cand["cost"], errors="coerce")
        given = cand["cost"].notna().to_numpy()
        values = cost.to_numpy(dtype=float)
        bad = np.flatnonzero(given & ~(np.isfinite(values) & (values > 0)))
        if bad.size:
            raise DataError(f"candidates rows {_listing(bad.tolist())}: cost must be positive "
                            f"and finite (got {_listing(cand['cost'].iloc[bad].tolist())})")
        cand["cost"] = np.where(given, values, default_cost)
    else:
        cand["cost"] = default_cost
    if "candidate" in cand.columns:
        cand["candidate"] = cand["candidate"].astype(str)
    else:
        cand["candidate"] = [
            f"{f} N={n:.3g} D={d:.3g}" + (f" x{s}" if s > 1 else "")
            for f, n, d, s in zip(cand["family"], cand["params"], cand["tokens"], cand["n_seeds"],
                                  strict=True)
        ]
    dup = cand["candidate"][cand["candidate"].duplicated()].unique().tolist()
    if dup:
        raise DataError(f"candidate names must be unique; repeated: {_listing(dup)}")
    present = [c for c in SCHEDULE_COLUMNS if c in cand.columns]
    if present:
        _check_schedules(cand, present)
    return cand


def _check_schedules(cand: pd.DataFrame, present: list[str]) -> None:
    """Validate the candidates' schedule columns as a run table would be validated."""
    from bayescale.data.validate import validate

    table = cand[["family", "params", "tokens", *present]].copy()
    table["run"] = cand["candidate"]
    table["loss"] = 1.0
    table["run_tokens"] = cand["tokens"]  # the schedule ends with the run unless given
    try:
        validate(table, allow_small_tokens=True)
    except DataError as exc:
        raise DataError(f"candidates' schedules: {exc} (runs are candidate names)") from exc


def _windows(cand: pd.DataFrame, fit_from: float | None,
             unscheduled_from: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each candidate's run length, whether it has a schedule, and where its window starts."""
    table = pd.DataFrame({"run": cand["candidate"], "tokens": cand["tokens"],
                          "run_tokens": cand["tokens"]})  # the schedule ends with the run
    if "schedule_tokens" in cand.columns:
        table["schedule_tokens"] = cand["schedule_tokens"]
    length = run_length(table).to_numpy()
    if "schedule" in cand.columns:
        scheduled = cand["schedule"].notna().to_numpy(dtype=bool)
    else:
        scheduled = np.zeros(len(cand), dtype=bool)
    start = window_start(length, ~scheduled, fit_from, unscheduled_from)
    return length, scheduled, np.minimum(start, cand["tokens"].to_numpy(dtype=float))


def _training_runs(fit: ScalingLawFit) -> pd.DataFrame:
    """One row per training run: family, params, run length, config index."""
    data = fit.data
    runs = pd.DataFrame({"run": data["run"].astype(str), "family": data["family"].astype(str),
                         "params": data["params"].astype(float), "length": run_length(data)})
    runs = runs.groupby("run", sort=False).first()
    design = fit.design
    config_of = dict(zip(design.runs, design.run_config, strict=True))
    runs["config"] = [int(config_of[r]) for r in runs.index]
    return runs


def _same(a: Any, b: float, rtol: float = 1e-3) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=float) / b - 1) < rtol


def _kind(family: str, params: float, length: float, runs: pd.DataFrame) -> str:
    """What a candidate adds: a new family, a larger (or new) size, a longer run, a seed."""
    own = runs[runs["family"] == family]
    if own.empty:
        return "new family"
    at_size = own[_same(own["params"], params)]
    if at_size.empty:
        return "larger model" if params > own["params"].max() else "new size"
    if _same(at_size["length"], length).any():
        return "another seed"
    return "longer run" if length > at_size["length"].max() else "new budget"


def _units(fit: ScalingLawFit, post: _Posterior, cand: pd.DataFrame, n_checkpoints: int,
           fit_from: float | None,
           unscheduled_from: float | None) -> tuple[list[_Unit], list[str]]:
    runs = _training_runs(fit)
    configs = [str(c) for c in fit.design.configs]
    notes: list[str] = []
    units = []
    dropped = []
    lengths, has_schedules, starts = _windows(cand, fit_from, unscheduled_from)
    for row, length, has_schedule, start in zip(cand.to_dict("records"), lengths.tolist(),
                                                has_schedules.tolist(), starts.tolist(),
                                                strict=True):
        ckpt = np.unique(np.geomspace(start, row["tokens"], max(int(n_checkpoints), 1)))
        if has_schedule:
            sched = {c: row.get(c) for c in SCHEDULE_COLUMNS if c in row}
            sched["schedule_tokens"] = length
            if "batch_size" in row and pd.notna(row.get("batch_size")):
                sched["batch_size"] = row["batch_size"]
            d_eff, excess, _ = point_schedule(np.full(ckpt.size, row["params"]), ckpt, sched)
        else:
            d_eff, excess = ckpt.copy(), np.zeros(ckpt.size)
        excess = np.where(np.abs(excess) > _MIN_ANNEAL, excess, 0.0)
        if not fit.schedule_aware and np.any(excess != 0):
            keep = excess == 0
            keep[-1] = True
            ckpt, d_eff, excess = ckpt[keep], d_eff[keep], np.zeros(int(keep.sum()))
            dropped.append(row["candidate"])
        exponent, first = post.ar_exponent(ckpt)
        config = -1
        if post.nested:
            given = row.get("config")
            if given is not None and pd.notna(given) and str(given) in configs:
                config = configs.index(str(given))
            elif given is None or pd.isna(given):
                match = runs[(runs["family"] == row["family"]) & _same(runs["params"], row["params"])
                             & _same(runs["length"], length)]
                if len(match):
                    config = int(match["config"].iloc[0])
        arch = row.get("arch")
        units.append(_Unit(
            name=row["candidate"], family=row["family"],
            arch=None if arch is None or pd.isna(arch) or row["family"] in fit.families
            else str(arch),
            params=float(row["params"]), tokens=float(row["tokens"]),
            n_seeds=int(row["n_seeds"]), cost=float(row["cost"]),
            kind=_kind(row["family"], row["params"], length, runs),
            log_n=float(np.log(row["params"] / fit.n0)), log_d=np.log(d_eff / fit.d0),
            excess=excess, exponent=exponent, first=first, config=config,
        ))
    if dropped:
        msg = (f"this fit has no learning-rate schedule term (kappa), so the checkpoints of "
               f"{_listing(dropped)} before their anneal cannot be simulated: only their "
               "annealed (final) checkpoints are used. Fit runs with mid-run checkpoints of a "
               "decaying schedule to plan with them")
        warnings.warn(msg, ScheduleWarning, stacklevel=3)
        notes.append(msg)
    return units, notes


# --------------------------------------------------------------------------- simulation
def _log_mu(theta: np.ndarray, kappa: np.ndarray | None, log_n: float, log_d: np.ndarray,
            excess: np.ndarray) -> np.ndarray:
    """log mean curve (..., n) for draws ``theta[..., 5]`` and ``kappa[...]``."""
    out = reference_log_loss(theta, np.full(log_d.shape, log_n), log_d)
    if kappa is not None and np.any(excess != 0):
        out = out + kappa[..., None] * excess
    return out


def _jacobian(theta: np.ndarray, log_n: float, log_d: np.ndarray) -> np.ndarray:
    """``d log mu / d theta`` (S, n, 5) of the law at draws ``theta`` (S, 5)."""
    alpha, beta = np.exp(theta[:, 2:3]), np.exp(theta[:, 4:5])
    terms = np.stack(np.broadcast_arrays(
        theta[:, 0:1], theta[:, 1:2] - alpha * log_n, theta[:, 3:4] - beta * log_d[None, :]
    ), axis=-1)  # (S, n, 3)
    p = np.exp(terms - terms.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.stack([
        p[..., 0], p[..., 1], -p[..., 1] * alpha * log_n,
        p[..., 2], -p[..., 2] * beta * log_d[None, :],
    ], axis=-1)


def _simulate(post: _Posterior, unit: _Unit, draws: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Log-losses (S, seeds, n) of a candidate's checkpoints, simulated under ``draws``."""
    fam = post.family(unit.family, unit.arch)
    kappa = None if fam.kappa is None else fam.kappa[draws]
    log_mu = _log_mu(fam.theta[draws], kappa, unit.log_n, unit.log_d, unit.excess)
    s, r, n = draws.size, unit.n_seeds, unit.n
    offset = np.zeros((s, 1))
    if post.nested:
        if unit.config >= 0:
            offset = post.fit.posterior_draws("config_effect")[draws, unit.config][:, None]
        else:
            offset = post.sigma_config[draws, None] * rng.standard_normal((s, 1))
    tau = post.fit.seed_sd(unit.params)[draws]  # (S, 1)
    seeds = tau * rng.standard_normal((s, r))
    z = rng.standard_normal((s, r, n))
    phi = post.phi(unit.exponent, unit.first)
    if phi is not None:
        phi = phi[draws][:, None, :]
        eps = np.empty_like(z)
        eps[..., 0] = z[..., 0]
        for i in range(1, n):
            eps[..., i] = phi[..., i] * eps[..., i - 1] + np.sqrt(1 - phi[..., i] ** 2) * z[..., i]
    else:
        eps = z
    sigma = post.sigma_obs[draws][:, None, None]
    return log_mu[:, None, :] + offset[:, :, None] + seeds[:, :, None] + sigma * eps


@dataclass(frozen=True)
class _Evidence:
    """What one candidate's simulated data add to the log weights: ``additive`` (S, M) for a
    family of the fit (or the target's new family), or, for a new family integrated out, the
    linearised information ``h`` (S, 5, 5) and score ``b`` (S, 5) of its data about the
    family's parameters (summed over the family's candidates, then integrated)."""

    family: str
    additive: np.ndarray | None = None
    h: np.ndarray | None = None
    b: np.ndarray | None = None


def _evidence(post: _Posterior, unit: _Unit, y: np.ndarray, draws: np.ndarray) -> _Evidence:
    fam = post.family(unit.family, unit.arch)
    if fam.marginal:
        return _linearised(post, unit, fam, y, draws)
    return _Evidence(unit.family, additive=_loglik(post, unit, fam, y))


def _loglik(post: _Posterior, unit: _Unit, fam: _Family, y: np.ndarray) -> np.ndarray:
    """Log-likelihood (S, M) of each simulation's data ``y`` (S, seeds, n) under each draw,
    seed (and new-config) offsets integrated out."""
    log_mu = _log_mu(fam.theta, fam.kappa, unit.log_n, unit.log_d, unit.excess)  # (M, n)
    m = log_mu.shape[0]
    r, n = unit.n_seeds, unit.n
    if post.nested and unit.config >= 0:  # a known configuration's offset, per draw
        config = post.fit.posterior_draws("config_effect")[:, unit.config]
        log_mu = log_mu + config[:, None]
    phi = post.phi(unit.exponent, unit.first)
    phi_all = None if phi is None else np.tile(phi, (1, r))[None]
    prev = np.tile(np.arange(n) - 1, r) + np.repeat(np.arange(r) * n, n)
    prev[np.arange(r) * n] = -1
    counts = np.full(r, n, dtype=float)
    seg = numpy_segment_sum(np.arange(r) * n)
    sigma = post.sigma_obs[None, :, None]
    tau = post.fit.seed_sd(unit.params)[:, 0][None, :, None]
    out = np.empty((y.shape[0], m))
    step = max(1, _CHUNK // max(m * r * n, 1))
    for lo in range(0, y.shape[0], step):
        resid = y[lo:lo + step, None, :, :] - log_mu[None, :, None, :]  # (s, M, R, n)
        resid = resid.reshape(*resid.shape[:2], r * n)
        sums = residual_sums(resid, counts, seg, phi_all, prev)
        if post.nested and unit.config < 0:  # a new configuration: its offset integrated out
            tau_c = post.sigma_config[None, :, None]
            out[lo:lo + step] = config_loglik_from_sums(
                *sums, sigma, tau, tau_c, counts, lambda x: x.sum(axis=-1, keepdims=True)
            )[..., 0]
        else:
            out[lo:lo + step] = run_loglik_from_sums(*sums, sigma, tau, counts).sum(axis=-1)
    return out


def _linearised(post: _Posterior, unit: _Unit, fam: _Family, y: np.ndarray,
                draws: np.ndarray) -> _Evidence:
    """Information and score of a new family's simulated data about its parameters.

    The law is linearised around the family draw that simulated the data; the noise
    covariance (seed offsets, AR(1) checkpoint noise, a new configuration's offset) is the
    simulating draw's.
    """
    theta = fam.theta[draws]
    kappa = None if fam.kappa is None else fam.kappa[draws]
    log_mu = _log_mu(theta, kappa, unit.log_n, unit.log_d, unit.excess)  # (S, n)
    jac = _jacobian(theta, unit.log_n, unit.log_d)  # (S, n, 5)
    s, r, n = draws.size, unit.n_seeds, unit.n
    e = (y - log_mu[:, None, :]).reshape(s, r * n)
    phi = post.phi(unit.exponent, unit.first)
    if phi is None:
        corr = np.broadcast_to(np.eye(n), (s, n, n))
    else:
        cum = np.cumsum(np.log(np.maximum(phi[draws], 1e-300)) * ~unit.first, axis=1)
        corr = np.exp(-np.abs(cum[:, :, None] - cum[:, None, :]))
    sigma2 = post.sigma_obs[draws][:, None, None] ** 2
    tau2 = post.fit.seed_sd(unit.params)[draws][:, :, None] ** 2
    block = sigma2 * corr + tau2  # one seed: sigma^2 R + tau^2 1 1'
    cov = np.zeros((s, r * n, r * n))
    for i in range(r):
        cov[:, i * n:(i + 1) * n, i * n:(i + 1) * n] = block
    if post.nested:
        cov = cov + post.sigma_config[draws][:, None, None] ** 2
    jj = np.tile(jac, (1, r, 1))  # (S, R n, 5)
    sol = np.linalg.solve(cov, np.concatenate([jj, e[..., None]], axis=-1))
    h = np.einsum("sni,snj->sij", jj, sol[..., :5])
    b = np.einsum("sni,sn->si", jj, sol[..., 5])
    return _Evidence(unit.family, h=h, b=b)


def _family_marginal(fam: _Family, h: np.ndarray, b: np.ndarray,
                     theta_gen: np.ndarray) -> np.ndarray:
    """Log-likelihood (S, M) of a new family's data with its parameters integrated out.

    With the log-likelihood ``-delta' h delta / 2 + b' delta`` in ``delta = theta - theta_gen``
    and ``theta ~ N(centre_m, T_m)``: ``-log|I + h T|/2 - c' h c/2 + b' c +
    v' T (I + h T)^-1 v / 2`` with ``c = centre_m - theta_gen``, ``v = b - h c``.
    """
    centre, cov = fam.centre, fam.cov
    m = centre.shape[0]
    out = np.empty((h.shape[0], m))
    step = max(1, _CHUNK // (m * 25))
    eye = np.eye(5)
    for lo in range(0, h.shape[0], step):
        hh, bb = h[lo:lo + step], b[lo:lo + step]
        c = centre[None] - theta_gen[lo:lo + step, None, :]  # (s, M, 5)
        a = eye + hh[:, None] @ cov[None]  # (s, M, 5, 5)
        hc = np.matmul(c, hh.transpose(0, 2, 1))  # rows (h c_m)', (s, M, 5)
        v = bb[:, None, :] - hc
        x = np.linalg.solve(a, v[..., None])[..., 0]
        _, logdet = np.linalg.slogdet(a)
        tv = np.matmul(v[:, :, None, :], cov[None])[:, :, 0, :]  # (T v)' rows
        out[lo:lo + step] = (
            -0.5 * logdet
            - 0.5 * np.sum(c * hc, axis=-1)
            + np.sum(bb[:, None, :] * c, axis=-1)
            + 0.5 * np.sum(tv * x, axis=-1)
        )
    return out


def _set_loglik(post: _Posterior, evidence: Sequence[_Evidence], draws: np.ndarray,
                cache: dict | None = None) -> np.ndarray:
    """Log weights (S, M) of a set of candidates simulated jointly (``cache`` keeps each new
    family's integrated term by the names of its candidates)."""
    total = np.zeros((draws.size, post.m))
    per_family: dict[str, list[_Evidence]] = {}
    for ev in evidence:
        if ev.additive is not None:
            total = total + ev.additive
        else:
            per_family.setdefault(ev.family, []).append(ev)
    for name, members in per_family.items():
        key = (name, frozenset(id(ev) for ev in members))
        if cache is None or key not in cache:
            fam = post.family(name)
            h = sum(ev.h for ev in members)
            b = sum(ev.b for ev in members)
            term = _family_marginal(fam, h, b, fam.theta[draws])
            if cache is None:
                total = total + term
                continue
            cache[key] = term
        total = total + cache[key]
    return total


# --------------------------------------------------------------------------- target bands
@dataclass(frozen=True)
class _Target:
    """Per-draw log-loss centres ``mu`` (M, P) and predictive sds ``sd`` (M, P) at the target."""

    frame: pd.DataFrame
    mu: np.ndarray
    sd: np.ndarray


def _target_frame(target: Any, family: str | None, fit: ScalingLawFit) -> pd.DataFrame:
    if isinstance(target, pd.DataFrame):
        frame = target.reset_index(drop=True).copy()
    elif isinstance(target, Mapping):
        frame = pd.DataFrame({k: np.atleast_1d(v) for k, v in target.items()})
    else:
        arr = np.asarray(target, dtype=float)
        if arr.ndim == 1 and arr.size == 2:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise DataError("target must be (params, tokens), a list of such pairs, a mapping "
                            "or a DataFrame with columns params and tokens")
        frame = pd.DataFrame({"params": arr[:, 0], "tokens": arr[:, 1]})
    missing = [c for c in ("params", "tokens") if c not in frame.columns]
    if missing or frame.empty:
        raise DataError(f"target needs columns params and tokens (missing {missing})")
    for col in ("params", "tokens"):
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        if bad.size:
            raise DataError(f"target rows {_listing(bad.tolist())}: {col} must be positive and "
                            "finite")
        frame[col] = values
    if "family" not in frame.columns:
        if family is None:
            if len(fit.families) != 1:
                raise DataError(
                    "give the target's family (family=..., a family of the fit or a new name for "
                    f"a new family); this fit has {len(fit.families)} families"
                )
            family = fit.families[0]
        frame["family"] = family
    elif family is not None:
        raise DataError("give the target's family either as family= or as a column, not both")
    frame["family"] = frame["family"].astype(str)
    return frame


def _build_target(fit: ScalingLawFit, post: _Posterior, frame: pd.DataFrame, schedule: Any,
                  band: str) -> _Target:
    n, d = frame["params"].to_numpy(), frame["tokens"].to_numpy()
    sched_cols = [c for c in SCHEDULE_COLUMNS if c in frame.columns]
    if schedule is None and sched_cols:
        schedule = frame[sched_cols].copy()
        schedule["run"] = frame["run"] if "run" in frame else [f"(target {i})"
                                                               for i in range(len(frame))]
    d_eff, excess, _ = point_schedule(n, d, schedule)
    mu = np.empty((post.m, len(frame)))
    for fam_name, idx in frame.groupby("family").indices.items():
        arch = frame["arch"].iloc[idx[0]] if "arch" in frame else None
        fam = post.family(fam_name, None if arch is None or pd.isna(arch) else str(arch))
        kappa = fam.kappa
        if kappa is None and np.any(np.abs(excess[idx]) > _MIN_ANNEAL):
            raise ValueError("this fit has no learning-rate schedule term, so it cannot predict "
                             "a target checkpoint before its run's anneal")
        for i in idx:
            mu[:, i] = _log_mu(fam.theta, kappa, float(np.log(n[i] / fit.n0)),
                               np.array([np.log(d_eff[i] / fit.d0)]), np.array([excess[i]]))[:, 0]
    var = np.zeros_like(mu)
    if band in ("new_seed", "observed"):
        var = var + fit.seed_sd(n) ** 2
        if post.nested:
            var = var + post.sigma_config[:, None] ** 2
    if band == "observed":
        var = var + post.sigma_obs[:, None] ** 2
    return _Target(frame, mu, np.sqrt(var))


def _weighted_quantiles(w: np.ndarray, mu: np.ndarray, sd: np.ndarray,
                        probs: Sequence[float]) -> np.ndarray:
    """Quantiles (S, P, Q) of the mixtures ``sum_m w[s, m] N(mu[m, p], sd[m, p])``.

    The centres' spread about their weighted mean is widened by ``1 / sqrt(1 - sum w^2)``,
    the correction that makes a weighted variance unbiased (with ``n_eff`` effective draws the
    spread would otherwise be short by about ``1 / n_eff``). With ``sd = 0`` (parameter
    uncertainty only), the weighted quantiles of the point masses, interpolated linearly
    between weighted midpoints.
    """
    s, p = w.shape[0], mu.shape[1]
    mean = w @ mu  # (S, P)
    factor = 1.0 / np.sqrt(np.maximum(1.0 - np.sum(w**2, axis=1), 1e-12))  # (S,)
    out = np.empty((s, p, len(probs)))
    if np.all(sd == 0):
        for j in range(p):
            order = np.argsort(mu[:, j])
            x = mu[order, j]
            ww = w[:, order]
            mid = np.cumsum(ww, axis=1) - 0.5 * ww
            for i in range(s):
                out[i, j] = np.interp(probs, mid[i], x)
        return mean[..., None] + factor[:, None, None] * (out - mean[..., None])
    sd = np.maximum(sd, 1e-12)[None]
    step = max(1, _CHUNK // max(w.shape[1] * p, 1))
    for lo in range(0, s, step):
        ww = w[lo:lo + step][:, :, None]  # (s, M, 1)
        centre = mean[lo:lo + step, None, :]
        mu_s = centre + factor[lo:lo + step, None, None] * (mu[None] - centre)  # (s, M, P)
        var = np.sum(ww * ((mu_s - centre) ** 2 + sd**2), axis=1)
        low, high = np.min(mu_s - 9 * sd, axis=1), np.max(mu_s + 9 * sd, axis=1)
        for qi, q in enumerate(probs):
            x = centre[:, 0, :] + ndtri(q) * np.sqrt(var)
            lo_b, hi_b = low.copy(), high.copy()
            tol = 1e-5 * np.sqrt(var)  # far below the Monte Carlo error of a width
            active = np.arange(x.shape[0])  # rows not converged yet
            for _ in range(100):
                xa, ma, wa = x[active], mu_s[active], ww[active]
                zz = (xa[:, None, :] - ma) / sd
                cdf = np.sum(wa * ndtr(zz), axis=1)
                dens = np.sum(wa * np.exp(-0.5 * zz**2) / sd, axis=1) / np.sqrt(2 * np.pi)
                below = cdf < q
                la = np.where(below, xa, lo_b[active])
                ha = np.where(below, hi_b[active], xa)
                newton = xa - (cdf - q) / np.maximum(dens, 1e-300)
                inside = (newton > la) & (newton < ha)
                new = np.where(inside, newton, 0.5 * (la + ha))
                lo_b[active], hi_b[active], x[active] = la, ha, new
                moving = np.any(np.abs(new - xa) >= tol[active], axis=1)
                active = active[moving]
                if active.size == 0:
                    break
            out[lo:lo + step, :, qi] = x
    return out


def _widths(target: _Target, w: np.ndarray, level: float) -> np.ndarray:
    """Band width (S, P) in loss units under weights ``w`` (S, M)."""
    q = _weighted_quantiles(w, target.mu, target.sd, ((1 - level) / 2, (1 + level) / 2))
    return np.exp(q[..., 1]) - np.exp(q[..., 0])


@dataclass(frozen=True)
class _Estimate:
    width: float  # mean over simulations and target points
    per_sim: np.ndarray  # (S,) mean over target points
    k: np.ndarray  # (S,) Pareto k


def _reliable(e: _Estimate) -> bool:
    return bool(np.mean(e.k > PARETO_K_THRESHOLD) <= MAX_SHARE_HIGH_K)


def _estimate(target: _Target, log_lik: np.ndarray, level: float) -> _Estimate:
    w, k = _psis_weights(log_lik)
    per_sim = _widths(target, w, level).mean(axis=1)
    return _Estimate(float(per_sim.mean()), per_sim, k)


class _Preposterior:
    """Simulated data of every candidate under common posterior draws, and the expected width
    of any set of them (cached)."""

    def __init__(self, post: _Posterior, tgt: _Target, units: list[_Unit], level: float,
                 n_simulations: int, rng: np.random.Generator):
        self.post, self.tgt, self.level = post, tgt, level
        self.units = {u.name: u for u in units}
        self.draws = rng.integers(0, post.m, size=int(n_simulations))
        self.evidence = {
            u.name: _evidence(post, u, _simulate(post, u, self.draws, rng), self.draws)
            for u in units
        }
        self._cache: dict[frozenset[str], _Estimate] = {}
        self._family_terms: dict = {}

    def estimate(self, names: Sequence[str]) -> _Estimate:
        key = frozenset(names)
        if key not in self._cache:
            log_lik = _set_loglik(self.post, [self.evidence[n] for n in key], self.draws,
                                  self._family_terms)
            self._cache[key] = _estimate(self.tgt, log_lik, self.level)
        return self._cache[key]


# --------------------------------------------------------------------------- public API
def next_runs(
    fit: ScalingLawFit,
    target: Any,
    candidates: pd.DataFrame,
    budget: float | None = None,
    *,
    family: str | None = None,
    schedule: Mapping[str, Any] | pd.DataFrame | None = None,
    band: str = "observed",
    level: float = 0.9,
    n_simulations: int = 200,
    n_checkpoints: int = 8,
    fit_from: float | None = DEFAULT_FIT_FROM,
    unscheduled_from: float | None = DEFAULT_UNSCHEDULED_FROM,
    alternatives: bool = True,
    random_seed: int | None = None,
) -> NextRuns:
    """Rank candidate runs by how much they would narrow the predictive band at a target.

    Preposterior analysis with importance sampling (see :mod:`bayescale.planning`): for each
    candidate and each of ``n_simulations`` posterior draws, simulate the candidate's
    checkpoints from the posterior predictive, reweight every posterior draw by the likelihood
    of those data (new seed offsets integrated out; PSIS-smoothed with :func:`arviz.psislw`),
    read the weighted band at the target, and average its width over the simulations.

    Parameters
    ----------
    fit
        A fitted :class:`bayescale.ScalingLawFit` (normal likelihood).
    target
        The point(s) whose prediction should become more certain: ``(params, tokens)``, a list
        of pairs, a mapping or a DataFrame with columns ``params``, ``tokens`` and optionally
        ``family``, ``arch``, ``run`` and schedule columns. Widths are averaged over points.
    candidates
        One row per run that could be trained: ``family``, ``params`` (N), ``tokens`` (planned
        D) and optionally ``candidate`` (a name), ``n_seeds`` (default 1), ``cost`` (default
        ``6 N D n_seeds`` FLOPs), ``arch`` (for a new family), ``config`` (with
        ``config_effects``: a known configuration; by default a candidate with the family, size
        and run length of a known configuration is another seed of it), ``batch_size`` and the
        schedule columns of :mod:`bayescale.data.schedule`.
    budget
        Total cost the greedy plan may spend (same units as ``cost``); ``None``: order every
        candidate.
    family
        The target's family when ``target`` has no ``family`` column (default: the fit's only
        family). A name the fit has not seen is a new family drawn from the population.
    schedule
        The target's learning-rate schedule, as in :meth:`bayescale.ScalingLawFit.predict`
        (default: each point is the end of its own run).
    band
        ``"observed"`` (default: a new run's checkpoint, with seed and checkpoint noise),
        ``"new_seed"`` or ``"mean"`` (parameter uncertainty only).
    level
        Central probability of the band (default 0.9).
    n_simulations
        Simulated data sets per candidate (common to all candidates).
    n_checkpoints
        Checkpoints simulated per seed of a candidate, log-spaced over the part of the run a fit
        uses (from ``fit_from`` of its schedule on; from ``unscheduled_from`` without a
        schedule). Under AR(1) noise more checkpoints add little.
    fit_from, unscheduled_from
        As in :func:`bayescale.fit`.
    alternatives
        Also trace cheapest-first and largest-affordable-first at the same budget.
    random_seed
        Seed of every random draw here (default: the fit's seed).

    Returns
    -------
    NextRuns
        ``table`` (ranked by expected reduction per unit of cost), ``plan``,
        ``alternatives``, ``current_width``; ``.plot()`` draws width against compute.

    Raises
    ------
    bayescale.DataError
        On a malformed candidate or target table (the message names the rows).
    ValueError
        On a Student-t fit, an unknown band or a level outside (0, 1).

    Warns
    -----
    UnreliableEstimateWarning
        When more than 10% of a candidate's (or a plan step's) simulations have Pareto
        k > 0.7: too few posterior draws carry the weight there, and the expected width may be
        off (usually too narrow). The ``reliable`` column says which; ``pareto_k_max`` and
        ``share_k_high`` say how far.

    Notes
    -----
    Approximations (details in :mod:`bayescale.planning`):

    * importance sampling from the current posterior draws, flagged by Pareto k;
    * the band of an effective sample of ``n_eff`` draws, its spread widened by the
      unbiased-variance factor ``1 / sqrt(1 - sum w^2)``;
    * Gaussian likelihood with each new run's seed (and a new configuration's) offset
      integrated out, and AR(1) checkpoint noise with each draw's ``rho``; the refit would
      also re-learn ``rho`` and its reference scales, which reweighting cannot;
    * a candidate without a schedule is used from ``unscheduled_from`` of its run on, under
      the law of final losses;
    * a candidate in a new family (not the target's) has the family's parameters integrated
      out in closed form around a linearised law, with the simulating draw's noise scales and
      ``kappa``.

    The expected reduction carries Monte Carlo error (``reduction_se``, over simulations;
    common simulations make differences between candidates more precise than that).
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}; got {band!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_simulations < 2:
        raise ValueError(f"n_simulations must be at least 2; got {n_simulations}")
    if budget is not None and not (np.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be positive and finite; got {budget}")
    cand = _check_candidates(candidates)
    frame = _target_frame(target, family, fit)
    seed = fit.random_seed if random_seed is None else int(random_seed)
    rng = np.random.default_rng([seed, 21])
    post = _Posterior(fit, rng, set(frame["family"]) - set(fit.families))
    tgt = _build_target(fit, post, frame, schedule, band)
    units, notes = _units(fit, post, cand, n_checkpoints, fit_from, unscheduled_from)
    pre = _Preposterior(post, tgt, units, level, n_simulations, rng)
    now = _band_frame(tgt, np.full((1, post.m), 1.0 / post.m), level)
    current = float(now["width"].mean())

    table = _table(units, pre, current)
    chosen, start = _plan(units, pre, current, budget)
    plan = _path(chosen, pre, current)
    if start != "greedy":
        notes.append("the plan starts with the run of largest expected reduction: it is "
                     "expected to end narrower than adding runs by reduction per FLOP alone")
    paths = {}
    if alternatives:
        for name, order in (("cheapest-first", _cheapest_first(units, budget)),
                            ("largest-affordable-first", _largest_first(units, budget))):
            paths[name] = _path(order, pre, current)
    _warn_unreliable(table, plan)
    return NextRuns(table, plan, paths, current, now, band, float(level), budget,
                    int(n_simulations), tuple(notes))


def _table(units: list[_Unit], pre: _Preposterior, current: float) -> pd.DataFrame:
    rows = []
    for u in units:
        e = pre.estimate([u.name])
        reduction = current - e.width
        rows.append({
            "candidate": u.name, "family": u.family, "params": u.params, "tokens": u.tokens,
            "n_seeds": u.n_seeds, "kind": u.kind, "checkpoints": u.n, "cost": u.cost,
            "expected_width": e.width, "expected_reduction": reduction,
            "reduction_se": float(np.std(e.per_sim, ddof=1) / np.sqrt(e.per_sim.size)),
            "relative_reduction": reduction / current, "reduction_per_flop": reduction / u.cost,
            "pareto_k_max": float(np.max(e.k)), "pareto_k_mean": float(np.mean(e.k)),
            "share_k_high": float(np.mean(e.k > PARETO_K_THRESHOLD)),
            "reliable": _reliable(e),
        })
    table = pd.DataFrame(rows)
    return table.sort_values("reduction_per_flop", ascending=False, kind="mergesort"
                             ).reset_index(drop=True)


_PLAN_COLUMNS = ["step", "candidate", "cost", "cumulative_cost", "expected_width",
                 "reduction_per_flop", "pareto_k_max", "share_k_high", "reliable"]


def _greedy(units: list[_Unit], pre: _Preposterior, current: float, budget: float | None,
            start: Sequence[_Unit] = ()) -> list[_Unit]:
    """From ``start``, add the affordable run with the best expected reduction per unit of
    cost, among those whose reduction (given the runs before it) exceeds
    :data:`MIN_Z` Monte Carlo standard errors, while the budget allows."""
    chosen = list(start)
    left = [u for u in units if u not in chosen]
    spent = float(sum(u.cost for u in chosen))
    while True:
        remaining = np.inf if budget is None else budget - spent
        options = [u for u in left if u.cost <= remaining * (1 + 1e-9)]
        if not options:
            break
        names = [u.name for u in chosen]
        before = pre.estimate(names).per_sim if names else current
        gain = {}
        for u in options:
            diff = before - pre.estimate([*names, u.name]).per_sim
            se = np.std(diff, ddof=1) / np.sqrt(diff.size)
            if diff.mean() > MIN_Z * se and diff.mean() > 0:
                gain[u.name] = diff.mean() / u.cost
        if not gain:
            break
        best = max((u for u in options if u.name in gain), key=lambda u: gain[u.name])
        chosen.append(best)
        left.remove(best)
        spent += best.cost
    return chosen


def _plan(units: list[_Unit], pre: _Preposterior, current: float,
          budget: float | None) -> tuple[list[_Unit], str]:
    """The greedy plan, or the greedy plan that starts with the affordable run of largest
    expected reduction, whichever is expected to end narrower (reduction per FLOP alone can
    spend the budget on cheap runs and leave too little for the run that matters)."""
    plans = {"greedy": _greedy(units, pre, current, budget)}
    affordable = [u for u in units if budget is None or u.cost <= budget * (1 + 1e-9)]
    if affordable:
        top = max(affordable, key=lambda u: current - pre.estimate([u.name]).width)
        if plans["greedy"][:1] != [top] and pre.estimate([top.name]).width < current:
            plans["largest reduction first"] = _greedy(units, pre, current, budget, [top])

    def final(plan: list[_Unit]) -> float:
        return pre.estimate([u.name for u in plan]).width if plan else current

    name = min(plans, key=lambda k: final(plans[k]))
    return plans[name], name


def _cheapest_first(units: list[_Unit], budget: float | None) -> list[_Unit]:
    order, spent = [], 0.0
    for u in sorted(units, key=lambda u: u.cost):
        if budget is None or spent + u.cost <= budget * (1 + 1e-9):
            order.append(u)
            spent += u.cost
    return order


def _largest_first(units: list[_Unit], budget: float | None) -> list[_Unit]:
    order, spent = [], 0.0
    for u in sorted(units, key=lambda u: (u.params, u.tokens), reverse=True):
        if budget is None or spent + u.cost <= budget * (1 + 1e-9):
            order.append(u)
            spent += u.cost
    return order


def _path(order: list[_Unit], pre: _Preposterior, current: float) -> pd.DataFrame:
    """Expected width after each step of adding ``order`` one run at a time."""
    rows, spent, width = [], 0.0, current
    for i, u in enumerate(order):
        e = pre.estimate([v.name for v in order[:i + 1]])
        spent += u.cost
        rows.append({
            "step": i + 1, "candidate": u.name, "cost": u.cost, "cumulative_cost": spent,
            "expected_width": e.width, "reduction_per_flop": (width - e.width) / u.cost,
            "pareto_k_max": float(np.max(e.k)),
            "share_k_high": float(np.mean(e.k > PARETO_K_THRESHOLD)),
            "reliable": _reliable(e),
        })
        width = e.width
    return pd.DataFrame(rows, columns=_PLAN_COLUMNS)


def _warn_unreliable(table: pd.DataFrame, plan: pd.DataFrame) -> None:
    bad = table.loc[~table["reliable"], "candidate"].tolist()
    steps = plan.loc[~plan["reliable"], "step"].tolist() if len(plan) else []
    if bad or steps:
        parts = []
        if bad:
            parts.append(f"candidates {_listing(bad)}")
        if steps:
            parts.append(f"plan steps {_listing(steps)}")
        warnings.warn(
            f"Pareto k > {PARETO_K_THRESHOLD} in more than {MAX_SHARE_HIGH_K:.0%} of the "
            f"simulations of {' and '.join(parts)}: their data would move the posterior further "
            "than the current draws can represent, so their expected widths are unreliable "
            "(column 'reliable'; usually too narrow). Refit with more posterior draws, or with "
            "the run added, to check them",
            UnreliableEstimateWarning,
            stacklevel=3,
        )


def target_band(
    fit: ScalingLawFit,
    target: Any,
    *,
    family: str | None = None,
    schedule: Mapping[str, Any] | pd.DataFrame | None = None,
    band: str = "observed",
    level: float = 0.9,
) -> pd.DataFrame:
    """The band at each target point now, computed as :func:`next_runs` computes it.

    The band of a mixture of Gaussians on log-loss, one per posterior draw (its predictive
    spread integrated exactly instead of sampled), so that widths before and after a refit are
    comparable with those :func:`next_runs` expects. Arguments as in :func:`next_runs`.

    Returns
    -------
    pandas.DataFrame
        ``family, params, tokens, lower, upper, width`` (loss units) per target point.
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}; got {band!r}")
    frame = _target_frame(target, family, fit)
    rng = np.random.default_rng([fit.random_seed, 21])
    post = _Posterior(fit, rng, set(frame["family"]) - set(fit.families))
    tgt = _build_target(fit, post, frame, schedule, band)
    return _band_frame(tgt, np.full((1, post.m), 1.0 / post.m), level)


def _band_frame(tgt: _Target, w: np.ndarray, level: float) -> pd.DataFrame:
    q = ((1 - level) / 2, (1 + level) / 2)
    bounds = np.exp(_weighted_quantiles(w, tgt.mu, tgt.sd, q)[0])
    return tgt.frame[["family", "params", "tokens"]].assign(
        lower=bounds[:, 0], upper=bounds[:, 1], width=bounds[:, 1] - bounds[:, 0]
    ).reset_index(drop=True)


def reweighted_band(
    fit: ScalingLawFit,
    target: Any,
    new_runs: pd.DataFrame,
    *,
    family: str | None = None,
    schedule: Mapping[str, Any] | pd.DataFrame | None = None,
    band: str = "observed",
    level: float = 0.9,
    random_seed: int | None = None,
) -> tuple[np.ndarray, float]:
    """The band's width at the target after adding observed ``new_runs``, without refitting.

    Reweights the posterior draws by the likelihood of the new runs' checkpoints (seed offsets
    integrated out, PSIS-smoothed), the step :func:`next_runs` applies to each simulation.
    Every checkpoint of ``new_runs`` is used as given (apply the fit window first). Runs must
    be in families of the fit or in the target's family.

    Parameters
    ----------
    fit, target, family, schedule, band, level, random_seed
        As in :func:`next_runs`.
    new_runs
        A run table (``family, run, params, tokens, loss`` and optionally ``config`` and
        schedule columns) of runs not in the fit.

    Returns
    -------
    (pandas.DataFrame, float)
        The band per target point (as :func:`target_band`), and the Pareto k of the weights.
    """
    from bayescale.data.validate import validate

    runs = validate(new_runs)
    clash = sorted(set(runs["run"]) & set(fit.data["run"].astype(str)))
    if clash:
        raise DataError(f"new_runs has runs already in the fit: {_listing(clash)}")
    frame = _target_frame(target, family, fit)
    seed = fit.random_seed if random_seed is None else int(random_seed)
    post = _Posterior(fit, np.random.default_rng([seed, 21]),
                      set(frame["family"]) - set(fit.families))
    tgt = _build_target(fit, post, frame, schedule, band)
    unknown = sorted(set(runs["family"]) - set(fit.families) - post.shared)
    if unknown:
        raise DataError(f"new_runs families {_listing(unknown)} are neither in the fit nor the "
                        "target's")
    configs = [str(c) for c in fit.design.configs]
    total = np.zeros((1, post.m))
    for run, rows in runs.groupby("run", sort=False):
        first = rows.iloc[0]
        ckpt = rows["tokens"].to_numpy(dtype=float)
        sched_cols = [c for c in (*SCHEDULE_COLUMNS, "batch_size") if c in rows.columns]
        if "schedule" in rows and pd.notna(first.get("schedule")):
            sched = rows[sched_cols].assign(run=str(run))
            d_eff, excess, _ = point_schedule(np.full(ckpt.size, first["params"]), ckpt, sched)
        else:
            d_eff, excess = ckpt.copy(), np.zeros(ckpt.size)
        excess = np.where(np.abs(excess) > _MIN_ANNEAL, excess, 0.0)
        if not fit.schedule_aware and np.any(excess != 0):
            raise ValueError(f"run {run!r} has checkpoints before its anneal, which this fit "
                             "(no schedule term) cannot weigh")
        exponent, is_first = post.ar_exponent(ckpt)
        config = -1
        if post.nested and "config" in rows and str(first.get("config")) in configs:
            config = configs.index(str(first["config"]))
        unit = _Unit(
            name=str(run), family=str(first["family"]), arch=None,
            params=float(first["params"]), tokens=float(ckpt[-1]), n_seeds=1, cost=1.0,
            kind="", log_n=float(np.log(first["params"] / fit.n0)),
            log_d=np.log(d_eff / fit.d0), excess=excess, exponent=exponent, first=is_first,
            config=config,
        )
        y = np.log(rows["loss"].to_numpy(dtype=float))[None, None, :]
        total = total + _loglik(post, unit, post.family(unit.family), y)
    w, k = _psis_weights(total)
    return _band_frame(tgt, w, level), float(k[0])


def _psis_weights(log_lik: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSIS-smoothed normalised weights (S, M) of log-likelihoods (S, M), and Pareto k (S,)."""
    with warnings.catch_warnings():  # arviz warns about k itself; the callers report it
        warnings.simplefilter("ignore")
        lw, k = az.psislw(log_lik, reff=1.0)
    w = np.exp(np.asarray(lw))
    k = np.atleast_1d(np.asarray(k, dtype=float))
    bad = ~np.isfinite(w).all(axis=1) | ~np.isfinite(k)
    w[bad], k[bad] = 1.0, np.inf  # no usable weights: uniform, and flagged
    return w / w.sum(axis=1, keepdims=True), k


# --------------------------------------------------------------------------- plot
def plot_next_runs(result: NextRuns, ax: Axes | None = None) -> Axes:
    """Expected band width at the target against cumulative compute.

    Draws the greedy plan and the alternatives (cheapest-first, largest-affordable-first) of a
    :class:`NextRuns`, each from the current width at zero compute; steps flagged unreliable
    (Pareto k > 0.7 in more than 10% of their simulations) are drawn hollow.

    Parameters
    ----------
    result
        The output of :func:`next_runs`.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    paths = {"recommended plan": result.plan, **result.alternatives}
    styles = {"recommended plan": ("C3", "o", "-"), "cheapest-first": ("C0", "s", "--"),
              "largest-affordable-first": ("C2", "^", ":")}
    for name, path in paths.items():
        color, marker, line = styles.get(name, ("C7", "d", "-."))
        x = np.r_[0.0, path["cumulative_cost"].to_numpy(dtype=float)]
        y = np.r_[result.current_width, path["expected_width"].to_numpy(dtype=float)]
        ax.plot(x, y, line, color=color, label=name, zorder=2)
        ok = np.r_[True, path["reliable"].to_numpy(dtype=bool)]
        ax.scatter(x[ok], y[ok], color=color, marker=marker, zorder=3)
        ax.scatter(x[~ok], y[~ok], facecolors="none", edgecolors=color, marker=marker, zorder=3,
                   label=f"{name}: unreliable (Pareto k)" if (~ok).any() else None)
    if result.budget is not None:
        ax.axvline(result.budget, color="0.6", lw=0.8, ls="--", label="budget")
    ax.set_xlabel("cumulative cost (FLOPs)")
    ax.set_ylabel(f"expected {result.level:.0%} '{result.band}' band width")
    ax.set_title("Expected band width at the target against compute")
    ax.legend(fontsize=8)
    return ax
