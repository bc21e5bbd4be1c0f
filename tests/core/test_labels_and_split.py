"""Labels on a hand-built panel, the dev | gap | test split, cleaning repairs."""

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data import cleaning, labels, panel, split
from bma_quant.core.data.move_labels import move_label


def test_label_is_return_from_t_plus_d_to_t_plus_d_plus_h():
    dates = pd.bdate_range("2021-01-04", periods=8)
    close = pd.DataFrame({"A": [100, 101, 102, 104, 108, 110, 111, 115.0]}, index=dates)
    out = labels.forward_return_labels(close, horizon=2, execution_delay=1)
    # t=0: close(1)=101 -> close(3)=104
    assert out["A"].iloc[0] == pytest.approx(104 / 101 - 1)
    assert out["A"].iloc[4] == pytest.approx(115 / 110 - 1)
    assert out["A"].iloc[5:].isna().all()  # window runs past the end


def test_label_is_nan_when_an_end_of_the_window_is_missing():
    dates = pd.bdate_range("2021-01-04", periods=6)
    close = pd.DataFrame({"A": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0]}, index=dates)
    out = labels.forward_return_labels(close, horizon=1, execution_delay=1)
    assert np.isnan(out["A"].iloc[0]) and np.isnan(out["A"].iloc[1])
    assert out["A"].iloc[2] == pytest.approx(5 / 4 - 1)


def test_a_name_without_a_trade_at_the_exit_is_valued_at_its_last_trade_in_the_window():
    """A delisting after row 5: the rows whose exit falls after it are labelled with the
    return to the last trade (a holder's mark), not left out; a window with no trade at all
    has no label; without `traded` the stored close decides, as before."""
    dates = pd.bdate_range("2021-01-04", periods=9)
    close = pd.DataFrame({"A": [100, 101, 102, 104, 108, 90.0, np.nan, np.nan, np.nan],
                          "B": np.arange(9, dtype=float) + 50}, index=dates)
    traded = close.notna()
    out = labels.forward_return_labels(close, horizon=3, execution_delay=1, traded=traded)
    assert out["A"].iloc[1] == pytest.approx(90 / 102 - 1)  # entry row 2, exit row 5 (a trade)
    assert out["A"].iloc[2] == pytest.approx(90 / 104 - 1)  # exit row 6: no trade; last is row 5
    assert out["A"].iloc[4] == pytest.approx(90 / 90 - 1)   # entry row 5 is the last trade
    assert out["A"].iloc[5:].isna().all()  # no entry (and the window runs past the end)
    pd.testing.assert_series_equal(out["B"], labels.forward_return_labels(close, 3, 1)["B"])
    before = labels.forward_return_labels(close, horizon=3, execution_delay=1)
    assert np.isnan(before["A"].iloc[2])
    # stored closes carried forward (processing.ffill_limit) at the exit: the stored close, as
    # before (it is the last trade's price)
    carried = close.ffill()
    out = labels.forward_return_labels(carried, 3, 1, traded=traded)
    assert out["A"].iloc[2] == pytest.approx(90 / 104 - 1)
    # a window holding only carried closes: no trade, no mark (the stored close decides)
    gap = close.copy()
    gap.iloc[1:6, 0] = np.nan
    out = labels.forward_return_labels(gap, 3, 1, traded=gap.notna())
    assert out["A"].iloc[1:5].isna().all()


def test_a_name_halted_before_its_entry_has_no_label():
    """Last trade at row 4, closes carried forward at rows 5-6 (not trades), nothing after: a
    window from row 5 holds no trade, so no label (a mark at the trade before the entry would
    give 0.0); the window from row 4 starts on the last trade and is marked there."""
    dates = pd.bdate_range("2021-01-04", periods=9)
    close = pd.DataFrame({"A": [100, 101, 102, 104, 108, 108, 108, np.nan, np.nan]}, index=dates)
    traded = pd.DataFrame({"A": [True] * 5 + [False] * 4}, index=dates)
    out = labels.forward_return_labels(close, horizon=3, execution_delay=1, traded=traded)
    assert out["A"].iloc[3] == pytest.approx(108 / 108 - 1)  # entry row 4, the last trade
    assert np.isnan(out["A"].iloc[4])  # entry row 5 (carried), exit row 8: no trade inside


def test_no_mark_over_a_close_that_cleaning_withheld():
    """A suspected split withheld at rows 4-5 (the row is there, its close is not known yet),
    then no more rows: the move may be a crash of unknown size, so the last trade before it is
    no mark; a window that ends before the withheld rows is labelled as usual."""
    dates = pd.bdate_range("2021-01-04", periods=9)
    close = pd.DataFrame({"A": [100, 101, 102, 104, np.nan, np.nan, np.nan, np.nan, np.nan]},
                         index=dates)
    unknown = pd.DataFrame({"A": [False] * 4 + [True, True] + [False] * 3}, index=dates)
    traded = close.notna()
    out = labels.forward_return_labels(close, 3, 1, traded=traded, unknown=unknown)
    assert out["A"].iloc[:3].isna().all()  # exits at rows 4-6: at or after the withheld rows
    early = labels.forward_return_labels(close, 2, 1, traded=traded, unknown=unknown)
    assert early["A"].iloc[0] == pytest.approx(104 / 101 - 1)  # exit row 3, a trade
    plain = labels.forward_return_labels(close, 3, 1, traded=traded)
    assert plain["A"].iloc[1] == pytest.approx(104 / 102 - 1)
    # the cleaned panel carries the last close forward over the gap: a stored copy after the
    # withheld day is no exit either (it is the pre-crash price)
    carried = close.copy()
    carried.iloc[6:8, 0] = 104.0
    out = labels.forward_return_labels(carried, 3, 1, traded=traded, unknown=unknown)
    assert out["A"].iloc[2:5].isna().all()  # exits at rows 6-7 (copies) and 8 (none)
    stored = labels.forward_return_labels(carried, 3, 1)
    assert stored["A"].iloc[2] == pytest.approx(104 / 104 - 1)  # what the stored copy said


def test_no_exit_is_another_listings_close():
    dates = pd.bdate_range("2021-01-04", periods=8)
    nat = np.datetime64("NaT")
    listed_from = pd.DataFrame({"A": [nat, nat, nat, *[dates[3]] * 5]}, index=dates,
                               dtype="datetime64[ns]")
    close = pd.DataFrame({"A": [10.0, 11.0, 12.0, 50.0, np.nan, 52.0, 53.0, 54.0]}, index=dates)
    # entry row 2 (old company), stored exit row 3 (the new one's first close): no label
    out = labels.forward_return_labels(close, 1, 1, listed_from=listed_from)
    assert np.isnan(out["A"].iloc[1])
    assert out["A"].iloc[2] == pytest.approx(np.nan, nan_ok=True)  # exit row 4: no close
    assert labels.forward_return_labels(close, 1, 1)["A"].iloc[1] == pytest.approx(50 / 12 - 1)
    # entry row 2, exit row 4 without a trade: the last trade (row 3) is the new company's
    out = labels.forward_return_labels(close, 2, 1, traded=close.notna(),
                                       listed_from=listed_from)
    assert np.isnan(out["A"].iloc[1])
    assert out["A"].iloc[2] == pytest.approx(52 / 50 - 1)  # within the new listing


def test_last_trade_labels_are_causal():
    """The label at t reads nothing after t+d+h: the frame cut there gives the same label."""
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2020-01-01", periods=80)
    close = pd.DataFrame(np.exp(rng.normal(0, 0.02, (80, 6)).cumsum(axis=0)), index=dates)
    gaps = rng.random((80, 6)) < 0.3
    gaps[:, 2] = False
    close = close.mask(gaps)
    close.iloc[50:, 2] = np.nan  # a delisting
    traded = close.notna()
    full = labels.forward_return_labels(close, 10, 1, traded=traded)
    for t in (20, 38, 45, 60):
        end = t + 11
        cut = labels.forward_return_labels(close.iloc[: end + 1], 10, 1,
                                           traded=traded.iloc[: end + 1])
        pd.testing.assert_series_equal(cut.iloc[t], full.iloc[t])
    assert full.iloc[39:49, 2].notna().all()  # the delisted name's last rows are labelled


def test_split_leaves_a_gap_of_at_least_d_plus_h():
    calendar = pd.bdate_range("2020-01-01", periods=500)
    s = split.split_dates(calendar, gap_days=11, test_fraction=0.2)
    dev_end = calendar.get_loc(pd.Timestamp(s["dev_end"]))
    test_start = calendar.get_loc(pd.Timestamp(s["test_start"]))
    assert test_start - dev_end - 1 == 11
    assert s["dev_dates"] + 11 + s["test_dates"] == 500


def test_split_counts_dates_once_and_refuses_a_negative_gap():
    """Row dates (one per ticker) counted each date once per name: the 11-date gap between
    development and test was 5 dates with two tickers; a negative gap put dev_end after
    test_start."""
    calendar = pd.bdate_range("2020-01-01", periods=100)
    assert split.split_dates(calendar.repeat(2)[::-1], 11) == split.split_dates(calendar, 11)
    with pytest.raises(ValueError, match="must be >= 0 dates, got -5"):
        split.split_dates(calendar, gap_days=-5)


def test_labels_refuse_rows_out_of_date_order():
    """A label counts rows forward: on a reversed matrix it was a backward return."""
    close = pd.DataFrame({"A": np.arange(1.0, 31.0)}, index=pd.bdate_range("2020-01-01",
                                                                           periods=30))
    for bad in (close.iloc[::-1], pd.concat([close, close.iloc[-1:]])):
        with pytest.raises(ValueError, match="one row per date in increasing order"):
            labels.forward_return_labels(bad, 10, 1)


def test_forward_fill_is_limited_and_never_backward():
    dates = pd.bdate_range("2021-01-04", periods=7)
    close = pd.DataFrame({"A": [np.nan, 1.0, np.nan, np.nan, np.nan, 2.0, np.nan]}, index=dates)
    out, filled = cleaning.forward_fill_limited(panel.PanelMatrices({"close": close}), limit=2)
    col = out.close["A"]
    assert np.isnan(col.iloc[0])  # nothing before the first observation
    assert col.iloc[2] == 1.0 and col.iloc[3] == 1.0 and np.isnan(col.iloc[4])
    assert col.iloc[6] == 2.0 and filled == 3


def test_unadjusted_split_is_detected_and_forward_adjusted():
    dates = pd.bdate_range("2021-01-04", periods=6)
    close = pd.DataFrame({"A": [100, 101, 50.4, 51, 52, 51.5], "B": [10, 10.1, 10.2, 10, 9.9, 10]},
                         index=dates)
    out, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": close}),
                                                    max_abs_return=0.4, ratios=[2, 3],
                                                    tolerance=0.02, confirm_days=3)
    assert [(e.ticker, e.ratio, e.status) for e in events] == [("A", 2.0, "repaired")]
    assert out.close["A"].iloc[:2].tolist() == [100, 101]  # history untouched (prefix invariant)
    # withheld until the third close after the move confirms it, rescaled from that date on
    assert out.close["A"].iloc[2:5].isna().all()
    assert out.close["A"].iloc[5] == pytest.approx(103.0)
    assert out.close["B"].equals(close["B"])


def test_real_crash_that_is_not_a_split_ratio_is_left_alone():
    dates = pd.bdate_range("2021-01-04", periods=4)
    close = pd.DataFrame({"A": [100, 101, 58.0, 57]}, index=dates)
    _, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": close}), 0.4,
                                                  [2, 3], 0.02, confirm_days=3)
    assert events == []


def test_genuine_minus_50_percent_day_that_rebounds_is_not_rescaled():
    # an exact 2:1 ratio on the day, but the price does not stay at the new level
    dates = pd.bdate_range("2021-01-04", periods=7)
    close = pd.DataFrame({"A": [100, 101, 50.5, 62, 80, 95, 99.0]}, index=dates)
    out, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": close}), 0.4,
                                                    [2, 3], 0.02, confirm_days=5)
    assert events == []
    # nothing rescaled; the move and the next close (still near the new level) are withheld
    # until a close breaks it
    assert out.close["A"].iloc[2:].isna().tolist() == [True, True, False, False, False]
    assert out.close["A"].drop(close.index[2:4]).equals(close["A"].drop(close.index[2:4]))
    # the same day followed by a level that holds through the file's end is undecided: withheld,
    # reported as pending, not rescaled
    held = close.assign(A=[100, 101, 50.5, 51, 52, 50.8, 51.2])
    out, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": held}), 0.4,
                                                    [2, 3], 0.02, confirm_days=5)
    assert [(e.ticker, e.ratio, e.status) for e in events] == [("A", 2.0, "pending")]
    assert out.close["A"].iloc[2:].isna().all() and out.close["A"].iloc[:2].tolist() == [100, 101]
    # with its fifth close it is a split, rescaled from that date on
    longer = pd.DataFrame({"A": [100, 101, 50.5, 51, 52, 50.8, 51.2, 51.0]},
                          index=pd.bdate_range("2021-01-04", periods=8))
    out, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": longer}), 0.4,
                                                    [2, 3], 0.02, confirm_days=5)
    assert [(e.ticker, e.ratio, e.status) for e in events] == [("A", 2.0, "repaired")]
    assert out.close["A"].iloc[7] == pytest.approx(102.0)


def test_stale_streaks_are_counted_and_masked_beyond_the_limit():
    dates = pd.bdate_range("2021-01-04", periods=12)
    close = pd.DataFrame({"A": [1, 2] + [3] * 9 + [4.0]}, index=dates)
    out, summary = cleaning.handle_stale_prices(panel.PanelMatrices({"close": close}),
                                                min_streak=3, mask_after=5)
    assert summary.streaks == 1 and summary.worst == {"A": 8}
    assert summary.stale_days == 8  # every unchanged close of the streak, not those past min_streak
    assert summary.masked_days == 3
    assert out.close["A"].isna().sum() == 3
    # with volume: an unchanged close with a fresh volume is a trade (it ends the streak); a
    # copied or zero volume is not
    volume = pd.DataFrame({"A": [5.0, 6, 7, 0, 0, 0, 0, 0, 0, 9, 9, 9]}, index=dates)
    traded = panel.PanelMatrices({"close": close, "volume": volume})
    _, summary = cleaning.handle_stale_prices(traded, min_streak=3, mask_after=5,
                                              volume_trades=True)
    assert summary.worst == {"A": 6} and summary.masked_days == 1
    _, summary = cleaning.handle_stale_prices(traded, min_streak=3, mask_after=5)
    assert summary.worst == {"A": 8}


def test_sector_is_point_in_time():
    """A reclassification applies from its date on; earlier history keeps the old sector."""
    dates = pd.bdate_range("2021-01-04", periods=4)
    long = pd.DataFrame({
        "date": np.repeat(dates, 2), "ticker": ["A", "B"] * 4, "close": 1.0,
        "sector": ["Tech", "Energy", "Tech", "Energy", "Energy", "Energy", None, "Energy"],
    })
    out = panel.to_long(panel.to_matrices(long))
    a = out[out["ticker"] == "A"]["sector"].tolist()
    assert a == ["Tech", "Tech", "Energy", "Energy"]  # forward fill within the ticker only


def test_flat_dates_are_copied_rows_not_quiet_names():
    from bma_quant.core.data.cleaning import flat_dates

    dates = pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-04", "2020-01-06", "2020-01-07"])
    close = pd.DataFrame({"A": [10.0, 10.5, 10.5, 10.7, 10.7],
                          "B": [20.0, 20.2, 20.2, 20.1, 20.3],
                          "C": [5.0, 5.1, np.nan, 5.2, 5.2]}, index=dates)
    # 01-04 (a Saturday copy of Friday): no name with a close moved; 01-07: B moved
    assert list(flat_dates(close)) == [pd.Timestamp("2020-01-04")]
    assert flat_dates(close[["A"]]).empty  # one name is no evidence about the whole day


def test_an_index_that_does_not_span_the_panel_is_refused_naming_both_ranges():
    from bma_quant.core.data.schema import DataValidationError

    dates = pd.bdate_range("2020-01-01", periods=30)
    raw = pd.DataFrame({"date": np.repeat(dates, 2), "ticker": ["A", "B"] * 30, "close": 1.0})
    index = pd.DataFrame({"date": dates, "level": 100.0})
    panel.check_index_coverage(raw, index, "index.csv")  # spans it: fine
    panel.check_index_coverage(raw, index.iloc[:0], "index.csv")  # no index: equal weight
    with pytest.raises(DataValidationError, match=r"covers 2020-01-06..2020-01-31.* 3 panel "
                                                  r"date\(s\) before .* and 7 after"):
        panel.check_index_coverage(raw, index.iloc[3:23], "index.csv")
    # the way out is the run's own: at inference data.index_path: null changes nothing
    with pytest.raises(DataValidationError, match="or give inference.data.index_path an index"):
        panel.check_index_coverage(raw, index.iloc[:23], "index.csv",
                                   fix="give inference.data.index_path an index")


def test_an_index_file_reads_dates_like_the_panel(tmp_path):
    path = tmp_path / "index.csv"
    path.write_text("date,level\n20200102,100.0\n20200103,101.5\n")
    out = panel.load_index_series(path)
    assert list(out["date"].dt.strftime("%Y-%m-%d")) == ["2020-01-02", "2020-01-03"]
    path.write_text("date,level\n2020-01-02 10:00,100.0\n2020-01-02 16:00,101.5\n")
    with pytest.raises(Exception, match="more than one level on a day"):
        panel.load_index_series(path)


def test_an_index_with_holes_is_warned_about_and_a_weekly_one_refused(caplog):
    from bma_quant.core.data.schema import DataValidationError

    dates = pd.bdate_range("2020-01-01", periods=60)
    raw = pd.DataFrame({"date": np.repeat(dates, 2), "ticker": ["A", "B"] * 60, "close": 1.0})
    index = pd.DataFrame({"date": dates, "level": 100.0})
    holed = index.drop(index.index[20:27])  # 7 trading days without a level
    with caplog.at_level("WARNING"):
        panel.check_index_coverage(raw, holed, "index.csv")
    assert (f"no level on 7 of the panel's 60 trading days, 7 in a row from "
            f"{dates[20].date()}") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        panel.check_index_coverage(raw, index.drop(index.index[[30]]), "index.csv")
    assert caplog.text == ""  # a stray missing day is carried forward quietly
    # another exchange's holidays, scattered: 3 of 60 days (5 %) is said, with examples
    with caplog.at_level("WARNING"):
        panel.check_index_coverage(raw, index.drop(index.index[[5, 30, 44]]), "index.csv")
    assert (f"no level on 3 of the panel's 60 trading days (5.0%, e.g. {dates[5].date()}"
            in caplog.text and "another exchange's holidays?" in caplog.text)
    # a daily index that turned weekly for its last year: 4 days in a row at most, and 8 % of
    # the days, not another exchange's holidays
    long_dates = pd.bdate_range("2015-01-01", periods=2520)
    long_raw = pd.DataFrame({"date": np.repeat(long_dates, 2), "ticker": ["A", "B"] * 2520,
                             "close": 1.0})
    daily = pd.DataFrame({"date": long_dates, "level": 100.0})
    turned = daily[(daily.index < 2268) | (daily["date"].dt.day_of_week == 4)
                   | (daily.index == 2519)]
    caplog.clear()
    with caplog.at_level("WARNING"):
        panel.check_index_coverage(long_raw, turned, "index.csv")
    assert (f"a level on only 50 of the panel's 251 trading days from {long_dates[2268].date()} "
            f"to {long_dates[2518].date()} (a weekly or monthly series there?)") in caplog.text
    assert "holidays" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # a month without a level is a run, said as one
        panel.check_index_coverage(long_raw, daily.drop(daily.index[100:122]), "index.csv")
    assert "22 in a row" in caplog.text and "weekly" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # two outages years apart, one beside a holiday: runs
        panel.check_index_coverage(long_raw, daily.drop(daily.index[
            list(range(100, 112)) + list(range(1300, 1311)) + [1314]]), "index.csv")
    assert "12 in a row" in caplog.text and "weekly" not in caplog.text
    weekly = index[index["date"].dt.day_of_week == 4]
    with pytest.raises(DataValidationError, match="a level on only 23% of the panel's 60 trading"):
        panel.check_index_coverage(raw, pd.concat([index.iloc[:1], weekly, index.iloc[-1:]]),
                                   "index.csv")


def test_a_quote_switching_to_cents_is_repaired_through_that_days_move():
    """x100 on a -4 % day is x96: outside the split tolerance, inside unit_tolerance."""
    dates = pd.bdate_range("2021-01-04", periods=10)
    close = pd.DataFrame({"A": [50.0, 51, 52, 0.96 * 52 * 100, 5000, 5050, 4990, 5020, 5100,
                                5080]}, index=dates)
    matrices = panel.PanelMatrices({"close": close})
    kept, none = cleaning.repair_unadjusted_splits(matrices, 0.4, [2, 10, 100], 0.02, 5)
    assert none == [] and kept.close.equals(close)
    out, events = cleaning.repair_unadjusted_splits(matrices, 0.4, [2, 10, 100], 0.02, 5,
                                                    unit_tolerance=0.15)
    assert [(e.ticker, e.ratio) for e in events] == [("A", 0.01)]
    assert out.close["A"].iloc[3:8].isna().all()  # withheld until confirmed
    np.testing.assert_allclose(out.close["A"].iloc[8:], close["A"].iloc[8:] / 100)
    # the wider tolerance is for x100 only: a x1.8 day is no 2:1 split
    halved = close.assign(A=[50.0, 51, 52, 52 / 1.8, 29, 28.5, 29.2, 29, 28.8, 29.1])
    _, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": halved}), 0.4,
                                                  [2, 10, 100], 0.02, 5, unit_tolerance=0.15)
    assert events == []


def test_a_crash_that_stays_down_is_not_a_unit_switch():
    """-99 % and staying there (a bankruptcy) looks like /100 within the wide x100 tolerance: only
    the upward x100 jump gets it, so the crash is kept as a real return."""
    dates = pd.bdate_range("2021-01-04", periods=10)
    close = pd.DataFrame({"A": [10.1, 10.0, 10.1, 0.105, 0.1, 0.11, 0.1, 0.09, 0.1, 0.1]},
                         index=dates)
    out, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": close}), 0.4,
                                                    [2, 10, 100], 0.02, 5, unit_tolerance=0.15)
    assert events == [] and out.close.equals(close)


def test_a_split_on_a_day_the_stock_also_moved_is_named_not_repaired():
    """x10 on a +3 % day is x9.7: 3 % from the ratio, outside the repair's 2 % (a real -52 %
    day is 4 % from 2:1), so it is left as a -90 % return, but named; a crash that rebounds
    and a move far from any ratio are not."""
    dates = pd.bdate_range("2021-01-04", periods=10)
    close = pd.DataFrame({
        "A": [50.0, 51, 52, 52 * 1.03 / 10, 5.4, 5.3, 5.5, 5.4, 5.45, 5.5],  # x10 on +3 %
        "B": [50.0, 51, 52, 52 * 0.35, 52 * 0.36, 18, 18.5, 18, 18.2, 18.1],  # -65 %, held
        "C": [50.0, 51, 52, 5.3, 51, 52, 51, 52, 51, 52],  # rebounds
    }, index=dates)
    matrices = panel.PanelMatrices({"close": close})
    repaired, events = cleaning.repair_unadjusted_splits(matrices, 0.4, [2, 10, 100], 0.02, 5)
    # nothing rescaled; C's x9.8 day is withheld until the next close rebounds
    assert events == [] and repaired.close.drop(columns="C").equals(close.drop(columns="C"))
    assert repaired.close["C"].isna().tolist() == [False] * 3 + [True] + [False] * 6
    moves = cleaning.split_like_moves(repaired, 0.4, [2, 10, 100], 0.1, 5)
    assert moves == [{"date": str(dates[3].date()), "ticker": "A", "change": -0.897,
                      "nearest_ratio": 10.0}]


def test_a_whole_ratio_is_only_suggested_when_the_move_fits_it_as_the_repair_measures():
    """A held +81.6 % day is 10 % from a 1:2 reverse split by the repair's measure (pre / post
    ratios): not repaired with tolerance 0.1, so it must not be called a 1:2 split and "add 2"
    suggested (2 is configured); a +400 % day is a 1:5 reverse split, named as one."""
    dates = pd.bdate_range("2021-01-04", periods=12)
    level = [50.0, 51, 52]
    close = pd.DataFrame({"JUMP": level + [52 * 1.816] * 9, "FIVE": level + [52 * 5.0] * 9},
                         index=dates)
    matrices = panel.PanelMatrices({"close": close})
    moves = cleaning.unexplained_large_moves(matrices, 0.4, [2, 3], 0.1, 5)
    assert {m["ticker"]: m["integer_ratio"] for m in moves} == {"JUMP": None, "FIVE": 5}
    text = cleaning.split_warnings([], [], [], moves)[0]
    assert "FIVE@2021-01-07 +400.0% (1:5 reverse split?)" in text and "add 5 to" in text
    assert "JUMP@2021-01-07 +81.6%," in text or text.count("JUMP@2021-01-07 +81.6%") == 1
    assert "1:2" not in text
    assert cleaning.split_label(1 / 40) == "1:40 reverse split"
    assert cleaning.split_label(1 / 1.5) == "2:3 reverse split"
    assert cleaning.split_label(1.5) == "3:2 split" and cleaning.split_label(7) == "7:1 split"


def test_a_vendors_absurd_close_is_reported_as_a_factor_not_a_traceback():
    """A held close of 1e-300 failed the run with ZeroDivisionError (its move's implied ratio);
    one of 1e308 was warned about as a 300-digit percentage. Both are reported, near no whole
    ratio, their moves as factors."""
    dates = pd.bdate_range("2021-01-04", periods=12)
    level = [50.0, 51, 52]
    close = pd.DataFrame({"TINY": level + [1e-300] * 9, "HUGE": level + [1e300] * 9},
                         index=dates)
    moves = cleaning.unexplained_large_moves(panel.PanelMatrices({"close": close}), 0.4, [2, 3],
                                             0.1, 5)
    assert {m["ticker"]: m["integer_ratio"] for m in moves} == {"TINY": None, "HUGE": None}
    text = cleaning.split_warnings([], [], [], moves)[0]
    assert "HUGE@2021-01-07 x1.923e+298" in text and "TINY@2021-01-07 -100.0%" in text
    assert len(text) < 600
    assert [move_label(c) for c in (-0.333, 4.0, 99.0, -0.999, -0.5)] == [
        "-33.3%", "+400.0%", "x100", "/1000", "-50.0%"]
    # the smallest positive close (its ratio underflows to 0) held, and a 1e-300 print taken
    # back the next day: reported, and the print as taken back (it was "held": -100 % divided
    # by zero to an infinite close before it)
    close = pd.DataFrame({"DENORMAL": level + [5e-324] * 9,
                          "PRINT": level + [1e-300] + [52.5] * 8}, index=dates)
    moves = cleaning.unexplained_large_moves(panel.PanelMatrices({"close": close}), 0.4, [2, 3],
                                             0.1, 5)
    assert [m["ticker"] for m in moves] == ["DENORMAL"]
    reverted = cleaning.reverted_move_report(close, 0.4, 5)
    assert [(m["ticker"], m["back"]) for m in reverted] == [("PRINT", "2021-01-08")]


def test_held_moves_near_no_configured_ratio_are_reported_with_the_whole_ratio_they_fit():
    """A 7:1 or 20:1 split left unadjusted (ratios not configured) is a held -86 % / -95 % day,
    near no configured ratio: it used to pass silently as a loss. It is reported (with the
    ratio to add); so is a held -55 % crash (no whole ratio); a move that rebounds, one near a
    configured ratio (split_like_moves' business) and a repaired one are not."""
    dates = pd.bdate_range("2021-01-04", periods=12)
    level = [50.0, 51, 52]
    close = pd.DataFrame({
        "SEVEN": level + [52 * 1.01 / 7] + [7.5] * 8,       # 7:1 on a +1 % day
        "TWENTY": level + [52 / 20] + [2.6] * 8,            # 20:1
        "CRASH": level + [52 * 0.45] * 9,                    # -55 %, held
        "BOUNCE": level + [52 * 0.3, 51, 52, 51, 52, 51, 52, 51, 52],
        "NEAR10": level + [52 * 1.03 / 10] + [5.4] * 8,     # near 10: the other report's
        "TWO": level + [26.0] * 9,                           # 2:1, repaired
    }, index=dates)
    matrices = panel.PanelMatrices({"close": close})
    _, events = cleaning.repair_unadjusted_splits(matrices, 0.4, [2, 10, 100], 0.02, 5)
    assert [e.ticker for e in events] == ["TWO"]
    moves = cleaning.unexplained_large_moves(matrices, 0.4, [2, 10, 100], 0.1, 5, events)
    assert {m["ticker"]: m["integer_ratio"] for m in moves} == {
        "SEVEN": 7, "TWENTY": 20, "CRASH": None}
    text = cleaning.split_warnings([], [], [], moves)[0]
    assert "3 one-day move(s)" in text and "SEVEN@2021-01-07 -85.6% (7:1 split?)" in text
    assert "add 7, 20 to processing.split_detection.ratios" in text
    repaired = cleaning.split_warnings([{"ticker": "TWO", "date": "2021-01-07", "ratio": 2.0}],
                                       [], [], [])[0]
    # a crypto coin's real -50 % day is rescaled too: the way out is named, not a wider tolerance
    assert "set processing.split_detection.enabled: false" in repaired


def test_no_split_is_inferred_across_a_long_absence_and_reports_show_the_files_moves():
    """A code back after a year at half its old price is another company, not a 2:1 split; within
    `max_gap_days` the same move is repaired. The report of near-split moves reads the panel the
    repair read and leaves out what the repair rescaled."""
    dates = pd.bdate_range("2021-01-04", periods=300)
    gone = np.r_[np.full(10, 100.0), np.full(280, np.nan), np.full(10, 50.0)]
    short = np.r_[np.full(10, 100.0), np.full(5, np.nan), np.full(285, 50.0)]
    near = np.r_[np.full(20, 50.0), np.full(280, 50 * 1.03 / 10)]  # x10 on a +3 % day
    close = pd.DataFrame({"GONE": gone, "HALT": short, "NEAR": near}, index=dates)
    matrices = panel.PanelMatrices({"close": close})
    _, events = cleaning.repair_unadjusted_splits(matrices, 0.4, [2, 10], 0.02, 5,
                                                  max_gap_days=21)
    assert [(e.ticker, e.ratio) for e in events] == [("HALT", 2.0)]
    _, anywhere = cleaning.repair_unadjusted_splits(matrices, 0.4, [2, 10], 0.02, 5)
    assert {e.ticker for e in anywhere} == {"GONE", "HALT"}  # unlimited: the reused code too
    moves = cleaning.split_like_moves(matrices, 0.4, [2, 10], 0.1, 5, events, max_gap_days=21)
    assert [(m["ticker"], m["date"]) for m in moves] == [("NEAR", str(dates[20].date()))]


def test_a_user_factor_can_keep_its_last_value_longer_than_prices():
    """A factor published monthly keeps its value for the month with factor_ffill_limit, while
    prices keep the short ffill_limit; None leaves every column at ffill_limit."""
    dates = pd.bdate_range("2021-01-04", periods=30)
    close = pd.DataFrame({"A": np.r_[np.full(10, 10.0), np.full(20, np.nan)]}, index=dates)
    monthly = pd.DataFrame({"A": np.r_[1.0, np.full(21, np.nan), 2.0, np.full(7, np.nan)]},
                           index=dates)
    matrices = panel.PanelMatrices({"close": close, "fundamental": monthly}, None,
                                   ["fundamental"])
    limits = cleaning.factor_fill_limits(matrices.extra_columns, 23)
    assert limits == {"fundamental": 23} and cleaning.factor_fill_limits(["x"], None) is None
    out, filled = cleaning.forward_fill_limited(matrices, 5, limits)
    assert out.values["fundamental"]["A"].tolist() == [1.0] * 22 + [2.0] * 8
    assert out.close["A"].notna().sum() == 15 and filled == 5  # prices: 5 days only
    short, _ = cleaning.forward_fill_limited(matrices, 5)
    assert short.values["fundamental"]["A"].notna().sum() == 6 + 6
    # one limit per column: a quarterly and a monthly factor; a column not named keeps 5
    assert cleaning.factor_fill_limits(["quarterly", "monthly", "other"],
                                       {"quarterly": 70, "monthly": 23, "absent": 1}) == {
        "quarterly": 70, "monthly": 23}


def test_an_index_download_with_several_columns_takes_its_close_or_level(tmp_path):
    """A vendor's OHLCV download of the index (Yahoo: Date, Open, ..., Close, Adj Close, Volume)
    gives its close; a `level` column wins over others; several unnamed ones are refused with
    the names to use."""
    from bma_quant.core.data.panel import load_index_series
    from bma_quant.core.data.schema import DataValidationError

    yahoo = tmp_path / "yahoo.csv"
    yahoo.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n"
                     "2021-01-04,10,11,9,10.5,10.5,1000\n2021-01-05,10.5,12,10,11.5,11.5,900\n")
    assert load_index_series(yahoo)["level"].tolist() == [10.5, 11.5]
    two = tmp_path / "two.csv"
    two.write_text("date,ret,level\n2021-01-04,,100\n2021-01-05,0.01,101\n")
    assert load_index_series(two)["level"].tolist() == [100.0, 101.0]
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text("date,a,b\n2021-01-04,1,2\n")
    with pytest.raises(DataValidationError, match="name the index level column one of level, close"):
        load_index_series(unnamed)


def test_the_forward_fill_after_a_delisting_is_no_stale_streak():
    """The project's own carried closes neither count as a stale print nor end one."""
    dates = pd.bdate_range("2021-01-04", periods=12)
    close = pd.DataFrame({"GONE": [10, 11, 12, 13, 14, 15, np.nan, np.nan, np.nan, np.nan,
                                   np.nan, np.nan],
                          "FROZEN": [5, 5, 5, 5, np.nan, 5, 5, 5, 6, 7, 8, 9]},
                         index=dates, dtype=float)
    matrices = panel.PanelMatrices({"close": close})
    filled, _ = cleaning.forward_fill_limited(matrices, 5)
    carried = close.isna() & filled.close.notna()
    _, with_fill = cleaning.handle_stale_prices(filled, 5, None)
    _, own = cleaning.handle_stale_prices(filled, 5, None, carried=carried)
    assert with_fill.worst == {"FROZEN": 7, "GONE": 5}  # the old count: the fill is a streak
    assert own.worst == {"FROZEN": 6} and own.streaks == 1  # 5 -> 5 x3, a gap, 5 x3 is one
    assert own.stale_days == 6


def test_a_three_for_two_split_is_found_when_its_ratio_is_configured():
    """A 3:2 split moves the price -33 %, inside max_abs_return (0.4): with 1.5 among the ratios
    the candidate bound comes down to it; without, the move is left alone."""
    dates = pd.bdate_range("2021-01-04", periods=15)
    close = pd.DataFrame({"A": [90.0] * 3 + [60.0] * 12}, index=dates)
    matrices = panel.PanelMatrices({"close": close})
    out, events = cleaning.repair_unadjusted_splits(matrices, 0.4, [1.5, 2, 3], 0.02, 5)
    assert [(e.ticker, e.ratio, e.status) for e in events] == [("A", 1.5, "repaired")]
    assert out.close["A"].iloc[8:].tolist() == [90.0] * 7
    kept, none = cleaning.repair_unadjusted_splits(matrices, 0.4, [2, 3], 0.02, 5)
    assert none == [] and kept.close.equals(close)


def test_split_repair_reads_no_close_after_the_date_it_changes():
    """Prefix invariance (DESIGN §3): the repaired panel cut at any date equals the repair of the
    panel cut there, through a split, a crash that rebounds, a unit switch, a few days quoted in
    cents and a move at the end."""
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2021-01-04", periods=60)
    walk = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (60, 5)), axis=0))
    walk[20:, 0] /= 2.0  # split that holds
    walk[30:33, 1] /= 3.0  # crash near 3:1 that rebounds after three days
    walk[40:, 2] *= 100  # a quote switching to cents
    walk[57:, 3] /= 2.0  # near 2:1 three dates before the end
    walk[25:28, 4] *= 100  # three days quoted in cents, then back
    close = pd.DataFrame(walk, index=dates, columns=list("ABCDE"))
    args = (0.4, [2, 3, 100], 0.05, 5, 0.15)
    full = cleaning.split_repair(panel.PanelMatrices({"close": close}), *args)
    assert {(e.ticker, e.status) for e in full.events} == {
        ("A", "repaired"), ("C", "repaired"), ("D", "pending"), ("B", "way back"),
        ("E", "way back")}
    # the way back is no near-split move to report either
    assert cleaning.split_like_moves(panel.PanelMatrices({"close": close}), 0.4, [2, 3, 100], 0.1,
                                     5, full.events) == []
    # the way back from a move that did not hold is no split: B and E keep their prices after it
    for name, back in (("B", 33), ("E", 28)):
        assert full.panel.close[name].iloc[back:].equals(close[name].iloc[back:])
    for end in range(15, 60):
        cut = cleaning.split_repair(panel.PanelMatrices({"close": close.iloc[:end + 1]}), *args)
        pd.testing.assert_frame_equal(cut.panel.close, full.panel.close.iloc[:end + 1])


def test_withheld_prices_lose_no_return_a_holder_earned():
    """While a near-ratio move awaits confirmation its prices are withheld; the first close after
    the run is measured from the last close before it, so a real crash that rebounds keeps its
    -24 % over the window and a confirmed split its adjusted (small) move: compounded daily
    returns equal the true ones."""
    dates = pd.bdate_range("2021-01-04", periods=12)
    crash = [100, 100, 100, 50, 52, 75, 76, 76, 75, 76, 76, 76.0]  # -50 %, then rebounds to -24 %
    split = [100, 100, 100, 50.5, 51, 50, 51, 50.5, 51, 51, 51.5, 52.0]  # 2:1, held
    close = pd.DataFrame({"C": crash, "S": split}, index=dates)
    repair = cleaning.split_repair(panel.PanelMatrices({"close": close}), 0.4, [2, 3], 0.02, 5)
    assert repair.withheld["C"].tolist()[3:6] == [True, True, False]
    returns = cleaning.daily_returns(repair.panel.close, repair.withheld)
    grown = (1 + returns.fillna(0.0)).prod()
    assert grown["C"] == pytest.approx(76 / 100)  # the real loss, earned when the level broke
    assert grown["S"] == pytest.approx(52 * 2 / 100)  # the split-adjusted move
    assert returns["C"].iloc[5] == pytest.approx(75 / 100 - 1)  # measured from the last close
    # without the mask the withheld window would drop the crash: +1 % instead of -24 %
    plain = (1 + cleaning.daily_returns(repair.panel.close).fillna(0.0)).prod()
    assert plain["C"] == pytest.approx(76 / 75)


def test_no_close_after_a_move_is_no_evidence_of_a_split():
    """A -50 % last print before a name stops trading: the forward fill's copies of it are not
    closes the file gave, so they confirm nothing and the move stays a real return."""
    dates = pd.bdate_range("2021-01-04", periods=12)
    observed = pd.DataFrame({"A": [100, 101, 100, 50] + [np.nan] * 8}, index=dates)
    filled = observed.ffill(limit=5)
    repair = cleaning.split_repair(panel.PanelMatrices({"close": filled}), 0.4, [2, 3], 0.02, 5,
                                   observed=observed)
    assert repair.events == []
    assert repair.panel.close["A"].iloc[8] == 50  # not rescaled x2
    # the copies alone, read as closes, would have confirmed it
    copies = cleaning.split_repair(panel.PanelMatrices({"close": filled}), 0.4, [2, 3], 0.02, 5)
    assert [e.status for e in copies.events] == ["repaired"]
    # nor is it a near-split move that "held" (no close followed it)
    report = dict(max_abs_return=0.4, ratios=[2, 3], report_tolerance=0.1, confirm_days=5)
    assert cleaning.split_like_moves(panel.PanelMatrices({"close": filled}), **report,
                                     observed=observed) == []
    assert len(cleaning.split_like_moves(panel.PanelMatrices({"close": filled}), **report)) == 1


@pytest.mark.parametrize("closes_after", [1, 2, 4])
def test_a_crash_with_a_few_closes_before_the_name_stops_is_no_split(closes_after):
    """-50 %, then one to four closes at the new level, then no close any more (a delisting):
    fewer than confirm_days closes held it, so it is no split and the loss stays in the prices
    (it was rescaled x2 once one close had held). Five closes would confirm it (tested above)."""
    dates = pd.bdate_range("2021-01-04", periods=20)
    observed = pd.DataFrame({"A": [100, 101, 100] + [50.0 + 0.1 * k for k in range(
        1 + closes_after)] + [np.nan] * (16 - closes_after)}, index=dates)
    filled = observed.ffill(limit=5)
    repair = cleaning.split_repair(panel.PanelMatrices({"close": filled}), 0.4, [2, 3], 0.02, 5,
                                   observed=observed)
    assert [e.status for e in repair.events if e.status == "repaired"] == []
    returns = cleaning.daily_returns(repair.panel.close, repair.withheld)
    assert (1 + returns["A"].fillna(0.0)).prod() == pytest.approx(filled["A"].dropna().iloc[-1] / 100)


def test_missing_closes_in_a_window_wait_for_confirm_days_closes_the_file_gave():
    """A split whose next closes come with gaps (the name's own holidays) is confirmed by five
    closes, however many dates they take; five missing dates in a row are a stop instead."""
    dates = pd.bdate_range("2021-01-04", periods=20)
    gapped = [100, 101, 100, 50, np.nan, 51, np.nan, 50.5, 51, np.nan, 50, 50.2] + [50.0] * 8
    observed = pd.DataFrame({"A": gapped}, index=dates)
    repair = cleaning.split_repair(panel.PanelMatrices({"close": observed.ffill(limit=5)}), 0.4,
                                   [2, 3], 0.02, 5, observed=observed)
    assert [(e.date, e.status) for e in repair.events] == [(str(dates[3].date()), "repaired")]
    assert repair.panel.close["A"].iloc[-1] == pytest.approx(100)  # forward-adjusted x2


def test_one_and_a_half_is_a_three_for_two_split_only():
    """With 1.5 configured a held -33 % day is a 3:2 split, but a held +50 % day (AMD's earnings
    day on 2016-04-22) is no 2:3 reverse split; 2 keeps both directions (1:2 reverse splits)."""
    dates = pd.bdate_range("2021-01-04", periods=15)
    close = pd.DataFrame({"UP": [10.0] * 3 + [15.0] * 12, "DOUBLE": [10.0] * 3 + [20.0] * 12},
                         index=dates)
    _, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": close}), 0.4,
                                                  [1.5, 2], 0.02, 5)
    assert [(e.ticker, e.ratio) for e in events] == [("DOUBLE", 0.5)]


def test_two_bad_prints_at_different_levels_and_the_way_back_are_no_split():
    """100, then 50, then 25, then back to 100: each move broke when the price came back, and
    the way back (x4, no inverse of either move alone) returns to the level they left."""
    dates = pd.bdate_range("2021-01-04", periods=14)
    close = pd.DataFrame({"A": [100, 100, 100, 50, 25, 100, 101, 100, 99, 100, 101, 100, 100,
                                100.0]}, index=dates)
    out, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": close}), 0.4,
                                                    [2, 3, 4], 0.02, 5)
    assert events == []
    assert out.close["A"].iloc[5:].equals(close["A"].iloc[5:])


def test_a_one_day_bad_print_far_from_a_ratio_is_reported_and_its_way_back_is_no_split():
    """x9.6 for one day (near no ratio: left alone), then back to the old level: the move back
    is x0.1004, within tolerance of a 10:1 split, and it held, so it was repaired as one and
    every later price multiplied by 10. Found at the move back (causal), on any prefix."""
    dates = pd.bdate_range("2021-01-04", periods=14)
    prices = [5.99, 5.84, 5.96, 57.22, 5.747, 5.73, 5.79, 5.80, 5.81, 5.78, 5.80, 5.82, 5.83, 5.8]
    close = pd.DataFrame({"A": prices, "B": np.linspace(10, 11, 14)}, index=dates)
    out, events = cleaning.repair_unadjusted_splits(panel.PanelMatrices({"close": close}), 0.4,
                                                    [2, 3, 4, 5, 10, 100], 0.02, 5)
    assert events == []
    pd.testing.assert_frame_equal(out.close, close)
    report = cleaning.reverted_move_report(close, 0.4, 5)
    assert report == [{"date": "2021-01-07", "ticker": "A", "change": 8.6007,
                       "back": "2021-01-08"}]
    assert cleaning.reverted_move_report(close.iloc[:4], 0.4, 5) == []  # not known before
    # a jump that holds is no bad print; one taken back after confirm_days rows is not either
    held = close.assign(A=[5.99, 5.84, 5.96] + [57.0] * 11)
    assert cleaning.reverted_move_report(held, 0.4, 5) == []
    late = close.assign(A=[5.99, 5.84, 5.96] + [57.0] * 6 + [5.8] * 5)
    assert cleaning.reverted_move_report(late, 0.4, 5) == []


def test_columns_starting_later_than_the_prices_are_named():
    """Volume (or a user factor) with no value on any name for the first dates: the factors
    built from it start later than the prices, which the run names (a vendor's volume history
    often starts years after its prices)."""
    dates = pd.bdate_range("2021-01-04", periods=60)
    close = pd.DataFrame({"A": np.linspace(10, 12, 60), "B": np.linspace(20, 18, 60)},
                         index=dates)
    volume = pd.DataFrame(1000.0, index=dates, columns=["A", "B"])
    volume.iloc[:30] = np.nan
    factor = pd.DataFrame(1.0, index=dates, columns=["A", "B"])
    factor.iloc[:5, 0] = np.nan  # one name late: not the column
    never = pd.DataFrame(np.nan, index=dates, columns=["A", "B"])
    matrices = panel.PanelMatrices({"close": close, "volume": volume, "score": factor,
                                    "empty": never})
    late = cleaning.late_columns(matrices, ["volume", "score", "empty"], min_dates=21)
    assert late == {"volume": {"first_date": str(dates[30].date()), "dates_without": 30},
                    "empty": {"first_date": None, "dates_without": 60}}
    assert cleaning.late_columns(matrices, ["volume"], min_dates=31) == {}


def test_untraded_rows_need_a_copied_close_earlier_volume_and_a_day_with_volume():
    """Volume 0 with the close of the day before is a stated suspension; zeros of a name that
    never reported volume, on a day no name has volume, or beside a moved close are not. Each
    cell reads that day and earlier (the same on any prefix)."""
    dates = pd.bdate_range("2021-01-04", periods=6)
    close = pd.DataFrame({"HALT": [10, 11, 11, 11, 12, 12], "NOVOL": [5, 5, 5, 6, 6, 6],
                          "QUOTE": [7, 7, 8, 8, 8, 8], "LIQ": [3, 4, 3, 4, 3, 4]},
                         index=dates, dtype=float)
    volume = pd.DataFrame({"HALT": [100, 100, 0, 0, 100, 0], "NOVOL": [0, 0, 0, 0, 0, 0],
                           "QUOTE": [50, 50, 0, 50, 0, 0], "LIQ": [9, 9, 9, 9, 9, 0]},
                          index=dates, dtype=float)  # no name has volume on the last day
    matrices = panel.PanelMatrices({"close": close, "volume": volume})
    untraded = cleaning.untraded_cells(matrices)
    assert untraded["HALT"].tolist() == [False, False, True, True, False, False]
    assert not untraded["NOVOL"].any()  # a price-only export's zeros
    # volume 0 beside a moved close (day 3) is a quote, not a copy
    assert untraded["QUOTE"].tolist() == [False, False, False, False, True, False]
    assert not untraded["LIQ"].any()
    cut = cleaning.untraded_cells(panel.PanelMatrices({"close": close.iloc[:4],
                                                       "volume": volume.iloc[:4]}))
    pd.testing.assert_frame_equal(cut, untraded.iloc[:4])
    assert cleaning.untraded_cells(panel.PanelMatrices({"close": close})) is None


def test_split_warnings_name_the_largest_moves_first_and_say_when_more_exist():
    """Eight held moves: the warning shows five, the +937 % one among them though it is not
    among the first five by date, and says how many more there are."""
    moves = [{"date": f"2021-0{k + 1}-01", "ticker": f"T{k}", "change": c, "nearest_ratio": 2.0,
              "integer_ratio": None}
             for k, c in enumerate([-0.45, -0.46, 0.8, -0.47, -0.44, -0.48, 9.37, -1.0])]
    lines = cleaning.split_warnings([], [], moves, moves)
    assert len(lines) == 2
    for line in lines:
        assert "T6@2021-07-01 x10.37" in line and "T7@2021-08-01 -100.0%" in line
        assert line.count("@2021") == 5 and " and 3 more" in line
        assert "T4@" not in line  # the smallest moves are the ones left out


def _ohlc(closes: dict, opens: dict) -> panel.PanelMatrices:
    dates = pd.bdate_range("2021-01-04", periods=len(next(iter(closes.values()))))
    close = pd.DataFrame(closes, index=dates, dtype=float)
    open_ = pd.DataFrame(opens, index=dates, dtype=float)
    return panel.PanelMatrices({"close": close, "open": open_})


def test_the_open_tells_a_split_overnight_from_a_crash_in_the_session():
    """C: -50 % that holds, but it opened at the old level (99): a crash in the session, not
    repaired (old rule: rescaled x2). S: a 4:1 split on a +2.4 % day (close 25.6, 2.4 % off the
    ratio, outside the 2 % tolerance) that opened at 25.03: a split, repaired (old rule: left as
    a -74 % return). F: the open is a vendor's fill (equal to the last close): the close alone
    decides, as before."""
    crash = [100, 100, 100, 50, 50.5, 50, 51, 50.5, 50, 51, 50.5, 51.0]
    split = [100, 100, 100, 25.6, 25.5, 25.7, 25.4, 25.6, 25.5, 25.6, 25.7, 25.6]
    filled = [100, 100, 100, 50, 50.5, 50, 51, 50.5, 50, 51, 50.5, 51.0]
    opens = {"C": [100, 100, 100, 99] + crash[4:], "S": [100, 100, 100, 25.03] + split[4:],
             "F": [100, 100, 100, 100] + filled[4:]}
    matrices = _ohlc({"C": crash, "S": split, "F": filled}, opens)
    args = (0.4, [2, 3, 4, 5, 10], 0.02, 5)
    with_open = cleaning.split_repair(matrices, *args, open_evidence=True)
    statuses = {e.ticker: e.status for e in with_open.events}
    assert statuses == {"C": "in session", "S": "repaired", "F": "repaired"}
    close = with_open.panel.close
    assert close["C"].iloc[-1] == 51.0  # kept: the loss is real
    assert close["S"].iloc[-1] == pytest.approx(25.6 * 4)  # on the pre-split scale
    assert with_open.panel.values["open"]["S"].iloc[-1] == pytest.approx(25.6 * 4)
    closes_only = cleaning.split_repair(matrices, *args)
    assert {e.ticker: e.status for e in closes_only.events} == {"C": "repaired", "F": "repaired"}
    # causal: the panel cut at any date is repaired as the full one up to there
    for end in range(4, 12):
        cut = cleaning.split_repair(matrices.select(dates=matrices.dates[:end + 1]), *args,
                                    open_evidence=True)
        pd.testing.assert_frame_equal(cut.panel.close.iloc[:4], close.iloc[:4])
    warning = cleaning.split_warnings([], [], [], [], [asdict(e) for e in with_open.events
                                                       if e.status == "in session"])
    assert len(warning) == 1 and "C@2021-01-07 2:1 split?" in warning[0] and "open_evidence" in warning[0]


def test_untraded_summary_names_the_longest_runs_not_a_names_total():
    """A has two halts (5 dates, then 2): the report's examples are runs, so A's 7 dates are not
    shown as one halt from its first date."""
    dates = pd.bdate_range("2021-01-01", periods=12)
    untraded = pd.DataFrame(False, index=dates, columns=["A", "B", "C"])
    untraded.loc[dates[1]:dates[5], "A"] = True
    untraded.loc[dates[8]:dates[9], "A"] = True
    untraded.loc[dates[0]:dates[2], "B"] = True
    untraded.loc[dates[11], "C"] = True
    summary = cleaning.untraded_summary(untraded)
    assert (summary["rows"], summary["names"], summary["runs"]) == (11, 3, 4)
    assert summary["examples"] == ["A from 2021-01-04 (5 date(s))", "B from 2021-01-01 (3 date(s))",
                                   "A from 2021-01-13 (2 date(s))"]
    assert cleaning.untraded_summary(None) == {"rows": 0, "names": 0, "runs": 0, "examples": []}


def test_a_per_column_fill_limit_naming_no_user_column_is_warned_about(caplog):
    """A misspelt column in processing.factor_ffill_limit would silently keep ffill_limit."""
    from bma_quant.pipelines.data_processing.nodes import _warn_unknown_factor_limits

    with caplog.at_level("WARNING"):
        _warn_unknown_factor_limits(["analyst_revision"], {"analyst_revison": 23})
    assert "names analyst_revison, not among the file's user factor columns" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _warn_unknown_factor_limits(["analyst_revision"], {"analyst_revision": 23})
        _warn_unknown_factor_limits(["analyst_revision"], 23)
    assert caplog.text == ""


def test_a_market_wide_crash_near_a_split_ratio_is_no_split_but_one_names_split_is():
    """A war or a devaluation takes a whole market -30..-55 % in one session: some names land
    within 2 % of 2:1 by chance. Relative to the day's median name their move is no split; the
    same check leaves a split on a quiet day, or on a day the market fell 3 % (the name flat
    against it: 2 % off the ratio relative to the market, but the market moved far less than half
    the split's way), repaired."""
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2021-01-01", periods=120)
    returns = rng.normal(0, 0.01, (len(dates), 40))
    returns[60] = rng.uniform(-0.56, -0.30, 40)  # the crash
    returns[90] = rng.normal(-0.03, 0.005, 40)  # a -3 % market day ...
    returns[90, 7] = -0.5  # ... on which name 7 splits 2:1, flat against the market
    returns[30, 3] = -0.5  # a split on a quiet day
    close = pd.DataFrame(50 * np.cumprod(1 + returns, axis=0), index=dates,
                         columns=[f"T{k}" for k in range(40)])
    opens = close.shift(1) * (1 + 0.5 * returns)  # half the day's move overnight
    opens.iloc[90, 7] = close.iloc[89, 7] * 0.5  # a split happens overnight
    opens.iloc[30, 3] = close.iloc[30, 3]
    opens.iloc[60] = close.iloc[60] * 1.01  # the war began overnight: the market opened down
    matrices = panel.PanelMatrices({"close": close, "open": opens})
    near_half = [f"T{k}" for k in np.flatnonzero(np.abs(returns[60] + 0.5) <= 0.01)]
    assert near_half  # the crash put names within tolerance of 2:1

    def events(market_min_names):
        out = cleaning.split_repair(matrices, 0.4, [2, 3, 4, 5, 10, 100], 0.02, 5, 0.15, 21,
                                    open_evidence=True, market_min_names=market_min_names)
        return {(e.ticker, e.date): e.status for e in out.events}

    crash, split_days = str(dates[60].date()), (str(dates[30].date()), str(dates[90].date()))
    off = events(None)
    assert all(off[(t, crash)] == "repaired" for t in near_half)  # what it did before
    on = events(5)
    assert all(on[(t, crash)] == "market move" for t in near_half)
    assert on[("T3", split_days[0])] == on[("T7", split_days[1])] == "repaired"
    warning = cleaning.split_warnings([], [], [], market=[
        {"ticker": t, "date": crash, "ratio": 2.0} for t in near_half])[0]
    assert f"{len(near_half)} one-day move(s) near a split ratio were not repaired: the day's " \
           f"median name moved with them" in warning and crash in warning


def test_a_penny_names_one_tick_moves_are_no_splits_and_its_real_splits_are():
    """A name at 0.001-0.003 on a 0.001 grid moves a whole tick at a time: 0.002 -> 0.001 is a
    2:1 ratio and 0.003 -> 0.002 a 3:2 one. Its tick noise was rescaled as 13 splits (a price
    doubled for months) and reported as 3:2 splits, +50 % jumps and bad prints. A one-tick move
    says nothing; a 10:1 reverse split of the same name (0.002 -> 0.02) and a 2:1 split of a
    name on the same grid far above its tick still are splits."""
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2021-01-01", periods=300)
    ticks = [2]
    for step in rng.choice([-1, 0, 0, 1], size=299):  # a walk between one and three ticks
        ticks.append(ticks[-1] + step if 1 <= ticks[-1] + step <= 3 else ticks[-1] - step)
    penny = np.array(ticks) * 0.001
    assert (np.abs(np.diff(penny)) > 0).sum() > 20  # plenty of one-tick moves
    # a 10:1 reverse split: 0.02 and on, a tick at a time
    penny[195:200] = 0.002
    walk = np.cumsum(rng.choice([-1, 0, 1], size=100))
    penny[200:] = np.round(0.02 + 0.001 * (walk - walk[0]), 3)
    dollar = np.round(0.5 * np.exp(np.cumsum(rng.normal(0, 0.01, 300))), 3)
    dollar[150:] = np.round(dollar[150:] / 2, 3)  # a 2:1 split
    close = pd.DataFrame({"P": penny, "D": dollar}, index=dates)
    matrices = panel.PanelMatrices({"close": close})
    ratios = [2, 3, 4, 5, 10, 100]
    out = cleaning.split_repair(matrices, 0.4, ratios, 0.02, 5, 0.15, 21)
    assert {(e.ticker, e.date, e.ratio) for e in out.events} == {
        ("P", str(dates[200].date()), 0.1), ("D", str(dates[150].date()), 2.0)}
    assert not cleaning.reverted_move_report(close, 0.4, 5, 21)
    assert not cleaning.unexplained_large_moves(matrices, 0.4, ratios, 0.1, 5, out.events, 21)
    assert not cleaning.unconfigured_ratio_moves(matrices, 0.4, [*ratios, 1.5], 0.02, 5, ratios,
                                                 out.events, 21)


def _tick_closes(units: float, seed: int = 5) -> pd.DataFrame:
    """Closes on a 0.01 grid (in `units` of the price), many windows sharing a return exactly."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=300)
    ticks = np.cumsum(rng.integers(-3, 4, (300, 40)), axis=0) + rng.integers(500, 3000, 40)
    return pd.DataFrame(ticks * units, index=dates, columns=[f"T{i:02d}" for i in range(40)])


def test_labels_rank_alike_in_any_price_units():
    """A return two windows share exactly (10.00 -> 10.10, 20.00 -> 20.20) divided to ratios one
    bit apart, and other bits in cents: the per-date ranks (rank target, RankIC) ordered those
    names by the last bit, so the same market priced in cents trained another model."""
    from bma_quant.core.data.labels import snap_rounding_ties

    dollars = labels.forward_return_labels(_tick_closes(0.01), 10, 1)
    cents = labels.forward_return_labels(_tick_closes(1.0), 10, 1)
    ranks = [x.rank(axis=1, method="average") for x in (dollars, cents)]
    pd.testing.assert_frame_equal(ranks[0], ranks[1])
    np.testing.assert_allclose(dollars.to_numpy(), cents.to_numpy(), rtol=0, atol=1e-15)
    exact = dollars.to_numpy()
    ties = sum(len(row[np.isfinite(row)]) - len(np.unique(row[np.isfinite(row)])) for row in exact)
    assert ties > 100  # the panel does share returns, and they stay exact ties
    np.testing.assert_array_equal(snap_rounding_ties(np.array([[1.01, 1.01 + 2e-16, np.nan,
                                                                 1.02]])),
                                  [[1.01, 1.01, np.nan, 1.02]])


def test_the_ic_decays_forward_returns_rank_like_the_labels_in_any_units():
    """evaluation's IC decay computes its own forward returns: at the label horizon they rank
    as the labels do, in dollars and in cents alike; an infinite ratio stays infinite."""
    from bma_quant.core.data.labels import snap_rounding_ties
    from bma_quant.core.evaluation.metrics import _forward_from_close

    dollars, cents = _tick_closes(0.01), _tick_closes(1.0)
    ranks = [_forward_from_close(c, 10, 1).rank(axis=1) for c in (dollars, cents)]
    pd.testing.assert_frame_equal(ranks[0], ranks[1])
    pd.testing.assert_frame_equal(
        ranks[0], labels.forward_return_labels(dollars, 10, 1).rank(axis=1))
    np.testing.assert_array_equal(snap_rounding_ties(np.array([[np.inf, np.nan, np.inf, 1.0]])),
                                  [[np.inf, np.nan, np.inf, 1.0]])
