"""Combinatorial purged cross-validation over dates (López de Prado 2018, ch. 12).

The development dates are cut into N contiguous groups; every choice of k of them is one split's
test set (C(N, k) splits), the other dates train it. Purge and embargo as in the walk-forward
splitter (DESIGN §3), applied around every test group: a training date within ``cv_gap_days``
(>= d + h) before a test group, whose label window would reach into it, is dropped; so is one
within ``cv_gap_days`` after it (its label window overlaps the test labels, which run h + d days
past the group) and the ``cv_embargo_days`` after that.

Each group is tested in C(N-1, k-1) splits, so the out-of-sample predictions assemble into
phi = C(N-1, k-1) complete backtest paths over the development period: path p takes, for every
group, the predictions of the p-th split (in split order) that tested that group.

With ``test_from`` only the dates from it on are cut into groups and tested; earlier dates train
every split (less the purge before a first group). The chain passes the first out-of-fold date:
the parameters the refits use were chosen by scores on the tuning folds' dates, so a path
through them would test the choice on the rows it was made on.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bma_quant.core.data.cv import DateFold
from bma_quant.core.data.temporal import TemporalConfig, validate_temporal_config
from bma_quant.core.evaluation.backtest import long_short_backtest
from bma_quant.core.evaluation.metrics import daily_ic
from bma_quant.core.evaluation.test_period import EvaluationConfig, thin_cross_sections
from bma_quant.core.models import training

SPLIT, GROUP, PATH = "split", "group", "path"


@dataclass(frozen=True)
class CombinatorialFolds:
    """The C(N, k) splits as DateFolds (fold = split number) and the assembly of their test
    groups into paths."""

    folds: list[DateFold]
    groups: list[pd.DatetimeIndex]
    test_groups: list[tuple[int, ...]]  # the groups tested by each split

    @property
    def n_paths(self) -> int:
        n, k = len(self.groups), len(self.test_groups[0])
        return math.comb(n - 1, k - 1)

    def path_table(self) -> pd.DataFrame:
        """(split, group, path): which split's predictions of a group belong to which path."""
        seen = np.zeros(len(self.groups), dtype=int)
        rows = []
        for split, groups in enumerate(self.test_groups):
            for group in groups:
                rows.append({SPLIT: split, GROUP: group, PATH: int(seen[group])})
                seen[group] += 1
        return pd.DataFrame(rows, columns=[SPLIT, GROUP, PATH])

    def group_of_dates(self) -> pd.Series:
        """Group number of every development date (index = date)."""
        return pd.concat([pd.Series(g, index=dates) for g, dates in enumerate(self.groups)])


class CombinatorialPurgedSplit:
    """Purged, embargoed combinatorial splits of a date axis.

    Parameters
    ----------
    n_groups: N contiguous groups of dates.
    n_test_groups: k groups tested per split (1 <= k < N).
    temporal: horizon, delay, purge gap and embargo (validated: gap >= d + h).
    """

    def __init__(self, n_groups: int = 6, n_test_groups: int = 2,
                 temporal: TemporalConfig | None = None):
        if not 1 <= n_test_groups < n_groups:
            raise ValueError(f"need 1 <= n_test_groups < n_groups, got {n_test_groups} test "
                             f"groups of {n_groups}")
        self.n_groups = int(n_groups)
        self.n_test_groups = int(n_test_groups)
        self.temporal = validate_temporal_config(temporal or TemporalConfig())

    def split_dates(self, dates, test_from=None) -> CombinatorialFolds:
        """The splits of the unique sorted ``dates``; groups (test dates) from ``test_from`` on
        (None: every date)."""
        calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
        n = len(calendar)
        start = 0 if test_from is None else int(calendar.searchsorted(pd.Timestamp(test_from)))
        gap, embargo = self.temporal.cv_gap_days, self.temporal.cv_embargo_days
        # every group must keep test dates, and a split must keep training dates
        if n - start < self.n_groups * (2 * gap + embargo + 1):
            raise ValueError(
                f"Not enough dates for {self.n_groups} combinatorial groups: {n - start} dates"
                + (f" from {pd.Timestamp(test_from).date()} (the first out-of-fold date)"
                   if test_from is not None else "")
                + f", each group needs more than 2 x cv_gap_days ({gap}) + cv_embargo_days "
                f"({embargo}): fewer cv.combinatorial.n_groups")
        bounds = start + np.linspace(0, n - start, self.n_groups + 1).round().astype(int)
        groups = [calendar[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        folds, tested = [], []
        for split, chosen in enumerate(
                itertools.combinations(range(self.n_groups), self.n_test_groups)):
            test = np.zeros(n, dtype=bool)
            dropped = np.zeros(n, dtype=bool)
            for g in chosen:
                a, b = bounds[g], bounds[g + 1]  # test rows a .. b-1
                test[a:b] = True
                dropped[max(0, a - gap):a] = True  # purge: label windows reaching the group
                dropped[b:b + gap + embargo] = True  # purge (overlapping labels) + embargo
            train = ~test & ~dropped
            folds.append(DateFold(fold=split, train_dates=calendar[train],
                                  test_dates=calendar[test]))
            tested.append(tuple(chosen))
        return CombinatorialFolds(folds=folds, groups=groups, test_groups=tested)


def assemble_paths(predictions: pd.DataFrame, splits: CombinatorialFolds) -> pd.DataFrame:
    """Out-of-sample predictions (date, ..., fold = split) -> the same rows with a ``path``
    column, each (path, date, ticker) once: every path covers every development date."""
    group = splits.group_of_dates()
    frame = predictions.assign(**{GROUP: group.reindex(pd.DatetimeIndex(
        predictions["date"])).to_numpy()})
    if frame[GROUP].isna().any():
        raise ValueError("predictions dated outside the combinatorial groups")
    frame[GROUP] = frame[GROUP].astype(int)
    frame = frame.rename(columns={"fold": SPLIT}).merge(splits.path_table(), on=[SPLIT, GROUP],
                                                       how="inner")
    return frame.drop(columns=[GROUP])


def learner_paths(
    data: training.LearningSet, splits: CombinatorialFolds, name: str, params: dict, *,
    seed: int = 0, n_jobs: int = 1, min_names: int = 5, max_train_rows: int | None = None,
) -> pd.DataFrame:
    """Fit one learner with fixed ``params`` on every split's training rows, predict its test
    rows and assemble the paths: date, ticker, path, prediction, label. ``max_train_rows`` thins
    each split's training dates as the out-of-fold fits' (base_models.max_train_rows), so the
    paths score the models the run trains."""
    cache = training.FoldCache(data, splits.folds, max_train_rows)
    try:
        result = training.cross_validate(cache, name, params, seed=seed, n_jobs=n_jobs,
                                         min_names=min_names, full_scores=False)
    finally:
        cache.free()
    frame = training.oof_frame(data, result, name).assign(label=data.label[result.rows])
    return assemble_paths(frame[["date", "ticker", "fold", "prediction", "label"]], splits)


PATH_SCORES = ("rank_ic", "sharpe")


def score_paths(paths: pd.DataFrame, returns: pd.DataFrame, config: EvaluationConfig
                ) -> pd.DataFrame:
    """Per path: mean daily RankIC against the label and the long-short Sharpe of the same
    backtest as evaluation (``returns``: long date, ticker, ret_1d and optionally tradable of the
    development period, as `backtest.holding_returns` gives them)."""
    rows = []
    for path, frame in paths.groupby(PATH, sort=True):
        rank_ic = daily_ic(frame, method="spearman", min_names=config.min_names)
        traded = frame.loc[~frame["date"].isin(thin_cross_sections(frame, config))]
        book = long_short_backtest(
            traded[["date", "ticker", "prediction"]], returns,
            rebalance_days=config.rebalance_days, n_quantiles=config.n_quantiles,
            cost_bps=config.cost_bps, execution_delay=config.execution_delay,
            periods_per_year=config.periods_per_year, max_frozen_days=config.max_frozen_days)
        rows.append({PATH: int(path), "rank_ic": float(rank_ic.mean()),
                     "sharpe": book.summary["sharpe"], "n_dates": int(rank_ic.size)})
    return pd.DataFrame(rows, columns=[PATH, *PATH_SCORES, "n_dates"])


def path_quantiles(scores: pd.DataFrame, quantiles: list[float]) -> dict[str, float]:
    """``{<score>_q05: ..., <score>_q50: ...}`` over the paths (linear interpolation)."""
    out = {}
    for score in PATH_SCORES:
        values = scores[score].dropna().to_numpy(dtype=np.float64)
        for q in quantiles:
            key = f"{score}_q{round(100 * q):02d}"
            out[key] = float(np.quantile(values, q)) if values.size else math.nan
    return out
