"""The regime timeline: market level coloured by regime, regime probabilities and fear-greed."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from bma_quant.core.regimes.detection import REGIMES

REGIME_COLOURS = {"bull": "#2ca02c", "neutral": "#7f7f7f", "bear": "#d62728"}


def regime_timeline_figure(
    regimes: pd.DataFrame, market: pd.DataFrame, date_split: dict | None = None,
    title: str = "Market regimes",
) -> go.Figure:
    """Three rows: market level coloured by regime, regime probabilities, fear-greed index."""
    frame = regimes.merge(market[["date", "market_level"]], on="date", how="left")
    frame = frame.sort_values("date").reset_index(drop=True)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.05,
                        row_heights=[0.6, 0.2, 0.2],
                        subplot_titles=("market level by regime",
                                        "filtered regime probabilities p_bull / p_neutral / "
                                        "p_bear (forward filter: data up to each date; "
                                        "parameters fitted on development dates)",
                                        "fear-greed index"))
    previous = frame["regime"].shift(1)
    for regime in REGIMES:
        # Include the first day of the next spell so coloured segments join up.
        shown = (frame["regime"] == regime) | (previous == regime)
        fig.add_trace(
            go.Scatter(x=frame["date"], y=frame["market_level"].where(shown), mode="lines",
                       name=regime, line={"color": REGIME_COLOURS[regime], "width": 1.5},
                       legendgroup=regime, connectgaps=False),
            row=1, col=1,
        )
        fig.add_trace(
            go.Scatter(x=frame["date"], y=frame[f"p_{regime}"], mode="lines", stackgroup="p",
                       name=f"p_{regime}", line={"color": REGIME_COLOURS[regime], "width": 0.5},
                       legendgroup=regime, showlegend=False),
            row=2, col=1,
        )
    fig.add_trace(
        go.Scatter(x=frame["date"], y=frame["fear_greed"], mode="lines", name="fear_greed",
                   line={"color": "#1f77b4", "width": 1}),
        row=3, col=1,
    )
    if date_split:
        for key, label in (("dev_end", "development end"), ("test_start", "test start")):
            if date_split.get(key):
                fig.add_vline(x=pd.Timestamp(date_split[key]).timestamp() * 1000,
                              line={"dash": "dash", "width": 1}, annotation_text=label)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=2, col=1)
    fig.update_yaxes(range=[0, 100], row=3, col=1)
    fig.update_layout(title=title, template="plotly_white", height=800, hovermode="x unified")
    return fig
