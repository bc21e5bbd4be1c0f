"""A causal fear-greed composite (0 = extreme fear, 100 = extreme greed) built from the panel.

Four components, each a market-wide series by date:
- momentum: market level relative to its `momentum_window`-day (125) moving average;
- breadth: share of names whose close is above their `breadth_window`-day (50) moving average;
- highs vs lows: share of names at a `high_low_window`-day (52-week) high minus the share at a low;
- volatility: `volatility_window`-day market volatility relative to its own one-year average
  (high volatility is fear, so this component enters inverted).

Each component is normalised by its percentile rank within a trailing `normalisation_window` of
its own history (no full-sample scaling), and the index is 100 x the mean of the available
components. Every step is a trailing window, so the value at t only uses data <= t: the series is
prefix-invariant (identical on a panel cut at t), as regime detection requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from bma_quant.core.features.flat_windows import snap_flat_means
from bma_quant.core.features.rolling import rolling_std


@dataclass(frozen=True)
class FearGreedParams:
    momentum_window: int = 125
    breadth_window: int = 50
    high_low_window: int = 252
    volatility_window: int = 20
    volatility_baseline_window: int = 252
    normalisation_window: int = 252
    min_periods_share: float = 0.5  # of each window, before a value is produced

    @classmethod
    def from_params(cls, params: Mapping | FearGreedParams | None) -> FearGreedParams:
        if isinstance(params, FearGreedParams):
            return params
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"fear_greed: unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**params)

    def min_periods(self, window: int) -> int:
        return max(2, int(np.ceil(window * self.min_periods_share)))

    def lookback_days(self) -> int:
        """Trailing dates the index at t reads (chained windows add up; +1 for returns)."""
        longest = max(
            self.momentum_window,
            self.breadth_window,
            self.high_low_window,
            self.volatility_window + 1 + self.volatility_baseline_window,
        )
        return longest + self.normalisation_window


def _market_level(market: pd.DataFrame, calendar: pd.DatetimeIndex) -> pd.Series:
    """Market level on the panel calendar; rebuilt from returns when no level is given."""
    frame = market.set_index("date").reindex(calendar)
    if "market_level" in frame and frame["market_level"].notna().any():
        return frame["market_level"].astype("float64")
    returns = frame["market_return"].astype("float64")
    return (1.0 + returns.fillna(0.0)).cumprod()


def _market_returns(market: pd.DataFrame, calendar: pd.DatetimeIndex) -> pd.Series:
    frame = market.set_index("date").reindex(calendar)
    if "market_return" in frame:
        return frame["market_return"].astype("float64")
    level = frame["market_level"].astype("float64")
    return level / level.shift(1) - 1.0


def _share(condition: np.ndarray, valid: np.ndarray) -> pd.Series:
    """Share of valid names meeting `condition` on each date (NaN with no valid name)."""
    counts = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (condition & valid).sum(axis=1) / counts, np.nan)


def fear_greed_components(
    close_wide: pd.DataFrame, market: pd.DataFrame, params: Mapping | FearGreedParams | None = None
) -> pd.DataFrame:
    """The four raw (un-normalised) components by date: momentum, breadth, high_low, volatility."""
    p = FearGreedParams.from_params(params)
    close = close_wide.sort_index().astype("float64")
    calendar = pd.DatetimeIndex(close.index)

    level = _market_level(market, calendar)
    level_ma = level.rolling(p.momentum_window, min_periods=p.min_periods(p.momentum_window)).mean()
    momentum = level / snap_flat_means(level_ma, level) - 1.0

    values = close.to_numpy()
    ma = snap_flat_means(
        close.rolling(p.breadth_window, min_periods=p.min_periods(p.breadth_window)).mean(),
        values)
    above_valid = np.isfinite(values) & np.isfinite(ma)
    breadth = _share(values > ma, above_valid)

    hl_min_periods = p.min_periods(p.high_low_window)
    rolling_high = close.rolling(p.high_low_window, min_periods=hl_min_periods).max().to_numpy()
    rolling_low = close.rolling(p.high_low_window, min_periods=hl_min_periods).min().to_numpy()
    hl_valid = np.isfinite(values) & np.isfinite(rolling_high)
    high_low = _share(values >= rolling_high, hl_valid) - _share(values <= rolling_low, hl_valid)

    returns = _market_returns(market, calendar)
    # the project's rolling std (core.features.rolling): pandas' keeps a bad print's market
    # move in its running sums (1.5e-4 off a year on, measured)
    vol = pd.Series(rolling_std(returns.to_numpy(dtype=np.float64), p.volatility_window,
                                p.min_periods(p.volatility_window)), index=returns.index)
    vol_baseline = vol.rolling(
        p.volatility_baseline_window, min_periods=p.min_periods(p.volatility_baseline_window)
    ).mean()
    volatility = vol / vol_baseline

    return pd.DataFrame(
        {
            "momentum": momentum.to_numpy(),
            "breadth": breadth,
            "high_low": high_low,
            "volatility": volatility.to_numpy(),
        },
        index=calendar,
    ).replace([np.inf, -np.inf], np.nan)


def trailing_percentile(series: pd.Series, window: int, min_periods: int) -> pd.Series:
    """Percentile rank (0..1) of each value within its trailing window (causal)."""
    return series.rolling(window, min_periods=min_periods).rank(pct=True)


def fear_greed_index(
    close_wide: pd.DataFrame, market: pd.DataFrame, params: Mapping | FearGreedParams | None = None
) -> pd.Series:
    """Fear-greed composite in [0, 100] by date (causal, prefix-invariant).

    close_wide: date x ticker closes (NaN where missing); market: `date` plus `market_level`
    and/or `market_return` (the `market` dataset). Returns a float64 Series indexed by date, named
    `fear_greed`; NaN until at least one component has a normalised value.
    """
    p = FearGreedParams.from_params(params)
    components = fear_greed_components(close_wide, market, p)
    window, min_periods = p.normalisation_window, p.min_periods(p.normalisation_window)
    scores = pd.DataFrame(
        {name: trailing_percentile(components[name], window, min_periods) for name in components},
        index=components.index,
    )
    scores["volatility"] = 1.0 - scores["volatility"]  # calm markets are greedy
    index = 100.0 * scores.mean(axis=1, skipna=True)
    index.index.name = "date"
    return index.rename("fear_greed")
