"""Run-time leak audit: prefix invariance at cut dates and the future-day IC profile."""

import warnings

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.features import factors as F
from bma_quant.core.features import leak_audit as LA
from bma_quant.core.features.transforms import centred_rank

CONFIG = LA.LeakAuditConfig(date_stride=1)


def _shift_up(values: np.ndarray, days: int) -> np.ndarray:
    """values[t + days] at t: what a factor peeking `days` ahead would read."""
    out = np.full(values.shape, np.nan)
    out[:-days] = values[days:]
    return out


def _shift_down(values: np.ndarray, days: int) -> np.ndarray:
    """values[t - days] at t (days >= 0): a past value."""
    if days == 0:
        return values.copy()
    out = np.full(values.shape, np.nan)
    out[days:] = values[:-days]
    return out


@pytest.fixture(scope="module")
def synthetic():
    market = generate_synthetic_market(n_tickers=80, n_days=900, seed=3, reversal_strength=0.5)
    grid = F.Grid.from_long(market.panel)
    close = grid.to_wide(market.panel["close"].to_numpy())
    return market, grid, close


def test_config_rejects_unknown_keys_and_bad_counts():
    with pytest.raises(ValueError, match="unknown key"):
        LA.LeakAuditConfig.from_params({"prefix_cut": 3})
    with pytest.raises(ValueError, match="compare_days >= 1"):
        LA.LeakAuditConfig.from_params({"compare_days": 0})
    assert LA.LeakAuditConfig.from_params({"prefix_cuts": 2}).prefix_cuts == 2


def test_cut_rows_are_interior_evenly_spread_and_after_earliest():
    rows = np.arange(100, 1100)
    cuts = LA.cut_rows(rows, 3, earliest=300)
    assert cuts.tolist() == [500, 700, 899]  # quarters of rows 300 .. 1099
    assert LA.cut_rows(rows, 0, earliest=0).size == 0
    assert LA.cut_rows(rows, 3, earliest=5000).size == 0


def test_prefix_audit_catches_a_centred_rolling_mean(synthetic):
    """A centred 5-day mean reads t+1 and t+2: on the panel cut at t its last two values are
    missing, so the audit flags it with a two-day look-ahead; the trailing mean passes."""
    _, grid, close = synthetic
    frame = pd.DataFrame(close)

    def compute(start: int, first: int, stop: int) -> dict:
        part = frame.iloc[start:stop]
        return {
            "trailing_ma": part.rolling(5).mean().to_numpy()[first - start :],
            "centred_ma": part.rolling(5, center=True).mean().to_numpy()[first - start :],
        }

    full = compute(0, 0, len(frame))
    table = LA.prefix_audit(full, compute, grid.dates, [300, 500, 700], history=5, config=CONFIG)
    assert table.loc["trailing_ma", "prefix_mismatches"] == 0
    assert table.loc["centred_ma", "prefix_mismatches"] == 3 * 2 * close.shape[1]
    assert table.loc["centred_ma", "lookahead_days"] == 2
    assert table.loc["centred_ma", "first_bad_cut"] == str(grid.dates[300].date())
    assert table.loc["centred_ma", "prefix_cuts"] == 3


def test_factor_library_passes_the_prefix_audit_on_its_own_lookback(synthetic):
    """Every factor and market-context series, recomputed from only `lookback_days` of history
    before each cut, equals the full computation: the audit raises no false alarm."""
    market, grid, close = synthetic
    config, transform = F.FactorConfig(), F.TransformConfig()
    inputs = F.prepare_inputs(market.panel, None, config)
    full, families = F.engineer_factors(inputs, config, transform)
    compute = LA.factor_slice_computation(market.panel, None, grid, config, transform)
    cuts = [config.lookback_days() + 60, 880]
    table = LA.prefix_audit(full, compute, grid.dates, cuts, config.lookback_days(), CONFIG)
    assert "fear_greed" in table.index and families["fear_greed"] == F.MARKET_FAMILY
    assert (table["prefix_mismatches"] == 0).all(), table[table["prefix_mismatches"] > 0]
    # with too short a history the long windows differ: the lookback is what makes it exact
    short = LA.prefix_audit(full, compute, grid.dates, cuts, 100, CONFIG)
    assert short.loc["fear_greed", "prefix_mismatches"] > 0


def test_future_ic_profile_known_answers(synthetic):
    _, _, close = synthetic
    returns = LA.daily_returns(close)
    features = {"past": returns, "peek_1": _shift_up(returns, 1), "peek_2": _shift_up(returns, 2)}
    rows = np.arange(50, 800)
    profile = LA.future_ic_profile(features, close, rows, max_offset=11, config=CONFIG)
    assert list(profile.columns) == [*(f"ic_{j}" for j in range(12)), "n_dates",
                                     *(f"t_{j}" for j in range(12)), "edge_ic_before",
                                     "edge_ic_inside", "edge_ic_after", "edge_tstat",
                                     *LA.FAR_EDGE_KEYS]
    assert profile.loc["past", "ic_0"] == pytest.approx(1.0)
    assert profile.loc["peek_1", "ic_1"] == pytest.approx(1.0)
    assert profile.loc["peek_2", "ic_2"] == pytest.approx(1.0)
    assert abs(profile.loc["peek_2", "ic_5"]) < 0.1
    assert profile.loc["past", "n_dates"] == len(rows)
    strided = LA.future_ic_profile(
        features, close, rows, 11, LA.LeakAuditConfig(date_stride=3)
    )
    assert strided.loc["past", "n_dates"] == len(rows[::3])


def _window_sum(returns: np.ndarray, first: int, last: int) -> np.ndarray:
    """sum of r(t+first .. t+last) at t (NaN where the window leaves the data)."""
    return sum(_shift_up(returns, j) for j in range(first, last + 1))


def test_label_edge_flags_noisy_label_copies_not_persistent_signals(synthetic):
    """A vendor column that is the 10-day forward return plus much noise has a RankIC with the
    label of about 0.2: below the |RankIC| guard, and spread too thin for the one-day spike rule.
    Its IC with each day's return stops dead after the label's last day. A persistent signal's
    fades smoothly: the planted signal (IC with one day ~0.1), and the label window shifted one
    day on (it knows r(t+12), so it is a leak too, but not of this edge: the spike rule's)."""
    market, grid, close = synthetic
    returns = LA.daily_returns(close)
    rng = np.random.default_rng(0)
    label = _window_sum(returns, 2, 11)
    noise = rng.standard_normal(label.shape) * np.nanstd(label)
    features = {"noisy_label": label + 3.0 * noise, "exact_label": label,
                "signal": grid.to_wide(market.panel["signal_1"].to_numpy()),
                "noise": noise}
    profile = LA.future_ic_profile(features, close, np.arange(300, 820), 11, CONFIG)
    reasons = LA.label_edge_reasons(profile, CONFIG, label_end=11)
    assert set(reasons) == {"noisy_label", "exact_label"}
    assert "label-window edge" in reasons["noisy_label"]
    assert profile.loc["noisy_label", "edge_ic_inside"] < 0.1  # the spike rule's bar
    assert not LA.future_peek_reasons(profile.loc[["noisy_label"]], CONFIG)
    assert profile.loc["signal", "edge_ic_inside"] > CONFIG.max_edge_ic  # strong, but smooth


def test_a_spike_within_the_noise_of_a_few_names_is_no_peek():
    """Six names over four years: a causal 10-day return's IC with r(t+4) reached 0.11 (three
    times its other days) by chance, and three factors were dropped as peeks (a researcher's
    panel). The peak must also stand out of its own noise: a Newey-West t above 5."""
    row = [0.30, 0.02, 0.03, 0.02, 0.11, 0.03, 0.02, 0.03, 0.02, 0.03, 0.02, 0.03]
    profile = _profile(noisy=row, sure=row)
    profile.loc["noisy", "t_4"], profile.loc["sure", "t_4"] = 4.1, 9.0
    assert set(LA.future_peek_reasons(profile, CONFIG)) == {"sure"}


def test_the_default_profile_does_not_alias_a_slow_factor_into_a_spike():
    """A slow factor that predicts the returns of even dates more than those of odd ones (the
    noise of a short scope did this): sampled every 2nd date, day j's IC reads one parity only,
    so the profile zigzags and the factor reads as a peek; the shipped stride reads every date."""
    from tests.support import project_params

    rng = np.random.default_rng(5)
    n_days, n_names = 220, 40
    factor = np.cumsum(rng.standard_normal((n_days, n_names)) * 0.1, axis=0)
    factor += rng.standard_normal((1, n_names))
    payoff = np.where(np.arange(n_days) % 2 == 0, 0.02, 0.0)[:, None]
    returns = np.zeros((n_days, n_names))
    returns[1:] = payoff[1:] * factor[:-1] + 0.01 * rng.standard_normal((n_days - 1, n_names))
    close = 50 * np.exp(np.cumsum(returns, axis=0))
    rows = np.arange(0, 200)
    shipped = LA.LeakAuditConfig.from_params(project_params()["feature_engineering"]["leak_audit"])
    strided = LA.LeakAuditConfig(**{**shipped.__dict__, "date_stride": 2})
    zigzag = LA.future_ic_profile({"slow": factor}, close, rows, 6, strided)
    assert "slow" in LA.future_peek_reasons(zigzag, strided)
    profile = LA.future_ic_profile({"slow": factor}, close, rows, 6, shipped)
    assert shipped.date_stride == 1 and LA.future_peek_reasons(profile, shipped) == {}


def test_label_edge_keeps_a_reversal_that_ends_near_the_label_edge():
    """A market whose reversal of a move lasts exactly 15 days: a past 5-day return's IC ramps
    down over days 11-16, close to the label's end (11). Three-day windows around the edge read
    that ramp as a break (t -8); the one-day bend of the default does not."""
    market = generate_synthetic_market(n_tickers=100, n_days=3000, seed=4,
                                       reversal_strength=0.5, reversal_window=15)
    close = F.Grid.from_long(market.panel).to_wide(market.panel["close"].to_numpy())
    past_5 = np.full(close.shape, np.nan)
    past_5[5:] = close[5:] / close[:-5] - 1
    rows = np.arange(300, 2400)
    for edge_days, flagged in ((3, {"ret_5"}), (LA.LeakAuditConfig().edge_days, set())):
        config = LA.LeakAuditConfig(date_stride=2, edge_days=edge_days)
        profile = LA.future_ic_profile({"ret_5": past_5}, close, rows, 11, config)
        assert set(LA.label_edge_reasons(profile, config, 11)) == flagged


def test_label_edge_reads_no_return_past_the_scopes_label_reach(synthetic):
    """The edge check reads r(t+12): for the scope's last dates that is a return the scope's
    labels do not reach (a later CV window's, or the test period's). Those dates are left out,
    so changing every return after the scope's reach changes nothing."""
    _, _, close = synthetic
    returns = LA.daily_returns(close)
    factor = _window_sum(returns, 2, 11)
    rows = np.arange(300, 600)
    profile = LA.future_ic_profile({"f": factor}, close, rows, 11, CONFIG)
    moved = close.copy()
    moved[600 + 11 + 1:] *= np.random.default_rng(1).uniform(0.5, 1.5, moved[612:].shape)
    again = LA.future_ic_profile({"f": factor}, moved, rows, 11, CONFIG)
    pd.testing.assert_frame_equal(profile, again)


def _profile(**rows) -> pd.DataFrame:
    return pd.DataFrame.from_dict(
        {name: {f"ic_{j}": v for j, v in enumerate(ics)} for name, ics in rows.items()},
        orient="index",
    )


def test_peek_rule_flags_spikes_and_keeps_reversal_and_persistent_signals():
    profile = _profile(
        peek=[-0.04, 0.96, -0.04, -0.04, 0.0, 0.01],
        # a peek mixed into a past-return factor: same sign on r(t) and r(t+1)
        mixed=[0.64, 0.64, -0.06, -0.06, -0.05, 0.0],
        # strong legitimate reversal: its r(t+1) IC mirrors a larger, opposite IC with r(t)
        reversal=[-0.30, 0.27, 0.16, 0.08, 0.01, -0.05],
        # a persistent predictive signal (or a whole-window label peek): flat, no spike
        flat=[0.05, 0.30, 0.31, 0.30, 0.30, 0.29],
        weak_spike=[0.0, 0.08, 0.0, 0.0, 0.0, 0.0],
        # a 60-day momentum whose window ends at t+2: two days of the future diluted in 60
        diluted=[0.01, 0.12, 0.11, 0.0, 0.0, 0.01],
        market=[np.nan] * 6,
    )
    reasons = LA.future_peek_reasons(profile, CONFIG)
    assert set(reasons) == {"peek", "mixed", "diluted"}
    assert "r(t+1)" in reasons["peek"] and "0.960" in reasons["peek"]


def test_audit_drops_user_peeks_and_keeps_momentum_and_the_planted_signal():
    """Known answer (issue 11): user columns close(t+2)/close(t+1)-1 and close(t+1)/close(t)-1 are
    named suspects; 12-1 momentum, reversal and the generator's signal_1 are not."""
    market = generate_synthetic_market(n_tickers=100, n_days=900, seed=5, reversal_strength=0.5)
    panel = market.panel.copy()
    grid = F.Grid.from_long(panel)
    close = grid.to_wide(panel["close"].to_numpy())
    returns = LA.daily_returns(close)
    panel["peek_next_day"] = grid.to_long(_shift_up(returns, 1))
    panel["peek_label_day"] = grid.to_long(_shift_up(returns, 2))
    # 60-day momentum through t+2 (a vendor column stamped two days early)
    log_close = np.log(close)
    momentum = _shift_up(log_close, 2) - np.vstack([np.full((58, close.shape[1]), np.nan),
                                                    log_close[:-58]])
    panel["momentum_through_t2"] = grid.to_long(momentum)
    config, transform = F.FactorConfig(), F.TransformConfig()
    full, _ = F.engineer_factors(F.prepare_inputs(panel, None, config), config, transform)
    compute = LA.factor_slice_computation(panel, None, grid, config, transform)
    audit = LA.audit_factor_table(
        full, compute, close, grid.dates, np.arange(len(grid.dates) - 12), config.lookback_days(),
        max_offset=11, config=CONFIG, values_are_ranks=True,
    )
    assert set(audit.suspects) == {"peek_next_day", "peek_label_day", "momentum_through_t2"}
    assert "r(t+1)" in audit.suspects["peek_next_day"]
    # a user column the user vouches for (leak_audit.causal_columns) is not judged by its profile
    import dataclasses

    trusting = dataclasses.replace(CONFIG, causal_columns=("momentum_through_t2",))
    vouched = LA.audit_factor_table(
        full, compute, close, grid.dates, np.arange(len(grid.dates) - 12), config.lookback_days(),
        max_offset=11, config=trusting, values_are_ranks=True,
    )
    assert set(vouched.suspects) == {"peek_next_day", "peek_label_day"}
    assert "r(t+2)" in audit.suspects["peek_label_day"]
    table = audit.table.set_index("factor")
    assert not table.loc[["mom_12_1", "rev_5", "signal_1"], "suspect"].any()
    assert len(audit.cut_dates) == CONFIG.prefix_cuts
    assert (table["prefix_mismatches"] == 0).all()


def test_regime_label_audit_passes_a_filter_and_catches_a_smoother():
    """A causal filter (trailing mean) passes; a centred smoother (reads ahead) is caught."""
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2015-01-01", periods=400)
    signal = pd.Series(rng.standard_normal(len(dates)).cumsum(), index=dates)

    def label(values: pd.Series, centred: bool) -> pd.DataFrame:
        smooth = values.rolling(11, center=centred, min_periods=1).mean()
        p_bull = 1 / (1 + np.exp(-smooth))
        regime = np.where(p_bull > 0.5, "bull", "bear")
        return pd.DataFrame({"date": values.index, "regime": regime, "p_bull": p_bull.to_numpy(),
                             "p_bear": 1 - p_bull.to_numpy()})

    config = LA.LeakAuditConfig(compare_days=15)
    cuts = [150, 250, 350]
    for centred, expect_leak in ((False, False), (True, True)):
        table = label(signal, centred)
        audit = LA.audit_regime_labels(
            table, lambda stop, c=centred: label(signal.iloc[:stop], c), cuts, config)
        flagged = set(audit.index[audit["prefix_mismatches"] > 0])
        assert bool(flagged) == expect_leak, (centred, flagged)
        if expect_leak:
            assert "p_bull" in flagged
            assert audit.loc["p_bull", "lookahead_days"] == 5  # the centred window's half-width


def test_a_name_listing_inside_a_compared_window_is_no_false_alarm(synthetic):
    """The feature table has no rows for a name before its first close; recomputed on a cut
    panel the market-context columns fill those grid cells with the market's values. Only cells
    with a row are compared, so the late listing is not taken for a look-ahead."""
    market, _, _ = synthetic
    config, transform = F.FactorConfig(), F.TransformConfig()
    cut = config.lookback_days() + 60
    panel = market.panel
    listing = F.Grid.from_long(panel).dates[cut - 8]  # lists 8 dates before the cut
    panel = panel[(panel["ticker"] != "T0000") | (panel["date"] >= listing)]
    grid = F.Grid.from_long(panel)
    full, _ = F.engineer_factors(F.prepare_inputs(panel, None, config), config, transform)
    present = np.isfinite(grid.to_wide(np.ones(len(panel))))
    full = {name: np.where(present, values, np.nan) for name, values in full.items()}  # as rows
    compute = LA.factor_slice_computation(panel, None, grid, config, transform)
    table = LA.prefix_audit(full, compute, grid.dates, [cut], config.lookback_days(), CONFIG,
                            present=present)
    assert (table["prefix_mismatches"] == 0).all(), table[table["prefix_mismatches"] > 0]
    unmasked = LA.prefix_audit(full, compute, grid.dates, [cut], config.lookback_days(), CONFIG)
    assert unmasked.loc["fear_greed", "prefix_mismatches"] > 0  # the false alarm it was


def test_volume_and_candles_starting_later_than_close_are_no_false_alarm(synthetic):
    """Volume (or open / high / low) missing for the panel's first dates: a panel cut there has
    none at all, so the volume and candle factors cannot be built (or VWAP falls back to the
    close) while the full table has no value there either. Which factors exist is the panel's
    layout, not a value read after the cut: no factor may be dropped for it."""
    market, _, _ = synthetic
    config, transform = F.FactorConfig(), F.TransformConfig()
    panel = market.panel.copy()
    dates = F.Grid.from_long(panel).dates
    early = panel["date"] < dates[config.lookback_days() + 120]
    panel.loc[early, ["volume", "open", "high", "low"]] = np.nan
    grid = F.Grid.from_long(panel)
    full, _ = F.engineer_factors(F.prepare_inputs(panel, None, config), config, transform)
    compute = LA.factor_slice_computation(panel, None, grid, config, transform)
    cuts = [config.lookback_days() + 60, config.lookback_days() + 130, 880]
    table = LA.prefix_audit(full, compute, grid.dates, cuts, config.lookback_days(), CONFIG)
    assert {"vwap_5", "kmid", "amihud_20"} <= set(table.index)
    assert (table["prefix_mismatches"] == 0).all(), table[table["prefix_mismatches"] > 0]


def test_a_profile_on_a_few_dates_is_not_judged(caplog):
    """A price floor that leaves 1-5 names a date: two IC dates gave |IC| 0.75 and t 30 and the
    audit dropped ordinary factors as one-day peeks. Profiles on fewer than min_dates dates are
    named and left unjudged; the others are judged as before."""
    import logging

    columns = {f"ic_{j}": [0.0, 0.0, np.nan] for j in range(12)}
    profile = pd.DataFrame({**columns, "n_dates": [2, 500, 0], "t_2": [30.0, 30.0, np.nan]},
                           index=pd.Index(["thin", "wide", "mkt_ret_5"], name="factor"))
    profile.loc[["thin", "wide"], "ic_2"] = 0.75
    assert set(LA.future_peek_reasons(profile, CONFIG)) == {"thin", "wide"}
    with caplog.at_level(logging.INFO):
        judged = LA.judged_profiles(profile, CONFIG)
    assert list(judged.index) == ["wide"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith(
        "leak audit: 1 factor(s) have an IC on fewer than feature_engineering.leak_audit.min_dates")
    # a market-wide factor has no cross-sectional IC at all: named at INFO, not blamed on a
    # thin cross-section or a short history in a warning on every run
    assert warned[0].endswith("thin") and "mkt_ret_5" not in warned[0]
    assert "no cross-sectional IC on any development date" in caplog.text


def test_the_future_ic_profile_is_scored_on_the_selection_scope_only():
    """The profile drops factors, a choice: scored on `profile_rows` (the selection's scope,
    before the CV test windows), not on every development date. A user column that peeks at
    r(t+1) only on later dates is no suspect on the scope; on all development dates it is."""
    rng = np.random.default_rng(12)
    n_dates, n_names = 500, 60
    dates = pd.bdate_range("2015-01-01", periods=n_dates)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_dates, n_names)), axis=0))
    peek = _shift_up(LA.daily_returns(close), 1)
    peek[:300] = rng.standard_normal((300, n_names))  # honest noise on the scope's dates
    full = {"late_peek": centred_rank(peek)}

    def compute(start, first, stop):  # a precomputed table: prefix-invariant by construction
        return {name: values[first:stop] for name, values in full.items()}

    dev_rows = np.arange(n_dates - 12)
    scoped = LA.audit_factor_table(full, compute, close, dates, dev_rows, 0, max_offset=11,
                                   config=CONFIG, values_are_ranks=True,
                                   profile_rows=np.arange(250))
    everything = LA.audit_factor_table(full, compute, close, dates, dev_rows, 0, max_offset=11,
                                       config=CONFIG, values_are_ranks=True)
    assert "late_peek" not in scoped.suspects
    assert "r(t+1)" in everything.suspects["late_peek"]


def test_the_label_edge_check_reads_no_return_past_the_scopes_label_reach():
    """Scored on rows 0..299 with a label window ending at t+11, the profile (edge check
    included) reads returns up to row 310 only: closes from row 311 on changed, it is the same."""
    rng = np.random.default_rng(13)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (400, 40)), axis=0))
    factor = {"f": centred_rank(rng.standard_normal((400, 40)))}
    rows = np.arange(300)
    before = LA.future_ic_profile(factor, close, rows, 11, CONFIG, values_are_ranks=True)
    moved = close.copy()
    moved[311:] *= np.exp(rng.normal(0, 0.05, (89, 40)))
    after = LA.future_ic_profile(factor, moved, rows, 11, CONFIG, values_are_ranks=True)
    pd.testing.assert_frame_equal(before, after)
    assert np.isfinite(before.loc["f", "edge_tstat"])


def test_label_edge_keeps_an_ic_that_rises_into_the_labels_last_day():
    """A market whose signal flips sign in bear regimes, with a reversal: a 10-day moving-average
    gap's IC rises from r(t+5) to r(t+6), the last day of a 5-day label after a 1-day delay, and
    eases a little after it. That is a smooth hump, not a break: it was flagged (and dropped,
    though the prefix audit found nothing) because any drop beat a rise clamped to zero."""
    market = generate_synthetic_market(
        n_tickers=60, n_days=1500, seed=7, horizon=5, signal_strength=0.03,
        regime_signal_multipliers={"bull": 1.0, "neutral": 1.0, "bear": -1.0},
        reversal_strength=0.3)
    close = F.Grid.from_long(market.panel).to_wide(market.panel["close"].to_numpy())
    ma_10 = close / pd.DataFrame(close).rolling(10).mean().to_numpy() - 1
    profile = LA.future_ic_profile({"ma_10": ma_10}, close, np.arange(300, 1100), 6, CONFIG)
    before, inside, after = profile.loc["ma_10", ["edge_ic_before", "edge_ic_inside",
                                                   "edge_ic_after"]]
    assert before < inside and 0 < inside - after < inside - before  # the hump
    assert profile.loc["ma_10", "edge_tstat"] > CONFIG.min_edge_tstat  # the bend is "significant"
    assert LA.label_edge_reasons(profile, CONFIG, 6) == {}


def test_copies_of_future_returns_over_other_days_than_the_label_are_caught():
    """A probe's pure-noise market: noisy copies of close(t) -> close(t+10) (a forward return
    without the execution delay) and close(t+1) -> close(t+14) (a longer window) hold an IC of
    ~0.04 a day (t 7-10) but stop a day before, or three days after, the label's last day: the
    label-edge check missed both, they were selected and made a champion (test Sharpe 10.6). A
    fixed-window reversal that swings over at its window's end is no copy."""
    rng = np.random.default_rng(7)
    n_days, n_names = 2268, 60  # nine years: a copy this noisy needs them
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, (n_days, n_names))
                                  + rng.normal(0, 0.01, (n_days, 1)), axis=0))

    def noisy(forward: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # the last dates have no forward return
            warnings.simplefilter("ignore", RuntimeWarning)
            z = (forward - np.nanmean(forward, axis=1, keepdims=True)) / np.nanstd(
                forward, axis=1, keepdims=True)
        noise = rng.normal(size=forward.shape)
        return np.where(np.isfinite(z), 0.15 * z + noise, noise)

    early = noisy(_shift_up(close, 10) / close - 1)  # r(t+1..t+10): the label is r(t+2..t+11)
    late = noisy(_shift_up(close, 14) / _shift_up(close, 1) - 1)  # r(t+2..t+14)
    returns = LA.daily_returns(close)
    reversal = -sum(_shift_down(returns, k) for k in range(5))  # causal: 5 past days
    features = {"early": early, "late": late, "reversal": reversal,
                "noise": rng.normal(size=close.shape)}
    profile = LA.future_ic_profile(features, close, np.arange(30, 2200), max_offset=11,
                                   config=CONFIG)
    reasons = LA.label_edge_reasons(LA.judged_profiles(profile, CONFIG), CONFIG, 11)
    assert set(reasons) == {"early", "late"}
    # the scan reads the columns it is asked to (the pipeline: user columns only)
    only = LA.future_ic_profile(features, close, np.arange(30, 2200), max_offset=11,
                                config=CONFIG, scanned={"late"})
    assert set(LA.label_edge_reasons(LA.judged_profiles(only, CONFIG), CONFIG, 11)) == {"late"}
    assert "knows returns up to r(t+10) and none after" in reasons["early"]
    assert "knows returns up to r(t+14) and none after" in reasons["late"]


def test_the_projects_factors_under_a_fixed_window_reversal_are_not_scanned():
    """A market whose moves reverse over exactly 10 days gives a 5-day return a flat IC with
    r(t+1..t+6) that stops by t+9: a copy's profile. The project's factors are proven causal by
    the prefix audit and are not scanned; the same values handed in as a user column would be
    (nothing could tell them from a copy)."""
    market = generate_synthetic_market(n_tickers=100, n_days=1500, seed=11,
                                       reversal_strength=0.5, reversal_window=10)
    panel = market.panel.copy()
    grid = F.Grid.from_long(panel)
    close = grid.to_wide(panel["close"].to_numpy())
    config, transform = F.FactorConfig(), F.TransformConfig()
    full, families = F.engineer_factors(F.prepare_inputs(panel, None, config), config, transform)
    user = {name for name, family in families.items() if family == F.USER_FAMILY}
    profile = LA.future_ic_profile(full, close, np.arange(300, 1400), 11, CONFIG, True, user)
    assert not LA.label_edge_reasons(LA.judged_profiles(profile, CONFIG), CONFIG, 11)
    scanned_all = LA.future_ic_profile({"ret_5": full["ret_5"]}, close, np.arange(300, 1400), 11,
                                       CONFIG, True)
    assert "future-day edge" in LA.label_edge_reasons(scanned_all, CONFIG, 11)["ret_5"]



def test_a_profile_scope_running_to_the_panels_end_does_not_crash():
    """Rows whose r(t + d + h + 1) lies past the panel's last date have no edge to read: they
    are left out (the edge check indexed past the end)."""
    rng = np.random.default_rng(2)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (300, 30)), axis=0))
    profile = LA.future_ic_profile({"f": rng.normal(size=close.shape)}, close,
                                   np.arange(250, 299), 11, CONFIG)
    assert profile.loc["f", "n_dates"] > 0


def _user_columns_audit(market, columns):
    """The audit of a market's factor table with `columns` (name -> function of the date x name
    log-close matrix) added as user columns, scanned as the pipeline scans them."""
    panel = market.panel.copy()
    grid = F.Grid.from_long(panel)
    close = grid.to_wide(panel["close"].to_numpy())
    for name, make in columns.items():
        panel[name] = grid.to_long(make(np.log(close)))
    config, transform = F.FactorConfig(), F.TransformConfig()
    full, families = F.engineer_factors(F.prepare_inputs(panel, None, config), config, transform)
    compute = LA.factor_slice_computation(panel, None, grid, config, transform)
    user = {name for name, family in families.items() if family == F.USER_FAMILY}
    return LA.audit_factor_table(
        full, compute, close, grid.dates, np.arange(300, len(grid.dates) - 12),
        config.lookback_days(), max_offset=11, config=CONFIG, values_are_ranks=True,
        scanned=user,
    )


def test_a_deviation_from_a_two_sided_smoother_is_caught_and_its_causal_form_is_not():
    """A price's deviation from a filtfilt trend or a centred 21-day mean reads prices after t:
    its IC with r(t+1) mirrors its IC with r(t) (-0.46 / 0.46 on a random walk) and fades
    smoothly, so neither the spike rule (the opposite-signed r(t) IC excused it as a reversal)
    nor an edge saw it; it was the market's top selected factor. The same filters run forward
    only (lfilter, a trailing mean) reach r(t+1) with an IC near 0."""
    from scipy.signal import butter, filtfilt, lfilter

    b, a = butter(2, 0.1)

    def centred_mean(log_close: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(log_close)
        return (frame - frame.rolling(21, center=True).mean()).to_numpy()

    def trailing_mean(log_close: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(log_close)
        return (frame - frame.rolling(21).mean()).to_numpy()

    market = generate_synthetic_market(n_tickers=80, n_days=1200, seed=21)
    audit = _user_columns_audit(market, {
        "filtfilt_gap": lambda lp: lp - filtfilt(b, a, lp, axis=0),
        "centred_gap": centred_mean,
        "lfilter_gap": lambda lp: lp - lp[0] - lfilter(b, a, lp - lp[0], axis=0),
        "trailing_gap": trailing_mean,
    })
    assert {"filtfilt_gap", "centred_gap"} <= set(audit.suspects)
    assert not {"lfilter_gap", "trailing_gap", "signal_1"} & set(audit.suspects)
    assert "two-sided smoother" in audit.suspects["filtfilt_gap"]


def test_a_causal_return_in_a_market_whose_moves_reverse_is_no_two_sided_smoother():
    """When most of each move reverses within days, a causal 5-day return mirrors too (IC -0.29
    with r(t+1) against 0.30 with r(t)); the project's own return factors show that reversal as
    strongly, so a user's copy of one is kept. Judged without that reference it would go."""
    market = generate_synthetic_market(n_tickers=100, n_days=1200, seed=4,
                                       reversal_strength=0.99, reversal_window=5)

    def five_day_return(log_close: np.ndarray) -> np.ndarray:
        return log_close - _shift_down(log_close, 5)

    audit = _user_columns_audit(market, {"vendor_ret_5": five_day_return})
    assert "vendor_ret_5" not in audit.suspects
    profile = audit.table.set_index("factor")
    alone = LA.two_sided_filter_reasons(profile.loc[["vendor_ret_5"]], CONFIG, None)
    assert "vendor_ret_5" in alone


def test_values_made_with_months_of_later_prices_are_caught_and_known_at_t_ones_kept():
    """A probe's columns passed every check and the 0.3 label guard and lifted `final`'s test
    RankIC (S&P sample 0.002 -> 0.24..0.29): a 6-month forward return and a price's deviation
    from an EWMA run backwards in time fade slowly over every future day (no spike, no edge).
    They rank the next months almost perfectly; a trailing EWMA deviation, a 60-day momentum and
    the generator's planted signal do not. Nothing past the profile's label reach is read."""
    market = generate_synthetic_market(n_tickers=80, n_days=1000, seed=12)

    def back_ewm(log_close: np.ndarray) -> np.ndarray:
        close = pd.DataFrame(np.exp(log_close))
        return (close / close.iloc[::-1].ewm(halflife=120).mean().iloc[::-1] - 1).to_numpy()

    def trailing_ewm(log_close: np.ndarray) -> np.ndarray:
        close = pd.DataFrame(np.exp(log_close))
        return (close / close.ewm(halflife=120).mean() - 1).to_numpy()

    audit = _user_columns_audit(market, {
        "forward_126": lambda lp: _shift_up(lp, 126) - _shift_up(lp, 1),
        "backward_ewm": back_ewm,
        "trailing_ewm": trailing_ewm,
        "momentum_60": lambda lp: lp - _shift_down(lp, 60),
    })
    assert {"forward_126", "backward_ewm"} <= set(audit.suspects)
    assert "long-horizon IC" in audit.suspects["backward_ewm"]
    assert not {"trailing_ewm", "momentum_60", "signal_1"} & set(audit.suspects)
    table = audit.table.set_index("factor")
    assert table.loc["signal_1", "long_ic_126"] < 0.3
    # the windows end within the profile's label reach: a close past it changes nothing
    close = np.exp(np.log(market.panel.pivot(index="date", columns="ticker",
                                             values="close").to_numpy()))
    values = {"f": np.random.default_rng(0).normal(size=close.shape)}
    rows = np.arange(100, 600)
    base = LA.long_horizon_ics(values, close, rows, 611, CONFIG)
    later = close.copy()
    later[612:] *= 3.0
    assert LA.long_horizon_ics(values, later, rows, 611, CONFIG).equals(base)
    assert base.loc["f", "long_n_126"] == 611 - 126 - 100 + 1
