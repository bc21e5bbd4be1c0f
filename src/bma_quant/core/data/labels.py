"""Forward-return labels (DESIGN §3): the label at t is the return from close(t+d) to close(t+d+h)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bma_quant.core.data import listings


def forward_return_labels(close: pd.DataFrame, horizon: int, execution_delay: int,
                          traded: pd.DataFrame | None = None,
                          listed_from: pd.DataFrame | None = None,
                          unknown: pd.DataFrame | None = None) -> pd.DataFrame:
    """Date x ticker matrix of forward returns; NaN where either end of the window is missing.

    The trade is placed at close(t+d), d trading days after the signal, and held h days.
    With `traded` (date x ticker bool: the close is a trade of that day), a name without a close
    at t+d+h is valued at its last trade within the window, as a holder's book marks it: a
    delisting's last price, a halt's last trade (the stored close is forward-filled only
    `processing.ffill_limit` dates, and the last days before a delisting had no label). No trade
    in [t+d, t+d+h], or a close after the last trade that is not known yet (`unknown`: withheld
    while a suspected split awaits confirmation, perhaps a crash of unknown size), leaves no
    label. A stale close the cleaning masked is the last trade's price: it is marked. No
    exit, stored or marked, is another listing's close (`listed_from`, core.data.listings: a
    reused code's other company). The rows must be dates in increasing order: a label counts
    rows forward."""
    if not close.index.is_monotonic_increasing or close.index.has_duplicates:
        raise ValueError("forward_return_labels needs one row per date in increasing order (it "
                         "counts rows forward); sort the close matrix by date first")
    entry = close.shift(-execution_delay)
    exit_ = close.shift(-(execution_delay + horizon))
    relisted = listings.listing_rows(
        None if listed_from is None else listed_from.reindex_like(close), close.index)
    if relisted is not None:  # a stored close of another listing is no exit
        listing = pd.DataFrame(relisted, index=close.index, columns=close.columns)
        exit_ = exit_.where(listing.shift(-(execution_delay + horizon))
                            == listing.shift(-execution_delay))
    if traded is not None:
        if unknown is not None:  # a close carried forward over an unknown one is no exit either
            pending = _unknown_since_last_trade(traded.reindex_like(close), unknown, close)
            exit_ = exit_.mask(pending.shift(-(execution_delay + horizon), fill_value=False))
        marks = _last_trade_marks(close, traded, relisted, unknown, execution_delay, horizon)
        exit_ = exit_.where(exit_.notna(), marks)
    ratio = (exit_ / entry).to_numpy(np.float64, na_value=np.nan)
    return pd.DataFrame(snap_rounding_ties(ratio) - 1.0, index=close.index, columns=close.columns)


# Two windows with the same return on tick prices (10.00 -> 10.10, 20.00 -> 20.20) divide to
# ratios that may differ in the last bit, and by another bit in other units (cents): the per-date
# ranks of the labels (the rank target, RankIC) then ordered them by that bit. A few ulps of the
# ratio (about 1) are far below any real difference between two names' returns.
RATIO_TIE_ULPS = 4


def snap_rounding_ties(ratio: np.ndarray) -> np.ndarray:
    """Per row (date), values within RATIO_TIE_ULPS ulps of their neighbour in sorted order set
    to the smallest of their run: a tie in exact arithmetic stays one. NaN and +-inf kept."""
    ratio = np.asarray(ratio, dtype=np.float64)
    if ratio.ndim != 2 or ratio.shape[1] < 2:
        return ratio.copy()
    order = np.argsort(np.where(np.isnan(ratio), np.inf, ratio), axis=1, kind="stable")
    ordered = np.take_along_axis(ratio, order, axis=1)
    tolerance = RATIO_TIE_ULPS * np.finfo(np.float64).eps * np.maximum(
        np.abs(ordered[:, 1:]), np.abs(ordered[:, :-1]))
    with np.errstate(invalid="ignore"):
        near = np.diff(ordered, axis=1) <= tolerance  # NaN: False (its own run)
    finite = np.isfinite(ordered)
    near &= finite[:, 1:] & finite[:, :-1]  # an infinite neighbour's tolerance is infinite
    starts = np.concatenate([np.ones((len(ratio), 1), dtype=bool), ~near], axis=1)
    first = np.maximum.accumulate(np.where(starts, np.arange(ratio.shape[1]), 0), axis=1)
    out = np.empty_like(ratio)
    np.put_along_axis(out, order, np.take_along_axis(ordered, first, axis=1), axis=1)
    return out


def _unknown_since_last_trade(traded: pd.DataFrame, unknown: pd.DataFrame,
                              like: pd.DataFrame) -> pd.DataFrame:
    """Date x ticker: an `unknown` close lies after the name's last trade, up to this date."""
    trade = _bool_matrix(traded, like)
    seen = np.cumsum(_bool_matrix(unknown, like), axis=0)
    index = np.arange(len(trade))[:, None]
    last = np.maximum.accumulate(np.where(trade, index, -1), axis=0)
    at_last = np.where(last >= 0, np.take_along_axis(seen, np.maximum(last, 0), axis=0), 0)
    return pd.DataFrame(seen > at_last, index=like.index, columns=like.columns)


def _bool_matrix(frame: pd.DataFrame | None, like: pd.DataFrame) -> np.ndarray:
    if frame is None:
        return np.zeros(like.shape, dtype=bool)
    return frame.reindex_like(like).fillna(False).to_numpy(dtype=bool)


def _last_trade_marks(close: pd.DataFrame, traded: pd.DataFrame, relisted: np.ndarray | None,
                      unknown: pd.DataFrame | None, delay: int, horizon: int) -> pd.DataFrame:
    """At row t: the last traded close in [t+d, t+d+h] of the listing at t+d (`relisted`,
    core.data.listings.listing_rows), NaN if none or if an `unknown` close follows it there."""
    values = np.where(_bool_matrix(traded, close), close.to_numpy(np.float64), np.nan)
    listing = np.full(values.shape, -1, np.int64) if relisted is None else relisted
    n = len(values)
    index = np.arange(n)[:, None]
    last_row = np.maximum.accumulate(np.where(np.isfinite(values), index, -1), axis=0)
    # unknown closes seen up to each row: any between the last trade and the exit voids the mark
    seen_unknown = np.cumsum(_bool_matrix(unknown, close), axis=0)
    cols = np.arange(values.shape[1])[None, :]
    marks = np.full(values.shape, np.nan)
    rows = np.arange(n)
    valid = rows + delay + horizon < n
    start, end = rows[valid] + delay, rows[valid] + delay + horizon
    last = last_row[end]  # the last trade at or before t+d+h
    at = np.maximum(last, 0)
    inside = ((last >= start[:, None]) & (listing[at, cols] == listing[start])
              & (seen_unknown[end] == seen_unknown[at, cols]))
    marks[valid] = np.where(inside, values[at, cols], np.nan)
    return pd.DataFrame(marks, index=close.index, columns=close.columns)
