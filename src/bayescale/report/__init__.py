"""Reports of a fit: tables, figures and a self-contained HTML page.

Function API (the fit is always the first argument)::

    from bayescale import report
    report.credible_intervals(fit, level=0.9)        # tidy parameter table
    report.prediction_table(fit, targets)            # predictions (+ errors when truth known)
    report.to_markdown(df), report.to_latex(df)      # renderers
    report.plot_loss_curves(fit)                     # matplotlib figures (Agg-safe)
    report.html(fit, "report.html", comparisons=[...], predictions=table)
"""

from bayescale.report.html import figure_to_base64, html
from bayescale.report.plots import (
    plot_comparison,
    plot_forest,
    plot_loss_curves,
    plot_prediction_fan,
    plot_sigma_seed,
    replicate_spread,
)
from bayescale.report.table import (
    CREDIBLE_INTERVAL_COLUMNS,
    credible_intervals,
    data_summary,
    diagnostics_table,
    format_table,
    prediction_table,
    to_latex,
    to_markdown,
)

__all__ = [
    "CREDIBLE_INTERVAL_COLUMNS",
    "credible_intervals",
    "data_summary",
    "diagnostics_table",
    "figure_to_base64",
    "format_table",
    "html",
    "plot_comparison",
    "plot_forest",
    "plot_loss_curves",
    "plot_prediction_fan",
    "plot_sigma_seed",
    "prediction_table",
    "replicate_spread",
    "to_latex",
    "to_markdown",
]
