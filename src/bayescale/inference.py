"""Sampling backends and convergence diagnostics."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence, Set
from dataclasses import asdict, dataclass
from typing import Any, Literal

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from bayescale.cache import prepare_compile
from bayescale.errors import SamplingWarning, user_stacklevel
from bayescale.quiet import quiet_compile, resolve_blas_flags

Sampler = Literal["nutpie", "pymc", "numpyro"]
SAMPLERS: tuple[str, ...] = ("nutpie", "pymc", "numpyro")
#: The deepest NUTS tree :class:`SamplerSettings` accepts (2**20 leapfrog steps per draw).
MAX_TREE_DEPTH_LIMIT = 20


@dataclass(frozen=True)
class SamplerSettings:
    """How NUTS is run (the sampler arguments of :func:`bayescale.fit`).

    Attributes
    ----------
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
    max_tree_depth
        NUTS's largest tree depth: a draw takes at most ``2**max_tree_depth`` leapfrog steps.
    """

    sampler: Sampler = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    random_seed: int = 0
    target_accept: float = 0.9
    progressbar: bool = True
    max_tree_depth: int = 10

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}; got {self.sampler!r}")
        for name, least in (("draws", 1), ("tune", 0), ("chains", 1)):
            value = getattr(self, name)
            if int(value) != value or value < least:
                raise ValueError(f"{name} must be an integer >= {least}; got {value!r}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1); got {self.target_accept!r}")
        depth = self.max_tree_depth
        if int(depth) != depth or not 1 <= depth <= MAX_TREE_DEPTH_LIMIT:
            raise ValueError(
                f"max_tree_depth must be an integer in [1, {MAX_TREE_DEPTH_LIMIT}]; got {depth!r}"
            )

    @property
    def cores(self) -> int:
        """Chains run in parallel: one per core, at most ``chains``."""
        return max(1, min(self.chains, os.cpu_count() or 1))


def sample_compiled_nutpie(
    compiled: Any, settings: SamplerSettings, cores: int | None = None
) -> az.InferenceData:
    """Run nutpie on a compiled model with bayescale's adaptation settings.

    ``cores`` caps the threads the chains run in (default ``settings.cores``); each chain has
    its own seeded stream, so the draws do not depend on it.
    ``sample_stats.attrs["sampling_seconds"]`` records the time it took.
    """
    import nutpie

    t0 = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=settings.cores if cores is None else max(1, min(int(cores), settings.chains)),
        seed=int(settings.random_seed),
        progress_bar=settings.progressbar,
        low_rank_modified_mass_matrix=True,
        target_accept=settings.target_accept,
        maxdepth=int(settings.max_tree_depth),
        save_warmup=False,
    )
    idata.sample_stats.attrs["sampling_seconds"] = time.perf_counter() - t0
    return idata


def compile_nutpie(
    model: pm.Model,
    initial_points: Mapping[str, Any],
    jitter_rvs: Set[Any] = frozenset(),
    var_names: Sequence[str] | None = None,
) -> Any:
    """Compile ``model`` for nutpie's numba backend, the one way bayescale does it.

    PyTensor's BLAS lookup and bayescale's compile cache are set up first, and numba's
    performance hints on the generated code are not shown (:func:`bayescale.quiet.quiet_compile`).

    Parameters
    ----------
    model
        The PyMC model.
    initial_points
        Starting values (constrained space) by variable name; arrays or shared variables.
    jitter_rvs
        Random variables whose start nutpie jitters per chain.
    var_names
        Variables to keep in the trace (default: all).

    Returns
    -------
    nutpie.compiled_pyfunc.CompiledPyMCModel
        What :func:`sample_compiled_nutpie` samples.
    """
    import nutpie

    resolve_blas_flags()
    prepare_compile()
    with quiet_compile():
        return nutpie.compile_pymc_model(
            model,
            backend="numba",
            initial_points=dict(initial_points),
            jitter_rvs=set(jitter_rvs),
            var_names=list(var_names) if var_names else None,
        )


def sample_model(
    model: pm.Model,
    initial_point: Mapping[str, np.ndarray],
    settings: SamplerSettings,
    *,
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
    settings
        Sampler, draws, tuning, chains, seed, target acceptance and progress bar.
    jitter
        Names of variables whose starting value is jittered per chain (U(-1, 1) in
        unconstrained space); all others start exactly at ``initial_point``.
    var_names
        Variables to keep in the trace (default: all).

    Returns
    -------
    arviz.InferenceData
        With ``posterior`` and ``sample_stats`` groups; ``sample_stats.attrs`` records
        ``compile_seconds`` and ``sampling_seconds``.
    """
    jitter_rvs = {model[name] for name in jitter if name in model.named_vars}
    t0 = time.perf_counter()
    if settings.sampler == "nutpie":
        compiled = compile_nutpie(model, initial_point, jitter_rvs, var_names)
        compile_seconds = time.perf_counter() - t0
        idata = sample_compiled_nutpie(compiled, settings)
    else:  # pm.sample compiles inside; its time counts as sampling
        resolve_blas_flags()
        prepare_compile()
        compile_seconds = 0.0
        idata = _sample_pymc(model, initial_point, settings, var_names)
        idata.sample_stats.attrs["sampling_seconds"] = time.perf_counter() - t0
    idata.sample_stats.attrs["compile_seconds"] = compile_seconds
    return idata


def sampling_meta(settings: SamplerSettings, idata: az.InferenceData) -> dict[str, Any]:
    """The fit metadata about sampling: settings, seed and the compile and sampling seconds."""
    attrs = idata.sample_stats.attrs
    return {
        "sampler": settings.sampler,
        "random_seed": int(settings.random_seed),
        "sampler_settings": asdict(settings),
        "compile_seconds": float(attrs.get("compile_seconds", float("nan"))),
        "sampling_seconds": float(attrs.get("sampling_seconds", float("nan"))),
    }


def _sample_pymc(
    model: pm.Model,
    initial_point: Mapping[str, np.ndarray],
    settings: SamplerSettings,
    var_names: Sequence[str] | None,
) -> az.InferenceData:
    depth = int(settings.max_tree_depth)
    if settings.sampler == "numpyro":
        try:
            import numpyro  # noqa: F401
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise ImportError("sampler='numpyro' needs `pip install numpyro`") from exc
        kwargs: dict[str, Any] = {
            "nuts_sampler": "numpyro",
            "nuts_sampler_kwargs": {"nuts_kwargs": {"max_tree_depth": depth}},
        }
    else:
        kwargs = {"nuts": {"max_treedepth": depth}}
    with model:
        return pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=settings.cores,
            random_seed=int(settings.random_seed),
            initvals=dict(initial_point),
            init="adapt_diag",
            jitter_max_retries=0,
            target_accept=settings.target_accept,
            progressbar=settings.progressbar,
            var_names=list(var_names) if var_names else None,
            compute_convergence_checks=False,
            **kwargs,
        )


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
    worst_rhat
        The element with the largest R-hat, e.g. ``"tau_theta[log_alpha]"`` (``""`` if none).
    """

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    max_tree_depth_share: float
    worst_rhat: str = ""

    def problems(self, n_chains: int, target_accept: float | None = None) -> list[str]:
        """Human-readable list of failed checks, each with what to try.

        ``target_accept`` (the one the fit used, if known) shapes the advice on divergences.
        """
        out = []
        if self.divergences > 0:
            if target_accept is None or target_accept < 0.95:
                steps = "try target_accept=0.95 and more tuning"
            elif target_accept < 0.99:
                steps = f"target_accept={target_accept:g} was not enough: try 0.99"
            else:
                steps = (f"even target_accept={target_accept:g} leaves them, so the geometry "
                         "itself is hard")
            out.append(
                f"{self.divergences} divergent transitions: {steps}; families whose runs span "
                "few sizes or tokens leave E weakly identified (tighter priors on log_E help); "
                "check the warm-up cut"
            )
        if np.isfinite(self.max_rhat) and self.max_rhat > 1.01 and n_chains > 1:
            worst = f" (worst: {self.worst_rhat})" if self.worst_rhat else ""
            if self.worst_rhat.startswith("tau_theta"):
                advice = (
                    "the families' spread mixes slowly, a funnel where their data leave a "
                    "parameter to the population prior: run longer, and when most families "
                    "span one or two sizes try family_parameterization='noncentered' unless "
                    "the fit uses it already"
                )
            else:
                advice = (
                    "run longer (more tune and draws) and check for multimodality; when most "
                    "families have runs at only one or two sizes, try "
                    "family_parameterization='noncentered'"
                )
            out.append(f"max R-hat {self.max_rhat:.3f} > 1.01{worst}: chains disagree; {advice}")
        if self.min_ess_bulk < 100 * n_chains or self.min_ess_tail < 100 * n_chains:
            out.append(
                f"low effective sample size (bulk {self.min_ess_bulk:.0f}, tail "
                f"{self.min_ess_tail:.0f} < {100 * n_chains}): run more draws"
            )
        if self.max_tree_depth_share > 0.05:
            out.append(
                f"{100 * self.max_tree_depth_share:.0f}% of draws hit the maximum tree depth: "
                "their trajectories were cut short, so the chains explore slowly; raise "
                "max_tree_depth (default 10; each step up can double those draws' cost), and "
                "when most families have runs at only one or two sizes try "
                "family_parameterization='noncentered' unless the fit uses it already"
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
        max_rhat, worst = _largest(rhat, names)
    else:
        max_rhat, worst = float("nan"), ""
    ess_bulk = az.ess(idata, var_names=names, method="bulk")
    ess_tail = az.ess(idata, var_names=names, method="tail")
    min_bulk = float(min(np.nanmin(ess_bulk[v].values) for v in names))
    min_tail = float(min(np.nanmin(ess_tail[v].values) for v in names))
    reached = next((stats[n] for n in ("maxdepth_reached", "reached_max_treedepth")
                    if n in stats), None)  # nutpie's, PyMC's
    if reached is not None:
        share = float(np.mean(reached.values))
    elif "tree_depth" in stats:  # numpyro records the depth only
        depth = stats["tree_depth"].values
        share = float(np.mean(depth >= depth.max())) if depth.max() >= 10 else 0.0
    else:
        share = float("nan")
    return Diagnostics(divergences, max_rhat, min_bulk, min_tail, share, worst)


def _largest(values: xr.Dataset, names: Sequence[str]) -> tuple[float, str]:
    """Largest value over ``names`` and its element's label, e.g. ``tau_theta[log_alpha]``."""
    best, label = -np.inf, ""
    for name in names:
        arr = values[name]
        if not np.isfinite(arr.values).any():
            continue
        flat = int(np.nanargmax(arr.values))
        value = float(arr.values.flat[flat])
        if value > best:
            index = np.unravel_index(flat, arr.shape)
            coords = [str(arr[dim].values[i]) for dim, i in zip(arr.dims, index, strict=True)]
            best, label = value, name + (f"[{', '.join(coords)}]" if coords else "")
    return (best, label) if label else (float("nan"), "")


def warn_on_problems(
    diagnostics: Diagnostics, n_chains: int, target_accept: float | None = None
) -> None:
    """Emit one :class:`bayescale.SamplingWarning` per failed check."""
    for problem in diagnostics.problems(n_chains, target_accept):
        warnings.warn(problem, SamplingWarning, stacklevel=user_stacklevel())
