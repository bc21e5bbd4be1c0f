"""Market-wide evidence of the regime, by date, from the price panel (issue 12).

Which factors pay changes with the market's state, so the most direct evidence of the state is
which factors have paid lately; the index's trend and volatility, the cross-sectional dispersion
of returns and breadth add the rest. Every column at t uses closes up to t only (trailing windows,
no fitted quantity), so the table is prefix-invariant:

- `trend`: market log return over `trend_window` days;
- `volatility`: log of the market's daily-return volatility over `volatility_window` days;
- `dispersion`: log of the mean, over `dispersion_window` days, of the cross-sectional standard
  deviation of daily log returns;
- `breadth`: share of names whose close is above their `breadth_window`-day average;
- `perf_<factor>`: trailing performance of a factor portfolio: each day s, the cross-sectional
  mean of z(s - `factor_lag_days`) x r(s), where z is the factor standardised across names and r
  the daily log return, summed over `performance_window` days. Factors: momentum
  (`momentum_window`-day log return), reversal (minus the `reversal_window`-day log return) and
  low_volatility (minus the `low_volatility_window`-day volatility of daily log returns).

The cross-sectional columns (dispersion, breadth, perf_*) are missing on dates with fewer than
`min_cross_section` names (a universe that starts with a few listings): a factor portfolio of two
names is noise several times the full universe's, and a regime model fitted on such dates spends its
states on that noise (seen: bull and bear only in a year of 1-30 names, every later date
neutral). The HMM marginalises a missing column and fits on complete rows only.

The fear-greed composite is added next to these by `core.regimes.detection.detector_inputs`. The factor
library (`core.features.factors`) offers the same `perf_<factor>` columns to every learner as market
context (`factor_performance`), computed by `factor_performance` below.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from bma_quant.core.features.flat_windows import snap_flat_means

logger = logging.getLogger(__name__)

FACTORS = ("momentum", "reversal", "low_volatility")
EVIDENCE_COLUMNS = ("trend", "volatility", "dispersion", "breadth",
                    *(f"perf_{f}" for f in FACTORS))


@dataclass(frozen=True)
class EvidenceParams:
    trend_window: int = 20
    volatility_window: int = 20
    dispersion_window: int = 20
    breadth_window: int = 50
    momentum_window: int = 20
    reversal_window: int = 5
    low_volatility_window: int = 20
    factor_lag_days: int = 2
    performance_window: int = 20
    # None (what chains pickled before it read): the former floors, 2 scored names for perf_*,
    # none for dispersion and breadth; the parameter files set 10
    min_cross_section: int | None = None

    @classmethod
    def from_params(cls, params: Mapping | None) -> EvidenceParams:
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"evidence: unknown parameter(s) {unknown}; known: {sorted(known)}")
        out = cls(**{k: None if v is None and k == "min_cross_section" else int(v)
                     for k, v in params.items()})
        too_small = {f.name: getattr(out, f.name) for f in fields(cls)
                     if getattr(out, f.name) is not None
                     and getattr(out, f.name) < (1 if f.name == "factor_lag_days" else 2)}
        if too_small:
            raise ValueError(f"evidence: windows and min_cross_section must be >= 2 and "
                             f"factor_lag_days >= 1, got "
                             f"{too_small}")
        return out

    def performance_lookback_days(self) -> int:
        """Trailing dates (t included) the `perf_<factor>` columns read: the longest factor
        window's returns (+1 close), the scoring lag and the performance window."""
        longest = max(self.momentum_window, self.reversal_window, self.low_volatility_window)
        return longest + 1 + self.factor_lag_days + self.performance_window


def _rolling(frame: pd.DataFrame | pd.Series, window: int):
    return frame.rolling(window, min_periods=window)


def _standardised(values: pd.DataFrame) -> pd.DataFrame:
    """Each row standardised across names (NaN where fewer than 2 names have a value)."""
    centred = values.sub(values.mean(axis=1), axis=0)
    spread = values.std(axis=1).where(lambda s: s > 0)
    return centred.div(spread, axis=0)


def factor_scores(log_returns: pd.DataFrame, params: EvidenceParams) -> dict[str, pd.DataFrame]:
    """Date x ticker factor values standardised across names, from daily log returns."""
    raw = {
        "momentum": _rolling(log_returns, params.momentum_window).sum(),
        "reversal": -_rolling(log_returns, params.reversal_window).sum(),
        "low_volatility": -_rolling(log_returns, params.low_volatility_window).std(),
    }
    return {name: _standardised(values) for name, values in raw.items()}


def factor_performance(log_returns: pd.DataFrame, params: EvidenceParams) -> pd.DataFrame:
    """`perf_<factor>` by date (the module docstring): trailing sums of each factor portfolio's
    daily return, from date x ticker daily log returns (NaN where a name has no return)."""
    out = pd.DataFrame(index=log_returns.index)
    for name, scores in factor_scores(log_returns, params).items():
        lagged = scores.shift(params.factor_lag_days)
        earned = lagged * log_returns
        daily = earned.mean(axis=1, skipna=True)
        if params.min_cross_section is None:
            daily[lagged.notna().sum(axis=1) < 2] = np.nan
        else:
            daily[earned.notna().sum(axis=1) < params.min_cross_section] = np.nan
        out[f"perf_{name}"] = _rolling(daily, params.performance_window).sum()
    _warn_below_floor(log_returns.notna().sum(axis=1), params.min_cross_section)
    return out


def _warn_below_floor(names_per_date: pd.Series, floor: int | None) -> None:
    """A universe that never reaches the floor has no cross-sectional evidence at all: the
    regime detector then reads the index alone (or falls back) and the perf_* features are
    empty. Said, with the keys to lower."""
    most = int(names_per_date.max()) if len(names_per_date) else 0
    if floor is not None and most < floor:
        logger.warning(
            "at most %d name(s) have a return on any date, fewer than min_cross_section (%d): "
            "the factor portfolios' performance (perf_*), dispersion and breadth are missing on "
            "every date; lower regime_models.evidence.min_cross_section and feature_engineering."
            "factors.factor_performance_params.min_cross_section to use them on so few names "
            "(their evidence is then mostly noise)", most, floor)


def regime_evidence(
    close_wide: pd.DataFrame, market: pd.DataFrame, params: EvidenceParams | Mapping | None
) -> pd.DataFrame:
    """Date-indexed EVIDENCE_COLUMNS on the market's calendar (see the module docstring).

    close_wide: date x ticker closes (NaN where a name does not trade); market: `date`,
    `market_return`, `market_level`."""
    params = params if isinstance(params, EvidenceParams) else EvidenceParams.from_params(params)
    close = close_wide.sort_index().astype(np.float64)
    calendar = pd.DatetimeIndex(market["date"]).sort_values()
    close = close.reindex(calendar)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_returns = np.log(close / close.shift(1))
    market_log = np.log1p(market.set_index("date")["market_return"].reindex(calendar)
                          .astype(np.float64))
    out = pd.DataFrame(index=pd.DatetimeIndex(calendar, name="date"))
    out["trend"] = _rolling(market_log, params.trend_window).sum()
    out["volatility"] = np.log(_rolling(market_log, params.volatility_window).std())
    floor = params.min_cross_section or 0
    daily_dispersion = log_returns.std(axis=1).where(log_returns.notna().sum(axis=1) >= floor)
    out["dispersion"] = np.log(_rolling(daily_dispersion, params.dispersion_window).mean())
    # a close at its window's mean is not above it, whatever the rolling sum's last bits (they
    # move with the history's first date and the price units: serving's slice said "other prices")
    average = pd.DataFrame(snap_flat_means(_rolling(close, params.breadth_window).mean(), close),
                           index=close.index, columns=close.columns)
    valid = close.notna() & average.notna()
    counts = valid.sum(axis=1)
    above = ((close > average) & valid).sum(axis=1)
    out["breadth"] = (above / counts.where(counts >= max(floor, 1))).astype(np.float64)
    out = out.join(factor_performance(log_returns, params))
    return out.replace([np.inf, -np.inf], np.nan)
