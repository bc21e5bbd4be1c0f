"""Per-name trading costs from daily bars: what a trade in an illiquid name costs beyond the flat
`cost_bps` (`evaluation.backtest.spread_cost`).

The bid-ask spread is estimated from close, high and low alone (Abdi and Ranaldo, 2017, "A
Simple Estimation of Bid-Ask Spreads from Daily Close, High, and Low Prices"): with c the log
close and eta the mid-range (log high + log low) / 2, the two-day estimate

    s2(t) = 4 (c(t-1) - eta(t-1)) (c(t-1) - eta(t))

has the squared relative spread as its mean; its mean over the trailing `window` dates (those
with both days traded), floored at zero, is the spread's square. Causal: the estimate at t reads
dates t and earlier only. A trade of |dw| of the book's capital in a name costs

    |dw| x (cost_bps / 2 / 1e4 + min(spread / 2, cap_bps / 1e4)),

the flat commission of `cost_bps` (per unit of one-way turnover, as without this model) plus half
the name's estimated spread, capped (a handful of wild bars must not make a name cost more than a
large discount to trade). A name without an estimate that day (too few dates, no high and low)
pays that date's cross-sectional median spread.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

COST_RATE = "cost_rate"  # long-panel column: one-way cost per unit traded of a name on a date


@dataclass(frozen=True)
class SpreadCost:
    enabled: bool = False
    window: int = 21
    min_dates: int = 10
    cap_bps: float = 200.0

    @classmethod
    def from_params(cls, params: dict | None) -> SpreadCost:
        p = params or {}
        out = cls(enabled=bool(p.get("enabled", False)), window=int(p.get("window", 21)),
                  min_dates=int(p.get("min_dates", 10)), cap_bps=float(p.get("cap_bps", 200.0)))
        if out.window < 2 or not 1 <= out.min_dates <= out.window or out.cap_bps < 0:
            raise ValueError(
                "evaluation.backtest.spread_cost needs window >= 2, 1 <= min_dates <= window and "
                f"cap_bps >= 0, got window {out.window}, min_dates {out.min_dates}, "
                f"cap_bps {out.cap_bps}")
        return out


def close_high_low_spread(close: pd.DataFrame, high: pd.DataFrame, low: pd.DataFrame,
                          window: int, min_dates: int) -> pd.DataFrame:
    """Date x ticker relative bid-ask spread (0.002 = 20 bps), NaN where fewer than `min_dates`
    two-day estimates fall in the trailing `window` dates. NaN closes (no trade, another
    listing's first day) leave their pairs out."""
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.log(close.where(close > 0))
        eta = 0.5 * (np.log(high.where(high > 0)) + np.log(low.where(low > 0)))
    eta = eta.where(c.notna())  # a bar without a trade of its own is no estimate
    previous = c.shift(1) - eta.shift(1)
    pairs = 4.0 * previous * (c.shift(1) - eta)
    mean = pairs.rolling(window, min_periods=min_dates).mean()
    return np.sqrt(mean.clip(lower=0.0))


def one_way_cost_rates(spread: pd.DataFrame, cost_bps: float, cap_bps: float) -> pd.DataFrame:
    """Date x ticker cost per unit traded one way: cost_bps / 2 plus half the spread (capped at
    `cap_bps`); a name without an estimate pays the date's median spread (none: the flat part)."""
    values = spread.to_numpy(np.float64)
    with warnings.catch_warnings():  # a date without any estimate: NaN, the flat part below
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(np.where(np.isfinite(values), values, np.nan), axis=1)
    filled = np.where(np.isfinite(values), values, median[:, None])
    half = np.nan_to_num(np.minimum(0.5 * filled, cap_bps / 1e4), nan=0.0)
    return pd.DataFrame(cost_bps / 2.0 / 1e4 + half, index=spread.index, columns=spread.columns)
