"""Turn a validated run table into the index arrays the model builders use."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayescale.errors import DataError
from bayescale.laws.schedule import schedule_covariates

#: Smallest schedule covariate that puts ``kappa`` in the model: a final checkpoint taken a few
#: steps after the decay ended has a covariate of order 1e-5, which says nothing about kappa.
_MIN_ANNEAL = 1e-3


@dataclass(frozen=True)
class Design:
    """Arrays describing runs, families and checkpoints of a run table.

    Observations are ordered by family, run and tokens (as :func:`bayescale.validate` returns).

    Attributes
    ----------
    families, runs, archs
        Labels (coordinates of the ``family``, ``run`` and ``arch`` dims).
    n0, d0
        Reference scales: geometric mean of the runs' parameter counts and of the tokens.
    run_family
        Family index of each run.
    family_arch
        Arch index of each family (all zeros without an arch level).
    run_log_n
        ``log(N / N0)`` per run.
    obs_run
        Run index of each observation.
    obs_log_d
        ``log(D / D0)`` per observation; under a learning-rate schedule ``D`` is the effective
        tokens ``D_eff`` of :mod:`bayescale.laws.schedule` (equal to the tokens at the end of
        each run's schedule).
    log_loss
        Observed ``log L`` per observation.
    obs_prev
        Index of the previous checkpoint of the same run, or -1 for a run's first checkpoint.
    obs_gap
        Distance to the previous checkpoint in log tokens (0 for first checkpoints).
    obs_anneal
        The schedule covariate ``s = g(t) - g(T)`` per observation (0 at the end of a run's
        schedule and for runs without a schedule).
    obs_tilt
        The within-run tilt covariate ``v`` per observation (0 at the end of a run's schedule
        and for runs without a schedule; :func:`bayescale.laws.schedule.tilt_covariate`).
    configs
        Configuration labels (the ``config`` column; a run without one is its own config).
        A label used in two families is prefixed ``family/``.
    run_config
        Config index of each run.
    """

    families: np.ndarray
    runs: np.ndarray
    archs: np.ndarray
    n0: float
    d0: float
    run_family: np.ndarray
    family_arch: np.ndarray
    run_log_n: np.ndarray
    obs_run: np.ndarray
    obs_log_d: np.ndarray
    log_loss: np.ndarray
    obs_prev: np.ndarray
    obs_gap: np.ndarray
    run_params: np.ndarray = field(repr=False)
    configs: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))
    run_config: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))
    obs_anneal: np.ndarray | None = field(default=None, repr=False)
    obs_tilt: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("obs_anneal", "obs_tilt"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(self.log_loss.size))

    @property
    def has_schedule(self) -> bool:
        """Whether any checkpoint is taken before its run's LR has annealed, so that the
        schedule's excess ``kappa s`` enters the model (constant schedules and final losses
        need no ``kappa``)."""
        return bool(np.any(np.abs(self.obs_anneal) > _MIN_ANNEAL))

    @property
    def has_tilt(self) -> bool:
        """Whether any checkpoint is taken well before its run's schedule ends, so that the
        within-run tilt enters the model (final losses and runs without a schedule have none)."""
        return bool(np.any(np.abs(self.obs_tilt) > _MIN_ANNEAL))

    @property
    def obs_family(self) -> np.ndarray:
        """Family index of each observation."""
        return self.run_family[self.obs_run]

    def _family_sizes(self) -> list[np.ndarray]:
        """The distinct parameter counts among each family's runs."""
        return [np.unique(self.run_params[self.run_family == f]) for f in range(len(self.families))]

    @property
    def family_log_n_ref(self) -> np.ndarray:
        """``log(N_f / N0)`` with ``N_f`` the geometric mean of each family's run sizes."""
        return np.array([np.mean(np.log(sizes / self.n0)) for sizes in self._family_sizes()])

    @property
    def family_n_sizes(self) -> np.ndarray:
        """Number of distinct model sizes among each family's runs."""
        return np.array([sizes.size for sizes in self._family_sizes()])

    @property
    def n_obs(self) -> int:
        """Number of checkpoints."""
        return int(self.log_loss.size)

    @property
    def run_counts(self) -> np.ndarray:
        """Checkpoints per run."""
        return np.bincount(self.obs_run, minlength=len(self.runs))

    def coords(self) -> dict[str, np.ndarray]:
        """PyMC/ArviZ coordinates."""
        return {
            "family": self.families,
            "run": self.runs,
            "arch": self.archs,
            "config": self.configs,
            "obs": np.arange(self.n_obs),
        }

    def check_configs(self) -> None:
        """Raise :class:`DataError` if the runs of one config differ in parameter count."""
        bad = [
            str(self.configs[c])
            for c in range(len(self.configs))
            if np.unique(self.run_params[self.run_config == c]).size > 1
        ]
        if bad:
            raise DataError(
                "config effects need the runs of one config to share a model size; configs "
                f"{bad[:5]} mix sizes (fix the 'config' column or fit without config_effects)"
            )


def build_design(
    runs: pd.DataFrame,
    use_arch: bool = False,
    n0: float | None = None,
    d0: float | None = None,
    lag_steps: float | None = None,
) -> Design:
    """Index a validated run table.

    Parameters
    ----------
    runs
        Output of :func:`bayescale.validate`.
    use_arch
        Add an ``arch`` level between population and family (needs an ``arch`` column and one
        arch per family).
    n0, d0
        Reference scales; default to the geometric means of the data.
    lag_steps
        The loss's memory for the learning rate in optimizer steps (schedule-aware law only;
        default :data:`bayescale.data.schedule.DEFAULT_LAG_STEPS`).

    Returns
    -------
    Design
    """
    runs = runs.sort_values(["family", "run", "tokens"], kind="mergesort").reset_index(drop=True)
    families, run_family_codes = np.unique(runs["family"].to_numpy(dtype=str), return_inverse=True)
    run_labels = runs["run"].to_numpy(dtype=str)
    # runs numbered in order of appearance (family, run, tokens), so each run's checkpoints
    # form the contiguous block that segment sums over observations rely on
    obs_run, run_names = pd.factorize(run_labels)
    run_names = np.asarray(run_names)
    first_idx = np.flatnonzero(np.r_[True, obs_run[1:] != obs_run[:-1]])
    run_family = run_family_codes[first_idx]
    run_params = runs["params"].to_numpy(dtype=float)[first_idx]

    if use_arch:
        if "arch" not in runs.columns:
            raise DataError("an arch level needs an 'arch' column in the run table")
        fam_arch = runs.groupby("family")["arch"].nunique()
        if (fam_arch > 1).any():
            bad = fam_arch[fam_arch > 1].index.tolist()[:5]
            raise DataError(f"each family needs one arch for an arch level; families {bad} mix")
        arch_by_family = runs.groupby("family")["arch"].first().astype(str)
        archs, family_arch = np.unique(arch_by_family.loc[families].to_numpy(), return_inverse=True)
    else:
        archs = np.array(["all"])
        family_arch = np.zeros(len(families), dtype=int)

    configs, run_config = _run_configs(runs, first_idx, run_names, families[run_family])

    tokens = runs["tokens"].to_numpy(dtype=float)
    n0 = float(np.exp(np.mean(np.log(run_params)))) if n0 is None else float(n0)
    d0 = float(np.exp(np.mean(np.log(tokens)))) if d0 is None else float(d0)
    d_eff, anneal, tilt, _ = schedule_covariates(runs, lag_steps)
    obs_log_d = np.log(d_eff / d0)

    obs_prev = np.arange(len(runs)) - 1
    first_of_run = np.r_[True, obs_run[1:] != obs_run[:-1]]
    obs_prev[first_of_run] = -1
    # the AR(1) correlation decays with the distance in (real) log tokens
    log_tokens = np.log(tokens)
    obs_gap = np.where(first_of_run, 0.0, log_tokens - log_tokens[np.maximum(obs_prev, 0)])

    return Design(
        families=families.astype(str),
        runs=run_names.astype(str),
        archs=np.asarray(archs).astype(str),
        n0=n0,
        d0=d0,
        run_family=run_family.astype(int),
        family_arch=np.asarray(family_arch).astype(int),
        run_log_n=np.log(run_params / n0),
        obs_run=obs_run.astype(int),
        obs_log_d=obs_log_d,
        log_loss=np.log(runs["loss"].to_numpy(dtype=float)),
        obs_prev=obs_prev.astype(int),
        obs_gap=obs_gap,
        run_params=run_params,
        configs=configs,
        run_config=run_config,
        obs_anneal=anneal,
        obs_tilt=tilt,
    )


def _run_configs(
    runs: pd.DataFrame, first_idx: np.ndarray, run_names: np.ndarray, run_family: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Config label of each run (its own name when the table has no ``config``)."""
    labels = np.asarray(run_names, dtype=object).copy()
    if "config" in runs.columns:
        given = runs["config"].to_numpy(dtype=object)[first_idx]
        has = pd.notna(given)
        labels[has] = [str(v) for v in given[has]]
    frame = pd.DataFrame({"family": run_family.astype(str), "config": labels.astype(str)})
    shared = frame.groupby("config")["family"].nunique()
    clash = frame["config"].map(shared) > 1
    frame.loc[clash, "config"] = frame["family"] + "/" + frame["config"]
    codes, uniques = pd.factorize(frame["config"])
    return np.asarray(uniques, dtype=str), codes.astype(int)
