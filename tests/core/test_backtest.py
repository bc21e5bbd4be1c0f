"""Tests for core.evaluation.backtest: hand-built buy-and-hold books, drift, timing (no look-ahead), costs."""

import math

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.evaluation.backtest import (
    DAILY_COLUMNS,
    SUMMARY_KEYS,
    Tradability,
    annualised_sharpe,
    execution_positions,
    frozen_cells,
    holding_returns,
    long_short_backtest,
    max_drawdown,
    rebalance_weights,
)

NAMES = list("ABCDEFGHIJ")


def _long(wide: pd.DataFrame, name: str) -> pd.DataFrame:
    """Wide (date x ticker) -> long (date, ticker, name), dropping NaN."""
    wide = wide.rename_axis(index="date", columns="ticker")
    return wide.stack().rename(name).reset_index()


def _random_returns(n_dates: int, names: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-01", periods=n_dates)
    return pd.DataFrame(rng.normal(0.0, 0.02, (n_dates, len(names))), index=dates, columns=names)


# --- return statistics ----------------------------------------------------------------------


def test_max_drawdown_known_path():
    # Equity 1.10, 0.88, 0.924: the trough 0.88 is 20% below the 1.10 peak.
    assert max_drawdown(pd.Series([0.10, -0.20, 0.05])) == pytest.approx(0.20)
    # The starting capital is a peak: a first-day loss is a drawdown.
    assert max_drawdown(np.array([-0.10, 0.05])) == pytest.approx(0.10)
    assert max_drawdown([0.01, 0.02]) == 0.0
    assert math.isnan(max_drawdown(pd.Series([], dtype=float)))


def test_annualised_sharpe():
    assert annualised_sharpe([0.01, 0.03], 252) == pytest.approx(0.02 / 0.02**0.5 / 0.1 * 252**0.5)
    assert math.isnan(annualised_sharpe([0.01], 252))
    assert math.isnan(annualised_sharpe([0.001, 0.001, 0.001], 252))  # no risk, no ratio
    assert math.isnan(annualised_sharpe([], 252))


# --- books ----------------------------------------------------------------------------------


def test_rebalance_weights_legs_sum_to_plus_and_minus_one():
    preds = _long(_random_returns(3, NAMES, seed=1), "prediction")
    weights = rebalance_weights(preds, n_quantiles=5)
    sums = (
        weights.assign(
            long=weights["long_short"].clip(lower=0), short=weights["long_short"].clip(upper=0)
        )
        .groupby("date")[["long", "short", "long_only", "universe"]]
        .sum()
    )
    np.testing.assert_allclose(sums["long"], 1.0)
    np.testing.assert_allclose(sums["short"], -1.0)
    np.testing.assert_allclose(sums["long_only"], 1.0)
    np.testing.assert_allclose(sums["universe"], 1.0)
    assert (weights.groupby("date")["long_short"].apply(lambda w: (w != 0).sum()) == 4).all()
    with pytest.raises(ValueError, match="n_quantiles"):
        rebalance_weights(preds, n_quantiles=1)


def test_ties_that_empty_an_end_quantile_hold_no_long_short_book():
    """Tied names share a bucket, so 8 tied lowest predictions of 20 left quintile 1 empty and
    the 'long-short' book was long the top quintile alone: a bet on the market (Sharpe of
    beta). Such a date holds nothing, as the served book does; ties inside keep both legs."""
    date = pd.Timestamp("2024-01-01")
    names = [f"T{i:02d}" for i in range(20)]
    tied_bottom = pd.DataFrame({"date": date, "ticker": names,
                                "prediction": [0.1] * 8 + [0.2] * 7 + [0.3] * 5})
    weights = rebalance_weights(tied_bottom, n_quantiles=5)
    assert (weights["quantile"] == 1).sum() == 0
    assert (weights["long_short"] == 0).all()
    np.testing.assert_allclose(weights["long_only"].sum(), 1.0)  # one leg by design
    tied_middle = tied_bottom.assign(prediction=np.r_[np.arange(4), [5.0] * 12, np.arange(6, 10)])
    inner = rebalance_weights(tied_middle, n_quantiles=5)
    assert inner["long_short"].sum() == pytest.approx(0.0)
    assert (inner["long_short"] > 0).sum() == 4 and (inner["long_short"] < 0).sum() == 4

    # in the backtest: the flat date earns nothing, is counted, and the next date trades
    returns = _random_returns(30, names, seed=3)
    later = tied_middle.assign(date=returns.index[10])
    preds = pd.concat([tied_bottom.assign(date=returns.index[0]), later], ignore_index=True)
    result = long_short_backtest(preds, returns, rebalance_days=10, cost_bps=0.0,
                                 signal_dates=pd.DatetimeIndex(preds["date"].unique()))
    assert result.summary["flat_rebalances"] == 1 and result.summary["n_rebalances"] == 2
    np.testing.assert_allclose(result.daily["long_short"].iloc[:10], 0.0)
    assert (result.daily["long_short"].iloc[10:] != 0).any()
    assert long_short_backtest(later, returns).summary["flat_rebalances"] == 0


def test_execution_positions_on_and_off_the_trading_axis():
    trading = pd.bdate_range("2024-01-01", periods=10)  # Mon 1 Jan .. Fri 12 Jan
    on_axis = pd.DatetimeIndex([trading[0], trading[4]])
    np.testing.assert_array_equal(execution_positions(on_axis, trading, 1), [1, 5])
    np.testing.assert_array_equal(execution_positions(on_axis, trading, 0), [0, 4])
    saturday = pd.DatetimeIndex([pd.Timestamp("2024-01-06")])  # between trading[4] and [5]
    # d = 1: the first close after the signal (Monday, index 5); d = 2: the next one.
    assert execution_positions(saturday, trading, 1).tolist() == [5]
    assert execution_positions(saturday, trading, 2).tolist() == [6]
    assert execution_positions(saturday, trading, 0).tolist() == [5]


# --- hand-built three-rebalance backtest ----------------------------------------------------


def _three_rebalance_case(cost_bps: float = 10.0):
    """Predictions on 6 dates, rebalance every 2: books at signal dates 0, 2 and 4.

    Book 0: long A,B short I,J. Book 2: long A,C short I,J. Book 4: long I,J short A,C. Each is
    traded at close(t+1) and earns days t+2, t+3. Returns are zero except (day: name +return):
    1: A +50% (the trade day of book 0: not earned), 2: A +10%, 3: I +10%, 4: C +20%, 5: J -10%,
    6: A +10%, 8: B +30% (after the last book: not in the backtest).
    """
    dates = pd.bdate_range("2024-01-01", periods=12)
    returns = pd.DataFrame(0.0, index=dates, columns=NAMES)
    for day, name, value in [
        (1, "A", 0.5),
        (2, "A", 0.1),
        (3, "I", 0.1),
        (4, "C", 0.2),
        (5, "J", -0.1),
        (6, "A", 0.1),
        (8, "B", 0.3),
    ]:
        returns.iloc[day, NAMES.index(name)] = value
    rng = np.random.default_rng(3)
    preds = pd.DataFrame(rng.standard_normal((6, 10)), index=dates[:6], columns=NAMES)
    preds.iloc[0] = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    preds.iloc[2] = [10, 8, 9, 7, 6, 5, 4, 3, 2, 1]
    preds.iloc[4] = [1, 8, 2, 7, 6, 5, 4, 3, 10, 9]
    result = long_short_backtest(
        _long(preds, "prediction"),
        _long(returns, "ret_1d"),
        rebalance_days=2,
        n_quantiles=5,
        cost_bps=cost_bps,
        execution_delay=1,
    )
    return result, returns


# Hand computation, capital 1 at each trade, positions drift, return = P&L / NAV(previous close).
# Long-short:
#   book 0: A .5 B .5 I -.5 J -.5.  day 2: A +10% -> P&L +.05, return .05, NAV 1.05, A .55.
#           day 3: I +10% -> P&L -.05 (short), return -.05/1.05 = -1/21, NAV 1.00, I -.55.
#           drifted weights (/ NAV 1.00): A .55 B .5 I -.55 J -.5.
#   book 2 targets A .5 C .5 I -.5 J -.5: |dw| = A .05 + B .5 + C .5 + I .05 + J 0 = 1.1,
#           turnover .55 (0.5 if measured against book 0's targets).
#           day 4: C +20% -> P&L +.1, return .1, NAV 1.1, C .6.
#           day 5: J -10% -> P&L +.05 (short), return .05/1.1 = 1/22, NAV 1.15, J -.45.
#           drifted: A .5/1.15 C .6/1.15 I -.5/1.15 J -.45/1.15 (gross 2.05/1.15).
#   book 4 targets I .5 J .5 A -.5 C -.5: every sign flips, so |dw| = 2 + 2.05/1.15,
#           turnover 1 + 1.025/1.15 = 87/46 (2.0 against the targets).
#           day 6: A +10% -> P&L -.05, return -.05.  day 7: return 0.
# Long-only (A,B | A,C | I,J at .5): day 2 .05, day 3 0, day 4 .1, day 5 0, days 6-7 0.
# Universe (.1 each): day 2 .01 (NAV 1.01); day 3 I .1 x .1 / 1.01 = 1/101 (.01 without drift);
#   day 4 .02 (NAV 1.02); day 5 -.01/1.02 = -1/102; day 6 .01; day 7 0.
EXPECTED_GROSS = [0.05, -1 / 21, 0.1, 1 / 22, -0.05, 0.0]
EXPECTED_LONG_ONLY = [0.05, 0.0, 0.1, 0.0, 0.0, 0.0]
EXPECTED_UNIVERSE = [0.01, 1 / 101, 0.02, -1 / 102, 0.01, 0.0]
EXPECTED_TURNOVER = [1.0, 0.0, 0.55, 0.0, 87 / 46, 0.0]


def test_hand_built_books_returns_and_turnover():
    result, returns = _three_rebalance_case()
    daily = result.daily
    dates = returns.index
    # Signal at t traded at close t+1, first earning day t+2; the last book is held 2 days.
    assert list(daily.index) == list(dates[2:8])
    assert list(daily.columns) == list(DAILY_COLUMNS)
    np.testing.assert_allclose(daily["long_short_gross"], EXPECTED_GROSS, rtol=1e-12)
    np.testing.assert_allclose(daily["long_only"], EXPECTED_LONG_ONLY, atol=1e-15)
    np.testing.assert_allclose(daily["universe"], EXPECTED_UNIVERSE, rtol=1e-12)
    np.testing.assert_allclose(daily["turnover"], EXPECTED_TURNOVER, rtol=1e-12)
    np.testing.assert_allclose(
        daily["long_short"], np.array(EXPECTED_GROSS) - 1e-3 * np.array(EXPECTED_TURNOVER)
    )
    np.testing.assert_allclose(daily["excess"], daily["long_only"] - daily["universe"])
    np.testing.assert_allclose(daily["equity"], np.cumprod(1 + daily["long_short"]))
    summary = result.summary
    assert set(summary) == set(SUMMARY_KEYS)
    # The initial build (1.0) is reported apart; turnover is the mean of the later trades.
    assert summary["initial_turnover"] == pytest.approx(1.0)
    assert summary["turnover"] == pytest.approx((0.55 + 87 / 46) / 2)
    assert summary["n_rebalances"] == 3 and summary["n_days"] == 6
    assert summary["annual_return"] == pytest.approx(daily["long_short"].mean() * 252)
    assert summary["annual_volatility"] == pytest.approx(daily["long_short"].std() * 252**0.5)
    assert summary["sharpe"] == pytest.approx(annualised_sharpe(daily["long_short"], 252))
    assert summary["ir"] == pytest.approx(annualised_sharpe(daily["excess"], 252))
    assert summary["max_drawdown"] == pytest.approx(max_drawdown(daily["long_short"]))
    assert (daily["drawdown"] <= 0).all()
    trade_dates = result.weights.drop_duplicates("date").set_index("date")["trade_date"]
    assert trade_dates.to_dict() == {dates[0]: dates[1], dates[2]: dates[3], dates[4]: dates[5]}


def test_costs_reduce_returns_by_exactly_cost_times_turnover():
    result, _ = _three_rebalance_case(cost_bps=25.0)
    daily = result.daily
    np.testing.assert_allclose(
        daily["long_short_gross"] - daily["long_short"], 25.0 / 1e4 * daily["turnover"], atol=1e-15
    )
    assert (daily["long_short_gross"] - daily["long_short"]).sum() == pytest.approx(
        25e-4 * (1.0 + 0.55 + 87 / 46)
    )
    free, _ = _three_rebalance_case(cost_bps=0.0)
    pd.testing.assert_series_equal(
        free.daily["long_short"], free.daily["long_short_gross"], check_names=False
    )
    pd.testing.assert_series_equal(free.daily["long_short_gross"], daily["long_short_gross"])


def test_weights_drift_between_rebalances():
    """Long A (flat), short B (+10% a day): the short grows against the book until the trade.

    Capital 1 at the trade, positions A +1, B -1. After k held days B is worth -1.1^k and the NAV
    is 1 - (1.1^k - 1) = 2 - 1.1^k, so B's weight is -1.1^k / (2 - 1.1^k):
    k=0: -1, k=1: -1.1/.9 = -1.2222, k=2: -1.21/.79 = -1.5316, k=3: -1.331/.669 = -1.9895, and
    day k's return is .1 x w_B(k-1) = -.1, -.12222, -.15316 (a constant -.1 without drift).
    The next book has the same targets (A +1, B -1), yet the trade must undo the drift:
    turnover = .5 x (|1 - 1/.669| + |-1 + 1.331/.669|) = .5 x (2.331/.669 - 2) = .74215.
    Universe (.5 each): A's weight shrinks as B's grows: returns .05, .055/1.05, .0605/1.105.
    """
    dates = pd.bdate_range("2024-01-01", periods=9)
    returns = pd.DataFrame({"A": 0.0, "B": 0.1}, index=dates)
    preds = pd.DataFrame({"A": 2.0, "B": 1.0}, index=dates)
    result = long_short_backtest(
        _long(preds, "prediction"),
        _long(returns, "ret_1d"),
        rebalance_days=3,
        n_quantiles=2,
        cost_bps=0.0,
        execution_delay=1,
    )
    daily = result.daily
    # Signals 0, 3, 6 traded at closes 1, 4, 7: books earn days 2-4, 5-7 and 8.
    assert list(daily.index) == list(dates[2:9])
    nav = 2 - 1.1 ** np.arange(4)  # NAV after k = 0..3 held days
    weight_b = -(1.1 ** np.arange(4)) / nav
    np.testing.assert_allclose(weight_b, [-1, -1.1 / 0.9, -1.21 / 0.79, -1.331 / 0.669])
    period = 0.1 * weight_b[:3]
    np.testing.assert_allclose(daily["long_short_gross"], [*period, *period, period[0]])
    np.testing.assert_allclose(daily["long_only"], 0.0)
    universe = [0.05, 0.055 / 1.05, 0.0605 / 1.105]
    np.testing.assert_allclose(daily["universe"], [*universe, *universe, universe[0]])
    drift_turnover = 0.5 * (2.331 / 0.669 - 2)
    assert drift_turnover == pytest.approx(0.742152, abs=1e-6)
    np.testing.assert_allclose(daily["turnover"], [1.0, 0, 0, drift_turnover, 0, 0, drift_turnover])
    assert result.summary["turnover"] == pytest.approx(drift_turnover)
    assert result.summary["initial_turnover"] == pytest.approx(1.0)
    # Compounded over a held period, the book returns the buy-and-hold legs' P&L on capital 1.
    assert np.prod(1 + daily["long_short_gross"].iloc[:3]) - 1 == pytest.approx(-(1.1**3 - 1))


def test_missing_return_of_a_held_name_counts_as_zero():
    returns = _random_returns(6, NAMES, seed=4)
    preds = pd.DataFrame([list(range(10, 0, -1))], index=returns.index[:1], columns=NAMES)
    gappy = returns.copy()
    gappy.iloc[2, 0] = np.nan  # A, held long, has no return on the first earning day
    result = long_short_backtest(_long(preds, "prediction"), _long(gappy, "ret_1d"), cost_bps=0)
    day = returns.iloc[2]
    expected = 0.5 * (0.0 + day["B"]) - 0.5 * (day["I"] + day["J"])
    assert result.daily["long_short_gross"].iloc[0] == pytest.approx(expected)


# --- timing: no look-ahead ------------------------------------------------------------------


def test_same_day_leak_is_not_earned_with_execution_delay():
    """A prediction that knows ret(t+1) exactly must not earn it: the book trades at close t+1."""
    names = [f"N{i}" for i in range(20)]
    returns = _random_returns(600, names, seed=5)
    leak = _long(returns.shift(-1), "prediction")  # prediction at t = ret_1d of t+1
    rets = _long(returns, "ret_1d")
    delayed = long_short_backtest(leak, rets, rebalance_days=1, cost_bps=0.0, execution_delay=1)
    instant = long_short_backtest(leak, rets, rebalance_days=1, cost_bps=0.0, execution_delay=0)

    # Reference: with d = 1 the book from signal t earns day t+2, ranked on ret(t+1), i.e. day s
    # earns top-minus-bottom of ret(s) among names ranked by ret(s-1) -- an unrelated return.
    gross = delayed.daily["long_short_gross"]
    for day in gross.index[:50]:
        s = returns.index.get_loc(day)
        ranked = returns.iloc[s - 1]
        top, bottom = ranked.nlargest(4).index, ranked.nsmallest(4).index
        expected = returns.iloc[s][top].mean() - returns.iloc[s][bottom].mean()
        assert gross[day] == pytest.approx(expected)
    assert abs(delayed.summary["sharpe"]) < 2.0  # noise: ~±0.7 for 600 days
    # Control: trading at the signal's own close (d = 0) would earn the leaked return every day.
    assert (instant.daily["long_short_gross"] > 0).all()
    assert instant.summary["sharpe"] > 50


def test_prediction_of_the_traded_window_is_earned():
    """A prediction of ret over t+d+1 .. t+d+h (the label window) is earned in full."""
    names = [f"N{i}" for i in range(20)]
    returns = _random_returns(400, names, seed=6)
    window = sum(returns.shift(-(1 + j)) for j in range(1, 11))  # days t+2 .. t+11
    result = long_short_backtest(
        _long(window, "prediction"),
        _long(returns, "ret_1d"),
        rebalance_days=10,
        cost_bps=0.0,
        execution_delay=1,
    )
    gross = result.daily["long_short_gross"]
    dates = returns.index
    assert gross.index[0] == dates[2]
    signal_dates = window.dropna().index[::10]
    for signal in signal_dates:
        t = dates.get_loc(signal)
        held = gross.loc[dates[t + 2] : dates[t + 11]]
        ranked = window.loc[signal]
        top, bottom = ranked.nlargest(4).index, ranked.nsmallest(4).index
        # Buy and hold: the compounded book return is the legs' buy-and-hold P&L on capital 1.
        bought = (1 + returns.iloc[t + 2 : t + 12]).prod() - 1
        expected = bought[top].mean() - bought[bottom].mean()
        assert np.prod(1 + held) - 1 == pytest.approx(expected) and expected > 0
    assert result.summary["sharpe"] > 5


# --- degenerate inputs ----------------------------------------------------------------------


def _assert_empty(result):
    assert result.daily.empty and list(result.daily.columns) == list(DAILY_COLUMNS)
    assert result.summary["n_days"] == 0 and result.summary["n_rebalances"] == 0
    assert result.summary["flat_rebalances"] == 0
    for key in set(SUMMARY_KEYS) - {"n_days", "n_rebalances", "flat_rebalances"}:
        assert math.isnan(result.summary[key])


def test_keys_of_another_type_are_refused_not_matched_to_nothing():
    """Dates as text or tickers as numbers on one side matched nothing: a Sharpe of costs."""
    returns = _random_returns(30, NAMES, seed=2)
    preds = _long(returns, "prediction")
    rets = _long(returns, "ret_1d")
    with pytest.raises(ValueError, match="predictions' dates are (object|str)"):
        long_short_backtest(preds.assign(date=preds["date"].astype(str)), rets)
    numbered = preds.assign(ticker=preds["ticker"].map({n: k for k, n in enumerate(NAMES)}))
    with pytest.raises(ValueError, match="no ticker of the predictions .e.g. 0. is among"):
        long_short_backtest(numbered, rets)
    with pytest.raises(ValueError, match="time zone UTC and the returns' in None"):
        long_short_backtest(preds.assign(date=preds["date"].dt.tz_localize("UTC")), rets)
    assert long_short_backtest(preds, rets).summary["n_rebalances"] == 3
    as_objects = preds.assign(date=pd.Series(list(preds["date"]), dtype=object))
    assert long_short_backtest(as_objects, rets).summary["n_rebalances"] == 3  # Timestamps


def test_empty_and_untradable_inputs_give_nan_without_raising():
    returns = _random_returns(10, NAMES, seed=7)
    preds = _long(returns, "prediction")
    rets = _long(returns, "ret_1d")
    _assert_empty(long_short_backtest(preds.iloc[:0], rets))
    _assert_empty(long_short_backtest(preds, rets.iloc[:0]))
    _assert_empty(long_short_backtest(preds.assign(prediction=np.nan), rets))
    # Signals on the last trading day can never be traded and earn nothing.
    _assert_empty(long_short_backtest(preds[preds["date"] == returns.index[-1]], rets))


def test_single_day_backtest_has_nan_ratios():
    returns = _random_returns(10, NAMES, seed=8)
    preds = _long(returns.iloc[[7]], "prediction")  # traded at close 8, earns day 9 only
    result = long_short_backtest(preds, _long(returns, "ret_1d"))
    assert result.summary["n_days"] == 1 and result.summary["n_rebalances"] == 1
    assert math.isnan(result.summary["sharpe"]) and math.isnan(result.summary["annual_volatility"])
    # Only the initial build: no rebalancing trade to average.
    assert result.summary["initial_turnover"] == pytest.approx(1.0)
    assert math.isnan(result.summary["turnover"])


def test_wide_returns_give_the_same_backtest_as_long_returns():
    """Callers backtesting many configurations pass the returns pivoted once."""
    result, returns = _three_rebalance_case()
    rng = np.random.default_rng(3)
    preds = pd.DataFrame(rng.standard_normal((6, 10)), index=returns.index[:6], columns=NAMES)
    preds.iloc[0] = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    preds.iloc[2] = [10, 8, 9, 7, 6, 5, 4, 3, 2, 1]
    preds.iloc[4] = [1, 8, 2, 7, 6, 5, 4, 3, 10, 9]
    wide = long_short_backtest(_long(preds, "prediction"),
                               returns.rename_axis(index="date", columns="ticker"),
                               rebalance_days=2, n_quantiles=5, cost_bps=10.0, execution_delay=1)
    pd.testing.assert_frame_equal(wide.daily, result.daily, check_freq=False)
    assert wide.summary == result.summary


def test_cagr_compounds_where_annual_return_averages():
    """+50 % then -50 % every other day: the arithmetic annual return is 0, the curve shrinks."""
    from bma_quant.core.evaluation.backtest import compounded_annual_return

    returns = np.array([0.5, -0.5] * 126)
    assert returns.mean() * 252 == 0.0
    assert compounded_annual_return(returns) == pytest.approx(0.75 ** 126 - 1)
    assert compounded_annual_return(np.array([0.01] * 252)) == pytest.approx(1.01 ** 252 - 1)
    assert compounded_annual_return(np.array([-1.0, 0.1])) == -1.0
    assert math.isnan(compounded_annual_return(np.array([])))


# --- untradable closes: frozen positions ----------------------------------------------------


def _suspension_case(tradable_a: list[bool], flip: bool = True):
    """Ten names, signals at 0, 3, 6 (traded at closes 1, 4, 7). The first book is long A, B and
    short I, J; the second signal ranks them the other way round (if ``flip``). Every return is 0
    but A's +50 % on day 6."""
    dates = pd.bdate_range("2024-01-01", periods=10)
    returns = pd.DataFrame(0.0, index=dates, columns=NAMES)
    returns.loc[dates[6], "A"] = 0.5
    first = list(range(10, 0, -1))
    second = first[::-1] if flip else first
    preds = pd.DataFrame([first, first, first, second, second, second, first, first, first,
                          first], index=dates, columns=NAMES)
    tradable = pd.DataFrame(True, index=dates, columns=NAMES)
    tradable["A"] = tradable_a
    return _long(preds, "prediction"), returns, tradable


def _run(preds, returns, tradable=None, **kwargs):
    return long_short_backtest(preds, _long(returns, "ret_1d"), rebalance_days=3,
                               n_quantiles=5, cost_bps=0.0, execution_delay=1,
                               tradable=tradable, **kwargs)


def test_a_suspended_position_is_frozen_through_the_trade_and_earns_the_reopening():
    """A is suspended on the second trade's close (days 4-5) and trades again on day 6. It cannot
    be sold or shorted: it stays long 0.5 and earns its +50 % at reopening. The long leg's capital
    left for the new longs I, J is 0.5 (0.25 each); B is shorted in full (-0.5).
    Turnover: A 0, B |-.5 - .5| = 1, I and J |.25 + .5| = .75 each -> .5 x 2.5 = 1.25."""
    preds, returns, tradable = _suspension_case([True] * 4 + [False, False] + [True] * 4)
    frozen = _run(preds, returns, tradable)
    free = _run(preds, returns)
    day6 = returns.index[6]
    assert frozen.daily.loc[day6, "long_short_gross"] == pytest.approx(0.5 * 0.5)
    assert free.daily.loc[day6, "long_short_gross"] == pytest.approx(-0.5 * 0.5)  # sold, shorted
    assert frozen.daily.loc[returns.index[5], "turnover"] == pytest.approx(1.25)
    assert free.daily.loc[returns.index[5], "turnover"] == pytest.approx(2.0)
    # reported on the book's first held day: A's 0.5 kept frozen, nothing closed
    assert frozen.daily.loc[returns.index[5], "frozen_weight"] == pytest.approx(0.5)
    assert frozen.daily["frozen_weight"].sum() == pytest.approx(0.5)
    assert (frozen.daily["closed_untraded_weight"] == 0).all()
    assert (free.daily["frozen_weight"] == 0).all()
    # long-only: A frozen at .5, I and J bought with the other half
    assert frozen.daily.loc[day6, "long_only"] == pytest.approx(0.25)
    assert free.daily.loc[day6, "long_only"] == pytest.approx(0.0)


def test_a_name_without_a_trade_for_longer_than_the_bound_is_closed_and_not_bought():
    """A stops trading after day 1 (a delisting, as far as anyone can tell): at the second trade
    (close 4) it has been without a trade for 3 dates. With max_frozen_days 2 the position is
    closed at its last price and not bought again, though the second book ranks A top: the long
    leg holds B only (0.5, the rest cash). With 5 it is still frozen: A kept, B bought with what is
    left (0.5 x 0.5 / 1)."""
    preds, returns, tradable = _suspension_case([True] * 2 + [False] * 8, flip=False)
    returns.loc[returns.index[6], ["A", "B"]] = [0.0, 0.2]
    day5, day6 = returns.index[5], returns.index[6]
    closed = _run(preds, returns, tradable, max_frozen_days=2)
    frozen = _run(preds, returns, tradable, max_frozen_days=5)
    free = _run(preds, returns)
    assert closed.daily.loc[day5, "turnover"] == pytest.approx(0.25)  # A sold
    assert closed.daily.loc[day5, "closed_untraded_weight"] == pytest.approx(0.5)
    assert frozen.daily.loc[day5, "frozen_weight"] == pytest.approx(0.5)
    assert closed.daily.loc[day6, "long_only"] == pytest.approx(0.5 * 0.2)
    assert frozen.daily.loc[day5, "turnover"] == pytest.approx(0.0)
    assert frozen.daily.loc[day6, "long_only"] == pytest.approx(0.5 * 0.2)
    assert free.daily.loc[day5, "turnover"] == pytest.approx(0.0)



def test_a_frozen_short_keeps_its_capital_out_of_the_new_short_leg():
    """I was shorted (-0.5) and cannot be traded at the second trade, whose book is long J, I and
    short A, B. I stays short -0.5 and loses its +50 % at reopening; the new short leg has 0.5 of
    its 1 left (A, B -0.25 each); J is bought in full (0.5), I not at all.
    Day 6: I -0.5 x 0.5, B -0.25 x 0.2 -> -0.30."""
    preds, returns, tradable = _suspension_case([True] * 10)
    tradable["I"] = [True] * 4 + [False] * 2 + [True] * 4
    returns.loc[returns.index[6], ["A", "B", "I"]] = [0.0, 0.2, 0.5]
    held = _run(preds, returns, tradable)
    assert held.daily.loc[returns.index[6], "long_short_gross"] == pytest.approx(-0.30)
    # turnover: A .5 -> -.25 (.75), B .5 -> -.25 (.75), J -.5 -> .5 (1), I 0: .5 x 2.5
    assert held.daily.loc[returns.index[5], "turnover"] == pytest.approx(1.25)


def test_every_close_tradable_gives_the_backtest_without_tradable():
    returns = _random_returns(60, NAMES, seed=9)
    preds = _long(_random_returns(60, NAMES, seed=10), "prediction")
    plain = long_short_backtest(preds, _long(returns, "ret_1d"), rebalance_days=5)
    everywhere = long_short_backtest(preds, _long(returns, "ret_1d"), rebalance_days=5,
                                     tradable=pd.DataFrame(True, returns.index, NAMES))
    pd.testing.assert_frame_equal(plain.daily, everywhere.daily)
    assert plain.summary == everywhere.summary


def test_a_name_in_no_leg_that_cannot_be_traded_changes_only_the_universe_book():
    """E sits in the middle quantile on every date, so only the universe book would buy it; with
    E never tradable the long-short and long-only books are unchanged and the universe differs."""
    returns = _random_returns(40, NAMES, seed=14)
    preds = _long(pd.DataFrame([list(range(10, 0, -1))] * 40, returns.index, NAMES), "prediction")
    tradable = pd.DataFrame(True, returns.index, NAMES)
    tradable["E"] = False
    plain = long_short_backtest(preds, returns, rebalance_days=5)
    without_e = long_short_backtest(preds, returns, rebalance_days=5, tradable=tradable)
    for book in ("long_short", "long_only", "turnover"):
        pd.testing.assert_series_equal(plain.daily[book], without_e.daily[book])
    assert not np.allclose(plain.daily["universe"], without_e.daily["universe"])


def test_tradable_column_of_long_returns_equals_the_wide_argument():
    returns = _random_returns(60, NAMES, seed=11)
    preds = _long(_random_returns(60, NAMES, seed=12), "prediction")
    rng = np.random.default_rng(13)
    tradable = pd.DataFrame(rng.random(returns.shape) > 0.2, returns.index, NAMES)
    long = _long(returns, "ret_1d").merge(_long(tradable, "tradable"), on=["date", "ticker"])
    from_column = long_short_backtest(preds, long, rebalance_days=5, max_frozen_days=3)
    from_argument = long_short_backtest(preds, returns, rebalance_days=5, tradable=tradable,
                                        max_frozen_days=3)
    pd.testing.assert_frame_equal(from_column.daily, from_argument.daily, check_freq=False)
    plain = long_short_backtest(preds, returns, rebalance_days=5)
    assert not np.allclose(plain.daily["turnover"], from_column.daily["turnover"])
    # no leg is ever larger than its target: frozen capital displaces new positions
    assert (from_column.daily["turnover"] <= 2.0 + 1e-12).all()


def test_freezing_reads_no_later_date():
    """Two tradable matrices that differ from day 30 on give the same books before day 30."""
    returns = _random_returns(60, NAMES, seed=15)
    preds = _long(_random_returns(60, NAMES, seed=16), "prediction")
    tradable = pd.DataFrame(np.random.default_rng(17).random(returns.shape) > 0.3,
                            returns.index, NAMES)
    other = tradable.copy()
    other.iloc[30:] = ~other.iloc[30:]
    for bound in (None, 4):
        one = long_short_backtest(preds, returns, rebalance_days=5, tradable=tradable,
                                  max_frozen_days=bound).daily
        two = long_short_backtest(preds, returns, rebalance_days=5, tradable=other,
                                  max_frozen_days=bound).daily
        pd.testing.assert_frame_equal(one.iloc[:28], two.iloc[:28])
        assert not one.equals(two)


def test_frozen_cells_count_the_dates_since_the_last_trade():
    tradable = np.array([[False, True], [True, False], [False, False], [False, False],
                         [True, False]])
    np.testing.assert_array_equal(frozen_cells(tradable), [[False, False], [False, True],
                                                           [True, True], [True, True],
                                                           [False, True]])
    np.testing.assert_array_equal(frozen_cells(tradable, 2), [[False, False], [False, True],
                                                              [True, True], [True, False],
                                                              [False, False]])


def test_holding_returns_span_a_gap_up_to_the_bound():
    """A: no trade on dates 3-5 (a forward-filled row, then no rows), back 30 % above its last
    traded close; B: a gap of 5 dates, longer than the bound of 3: no return across it. Closes
    that are no trade earn nothing; without a tradable column, ret_1d is returned as it is."""
    dates = pd.bdate_range("2024-01-01", periods=12)
    panel = pd.DataFrame({
        "date": list(dates) * 2, "ticker": ["A"] * 12 + ["B"] * 12,
        "close": [10, 11, 10, 10, np.nan, np.nan, 13, 13, 13, 13, 13, 13.0]
        + [5, 5, 5, 5, 5, np.nan, np.nan, np.nan, np.nan, np.nan, 6, 6.0],
        "tradable": [True] * 3 + [False] * 3 + [True] * 6
        + [True] * 5 + [False] * 5 + [True] * 2,
    })
    panel["ret_1d"] = panel.groupby("ticker")["close"].pct_change(fill_method=None)
    panel = panel[panel["close"].notna() | (panel["date"] == dates[4])]  # absent rows
    held = holding_returns(panel, 3).set_index(["ticker", "date"])["ret_1d"]
    assert held.loc[("A", dates[6])] == pytest.approx(0.3)
    assert np.isnan(held.loc[("A", dates[3])]) and np.isnan(held.loc[("A", dates[0])])
    assert held.loc[("A", dates[1])] == pytest.approx(0.1)
    assert np.isnan(held.loc[("B", dates[10])])  # 5 dates without a trade > 3
    assert holding_returns(panel, 5).set_index(["ticker", "date"])["ret_1d"].loc[
        ("B", dates[10])] == pytest.approx(0.2)
    plain = holding_returns(panel.drop(columns="tradable"), 3)
    pd.testing.assert_series_equal(plain["ret_1d"], panel["ret_1d"])


def test_a_gap_of_exactly_the_bound_keeps_the_reopening_move():
    """No trade on dates 3, 4 and 5 (rows present): at the reopening the last trade is 3 dates
    back, within a bound of 3 (the position was frozen, `frozen_cells`), past a bound of 2."""
    dates = pd.bdate_range("2024-01-01", periods=8)
    tradable = [True] * 3 + [False] * 3 + [True] * 2
    panel = pd.DataFrame({"date": dates, "ticker": "A",
                          "close": [10, 11, 10, 10, 10, 10, 13, 13.0], "tradable": tradable})
    panel["ret_1d"] = panel["close"].pct_change()
    assert frozen_cells(np.array(tradable)[:, None], 3)[5, 0]
    assert holding_returns(panel, 3)["ret_1d"].iloc[6] == pytest.approx(0.3)
    assert np.isnan(holding_returns(panel, 2)["ret_1d"].iloc[6])


def test_a_position_past_the_bound_earns_nothing_more_until_the_next_trade_sells_it():
    """A (long, top of every book) has no trade on dates 8-15; trades at closes 1, 11, 21. With
    max_frozen_days 5 it is frozen at close 11 (4 dates without a trade) but passes the bound on
    date 13: taken as delisted at its last price, it earns neither the +50 % of date 16 nor the
    +10 % of date 17. With 10 it stays frozen and earns both."""
    dates = pd.bdate_range("2024-01-01", periods=30)
    returns = pd.DataFrame(0.0, index=dates, columns=NAMES)
    returns.loc[dates[16], "A"], returns.loc[dates[17], "A"] = 0.5, 0.1
    preds = _long(pd.DataFrame([list(range(10, 0, -1))] * 30, dates, NAMES), "prediction")
    tradable = pd.DataFrame(True, index=dates, columns=NAMES)
    tradable.loc[dates[8]:dates[15], "A"] = False
    run = {bound: long_short_backtest(preds, returns, rebalance_days=10, cost_bps=0.0,
                                      tradable=tradable, max_frozen_days=bound).daily
           for bound in (5, 10)}
    assert run[5].loc[dates[16]:dates[17], "long_only"].abs().max() == 0.0
    assert run[10].loc[dates[16], "long_only"] == pytest.approx(0.5 * 0.5)
    assert run[10].loc[dates[17], "long_only"] > 0


def test_a_shared_tradability_gives_the_backtest_of_the_frame():
    returns = _random_returns(60, NAMES, seed=18)
    preds = _long(_random_returns(60, NAMES, seed=19), "prediction")
    tradable = pd.DataFrame(np.random.default_rng(20).random(returns.shape) > 0.25,
                            returns.index, NAMES)
    shared = Tradability.from_frame(tradable, 3)
    one = long_short_backtest(preds, returns, rebalance_days=5, tradable=tradable,
                              max_frozen_days=3)
    two = long_short_backtest(preds, returns, rebalance_days=5, tradable=shared,
                              max_frozen_days=3)
    pd.testing.assert_frame_equal(one.daily, two.daily)
    # built on fewer names and more dates: realigned, not misread
    wider = Tradability.from_frame(tradable.drop(columns="J").reindex(
        pd.bdate_range(returns.index[0], periods=70), fill_value=True), 3)
    three = long_short_backtest(preds, returns, rebalance_days=5, tradable=wider,
                                max_frozen_days=3)
    expected = tradable.copy()
    expected["J"] = False
    four = long_short_backtest(preds, returns, rebalance_days=5, tradable=expected,
                               max_frozen_days=3)
    pd.testing.assert_frame_equal(three.daily, four.daily)
    with pytest.raises(ValueError, match="max_frozen_days"):
        long_short_backtest(preds, returns, tradable=shared, max_frozen_days=4)


def test_holding_returns_refuse_duplicates_and_read_a_missing_flag_as_no_trade():
    dates = pd.bdate_range("2024-01-01", periods=4)
    panel = pd.DataFrame({"date": list(dates) * 2, "ticker": [1] * 4 + ["1"] * 4,
                          "close": [10, 11, 12, 13, 100, 100, 90, 99.0],
                          "tradable": [True, True, np.nan, True] + [True] * 4})
    panel["ret_1d"] = np.nan
    held = holding_returns(panel, 5)
    assert held["ret_1d"].iloc[1] == pytest.approx(0.1)
    assert np.isnan(held["ret_1d"].iloc[2]) and not held["tradable"].iloc[2]
    assert held["ret_1d"].iloc[3] == pytest.approx(13 / 11 - 1)
    assert held["ret_1d"].iloc[6] == pytest.approx(-0.1)  # int 1 and "1" stay two names
    with pytest.raises(ValueError, match="duplicate"):
        holding_returns(pd.concat([panel, panel.iloc[:1]]), 5)
