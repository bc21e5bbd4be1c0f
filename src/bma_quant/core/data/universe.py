"""The point-in-time universe: which names are in the cross-section at each date (DESIGN §3).

A name is eligible at date t, judged from data up to t only, when
- it has a (cleaned) close of its own at t (not forward-filled), and the file does not mark it as
  not traded at t (volume 0 with the close copied from the day before: a suspension);
- at least `min_history_days` trading dates have passed since its first observed close;
- it had an observed close on at least `coverage_threshold` of the trailing `window_days` dates
  (a stale price that cleaning masked does not count: `traded_cells`), counted from its first
  close on (a young name is held back by `min_history_days`, not penalised a second time for the
  dates before it listed).

Strict mode drops date t when fewer than `coverage_threshold` of the names seen in the trailing
window have a close that day (a partial or broken day of the file). Both rules work on the raw
calendar with trailing windows, so a panel cut at any date gives the same answers up to that date;
a name that lists late enters once it is seasoned; a date on which a name has no close of its own
(a forward-filled copy: a gap, a halt, a stop) keeps it out of that date's cross-section
(`processing.eligibility.require_own_close`; without it, a name that stops trading leaves when its
forward-filled close runs out, `processing.ffill_limit` dates later).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bma_quant.core.data.schema import DataValidationError

ELIGIBLE = "eligible"  # long-panel column: the (date, ticker) row is in the cross-section
TRADABLE = "tradable"  # long-panel column: the row's close is a trade (a backtest can trade at it)
# long-panel column: the first date of the name's current listing when it was relisted (back
# after more than `relist_after_days` dates without a row: another company, for its features);
# NaT on a name's first listing; only in panels with a relisting
LISTED_FROM = "listed_from"


@dataclass(frozen=True)
class EligibilityRule:
    coverage_threshold: float
    window_days: int
    min_history_days: int
    # strict mode: a name counts as trading at t when it had a close in the last `active_days`
    # dates (None: in the whole coverage window, as before; a name that stopped trading then
    # kept counting for a year and, after a wave of delistings, every date was dropped)
    active_days: int | None = None
    # a name back after more than this many dates without a row in the file is a new listing:
    # history and coverage count from its first close back (None: never; a reused code's new
    # company was seasoned by the old one's closes)
    relist_after_days: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage_threshold <= 1.0:
            raise DataValidationError(
                f"processing.coverage_threshold must be in (0, 1], got {self.coverage_threshold}"
            )
        if self.window_days < 1:
            raise DataValidationError(
                f"processing.eligibility.window_days must be >= 1, got {self.window_days}"
            )
        if self.active_days is not None and self.active_days < 1:
            raise DataValidationError(
                f"processing.strict_active_days must be >= 1, got {self.active_days}")
        if self.relist_after_days is not None and self.relist_after_days < 1:
            raise DataValidationError("processing.eligibility.relist_after_days must be >= 1 or "
                                      f"null, got {self.relist_after_days}")
        if self.min_history_days < 0:
            raise DataValidationError(
                "processing.eligibility.min_history_days must be >= 0, got "
                f"{self.min_history_days}"
            )

    @classmethod
    def from_params(cls, processing: dict) -> EligibilityRule:
        eligibility = processing["eligibility"]
        active = processing.get("strict_active_days")
        relist = eligibility.get("relist_after_days")
        return cls(
            float(processing["coverage_threshold"]),
            int(eligibility["window_days"]),
            int(eligibility["min_history_days"]),
            None if active is None else int(active),
            None if relist is None else int(relist),
        )



def _trailing_sum(counts: np.ndarray, window: int) -> np.ndarray:
    """Sum over the trailing `window` rows (fewer at the start), exact on integer counts."""
    total = np.cumsum(counts, axis=0)
    out = total.copy()
    out[window:] -= total[:-window]
    return out


def _listed(
    observed: pd.DataFrame, first_seen: pd.Series | None
) -> tuple[np.ndarray, np.ndarray]:
    """True from each name's first observed close on, and which names were first seen before the
    frame starts (`first_seen`, ticker -> date: a serving slice of a longer history)."""
    listed = np.maximum.accumulate(observed.to_numpy(dtype=bool), axis=0)
    earlier = np.zeros(observed.shape[1], dtype=bool)
    if first_seen is not None and len(observed):
        known = pd.to_datetime(first_seen.reindex(observed.columns.astype(str)).to_numpy())
        listed |= observed.index.to_numpy()[:, None] >= known.to_numpy()[None, :]  # NaT: False
        earlier = np.asarray(known < observed.index[0], dtype=bool)
    return listed, earlier


def _empty_close_zero_volume(matrices) -> pd.DataFrame | None:
    volume = matrices.values.get("volume")
    if volume is None:
        return None
    return volume.eq(0).fillna(False).astype(bool) & matrices.close.isna()


def empty_close_padding_start(matrices, first_seen: pd.Series | None = None) -> pd.Timestamp | None:
    """The first date with a volume-0 row with an empty close for a name not yet listed (its
    first close, or `first_seen` for a serving slice, still to come): a grid export's padding,
    which pads every (date, name) alike, also between a delisted company and the next one under
    its code, so from then on such rows say nothing about a listing. None: no such row."""
    empty = _empty_close_zero_volume(matrices)
    if empty is None:
        return None
    listed, _ = _listed(matrices.close.notna(), first_seen)
    padded = (empty.to_numpy(dtype=bool) & ~listed).any(axis=1)
    return pd.Timestamp(matrices.close.index[int(padded.argmax())]) if padded.any() else None


def states_empty_close_suspensions(matrices) -> bool:
    """The file writes suspended days as volume-0 rows with an empty close (Wind-style exports)
    before any padding (`empty_close_padding_start`): `file_rows` counts some of them."""
    empty = _empty_close_zero_volume(matrices)
    return empty is not None and bool(
        file_rows(matrices, True).to_numpy().sum() > matrices.close.notna().to_numpy().sum())


def file_rows(matrices, empty_close_suspensions: bool = False,
              first_seen: pd.Series | None = None,
              padded_from: pd.Timestamp | None = None) -> pd.DataFrame:
    """Date x ticker: the file has a row for the name there, as far as relistings are concerned:
    a close, and with `empty_close_suspensions` (`states_empty_close_suspensions`) also, once
    the name has listed (`first_seen`: a serving slice's names seen before it), a volume-0 row
    with an empty close. Such a row says the company is still listed: read as a missing day, a
    suspension longer than `relist_after_days` made the name a new listing. Counted up to the
    first padding date only (`empty_close_padding_start` of these rows, or `padded_from`, the
    training file's, when earlier), decided per date: a name padded after date t leaves every
    answer up to t as a file cut at t gives it."""
    rows = matrices.close.notna()
    empty = _empty_close_zero_volume(matrices) if empty_close_suspensions else None
    if empty is None:
        return rows
    listed, _ = _listed(rows, first_seen)
    stops = [d for d in (empty_close_padding_start(matrices, first_seen), padded_from)
             if d is not None]
    before = (rows.index < min(stops)) if stops else np.ones(len(rows), dtype=bool)
    counted = empty.to_numpy(dtype=bool) & listed & before[:, None]
    return rows | pd.DataFrame(counted, index=rows.index, columns=rows.columns)


def relisting_rows(rows: pd.DataFrame, relist_after_days: int | None,
                   first_seen: pd.Series | None = None) -> np.ndarray:
    """Per date and name, the row of the name's latest relisting at or before it (-1: none): its
    first row in the file (`rows`: a close present) after more than `relist_after_days` dates
    without one. A gap decided on the gap alone: causal. A name first seen before the frame
    (`first_seen`, ticker -> date: a serving slice) whose first row in the frame comes after more
    than `relist_after_days` dates of it was away at least that long: a relisting too, as the
    whole history says."""
    present = rows.to_numpy(dtype=bool)
    out = np.full(present.shape, -1, dtype=np.int64)
    if relist_after_days is None or not present.any():
        return out
    index = np.arange(len(present))[:, None]
    last_row = np.maximum.accumulate(np.where(present, index, -1), axis=0)
    before = np.vstack([np.full((1, present.shape[1]), -1), last_row[:-1]])  # last row before t
    known = (before >= 0) | _listed(rows, first_seen)[1][None, :]  # -1: a row before the frame
    restart = present & known & (index - before - 1 > int(relist_after_days))
    return np.maximum.accumulate(np.where(restart, index, -1), axis=0)


def listed_from_dates(rows: pd.DataFrame, relist_after_days: int | None,
                      first_seen: pd.Series | None = None) -> pd.DataFrame | None:
    """Per date and name, the date of the name's latest relisting at or before it
    (`relisting_rows`), NaT on its first listing; None when no name was relisted."""
    relisted = relisting_rows(rows, relist_after_days, first_seen)
    if not (relisted >= 0).any():
        return None
    dates = rows.index.to_numpy()
    values = np.where(relisted >= 0, dates[np.maximum(relisted, 0)], np.datetime64("NaT"))
    return pd.DataFrame(values.astype("datetime64[ns]"), index=rows.index, columns=rows.columns)


def trailing_eligibility(
    observed: pd.DataFrame, rule: EligibilityRule, first_seen: pd.Series | None = None,
    rows: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The history and trailing-coverage parts of the rule (date x ticker bool) on the calendar of
    `observed` (raw closes present, less those that were no trade). Whether a name also has a
    close at t is checked later, on the cleaned prices (`eligible_cells`). `rows` (the file's
    closes, suspended ones included; None = `observed`) decides relistings
    (`rule.relist_after_days`): a name back after a longer absence of rows starts afresh, its
    history and coverage counted from its first close back, as a new listing's are."""
    present = observed.to_numpy(dtype=bool)
    listed, earlier = _listed(observed, first_seen)
    history = np.cumsum(listed, axis=0) - 1  # dates since the first close (0 on that day)
    seasoned = (history >= rule.min_history_days) | earlier[None, :]
    seen = _trailing_sum(present.astype(np.int64), rule.window_days)
    alive = _trailing_sum(listed.astype(np.int64), rule.window_days)
    relisted = relisting_rows(observed if rows is None else rows.reindex_like(observed)
                              .fillna(False).astype(bool), rule.relist_after_days, first_seen)
    again = relisted >= 0
    if again.any():
        index = np.arange(len(present))[:, None]
        seasoned = np.where(again, index - relisted >= rule.min_history_days, seasoned)
        since = np.maximum(index - rule.window_days + 1, relisted)  # window from the relisting
        total = np.vstack([np.zeros((1, present.shape[1]), np.int64),
                           np.cumsum(present, axis=0, dtype=np.int64)])
        within = (np.take_along_axis(total, index + 1 + 0 * relisted, axis=0)
                  - np.take_along_axis(total, np.maximum(since, 0), axis=0))
        seen = np.where(again, within, seen)
        alive = np.where(again, index - since + 1, alive)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(alive > 0, seen / np.maximum(alive, 1), 0.0)
    ok = listed & seasoned & (coverage >= rule.coverage_threshold)
    return pd.DataFrame(ok, index=observed.index, columns=observed.columns)


def traded_cells(observed: pd.DataFrame, before_masking: pd.DataFrame,
                 after_masking: pd.DataFrame, untraded: pd.DataFrame | None = None
                 ) -> pd.DataFrame:
    """Raw closes present (`observed`, raw calendar) less the stale prices that cleaning masked
    (present in `before_masking`, gone in `after_masking`, both on the cleaned calendar) and the
    rows the file marks as not traded (`untraded`): what trailing coverage counts. A name frozen
    or suspended for months is not covered on its first day back."""
    masked = before_masking.notna() & after_masking.isna()
    if untraded is not None:
        masked |= untraded.reindex(index=masked.index, columns=masked.columns,
                                   fill_value=False).astype(bool)
    masked = masked.reindex(index=observed.index, columns=observed.columns, fill_value=False)
    return observed & ~masked.astype(bool)


def tradable_cells(traded: pd.DataFrame, close: pd.DataFrame,
                   withheld: pd.DataFrame | None = None) -> pd.DataFrame:
    """On the cleaned calendar: the close at t is a trade. `traded` (`traded_cells`, raw
    calendar) less the cells without a cleaned close and the `withheld` ones (a price awaiting a
    split's confirmation is not known); a forward-filled close is none either."""
    out = traded.reindex(index=close.index, columns=close.columns, fill_value=False).astype(bool)
    out &= close.notna()
    if withheld is not None:
        out &= ~withheld.reindex(index=close.index, columns=close.columns,
                                 fill_value=False).astype(bool)
    return out


def strict_date_mask(observed: pd.DataFrame, rule: EligibilityRule) -> np.ndarray:
    """Strict mode: keep date t when at least `coverage_threshold` of the names trading (a close
    in the last `active_days` dates, t included) have a close at t: a partial day of the file is
    dropped, a name that stopped trading soon stops counting (a date's count depends on that date
    and earlier)."""
    present = observed.to_numpy(dtype=bool)
    window = rule.active_days or rule.window_days
    active = (_trailing_sum(present.astype(np.int64), window) > 0).sum(axis=1)
    return present.sum(axis=1) >= rule.coverage_threshold * np.maximum(active, 1)


def eligible_cells(trailing: pd.DataFrame, close: pd.DataFrame,
                   untraded: pd.DataFrame | None = None,
                   below_price: pd.DataFrame | None = None,
                   carried: pd.DataFrame | None = None,
                   illiquid: pd.DataFrame | None = None) -> pd.DataFrame:
    """Eligible at t: the trailing rule holds, the cleaned close exists at t, the file does not
    mark the name as not traded at t (`cleaning.untraded_cells`: volume 0, close copied), its
    price is not below the minimum (`below_min_price`), nor its trading below the minimum dollar
    volume (`below_min_dollar_volume`), and, with `carried` (`carried_cells`), the close is the
    name's own that day, not one forward-filled from an earlier date."""
    rule_ok = trailing.reindex(index=close.index, columns=close.columns, fill_value=False)
    eligible = rule_ok.astype(bool) & close.notna()
    for excluded in (untraded, below_price, carried, illiquid):
        if excluded is not None:
            eligible &= ~excluded.reindex(index=close.index, columns=close.columns,
                                          fill_value=False).astype(bool)
    return eligible


def below_min_dollar_volume(close: pd.DataFrame, volume: pd.DataFrame | None,
                            minimum: float | None, days: int) -> pd.DataFrame | None:
    """True where the median dollar volume (close x volume, in the file's units) of the name's
    traded days among the trailing `days` dates is below `minimum`: too thin to trade at the
    flat cost the backtest charges. Read from the file's rows (`close`, `volume` before the
    forward fill; a split leaves close x volume as it is); days without a positive volume do not
    count (a suspension is not illiquidity), and a name without any in the window is not judged.
    Causal; None without a minimum or a volume column."""
    if minimum is None or volume is None:
        return None
    traded = (close * volume.reindex_like(close)).where(volume.reindex_like(close) > 0)
    median = traded.rolling(int(days), min_periods=1).median()
    return median < float(minimum)


def carried_cells(unfilled: pd.DataFrame, close: pd.DataFrame, require_own_close: bool
                  ) -> pd.DataFrame | None:
    """Where `close` (the cleaned prices) holds a close the file did not give that day
    (`unfilled`: the same calendar before the forward fill): a missing print, a halt exported as
    missing rows, the dates after a delisting. With `require_own_close` such a row is out of the
    cross-section, as a halt exported as volume-0 rows is (`untraded_cells`); None without it."""
    if not require_own_close:
        return None
    return unfilled.reindex_like(close).isna() & close.notna()


def below_min_price(observed: pd.DataFrame, min_price: float | None) -> pd.DataFrame | None:
    """True where the name's last close the file gave (`observed`: before the forward fill and
    the split repair, which rescales later prices to the pre-split level) is below `min_price`:
    a penny stock, whose tick is a large part of its price and whose trades cost more than the
    backtest charges. Causal; None without a minimum."""
    if min_price is None:
        return None
    return observed.ffill() < float(min_price)


def exclusion_cells(unfilled: pd.DataFrame, volume: pd.DataFrame | None, close: pd.DataFrame,
                    eligibility: dict) -> dict[str, pd.DataFrame | None]:
    """The optional rules of `processing.eligibility` that keep a priced row out of the
    cross-section (None: off), as `eligible_cells` takes them: `below_price` (`min_price`),
    `illiquid` (`min_dollar_volume` over `dollar_volume_days`), `carried` (`require_own_close`).
    `unfilled`, `volume`: the file's rows before the forward fill; `close`: the cleaned prices.
    One rule for the pipeline and the serving chain."""
    return {
        "below_price": below_min_price(unfilled, eligibility.get("min_price")),
        "illiquid": below_min_dollar_volume(
            unfilled, volume, eligibility.get("min_dollar_volume"),
            int(eligibility.get("dollar_volume_days") or 21)),
        "carried": carried_cells(unfilled, close, bool(eligibility.get("require_own_close"))),
    }


def listing_events(observed: pd.DataFrame, ffill_limit: int = 0) -> dict:
    """First and last observed close of every name, the names that list after the calendar
    starts, and those that stop before it ends (for the data-quality report).

    A name whose last close falls within the file's last ``ffill_limit`` dates is not called a
    delisting: its forward-filled price still covers the end, and nothing yet tells a stop from a
    gap of a few days (e.g. a missing last print). It is listed under ``missing_at_end``."""
    dates = observed.index
    has_any = observed.any(axis=0)
    first = observed.idxmax(axis=0)[has_any]
    last = observed.iloc[::-1].idxmax(axis=0)[has_any]
    covered_from = dates[max(0, len(dates) - 1 - int(ffill_limit))] if len(dates) else None

    def as_text(series: pd.Series) -> dict[str, str]:
        return {str(t): str(pd.Timestamp(d).date()) for t, d in series.sort_index().items()}

    return {
        "first_close": as_text(first),
        "late_listings": as_text(first[first > dates.min()]),
        "delistings": as_text(last[last < covered_from]) if len(dates) else {},
        "missing_at_end": (as_text(last[(last >= covered_from) & (last < dates.max())])
                           if len(dates) else {}),
        # names in the file without a single close (e.g. an empty column of a wide file)
        "no_prices": sorted(map(str, has_any.index[~has_any])),
    }


def long_absences(close: pd.DataFrame, min_dates: int) -> list[dict]:
    """Names back after more than ``min_dates`` dates without a close: a code reused by another
    company looks like this, and price windows (momentum, drawdown) across the gap would compare
    the two. Each with its last close before, its first close after, the dates missed and the
    price ratio across the gap (for the data-quality report)."""
    out = []
    values = close.to_numpy(dtype=float)
    dates = close.index
    for j, ticker in enumerate(close.columns):
        rows = np.flatnonzero(np.isfinite(values[:, j]))
        if len(rows) < 2:
            continue
        missed = np.diff(rows) - 1
        for k in np.flatnonzero(missed > int(min_dates)):
            before, after = rows[k], rows[k + 1]
            out.append({"ticker": str(ticker), "last_close": str(dates[before].date()),
                        "back_on": str(dates[after].date()), "dates_missed": int(missed[k]),
                        "price_ratio": round(float(values[after, j] / values[before, j]), 4)})
    return out


def never_eligible_causes(trailing: pd.DataFrame, close: pd.DataFrame, eligible: pd.DataFrame,
                          exclusions: dict[str, pd.DataFrame | None],
                          since: pd.Timestamp | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """Why each name is in no date's cross-section (from ``since`` on): ``(too_little_history,
    kept_out)``. A name whose trailing history rule never holds on a priced date is in the
    first list; one that rule admits on some date is kept out by the optional rules
    (``exclusions``, as for ``eligible_cells``): ``kept_out`` maps it to the rules that excluded
    it on a date its history admitted it."""
    dates = close.index if since is None else close.index[close.index >= since]
    admitted = (trailing.reindex(index=dates, columns=close.columns, fill_value=False)
                .astype(bool) & close.loc[dates].notna())
    never = ~eligible.loc[dates].any(axis=0)
    history = admitted.any(axis=0)
    too_little = sorted(map(str, close.columns[never & ~history]))
    kept_out: dict[str, list[str]] = {}
    for name, mask in exclusions.items():
        if mask is None:
            continue
        hit = (admitted & mask.reindex(index=dates, columns=close.columns, fill_value=False)
               .astype(bool)).any(axis=0)
        for ticker in close.columns[never & history & hit]:
            kept_out.setdefault(str(ticker), []).append(name)
    return too_little, dict(sorted(kept_out.items()))


def universe_summary(eligible: pd.DataFrame) -> dict:
    """Eligible names per date (min / median / max), eligible rows, never-eligible names."""
    per_date = eligible.sum(axis=1)
    ever = eligible.any(axis=0)
    return {
        "eligible_rows": int(per_date.sum()),
        "eligible_names_per_date": {
            "min": int(per_date.min()) if len(per_date) else 0,
            "median": float(per_date.median()) if len(per_date) else 0.0,
            "max": int(per_date.max()) if len(per_date) else 0,
        },
        "never_eligible": sorted(map(str, ever.index[~ever])),
    }


def listed_spans(present: np.ndarray, relisted: np.ndarray | None = None) -> np.ndarray:
    """Date x ticker bool: on or after a listing's first True and on or before its last, each
    later listing of a code (`relisted`, `relisting_rows`) apart."""
    def span(values: np.ndarray) -> np.ndarray:
        started = np.logical_or.accumulate(values, axis=0)
        return started & np.logical_or.accumulate(values[::-1], axis=0)[::-1]

    if relisted is None or not (relisted >= 0).any():
        return span(present)
    out = np.zeros(present.shape, dtype=bool)
    for start in np.unique(relisted):  # -1: every code's first listing
        out |= span(present & (relisted == start))
    return out


def eligible_and_kept_out(trailing: pd.DataFrame, close: pd.DataFrame,
                          exclusions: dict[str, pd.DataFrame | None]
                          ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The cross-section (`eligible_cells`), and per rule the rows it alone keeps out
    (in the cross-section without that rule: a row two rules exclude is counted by neither)."""

    def eligible(**off) -> pd.DataFrame:
        rules = {**exclusions, **off}
        return eligible_cells(trailing, close, rules["untraded"], rules["below_price"],
                              rules["carried"], rules["illiquid"])

    out = eligible()
    counts = {name: 0 if mask is None else int((eligible(**{name: None}) & ~out).to_numpy().sum())
              for name, mask in exclusions.items()}
    return out, counts


def relisting_events(listed_from: pd.DataFrame | None) -> list[dict]:
    """[{"ticker", "listed_from"}] of every relisting, in date order."""
    if listed_from is None:
        return []
    events = [{"ticker": str(ticker), "listed_from": str(pd.Timestamp(first).date())}
              for ticker in listed_from.columns
              for first in listed_from[ticker].dropna().unique()]
    return sorted(events, key=lambda e: (e["listed_from"], e["ticker"]))


def names_without_sector(sector: pd.DataFrame | None) -> list[str]:
    """Names (columns of the date x ticker `sector` matrix) with no sector on any date while
    others have one (sector-neutral steps demean them against the whole date, not within a
    sector: core.features.transforms.sector_neutralise)."""
    if sector is None:
        return []
    known = sector.notna().any(axis=0)
    return sorted(map(str, known.index[~known])) if known.any() else []
