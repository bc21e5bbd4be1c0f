"""Run-time leak audit of the factor table (DESIGN §3): two checks on every factor of every run.

- Prefix invariance (computed factors and market context): the factor table is recomputed on the
  panel cut at a few development dates and compared with the full computation on the last
  `compare_days` dates before each cut. A factor that reads data after t shows up there: a k-day
  look-ahead changes (or blanks) its values on the last k dates before the cut. Each cut only
  needs the trailing `history` dates the longest factor window reads, so the recomputation costs
  a few slices, not a few full builds. User columns pass through unchanged, so this check cannot
  see a peek inside them; the next one can.
- Future-day IC profile (every factor, computed or user-supplied): the mean cross-sectional
  Spearman IC of the factor at t with each single daily return r(t+j) = close(t+j) / close(t+j-1)
  - 1, j = 0 .. d + h, on development dates. Information known at t predicts a single future day
  weakly and smoothly (a persistent signal spreads over many days; short-term reversal reaches
  r(t+1) but less than r(t), which it is built from). A peek at one day is a spike: a large |IC|
  on one future day, far above the factor's IC on its other days and with the past return r(t).
  This catches a one-day peek into the label window that the |RankIC with the label| guard misses
  (its RankIC with a 10-day label is only about 1 / sqrt(10) = 0.3).
- Long horizon (user columns): the mean RankIC with the forward return over months (63, 126
  days). A forward return over a longer window than the label's, a price's deviation from a
  smoother run backwards in time, or a fundamental restated with later prices fades slowly over
  every future day, with neither spike nor edge, and stays under the 0.3 label guard, yet ranks
  the months after t almost perfectly (0.59-0.99); a known-at-t factor does not (S&P factors below
  0.07, the generator's planted signal 0.21-0.26). Overlapping windows make few dates one
  observation: judged on at least `long_min_windows` windows' worth of dates.
- Two-sided smoother (user columns): a price's deviation from a centred moving average, a
  filtfilt / Hodrick-Prescott / Gaussian trend reads prices on both sides of t. On a random walk
  its IC with r(t+1) is exactly minus its IC with r(t) (the smoother's weights after t are half
  of those off t), then fades over the smoother's width: no spike and no edge, so (b) and (c)
  keep it. Information known at t reaches r(t+1) with the opposite sign only through a reversal,
  which takes back a fraction of the move (at most about half, a pure bid-ask bounce's).
- Label-window edge (same profile, j up to d + h + `edge_days`): a column made from the forward
  return itself (a target, or a vendor series stamped at the window's end) plus noise has a
  RankIC with the label well below the guard's 0.3 and an IC spread thinly over every day of the
  window, so neither check above sees it. But its IC with r(t+j) holds up to the label's last
  day and stops the day after, where anything known at t fades smoothly. The same break at any
  other future day up to `edge_scan_factor` x (d + h) is scanned for too: a forward return
  computed without the execution delay (close(t) -> close(t+h)) breaks off a day early, one over
  a longer window a few days late, and neither reaches the label's own edge.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bma_quant.core.evaluation.metrics import newey_west_tstat
from bma_quant.core.features.factors import (
    FactorConfig,
    Grid,
    TransformConfig,
    engineer_factors,
    prepare_inputs,
)
from bma_quant.core.features.selection import rowwise_corr
from bma_quant.core.features.transforms import row_ranks

logger = logging.getLogger(__name__)

# (start, first, stop) -> the factor table computed from the panel's date rows start .. stop - 1
# only, returned on rows first .. stop - 1 (the full table's columns)
SliceComputation = Callable[[int, int, int], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class LeakAuditConfig:
    prefix_cuts: int = 3
    compare_days: int = 21
    atol: float = 1e-6
    rtol: float = 1e-5
    min_names: int = 5
    date_stride: int = 1
    max_future_ic: float = 0.1
    spike_ratio: float = 3.0
    min_spike_tstat: float = 5.0  # the peak's Newey-West t: a few names' noise is no peek
    # (b') a user column whose IC with r(t+1) is opposite to, and at least this share of, its IC
    # with r(t) is the deviation from a two-sided smoother (a random walk gives exactly 1; a
    # causal reversal at most about 0.5, a pure bid-ask bounce's)
    mirror_share: float = 0.75
    # (c) label edge: mean IC over the label window's last `edge_days` days against the
    # `edge_days` days after it
    edge_days: int = 1
    max_edge_ic: float | None = 0.02  # None: check (c) off
    min_edge_tstat: float = 5.0
    # the same break scanned for at every future day up to this multiple of d + h, on the mean
    # IC of `edge_scan_days` days each side (a copy's plateau is many days long: averaging them
    # is what makes a noisy one's break stand out)
    edge_scan_factor: float = 2.0
    edge_scan_days: int = 3
    # (d) user columns: |mean RankIC| with the forward return close(t) -> close(t+k), each k here,
    # above this is a value made with later prices (a forward return over months, a smoother run
    # backwards in time): known-at-t factors stay below 0.07 on the S&P sample and the
    # generator's (unrealistically strong) planted signal at 0.21-0.26; such columns reach
    # 0.59-0.99. Scored on the profile's rows whose window ends within their label reach (None:
    # check off).
    long_horizons: tuple = (63, 126)
    max_long_ic: float | None = 0.4
    # ... judged on at least this many windows' worth of dates (k x this): adjacent dates' windows
    # overlap, so 85 dates of a 63-day return are about one observation (a noise column reached
    # |IC| 0.3 and the planted signal 0.32 on a small market's 85 dates)
    long_min_windows: int = 4
    # user columns the user knows are made from data up to t: the IC-profile checks (b), (b'), (c) and
    # the scan do not judge them (a pre-earnings estimate's IC is flat up to the announcement
    # and stops, as a copy's does)
    causal_columns: tuple = ()
    # a profile on fewer IC dates is not judged: a thin cross-section (a few names a date) gives
    # ICs of +-0.8 and t-stats of 30 from noise
    min_dates: int = 60

    @classmethod
    def from_params(cls, params: Mapping) -> LeakAuditConfig:
        p = dict(params)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(p) - known)
        if unknown:
            raise ValueError(f"feature_engineering.leak_audit: unknown key(s) {unknown}")
        config = cls(**{k: None if v is None and k in ("max_edge_ic", "max_long_ic")
                        else type(getattr(cls, k))(v) for k, v in p.items()})
        if any(int(k) < 1 for k in config.long_horizons):
            raise ValueError("feature_engineering.leak_audit.long_horizons must be whole numbers "
                             f">= 1, got {list(config.long_horizons)}")
        if (config.prefix_cuts < 0 or config.compare_days < 1 or config.date_stride < 1
                or config.edge_days < 1 or config.edge_scan_days < 1):
            raise ValueError(
                "feature_engineering.leak_audit: need prefix_cuts >= 0, compare_days >= 1, "
                f"date_stride >= 1, edge_days >= 1 and edge_scan_days >= 1, got "
                f"{config.prefix_cuts}, {config.compare_days}, {config.date_stride}, "
                f"{config.edge_days}, {config.edge_scan_days}"
            )
        return config


# --------------------------------------------------------------------------------------------
# (a) prefix invariance
# --------------------------------------------------------------------------------------------


def cut_rows(dev_rows: np.ndarray, n_cuts: int, earliest: int) -> np.ndarray:
    """`n_cuts` date rows spread evenly over the development rows at or after `earliest`,
    interior points of the span (never its ends)."""
    rows = np.asarray(dev_rows, dtype=np.int64)
    rows = rows[rows >= earliest]
    if n_cuts <= 0 or not rows.size:
        return np.array([], dtype=np.int64)
    positions = np.linspace(0, rows.size - 1, n_cuts + 2)[1:-1].round().astype(np.int64)
    return np.unique(rows[positions])


def _mismatch(part: np.ndarray, full: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Cells where the two computations disagree: beyond tolerance, or present in one only."""
    part = np.asarray(part, dtype=np.float64)
    full = np.asarray(full, dtype=np.float64)
    present_part, present_full = np.isfinite(part), np.isfinite(full)
    both = present_part & present_full
    with np.errstate(invalid="ignore"):
        off = ~np.isclose(part, full, rtol=rtol, atol=atol)
    return (present_part != present_full) | (both & off)


def prefix_audit(
    full: Mapping[str, np.ndarray],
    compute: SliceComputation,
    dates: pd.DatetimeIndex,
    cuts: Sequence[int],
    history: int,
    config: LeakAuditConfig,
    present: np.ndarray | None = None,
) -> pd.DataFrame:
    """Compare every factor of `full` with its recomputation on the panel cut at each cut row.

    `present` (date x ticker bool, None = every cell): the cells `full` has a row for. Only they
    are compared: a name that lists inside a compared window has no rows before its first close,
    while the recomputation fills its grid cells with the market's own values, which is no
    look-ahead.

    `compute(start, first, stop)` recomputes the table from the panel's date rows start .. stop - 1
    only and returns its rows first .. stop - 1; `history` is the number of trailing dates the longest factor window reads. One row per
    factor: `prefix_mismatches` (cells beyond tolerance over all cuts), `max_abs_diff`,
    `lookahead_days` (how many dates before a cut are affected: the look-ahead's length, capped
    by `compare_days`) and the first cut date where it differs."""
    stats = {
        name: {"prefix_cuts": 0, "prefix_mismatches": 0, "max_abs_diff": 0.0,
               "lookahead_days": 0, "first_bad_cut": None}
        for name in full
    }
    for cut in sorted(int(c) for c in cuts):
        first = cut - config.compare_days + 1
        start = max(0, first - history)
        part = compute(start, first, cut + 1)
        for name, values in full.items():
            s = stats[name]
            s["prefix_cuts"] += 1
            recomputed = part.get(name)
            reference = values[first : cut + 1]
            compared = (np.ones(reference.shape, dtype=bool) if present is None
                        else present[first : cut + 1])
            if recomputed is None:  # the cut panel cannot build this factor at all
                bad = compared & np.isfinite(reference)  # nor has the full panel a value there
                diff = math.inf
            else:
                recomputed = np.asarray(recomputed)
                bad = _mismatch(recomputed, reference, config.atol, config.rtol) & compared
                with np.errstate(invalid="ignore"):
                    gaps = np.abs(recomputed.astype(np.float64) - reference)[bad]
                # a cell present on one side only counts as an infinite difference
                diff = float(np.where(np.isfinite(gaps), gaps, math.inf).max()) if gaps.size else 0.0
            if not bad.any():
                continue
            s["prefix_mismatches"] += int(bad.sum())
            s["max_abs_diff"] = max(s["max_abs_diff"], diff)
            bad_rows = np.flatnonzero(bad.any(axis=1))
            s["lookahead_days"] = max(s["lookahead_days"], int(len(reference) - bad_rows.min()))
            if s["first_bad_cut"] is None:
                s["first_bad_cut"] = str(dates[cut].date())
    table = pd.DataFrame.from_dict(stats, orient="index")
    table.index.name = "factor"
    return table


def factor_slice_computation(
    panel: pd.DataFrame,
    market: pd.DataFrame | None,
    grid: Grid,
    factor_config: FactorConfig,
    transform_config: TransformConfig,
) -> SliceComputation:
    """The factor library run on the panel (and market frame) restricted to a span of `grid`'s
    date rows, aligned to `grid`'s tickers: the panel as it stood at the span's last date."""
    panel_dates = pd.DatetimeIndex(panel["date"])
    market_dates = pd.DatetimeIndex(market["date"]) if market is not None else None
    # a column the panel has (volume, open/high/low starting later than close) is there in every
    # cut panel, with missing values before it starts: which factors exist is the panel's
    # layout, not a value read after the cut
    columns = [c for c in panel.columns if panel[c].notna().any()]

    def compute(start: int, first: int, stop: int) -> dict[str, np.ndarray]:
        begin, end = grid.dates[start], grid.dates[stop - 1]
        part = panel[(panel_dates >= begin) & (panel_dates <= end)]
        market_part = None
        if market is not None:
            market_part = market[(market_dates >= begin) & (market_dates <= end)]
        inputs = prepare_inputs(part, market_part, factor_config, columns)
        wanted = grid.dates[first:stop]
        first_row = int(inputs.grid.dates.searchsorted(wanted[0]))
        values, _ = engineer_factors(
            inputs, factor_config, transform_config, first_row=first_row
        )
        rows = inputs.grid.dates[first_row:].get_indexer(wanted)
        cols = inputs.grid.tickers.get_indexer(grid.tickers)
        aligned = {}
        for name, matrix in values.items():
            out = np.full((stop - first, len(grid.tickers)), np.nan, dtype=np.float32)
            ok_rows, ok_cols = rows >= 0, cols >= 0
            out[np.ix_(ok_rows, ok_cols)] = matrix[np.ix_(rows[ok_rows], cols[ok_cols])]
            aligned[name] = out
        return aligned

    return compute


# --------------------------------------------------------------------------------------------
# (b) future-day IC profile
# --------------------------------------------------------------------------------------------


def daily_returns(close: np.ndarray) -> np.ndarray:
    """close(t) / close(t-1) - 1 by date row (NaN on the first row and around missing closes)."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[1:] = close[1:] / close[:-1] - 1.0
    out[~np.isfinite(out)] = np.nan
    return out


def future_ic_profile(
    features: Mapping[str, np.ndarray],
    close: np.ndarray,
    rows: np.ndarray,
    max_offset: int,
    config: LeakAuditConfig,
    values_are_ranks: bool = False,
    scanned: Collection[str] | None = None,
) -> pd.DataFrame:
    """Mean daily Spearman IC of each factor at t with r(t+j), j = 0 .. max_offset, and the
    label-edge step (see `label_edge_reasons`) at max_offset; for the factors in `scanned` (None:
    all) the strongest such break at another future day (`_far_edge`). The project's own
    factors are computed from prices up to t (the prefix audit proves it) and a fixed-window
    reversal gives them the same flat-then-stop profile a copy of future returns has: only the
    columns the project cannot recompute, a file's user factors, need the scan.

    rows: the date rows t to score (development dates); every `date_stride`-th one is used, and
    only those whose r(t + max_offset) exists. A stride above 1 aliases: day j's IC then reads
    the returns of one residue class of dates (t + j mod stride), so on a short scope the
    classes' noise alternates along j and can look like a spike (the default is 1). `values_are_ranks`: the factors are already
    per-date ranks (not ranked again). Columns `ic_0` .. `ic_<max_offset>`, `n_dates`,
    `edge_ic_before`, `edge_ic_inside`, `edge_ic_after` and `edge_tstat`; a factor without
    cross-sectional spread (market context) gets NaN."""
    returns = row_ranks(daily_returns(close))
    rows = np.asarray(rows, dtype=np.int64)
    scope_end = int(rows.max()) if len(rows) else -1
    rows = rows[:: config.date_stride]
    rows = rows[rows + max_offset < len(returns)]
    out = {}
    for name, values in features.items():
        values = np.asarray(values)[rows]
        ranks = values.astype(np.float64) if values_are_ranks else row_ranks(values)
        entry, counts, daily = {}, [], {}
        for j in range(max_offset + 1):
            daily[j] = ic = rowwise_corr(ranks, returns[rows + j], config.min_names)
            finite = np.isfinite(ic)
            entry[f"ic_{j}"] = float(ic[finite].mean()) if finite.any() else math.nan
            counts.append(int(finite.sum()))
        entry["n_dates"] = min(counts) if counts else 0
        lag = math.ceil(max_offset / config.date_stride)
        entry.update({f"t_{j}": newey_west_tstat(daily[j], lag) for j in daily})
        entry.update(_label_edge(ranks, returns, rows, daily, max_offset, scope_end, config))
        entry.update(_far_edge(ranks, returns, rows, daily, max_offset, scope_end, config)
                     if scanned is None or name in scanned
                     else dict.fromkeys(FAR_EDGE_KEYS, math.nan))
        out[name] = entry
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "factor"
    return table


def _label_edge(ranks: np.ndarray, returns: np.ndarray, rows: np.ndarray,
                daily: Mapping[int, np.ndarray], label_end: int, scope_end: int,
                config: LeakAuditConfig) -> dict[str, float]:
    """Mean IC over three runs of `edge_days` future days: before the label window's last days,
    those last days (j <= label_end) and the days after it; and the Newey-West t-stat of the
    per-date bend at the edge, 2 inside - before - after. Only dates t whose r(t + label_end +
    edge_days) lies within the scope's own label reach (`scope_end` + label_end) are used: the
    check may not read the returns of a later window."""
    e = config.edge_days
    before = [j for j in range(label_end - 2 * e + 1, label_end - e + 1) if j >= 1]
    inside = [j for j in range(label_end - e + 1, label_end + 1) if j >= 1]
    after = range(label_end + 1, label_end + 1 + e)
    empty = {"edge_ic_before": math.nan, "edge_ic_inside": math.nan, "edge_ic_after": math.nan,
             "edge_tstat": math.nan}
    # within the scope's label reach, and within the panel (a scope may run to its end)
    keep = (rows + e <= scope_end) & (rows + label_end + e < len(returns))
    if not (before and inside and keep.any()):
        return empty
    kept = rows[keep]
    after_ic = np.mean([rowwise_corr(ranks[keep], returns[kept + j], config.min_names)
                        for j in after], axis=0)
    before_ic = np.mean([daily[j][keep] for j in before], axis=0)
    inside_ic = np.mean([daily[j][keep] for j in inside], axis=0)
    bend = 2.0 * inside_ic - before_ic - after_ic
    finite = np.isfinite(bend)
    if not finite.any():
        return empty
    lag = math.ceil((label_end + e) / config.date_stride)
    return {"edge_ic_before": float(before_ic[finite].mean()),
            "edge_ic_inside": float(inside_ic[finite].mean()),
            "edge_ic_after": float(after_ic[finite].mean()),
            "edge_tstat": newey_west_tstat(bend, lag)}


FAR_EDGE_KEYS = ("far_edge_day", "far_edge_width", "far_edge_ic_before", "far_edge_ic_inside",
                 "far_edge_ic_after", "far_edge_tstat")


def _far_edge(ranks: np.ndarray, returns: np.ndarray, rows: np.ndarray,
              daily: dict[int, np.ndarray], label_end: int, scope_end: int,
              config: LeakAuditConfig) -> dict[str, float]:
    """The strongest break (`edge_breaks`) at a future day k other than the label's last, k up
    to `edge_scan_factor` x `label_end`: the bend's figures and k, NaN when none. Reads only
    returns within the scope's own label reach, as `_label_edge` does. `daily` (IC per date
    with r(t+j) on `rows`) is extended in place to the days the scan reads."""
    e = config.edge_scan_days
    reach = max(label_end, math.ceil(config.edge_scan_factor * label_end))
    best = dict.fromkeys(FAR_EDGE_KEYS, math.nan)
    usable = rows + reach + e < len(returns)
    for j in range(label_end + 1, reach + e + 1):
        ic = np.full(len(rows), np.nan)
        ic[usable] = rowwise_corr(ranks[usable], returns[rows[usable] + j], config.min_names)
        daily[j] = ic
    for k in range(2, reach + 1):
        if k == label_end:
            continue  # the label's own edge: `_label_edge`
        # near the start the windows narrow (a copy ending at r(t+5) has 5 days, not 6)
        w = max(1, min(e, k // 2))
        keep = usable & (rows + k + w <= scope_end + label_end)
        if not keep.any():
            continue
        before = np.mean([daily[j][keep] for j in range(k - 2 * w + 1, k - w + 1)], axis=0)
        inside = np.mean([daily[j][keep] for j in range(k - w + 1, k + 1)], axis=0)
        after = np.mean([daily[j][keep] for j in range(k + 1, k + 1 + w)], axis=0)
        bend = 2.0 * inside - before - after
        finite = np.isfinite(bend)
        if finite.sum() < 2:
            continue
        figures = (float(before[finite].mean()), float(inside[finite].mean()),
                   float(after[finite].mean()),
                   newey_west_tstat(bend, math.ceil((k + w) / config.date_stride)))
        if edge_breaks(*figures, config, settles=True) and _sharpest_drop_at(
                daily, keep, k, w, np.sign(figures[1])) and (
                math.isnan(best["far_edge_tstat"])
                or abs(figures[3]) > abs(best["far_edge_tstat"])):
            best = dict(zip(FAR_EDGE_KEYS, (float(k), float(w), *figures), strict=True))
    return best


def _sharpest_drop_at(daily: Mapping[int, np.ndarray], keep: np.ndarray, k: int, e: int,
                      direction: float) -> bool:
    """The day-to-day drop of the mean IC (in the IC's direction) from r(t+k) to r(t+k+1) is
    the largest between r(t+k-e+1) and r(t+k+e): a copy of future returns stops in one day; a
    causal effect that fades over a few days (a reversal ending near there) spreads its drop,
    which `e`-day means alone read as a break."""
    means = [float(np.nanmean(daily[j][keep])) if np.isfinite(daily[j][keep]).any()
             else math.nan for j in range(max(k - e + 1, 0), k + e + 1)]
    drops = direction * (np.asarray(means[:-1]) - np.asarray(means[1:]))
    return bool(np.isfinite(drops).all() and int(np.argmax(drops)) == min(e, k + 1) - 1)


def edge_breaks(before: float, inside: float, after: float, t: float,
                config: LeakAuditConfig, settles: bool = False) -> bool:
    """The IC holds up to a day and breaks off the day after (see `label_edge_reasons`).
    `settles`: and the IC after the break is near 0, not past it with the other sign: a causal
    rule over a fixed window (a 5-day reversal) swings over at its window's end, a copy of
    future returns just stops (asked away from the label's own edge, where causal structure
    has no reason to break)."""
    if config.max_edge_ic is None or not all(map(math.isfinite, (before, inside, after, t))):
        return False
    if settles and np.sign(inside) * after < -abs(inside) / config.spike_ratio:
        return False
    direction = np.sign(inside)
    drop_at_edge = direction * (inside - after)
    # the change into the edge day either way: an IC rising into that day and easing after it
    # is a smooth hump, not a break (clamped at 0 any drop beat a rise)
    drop_before = abs(before - inside)
    # the days before sit on a plateau of the same sign (not the trough of an oscillation, as
    # a strong reversal draws), then the IC breaks off
    plateau = direction * before >= abs(inside) / config.spike_ratio
    return bool(abs(inside) > config.max_edge_ic and plateau
                and drop_at_edge > config.spike_ratio * drop_before
                and direction * t > config.min_edge_tstat)


def _baseline(ics: np.ndarray, peak: int) -> float:
    """What the factor's peak |IC| on future day `peak` + 1 is compared with: the median |IC| over
    its other future days, or its |IC| with the past return r(t) when that has the opposite sign
    of the peak (a reversal of the move the factor measures reaches the next days genuinely;
    a peek mixed into a past-return factor has the same sign on both)."""
    future = np.abs(ics[1:])
    others = np.delete(future, peak)
    baseline = float(np.nanmedian(others)) if np.isfinite(others).any() else 0.0
    past, at_peak = ics[0], ics[peak + 1]
    if math.isfinite(past) and np.sign(past) == -np.sign(at_peak):
        baseline = max(baseline, abs(past))
    return baseline


def future_peek_reasons(profile: pd.DataFrame, config: LeakAuditConfig) -> dict[str, str]:
    """Factors whose IC with one future day is implausible for information known at t: the
    largest |IC| over future days j >= 1 is above `max_future_ic` AND above `spike_ratio` times
    the factor's baseline (see `_baseline`)."""
    columns = [c for c in profile.columns if c.startswith("ic_")]
    reasons: dict[str, str] = {}
    for name, row in profile.iterrows():
        ics = row[columns].to_numpy(np.float64)
        future = np.abs(ics[1:])
        if not np.isfinite(future).any():
            continue  # no cross-sectional spread (market context): the prefix audit covers it
        peak = int(np.nanargmax(future))
        baseline, value = _baseline(ics, peak), float(future[peak])
        t = abs(float(row.get(f"t_{peak + 1}", math.inf)))  # a profile without t: by size alone
        if value > config.max_future_ic and value > config.spike_ratio * baseline and (
                not math.isfinite(t) or t > config.min_spike_tstat):
            reasons[name] = (
                f"future-day IC spike: |IC with r(t+{peak + 1})| = {value:.3f} > "
                f"{config.max_future_ic:g} and > {config.spike_ratio:g} x baseline "
                f"{baseline:.3f} (t-stat {t:.1f}); IC with the past return r(t) = {ics[0]:.3f}"
            )
    return reasons


def two_sided_filter_reasons(profile: pd.DataFrame, config: LeakAuditConfig,
                             scanned: Collection[str] | None = None) -> dict[str, str]:
    """Factors in `scanned` (None: all) whose IC with r(t+1) mirrors their IC with r(t): the
    opposite sign, at least `mirror_share` of its size, above `max_future_ic`, with a Newey-West
    t above `min_spike_tstat`, and above `spike_ratio` times the largest |IC with r(t+1)| of the
    profile's other (causal, prefix-audited) factors: in a market whose moves mostly reverse
    (prices near a fixed value plus noise) a causal k-day return mirrors too, and the project's
    own return factors then show that reversal as strongly (see the module's note)."""
    reasons: dict[str, str] = {}
    if "ic_1" not in profile:
        return reasons
    own = profile["ic_1"].abs() if scanned is None else profile.loc[
        ~profile.index.isin(list(scanned)), "ic_1"].abs()
    reference = float(own.max()) if scanned is not None and own.notna().any() else 0.0
    for name, row in profile.iterrows():
        if scanned is not None and name not in scanned:
            continue
        past, next_day = float(row.get("ic_0", math.nan)), float(row["ic_1"])
        t = abs(float(row.get("t_1", math.inf)))
        if not (math.isfinite(past) and math.isfinite(next_day)) or past * next_day >= 0:
            continue
        size = abs(next_day)
        if (size > config.max_future_ic and size >= config.mirror_share * abs(past)
                and size > config.spike_ratio * reference
                and (not math.isfinite(t) or t > config.min_spike_tstat)):
            reasons[name] = (
                f"two-sided smoother: IC with r(t+1) = {next_day:.3f} mirrors IC with r(t) = "
                f"{past:.3f} (t-stat {t:.1f}; the project's own price factors reach r(t+1) with "
                f"|IC| <= {reference:.3f}): a deviation from a centred moving average or a "
                "filtfilt / Hodrick-Prescott / Gaussian trend reads prices after t; the "
                "one-sided (causal) form of the filter has no such IC"
            )
    return reasons


def long_horizon_ics(features: Mapping[str, np.ndarray], close: np.ndarray, rows: np.ndarray,
                     reach_end: int, config: LeakAuditConfig, values_are_ranks: bool = False,
                     scanned: Collection[str] | None = None) -> pd.DataFrame:
    """Per factor in `scanned` (None: all): `long_ic_<k>`, its mean daily RankIC with the
    forward return close(t) -> close(t+k) for each k in `config.long_horizons`, and
    `long_n_<k>`, its number of dates: `rows` whose window ends by `reach_end` (the profile's
    label reach, so no return past it is read)."""
    close = np.asarray(close, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    out: dict[str, dict[str, float]] = {}
    forward = {}
    for k in map(int, config.long_horizons):
        use = rows[rows + k <= min(int(reach_end), len(close) - 1)]
        with np.errstate(invalid="ignore", divide="ignore"):
            forward[k] = (use, row_ranks(close[use + k] / close[use] - 1.0))
    for name, values in features.items():
        if scanned is not None and name not in scanned:
            continue
        entry: dict[str, float] = {}
        for k, (use, ranked) in forward.items():
            part = np.asarray(values)[use].astype(np.float64)
            ic = rowwise_corr(part if values_are_ranks else row_ranks(part), ranked,
                              config.min_names) if len(use) else np.array([])
            finite = np.isfinite(ic)
            entry[f"long_ic_{k}"] = float(ic[finite].mean()) if finite.any() else math.nan
            entry[f"long_n_{k}"] = int(finite.sum())
        out[name] = entry
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "factor"
    return table


def long_horizon_reasons(profile: pd.DataFrame, config: LeakAuditConfig) -> dict[str, str]:
    """Factors whose |mean RankIC| with a forward return over months is above `max_long_ic`,
    on at least `min_dates` dates and `long_min_windows` windows' worth (see
    `long_horizon_ics`)."""
    reasons: dict[str, str] = {}
    if config.max_long_ic is None:
        return reasons
    for name, row in profile.iterrows():
        for k in map(int, config.long_horizons):
            ic, n = row.get(f"long_ic_{k}", math.nan), row.get(f"long_n_{k}", 0)
            if (math.isfinite(ic) and abs(ic) > config.max_long_ic and math.isfinite(n)
                    and n >= max(config.min_dates, config.long_min_windows * k)):
                reasons[name] = (
                    f"long-horizon IC: mean RankIC with the {k}-day forward return close(t) -> "
                    f"close(t+{k}) = {ic:.3f} (> {config.max_long_ic:g}, on {int(n)} dates): "
                    "nothing known at t ranks months of returns this well; a value made with "
                    "later prices (a forward return, a smoother run backwards in time, a "
                    "restated fundamental)?")
                break
    return reasons


def label_edge_reasons(profile: pd.DataFrame, config: LeakAuditConfig,
                       label_end: int) -> dict[str, str]:
    """Factors that know the label window: their IC with each day's return holds up to the
    window's last day and breaks off the day after. Information known at t changes at the same
    pace on both sides of that day (a persistent signal fades slowly, a reversal turns over
    gradually); a column made from the forward return (a target, or a vendor's series stamped at
    the window's end) falls off that edge. Flagged when the mean |IC| over the window's last
    `edge_days` days is above `max_edge_ic` (None: check off), the `edge_days` before have the
    same sign and at least 1 / `spike_ratio` of it, its drop to the days after (in the IC's own
    direction) is more than `spike_ratio` times its change into those days from the `edge_days`
    before (a rise or a drop), and the Newey-West t-stat of the bend is above
    `min_edge_tstat`."""
    reasons: dict[str, str] = {}
    if config.max_edge_ic is None:
        return reasons
    for name, row in profile.iterrows():
        values = [row.get(k, math.nan) for k in
                  ("edge_ic_before", "edge_ic_inside", "edge_ic_after", "edge_tstat")]
        if not all(math.isfinite(v) for v in values):
            continue
        before, inside, after, t = values
        if edge_breaks(before, inside, after, t, config):
            first = label_end - config.edge_days + 1
            reasons[name] = (
                f"label-window edge: mean IC with r(t+{first - config.edge_days}.."
                f"t+{first - 1}) = {before:.3f}, r(t+{first}..t+{label_end}) = {inside:.3f}, "
                f"r(t+{label_end + 1}..t+{label_end + config.edge_days}) = {after:.3f} (t-stat "
                f"of the break {t:.1f}): it knows returns up to the label's last day and none "
                "after"
            )
        far = [row.get(k, math.nan) for k in FAR_EDGE_KEYS]
        if name not in reasons and all(math.isfinite(v) for v in far):
            day, width, before, inside, after, t = far
            k, e = int(day), int(width)
            reasons[name] = (
                f"future-day edge: mean IC with r(t+{k - 2 * e + 1}..t+{k - e}) = {before:.3f}, "
                f"r(t+{k - e + 1}..t+{k}) = {inside:.3f}, r(t+{k + 1}..t+{k + e}) = {after:.3f} "
                f"(t-stat of the break {t:.1f}): it knows returns up to r(t+{k}) and none after "
                f"(the label's window ends at r(t+{label_end})): a forward return over other "
                "days than the label's?"
            )
    return reasons


# --------------------------------------------------------------------------------------------
# Both checks on a factor table
# --------------------------------------------------------------------------------------------


@dataclass
class LeakAudit:
    suspects: dict[str, str]  # factor -> why it is suspected (both reasons when both fire)
    table: pd.DataFrame  # one row per factor: prefix-audit counts and the future-day IC profile
    cut_dates: list[str]


def judged_profiles(profile: pd.DataFrame, config: LeakAuditConfig) -> pd.DataFrame:
    """The profiles with at least `min_dates` IC dates; the others are named, not judged."""
    if "n_dates" not in profile or profile.empty:
        return profile
    few = profile["n_dates"] < config.min_dates
    # no IC on any date: constant across names (market context), nothing to judge or warn about
    unranked = profile["n_dates"] == 0
    if unranked.any():
        logger.info("leak audit: %d factor(s) have no cross-sectional IC on any development date "
                    "(constant across names, e.g. market context): not judged: %s",
                    int(unranked.sum()), ", ".join(map(str, profile.index[unranked])))
    if (few & ~unranked).any():
        few_ranked = few & ~unranked
        logger.warning(
            "leak audit: %d factor(s) have an IC on fewer than "
            "feature_engineering.leak_audit.min_dates (%d) of the profile's development dates "
            "(the selection's scope, feature_engineering.selection.ic_scope) (at most %d): "
            "their future-day profiles are not judged (a cross-section of a few names gives "
            "large ICs from noise); a column that starts after that scope, a rule that thins "
            "the cross-section (e.g. processing.eligibility.min_price) or a short history? %s",
            int(few_ranked.sum()),
            config.min_dates, int(profile.loc[few_ranked, "n_dates"].max()),
            ", ".join(map(str, profile.index[few_ranked])))
    return profile.loc[~few]


def audit_factor_table(
    full: Mapping[str, np.ndarray],
    compute: SliceComputation,
    close: np.ndarray,
    dates: pd.DatetimeIndex,
    dev_rows: np.ndarray,
    lookback: int,
    max_offset: int,
    config: LeakAuditConfig,
    values_are_ranks: bool = False,
    present: np.ndarray | None = None,
    profile_rows: np.ndarray | None = None,
    scanned: Collection[str] | None = None,
) -> LeakAudit:
    """Prefix-invariance audit at `config.prefix_cuts` development cut dates and future-day IC
    profile (j = 0 .. max_offset, normally d + h) of every factor in `full` (date x ticker
    matrices on `dates`, rows at the `present` cells); `lookback` is the factor library's
    trailing history. The profile drops factors by their ICs, a choice: it is scored on
    `profile_rows` (the feature selection's scope; default `dev_rows`)."""
    cuts = cut_rows(dev_rows, config.prefix_cuts, config.compare_days)
    prefix = prefix_audit(full, compute, dates, cuts, lookback, config, present)
    rows = dev_rows if profile_rows is None or not len(profile_rows) else profile_rows
    profile = future_ic_profile(full, close, rows, max_offset, config, values_are_ranks,
                                scanned)
    if config.max_long_ic is not None and config.long_horizons and len(rows):
        profile = profile.join(long_horizon_ics(full, close, rows, int(np.max(rows)) + max_offset,
                                                config, values_are_ranks, scanned), how="left")
    suspects: dict[str, list[str]] = {}
    for name, row in prefix.iterrows():
        if row["prefix_mismatches"]:
            suspects.setdefault(name, []).append(
                f"not prefix-invariant: recomputed on the panel cut at {row['first_bad_cut']} it "
                f"differs in {row['prefix_mismatches']} cell(s) on the last "
                f"{row['lookahead_days']} date(s) before a cut (max |diff| "
                f"{row['max_abs_diff']:.3g}): it reads data after t"
            )
    judged = judged_profiles(profile, config)
    trusted = [n for n in judged.index
               if n in config.causal_columns or str(n).removeprefix("user_") in config.causal_columns]
    if trusted:
        logger.info("leak audit: %s not judged by their future-day IC profile "
                    "(feature_engineering.leak_audit.causal_columns)", ", ".join(map(str, trusted)))
        judged = judged.drop(index=trusted)
    for name, reason in future_peek_reasons(judged, config).items():
        suspects.setdefault(name, []).append(reason)
    for name, reason in two_sided_filter_reasons(judged, config, scanned).items():
        suspects.setdefault(name, []).append(reason)
    for name, reason in label_edge_reasons(judged, config, max_offset).items():
        suspects.setdefault(name, []).append(reason)
    untrusted = profile.drop(index=[n for n in trusted if n in profile.index])
    for name, reason in long_horizon_reasons(untrusted, config).items():
        suspects.setdefault(name, []).append(reason)
    table = prefix.join(profile, how="outer")
    table["suspect"] = table.index.isin(list(suspects))
    return LeakAudit(
        suspects={name: "; ".join(reasons) for name, reasons in suspects.items()},
        table=table.reset_index(),
        cut_dates=[str(dates[c].date()) for c in cuts],
    )


# --------------------------------------------------------------------------------------------
# Regime labels: the same prefix check on a fitted detector's output
# --------------------------------------------------------------------------------------------

REGIME_CODE = "regime_code"


def _regime_columns(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """A regime table (date, regime, p_*) as per-date columns; labels as integer codes."""
    columns = {c: table[c].to_numpy(np.float64)[:, None] for c in table.columns
               if c.startswith("p_")}
    labels = table["regime"].astype(str).to_numpy()
    names = sorted(set(labels))
    columns[REGIME_CODE] = np.searchsorted(names, labels).astype(np.float64)[:, None]
    return columns


def audit_regime_labels(
    table: pd.DataFrame,
    detect_until: Callable[[int], pd.DataFrame],
    cuts: Sequence[int],
    config: LeakAuditConfig,
) -> pd.DataFrame:
    """Prefix audit of a fitted detector's labels and probabilities (DESIGN §3: regime labels at
    t use data up to t only). `table` is the detector's output on every date; `detect_until(stop)`
    runs the same fitted detector on the inputs' first `stop` dates only. A filtered (causal)
    detector gives identical values on the compared dates; a smoothed one does not."""
    full = _regime_columns(table.reset_index(drop=True))
    names = sorted(set(table["regime"].astype(str)))

    def compute(start: int, first: int, stop: int) -> dict[str, np.ndarray]:
        part = detect_until(stop).reset_index(drop=True).iloc[first:stop]
        out = {c: part[c].to_numpy(np.float64)[:, None] for c in full if c.startswith("p_")}
        codes = np.array([names.index(x) if x in names else -1
                          for x in part["regime"].astype(str)], dtype=np.float64)
        out[REGIME_CODE] = codes[:, None]
        return out

    dates = pd.DatetimeIndex(table["date"])
    return prefix_audit(full, compute, dates, cuts, history=len(table), config=config)
