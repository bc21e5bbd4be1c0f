"""Adaptive factor decay (seed §2.2.2): time-decay sample weights and causal EWM smoothing.

- Sample weights: a development row dated t gets weight 0.5 ** (age / half_life), where age is
  the number of trading days from t to the last development date, normalised to mean 1, so recent
  history counts more. Only relative weights matter to the learners, so a fold trained on an
  earlier slice of the same dates gets the same relative weights.
- EWM smoothing: an exponentially weighted mean along time within each ticker (pandas `ewm`,
  which only looks backwards). Cells whose input is missing stay missing: the smoother must not
  carry a value forward through a gap (no unlimited forward fill).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter


def time_decay_weights(dates, half_life_days: float | None) -> pd.DataFrame:
    """(date, weight) for the given trading dates; weight = 0.5 ** (age / half_life), mean 1.

    `half_life_days` None or <= 0 gives equal weights."""
    calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    age = np.arange(len(calendar) - 1, -1, -1, dtype=np.float64)
    if half_life_days is None or float(half_life_days) <= 0:
        weights = np.ones(len(calendar))
    else:
        weights = np.power(0.5, age / float(half_life_days))
    if len(weights):
        weights = weights / weights.mean()
    return pd.DataFrame({"date": calendar, "weight": weights})


def ewm_smooth(
    values: np.ndarray, halflife: float | None, weight_cache: dict | None = None
) -> np.ndarray:
    """Causal EWM along rows (dates) of a date x ticker matrix; missing inputs stay missing.

    y_t = sum_i a**i x_(t-i) / sum_i a**i over the observed x_(t-i), a = 0.5 ** (1 / halflife):
    pandas' `ewm(halflife, adjust=True, ignore_na=False)`, where a missing day still ages the
    older observations. Computed in float32 with a first-order recursive filter along time for
    all tickers at once; the result is float32. `halflife` None or <= 0 returns the values
    unchanged (as float32). `weight_cache` (a dict) reuses the normalising weights between
    matrices with the same missing-value pattern."""
    values = np.asarray(values, dtype=np.float32)
    if halflife is None or float(halflife) <= 0:
        return values.copy()
    decay = np.float32(0.5 ** (1.0 / float(halflife)))
    # Filter along the last axis of the transposed (ticker x date) array: contiguous in time.
    valid = np.isfinite(values).T
    denominator = [np.float32(1.0), -decay]
    numerator = lfilter([np.float32(1.0)], denominator, np.where(valid, values.T, np.float32(0.0)))
    key = None
    if weight_cache is not None:
        key = (float(halflife), valid.shape, hash(np.packbits(valid).tobytes()))
    weight = weight_cache.get(key) if key is not None else None
    if weight is None:
        weight = lfilter([np.float32(1.0)], denominator, valid.astype(np.float32))
        if key is not None:
            weight_cache[key] = weight
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (numerator / weight).astype(np.float32)
    out[~valid] = np.nan
    return np.ascontiguousarray(out.T)
