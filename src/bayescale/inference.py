"""Sampling backends and convergence diagnostics."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import arviz as az
import numpy as np
import pymc as pm

from bayescale.errors import SamplingWarning

Sampler = Literal["nutpie", "pymc", "numpyro"]
SAMPLERS: tuple[str, ...] = ("nutpie", "pymc", "numpyro")


def sample_model(
    model: pm.Model,
    initial_point: Mapping[str, np.ndarray],
    *,
    sampler: Sampler = "nutpie",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int = 0,
    target_accept: float = 0.8,
    progressbar: bool = True,
    jitter: Sequence[str] = (),
    var_names: Sequence[str] | None = None,
) -> az.InferenceData:
    """Run NUTS on ``model`` from ``initial_point``.

    Parameters
    ----------
    model
        The PyMC model.
    initial_point
        Starting values (constrained space) by variable name.
    sampler
        ``"nutpie"`` (default: numba backend with low-rank mass-matrix adaptation),
        ``"pymc"`` (PyMC's NUTS) or ``"numpyro"`` (needs ``numpyro`` installed).
    draws, tune, chains
        Draws kept per chain, tuning steps per chain, and chains.
    random_seed
        Seed for the sampler; the same seed reproduces the same draws.
    target_accept
        Target acceptance rate for step-size adaptation.
    progressbar
        Show the sampler's progress bar.
    jitter
        Names of variables whose starting value is jittered per chain (U(-1, 1) in
        unconstrained space); all others start exactly at ``initial_point``.
    var_names
        Variables to keep in the trace (default: all).

    Returns
    -------
    arviz.InferenceData
        With ``posterior`` and ``sample_stats`` groups.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}; got {sampler!r}")
    cores = max(1, min(chains, os.cpu_count() or 1))
    jitter_rvs = {model[name] for name in jitter if name in model.named_vars}
    if sampler == "nutpie":
        import nutpie

        compiled = nutpie.compile_pymc_model(
            model,
            backend="numba",
            initial_points=dict(initial_point),
            jitter_rvs=jitter_rvs,
            var_names=list(var_names) if var_names else None,
        )
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=int(random_seed),
            progress_bar=progressbar,
            low_rank_modified_mass_matrix=True,
            target_accept=target_accept,
            save_warmup=False,
        )
        return idata
    kwargs = {}
    if sampler == "numpyro":
        try:
            import numpyro  # noqa: F401
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise ImportError("sampler='numpyro' needs `pip install numpyro`") from exc
        kwargs["nuts_sampler"] = "numpyro"
    with model:
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=int(random_seed),
            initvals=dict(initial_point),
            init="adapt_diag",
            jitter_max_retries=0,
            target_accept=target_accept,
            progressbar=progressbar,
            var_names=list(var_names) if var_names else None,
            compute_convergence_checks=False,
            **kwargs,
        )
    return idata


@dataclass(frozen=True)
class Diagnostics:
    """Sampler diagnostics of a fit.

    Attributes
    ----------
    divergences
        Number of divergent transitions after tuning.
    max_rhat
        Largest rank-normalised split R-hat over the checked variables.
    min_ess_bulk, min_ess_tail
        Smallest bulk and tail effective sample sizes.
    max_tree_depth_share
        Share of draws that hit the maximum tree depth (``nan`` when not recorded).
    """

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    max_tree_depth_share: float

    def problems(self, n_chains: int) -> list[str]:
        """Human-readable list of failed checks, each with what to try."""
        out = []
        if self.divergences > 0:
            out.append(
                f"{self.divergences} divergent transitions: try target_accept=0.95 and more "
                "tuning; families whose runs span few sizes or tokens leave E weakly "
                "identified (tighter priors on log_E help); check the warm-up cut"
            )
        if np.isfinite(self.max_rhat) and self.max_rhat > 1.01 and n_chains > 1:
            out.append(
                f"max R-hat {self.max_rhat:.3f} > 1.01: chains disagree; run longer "
                "(more tune and draws) and check for multimodality; when most families "
                "have runs at only one or two sizes, try family_parameterization='noncentered'"
            )
        if self.min_ess_bulk < 100 * n_chains or self.min_ess_tail < 100 * n_chains:
            out.append(
                f"low effective sample size (bulk {self.min_ess_bulk:.0f}, tail "
                f"{self.min_ess_tail:.0f} < {100 * n_chains}): run more draws"
            )
        if self.max_tree_depth_share > 0.05:
            out.append(
                f"{100 * self.max_tree_depth_share:.0f}% of draws hit the maximum tree depth: "
                "the posterior geometry is difficult; when most families have runs at only one "
                "or two sizes, try family_parameterization='noncentered'"
            )
        return out


def diagnose(idata: az.InferenceData, var_names: Sequence[str]) -> Diagnostics:
    """Compute :class:`Diagnostics` over ``var_names`` in the posterior."""
    names = [v for v in var_names if v in idata.posterior]
    stats = idata.sample_stats
    div_name = "diverging" if "diverging" in stats else None
    divergences = int(stats[div_name].sum()) if div_name else 0
    n_chains = idata.posterior.sizes["chain"]
    if n_chains > 1 and idata.posterior.sizes["draw"] >= 4:
        rhat = az.rhat(idata, var_names=names)
        max_rhat = float(max(np.nanmax(rhat[v].values) for v in names))
    else:
        max_rhat = float("nan")
    ess_bulk = az.ess(idata, var_names=names, method="bulk")
    ess_tail = az.ess(idata, var_names=names, method="tail")
    min_bulk = float(min(np.nanmin(ess_bulk[v].values) for v in names))
    min_tail = float(min(np.nanmin(ess_tail[v].values) for v in names))
    if "tree_depth" in stats:
        depth = stats["tree_depth"].values
        share = float(np.mean(depth >= depth.max())) if depth.max() >= 10 else 0.0
    elif "maxdepth_reached" in stats:
        share = float(np.mean(stats["maxdepth_reached"].values))
    else:
        share = float("nan")
    return Diagnostics(divergences, max_rhat, min_bulk, min_tail, share)


def warn_on_problems(diagnostics: Diagnostics, n_chains: int) -> None:
    """Emit one :class:`bayescale.SamplingWarning` per failed check."""
    for problem in diagnostics.problems(n_chains):
        warnings.warn(problem, SamplingWarning, stacklevel=3)
