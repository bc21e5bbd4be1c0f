"""Closes locked at a daily price limit: no trade in the move's direction (DESIGN section 4).

Markets with daily price limits (mainland China, Taiwan, Korea, Japan, ...) stop a name at its
limit. At a close locked limit-up there are no sellers, so nothing can be bought; locked
limit-down there are no buyers, so nothing can be sold. Such a bar trades at one price all day
(open = high = low = close) after a large move. A backtest that buys at that close books a
return no one could have had, and limit-up names are what a momentum or news signal ranks
first.

The rule reads only the bar and the name's previous traded close, so it needs no table of each
market's limits: ``min_move`` is a floor below the common ones (5 % for a Chinese ST name, 7 %
in Vietnam, 10 % on the main boards). It also catches a thin name's single print after a large
move, where no size could have been traded either. A bar without a high and a low is never
taken as locked (a close-only file says nothing about the day's range).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LIMIT_LOCK = "limit_lock"  # +1 locked at the limit up (cannot buy), -1 down (cannot sell), 0 free
_SAME_PRICE_RTOL = 1e-6  # prices stored as floats of decimal ticks: equal to within rounding


@dataclass(frozen=True)
class LimitLocks:
    """``evaluation.backtest.limit_locks``: on (the default) where the panel has high and low."""

    enabled: bool = True
    min_move: float = 0.045

    @classmethod
    def from_params(cls, params: dict | None) -> LimitLocks:
        p = params or {}
        out = cls(enabled=bool(p.get("enabled", True)), min_move=float(p.get("min_move", 0.045)))
        if not 0 < out.min_move < 1:
            raise ValueError("evaluation.backtest.limit_locks.min_move must be in (0, 1), got "
                             f"{out.min_move}")
        return out


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(a - b) <= _SAME_PRICE_RTOL * np.abs(b)


def limit_locks(close: pd.DataFrame, high: pd.DataFrame, low: pd.DataFrame,
                open_: pd.DataFrame | None = None, traded: pd.DataFrame | None = None,
                min_move: float = 0.045) -> pd.DataFrame:
    """(date x ticker) int8: +1 where the bar is one price all day (high = low = close, and the
    open too when given) at least ``min_move`` above the name's previous traded close, -1 at
    least ``min_move`` below it, 0 elsewhere. ``traded``: (date x ticker) bool, False where a
    close is not a trade (such a bar is not locked and is no previous close); None: every close
    is. Causal: a date's flag reads that date and earlier ones."""
    if not min_move > 0:
        raise ValueError(f"limit_locks: min_move must be > 0, got {min_move}")
    close = close.sort_index()
    values = close.to_numpy(dtype=np.float64, na_value=np.nan)
    shape_like = dict(index=close.index, columns=close.columns)
    hi = high.reindex(**shape_like).to_numpy(dtype=np.float64, na_value=np.nan)
    lo = low.reindex(**shape_like).to_numpy(dtype=np.float64, na_value=np.nan)
    is_trade = np.isfinite(values)
    if traded is not None:
        is_trade &= traded.reindex(**shape_like).fillna(False).to_numpy(dtype=bool)
    one_price = is_trade & _same(hi, values) & _same(lo, values)
    if open_ is not None:
        op = open_.reindex(**shape_like).to_numpy(dtype=np.float64, na_value=np.nan)
        one_price &= ~np.isfinite(op) | _same(op, values)  # a missing open says nothing
    last_trade = pd.DataFrame(np.where(is_trade, values, np.nan)).ffill().to_numpy()
    previous = np.vstack([np.full((1, values.shape[1]), np.nan), last_trade[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        move = values / previous - 1.0
    locks = np.zeros(values.shape, dtype=np.int8)
    locks[one_price & (move >= min_move)] = 1
    locks[one_price & (move <= -min_move)] = -1
    return pd.DataFrame(locks, **shape_like)


def blocked_trades(targets: np.ndarray, drifted: np.ndarray, locks: np.ndarray) -> np.ndarray:
    """(ticker x book) True where the trade from ``drifted`` to ``targets`` goes the way the
    name's lock at the trade close forbids: a buy (a larger weight: opening or adding to a long,
    covering a short) at +1, a sale at -1."""
    up = (locks > 0)[:, None] & (targets > drifted)
    down = (locks < 0)[:, None] & (targets < drifted)
    return up | down


def with_locks(targets: np.ndarray, drifted: np.ndarray, locks: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The (ticker x book) weights traded to at a close where the ``locks`` (ticker,) hold: a
    blocked name keeps its drifted weight (a locked buy is not made, a locked sale not done),
    and each leg's other targets are scaled down so that the leg is no larger than its target
    (an unsold position holds part of its capital), as for frozen positions. Returns the weights
    and the (ticker x book) blocked mask."""
    blocked = blocked_trades(targets, drifted, locks)
    if not blocked.any():
        return targets, blocked
    out = np.where(blocked, drifted, targets)
    for sign in (1.0, -1.0):
        leg = np.maximum(sign * targets, 0.0).sum(axis=0)
        free = np.maximum(sign * out, 0.0) * ~blocked
        stuck = (np.maximum(sign * out, 0.0) * blocked).sum(axis=0)
        wanted = free.sum(axis=0)
        room = np.maximum(leg - stuck, 0.0)
        scale = np.divide(room, wanted, out=np.ones_like(room), where=wanted > room)
        out = np.where(free > 0, out * scale[None, :], out)
    return out, blocked
