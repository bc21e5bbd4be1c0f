"""Trailing means of flat windows, exactly.

A trailing mean from running sums (the factor library's cumulative sums, pandas' rolling sums)
carries rounding noise of about 1e-16 of the running total, which depends on where the series
starts and on the units: over a window of identical values (a forward-filled or suspended price,
an unchanged volume) it comes out as x(1 ± 1e-13), not x. A feature such as close / mean - 1
then holds ±1e-13 instead of 0, and the per-date ranks ordered the flat names by that noise:
results changed with the price units (cents or dollars) and the history's first date (the leak
audit's truncated history saw a factor "not prefix-invariant"). A mean this close to the
window's current value is that value.
"""

from __future__ import annotations

import numpy as np

# Far above the summation noise (~1e-13 of a value over decades of daily data) and far below
# any real move (one tick of a $10,000 stock is 1e-6).
FLAT_TOLERANCE = 1e-10


def snap_flat_means(mean, current) -> np.ndarray:
    """`mean` where it differs from `current` by more than FLAT_TOLERANCE of it, else `current`
    (NaN where `mean` is NaN)."""
    mean = np.asarray(mean, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        flat = np.abs(mean - current) <= FLAT_TOLERANCE * np.abs(current)
    return np.where(flat, current, mean)


# A standard deviation from running sums of squares, x²-mean minus mean², keeps the square
# root of their noise: about 1e-7 of the mean over a flat window. No real series is that still.
FLAT_STD_TOLERANCE = 1e-6


def snap_flat_stds(std, mean) -> np.ndarray:
    """0 where `std` is below FLAT_STD_TOLERANCE of |mean| (a flat window), else `std`."""
    std = np.asarray(std, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        flat = std <= FLAT_STD_TOLERANCE * np.abs(np.asarray(mean, dtype=np.float64))
    return np.where(flat, 0.0, std)
