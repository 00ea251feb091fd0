"""Tidy tables of a fit: credible intervals of the parameters, predictions against targets, and
plain renderers to Markdown and LaTeX.

All functions take the fit as their first argument (no methods are added to the fit object).
The renderers are implemented here rather than with :meth:`pandas.DataFrame.to_markdown` /
:meth:`pandas.DataFrame.to_latex`, which need the optional packages ``tabulate`` and ``jinja2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale.intervals import DEFAULT_LEVELS
from bayescale.parameter_table import CREDIBLE_INTERVAL_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from bayescale.fit import ScalingLawFit
    from bayescale.kaplan_fit import KaplanFit

__all__ = [
    "CREDIBLE_INTERVAL_COLUMNS",
    "credible_intervals",
    "data_summary",
    "diagnostics_table",
    "format_table",
    "prediction_table",
    "to_latex",
    "to_markdown",
]


def credible_intervals(fit: ScalingLawFit | KaplanFit, level: float = 0.9) -> pd.DataFrame:
    """Credible intervals of the law parameters, per family and for the population.

    The same table as the fit's ``credible_intervals`` (see
    :func:`bayescale.parameter_table.parameter_intervals`).

    Parameters
    ----------
    fit
        A fitted :class:`bayescale.ScalingLawFit` or :class:`bayescale.KaplanFit`.
    level
        Probability of the central (equal-tailed) interval.

    Returns
    -------
    pandas.DataFrame
        One row per quantity with columns :data:`CREDIBLE_INTERVAL_COLUMNS`: ``parameter``,
        ``scope`` (``"family"``, ``"arch"``, ``"population"``, ``"noise"`` or ``"spread"``),
        ``group``, ``mean``, ``sd``, ``median``, ``lower``, ``upper``, ``level``, ``r_hat``,
        ``ess`` and ``ess_tail``.
    """
    return fit.credible_intervals(level=level)


def _key(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value)
    return None if text in ("", "nan", "None", "<NA>") else text


def prediction_table(
    fit: ScalingLawFit,
    targets: pd.DataFrame,
    levels: Sequence[float] = DEFAULT_LEVELS,
    random_seed: int | None = None,
) -> pd.DataFrame:
    """Predict the loss at each row of ``targets`` and, when the truth is known, score it.

    Parameters
    ----------
    fit
        A fitted :class:`bayescale.ScalingLawFit`.
    targets
        One row per prediction with columns ``params`` and ``tokens``, and optionally
        ``family`` (a family of the fit, or any other name for a new family), ``arch`` (a new
        family of that architecture), ``run`` (a run of the fit) and ``loss`` (the observed
        loss). Other columns (labels) are kept.
    levels
        Central interval probabilities of the bands.
    random_seed
        Seed of the predictive draws (default: the fit's seed).

    Returns
    -------
    pandas.DataFrame
        ``targets`` plus ``median`` and, for each band (``mean``, ``new_seed``, ``observed``;
        ``new_seed`` is absent for a known run) and level, ``<band>_lower_<pct>`` and
        ``<band>_upper_<pct>``. With a ``loss`` column also ``rel_error``
        (``median / loss - 1``), ``are`` (its absolute value) and boolean
        ``inside_<band>_<pct>`` (the truth lies inside that interval).
    """
    if not {"params", "tokens"} <= set(targets.columns):
        raise ValueError("targets needs columns 'params' and 'tokens'")
    frame = targets.reset_index(drop=True).copy()
    cols_present = [c for c in ("family", "arch", "run") if c in frame.columns]
    keys = [
        tuple(_key(frame[c].iloc[i]) if c in cols_present else None
              for c in ("family", "arch", "run"))
        for i in range(len(frame))
    ]
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    pieces: list[pd.DataFrame] = []
    for (fam, arch, run), members in groups.items():
        idx = np.asarray(members)
        if run is not None:
            fam = arch = None
        elif arch is not None and fam in fit.families:
            arch = None
        pred = fit.predict(
            frame.loc[idx, "params"].to_numpy(float),
            frame.loc[idx, "tokens"].to_numpy(float),
            family=fam,
            arch=arch,
            run=run,
            levels=levels,
            random_seed=random_seed,
        )
        cols: dict[str, np.ndarray] = {"median": pred["median"].values}
        for band in ("mean", "new_seed", "observed"):
            if band not in pred:
                continue
            for q in pred["level"].values:
                for bound in ("lower", "upper"):
                    cols[f"{band}_{bound}_{_pct(q)}"] = (
                        pred[band].sel(level=q, bound=bound).values
                    )
        pieces.append(pd.DataFrame(cols, index=idx))
    preds = pd.concat(pieces).sort_index()
    out = pd.concat([frame, preds], axis=1)
    if "loss" in out.columns:
        truth = out["loss"].to_numpy(float)
        out["rel_error"] = out["median"].to_numpy(float) / truth - 1
        out["are"] = np.abs(out["rel_error"])
        for col in [c for c in preds.columns if "_lower_" in c]:
            band, pct = col.split("_lower_")
            upper = out[f"{band}_upper_{pct}"].to_numpy(float)
            inside = (out[col].to_numpy(float) <= truth) & (truth <= upper)
            # rows with a missing band (a known run has no new_seed band) are False
            out[f"inside_{band}_{pct}"] = np.where(np.isnan(upper), False, inside).astype(bool)
    return out


def _pct(level: float) -> str:
    return f"{100 * float(level):g}"


# ---------------------------------------------------------------------------------------------
# renderers
# ---------------------------------------------------------------------------------------------
def format_table(df: pd.DataFrame, digits: int = 4, index: bool = False) -> pd.DataFrame:
    """A string copy of ``df``: floats with ``digits`` significant digits, booleans yes/no."""
    frame = df.reset_index() if index else df.copy()
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_bool_dtype(values):
            out[str(col)] = ["yes" if v else "no" for v in values]
        elif pd.api.types.is_float_dtype(values):
            out[str(col)] = [_fmt_float(v, digits) for v in values]
        else:
            out[str(col)] = ["" if _key(v) is None else str(v) for v in values]
    return out


def _fmt_float(value: float, digits: int) -> str:
    if value is None or not np.isfinite(value):
        return "" if value is None or np.isnan(value) else str(value)
    return f"{value:.{digits}g}"


def to_markdown(df: pd.DataFrame, digits: int = 4, index: bool = False) -> str:
    """Render ``df`` as a GitHub-flavoured Markdown table."""
    text = format_table(df, digits=digits, index=index)

    def cell(s: str) -> str:
        return s.replace("|", r"\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in text.columns) + " |"
    numeric = [
        pd.api.types.is_numeric_dtype(df.reset_index()[c] if index else df[c])
        and not pd.api.types.is_bool_dtype(df.reset_index()[c] if index else df[c])
        for c in (df.reset_index() if index else df).columns
    ]
    rule = "|" + "|".join("---:" if num else ":---" for num in numeric) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in text.to_numpy()]
    return "\n".join([header, rule, *body]) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(
    df: pd.DataFrame,
    digits: int = 4,
    index: bool = False,
    caption: str | None = None,
    label: str | None = None,
) -> str:
    """Render ``df`` as a LaTeX ``tabular`` (booktabs rules), in a ``table`` when captioned."""
    frame = df.reset_index() if index else df
    text = format_table(df, digits=digits, index=index)
    align = "".join(
        "r" if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        else "l"
        for c in frame.columns
    )
    lines = [
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(_latex_escape(c) for c in text.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_latex_escape(v) for v in row) + r" \\" for row in text.to_numpy()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption is None and label is None:
        return "\n".join(lines) + "\n"
    wrapped = [r"\begin{table}[ht]", r"\centering"]
    if caption is not None:
        wrapped.append(rf"\caption{{{_latex_escape(caption)}}}")
    if label is not None:
        wrapped.append(rf"\label{{{label}}}")
    return "\n".join([*wrapped, *lines, r"\end{table}"]) + "\n"


# ---------------------------------------------------------------------------------------------
# data and diagnostics summaries
# ---------------------------------------------------------------------------------------------
def data_summary(data: pd.DataFrame | ScalingLawFit) -> pd.DataFrame:
    """One row per family of a run table (or of a fit's data).

    Returns
    -------
    pandas.DataFrame
        Columns ``family``, ``arch`` (when the table has one), ``runs``, ``checkpoints``,
        ``sizes`` (distinct N), ``params_min``, ``params_max``, ``tokens_min``, ``tokens_max``,
        ``loss_min``, ``loss_max``.
    """
    df = data.data if hasattr(data, "idata") else data
    g = df.groupby("family", sort=True)
    out = pd.DataFrame(
        {
            "runs": g["run"].nunique(),
            "checkpoints": g.size(),
            "sizes": g["params"].nunique(),
            "params_min": g["params"].min().astype(float),
            "params_max": g["params"].max().astype(float),
            "tokens_min": g["tokens"].min().astype(float),
            "tokens_max": g["tokens"].max().astype(float),
            "loss_min": g["loss"].min().astype(float),
            "loss_max": g["loss"].max().astype(float),
        }
    )
    if "arch" in df.columns:
        out.insert(0, "arch", g["arch"].first().astype(str))
    out = out.reset_index()
    out["family"] = out["family"].astype(str)
    for col in ("runs", "checkpoints", "sizes"):
        out[col] = out[col].astype("int64")
    return out


def diagnostics_table(fit: ScalingLawFit) -> pd.DataFrame:
    """Sampler diagnostics of a fit as a one-row-per-check table (``check``, ``value``, ``ok``)."""
    d = fit.diagnostics
    post = fit.idata.posterior
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    rows = [
        ("chains x draws", float(chains * draws), True),
        ("divergent transitions", float(d.divergences), d.divergences == 0),
        ("max R-hat", float(d.max_rhat), not (np.isfinite(d.max_rhat) and d.max_rhat > 1.01)),
        ("min bulk ESS", float(d.min_ess_bulk), d.min_ess_bulk >= 100 * chains),
        ("min tail ESS", float(d.min_ess_tail), d.min_ess_tail >= 100 * chains),
        (
            "share at max tree depth",
            float(d.max_tree_depth_share),
            not (d.max_tree_depth_share > 0.05),
        ),
        ("sampling seconds", float(fit.meta.get("sampling_seconds", np.nan)), True),
    ]
    out = pd.DataFrame(rows, columns=["check", "value", "ok"])
    out["check"] = out["check"].astype(str)
    out["ok"] = out["ok"].astype(bool)
    return out
