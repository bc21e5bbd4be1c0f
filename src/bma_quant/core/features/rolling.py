"""Trailing-window primitives on date x ticker arrays (vectorised over all tickers at once):
shift, rolling sum / mean / std from shared cumulative sums, rolling max / min / percentile.

Every value at t reads rows <= t only, identically on any prefix of the rows (the factors'
prefix invariance rests on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d


def shift(values: np.ndarray, periods: int) -> np.ndarray:
    """values[t - periods] at t (NaN for the first `periods` rows); periods >= 0 only."""
    if periods < 0:
        raise ValueError("factors only look backwards: shift periods must be >= 0")
    values = np.asarray(values, dtype=np.float64)
    if periods == 0:
        return values
    out = np.full_like(values, np.nan)
    out[periods:] = values[:-periods]
    return out


# A cumulative sum keeps its rounding error relative to everything summed so far: once a value
# far larger than a window's own (a bad print's +1e6 return, 1e12 squared) has entered it, the
# difference of two cumulative sums no longer resolves a later window's sum (a 20-day std came
# out 0 two hundred days after such a print). A cell whose cumulative mass up to t is too large
# for its window's sum is summed again directly: a rule on rows <= t, so prefix-invariant, that
# leaves ordinary data's sums as they were (no cell of the S&P sample or of the synthetic
# markets is summed again).
_CUMSUM_ERROR = 128 * np.finfo(np.float64).eps  # a cumulative sum's rounding, per unit of mass
_WINDOW_RTOL = 1e-6  # the relative error accepted in a window's sum
_MASS_LIMIT = _CUMSUM_ERROR / _WINDOW_RTOL  # a window's mass below this x the cumulative mass


@dataclass(frozen=True)
class Cumulative:
    """Cumulative sums along time of a matrix's finite values (and optionally their squares) and
    their counts, so several trailing windows over the same input share one pass; with the
    values themselves, which a cell the sums cannot resolve is summed again from."""

    total: np.ndarray
    count: np.ndarray
    squares: np.ndarray | None = None
    values: np.ndarray | None = None  # the input (not a copy: it is alive anyway)
    # built on first use: cumulative |values| (the total itself when none is < 0), the count
    # of finite values that are not 0 (a window of zeros is resolved exactly)
    _lazy: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, values: np.ndarray, squares: bool = False) -> Cumulative:
        valid = np.isfinite(values)
        clean = np.where(valid, values, 0.0)
        return cls(
            total=np.cumsum(clean, axis=0),
            count=np.cumsum(valid, axis=0, dtype=np.int32),
            squares=np.cumsum(clean * clean, axis=0) if squares else None,
            values=values,
        )

    def _clean(self) -> np.ndarray:
        return np.where(np.isfinite(self.values), self.values, 0.0)

    def mass(self) -> np.ndarray:
        if "mass" not in self._lazy:
            negative = self.values < 0  # NaN is not
            self._lazy["mass"] = (np.cumsum(np.abs(self._clean()), axis=0) if negative.any()
                                  else self.total)
        return self._lazy["mass"]

    def nonzero(self) -> np.ndarray:
        if "nonzero" not in self._lazy:
            self._lazy["nonzero"] = np.cumsum(self._clean() != 0, axis=0, dtype=np.int32)
        return self._lazy["nonzero"]

    def resolved(self, sums: np.ndarray, mass: np.ndarray, window: int,
                 power: int) -> np.ndarray:
        """`sums` (trailing window sums of the values to `power`, from the cumulative `mass` of
        their magnitudes when that is their own cumulative sum) with each cell whose
        cumulative mass up to t is too large for its window's summed again directly."""
        window_mass = sums if mass is self.squares or mass is self.total else _trailing(
            mass, window)
        lost = mass > window_mass / _MASS_LIMIT
        if not lost.any():
            return sums
        lost &= _trailing(self.nonzero(), window) > 0
        if not lost.any():
            return sums
        cells = np.nonzero(lost)
        rows, rest = cells[0], cells[1:]
        exact = np.zeros(rows.size)
        for lag in range(min(window, len(self.values))):  # window offsets, not cells
            ok = rows >= lag
            cell = self.values[(rows[ok] - lag, *(c[ok] for c in rest))]
            exact[ok] += np.where(np.isfinite(cell), cell, 0.0) ** power
        out = sums.copy()
        out[cells] = exact
        return out


def _as_cumulative(values, squares: bool = False) -> Cumulative:
    if isinstance(values, Cumulative) and (values.squares is not None or not squares):
        return values
    if isinstance(values, Cumulative):
        raise ValueError("rolling_std needs a Cumulative built with squares=True")
    return Cumulative.of(np.asarray(values, dtype=np.float64), squares)


def _trailing(cumulative: np.ndarray, window: int) -> np.ndarray:
    """Sum over the trailing `window` rows from a cumulative sum (the value at t only involves
    rows <= t, identically on any prefix)."""
    out = cumulative.copy()
    out[window:] -= cumulative[:-window]
    return out


def _window_sums(values, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing sums of the finite values and their counts over `window` rows."""
    cum = _as_cumulative(values)
    total = cum.resolved(_trailing(cum.total, window), cum.mass(), window, 1)
    return total, _trailing(cum.count, window)


def rolling_sum(values, window: int, min_periods: int) -> np.ndarray:
    """Trailing-window sum of a matrix (or of a precomputed `Cumulative`)."""
    total, count = _window_sums(values, window)
    return np.where(count >= min_periods, total, np.nan)


def rolling_mean(values, window: int, min_periods: int) -> np.ndarray:
    total, count = _window_sums(values, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= max(min_periods, 1), total / count, np.nan)


def rolling_std(values, window: int, min_periods: int) -> np.ndarray:
    """Sample standard deviation (ddof 1) over the trailing window."""
    cum = _as_cumulative(values, squares=True)
    total, count = _window_sums(cum, window)
    squares = cum.resolved(_trailing(cum.squares, window), cum.squares, window, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = (squares - total * total / count) / (count - 1)
    variance = np.maximum(variance, 0.0)  # rounding can leave -0.0-ish dust
    return np.where(count >= max(min_periods, 2), np.sqrt(variance), np.nan)


def _rolling_extreme(values: np.ndarray, window: int, min_periods: int, high: bool) -> np.ndarray:
    fill = -np.inf if high else np.inf
    clean = np.where(np.isfinite(values), values, fill)
    filt = maximum_filter1d if high else minimum_filter1d
    # origin (w - 1) // 2 makes the window trailing: rows t - w + 1 .. t
    out = filt(clean, window, axis=0, origin=(window - 1) // 2, mode="constant", cval=fill)
    _, count = _window_sums(values, window)
    return np.where(count >= max(min_periods, 1), out, np.nan)


def rolling_max(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    return _rolling_extreme(values, window, min_periods, high=True)


def rolling_min(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    return _rolling_extreme(values, window, min_periods, high=False)


def rolling_percentile(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Percentile rank (average ties, in (0, 1]) of each value within its trailing window, as
    pandas `rolling(window).rank(pct=True)`; one vectorised pass per window offset."""
    valid = np.isfinite(values)
    less = np.zeros(values.shape, dtype=np.float64)
    equal = np.zeros(values.shape, dtype=np.float64)
    for offset in range(1, min(window, len(values))):  # window offsets, not tickers or dates
        past, now = values[:-offset], values[offset:]
        less[offset:] += past < now
        equal[offset:] += past == now
    _, count = _window_sums(values, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        rank = (less + 1.0 + 0.5 * equal) / count
    return np.where(valid & (count >= max(min_periods, 1)), rank, np.nan)
