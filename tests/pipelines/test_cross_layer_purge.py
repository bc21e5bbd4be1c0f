"""Across layers (DESIGN section 3): what an out-of-fold fold predicts is fitted on labels that
end before its first test date. Replacing every later label with noise leaves that fold's base,
regime and ensemble predictions, its `final` pick, the selected features and the tuned parameters
unchanged; noising one more label date changes them (the purge is exactly horizon + delay)."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.cv import folds_from_table
from bma_quant.core.data.synthetic import generate_synthetic_market
from tests.support import run_pipeline

LAYERS = ("feature_engineering", "base_models", "regime_models", "stacking")
OOF = ("base_oof_predictions", "regime_oof_predictions", "ensemble_oof_predictions")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("purge") / "panel.parquet"
    generate_synthetic_market(n_tickers=30, n_days=900, seed=5).panel.to_parquet(path)
    overrides = {
        "data": {"raw_path": str(path), "index_path": None},
        "periods": {"dev_start": None, "test_fraction": 0.2, "test_start": None},
        "processing": {"eligibility": {"window_days": 60, "min_history_days": 20}},
        "cv": {"n_splits": 4, "min_train_days": 250, "n_tuning_folds": 1},
        "base_models": {"learners": ["elastic_net", "lightgbm", "alpha_composite"],
                        "tuning": {"n_trials": 3, "storage": None,
                                   "learners": ["elastic_net", "lightgbm"],
                                   "show_progress_bar": False},
                        "defaults": {"lightgbm": {"n_estimators": 30}}},
        "regime_models": {"learner": "elastic_net"},
    }
    upstream = run_pipeline("data_processing", {}, overrides)
    return upstream, overrides


def _downstream(upstream: dict, labels: pd.DataFrame, overrides: dict,
                layers: tuple[str, ...] = LAYERS) -> dict:
    out = {**upstream, "labels": labels}
    for name in layers:
        out.update(run_pipeline(name, dict(out), overrides))
    return out


def _noised_from(labels: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    noisy = labels.copy()
    later = (noisy["date"] >= cutoff) & noisy["label"].notna()
    noisy.loc[later, "label"] = np.random.default_rng(0).normal(0.0, 0.05, int(later.sum()))
    return noisy


def _fold_rows(outputs: dict, name: str, fold: int) -> pd.DataFrame:
    frame = outputs[name]
    return (frame[frame["fold"] == fold].sort_values(["date", "ticker", "model"])
            .reset_index(drop=True)[["date", "ticker", "model", "prediction"]])


def test_a_fold_reads_no_label_that_ends_at_or_after_its_first_test_date(setup):
    upstream, overrides = setup
    labels = upstream["labels"]
    fold = folds_from_table(upstream["cv_folds"], stage="oof")[-1]
    dates = pd.DatetimeIndex(np.sort(upstream["primary_panel"]["date"].unique()))
    # the label at t ends at close(t + delay + horizon): from this date on it reaches the fold
    first_reaching = dates.get_loc(fold.test_dates.min()) - 11
    clean = _downstream(upstream, labels, overrides)
    noised = _downstream(upstream, _noised_from(labels, dates[first_reaching]), overrides)
    for name in OOF:
        pd.testing.assert_frame_equal(_fold_rows(clean, name, fold.fold),
                                      _fold_rows(noised, name, fold.fold), obj=name)
    picks = "final_nested_picks"
    assert (clean["stacking_selection"][picks].get(str(fold.fold))
            == noised["stacking_selection"][picks].get(str(fold.fold)))
    assert clean["feature_spec"].selected == noised["feature_spec"].selected
    for learner, status in clean["base_model_status"].items():
        assert status.get("best_params") == noised["base_model_status"][learner].get("best_params")
    # one label date earlier is the last label the purge keeps: noising it moves the fold
    leaky = _downstream(upstream, _noised_from(labels, dates[first_reaching - 1]), overrides,
                        LAYERS[:2])
    moved = _fold_rows(leaky, "base_oof_predictions", fold.fold)
    kept = _fold_rows(clean, "base_oof_predictions", fold.fold)
    assert len(moved) == len(kept)
    assert not np.allclose(moved["prediction"], kept["prediction"])
