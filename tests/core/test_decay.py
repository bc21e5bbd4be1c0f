"""Time-decay sample weights and causal EWM smoothing."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.features.decay import ewm_smooth, time_decay_weights


def test_time_decay_weights_halve_every_half_life():
    dates = pd.bdate_range("2020-01-01", periods=300)
    w = time_decay_weights(dates[::-1], half_life_days=100)  # order of input does not matter
    assert list(w.columns) == ["date", "weight"]
    assert w["date"].is_monotonic_increasing and len(w) == 300
    assert w["weight"].mean() == pytest.approx(1.0)
    ratio = w["weight"].iloc[-1] / w["weight"].iloc[-101]
    assert ratio == pytest.approx(2.0)
    assert (np.diff(w["weight"]) > 0).all()
    flat = time_decay_weights(dates, None)
    assert (flat["weight"] == 1.0).all()


def test_ewm_matches_pandas_and_keeps_gaps_missing():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    out = ewm_smooth(x, 5.0, weight_cache={})
    expected = (
        pd.DataFrame(x.astype(np.float64))
        .ewm(halflife=5.0, ignore_na=False)
        .mean()
        .to_numpy()
        .copy()
    )
    expected[np.isnan(x)] = np.nan
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))
    np.testing.assert_array_equal(ewm_smooth(x, 0), x)


def test_ewm_is_prefix_invariant_and_cache_consistent():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    x[50:60, 2] = np.nan
    cache: dict = {}
    full = ewm_smooth(x, 10.0, cache)
    again = ewm_smooth(x, 10.0, cache)  # cached normalising weights
    np.testing.assert_array_equal(full, again)
    np.testing.assert_array_equal(ewm_smooth(x[:120], 10.0), full[:120])
