"""What a prediction chain checks in a raw slice before scoring it: refusals where a score would
silently differ from training's (a missing index level or sector, a calendar hole in the warm-up,
an empty user factor, too little history) and warnings where it may (new sector labels, names
without a sector, large moves on the scored date, a thin cross-section).

A mixin of ``PredictionChain`` (``serving.chain``): the methods read the chain's fitted
attributes. Kept apart from the scoring steps so each module holds one concern; pickled chains
are unaffected (a pickle names the class, whose methods come from its module at load time).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bma_quant.core.data import calendar_holes, cleaning
from bma_quant.core.data import panel as panel_lib
from bma_quant.core.data.schema import local_clock
from bma_quant.core.features.factors import USER_FAMILY
from bma_quant.serving.errors import ChainInputError

BAR_COLUMNS = ("volume", "open", "high", "low")  # read by volume, candle and range factors
logger = logging.getLogger(__name__)

MARKET_LEVEL = "market_level"  # optional input column: the index level on that date
# a sent level this far from the stored index's on the same date is another series (float32
# copies of the same levels differ by about 1e-7)
INDEX_LEVEL_RTOL = 1e-6


def flat_dates_warning(close: pd.DataFrame, dates, source: str) -> str | None:
    """The warning for `dates` (of the date x ticker `close`) on which no name's price moved
    (every close equals the date before's): a holiday or weekend row copied from the day before,
    or None. Its scores, and every window after it, read a day no market traded."""
    flat = [d for d in cleaning.flat_dates(close) if d in set(pd.DatetimeIndex(dates))]
    if not flat:
        return None
    shown = ", ".join(str(pd.Timestamp(d).date()) for d in flat[:5])
    return (f"{source}: no name's price moved on {len(flat)} date(s) the chain's training data "
            f"does not have ({shown}{' ...' if len(flat) > 5 else ''}; every close equals the "
            "day before's): a holiday or weekend row copied from the day before? Its scores "
            "repeat the day before's prices and every rolling window after it counts a day no "
            "market traded: leave such rows out")


class SliceChecks:
    """Input checks of ``PredictionChain`` (attributes: cleaner, feature_spec, warmup_days,
    market_index, data_end, training_sectors, unsectored_names, typical_names,
    thin_cross_section_share)."""

    def _check_stored_index_covers(self, index: pd.DataFrame, dates: pd.DatetimeIndex,
                                   sent_empty: bool = False) -> None:
        """Refuse dates after the training data without their index level: the market features
        (trend, volatility, regimes) would read a level carried forward for days, and every
        score would move. Up to the training panel's last date the chain repeats what training
        did, carried-forward days included. ``sent_empty``: the panel has the column, but no
        level in it (said so, not called absent)."""
        if len(dates) == 0:  # nothing left after cleaning: the history check says so
            return
        known_until = index["date"].max()
        data_end = getattr(self, "data_end", None)
        if data_end is not None:
            known_until = max(known_until, pd.Timestamp(data_end))
        if dates.max() <= known_until:
            return
        later = int((dates > known_until).sum())
        lacking = (f"the panel's '{MARKET_LEVEL}' column holds no level (every value is empty)"
                   if sent_empty else f"the panel has no '{MARKET_LEVEL}' column")
        raise ChainInputError(
            f"{lacking} and the chain's stored market index "
            f"ends on {index['date'].max().date()}, but the panel runs to {dates.max().date()} "
            f"({later} date(s) later): the chain was trained with a market index, so later "
            f"dates need their level. Send it as a '{MARKET_LEVEL}' column (inference pipeline: "
            f"inference.data.index_path)")

    def _check_slice_levels(self, raw: pd.DataFrame, index: pd.DataFrame,
                            dates: pd.DatetimeIndex) -> None:
        """The panel's own levels, held to what the stored index and an index file are held to:
        a cleaned date before the first level or after the last one is refused (its level
        would be missing, or carried forward onto the scored date, and every score would move);
        inside their span a missing level is carried forward as training carries an index
        file's, warned about when a week or more is missing in a row, refused when most are."""
        outside = dates[(dates < index["date"].min()) | (dates > index["date"].max())]
        if len(outside):
            shown = ", ".join(str(d.date()) for d in outside[-5:])
            raise ChainInputError(
                f"the panel's '{MARKET_LEVEL}' column has no level on {len(outside)} date(s) "
                f"before its first level or after its last ({index['date'].min().date()}.."
                f"{index['date'].max().date()}): {'..., ' if len(outside) > 5 else ''}{shown}. "
                "The chain was trained with a market index, and a level carried forward onto "
                "those dates (or none) would move every score: send each date's level")
        panel_lib.check_index_gaps(  # the same check an index file gets at inference
            raw, index, f"the panel's '{MARKET_LEVEL}' column",
            fix=f"send the level of every trading date in the '{MARKET_LEVEL}' column")

    def _levels_filled_from_stored(self, index: pd.DataFrame,
                                   dates: pd.DatetimeIndex) -> pd.DataFrame:
        """The sent levels, completed on the slice's dates that have none with the stored
        index's levels (those training used): a level left empty was carried forward from the
        date before, moving that date's and later scores (by up to 0.2 on the shipped sample)
        with only the regime evidence's "other prices" warning. Dates after the stored index
        without a level are still carried forward, as training carries an index file's, and
        named: nothing else knows their level."""
        stored = getattr(self, "market_index", None)
        if stored is None or not len(stored):
            return index
        stored = stored.assign(date=local_clock(pd.to_datetime(stored["date"])).dt.normalize()
                               ).dropna(subset=["level"])
        sent = pd.DatetimeIndex(index["date"])  # the request's own levels, before the fill
        after_stored = dates > stored["date"].max()
        unsent = dates[after_stored & (dates < sent.min())]
        if len(unsent):  # nothing knows these levels: refused, as before the column's first
            raise ChainInputError(
                f"the panel's '{MARKET_LEVEL}' column has no level on {len(unsent)} date(s) "
                f"after the stored market index ends ({stored['date'].max().date()}) and before "
                f"its first level ({sent.min().date()}): {unsent[0].date()}.."
                f"{unsent[-1].date()}. A level carried over them would move every score: send "
                "each date's level")
        fill = stored.loc[stored["date"].isin(dates) & ~stored["date"].isin(index["date"]),
                          ["date", "level"]]
        if len(fill):
            index = pd.concat([index, fill], ignore_index=True).sort_values(
                "date", ignore_index=True)
        later = dates[after_stored & ~dates.isin(sent) & (dates > sent.min())
                      & (dates < sent.max())]
        if len(later):
            logger.warning(
                "the panel's '%s' column has no level on %d date(s) after the stored market "
                "index ends (%s): the level before each is carried forward (a market return of "
                "0 there, two days' move the day after), which moves their scores and every "
                "later one; send each date's level", MARKET_LEVEL, len(later),
                ", ".join(str(d.date()) for d in later[:5]) + (", ..." if len(later) > 5 else ""))
        return index

    def _check_sectors(self, raw: pd.DataFrame) -> None:
        """Refuse a panel without sectors when training demeaned features within sectors (every
        score would change); name sector labels training never saw (names without a sector are
        named once the scored dates are known: ``_warn_names_without_sector``)."""
        trained = getattr(self, "training_sectors", None)
        if not trained:
            return
        labels = raw["sector"] if "sector" in raw else pd.Series(dtype=object)
        if labels.notna().sum() == 0:
            raise ChainInputError(
                f"the panel has no 'sector' column, but the chain was trained on features "
                f"demeaned within {len(trained)} sectors ({', '.join(trained[:5])}"
                f"{', ...' if len(trained) > 5 else ''}): without it every score changes. Send "
                "each name's sector, or retrain with feature_engineering.transforms."
                "sector_neutralise: false")
        known = raw.loc[labels.notna(), ["ticker", "sector"]].astype(str)
        unseen = known.loc[~known["sector"].isin(set(trained))]
        if len(unseen):
            new_labels = sorted(unseen["sector"].unique())
            names = sorted(unseen["ticker"].unique())
            logger.warning(
                "sector label(s) not seen in training: %s (%d name(s): %s%s): features are "
                "demeaned within the sectors as given, so these names and their new sector "
                "neighbours score differently than under training's labels",
                ", ".join(new_labels[:5]), len(names), ", ".join(names[:5]),
                " ..." if len(names) > 5 else "")

    def _check_calendar_holes(self, dates: pd.DatetimeIndex, scored: pd.DatetimeIndex) -> None:
        """Refuse a slice whose calendar has a hole (as training does, processing.
        max_calendar_gap_days) where the scored dates' features read: from the warm-up before
        the first scored date on. Earlier holes are harmless."""
        limit = getattr(self.cleaner, "max_calendar_gap_days", None)
        if limit is None or scored.empty:
            return
        start = max(int(dates.searchsorted(scored[0])) - self.warmup_days, 0)
        holes = calendar_holes.calendar_holes(dates[start:], limit)
        if holes:
            raise ChainInputError(
                f"the cleaned panel has no date in {calendar_holes.describe_holes(holes)}"
                f", among the dates scored or their {self.warmup_days}-date warm-up (longer than "
                f"processing.max_calendar_gap_days, {limit}): their rolling features would span "
                f"the hole. Score dates after it with {self.warmup_days} dates of history after "
                f"it, or fill the missing dates")

    def _training_calendar(self) -> pd.DatetimeIndex | None:
        """The training panel's dates (its stored regimes cover every one); None in chains
        pickled without them."""
        known = getattr(self, "known_regimes", None)
        if known is None or not len(known):
            return None
        # chains pickled before stored dates were days may hold zoned timestamps
        return pd.DatetimeIndex(local_clock(pd.to_datetime(known["date"]))).normalize(
        ).sort_values()

    def _warn_calendar_against_training(self, given: pd.DataFrame, dates: pd.DatetimeIndex,
                                        scored: pd.DatetimeIndex) -> None:
        """Inside the training data's span the slice's cleaned dates are training's: a trading
        date left out (or added) shifts every rolling window after it by a row, so the scores
        differ from what the same prices gave in training, with no other word (a day dropped
        from a request moved 19 of 20 scores). Flat dates (a copied holiday row) the training
        data does not have are named wherever they fall in the slice."""
        trained = self._training_calendar()
        if trained is None or dates.empty:
            return
        lo, hi = max(dates[0], trained[0]), min(dates[-1], trained[-1])
        if lo <= hi:
            inside = dates[(dates >= lo) & (dates <= hi)]
            want = trained[(trained >= lo) & (trained <= hi)]
            missing, extra = want.difference(inside), inside.difference(want)
            if len(missing) or len(extra):
                def shown(days):
                    return ", ".join(str(d.date()) for d in days[:5]) + (
                        " ..." if len(days) > 5 else "")
                logger.warning(
                    "between %s and %s the cleaned panel's trading dates are not the training "
                    "data's: %s%s. Every rolling window counts rows, so the scores after it "
                    "differ from what the same prices gave in training: send every trading date "
                    "(a date with too few names' closes is dropped as training drops it, "
                    "processing.strict_mode)", lo.date(), hi.date(),
                    f"{len(missing)} missing ({shown(missing)})" if len(missing) else "",
                    ("; " if len(missing) else "")
                    + (f"{len(extra)} it does not have ({shown(extra)})" if len(extra) else ""))
        close = given.pivot_table(index="date", columns="ticker", values="close", aggfunc="last")
        new = dates.difference(trained)
        warning = flat_dates_warning(close, new, "the panel")
        if warning:
            logger.warning(warning)

    def _warn_scored_in_sample(self, scored: pd.DatetimeIndex) -> None:
        """Scored dates the models were fitted or chosen on (the development period), or before
        the training data: their scores are not forecasts (a replayed history would read them
        as out-of-sample)."""
        trained = self._training_calendar()
        end = getattr(self, "development_end", None)
        if scored.empty:
            return
        if trained is not None and scored[0] < trained[0]:
            logger.warning(
                "%d scored date(s) fall before the data the chain was trained on (its first "
                "date %s): the chain never saw such a market (%s..)",
                int((scored < trained[0]).sum()), trained[0].date(), scored[0].date())
        if end is not None and scored[0] <= pd.Timestamp(end):
            inside = scored[scored <= pd.Timestamp(end)]
            logger.warning(
                "%d scored date(s) (%s..%s) fall in the chain's development period (to %s): its "
                "models, features and ensemble were fitted and chosen on these dates' labels, so "
                "these scores are in-sample, not forecasts", len(inside), inside[0].date(),
                inside[-1].date(), pd.Timestamp(end).date())

    def _warn_levels_against_stored(self, index: pd.DataFrame) -> None:
        """Sent market levels on dates the stored index has must be its levels: another series
        (or a corrected print) moves every market feature and the regimes, and the only word was
        the regime evidence's "other prices"."""
        stored = getattr(self, "market_index", None)
        if stored is None or not len(stored) or index is None:
            return
        days = local_clock(pd.to_datetime(stored["date"])).dt.normalize()  # as in chain.predict
        both = index.merge(stored.assign(date=days), on="date",
                           suffixes=("", "_stored")).dropna()
        off = both[~np.isclose(both["level"], both["level_stored"], rtol=INDEX_LEVEL_RTOL,
                               atol=0.0)]
        if len(off):
            first = off.iloc[0]
            logger.warning(
                "the panel's '%s' differs from the market index the chain was trained with on "
                "%d of the %d dates both have (e.g. %s: %.10g sent, %.10g in training): every "
                "market feature and the regimes read the sent levels; send the index the chain was "
                "trained on (or none: the stored one is used up to its last date)", MARKET_LEVEL,
                len(off), len(both), pd.Timestamp(first["date"]).date(), first["level"],
                first["level_stored"])

    def _check_user_factors(self, clean: pd.DataFrame, scored: pd.DatetimeIndex,
                            refuse: bool) -> None:
        """A selected user factor with no value for any name on a scored date would score as
        that date's median for every name (a constant), silently: named (refused when the last
        date alone is scored, as inference and serving do; warned over a range of dates). An
        absent column is refused earlier, in the same words."""
        spec = self.feature_spec
        families = getattr(spec, "families", None) or {}
        rows = clean.loc[clean["date"].isin(scored) & clean["eligible"].astype(bool)]
        if rows.empty:
            return
        empty = {}
        for name in getattr(spec, "selected", None) or []:
            if families.get(name) != USER_FAMILY:
                continue
            column = name if name in rows else name.removeprefix("user_")
            if column not in rows:
                continue
            valued = rows[column].notna().groupby(rows["date"]).any()
            if not valued.all():
                empty[name] = valued.index[~valued]
        if not empty:
            return
        said = "; ".join(f"{name} on {len(days)} of {len(scored)} scored date(s) (e.g. "
                         f"{days[-1].date()})" for name, days in empty.items())
        message = (f"selected user factor(s) without a value for any name: {said}. The model "
                   "would see the date's median for every name, a constant, and rank on the "
                   "other features alone: send the factor's values for those dates")
        if refuse:
            raise ChainInputError(message)
        logger.warning("%s", message)

    def _warn_missing_bar_columns(self, given: pd.DataFrame, scored: pd.DatetimeIndex) -> None:
        """A bar column (volume, open, high, low) the slice has on earlier dates but for no name
        on a scored date (a vendor's file appended with closes only): the volume and candle
        features then read missing or carried values and the scores move, silently. Warned.
        `given`: the slice as sent, before the carry-forward (which fills a day or five of
        appended closes from the day before and would hide them)."""
        rows = given.loc[given["date"].isin(scored)]
        earlier = given.loc[given["date"] < scored.min()] if len(scored) else given.iloc[:0]
        if rows.empty or earlier.empty:
            return
        gone = {}
        for column in BAR_COLUMNS:
            if column not in given or not earlier[column].notna().any():
                continue
            valued = rows[column].notna().groupby(rows["date"]).any()
            if not valued.all():
                gone[column] = valued.index[~valued]
        if gone:
            logger.warning(
                "the panel has %s on earlier dates but for no name on %s scored date(s) (e.g. "
                "%s): the features read from them (volume, candle and range factors) see "
                "missing or carried values there and the scores move; send the full bars for "
                "the dates scored", " and ".join(gone),
                max(len(days) for days in gone.values()),
                max(days[-1] for days in gone.values()).date())

    def _warn_carried_user_factors(self, given: pd.DataFrame, scored: pd.DatetimeIndex,
                                   clean: pd.DataFrame | None = None) -> None:
        """A selected user factor the slice gives for some name on every earlier date (a daily
        series) but for no name on a scored date (rows appended with closes only): its value is
        carried from the last date that had one, within the factor's fill limit, and the
        scores read yesterday's factor without a word. Warned; a factor updated less often
        (monthly, quarterly) is carried by design and not named. `clean`: the filled panel; a
        date it has no value on either is `_check_user_factors`' (the date's median), not this."""
        spec = self.feature_spec
        families = getattr(spec, "families", None) or {}
        rows = given.loc[given["date"].isin(scored)]
        earlier = given.loc[given["date"] < scored.min()] if len(scored) else given.iloc[:0]
        if rows.empty or earlier.empty:
            return
        carried = {}
        for name in getattr(spec, "selected", None) or []:
            column = name if name in given else name.removeprefix("user_")
            if families.get(name) != USER_FAMILY or column not in given:
                continue
            if not earlier[column].notna().groupby(earlier["date"]).any().all():
                continue  # not a daily series
            valued = rows[column].notna().groupby(rows["date"]).any()
            days = valued.index[~valued]
            if clean is not None and column in clean:
                filled = clean.loc[clean["date"].isin(days)]
                days = days[days.isin(filled.loc[filled[column].notna(), "date"].unique())]
            if len(days):
                carried[name] = days
        if carried:
            logger.warning(
                "the panel gives %s for some name on every earlier date but for none on %s "
                "scored date(s) (e.g. %s): the value of the last date that had one is carried "
                "forward and the scores read it; send the factor's values for the dates scored",
                ", ".join(carried), max(len(days) for days in carried.values()),
                max(days[-1] for days in carried.values()).date())

    def _warn_names_without_sector(self, clean: pd.DataFrame, scored: pd.DatetimeIndex) -> None:
        """Name scored names without a sector (none sent, none earlier in the slice to carry
        forward) when training demeaned features within sectors: as in training (``no_sector``)
        their features are demeaned against the whole date, not within a sector, so a name
        trained within its sector ranks against the whole cross-section instead and its score
        moves. Warned, not refused:
        every other name scores as usual."""
        if not getattr(self, "training_sectors", None) or "sector" not in clean:
            return
        rows = clean.loc[clean["date"].isin(scored) & clean["eligible"].astype(bool)]
        known = set(getattr(self, "unsectored_names", None) or [])  # training named them
        names = sorted(set(rows.loc[rows["sector"].isna(), "ticker"].astype(str)) - known)
        if names:
            logger.warning(
                "%d scored name(s) have no sector: %s%s. Their features are not demeaned within "
                "a sector (against the whole date, as training does for a name without one): "
                "they rank "
                "against the whole cross-section, not within their sector, and their scores can "
                "move a lot; send each name's sector", len(names), ", ".join(names[:5]),
                " ..." if len(names) > 5 else "")

    def _warn_large_moves_on_scored_dates(self, clean: pd.DataFrame,
                                          scored: pd.DatetimeIndex) -> None:
        """Name scored names whose close moved beyond split_detection.max_abs_return on the
        slice's last date, if scored: nothing after it can show a bad print (x1000 for a day)
        for what it is, and its score reads it. Earlier dates have later closes, which the split
        repair reads (a check over many dates, such as the registry's, is not warned about)."""
        splits = self.cleaner.split_detection
        if not (splits.get("enabled", True) and "max_abs_return" in splits) \
                or "ret_1d" not in clean or clean.empty:
            return
        last = clean["date"].max()
        if last not in scored:
            return
        rows = clean.loc[(clean["date"] == last)
                         & (clean["ret_1d"].abs() > float(splits["max_abs_return"]))]
        if len(rows):
            shown = ", ".join(f"{r.ticker}@{pd.Timestamp(r.date).date()} {100 * r.ret_1d:+.0f}%"
                              for r in rows.head(5).itertuples())
            logger.warning(
                "%d scored name(s) moved beyond processing.split_detection.max_abs_return on the "
                "slice's last date: %s%s. A bad print in the file is scored as given (no later close "
                "can show it for one yet): check those closes", len(rows), shown,
                " ..." if len(rows) > 5 else "")

    def _warn_thin_cross_section(self, clean: pd.DataFrame, scored: pd.DatetimeIndex) -> None:
        typical = getattr(self, "typical_names", None)
        rows = clean.loc[clean["date"].isin(scored) & clean["eligible"].astype(bool)]
        if not typical or rows.empty:
            return
        counts = rows.groupby("date")["ticker"].nunique()
        share = float(self.thin_cross_section_share)
        thin = counts[counts < share * typical]
        if len(thin):
            thinnest = thin.idxmin()
            more = (f" (and {len(thin) - 1} more scored date(s) with fewer than {share:.0%}, "
                    f"{thin.index.min().date()}..{thin.index.max().date()})" if len(thin) > 1
                    else "")
            logger.warning(
                "%s has %d name(s) in the cross-section against about %d in training%s: the "
                "features and scores are ranks within each date, so scoring part of the "
                "universe changes every name's score; give every name's rows for the dates "
                "scored", thinnest.date(), thin[thinnest], typical, more)

    def check_history(self, n_dates: int) -> None:
        """Refuse a slice whose dates all fall inside the warm-up (nothing could be scored)."""
        if n_dates > self.warmup_days:
            return
        raise ChainInputError(
            f"too little history: the slice has {n_dates} trading date(s) after cleaning, the "
            f"chain needs a lookback of {self.warmup_days} trading dates (its feature warm-up: "
            "the longest feature window or eligibility window plus registry.warmup_extra_days) "
            f"before the first date it scores; add at least {self.warmup_days + 1 - n_dates} "
            "earlier date(s)"
        )

    def _warn_names_outside_training(self, raw: pd.DataFrame) -> None:
        """Name the request's tickers the chain was not trained on (left out, no score: a
        served request has no other way to learn it), with a hint when only their case
        differs; and the names of training's last cross-section absent from the whole request
        (scores are ranks within a date: every other name's score moves without them)."""
        universe = set(map(str, self.cleaner.universe))
        sent = set(raw["ticker"].astype(str))
        # named when priced on the request's last date: a name that stopped trading earlier
        # (one training left out before its dev_start, a delisting) wants no score
        last = raw.loc[(raw["date"] == raw["date"].max()) & raw["close"].notna(), "ticker"]
        unknown = sorted(set(last.astype(str)) - universe)
        if unknown:
            by_case = {t.upper(): t for t in universe}
            cased = [f"{t} ({by_case[t.upper()]}?)" for t in unknown if t.upper() in by_case]
            logger.warning(
                "%d ticker(s) of the request are not in the chain's training universe and get "
                "no score (retrain on a panel with them): %s%s", len(unknown),
                ", ".join(unknown[:10]), " ..." if len(unknown) > 10 else "")
            if cased:
                logger.warning("ticker(s) that differ from a trained one only in case (tickers "
                               "are read as written): %s", ", ".join(cased[:10]))
            by_digits = {t.lstrip("0"): t for t in universe if t.isdigit()}
            padded = [f"{t} ({by_digits[t.lstrip('0')]}?)" for t in unknown
                      if t.isdigit() and t.lstrip("0") in by_digits]
            if padded:
                logger.warning("ticker(s) that differ from a trained one only in leading zeros "
                               "(codes stored as numbers lose them: send tickers as text): %s",
                               ", ".join(padded[:10]))
        absent = sorted(set(getattr(self, "last_names", None) or []) - sent)
        if absent:
            logger.warning(
                "%d name(s) of the training panel's last cross-section are absent from the "
                "request: %s%s. Scores are ranks within a date, so every other name's score "
                "moves without them; send them (unless they stopped trading)", len(absent),
                ", ".join(absent[:10]), " ..." if len(absent) > 10 else "")

    def _check_names_to_score(self, features: pd.DataFrame, scored: pd.DatetimeIndex) -> None:
        """Refuse a request in which no name is in the cross-section on any date to score (none
        has a close, enough history or coverage there): nothing could be scored."""
        if len(features) or scored.empty:
            return
        rule = getattr(self.cleaner, "eligibility", None) or {}
        raise ChainInputError(
            f"no name is in the cross-section on the date(s) to score ({scored[0].date()}"
            f"{'' if len(scored) == 1 else f'..{scored[-1].date()}'}): a name enters once it "
            "has a close that day, processing.eligibility.min_history_days "
            f"({rule.get('min_history_days', '?')}) of closes and enough trailing coverage "
            f"(window_days {rule.get('window_days', '?')}), and a close far from the day "
            "before's (a move near a split ratio waits for confirmation): send more history, "
            "or check the last date's closes")
