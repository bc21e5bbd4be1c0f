"""Names a scored slice leaves without a score, said in the log: a served request or an
inference run scores the names of the last date's cross-section only, and a name with a close
that day but no score (unseasoned, held back by a possible split, suspended), or one that
traded lately but has no close, would otherwise drop out of the answer without a word."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def untraded_on(raw: pd.DataFrame, day: pd.Timestamp, names: list[str],
                 first_volume: dict[str, str] | None = None, moves: bool = False) -> set[str]:
    """Which of ``names`` (priced on ``day``) are not traded that day by the chain cleaner's rule
    (`cleaning.untraded_cells`): volume 0 and the close of the name's previous row (any close
    with ``moves``), on a name that reported volume before (here or, from training,
    ``first_volume``) and on a day some name has volume."""
    if "volume" not in raw or not names:
        return set()
    dates = pd.to_datetime(raw["date"])
    if not raw.loc[dates == day, "volume"].gt(0).any():
        return set()  # the vendor sent no volume that day
    tickers = raw["ticker"].astype(str)
    rows = raw.loc[tickers.isin(names) & (dates <= day) & raw["close"].notna(),
                   ["date", "ticker", "close", "volume"]].assign(ticker=lambda f: f["ticker"].astype(str))
    rows = rows.sort_values(["ticker", "date"], kind="stable")
    by_name = rows.groupby("ticker", sort=False)
    rows = rows.assign(previous=by_name["close"].shift(1),
                       reported=by_name["volume"].transform(lambda v: v.gt(0).cummax()))
    if first_volume:
        since = pd.to_datetime(rows["ticker"].map(first_volume))
        rows["reported"] |= (pd.to_datetime(rows["date"]) >= since).to_numpy()
    today = rows[pd.to_datetime(rows["date"]) == day]
    flagged = (today["volume"].eq(0) & (moves | today["close"].eq(today["previous"]))
               & today["reported"])
    return set(today.loc[flagged, "ticker"])


def warn_unscored(raw: pd.DataFrame, scores: pd.DataFrame, universe: list[str] | None = None,
                   first_volume: dict[str, str] | None = None, moves: bool = False) -> None:
    """Name the tickers with a close on the scored date that got no score: names the chain was
    not trained on (retrain to include them), and names not in the cross-section that day (a
    new listing not yet seasoned, too little trailing coverage)."""
    if scores.empty:
        return
    last = scores["date"].max()  # a partial last day the chain did not score is named there
    priced = raw.loc[(pd.to_datetime(raw["date"]) == last) & raw["close"].notna(), "ticker"]
    missing = sorted(set(priced.astype(str)) - set(scores["ticker"]))
    unknown = [t for t in missing if universe is not None and t not in set(universe)]
    untraded = untraded_on(raw, last, [t for t in missing if t not in unknown], first_volume,
                            moves)
    suspended = [t for t in missing if t not in unknown and t in untraded]
    unseasoned = [t for t in missing if t not in unknown and t not in untraded]

    def shown(names: list[str]) -> str:
        return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")

    # names outside the training universe: the chain itself names them (as it does when
    # served), so they are not named again here
    if suspended and moves:
        logger.warning("%d name(s) have volume 0 on %s: not traded (a suspension, or a quote "
                       "if the close moved), so not scored (processing.untraded_zero_volume, "
                       "untraded_zero_volume_moves): %s", len(suspended), last.date(),
                       shown(suspended))
    elif suspended:
        logger.warning("%d name(s) have volume 0 and the close of the day before on %s: not "
                       "traded (a suspension), so not scored (processing.untraded_zero_volume): "
                       "%s", len(suspended), last.date(), shown(suspended))
    if unseasoned:
        logger.warning("%d name(s) with a close on %s get no score (not in the cross-section: a "
                       "name enters once it has processing.eligibility.min_history_days of "
                       "closes and enough trailing coverage; after a one-day move near a split "
                       "ratio it waits processing.split_detection.confirm_days closes, split or "
                       "crash): %s", len(unseasoned), last.date(),
                       shown(unseasoned))
    carried = sorted(set(scores["ticker"]) - set(priced.astype(str)))
    if carried:
        logger.warning("%d name(s) have no close on %s and are scored from their last close "
                       "(carried forward up to processing.ffill_limit dates: a chain trained "
                       "with processing.eligibility.require_own_close false, or before it; "
                       "retrain to leave them out): %s",
                       len(carried), last.date(), shown(carried))
    # a name that traded lately but has no close on the scored date: no score (a missing print
    # or a stop; training keeps such a day out of the cross-section too)
    dates = pd.to_datetime(raw["date"])
    recent = np.sort(dates.unique())[-6:-1]  # the five dates before the scored one
    lately = set(raw.loc[dates.isin(recent) & raw["close"].notna(), "ticker"].astype(str))
    absent = sorted((lately & set(universe or lately)) - set(priced.astype(str))
                    - set(scores["ticker"]))
    if absent:
        logger.warning("%d name(s) that traded lately have no close on %s and get no score (a "
                       "missing print, a halt or a delisting; processing.eligibility."
                       "require_own_close): %s", len(absent), last.date(), shown(absent))
