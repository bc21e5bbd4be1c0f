"""The PNG rendering of the plotly figures draws the figures' own numbers (no browser needed)."""

import io

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.evaluation import plots, static_plots
from bma_quant.pipelines.regime_models.plots import regime_timeline_figure

DATES = pd.bdate_range("2021-01-04", periods=30)


def _png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_line_subplots_carry_the_cumulative_values():
    daily_ic = pd.DataFrame({"date": np.tile(DATES, 2), "model": ["final"] * 30 + ["lgbm"] * 30,
                             "ic": np.r_[np.full(30, 0.1), np.full(30, -0.05)],
                             "rank_ic": np.r_[np.full(30, 0.2), np.zeros(30)]})
    fig = static_plots.to_matplotlib(plots.cumulative_ic_figure(daily_ic))
    top, bottom = sorted(fig.axes, key=lambda ax: -ax.get_position().y0)
    lines = {line.get_label(): line.get_ydata() for line in top.get_lines()}
    assert lines["final"][-1] == pytest.approx(3.0) and lines["lgbm"][-1] == pytest.approx(-1.5)
    # the second panel's lines carry no legend label: final's is the one that is not flat
    assert sorted(line.get_ydata()[-1] for line in bottom.get_lines()) == pytest.approx([0, 6])
    assert {t.get_text() for t in fig.texts} >= {"cumulative IC", "cumulative RankIC"}
    png = _png_bytes(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 500_000


def test_every_model_has_its_own_colour_and_final_is_drawn_over_its_member():
    """Eleven models on a 10-colour cycle gave `final` the first model's colour, and `final`,
    a copy of the chosen method, hid it. Every model now has its own colour and `final` is
    black and dashed; percent ticks keep the figure's decimals (".2%" read as "0% 0% 1%")."""
    models = [f"model_{k}" for k in range(12)] + ["final"]
    daily = pd.DataFrame({"date": np.tile(DATES, len(models)), "model": np.repeat(models, 30),
                          "equity": 1.0, "drawdown": 0.0})
    fig = static_plots.to_matplotlib(plots.equity_curve_figure(daily))
    top = max(fig.axes, key=lambda ax: ax.get_position().y0)
    colours = {line.get_label(): line.get_color() for line in top.get_lines()}
    assert len(set(colours.values())) == len(models)
    final = next(line for line in top.get_lines() if line.get_label() == "final")
    assert final.get_color() == "#000000" and final.get_linestyle() == "--"

    quantiles = pd.DataFrame({"model": ["a"] * 2 + ["final"] * 2, "quantile": [1, 2] * 2,
                              "mean_label": [0.0012, 0.0034, 0.0012, 0.0034]})
    bars = static_plots.to_matplotlib(plots.quantile_returns_figure(quantiles))
    (ax,) = bars.axes
    assert len({tuple(p.get_facecolor()) for p in ax.patches}) == 2
    assert ax.yaxis.get_major_formatter()(0.0034, 0) == "0.34%"


def test_grouped_bars_have_the_figure_heights():
    quantiles = pd.DataFrame({"model": ["a"] * 3 + ["b"] * 3, "quantile": [1, 2, 3] * 2,
                              "mean_label": [-0.01, 0.0, 0.02, 0.005, 0.0, -0.005]})
    fig = static_plots.to_matplotlib(plots.quantile_returns_figure(quantiles))
    (ax,) = fig.axes
    heights = sorted(round(p.get_height(), 4) for p in ax.patches)
    assert heights == sorted([-0.01, 0.0, 0.02, 0.005, 0.0, -0.005])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]


def test_horizontal_bars_histogram_and_empty_figures():
    importance = pd.DataFrame({"feature": ["mom", "rev"], "importance": [3.0, 1.0],
                               "model": "lgbm"})
    bars = static_plots.to_matplotlib(plots.feature_importance_figure(importance))
    assert sorted(round(p.get_width(), 3) for p in bars.axes[0].patches) == [0.25, 0.75]
    splits = pd.DataFrame({"logit": np.linspace(-2, 2, 50)})
    hist = static_plots.to_matplotlib(plots.pbo_logits_figure(splits, 0.5))
    assert sum(p.get_height() for p in hist.axes[0].patches) == 50
    assert hist.axes[0].get_lines()[0].get_xdata()[0] == 0.0  # the PBO threshold line
    empty = static_plots.to_matplotlib(plots.quantile_returns_figure(pd.DataFrame()))
    assert "no quantiles" in {t.get_text() for t in empty.texts}


def test_regime_timeline_stacks_probabilities_on_a_log_axis():
    n = len(DATES)
    regimes = pd.DataFrame({"date": DATES, "regime": ["bull"] * 10 + ["bear"] * 20,
                            "p_bull": 0.5, "p_neutral": 0.3, "p_bear": 0.2,
                            "fear_greed": np.linspace(20, 80, n)})
    market = pd.DataFrame({"date": DATES, "market_level": np.linspace(100, 130, n)})
    split = {"dev_end": DATES[14], "test_start": DATES[20]}
    fig = static_plots.to_matplotlib(regime_timeline_figure(regimes, market, split))
    level, probabilities, _ = sorted(fig.axes, key=lambda ax: -ax.get_position().y0)
    assert level.get_yscale() == "log"
    top = probabilities.collections[-1].get_paths()[0].vertices[:, 1]
    assert top.max() == pytest.approx(1.0)  # the three probabilities stack to one
    assert len(level.get_lines()) == 3 + 2  # three regime segments + two split lines
    assert len(_png_bytes(fig)) > 1000
    # the panels share their date axis: a fear-greed index that starts later is drawn on the
    # same range (it had its own, and its split lines sat elsewhere than the others')
    late = regimes.assign(fear_greed=np.where(np.arange(n) < 12, np.nan, regimes["fear_greed"]))
    fig = static_plots.to_matplotlib(regime_timeline_figure(late, market, split))
    ranges = {tuple(np.round(ax.get_xlim(), 6)) for ax in fig.axes}
    assert len(ranges) == 1
