"""Factor library: hand-computed values, trailing-window primitives, prefix invariance, families."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.features import factors as F
from bma_quant.core.features import rolling


def _tiny_panel() -> tuple[pd.DataFrame, pd.DataFrame]:
    dates = pd.bdate_range("2020-01-01", periods=8)
    close_a = [10.0, 11.0, 12.0, 11.0, 13.0, 14.0, 12.0, 15.0]
    close_b = [20.0, 19.0, 21.0, 22.0, 20.0, 23.0, 24.0, 22.0]
    rows = []
    for i, d in enumerate(dates):
        for ticker, close in (("A", close_a[i]), ("B", close_b[i])):
            rows.append(
                {
                    "date": d,
                    "ticker": ticker,
                    "close": close,
                    "open": close - 1.0,
                    "high": close + 2.0,
                    "low": close - 3.0,
                    "volume": 100.0 * (i + 1),
                }
            )
    panel = pd.DataFrame(rows)
    market = pd.DataFrame(
        {
            "date": dates,
            "market_return": np.linspace(0.0, 0.007, 8),
            "market_level": 100.0 + np.arange(8.0),
        }
    )
    return panel, market


def _raw(panel, market, **config) -> dict[str, np.ndarray]:
    cfg = F.FactorConfig(**{"min_periods_share": 1.0, **config})
    inputs = F.prepare_inputs(panel, market, cfg)
    values, _ = F.build_raw_factors(inputs, cfg)
    return values


def test_hand_computed_values():
    panel, market = _tiny_panel()
    v = _raw(
        panel,
        market,
        return_windows=(1, 5),
        ma_windows=(3,),
        extreme_windows=(3,),
        rank_windows=(3,),
        up_windows=(4,),
    )
    a = np.array([10.0, 11.0, 12.0, 11.0, 13.0, 14.0, 12.0, 15.0])
    # ret_5 at the last date: close(7) / close(2) - 1 (ticker A is column 0)
    assert v["ret_5"][7, 0] == pytest.approx(15.0 / 12.0 - 1.0)
    assert np.isnan(v["ret_5"][4, 0])  # needs 5 dates of history
    assert v["ret_1"][1, 0] == pytest.approx(0.1)
    assert v["ma_3"][7, 0] == pytest.approx(15.0 / ((14.0 + 12.0 + 15.0) / 3.0) - 1.0)
    assert np.isnan(v["ma_3"][1, 0])
    assert v["max_3"][6, 0] == pytest.approx(12.0 / 14.0 - 1.0)
    assert v["min_3"][6, 0] == pytest.approx(12.0 / 12.0 - 1.0)
    # rank of today's close in its 3-day window: 12 among (13, 14, 12) is the lowest: 1/3
    assert v["rank_3"][6, 0] == pytest.approx(1.0 / 3.0)
    assert v["rank_3"][7, 0] == pytest.approx(1.0)
    # share of up days over 4 days ending at date 7: returns +, +, -, + -> 3/4
    ups = np.diff(a)[-4:] > 0
    assert v["up_4"][7, 0] == pytest.approx(ups.mean())
    # candle shape with open = close - 1, high = close + 2, low = close - 3
    c, o, h, lo = 15.0, 14.0, 17.0, 12.0
    assert v["kmid"][7, 0] == pytest.approx((c - o) / o)
    assert v["klen"][7, 0] == pytest.approx((h - lo) / o)
    assert v["kup"][7, 0] == pytest.approx((h - max(o, c)) / o)
    assert v["klow"][7, 0] == pytest.approx((min(o, c) - lo) / o)
    assert v["ksft"][7, 0] == pytest.approx((2 * c - h - lo) / o)
    # market context is broadcast to every ticker
    assert v["mkt_ret_1"][3, 0] == v["mkt_ret_1"][3, 1] == pytest.approx(103.0 / 102.0 - 1.0)


def test_momentum_and_vwap_hand_computed():
    panel, market = _tiny_panel()
    v = _raw(
        panel, market, momentum_long=6, momentum_skip=2, vwap_windows=(2,), amihud_windows=(2,)
    )
    # mom: close(t-2) / close(t-6) - 1 at t = 7 for A: 14 / 11
    assert v["mom_0_0"][7, 0] == pytest.approx(14.0 / 11.0 - 1.0)
    typical = lambda c: ((c + 2) + (c - 3) + c) / 3.0  # noqa: E731
    vwap = (typical(12.0) * 700 + typical(15.0) * 800) / 1500.0
    assert v["vwap_2"][7, 0] == pytest.approx(15.0 / vwap - 1.0)
    r6, r7 = 12.0 / 14.0 - 1.0, 15.0 / 12.0 - 1.0
    assert v["amihud_2"][7, 0] == pytest.approx(
        (abs(r6) / (12.0 * 700) + abs(r7) / (15.0 * 800)) / 2
    )


def test_reversal_up_days_breadth_and_market_volatility_hand_computed():
    """rev_w is minus the beta-adjusted w-day return; a flat day is not an up day; a flat name
    is not above its moving average; mkt_vol_w is the daily (not annualised) std of the market's
    returns."""
    panel, market = _tiny_panel()
    flat = panel[panel["ticker"] == "A"].assign(ticker="C", close=5.0, open=4.0, high=7.0,
                                                low=2.0)
    panel = pd.concat([panel, flat], ignore_index=True)
    a_close = np.array([10.0, 11.0, 11.0, 12.0, 11.0, 13.0, 13.0, 14.0])
    panel.loc[panel["ticker"] == "A", "close"] = a_close
    v = _raw(panel, market, reversal_windows=(2,), beta_windows=(4,), up_windows=(4,),
             breadth_windows=(3,), market_volatility_windows=(3,))
    r = a_close[1:] / a_close[:-1] - 1.0  # A's returns into dates 1..7
    m = market["market_return"].to_numpy()[4:8]
    ra = r[-4:]
    beta = ((ra * m).mean() - ra.mean() * m.mean()) / ((m * m).mean() - m.mean() ** 2)
    level = market["market_level"].to_numpy()
    expected = -((14.0 / 13.0 - 1.0) - beta * (level[7] / level[5] - 1.0))
    assert v["beta_4"][7, 0] == pytest.approx(beta)
    assert v["rev_2"][7, 0] == pytest.approx(expected)
    assert v["up_4"][7, 0] == pytest.approx(0.5)  # +, -, +, flat (13 -> 13): 2 of 4
    closes = {"A": a_close[-3:], "B": np.array([23.0, 24.0, 22.0]), "C": np.full(3, 5.0)}
    above = [c[-1] > c.mean() for c in closes.values()]  # A yes, B no, C flat: no
    assert v["breadth_3"][7, 0] == pytest.approx(np.mean(above)) == pytest.approx(1 / 3)
    assert v["mkt_vol_3"][7, 0] == pytest.approx(
        np.std(market["market_return"].to_numpy()[5:8], ddof=1))


def test_an_illiquid_name_keeps_its_illiquidity():
    """B trades (volume > 0) on 3 of every 8 days: with the window's observed share the rule,
    its amihud was missing and later got the date's median, so the most illiquid name looked
    average. Its traded days give the value; no traded day gives none."""
    panel, market = _tiny_panel()
    b = panel["ticker"] == "B"
    panel.loc[b & ~panel.index.isin(panel[b].index[[1, 4, 7]]), "volume"] = 0.0
    v = _raw(panel, market, amihud_windows=(8,), amihud_min_traded_share=0.25)
    r1, r4, r7 = 19 / 20 - 1, 20 / 22 - 1, 22 / 24 - 1  # B's returns into its traded days
    assert v["amihud_8"][7, 1] == pytest.approx(
        (abs(r1) / (19 * 200) + abs(r4) / (20 * 500) + abs(r7) / (22 * 800)) / 3)
    # unset (a model pickled before the key): the window's observed share, as it was trained
    assert np.isnan(_raw(panel, market, amihud_windows=(8,))["amihud_8"][7, 1])
    panel.loc[b, "volume"] = 0.0
    assert np.isnan(_raw(panel, market, amihud_windows=(8,),
                         amihud_min_traded_share=0.25)["amihud_8"][7, 1])
    with pytest.raises(ValueError, match="amihud_min_traded_share must be in"):
        F.FactorConfig.from_params({"amihud_min_traded_share": 0})


def test_beta_recovers_a_planted_beta():
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=300)
    m = 0.01 * rng.standard_normal(300)
    r = 1.5 * m + 0.001 * rng.standard_normal(300)
    panel = pd.DataFrame({"date": dates, "ticker": "X", "close": 100 * np.cumprod(1 + r)})
    v = _raw(panel, pd.DataFrame({"date": dates, "market_return": m}), beta_windows=(60,))
    assert v["beta_60"][-1, 0] == pytest.approx(1.5, abs=0.02)
    assert v["resvol_60"][-1, 0] == pytest.approx(0.001, rel=0.25)


@pytest.mark.parametrize("window", [1, 3, 5])
def test_rolling_primitives_match_pandas(window):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 4))
    x[rng.random(x.shape) < 0.15] = np.nan
    x[10:13, 1] = 0.5  # ties
    frame = pd.DataFrame(x)
    mp = max(1, window - 1)
    roll = frame.rolling(window, min_periods=mp)
    np.testing.assert_allclose(F.rolling_mean(x, window, mp), roll.mean(), atol=1e-12)
    np.testing.assert_allclose(F.rolling_sum(x, window, mp), roll.sum(), atol=1e-12)
    np.testing.assert_allclose(F.rolling_max(x, window, mp), roll.max(), atol=0)
    np.testing.assert_allclose(F.rolling_min(x, window, mp), roll.min(), atol=0)
    if window > 1:
        np.testing.assert_allclose(
            F.rolling_std(x, window, 2), frame.rolling(window, min_periods=2).std(), atol=1e-12
        )
    # a shared precomputed Cumulative gives the same windows
    cum = F.Cumulative.of(x, squares=True)
    np.testing.assert_array_equal(F.rolling_mean(cum, window, mp), F.rolling_mean(x, window, mp))
    np.testing.assert_array_equal(F.rolling_std(cum, window, 2), F.rolling_std(x, window, 2))
    # pandas leaves the rank defined at a missing current value as NaN too
    expected_rank = roll.rank(pct=True).to_numpy()
    np.testing.assert_allclose(F.rolling_percentile(x, window, mp), expected_rank, atol=1e-12)


def test_a_huge_value_long_gone_does_not_blur_later_windows():
    """Trailing sums from cumulative ones kept a bad print's +1e6 return (1e12 squared) in every
    later difference: two hundred days on, a 20-day std came out 0 and a 60-day beta NaN. The
    windows after it now equal those of the series without it (to the 1e-6 accepted in a
    window's sum), and an ordinary series' sums are the cumulative ones, bit for bit."""
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 0.02, (300, 3))
    x[rng.random(x.shape) < 0.05] = 0.0  # unchanged closes
    x[40:45, 2] = 0.0
    ordinary = {w: (F.rolling_std(x, w, 2), F.rolling_mean(x, w, 1)) for w in (5, 20)}
    spiked = x.copy()
    spiked[50, 0], spiked[51, 0] = -0.999999, 999999.0  # a close at 1e-6 of the price for a day
    spiked[60, 1] = 1e9  # and one beyond any price
    for window in (5, 20, 60):
        after = slice(52 + window, None)
        for got, expected in (
                (F.rolling_std(spiked, window, 2), F.rolling_std(x, window, 2)),
                (F.rolling_mean(spiked, window, 1), F.rolling_mean(x, window, 1)),
                (F.rolling_mean(spiked * spiked, window, 1), F.rolling_mean(x * x, window, 1))):
            # a signed sum is resolved to 1e-6 of its window's |values|, not of itself
            np.testing.assert_allclose(got[after, 0], expected[after, 0], rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(got[60 + window:, 1], expected[60 + window:, 1],
                                       rtol=1e-6, atol=1e-9)
            np.testing.assert_array_equal(got[:, 2], expected[:, 2])  # untouched column
    for w, (std, mean) in ordinary.items():
        cum = F.Cumulative.of(x, squares=True)
        total, count = rolling._trailing(cum.total, w), rolling._trailing(cum.count, w)
        squares = rolling._trailing(cum.squares, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.testing.assert_array_equal(mean, np.where(count >= 1, total / count, np.nan))
            variance = np.maximum((squares - total * total / count) / (count - 1), 0.0)
        np.testing.assert_array_equal(std, np.where(count >= 2, np.sqrt(variance), np.nan))


def test_shift_refuses_to_look_forward():
    with pytest.raises(ValueError, match="backwards"):
        F.shift(np.zeros((3, 2)), -1)


@pytest.fixture(scope="module")
def ohlcv_market():
    market = generate_synthetic_market(30, 420, seed=5, n_noise_factors=1)
    panel = market.panel.copy()
    # a few missing days so that windows see gaps
    drop = np.random.default_rng(2).random(len(panel)) < 0.01
    panel.loc[drop, ["close", "open", "high", "low", "volume"]] = np.nan
    level = market.market.rename(columns={"level": "market_level"})
    level["market_return"] = level["market_level"].pct_change()
    return panel, level


def _engineer(panel, market, transform=None):
    cfg = F.FactorConfig()
    inputs = F.prepare_inputs(panel, market, cfg)
    return F.engineer_factors(inputs, cfg, transform or F.TransformConfig())


def test_every_family_is_prefix_invariant(ohlcv_market):
    panel, market = ohlcv_market
    full, families = _engineer(panel, market)
    assert {
        "return",
        "trend",
        "volatility",
        "momentum",
        "candle",
        "volume",
        "market",
        "user",
    } == set(families.values())
    dates = np.sort(panel["date"].unique())
    # thinly traded names early on (no trade on most days, heavy-tailed volumes) and a bad
    # print: cells summed again directly are chosen from rows <= t only (a first version
    # chose columns from the whole history, and vstd_5 moved with later rows)
    rng = np.random.default_rng(1)
    early = (panel["date"] < dates[200]).to_numpy()
    thin = panel.copy()
    thin.loc[early, "volume"] *= rng.lognormal(0, 1.5, int(early.sum()))
    thin.loc[early & (rng.random(len(panel)) < 0.85), "volume"] = 0.0
    thin.loc[(thin["ticker"] == thin["ticker"].iloc[0]) & (thin["date"] == dates[250]),
             ["open", "high", "low", "close"]] *= 1e-6
    for frame in (panel, thin):
        full, _ = _engineer(frame, market)
        for cut in (dates[150], dates[300]):
            part, _ = _engineer(frame[frame["date"] <= cut], market[market["date"] <= cut])
            n = int((dates <= cut).sum())
            for name, values in part.items():
                np.testing.assert_array_equal(values, full[name][:n], err_msg=name)


def test_close_only_panel_runs_price_families_only(ohlcv_market):
    panel, market = ohlcv_market
    close_only = panel[["date", "ticker", "close"]]
    values, families = _engineer(close_only, market)
    assert set(families.values()) == {"return", "trend", "volatility", "momentum", "market"}
    assert "kmid" not in values and "vwap_5" not in values and "ret_5" in values
    assert all(v.dtype == np.float32 for v in values.values())
    # without a market frame the equal-weighted panel return is the market
    values_eq, _ = _engineer(close_only, None)
    assert np.isfinite(values_eq["beta_60"][-1]).all()


def test_user_columns_pass_through_and_are_ranked(ohlcv_market):
    panel, market = ohlcv_market
    plain_rank = F.TransformConfig(method="rank", winsorise=None, sector_neutralise=False)
    values, families = _engineer(panel, market, plain_rank)
    assert families["signal_1"] == "user" and families["noise_1"] == "user"
    # a per-date rank transform preserves the within-date order of the user column
    day = panel[panel["date"] == panel["date"].iloc[-1]].sort_values("ticker")
    order_raw = np.argsort(day["signal_1"].to_numpy())
    order_ranked = np.argsort(values["signal_1"][-1])
    np.testing.assert_array_equal(order_raw, order_ranked)
    assert np.nanmax(np.abs(values["signal_1"])) < 0.5
    # market context is not cross-sectionally transformed: one value per date
    fg = values["fear_greed"]
    defined = np.isfinite(fg).any(axis=1)
    assert defined.sum() > 100
    np.testing.assert_array_equal(np.nanmax(fg[defined], axis=1), np.nanmin(fg[defined], axis=1))
    assert np.nanmax(fg) <= 100.0 and np.nanmin(fg) >= 0.0


def _with_flat_names(panel: pd.DataFrame, scale: float = 1.0) -> pd.DataFrame:
    """Two names frozen for 40 dates (a suspension, a forward-filled delisting) at different
    prices, with unchanged volumes; every price times `scale` (dollars -> cents). No sectors
    (as in the shipped sample): demeaning within sectors would hide the noise below float32."""
    out = panel.drop(columns="sector", errors="ignore")
    dates = np.sort(out["date"].unique())
    tickers = sorted(out["ticker"].unique())[:2]
    for ticker, level in zip(tickers, (37.31, 12.07), strict=True):
        rows = (out["ticker"] == ticker) & out["date"].between(dates[330], dates[369])
        out.loc[rows, ["open", "high", "low", "close"]] = level
        out.loc[rows, "volume"] = 12345.0
    out[["open", "high", "low", "close"]] *= scale
    return out


FLAT_SENSITIVE = ("ma_", "vwap_", "vratio_", "vstd_", "breadth_", "fear_greed")


def test_flat_names_tie_whatever_the_units_and_the_first_date(ohlcv_market):
    """Over a flat window a running-sum mean came out as x(1 ± 1e-13): close / mean - 1 held
    noise instead of 0, and the per-date ranks ordered the flat names by it. Prices in cents
    then gave other features than in dollars, and a history starting later other ranks (the
    leak audit called such a factor 'not prefix-invariant')."""
    panel, market = ohlcv_market
    dollars, _ = _engineer(_with_flat_names(panel), market)
    cents, _ = _engineer(_with_flat_names(panel, 100.0), market)
    names = [n for n in dollars if n.startswith(FLAT_SENSITIVE)]
    assert len(names) >= 8, names
    for name in names:
        np.testing.assert_array_equal(dollars[name], cents[name], err_msg=name)
    # the same panel from a later first date (the leak audit's truncated history): the same
    # values once every window is full again (the last 90 dates, the flat stretch among them)
    dates = np.sort(panel["date"].unique())
    later, _ = _engineer(_with_flat_names(panel)[lambda f: f["date"] >= dates[40]],
                         market[market["date"] >= dates[40]])
    for name in (n for n in names if n.startswith(("ma_", "vwap_", "vratio_", "vstd_"))):
        np.testing.assert_array_equal(dollars[name][-90:], later[name][-90:], err_msg=name)


def test_a_relisted_names_factors_read_its_current_listing_only():
    """T0002's code is reused after a 70-date gap (listed_from names the new listing's first
    date): its per-ticker factors from then on equal those of a panel without the old company's
    rows, and every other name's factors are those of the panel without listed_from. The market
    context (market return, breadth, fear-greed, factor performance) is that of a panel in which
    the new listing is another ticker. A cut panel agrees (prefix invariance)."""
    panel = generate_synthetic_market(n_tickers=6, n_days=400, seed=5).panel
    dates = np.sort(panel["date"].unique())
    t2 = panel["ticker"] == "T0002"
    reused = panel[~(t2 & panel["date"].between(dates[200], dates[269]))].reset_index(drop=True)
    back = reused["date"] >= dates[270]
    relisted = reused.assign(listed_from=pd.Series(
        np.where((reused["ticker"] == "T0002") & back, dates[270], np.datetime64("NaT")),
        dtype="datetime64[ns]"))
    fresh = reused[~((reused["ticker"] == "T0002") & ~back)].reset_index(drop=True)
    renamed = reused.assign(ticker=reused["ticker"].where(
        ~((reused["ticker"] == "T0002") & back), "T0002-new"))
    cfg = F.FactorConfig()
    inputs = F.prepare_inputs(relisted, None, cfg)
    values, families = F.build_raw_factors(inputs, cfg)
    plain, _ = F.build_raw_factors(F.prepare_inputs(reused, None, cfg), cfg)
    new, _ = F.build_raw_factors(F.prepare_inputs(fresh, None, cfg), cfg)
    col = list(inputs.grid.tickers).index("T0002")
    later = inputs.grid.dates >= dates[270]
    others = [j for j in range(len(inputs.grid.tickers)) if j != col]
    apart, _ = F.build_raw_factors(F.prepare_inputs(renamed, None, cfg), cfg)
    changed, market_changed = set(), set()
    for name, family in families.items():
        if family == F.MARKET_FAMILY:
            np.testing.assert_allclose(values[name][:, 0], apart[name][:, 0], rtol=1e-10,
                                       atol=1e-12, equal_nan=True, err_msg=name)
            np.testing.assert_array_equal(values[name][:, col], values[name][:, 0])
            if not np.allclose(values[name][:, 0], plain[name][:, 0], equal_nan=True):
                market_changed.add(name)
            continue
        np.testing.assert_allclose(values[name][later, col], new[name][later, col], rtol=1e-12,
                                   atol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(values[name][:, others], plain[name][:, others])
        np.testing.assert_array_equal(values[name][~later, col], plain[name][~later, col])
        if not np.allclose(values[name][later, col], plain[name][later, col], equal_nan=True):
            changed.add(name)
    # 12-1 momentum no longer divides by the old company's price (windows with a minimum share
    # of observations were already empty across the gap)
    assert "mom_12_1" in changed
    # windows longer than the gap (fear-greed's 252-date highs and lows) no longer compare the
    # new company's closes with the old one's
    assert "fear_greed" in market_changed, market_changed
    cut = relisted[relisted["date"] <= dates[300]]
    cut_values, _ = F.build_raw_factors(F.prepare_inputs(cut, None, cfg), cfg)
    for name in ("mom_12_1", "dd_252", "ret_20"):
        np.testing.assert_array_equal(cut_values[name], values[name][: len(cut_values[name])])


def test_factors_do_not_depend_on_a_names_units():
    """A name quoted in pence instead of pounds (prices x100, volume / 100, as a unit switch's
    repair leaves it depending on the window it sits in): every factor is the same, so a
    serving slice that starts after the switch scores as training did."""
    panel = generate_synthetic_market(n_tickers=6, n_days=300, seed=7, ohlcv=True).panel
    pence = panel.copy()
    t = pence["ticker"] == "T0002"
    pence.loc[t, ["open", "high", "low", "close"]] *= 100.0
    pence.loc[t, "volume"] /= 100.0
    cfg = F.FactorConfig()
    base, families = F.build_raw_factors(F.prepare_inputs(panel, None, cfg), cfg)
    scaled, _ = F.build_raw_factors(F.prepare_inputs(pence, None, cfg), cfg)
    for name in families:
        np.testing.assert_allclose(scaled[name], base[name], rtol=1e-7, atol=1e-10,
                                   equal_nan=True, err_msg=name)


def test_the_reversals_beta_window_is_its_own_parameter():
    """rev_w removes the market's move with a beta over `reversal_beta_window` dates, whatever
    the beta factors' windows are; unset (a config pickled before the key) it is the first beta
    window, as those models computed; its window counts in the warm-up."""
    panel, market = _tiny_panel()
    own = _raw(panel, market, reversal_windows=(2,), beta_windows=(), reversal_beta_window=4)
    legacy = _raw(panel, market, reversal_windows=(2,), beta_windows=(4,))
    np.testing.assert_array_equal(own["rev_2"], legacy["rev_2"])
    other = _raw(panel, market, reversal_windows=(2,), beta_windows=(4,), reversal_beta_window=6)
    assert not np.allclose(other["rev_2"][7], legacy["rev_2"][7])
    assert F.FactorConfig(beta_windows=(), reversal_beta_window=400).longest_window() == 400
    assert F.FactorConfig(reversal_windows=(), reversal_beta_window=400).longest_window() == 252
    assert F.FactorConfig(beta_windows=()).reversal_beta() == F.LEGACY_REVERSAL_BETA_WINDOW
