"""Fear-greed composite: bounded, causal (prefix-invariant), responds to market stress."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.features.fear_greed import (
    FearGreedParams,
    fear_greed_components,
    fear_greed_index,
)


def _market(n_days=700, n_names=30, seed=0, crash_at=None):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=n_days)
    market = 0.0004 + 0.01 * rng.standard_normal(n_days)
    if crash_at is not None:
        market[crash_at : crash_at + 30] = -0.02 + 0.04 * rng.standard_normal(30)
    returns = market[:, None] + 0.01 * rng.standard_normal((n_days, n_names))
    close = pd.DataFrame(100 * np.cumprod(1 + returns, axis=0), index=dates)
    level = pd.DataFrame(
        {"date": dates, "market_level": 100 * np.cumprod(1 + market), "market_return": market}
    )
    return close, level


def test_index_is_bounded_and_defined_after_warmup():
    close, market = _market()
    fg = fear_greed_index(close, market, FearGreedParams())
    assert fg.name == "fear_greed" and fg.index.equals(close.index)
    valid = fg.dropna()
    assert len(valid) > 400
    assert valid.between(0, 100).all()


def test_index_is_prefix_invariant():
    close, market = _market()
    full = fear_greed_index(close, market, {})
    for cut in (300, 550):
        part = fear_greed_index(close.iloc[:cut], market.iloc[:cut], {})
        pd.testing.assert_series_equal(part, full.iloc[:cut])


def test_a_bad_print_in_the_market_does_not_blur_its_later_volatility():
    """pandas' rolling std keeps a huge value in its running sums: a market move of +5e4 (one
    name of 20 printed at 1e-6 of its price) left the volatility component up to 1.5e-4 off a
    year on; the project's rolling std resolves it to 1e-6 at most."""
    close, market = _market()
    spiked = market.copy()
    spiked.loc[100, "market_return"], spiked.loc[101, "market_return"] = 5e4, -0.99998
    window = FearGreedParams().volatility_baseline_window + FearGreedParams().volatility_window
    later = slice(102 + window, None)
    got = fear_greed_components(close, spiked)["volatility"].to_numpy()[later]
    expected = fear_greed_components(close, market)["volatility"].to_numpy()[later]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_crash_drives_the_index_towards_fear():
    close, market = _market(crash_at=500)
    fg = fear_greed_index(close, market)
    assert fg.iloc[525:530].mean() < 25 < fg.iloc[450:495].mean()
    parts = fear_greed_components(close, market)
    assert parts.loc[close.index[528], "volatility"] > 1.5  # vol far above its one-year average
    assert parts.loc[close.index[528], "breadth"] < 0.3


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        FearGreedParams.from_params({"windw": 3})
