"""data_processing nodes: unpack parameters, call core, return data."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from bma_quant.core.data import (
    bar_rate,
    calendar_holes,
    cleaning,
    cv,
    labels,
    market,
    panel,
    provenance,
    split,
    universe,
)
from bma_quant.core.data.schema import DataValidationError
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.regimes.detection import REGIMES
from bma_quant.pipelines.data_processing import defect_warnings
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics

logger = logging.getLogger(__name__)


def load_raw_data(data: dict, temporal: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate the temporal config, then read and validate the raw panel and optional index.

    Runs first, so rejected data or a leaky config stops the run before any output is written."""
    TemporalConfig.from_params(temporal)
    raw = panel.load_configured_panel(data)
    index = panel.load_configured_index(data)
    panel.check_index_coverage(raw, index, data.get("index_path"))
    logger.info("loaded %d rows, %d tickers from %s", len(raw), raw["ticker"].nunique(),
                data["raw_path"])
    return raw, index


def load_true_regimes(data: dict) -> pd.DataFrame:
    """The latent regimes of a synthetic market (`data.true_regimes_path`, e.g. the
    synthetic_data pipeline's synthetic_regimes), or an empty table for a real panel. Only
    regime_models scores its detector against it; no feature reads it."""
    truth = panel.load_true_regimes(data.get("true_regimes_path"), REGIMES)
    if len(truth):
        logger.info("known regimes: %d dates from %s", len(truth), data["true_regimes_path"])
    return truth


def _refuse_calendar_holes(file_dates: pd.DatetimeIndex, kept_dates: pd.DatetimeIndex,
                           processing: dict, periods: dict | None) -> None:
    """Stop on a hole in the kept calendar from the development start on: every label and
    rolling feature across it would span it. Says whether the file has no date there or the
    strict date filter dropped them."""
    limit = processing.get("max_calendar_gap_days")
    dev_start = (periods or {}).get("dev_start")
    used = kept_dates[kept_dates >= pd.Timestamp(dev_start)] if dev_start else kept_dates
    holes = calendar_holes.calendar_holes(used, limit)
    if not holes:
        return
    first, last, _ = holes[0]
    dropped = int(((file_dates > first) & (file_dates < last)).sum())
    cause = (f"processing.strict_mode dropped the file's {dropped} date(s) in it: fewer than "
             f"coverage_threshold of the names trading lately had a close" if dropped
             else "the file has no date there")
    raise DataValidationError(
        f"the panel has no date in {calendar_holes.describe_holes(holes)} (longer than "
        f"processing.max_calendar_gap_days, {limit}; {cause}): every label and rolling feature "
        f"across it would span the hole. Use the data after it (periods.dev_start: "
        f"\"{holes[-1][1].date()}\"), fill the missing dates, or raise "
        f"processing.max_calendar_gap_days if the market was really closed that long")


def _repair_splits(filled: panel.PanelMatrices, observed: pd.DataFrame, splits_cfg: dict
                   ) -> tuple[cleaning.SplitRepair, list, list, list]:
    """The causal split repair of the forward-filled panel (`observed`: the closes the file
    gave), with the near-ratio moves it left alone, the held moves near no ratio (both empty
    when `report_tolerance` is null or the repair is off) and the held moves at a common split
    ratio the configuration does not list (`report_ratios`)."""
    if not splits_cfg.get("enabled", True):
        return cleaning.SplitRepair(filled, [], 0), [], [], []
    ratios, confirm = list(splits_cfg["ratios"]), int(splits_cfg["confirm_days"])
    max_abs, max_gap = float(splits_cfg["max_abs_return"]), splits_cfg.get("max_gap_days")
    repair = cleaning.split_repair(filled, max_abs, ratios, float(splits_cfg["tolerance"]),
                                   confirm, splits_cfg.get("unit_tolerance"), max_gap,
                                   observed=observed,
                                   open_evidence=bool(splits_cfg.get("open_evidence", False)),
                                   market_min_names=splits_cfg.get("market_min_names"),
                                   market_min_share=float(splits_cfg.get("market_min_share", 0.5)))
    unconfigured = cleaning.unconfigured_ratio_moves(
        filled, max_abs, list(splits_cfg.get("report_ratios") or []),
        float(splits_cfg["tolerance"]), confirm, ratios, repair.events, max_gap,
        observed=observed, open_evidence=bool(splits_cfg.get("open_evidence", False)))
    if splits_cfg.get("report_tolerance") is None:
        return repair, [], [], unconfigured
    report = float(splits_cfg["report_tolerance"])
    near = cleaning.split_like_moves(filled, max_abs, ratios, report, confirm, repair.events,
                                     max_gap, observed=observed)
    unexplained = cleaning.unexplained_large_moves(filled, max_abs, ratios, report, confirm,
                                                   repair.events, max_gap, observed=observed)
    return repair, near, unexplained, unconfigured


def align_and_clean(raw: pd.DataFrame, processing: dict, periods: dict | None = None,
                    periods_per_year: float | None = None) -> tuple[panel.PanelMatrices, dict]:
    """Calendar alignment, strict date filter, limited forward fill, split repair, stale prices and
    the point-in-time universe (`eligible` per date and ticker, from data up to that date)."""
    matrices = panel.to_matrices(raw)
    observed = matrices.close.notna()
    empty_close_suspensions = universe.states_empty_close_suspensions(matrices)
    rule = universe.EligibilityRule.from_params(processing)
    keep = (universe.strict_date_mask(observed, rule) if bool(processing["strict_mode"])
            else np.ones(len(matrices.dates), dtype=bool))
    _refuse_calendar_holes(matrices.dates, matrices.dates[keep], processing, periods)
    kept = matrices.select(dates=matrices.dates[keep])
    _warn_unknown_factor_limits(kept.extra_columns, processing.get("factor_ffill_limit"))
    filled_panel, filled = cleaning.forward_fill_limited(
        kept, int(processing["ffill_limit"]),
        cleaning.factor_fill_limits(kept.extra_columns, processing.get("factor_ffill_limit")),
        zero_carried_volume=bool(processing.get("zero_carried_volume")))
    split_repair, near_splits, unexplained, unconfigured = _repair_splits(
        filled_panel, kept.close, processing["split_detection"])
    stale_cfg = processing["stale"]
    cleaned, stale = cleaning.handle_stale_prices(
        split_repair.panel, int(stale_cfg["min_streak"]), stale_cfg.get("mask_after"),
        carried=kept.close.isna() & filled_panel.close.notna(),
        volume_trades=bool(stale_cfg.get("volume_trades", False)),
    )
    cleaned, untraded, kept_out = _point_in_time_universe(
        kept, observed, split_repair, cleaned, rule, processing, (periods or {}).get("dev_start"),
        rows=universe.file_rows(matrices, empty_close_suspensions))
    log = {
        **_calendar_findings(raw, matrices, keep, kept, filled, processing,
                             empty_close_suspensions),
        # volume-0 rows with an empty close are suspensions, not gaps (a relisting's test),
        # before the first date the file pads a name not yet listed with such rows
        "empty_close_suspensions": empty_close_suspensions,
        "empty_close_padding_from": _day_or_none(universe.empty_close_padding_start(matrices)),
        # codes back after more than eligibility.relist_after_days: new listings (features too)
        "relistings": universe.relisting_events(cleaned.listed_from),
        **_split_findings(split_repair, near_splits, unexplained),
        # one-day jumps a later move took back within confirm_days (bad prints, kept as given)
        "reverted_large_moves": _reverted_moves(filled_panel.close, processing["split_detection"]),
        # held moves at a common split ratio not configured (a 3:2 split's -33 %)
        "unconfigured_ratio_moves": unconfigured,
        "stale": {**asdict(stale), "masked_in_use": _masked_in_use(
            split_repair.panel.close, cleaned.close, (periods or {}).get("dev_start"))},
        "flat_dates": [f"{d.date()} ({d.day_name()[:3]})" for d in cleaning.flat_dates(kept.close)],
        **_trading_findings(kept, untraded, kept_out),
        # the kept dates (after the strict filter), as date_split and evaluation read them
        "dates_per_year": bar_rate.dates_per_year(kept.dates),
        # the file's own dates: a rate the strict filter lowered is not a bar frequency
        "file_dates_per_year": bar_rate.dates_per_year(matrices.dates),
        "no_sector": universe.names_without_sector(kept.sector),
        "bars_outside_range": cleaning.bars_outside_range(kept),
        "duplicate_series": cleaning.duplicate_series(kept.close),
        "bars": int(kept.close.notna().to_numpy().sum()),
        # per user factor, cells holding a value carried from an earlier date (forward_filled_days
        # counts closes only): a factor given on few dates is mostly its last value
        "factor_cells_carried": {
            str(name): int((kept.values[name].isna() & filled_panel.values[name].notna())
                           .to_numpy().sum()) for name in kept.extra_columns},
    }
    defect_warnings.warn_about_defects(
        log, n_priced=int(kept.close.notna().any(axis=0).sum()),
        ffill_limit=processing["ffill_limit"], periods_per_year=periods_per_year,
        used_from=(periods or {}).get("dev_start"),
        untraded_moves=bool(processing.get("untraded_zero_volume_moves"))
        and processing.get("untraded_zero_volume", True),
        relist_after=rule.relist_after_days,
        split_detection=bool(processing["split_detection"].get("enabled", True)))
    return cleaned, log


def _masked_in_use(before: pd.DataFrame, after: pd.DataFrame, used_from) -> dict:
    """Closes the stale rule masked on the dates the run uses (from periods.dev_start): their
    count, names and the names with the most (a masked stretch before dev_start changes
    nothing the run reads)."""
    masked = before.notna() & after.isna()
    if used_from is not None:
        masked = masked.loc[masked.index >= pd.Timestamp(used_from)]
    per_name = masked.sum(axis=0)
    per_name = per_name[per_name > 0].sort_values(ascending=False, kind="stable")
    return {"closes": int(per_name.sum()), "names": len(per_name),
            "most": {str(name): int(n) for name, n in per_name.head(5).items()}}


def _warn_unknown_factor_limits(user_columns: list[str], limits) -> None:
    """A per-column factor_ffill_limit naming no user column (a typo) would be ignored."""
    if isinstance(limits, Mapping):
        unknown = sorted(set(map(str, limits)) - set(map(str, user_columns)))
        if unknown:
            logger.warning("processing.factor_ffill_limit names %s, not among the file's user "
                           "factor columns (%s): ignored, a misspelt name?", ", ".join(unknown),
                           ", ".join(map(str, user_columns)) or "none")


def _point_in_time_universe(kept: panel.PanelMatrices, observed: pd.DataFrame,
                            split_repair: cleaning.SplitRepair, cleaned: panel.PanelMatrices,
                            rule: universe.EligibilityRule, processing: dict,
                            dev_start: str | None = None, rows: pd.DataFrame | None = None
                            ) -> tuple[panel.PanelMatrices, pd.DataFrame | None, dict[str, int]]:
    """`cleaned` with `eligible`, `withheld`, `tradable` and `listed_from`; the rows the file
    marks as not traded; the rows each optional rule alone keeps out. Decided on the raw
    calendar (`observed`) with trailing windows: the same on any prefix of the panel. Names in
    no cross-section from `dev_start` on are warned about with their cause. `rows`
    (`universe.file_rows`, None = `observed`) decides relistings."""
    rows = observed if rows is None else rows
    # a suspension the file states (volume 0, close copied) is no trade: out of that date's
    # cross-section (nothing scored or traded, no training row), judged from that day alone
    untraded = (cleaning.untraded_cells(kept, moves=bool(
                    processing.get("untraded_zero_volume_moves")))
                if processing.get("untraded_zero_volume", True) else None)
    # a frozen price that was masked is no more a trade than a missing one
    traded = universe.traded_cells(observed, split_repair.panel.close, cleaned.close, untraded)
    trailing = universe.trailing_eligibility(traded, rule, rows=rows)
    exclusions = _exclusions(kept, cleaned.close, processing["eligibility"])
    rules = {"untraded": untraded, **exclusions}
    eligible, kept_out = universe.eligible_and_kept_out(trailing, cleaned.close, rules)
    _warn_never_eligible(*universe.never_eligible_causes(
        trailing, cleaned.close, eligible, rules, None if dev_start is None
        else pd.Timestamp(dev_start)), processing,
        # a dev_start before the file's first date says nothing: the whole file
        dev_start if dev_start is not None and len(cleaned.close.index)
        and pd.Timestamp(dev_start) > cleaned.close.index[0] else None)
    cleaned = replace(cleaned, eligible=eligible, withheld=split_repair.withheld,
                      tradable=universe.tradable_cells(traded, cleaned.close,
                                                       split_repair.withheld),
                      listed_from=_listed_from(rows, rule, cleaned.close))
    return cleaned, untraded, kept_out


def _day_or_none(date: pd.Timestamp | None) -> str | None:
    return None if date is None else str(date.date())


def _calendar_findings(raw: pd.DataFrame, matrices: panel.PanelMatrices, keep: np.ndarray,
                       kept: panel.PanelMatrices, filled: int, processing: dict,
                       empty_close_suspensions: bool = False) -> dict:
    """The file's size, its calendar (missing, filled and dropped dates), listings, delistings
    and long absences, for the data-quality report."""
    observed = matrices.close.notna()
    # a listing's cells from its first to its last close in the file: the dates before it
    # listed, after it stopped and between a reused code's two companies are no gaps (on a
    # survivorship-free panel they were most of the grid)
    relist_after = (processing.get("eligibility") or {}).get("relist_after_days")
    alive = universe.listed_spans(observed.to_numpy(),
                                universe.relisting_rows(universe.file_rows(
                                    matrices, empty_close_suspensions), relist_after))
    alive_kept = alive[keep]
    kept_values = kept.close.notna().to_numpy()
    return {
        "rows_in": int(len(raw)),
        "tickers_in": int(raw["ticker"].nunique()),
        "dates_in": int(raw["date"].nunique()),
        "missing_days_in_calendar": int((~observed.to_numpy() & alive).sum()),
        "missing_days": int((~kept_values & alive_kept).sum()),
        "forward_filled_days": filled,
        "dropped_dates": int((~keep).sum()),
        "strict_dropped_dates": [f"{d.date()} ({d.day_name()[:3]})"
                                 for d in matrices.dates[~keep]],
        "coverage": float(kept_values[alive_kept].mean()) if alive_kept.any() else 0.0,
        # on the dates kept: a name without a close on the file's thin last dates, which the
        # strict filter dropped, is not missing at the panel's end
        **universe.listing_events(observed.loc[keep], int(processing["ffill_limit"])),
        "long_absences": (universe.long_absences(kept.close, int(processing["long_absence_days"]))
                          if processing.get("long_absence_days") is not None else []),
    }


def _split_findings(split_repair: cleaning.SplitRepair, near_splits: list[dict],
                    unexplained: list[dict]) -> dict:
    """Repaired, pending and in-session split candidates and the large moves left as they are."""
    events = split_repair.events
    return {
        "suspected_splits": [asdict(e) for e in events if e.status == "repaired"],
        # near-ratio moves at the file's end that confirm_days closes have not yet confirmed
        "unconfirmed_splits": [asdict(e) for e in events if e.status == "pending"],
        # near-ratio moves whose open was at the old level: in the session, not overnight
        "session_moves": [asdict(e) for e in events if e.status == "in session"],
        # near-ratio moves on a day the market moved with them (split_detection.market_min_names)
        "market_moves": [asdict(e) for e in events if e.status == "market move"],
        "split_withheld_cells": split_repair.withheld_cells,
        "split_like_moves": near_splits,
        # held moves beyond max_abs_return near no configured ratio (crash, or a 7:1 split?)
        "unexplained_large_moves": unexplained,
    }


def _trading_findings(kept: panel.PanelMatrices, untraded: pd.DataFrame | None,
                      kept_out: dict[str, int]) -> dict:
    """Volume defects, not-traded rows and the rows the optional rules keep out."""
    return {
        "no_volume": cleaning.names_without_volume(kept),
        "untraded": cleaning.untraded_summary(untraded),
        # volume 0 with a close that moved (a quote, or a lost volume): reported either way
        "zero_volume_moves": cleaning.untraded_summary(cleaning.zero_volume_moves(kept)),
        # rows that only processing.eligibility.min_price keeps out of the cross-section
        "below_min_price_rows": kept_out["below_price"],
        # ... only min_dollar_volume
        "below_min_dollar_volume_rows": kept_out["illiquid"],
        # ... only require_own_close (forward-filled closes)
        "carried_rows_out": kept_out["carried"],
        "first_volume": cleaning.first_positive_volume(kept),
    }


def _exclusions(kept: panel.PanelMatrices, close: pd.DataFrame, eligibility: dict
                ) -> dict[str, pd.DataFrame | None]:
    """The optional rules that keep a priced row out of the cross-section (None: off): a price
    below `min_price`, a dollar volume below `min_dollar_volume`, a forward-filled close
    (`require_own_close`). `kept`: the file's rows (strict dates, before the fill); `close`: the
    cleaned prices."""
    if eligibility.get("min_dollar_volume") is not None and "volume" not in kept.values:
        logger.warning("processing.eligibility.min_dollar_volume is set, but the file has no "
                       "volume column: no name is judged by its dollar volume")
    return universe.exclusion_cells(kept.close, kept.values.get("volume"), close, eligibility)


def _rule_setting(rule: str, processing: dict) -> str:
    eligibility = processing["eligibility"]
    return {"untraded": "processing.untraded_zero_volume (a volume-0 row is no trade)",
            "below_price": f"processing.eligibility.min_price ({eligibility.get('min_price')})",
            "illiquid": "processing.eligibility.min_dollar_volume "
                        f"({eligibility.get('min_dollar_volume')})",
            "carried": "processing.eligibility.require_own_close (its dates with enough history "
                       "after its first close have only closes carried forward: it stopped "
                       "trading first)"}[rule]


def _warn_never_eligible(too_little_history: list[str], kept_out: dict[str, list[str]],
                         processing: dict, dev_start: str | None) -> None:
    """Names in no date's cross-section, with the cause: too little history, or the optional
    eligibility rules (a price floor is no history problem)."""
    since = f" from {dev_start} on" if dev_start else ""
    if too_little_history:
        eligibility = processing["eligibility"]
        logger.warning(
            "%d name(s) are never in the cross-section%s (too little history: a name enters "
            "after %s dates of closes with %.0f%% trailing coverage, processing.eligibility): "
            "%s%s", len(too_little_history), since, eligibility["min_history_days"],
            100 * float(processing["coverage_threshold"]), ", ".join(too_little_history[:10]),
            " ..." if len(too_little_history) > 10 else "")
    if kept_out:
        by_rules: dict[tuple[str, ...], list[str]] = {}
        for ticker, rules in kept_out.items():
            by_rules.setdefault(tuple(rules), []).append(ticker)
        logger.warning(
            "%d name(s) are never in the cross-section%s although their history admits them: "
            "kept out by %s", len(kept_out), since, "; ".join(
                f"{' and '.join(_rule_setting(r, processing) for r in rules)}: "
                f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}"
                for rules, names in by_rules.items()))


def _listed_from(observed: pd.DataFrame, rule: universe.EligibilityRule,
                 close: pd.DataFrame) -> pd.DataFrame | None:
    """`universe.listed_from_dates` on the file's rows (raw calendar), on the cleaned calendar:
    the features of a relisted name read its current listing only. None without a relisting."""
    listed_from = universe.listed_from_dates(observed, rule.relist_after_days)
    return None if listed_from is None else listed_from.reindex(index=close.index,
                                                                columns=close.columns)


def _reverted_moves(close: pd.DataFrame, splits_cfg: dict) -> list[dict]:
    if not splits_cfg.get("enabled", True):
        return []
    return cleaning.reverted_move_report(close, float(splits_cfg["max_abs_return"]),
                                         int(splits_cfg["confirm_days"]),
                                         splits_cfg.get("max_gap_days"))


def _warn_dates_before_dev_start(dates: pd.DatetimeIndex, dev_start) -> None:
    """Name the file's dates periods.dev_start leaves out: the default (1995-01-03) is set for
    the shipped sample, and a user's longer file would otherwise lose years without a word."""
    if not dev_start:
        return
    before = dates[dates < pd.Timestamp(dev_start)]
    if len(before):
        logger.warning(
            "periods.dev_start (%s) leaves out the file's %d date(s) before it (%s..%s): they "
            "are neither trained on nor used as feature history (the default suits the shipped "
            "S&P sample, whose 1990-94 prices are rounded); periods.dev_start: null uses them",
            pd.Timestamp(dev_start).date(), len(before), before[0].date(), before[-1].date())


def make_date_split(clean: panel.PanelMatrices, temporal: dict, split_params: dict) -> tuple[dict, dict]:
    """Development | gap | test dates; also returned flat for MLflow params (`split.*`)."""
    config = TemporalConfig.from_params(temporal)
    dates = split.split_dates(
        clean.dates, gap_days=config.cv_gap_days,
        test_fraction=split.configured_test_fraction(split_params),
        test_start=split_params.get("test_start"), dev_start=split_params.get("dev_start"),
    )
    # the calendar's rate: what annualised figures assume when periods_per_year is null
    dates["dates_per_year"] = bar_rate.dates_per_year(clean.dates)
    _warn_dates_before_dev_start(clean.dates, split_params.get("dev_start"))
    logger.info("split: dev %s..%s | gap %d | test %s..%s", dates["dev_start"], dates["dev_end"],
                dates["gap_days"], dates["test_start"], dates["test_end"])
    # dates_per_year too: a 365-date (crypto) run's Sharpe sits beside 252-date runs in the UI
    as_params = {k: dates[k] for k in ("dev_start", "dev_end", "test_start", "test_end", "gap_days",
                                       "dates_per_year")}
    return dates, as_params


def finalise_panel(
    clean: panel.PanelMatrices, date_split: dict, processing: dict
) -> tuple[pd.DataFrame, dict]:
    """Impute optional numeric columns by each date's cross-sectional median, add daily returns,
    restrict to dates from dev_start on, and return the long panel: one row per date and listed name
    (from its first close on) with a value that day, price history for the features, the
    cross-section in `eligible`."""
    start = pd.Timestamp(date_split["dev_start"])
    # Rows before a name's first close carry nothing, and a cut panel would not know the name yet.
    listed = clean.close.notna().cummax()
    clean = clean.select(dates=clean.dates[clean.dates >= start])
    impute_cols = [c for c in clean.values if c != "close" and c not in cleaning.PRICE_FIELDS]
    imputed = 0
    sparse = cleaning.sparse_columns(clean, impute_cols)
    for name, gap in sparse.items():
        logger.warning(
            "column %s is missing on %.0f%% of the priced cells after its last value is carried "
            "forward for up to %s dates%s: where it is missing the models see an imputed value "
            "(that date's cross-sectional median, else the training median); a factor published "
            "monthly or quarterly wants processing.factor_ffill_limit as long as its period",
            name, 100 * gap["missing_share"],
            (cleaning.factor_fill_limits(clean.extra_columns,
                                         processing.get("factor_ffill_limit")) or {}
             ).get(name, processing["ffill_limit"]),
            f", and on every name from {gap['missing_from']} to the end (the test period and "
            "inference see no value)" if gap["missing_from"] else "")
    late = (cleaning.late_columns(clean, [c for c in clean.values if c != "close"],
                                 int(processing["late_column_days"]))
            if processing.get("late_column_days") is not None else {})
    if late:
        logger.warning(
            "column(s) with no value on any name for the panel's first dates: %s; what is built "
            "from them (volume, candle or user factors) has no value before, and the models see "
            "imputed values there", "; ".join(
                f"{n} from {v['first_date'] or 'never'} ({v['dates_without']} priced dates "
                "without)" for n, v in late.items()))
    if processing.get("impute_medians", True) and impute_cols:
        clean, imputed = cleaning.impute_cross_sectional_median(clean, impute_cols)
    returns = cleaning.daily_returns(clean.close, clean.withheld, clean.listed_from)
    cells = panel.cells_with_values(clean, listed.loc[clean.dates].to_numpy())
    long = panel.to_long(clean, extra={"ret_1d": returns}, cells=cells)
    summary = universe.universe_summary(clean.eligible)  # never_eligible: warned in align_and_clean
    if summary["eligible_rows"] == 0:
        eligibility = processing["eligibility"]
        raise DataValidationError(
            f"no name is in the cross-section on any date from {start.date()} on: nothing to "
            "train or score. The point-in-time universe's settings leave it empty "
            f"(processing.eligibility: min_history_days {eligibility['min_history_days']}, "
            f"min_price {eligibility.get('min_price')}, min_dollar_volume "
            f"{eligibility.get('min_dollar_volume')}, require_own_close "
            f"{bool(eligibility.get('require_own_close'))}; processing.coverage_threshold "
            f"{processing['coverage_threshold']}): see the warnings above for each name's cause")
    return long, {"imputed_values": imputed, "sparse_columns": sparse, "late_columns": late,
                  **summary}


def make_labels(primary_panel: pd.DataFrame, temporal: dict,
                clean_panel: panel.PanelMatrices | None = None) -> pd.DataFrame:
    """Forward returns of every primary_panel row; with `temporal.label_exit_at_last_trade`
    (default true) a name without a close at the window's end is valued at its last trade in
    the window (core.data.labels.forward_return_labels), unless a close withheld by the split
    repair (`clean_panel.withheld`: a move near a split ratio awaiting confirmation, perhaps a
    crash) lies after that trade."""
    config = TemporalConfig.from_params(temporal)
    close = primary_panel.pivot(index="date", columns="ticker", values="close")
    traded = listed_from = unknown = None
    wide = primary_panel.pivot  # date x ticker matrices of the panel's columns
    if (temporal.get("label_exit_at_last_trade", True)
            and universe.TRADABLE in primary_panel.columns):
        traded = wide(index="date", columns="ticker", values=universe.TRADABLE)
        if clean_panel is not None and clean_panel.withheld is not None:
            unknown = clean_panel.withheld.reindex(index=close.index, columns=close.columns,
                                                   fill_value=False)
    if universe.LISTED_FROM in primary_panel.columns:
        listed_from = wide(index="date", columns="ticker", values=universe.LISTED_FROM)
    label = labels.forward_return_labels(close, config.horizon_days, config.execution_delay_days,
                                         traded, listed_from, unknown)
    out = label.stack(future_stack=True).rename("label").reset_index()
    out = primary_panel[["date", "ticker"]].merge(out, on=["date", "ticker"], how="left")
    return out.sort_values(["date", "ticker"], kind="stable").reset_index(drop=True)


def make_market(primary_panel: pd.DataFrame, market_index: pd.DataFrame,
                processing: dict) -> pd.DataFrame:
    panel.warn_index_jumps(market_index, "the market index (data.index_path)",
                           processing.get("index_jump_warning"))
    returns = primary_panel.pivot(index="date", columns="ticker", values="ret_1d")
    return market.market_series(returns, market_index)


def make_cv_folds(date_split: dict, primary_panel: pd.DataFrame, temporal: dict, cv_params: dict):
    """Purged walk-forward folds over development dates, shared by every later pipeline; the
    first `n_tuning_folds` are tuning folds, the rest out-of-fold folds (nested selection).

    On a panel too short for the requested layout the layout is scaled down to its floor
    (`cv.short_panel`, core.data.cv.fit_cv_layout); the layout used is returned for MLflow."""
    config = TemporalConfig.from_params(temporal)
    dates = pd.DatetimeIndex(primary_panel["date"].unique())
    dev = dates[(dates >= pd.Timestamp(date_split["dev_start"]))
                & (dates <= pd.Timestamp(date_split["dev_end"]))]
    requested, floor, adapt = cv.layout_params(cv_params)
    layout, adapted = cv.fit_cv_layout(len(dev), requested, config.cv_gap_days, floor, adapt)
    if adapted:
        # a first fold asking for more dates than development has: name the parameter too
        cause = f"short panel: {len(dev)} development dates do not hold the requested CV layout"
        if requested.min_train_days >= len(dev):
            cause += (f" (cv.min_train_days, {requested.min_train_days}, alone asks for more "
                      "training dates than that)")
        logger.warning(
            "%s (n_splits=%d, min_train_days=%d, n_tuning_folds=%d); using n_splits=%d, "
            "min_train_days=%d, n_tuning_folds=%d (%d test dates per fold; floor in "
            "cv.short_panel.floor)", cause, requested.n_splits,
            requested.min_train_days, requested.n_tuning_folds, layout.n_splits,
            layout.min_train_days, layout.n_tuning_folds,
            layout.test_days(len(dev), config.cv_gap_days))
    splitter = cv.PurgedWalkForwardSplit(
        n_splits=layout.n_splits, temporal=config, min_train_days=layout.min_train_days,
        window=cv_params["window"], max_train_days=cv_params.get("max_train_days"),
    )
    folds = cv.assign_stages(splitter.date_folds(dev), layout.n_tuning_folds,
                             gap=config.cv_gap_days)
    for f in folds:
        logger.info("fold %d (%s): train %d dates (..%s), test %s..%s", f.fold, f.stage,
                    len(f.train_dates), f.train_dates.max().date(), f.test_dates.min().date(),
                    f.test_dates.max().date())
    # tuning_purge_days also marks folds made with the purge (older stored ones are refused)
    purge = int(config.cv_gap_days) if layout.n_tuning_folds else 0
    return cv.folds_table(folds), {**asdict(layout), "adapted": int(adapted),
                                   "tuning_purge_days": purge}


def data_quality_report(
    cleaning_log: dict, finalise_log: dict, date_split: dict, primary_panel: pd.DataFrame,
    market_frame: pd.DataFrame, cv_layout: dict, data: dict | None = None,
    temporal: dict | None = None, processing: dict | None = None, periods: dict | None = None,
    cv_params: dict | None = None,
) -> tuple[dict, dict]:
    """The data-quality report (JSON artifact) and the `data_processing.*` metrics. `source`
    names the files the stored panel came from (path, size, content hash) and `settings` the
    parameter values it was built with: a later layer run alone checks both."""
    data = data or {}
    report = {
        "source": {
            "raw_path": None if data.get("raw_path") is None else str(data["raw_path"]),
            "raw_file": provenance.file_fingerprint(data.get("raw_path")),
            "index_path": None if not data.get("index_path") else str(data["index_path"]),
            "index_file": provenance.file_fingerprint(data.get("index_path")),
            "true_regimes_path": (None if not data.get("true_regimes_path")
                                  else str(data["true_regimes_path"])),
            "true_regimes_file": provenance.file_fingerprint(data.get("true_regimes_path")),
        },
        "settings": provenance.panel_settings({
            "data": data, "temporal": temporal, "processing": processing, "periods": periods,
            "cv": cv_params}),
        **cleaning_log,
        **finalise_log,
        "rows_out": int(primary_panel[universe.ELIGIBLE].sum()),
        "grid_cells": int(len(primary_panel)),
        "tickers": int(primary_panel["ticker"].nunique()),
        "dates": int(primary_panel["date"].nunique()),
        "market_source": str(market_frame["source"].iloc[0]) if len(market_frame) else "none",
        "split": date_split,
        "cv_layout": cv_layout,
    }
    metrics = {
        "rows_in": report["rows_in"],
        "rows_out": report["rows_out"],
        "tickers": report["tickers"],
        "dates": report["dates"],
        "coverage": report["coverage"],  # over each listing's life (_calendar_findings)
        "missing_days": report["missing_days"],
        "forward_filled_days": report["forward_filled_days"],
        "suspected_splits": len(report["suspected_splits"]),
        "split_withheld_cells": report.get("split_withheld_cells", 0),
        "stale_streaks": report["stale"]["streaks"],
        "stale_masked_days": report["stale"]["masked_days"],
        "dropped_tickers": len(report["never_eligible"]),
        "no_price_tickers": len(report["no_prices"]),
        "dropped_dates": report["dropped_dates"],
        "flat_dates": len(report.get("flat_dates", [])),
        "late_listings": len(report["late_listings"]),
        "delistings": len(report["delistings"]),
        "long_absences": len(report.get("long_absences", [])),
        "relistings": len(report.get("relistings", [])),
        "missing_at_end": len(report.get("missing_at_end", {})),
        "no_volume_tickers": len(report.get("no_volume", [])),
        "untraded_rows": (report.get("untraded") or {}).get("rows", 0),
        "zero_volume_move_rows": (report.get("zero_volume_moves") or {}).get("rows", 0),
        "below_min_dollar_volume_rows": report.get("below_min_dollar_volume_rows", 0),
        "carried_rows_out": report.get("carried_rows_out", 0),
        "bars_outside_range": report.get("bars_outside_range", 0),
        **{f"eligible_names_{k}": v for k, v in report["eligible_names_per_date"].items()},
        "imputed_values": report["imputed_values"],
        # 1 when a short panel scaled the CV layout down (cv.short_panel); layout in cv_layout.*
        "cv_layout_adapted": cv_layout["adapted"],
    }
    return report, as_mlflow_metrics(metrics)
