"""Statistical validation of the hierarchical model: SBC and predictive coverage.

Simulation-based calibration (SBC; Talts et al. 2018) draws parameters from the prior,
simulates a data set from them with exactly the model's likelihood, fits the model and records
the rank of each true value among (thinned) posterior draws. If the sampler and the model code
are right, every rank is uniform on ``0..L``; a U shape means over-confident posteriors, a
cap shape under-confident ones, a slope a bias.

The pieces here are shared by ``benchmarks/sbc.py``, ``benchmarks/robustness.py``,
``benchmarks/band_coverage.py`` and the tests:

* :func:`sbc_design` and :func:`draw_from_prior`: a run-table design and one prior draw of
  parameters and data on it (AR(1) checkpoint noise as
  :func:`bayescale.models.likelihood.ar_phi` defines it);
* :func:`thin_indices`, :func:`sbc_ranks`: ranks of the truth among evenly thinned draws;
* :func:`rank_uniformity`: chi-square test of uniform ranks, plus tail share and mean;
* :func:`plot_rank_histograms`: the rank histograms with the 99% band of a uniform histogram;
* :func:`run_sbc_replication`: one full replication (picklable, for Dask workers);
* :func:`split_held_out`, :func:`predictive_coverage`, :func:`run_coverage_replication`,
  :func:`summarise_coverage`: share of held-out checkpoints inside the predictive bands;
* :func:`run_parallel`: replications on Dask worker processes, each seeded by its index.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayescale.cache import prepare_compile
from bayescale.data.prepare import drop_warmup
from bayescale.data.validate import validate
from bayescale.inference import SamplerSettings, sample_compiled_nutpie, sampling_meta
from bayescale.models.design import Design, build_design
from bayescale.models.hierarchical import build_model, log_mean_curve
from bayescale.models.likelihood import ar_phi
from bayescale.models.options import ModelOptions
from bayescale.models.priors import THETA_NAMES, resolve_priors, theta_prior_arrays
from bayescale.models.scaling import sampling_coordinates
from bayescale.quiet import resolve_blas_flags
from bayescale.simulate import simulate

#: Population parameters and noise scales SBC must calibrate (names used in tables and plots).
SBC_MAIN: tuple[str, ...] = (
    *(f"mu_{k}" for k in THETA_NAMES),
    "sigma_seed",
    "sigma_obs",
)
#: Further quantities whose ranks are recorded (family spreads and the AR(1) correlation).
SBC_EXTRA: tuple[str, ...] = (*(f"tau_{k}" for k in THETA_NAMES), "ar_rho")


# --------------------------------------------------------------------------- prior draws
def sbc_design(
    n_families: int = 4,
    sizes: Sequence[float] = (2e7, 6e7, 2e8, 6e8),
    n_seeds: int = 2,
    n_checkpoints: int = 20,
) -> pd.DataFrame:
    """Run table layout (families x sizes x seeds x checkpoints) whose losses are to be drawn.

    The layout is :func:`bayescale.simulate`'s (log-spaced checkpoints from 5% of a run of
    20 tokens per parameter to its end); the ``loss`` column is a placeholder.

    Returns
    -------
    pandas.DataFrame
        Validated run table, sorted by family, run and tokens.
    """
    sim = simulate(
        n_families=n_families,
        sizes=sizes,
        n_seeds=n_seeds,
        n_checkpoints=n_checkpoints,
        sigma_seed=0.0,
        sigma_obs=0.0,
        random_seed=0,
    )
    return validate(sim.runs)


@dataclass(frozen=True)
class PriorDraw:
    """One draw of parameters from the prior and a data set simulated from them.

    Attributes
    ----------
    runs
        Run table with the simulated ``loss``.
    truth
        Scalar true values by name (:data:`SBC_MAIN` and :data:`SBC_EXTRA`).
    theta
        True family parameters ``(family, 5)`` at the reference scales.
    run_effects
        True seed offset of each run on log-loss (in the design's run order).
    n0, d0
        Reference scales the parameters were drawn at (pass them to :func:`bayescale.fit`).
    extra
        ``design``: the :class:`bayescale.models.design.Design` the data were drawn on.
    """

    runs: pd.DataFrame
    truth: dict[str, float]
    theta: np.ndarray
    run_effects: np.ndarray
    n0: float
    d0: float
    extra: dict[str, Any] = field(default_factory=dict)


def ar1_noise(
    phi: np.ndarray, prev: np.ndarray, rng: np.random.Generator, size: int | None = None
) -> np.ndarray:
    """Unit-variance AR(1) noise with correlation ``phi[i]`` between checkpoint ``i`` and ``prev[i]``.

    Parameters
    ----------
    phi
        Correlation of each checkpoint with its predecessor (0 for a run's first checkpoint), as
        returned by :func:`bayescale.models.likelihood.ar_phi`.
    prev
        Index of each checkpoint's predecessor (-1 for first checkpoints); predecessors come
        before their successors.
    rng
        Random generator.
    size
        Number of independent series (leading axis); ``None`` for one series.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_obs,)`` or ``(size, n_obs)``; stationary, marginal sd 1.
    """
    n = len(prev)
    shape = (n,) if size is None else (size, n)
    innov = rng.standard_normal(shape)
    out = np.empty(shape)
    for i in range(n):
        carried = phi[i] * out[..., prev[i]] if prev[i] >= 0 else 0.0
        out[..., i] = carried + np.sqrt(1.0 - phi[i] ** 2) * innov[..., i]
    return out


def draw_from_prior(
    template: pd.DataFrame,
    random_seed: int | Sequence[int] | np.random.Generator,
    priors: Mapping[str, Mapping[str, float]] | None = None,
    n0: float | None = None,
    d0: float | None = None,
    autocorrelation: str = "log_tokens",
) -> PriorDraw:
    """Draw all parameters from the model's prior and simulate losses on ``template``.

    Mirrors the default model (``likelihood="normal"``, family hierarchy): ``mu_theta ~
    N(mu0, sd0)``, ``tau_theta ~ Gamma(2, 2/scale)``, ``theta_f ~ N(mu_theta, tau_theta)``,
    ``sigma_seed, sigma_obs ~ HalfNormal``, ``ar_rho ~ Beta``, run offsets
    ``u_r ~ N(0, sigma_seed)`` and Normal checkpoint noise on log-loss with sd ``sigma_obs`` and
    AR(1) correlation ``ar_rho ** (gap / median_gap)`` in log tokens.

    Parameters
    ----------
    template
        Run table whose layout (families, runs, sizes, tokens) is kept; its losses are ignored.
    random_seed
        Seed, seed sequence or generator.
    priors
        Prior overrides, as for :func:`bayescale.fit` (pass the same ones to the fit).
    n0, d0
        Reference scales; default the geometric means of the design (pass them to the fit).
    autocorrelation
        ``"log_tokens"`` (default), ``"order"`` or ``"none"``.

    Returns
    -------
    PriorDraw
    """
    rng = np.random.default_rng(random_seed)
    data = validate(template)
    design = build_design(data, n0=n0, d0=d0)
    resolved = resolve_priors(design.n0, design.d0, priors)
    mu0, sd0, fam_scale, _ = theta_prior_arrays(resolved)
    n_fam = len(design.families)

    mu = mu0 + sd0 * rng.standard_normal(mu0.shape)
    tau = rng.gamma(shape=2.0, scale=fam_scale / 2.0)  # Gamma(2, rate 2/scale)
    theta = mu + tau * rng.standard_normal((n_fam, mu.size))
    sigma_seed = abs(resolved["sigma_seed"]["sigma"] * rng.standard_normal())
    sigma_obs = abs(resolved["sigma_obs"]["sigma"] * rng.standard_normal())
    rho = rng.beta(resolved["ar_rho"]["alpha"], resolved["ar_rho"]["beta"])
    u = sigma_seed * rng.standard_normal(len(design.runs))

    if autocorrelation == "none":
        eps = rng.standard_normal(design.n_obs)
    else:
        phi = ar_phi(rho, design.obs_gap, design.obs_prev, autocorrelation)
        eps = ar1_noise(phi, design.obs_prev, rng)
    log_loss = log_mean_curve(theta, design, math=np) + u[design.obs_run] + sigma_obs * eps
    runs = data.copy()
    runs["loss"] = np.exp(log_loss)

    truth = {f"mu_{k}": float(v) for k, v in zip(THETA_NAMES, mu, strict=True)}
    truth |= {"sigma_seed": float(sigma_seed), "sigma_obs": float(sigma_obs)}
    truth |= {f"tau_{k}": float(v) for k, v in zip(THETA_NAMES, tau, strict=True)}
    truth["ar_rho"] = float(rho)
    return PriorDraw(
        runs=runs,
        truth=truth,
        theta=theta,
        run_effects=u,
        n0=design.n0,
        d0=design.d0,
        extra={"design": design},
    )


# --------------------------------------------------------------------------- refitting
@dataclass(frozen=True)
class _SharedLossDesign(Design):
    """A design whose ``log_loss`` is a PyTensor shared variable (values swapped per refit)."""

    fixed_n_obs: int = 0

    @property
    def n_obs(self) -> int:
        return self.fixed_n_obs


class RefitModel:
    """The model compiled once for a run-table layout, refitted to new losses on that layout.

    :func:`bayescale.fit` builds and compiles the model for every data set (about half of a
    small fit's cost). Studies that fit many data sets with the same families, runs and tokens
    (SBC, coverage) build the same model with the log-losses in a shared variable and the
    starting point in shared variables, compile it once, and per data set only swap the data,
    recompute the least-squares start and the sampling coordinates, and sample. Everything else
    (model, priors, start, coordinates, jitter, nutpie settings, post-processing into a
    :class:`bayescale.ScalingLawFit`) is what :func:`bayescale.fit` does. The log density is
    :func:`bayescale.fit`'s to rounding; the draws are not bit-identical, because ``fit`` takes
    the coordinates as constants, which the compiler folds differently.

    Parameters
    ----------
    template
        Run table fixing the layout (its losses only set the compile-time values).
    priors
        Prior overrides, as for :func:`bayescale.fit`.
    n0, d0
        Reference scales (default: the template's geometric means).
    likelihood, autocorrelation
        Model options, as for :func:`bayescale.fit`.
    draws, tune, chains, target_accept
        Sampler settings, as for :func:`bayescale.fit`.
    """

    _LOSS_NAME = "bayescale_refit_log_loss"

    def __init__(
        self,
        template: pd.DataFrame,
        *,
        priors: Mapping[str, Mapping[str, float]] | None = None,
        n0: float | None = None,
        d0: float | None = None,
        likelihood: str = "normal",
        autocorrelation: str | None = None,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        target_accept: float = 0.9,
    ) -> None:
        import nutpie
        import pytensor

        if autocorrelation is None:
            autocorrelation = "log_tokens" if likelihood == "normal" else "none"
        self.options = ModelOptions(
            likelihood=likelihood,  # type: ignore[arg-type]
            autocorrelation=autocorrelation,  # type: ignore[arg-type]
        )
        data = validate(template)
        self.design = build_design(data, n0=n0, d0=d0)
        self.priors = resolve_priors(self.design.n0, self.design.d0, priors)
        self.settings = SamplerSettings(draws=draws, tune=tune, chains=chains,
                                        target_accept=target_accept, progressbar=False)
        fields_ = {f.name: getattr(self.design, f.name) for f in dataclasses.fields(Design)}
        self._loss = loss = pytensor.shared(self.design.log_loss.copy(), name=self._LOSS_NAME)
        shared_design = _SharedLossDesign(
            **{**fields_, "log_loss": loss}, fixed_n_obs=self.design.n_obs
        )
        coordinates = sampling_coordinates(self.design, self.priors, self.options)
        self._shared = coordinates.shared_variables()
        self.model = model = build_model(
            shared_design, self.priors, self.options, **coordinates.model_inputs(self._shared)
        )
        self._start = {name: self._shared[f"start_{name}"] for name in coordinates.start}
        jitter = {model[n] for n in coordinates.jitter if n in model.named_vars}
        resolve_blas_flags()
        prepare_compile()
        self._compiled = nutpie.compile_pymc_model(
            model, backend="numba", initial_points=self._start, jitter_rvs=jitter
        )

    def _check_layout(self, design: Design) -> None:
        ref = self.design
        same = (
            np.array_equal(design.runs, ref.runs)
            and np.array_equal(design.families, ref.families)
            and np.array_equal(design.obs_run, ref.obs_run)
            and np.allclose(design.obs_log_d, ref.obs_log_d)
            and np.allclose(design.run_log_n, ref.run_log_n)
        )
        if not same:
            raise ValueError("runs do not have the template's families, runs and tokens")

    def fit(self, runs: pd.DataFrame, random_seed: int = 0, cores: int | None = None) -> Any:
        """Fit the compiled model to ``runs`` (same layout as the template).

        Parameters
        ----------
        runs
            Run table with the template's families, runs and tokens.
        random_seed
            Sampler seed.
        cores
            Threads the chains run in (default: one per chain, at most the machine's cores);
            the draws do not depend on it.

        Returns
        -------
        bayescale.ScalingLawFit
        """

        from bayescale.fit import ScalingLawFit

        data = validate(runs)
        design = build_design(data, n0=self.design.n0, d0=self.design.d0)
        self._check_layout(design)
        coordinates = sampling_coordinates(design, self.priors, self.options)
        updates = {self._LOSS_NAME: design.log_loss}
        self._loss.set_value(design.log_loss)  # keeps self.model on the current data set
        for name, value in coordinates.values().items():
            self._shared[name].set_value(value)  # read by the initial-point function
            if self._shared[name].name in self._compiled.shared_data:  # copied into the kernel
                updates[self._shared[name].name] = value
        compiled = self._compiled.with_data(**updates)
        settings = dataclasses.replace(self.settings, random_seed=int(random_seed))
        idata = sample_compiled_nutpie(compiled, settings, cores=cores)
        idata.sample_stats.attrs["compile_seconds"] = 0.0  # compiled once, in __init__
        meta = {
            "law": "chinchilla",
            "options": self.options.to_dict(),
            "priors": self.priors,
            "n0": design.n0,
            "d0": design.d0,
            **sampling_meta(settings, idata),
        }
        return ScalingLawFit._from_sampling(idata, data, design, self.options, meta)


#: Compiled models of this process by layout and settings, least recently used first.
_REFIT_CACHE: dict[str, RefitModel] = {}
#: Layouts kept compiled per process.
REFIT_CACHE_SIZE = 4


def layout_key(runs: pd.DataFrame, **kwargs: Any) -> str:
    """Key of a validated run table's layout and the model settings a :class:`RefitModel` fixes.

    Every column but ``loss`` is part of the layout (families, runs, sizes, tokens, and the
    learning-rate schedule columns, which enter the model as constants).

    Parameters
    ----------
    runs
        Validated run table.
    **kwargs
        Arguments of :class:`RefitModel` (``progressbar`` is ignored).

    Returns
    -------
    str
        A hex digest.
    """
    import hashlib

    kwargs = {k: v for k, v in kwargs.items() if k != "progressbar"}
    cols = [c for c in runs.columns if c != "loss"]
    digest = hashlib.sha256(json.dumps(cols).encode())
    digest.update(pd.util.hash_pandas_object(runs[cols], index=False).to_numpy().tobytes())
    digest.update(json.dumps(kwargs, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def cached_refit_model(runs: pd.DataFrame, **kwargs: Any) -> tuple[RefitModel, bool]:
    """This process's :class:`RefitModel` for the layout of ``runs``, compiled on first use.

    Up to :data:`REFIT_CACHE_SIZE` layouts stay compiled (least recently used dropped first),
    so a worker that alternates between a few layouts compiles each once.

    Parameters
    ----------
    runs
        Validated run table (its layout; the losses do not matter).
    **kwargs
        Arguments of :class:`RefitModel` (``progressbar`` is ignored).

    Returns
    -------
    (RefitModel, bool)
        The model and whether it was compiled by this call.
    """
    kwargs = {k: v for k, v in kwargs.items() if k != "progressbar"}
    key = layout_key(runs, **kwargs)
    model = _REFIT_CACHE.pop(key, None)
    compiled = model is None
    if model is None:
        while len(_REFIT_CACHE) >= REFIT_CACHE_SIZE:
            _REFIT_CACHE.pop(next(iter(_REFIT_CACHE)))
        model = RefitModel(runs, **kwargs)
    _REFIT_CACHE[key] = model  # most recently used last
    return model, compiled


def fit_same_layout(runs: pd.DataFrame, random_seed: int = 0, **kwargs: Any) -> Any:
    """:func:`bayescale.fit` through a :class:`RefitModel` cached per layout and settings.

    The first call in a process compiles the model for the layout of ``runs``; later calls with
    the same families, runs, tokens and keyword arguments reuse it. The posterior is the one
    :func:`bayescale.fit` returns with the same arguments and seed on the same checkpoints
    (:func:`bayescale.fit` leaves out each run's first ``fit_from`` share first; this does not).

    Parameters
    ----------
    runs
        Run table.
    random_seed
        Sampler seed.
    **kwargs
        ``priors``, ``n0``, ``d0``, ``likelihood``, ``autocorrelation``, ``draws``, ``tune``,
        ``chains``, ``target_accept`` (``progressbar`` is ignored).

    Returns
    -------
    bayescale.ScalingLawFit
    """
    data = validate(runs)
    model, _ = cached_refit_model(data, **kwargs)
    return model.fit(data, random_seed=random_seed)


# --------------------------------------------------------------------------- ranks
def thin_indices(n_total: int, n_keep: int) -> np.ndarray:
    """``n_keep`` evenly spaced indices into ``n_total`` draws (chains concatenated).

    Raises
    ------
    ValueError
        If fewer than ``n_keep`` draws are available.
    """
    if n_keep > n_total:
        raise ValueError(f"cannot keep {n_keep} of {n_total} draws")
    step = n_total / n_keep
    return np.floor(step / 2 + step * np.arange(n_keep)).astype(int)


def posterior_sbc_draws(posterior: Any, name: str) -> np.ndarray:
    """Draws ``(chain, draw)`` of an SBC quantity from an ArviZ posterior group."""
    if name.startswith(("mu_", "tau_")):
        prefix, comp = name.split("_", 1)
        return np.asarray(posterior[f"{prefix}_theta"].sel(component=comp).values)
    return np.asarray(posterior[name].values)


def sbc_ranks(
    posterior: Any,
    truth: Mapping[str, float],
    names: Sequence[str],
    n_keep: int = 99,
) -> tuple[dict[str, int], dict[str, float]]:
    """Rank of each true value among ``n_keep`` evenly thinned posterior draws.

    Parameters
    ----------
    posterior
        ArviZ posterior group (dims chain, draw, ...).
    truth
        True values by name.
    names
        Quantities to rank (see :func:`posterior_sbc_draws`).
    n_keep
        Thinned draws ``L``; ranks are in ``0..L``.

    Returns
    -------
    ranks, ess
        Rank (count of thinned draws below the truth) and bulk ESS of every quantity; compare
        the ESS with ``n_keep`` to check that the thinned draws are roughly independent.
    """
    import arviz as az

    ranks, ess = {}, {}
    for name in names:
        draws = posterior_sbc_draws(posterior, name)
        flat = draws.reshape(-1)
        kept = flat[thin_indices(flat.size, n_keep)]
        ranks[name] = int(np.sum(kept < truth[name]))
        ess[name] = float(az.ess(draws, method="bulk"))
    return ranks, ess


def _bin_of_rank(ranks: np.ndarray, n_keep: int, n_bins: int) -> np.ndarray:
    return (np.asarray(ranks, dtype=int) * n_bins) // (n_keep + 1)


@dataclass(frozen=True)
class Uniformity:
    """Uniformity of SBC ranks.

    Attributes
    ----------
    chi2, p_value
        Pearson chi-square statistic over ``n_bins`` bins and its p-value (``n_bins - 1`` dof).
    counts, expected
        Observed and expected counts per bin.
    tail_share
        Share of normalised ranks in the outer 10% on each side (expected 0.2): well above
        means a U shape (over-confident), well below a cap shape (under-confident).
    mean_rank
        Mean normalised rank ``rank / L`` (expected 0.5): away from it means bias.
    """

    chi2: float
    p_value: float
    counts: np.ndarray
    expected: np.ndarray
    tail_share: float
    mean_rank: float


def rank_uniformity(ranks: Sequence[int] | np.ndarray, n_keep: int, n_bins: int) -> Uniformity:
    """Chi-square test that ranks in ``0..n_keep`` are uniform.

    Ranks are grouped into ``n_bins`` bins of consecutive ranks; when ``n_keep + 1`` is not a
    multiple of ``n_bins`` the expected counts are those of the unequal bins.

    Parameters
    ----------
    ranks
        One rank per replication, in ``0..n_keep``.
    n_keep
        Number of thinned posterior draws ``L``.
    n_bins
        Histogram bins (at most ``n_keep + 1``).

    Returns
    -------
    Uniformity
    """
    ranks = np.asarray(ranks, dtype=int)
    if ranks.size == 0:
        raise ValueError("no ranks")
    if ranks.min() < 0 or ranks.max() > n_keep:
        raise ValueError(f"ranks must be in 0..{n_keep}")
    if not 1 < n_bins <= n_keep + 1:
        raise ValueError(f"n_bins must be in 2..{n_keep + 1}; got {n_bins}")
    counts = np.bincount(_bin_of_rank(ranks, n_keep, n_bins), minlength=n_bins)
    width = np.bincount(_bin_of_rank(np.arange(n_keep + 1), n_keep, n_bins), minlength=n_bins)
    expected = ranks.size * width / (n_keep + 1)
    chi2, p = stats.chisquare(counts, expected)
    norm = ranks / n_keep
    tail = float(np.mean((norm < 0.1) | (norm > 0.9)))
    return Uniformity(float(chi2), float(p), counts, expected, tail, float(norm.mean()))


def plot_rank_histograms(
    ranks: Mapping[str, Sequence[int]],
    n_keep: int,
    n_bins: int,
    path: str | Path,
    title: str = "",
) -> Path:
    """Rank histograms, one panel per quantity, with the 99% band of a uniform histogram.

    The grey band is the central 99% interval of one bin's count under uniform ranks (binomial),
    as in Talts et al. (2018), Fig. 1.

    Returns
    -------
    pathlib.Path
        The written image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ranks)
    n_cols = min(4, len(names))
    n_rows = -(-len(names) // n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.0 * n_cols, 2.3 * n_rows), squeeze=False, sharey=True
    )
    for ax, name in zip(axes.ravel(), names, strict=False):
        r = np.asarray(ranks[name], dtype=int)
        u = rank_uniformity(r, n_keep, n_bins)
        prob = u.expected / r.size
        lo = stats.binom.ppf(0.005, r.size, prob)
        hi = stats.binom.ppf(0.995, r.size, prob)
        x = np.arange(n_bins)
        ax.fill_between(np.r_[x, n_bins] - 0.5, np.r_[lo, lo[-1]], np.r_[hi, hi[-1]],
                        step="post", color="0.85", lw=0)
        ax.axhline(r.size / n_bins, color="0.5", lw=0.8)
        ax.bar(x, u.counts, width=1.0, color="C0", edgecolor="white", lw=0.5)
        ax.set_title(f"{name}  p={u.p_value:.2f}", fontsize=9)
        ax.set_xticks([])
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("replications")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- one replication
def run_sbc_replication(
    index: int,
    *,
    base_seed: int = 2024,
    design: Mapping[str, Any] | None = None,
    priors: Mapping[str, Mapping[str, float]] | None = None,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    n_keep: int = 99,
    target_accept: float = 0.9,
    names: Sequence[str] = SBC_MAIN + SBC_EXTRA,
) -> dict[str, Any]:
    """One SBC replication: prior draw -> data -> fit -> ranks (seeded by ``index``).

    The fit is :func:`bayescale.fit`'s (default model options), made through
    :func:`fit_same_layout` so a worker process compiles the model once.

    Parameters
    ----------
    index
        Replication number; the data use seed ``(base_seed, index)`` and the sampler seed
        ``base_seed * 100_000 + index``.
    base_seed
        Seed shared by all replications of a study.
    design
        Keyword arguments of :func:`sbc_design`.
    priors
        Prior overrides used for both the draw and the fit.
    draws, tune, chains, target_accept
        Sampler settings of :func:`bayescale.fit`.
    n_keep
        Thinned draws ranks are computed on (``chains * draws >= n_keep``).
    names
        Quantities to rank.

    Returns
    -------
    dict
        ``index``, ``ranks`` and ``ess`` (by name), ``truth``, ``divergences``, ``max_rhat``,
        ``seconds``.
    """
    t0 = time.perf_counter()
    template = sbc_design(**(design or {}))
    draw = draw_from_prior(template, (base_seed, index), priors=priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_same_layout(
            draw.runs,
            priors=priors,
            n0=draw.n0,
            d0=draw.d0,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=base_seed * 100_000 + index,
            target_accept=target_accept,
        )
    ranks, ess = sbc_ranks(result.idata.posterior, draw.truth, names, n_keep=n_keep)
    diag = result.diagnostics
    return {
        "index": index,
        "ranks": ranks,
        "ess": ess,
        "truth": draw.truth,
        "divergences": diag.divergences,
        "max_rhat": diag.max_rhat,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- predictive coverage
def split_held_out(runs: pd.DataFrame, held_out_params: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a run table into runs with ``params < held_out_params`` (fit) and the rest (targets)."""
    mask = runs["params"] >= held_out_params
    return runs.loc[~mask].reset_index(drop=True), runs.loc[mask].reset_index(drop=True)


def predictive_coverage(
    fit: Any,
    targets: pd.DataFrame,
    levels: Sequence[float] = (0.5, 0.9),
    band: str = "observed",
) -> pd.DataFrame:
    """Whether each target checkpoint lies inside the fit's predictive bands.

    Each target is predicted for its own family (a known family of the fit) at a new seed:
    the ``observed`` band includes parameter uncertainty, seed-to-seed variability and
    checkpoint noise.

    Parameters
    ----------
    fit
        A :class:`bayescale.ScalingLawFit`.
    targets
        Held-out checkpoints (columns family, run, params, tokens, loss).
    levels
        Central interval probabilities.
    band
        ``"observed"``, ``"new_seed"`` or ``"mean"``.

    Returns
    -------
    pandas.DataFrame
        The targets with columns ``inside_<level>`` (bool) and ``final`` (the run's last
        checkpoint).
    """
    out = []
    for fam, group in targets.groupby("family", sort=False):
        points = group[["params", "tokens"]].drop_duplicates().reset_index(drop=True)
        pred = fit.predict(points["params"].to_numpy(), points["tokens"].to_numpy(),
                           family=str(fam), levels=levels)
        key = pd.MultiIndex.from_frame(points)
        g = group.copy()
        pos = key.get_indexer(pd.MultiIndex.from_frame(g[["params", "tokens"]]))
        for q in levels:
            lo = pred[band].sel(level=q, bound="lower").values[pos]
            hi = pred[band].sel(level=q, bound="upper").values[pos]
            g[f"inside_{q:g}"] = (g["loss"].to_numpy() >= lo) & (g["loss"].to_numpy() <= hi)
        out.append(g)
    result = pd.concat(out, ignore_index=True)
    last = result.groupby("run")["tokens"].transform("max")
    result["final"] = result["tokens"] == last
    return result


def inject_spike(
    runs: pd.DataFrame, rng: np.random.Generator, size: float = 0.1, min_fraction: float = 0.0
) -> tuple[pd.DataFrame, int]:
    """Add one loss spike: multiply one random checkpoint's loss by ``exp(size)``.

    Parameters
    ----------
    runs
        Run table (needs ``run_tokens`` when ``min_fraction > 0``).
    rng
        Random generator choosing the checkpoint.
    size
        Spike height on log-loss.
    min_fraction
        Only checkpoints at or after this fraction of their run are eligible (keeps the spike
        out of a warm-up).

    Returns
    -------
    runs, row
        A copy with the spike, and the (positional) row that got it.
    """
    out = runs.reset_index(drop=True).copy()
    eligible = np.flatnonzero(out["tokens"].to_numpy() >= min_fraction * _run_tokens(out))
    row = int(rng.choice(eligible))
    out.loc[row, "loss"] = out.loc[row, "loss"] * np.exp(size)
    return out, row


def _run_tokens(runs: pd.DataFrame) -> np.ndarray:
    if "run_tokens" in runs:
        return runs["run_tokens"].to_numpy(dtype=float)
    return runs.groupby("run")["tokens"].transform("max").to_numpy(dtype=float)


def run_coverage_replication(
    index: int,
    *,
    base_seed: int = 7,
    simulate_kwargs: Mapping[str, Any] | None = None,
    held_out_params: float = 2e9,
    fit_kwargs: Mapping[str, Any] | None = None,
    spike_size: float | None = None,
    eval_from_fraction: float = 0.0,
    drop_warmup_fraction: float | None = None,
    levels: Sequence[float] = (0.5, 0.9),
) -> dict[str, Any]:
    """Simulate, hold out the largest size, fit the rest and score the predictive bands.

    The fit is :func:`bayescale.fit`'s, made through :func:`fit_same_layout`.

    Parameters
    ----------
    index
        Replication number; the data use seed ``(base_seed, index)``, the fit
        ``base_seed * 100_000 + index``.
    base_seed
        Seed shared by the replications of a study.
    simulate_kwargs
        Arguments of :func:`bayescale.simulate` (``random_seed`` is set here); its ``sizes``
        must include ``held_out_params``.
    held_out_params
        Runs with at least this many parameters are held out as targets.
    fit_kwargs
        Arguments of :func:`bayescale.fit` (likelihood options, draws, ...).
    spike_size
        When given, one loss spike of this height on log-loss is added to the fitted runs.
    eval_from_fraction
        Score only target checkpoints at or after this fraction of their run (e.g. the end of
        a simulated warm-up the law does not describe).
    drop_warmup_fraction
        When given, fit only checkpoints at or after this fraction of their run
        (:func:`bayescale.drop_warmup` with ``min_fraction``), after adding the spike.
    levels
        Central probabilities of the ``observed`` bands scored.

    Returns
    -------
    dict
        ``index``, ``inside`` and ``inside_final`` (level -> share of target checkpoints / of
        final checkpoints inside the band), ``n_targets``, ``divergences``, ``max_rhat``,
        ``seconds``.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng((base_seed, index))
    sim = simulate(**{**(simulate_kwargs or {}), "random_seed": rng})
    train, targets = split_held_out(sim.runs, held_out_params)
    if targets.empty:
        raise ValueError(f"no run with params >= {held_out_params:g} to hold out")
    if spike_size is not None:
        train, _ = inject_spike(train, rng, spike_size, min_fraction=eval_from_fraction)
    if drop_warmup_fraction is not None:
        train = drop_warmup(train, min_tokens=None, min_fraction=drop_warmup_fraction)
    targets = targets.loc[targets["tokens"].to_numpy() >= eval_from_fraction * _run_tokens(targets)]
    kwargs = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False,
              **(fit_kwargs or {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_same_layout(train, random_seed=base_seed * 100_000 + index, **kwargs)
    scored = predictive_coverage(result, targets, levels=levels)
    diag = result.diagnostics
    return {
        "index": index,
        "inside": {f"{q:g}": float(scored[f"inside_{q:g}"].mean()) for q in levels},
        "inside_final": {
            f"{q:g}": float(scored.loc[scored["final"], f"inside_{q:g}"].mean()) for q in levels
        },
        "n_targets": len(scored),
        "divergences": diag.divergences,
        "max_rhat": diag.max_rhat,
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- drivers
def run_parallel(
    job: Callable[[int], dict[str, Any]],
    indices: Sequence[int],
    workers: int,
    out: str | Path | None = None,
    label: str = "",
    client: Any | None = None,
) -> dict[int, dict[str, Any]]:
    """Run ``job(index)`` for each index on Dask worker processes (:mod:`bayescale.batch`).

    Each replication seeds itself from its index, so results do not depend on ``workers`` or
    on completion order. Records are appended to ``out`` (JSON lines, with ``label``) as they
    finish; Dask's progress bar shows how far the run is. A job that raises stops the run
    (the records finished before it are in ``out``).

    Parameters
    ----------
    job
        Picklable callable returning a JSON-serialisable dict with ``index`` and ``seconds``.
    indices
        Replication numbers.
    workers
        Worker processes of the ``LocalCluster`` started for the run (one task at a time
        each; 1 runs them in one worker process, one at a time).
    out
        JSON-lines file to append to, or ``None``.
    label
        Stored with each record.
    client
        A ``distributed.Client`` or scheduler address to run on instead of a new local
        cluster (``workers`` is then ignored).

    Returns
    -------
    dict
        Index -> record.
    """
    import uuid

    from bayescale.batch import _client_for, run_on_dask

    done: dict[int, dict[str, Any]] = {}
    run_id = uuid.uuid4().hex[:8]  # task keys unique to this call on a shared client
    calls = {f"bayescale-{label or 'job'}-{run_id}-{i}": (i,) for i in indices}
    fh = Path(out).open("a") if out is not None else None

    def on_done(key: str, rec: Any, error: BaseException | None) -> None:
        if error is not None:
            raise error
        done[rec["index"]] = rec
        if fh is not None:
            fh.write(json.dumps({"label": label, **rec}) + "\n")
            fh.flush()

    try:
        with _client_for(client, workers) as dask_client:
            run_on_dask(job, calls, on_done, dask_client, retries=0)
    finally:
        if fh is not None:
            fh.close()
    return done


def summarise_coverage(
    records: Sequence[Mapping[str, Any]], levels: Sequence[float] = (0.5, 0.9)
) -> dict[str, float]:
    """Pool the records of :func:`run_coverage_replication`.

    Returns
    -------
    dict
        ``pooled_<level>`` (share of all target checkpoints inside), ``se_<level>`` (standard
        error over data sets), ``final_<level>`` (share of final checkpoints inside),
        ``divergent_share`` (fits with any divergence) and ``seconds`` (median per fit).
    """
    out: dict[str, float] = {}
    n_t = np.array([r["n_targets"] for r in records], dtype=float)
    for q in levels:
        key = f"{q:g}"
        per = np.array([r["inside"][key] for r in records])
        out[f"pooled_{key}"] = float(np.sum(per * n_t) / n_t.sum())
        out[f"se_{key}"] = float(per.std(ddof=1) / np.sqrt(per.size)) if per.size > 1 else np.nan
        out[f"final_{key}"] = float(np.mean([r["inside_final"][key] for r in records]))
    out["divergent_share"] = float(np.mean([r["divergences"] > 0 for r in records]))
    out["seconds"] = float(np.median([r["seconds"] for r in records]))
    return out
