"""Preparation helpers for run tables (pure pandas): warm-up cut, thinning, protocol subsets.

Each helper takes a validated run table and returns a new one (rows are selected, never
modified). The protocol subsets follow "A Hitchhiker's Guide to Scaling Law Estimation"
(Choshen, Zhang, Andreas): ``F_max`` is the largest-N runs of a family, ``F_train`` the other
runs past the warm-up cut, and ``F_target`` the ``F_max`` checkpoints in the last 30% of their runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The Hitchhiker's Guide drops checkpoints with fewer than 10B tokens seen.
DEFAULT_WARMUP_TOKENS = 1e10
#: F_target holds checkpoints with tokens >= (1 - 0.3) x the run's final tokens.
DEFAULT_TARGET_FRACTION = 0.3
#: Relative slack on fractional cuts so that a checkpoint exactly on the boundary is kept
#: despite rounding (e.g. ``(1 - 0.7) * 1e10`` is ``3000000000.0000005``).
CUT_RTOL = 1e-9


def drop_warmup(
    runs: pd.DataFrame,
    min_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    min_fraction: float | None = None,
) -> pd.DataFrame:
    """Drop early checkpoints that do not follow the law yet.

    Parameters
    ----------
    runs
        Validated run table.
    min_tokens
        Keep checkpoints with ``tokens >= min_tokens`` (default 10B; ``None`` disables).
    min_fraction
        Also keep only checkpoints with ``tokens >= min_fraction x`` the run's final tokens
        (``run_tokens`` when the column is present, else the last checkpoint).

    Returns
    -------
    pandas.DataFrame
    """
    keep = np.ones(len(runs), dtype=bool)
    if min_tokens is not None:
        keep &= runs["tokens"].to_numpy() >= float(min_tokens)
    if min_fraction is not None:
        if not 0 <= min_fraction < 1:
            raise ValueError(f"min_fraction must be in [0, 1); got {min_fraction}")
        cut = min_fraction * run_length(runs).to_numpy() * (1 - CUT_RTOL)
        keep &= runs["tokens"].to_numpy() >= cut
    return runs.loc[keep].reset_index(drop=True)


def run_length(runs: pd.DataFrame) -> pd.Series:
    """Each row's run length, the length that fractional cuts are taken of.

    Parameters
    ----------
    runs
        A run table with ``run`` and ``tokens`` (validated or not).

    Returns
    -------
    pandas.Series
        Per row (same index): ``schedule_tokens`` where given, else ``run_tokens``, else the
        run's last checkpoint.
    """
    length = runs.groupby("run")["tokens"].transform("max").astype(float)
    for col in ("run_tokens", "schedule_tokens"):
        if col in runs.columns:
            length = pd.to_numeric(runs[col], errors="coerce").astype(float).fillna(length)
    return length


#: Default start of the fitted part of every run, as a fraction of its length: the first
#: fifth of a run (past the LR warm-up, the loss still falls faster than any law in D) is left
#: out, as the Hitchhiker's guide leaves out the first 10B tokens.
DEFAULT_FIT_FROM = 0.2
#: Default start of the fitted part of a run whose learning-rate schedule is unknown: only its
#: end is close to the final loss of a run of that length.
DEFAULT_UNSCHEDULED_FROM = 0.9


#: Run lengths within this factor of each other count as one length (see :class:`FitWindow`).
_SAME_LENGTH = 1.5


def window_start(
    length: np.ndarray | pd.Series,
    unscheduled: np.ndarray | pd.Series,
    fit_from: float | None = DEFAULT_FIT_FROM,
    unscheduled_from: float | None = DEFAULT_UNSCHEDULED_FROM,
) -> np.ndarray:
    """Where the fitted part of each run starts: the fit-window rule.

    A run is fitted from ``fit_from`` of its length on, and a run without a learning-rate
    schedule from ``max(fit_from, unscheduled_from)`` on. :func:`fit_window` applies it to a
    run table and :func:`bayescale.next_runs` to the runs it simulates.

    Parameters
    ----------
    length
        Each run's (or row's) length in tokens, as :func:`run_length` gives it.
    unscheduled
        Whether each run (or row) has no learning-rate schedule, same shape as ``length``.
    fit_from
        Fraction of the length where every run's window starts (``None``: 0).
    unscheduled_from
        Fraction where the window of a run without a schedule starts at the earliest
        (``None``: as for the other runs).

    Returns
    -------
    numpy.ndarray
        The first token count of each window, of ``length``'s shape.

    Raises
    ------
    ValueError
        When a fraction in use lies outside [0, 1).
    """
    unscheduled = np.asarray(unscheduled, dtype=bool)
    frac = np.full(unscheduled.shape, 0.0 if fit_from is None else float(fit_from))
    if unscheduled_from is not None:
        frac[unscheduled] = np.maximum(frac[unscheduled], float(unscheduled_from))
    if np.any((frac < 0) | (frac >= 1)):
        raise ValueError("fit_from and unscheduled_from must be in [0, 1)")
    return frac * np.asarray(length, dtype=float)


@dataclass(frozen=True)
class FitWindow:
    """Which checkpoints a fit uses.

    Attributes
    ----------
    runs
        The selected rows (every run keeps at least its last checkpoint).
    unscheduled
        Runs without a learning-rate schedule fitted from ``unscheduled_from`` on.
    one_length
        Families whose runs without a schedule all end at one length (within a factor 1.5):
        fitted from ``unscheduled_from`` on, they say little about how the loss falls with D,
        so that part of the law comes mostly from the priors.
    dropped
        Rows left out.
    """

    runs: pd.DataFrame
    unscheduled: list[str]
    one_length: list[str]
    dropped: int


def fit_window(
    runs: pd.DataFrame,
    fit_from: float | None = DEFAULT_FIT_FROM,
    unscheduled_from: float | None = DEFAULT_UNSCHEDULED_FROM,
) -> FitWindow:
    """The checkpoints a schedule-aware fit uses.

    Parameters
    ----------
    runs
        Validated run table.
    fit_from
        Keep checkpoints from this fraction of each run's length on (``None``: all).
    unscheduled_from
        For runs without a learning-rate schedule (no ``schedule`` and no ``lr``), keep only
        checkpoints from this fraction of the run on: a mid-run checkpoint of a decaying
        schedule is not the final loss of a run of that length, not even where every run
        of a family ends at one length (its mid-run checkpoints would teach the law the LR
        decay as though it were data scaling). ``None``: keep every unscheduled run whole, as
        though the LR were constant.

    Returns
    -------
    FitWindow
    """
    from bayescale.data.validate import runs_without_schedule

    unscheduled = runs_without_schedule(runs)
    length = run_length(runs).to_numpy()
    names = runs["run"].astype(str).to_numpy()
    is_unscheduled = np.isin(names, unscheduled)
    one_length: list[str] = []
    if unscheduled:
        lengths = pd.DataFrame({"family": runs["family"].to_numpy(), "run": names,
                                "length": length})[is_unscheduled].groupby("run").first()
        spread = lengths.groupby("family")["length"].agg(lambda x: x.max() / x.min())
        one_length = [str(f) for f in spread.index[spread < _SAME_LENGTH]]
    start = window_start(length, is_unscheduled, fit_from, unscheduled_from)
    tokens = runs["tokens"].to_numpy(dtype=float)
    keep = tokens >= start * (1 - CUT_RTOL)
    keep |= runs.groupby("run")["tokens"].transform("max").to_numpy() == tokens
    fitted_late = unscheduled if unscheduled_from is not None else []
    return FitWindow(
        runs.loc[keep].reset_index(drop=True), fitted_late, one_length, int((~keep).sum())
    )


def has_replicates(runs: pd.DataFrame) -> bool:
    """Whether the run table has replicate runs: a ``config`` shared by two or more runs.

    Every config that is given must hold runs of one model size (as config effects need);
    otherwise the answer is ``False``.

    Parameters
    ----------
    runs
        Run table with ``family``, ``run``, ``params`` and optionally ``config``.

    Returns
    -------
    bool
    """
    if "config" not in runs.columns:
        return False
    given = runs[pd.notna(runs["config"])]
    if given.empty:
        return False
    groups = given.groupby([given["family"].astype(str), given["config"].astype(str)])
    return bool((groups["run"].nunique() >= 2).any() and (groups["params"].nunique() <= 1).all())


def thin_log_spaced(runs: pd.DataFrame, max_points: int = 40) -> pd.DataFrame:
    """Keep at most ``max_points`` checkpoints per run, roughly evenly spaced in log tokens.

    The first and last checkpoint of every run are always kept. Runs with fewer checkpoints
    are kept whole.

    Parameters
    ----------
    runs
        Validated run table (sorted by run and tokens, as :func:`bayescale.validate` returns).
    max_points
        Maximum checkpoints per run (at least 2).

    Returns
    -------
    pandas.DataFrame
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2; got {max_points}")
    keep: list[np.ndarray] = []
    for _, idx in runs.groupby("run", sort=False).indices.items():
        idx = idx[np.argsort(runs["tokens"].to_numpy()[idx], kind="stable")]
        if len(idx) <= max_points:
            keep.append(idx)
            continue
        log_t = np.log(runs["tokens"].to_numpy()[idx])
        grid = np.linspace(log_t[0], log_t[-1], max_points)
        right = np.searchsorted(log_t, grid).clip(1, len(idx) - 1)
        nearer_left = (grid - log_t[right - 1]) < (log_t[right] - grid)
        chosen = np.where(nearer_left, right - 1, right)
        keep.append(idx[np.unique(np.r_[0, chosen, len(idx) - 1])])
    order = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=int)
    return runs.iloc[order].reset_index(drop=True)


def max_param_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """``F_max``: all checkpoints of the runs with the largest parameter count of each family."""
    largest = runs.groupby("family")["params"].transform("max")
    return runs.loc[runs["params"] == largest].reset_index(drop=True)


def final_fraction(runs: pd.DataFrame, q: float = DEFAULT_TARGET_FRACTION) -> pd.DataFrame:
    """The q-maximal token family: checkpoints in the last ``q`` of each run.

    A checkpoint is kept when ``tokens >= (1 - q) x`` the run's final tokens.
    """
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1]; got {q}")
    final = runs.groupby("run")["tokens"].transform("max")
    return runs.loc[runs["tokens"] >= (1 - q) * final * (1 - CUT_RTOL)].reset_index(drop=True)


@dataclass(frozen=True)
class ProtocolSplit:
    """The Hitchhiker's split of one or more families.

    Attributes
    ----------
    train
        ``F_train``: checkpoints of the non-largest runs past the warm-up cut.
    target
        ``F_target``: checkpoints of the largest runs in the last ``target_fraction`` of the run.
    """

    train: pd.DataFrame
    target: pd.DataFrame


def protocol_split(
    runs: pd.DataFrame,
    warmup_tokens: float | None = DEFAULT_WARMUP_TOKENS,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
) -> ProtocolSplit:
    """Split each family into ``F_train`` and ``F_target`` as in the Hitchhiker's Guide.

    Parameters
    ----------
    runs
        Validated run table (one or several families).
    warmup_tokens
        Warm-up cut applied to ``F_train`` (default 10B tokens).
    target_fraction
        Fraction of the end of each ``F_max`` run that forms ``F_target`` (default 0.3).

    Returns
    -------
    ProtocolSplit
    """
    largest = runs.groupby("family")["params"].transform("max")
    is_max = (runs["params"] == largest).to_numpy()
    train = drop_warmup(runs.loc[~is_max], min_tokens=warmup_tokens)
    target = final_fraction(runs.loc[is_max], q=target_fraction)
    return ProtocolSplit(train=train, target=target)
