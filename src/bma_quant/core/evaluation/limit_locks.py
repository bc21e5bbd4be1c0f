"""Closes locked at a daily price limit: no trade in the move's direction (DESIGN section 4).

Markets with daily price limits (mainland China, Taiwan, Korea, Japan, ...) stop a name at its
limit. At a close locked limit-up there are no sellers, so nothing can be bought; locked
limit-down there are no buyers, so nothing can be sold. Such a bar trades at one price all day
(open = high = low = close) after a large move. A backtest that buys at that close books a
return no one could have had, and limit-up names are what a momentum or news signal ranks
first.

The rule reads only the bar and the name's previous traded close, so it needs no table of each
board's limits: ``min_move`` is the smallest limit of the market (5 %: a Chinese ST name; 7 % in
Vietnam, 10 % on the main boards), and a limit price is rounded to the name's price grid, so a
move within half a grid step of it counts (5 % down from 0.69 is 0.66, -4.35 %). It also catches
a thin name's single print after a large move, where no size could have been traded either. A
bar without a high and a low is never taken as locked (a close-only file says nothing about the
day's range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bma_quant.core.data import price_grid

LIMIT_LOCK = "limit_lock"  # +1 locked at the limit up (cannot buy), -1 down (cannot sell), 0 free
_SAME_PRICE_RTOL = 1e-6  # prices stored as floats of decimal ticks: equal to within rounding


@dataclass(frozen=True)
class LimitLocks:
    """``evaluation.backtest.limit_locks``: on (the default) where the panel has high and low."""

    enabled: bool = True
    min_move: float = 0.05  # the market's smallest daily limit
    # also a close at the day's high (low) after such a rise (fall): a name that traded and then
    # sat at its limit into the close. Off: right only where min_move is every name's limit (a
    # close at the high short of the name's own limit, or in a market without limits, could be
    # traded).
    close_at_extreme: bool = False
    # the price grid (tick): a limit price is rounded to it, so a 5 % limit at 0.69 is 0.66
    # (-4.3 %). None: each name's at each date, read from its trailing closes (price_steps)
    price_step: float | None = None
    # how each name's grid is read when price_step is None (core.data.price_grid.price_steps)
    grid_window: int = price_grid.GRID_WINDOW
    grid_min_closes: int = price_grid.GRID_MIN_CLOSES
    grid_on_share: float = price_grid.ON_GRID_SHARE

    @classmethod
    def from_params(cls, params: dict | None) -> LimitLocks:
        p = params or {}
        step = p.get("price_step")
        grid = p.get("grid") or {}
        out = cls(enabled=bool(p.get("enabled", True)), min_move=float(p.get("min_move", 0.05)),
                  close_at_extreme=bool(p.get("close_at_extreme", False)),
                  price_step=None if step is None else float(step),
                  grid_window=int(grid.get("window", cls.grid_window)),
                  grid_min_closes=int(grid.get("min_closes", cls.grid_min_closes)),
                  grid_on_share=float(grid.get("on_share", cls.grid_on_share)))
        # min_closes above the window matters only where a grid is read (on, no price_step)
        grid_read = out.enabled and out.price_step is None
        if not (out.grid_window >= 1 and out.grid_min_closes >= 1
                and (out.grid_min_closes <= out.grid_window or not grid_read)
                and 0 < out.grid_on_share <= 1):
            raise ValueError("evaluation.backtest.limit_locks.grid needs window >= 1, min_closes "
                             f"in [1, window] and on_share in (0, 1], got {grid}")
        if not 0 < out.min_move < 1:
            raise ValueError("evaluation.backtest.limit_locks.min_move must be in (0, 1), got "
                             f"{out.min_move}")
        if out.price_step is not None and not (np.isfinite(out.price_step)
                                               and out.price_step >= 0):
            raise ValueError("evaluation.backtest.limit_locks.price_step must be a number >= 0 "
                             f"or null, got {out.price_step}")
        return out


def may_have_one_price_bars(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> bool:
    """Whether some bar could be one price: a cheap test on the long rows before any pivot (most
    panels have no such bar). A superset of ``limit_locks``' test: high and low each within
    rounding of the close puts them within twice that of each other (the margin absorbs the
    float error of the difference)."""
    with np.errstate(invalid="ignore"):
        return bool((np.abs(high - low) <= 2.5 * _SAME_PRICE_RTOL * np.abs(close)).any())


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(a - b) <= _SAME_PRICE_RTOL * np.abs(b)


def limit_locks(close: pd.DataFrame, high: pd.DataFrame, low: pd.DataFrame,
                open_: pd.DataFrame | None = None, traded: pd.DataFrame | None = None,
                min_move: float = 0.05, listing: pd.DataFrame | None = None,
                close_at_extreme: bool = False, step: float | np.ndarray = 0.0) -> pd.DataFrame:
    """(date x ticker) int8: +1 where the bar is one price all day (high = low = close, and the
    open too when given) at least ``min_move`` (the market's smallest limit) above the name's
    previous traded close, -1 at least ``min_move`` below it, 0 elsewhere.
    ``close_at_extreme``: also a close at the day's high after such a rise (+1) or at its low
    after such a fall (-1). ``traded``: (date x ticker) bool, False where a close is not a trade
    (such a bar is not locked and is no previous close); None: every close is. ``listing``:
    (date x ticker) label of the listing a row belongs to (a relisted code's `listed_from`): a
    close of another listing is no previous close. ``step``: the price grid, one for every name,
    one per column, or one per cell (``price_steps``: each name's at each date); a limit price
    rounded to it may fall short of ``min_move`` by up to half a step (5 % of 0.69 is 0.0345,
    the limit 0.66), so a move within half a step of ``min_move`` counts (a tie as half-up
    rounding settles it), and a move is at least two steps (one tick is a thin print). Causal: a date's flag reads that
    date and earlier ones (with ``price_steps``' grid, too)."""
    if not min_move > 0:
        raise ValueError(f"limit_locks: min_move must be > 0, got {min_move}")
    step = np.asarray(step, dtype=np.float64)
    if not (np.isfinite(step).all() and (step >= 0).all()):
        raise ValueError("limit_locks: price steps must be finite and >= 0")
    close = close.sort_index()
    values = close.to_numpy(dtype=np.float64, na_value=np.nan)
    shape_like = dict(index=close.index, columns=close.columns)
    hi = high.reindex(**shape_like).to_numpy(dtype=np.float64, na_value=np.nan)
    lo = low.reindex(**shape_like).to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        is_trade = np.isfinite(values) & (values > 0)
    if traded is not None:
        is_trade &= traded.reindex(**shape_like).fillna(False).to_numpy(dtype=bool)
    at_high, at_low = is_trade & _same(hi, values), is_trade & _same(lo, values)
    one_price = at_high & at_low
    if open_ is not None:
        op = open_.reindex(**shape_like).to_numpy(dtype=np.float64, na_value=np.nan)
        one_price &= ~np.isfinite(op) | _same(op, values)  # a missing open says nothing
    rows = pd.DataFrame(np.where(is_trade, np.arange(len(values))[:, None], np.nan))
    last = rows.ffill().shift(1).to_numpy()  # the previous traded row, per name
    known = np.isfinite(last)
    take = np.where(known, last, 0).astype(np.int64)
    columns = np.arange(values.shape[1])[None, :]
    previous = np.where(known, values[take, columns], np.nan)
    if listing is not None:
        labels = listing.reindex(**shape_like).to_numpy()
        codes = pd.factorize(pd.Series(labels.ravel()))[0].reshape(labels.shape)  # missing: -1
        previous = np.where(codes == codes[take, columns], previous, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        move = values / previous - 1.0
        # A limit price rounded half up to the price grid (as mainland China's are) is the
        # first grid price at or above limit - half a step going up (a tie rounds up, past it),
        # the first at or below limit + half a step going down (a tie rounds up, to it); 104.5 /
        # 100 - 1 is 0.04499999999999993, hence the 1e-9. A move is at least two steps: a
        # price a few ticks above zero moves min_move or more with its smallest move, and a
        # one-price bar one tick away is a thin print, not a limit (a penny panel on a 0.001
        # grid had trades stopped at 20 of 37 rebalances, in a market without limits).
        half = 0.5 * step / previous
        floor = 3 * half + 1e-12
        tie = np.where(step > 0, 1e-9, -1e-9)
        up = move >= np.maximum(min_move - half + tie, floor)
        down = -move >= np.maximum(min_move - half - 1e-9, floor)
    locks = np.zeros(values.shape, dtype=np.int8)
    if close_at_extreme:
        locks[at_high & up] = 1
        locks[at_low & down] = -1
    locks[one_price & up] = 1
    locks[one_price & down] = -1
    return pd.DataFrame(locks, **shape_like)


# A close-only panel's hint (`capped_moves`): daily moves that pile up below a level and stop
# there, as closes at a daily limit do; a market without limits thins out smoothly (none found
# on the S&P sample, a crypto-style panel or the synthetic generator's markets).
_CAP_WINDOW = 0.01  # moves within this much below a candidate level, against as much above it
_CAP_RATIO = 5.0  # at least this many times as many below as above (+1)
# ... and more than in the window before (a pile-up, not a tail that thins out: a thin-tailed
# market's far tail has any below / above ratio, but fewer moves nearer the level than further)
_CAP_RISE = 1.2
_CAP_MIN_MOVES = 100  # and at least this many below
_CAP_LEVELS = np.arange(0.05, 0.35, 0.0025)  # candidate levels of |daily move|


def capped_moves(returns: np.ndarray, min_move: float) -> tuple[float, int] | None:
    """(signed level, moves just below it) of the sharpest pile-up of daily returns at a level
    of at least `min_move` few pass (more moves just below it than further below, and five
    times as many as just above), or None: a panel without high and low cannot show
    a locked close, but a market whose moves stop at a daily limit shows in its returns."""
    values = np.asarray(returns, dtype=np.float64)
    values = values[np.isfinite(values)]
    best: tuple[float, int, float] | None = None
    levels = _CAP_LEVELS[_CAP_LEVELS >= min_move]
    for sign in (1.0, -1.0):
        moves = np.sort(sign * values)
        below = np.searchsorted(moves, levels) - np.searchsorted(moves, levels - _CAP_WINDOW)
        above = np.searchsorted(moves, levels + _CAP_WINDOW) - np.searchsorted(moves, levels)
        before = (np.searchsorted(moves, levels - _CAP_WINDOW)
                  - np.searchsorted(moves, levels - 2 * _CAP_WINDOW))
        sharp = ((below >= _CAP_MIN_MOVES) & (below >= _CAP_RATIO * (above + 1))
                 & (below >= _CAP_RISE * (before + 1)))
        for k in np.flatnonzero(sharp):
            ratio = below[k] / (above[k] + 1)
            if best is None or ratio > best[2]:
                best = (sign * float(levels[k]), int(below[k]), float(ratio))
    return None if best is None else (round(best[0], 4), best[1])


def blocked_trades(targets: np.ndarray, drifted: np.ndarray, locks: np.ndarray) -> np.ndarray:
    """(ticker x book) True where the trade from ``drifted`` to ``targets`` goes the way the
    name's lock at the trade close forbids: a buy (a larger weight: opening or adding to a long,
    covering a short) at +1, a sale at -1."""
    up = (locks > 0)[:, None] & (targets > drifted)
    down = (locks < 0)[:, None] & (targets < drifted)
    return up | down


def with_locks(targets: np.ndarray, drifted: np.ndarray, locks: np.ndarray,
               fixed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (ticker x book) weights traded to at a close where the ``locks`` (ticker,) hold: a
    blocked name keeps its drifted weight (a locked buy is not made, a locked sale not done),
    and each leg's free targets are scaled down so that the leg is no larger than its target
    (an unsold position holds part of its capital), as for frozen positions. ``fixed``
    (ticker,): names already held at their drifted weight (frozen: the close is no trade), never
    scaled. A name the scaling would move across its own lock (a sale at -1: a buy that became a
    smaller one; a cover at +1) is blocked too, and the legs scaled again, until none is.
    Returns the weights and the (ticker x book) blocked mask (``fixed`` not included)."""
    held = np.zeros(targets.shape, dtype=bool) if fixed is None else np.broadcast_to(
        np.asarray(fixed, dtype=bool)[:, None], targets.shape)
    blocked = blocked_trades(targets, drifted, locks) & ~held
    if not blocked.any():
        return targets, blocked
    while True:
        kept = blocked | held
        out = np.where(kept, drifted, targets)
        for sign in (1.0, -1.0):
            leg = np.maximum(sign * targets, 0.0).sum(axis=0)
            free = np.maximum(sign * out, 0.0) * ~kept
            stuck = (np.maximum(sign * out, 0.0) * kept).sum(axis=0)
            wanted = free.sum(axis=0)
            room = np.maximum(leg - stuck, 0.0)
            scale = np.divide(room, wanted, out=np.ones_like(room), where=wanted > room)
            out = np.where(free > 0, out * scale[None, :], out)
        crossed = blocked_trades(out, drifted, locks) & ~kept
        if not crossed.any():  # each pass blocks at least one more cell: at most n passes
            return out, blocked
        blocked |= crossed
