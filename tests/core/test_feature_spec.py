"""FeatureSpec: rebuilds the selected, smoothed and lagged features from a raw panel."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.features import factors as F
from bma_quant.core.features.feature_spec import FeatureSpec


@pytest.fixture(scope="module")
def market():
    m = generate_synthetic_market(12, 400, seed=9, n_noise_factors=1)
    return m.panel, m.market.rename(columns={"level": "market_level"})


def _spec(**kwargs) -> FeatureSpec:
    base = dict(
        factor_config=F.FactorConfig(),
        transform_config=F.TransformConfig(),
        selected=["ret_5", "signal_1", "fear_greed"],
        lags={"ret_5": 2, "signal_1": 0, "fear_greed": 0},
        halflives={"ret_5": 0.0, "signal_1": 5.0, "fear_greed": 0.0},
        families={"ret_5": "return", "signal_1": "user", "fear_greed": "market"},
    )
    return FeatureSpec(**{**base, **kwargs})


def test_transform_applies_smoothing_lags_and_fill(market):
    panel, level = market
    spec = _spec()
    out = spec.transform(panel, level)
    assert list(out.columns) == ["date", "ticker", "ret_5", "signal_1", "fear_greed"]
    assert len(out) == len(panel) and (out[spec.selected].dtypes == np.float32).all()
    assert np.isfinite(out[spec.selected].to_numpy()).all()
    # lag 2: the value at t is the transformed 5-day return at t - 2
    inputs = F.prepare_inputs(panel, level, spec.factor_config)
    transformed, _ = F.engineer_factors(inputs, spec.factor_config, spec.transform_config)
    wide = out.pivot(index="date", columns="ticker", values="ret_5").to_numpy()
    np.testing.assert_array_equal(wide[100], transformed["ret_5"][98])
    assert (wide[:7] == 0.0).all()  # warm-up cells are filled with the neutral value
    assert spec.market_context == ["fear_greed"]
    assert spec.warmup_days >= 504  # fear-greed windows + their normalisation


def test_rows_follow_the_input_panel_sorted(market):
    panel, level = market
    shuffled = panel.sample(frac=1.0, random_state=0)
    out = _spec().transform(shuffled, level)
    expected = panel.sort_values(["date", "ticker"])[["date", "ticker"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(out[["date", "ticker"]], expected, check_dtype=False)


def test_missing_columns_are_named(market):
    panel, level = market
    with pytest.raises(KeyError, match="signal_1"):
        _spec().transform(panel.drop(columns="signal_1"), level)


def test_model_features_are_prefix_invariant(market):
    panel, level = market
    spec = _spec()
    full = spec.transform(panel, level)
    cut = np.sort(panel["date"].unique())[250]
    part = spec.transform(panel[panel["date"] <= cut], level[level["date"] <= cut])
    pd.testing.assert_frame_equal(part, full[full["date"] <= cut].reset_index(drop=True))


def test_a_panel_without_a_family_s_columns_is_told_which_columns():
    """A close-only file given to a chain trained on OHLCV and a user factor names the missing
    input columns and what needs them, not the list of feature names."""
    from bma_quant.core.features.factors import FactorConfig, TransformConfig
    from bma_quant.core.features.feature_spec import FeatureSpec

    spec = FeatureSpec(factor_config=FactorConfig(), transform_config=TransformConfig(),
                       selected=["kmid", "klow", "pvcorr_20", "noise_1", "ret_5"], lags={},
                       halflives={}, families={"kmid": "candle", "klow": "candle",
                                               "pvcorr_20": "volume", "noise_1": "user",
                                               "ret_5": "return"})
    with pytest.raises(KeyError, match=r"open, high, low \(kmid, klow\); volume \(pvcorr_20\); "
                                       r"noise_1 \(a user factor\)"):
        spec.visible_matrices({"ret_5": None})


def test_a_slice_of_warmup_days_gives_the_full_historys_features(market):
    """The warm-up holds the longest window, the largest lag and enough half-lives for the EWM
    to converge to float32 precision: a slice starting that many dates before t gives the
    full history's features at t (10 half-lives left them 0.1 % off)."""
    panel, level = market
    short = dict.fromkeys(("ma_windows", "extreme_windows", "rank_windows", "drawdown_windows",
                           "volatility_windows", "beta_windows", "reversal_windows",
                           "up_windows", "vwap_windows", "volume_windows", "pv_corr_windows",
                           "amihud_windows", "market_return_windows",
                           "market_volatility_windows", "breadth_windows"), ())
    config = F.FactorConfig(return_windows=(5,), momentum_long=10, momentum_skip=2,
                            fear_greed=False, factor_performance=False, **short)
    spec = _spec(factor_config=config, selected=["ret_5", "signal_1"],
                 lags={"ret_5": 2, "signal_1": 1}, halflives={"ret_5": 3.0, "signal_1": 5.0},
                 families={"ret_5": "return", "signal_1": "user"})
    assert spec.warmup_days == 10 + 2 + 24 * 5
    dates = pd.DatetimeIndex(sorted(panel["date"].unique()))
    full = spec.transform(panel, level)
    sliced = spec.transform(panel[panel["date"] >= dates[-1 - spec.warmup_days]], level)
    last = dates[-1]
    expected = full.loc[full["date"] == last, spec.selected].to_numpy()
    got = sliced.loc[sliced["date"] == last, spec.selected].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-7)


def test_the_warm_up_reads_every_factor_familys_windows():
    """`feature_history_days` listed the window fields by hand: a family added later (a
    researcher's `sharpe_windows: [600]`) warmed the serving chain up for 504 days, not 601."""
    from dataclasses import dataclass, field

    from bma_quant.core.features.factors import FactorConfig
    from bma_quant.core.features.warmup import feature_history_days

    @dataclass(frozen=True)
    class WithSharpe(FactorConfig):
        sharpe_windows: tuple = field(default=(600,))

    config = WithSharpe()
    assert config.lookback_days() == 601
    assert feature_history_days(config, False, False, 0, 0) == 600
    base = FactorConfig()
    assert feature_history_days(base, False, False, 0, 0) == base.longest_window()
