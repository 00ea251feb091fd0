"""Posterior comparisons of two families (or two architectures), and model comparison by LOO.

:func:`compare` answers "is ``a`` better than ``b``, by how much, and does it stay better at
larger scale?" from the joint posterior of one fit:

* the loss difference ``L_a - L_b`` and ratio ``L_a / L_b`` at a target ``(N, D)`` or at a
  compute budget ``C = 6ND`` on each curve's compute-optimal frontier;
* ``P(a better)`` (lower loss) and the probability that the relative difference is larger than a
  region of practical equivalence (ROPE);
* the contrasts of the law parameters (``alpha_a - alpha_b``, ``beta_a - beta_b``,
  ``E_a - E_b``);
* the compute at which the two compute-optimal curves swap, per posterior draw.

Both sides are evaluated on the *same* posterior draw, so their correlation (shared population
parameters, shared noise scales) is respected.

**Choosing the ROPE.** The default ``rope=0.01`` (1% of the loss) is a strict threshold. "A
Hitchhiker's Guide to Scaling Law Estimation" (Choshen, Zhang & Andreas) reports that ~4%
absolute relative error is about the smallest difference people act on when choosing between
designs, and that seed-to-seed variability alone reaches ~3.5%. A posterior that puts most of
its mass inside ``|L_a / L_b - 1| < 0.04`` says the two options are practically equivalent at
the usual decision threshold, even when ``P(a better)`` is far from 0.5.

:func:`compare_models` compares *models* (e.g. with and without an architecture level, or
Normal vs Student-t checkpoint noise) fitted to the same runs, by PSIS-LOO on the per-run
log-likelihood.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.derived import chinchilla_compute_optimal
from bayescale.intervals import DEFAULT_LEVELS
from bayescale.models.hierarchical import reference_log_loss

if TYPE_CHECKING:  # pragma: no cover
    from bayescale.fit import ScalingLawFit

__all__ = ["DEFAULT_ROPE", "Comparison", "compare", "compare_models", "compute_optimal"]

#: Default region of practical equivalence: 1% of the loss.
DEFAULT_ROPE = 0.01
#: FLOPs per parameter per token of the ``C ~ 6ND`` approximation.
FLOPS_PER_PARAM_TOKEN = 6.0

Kind = Literal["auto", "family", "arch"]
Band = Literal["mean", "new_seed"]
ArchCurve = Literal["new_family", "centre"]

# Tokens-per-parameter range searched for the compute-optimal N (Chinchilla's optimum is ~20).
_TPP_RANGE = (1e-2, 1e4)


# ---------------------------------------------------------------------------------------------
# compute-optimal frontier
# ---------------------------------------------------------------------------------------------
def compute_optimal(
    theta: np.ndarray,
    compute: float | Sequence[float] | np.ndarray,
    n0: float,
    d0: float,
    tokens_per_param: tuple[float, float] = _TPP_RANGE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss on the compute-optimal frontier, per posterior draw.

    For each draw and compute budget ``C``, the ``N`` that minimises ``L(N, C / (6N))``. Along
    ``D = C / (6N)`` the reducible loss ``A/N^alpha + B/D^beta`` is convex in ``log N``, so the
    optimum is the closed form of Hoffmann et al. (2022, eq. 4; see
    :func:`bayescale.derived.chinchilla_compute_optimal`), written here in the reference scales.
    It is searched within ``tokens_per_param``: an optimum outside that range of ``D / N`` is
    moved to its edge and flagged.

    Parameters
    ----------
    theta
        Reference-scale family parameters ``(log_E, a, log_alpha, b, log_beta)``, shape (S, 5).
    compute
        Compute budgets in FLOPs, shape (K,).
    n0, d0
        The fit's reference scales.
    tokens_per_param
        Range of ``D / N`` searched.

    Returns
    -------
    loss, params, at_edge
        Optimal loss and optimal ``N`` (each (S, K)), and whether the optimum lay outside the
        searched range (the loss is then that at the range's edge, an upper bound).
    """
    compute = np.atleast_1d(np.asarray(compute, dtype=float))
    if np.any(~np.isfinite(compute)) or np.any(compute <= 0):
        raise ValueError("compute must be positive and finite")
    theta = np.asarray(theta, dtype=float)
    # In units of N0 and D0 the law is E + e^a n^-alpha + e^b d^-beta with 6 n d = C / (N0 D0).
    opt = chinchilla_compute_optimal(
        compute[None, :] / (n0 * d0), np.exp(theta[:, 0:1]), np.exp(theta[:, 1:2]),
        np.exp(theta[:, 2:3]), np.exp(theta[:, 3:4]), np.exp(theta[:, 4:5]),
    )
    x_opt = np.log(opt["params"])  # log(N_opt / N0)
    log_c6 = np.log(compute / FLOPS_PER_PARAM_TOKEN)[None, :]
    c_rel = log_c6 - np.log(n0) - np.log(d0)  # log(D/D0) = c_rel - log(N/N0) on the budget
    # D/N = C / (6 N^2)  =>  log N = (log(C/6) - log(D/N)) / 2
    lo_tpp, hi_tpp = tokens_per_param
    x_lo = 0.5 * (log_c6 - np.log(hi_tpp)) - np.log(n0)
    x_hi = 0.5 * (log_c6 - np.log(lo_tpp)) - np.log(n0)
    x = np.clip(x_opt, x_lo, x_hi)
    at_edge = (x_opt < x_lo) | (x_opt > x_hi)
    log_loss = reference_log_loss(theta, x, c_rel - x)
    return np.exp(log_loss), n0 * np.exp(x), at_edge


# ---------------------------------------------------------------------------------------------
# the result object
# ---------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Posterior comparison of ``a`` against ``b`` (differences are ``a - b``).

    Attributes
    ----------
    a, b
        Names compared, and ``kind_a``/``kind_b``: ``"family"`` (that family's posterior) or
        ``"arch"`` (a new family drawn from that architecture's level, or its centre; see
        ``arch_curve``).
    target
        ``{"params": N, "tokens": D}`` or ``{"compute": C}`` (then each side is at its own
        compute-optimal ``N``).
    rope
        Half-width of the region of practical equivalence on the relative difference.
    levels
        Central interval probabilities used by :meth:`summary`.
    band
        ``"mean"`` (compare the curves) or ``"new_seed"`` (compare one new run of each).
    arch_curve
        ``"new_family"`` or ``"centre"``: which curve stands for an architecture.
    loss_a, loss_b
        Posterior draws of the loss of each side at the target, shape (S,).
    contrasts
        Draws of ``alpha_a - alpha_b``, ``beta_a - beta_b`` and ``E_a - E_b`` (for an
        architecture: its level's centre, i.e. the typical family of that architecture).
    compute_grid
        Log grid of compute (FLOPs) on which the crossover is searched, shape (K,).
    frontier_a, frontier_b
        Compute-optimal loss of each side on ``compute_grid``, shape (S, K).
    crossover
        Per draw, the first compute on the grid where the sign of ``L_a - L_b`` on the frontier
        changes (log-linear interpolation), ``nan`` when it does not change in the range.
    optimal_params_a, optimal_params_b
        Compute-optimal ``N`` per draw at the target compute (``None`` for an ``(N, D)`` target).
    """

    a: str
    b: str
    kind_a: str
    kind_b: str
    target: dict[str, float]
    rope: float
    levels: tuple[float, ...]
    band: str
    arch_curve: str
    loss_a: np.ndarray
    loss_b: np.ndarray
    contrasts: dict[str, np.ndarray]
    compute_grid: np.ndarray
    frontier_a: np.ndarray
    frontier_b: np.ndarray
    crossover: np.ndarray
    optimal_params_a: np.ndarray | None = None
    optimal_params_b: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- derived draws
    @property
    def diff(self) -> np.ndarray:
        """Draws of ``L_a - L_b`` (negative: ``a`` is better)."""
        return self.loss_a - self.loss_b

    @property
    def ratio(self) -> np.ndarray:
        """Draws of ``L_a / L_b``."""
        return self.loss_a / self.loss_b

    @property
    def rel_diff(self) -> np.ndarray:
        """Draws of the relative difference ``L_a / L_b - 1``."""
        return self.ratio - 1.0

    @property
    def frontier_rel_diff(self) -> np.ndarray:
        """Relative difference on the compute-optimal frontier, shape (S, K)."""
        return self.frontier_a / self.frontier_b - 1.0

    # ----------------------------------------------------------------- probabilities
    @property
    def p_a_better(self) -> float:
        """Posterior probability that ``a`` has the lower loss at the target."""
        return float(np.mean(self.diff < 0))

    @property
    def p_outside_rope(self) -> float:
        """``P(|L_a / L_b - 1| > rope)``: the difference is practically relevant."""
        return float(np.mean(np.abs(self.rel_diff) > self.rope))

    @property
    def p_inside_rope(self) -> float:
        """``P(|L_a / L_b - 1| <= rope)``: practically equivalent."""
        return 1.0 - self.p_outside_rope

    @property
    def p_a_better_beyond_rope(self) -> float:
        """``P(L_a / L_b - 1 < -rope)``: ``a`` is better by more than the ROPE."""
        return float(np.mean(self.rel_diff < -self.rope))

    @property
    def p_b_better_beyond_rope(self) -> float:
        """``P(L_a / L_b - 1 > rope)``: ``b`` is better by more than the ROPE."""
        return float(np.mean(self.rel_diff > self.rope))

    @property
    def p_no_crossover(self) -> float:
        """Probability that the frontiers do not swap within ``compute_grid``."""
        return float(np.mean(np.isnan(self.crossover)))

    @property
    def n_draws(self) -> int:
        """Number of posterior draws."""
        return int(self.loss_a.size)

    def interval(self, draws: np.ndarray, level: float = 0.9) -> tuple[float, float]:
        """Equal-tailed ``level`` interval of ``draws`` (``nan`` entries ignored)."""
        x = np.asarray(draws, dtype=float)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return (float("nan"), float("nan"))
        lo, hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    # ----------------------------------------------------------------- tables
    def _draw_rows(self) -> list[tuple[str, np.ndarray, str]]:
        at = self.target_label()
        rows = [
            (f"loss[{self.a}]", self.loss_a, f"loss of {self.a} {at}"),
            (f"loss[{self.b}]", self.loss_b, f"loss of {self.b} {at}"),
            ("diff", self.diff, f"L_a - L_b {at} (negative: {self.a} better)"),
            ("ratio", self.ratio, f"L_a / L_b {at}"),
            ("rel_diff", self.rel_diff, f"L_a / L_b - 1 {at}"),
        ]
        for name, draws in self.contrasts.items():
            rows.append((f"{name}_diff", draws, f"{name}_a - {name}_b"))
        if self.optimal_params_a is not None and self.optimal_params_b is not None:
            rows.append(
                (f"optimal_params[{self.a}]", self.optimal_params_a, "compute-optimal N of a")
            )
            rows.append(
                (f"optimal_params[{self.b}]", self.optimal_params_b, "compute-optimal N of b")
            )
        rows.append(
            (
                "crossover_compute",
                self.crossover,
                "compute (FLOPs) where the compute-optimal curves swap, among draws that swap "
                f"within [{self.compute_grid[0]:.3g}, {self.compute_grid[-1]:.3g}]",
            )
        )
        return rows

    def _probability_rows(self) -> list[tuple[str, float, str]]:
        r = self.rope
        return [
            ("P(a better)", self.p_a_better, f"P(L_{self.a} < L_{self.b})"),
            ("P(|rel_diff| > rope)", self.p_outside_rope, f"practically different (ROPE {r:g})"),
            ("P(a better by > rope)", self.p_a_better_beyond_rope, f"P(rel_diff < -{r:g})"),
            ("P(b better by > rope)", self.p_b_better_beyond_rope, f"P(rel_diff > {r:g})"),
            ("P(no crossover)", self.p_no_crossover, "frontiers do not swap in the compute range"),
        ]

    def summary(self) -> pd.DataFrame:
        """Tidy table: one row per quantity.

        Returns
        -------
        pandas.DataFrame
            Columns ``quantity``, ``mean``, ``sd``, ``median``, ``lower_<pct>`` and
            ``upper_<pct>`` for each level, ``probability`` (filled on the ``P(...)`` rows,
            ``nan`` elsewhere), ``n_draws`` (draws the row is computed from; the crossover row
            only uses draws that cross) and ``description``.
        """
        records = []
        for name, draws, desc in self._draw_rows():
            x = np.asarray(draws, dtype=float)
            x = x[np.isfinite(x)]
            rec: dict[str, Any] = {"quantity": name}
            if x.size:
                rec.update(mean=float(x.mean()), sd=float(x.std()), median=float(np.median(x)))
            else:
                rec.update(mean=np.nan, sd=np.nan, median=np.nan)
            for q in self.levels:
                lo, hi = self.interval(x, q)
                rec[f"lower_{_pct(q)}"] = lo
                rec[f"upper_{_pct(q)}"] = hi
            rec.update(probability=np.nan, n_draws=int(x.size), description=desc)
            records.append(rec)
        for name, p, desc in self._probability_rows():
            rec = {"quantity": name, "mean": np.nan, "sd": np.nan, "median": np.nan}
            for q in self.levels:
                rec[f"lower_{_pct(q)}"] = np.nan
                rec[f"upper_{_pct(q)}"] = np.nan
            rec.update(probability=float(p), n_draws=self.n_draws, description=desc)
            records.append(rec)
        out = pd.DataFrame.from_records(records)
        for col in ("quantity", "description"):
            out[col] = out[col].astype(str)
        out["n_draws"] = out["n_draws"].astype("int64")
        return out

    def to_xarray(self) -> xr.Dataset:
        """All draws as an :class:`xarray.Dataset` (dims ``sample`` and ``compute``).

        Scalars (probabilities, ROPE, target, names) are attributes.
        """
        data = {
            "loss_a": ("sample", self.loss_a),
            "loss_b": ("sample", self.loss_b),
            "diff": ("sample", self.diff),
            "ratio": ("sample", self.ratio),
            "rel_diff": ("sample", self.rel_diff),
            "crossover_compute": ("sample", self.crossover),
            "frontier_a": (("sample", "compute"), self.frontier_a),
            "frontier_b": (("sample", "compute"), self.frontier_b),
        }
        for name, draws in self.contrasts.items():
            data[f"{name}_diff"] = ("sample", draws)
        if self.optimal_params_a is not None:
            data["optimal_params_a"] = ("sample", self.optimal_params_a)
            data["optimal_params_b"] = ("sample", self.optimal_params_b)
        attrs: dict[str, Any] = {
            "a": self.a,
            "b": self.b,
            "kind_a": self.kind_a,
            "kind_b": self.kind_b,
            "band": self.band,
            "arch_curve": self.arch_curve,
            "rope": self.rope,
            "p_a_better": self.p_a_better,
            "p_outside_rope": self.p_outside_rope,
            "p_a_better_beyond_rope": self.p_a_better_beyond_rope,
            "p_b_better_beyond_rope": self.p_b_better_beyond_rope,
            "p_no_crossover": self.p_no_crossover,
        }
        attrs.update({f"target_{k}": float(v) for k, v in self.target.items()})
        return xr.Dataset(
            data,
            coords={"sample": np.arange(self.n_draws), "compute": self.compute_grid},
            attrs=attrs,
        )

    def target_label(self) -> str:
        """Human-readable target, e.g. ``at N=1.3e+09, D=1.3e+11``."""
        if "compute" in self.target:
            return f"at C={self.target['compute']:.3g} FLOPs (compute-optimal)"
        return f"at N={self.target['params']:.3g}, D={self.target['tokens']:.3g}"

    def __repr__(self) -> str:
        lo, hi = self.interval(self.rel_diff, max(self.levels))
        return (
            f"Comparison({self.a!r} vs {self.b!r} {self.target_label()}: "
            f"rel_diff median {np.median(self.rel_diff):+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}] ({_pct(max(self.levels))}%), "
            f"P(a better)={self.p_a_better:.3f}, P(|rel|>{self.rope:g})={self.p_outside_rope:.3f})"
        )


def _pct(level: float) -> str:
    return f"{100 * level:g}"


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def compare(
    fit: ScalingLawFit,
    a: str,
    b: str,
    params: float | None = None,
    tokens: float | None = None,
    *,
    compute: float | None = None,
    rope: float = DEFAULT_ROPE,
    levels: Sequence[float] = DEFAULT_LEVELS,
    kind: Kind = "auto",
    band: Band = "mean",
    arch_curve: ArchCurve = "new_family",
    compute_range: tuple[float, float] | None = None,
    n_compute: int = 48,
    random_seed: int | None = None,
) -> Comparison:
    """Compare two families (or two architectures) of one fit.

    Parameters
    ----------
    fit
        A fitted :class:`bayescale.ScalingLawFit`.
    a, b
        Family names of the fit, or architecture names of a fit with an arch level. For an
        architecture the curve is that of a *new* family drawn from its level (what you would
        expect from a new model of that architecture), and the parameter contrasts use the
        level's centre.
    params, tokens
        Target ``(N, D)``. Give both, or ``compute`` instead.
    compute
        Target compute budget ``C`` in FLOPs (``C ~ 6ND``): each side is evaluated at its own
        compute-optimal ``N`` (``D = C / 6N``), per posterior draw.
    rope
        Half-width of the region of practical equivalence on ``L_a / L_b - 1`` (default 0.01,
        i.e. 1%). The Hitchhiker's Guide treats ~4% as the smallest effect people act on and
        reports ~3.5% seed-to-seed noise; see the module documentation.
    levels
        Interval probabilities of :meth:`Comparison.summary`.
    kind
        How to read ``a`` and ``b``: ``"auto"`` (a family if the fit has one of that name, else
        an architecture), ``"family"`` or ``"arch"``.
    band
        ``"mean"`` compares the mean curves (parameter uncertainty); ``"new_seed"`` adds an
        independent seed offset to each side (comparing one future run of each).
    arch_curve
        For an architecture: ``"new_family"`` (default) draws a new family from its level (the
        family-to-family spread is included, so this answers "will my next model of this
        architecture be better?"); ``"centre"`` uses the level's centre (the typical family:
        "is this architecture better on average?").
    compute_range
        Bounds (FLOPs) of the log grid on which the crossover is searched. Default: from the
        smallest final ``6ND`` among the fit's runs to 1000 times the largest (always extended
        to include the target compute).
    n_compute
        Points of the crossover grid.
    random_seed
        Seed of the new-family and seed-offset draws (default: the fit's seed).

    Returns
    -------
    Comparison

    Raises
    ------
    KeyError
        If ``a`` or ``b`` is neither a family nor an architecture of the fit.
    ValueError
        If the target is not given exactly once.
    """
    if (compute is None) == (params is None or tokens is None):
        raise ValueError("give either params and tokens, or compute")
    if not 0 <= rope < 1:
        raise ValueError(f"rope must be in [0, 1); got {rope}")
    if band not in ("mean", "new_seed"):
        raise ValueError(f"band must be 'mean' or 'new_seed'; got {band!r}")
    if arch_curve not in ("new_family", "centre"):
        raise ValueError(f"arch_curve must be 'new_family' or 'centre'; got {arch_curve!r}")
    levels = tuple(float(q) for q in levels)
    seed = fit.random_seed if random_seed is None else int(random_seed)
    rng = np.random.default_rng([seed, 17])

    kind_a = _resolve_kind(fit, a, kind)
    kind_b = _resolve_kind(fit, b, kind)
    theta_a = _curve_theta(fit, a, kind_a, rng, arch_curve)
    theta_b = _curve_theta(fit, b, kind_b, rng, arch_curve)
    n0, d0 = fit.n0, fit.d0

    # compute grid for the crossover
    lo_c, hi_c = compute_range if compute_range is not None else _default_compute_range(fit)
    if compute is not None:
        lo_c, hi_c = min(lo_c, compute), max(hi_c, compute)
    if not 0 < lo_c < hi_c:
        raise ValueError(f"compute_range must satisfy 0 < low < high; got {(lo_c, hi_c)}")
    grid = np.geomspace(lo_c, hi_c, int(n_compute))
    front_a, _, edge_a = compute_optimal(theta_a, grid, n0, d0)
    front_b, _, edge_b = compute_optimal(theta_b, grid, n0, d0)
    crossover = _first_crossing(grid, front_a - front_b)

    notes: list[str] = []
    opt_a = opt_b = None
    if compute is not None:
        target = {"compute": float(compute)}
        la, opt_a, ea = compute_optimal(theta_a, [compute], n0, d0)
        lb, opt_b, eb = compute_optimal(theta_b, [compute], n0, d0)
        loss_a, loss_b, opt_a, opt_b = la[:, 0], lb[:, 0], opt_a[:, 0], opt_b[:, 0]
        share = float(np.mean(ea | eb))
        if share > 0.01:
            notes.append(
                f"{100 * share:.0f}% of draws have their compute-optimal N at the edge of the "
                f"searched range (tokens per parameter {_TPP_RANGE}); their loss is an upper bound"
            )
        n_a, n_b = opt_a, opt_b
    else:
        target = {"params": float(params), "tokens": float(tokens)}  # type: ignore[arg-type]
        log_n = np.log(np.array([float(params)]) / n0)  # type: ignore[arg-type]
        log_d = np.log(np.array([float(tokens)]) / d0)  # type: ignore[arg-type]
        loss_a = np.exp(reference_log_loss(theta_a, log_n, log_d))[:, 0]
        loss_b = np.exp(reference_log_loss(theta_b, log_n, log_d))[:, 0]
        n_a = n_b = np.full(loss_a.shape, float(params))  # type: ignore[arg-type]
    edge_share = float(np.mean(edge_a | edge_b))
    if edge_share > 0.05:
        notes.append(
            f"{100 * edge_share:.0f}% of frontier evaluations on the crossover grid hit the edge of "
            "the searched N range"
        )

    if band == "new_seed":
        tau_a = fit.seed_sd(n_a[:, None])[:, 0]  # each draw's seed sd at its own N
        tau_b = fit.seed_sd(n_b[:, None])[:, 0]
        loss_a = loss_a * np.exp(tau_a * rng.standard_normal(loss_a.shape))
        loss_b = loss_b * np.exp(tau_b * rng.standard_normal(loss_b.shape))

    contrasts = _contrasts(
        _centre_theta(fit, a, kind_a, theta_a), _centre_theta(fit, b, kind_b, theta_b)
    )
    return Comparison(
        a=a,
        b=b,
        kind_a=kind_a,
        kind_b=kind_b,
        target=target,
        rope=float(rope),
        levels=levels,
        band=band,
        arch_curve=arch_curve,
        loss_a=loss_a,
        loss_b=loss_b,
        contrasts=contrasts,
        compute_grid=grid,
        frontier_a=front_a,
        frontier_b=front_b,
        crossover=crossover,
        optimal_params_a=opt_a,
        optimal_params_b=opt_b,
        notes=notes,
    )


def _archs(fit: ScalingLawFit) -> list[str]:
    if not fit.options.use_arch or "arch" not in fit.idata.posterior.coords:
        return []
    return [str(x) for x in fit.idata.posterior["arch"].values]


def _resolve_kind(fit: ScalingLawFit, name: str, kind: Kind) -> str:
    families, archs = fit.families, _archs(fit)
    if kind == "family" or (kind == "auto" and name in families):
        if name not in families:
            raise KeyError(f"unknown family {name!r}; families in this fit: {families}")
        return "family"
    if kind in ("arch", "auto"):
        if name in archs:
            return "arch"
        if kind == "arch" and not archs:
            raise KeyError("this fit has no arch level; refit with hierarchy=('arch', 'family')")
        raise KeyError(
            f"{name!r} is neither a family ({families}) nor an architecture ({archs}) of this fit"
        )
    raise ValueError(f"kind must be 'auto', 'family' or 'arch'; got {kind!r}")


def _curve_theta(
    fit: ScalingLawFit, name: str, kind: str, rng: np.random.Generator, arch_curve: str
) -> np.ndarray:
    """Theta draws (S, 5) of the curve compared: the family's, or an arch's new family/centre."""
    if kind == "family":
        return fit.posterior_draws("theta")[:, fit.families.index(name), :]
    if arch_curve == "centre":
        return fit.posterior_draws("theta_arch")[:, _archs(fit).index(name), :]
    return fit.theta_draws(None, arch=name, random_seed=rng)


def _centre_theta(fit: ScalingLawFit, name: str, kind: str, curve_theta: np.ndarray):
    """Theta draws used for the parameter contrasts (an arch's level centre)."""
    if kind == "arch" and "theta_arch" in fit.idata.posterior:
        return fit.posterior_draws("theta_arch")[:, _archs(fit).index(name), :]
    return curve_theta


def _contrasts(theta_a: np.ndarray, theta_b: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "alpha": np.exp(theta_a[:, 2]) - np.exp(theta_b[:, 2]),
        "beta": np.exp(theta_a[:, 4]) - np.exp(theta_b[:, 4]),
        "E": np.exp(theta_a[:, 0]) - np.exp(theta_b[:, 0]),
    }


def _default_compute_range(fit: ScalingLawFit) -> tuple[float, float]:
    final = fit.data.groupby("run")[["params", "tokens"]].max()
    c = FLOPS_PER_PARAM_TOKEN * final["params"].to_numpy(float) * final["tokens"].to_numpy(float)
    return float(c.min()), float(1000 * c.max())


def _first_crossing(grid: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """First compute where ``diff`` (S, K) changes sign, log-linearly interpolated; nan if none."""
    sign = np.sign(diff)
    # treat exact zeros as continuing the previous sign so they do not count twice
    change = (sign[:, 1:] * sign[:, :-1]) < 0
    has = change.any(axis=1)
    k = np.argmax(change, axis=1)
    rows = np.arange(diff.shape[0])
    d0, d1 = diff[rows, k], diff[rows, np.minimum(k + 1, diff.shape[1] - 1)]
    log_g = np.log(grid)
    denom = np.where(d0 != d1, d0 - d1, 1.0)
    w = np.clip(d0 / denom, 0.0, 1.0)
    log_c = log_g[k] + w * (log_g[np.minimum(k + 1, grid.size - 1)] - log_g[k])
    return np.where(has, np.exp(log_c), np.nan)


# ---------------------------------------------------------------------------------------------
# model comparison
# ---------------------------------------------------------------------------------------------
def compare_models(
    fits: Mapping[str, ScalingLawFit],
    *,
    ic: Literal["loo", "waic"] = "loo",
    method: Literal["stacking", "BB-pseudo-BMA", "pseudo-BMA"] = "stacking",
    scale: Literal["log", "negative_log", "deviance"] = "log",
) -> pd.DataFrame:
    """Compare fits of different models to the same runs by PSIS-LOO (:func:`arviz.compare`).

    The log-likelihood is per *run* (all checkpoints of a run, with its seed offset integrated
    out), so this is **leave-one-run-out** cross-validation: it scores how well each model
    predicts a whole held-out run *inside* the range of sizes and budgets it was fitted on, i.e.
    interpolation. It says nothing about extrapolation to larger models; pair it with the
    extrapolation protocol (:func:`bayescale.protocol_split`: fit on the smaller runs, score the
    largest). With few runs per family, expect Pareto-k warnings (a run is then influential).

    Parameters
    ----------
    fits
        Model name -> fit; at least two, all fitted to the same runs.
    ic, method, scale
        Passed to :func:`arviz.compare`.

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison table (rank, elpd_loo, p_loo, elpd_diff, weight, se, dse, warning,
        scale), one row per model, best first.

    Raises
    ------
    ValueError
        With fewer than two fits, or fits on different runs.
    """
    import arviz as az

    if len(fits) < 2:
        raise ValueError("compare_models needs at least two fits")
    runs = None
    for name, f in fits.items():
        if "log_likelihood" not in f.idata.groups() or "log_loss" not in f.idata.log_likelihood:
            raise ValueError(f"fit {name!r} has no per-run log-likelihood 'log_loss'")
        ll = f.idata.log_likelihood["log_loss"]
        unit = next(d for d in ll.dims if d not in ("chain", "draw"))  # run, or config
        these = (unit, sorted(str(r) for r in ll[unit].values))
        if runs is None:
            runs = these
        elif these != runs:
            raise ValueError(
                "compare_models needs fits scored on the same units: the same runs (or, for "
                "fits with config_effects, the same configs, leave-one-config-out); "
                f"fit {name!r} differs (config effects are on by default for a table with "
                "replicates and the normal likelihood: fit every model with the same "
                "config_effects)"
            )
    idatas = {name: f.idata for name, f in fits.items()}
    return az.compare(idatas, ic=ic, method=method, scale=scale, var_name="log_loss")
