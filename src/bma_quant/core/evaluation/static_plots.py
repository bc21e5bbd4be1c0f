"""A static (PNG) rendering of the project's plotly figures, drawn with matplotlib.

MLflow's artifact view shows images inline but not plotly JSON, and an HTML export embeds 5-6 MB
of plotly.js; plotly's own image export needs a browser (kaleido). So each figure is drawn again
from its own traces: line, filled and stacked scatter traces, grouped (horizontal) bars and
histograms, on the subplot grid, log and percent axes, vertical lines, subplot titles and notes
that the figures of `core.evaluation.plots` and the regime timeline use. The interactive plotly JSON stays
the kedro-viz preview.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

INCH_PER_PIXEL = 1 / 100  # plotly sizes are pixels; PNGs are drawn at 100 dpi
DEFAULT_SIZE = (1000, 500)  # plotly's default when a figure sets no width / height
PLOT_AREA = (0.07, 0.08, 0.72, 0.82)  # left, bottom, width, height of the grid (legend right)
BAR_GROUP_WIDTH = 0.8  # share of a category slot taken by its group of bars


def _axis_key(ref: str | None, letter: str) -> str:
    """``x2`` -> ``xaxis2``; ``x`` / None -> ``xaxis``."""
    ref = ref or letter
    return f"{letter}axis{ref[1:]}"


def _axes(fig: Figure, layout: go.Layout, traces: list) -> dict[str, object]:
    """One matplotlib Axes per plotly y axis, placed at its x / y domain on the plot area."""
    left, bottom, width, height = PLOT_AREA
    axes: dict[str, object] = {}
    matches: dict[str, str | None] = {}
    refs = sorted({getattr(t, "yaxis", None) or "y" for t in traces} | {"y"},
                  key=lambda r: int(r[1:] or 1))
    for ref in refs:
        key = _axis_key(ref, "y")
        y_axis = layout[key] if key in layout else None
        x_key = _axis_key(("x" + ref[1:]) if ref != "y" else "x", "x")
        x_axis = layout[x_key] if x_key in layout else None
        y0, y1 = (y_axis.domain if y_axis is not None and y_axis.domain else (0, 1))
        x0, x1 = (x_axis.domain if x_axis is not None and x_axis.domain else (0, 1))
        axes[ref] = fig.add_axes((left + x0 * width, bottom + y0 * height,
                                  (x1 - x0) * width, (y1 - y0) * height))
        _style_axis(axes[ref], x_axis, y_axis)
        matches[ref] = getattr(x_axis, "matches", None) if x_axis is not None else None
    # shared x axes (make_subplots(shared_xaxes=True)): one range for all, so lines drawn at a
    # date line up across panels (a panel whose data started later had its own range)
    for ref, target in matches.items():
        other = ("y" + target[1:]) if target else None
        if other in axes and other != ref:
            axes[ref].sharex(axes[other])
    return axes


def _style_axis(ax, x_axis, y_axis) -> None:
    for axis, setter, formatter in ((x_axis, ax.set_xscale, ax.xaxis),
                                    (y_axis, ax.set_yscale, ax.yaxis)):
        if axis is None:
            continue
        if axis.type == "log":
            setter("log")
        if axis.tickformat and axis.tickformat.endswith("%"):
            formatter.set_major_formatter(PercentFormatter(1.0, decimals=_decimals(axis)))
    if y_axis is not None and y_axis.range is not None:
        ax.set_ylim(*y_axis.range)
    if x_axis is not None and x_axis.title and x_axis.title.text:
        ax.set_xlabel(x_axis.title.text)
    if y_axis is not None and y_axis.title and y_axis.title.text:
        ax.set_ylabel(y_axis.title.text)
    ax.grid(True, linewidth=0.3, alpha=0.5)


def _decimals(axis) -> int | None:
    """The decimals of a plotly percent tick format (".2%" -> 2; "%" -> None: matplotlib's
    choice, as plotly's own)."""
    precision = axis.tickformat[:-1].rsplit(".", 1)
    return int(precision[1]) if len(precision) == 2 and precision[1].isdigit() else None


# plotly dash names -> matplotlib line styles
LINE_STYLES = {"dash": "--", "dot": ":", "dashdot": "-.", "longdash": "--", "solid": "-"}


def _values(values) -> np.ndarray:
    return np.asarray([] if values is None else values)


def _x_values(values) -> np.ndarray:
    """Dates (plotly keeps Timestamps as objects) as datetime64, anything else as is."""
    index = pd.Index([] if values is None else values)
    if pd.api.types.is_datetime64_any_dtype(index) or (
            len(index) and isinstance(index[0], pd.Timestamp)):
        return pd.DatetimeIndex(index).tz_localize(None).to_numpy("datetime64[ns]")
    return index.to_numpy()


def _scatter(ax, trace: go.Scatter, stacks: dict) -> None:
    x, y = _x_values(trace.x), _values(trace.y).astype(float)
    style = {"label": trace.name if trace.showlegend is not False else None,
             "color": trace.line.color if trace.line else None,
             "linewidth": (trace.line.width if trace.line and trace.line.width else 1.5),
             "linestyle": LINE_STYLES.get(trace.line.dash if trace.line else None, "-")}
    if trace.stackgroup:  # cumulative areas, as plotly stacks them
        base = stacks.get((id(ax), trace.stackgroup), np.zeros(len(y)))
        top = base + np.nan_to_num(y)
        ax.fill_between(x, base, top, color=style["color"], alpha=0.6, linewidth=0,
                        label=trace.name)
        stacks[(id(ax), trace.stackgroup)] = top
        return
    ax.plot(x, y, **style)
    if trace.fill == "tozeroy":
        ax.fill_between(x, 0, y, color=style["color"], alpha=0.3)


def _bars(ax, traces: list[go.Bar]) -> None:
    """Grouped bars: every trace's bar of one category side by side in the category's slot."""
    horizontal = traces[0].orientation == "h"
    categories: list = []
    for trace in traces:
        for c in _values(trace.y if horizontal else trace.x):
            if c not in categories:
                categories.append(c)
    position = {c: i for i, c in enumerate(categories)}
    width = BAR_GROUP_WIDTH / len(traces)
    for k, trace in enumerate(traces):
        cats = _values(trace.y if horizontal else trace.x)
        vals = _values(trace.x if horizontal else trace.y).astype(float)
        at = np.array([position[c] for c in cats], dtype=float) - BAR_GROUP_WIDTH / 2 \
            + (k + 0.5) * width
        draw = ax.barh if horizontal else ax.bar
        colour = trace.marker.color if trace.marker and isinstance(trace.marker.color,
                                                                     str) else None
        draw(at, vals, width, label=trace.name, color=colour)
    ticks = np.arange(len(categories))
    labels = [str(c) for c in categories]
    if horizontal:
        ax.set_yticks(ticks, labels, fontsize=7)
    else:
        ax.set_xticks(ticks, labels, rotation=30 if len(categories) > 6 else 0, ha="right"
                      if len(categories) > 6 else "center", fontsize=8)


def _vertical_lines(axes: dict, layout: go.Layout) -> None:
    for shape in layout.shapes or ():
        if shape.type == "line" and shape.x0 is not None and shape.x0 == shape.x1:
            ref = "y" + ((shape.yref or "y").replace(" domain", "")[1:])
            ax = axes.get(ref)
            if ax is None:
                continue
            x = shape.x0
            converter = ax.xaxis.get_converter()
            if isinstance(x, int | float) and type(converter).__module__ == "matplotlib.dates":
                x = np.datetime64(int(x), "ms")  # plotly takes dates as epoch milliseconds
            ax.axvline(x, color="firebrick", linestyle="--", linewidth=1)


def to_matplotlib(figure: go.Figure) -> Figure:
    """The figure drawn with matplotlib (Agg, no display): save it as a PNG."""
    layout = figure.layout
    width = layout.width or DEFAULT_SIZE[0]
    height = layout.height or DEFAULT_SIZE[1]
    fig = Figure(figsize=(width * INCH_PER_PIXEL, height * INCH_PER_PIXEL))
    traces = list(figure.data)
    axes = _axes(fig, layout, traces)
    stacks: dict = {}
    bars: dict[str, list] = defaultdict(list)
    for trace in traces:
        ref = getattr(trace, "yaxis", None) or "y"
        if isinstance(trace, go.Bar):
            bars[ref].append(trace)
        elif isinstance(trace, go.Histogram):
            x = _values(trace.x).astype(float)
            axes[ref].hist(x[np.isfinite(x)], bins=trace.nbinsx or "auto", label=trace.name)
        elif isinstance(trace, go.Scatter):
            _scatter(axes[ref], trace, stacks)
    for ref, group in bars.items():
        _bars(axes[ref], group)
    _vertical_lines(axes, layout)
    left, bottom, plot_width, plot_height = PLOT_AREA
    for note in layout.annotations or ():  # subplot titles and "no data" messages
        if note.xref == "paper" and note.yref == "paper" and note.text:
            fig.text(left + (note.x or 0) * plot_width, bottom + (note.y or 0) * plot_height,
                     note.text, ha="center", va="bottom" if note.showarrow is False and
                     note.yanchor == "bottom" else "center", fontsize=9)
    if layout.title and layout.title.text:
        fig.suptitle(layout.title.text, fontsize=11)
    handles, labels = [], []
    for ax in axes.values():
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label and not label.startswith("_") and label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles and layout.showlegend is not False:
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.8, 0.9), fontsize=8,
                   frameon=False)
    return fig
