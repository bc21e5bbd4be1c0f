"""How many dates a year a file's bars come at: about 252 for daily exchange bars, 365 on a
seven-day calendar, 52 for weekly bars. Annualised figures use it when
`evaluation.backtest.periods_per_year` is null, and the run warns when it is not daily's."""

from __future__ import annotations

import pandas as pd


def dates_per_year(dates: pd.DatetimeIndex) -> float | None:
    """Dates a year in the file (about 252 for daily exchange bars, 365 on a seven-day calendar):
    the steps between its first and last date per year of that span, read without the first and
    last hundredth of its dates (one mistyped date decades away must not read as a sparse
    calendar); None under a quarter."""
    ordered = dates.sort_values()
    trim = len(ordered) // 100
    core = ordered[trim:len(ordered) - trim]
    span = (core.max() - core.min()).days if len(core) else 0
    return round((len(core) - 1) / (span / 365.25), 1) if span >= 91 else None
