"""Closes locked at a daily price limit (core.evaluation.limit_locks) and what the backtest does
at them: a locked buy is not made, a locked sale not done."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.price_grid import price_step, price_steps
from bma_quant.core.evaluation.backtest import holding_returns, long_short_backtest
from bma_quant.core.evaluation.limit_locks import (
    LIMIT_LOCK,
    LimitLocks,
    limit_locks,
    may_have_one_price_bars,
    with_locks,
)

NAMES = list("ABCDEFGHIJ")


def _bars():
    """Five dates of two names. A: a one-price bar +10 % (date 1), a one-price bar +1 % (2), a
    range bar -10 % (3), a one-price bar -10 % (4). B: no close on date 1, then a one-price bar
    +10 % against its date-0 close (2), an open away from the close (3)."""
    dates = pd.bdate_range("2024-01-01", periods=5)
    close = pd.DataFrame({"A": [10.0, 11.0, 11.11, 9.999, 8.9991],
                          "B": [20.0, np.nan, 22.0, 24.2, 24.2]}, index=dates)
    high = close.copy()
    low = close.copy()
    high.loc[dates[3], "A"], low.loc[dates[3], "A"] = 10.5, 9.9
    open_ = close.copy()
    open_.loc[dates[3], "B"] = 22.5
    open_.loc[dates[4], "B"] = np.nan  # a missing open says nothing
    return close, high, low, open_


def test_one_price_bars_past_the_move_are_locked_in_its_direction():
    close, high, low, open_ = _bars()
    locks = limit_locks(close, high, low, open_, min_move=0.045)
    assert locks["A"].tolist() == [0, 1, 0, 0, -1]
    # B: the previous traded close is date 0's; an open away from the close is no lock; date 4
    # is one price but 0 % from date 3
    assert locks["B"].tolist() == [0, 0, 1, 0, 0]
    assert locks.dtypes.eq(np.int8).all()


def test_the_pre_check_finds_every_bar_the_lock_test_would_call_one_price():
    close, high, low, open_ = _bars()
    assert may_have_one_price_bars(high.to_numpy(), low.to_numpy(), close.to_numpy())
    # high and low each just within the lock test's rounding of the close, on opposite sides
    close = np.array([100.0, 3.37, 12345.6])
    high, low = close * (1 + 0.99e-6), close * (1 - 0.99e-6)
    locks = limit_locks(*(pd.DataFrame({"A": v}) for v in (close, high, low)))
    assert locks["A"].tolist() == [0, -1, 1]  # one-price bars, moved: locked
    assert may_have_one_price_bars(high, low, close)
    assert not may_have_one_price_bars(close * 1.01, close * 0.99, close)
    assert not may_have_one_price_bars(np.array([np.nan]), np.array([1.0]), np.array([1.0]))


def test_a_close_that_is_no_trade_is_neither_locked_nor_the_previous_close():
    close, high, low, open_ = _bars()
    traded = pd.DataFrame(True, close.index, close.columns)
    traded.loc[close.index[1], "A"] = False  # date 1's +10 % was a copied close
    locks = limit_locks(close, high, low, open_, traded=traded, min_move=0.045)
    # date 1 not locked; date 2 is +11.1 % from date 0 in one price: locked
    assert locks["A"].tolist() == [0, 0, 1, 0, -1]


def test_flags_are_causal():
    close, high, low, open_ = _bars()
    full = limit_locks(close, high, low, open_)
    for cut in range(1, len(close) + 1):
        part = limit_locks(close.iloc[:cut], high.iloc[:cut], low.iloc[:cut], open_.iloc[:cut])
        pd.testing.assert_frame_equal(part, full.iloc[:cut])


def test_min_move_must_be_positive():
    close, high, low, open_ = _bars()
    with pytest.raises(ValueError, match="min_move"):
        limit_locks(close, high, low, open_, min_move=0.0)


def test_with_locks_keeps_blocked_weights_and_scales_the_leg():
    """Long leg A .5, B .5 held; the new targets are long C, D .5 each. B is locked limit-down
    (cannot be sold): it keeps .5, so C and D are scaled to .25 each (the leg is no larger than
    its target). With C locked limit-up as well (cannot be bought) C stays at 0 and D keeps its
    .5: the leg is B .5 + D .5. Only the long-short book (one column) here."""
    drifted = np.array([[0.5], [0.5], [0.0], [0.0]])
    targets = np.array([[0.0], [0.0], [0.5], [0.5]])
    out, blocked = with_locks(targets, drifted, np.array([0, -1, 0, 0], dtype=np.int8))
    assert out[:, 0].tolist() == pytest.approx([0.0, 0.5, 0.25, 0.25])
    assert blocked[:, 0].tolist() == [False, True, False, False]
    out, blocked = with_locks(targets, drifted, np.array([0, -1, 1, 0], dtype=np.int8))
    assert out[:, 0].tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5])
    assert blocked[:, 0].tolist() == [False, True, True, False]
    # a lock the trade does not cross (A locked up, but A is sold) blocks nothing
    same, none = with_locks(targets, drifted, np.array([1, 0, -1, 0], dtype=np.int8))
    assert not none.any() and np.array_equal(same, targets)


def _case():
    """Ten names, signals at 0, 3, 6 (traded at closes 1, 4, 7). The first book is long A, B and
    short I, J; the second ranks them the other way round. Every return is 0 except on day 5."""
    dates = pd.bdate_range("2024-01-01", periods=10)
    returns = pd.DataFrame(0.0, index=dates, columns=NAMES)
    first = list(range(10, 0, -1))
    preds = pd.DataFrame([first] * 3 + [first[::-1]] * 3 + [first] * 4, index=dates,
                         columns=NAMES)
    return preds.rename_axis(index="date", columns="ticker").stack().rename(
        "prediction").reset_index(), returns


def _long(wide, name):
    return wide.rename_axis(index="date", columns="ticker").stack().rename(name).reset_index()


def _run(preds, returns, locks=None):
    frame = _long(returns, "ret_1d")
    if locks is not None:
        frame = frame.merge(_long(locks, LIMIT_LOCK), on=["date", "ticker"])
    return long_short_backtest(preds, frame, rebalance_days=3, n_quantiles=5, cost_bps=0.0,
                               execution_delay=1)


def test_a_name_locked_limit_up_at_the_trade_is_not_bought_and_a_locked_down_one_not_sold():
    """At the second trade (close 4) the book flips from long A, B / short I, J to long I, J /
    short A, B. I is locked limit-up (no sellers): the short in I cannot be covered, and I is
    not bought. A is locked limit-down (no buyers): the long in A cannot be sold, and A is not
    shorted. The kept .5 in each leg leaves room for .5 of new positions: J long .5, B short .5.
    Day 5: A -10 %, I +10 %, J +2 %. Locked: .5 x -.1 (A) - .5 x .1 (I) + .5 x .02 (J) = -.09;
    without locks: -.5 x -.1 (A) + .5 x .1 (I) + .5 x .02 (J) = .11."""
    preds, returns = _case()
    day4, day5 = returns.index[4], returns.index[5]
    returns.loc[day5, ["A", "I", "J"]] = [-0.1, 0.1, 0.02]
    locks = pd.DataFrame(0, returns.index, NAMES, dtype=np.int8)
    locks.loc[day4, ["I", "A"]] = [1, -1]
    locked, free = _run(preds, returns, locks), _run(preds, returns)
    assert free.daily.loc[day5, "long_short_gross"] == pytest.approx(0.11)
    assert locked.daily.loc[day5, "long_short_gross"] == pytest.approx(-0.09)
    # turnover of the trade at close 4 (on the book's first day): A 0, B .5 -> -.5, I 0,
    # J -.5 -> .5: .5 x 2
    assert locked.daily.loc[day5, "turnover"] == pytest.approx(1.0)
    assert free.daily.loc[day5, "turnover"] == pytest.approx(2.0)
    # the trades the locks stopped: A .5 -> -.5 and I -.5 -> .5, reported apart from frozen
    # positions (closes that are no trade)
    assert locked.daily.loc[day5, "locked_weight"] == pytest.approx(2.0)
    assert (locked.daily["frozen_weight"] == 0).all()
    assert (free.daily["locked_weight"] == 0).all()


def test_no_lock_gives_the_backtest_without_locks():
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2024-01-01", periods=60)
    returns = pd.DataFrame(rng.normal(0, 0.02, (60, 10)), dates, NAMES)
    preds = _long(pd.DataFrame(rng.normal(size=(60, 10)), dates, NAMES), "prediction")
    zero = pd.DataFrame(0, dates, NAMES, dtype=np.int8)
    plain = long_short_backtest(preds, _long(returns, "ret_1d"), rebalance_days=5)
    with_zero = long_short_backtest(
        preds, _long(returns, "ret_1d").merge(_long(zero, LIMIT_LOCK), on=["date", "ticker"]),
        rebalance_days=5)
    pd.testing.assert_frame_equal(plain.daily, with_zero.daily)
    assert plain.summary == with_zero.summary


def test_a_frozen_position_is_not_scaled_by_a_lock_elsewhere():
    """F is frozen (its close is no trade) at .3, L locked limit-down at .2 (cannot be sold):
    both keep their weights and the new longs A, B share the .5 left of the leg."""
    drifted = np.array([[0.3], [0.2], [0.0], [0.0]])
    after_frozen = np.array([[0.3], [0.0], [0.35], [0.35]])  # what _with_frozen gives
    out, blocked = with_locks(after_frozen, drifted, np.array([0, -1, 0, 0], dtype=np.int8),
                              fixed=np.array([True, False, False, False]))
    assert out[:, 0].tolist() == pytest.approx([0.3, 0.2, 0.25, 0.25])
    assert blocked[:, 0].tolist() == [False, True, False, False]


def test_the_scaling_never_moves_a_name_across_its_own_lock():
    """X .4 -> .5 is a buy, allowed at limit-down; Y .6 -> 0 is a sale, blocked. Scaling the leg
    for Y's .6 would cut X to .2, a sale at limit-down: X is kept at .4 and Z gets nothing.
    The mirror case on the short side: a short cut back would be a cover at limit-up."""
    drifted = np.array([[0.4], [0.6], [0.0]])
    targets = np.array([[0.5], [0.0], [0.5]])
    out, blocked = with_locks(targets, drifted, np.array([-1, -1, 0], dtype=np.int8))
    assert out[:, 0].tolist() == pytest.approx([0.4, 0.6, 0.0])
    assert blocked[:, 0].tolist() == [True, True, False]
    out, _ = with_locks(-targets, -drifted, np.array([1, 1, 0], dtype=np.int8))
    assert out[:, 0].tolist() == pytest.approx([-0.4, -0.6, 0.0])


def test_a_suspended_position_stays_frozen_when_another_name_is_locked():
    """Long A, B / short I, J, then long C, D / short I, J. At trade close 4 A's close is no trade
    (frozen at .5) and B is locked limit-down (its .5 cannot be sold): the long leg is full, C
    and D are not bought, nothing trades, and A earns its +10 % on day 5."""
    dates = pd.bdate_range("2024-01-01", periods=10)
    first = list(range(10, 0, -1))
    second = [6, 5, 10, 9, 8, 7, 4, 3, 2, 1]
    preds = _long(pd.DataFrame([first] * 3 + [second] * 7, dates, NAMES), "prediction")
    returns = pd.DataFrame(0.0, dates, NAMES)
    returns.loc[dates[5], "A"] = 0.10
    tradable = pd.DataFrame(True, dates, NAMES)
    tradable.loc[dates[4], "A"] = False
    locks = pd.DataFrame(0, dates, NAMES, dtype=np.int8)
    locks.loc[dates[4], "B"] = -1
    frame = _long(returns, "ret_1d").merge(_long(tradable, "tradable"), on=["date", "ticker"])
    result = long_short_backtest(
        preds, frame.merge(_long(locks, LIMIT_LOCK), on=["date", "ticker"]), rebalance_days=3,
        n_quantiles=5, cost_bps=0.0, execution_delay=1, max_frozen_days=21)
    day5 = result.daily.loc[dates[5]]
    assert day5["long_short_gross"] == pytest.approx(0.05)
    assert day5["turnover"] == pytest.approx(0.0)
    assert day5["frozen_weight"] == pytest.approx(0.5)  # A
    assert day5["locked_weight"] == pytest.approx(0.5)  # B's sale


def test_a_name_taken_as_delisted_is_sold_even_at_a_limit_down_close():
    """A has no trade on dates 2-3, past max_frozen_days 0: taken as delisted, it is sold at its
    last price at the next trade (close 4), though that close is locked limit-down; the backtest
    is the one without the lock."""
    dates = pd.bdate_range("2024-01-01", periods=10)
    first = list(range(10, 0, -1))
    second = [6, 5, 10, 9, 8, 7, 4, 3, 2, 1]
    preds = _long(pd.DataFrame([first] * 3 + [second] * 7, dates, NAMES), "prediction")
    close = pd.DataFrame(10.0, dates, NAMES)
    close.loc[dates[4]:, "A"] = [9.0, 8.1, 8.1, 8.1, 8.1, 8.1]
    tradable = pd.DataFrame(True, dates, NAMES)
    tradable.loc[dates[2]:dates[3], "A"] = False
    panel = _long(close, "close").merge(_long(tradable, "tradable"), on=["date", "ticker"])
    locks = pd.DataFrame(0, dates, NAMES, dtype=np.int8)
    locks.loc[dates[4]:dates[5], "A"] = -1
    panel = panel.merge(_long(locks, LIMIT_LOCK), on=["date", "ticker"]).assign(ret_1d=0.0)
    held = holding_returns(panel, 0)
    kwargs = dict(rebalance_days=3, n_quantiles=5, cost_bps=0.0, execution_delay=1,
                  max_frozen_days=0)
    locked = long_short_backtest(preds, held, **kwargs).daily
    plain = long_short_backtest(preds, held.drop(columns=LIMIT_LOCK), **kwargs).daily
    pd.testing.assert_frame_equal(locked, plain)
    assert locked.loc[dates[5], "turnover"] == pytest.approx(1.0)  # A sold, C bought


def test_a_relisted_codes_first_close_is_not_measured_against_the_old_company():
    """The code's old company closed at 20; the new one's first bar is 5.0 at one price: no
    lock (-75 % against another company's close). Its next one-price bar +10 % is one."""
    dates = pd.bdate_range("2024-01-01", periods=4)
    close = pd.DataFrame({"A": [20.0, np.nan, 5.0, 5.5]}, index=dates)
    listing = pd.DataFrame({"A": [pd.NaT, pd.NaT, dates[2], dates[2]]}, index=dates)
    locks = limit_locks(close, close, close, listing=listing)
    assert locks["A"].tolist() == [0, 0, 0, 1]
    assert limit_locks(close, close, close)["A"].tolist() == [0, 0, -1, 1]  # without: -75 %


def test_an_exact_limit_move_is_locked_and_a_close_at_the_high_only_when_asked():
    """+4.5 % exactly reaches min_move 0.045 despite float rounding, as +-5 % reach 0.05. A day that traded lower and
    closed at its high +10 % is locked only with close_at_extreme."""
    dates = pd.bdate_range("2024-01-01", periods=3)
    close = pd.DataFrame({"A": [100.0, 104.5, 114.95]}, index=dates)
    high = close.copy()
    low = close.copy()
    low.loc[dates[2], "A"] = 105.0
    assert limit_locks(close, high, low, min_move=0.045)["A"].tolist() == [0, 1, 0]
    assert limit_locks(close, high, low, min_move=0.045,
                       close_at_extreme=True)["A"].tolist() == [0, 1, 1]
    exact = pd.DataFrame({"A": [5.0, 5.25, 4.9875]}, index=dates)  # +5 %, -5 %: no grid
    assert limit_locks(exact, exact, exact)["A"].tolist() == [0, 1, -1]


def test_the_price_grid_is_read_from_the_closes():
    assert price_step(np.array([0.69, 0.66, 12.34, 100.0])) == 0.01
    assert price_step(np.array([1520.0, 1498.0, 2301.0])) == 1.0  # yen
    assert price_step(np.random.default_rng(0).lognormal(3, 1, 500)) == 0.0  # computed prices
    assert price_step(np.random.default_rng(1).uniform(4e5, 3e6, 500)) == 0.0  # large, too
    assert price_step(np.array([np.nan, -1.0])) == 0.0
    # one grid per name: a penny stock on 0.0001 beside names on 0.01 and a computed series
    rng = np.random.default_rng(2)
    closes = np.column_stack([np.round(rng.uniform(0.1, 0.9, 300), 4),
                              np.round(rng.uniform(5, 50, 300), 2), rng.uniform(5, 50, 300)])
    assert price_steps(closes)[-1].tolist() == [0.0001, 0.01, 0.0]


def test_the_grid_is_the_one_a_name_traded_on_at_each_date():
    """A 3:1 split repair puts the earlier closes at thirds of ticks: no grid there (no
    allowance), the tick once the trailing window holds the closes since the split. A 2:1
    split's past is on half ticks, the grid a limit had there in adjusted prices. A name that
    stopped early keeps its grid up to its last close; missing dates are skipped; too few
    closes give no grid."""
    rng = np.random.default_rng(3)
    ticks = np.round(rng.uniform(5, 50, 1300), 2)
    rescaled = np.concatenate([ticks[:1000] / 3.0, ticks[1000:]])  # 300 closes since the split
    halved = np.concatenate([ticks[:1000] / 2.0, ticks[1000:]])
    early = np.concatenate([ticks[:400], np.full(900, np.nan)])  # delisted after 400 dates
    gappy = ticks.copy()
    gappy[-600::2] = np.nan  # every other date missing at the end
    steps = price_steps(np.column_stack([rescaled, halved, early, gappy]))
    assert (steps[20:1000, 0] == 0.0).all() and steps[-1, 0] == 0.01
    assert (steps[1000:1200, 0] == 0.0).all()  # the window still holds thirds
    assert (steps[20:1000, 1] == 0.005).all() and steps[-1, 1] == 0.01
    assert (steps[20:400, 2] == 0.01).all() and (steps[:19, 2] == 0.0).all()  # 19 closes: none
    assert (steps[20:, 3] == 0.01).all()
    assert price_step(rescaled[:1000]) == 0.0  # the rescaled past alone is on no grid


def test_a_rescaled_past_on_the_grid_by_chance_gets_no_allowance():
    """0.87 -> 0.90 (+3.45 %) is short of a 5 % limit (0.91). After a 3:1 split repair it is
    0.29 -> 0.30 in adjusted prices, two closes on the 0.01 grid by chance: the name's trailing
    closes there are thirds of ticks, so no half-step allowance and no lock."""
    rng = np.random.default_rng(4)
    raw = np.round(rng.uniform(0.5, 1.5, 600), 2)
    raw[298:300] = [0.87, 0.90]
    adjusted = np.concatenate([raw[:500] / 3.0, raw[500:]])
    dates = pd.bdate_range("2020-01-01", periods=600)
    close = pd.DataFrame({"X": adjusted}, index=dates)
    steps = price_steps(close.to_numpy())
    assert steps[299, 0] == 0.0
    locks = limit_locks(close, close, close, step=steps)  # every bar one price
    assert locks["X"].iloc[299] == 0
    # on today's tick the 5 % limit is one tick (0.0145 rounds to 0.01), and a one-price bar one
    # tick away is what a thin name's quiet day looks like in any market: no lock either
    assert limit_locks(close, close, close, step=0.01)["X"].iloc[299] == 0
    assert limit_locks(close * 10, close * 10, close * 10, step=0.01)["X"].iloc[299] == 0


def test_a_limit_rounded_to_the_price_grid_counts_and_nothing_short_of_it():
    """A 5 % limit down from 0.69 is 0.66 on a 0.01 grid (-4.35 %): locked with the grid's step,
    not without it. 0.30 -> 0.31 (+3.3 %) is short of the 5 % limit (0.32): no lock. A one-price
    day without a move is no lock, and nor is a move of one step where that step is 10 % (0.10
    -> 0.11): a name a few ticks above zero moves so on a quiet day, limits or not (a penny
    panel on a 0.001 grid had trades stopped at 20 of 37 rebalances in a market without
    limits)."""
    dates = pd.bdate_range("2024-01-01", periods=4)
    close = pd.DataFrame({"ST": [0.69, 0.66, 0.66, 0.64], "P": [0.10, 0.10, 0.11, 0.11],
                          "Q": [0.30, 0.31, 0.31, 0.33]}, index=dates)
    assert limit_locks(close, close, close)["ST"].tolist() == [0, 0, 0, 0]
    stepped = limit_locks(close, close, close, step=0.01)
    assert stepped["ST"].tolist() == [0, -1, 0, 0]  # 0.64 is 3 %, not the limit 0.63
    assert stepped["P"].tolist() == [0, 0, 0, 0]
    assert limit_locks(close * 2, close * 2, close * 2, step=0.01)["P"].tolist() == [0, 0, 1, 0]
    assert stepped["Q"].tolist() == [0, 0, 0, 1]  # 0.31 -> 0.33 is the limit (0.3255 -> 0.33)
    per_name = limit_locks(close, close, close, step=np.array([0.01, 0.0, 0.01]))
    assert per_name["P"].tolist() == [0, 0, 1, 0]  # +10 % without a grid
    with pytest.raises(ValueError, match="price steps"):
        limit_locks(close, close, close, step=-0.01)


def test_the_settings_are_checked():
    assert LimitLocks.from_params(None) == LimitLocks(True, 0.05, False, None)
    for bad in ({"min_move": 0.0}, {"price_step": -0.01}, {"price_step": float("inf")}):
        with pytest.raises(ValueError, match="limit_locks"):
            LimitLocks.from_params(bad)


def test_daily_moves_capped_at_a_limit_are_found_in_a_close_only_panel(caplog):
    """A close-only file of a market with daily limits: its moves pile up below +-10 % and stop
    there (closes at the limit); markets without limits thin out, however thin or fat their
    tails (normal and Student-t returns of several scales, the shipped S&P sample): no hint.
    Said once by the evaluation's backtest panel of a close-only primary panel."""
    from pathlib import Path

    from bma_quant.core.evaluation.backtest_panel import backtest_panel as _backtest_panel
    from bma_quant.core.evaluation.limit_locks import capped_moves
    from bma_quant.core.evaluation.test_period import EvaluationConfig

    rng = np.random.default_rng(4)
    for scale in (0.01, 0.02, 0.03, 0.05):
        assert capped_moves(rng.normal(0, scale, 500_000), 0.05) is None
        assert capped_moves(rng.standard_t(4, 500_000) * scale, 0.05) is None
    free = rng.standard_t(3, 200_000) * 0.02
    limited = np.clip(free * 2.0, -0.10, 0.10) + rng.uniform(-0.0005, 0.0005, free.size)
    level, count = capped_moves(limited, 0.05)
    assert abs(level) == pytest.approx(0.1025, abs=0.0026) and count > 1000
    assert capped_moves(limited, 0.15) is None  # a level below min_move is not looked for
    sample = pd.read_csv(Path(__file__).parents[2] / "data/01_raw/sp500_prices.csv.gz",
                         index_col=0)
    assert capped_moves((sample / sample.shift(1) - 1).to_numpy().ravel(), 0.05) is None
    dates = pd.bdate_range("2020-01-01", periods=2000)
    panel = pd.DataFrame({"date": np.repeat(dates, 100), "ticker": np.tile(
        [f"N{k}" for k in range(100)], 2000), "ret_1d": limited[:200_000]})
    panel["close"] = 10.0
    config = EvaluationConfig.from_params({})
    with caplog.at_level("WARNING"):
        _backtest_panel(panel, config, report=True)
    assert "daily moves of the panel pile up just" in caplog.text
    assert "give the file high and low" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _backtest_panel(panel.assign(ret_1d=free), config, report=True)
        _backtest_panel(panel, config, report=False)  # the report's call only
    assert "pile up" not in caplog.text


def test_how_each_names_tick_is_read_is_a_parameter():
    """evaluation.backtest.limit_locks.grid (literals before): the window, the closes it needs
    and the share on the grid decide each name's tick, and with it each limit price's rounding."""
    from bma_quant.core.data import price_grid
    from bma_quant.core.evaluation.limit_locks import LimitLocks

    rng = np.random.default_rng(1)
    close = np.round(rng.uniform(5, 20, 300), 2)
    close[::4] += 0.00371234  # a quarter of the prints off the 0.01 grid (adjusted, or odd)
    assert price_grid.price_steps(close)[-1, 0] == 0.0
    assert price_grid.price_steps(close, on_grid_share=0.7)[-1, 0] == 0.01
    assert price_grid.price_steps(close[:15], min_closes=10, on_grid_share=0.7)[-1, 0] == 0.01
    assert price_grid.price_steps(close[:15], on_grid_share=0.7)[-1, 0] == 0.0  # < 20 closes
    rule = LimitLocks.from_params({"grid": {"window": 60, "min_closes": 5, "on_share": 0.7}})
    assert (rule.grid_window, rule.grid_min_closes, rule.grid_on_share) == (60, 5, 0.7)
    assert LimitLocks.from_params({}).grid_on_share == price_grid.ON_GRID_SHARE
    with pytest.raises(ValueError, match=r"limit_locks.grid needs window >= 1"):
        LimitLocks.from_params({"grid": {"on_share": 0}})
    with pytest.raises(ValueError, match=r"min_closes in \[1, window\]"):  # no name read
        LimitLocks.from_params({"grid": {"window": 10}})
    assert LimitLocks.from_params({"enabled": False, "grid": {"window": 10}}).grid_window == 10
    assert LimitLocks.from_params({"price_step": 0.01, "grid": {"window": 10}}).grid_window == 10
