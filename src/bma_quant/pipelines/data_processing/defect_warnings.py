"""data_processing's warnings about the raw file's defects that cleaning kept or repaired: one
warning per kind (calendar, bars and volume, listings, splits), the details in the data quality
report."""

from __future__ import annotations

import logging

import pandas as pd

from bma_quant.core.data import cleaning
from bma_quant.core.data.move_labels import move_label
from bma_quant.core.evaluation.test_period import daily_exchange_bars

logger = logging.getLogger(__name__)


def _warn_strict_drops(dropped: list[str], dates_in: int) -> None:
    """Dates the strict filter dropped, with the weekdays they fall on: a file mixing exchanges
    (other holidays, or a Sunday-Thursday week beside Monday-Friday) loses each one's holidays."""
    weekdays = pd.Series([d[-4:-1] for d in dropped]).value_counts()
    logger.warning(
        "processing.strict_mode dropped %d of the file's %d dates (%.1f%%; by weekday: %s; e.g. "
        "%s; all in the data-quality report, strict_dropped_dates): on each, fewer than "
        "processing.coverage_threshold of the names trading lately had a close. Partial days of "
        "the file are meant to go; if it mixes exchanges whose holidays or weekdays differ, each "
        "one's holidays go: set processing.strict_mode: false (the names closed that day carry "
        "their last price) or lower processing.coverage_threshold",
        len(dropped), dates_in, 100 * len(dropped) / max(dates_in, 1),
        ", ".join(f"{day} {n}" for day, n in weekdays.items()), ", ".join(dropped[:3]))


def _warn_rate_lowered_by_strict_filter(per_year: float, file_per_year: float) -> None:
    """The file's bars are daily, but the strict filter kept too few of its dates (names with
    many missing days each): every window counts the kept rows, which are not days."""
    logger.warning(
        "the file has daily bars (about %.0f dates a year) but processing.strict_mode kept about "
        "%.0f a year (the dates on which too few names had a close): every window counts rows, "
        "so the label's temporal.prediction_horizon_days rows span about %.1fx as many trading "
        "days and annualised figures use %.0f rows a year. Names missing many days each drop "
        "dates for all: set processing.strict_mode: false (a name without a close carries its "
        "last price, processing.ffill_limit) or lower processing.coverage_threshold",
        file_per_year, per_year, file_per_year / per_year, per_year)


def _annualised_as_configured(per_year: float, periods_per_year: float | None) -> bool:
    """evaluation.backtest.periods_per_year set by hand near the file's rate (within a tenth: a
    six-day week, 306 dates a year, is not annualised as 252). Null (the file's own rate) is
    not: the windows were then not looked at either."""
    return periods_per_year is not None and abs(float(periods_per_year) / per_year - 1) <= 0.1


def warn_about_defects(log: dict, n_priced: int, ffill_limit: int,
                        periods_per_year: float | None = None, used_from=None,
                        untraded_moves: bool = False, relist_after: int | None = None,
                        split_detection: bool = True) -> None:
    """One warning per kind of defect that cleaning kept or repaired (details in the report).
    Split events before `used_from` (periods.dev_start) are left to the report: no return the
    run uses crosses them (a repair there only rescales every later price alike)."""
    _warn_calendar(log, periods_per_year, split_detection)
    _warn_bars_and_volume(log, n_priced, untraded_moves)
    _warn_listings(log, ffill_limit, relist_after)
    _warn_splits(log, used_from)


SPLITS_ON_A_SEVEN_DAY_CALENDAR = (
    "a market without share splits (crypto) wants processing.split_detection.enabled: false, or "
    "its real +-50 % days that hold may be taken for splits and rescaled")


def _warn_calendar(log: dict, periods_per_year: float | None, split_detection: bool = True
                   ) -> None:
    """Bars that are not daily, and dates the strict filter dropped. With periods_per_year set
    to the file's rate the windows may be scaled too (not seen from here): a reminder in the
    info log, and the split hint stays a warning while split detection is on."""
    per_year = log.get("dates_per_year")
    if per_year is not None and not daily_exchange_bars(per_year) and _annualised_as_configured(
            per_year, periods_per_year):
        logger.info("the file has about %.0f dates a year and evaluation.backtest."
                    "periods_per_year is %s: every window still counts rows (scale the *_days "
                    "and *_window(s) keys by %.2f if not done)", per_year, periods_per_year,
                    per_year / 252.0)
        if per_year > 340 and split_detection:
            logger.warning("the file has about %.0f dates a year (a seven-day calendar): %s",
                           per_year, SPLITS_ON_A_SEVEN_DAY_CALENDAR)
    elif per_year is not None and not daily_exchange_bars(per_year) \
            and daily_exchange_bars(log.get("file_dates_per_year") or 0.0):
        _warn_rate_lowered_by_strict_filter(per_year, float(log["file_dates_per_year"]))
    elif per_year is not None and not daily_exchange_bars(per_year):
        seven_days = per_year > 340
        scale = per_year / 252.0
        annualised = (
            f"annualised figures use the file's rate, {per_year:.0f} rows a year (evaluation."
            f"backtest.periods_per_year null); scale the windows by {scale:.2f}"
            if periods_per_year is None else
            f"annualised figures assume evaluation.backtest.periods_per_year ({periods_per_year})"
            f" rows a year; set it to {per_year:.0f} (or null: the file's rate), and scale the "
            f"windows by {scale:.2f}")
        logger.warning(
            "the file has about %.0f dates a year, not the ~252 of daily exchange bars (%s): every "
            "window counts rows, so the label horizon is temporal.prediction_horizon_days rows; "
            "%s for these bars: every "
            "*_days, *_window(s), momentum_long and momentum_skip key of conf/base/parameters_*.yml "
            "counts rows "
            "(temporal.*, cv.min_train_days, processing.eligibility.*, the factor, fear_greed, "
            "selection and decay windows of feature_engineering, regime_models' windows, "
            "evaluation.backtest.max_frozen_days, gates.checks.min_test_dates, registry."
            "warmup_extra_days, inference.history_days), but keep temporal.execution_delay_days "
            "at 1 or more (a trade one bar after the signal)%s", per_year,
            "weekly or monthly bars?" if per_year < 200 else
            "a seven-day calendar: crypto?" if seven_days else "weekends included?", annualised,
            f"; {SPLITS_ON_A_SEVEN_DAY_CALENDAR}" if seven_days and split_detection else "")
    if log.get("dropped_dates"):
        _warn_strict_drops(log["strict_dropped_dates"], int(log["dates_in"]))


def _warn_bars_and_volume(log: dict, n_priced: int, untraded_moves: bool) -> None:
    """Copies of one series, bars outside their range, names without sector or volume, rows
    not traded or with a zero volume."""
    if log.get("duplicate_series"):
        groups = log["duplicate_series"]
        logger.warning(
            "%d group(s) of tickers have identical closes on every date both trade (e.g. %s): "
            "one name exported under two codes counts twice in every cross-section while both "
            "trade; drop the copies",
            len(groups), "; ".join(" = ".join(g) for g in groups[:3]))
    if log.get("bars_outside_range"):
        logger.warning(
            "%d of %d bars (%.1f%%) have an open or close outside [low, high]: an adjusted close "
            "beside raw open / high / low (a vendor export)? Features built from the bar's shape "
            "(range, body, VWAP) are then unreliable: give all four fields on one basis, or only "
            "close", log["bars_outside_range"], log["bars"],
            100 * log["bars_outside_range"] / max(log["bars"], 1))
    if log.get("no_sector"):
        logger.warning(
            "%d name(s) have no sector on any date (e.g. %s): sector-neutral steps have no sector "
            "group for them", len(log["no_sector"]), ", ".join(log["no_sector"][:5]))
    if log["no_volume"]:
        every = len(log["no_volume"]) == n_priced
        logger.warning(
            "%s report zero or no volume on every date they have a close%s: their volume "
            "features are constant and carry nothing (drop the column, or send real volumes)",
            "all names" if every else f"{len(log['no_volume'])} name(s)",
            "" if every else f" (e.g. {', '.join(log['no_volume'][:3])})")
    untraded = log.get("untraded") or {}
    if untraded.get("rows"):
        logger.warning(
            "%d date(s) of %d name(s) are not traded: volume 0 and the close of the day before, "
            "or no row right after such a day (a suspension; e.g. %s), so the name is out of the "
            "cross-section on those dates (no score, no trade, no training row; "
            "processing.untraded_zero_volume)",
            untraded["rows"], untraded["names"], "; ".join(untraded["examples"]))
    masked = (log.get("stale") or {}).get("masked_in_use") or {}
    if masked.get("closes"):
        logger.warning(
            "%d close(s) of %d name(s) from periods.dev_start on were masked as stale: deeper "
            "than processing.stale.mask_after dates into a run of unchanged closes without a "
            "trade (most: %s), so the name is out of the cross-section there (no score, no "
            "trade, no training row). A name whose price rarely moves (a few ticks above zero, "
            "an illiquid share) is masked too unless a volume column shows its trades "
            "(processing.stale.volume_trades); processing.stale.mask_after: null keeps every "
            "close", masked["closes"], masked["names"],
            ", ".join(f"{name} {n}" for name, n in masked["most"].items()))
    moves = log.get("zero_volume_moves") or {}
    if moves.get("rows"):
        logger.warning(
            "%d row(s) of %d name(s) have volume 0 but a close that moved (e.g. %s): a quote if "
            "the vendor prints the bid / ask midpoint when nothing traded, or a volume the file "
            "lost; %s (processing.untraded_zero_volume_moves)", moves["rows"], moves["names"],
            "; ".join(moves["examples"]),
            "not traded: out of the cross-section, frozen in the backtest" if untraded_moves
            else "taken as traded: in the cross-section, and the backtest trades at them")


def _warn_listings(log: dict, ffill_limit: int, relist_after: int | None) -> None:
    """Flat dates, names missing at the end, codes back after a long absence."""
    if log["flat_dates"]:
        logger.warning("%d date(s) on which no name's price moved, e.g. %s: holiday or weekend "
                       "rows copied from the day before? They stay in the calendar (a 0 return "
                       "for every name, one more day in each label window) unless removed from "
                       "the file", len(log["flat_dates"]), ", ".join(log["flat_dates"][:3]))
    if log["missing_at_end"]:
        logger.warning(
            "%d name(s) have no close on the file's last date (e.g. %s): their last price is "
            "carried forward for up to processing.ffill_limit (%s) dates; %s",
            len(log["missing_at_end"]),
            ", ".join(f"{t} (last close {d})" for t, d in list(log["missing_at_end"].items())[:3]),
            ffill_limit,
            "without a close of their own they are out of those dates' cross-section and get no "
            "score (processing.eligibility.require_own_close)" if log.get("carried_rows_out")
            else "a name that stopped trading leaves the cross-section after that")
    if log.get("long_absences"):
        shown = "; ".join(f"{a['ticker']}: last close {a['last_close']}, back on {a['back_on']} "
                          f"after {a['dates_missed']} dates, price x{a['price_ratio']:g}"
                          for a in log["long_absences"][:3])
        if len(log["long_absences"]) > 3:
            shown += f"; {len(log['long_absences']) - 3} more in data_quality_report.json"
        names = {a["ticker"] for a in log["long_absences"]}  # a name may be back more than once
        logger.warning(
            "%d name(s) are back after more than processing.long_absence_days dates without a "
            "close (%d time(s): %s): if a code was reused by another company, its momentum and "
            "other windows across the gap compare two companies: give it another ticker in the "
            "file%s", len(names), len(log["long_absences"]), shown,
            "" if relist_after is None else
            f" (after more than {relist_after} dates without a row it is seasoned afresh, as a "
            "new listing: processing.eligibility.relist_after_days)")


def _warn_reverted_moves(moves: list[dict]) -> None:
    """Jumps taken back within days are bad prints more often than real: say so, not repair."""
    if not moves:
        return
    ranked = sorted(moves, key=lambda m: -abs(m["change"]))
    shown = ", ".join(f"{m['ticker']}@{m['date']} {move_label(m['change'])} "
                      f"(back {m['back']})"
                      for m in ranked[:3])
    logger.warning(
        "%d one-day move(s) beyond processing.split_detection.max_abs_return were taken back "
        "within confirm_days closes (the largest first): %s%s. Bad prints? They are kept as the "
        "file gives them (features and labels that read those closes carry them) and are never "
        "taken for splits: correct the file if they are errors", len(moves), shown,
        f"; all {len(moves)} in data_quality_report.json (reverted_large_moves)"
        if len(moves) > 3 else "")


def _warn_splits(log: dict, used_from) -> None:
    """Repaired, pending and suspected splits and large moves left as they are (those before
    `used_from` only in the report)."""

    def used(events: list[dict]) -> list[dict]:
        start = pd.Timestamp(used_from) if used_from else None
        return [e for e in events if start is None or pd.Timestamp(e["date"]) >= start]

    for text in cleaning.split_warnings(used(log["suspected_splits"]),
                                        log.get("unconfirmed_splits") or [],
                                        used(log.get("split_like_moves") or []),
                                        used(log.get("unexplained_large_moves") or []),
                                        used(log.get("session_moves") or []),
                                        used(log.get("unconfigured_ratio_moves") or []),
                                        used(log.get("market_moves") or [])):
        logger.warning(text)
    _warn_reverted_moves(used(log.get("reverted_large_moves") or []))
