"""The market series: the given index when there is one, else the equal-weighted panel average."""

from __future__ import annotations

import pandas as pd


def market_series(returns: pd.DataFrame, index: pd.DataFrame | None = None) -> pd.DataFrame:
    """(date, market_return, market_level, source) on the panel's calendar.

    The index level is forward-filled onto the calendar (a holiday in the index file must not
    become a gap); the equal-weighted return is the mean over names with a return that day."""
    calendar = returns.index
    if index is not None and len(index):
        level = index.set_index("date")["level"].reindex(calendar.union(index["date"])).ffill()
        level = level.reindex(calendar)
        ret = level / level.shift(1) - 1.0
        source = "index"
    else:
        ret = returns.mean(axis=1, skipna=True)
        level = 100.0 * (1.0 + ret.fillna(0.0)).cumprod()
        source = "equal_weight"
    return pd.DataFrame(
        {
            "date": calendar,
            "market_return": ret.to_numpy(),
            "market_level": level.to_numpy(),
            "source": source,
        }
    )
