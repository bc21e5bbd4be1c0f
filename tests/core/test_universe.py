"""The point-in-time universe (core.data.universe) and cross-sectional imputation on hand-built panels."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data import cleaning, panel, universe
from bma_quant.core.data.schema import DataValidationError

RULE = universe.EligibilityRule(coverage_threshold=0.7, window_days=10, min_history_days=3)


def _observed(columns: dict[str, list[int]]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    dates = pd.bdate_range("2021-01-04", periods=n)
    return pd.DataFrame({k: np.asarray(v, dtype=bool) for k, v in columns.items()}, index=dates)


def test_eligibility_needs_history_trailing_coverage_and_a_price():
    observed = _observed({
        "FULL": [1] * 25,
        "LATE": [0] * 8 + [1] * 17,                 # lists on day 8
        "GONE": [1] * 12 + [0] * 13,                # stops trading after day 11
        "GAPPY": [1] * 10 + [0] * 4 + [1] * 11,     # four missing days from day 10
    })
    trailing = universe.trailing_eligibility(observed, RULE)
    close = observed.where(observed, np.nan).astype(float)  # a cleaned close wherever observed
    eligible = universe.eligible_cells(trailing, close)
    # FULL: eligible once 3 dates have passed since its first close
    assert eligible["FULL"].tolist() == [False] * 3 + [True] * 22
    # LATE: history counts from its own first close (day 8), not from the panel start
    assert eligible["LATE"].tolist() == [False] * 11 + [True] * 14
    # GONE: leaves the day its price stops
    assert eligible["GONE"].tolist() == [False] * 3 + [True] * 9 + [False] * 13
    # GAPPY: back on day 14, but its last 10 dates hold 6 closes (0.6 < 0.7) until day 20 (0.7)
    assert eligible["GAPPY"].tolist() == [False] * 3 + [True] * 7 + [False] * 10 + [True] * 5


def test_coverage_of_a_young_name_counts_from_its_first_close():
    """Days before a listing are not missing days: only min_history_days holds a new name back."""
    observed = _observed({"A": [1] * 12, "NEW": [0] * 6 + [1, 1, 0, 1, 1, 1]})
    trailing = universe.trailing_eligibility(observed, RULE)
    # NEW at day 9: 4 dates since listing, 3 observed (0.75) and history 3 -> eligible
    assert trailing["NEW"].tolist() == [False] * 9 + [True] * 3


def test_a_later_exit_does_not_change_earlier_membership():
    """The whole-sample rule would drop B everywhere (60% coverage); point in time keeps it
    until it stops trading."""
    dates = pd.bdate_range("2021-01-04", periods=100)
    close = pd.DataFrame({"A": 1.0, "B": 1.0}, index=dates)
    close.loc[dates[60]:, "B"] = np.nan
    rule = universe.EligibilityRule(0.7, window_days=20, min_history_days=0)
    eligible = universe.eligible_cells(
        universe.trailing_eligibility(close.notna(), rule), close
    )
    assert eligible["B"].iloc[:60].all() and not eligible["B"].iloc[60:].any()
    assert eligible["A"].all()


@pytest.mark.parametrize("cut", [5, 17, 40, 77])
def test_rule_and_strict_mask_are_prefix_invariant(cut):
    rng = np.random.default_rng(0)
    observed = pd.DataFrame(rng.random((90, 6)) > 0.25, index=pd.bdate_range("2021", periods=90))
    observed.iloc[:30, 0] = False   # late listing
    observed.iloc[50:, 1] = False   # delisting
    full = universe.trailing_eligibility(observed, RULE)
    part = universe.trailing_eligibility(observed.iloc[:cut], RULE)
    pd.testing.assert_frame_equal(full.iloc[:cut], part)
    np.testing.assert_array_equal(
        universe.strict_date_mask(observed, RULE)[:cut],
        universe.strict_date_mask(observed.iloc[:cut], RULE),
    )


def test_strict_mask_drops_a_day_most_recent_names_miss():
    observed = _observed({"A": [1] * 30, "B": [1] * 30, "C": [1] * 30, "D": [1] * 12 + [0] * 18})
    observed.iloc[5, 1:] = False  # a broken day: only A has a price
    keep = universe.strict_date_mask(observed, RULE)
    assert not keep[5]
    # D stopped trading on day 12: 3 of 4 names still trade (0.75) while D is in the window,
    # and it leaves the count once its last close (day 11) is out of the 10-day window (day 21)
    assert keep[12:].all()
    threshold_8 = universe.EligibilityRule(0.8, window_days=10, min_history_days=3)
    keep_8 = universe.strict_date_mask(observed, threshold_8)
    assert not keep_8[12:21].any() and keep_8[21:].all()


def test_first_close_from_training_lets_a_slice_match_the_full_history():
    rng = np.random.default_rng(1)
    observed = pd.DataFrame(rng.random((60, 4)) > 0.2, index=pd.bdate_range("2021", periods=60),
                            columns=list("ABCD"))
    observed.iloc[:2] = True
    observed.iloc[30:40, 2] = False  # C is absent when the slice starts
    full = universe.trailing_eligibility(observed, RULE)
    first = pd.Series({c: observed.index[0] for c in observed.columns})
    piece = universe.trailing_eligibility(observed.iloc[30:], RULE, first_seen=first)
    # once a whole window lies inside the slice, the slice decides like the full history
    pd.testing.assert_frame_equal(full.iloc[30 + RULE.window_days:], piece.iloc[RULE.window_days:])


def test_listing_events_and_summary():
    observed = _observed({"A": [1] * 6, "LATE": [0, 0, 1, 1, 1, 1], "GONE": [1, 1, 1, 0, 0, 0]})
    events = universe.listing_events(observed)
    assert list(events["late_listings"]) == ["LATE"]
    assert events["delistings"] == {"GONE": str(observed.index[2].date())}
    assert events["missing_at_end"] == {}
    summary = universe.universe_summary(observed)
    assert summary["eligible_names_per_date"] == {"min": 2, "median": 2.0, "max": 3}
    assert summary["eligible_rows"] == 13 and summary["never_eligible"] == []


def test_bad_rule_is_refused_with_the_parameter_named():
    with pytest.raises(DataValidationError, match="window_days"):
        universe.EligibilityRule(0.7, window_days=0, min_history_days=0)
    with pytest.raises(DataValidationError, match="coverage_threshold"):
        universe.EligibilityRule(1.5, window_days=10, min_history_days=0)


def test_imputation_uses_that_dates_cross_section_only():
    dates = pd.bdate_range("2021-01-04", periods=3)
    close = pd.DataFrame({"A": 1.0, "B": 1.0, "C": 1.0, "D": [1.0, np.nan, 1.0]}, index=dates)
    factor = pd.DataFrame(
        {"A": [1.0, 10.0, np.nan], "B": [3.0, 30.0, np.nan], "C": [np.nan, np.nan, np.nan],
         "D": [100.0, np.nan, np.nan]}, index=dates,
    )
    eligible = close.notna()
    eligible.loc[dates[0], "D"] = False  # D is not in day 0's cross-section
    p = panel.PanelMatrices({"close": close, "f": factor}, eligible=eligible)
    out, filled = cleaning.impute_cross_sectional_median(p, ["f"])
    f = out.values["f"]
    assert f.loc[dates[0], "C"] == 2.0          # median of A and B only (D not eligible)
    assert f.loc[dates[1], "C"] == 20.0         # that date's median, not the dates' pooled one
    assert np.isnan(f.loc[dates[1], "D"])       # no close: not imputed
    assert f.loc[dates[2]].isna().all()         # nothing to take a median of: stays missing
    assert filled == 2


def test_imputation_takes_the_median_not_the_mean():
    """One outlier in a date's cross-section moves a mean, not the median the rule names."""
    dates = pd.bdate_range("2021-01-04", periods=1)
    close = pd.DataFrame({t: [1.0] for t in "ABCD"}, index=dates)
    factor = pd.DataFrame({"A": [1.0], "B": [2.0], "C": [300.0], "D": [np.nan]}, index=dates)
    p = panel.PanelMatrices({"close": close, "f": factor}, eligible=close.notna())
    out, filled = cleaning.impute_cross_sectional_median(p, ["f"])
    assert out.values["f"].loc[dates[0], "D"] == 2.0 and filled == 1


def test_a_close_missing_only_at_the_end_is_not_a_delisting():
    """A missing last print (or two) is within the forward fill: the name is still in the
    cross-section and nothing yet tells a stop from a gap. Only a stop longer than ffill_limit
    dates before the end is a delisting."""
    observed = _observed({"A": [1] * 8, "LAST_PRINT": [1] * 7 + [0],
                          "TWO_DAYS": [1] * 6 + [0, 0], "GONE": [1] * 4 + [0] * 4})
    events = universe.listing_events(observed, ffill_limit=2)
    dates = observed.index
    assert events["delistings"] == {"GONE": str(dates[3].date())}
    assert events["missing_at_end"] == {"LAST_PRINT": str(dates[6].date()),
                                        "TWO_DAYS": str(dates[5].date())}
    # without a forward fill every stop before the last date is a delisting, as before
    plain = universe.listing_events(observed)
    assert set(plain["delistings"]) == {"GONE", "LAST_PRINT", "TWO_DAYS"}
    assert plain["missing_at_end"] == {}


def test_names_that_stopped_trading_soon_stop_counting_in_the_strict_filter():
    """A third of the names delist at once: with the whole coverage window as 'trading', every
    later date looked partial for a year and was dropped; with active_days they stop counting
    after a few dates. A partial day (most names missing for one date) is still dropped."""
    n_dates, names = 60, [f"N{i}" for i in range(9)]
    present = np.ones((n_dates, len(names)), dtype=bool)
    present[20:, :3] = False  # N0-N2 delist after date 19
    present[40, 3:8] = False  # a partial day: 1 of the 6 names still trading has a close
    observed = pd.DataFrame(present, index=pd.bdate_range("2021-01-04", periods=n_dates),
                            columns=names)
    window_rule = universe.EligibilityRule(0.7, window_days=50, min_history_days=0)
    kept_before = universe.strict_date_mask(observed, window_rule)
    assert not kept_before[20:].any()  # 6 of 9 < 0.7: every date after the wave was dropped
    rule = universe.EligibilityRule(0.7, window_days=50, min_history_days=0, active_days=5)
    kept = universe.strict_date_mask(observed, rule)
    assert kept[25:40].all() and kept[41:].all() and not kept[40]
    assert not kept[21]  # the first days after the wave: the delisted names still count
    # prefix invariant: a cut panel decides every date the same
    for cut in (22, 41, 55):
        assert (universe.strict_date_mask(observed.iloc[:cut], rule) == kept[:cut]).all()


def test_below_min_price_reads_the_files_last_close_causally():
    """A forward-filled day keeps the last close the file gave (a penny stock stays out while its
    price is missing); no minimum, no mask."""
    dates = pd.bdate_range("2021-01-04", periods=5)
    observed = pd.DataFrame({"P": [1.5, 0.8, np.nan, np.nan, 1.2], "Q": [5.0] * 5}, index=dates)
    below = universe.below_min_price(observed, 1.0)
    assert below["P"].tolist() == [False, True, True, True, False] and not below["Q"].any()
    assert universe.below_min_price(observed, None) is None
    cut = universe.below_min_price(observed.iloc[:3], 1.0)
    pd.testing.assert_frame_equal(cut, below.iloc[:3])


def test_a_forward_filled_close_keeps_the_name_out_only_when_an_own_close_is_required():
    """P misses dates 2-3 (filled from date 1) and stops after date 5 (filled to date 7): with
    require_own_close those dates are out of the cross-section, as a volume-0 suspension is;
    without it the copies stay in. Each cell reads its own date (a cut panel agrees)."""
    dates = pd.bdate_range("2021-01-04", periods=8)
    unfilled = pd.DataFrame({"P": [1.0, 1.1, np.nan, np.nan, 1.2, 1.3, np.nan, np.nan],
                             "Q": [5.0] * 8}, index=dates)
    close = unfilled.ffill(limit=2)
    carried = universe.carried_cells(unfilled, close, require_own_close=True)
    assert carried["P"].tolist() == [False, False, True, True, False, False, True, True]
    assert not carried["Q"].any()
    assert universe.carried_cells(unfilled, close, require_own_close=False) is None
    trailing = pd.DataFrame(True, index=dates, columns=close.columns)
    eligible = universe.eligible_cells(trailing, close, carried=carried)
    assert eligible["P"].tolist() == [True, True, False, False, True, True, False, False]
    assert universe.eligible_cells(trailing, close)["P"].all()
    cut = universe.carried_cells(unfilled.iloc[:3], close.iloc[:3], True)
    pd.testing.assert_frame_equal(cut, carried.iloc[:3])


def test_a_name_back_after_a_long_absence_of_rows_is_seasoned_afresh():
    """R (relist after 3 dates) has rows on 0-9, none on 10-14 (5 dates), rows again from 15: a
    new listing, so 3 dates of history are needed again and coverage counts from date 15 (the
    old closes do not season it). S misses 3 dates only (10-12): the same listing. T's dates
    10-14 are rows with a suspended close (rows, not traded): no relisting, its coverage drops.
    Each date reads the past only (a cut panel agrees); without the rule R is back at once."""
    rule = universe.EligibilityRule(0.7, window_days=10, min_history_days=3,
                                    relist_after_days=3)
    rows = _observed({"R": [1] * 10 + [0] * 5 + [1] * 10,
                      "S": [1] * 10 + [0] * 3 + [1] * 12,
                      "T": [1] * 25})
    traded = rows.copy()
    traded.loc[traded.index[10:15], "T"] = False  # suspended: rows without a trade
    relisted = universe.relisting_rows(rows, 3)
    assert relisted[:, 0].tolist() == [-1] * 15 + [15] * 10
    assert (relisted[:, 1:] == -1).all()
    trailing = universe.trailing_eligibility(traded, rule, rows=rows)
    close = rows.where(rows, np.nan).astype(float)
    eligible = universe.eligible_cells(trailing, close)
    # R: three dates of history again from date 15 (its old closes do not count)
    assert eligible["R"].tolist() == [False] * 3 + [True] * 7 + [False] * 8 + [True] * 7
    # S: back on 13 with 7 of its last 10 dates covered (0.7)
    assert eligible["S"].iloc[13:].all()
    # T: the suspension costs coverage (5 of 10 dates until date 19), no reseasoning
    assert not trailing["T"].iloc[14:21].any() and trailing["T"].iloc[21:].all()
    # without the rule R's old closes count: it waits for coverage (7 of 10 on date 21)
    old = universe.eligible_cells(universe.trailing_eligibility(
        traded, universe.EligibilityRule(0.7, 10, 3), rows=rows), close)
    assert old["R"].iloc[15:].tolist() == [False] * 6 + [True] * 4
    for cut in (12, 16, 19):
        pd.testing.assert_frame_equal(
            universe.trailing_eligibility(traded.iloc[:cut], rule, rows=rows.iloc[:cut]),
            trailing.iloc[:cut])
    with pytest.raises(DataValidationError, match="relist_after_days"):
        universe.EligibilityRule(0.7, 10, 3, relist_after_days=0)


def test_the_dollar_volume_minimum_reads_traded_days_causally():
    """Median close x volume over the traded days of the trailing window: a suspension's zero
    volumes do not make a name thin, a thin run does once it is most of the window; no
    minimum or no volume, no mask; a cut panel agrees."""
    dates = pd.bdate_range("2021-01-04", periods=8)
    close = pd.DataFrame({"A": [10.0] * 8, "B": [10.0] * 8}, index=dates)
    volume = pd.DataFrame({"A": [1e6, 1e6, 0, 0, 0, 1e6, 1e6, 1e6],
                           "B": [1e6, 1e6, 1e3, 1e3, 1e3, 1e3, 1e6, 1e6]}, index=dates)
    thin = universe.below_min_dollar_volume(close, volume, 1e6, days=4)
    assert not thin["A"].any()  # 10^7 on every traded day; the suspension is not counted
    # B: medians of the last 4 dates 10^7, 10^7, 10^7, 5x10^6, 10^4, 10^4, 10^4, 5x10^6
    assert thin["B"].tolist() == [False] * 4 + [True, True, True, False]
    assert universe.below_min_dollar_volume(close, volume, None, 4) is None
    assert universe.below_min_dollar_volume(close, None, 1e6, 4) is None
    cut = universe.below_min_dollar_volume(close.iloc[:5], volume.iloc[:5], 1e6, days=4)
    pd.testing.assert_frame_equal(cut, thin.iloc[:5])


def test_a_name_a_price_floor_keeps_out_is_not_said_to_lack_history():
    """Names in no cross-section are told apart by cause: one whose history never admits it (too
    short / too gappy), one a rule (here a price floor) keeps out whenever its history would
    admit it; a name the floor excluded only part of the time is eligible, named by neither."""
    observed = _observed({"FULL": [1] * 25, "PENNY": [1] * 25, "DIPS": [1] * 25,
                          "SHORT": [0] * 23 + [1] * 2})
    close = observed.where(observed, np.nan).astype(float) * 10.0
    close["PENNY"] = 0.5
    close.iloc[:10, close.columns.get_loc("DIPS")] = 0.5
    trailing = universe.trailing_eligibility(observed, RULE)
    below = universe.below_min_price(close, 1.0)
    rules = {"below_price": below, "carried": None}
    eligible = universe.eligible_cells(trailing, close, below_price=below)
    too_little, kept_out = universe.never_eligible_causes(trailing, close, eligible, rules)
    assert too_little == ["SHORT"] and kept_out == {"PENNY": ["below_price"]}
    # from a later date on, only what happens from then counts
    later = universe.never_eligible_causes(trailing, close, eligible, rules, close.index[20])
    assert later == (["SHORT"], {"PENNY": ["below_price"]})


def test_listed_spans_relisting_events_and_names_without_sector_by_hand():
    from bma_quant.core.data import universe as U
    from bma_quant.core.data.bar_rate import dates_per_year

    present = np.array([[0, 1], [1, 0], [0, 0], [1, 0], [0, 1]], dtype=bool)
    np.testing.assert_array_equal(U.listed_spans(present), [[0, 1], [1, 1], [1, 1], [1, 1],
                                                            [0, 1]])
    # A's second listing starts on row 3: the gap between its listings is in neither span
    relisted = np.array([[-1, -1], [-1, -1], [-1, -1], [3, -1], [3, -1]])
    np.testing.assert_array_equal(U.listed_spans(present, relisted)[:, 0], [0, 1, 0, 1, 0])
    dates = pd.bdate_range("2020-01-01", periods=3)
    listed_from = pd.DataFrame({"B": [pd.NaT, dates[1], dates[1]], "A": [dates[0]] * 3},
                               index=dates)
    assert U.relisting_events(listed_from) == [
        {"ticker": "A", "listed_from": "2020-01-01"}, {"ticker": "B", "listed_from": "2020-01-02"}]
    assert U.relisting_events(None) == []
    sector = pd.DataFrame({"A": ["tech"] * 3, "B": [None] * 3}, index=dates)
    assert U.names_without_sector(sector) == ["B"]
    assert U.names_without_sector(sector.assign(A=None)) == []  # no sectors at all: none named
    assert 250 < dates_per_year(pd.bdate_range("2015-01-01", "2020-12-31")) < 263
    assert 364 < dates_per_year(pd.date_range("2015-01-01", "2020-12-31")) < 366
    assert dates_per_year(pd.bdate_range("2020-01-01", periods=40)) is None  # under a quarter


def test_eligible_and_kept_out_counts_what_each_rule_alone_keeps_out():
    from bma_quant.core.data import universe as U

    dates = pd.bdate_range("2020-01-01", periods=4)
    trailing = pd.DataFrame(True, index=dates, columns=["A", "B"])
    close = pd.DataFrame(10.0, index=dates, columns=["A", "B"])
    cheap = pd.DataFrame([[True, False]] * 4, index=dates, columns=["A", "B"])
    carried = pd.DataFrame([[True, True], [False, False], [False, False], [False, False]],
                           index=dates, columns=["A", "B"])
    rules = {"untraded": None, "below_price": cheap, "carried": carried, "illiquid": None}
    eligible, counts = U.eligible_and_kept_out(trailing, close, rules)
    assert eligible.to_numpy().sum() == 3  # B on its three own closes
    # A's first row is kept out by both rules: counted by neither
    assert counts == {"untraded": 0, "below_price": 3, "carried": 1, "illiquid": 0}
