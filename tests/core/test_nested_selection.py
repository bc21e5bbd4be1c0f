"""Nested selection (DESIGN §3) on pure noise: the best trial's tuning objective is inflated by the
choice, the honest out-of-fold score (chosen parameters, folds no trial was scored on) is not."""

import numpy as np
import pytest

from bma_quant.core.data.cv import (
    OOF,
    TUNING,
    PurgedWalkForwardSplit,
    assign_stages,
    folds_of_stage,
)
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.models import training, tuning
from tests.core.test_models import FEATURES, synthetic_dev

SEEDS = range(101, 109)  # pure-noise markets used by no other test
DEFAULTS = {"n_estimators": 30, "num_leaves": 15, "learning_rate": 0.1}
SPACE = {
    "num_leaves": {"type": "int", "low": 2, "high": 64, "log": True},
    "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
    "min_child_samples": {"type": "int", "low": 5, "high": 500, "log": True},
    "colsample_bytree": {"type": "float", "low": 0.3, "high": 1.0},
}


def _nested_scores(seed: int) -> dict[str, float]:
    frame, _ = synthetic_dev(0.0, n_tickers=40, n_days=800, seed=seed)
    folds = PurgedWalkForwardSplit(5, TemporalConfig(), min_train_days=150).date_folds(
        frame["date"].unique())
    folds = assign_stages(folds, 2, gap=TemporalConfig().cv_gap_days)
    data = training.LearningSet.from_arrays(frame[FEATURES], frame["label"], None, frame["date"],
                                            tickers=frame["ticker"])
    result = tuning.tune_learner(
        training.FoldCache(data, folds_of_stage(folds, TUNING)), "lightgbm", DEFAULTS, SPACE,
        n_trials=10, timeout=None, seed=seed, n_jobs=1, pruner={"enabled": False})
    honest = training.cross_validate(training.FoldCache(data, folds_of_stage(folds, OOF)),
                                     "lightgbm", result.best_params, seed=seed, n_jobs=1)
    return {"best": result.best_value, "median": result.objective_median,
            "honest": honest.rank_ic_mean}


@pytest.fixture(scope="module")
def scores():
    return [_nested_scores(seed) for seed in SEEDS]


def test_honest_out_of_fold_rank_ic_is_centred_on_zero_on_pure_noise(scores):
    honest = np.array([s["honest"] for s in scores])
    se = honest.std(ddof=1) / np.sqrt(len(honest))
    assert abs(honest.mean()) < max(2.5 * se, 0.005), (honest.mean(), se)


def test_the_tuning_objective_is_inflated_by_the_choice_and_the_honest_score_is_not(scores):
    best = np.array([s["best"] for s in scores])
    median = np.array([s["median"] for s in scores])
    honest = np.array([s["honest"] for s in scores])
    # the best of 10 trials beats the median trial on the folds it was chosen on ...
    assert (best > median).all() and (best - median).mean() > 0.003
    # ... and that edge does not carry over to folds no trial was scored on
    assert honest.mean() < best.mean() - 0.5 * (best - median).mean()
