"""Quantile long-short backtest of a cross-sectional prediction (DESIGN sections 3 and 4).

Timing (no look-ahead): a signal formed at the close of prediction date t is traded at the close of
the trading day t+d (d = ``execution_delay``, counted on the returns' date axis), so the first
daily return it earns is that of day t+d+1. ``ret_1d`` at date s is close(s) / close(s-1) - 1, so
a book traded at close(e) earns ``ret_1d`` of dates e+1, e+2, ... up to and including the day of
the next trade.

Every ``rebalance_days`` prediction dates (starting at the first) the names are bucketed into
quantiles per date: long the top quantile, short the bottom one, equal weight (long leg sums to
+1, short leg to -1 of the book's capital at the trade).

Buy-and-hold convention (every book: long-short, long-only, universe). At each trade the book's
capital is normalised to 1 and position i is opened at value x_i = w_i (its target weight); the
rest, 1 - sum(w), is cash earning nothing (all of the capital for the dollar-neutral long-short
book, whose short sale proceeds are not reinvested). Until the next trade nothing is traded:
each position drifts with its own return, x_i,t = x_i,t-1 * (1 + r_i,t), and the book's equity
(NAV) is NAV_t = 1 + sum_i (x_i,t - w_i), i.e. capital plus the leg P&L (long leg gain minus
short leg gain). The book's daily return is its P&L over the previous close's NAV:

    r_book,t = sum_i x_i,t-1 * r_i,t / NAV_t-1 = sum_i w_i,t-1 * r_i,t,

with w_i,t = x_i,t / NAV_t the drifted weights. Daily returns compound across books (``equity``
is their cumulative product), so each book starts from the equity left by the previous one. A
book whose NAV reaches zero or below (only with absurd returns) earns nothing until the next trade.

Turnover of a trade = 0.5 x sum |w_target - w_drifted|, both as fractions of the NAV at that
close, against the weights the previous book has drifted to just before the trade (not against
its targets); the first build from an empty book (1.0 for a full long-short) is reported apart as
``summary["initial_turnover"]`` and ``summary["turnover"]`` is the mean over the later trades.
Costs are ``cost_bps`` / 1e4 x turnover, subtracted from the book's return on its first held day
(the initial build included): ``cost_bps`` is charged per unit of one-way turnover, so a round trip
of one unit (sold out of one name, bought into another) costs ``cost_bps`` and a single buy or sell
``cost_bps`` / 2. Turnover and costs concern the long-short book only.

Alongside: the long-only top-quantile book and the equal-weighted universe (every name with a
prediction on the signal date), both held the same way and gross of costs; excess = long-only -
universe, which the IR measures.

Untradable closes (``tradable``: False where the close is not a trade: a suspension, a
forward-filled, masked or withheld price, a date without a row). A position in a name that cannot
be traded at the trade close is frozen while the name has been without a trade for at most
``max_frozen_days`` dates: it keeps its drifted weight in every book, is neither sold nor bought
(no turnover), and earns the name's returns, the move at reopening included (``holding_returns``
measures it from the last traded close). The capital it holds is no longer free: each leg's
tradable targets are scaled down so that the leg's size (frozen plus tradable) is no larger than
its target (a long leg of 1 with 0.05 frozen buys 0.95 of its targets). A name in the targets
that cannot be bought at the trade close is not bought. After more than ``max_frozen_days``
dates without a trade the name is taken as delisted: the position earns nothing more and is
sold at its last price at the next trade, even if the name trades again before it (the file has
no delisting return), and a close after such a gap earns no return across it (a code back after
a long absence is often another company). The rule reads each date and earlier only.

Closes locked at a daily price limit (``limit_lock``, core.evaluation.limit_locks: +1 limit-up,
nothing can be bought; -1 limit-down, nothing can be sold): at such a trade close a position the
book would buy into (or a short it would cover) at +1, or sell out of (or short) at -1, keeps its
drifted weight, as a frozen one does, and each leg's free targets are scaled down so the leg is
no larger than its target (frozen positions are not scaled, and a name the scaling would move
across its own lock keeps its weight too). A name taken as delisted while the last book was held
is sold at its last price whatever its close shows. ``locked_weight`` is the gross weight of the
trades a lock stopped (a held name kept, a target not bought).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bma_quant.core.data.universe import TRADABLE
from bma_quant.core.evaluation.costs import COST_RATE
from bma_quant.core.evaluation.limit_locks import LIMIT_LOCK, with_locks
from bma_quant.core.evaluation.metrics import CONSTANT_RTOL, DATE, TICKER, quantile_labels

BOOKS = ("long_short", "long_only", "universe")
DAILY_COLUMNS = (
    "long_short",
    "long_short_gross",
    "long_only",
    "universe",
    "excess",
    "turnover",
    "equity",
    "drawdown",
    # on a book's first held day: gross long-short weight kept frozen at its trade (closes that
    # are not trades), sold at a last price past max_frozen_days (taken as delisted), and the
    # trades a price-limit lock stopped (|target - drifted| of each blocked name)
    "frozen_weight",
    "closed_untraded_weight",
    "locked_weight",
)
SUMMARY_KEYS = (
    "sharpe",
    "ir",
    "annual_return",
    "cagr",
    "annual_volatility",
    "max_drawdown",
    "turnover",
    "initial_turnover",
    "n_rebalances",
    "n_days",
    "flat_rebalances",
)


@dataclass(frozen=True)
class BacktestResult:
    """Daily series and summary metrics of one backtest.

    ``daily``: DataFrame indexed by ``date`` (the days a book is held) with ``DAILY_COLUMNS``;
    ``long_short`` is net of costs, ``equity`` its compounded curve (starting from 1.0 before the
    first day), ``drawdown`` = equity / running peak - 1 (<= 0). ``summary``: ``SUMMARY_KEYS``.
    ``weights``: the rebalance books' target weights at the trade, long (date = signal date,
    trade_date, ticker, quantile, long_short, long_only, universe); they drift while held.
    """

    daily: pd.DataFrame
    summary: dict[str, float]
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)


# --------------------------------------------------------------------------------------------
# Return-series statistics
# --------------------------------------------------------------------------------------------


def _finite(returns: pd.Series | np.ndarray) -> np.ndarray:
    values = np.asarray(returns, dtype=np.float64)
    return values[np.isfinite(values)]


def annualised_sharpe(returns: pd.Series | np.ndarray, periods_per_year: int = 252) -> float:
    """mean / std (ddof=1) x sqrt(periods_per_year); NaN for < 2 values or constant returns."""
    values = _finite(returns)
    if values.size < 2:
        return math.nan
    std = values.std(ddof=1)
    # Constant returns (e.g. an empty book) have no defined Sharpe; rounding dust is not risk.
    if not std**2 > CONSTANT_RTOL * (values @ values) / values.size:
        return math.nan
    return float(values.mean() / std * math.sqrt(periods_per_year))


def drawdown_path(returns: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compounded equity (from 1.0) and drawdown = equity / running peak - 1 (<= 0).

    The starting capital 1.0 counts as a peak, so a loss on the first day is a drawdown.
    """
    values = np.nan_to_num(np.asarray(returns, dtype=np.float64), nan=0.0)
    equity = np.cumprod(1.0 + values)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return equity, equity / peak - 1.0


def compounded_annual_return(returns: pd.Series | np.ndarray, periods_per_year: int = 252
                             ) -> float:
    """Growth of the compounded curve per year: prod(1 + r) ** (periods_per_year / n) - 1 (the
    CAGR; `annual_return` is the arithmetic mean x periods_per_year). NaN without returns, -1
    when the curve reaches zero."""
    values = _finite(returns)
    if values.size == 0:
        return math.nan
    growth = float(np.prod(1.0 + values))
    if growth <= 0:
        return -1.0
    return float(growth ** (periods_per_year / values.size) - 1.0)


def max_drawdown(returns: pd.Series | np.ndarray) -> float:
    """Largest peak-to-trough loss of the compounded curve, as a positive fraction (0.2 = -20%)."""
    values = _finite(returns)
    if values.size == 0:
        return math.nan
    _, drawdown = drawdown_path(values)
    return max(0.0, float(-drawdown.min()))  # max() also turns -0.0 into 0.0


# --------------------------------------------------------------------------------------------
# Books and timing
# --------------------------------------------------------------------------------------------


def rebalance_weights(
    predictions: pd.DataFrame, pred_col: str = "prediction", n_quantiles: int = 5
) -> pd.DataFrame:
    """Per-date book weights from a prediction cross-section.

    Returns the valid rows of ``predictions`` as a long frame (date, ticker, quantile, long_short,
    long_only, universe): long_short is +1/n_top on the top quantile and -1/n_bottom on the bottom
    one, long_only +1/n_top on the top quantile, universe 1/n on every name; zero elsewhere.
    """
    if n_quantiles < 2:
        raise ValueError(
            f"n_quantiles must be >= 2 to have distinct long and short legs, got {n_quantiles}"
        )
    valid = predictions.loc[
        np.isfinite(predictions[pred_col].to_numpy(dtype=np.float64)), [DATE, TICKER, pred_col]
    ]
    quantile = quantile_labels(valid, pred_col, n_quantiles).to_numpy()
    top = (quantile == n_quantiles).astype(np.float64)
    bottom = (quantile == 1).astype(np.float64)
    codes, _ = pd.factorize(valid[DATE].to_numpy())
    n_top = np.bincount(codes, weights=top)[codes]
    n_bottom = np.bincount(codes, weights=bottom)[codes]
    n_names = np.bincount(codes).astype(np.float64)[codes]
    with np.errstate(invalid="ignore", divide="ignore"):
        long_leg = np.where(top > 0, 1.0 / n_top, 0.0)
        short_leg = np.where(bottom > 0, 1.0 / n_bottom, 0.0)
    both_legs = (n_top > 0) & (n_bottom > 0)
    return pd.DataFrame(
        {
            DATE: valid[DATE].to_numpy(),
            TICKER: valid[TICKER].to_numpy(),
            "quantile": quantile.astype(np.int64),
            "long_short": np.where(both_legs, long_leg - short_leg, 0.0),
            "long_only": long_leg,
            "universe": 1.0 / n_names,
        }
    )


def execution_positions(
    signal_dates: pd.DatetimeIndex, trading_dates: pd.DatetimeIndex, execution_delay: int
) -> np.ndarray:
    """Index into ``trading_dates`` of the close at which each signal is traded.

    A signal dated on trading day t is traded at the close d trading days later. A signal dated
    off the axis (e.g. a holiday of the returns' market) is traded at the d-th close after its
    date, and at the first close after it when d = 0, since the close "at" its date never existed.
    Positions may run past the end of the axis (not tradable).
    """
    left = trading_dates.searchsorted(signal_dates, side="left")
    if len(trading_dates) == 0:
        return left + execution_delay
    clipped = np.minimum(left, len(trading_dates) - 1)
    on_axis = (left < len(trading_dates)) & (trading_dates[clipped] == signal_dates)
    return np.where(on_axis, left + execution_delay, left + max(execution_delay - 1, 0))


# --------------------------------------------------------------------------------------------
# Backtest
# --------------------------------------------------------------------------------------------


def _empty_result(weights: pd.DataFrame | None = None) -> BacktestResult:
    daily = pd.DataFrame(
        {name: pd.Series(dtype=np.float64) for name in DAILY_COLUMNS},
        index=pd.DatetimeIndex([], name=DATE),
    )
    summary = {key: math.nan for key in SUMMARY_KEYS}
    summary.update(n_rebalances=0, n_days=0, flat_rebalances=0)
    return BacktestResult(daily, summary, weights if weights is not None else pd.DataFrame())


def _hold(targets: np.ndarray, daily_returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Buy-and-hold of target books over one holding period (module docstring's convention).

    ``targets``: (ticker x book) weights set at the trade; ``daily_returns``: (day x ticker) of the
    held days, NaN already zeroed. Returns the (day x book) daily returns and the (ticker x book)
    weights drifted to the last held close, as fractions of each book's NAV then (all zero for a
    book that was wiped out).
    """
    growth = np.cumprod(1.0 + daily_returns, axis=0)  # value at close t of 1 bought at the trade
    before = np.vstack([np.ones((1, growth.shape[1])), growth[:-1]])  # ... at close t-1
    pnl = (before * daily_returns) @ targets  # sum_i x_i,t-1 * r_i,t, per book
    nav = 1.0 + np.cumsum(pnl, axis=0)
    nav_before = np.vstack([np.ones((1, targets.shape[1])), nav[:-1]])
    # A wiped-out book (NAV <= 0 at some close) has no capital left to earn a return on.
    alive = np.minimum.accumulate(nav_before, axis=0) > 0
    returns = np.divide(pnl, nav_before, out=np.zeros_like(pnl), where=alive)
    solvent = alive[-1] & (nav[-1] > 0)
    drifted = np.divide(targets * growth[-1][:, None], nav[-1], out=np.zeros_like(targets),
                        where=solvent[None, :])
    return returns, drifted


def _is_wide(returns: pd.DataFrame, return_col: str) -> bool:
    return return_col not in returns.columns and isinstance(returns.index, pd.DatetimeIndex)


def rebalance_dates(dates: pd.Series | np.ndarray, rebalance_days: int) -> pd.DatetimeIndex:
    """The signal dates of a backtest: every ``rebalance_days``-th distinct date, from the first."""
    return pd.DatetimeIndex(np.sort(pd.unique(np.asarray(dates))))[::rebalance_days]


def _valid_predictions(predictions: pd.DataFrame, pred_col: str) -> pd.DataFrame:
    valid = np.isfinite(predictions[pred_col].to_numpy(dtype=np.float64))
    return predictions.loc[valid & predictions[DATE].notna().to_numpy(), [DATE, TICKER, pred_col]]


def _shown(key) -> str:
    """A key as a user wrote it, with its kind: 'A' (text) or 7 (a number)."""
    return repr(key.item() if isinstance(key, np.generic) else key)


def _check_keys(preds: pd.DataFrame, wide_returns: pd.DataFrame) -> None:
    """Predictions and returns name dates and tickers alike: dates as text, or tickers as
    numbers on one side only, matched nothing and gave a backtest of costs alone."""
    problems, zones = [], {}
    for side, values in (("predictions", preds[DATE]), ("returns", wide_returns.index)):
        if pd.api.types.is_datetime64_any_dtype(values):
            zones[side] = getattr(values.dtype, "tz", None)
        elif pd.api.types.infer_dtype(values, skipna=True) != "datetime":  # Timestamps kept
            problems.append(f"the {side}' dates are {values.dtype}, not datetimes")
    if len(zones) == 2 and (zones["predictions"] is None) != (zones["returns"] is None):
        problems.append(f"the predictions' dates are in time zone {zones['predictions']} and "
                        f"the returns' in {zones['returns']}")
    if not problems and not pd.Index(preds[TICKER].unique()).isin(wide_returns.columns).any():
        problems.append(
            f"no ticker of the predictions (e.g. {_shown(preds[TICKER].iloc[0])}) is among the "
            f"returns' (e.g. {_shown(wide_returns.columns[0])})")
    if problems:
        raise ValueError("long_short_backtest: " + "; ".join(problems))


def _trade_schedule(signal_dates: pd.DatetimeIndex, trading_dates: pd.DatetimeIndex,
                    execution_delay: int) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The tradable signal dates and the position of each book's first held day."""
    # A book earns from the day after its trade; a trade on the last day (or later) earns nothing.
    start = execution_positions(signal_dates, trading_dates, execution_delay) + 1
    tradable = start < len(trading_dates)
    signal_dates, start = signal_dates[tradable], start[tradable]
    # Two signals traded at the same close (only with off-axis dates): the later one wins.
    last_of_start = np.append(start[1:] != start[:-1], True)[: len(start)]
    return signal_dates[last_of_start], start[last_of_start]


def _book_matrices(weights: pd.DataFrame, signal_dates: pd.DatetimeIndex,
                   tickers: pd.Index) -> np.ndarray:
    """books[k] is the (ticker x book) weight matrix of rebalance k: the date x ticker pivot."""
    return np.stack(
        [
            weights.pivot(index=DATE, columns=TICKER, values=book)
            .reindex(index=signal_dates, columns=tickers)
            .fillna(0.0)
            .to_numpy()
            for book in BOOKS
        ],
        axis=-1,
    )


def _with_frozen(targets: np.ndarray, drifted: np.ndarray, tradable: np.ndarray,
                 frozen: np.ndarray) -> np.ndarray:
    """The (ticker x book) weights traded to at a close where only the ``tradable`` names can be
    traded: ``frozen`` positions keep their drifted weights, other untradable names are not bought
    (a held one is closed at its last price), and each leg's tradable targets are scaled down so
    that the leg is no larger than its target (the frozen positions hold part of its capital)."""
    out = np.where(frozen[:, None], drifted, np.where(tradable[:, None], targets, 0.0))
    for sign in (1.0, -1.0):
        leg = np.maximum(sign * targets, 0.0)
        free = leg * tradable[:, None]
        stuck = (np.maximum(sign * drifted, 0.0) * frozen[:, None]).sum(axis=0)
        wanted = free.sum(axis=0)
        room = np.maximum(leg.sum(axis=0) - stuck, 0.0)
        scale = np.divide(room, wanted, out=np.ones_like(room), where=wanted > room)
        out = np.where(free > 0, targets * scale[None, :], out)
    return out


def _hold_books(books: np.ndarray, start: np.ndarray, daily_returns: np.ndarray, end: int,
                cells: tuple[np.ndarray, np.ndarray] | None = None,
                rates: np.ndarray | None = None, locks: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(day x book) returns, the long-short book's turnover per day, (day x 3) its gross
    weight frozen / closed at a last price / stopped by a lock at each trade, from the first book's first held day
    to ``end``: each book held untraded until the next one starts; and with ``rates`` (day x
    ticker one-way cost per unit traded, core.evaluation.costs) each trade's cost, else None.
    ``cells``: (tradable, frozen), both (day x ticker) (module docstring); None = every close a
    trade. ``locks``: (day x ticker) price-limit locks (module docstring); None = none."""
    first = start[0]
    stops = np.append(start[1:], end)
    book_returns = np.zeros((end - first, len(BOOKS)))
    turnover = np.zeros(end - first)
    costs = None if rates is None else np.zeros(end - first)
    untraded = np.zeros((end - first, 3))
    drifted = np.zeros(books.shape[1:])  # weights just before the trade (empty at first)
    # names taken as delisted while the last book was held: sold at their last price at the
    # next trade, whatever that close shows
    delisted = np.zeros(books.shape[1], dtype=bool)
    for k, (begin, stop) in enumerate(zip(start, stops, strict=True)):
        targets = books[k]
        held = daily_returns[begin:stop]
        if cells is not None:
            tradable, frozen = cells
            if not tradable[begin - 1].all():  # the trade's close
                stuck, gone = frozen[begin - 1], ~tradable[begin - 1] & ~frozen[begin - 1]
                untraded[begin - first, :2] = (np.abs(drifted[stuck, 0]).sum(),
                                               np.abs(drifted[gone, 0]).sum())
                targets = _with_frozen(targets, drifted, tradable[begin - 1], frozen[begin - 1])
        if locks is not None and locks[begin - 1].any():  # the trade's close
            lock = np.where(delisted & (locks[begin - 1] < 0), 0, locks[begin - 1])
            wanted = targets[:, 0]
            targets, blocked = with_locks(targets, drifted, lock,
                                          None if cells is None else cells[1][begin - 1])
            stopped = blocked[:, 0]
            untraded[begin - first, 2] = np.abs(wanted[stopped] - drifted[stopped, 0]).sum()
        if cells is not None:
            # past the bound without a trade: taken as delisted at its last price, the position
            # earns nothing more until the next trade sells it
            gone = ~tradable[begin:stop] & ~frozen[begin:stop]
            delisted = gone.any(axis=0)
            if delisted.any():
                held = np.where(np.logical_or.accumulate(gone, axis=0), 0.0, held)
        traded = np.abs(targets[:, 0] - drifted[:, 0])
        turnover[begin - first] = 0.5 * traded.sum()
        if costs is not None:
            costs[begin - first] = (rates[begin - 1] * traded).sum()  # the trade's close
        # Held untraded to the close of the next trade, where the weights have drifted.
        book_returns[begin - first : stop - first], drifted = _hold(targets, held)
    return book_returns, turnover, untraded, costs


def _dates_since_trade(tradable: np.ndarray) -> np.ndarray:
    """(day x ticker) dates since the name's last traded close, that day included (0 on a traded
    day); a large number before its first one."""
    rows = np.arange(tradable.shape[0])[:, None]
    last = np.maximum.accumulate(np.where(tradable, rows, -1), axis=0)
    return np.where(last >= 0, rows - last, np.iinfo(np.int64).max // 2)


def frozen_cells(tradable: np.ndarray, max_frozen_days: int | None = None) -> np.ndarray:
    """(day x ticker) True where a close is not a trade and the name traded at most
    ``max_frozen_days`` dates earlier (None: any earlier trade): a position there is frozen.
    After a longer gap it is closed at its last price (a delisting). Causal."""
    tradable = np.asarray(tradable, dtype=bool)
    since = _dates_since_trade(tradable)
    limit = np.iinfo(np.int64).max // 4 if max_frozen_days is None else int(max_frozen_days)
    return ~tradable & (since <= limit)


def holding_returns(panel: pd.DataFrame, max_frozen_days: int | None = None) -> pd.DataFrame:
    """What a holder earns per row of a long (date, ticker, close, ret_1d, tradable) panel: on a
    traded close, the return from the name's last traded close (the move over a suspension, a
    forward-filled or masked run, a withheld split window), if that was at most
    ``max_frozen_days`` + 1 dates earlier, else NaN (taken as relisted); NaN on a close that is no
    trade (a held position keeps its value). Without a `tradable` column: ``ret_1d`` as it is.
    Returns (date, ticker, ret_1d, tradable[, cost_rate][, limit_lock]) in the panel's row
    order."""
    # passed through (long_short_backtest reads them)
    costs = [c for c in (COST_RATE, LIMIT_LOCK) if c in panel]
    if TRADABLE not in panel:
        return panel[[DATE, TICKER, "ret_1d", *costs]]
    if panel.duplicated([DATE, TICKER]).any():
        raise ValueError("holding_returns: duplicate (date, ticker) rows")
    date_codes, dates = pd.factorize(panel[DATE], sort=True)
    ticker_codes, tickers = pd.factorize(panel[TICKER])  # any order: mapped back to the rows
    close = np.full((len(dates), len(tickers)), np.nan)
    close[date_codes, ticker_codes] = panel["close"].to_numpy(dtype=np.float64, na_value=np.nan)
    tradable = np.zeros(close.shape, dtype=bool)
    # a missing flag is no trade, as in `tradable_pivot`
    tradable[date_codes, ticker_codes] = panel[TRADABLE].to_numpy(dtype=np.float64,
                                                                   na_value=0.0) > 0
    tradable &= np.isfinite(close)
    since = _dates_since_trade(tradable)
    last_close = pd.DataFrame(np.where(tradable, close, np.nan)).ffill().to_numpy()
    previous = np.vstack([np.full((1, close.shape[1]), np.nan), last_close[:-1]])
    gap = np.vstack([np.full((1, close.shape[1]), np.iinfo(np.int64).max // 2), since[:-1]])
    limit = np.iinfo(np.int64).max // 4 if max_frozen_days is None else int(max_frozen_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        held = np.where(tradable & (gap <= limit), close / previous - 1.0, np.nan)
    return pd.DataFrame({DATE: panel[DATE].to_numpy(), TICKER: panel[TICKER].to_numpy(),
                         "ret_1d": held[date_codes, ticker_codes],
                         TRADABLE: tradable[date_codes, ticker_codes],
                         **{c: panel[c].to_numpy() for c in costs}}, index=panel.index)


def tradable_pivot(returns: pd.DataFrame, tradable_col: str = TRADABLE) -> pd.DataFrame:
    """Long (date, ticker, tradable) -> (date x ticker) bool; a cell without a row is False."""
    wide = returns.pivot(index=DATE, columns=TICKER, values=tradable_col)
    return wide.astype(np.float64) > 0  # NaN (no row) -> False


@dataclass(frozen=True)
class Tradability:
    """A (date x ticker) `tradable` matrix with the frozen cells derived from it once, so that
    the backtests of many configurations on the same returns share them. Build it with
    ``from_frame``; a cell without a value is not tradable."""

    dates: pd.DatetimeIndex
    tickers: pd.Index
    tradable: np.ndarray
    frozen: np.ndarray
    max_frozen_days: int | None

    @classmethod
    def from_frame(cls, tradable: pd.DataFrame, max_frozen_days: int | None) -> Tradability:
        values = tradable.sort_index()
        matrix = values.to_numpy(dtype=np.float64, na_value=0.0) > 0
        return cls(pd.DatetimeIndex(values.index), values.columns, matrix,
                   frozen_cells(matrix, max_frozen_days), max_frozen_days)

    def on(self, dates: pd.DatetimeIndex, tickers: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        """(tradable, frozen) on a backtest's axes; another calendar derives them again."""
        if not self.dates.equals(dates):
            frame = pd.DataFrame(self.tradable, self.dates, self.tickers)
            return Tradability.from_frame(frame.reindex(index=dates, fill_value=False),
                                          self.max_frozen_days).on(dates, tickers)
        if self.tickers.equals(tickers):
            return self.tradable, self.frozen
        columns = self.tickers.get_indexer(tickers)
        known = columns >= 0
        take = np.where(known, columns, 0)
        return (self.tradable[:, take] & known[None, :], self.frozen[:, take] & known[None, :])


def _tradable_cells(tradable: pd.DataFrame | Tradability | None, max_frozen_days: int | None,
                    dates: pd.DatetimeIndex, tickers: pd.Index
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """(tradable, frozen) on the backtest's axes; None when every close is a trade."""
    if tradable is None:
        return None
    if not isinstance(tradable, Tradability):
        tradable = Tradability.from_frame(tradable, max_frozen_days)
    elif tradable.max_frozen_days != max_frozen_days:
        raise ValueError(f"tradable was built with max_frozen_days {tradable.max_frozen_days}, "
                         f"the backtest has {max_frozen_days}")
    cells = tradable.on(dates, tickers)
    return None if cells[0].all() else cells  # every close a trade: nothing to freeze


def _daily_frame(book_returns: np.ndarray, net: np.ndarray, turnover: np.ndarray,
                 dates: pd.DatetimeIndex, untraded: np.ndarray) -> pd.DataFrame:
    equity, drawdown = drawdown_path(net)
    return pd.DataFrame(
        {
            "long_short": net,
            "long_short_gross": book_returns[:, 0],
            "long_only": book_returns[:, 1],
            "universe": book_returns[:, 2],
            "excess": book_returns[:, 1] - book_returns[:, 2],
            "turnover": turnover,
            "equity": equity,
            "drawdown": drawdown,
            "frozen_weight": untraded[:, 0],
            "closed_untraded_weight": untraded[:, 1],
            "locked_weight": untraded[:, 2],
        },
        index=dates,
    )


def _summary(net: np.ndarray, excess: np.ndarray, later_turnover: np.ndarray,
             initial_turnover: float, n_rebalances: int, periods_per_year: int) -> dict:
    return {
        "sharpe": annualised_sharpe(net, periods_per_year),
        "ir": annualised_sharpe(excess, periods_per_year),
        "annual_return": float(net.mean() * periods_per_year),
        "cagr": compounded_annual_return(net, periods_per_year),
        "annual_volatility": (
            float(net.std(ddof=1) * math.sqrt(periods_per_year)) if net.size > 1 else math.nan
        ),
        "max_drawdown": max_drawdown(net),
        # The build from an empty book is a one-off; the rebalancing cost is the later trades'.
        "turnover": float(later_turnover.mean()) if later_turnover.size else math.nan,
        "initial_turnover": float(initial_turnover),
        "n_rebalances": int(n_rebalances),
        "n_days": int(len(net)),
    }


def long_short_backtest(
    predictions: pd.DataFrame,
    returns: pd.DataFrame,
    *,
    rebalance_days: int = 10,
    n_quantiles: int = 5,
    cost_bps: float = 10.0,
    execution_delay: int = 1,
    periods_per_year: int = 252,
    pred_col: str = "prediction",
    return_col: str = "ret_1d",
    signal_dates: pd.DatetimeIndex | None = None,
    tradable: pd.DataFrame | Tradability | None = None,
    tradable_col: str = TRADABLE,
    max_frozen_days: int | None = None,
    cost_rates: pd.DataFrame | None = None,
    cost_col: str = COST_RATE,
    locks: pd.DataFrame | None = None,
    lock_col: str = LIMIT_LOCK,
) -> BacktestResult:
    """Quantile long-short, long-only and universe backtest with delayed execution and costs.

    ``predictions``: long (date, ticker, prediction); ``returns``: long (date, ticker, ret_1d), or
    already wide (dates as the index, one column per ticker).
    A held name with a missing daily return contributes 0 that day. The last book is held for
    ``rebalance_days`` trading days (or to the end of the returns). Never raises on empty or too
    short input: the summary is then NaN (counts 0).
    ``signal_dates``: the rebalance dates when the caller has already taken them with
    ``rebalance_dates`` from the valid predictions' dates (``predictions`` then needs only the rows
    of those dates: callers backtesting many configurations pass fewer rows); None = taken here.
    ``tradable``: (date x ticker) bool, False where a close is not a trade (module docstring), or
    a ``Tradability`` built with the same ``max_frozen_days`` (many backtests on the same
    returns); with long ``returns`` it may instead be their ``tradable_col`` column. A (date, ticker) without
    a value is not tradable. None and no such column: every close is a trade. ``returns`` should
    then be ``holding_returns`` (the move over a frozen gap is earned at reopening), and
    ``max_frozen_days`` the same as theirs (None: frozen however long).
    ``cost_rates``: (date x ticker) one-way cost per unit traded of each name
    (core.evaluation.costs, `evaluation.backtest.spread_cost`), or with long ``returns`` their
    ``cost_col`` column: each trade then costs the sum of its names' rates times their traded
    weights, instead of ``cost_bps`` x turnover (a name without a rate pays cost_bps / 2).
    ``locks``: (date x ticker) price-limit locks (+1 up, -1 down, 0 or missing none; module
    docstring), or with long ``returns`` their ``lock_col`` column; None and no such column:
    no close is locked.
    """
    if rebalance_days < 1 or execution_delay < 0:
        raise ValueError(
            f"need rebalance_days >= 1 and execution_delay >= 0, "
            f"got {rebalance_days} and {execution_delay}"
        )
    preds = _valid_predictions(predictions, pred_col)
    if preds.empty or returns.empty:
        return _empty_result()
    if signal_dates is None:
        signal_dates = rebalance_dates(preds[DATE], rebalance_days)
    weights = rebalance_weights(preds[preds[DATE].isin(signal_dates)], pred_col, n_quantiles)

    wide_returns = _wide_returns(returns, return_col)
    _check_keys(preds, wide_returns)
    if not _is_wide(returns, return_col):
        tradable, cost_rates, locks = _inputs_from_columns(
            returns, tradable, tradable_col, cost_rates, cost_col, locks, lock_col)
    trading_dates = pd.DatetimeIndex(wide_returns.index, name=DATE)
    signal_dates, start = _trade_schedule(signal_dates, trading_dates, execution_delay)
    trade_dates = trading_dates[start - 1]
    weights = weights[weights[DATE].isin(signal_dates)].reset_index(drop=True)
    weights.insert(
        1, "trade_date", weights[DATE].map(dict(zip(signal_dates, trade_dates, strict=True)))
    )
    if len(start) == 0:
        return _empty_result(weights)

    tickers = wide_returns.columns.union(pd.Index(weights[TICKER].unique()))
    daily_returns = wide_returns.reindex(columns=tickers).to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    daily_returns = np.nan_to_num(daily_returns, nan=0.0)
    first, end = start[0], min(start[-1] + rebalance_days, len(trading_dates))
    cells = _tradable_cells(tradable, max_frozen_days, trading_dates, tickers)
    book_returns, turnover, untraded, costs = _hold_books(
        _book_matrices(weights, signal_dates, tickers), start, daily_returns, end, cells,
        _cost_rate_cells(cost_rates, cost_bps, trading_dates, tickers),
        _lock_cells(locks, trading_dates, tickers))
    net = book_returns[:, 0] - (cost_bps / 1e4 * turnover if costs is None else costs)
    daily = _daily_frame(book_returns, net, turnover, trading_dates[first:end], untraded)
    summary = _summary(net, daily["excess"].to_numpy(), turnover[start[1:] - first],
                       turnover[0], len(start), periods_per_year)
    summary["flat_rebalances"] = flat_rebalances(weights)
    return BacktestResult(daily, summary, weights)


def _inputs_from_columns(
    returns: pd.DataFrame,
    tradable: pd.DataFrame | Tradability | None, tradable_col: str,
    cost_rates: pd.DataFrame | None, cost_col: str,
    locks: pd.DataFrame | None, lock_col: str,
) -> tuple[pd.DataFrame | Tradability | None, pd.DataFrame | None, pd.DataFrame | None]:
    """Long ``returns`` may carry tradability, cost rates and locks as columns: an input not
    given is taken from its column when there is one, as a (date x ticker) frame."""
    if tradable is None and tradable_col in returns:
        tradable = tradable_pivot(returns, tradable_col)
    if cost_rates is None and cost_col in returns:
        cost_rates = returns.pivot(index=DATE, columns=TICKER, values=cost_col)
    if locks is None and lock_col in returns:
        locks = returns.pivot(index=DATE, columns=TICKER, values=lock_col)
    return tradable, cost_rates, locks


def flat_rebalances(weights: pd.DataFrame) -> int:
    """Rebalance dates of ``weights`` (rebalance_weights) whose long-short book holds nothing:
    the top or bottom quantile is empty (tied predictions at either end, or too few names)."""
    if weights.empty:
        return 0
    held = weights["long_short"].ne(0.0).groupby(weights[DATE].to_numpy()).any()
    return int((~held).sum())


def _wide_returns(returns: pd.DataFrame, return_col: str) -> pd.DataFrame:
    """(date x ticker) daily returns; a frame already wide is taken as pivoted (callers
    backtesting many configurations on the same returns pivot them once)."""
    if _is_wide(returns, return_col):
        return returns.sort_index()
    return returns.pivot(index=DATE, columns=TICKER, values=return_col).sort_index()


def _cost_rate_cells(cost_rates: pd.DataFrame | None, cost_bps: float,
                     trading_dates: pd.DatetimeIndex, tickers: pd.Index) -> np.ndarray | None:
    """One-way cost rate per (trading date, ticker); a name without a rate pays cost_bps / 2."""
    if cost_rates is None:
        return None
    rates = cost_rates.reindex(index=trading_dates, columns=tickers).to_numpy(
        dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(rates), rates, cost_bps / 2.0 / 1e4)


def _lock_cells(locks: pd.DataFrame | None, trading_dates: pd.DatetimeIndex,
                tickers: pd.Index) -> np.ndarray | None:
    """+1 / -1 / 0 per (trading date, ticker); None when no close is locked (the fast path)."""
    if locks is None:
        return None
    cells = locks.reindex(index=trading_dates, columns=tickers).to_numpy(
        dtype=np.float64, na_value=0.0)
    return np.sign(np.nan_to_num(cells)) if cells.any() else None
