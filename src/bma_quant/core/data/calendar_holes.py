"""Holes in a panel's trading calendar: stretches of calendar days with no trading date at all.

A 10-day label that starts before a five-year hole ends five years later, and a 20-day momentum
computed just after it reads prices from before it: every label and rolling feature that spans a
hole is meaningless. Weekends and holidays leave at most about a week (a long holiday week in some
markets about ten days), so a longer stretch is a hole in the file, not in the market. Weekly or
monthly bars step further by design: for them a hole is a step longer than SPARSE_STEPS of the
file's typical (median) steps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPARSE_STEPS = 3  # a hole in weekly / monthly bars: longer than this many typical steps


def calendar_holes(dates: pd.DatetimeIndex | pd.Series,
                   max_gap_days: int | None) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """(last date before, first date after, calendar days between) for every pair of
    consecutive trading dates more than `max_gap_days` calendar days apart (or SPARSE_STEPS
    typical steps, when that is longer: weekly or monthly bars); [] when off (None)."""
    if max_gap_days is None:
        return []
    days = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    if len(days) < 2:
        return []
    steps = np.asarray((days[1:] - days[:-1]).days)
    limit = max(float(max_gap_days), SPARSE_STEPS * float(np.median(steps)))
    return [(days[i], days[i + 1], int(steps[i])) for i in np.flatnonzero(steps > limit)]


def describe_holes(holes: list[tuple[pd.Timestamp, pd.Timestamp, int]], limit: int = 3) -> str:
    """'2008-01-02 .. 2013-01-02 (1827 days), ...' for a message."""
    shown = ", ".join(f"{a.date()} .. {b.date()} ({days} days)" for a, b, days in holes[:limit])
    return shown + (f" and {len(holes) - limit} more" if len(holes) > limit else "")
