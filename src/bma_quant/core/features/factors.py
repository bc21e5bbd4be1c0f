"""Factor library: per-ticker time-series factors in the spirit of Qlib's Alpha158 families.

Every factor is computed on date x ticker matrices with trailing windows (cumulative sums along
time, running max / min filters, shifts by positive lags), vectorised over the whole panel; the
value at t uses data <= t only, so each factor is prefix-invariant. Families run by the columns
present:

- return (close): ret_{w}, the w-day return.
- trend (close): ma_{w} (close / w-day mean - 1), max_{w} / min_{w} (close vs the w-day high /
  low), rank_{w} (percentile of today's close in its window), dd_{w} (drawdown from the high).
- volatility (close): std_{w} (daily-return std), beta_{w} and resvol_{w} (beta on the market
  series and residual volatility).
- momentum (close): mom_12_1 (12-1 month momentum), rev_{w} (short-term reversal: minus the
  beta-adjusted w-day return), up_{w} (share of up days).
- candle (open, high, low): kmid, klen, kup, klow, ksft (Alpha158 candle shape).
- volume (volume): vwap_{w} (close vs a w-day VWAP proxy), vratio_{w}, vstd_{w}, pvcorr_{w}
  (return / volume-change correlation), amihud_{w} (illiquidity).
- market (close + the market frame): mkt_ret_{w}, mkt_vol_{w}, breadth_{w}, fear_greed and
  (`factor_performance`) perf_momentum, perf_reversal, perf_low_volatility, the trailing returns
  of those factor portfolios (core.regimes.regime_evidence: which factors paid lately is evidence of the
  state that decides which factors pay), one value per date broadcast to every ticker.
- user: any other numeric column, passed through.

`engineer_factors` adds the per-date cross-sectional transforms (core.features.transforms) to every
per-ticker family; market-context factors are constant across names on a date, so they are kept
as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bma_quant.core.data import listings
from bma_quant.core.data.universe import ELIGIBLE, LISTED_FROM, TRADABLE
from bma_quant.core.features import transforms
from bma_quant.core.features.fear_greed import FearGreedParams, fear_greed_index
from bma_quant.core.features.flat_windows import snap_flat_means, snap_flat_stds
from bma_quant.core.features.rolling import (
    Cumulative,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_percentile,
    rolling_std,
    rolling_sum,
    shift,
)
from bma_quant.core.regimes.regime_evidence import FACTORS as PERFORMANCE_FACTORS
from bma_quant.core.regimes.regime_evidence import EvidenceParams, factor_performance

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
RESERVED = {"date", "ticker", "sector", ELIGIBLE, TRADABLE, LISTED_FROM, *PRICE_COLUMNS}
MARKET_FAMILY = "market"
USER_FAMILY = "user"
# the input columns a family needs beyond close (factor_registry builds it only when present)
COLUMNS_OF_FAMILY = {"candle": "open, high, low", "volume": "volume"}


# --------------------------------------------------------------------------------------------
# The (date, ticker) grid: long <-> wide without pivots
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Positions of long rows in a date x ticker matrix (sorted dates and tickers)."""

    dates: pd.DatetimeIndex
    tickers: pd.Index
    row: np.ndarray
    col: np.ndarray

    @classmethod
    def from_long(cls, frame: pd.DataFrame) -> Grid:
        row, dates = pd.factorize(pd.DatetimeIndex(frame["date"]), sort=True)
        col, tickers = pd.factorize(frame["ticker"].astype(str), sort=True)
        return cls(pd.DatetimeIndex(dates, name="date"), pd.Index(tickers, name="ticker"), row, col)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.dates), len(self.tickers)

    @property
    def dense(self) -> bool:
        """Whether the long rows are exactly the full grid in (date, ticker) order (the layout
        of the project's panels): then long <-> wide is a reshape."""
        cached = self.__dict__.get("_dense")
        if cached is None:
            n_rows, n_cols = self.shape
            cached = len(self.row) == n_rows * n_cols and bool(
                np.array_equal(self.row * n_cols + self.col, np.arange(len(self.row)))
            )
            object.__setattr__(self, "_dense", cached)
        return cached

    def to_wide(self, values, dtype=np.float64) -> np.ndarray:
        """Long values -> date x ticker matrix (NaN / None for absent cells)."""
        values = np.asarray(values, dtype=dtype)
        if self.dense:
            return values.reshape(self.shape).copy()
        fill = np.nan if np.dtype(dtype).kind == "f" else None
        out = np.full(self.shape, fill, dtype=dtype)
        out[self.row, self.col] = values
        return out

    def to_long(self, matrix: np.ndarray) -> np.ndarray:
        """Matrix -> values of the long rows in (date, ticker) order (see `sorted_order`)."""
        if self.dense:
            return matrix.reshape(-1)
        order = self.sorted_order()
        return matrix[self.row[order], self.col[order]]

    def frame(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=self.dates, columns=self.tickers)

    def sorted_order(self) -> np.ndarray:
        """Positions of the long rows sorted by (date, ticker)."""
        if self.dense:
            return np.arange(len(self.row))
        return np.lexsort((self.col, self.row))

    def sorted_keys(self) -> pd.DataFrame:
        """`date, ticker` of the long rows in (date, ticker) order."""
        order = self.sorted_order()
        return pd.DataFrame(
            {
                "date": self.dates[self.row[order]],
                "ticker": pd.array(
                    np.asarray(self.tickers, dtype=object)[self.col[order]], dtype=str
                ),
            }
        )


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


# rev_{w}'s beta window in configs without `reversal_beta_window` and without beta windows
LEGACY_REVERSAL_BETA_WINDOW = 60


@dataclass(frozen=True)
class FactorConfig:
    """Window lengths of every family (trading days) and which columns are not user factors."""

    return_windows: tuple[int, ...] = (1, 5, 10, 20, 60)
    ma_windows: tuple[int, ...] = (5, 10, 20, 60)
    extreme_windows: tuple[int, ...] = (20, 60)
    rank_windows: tuple[int, ...] = (20, 60)
    drawdown_windows: tuple[int, ...] = (252,)
    volatility_windows: tuple[int, ...] = (5, 20, 60)
    beta_windows: tuple[int, ...] = (60,)
    # the beta rev_{w} removes the market's move with; None (configs pickled before this key) =
    # the first beta window, else LEGACY_REVERSAL_BETA_WINDOW: what those models computed
    reversal_beta_window: int | None = None
    momentum_long: int = 252
    momentum_skip: int = 21
    reversal_windows: tuple[int, ...] = (5,)
    up_windows: tuple[int, ...] = (20, 60)
    vwap_windows: tuple[int, ...] = (5, 20)
    volume_windows: tuple[int, ...] = (5, 20)
    pv_corr_windows: tuple[int, ...] = (20,)
    amihud_windows: tuple[int, ...] = (20,)
    market_return_windows: tuple[int, ...] = (1, 20)
    market_volatility_windows: tuple[int, ...] = (20,)
    breadth_windows: tuple[int, ...] = (50,)
    fear_greed: bool = True
    fear_greed_params: tuple[tuple[str, float], ...] = ()
    factor_performance: bool = True
    # (name, value) pairs of core.regimes.regime_evidence.EvidenceParams; empty = its defaults
    factor_performance_params: tuple[tuple[str, int], ...] = ()
    min_periods_share: float = 0.8  # of a window that must be present for a value
    # amihud: share of its window that must have traded (volume > 0); an illiquid name trading on
    # a third of its days would otherwise get no value and the date's median (looking average).
    # None = min_periods_share, the rule of models trained before this key (a pickled config
    # without it reads None, so a served model computes what it was trained on)
    amihud_min_traded_share: float | None = None
    user_columns: bool = True
    exclude_columns: tuple[str, ...] = ("ret_1d", "label", "expected_return")

    @classmethod
    def from_params(cls, params: Mapping | None, fear_greed: Mapping | None = None) -> FactorConfig:
        params = dict(params or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"feature_engineering.factors: unknown key(s) {unknown}")
        values = {
            k: tuple(int(x) for x in v)
            if isinstance(v, list | tuple) and k.endswith("windows")
            else tuple(v)
            if isinstance(v, list)
            else v
            for k, v in params.items()
        }
        if fear_greed is not None:
            values["fear_greed_params"] = tuple(sorted(dict(fear_greed).items()))
        performance = params.get("factor_performance_params")
        values["factor_performance_params"] = tuple(sorted(dict(performance or {}).items()))
        config = cls(**values)
        for key in ("min_periods_share", "amihud_min_traded_share"):
            if getattr(config, key) is not None and not 0 < float(getattr(config, key)) <= 1:
                raise ValueError(f"feature_engineering.factors.{key} must be in (0, 1], got "
                                 f"{getattr(config, key)}")
        config.performance_params()  # unknown keys or too-small windows: one clear error now
        return config

    def performance_params(self) -> EvidenceParams:
        return EvidenceParams.from_params(dict(self.factor_performance_params))

    def reversal_beta(self) -> int:
        """Window of the beta the reversal factors remove the market's move with."""
        if self.reversal_beta_window is not None:
            return int(self.reversal_beta_window)
        return self.beta_windows[0] if self.beta_windows else LEGACY_REVERSAL_BETA_WINDOW

    def min_periods(self, window: int) -> int:
        return max(1, int(np.ceil(window * self.min_periods_share)))

    def longest_window(self) -> int:
        """The longest window of any factor family (every `*_windows` field, a family added
        later included, the long momentum and the reversals' beta)."""
        windows = [self.momentum_long, *([self.reversal_beta()] if self.reversal_windows else [])]
        for name in self.__dataclass_fields__:
            if name.endswith("windows"):
                windows.extend(getattr(self, name))
        return int(max(windows))

    def lookback_days(self) -> int:
        """Trailing dates (t included) the longest factor window reads: a panel cut keeping that
        many dates before t gives the same values at t as the whole history (+1 for returns)."""
        longest = self.longest_window() + 1
        if self.fear_greed:
            fear_greed = FearGreedParams.from_params(dict(self.fear_greed_params))
            longest = max(longest, fear_greed.lookback_days() + 1)
        if self.factor_performance:
            longest = max(longest, self.performance_params().performance_lookback_days())
        return longest


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@dataclass
class FactorInputs:
    """Wide inputs of the factor library (date x ticker float64 arrays on one grid)."""

    grid: Grid
    close: np.ndarray
    market_return: np.ndarray  # by date
    market_level: np.ndarray  # by date
    open: np.ndarray | None = None
    high: np.ndarray | None = None
    low: np.ndarray | None = None
    volume: np.ndarray | None = None
    sector_codes: np.ndarray | None = None
    user: dict[str, np.ndarray] = field(default_factory=dict)
    # date x ticker bool: in the cross-section at t (the panel's `eligible` column, else a close)
    eligible: np.ndarray | None = None
    # date x ticker int: the row of a relisted name's current listing (-1: its first listing);
    # None = no relisting. Its per-ticker factors read that listing's rows only.
    relisted: np.ndarray | None = None
    cache: dict = field(default_factory=dict)

    @property
    def in_universe(self) -> np.ndarray:
        return np.isfinite(self.close) if self.eligible is None else self.eligible

    @property
    def close_by_listing(self) -> np.ndarray:
        """`close` with each later listing of a relisted code in a column of its own: what the
        market-wide series aggregate (core.data.listings)."""
        if "close_by_listing" not in self.cache:
            self.cache["close_by_listing"] = listings.split_by_listing(self.close, self.relisted)
        return self.cache["close_by_listing"]

    @property
    def returns(self) -> np.ndarray:
        if "returns" not in self.cache:
            with np.errstate(invalid="ignore", divide="ignore"):
                self.cache["returns"] = self.close / shift(self.close, 1) - 1.0
        return self.cache["returns"]


def user_columns(panel: pd.DataFrame, config: FactorConfig) -> list[str]:
    """Numeric columns that are neither contract columns nor excluded: user-supplied factors."""
    if not config.user_columns:
        return []
    excluded = RESERVED | set(config.exclude_columns)
    return [
        c
        for c in panel.columns
        if c not in excluded
        and pd.api.types.is_numeric_dtype(panel[c])
        and not pd.api.types.is_bool_dtype(panel[c])
    ]


def _numeric(panel: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(panel[column], errors="coerce").to_numpy(np.float64, na_value=np.nan)


def prepare_inputs(
    panel: pd.DataFrame, market: pd.DataFrame | None, config: FactorConfig,
    columns: Collection[str] | None = None,
) -> FactorInputs:
    """Long panel (+ market frame) -> wide inputs. Rows may be any subset of a date x ticker grid.

    The market series comes from `market` (`market_return` and/or `market_level`); without it
    the equal-weighted mean return of the panel is used, as data_processing does. A column with
    no value is taken as absent (volume factors are not built, VWAP falls back to the close),
    unless `columns` names it: then it is present with missing values, as it is over a slice of
    a panel that has it later (the leak audit's cut panels)."""
    grid = Grid.from_long(panel)

    def wide(column: str) -> np.ndarray | None:
        if column not in panel.columns or (
                panel[column].isna().all() and (columns is None or column not in columns)):
            return None
        values = grid.to_wide(_numeric(panel, column))
        values[~np.isfinite(values)] = np.nan
        return values

    close = wide("close")
    if close is None:
        raise ValueError("factor library: the panel has no close prices")
    eligible = None
    if ELIGIBLE in panel.columns:  # price history outside the universe still feeds the windows
        flags = panel[ELIGIBLE].to_numpy(dtype=np.float64, na_value=0.0)
        eligible = (grid.to_wide(flags) > 0.5) & np.isfinite(close)
    relisted = None
    if LISTED_FROM in panel.columns and panel[LISTED_FROM].notna().any():
        starts = pd.DatetimeIndex(panel[LISTED_FROM])
        rows = np.full(len(starts), -1.0)
        known = np.asarray(starts.notna())
        rows[known] = grid.dates.searchsorted(starts[known])  # before a cut panel: row 0
        relisted = np.nan_to_num(grid.to_wide(rows), nan=-1.0).astype(np.int64)
    codes = None
    if "sector" in panel.columns and panel["sector"].notna().any():
        sector = panel["sector"].astype(object).where(panel["sector"].notna(), None).to_numpy()
        codes = transforms.sector_codes(grid.to_wide(sector, dtype=object))

    frame = market.set_index("date") if market is not None and len(market) else pd.DataFrame()
    frame = frame.reindex(grid.dates)
    has_return = "market_return" in frame and frame["market_return"].notna().any()
    has_level = "market_level" in frame and frame["market_level"].notna().any()
    if has_return:
        market_return = frame["market_return"].to_numpy(np.float64, na_value=np.nan)
    elif has_level:
        level = frame["market_level"].to_numpy(np.float64, na_value=np.nan)
        market_return = level / shift(level, 1) - 1.0
    else:
        by_listing = listings.split_by_listing(close, relisted)
        with np.errstate(invalid="ignore", divide="ignore"):
            returns = by_listing / shift(by_listing, 1) - 1.0
        market_return = pd.DataFrame(returns).mean(axis=1, skipna=True).to_numpy(np.float64)
    if has_level:
        market_level = frame["market_level"].to_numpy(np.float64, na_value=np.nan)
    else:
        market_level = 100.0 * np.cumprod(1.0 + np.nan_to_num(market_return, nan=0.0))

    return FactorInputs(
        grid=grid,
        close=close,
        market_return=market_return,
        market_level=market_level,
        open=wide("open"),
        high=wide("high"),
        low=wide("low"),
        volume=wide("volume"),
        sector_codes=codes,
        user={c: grid.to_wide(_numeric(panel, c)) for c in user_columns(panel, config)},
        eligible=eligible,
        relisted=relisted,
    )


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------

FactorFn = Callable[[], np.ndarray]


def _cumulative(inp: FactorInputs, name: str, values: np.ndarray) -> Cumulative:
    """Cumulative sums (with squares) of an input, computed once per panel."""
    key = ("cumulative", name)
    if key not in inp.cache:
        inp.cache[key] = Cumulative.of(values, squares=True)
    return inp.cache[key]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / np.where(denominator != 0, denominator, np.nan)


def _volume_dispersion(inp: FactorInputs, vol: np.ndarray, window: int, min_periods: int
                       ) -> np.ndarray:
    """vstd: the w-day standard deviation of volume over its mean (0 over unchanged volumes)."""
    cumulative = _cumulative(inp, "volume", vol)
    mean = rolling_mean(cumulative, window, min_periods)
    return _ratio(snap_flat_stds(rolling_std(cumulative, window, min_periods), mean), mean)


def _broadcast(series: np.ndarray, grid: Grid) -> np.ndarray:
    return np.repeat(np.asarray(series, dtype=np.float64)[:, None], len(grid.tickers), axis=1)


def _moments_beta(inp: FactorInputs, window: int, config: FactorConfig):
    """Rolling beta on the market and residual variance, from first and second moments over the
    days where the stock has a return (the market series is masked to the same days)."""
    key = ("beta", window)
    if key not in inp.cache:
        r = inp.returns
        m = np.where(np.isfinite(r), inp.market_return[:, None], np.nan)
        m = np.where(np.isfinite(m), m, np.nan)
        r = np.where(np.isfinite(m), r, np.nan)
        mp = config.min_periods(window)
        mean_r, mean_m = rolling_mean(r, window, mp), rolling_mean(m, window, mp)
        cov = rolling_mean(r * m, window, mp) - mean_r * mean_m
        var_m = rolling_mean(m * m, window, mp) - mean_m * mean_m
        var_r = rolling_mean(r * r, window, mp) - mean_r * mean_r
        beta = _ratio(cov, np.where(var_m > 0, var_m, np.nan))
        inp.cache[key] = (beta, np.maximum(var_r - beta * cov, 0.0))
    return inp.cache[key]


def _close_families(inp: FactorInputs, c: FactorConfig) -> dict[str, tuple[str, FactorFn]]:
    close, r, mp = inp.close, inp.returns, c.min_periods
    out: dict[str, tuple[str, FactorFn]] = {}
    for w in c.return_windows:
        out[f"ret_{w}"] = ("return", lambda w=w: _ratio(close, shift(close, w)) - 1.0)
    for w in c.ma_windows:
        out[f"ma_{w}"] = (
            "trend",
            lambda w=w: (
                _ratio(close, snap_flat_means(
                    rolling_mean(_cumulative(inp, "close", close), w, mp(w)), close)) - 1.0
            ),
        )
    for w in c.extreme_windows:
        out[f"max_{w}"] = ("trend", lambda w=w: _ratio(close, rolling_max(close, w, mp(w))) - 1.0)
        out[f"min_{w}"] = ("trend", lambda w=w: _ratio(close, rolling_min(close, w, mp(w))) - 1.0)
    for w in c.rank_windows:
        out[f"rank_{w}"] = ("trend", lambda w=w: rolling_percentile(close, w, mp(w)))
    for w in c.drawdown_windows:
        out[f"dd_{w}"] = ("trend", lambda w=w: _ratio(close, rolling_max(close, w, mp(w))) - 1.0)
    for w in c.volatility_windows:
        out[f"std_{w}"] = (
            "volatility",
            lambda w=w: rolling_std(_cumulative(inp, "returns", r), w, mp(w)),
        )
    for w in c.beta_windows:
        out[f"beta_{w}"] = ("volatility", lambda w=w: _moments_beta(inp, w, c)[0])
        out[f"resvol_{w}"] = ("volatility", lambda w=w: np.sqrt(_moments_beta(inp, w, c)[1]))
    out[f"mom_{c.momentum_long // 21}_{c.momentum_skip // 21}"] = (
        "momentum",
        lambda: _ratio(shift(close, c.momentum_skip), shift(close, c.momentum_long)) - 1.0,
    )
    beta_window = c.reversal_beta()
    for w in c.reversal_windows:

        def reversal(w=w):
            beta = _moments_beta(inp, beta_window, c)[0]
            market_w = _ratio(inp.market_level, shift(inp.market_level, w)) - 1.0
            stock_w = _ratio(close, shift(close, w)) - 1.0
            return -(stock_w - beta * market_w[:, None])

        out[f"rev_{w}"] = ("momentum", reversal)
    for w in c.up_windows:

        def up_share(w=w):
            up = np.where(np.isfinite(r), (r > 0).astype(np.float64), np.nan)
            return rolling_mean(up, w, mp(w))

        out[f"up_{w}"] = ("momentum", up_share)
    return out


def _candle_family(inp: FactorInputs) -> dict[str, tuple[str, FactorFn]]:
    if inp.open is None or inp.high is None or inp.low is None:
        return {}
    o, h, lo, cl = inp.open, inp.high, inp.low, inp.close
    return {
        "kmid": ("candle", lambda: _ratio(cl - o, o)),
        "klen": ("candle", lambda: _ratio(h - lo, o)),
        "kup": ("candle", lambda: _ratio(h - np.maximum(o, cl), o)),
        "klow": ("candle", lambda: _ratio(np.minimum(o, cl) - lo, o)),
        "ksft": ("candle", lambda: _ratio(2.0 * cl - h - lo, o)),
    }


def _volume_family(inp: FactorInputs, c: FactorConfig) -> dict[str, tuple[str, FactorFn]]:
    if inp.volume is None:
        return {}
    vol, close, r, mp = inp.volume, inp.close, inp.returns, c.min_periods
    has_range = inp.high is not None and inp.low is not None
    typical = (inp.high + inp.low + close) / 3.0 if has_range else close
    out: dict[str, tuple[str, FactorFn]] = {}
    for w in c.vwap_windows:

        def vwap(w=w):
            traded = rolling_sum(typical * vol, w, mp(w))
            volume = rolling_sum(_cumulative(inp, "volume", vol), w, mp(w))
            vwap_price = _ratio(traded, np.where(volume > 0, volume, np.nan))
            return _ratio(close, snap_flat_means(vwap_price, close)) - 1.0

        out[f"vwap_{w}"] = ("volume", vwap)
    for w in c.volume_windows:
        out[f"vratio_{w}"] = (
            "volume",
            lambda w=w: _ratio(vol, snap_flat_means(
                rolling_mean(_cumulative(inp, "volume", vol), w, mp(w)), vol)),
        )
        out[f"vstd_{w}"] = (
            "volume",
            lambda w=w: _volume_dispersion(inp, vol, w, mp(w)),
        )
    for w in c.pv_corr_windows:

        def pv_corr(w=w):
            # log(v_t / v_t-1), not log1p: the change must not depend on the volume's units (a
            # split or a pence -> pounds repair rescales a name's volume by the window it sits
            # in, so a serving slice and training would disagree); a day without volume has no
            # change
            positive = np.where(vol > 0, vol, np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                change = np.log(positive) - np.log(shift(positive, 1))
            both = np.isfinite(r) & np.isfinite(change)
            x, y = np.where(both, r, np.nan), np.where(both, change, np.nan)
            mx, my = rolling_mean(x, w, mp(w)), rolling_mean(y, w, mp(w))
            cov = rolling_mean(x * y, w, mp(w)) - mx * my
            vx = rolling_mean(x * x, w, mp(w)) - mx * mx
            vy = rolling_mean(y * y, w, mp(w)) - my * my
            with np.errstate(invalid="ignore"):
                denom = np.sqrt(np.maximum(vx * vy, 0.0))
            return np.clip(_ratio(cov, np.where(denom > 1e-14, denom, np.nan)), -1.0, 1.0)

        out[f"pvcorr_{w}"] = ("volume", pv_corr)
    for w in c.amihud_windows:

        def amihud(w=w):
            dollar_volume = close * vol
            impact = _ratio(np.abs(r), np.where(dollar_volume > 0, dollar_volume, np.nan))
            share = c.amihud_min_traded_share
            return rolling_mean(impact, w, mp(w) if share is None else max(1, int(np.ceil(w * share))))

        out[f"amihud_{w}"] = ("volume", amihud)
    return out


def _market_family(inp: FactorInputs, c: FactorConfig) -> dict[str, tuple[str, FactorFn]]:
    grid, level, mret, mp = inp.grid, inp.market_level, inp.market_return, c.min_periods
    out: dict[str, tuple[str, FactorFn]] = {}
    for w in c.market_return_windows:
        out[f"mkt_ret_{w}"] = (
            MARKET_FAMILY,
            lambda w=w: _broadcast(_ratio(level, shift(level, w)) - 1.0, grid),
        )
    for w in c.market_volatility_windows:
        out[f"mkt_vol_{w}"] = (
            MARKET_FAMILY,
            lambda w=w: _broadcast(rolling_std(mret[:, None], w, mp(w))[:, 0], grid),
        )
    for w in c.breadth_windows:

        def breadth(w=w):
            close = inp.close_by_listing
            key = "close" if close is inp.close else "close_by_listing"
            ma = snap_flat_means(rolling_mean(_cumulative(inp, key, close), w, mp(w)), close)
            valid = np.isfinite(close) & np.isfinite(ma)
            counts = valid.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                above = ((close > ma) & valid).sum(axis=1)
                share = np.where(counts > 0, above / counts, np.nan)
            return _broadcast(share, grid)

        out[f"breadth_{w}"] = (MARKET_FAMILY, breadth)
    if c.fear_greed:

        def fear_greed():
            market = pd.DataFrame(
                {"date": grid.dates, "market_return": mret, "market_level": level}
            )
            close = pd.DataFrame(inp.close_by_listing, index=grid.dates)
            index = fear_greed_index(close, market, dict(c.fear_greed_params))
            return _broadcast(index.to_numpy(np.float64), grid)

        out["fear_greed"] = (MARKET_FAMILY, fear_greed)
    if c.factor_performance:

        def performance(name: str) -> np.ndarray:
            if "factor_performance" not in inp.cache:  # the three columns share one pass
                close = pd.DataFrame(inp.close_by_listing, index=grid.dates)
                with np.errstate(divide="ignore", invalid="ignore"):
                    log_returns = np.log(close / close.shift(1))
                inp.cache["factor_performance"] = factor_performance(
                    log_returns, c.performance_params())
            return _broadcast(inp.cache["factor_performance"][name].to_numpy(np.float64), grid)

        for factor in PERFORMANCE_FACTORS:
            out[f"perf_{factor}"] = (MARKET_FAMILY, lambda n=f"perf_{factor}": performance(n))
    return out


def _user_family(inp: FactorInputs) -> dict[str, tuple[str, FactorFn]]:
    return {name: (USER_FAMILY, lambda v=values: v) for name, values in inp.user.items()}


def factor_registry(inp: FactorInputs, config: FactorConfig) -> dict[str, tuple[str, FactorFn]]:
    """name -> (family, thunk computing the raw date x ticker matrix), for the columns present."""
    registry: dict[str, tuple[str, FactorFn]] = {}
    registry.update(_close_families(inp, config))
    registry.update(_candle_family(inp))
    registry.update(_volume_family(inp, config))
    registry.update(_market_family(inp, config))
    for name, entry in _user_family(inp).items():
        registry[name if name not in registry else f"user_{name}"] = entry
    return registry


@dataclass(frozen=True)
class _Relisting:
    """One pass over relisted names: their inputs with the rows before the k-th relisting hidden
    (`inputs`, their columns `cols` of the full inputs), and the cells whose per-ticker factors
    come from it (that listing's rows)."""

    inputs: FactorInputs
    cols: np.ndarray
    cells: np.ndarray


def _relisting_passes(inp: FactorInputs) -> list[_Relisting]:
    """A code reused by another company: its windows must not reach the old company's prices.
    One pass per relisting depth (a name relisted twice needs two), on the relisted columns only
    (per-ticker factors read their own column and the market series)."""
    if inp.relisted is None or not (inp.relisted >= 0).any():
        return []
    columns = np.flatnonzero((inp.relisted >= 0).any(axis=0))
    starts = {j: np.unique(inp.relisted[:, j][inp.relisted[:, j] >= 0]) for j in columns}
    index = np.arange(len(inp.grid.dates))[:, None]
    passes = []
    for depth in range(max(len(v) for v in starts.values())):
        cols = np.array([j for j in columns if len(starts[j]) > depth])
        start = np.array([starts[j][depth] for j in cols])
        hidden = index < start[None, :]
        grid = Grid(inp.grid.dates, inp.grid.tickers[cols], np.empty(0, np.int64),
                    np.empty(0, np.int64))
        inputs = FactorInputs(
            grid=grid, close=_hidden(inp.close, cols, hidden), market_return=inp.market_return,
            market_level=inp.market_level, open=_hidden(inp.open, cols, hidden),
            high=_hidden(inp.high, cols, hidden), low=_hidden(inp.low, cols, hidden),
            volume=_hidden(inp.volume, cols, hidden),
            user={k: _hidden(v, cols, hidden) for k, v in inp.user.items()})
        passes.append(_Relisting(inputs, cols, inp.relisted[:, cols] == start[None, :]))
    return passes


def _hidden(matrix: np.ndarray | None, cols: np.ndarray, hidden: np.ndarray
            ) -> np.ndarray | None:
    """`matrix`'s columns `cols`, NaN where `hidden`."""
    return None if matrix is None else np.where(hidden, np.nan, matrix[:, cols])


def _raw_factor(name: str, registry: dict, relistings: list[tuple[dict, _Relisting]]
                ) -> np.ndarray:
    """Factor `name` (float64, NaN for missing / non-finite), each relisted name's listing cells
    computed from that listing's rows alone (market-context factors as they are)."""
    family, compute = registry[name]
    raw = _as_array(compute())
    if family == MARKET_FAMILY:
        return raw
    for relisted_registry, relisting in relistings:
        part = _as_array(relisted_registry[name][1]())
        raw[:, relisting.cols] = np.where(relisting.cells, part, raw[:, relisting.cols])
    return raw


def _relisted_registries(inp: FactorInputs, config: FactorConfig
                         ) -> list[tuple[dict, _Relisting]]:
    return [(factor_registry(r.inputs, config), r) for r in _relisting_passes(inp)]


def _as_array(value) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    return np.where(np.isfinite(array), array, np.nan)


def build_raw_factors(
    inp: FactorInputs, config: FactorConfig, names: Iterable[str] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Raw factor matrices (float64, NaN for missing / non-finite) and each factor's family."""
    registry = factor_registry(inp, config)
    relistings = _relisted_registries(inp, config)
    wanted = list(registry) if names is None else [n for n in registry if n in set(names)]
    values = {name: _raw_factor(name, registry, relistings) for name in wanted}
    return values, {name: registry[name][0] for name in wanted}


@dataclass(frozen=True)
class TransformConfig:
    method: str = "rank"
    winsorise: tuple[float, float] | None = (0.01, 0.99)
    sector_neutralise: bool = True
    min_sector_size: int = 3  # sectors with fewer valid names on a date are not demeaned within
    # what their names (and those without a sector) get: transforms.SMALL_SECTOR_FALLBACKS. The
    # class default is what chains pickled before the choice existed did; from_params' is new.
    small_sector_fallback: str = "raw"
    # sector sums added in value order (transforms._order_free_sums); False: in the tickers'
    # order, as chains pickled before it were trained (the class default), True from params
    order_free_sums: bool = False

    @classmethod
    def from_params(cls, params: Mapping | None) -> TransformConfig:
        params = dict(params or {})
        winsor = params.get("winsorise", cls.winsorise)
        return cls(
            method=str(params.get("method", cls.method)),
            winsorise=None if winsor is None else (float(winsor[0]), float(winsor[1])),
            sector_neutralise=bool(params.get("sector_neutralise", cls.sector_neutralise)),
            min_sector_size=int(params.get("min_sector_size", cls.min_sector_size)),
            small_sector_fallback=str(params.get("small_sector_fallback", "whole_date")),
            order_free_sums=True,
        )


def iter_engineered_factors(
    inp: FactorInputs,
    config: FactorConfig,
    transform: TransformConfig,
    names: Iterable[str] | None = None,
    first_row: int = 0,
) -> Iterator[tuple[str, str, np.ndarray]]:
    """(name, family, transformed float32 matrix) per factor, one at a time: a caller that keeps
    each in a smaller form (the long rows) holds one date x ticker matrix at a time.

    Per-ticker factors get the per-date cross-sectional transform (sector neutralisation only
    when the panel has sectors); market-context factors are left as they are. Only date rows
    from `first_row` on are returned (and transformed): earlier rows then only feed the trailing
    windows, which saves the per-date transforms when only the last dates are wanted."""
    registry = factor_registry(inp, config)
    relistings = _relisted_registries(inp, config)
    wanted = list(registry) if names is None else [n for n in registry if n in set(names)]
    codes = inp.sector_codes if transform.sector_neutralise else None
    if codes is not None:
        codes = codes[first_row:]
    absent = ~inp.in_universe[first_row:]  # a name outside that day's cross-section is not ranked
    for name in wanted:
        family = registry[name][0]
        raw = _raw_factor(name, registry, relistings)[first_row:]
        if family != MARKET_FAMILY:
            raw[absent] = np.nan
            raw = transforms.cross_sectional_transform(
                raw, transform.method, transform.winsorise, codes, transform.min_sector_size,
                transform.small_sector_fallback, getattr(transform, "order_free_sums", False))
        yield name, family, raw.astype(np.float32)


def engineer_factors(
    inp: FactorInputs,
    config: FactorConfig,
    transform: TransformConfig,
    names: Iterable[str] | None = None,
    first_row: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Transformed factor matrices (float32) by name, and each factor's family
    (`iter_engineered_factors` collected)."""
    values: dict[str, np.ndarray] = {}
    families: dict[str, str] = {}
    for name, family, matrix in iter_engineered_factors(inp, config, transform, names, first_row):
        values[name], families[name] = matrix, family
    return values, families


def values_are_ranks(transform: TransformConfig) -> bool:
    """Whether transformed per-ticker values are already per-date ranks (affine in them)."""
    return transform.method == "rank"
