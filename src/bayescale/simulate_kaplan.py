"""Simulate run tables with steps and batch sizes from the Kaplan/Su law with known constants.

No bundled real dataset varies the batch size widely, so the batch-size law is checked on
data drawn from Kaplan et al. (2020)'s published constants (:data:`KAPLAN_2020`), with
family-to-family variation, seed offsets and checkpoint noise on log-loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayescale.laws.kaplan import (
    KAPLAN_2020,
    KAPLAN_PARAMS,
    KAPLAN_THETA,
    from_reference_scale,
    kaplan_loss,
    to_reference_scale,
)
from bayescale.simulate import checkpoint_noise

#: Reference scales at which families are drawn around the population.
SIM_N0, SIM_S0, SIM_L0 = 1e7, 1e4, 3.0

#: Default family-to-family sds of the reference-scale constants (see
#: :mod:`bayescale.laws.kaplan`): ~10% on the converged loss and the exponents, 20-30% on
#: the step term and the critical batch size (setups differ in data, tokenizer, optimizer).
DEFAULT_KAPLAN_FAMILY_SD: dict[str, float] = {
    "c_N": 0.1,
    "log_alphaN": 0.1,
    "c_S": 0.2,
    "log_alphaS": 0.1,
    "b_crit": 0.3,
    "log_alphaB": 0.1,
}


@dataclass(frozen=True)
class KaplanSimulation:
    """A simulated run table with steps and batch sizes, and the truth behind it.

    Attributes
    ----------
    runs
        Tidy run table (family, run, params, tokens, loss, step, batch_size, seed, config).
    families
        True ``Nc, alphaN, Sc, alphaS, Bstar, alphaB`` per family (index = family).
    run_effects
        True seed offset on log-loss per run.
    sigma_seed, sigma_obs, ar_rho
        True seed sd, checkpoint-noise sd (log-loss) and AR(1) correlation of the noise.
    population
        Population constants (usual convention) the families were drawn around.
    """

    runs: pd.DataFrame
    families: pd.DataFrame
    run_effects: pd.Series
    sigma_seed: float
    sigma_obs: float
    ar_rho: float
    population: dict[str, float] = field(default_factory=dict)

    def true_loss(self, family: str, params, steps, batch_size) -> np.ndarray:
        """Noise-free mean loss of ``family`` at ``(params, steps, batch_size)``."""
        p = self.families.loc[family]
        return kaplan_loss(
            np.asarray(params, dtype=float), np.asarray(steps, dtype=float),
            np.asarray(batch_size, dtype=float), *(p[k] for k in KAPLAN_PARAMS),
        )

    def simulate_run(
        self, family: str, params: float, batch_size: float, steps, random_seed: int = 0
    ) -> pd.DataFrame:
        """A new run (new seed offset and noise) of ``family``, e.g. a held-out larger model."""
        rng = np.random.default_rng(random_seed)
        steps = np.asarray(steps, dtype=float)
        log_mu = np.log(self.true_loss(family, params, steps, batch_size))
        u = self.sigma_seed * rng.standard_normal()
        eps = checkpoint_noise(rng, steps.size, self.sigma_obs, "normal", 3.0, self.ar_rho)
        return pd.DataFrame({
            "family": family, "run": f"{family}-{params:.3g}-B{batch_size:.3g}-new",
            "params": float(params), "tokens": steps * batch_size,
            "loss": np.exp(log_mu + u + eps), "step": steps, "batch_size": float(batch_size),
        })


def simulate_kaplan(
    n_families: int = 3,
    sizes: Sequence[float] = (1e6, 3e6, 1e7, 3e7, 6e7),
    batch_sizes: Sequence[float] = (2**15, 2**17, 2**19, 2**21),
    n_seeds: int = 1,
    n_checkpoints: int = 25,
    step_range: tuple[float, float] = (1e3, 1e5),
    population: Mapping[str, float] | None = None,
    family_sd: Mapping[str, float] | None = None,
    sigma_seed: float = 0.005,
    sigma_obs: float = 0.005,
    ar_rho: float = 0.0,
    random_seed: int | np.random.Generator = 0,
) -> KaplanSimulation:
    """Draw runs of several sizes and batch sizes from the Kaplan/Su law.

    Parameters
    ----------
    n_families
        Families, each with constants drawn around ``population`` (on the reference-scale
        coordinates at ``N0 = 1e7, S0 = 1e4, L0 = 3``, sds ``family_sd``).
    sizes
        Parameter counts (every family trains every size at every batch size).
    batch_sizes
        Batch sizes in tokens per step.
    n_seeds
        Replicate runs per (size, batch size).
    n_checkpoints
        Checkpoints per run, log-spaced in steps over ``step_range``.
    population
        Constants in the usual convention (default :data:`KAPLAN_2020`).
    family_sd
        Family sds of the reference-scale constants (default
        :data:`DEFAULT_KAPLAN_FAMILY_SD`; all zeros gives identical families).
    sigma_seed, sigma_obs, ar_rho
        Seed sd and checkpoint-noise sd on log-loss, AR(1) correlation of the noise.
    random_seed
        Seed or generator; the same seed gives the same table.

    Returns
    -------
    KaplanSimulation
    """
    rng = np.random.default_rng(random_seed)
    pop = {**KAPLAN_2020, **(population or {})}
    fsd = {**DEFAULT_KAPLAN_FAMILY_SD, **(family_sd or {})}
    pop_theta = to_reference_scale(**pop, n0=SIM_N0, s0=SIM_S0, l0=SIM_L0)
    steps = np.unique(np.round(np.geomspace(*step_range, n_checkpoints)))
    fam_rows, run_effects, frames = [], {}, []
    for f in range(n_families):
        name = f"fam{f}"
        theta = {k: pop_theta[k] + fsd[k] * rng.standard_normal() for k in KAPLAN_THETA}
        consts = {
            k: float(v)
            for k, v in from_reference_scale(**theta, n0=SIM_N0, s0=SIM_S0, l0=SIM_L0).items()
        }
        fam_rows.append({"family": name, **consts})
        for n in sizes:
            for batch in batch_sizes:
                log_mu = np.log(kaplan_loss(n, steps, batch, *(consts[k] for k in KAPLAN_PARAMS)))
                for s in range(n_seeds):
                    run = f"{name}-{n:.3g}-B{batch:.3g}-s{s}"
                    u = sigma_seed * rng.standard_normal()
                    run_effects[run] = u
                    eps = checkpoint_noise(rng, steps.size, sigma_obs, "normal", 3.0, ar_rho)
                    frames.append(pd.DataFrame({
                        "family": name,
                        "run": run,
                        "params": float(n),
                        "tokens": steps * batch,
                        "loss": np.exp(log_mu + u + eps),
                        "step": steps,
                        "batch_size": float(batch),
                        "seed": s,
                        "config": f"{name}-{n:.3g}-B{batch:.3g}",
                    }))
    return KaplanSimulation(
        runs=pd.concat(frames, ignore_index=True),
        families=pd.DataFrame(fam_rows).set_index("family"),
        run_effects=pd.Series(run_effects, name="run_effect"),
        sigma_seed=float(sigma_seed),
        sigma_obs=float(sigma_obs),
        ar_rho=float(ar_rho),
        population={k: float(v) for k, v in pop.items()},
    )
