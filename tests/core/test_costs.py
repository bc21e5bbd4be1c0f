"""Per-name costs from estimated bid-ask spreads (core.evaluation.costs) and their backtest."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.evaluation import costs
from bma_quant.core.evaluation.backtest import long_short_backtest


def _bars(spreads: np.ndarray, n_days: int = 600, seed: int = 0):
    """Daily close / high / low of names whose efficient price walks through 20 intraday steps
    and whose trades print at the bid or the ask (the estimator's model): relative spread
    `spreads[j]` for name j."""
    rng = np.random.default_rng(seed)
    n = len(spreads)
    steps = rng.normal(0.0, 0.02 / np.sqrt(20), (n_days, 20, n))
    path = np.log(50.0) + np.cumsum(steps.reshape(n_days * 20, n), axis=0).reshape(n_days, 20, n)
    half = spreads[None, :] / 2
    close = path[:, -1, :] + half * rng.choice([-1.0, 1.0], (n_days, n))
    high = path.max(axis=1) + half
    low = path.min(axis=1) - half
    dates = pd.bdate_range("2020-01-01", periods=n_days)
    cols = [f"N{j}" for j in range(n)]
    frame = lambda v: pd.DataFrame(np.exp(v), index=dates, columns=cols)  # noqa: E731
    return frame(close), frame(high), frame(low)


def test_the_estimate_recovers_the_planted_spread():
    spreads = np.array([0.0, 0.002, 0.01, 0.03])
    close, high, low = _bars(spreads)
    estimate = costs.close_high_low_spread(close, high, low, window=400, min_dates=300)
    last = estimate.iloc[-1].to_numpy()
    # no spread: near zero (the two-day estimates' noise at 2 % daily volatility leaves a floor
    # of a few bps even over 400 dates: small spreads are not resolved, large ones are)
    assert last[0] < 0.008 and last[1] < 0.008
    np.testing.assert_allclose(last[2:], spreads[2:], rtol=0.25)
    assert last[0] < last[2] < last[3]
    assert estimate.iloc[:300].isna().all().all()  # fewer than min_dates estimates


def test_the_estimate_is_causal():
    close, high, low = _bars(np.array([0.01, 0.02]), n_days=200)
    full = costs.close_high_low_spread(close, high, low, 21, 10)
    for cut in (30, 99, 150):
        part = costs.close_high_low_spread(close.iloc[:cut], high.iloc[:cut], low.iloc[:cut],
                                           21, 10)
        pd.testing.assert_frame_equal(part, full.iloc[:cut])


def test_cost_rates_add_half_the_spread_to_the_flat_part_with_a_cap_and_a_median_fill():
    spread = pd.DataFrame({"A": [0.002, 0.002], "B": [0.05, np.nan], "C": [np.nan, 0.004]})
    rates = costs.one_way_cost_rates(spread, cost_bps=10.0, cap_bps=200.0)
    assert rates["A"].iloc[0] == pytest.approx(5e-4 + 1e-3)
    assert rates["B"].iloc[0] == pytest.approx(5e-4 + 0.02)  # half of 5 % = 250 bps, capped
    assert rates["C"].iloc[0] == pytest.approx(5e-4 + 0.5 * 0.026)  # the date's median
    assert rates["B"].iloc[1] == pytest.approx(5e-4 + 0.5 * 0.003)
    empty = costs.one_way_cost_rates(pd.DataFrame({"A": [np.nan]}), 10.0, 200.0)
    assert empty["A"].iloc[0] == pytest.approx(5e-4)


def test_settings_are_checked():
    assert not costs.SpreadCost.from_params(None).enabled
    with pytest.raises(ValueError, match="min_dates"):
        costs.SpreadCost.from_params({"enabled": True, "window": 5, "min_dates": 9})


def _book_inputs(seed: int = 1):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-01", periods=120)
    tickers = [f"T{i}" for i in range(20)]
    idx = pd.MultiIndex.from_product([dates, tickers], names=["date", "ticker"])
    frame = pd.DataFrame(index=idx).reset_index()
    frame["prediction"] = rng.normal(size=len(frame))
    frame["ret_1d"] = rng.normal(0.0, 0.01, len(frame))
    return frame, dates, tickers


def test_the_backtest_charges_each_names_rate_on_what_is_traded():
    frame, dates, tickers = _book_inputs()
    preds, returns = frame[["date", "ticker", "prediction"]], frame[["date", "ticker", "ret_1d"]]
    flat = long_short_backtest(preds, returns, cost_bps=10.0)
    same = pd.DataFrame(10.0 / 2 / 1e4, index=dates, columns=tickers)
    by_name = long_short_backtest(preds, returns, cost_bps=10.0, cost_rates=same)
    np.testing.assert_allclose(by_name.daily["long_short"], flat.daily["long_short"],
                               rtol=0, atol=1e-15)
    dear = same.copy()
    dear["T3"] = 0.01  # 100 bps one way in one name
    costly = long_short_backtest(preds, returns.assign(cost_rate=dear.stack().to_numpy()),
                                 cost_bps=10.0)
    gap = flat.daily["long_short"] - costly.daily["long_short"]
    charged = gap.abs() > 1e-15
    assert (gap >= -1e-15).all() and charged.any()
    # charged only on a book's first held day, and never more than T3 moved from a full long
    # weight (1 / 4 of a leg: 20 names in 5 quantiles, drifted a little) to a full short one at
    # its extra rate
    assert (flat.daily.loc[charged, "turnover"] > 0).all()
    assert gap.max() <= (0.01 - 5e-4) * 0.55


def test_the_rate_charged_is_the_trade_closes_not_a_later_days():
    """Rates that change every day: a trade pays its own close's rate. Rates 100x higher on
    every other date change nothing; the same on the trade dates alone changes the costs."""
    frame, dates, tickers = _book_inputs()
    preds, returns = frame[["date", "ticker", "prediction"]], frame[["date", "ticker", "ret_1d"]]
    base = pd.DataFrame(5e-4, index=dates, columns=tickers)
    plain = long_short_backtest(preds, returns, cost_rates=base)
    trade_dates = pd.DatetimeIndex(plain.weights["trade_date"].unique())
    assert 0 < len(trade_dates) < len(dates)
    on_trades = pd.DataFrame(np.repeat(base.index.isin(trade_dates)[:, None], len(tickers), 1),
                             index=dates, columns=tickers)
    elsewhere = base.mask(~on_trades, 0.05)
    pd.testing.assert_frame_equal(
        long_short_backtest(preds, returns, cost_rates=elsewhere).daily, plain.daily)
    dearer = long_short_backtest(preds, returns, cost_rates=base.mask(on_trades, 0.05)).daily
    assert (dearer["long_short"] < plain.daily["long_short"] - 1e-6).any()
