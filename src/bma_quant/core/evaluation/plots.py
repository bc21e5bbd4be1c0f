"""Plotly figures of the evaluation (DESIGN section 6): cumulative IC, equity curve with drawdown,
mean return by quantile, IC by regime and feature importance.

Each function takes the long frames of ``core.evaluation.test_period.EvaluationResult`` (or a feature
importance table) and returns a ``plotly.graph_objects.Figure``; saving is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bma_quant.core.evaluation.test_period import ALL_SCOPE, MODEL, SCOPE, ordered_models

TEMPLATE = "plotly_white"
# One colour per model, more than the evaluation draws (13 upstream names): plotly's and
# matplotlib's cycles of 10 gave `final` the first model's colour. `final` itself is drawn
# black and dashed, so the member it copies (the chosen method) still shows beneath it.
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39",
                 "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363")
HIGHLIGHT = "final"
HIGHLIGHT_COLOUR = "#000000"


def model_colours(models: Sequence[str], highlight: str = HIGHLIGHT) -> dict[str, str]:
    """A distinct colour per model in `models` order (cycling past 20), `highlight` black."""
    others = [m for m in models if m != highlight]
    colours = {m: MODEL_COLOURS[k % len(MODEL_COLOURS)] for k, m in enumerate(others)}
    return {**colours, highlight: HIGHLIGHT_COLOUR}


def _line(model: str, colours: dict[str, str], highlight: str = HIGHLIGHT) -> dict:
    return ({"color": colours[model], "width": 2.5, "dash": "dash"} if model == highlight
            else {"color": colours[model], "width": 1.5})


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, template=TEMPLATE)
    return fig


def cumulative_ic_figure(daily_ic: pd.DataFrame, models: Sequence[str] | None = None) -> go.Figure:
    """Cumulative daily IC (top) and RankIC (bottom) per model over the test period."""
    title = "Cumulative IC and RankIC (test period)"
    if daily_ic.empty:
        return _empty(title, "no IC dates")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("cumulative IC", "cumulative RankIC"))
    names = models or ordered_models(daily_ic[MODEL].unique())
    colours = model_colours(names)
    for model in names:
        part = daily_ic.loc[daily_ic[MODEL] == model].sort_values("date")
        for row, column in ((1, "ic"), (2, "rank_ic")):
            fig.add_trace(
                go.Scatter(x=part["date"], y=part[column].cumsum(), mode="lines", name=model,
                           legendgroup=model, showlegend=row == 1, line=_line(model, colours)),
                row=row, col=1,
            )
    fig.update_layout(title=title, template=TEMPLATE, height=650, hovermode="x unified")
    return fig


def equity_curve_figure(
    daily_returns: pd.DataFrame, models: Sequence[str] | None = None, highlight: str = "final"
) -> go.Figure:
    """Long-short equity (net of costs) per model, and the drawdown of ``highlight`` below."""
    title = "Long-short equity curve and drawdown (test period, net of costs)"
    if daily_returns.empty:
        return _empty(title, "no backtest days")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.7, 0.3], subplot_titles=("equity", f"drawdown: {highlight}"))
    names = models or ordered_models(daily_returns[MODEL].unique())
    colours = model_colours(names, highlight)
    for model in names:
        part = daily_returns.loc[daily_returns[MODEL] == model].sort_values("date")
        fig.add_trace(
            go.Scatter(x=part["date"], y=part["equity"], mode="lines", name=model,
                       line=_line(model, colours, highlight)),
            row=1, col=1,
        )
    focus = daily_returns.loc[daily_returns[MODEL] == highlight].sort_values("date")
    if not focus.empty:
        fig.add_trace(
            go.Scatter(x=focus["date"], y=focus["drawdown"], mode="lines", fill="tozeroy",
                       name=f"{highlight} drawdown", line={"color": "firebrick"}),
            row=2, col=1,
        )
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    fig.update_layout(title=title, template=TEMPLATE, height=650, hovermode="x unified")
    return fig


def quantile_returns_figure(quantile_returns: pd.DataFrame,
                            models: Sequence[str] | None = None) -> go.Figure:
    """Mean realised label (h-day forward return) by prediction quantile, a bar group per model."""
    title = "Mean forward return by prediction quantile (1 = lowest)"
    if quantile_returns.empty:
        return _empty(title, "no quantiles")
    fig = go.Figure()
    names = models or ordered_models(quantile_returns[MODEL].unique())
    colours = model_colours(names)
    for model in names:
        part = quantile_returns.loc[quantile_returns[MODEL] == model].sort_values("quantile")
        fig.add_trace(go.Bar(x=part["quantile"].astype(str), y=part["mean_label"], name=model,
                             marker_color=colours[model]))
    fig.update_layout(title=title, template=TEMPLATE, barmode="group",
                      xaxis_title="prediction quantile", yaxis_title="mean label",
                      yaxis_tickformat=".2%")
    return fig


def ic_by_regime_figure(table: pd.DataFrame, metric: str = "rank_ic") -> go.Figure:
    """Mean ``metric`` per model for every scope (all dates and each regime)."""
    title = f"Test {metric} by regime"
    if table.empty:
        return _empty(title, "no evaluation rows")
    fig = go.Figure()
    models = ordered_models(table[MODEL].unique())
    scopes = [ALL_SCOPE] + [s for s in ("bull", "neutral", "bear") if s in set(table[SCOPE])]
    scopes += sorted(set(table[SCOPE]) - set(scopes))
    for scope in scopes:
        part = table.loc[table[SCOPE] == scope].set_index(MODEL).reindex(models)
        fig.add_trace(go.Bar(x=models, y=part[metric], name=scope))
    fig.update_layout(title=title, template=TEMPLATE, barmode="group", yaxis_title=metric)
    return fig


def feature_importance_figure(importance: pd.DataFrame | None, top_n: int = 25) -> go.Figure:
    """Horizontal bars of feature importance, one trace per model (mean over models ranks them).

    ``importance``: long (feature, importance[, model]) or wide (feature + one column per model).
    Importances are normalised per model to sum to 1 so models with different scales compare.
    """
    title = "Feature importance (normalised per model)"
    if importance is None or importance.empty or "feature" not in importance:
        return _empty(title, "no feature importance available")
    if "importance" in importance:
        long = importance.assign(model=importance.get(MODEL, "model"))
    else:
        value_cols = [c for c in importance.columns if c != "feature"]
        long = importance.melt(id_vars="feature", value_vars=value_cols, var_name=MODEL,
                               value_name="importance")
    long = long.assign(importance=long["importance"].abs())
    totals = long.groupby(MODEL)["importance"].transform("sum")
    long = long.assign(share=long["importance"] / totals.where(totals > 0))
    order = long.groupby("feature")["share"].mean().sort_values(ascending=False).index[:top_n]
    fig = go.Figure()
    for model in ordered_models(long[MODEL].unique()):
        part = long.loc[long[MODEL] == model].set_index("feature").reindex(order[::-1])
        fig.add_trace(go.Bar(y=list(order[::-1]), x=part["share"], name=model, orientation="h"))
    fig.update_layout(title=title, template=TEMPLATE, barmode="group",
                      height=max(400, 22 * len(order) + 150), xaxis_title="share of importance")
    return fig


def pbo_logits_figure(splits: pd.DataFrame | None, pbo: float | None = None) -> go.Figure:
    """Histogram of the CSCV logits (core.evaluation.pbo): the out-of-sample rank of each split's in-sample
    winner; the mass at or left of 0 is the probability of backtest overfitting."""
    title = "Probability of backtest overfitting: logits of the in-sample winner's OOS rank"
    if splits is None or splits.empty:
        return _empty(title, "PBO not computed (see the overfitting report's notes)")
    fig = go.Figure(go.Histogram(x=splits["logit"], nbinsx=40, name="splits"))
    fig.add_vline(x=0.0, line={"color": "firebrick", "dash": "dash"})
    label = "" if pbo is None else f" (PBO = {pbo:.2f})"
    fig.update_layout(title=title + label, template=TEMPLATE, xaxis_title="logit of OOS rank",
                      yaxis_title="splits", showlegend=False)
    return fig
