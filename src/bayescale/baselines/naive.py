"""The two naive baselines of the Hitchhiker's guide: the lowest training loss, and the loss of
the training model with the largest ``N * D``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayescale.baselines.base import ConstantFit, checked_columns, family_name

__all__ = ["best_loss_baseline", "most_trained_baseline"]


def best_loss_baseline(df: pd.DataFrame) -> ConstantFit:
    """Predict the lowest loss in the training data for every target.

    Parameters
    ----------
    df
        Run table with columns ``params``, ``tokens``, ``loss``.

    Returns
    -------
    ConstantFit
        ``method="best_loss"``; ``info`` names the row (``index``, ``params``, ``tokens``,
        ``run`` when present).
    """
    _, _, loss = checked_columns(df, need_law=False)
    i = int(np.argmin(loss))
    return ConstantFit("best_loss", float(loss[i]), len(loss), info=_row_info(df, [i]))


def most_trained_baseline(df: pd.DataFrame) -> ConstantFit:
    """Predict the loss of the training model with the largest ``N * D``.

    That is the last checkpoint of the run that maximizes ``N * D``. If several rows share the
    largest ``N * D`` (e.g. seeds of the same size and length), their losses are averaged.

    Parameters
    ----------
    df
        Run table with columns ``params``, ``tokens``, ``loss``.

    Returns
    -------
    ConstantFit
        ``method="most_trained"``; ``info`` names the row(s) used.
    """
    n, d, loss = checked_columns(df, need_law=False)
    compute = n * d
    top = np.flatnonzero(compute >= compute.max() * (1 - 1e-12))
    return ConstantFit(
        "most_trained", float(loss[top].mean()), len(loss), info=_row_info(df, top.tolist())
    )


def _row_info(df: pd.DataFrame, positions: list[int]) -> dict[str, Any]:
    rows = df.iloc[positions]
    info: dict[str, Any] = {
        "index": rows.index.tolist(),
        "params": rows["params"].astype(float).tolist(),
        "tokens": rows["tokens"].astype(float).tolist(),
        "family": family_name(df),
    }
    if "run" in df.columns:
        info["run"] = rows["run"].tolist()
    return info
