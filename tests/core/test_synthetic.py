"""Known-answer checks of the synthetic market: layout, determinism, and that the planted truths
(signal, regimes, reversal, expected returns) show up in the prices the way they were planted."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from bma_quant.core.data.synthetic import (
    REGIMES,
    SyntheticMarket,
    generate_synthetic_market,
    to_wide_close,
)

HORIZON, DELAY = 10, 1
FLAT_MARKET = {"bull": 0.0, "neutral": 0.0, "bear": 0.0}


def _wide(frame: pd.DataFrame, column: str) -> np.ndarray:
    """(dates, tickers) array of one column of a long frame."""
    return frame.pivot(index="date", columns="ticker", values=column).to_numpy()


def _labels(panel: pd.DataFrame) -> np.ndarray:
    """close(t+d+h) / close(t+d) - 1 per ticker, NaN where the window runs past the end."""
    close = _wide(panel, "close")
    labels = np.full_like(close, np.nan)
    labels[: -(DELAY + HORIZON)] = close[DELAY + HORIZON :] / close[DELAY:-HORIZON] - 1.0
    return labels


def _daily_rank_ic(factor: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-sectional Spearman correlation per date (NaN for dates without labels)."""
    ic = np.full(factor.shape[0], np.nan)
    for t in range(factor.shape[0]):
        valid = np.isfinite(factor[t]) & np.isfinite(labels[t])
        if valid.sum() >= 10:
            ic[t] = np.corrcoef(rankdata(factor[t, valid]), rankdata(labels[t, valid]))[0, 1]
    return ic


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    # Large enough that a mean RankIC has a standard error well below 0.01.
    return generate_synthetic_market(200, 1000, seed=7)


@pytest.fixture(scope="module")
def labels(market) -> np.ndarray:
    return _labels(market.panel)


def test_panel_layout_and_dtypes():
    n_tickers, n_days = 12, 60
    result = generate_synthetic_market(n_tickers, n_days, seed=1, n_noise_factors=2)
    panel = result.panel

    assert list(panel.columns) == [
        "date", "ticker", "sector", "open", "high", "low", "close", "volume",
        "signal_1", "noise_1", "noise_2",
    ]  # fmt: skip
    assert len(panel) == n_tickers * n_days
    assert isinstance(panel.index, pd.RangeIndex)
    assert panel["date"].dtype == "datetime64[ns]"
    assert pd.api.types.is_string_dtype(panel["ticker"])
    assert pd.api.types.is_string_dtype(panel["sector"])
    for column in ["open", "high", "low", "close", "volume", "signal_1", "noise_1", "noise_2"]:
        assert panel[column].dtype == np.float64, column
        assert np.isfinite(panel[column]).all(), column
    assert panel.equals(panel.sort_values(["date", "ticker"], ignore_index=True))
    assert not panel.duplicated(["date", "ticker"]).any()

    dates = pd.DatetimeIndex(panel["date"].unique())
    assert dates[0] == pd.Timestamp("2010-01-04")
    assert (dates.dayofweek < 5).all() and len(dates) == n_days
    assert panel["ticker"].iloc[:3].tolist() == ["T0000", "T0001", "T0002"]
    assert set(panel["sector"]) == {f"S{k}" for k in range(5)}

    assert list(result.market.columns) == ["date", "level"]
    assert len(result.market) == n_days and result.market["level"].iloc[0] == 100.0
    assert (result.market["level"] > 0).all()
    assert list(result.regimes.columns) == ["date", "regime"]
    assert set(result.regimes["regime"]) <= set(REGIMES)
    assert list(result.expected_return.columns) == ["date", "ticker", "expected_return"]
    expected = _wide(result.expected_return, "expected_return")
    # Defined exactly where the label window close(t+d) -> close(t+d+h) fits in the sample.
    assert np.isfinite(expected[: n_days - DELAY - HORIZON]).all()
    assert np.isnan(expected[n_days - DELAY - HORIZON :]).all()


def test_close_only_panel_without_ohlcv():
    panel = generate_synthetic_market(5, 40, seed=1, ohlcv=False, n_noise_factors=1).panel
    assert list(panel.columns) == ["date", "ticker", "sector", "close", "signal_1", "noise_1"]


def test_prices_positive_and_ohlc_consistent():
    panel = generate_synthetic_market(30, 300, seed=2, reversal_strength=0.5).panel
    low_body = np.minimum(panel["open"], panel["close"])
    high_body = np.maximum(panel["open"], panel["close"])
    assert (panel["low"] > 0).all()
    assert (panel["low"] <= low_body).all()
    assert (high_body <= panel["high"]).all()
    assert (panel["volume"] > 0).all()


def test_same_seed_same_market_and_other_seed_differs():
    first = generate_synthetic_market(10, 80, seed=5, reversal_strength=0.3)
    again = generate_synthetic_market(10, 80, seed=5, reversal_strength=0.3)
    other = generate_synthetic_market(10, 80, seed=6, reversal_strength=0.3)
    pd.testing.assert_frame_equal(first.panel, again.panel)
    pd.testing.assert_frame_equal(first.market, again.market)
    pd.testing.assert_frame_equal(first.regimes, again.regimes)
    pd.testing.assert_frame_equal(first.expected_return, again.expected_return)
    assert not np.allclose(first.panel["close"], other.panel["close"])
    assert not np.allclose(first.panel["signal_1"], other.panel["signal_1"])


def test_planted_signal_predicts_the_label(market, labels):
    signal_ic = np.nanmean(_daily_rank_ic(_wide(market.panel, "signal_1"), labels))
    oracle_ic = np.nanmean(_daily_rank_ic(_wide(market.expected_return, "expected_return"), labels))
    assert 0.05 < signal_ic < 0.3
    # The oracle also knows the signal's later values inside the window, so it is a bit better.
    assert 0.7 * oracle_ic < signal_ic <= oracle_ic


@pytest.mark.parametrize("column", ["noise_1", "noise_2", "noise_3"])
def test_noise_columns_do_not_predict_the_label(market, labels, column):
    assert abs(np.nanmean(_daily_rank_ic(_wide(market.panel, column), labels))) < 0.02


def test_expected_return_correlates_with_the_label(market, labels):
    expected = _wide(market.expected_return, "expected_return")
    assert np.nanmean(_daily_rank_ic(expected, labels)) > 0.05
    valid = np.isfinite(expected) & np.isfinite(labels)
    assert np.corrcoef(expected[valid], labels[valid])[0, 1] > 0.05


def test_regimes_drive_market_drift_and_volatility(market):
    regime = market.regimes["regime"].to_numpy()[1:]
    daily = np.diff(np.log(market.market["level"].to_numpy()))
    assert daily[regime == "bull"].mean() > daily[regime == "bear"].mean()
    assert daily[regime == "bull"].std() < daily[regime == "bear"].std()


def test_signal_flips_sign_with_the_regime():
    flipped = generate_synthetic_market(
        200, 1000, seed=7, regime_signal_multipliers={"bull": 1.0, "neutral": 0.0, "bear": -1.0}
    )
    ic = _daily_rank_ic(_wide(flipped.panel, "signal_1"), _labels(flipped.panel))
    regime = flipped.regimes["regime"].to_numpy()
    assert (regime == "bull").sum() > 100 and (regime == "bear").sum() > 100
    assert np.nanmean(ic[regime == "bull"]) > 0.05
    assert np.nanmean(ic[regime == "bear"]) < -0.05


def test_reversal_gives_a_price_only_factor_something_to_find():
    def reversal_factor_ic(strength: float) -> float:
        result = generate_synthetic_market(200, 800, seed=3, reversal_strength=strength)
        close = _wide(result.panel, "close")
        past_week = np.full_like(close, np.nan)
        past_week[5:] = close[5:] / close[:-5] - 1.0
        return np.nanmean(_daily_rank_ic(-past_week, _labels(result.panel)))

    assert reversal_factor_ic(0.5) > 0.03
    assert reversal_factor_ic(0.5) > reversal_factor_ic(0.0) + 0.03


@pytest.mark.parametrize("reversal_strength", [0.0, 0.7])
def test_expected_return_is_the_window_return_when_nothing_is_random(reversal_strength):
    # With every volatility at zero, what remains of the window's log return is the planted drift.
    result = generate_synthetic_market(
        20, 150, seed=4, reversal_strength=reversal_strength, reversal_window=3,
        idiosyncratic_vol=0.0, sector_vol=0.0, market_vol=FLAT_MARKET,
    )  # fmt: skip
    close = _wide(result.panel, "close")
    window_log_return = np.log(close[DELAY + HORIZON :] / close[DELAY:-HORIZON])
    expected = _wide(result.expected_return, "expected_return")[: -(DELAY + HORIZON)]
    np.testing.assert_allclose(expected, window_log_return, rtol=0, atol=1e-12)
    assert np.abs(expected).max() > 1e-3  # the drift is really there


def test_to_wide_close_matches_the_panel():
    panel = generate_synthetic_market(4, 30, seed=1).panel
    wide = to_wide_close(panel)
    assert list(wide.columns) == ["date", "T0000", "T0001", "T0002", "T0003"]
    assert len(wide) == 30 and wide["date"].dtype == "datetime64[ns]"
    t0002 = panel.loc[panel["ticker"] == "T0002", "close"].to_numpy()
    np.testing.assert_array_equal(wide["T0002"].to_numpy(), t0002)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_tickers": 1}, "n_tickers"),
        ({"n_days": 11}, "n_days"),
        ({"signal_persistence": 1.0}, "signal_persistence"),
        ({"reversal_strength": 1.0}, "reversal_strength"),
        ({"regime_stay_probability": 1.5}, "regime_stay_probability"),
        ({"regime_signal_multipliers": {"bull": 1.0, "bear": -1.0}}, "neutral"),
    ],
)
def test_invalid_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_synthetic_market(**{"n_tickers": 5, "n_days": 50, **arguments})


def test_regime_factor_mode_switches_which_price_factor_pays():
    """Known answer of the hard regime mode: each factor's RankIC with the label has, in each true
    regime, the sign of its planted payoff (momentum pays in bull and costs in bear, reversal pays
    in neutral, low volatility pays in bear and costs in bull)."""
    from bma_quant.core.data.synthetic import (
        PAYOFF_FACTORS,
        REGIME_FACTOR_MARKET,
        price_factor_scores,
    )

    sm = generate_synthetic_market(150, 1200, seed=5, **REGIME_FACTOR_MARKET)
    assert REGIME_FACTOR_MARKET["signal_strength"] == 0.0  # only the price factors pay
    close = _wide(sm.panel, "close")
    log_returns = np.vstack([np.zeros((1, close.shape[1])), np.diff(np.log(close), axis=0)])
    windows = {"momentum": 20, "reversal": 5, "low_volatility": 20}
    scores = np.array([price_factor_scores(log_returns[max(1, t - 19): t + 1], windows)
                       for t in range(close.shape[0])])
    labels = _labels(sm.panel)
    regime = sm.regimes["regime"].to_numpy()
    payoffs = REGIME_FACTOR_MARKET["factor_payoffs"]
    for k, factor in enumerate(PAYOFF_FACTORS):
        ic = _daily_rank_ic(scores[:, k], labels)
        for name in REGIMES:
            planted = payoffs[factor][name]
            mean_ic = np.nanmean(ic[(regime == name) & (np.arange(ic.size) >= 25)])
            if planted != 0:  # (a factor without payoff still correlates with one that pays)
                assert np.sign(mean_ic) == np.sign(planted) and abs(mean_ic) > 0.02, (
                    factor, name, mean_ic)
    # The expected return carries what the state and the factors are worth.
    expected = _wide(sm.expected_return, "expected_return")
    assert np.nanmean(_daily_rank_ic(expected, labels)) > 0.05


def test_regime_factor_mode_refuses_unknown_factors():
    with pytest.raises(ValueError, match="unknown factors"):
        generate_synthetic_market(10, 100, factor_payoffs={"value": dict.fromkeys(REGIMES, 1.0)})
