"""Simulation-based calibration (SBC; Talts et al. 2018) of the hierarchical model.

SBC draws parameters from the prior, simulates a data set from them with exactly the model's
likelihood, fits the model and records the rank of each true value among (thinned) posterior
draws. If the sampler and the model code are right, every rank is uniform on ``0..L``; a U shape
means over-confident posteriors, a cap shape under-confident ones, a slope a bias.

* :func:`sbc_design` and :func:`draw_from_prior`: a run-table design and one prior draw of
  parameters and data on it (AR(1) checkpoint noise as
  :func:`bayescale.models.likelihood.ar_phi` defines it);
* :func:`thin_indices`, :func:`sbc_ranks`: ranks of the truth among evenly thinned draws;
* :func:`rank_uniformity`: chi-square test of uniform ranks, plus tail share and mean;
* :func:`plot_rank_histograms`: the rank histograms with the 99% band of a uniform histogram;
* :func:`run_sbc_replication`: one full replication (picklable, for Dask workers).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayescale.data.validate import validate
from bayescale.models.design import build_design
from bayescale.models.hierarchical import log_mean_curve
from bayescale.models.likelihood import ar_phi
from bayescale.models.priors import THETA_NAMES, resolve_priors, theta_prior_arrays
from bayescale.refit import fit_same_layout
from bayescale.simulate import simulate

__all__ = [
    "SBC_EXTRA",
    "SBC_MAIN",
    "PriorDraw",
    "Uniformity",
    "ar1_noise",
    "draw_from_prior",
    "plot_rank_histograms",
    "posterior_sbc_draws",
    "rank_uniformity",
    "run_sbc_replication",
    "sbc_design",
    "sbc_ranks",
    "thin_indices",
]


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
