"""One self-contained HTML page per report: tables inline, figures embedded as base64 PNG.

The page has no external resources (no scripts, stylesheets, fonts or images fetched from the
network), so it can be mailed or archived as a single file.

The page leads with the answer: a green or red convergence badge per fit, then the first fit's
loss curves with their bands, the prediction tables, the other fits' loss curves and the
comparisons; then the credible intervals, the other figures and the data. Sampler
diagnostics and the notes and caveats come last, collapsed (``<details>``), with a count in
their summary line.
"""

from __future__ import annotations

import base64
import html as _html
import io
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayescale.report.plots import (
    plot_comparison,
    plot_forest,
    plot_loss_curves,
    plot_sigma_seed,
)
from bayescale.report.table import (
    credible_intervals,
    data_summary,
    diagnostics_table,
    format_table,
    prediction_table,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from bayescale.compare import Comparison
    from bayescale.fit import ScalingLawFit
    from bayescale.inference import Diagnostics

__all__ = ["BADGE_ESS_PER_CHAIN", "BADGE_MAX_RHAT", "convergence", "figure_to_base64", "html"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1em auto;
       max-width: 1200px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #335; padding-bottom: .2em; margin: .2em 0 .1em 0;
     font-size: 1.6em; }
h2 { border-bottom: 1px solid #aab; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 12px; margin: .6em 0 1.2em 0; }
th, td { border: 1px solid #ccd; padding: 2px 6px; text-align: right; }
th { background: #eef; }
td { white-space: nowrap; }
.scroll { overflow-x: auto; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafaff; }
img { max-width: 100%; border: 1px solid #eee; margin: .4em 0; }
figure { margin: .4em 0; }
.lead h2 { margin: .5em 0 .2em 0; }
.lead img { max-height: 450px; width: auto; cursor: zoom-in; }
.lead img:focus { max-height: none; cursor: zoom-out; }
.note { background: #fffbe6; border-left: 4px solid #e6c200; padding: .4em .8em; }
.bad { color: #b00; font-weight: bold; }
.good { color: #070; }
.small { font-size: 11px; color: #666; margin: 0 0 .3em 0; }
.badges { margin: .3em 0; }
.badge { display: inline-block; padding: .15em .7em; border-radius: 1em; color: #fff;
         font-size: 13px; font-weight: bold; margin: 0 .5em .3em 0; text-decoration: none; }
.badge-ok { background: #1a7f37; }
.badge-fail { background: #c62828; }
details { margin-top: 1.5em; border: 1px solid #ccd; border-radius: 4px; padding: .3em .8em; }
details > summary { font-size: 1.2em; font-weight: bold; cursor: pointer; }
nav { font-size: 13px; }
nav a { margin-right: 1em; }
"""

#: Convergence thresholds of the badge, the same as ``Diagnostics.problems``: no divergent
#: transition, max R-hat at most this, bulk and tail ESS at least this many per chain.
BADGE_MAX_RHAT = 1.01
BADGE_ESS_PER_CHAIN = 100


def figure_to_base64(fig: Figure, dpi: int = 90, png_path: Path | None = None) -> str:
    """PNG bytes of ``fig`` as base64 text (and written to ``png_path`` when given)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    data = buf.getvalue()
    if png_path is not None:
        png_path.parent.mkdir(parents=True, exist_ok=True)
        png_path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "figure"


class _Page:
    """Accumulates HTML fragments and figures."""

    def __init__(self, png_dir: Path | None, dpi: int) -> None:
        self.parts: list[str] = []
        self.png_dir = png_dir
        self.dpi = dpi
        self.toc: list[tuple[str, str]] = []
        self.pngs: list[Path] = []

    def h(self, level: int, text: str) -> None:
        anchor = _slug(text)
        if level == 2:
            self.toc.append((anchor, text))
        self.parts.append(f'<h{level} id="{anchor}">{_html.escape(text)}</h{level}>')

    def p(self, text: str, cls: str | None = None) -> None:
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{_html.escape(text)}</p>")

    def raw(self, fragment: str) -> None:
        self.parts.append(fragment)

    def table(self, df: pd.DataFrame, digits: int = 4) -> None:
        text = format_table(df, digits=digits).to_html(
            index=False, escape=True, border=0, na_rep=""
        )
        self.parts.append(f"<div class='scroll'>{text}</div>")

    def figure(
        self, fig: Figure, name: str, caption: str | None = None, *, zoom: bool = False
    ) -> None:
        import matplotlib.pyplot as plt

        path = None
        if self.png_dir is not None:
            path = self.png_dir / f"{_slug(name)}.png"
            self.pngs.append(path)
        try:
            b64 = figure_to_base64(fig, dpi=self.dpi, png_path=path)
        finally:
            plt.close(fig)
        alt = _html.escape(caption or name)
        # a focusable image: the lead figure is shown smaller and grows when clicked (CSS only)
        focus = ' tabindex="0" title="click to enlarge"' if zoom else ""
        self.parts.append(
            f'<figure><img alt="{alt}"{focus} src="data:image/png;base64,{b64}"/>'
        )
        if caption:
            self.parts.append(f"<figcaption class='small'>{_html.escape(caption)}</figcaption>")
        self.parts.append("</figure>")

    def details(self, anchor: str, summary: str) -> None:
        """Open a collapsed block (closed with ``raw("</details>")``), listed in the contents."""
        self.toc.append((anchor, summary))
        self.parts.append(
            f'<details id="{anchor}"><summary>{_html.escape(summary)}</summary>'
        )

    def render(self, title: str, badges: Sequence[str] = ()) -> str:
        toc = " ".join(f'<a href="#{a}">{_html.escape(t)}</a>' for a, t in self.toc)
        stamp = time.strftime("%Y-%m-%d %H:%M")
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'/>"
            f"<title>{_html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_html.escape(title)}</h1><p class='small'>generated by bayescale on {stamp}"
            f"</p><div class='badges'>{''.join(badges)}</div><nav>{toc}</nav>"
            f"{''.join(self.parts)}</body></html>\n"
        )


def _as_mapping(obj: Any, default_name: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (list, tuple)):
        return {f"{getattr(o, 'a', default_name)} vs {getattr(o, 'b', i)}": o
                for i, o in enumerate(obj)}
    return {default_name: obj}


_BANDS = {"mean": "mean", "new_seed": "new seed", "observed": "observed"}


def _prediction_view(df: pd.DataFrame, level: float, digits: int = 4) -> pd.DataFrame:
    """The prediction table with only the ``level`` bands, one ``[lower, upper]`` column each.

    A band's cell ends in a check mark when the true loss is inside it and a cross when not
    (where the table has the truth). All levels and bounds stay in the CSV.
    """
    pct = f"{100 * level:g}"
    band_like = ("mean_", "new_seed_", "observed_", "inside_")
    out = df[[c for c in df.columns if not c.startswith(band_like)]].copy()
    at = list(out.columns).index("median") + 1 if "median" in out.columns else len(out.columns)
    for band, label in _BANDS.items():
        lo, hi = f"{band}_lower_{pct}", f"{band}_upper_{pct}"
        if lo not in df.columns or hi not in df.columns:
            continue
        cells = [
            f"[{a:.{digits}g}, {b:.{digits}g}]" for a, b in zip(df[lo], df[hi], strict=True)
        ]
        inside = f"inside_{band}_{pct}"
        if inside in df.columns:
            marks = {True: "\u2713", False: "\u2717"}
            cells = [f"{c} {marks[bool(v)]}" for c, v in zip(cells, df[inside], strict=True)]
        out.insert(at, f"{label} {pct}%", cells)
        at += 1
    return out


_PARAM_COLUMNS = ["parameter", "scope", "group", "mean", "median", "lower", "upper", "r_hat", "ess"]


def convergence(diagnostics: Diagnostics, n_chains: int) -> tuple[bool, list[str]]:
    """Whether a fit passes the badge's convergence checks, and why not.

    Parameters
    ----------
    diagnostics
        The fit's :class:`~bayescale.inference.Diagnostics` (``fit.diagnostics``).
    n_chains
        Number of chains the fit ran.

    Returns
    -------
    tuple of (bool, list of str)
        ``True`` when there is no divergent transition, the max R-hat is at most
        :data:`BADGE_MAX_RHAT` and both the bulk and the tail ESS reach
        :data:`BADGE_ESS_PER_CHAIN` per chain (the thresholds of
        :meth:`~bayescale.inference.Diagnostics.problems`); else ``False`` and the failed
        checks, one short phrase each. With a single chain R-hat cannot be computed, so
        convergence is not shown and the fit fails.
    """
    reasons = []
    if diagnostics.divergences > 0:
        s = "s" if diagnostics.divergences > 1 else ""
        reasons.append(f"{diagnostics.divergences} divergence{s}")
    rhat = diagnostics.max_rhat
    if not np.isfinite(rhat):
        reasons.append("R-hat not computable (one chain)" if n_chains < 2 else "R-hat is nan")
    elif rhat > BADGE_MAX_RHAT:
        reasons.append(f"max R-hat {rhat:.3f} > {BADGE_MAX_RHAT:g}")
    need = BADGE_ESS_PER_CHAIN * n_chains
    ess = min(diagnostics.min_ess_bulk, diagnostics.min_ess_tail)
    if not ess >= need:  # also catches nan
        reasons.append(f"min ESS {ess:.0f} < {need}")
    return not reasons, reasons


def _badge(name: str, diagnostics: Diagnostics, n_chains: int) -> str:
    """A green or red link to the fit's diagnostics, saying why it is red."""
    ok, reasons = convergence(diagnostics, n_chains)
    label = f"{name}: " if name else ""
    if ok:
        text = f"\u2713 {label}converged"
        detail = (
            f"0 divergences, max R-hat {diagnostics.max_rhat:.3f} <= {BADGE_MAX_RHAT:g}, "
            f"min ESS {min(diagnostics.min_ess_bulk, diagnostics.min_ess_tail):.0f} >= "
            f"{BADGE_ESS_PER_CHAIN * n_chains}"
        )
    else:
        text = f"\u2717 {label}not converged: {'; '.join(reasons)}"
        detail = "; ".join(reasons) + " (see the sampler diagnostics below)"
    return (
        f'<a class="badge badge-{"ok" if ok else "fail"}" href="#diagnostics" '
        f'data-converged="{str(ok).lower()}" title="{_html.escape(detail)}">'
        f"{_html.escape(text)}</a>"
    )


def _loss_curves(
    page: _Page,
    prefix: str,
    fit: ScalingLawFit,
    *,
    held_out: pd.DataFrame | None,
    level: float,
    max_curve_families: int,
    curve_families: Sequence[str] | None,
    lead: bool,
) -> None:
    page.h(2, f"{prefix}loss curves")
    families = list(curve_families) if curve_families else fit.families[:max_curve_families]
    if len(families) < len(fit.families):
        page.p(f"Loss curves of {len(families)} of the {len(fit.families)} families.")
    page.figure(
        plot_loss_curves(fit, families, held_out=held_out, level=level),
        f"{prefix}loss curves",
        caption="Data (dots), held-out checkpoints (red circles; grey: early checkpoints the "
        "fit would have left out, e.g. mid-run losses of a run whose learning-rate schedule "
        "is unknown), median curves and nested "
        f"{100 * level:g}% bands: curve, + seed variability, + checkpoint noise."
        + (" Click the figure to enlarge it." if lead else ""),
        zoom=lead,
    )


def _parameters(page: _Page, prefix: str, fit: ScalingLawFit, level: float) -> pd.DataFrame:
    page.h(2, f"{prefix}parameters")
    ci = credible_intervals(fit, level=level)
    page.p(
        f"Posterior means, medians and central {100 * level:g}% credible intervals of "
        "L = E + A/N^alpha + B/D^beta per family, per architecture level (its centre), for the "
        "population, and the noise scales on log-loss (sigma_seed: seed-to-seed offset; "
        "sigma_obs: checkpoint noise)."
    )
    page.table(ci[_PARAM_COLUMNS])
    return ci


def _data(page: _Page, prefix: str, fit: ScalingLawFit) -> None:
    page.h(2, f"{prefix}data")
    opts = fit.options.to_dict() if hasattr(fit.options, "to_dict") else {}
    page.p(
        f"{len(fit.families)} families, {fit.data['run'].nunique()} runs, {len(fit.data)} "
        f"checkpoints. Hierarchy: {' > '.join(opts.get('hierarchy', ('family',)))}; "
        f"likelihood {opts.get('likelihood', 'normal')}, "
        f"autocorrelation {opts.get('autocorrelation', 'none')}."
    )
    page.table(data_summary(fit.data))


def _diagnostics(
    page: _Page, name: str, fit: ScalingLawFit, diagnostics: Diagnostics, n_chains: int
) -> None:
    if name:
        page.h(3, name)
    page.table(diagnostics_table(fit))
    problems = diagnostics.problems(n_chains)
    if problems:
        page.raw("<ul>" + "".join(f"<li class='bad'>{_html.escape(x)}</li>" for x in problems)
                 + "</ul>")
    else:
        page.p("All sampler checks passed.", cls="good")


def _predictions(
    page: _Page, preds: Mapping[str, pd.DataFrame], first: ScalingLawFit, level: float
) -> None:
    page.h(2, "predictions")
    for name, df in preds.items():
        if "median" not in df.columns:
            df = prediction_table(first, df, levels=(0.5, level))
        if len(preds) > 1:
            page.h(3, name)
        page.table(_prediction_view(df, level))
        legend = (
            f"Median and central {100 * level:g}% bands of the prediction: mean (parameter "
            "uncertainty), new seed (+ seed-to-seed variability), observed (+ checkpoint noise)"
        )
        if any(c.startswith("inside_") for c in df.columns):
            legend += "; \u2713 or \u2717: the true loss is inside or outside the band"
        page.p(legend + ".", cls="small")
        if "are" in df.columns:
            cover = [c for c in df.columns if c.startswith("inside_")]
            text = f"Mean absolute relative error of the median: {100 * df['are'].mean():.2f}%"
            if cover:
                text += "; share of truths inside: " + ", ".join(
                    f"{c.removeprefix('inside_')} {100 * df[c].mean():.0f}%" for c in cover
                )
            page.p(text + ".")


def _comparisons(page: _Page, comps: Mapping[str, Comparison], level: float) -> None:
    page.h(2, "comparisons")
    page.p(
        "Differences are a - b on the same posterior draws; negative means a has the lower "
        "loss. The ROPE is the region of practical equivalence on the relative difference "
        "(the Hitchhiker's Guide treats ~4% as the smallest effect people act on, with "
        "~3.5% seed noise). For an architecture the curve is a new family drawn from its "
        "level; its parameter contrasts use the level's centre."
    )
    for name, comp in comps.items():
        page.h(3, name)
        summary = comp.summary()
        cols = [c for c in summary.columns if c not in ("sd", "n_draws", "description")]
        page.table(summary[cols])
        page.figure(plot_comparison(comp, level=level), f"comparison {name}")


def html(
    fit: ScalingLawFit | Mapping[str, ScalingLawFit],
    path: str | Path,
    comparisons: Comparison | Sequence[Comparison] | Mapping[str, Comparison] | None = None,
    predictions: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None,
    *,
    title: str = "bayescale report",
    notes: str | Sequence[str] | None = None,
    held_out: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None,
    figures: Mapping[str, Figure] | None = None,
    level: float = 0.9,
    png_dir: str | Path | None = None,
    max_curve_families: int = 12,
    curve_families: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    dpi: int = 90,
) -> Path:
    """Write one self-contained HTML report.

    The page leads with the answer. Under the title, one badge per fit says whether it
    converged (:func:`convergence`: green, or red with the failed checks). Then come the
    first fit's loss curves with their bands, the prediction tables, the other fits' loss
    curves and the comparisons; then each fit's credible intervals, its forest and
    seed-variability figures, the extra ``figures`` and the data. Last, collapsed, are the
    notes and caveats (``notes`` and the comparisons' notes) and the sampler diagnostics.

    Parameters
    ----------
    fit
        A fit, or several as ``{name: fit}`` (one set of sections each).
    path
        Output file (folders are created).
    comparisons
        :class:`bayescale.compare.Comparison` results (one, a list, or ``{name: comparison}``):
        their summary tables and :func:`~bayescale.report.plots.plot_comparison` figures.
    predictions
        Prediction tables (from :func:`~bayescale.report.table.prediction_table`), or target
        tables without predictions (then predicted with the first fit); one or ``{name: df}``.
    title
        Page title.
    notes
        Paragraphs listed under "Notes and caveats" (e.g. what was left out of the fit),
        collapsed at the end of the page.
    held_out
        Held-out checkpoints drawn on the loss curves (one table, or ``{fit name: table}``).
    figures
        Extra figures ``{caption: figure}`` in their own section.
    level
        Interval probability of tables and bands.
    png_dir
        Also write every figure as a PNG file there.
    max_curve_families
        Largest number of families drawn in the loss-curve figure of each fit.
    curve_families
        Families to draw in the loss-curve figure (a list, or ``{fit name: list}``); default:
        the first ``max_curve_families``.
    dpi
        Resolution of the embedded PNGs.

    Returns
    -------
    pathlib.Path
        The HTML file written. With ``png_dir``, the figures are also written there as
        ``<section-name>.png`` (e.g. ``loss-curves.png``, ``comparison-dense-vs-s-base.png``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = _Page(Path(png_dir) if png_dir is not None else None, dpi)
    fits = _as_mapping(fit, "fit")
    if not fits:
        raise ValueError("html needs at least one fit")
    multi = len(fits) > 1
    prefix = {name: f"{name}: " if multi else "" for name in fits}
    held = held_out if isinstance(held_out, Mapping) else dict.fromkeys(fits, held_out)
    if curve_families is None or isinstance(curve_families, Mapping):
        chosen = dict(curve_families or {})
    else:
        chosen = {key: list(curve_families) for key in fits}
    diags = {name: f.diagnostics for name, f in fits.items()}
    chains = {name: int(f.idata.posterior.sizes["chain"]) for name, f in fits.items()}
    badges = [_badge(name if multi else "", diags[name], chains[name]) for name in fits]

    def curves(name: str, lead: bool) -> None:
        _loss_curves(
            page,
            prefix[name],
            fits[name],
            held_out=held.get(name),
            level=level,
            max_curve_families=max_curve_families,
            curve_families=chosen.get(name),
            lead=lead,
        )

    # the answer: the first fit's curves and bands, the predictions, the comparisons
    names = list(fits)
    page.raw("<div class='lead'>")
    curves(names[0], lead=True)
    preds = _as_mapping(predictions, "predictions")
    if preds:
        _predictions(page, preds, fits[names[0]], level)
    page.raw("</div>")
    for name in names[1:]:
        curves(name, lead=False)
    comps = _as_mapping(comparisons, "comparison")
    if comps:
        _comparisons(page, comps, level)

    # then the credible intervals, the other figures and the data
    for name, f in fits.items():
        _parameters(page, prefix[name], f, level)
    for name, f in fits.items():
        page.h(2, f"{prefix[name]}figures")
        page.figure(plot_forest(f, hdi_prob=level), f"{prefix[name]}forest")
        page.figure(plot_sigma_seed(f, level=level), f"{prefix[name]}sigma seed")
    if figures:
        page.h(2, "more figures")
        for caption, fig in figures.items():
            page.figure(fig, caption, caption=caption)
    for name, f in fits.items():
        _data(page, prefix[name], f)

    # collapsed: the caveats and the sampler diagnostics
    note_list = [notes] if isinstance(notes, str) else list(notes or [])
    note_list += [f"{name}: {note}" for name, comp in comps.items() for note in comp.notes]
    page.details("notes", f"Notes and caveats ({len(note_list)})")
    if note_list:
        page.raw("".join(f'<p class="note">{_html.escape(n)}</p>' for n in note_list))
    else:
        page.p("None.")
    page.raw("</details>")
    n_problems = sum(len(diags[name].problems(chains[name])) for name in fits)
    plural = "" if n_problems == 1 else "s"
    page.details("diagnostics", f"Sampler diagnostics ({n_problems} problem{plural})")
    for name, f in fits.items():
        _diagnostics(page, name if multi else "", f, diags[name], chains[name])
    page.raw("</details>")

    path.write_text(page.render(title, badges), encoding="utf-8")
    return path
