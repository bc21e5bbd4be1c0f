"""Combinatorial purged CV over dates: purge and embargo, path assembly, refits on a planted
signal."""

import math

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.evaluation.cpcv import (
    CombinatorialPurgedSplit,
    assemble_paths,
    learner_paths,
    path_quantiles,
    score_paths,
)
from bma_quant.core.evaluation.test_period import EvaluationConfig
from bma_quant.core.models import training

TEMPORAL = TemporalConfig(horizon_days=10, execution_delay_days=1, cv_gap_days=11,
                          cv_embargo_days=3)
DATES = pd.bdate_range("2015-01-01", periods=600)


def test_splits_paths_and_purge():
    splits = CombinatorialPurgedSplit(6, 2, TEMPORAL).split_dates(DATES)
    assert len(splits.folds) == math.comb(6, 2) and splits.n_paths == math.comb(5, 1)
    position = pd.Series(np.arange(len(DATES)), index=DATES)
    for fold in splits.folds:
        train, test = position[fold.train_dates].to_numpy(), position[fold.test_dates].to_numpy()
        assert len(np.intersect1d(train, test)) == 0 and len(train) > 0
        distance = train[:, None] - test[None, :]  # > 0: training date after a test date
        before, after = -distance[distance < 0], distance[distance > 0]
        assert before.size + after.size > 0
        # a label window never reaches a test date; nor a test label a later training row
        assert before.size == 0 or before.min() > TEMPORAL.cv_gap_days
        assert after.size == 0 or after.min() > TEMPORAL.cv_gap_days + TEMPORAL.cv_embargo_days
        # nothing more than the purge and embargo is dropped
        kept = set(train) | set(test)
        dropped = sorted(set(range(len(DATES))) - kept)
        assert len(dropped) <= 2 * (2 * TEMPORAL.cv_gap_days + TEMPORAL.cv_embargo_days)
    table = splits.path_table()
    assert not table.duplicated(["group", "path"]).any()
    assert table.groupby("path")["group"].nunique().eq(6).all()


def test_assembled_paths_cover_every_date_once_from_the_right_split():
    splits = CombinatorialPurgedSplit(5, 2, TEMPORAL).split_dates(DATES)
    parts = [pd.DataFrame({"date": f.test_dates, "ticker": "A", "fold": f.fold,
                           "prediction": float(f.fold)}) for f in splits.folds]
    paths = assemble_paths(pd.concat(parts, ignore_index=True), splits)
    assert paths.groupby("path")["date"].nunique().eq(len(DATES)).all()
    assert not paths.duplicated(["path", "date", "ticker"]).any()
    # path p of group g = the p-th split (in order) that tested g
    group = splits.group_of_dates()
    for row in paths.sample(50, random_state=0).itertuples():
        g = group[row.date]
        testing = [k for k, groups in enumerate(splits.test_groups) if g in groups]
        assert row.prediction == testing[row.path]


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="n_test_groups"):
        CombinatorialPurgedSplit(4, 4, TEMPORAL)
    with pytest.raises(ValueError, match="Not enough dates"):
        CombinatorialPurgedSplit(6, 2, TEMPORAL).split_dates(DATES[:100])
    with pytest.raises(ValueError, match="cv_gap_days"):
        CombinatorialPurgedSplit(6, 2, TemporalConfig(cv_gap_days=5))


def _planted_panel(n_days=500, n_tickers=30, strength=0.5, seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2016-01-01", periods=n_days)
    signal = rng.normal(size=(n_days, n_tickers))
    noise = rng.normal(size=(n_days, n_tickers))
    label = strength * signal + rng.normal(size=(n_days, n_tickers))
    # daily returns that carry the label: the next day's return follows the signal
    ret = np.vstack([np.zeros((2, n_tickers)), 0.004 * signal[:-2]]) + rng.normal(
        0, 0.01, (n_days, n_tickers))
    index = pd.MultiIndex.from_product([dates, [f"T{i}" for i in range(n_tickers)]],
                                       names=["date", "ticker"])
    frame = pd.DataFrame({"signal": signal.ravel(), "noise": noise.ravel(),
                          "label": label.ravel(), "ret_1d": ret.ravel()}, index=index)
    return frame.reset_index()


def test_refit_paths_find_a_planted_signal_on_every_path():
    panel = _planted_panel()
    data = training.LearningSet.from_arrays(panel[["signal", "noise"]], panel["label"], None,
                                            panel["date"], tickers=panel["ticker"].to_numpy())
    splits = CombinatorialPurgedSplit(5, 2, TEMPORAL).split_dates(panel["date"])
    paths = learner_paths(data, splits, "elastic_net", {"alpha": 0.001, "l1_ratio": 0.5})
    assert paths["path"].nunique() == splits.n_paths == 4
    assert paths.groupby("path")["date"].nunique().eq(panel["date"].nunique()).all()
    scores = score_paths(paths, panel[["date", "ticker", "ret_1d"]],
                         EvaluationConfig(rebalance_days=1))
    assert len(scores) == 4
    assert (scores["rank_ic"] > 0.3).all() and (scores["sharpe"] > 1).all()
    quantiles = path_quantiles(scores, [0.05, 0.5, 0.95])
    assert set(quantiles) == {"rank_ic_q05", "rank_ic_q50", "rank_ic_q95", "sharpe_q05",
                              "sharpe_q50", "sharpe_q95"}
    assert quantiles["rank_ic_q05"] <= quantiles["rank_ic_q50"] <= quantiles["rank_ic_q95"]


def test_path_books_skip_the_dates_the_test_period_skips():
    """A path date with fewer names than the quantile book needs is not traded, as in the test
    period's backtest: its Sharpe is the backtest of the other dates."""
    from bma_quant.core.evaluation.backtest import long_short_backtest

    panel = _planted_panel()
    paths = panel[["date", "ticker", "label"]].assign(path=0, prediction=panel["signal"])
    thin_date = panel["date"].unique()[40]
    kept = sorted(panel["ticker"].unique())[:3]
    paths = paths[(paths["date"] != thin_date) | paths["ticker"].isin(kept)]
    returns = panel[["date", "ticker", "ret_1d"]]
    config = EvaluationConfig(rebalance_days=1)
    sharpe = score_paths(paths, returns, config).loc[0, "sharpe"]
    wide = paths[paths["date"] != thin_date]
    expected = long_short_backtest(wide[["date", "ticker", "prediction"]], returns,
                                   rebalance_days=1, max_frozen_days=config.max_frozen_days)
    assert sharpe == pytest.approx(expected.summary["sharpe"], rel=1e-12)


def test_only_dates_from_test_from_are_grouped_and_tested():
    """The chain's out-of-fold dates only: earlier dates train every split (less the purge
    before the first group), are in no group and in no path."""
    first = DATES[240]
    splits = CombinatorialPurgedSplit(4, 2, TEMPORAL).split_dates(DATES, test_from=first)
    grouped = splits.group_of_dates().index
    assert grouped.min() == first and len(grouped) == len(DATES) - 240
    for fold in splits.folds:
        assert fold.test_dates.min() >= first
        assert DATES[: 240 - TEMPORAL.cv_gap_days].isin(fold.train_dates).all()
    with pytest.raises(ValueError, match="first out-of-fold date"):
        CombinatorialPurgedSplit(6, 2, TEMPORAL).split_dates(DATES, test_from=DATES[560])


def test_paths_train_on_the_rows_the_run_trains_on():
    """base_models.max_train_rows thins every out-of-fold fit's training dates; the CPCV refits
    are thinned alike (they trained on every row), so the paths score the run's models."""
    panel = _planted_panel()
    data = training.LearningSet.from_arrays(panel[["signal", "noise"]], panel["label"], None,
                                            panel["date"], tickers=panel["ticker"].to_numpy())
    splits = CombinatorialPurgedSplit(5, 2, TEMPORAL).split_dates(panel["date"])
    params = {"alpha": 0.001, "l1_ratio": 0.5}
    full = learner_paths(data, splits, "elastic_net", params)
    thinned = learner_paths(data, splits, "elastic_net", params, max_train_rows=2000)
    uncapped = learner_paths(data, splits, "elastic_net", params, max_train_rows=len(panel))
    pd.testing.assert_frame_equal(uncapped, full)
    assert not np.allclose(thinned["prediction"], full["prediction"])
