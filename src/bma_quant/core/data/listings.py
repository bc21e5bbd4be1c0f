"""One column per listing: a code that an exchange reused is two companies for anything that
aggregates over names (the market's average return, breadth, dispersion, factor portfolios).

`primary_panel.listed_from` (core.data.universe.listed_from_dates) dates each row of a relisted
code's later listings. Per-ticker factors already read a listing's own rows only
(core.features.factors); the market-wide series split such a column in two, so no window and no
return spans the old company's last close and the new one's first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bma_quant.core.data.universe import LISTED_FROM


def listing_rows(listed_from: pd.DataFrame | None, dates: pd.DatetimeIndex) -> np.ndarray | None:
    """Date x ticker int: the row (in `dates`) where the cell's listing began, -1 on a name's
    first listing; None when no name was relisted. A listing that began before `dates` (a cut
    panel) counts from row 0."""
    if listed_from is None:
        return None
    starts = listed_from.to_numpy(dtype="datetime64[ns]")
    known = ~np.isnat(starts)
    if not known.any():
        return None
    rows = np.full(starts.shape, -1, dtype=np.int64)
    rows[known] = pd.DatetimeIndex(dates).searchsorted(starts[known])
    return rows


def split_by_listing(values: np.ndarray, relisted: np.ndarray | None) -> np.ndarray:
    """`values` (date x ticker) with each later listing of a relisted code moved to a column of
    its own, appended after the others; unchanged without a relisting."""
    if relisted is None or not (relisted >= 0).any():
        return values
    out = [np.where(relisted >= 0, np.nan, values)]
    for j in np.flatnonzero((relisted >= 0).any(axis=0)):
        for start in np.unique(relisted[:, j][relisted[:, j] >= 0]):
            out.append(np.where(relisted[:, j] == start, values[:, j], np.nan)[:, None])
    return np.hstack(out)


def close_by_listing(panel: pd.DataFrame) -> pd.DataFrame:
    """Date x listing closes of a long (date, ticker, close[, listed_from]) panel: the ticker's
    own column for its first listing, `TICKER@YYYY-MM-DD` for each later one."""
    close = panel.pivot(index="date", columns="ticker", values="close").sort_index()
    if LISTED_FROM not in panel.columns or not panel[LISTED_FROM].notna().any():
        return close
    listed_from = panel.pivot(index="date", columns="ticker", values=LISTED_FROM)
    listed_from = listed_from.reindex(index=close.index, columns=close.columns)
    relisted = listing_rows(listed_from, close.index)
    names = list(close.columns)
    for j in np.flatnonzero((relisted >= 0).any(axis=0)):
        for start in np.unique(relisted[:, j][relisted[:, j] >= 0]):
            names.append(f"{close.columns[j]}@{close.index[start].date()}")
    return pd.DataFrame(split_by_listing(close.to_numpy(np.float64), relisted),
                        index=close.index, columns=names)


def listing_starts(listed_from: pd.DataFrame | None) -> pd.DataFrame | None:
    """Date x ticker bool: the first date (of this calendar) of each later listing, whose close
    follows another company's; None without a relisting."""
    if listed_from is None:
        return None
    values = listed_from.to_numpy(dtype="datetime64[ns]")
    before = np.vstack([np.full((1, values.shape[1]), np.datetime64("NaT"), "datetime64[ns]"),
                        values[:-1]])
    changed = ~np.isnat(values) & ((values != before) | np.isnat(before))
    return pd.DataFrame(changed, index=listed_from.index, columns=listed_from.columns)
