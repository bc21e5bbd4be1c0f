"""Purged walk-forward cross-validation over dates (DESIGN §3).

Test windows are contiguous blocks of dates after a minimum training history. For a test window
starting at T0, a training date t is kept only if its label window ends before T0 (purge:
idx(t) + gap < idx(T0) with gap >= d + h); the `embargo` dates right after every earlier test window
are dropped from later training sets, so rows whose features overlap a test window's labels do not
train the next fold. The splitter follows scikit-learn's interface with `groups` = row dates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from bma_quant.core.data.temporal import TemporalConfig, validate_temporal_config

TUNING, OOF = "tuning", "oof"
FOLD_STAGES = (TUNING, OOF)


@dataclass(frozen=True)
class DateFold:
    """One fold's dates. `stage` says what its test window is for (nested selection, DESIGN §3):
    "tuning" folds score hyperparameter trials only; "oof" folds give the out-of-fold predictions
    that later layers learn from and the honest out-of-fold scores, with parameters chosen on the
    tuning folds (which all come earlier in time)."""

    fold: int
    train_dates: pd.DatetimeIndex
    test_dates: pd.DatetimeIndex
    stage: str = OOF


class PurgedWalkForwardSplit:
    """Walk-forward splitter over dates with a purge gap and an embargo.

    Parameters
    ----------
    n_splits: number of test windows (folds).
    temporal: horizon, execution delay, purge gap and embargo; validated on construction.
    min_train_days: distinct training dates required before the first test window.
    window: "expanding" (all history) or "sliding" (at most `max_train_days` training dates).
    """

    def __init__(
        self,
        n_splits: int = 5,
        temporal: TemporalConfig | None = None,
        min_train_days: int = 252,
        window: str = "expanding",
        max_train_days: int | None = None,
    ):
        self.temporal = validate_temporal_config(temporal or TemporalConfig())
        if n_splits < 1:
            raise ValueError(f"n_splits must be >= 1, got {n_splits}")
        if window not in {"expanding", "sliding"}:
            raise ValueError(f"window must be 'expanding' or 'sliding', got {window!r}")
        if window == "sliding" and not max_train_days:
            raise ValueError("window='sliding' needs max_train_days")
        self.n_splits = int(n_splits)
        self.min_train_days = int(min_train_days)
        self.window = window
        self.max_train_days = int(max_train_days) if max_train_days else None

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def date_folds(self, dates) -> list[DateFold]:
        """Folds as sets of dates, from the unique sorted dates given."""
        calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
        n = len(calendar)
        gap, embargo = self.temporal.cv_gap_days, self.temporal.cv_embargo_days
        first_test = self.min_train_days + gap
        test_len = (n - first_test) // self.n_splits
        if test_len < 1:
            raise ValueError(
                f"Not enough dates for {self.n_splits} purged folds: {n} dates, "
                f"min_train_days={self.min_train_days} and cv_gap_days={gap} leave "
                f"{max(n - first_test, 0)} test dates."
            )
        blocked = np.zeros(n, dtype=bool)  # embargo after earlier test windows
        folds = []
        for k in range(self.n_splits):
            start = first_test + k * test_len
            stop = n if k == self.n_splits - 1 else start + test_len
            train_stop = start - gap  # train idx <= start - gap - 1  =>  idx + gap < start
            idx = np.arange(train_stop)
            keep = ~blocked[:train_stop]
            if self.window == "sliding":
                keep &= idx >= train_stop - self.max_train_days
            folds.append(
                DateFold(fold=k, train_dates=calendar[idx[keep]], test_dates=calendar[start:stop])
            )
            blocked[stop : stop + embargo] = True
        return folds

    def split(self, X=None, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train_idx, test_idx) row positions; `groups` holds each row's date."""
        if groups is None:
            raise ValueError("PurgedWalkForwardSplit.split needs groups= the date of every row")
        row_dates = pd.DatetimeIndex(groups)
        for fold in self.date_folds(row_dates):
            yield (
                np.flatnonzero(row_dates.isin(fold.train_dates)),
                np.flatnonzero(row_dates.isin(fold.test_dates)),
            )


def assign_stages(folds: list[DateFold], n_tuning_folds: int, *, gap: int) -> list[DateFold]:
    """The first `n_tuning_folds` folds (earliest test windows) become tuning folds, the rest
    out-of-fold folds. At least one out-of-fold fold must remain.

    The tuning test dates within `gap` (cv_gap_days) dates of the first out-of-fold test date are
    purged, as a training date would be: their labels would overlap the first out-of-fold labels,
    and the choice scored on them would leak into the honest out-of-fold score (DESIGN §3,
    nested selection). The splitter's test windows are contiguous, so these are the last `gap`
    tuning test dates."""
    n_tuning = int(n_tuning_folds)
    if n_tuning < 0 or n_tuning >= len(folds):
        raise ValueError(
            f"cv.n_tuning_folds must be between 0 and n_splits - 1 = {len(folds) - 1} (at least "
            f"one out-of-fold fold must remain for the later layers), got {n_tuning}"
        )
    ordered = sorted(folds, key=lambda f: f.fold)
    if not n_tuning:
        return [replace(f, stage=OOF) for f in ordered]
    tuning_dates = ordered[0].test_dates.append([f.test_dates for f in ordered[1:n_tuning]])
    purged = tuning_dates.sort_values()[max(len(tuning_dates) - int(gap), 0):]
    staged = [replace(f, stage=TUNING, test_dates=f.test_dates[~f.test_dates.isin(purged)])
              for f in ordered[:n_tuning]]
    empty = [f.fold for f in staged if not len(f.test_dates)]
    if empty:
        raise CVLayoutError(
            f"tuning fold(s) {empty} keep no test date once the {gap} dates whose labels reach "
            f"the first out-of-fold test window are purged (temporal.cv_gap_days): give each "
            f"test window more dates (fewer cv.n_splits, a lower cv.min_train_days, a longer "
            f"panel) or fewer tuning folds (cv.n_tuning_folds).")
    return staged + [replace(f, stage=OOF) for f in ordered[n_tuning:]]


def folds_of_stage(folds: list[DateFold], stage: str) -> list[DateFold]:
    """The folds of one stage ("tuning" or "oof"), in fold order."""
    if stage not in FOLD_STAGES:
        raise ValueError(f"fold stage must be one of {FOLD_STAGES}, got {stage!r}")
    return sorted((f for f in folds if f.stage == stage), key=lambda f: f.fold)


def folds_table(folds: list[DateFold]) -> pd.DataFrame:
    """Folds as a long table (fold, date, role, stage) so every pipeline reuses the same split."""
    parts = []
    for f in folds:
        parts.append(pd.DataFrame({"fold": f.fold, "date": f.train_dates, "role": "train",
                                   "stage": f.stage}))
        parts.append(pd.DataFrame({"fold": f.fold, "date": f.test_dates, "role": "test",
                                   "stage": f.stage}))
    table = pd.concat(parts, ignore_index=True)
    table["fold"] = table["fold"].astype("int32")
    return table


def folds_from_table(table: pd.DataFrame, stage: str | None = None) -> list[DateFold]:
    """Inverse of `folds_table`; `stage` keeps only the folds of that stage. A table written
    before stages existed reads as out-of-fold folds only."""
    folds = []
    for k, part in table.groupby("fold", sort=True):
        dates = pd.DatetimeIndex(part["date"])
        role = part["role"].to_numpy()
        fold_stage = str(part["stage"].iloc[0]) if "stage" in part else OOF
        folds.append(
            DateFold(
                fold=int(k),
                train_dates=dates[role == "train"].sort_values(),
                test_dates=dates[role == "test"].sort_values(),
                stage=fold_stage,
            )
        )
    return folds if stage is None else folds_of_stage(folds, stage)


def fold_row_indices(row_dates, folds: list[DateFold]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) row positions of each fold for rows dated `row_dates`."""
    row_dates = pd.DatetimeIndex(row_dates)
    return [
        (
            np.flatnonzero(row_dates.isin(f.train_dates)),
            np.flatnonzero(row_dates.isin(f.test_dates)),
        )
        for f in folds
    ]


# ---------------------------------------------------------------------------------------------
# Short panels: the CV layout scaled down to a documented floor
# ---------------------------------------------------------------------------------------------


# out-of-fold folds a champion needs: the first is scored with equal weights (no earlier
# out-of-fold rows to fit an ensemble on), the second makes the first walk-forward choice, the
# third is the first to score a choice made on earlier folds (stacking.final.oos_rank_ic)
CHAMPION_OOF_FOLDS = 3


class CVLayoutError(ValueError):
    """The development period is shorter than the smallest CV layout allowed (the floor)."""


@dataclass(frozen=True)
class CVLayout:
    """How many folds, how much history before the first test window, how many tuning folds."""

    n_splits: int
    min_train_days: int
    n_tuning_folds: int

    def test_days(self, n_dates: int, gap: int) -> int:
        """Test dates per fold on `n_dates` development dates (the splitter's arithmetic)."""
        return (n_dates - self.min_train_days - gap) // self.n_splits


@dataclass(frozen=True)
class CVFloor:
    """The smallest layout a short panel may scale down to (`cv.short_panel.floor`). With tuning
    on, at least one tuning fold stays, and `n_oof_folds` out-of-fold folds (stacking fits on
    earlier ones and scores on later ones, so two is its minimum; a champion needs
    CHAMPION_OOF_FOLDS, and the pre-flight warns about a layout with fewer)."""

    min_train_days: int = 63
    min_test_days: int = 21
    n_oof_folds: int = 2

    def n_splits(self, tuning: bool) -> int:
        return int(tuning) + self.n_oof_folds

    def min_dates(self, tuning: bool, gap: int) -> int:
        """Development dates the floor layout needs. With tuning every (equal) test window holds
        `gap` dates more: the last tuning window's last `gap` are purged (`assign_stages`)."""
        window = self.min_test_days + (gap if tuning else 0)
        return self.min_train_days + gap + self.n_splits(tuning) * window


def layout_params(cv_params: dict) -> tuple[CVLayout, CVFloor, bool]:
    """(requested layout, floor, adapt?) from the `cv` parameters."""
    layout = CVLayout(int(cv_params["n_splits"]), int(cv_params["min_train_days"]),
                      int(cv_params.get("n_tuning_folds", 0)))
    short = cv_params.get("short_panel") or {}
    floor = CVFloor(**{k: int(v) for k, v in (short.get("floor") or {}).items()})
    return layout, floor, bool(short.get("adapt", False))


def fit_cv_layout(n_dates: int, requested: CVLayout, gap: int, floor: CVFloor,
                  adapt: bool = True) -> tuple[CVLayout, bool]:
    """The layout to use on `n_dates` development dates and whether it was scaled down.

    The requested layout is kept whenever it gives every fold `floor.min_test_days` test dates
    (with `adapt` off, or on fewer dates than the floor needs: at least one, as the splitter
    needs). Otherwise, with `adapt`: the first
    fold trains on half of the dates left after the purge gap (never more than requested, never
    fewer than the floor), then folds are dropped (tuning folds first, down to one; out-of-fold
    folds down to the floor) until every fold has `floor.min_test_days` test dates. A panel a
    little shorter than the requested layout is scaled down like a much shorter one: test windows
    of a few dates would leave the nested scores to noise (or to nothing). Below the floor:
    CVLayoutError naming the dates needed and the parameters to change."""
    tuning = requested.n_tuning_folds > 0
    need = floor.min_dates(tuning, gap)
    # the last tuning window scores `gap` dates fewer (purged before the first out-of-fold one)
    purge = gap if tuning else 0
    test_days = requested.test_days(n_dates, gap)
    # below the floor's dates a layout that fits at all is the user's own small layout: kept
    if test_days - purge >= floor.min_test_days or (
            test_days >= 1 and (not adapt or n_dates < need)):
        return requested, False
    hint = (f"{n_dates} development dates, cv.n_splits={requested.n_splits}, "
            f"cv.min_train_days={requested.min_train_days}, cv.n_tuning_folds="
            f"{requested.n_tuning_folds}, temporal.cv_gap_days={gap}")
    if not adapt:
        raise CVLayoutError(
            f"Not enough dates for the CV layout: {hint}. Lower cv.min_train_days or cv.n_splits, "
            "or set cv.short_panel.adapt: true to scale the layout down to its floor.")
    if n_dates < need:
        raise CVLayoutError(
            f"Not enough dates even for the smallest CV layout: {hint}; the floor "
            f"(cv.short_panel.floor: min_train_days={floor.min_train_days}, "
            f"{floor.n_splits(tuning)} folds of at least {floor.min_test_days} test dates"
            f"{f' scored after the tuning window purge of {gap}' if tuning else ''}) needs "
            f"at least {need} development dates. Give a longer panel, or lower "
            "periods.test_fraction, cv.short_panel.floor.* or temporal.cv_gap_days.")
    train = max(floor.min_train_days, min(requested.min_train_days, (n_dates - gap) // 2))
    n_oof = requested.n_splits - requested.n_tuning_folds
    n_tuning = requested.n_tuning_folds
    while True:
        layout = CVLayout(n_tuning + n_oof, train, n_tuning)
        if layout.test_days(n_dates, gap) - purge >= floor.min_test_days:
            return layout, True
        if n_tuning > 1:
            n_tuning -= 1
        elif n_oof > floor.n_oof_folds:
            n_oof -= 1
        else:  # the floor's fold count: give the test windows the training dates above the floor
            return CVLayout(layout.n_splits, floor.min_train_days, n_tuning), True
