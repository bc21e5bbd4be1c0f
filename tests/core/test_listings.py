"""One column per listing: a reused code is two companies for market-wide aggregates."""

import numpy as np
import pandas as pd

from bma_quant.core.data import cleaning, listings
from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.pipelines.regime_models.nodes import build_detector_inputs

NAT = np.datetime64("NaT")


def _relisted_frame():
    dates = pd.bdate_range("2021-01-04", periods=6)
    close = pd.DataFrame({"A": [10.0, 11.0, np.nan, np.nan, 50.0, 55.0],
                          "B": [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]}, index=dates)
    listed_from = pd.DataFrame({"A": [NAT, NAT, NAT, NAT, dates[4], dates[4]],
                                "B": [NAT] * 6}, index=dates, dtype="datetime64[ns]")
    return close, listed_from


def test_a_later_listing_gets_a_column_of_its_own():
    close, listed_from = _relisted_frame()
    rows = listings.listing_rows(listed_from, close.index)
    np.testing.assert_array_equal(rows[:, 0], [-1, -1, -1, -1, 4, 4])
    assert (rows[:, 1] == -1).all()
    split = listings.split_by_listing(close.to_numpy(), rows)
    assert split.shape == (6, 3)
    np.testing.assert_array_equal(split[:, 0], [10.0, 11.0, np.nan, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(split[:, 1], close["B"].to_numpy())
    np.testing.assert_array_equal(split[:, 2], [np.nan] * 4 + [50.0, 55.0])
    # nothing to split: the same array, untouched
    plain = close.to_numpy()
    assert listings.split_by_listing(plain, None) is plain
    assert listings.listing_rows(listed_from.assign(A=NAT), close.index) is None


def test_close_by_listing_names_the_later_listing_by_its_first_date():
    close, listed_from = _relisted_frame()
    long = close.stack(future_stack=True).rename("close").reset_index()
    long.columns = ["date", "ticker", "close"]
    long["listed_from"] = listed_from.stack(future_stack=True).to_numpy()
    wide = listings.close_by_listing(long.dropna(subset=["close"]))
    assert list(wide.columns) == ["A", "B", "A@2021-01-08"]
    np.testing.assert_array_equal(wide["A@2021-01-08"].to_numpy(), [np.nan] * 4 + [50.0, 55.0])
    assert list(listings.close_by_listing(long.drop(columns="listed_from")).columns) == ["A", "B"]


def test_no_daily_return_spans_two_listings():
    """The relisted code's first close (50 after the old company's 11) has no return; the next
    one is the new company's own (55 / 50)."""
    close, listed_from = _relisted_frame()
    close.iloc[2:4, 0] = 11.0  # the old company's close carried forward into the gap
    returns = cleaning.daily_returns(close, None, listed_from)
    assert np.isnan(returns["A"].iloc[4])
    assert returns["A"].iloc[5] == 55.0 / 50.0 - 1.0
    np.testing.assert_array_equal(returns["B"], cleaning.daily_returns(close)["B"])
    starts = listings.listing_starts(listed_from)
    assert starts.to_numpy().sum() == 1 and starts["A"].iloc[4]


def test_a_code_reused_twice_has_no_return_across_either_change_of_company():
    """Three companies under one code: the second relisting (a listed_from date changing to
    another date, not from none) starts a listing too, so its first close has no return."""
    dates = pd.bdate_range("2021-01-04", periods=8)
    close = pd.DataFrame({"A": [10.0, 11.0, 50.0, 55.0, 56.0, 8.0, 8.8, 9.0]}, index=dates)
    listed_from = pd.DataFrame({"A": [NAT, NAT, *[dates[2]] * 3, *[dates[5]] * 3]},
                               index=dates, dtype="datetime64[ns]")
    starts = listings.listing_starts(listed_from)
    assert starts["A"].tolist() == [False, False, True, False, False, True, False, False]
    returns = cleaning.daily_returns(close, None, listed_from)
    assert np.isnan(returns["A"].iloc[2]) and np.isnan(returns["A"].iloc[5])
    assert returns["A"].iloc[6] == 8.8 / 8.0 - 1.0


def test_the_regime_evidence_sees_a_reused_code_as_two_companies():
    """The detector's inputs (fear-greed, breadth, dispersion, factor performance) on a panel
    whose reused code carries listed_from equal those on the panel in which the new listing is
    another ticker."""
    panel = generate_synthetic_market(n_tickers=6, n_days=400, seed=5).panel
    dates = np.sort(panel["date"].unique())
    t2 = panel["ticker"] == "T0002"
    reused = panel[~(t2 & panel["date"].between(dates[200], dates[269]))].reset_index(drop=True)
    back = (reused["ticker"] == "T0002") & (reused["date"] >= dates[270])
    relisted = reused.assign(listed_from=pd.Series(
        np.where(back, dates[270], NAT), dtype="datetime64[ns]"))
    renamed = reused.assign(ticker=reused["ticker"].where(~back, "T0002-new"))
    returns = reused.pivot(index="date", columns="ticker", values="close").pct_change()
    market = pd.DataFrame({"date": returns.index, "market_return": returns.mean(axis=1)})
    market["market_level"] = 100.0 * (1.0 + market["market_return"].fillna(0.0)).cumprod()
    params = {"evidence": {}}
    got = build_detector_inputs(relisted, market, {}, params)
    want = build_detector_inputs(renamed, market, {}, params)
    pd.testing.assert_frame_equal(got, want, rtol=1e-10)
    before = build_detector_inputs(reused, market, {}, params)
    assert not np.allclose(got.select_dtypes("number").to_numpy(),
                           before.select_dtypes("number").to_numpy(), equal_nan=True)
