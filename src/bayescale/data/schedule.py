"""Learning-rate schedules as data: the LR at every token, and the areas a schedule-aware law uses.

A run's schedule is given either by per-run columns

* ``schedule``: one of :data:`SCHEDULES`;
* ``warmup_tokens``: length of the linear warm-up from 0 to the peak;
* ``final_lr_fraction``: the LR at the end of the decay, as a fraction of the peak;
* ``schedule_tokens`` (or, when absent, ``run_tokens``): where the decay ends. After it the LR
  stays at ``final_lr_fraction`` (GPT-3 held its floor; a run stopped early, like OPT's, has
  ``tokens < schedule_tokens`` and never reached its floor);
* ``decay_tokens``: length of the final decay of a warm-up-stable-decay (``wsd``) run;

or by an ``lr`` column (the logged LR at each checkpoint, any units; its run maximum is taken
as the peak and the LR is linear between checkpoints).

From the LR fraction ``h(t) = lr(t) / lr_peak`` the module computes, at every checkpoint,

* the **forward area** ``S1(t) = integral_0^t h`` (tokens), the LR-annealing law's driver of
  progress (Tissue et al. 2024);
* the **annealing state** ``g(t)``: ``h`` seen through an exponential lag of ``lag_tokens``
  (with the warm-up counted as the peak), i.e. ``1 - g`` is Tissue et al.'s momentum
  annealing area ``S2`` in units of the lag. The loss follows the LR with a delay; the lag is
  the memory of that delay.

and the same two at the end of the run's schedule, so that a law can be written to reduce to
the plain ``L(N, D)`` at the end of every fully decayed run (see
:mod:`bayescale.laws.schedule`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Schedule shapes that can be reconstructed from the per-run columns.
SCHEDULES = ("cosine", "linear", "wsd", "constant", "inverse_sqrt")

#: Per-run columns that describe a schedule (``schedule_tokens`` falls back to ``run_tokens``).
SCHEDULE_COLUMNS = (
    "schedule", "warmup_tokens", "final_lr_fraction", "schedule_tokens", "decay_tokens",
)

#: Default memory of the loss for the LR, in optimizer steps: Tissue et al.'s momentum
#: ``lambda = 0.999`` per step is a lag of 1,000 steps.
DEFAULT_LAG_STEPS = 1000.0

#: Lag as a fraction of the schedule's length when the tokens per step are unknown.
DEFAULT_LAG_FRACTION = 0.02

#: Grid points per run used to integrate a reconstructed schedule.
_GRID = 4096


@dataclass(frozen=True)
class RunSchedule:
    """One run's reconstructed schedule.

    Attributes
    ----------
    shape
        One of :data:`SCHEDULES`.
    warmup_tokens, final_fraction, schedule_tokens, decay_tokens
        As the columns of the same names (``decay_tokens`` only for ``wsd``).
    """

    shape: str
    warmup_tokens: float
    final_fraction: float
    schedule_tokens: float
    decay_tokens: float = 0.0

    def lr_fraction(self, tokens: np.ndarray) -> np.ndarray:
        """LR as a fraction of the peak at ``tokens`` (warm-up included)."""
        t = np.asarray(tokens, dtype=float)
        return np.minimum(self._warmup_ramp(t), 1.0) * self._decay(t)

    def _warmup_ramp(self, t: np.ndarray) -> np.ndarray:
        if self.warmup_tokens <= 0:
            return np.ones_like(t)
        return np.clip(t / self.warmup_tokens, 0.0, 1.0)

    def _decay(self, t: np.ndarray) -> np.ndarray:
        """The decay part alone: 1 during warm-up, ``final_fraction`` after the schedule."""
        floor, w, total = self.final_fraction, self.warmup_tokens, self.schedule_tokens
        if self.shape == "constant":
            return np.ones_like(t)
        if self.shape == "inverse_sqrt":
            # the usual rsqrt schedule: sqrt(w / t) after the warm-up, never below the floor
            scale = max(w, 1.0)
            return np.maximum(np.sqrt(scale / np.maximum(t, scale)), floor)
        if self.shape == "wsd":
            start = total - self.decay_tokens
            x = np.clip((t - start) / max(self.decay_tokens, 1.0), 0.0, 1.0)
            return 1.0 - (1.0 - floor) * x
        x = np.clip((t - w) / max(total - w, 1.0), 0.0, 1.0)
        if self.shape == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * x))
        if self.shape == "linear":
            return 1.0 - (1.0 - floor) * x
        raise ValueError(f"unknown schedule {self.shape!r}; expected one of {SCHEDULES}")

    def annealing_fraction(self, tokens: np.ndarray) -> np.ndarray:
        """LR fraction with the warm-up counted as the peak (what the annealing state follows)."""
        return self._decay(np.asarray(tokens, dtype=float))


@dataclass(frozen=True)
class ScheduleFeatures:
    """What a schedule-aware law needs at each checkpoint (arrays aligned with the table).

    Attributes
    ----------
    lr_fraction
        ``h(t)``, the LR as a fraction of the run's peak.
    area
        ``S1(t)``, the forward area in tokens.
    anneal
        ``g(t)``, the lagged LR fraction (1 before any decay, near the floor at the end).
    area_end, anneal_end
        ``S1`` and ``g`` at the end of the run's schedule.
    schedule_end
        Where each checkpoint's run's schedule ends (tokens).
    """

    lr_fraction: np.ndarray
    area: np.ndarray
    anneal: np.ndarray
    area_end: np.ndarray
    anneal_end: np.ndarray
    schedule_end: np.ndarray


def has_schedule(runs: pd.DataFrame) -> bool:
    """Whether a run table carries schedule information (an ``lr`` or ``schedule`` column
    with at least one value)."""
    return any(col in runs.columns and runs[col].notna().any() for col in ("lr", "schedule"))


def run_schedule(row: Mapping[str, object]) -> RunSchedule:
    """A :class:`RunSchedule` from one run's schedule columns (already validated)."""
    end = row.get("schedule_tokens")
    if end is None or pd.isna(end):
        end = row.get("run_tokens")
    decay = row.get("decay_tokens")
    return RunSchedule(
        shape=str(row["schedule"]),
        warmup_tokens=_float_or(row.get("warmup_tokens"), 0.0),
        final_fraction=float(row["final_lr_fraction"]),
        schedule_tokens=float(end),  # type: ignore[arg-type]
        decay_tokens=_float_or(decay, 0.0),
    )


def _float_or(value: object, default: float) -> float:
    """``value`` as a float, or ``default`` when it is missing (None or NaN)."""
    if value is None or pd.isna(value):  # type: ignore[call-overload]
        return default
    return float(value)  # type: ignore[arg-type]


def lag_tokens(batch_size: float | None, schedule_end: float, lag_steps: float) -> float:
    """The loss's memory for the LR in tokens: ``lag_steps`` optimizer steps, or
    :data:`DEFAULT_LAG_FRACTION` of the schedule when the tokens per step are unknown."""
    if batch_size is not None and np.isfinite(batch_size) and batch_size > 0:
        return lag_steps * float(batch_size)
    return DEFAULT_LAG_FRACTION * float(schedule_end)


def _lagged(x: np.ndarray, t: np.ndarray, lag: float) -> np.ndarray:
    """Exponential lag ``dg/dt = (x - g) / lag`` of a piecewise-linear ``x(t)``, ``g(t0) = x(t0)``.

    Exact for piecewise-linear input, so it does not depend on the grid's spacing.
    """
    g = np.empty_like(x)
    g[0] = x[0]
    dt = np.diff(t)
    decay = np.exp(-dt / lag)
    slope = np.diff(x) / np.where(dt > 0, dt, 1.0)
    for i in range(1, x.size):
        # solution over one linear segment: x_i - slope*lag + (g_{i-1} - x_{i-1} + slope*lag) e
        s = slope[i - 1] * lag
        g[i] = x[i] - s + (g[i - 1] - x[i - 1] + s) * decay[i - 1]
    return g


def _cumulative_area(h: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.r_[0.0, np.cumsum(0.5 * (h[1:] + h[:-1]) * np.diff(t))]


def features_from_schedule(
    schedule: RunSchedule, tokens: np.ndarray, lag_tokens: float
) -> tuple[np.ndarray, ...]:
    """``(h, S1, g, S1_end, g_end)`` at ``tokens`` for one reconstructed schedule."""
    tokens = np.asarray(tokens, dtype=float)
    end = max(schedule.schedule_tokens, float(tokens.max(initial=0.0)))
    # a grid fine in the warm-up and in the decay, with every checkpoint on it
    grid = np.unique(np.r_[
        np.linspace(0.0, end, _GRID),
        np.linspace(0.0, min(schedule.warmup_tokens, end), 64),
        tokens, schedule.schedule_tokens,
    ])
    h = schedule.lr_fraction(grid)
    area = _cumulative_area(h, grid)
    anneal = _lagged(schedule.annealing_fraction(grid), grid, lag_tokens)
    at = np.searchsorted(grid, tokens)
    at_end = np.searchsorted(grid, schedule.schedule_tokens)
    return h[at], area[at], anneal[at], area[at_end], anneal[at_end]


def features_from_lr(
    tokens: np.ndarray, lr: np.ndarray, lag_tokens: float
) -> tuple[np.ndarray, ...]:
    """``(h, S1, g, S1_end, g_end)`` from an LR logged at the checkpoints.

    The peak is the largest logged LR; the LR is taken as linear between checkpoints and
    constant before the first; the end of the schedule is the last checkpoint (so the values
    at the end are the last checkpoint's).
    """
    tokens = np.asarray(tokens, dtype=float)
    h = np.asarray(lr, dtype=float) / np.max(lr)
    t = np.r_[0.0, tokens]
    hh = np.r_[h[0], h]
    area = _cumulative_area(hh, t)[1:]
    # the warm-up counts as the peak for the annealing state, as in the reconstructed case
    peak_at = int(np.argmax(h))
    h_anneal = h.copy()
    h_anneal[:peak_at] = 1.0
    anneal = _lagged(np.r_[h_anneal[0], h_anneal], t, lag_tokens)[1:]
    return h, area, anneal, area[-1], anneal[-1]


def schedule_features(
    runs: pd.DataFrame, lag_steps: float = DEFAULT_LAG_STEPS
) -> ScheduleFeatures:
    """Per-checkpoint schedule features of a validated run table that has a schedule.

    Parameters
    ----------
    runs
        Validated run table (sorted by family, run, tokens) with an ``lr`` column or the
        schedule columns for every run.
    lag_steps
        The loss's memory for the LR in optimizer steps (converted to tokens with
        ``batch_size``; without it, :data:`DEFAULT_LAG_FRACTION` of the schedule).

    Returns
    -------
    ScheduleFeatures
    """
    n = len(runs)
    out = {k: np.empty(n) for k in ("h", "area", "anneal", "area_end", "anneal_end", "end")}
    positions = np.arange(n)
    for _, idx in runs.groupby("run", sort=False).indices.items():
        rows = runs.iloc[idx]
        pos = positions[idx]
        first = rows.iloc[0]
        tokens = rows["tokens"].to_numpy(dtype=float)
        batch = first.get("batch_size")
        batch = None if batch is None or pd.isna(batch) else float(batch)
        use_lr = "lr" in rows and rows["lr"].notna().all()
        if use_lr and not ("schedule" in rows and pd.notna(first.get("schedule"))):
            end = float(tokens[-1])
            lag = lag_tokens(batch, end, lag_steps)
            values = features_from_lr(tokens, rows["lr"].to_numpy(dtype=float), lag)
        else:
            sched = run_schedule(first.to_dict())
            end = sched.schedule_tokens
            values = features_from_schedule(sched, tokens, lag_tokens(batch, end, lag_steps))
        h, area, anneal, area_end, anneal_end = values
        out["h"][pos], out["area"][pos], out["anneal"][pos] = h, area, anneal
        out["area_end"][pos], out["anneal_end"][pos], out["end"][pos] = area_end, anneal_end, end
    return ScheduleFeatures(
        out["h"], out["area"], out["anneal"], out["area_end"], out["anneal_end"], out["end"]
    )
