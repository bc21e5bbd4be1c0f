"""Kedro runners: ThreadRunner gives the same results as the sequential runner (README, Runners)."""

import pandas as pd
import pytest
from kedro.runner import SequentialRunner, ThreadRunner

from tests.pipelines.base_models.synthetic_inputs import build_inputs
from tests.support import run_pipeline

INPUTS = ("model_input", "sample_weights", "date_split", "cv_folds")
FAST = {"base_models": {"n_jobs": 1, "tuning": {"storage": None, "n_trials": 3,
                                                "show_progress_bar": False}}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    built = build_inputs(tmp_path_factory.mktemp("runners"), n_tickers=30, n_days=500)
    return {k: built[k] for k in INPUTS}


def test_thread_runner_gives_the_same_metrics_and_predictions_as_sequential(inputs):
    """The learners' nodes run concurrently under ThreadRunner; each is seeded and keeps its own
    state, so every metric and prediction must be identical."""
    sequential = run_pipeline("base_models", inputs, FAST, runner=SequentialRunner())
    threaded = run_pipeline("base_models", inputs, FAST, runner=ThreadRunner(max_workers=2))
    assert sequential["base_models_metrics"] == threaded["base_models_metrics"]
    assert len(sequential["base_models_metrics"]) > 10
    pd.testing.assert_frame_equal(sequential["base_oof_predictions"],
                                  threaded["base_oof_predictions"])
    pd.testing.assert_frame_equal(sequential["base_test_predictions"],
                                  threaded["base_test_predictions"])
