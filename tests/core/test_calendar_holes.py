"""Holes in a panel's trading calendar (core.data.calendar_holes)."""

import pandas as pd

from bma_quant.core.data.calendar_holes import calendar_holes, describe_holes


def test_weekends_and_holidays_are_not_holes_a_missing_stretch_is():
    days = pd.bdate_range("2020-01-01", "2020-12-31")
    assert calendar_holes(days, 14) == []
    closed_week = days[(days < "2020-03-09") | (days > "2020-03-13")]  # 9 calendar days
    assert calendar_holes(closed_week, 14) == []
    holed = days[(days < "2020-05-01") | (days > "2020-06-30")]
    assert calendar_holes(holed, 14) == [(pd.Timestamp("2020-04-30"), pd.Timestamp("2020-07-01"),
                                          62)]
    assert calendar_holes(holed, 100) == []
    assert calendar_holes(holed, None) == []  # off


def test_weekly_and_monthly_bars_are_holed_only_beyond_three_typical_steps():
    weekly = pd.date_range("2015-01-02", "2020-12-25", freq="W-FRI")
    monthly = pd.date_range("2015-01-31", "2020-12-31", freq="ME")
    assert calendar_holes(weekly, 14) == []
    assert calendar_holes(monthly, 14) == []
    holed = monthly[(monthly < "2017-01-01") | (monthly > "2017-12-31")]
    assert [(a.date().isoformat(), b.date().isoformat()) for a, b, _ in calendar_holes(holed, 14)] \
        == [("2016-12-31", "2018-01-31")]


def test_unsorted_repeated_dates_and_short_calendars():
    january = pd.bdate_range("2020-01-02", "2020-01-31")
    days = pd.Series([pd.Timestamp("2020-03-02"), *january[::-1], *january[:3]])
    assert calendar_holes(days, 14) == [(pd.Timestamp("2020-01-31"), pd.Timestamp("2020-03-02"),
                                         31)]
    assert calendar_holes(pd.DatetimeIndex(["2020-01-02"]), 14) == []


def test_description_names_the_first_holes_and_counts_the_rest():
    holes = [(pd.Timestamp(f"20{10 + i}-01-02"), pd.Timestamp(f"20{10 + i}-03-02"), 60)
             for i in range(5)]
    assert describe_holes(holes) == ("2010-01-02 .. 2010-03-02 (60 days), 2011-01-02 .. "
                                     "2011-03-02 (60 days), 2012-01-02 .. 2012-03-02 (60 days) "
                                     "and 2 more")
