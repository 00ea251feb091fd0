r"""A learning-rate-schedule-aware Chinchilla law that reduces to ``L(N, D)`` at a run's end.

Derivation
----------
With a decaying LR, a checkpoint at ``t`` tokens of a run whose schedule ends at ``T`` is not
the final loss of a run trained to ``t``: its LR is still high, and the loss falls fastest when
the LR anneals, so curves of runs with different budgets cross. The LR-annealing law of Tissue
et al. (2024) writes the loss as a function of two areas under the LR fraction
``h = lr / lr_peak``:

.. math:: L(t) = L_0 + A\,S_1(t)^{-\alpha} - C\,S_2(t),

the forward area :math:`S_1(t) = \int_0^t h` and the annealing area with momentum
:math:`S_2`. With momentum :math:`\lambda` per step, :math:`(1-\lambda) S_2(t)` is the LR drop so
far seen through an exponential lag of :math:`1/(1-\lambda)` steps, i.e. :math:`1 - g(t)` with
:math:`g` the lagged LR fraction (:mod:`bayescale.data.schedule`). So ``-C S_2`` is
``C' (g(t) - 1)``: linear in the lagged LR.

bayescale keeps the Chinchilla law as the law of *final* losses and adds the schedule as a
within-run correction that vanishes at the end of every run's schedule:

.. math::

   \log L(t) = \log\bigl(E + A/N^\alpha + B/D_\mathrm{eff}(t)^\beta\bigr)
               + \kappa\,\bigl(g(t) - g(T)\bigr),
   \qquad D_\mathrm{eff}(t) = T\,\frac{S_1(t)}{S_1(T)}.

* :math:`D_\mathrm{eff}` is the forward area in units where the whole schedule counts ``T``
  tokens: the checkpoint has progressed as far as a completed run of :math:`D_\mathrm{eff}`
  tokens would have, had it not annealed (Tissue et al.'s :math:`S_1` term, normalised).
* :math:`\kappa\,(g(t) - g(T)) \ge 0` is the excess loss of a checkpoint whose LR has not yet
  annealed (their :math:`S_2` term, on the log scale so that it scales with the loss).
  :math:`\kappa` is a family parameter, hierarchical like the others.

At the end of a run's schedule (``t = T``) both corrections vanish, :math:`D_\mathrm{eff} = T`
and the law *is* ``E + A/N^alpha + B/T^beta``: fits of final losses and of whole curves share
their parameters, and a prediction for "a run trained to ``D`` with the training runs' kind of
schedule" is the Chinchilla form at ``D``. A constant schedule without warm-up gives
:math:`D_\mathrm{eff} = t` and a zero excess, i.e. the plain law at every checkpoint.

The approximation: runs with different schedule *shapes* that end at the same ``T`` are given
the same final loss (Hägele et al. 2024 find a constant LR with a cooldown matches cosine).

Within-run tilt
---------------
Fitted to whole runs, the two corrections above leave a misfit that depends on how long a run is
for its model size: on the OLMo ladder (cosine to 10%, runs of 0.5 to 10 times 20 tokens per
parameter), free per-run slopes of the residual in :math:`\log(T/D_\mathrm{eff})` fall from
about +0.05 at 10 tokens per parameter to about 0 at 200, nearly the same at every model size.
Left in, that misfit is read as data scaling: the checkpoints pull ``beta`` to twice what the
runs' final losses say, and the law fitted to checkpoints extrapolates worse than one fitted to
final losses. The law therefore carries one more term, a tilt of each run's curve that vanishes
at its schedule's end:

.. math::

   \log L(t) \mathrel{+}= \lambda\,v, \qquad
   v = \frac{20\,N}{T}\,\log\frac{T}{D_\mathrm{eff}(t)},

with one coefficient :math:`\lambda` for the fit (:func:`tilt_covariate`; 20 tokens per
parameter makes :math:`\lambda` the slope of a Chinchilla-length run). Like the other two
terms it is zero at ``t = T``, so the law of final losses is untouched; it only stops the shape
of runs from standing in for the scaling of their ends. Runs without a schedule, and runs whose
LR never anneals (a constant schedule: every checkpoint is then a final loss), get
:math:`v = 0`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Prior median of ``kappa``: a few per cent of the loss between peak and annealed LR.
DEFAULT_KAPPA = 0.05


def effective_tokens(area: Any, area_end: Any, schedule_end: Any) -> Any:
    """``D_eff = T S1(t) / S1(T)``: the forward area in tokens of a whole schedule.

    Parameters
    ----------
    area, area_end
        Forward area ``S1`` at the checkpoint and at the end of its run's schedule.
    schedule_end
        Where the run's schedule ends (``T``, tokens).

    Returns
    -------
    array-like
        Effective tokens (equal to ``T`` at the schedule's end).
    """
    return np.asarray(schedule_end, dtype=float) * np.asarray(area, dtype=float) / np.asarray(
        area_end, dtype=float
    )


#: Tokens per parameter at which the tilt covariate's run-length factor ``20 N / T`` is 1.
TILT_TOKENS_PER_PARAM = 20.0


def tilt_covariate(params: Any, d_eff: Any, schedule_end: Any) -> Any:
    """The within-run tilt covariate ``v = (20 N / T) log(T / D_eff)``: 0 at the schedule's end.

    Parameters
    ----------
    params
        Model size ``N`` of each checkpoint's run.
    d_eff
        Effective tokens (:func:`effective_tokens`).
    schedule_end
        Where the run's schedule ends (``T``, tokens).

    Returns
    -------
    array-like
    """
    end = np.asarray(schedule_end, dtype=float)
    ratio = TILT_TOKENS_PER_PARAM * np.asarray(params, dtype=float) / end
    return ratio * np.log(end / np.asarray(d_eff, dtype=float))


def anneal_excess(anneal: Any, anneal_end: Any) -> Any:
    """The covariate ``s = g(t) - g(T)`` multiplying ``kappa``: 0 at the schedule's end."""
    return np.asarray(anneal, dtype=float) - np.asarray(anneal_end, dtype=float)


def schedule_covariates(
    runs: Any, lag_steps: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-row ``(D_eff, s, v, scheduled)`` of a run table sorted by run and tokens.

    ``v`` is the tilt covariate (:func:`tilt_covariate`). Rows of runs without a schedule (no
    ``lr`` and no ``schedule``) get ``D_eff = tokens`` and ``s = v = 0``, i.e. the plain law;
    ``scheduled`` says which rows have one.

    Parameters
    ----------
    runs
        Validated run table (``family, run, params, tokens`` and the schedule columns of
        :mod:`bayescale.data.schedule`).
    lag_steps
        The loss's memory for the LR in steps (default
        :data:`bayescale.data.schedule.DEFAULT_LAG_STEPS`).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray)
    """
    import pandas as pd

    from bayescale.data.schedule import DEFAULT_LAG_STEPS, schedule_features

    tokens = runs["tokens"].to_numpy(dtype=float)
    d_eff, excess, tilt = tokens.copy(), np.zeros(len(runs)), np.zeros(len(runs))
    scheduled = np.zeros(len(runs), dtype=bool)
    if "schedule" in runs.columns:
        scheduled |= pd.notna(runs["schedule"]).to_numpy()
    if "lr" in runs.columns:
        # a logged LR describes a run only where every one of its checkpoints has one
        scheduled |= pd.notna(runs["lr"]).groupby(runs["run"]).transform("all").to_numpy()
    if not scheduled.any():
        return d_eff, excess, tilt, scheduled
    rows = runs.loc[scheduled]
    feats = schedule_features(rows, DEFAULT_LAG_STEPS if lag_steps is None else lag_steps)
    d_eff[scheduled] = effective_tokens(feats.area, feats.area_end, feats.schedule_end)
    excess[scheduled] = anneal_excess(feats.anneal, feats.anneal_end)
    v = tilt_covariate(rows["params"].to_numpy(dtype=float), d_eff[scheduled], feats.schedule_end)
    # a run whose LR never anneals (a constant schedule) keeps the plain law at every checkpoint
    anneals = pd.Series(np.abs(excess[scheduled]) > 1e-9).groupby(
        rows["run"].to_numpy()).transform("any").to_numpy()
    tilt[scheduled] = np.where(anneals, v, 0.0)
    return d_eff, excess, tilt, scheduled


def point_schedule(
    params: np.ndarray, tokens: np.ndarray, schedule: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(D_eff, s, v)`` at prediction points under a target run's schedule.

    Parameters
    ----------
    params, tokens
        The broadcast prediction points.
    schedule
        ``None``: every point is the end of its own run (``D_eff = tokens``, ``s = 0``). A
        mapping of schedule columns: the points are checkpoints of one run with that schedule.
        A DataFrame with one row per point: its ``run`` and schedule columns (rows of one run
        in token order).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
    """
    import pandas as pd

    tokens = np.asarray(tokens, dtype=float)
    if schedule is None:
        return tokens.copy(), np.zeros_like(tokens), np.zeros_like(tokens)
    if isinstance(schedule, pd.DataFrame):
        if len(schedule) != tokens.size:
            raise ValueError(
                f"schedule has {len(schedule)} rows for {tokens.size} prediction points"
            )
        frame = schedule.reset_index(drop=True).copy()
        if "run" not in frame.columns:
            raise ValueError("a schedule DataFrame needs a 'run' column")
    else:
        frame = pd.DataFrame({k: [v] * tokens.size for k, v in dict(schedule).items()})
        frame["run"] = "(predicted run)"
    frame["tokens"] = tokens
    frame["params"] = np.asarray(params, dtype=float)
    # features are computed per run in token order, then put back in the points' order
    order = np.lexsort((frame["tokens"].to_numpy(), frame["run"].astype(str).to_numpy()))
    d_eff, excess, tilt, _ = schedule_covariates(frame.iloc[order].reset_index(drop=True))
    out_d, out_s, out_v = np.empty_like(tokens), np.empty_like(tokens), np.empty_like(tokens)
    out_d[order], out_s[order], out_v[order] = d_eff, excess, tilt
    return out_d, out_s, out_v
