"""Per-date cross-sectional transforms of date x ticker matrices (rows are dates).

Each transform looks at one date's cross-section only, so nothing is fitted across time and the
result at t never depends on other dates (leak-free and prefix-invariant by construction).
Order: winsorise at per-date quantiles, demean within sector on each date (when sectors are
known), then rank (centred percentile ranks in (-0.5, 0.5)) or z-score. Neutralising before the
final step keeps the output a proper rank (or z-score) of the sector-relative value, so RankIC on
it needs no second ranking.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("rank", "zscore", "none")


def winsorise(values: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Clip each row to its own [lower, upper] quantiles (NaN kept; all-NaN rows stay NaN)."""
    if not 0.0 <= lower < upper <= 1.0:
        raise ValueError(
            f"winsorise quantiles must satisfy 0 <= lower < upper <= 1, got {lower}, {upper}"
        )
    values = np.asarray(values, dtype=np.float64)
    if lower == 0.0 and upper == 1.0:
        return values.copy()
    # A sort per row (NaN last) gives both quantiles by linear interpolation, as np.nanquantile
    # does, at a fraction of its cost on wide panels.
    ordered = np.sort(values, axis=1)
    counts = np.isfinite(values).sum(axis=1)
    rows = np.arange(values.shape[0])
    bounds = []
    for q in (lower, upper):
        position = q * np.maximum(counts - 1, 0)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, np.maximum(counts - 1, 0))
        weight = position - below
        lo_val = ordered[rows, np.minimum(below, values.shape[1] - 1)]
        hi_val = ordered[rows, np.minimum(above, values.shape[1] - 1)]
        bound = lo_val + weight * (hi_val - lo_val)
        bound[counts == 0] = np.nan
        bounds.append(bound[:, None])
    with np.errstate(invalid="ignore"):
        return np.clip(values, bounds[0], bounds[1])


def _sortable_keys(values: np.ndarray) -> np.ndarray:
    """float32 values -> uint32 keys with the same order (missing values sort last)."""
    x = np.asarray(values, dtype=np.float32) + np.float32(0.0)  # -0.0 -> 0.0: one key per value
    bits = x.view(np.uint32)
    keys = np.where(bits >> np.uint32(31) == 1, ~bits, bits | np.uint32(0x80000000))
    keys[~np.isfinite(x)] = np.uint32(0xFFFFFFFF)
    return keys


def row_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) within each row; NaN stays NaN.

    Ranks are taken on the float32 values (the precision features are stored in). Each row is
    sorted once as (value key << 32 | column) integers, which numpy sorts with SIMD, and tied
    runs get the mean of their sorted positions. Equals pandas `rank(axis=1)` on float32 data."""
    values = np.asarray(values)
    n_rows, n_cols = values.shape
    out = np.full((n_rows, n_cols), np.nan)
    if values.size == 0:
        return out
    keys = _sortable_keys(values)
    flat_index = np.arange(values.size, dtype=np.uint64).reshape(n_rows, n_cols)
    packed = (keys.astype(np.uint64) << np.uint64(32)) | flat_index  # sizes < 2**32 cells
    packed.sort(axis=1)
    sorted_keys = (packed >> np.uint64(32)).astype(np.uint32)
    position = np.arange(n_cols, dtype=np.int32)
    # missing values (key 0xFFFFFFFF) sort last and are not ties of each other
    tie_with_next = (sorted_keys[:, 1:] == sorted_keys[:, :-1]) & (
        sorted_keys[:, 1:] != np.uint32(0xFFFFFFFF)
    )
    if tie_with_next.any():
        starts = np.ones((n_rows, n_cols), dtype=bool)
        starts[:, 1:] = ~tie_with_next
        ends = np.ones((n_rows, n_cols), dtype=bool)
        ends[:, :-1] = ~tie_with_next
        first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, position, n_cols - 1)[:, ::-1], axis=1)[:, ::-1]
        ranks = 0.5 * (first + last) + 1.0
    else:
        ranks = np.broadcast_to(position + 1.0, (n_rows, n_cols))
    target = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64).ravel()
    out.ravel()[target] = ranks.ravel()
    out[keys == np.uint32(0xFFFFFFFF)] = np.nan
    return out


def centred_rank(values: np.ndarray) -> np.ndarray:
    """Per-row percentile ranks centred on zero: (rank - 0.5) / n - 0.5, in (-0.5, 0.5)."""
    ranks = row_ranks(values)
    counts = np.isfinite(values).sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ranks - 0.5) / counts - 0.5


def zscore(values: np.ndarray) -> np.ndarray:
    """Per-row (x - mean) / std (ddof 0); rows with zero spread become 0 where valid."""
    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values)
    count = valid.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = values - np.where(valid, values, 0.0).sum(axis=1, keepdims=True) / count
        std = np.sqrt(np.where(valid, centred * centred, 0.0).sum(axis=1, keepdims=True) / count)
        out = np.where(std > 0, centred / std, 0.0)
    out[~valid] = np.nan
    return out


def sector_codes(sector_wide: np.ndarray) -> np.ndarray:
    """date x ticker sector labels -> integer codes (-1 where the sector is unknown)."""
    flat = pd.Series(np.asarray(sector_wide, dtype=object).ravel())
    codes, _ = pd.factorize(flat, use_na_sentinel=True)
    return codes.reshape(np.shape(sector_wide)).astype(np.int64)


# What names outside a sector big enough to demean within get (SMALL_SECTOR_FALLBACKS):
# "whole_date": the date's mean over every valid name is subtracted; "raw": left as they are
# (what chains pickled before the choice existed did: their TransformConfig reads "raw")
SMALL_SECTOR_FALLBACKS = ("whole_date", "raw")
# Stretches of dates with one sector assignment up to which each is demeaned at once; more (an
# assignment that changes every few dates) go through the per-date path
MAX_SECTOR_RUNS = 64


def sector_neutralise(values: np.ndarray, codes: np.ndarray, min_size: int = 1,
                      fallback: str = "whole_date", order_free: bool = True) -> np.ndarray:
    """Subtract each (date, sector) mean over the sector's valid names on that date.

    Names with an unknown sector (-1), and sectors with fewer than `min_size` valid names on a
    date (demeaning a lone name would erase it), have the date's mean over every valid name
    subtracted instead (`fallback` "whole_date"), on dates where some sector was demeaned: left
    raw, a positive factor (a volatility) would put them all above the demeaned names, which
    sit around 0, at the top of every date's ranking. A date without a sector big enough (or a
    panel without any) is left as it is, as without sectors. `order_free` False: the sums in
    the columns' order, as chains pickled before the order-free sums were trained
    (`_column_order_neutralise`)."""
    values = np.asarray(values, dtype=np.float64)
    n_rows, _ = values.shape
    n_sectors = int(codes.max()) + 1 if codes.size else 0
    if n_sectors <= 0:
        return values.copy()
    if not order_free:
        return _column_order_neutralise(values, codes, n_sectors, min_size, fallback)
    starts = np.flatnonzero(np.r_[True, (codes[1:] != codes[:-1]).any(axis=1)]) \
        if n_rows else np.zeros(0, dtype=np.int64)
    if len(starts) <= MAX_SECTOR_RUNS:
        # sectors change on a few dates (reclassifications): each stretch of dates with one
        # assignment is demeaned at once; the same bits as per date (sums added one by one)
        parts = [_neutralise_static(values[a:b], codes[a], n_sectors, min_size)
                 for a, b in zip(starts, [*starts[1:], n_rows], strict=True)]
        out = np.concatenate([o for o, _ in parts]) if parts else values.copy()
        within = (np.concatenate([w for _, w in parts]) if parts
                  else np.zeros(values.shape, dtype=bool))
    else:
        out, within = _neutralise_varying(values, codes, n_sectors, min_size)
    # per date, so a date reads the same whatever later dates hold (prefix invariance)
    rest = np.isfinite(values) & ~within & within.any(axis=1, keepdims=True)
    if fallback == "whole_date" and rest.any():
        with np.errstate(invalid="ignore", divide="ignore"):  # a date without a valid value
            whole = _order_free_sums(values) / np.isfinite(values).sum(axis=1, keepdims=True)
        out = np.where(rest, _demeaned(values, whole), out)
    return out


def _column_order_neutralise(values: np.ndarray, codes: np.ndarray, n_sectors: int,
                             min_size: int, fallback: str) -> np.ndarray:
    """Sector demeaning as it was before the sums became order-free: each sum in the columns'
    (tickers') order, no tie snapping. Kept for chains pickled then, so serving computes their
    features with the bits they were trained on."""
    valid = np.isfinite(values)
    usable = valid & (codes >= 0)
    n_rows = values.shape[0]
    group = (np.arange(n_rows)[:, None] * n_sectors + codes)[usable]
    size = n_rows * n_sectors
    if n_rows and (codes == codes[:1]).all():
        sums = np.zeros(size)
        for sector in range(n_sectors):
            cols = np.flatnonzero(codes[0] == sector)
            if cols.size:
                sums[np.arange(n_rows) * n_sectors + sector] = np.where(
                    valid[:, cols], values[:, cols], 0.0).sum(axis=1)
    else:
        sums = np.bincount(group, weights=values[usable], minlength=size)
    counts = np.bincount(group, minlength=size)
    large = counts >= max(min_size, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(large, sums / counts, 0.0)
    out = values.copy()
    out[usable] = values[usable] - means[group]
    within = np.zeros(values.shape, dtype=bool)
    within[usable] = large[group]
    rest = valid & ~within & within.any(axis=1, keepdims=True)
    if fallback == "whole_date" and rest.any():
        with np.errstate(invalid="ignore", divide="ignore"):
            whole = (np.where(valid, values, 0.0).sum(axis=1, keepdims=True)
                     / valid.sum(axis=1, keepdims=True))
        out = np.where(rest, values - whole, out)
    return out


def _neutralise_varying(
    values: np.ndarray, codes: np.ndarray, n_sectors: int, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sector demeaning with sectors that change over time; also the cells demeaned (True)."""
    n_rows = values.shape[0]
    usable = np.isfinite(values) & (codes >= 0)
    group = (np.arange(n_rows)[:, None] * n_sectors + codes)[usable]
    size = n_rows * n_sectors
    # each row's values added in ascending order, whatever the columns' (tickers') order
    order = np.argsort(np.where(usable, values, np.inf), axis=1, kind="stable")
    in_order = np.take_along_axis(usable, order, axis=1)
    sums = np.bincount(
        (np.arange(n_rows)[:, None] * n_sectors + np.take_along_axis(codes, order, axis=1))[
            in_order],
        weights=np.take_along_axis(values, order, axis=1)[in_order], minlength=size)
    counts = np.bincount(group, minlength=size)
    large = counts >= max(min_size, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(large, sums / counts, 0.0)
    out = values.copy()
    out[usable] = _demeaned(values[usable], means[group])
    within = np.zeros(values.shape, dtype=bool)
    within[usable] = large[group]
    return out, within


def _order_free_sums(values: np.ndarray) -> np.ndarray:
    """Row sums of the finite values (a column per row): added one by one in ascending order
    (a missing value adds an exact 0), so the same names under other tickers (the columns in
    another order) give the same bits, a tie between names stays one whatever they are called,
    and the sums are `_neutralise_varying`'s (bincount adds its sorted values the same way)."""
    if values.shape[1] == 0:
        return np.zeros((values.shape[0], 1))
    ordered = np.sort(np.where(np.isfinite(values), values, 0.0), axis=1)
    return np.cumsum(ordered, axis=1)[:, -1:]


def _demeaned(values: np.ndarray, means: np.ndarray) -> np.ndarray:
    """values - means, with a difference within rounding of its operands set to 0: a name at
    its sector's mean is a tie with every other such name (0.55 - 0.55000000000000004 is one),
    not ranked by the last bit of a sum."""
    out = values - means
    tolerance = 4 * np.finfo(np.float64).eps * np.maximum(np.abs(values), np.abs(means))
    return np.where(np.abs(out) <= tolerance, 0.0, out)


def _neutralise_static(
    values: np.ndarray, codes: np.ndarray, n_sectors: int, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sector demeaning when every ticker keeps its sector on all dates: one vectorised pass
    per sector (a handful), each over that sector's columns for all dates at once; also the
    cells demeaned (True)."""
    out = values.copy()
    valid = np.isfinite(values)
    within = np.zeros(values.shape, dtype=bool)
    for sector in range(n_sectors):
        cols = np.flatnonzero(codes == sector)
        if cols.size == 0:
            continue
        block = values[:, cols]
        counts = valid[:, cols].sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = _order_free_sums(block) / counts
        large = counts >= max(min_size, 1)
        out[:, cols] = _demeaned(block, np.where(large, means, 0.0))
        within[:, cols] = valid[:, cols] & large
    return out, within


def cross_sectional_transform(
    values: np.ndarray,
    method: str = "rank",
    winsor: tuple[float, float] | None = (0.01, 0.99),
    codes: np.ndarray | None = None,
    min_sector_size: int = 1,
    small_sector_fallback: str = "whole_date",
    order_free: bool = True,
) -> np.ndarray:
    """Winsorise, sector-neutralise (when `codes` is given), then rank or z-score, per date.

    Non-finite inputs are treated as missing. For `rank`, winsorising only ties the tails (the
    clipped values share their average rank)."""
    if method not in METHODS:
        raise ValueError(f"transform method must be one of {METHODS}, got {method!r}")
    values = np.asarray(values, dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    if winsor is not None and method != "none":
        values = winsorise(values, float(winsor[0]), float(winsor[1]))
    if codes is not None:
        values = sector_neutralise(values, codes, min_sector_size, small_sector_fallback,
                                   order_free)
    if method == "rank":
        values = centred_rank(values)
    elif method == "zscore":
        values = zscore(values)
    return values
