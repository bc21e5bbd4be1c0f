"""The development / purge gap / test split of dates (DESIGN §3)."""

from __future__ import annotations

import pandas as pd


def configured_test_fraction(periods: dict) -> float | None:
    """`periods.test_fraction` as a number (None when unset: `test_start` decides)."""
    value = periods.get("test_fraction")
    return None if value is None else float(value)


def split_dates(
    calendar: pd.DatetimeIndex,
    gap_days: int,
    test_fraction: float | None = 0.2,
    test_start: str | None = None,
    dev_start: str | None = None,
) -> dict[str, str | int]:
    """Development dates, then `gap_days` unused dates, then the test period.

    With gap_days >= d + h every development label window ends before the first test date, so the
    test period is never seen by anything fitted on development rows."""
    if gap_days < 0:
        raise ValueError(f"the gap between development and test must be >= 0 dates, got "
                         f"{gap_days}")
    # one entry per date: row dates (one per ticker) would count a date once per name
    calendar = pd.DatetimeIndex(calendar).unique().sort_values()
    if dev_start:
        calendar = calendar[calendar >= pd.Timestamp(dev_start)]
    n = len(calendar)
    if test_start:
        first_test = int(calendar.searchsorted(pd.Timestamp(test_start)))
    else:
        if test_fraction is None:
            raise ValueError("periods.test_start and periods.test_fraction are both null: set "
                             "one (the first test date, or the share of dates to test on)")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"split.test_fraction must be in (0, 1), got {test_fraction}")
        first_test = int(round(n * (1.0 - test_fraction)))
    dev_last = first_test - gap_days - 1
    if dev_last < 1 or first_test >= n:
        counted = f"the {n} dates from periods.dev_start ({dev_start})" if dev_start else f"{n} dates"
        raise ValueError(
            f"Cannot split {counted} into development | {gap_days}-day gap | test with "
            f"test_start={test_start} test_fraction={test_fraction}"
        )
    return {
        "dev_start": str(calendar[0].date()),
        "dev_end": str(calendar[dev_last].date()),
        "test_start": str(calendar[first_test].date()),
        "test_end": str(calendar[-1].date()),
        "gap_days": int(gap_days),
        "dev_dates": int(dev_last + 1),
        "test_dates": int(n - first_test),
    }


def dates_in(split: dict, period: str, dates) -> pd.Series:
    """Boolean mask of `dates` inside the 'dev' or 'test' period of a split."""
    dates = pd.Series(pd.DatetimeIndex(dates))
    start, end = split[f"{period}_start"], split[f"{period}_end"]
    return dates.between(pd.Timestamp(start), pd.Timestamp(end)).to_numpy()
