"""Simulate run tables from a hierarchical Chinchilla law with known parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayescale.laws.chinchilla import chinchilla_log_loss_ref
from bayescale.laws.schedule import point_schedule

#: Reference scales the simulator's family parameters are drawn at.
SIM_N0, SIM_D0 = 1e9, 1e11

#: Default population: E = 1.8, alpha = 0.35, beta = 0.37, A/N^alpha = 0.35 at 1B params and
#: B/D^beta = 0.25 at 100B tokens (close to the published Chinchilla-form fits).
DEFAULT_POPULATION: dict[str, float] = {
    "log_E": float(np.log(1.8)),
    "a": float(np.log(0.35)),
    "log_alpha": float(np.log(0.35)),
    "b": float(np.log(0.25)),
    "log_beta": float(np.log(0.37)),
}
DEFAULT_FAMILY_SD: dict[str, float] = {
    "log_E": 0.05,
    "a": 0.15,
    "log_alpha": 0.1,
    "b": 0.15,
    "log_beta": 0.1,
}


@dataclass(frozen=True)
class Simulation:
    """A simulated run table and the truth behind it.

    Attributes
    ----------
    runs
        Tidy run table (validated shape; columns family, run, params, tokens, loss, seed,
        config, run_tokens).
    families
        True ``E, A, alpha, B, beta`` per family (index = family).
    run_effects
        True seed offset on log-loss per run.
    sigma_seed, sigma_obs
        True seed sd and checkpoint-noise sd on log-loss.
    population
        True population means of the reference-scale parameters (at N0 = 1e9, D0 = 1e11).
    """

    runs: pd.DataFrame
    families: pd.DataFrame
    run_effects: pd.Series
    sigma_seed: float
    sigma_obs: float
    population: dict[str, float] = field(default_factory=dict)

    def true_loss(self, family: str, params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Noise-free mean loss of ``family`` at ``(params, tokens)``."""
        p = self.families.loc[family]
        return p.E + p.A / np.asarray(params) ** p.alpha + p.B / np.asarray(tokens) ** p.beta


def simulate(
    n_families: int = 4,
    sizes: Sequence[float] = (2e7, 6e7, 2e8, 6e8),
    n_seeds: int = 2,
    n_checkpoints: int = 20,
    tokens_per_param: float = 20.0,
    first_fraction: float = 0.05,
    population: Mapping[str, float] | None = None,
    family_sd: Mapping[str, float] | None = None,
    sigma_seed: float = 0.01,
    sigma_obs: float = 0.005,
    noise: str = "normal",
    nu: float = 3.0,
    ar_rho: float = 0.0,
    spike_prob: float = 0.0,
    spike_size: float = 0.1,
    warmup_checkpoints: int = 0,
    warmup_excess: float = 0.3,
    schedule: str = "constant",
    budgets: Sequence[float] = (1.0,),
    kappa: float = 0.05,
    tilt: float = 0.0,
    final_lr_fraction: float = 0.1,
    warmup_fraction: float = 0.01,
    decay_fraction: float = 0.2,
    random_seed: int | np.random.Generator = 0,
) -> Simulation:
    """Draw a hierarchical scaling-law data set.

    Parameters
    ----------
    n_families
        Number of families, each with its own law drawn around the population.
    sizes
        Parameter counts of each family's runs.
    n_seeds
        Replicate runs (seeds) per size.
    n_checkpoints
        Checkpoints per run, log-spaced from ``first_fraction`` of the run to its end.
    tokens_per_param
        Run length ``D_final = tokens_per_param x N``.
    first_fraction
        Tokens of the first checkpoint as a fraction of the run.
    population, family_sd
        Population means and family sds of ``(log_E, a, log_alpha, b, log_beta)`` at
        N0 = 1e9, D0 = 1e11; defaults :data:`DEFAULT_POPULATION`, :data:`DEFAULT_FAMILY_SD`.
    sigma_seed, sigma_obs
        Seed sd and checkpoint-noise sd on log-loss.
    noise
        ``"normal"`` or ``"student_t"`` (with ``nu`` degrees of freedom, scaled by ``sigma_obs``).
    ar_rho
        AR(1) correlation of checkpoint noise along a run (stationary sd ``sigma_obs``).
    spike_prob, spike_size
        Probability that a checkpoint is a loss spike, and its size on log-loss.
    warmup_checkpoints, warmup_excess
        Extra early checkpoints (before ``first_fraction``) whose loss exceeds the law by up to
        ``warmup_excess`` on log scale, decaying to zero: a warm-up the law does not describe.
    schedule
        The learning-rate schedule of every run (one of
        :data:`bayescale.data.schedule.SCHEDULES`). ``"constant"`` (default): every
        checkpoint follows ``L(N, D)``. Otherwise checkpoints follow the schedule-aware law of
        :mod:`bayescale.laws.schedule` with scale ``kappa``, and the table carries the schedule
        columns.
    budgets
        Run lengths per size as multiples of ``tokens_per_param x N`` (one run per budget and
        seed), as in a ladder of token budgets.
    kappa, tilt, final_lr_fraction, warmup_fraction, decay_fraction
        The schedule law's excess scale and within-run tilt, the LR floor, the warm-up as a
        fraction of each run and (``wsd``) the final decay's share of the run.
    random_seed
        Seed or generator; the same seed gives the same table.

    Returns
    -------
    Simulation
    """
    rng = np.random.default_rng(random_seed)
    pop = {**DEFAULT_POPULATION, **(population or {})}
    fsd = {**DEFAULT_FAMILY_SD, **(family_sd or {})}
    if noise not in ("normal", "student_t"):
        raise ValueError(f"noise must be 'normal' or 'student_t'; got {noise!r}")
    if not 0 <= ar_rho < 1:
        raise ValueError(f"ar_rho must be in [0, 1); got {ar_rho}")

    fam_rows, run_effects, frames = [], {}, []
    for f in range(n_families):
        name = f"fam{f}"
        theta = {k: pop[k] + fsd[k] * rng.standard_normal() for k in DEFAULT_POPULATION}
        alpha, beta = np.exp(theta["log_alpha"]), np.exp(theta["log_beta"])
        fam_rows.append(
            {
                "family": name,
                "E": np.exp(theta["log_E"]),
                "A": np.exp(theta["a"] + alpha * np.log(SIM_N0)),
                "alpha": alpha,
                "B": np.exp(theta["b"] + beta * np.log(SIM_D0)),
                "beta": beta,
            }
        )
        for n, budget in ((n, b) for n in sizes for b in budgets):
            d_final = tokens_per_param * n * budget
            tokens = np.geomspace(first_fraction * d_final, d_final, n_checkpoints)
            if warmup_checkpoints:
                early = np.geomspace(first_fraction**2 * d_final, first_fraction * d_final,
                                     warmup_checkpoints + 1)[:-1]
                tokens = np.r_[early, tokens]
            # a constant LR without warm-up: every checkpoint follows L(N, D) exactly
            warmup = 0.0 if schedule == "constant" else warmup_fraction * d_final
            sched_cols = {
                "schedule": schedule, "warmup_tokens": warmup,
                "final_lr_fraction": final_lr_fraction, "schedule_tokens": d_final,
                "decay_tokens": decay_fraction * d_final if schedule == "wsd" else np.nan,
            }
            d_eff, excess, tilt_cov = point_schedule(np.full(tokens.size, n), tokens, sched_cols)
            log_mu = chinchilla_log_loss_ref(
                np.log(n / SIM_N0), np.log(d_eff / SIM_D0), theta["log_E"], theta["a"],
                alpha, theta["b"], beta,
            ) + kappa * excess + tilt * tilt_cov
            if warmup_checkpoints:
                excess = np.zeros_like(tokens)
                excess[:warmup_checkpoints] = warmup_excess * np.linspace(
                    1, 0, warmup_checkpoints, endpoint=False
                )
                log_mu = log_mu + excess
            tag = f"{name}-{n:.3g}" + (f"-x{budget:g}" if len(budgets) > 1 else "")
            for s in range(n_seeds):
                run = f"{tag}-s{s}"
                u = sigma_seed * rng.standard_normal()
                run_effects[run] = u
                eps = checkpoint_noise(rng, tokens.size, sigma_obs, noise, nu, ar_rho)
                spikes = (rng.random(tokens.size) < spike_prob) * spike_size
                frames.append(
                    pd.DataFrame(
                        {
                            "family": name,
                            "run": run,
                            "params": float(n),
                            "tokens": tokens,
                            "loss": np.exp(log_mu + u + eps + spikes),
                            "seed": s,
                            "config": tag,
                            "run_tokens": d_final,
                            **sched_cols,
                        }
                    )
                )
    runs = pd.concat(frames, ignore_index=True)
    return Simulation(
        runs=runs,
        families=pd.DataFrame(fam_rows).set_index("family"),
        run_effects=pd.Series(run_effects, name="run_effect"),
        sigma_seed=float(sigma_seed),
        sigma_obs=float(sigma_obs),
        population=dict(pop),
    )


def checkpoint_noise(
    rng: np.random.Generator, n: int, sigma: float, kind: str, nu: float, rho: float
) -> np.ndarray:
    """Checkpoint noise on log-loss along one run: AR(1) over consecutive checkpoints.

    Parameters
    ----------
    rng
        Random generator (its draws are taken in the same order whatever ``rho``).
    n
        Number of checkpoints of the run.
    sigma
        Marginal scale of the noise.
    kind
        ``"normal"``: Gaussian innovations; any other value: Student-t with ``nu`` degrees of
        freedom.
    nu
        Degrees of freedom of the Student-t innovations.
    rho
        Lag-one correlation between consecutive checkpoints (0: independent noise).

    Returns
    -------
    numpy.ndarray
        Shape (n,).
    """
    if kind == "normal":
        innov = rng.standard_normal(n)
    else:
        innov = rng.standard_t(nu, n)
    if rho == 0:
        return sigma * innov
    out = np.empty(n)
    out[0] = innov[0]
    scale = np.sqrt(1 - rho**2)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + scale * innov[i]
    return sigma * out
