"""A layer run alone on features selected over the CV test windows says its out-of-fold scores
are optimistic: a warning and the `oof_scores_honest` tag on its own MLflow run."""

import logging

import kedro.framework.project  # noqa: F401  (configures logging on import: before caplog)
import mlflow
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node

from bma_quant.run_hooks.oof_honesty import OofHonestyHooks, stored_selection_honesty
from tests.support import sqlite_tracking


def _identity(x):
    return x


def _layer_pipeline(layer: str, inputs: str, outputs: str) -> Pipeline:
    return Pipeline([node(_identity, inputs, outputs, name=f"{layer}_node", namespace=layer)])


def _tag_after_run(hooks: OofHonestyHooks, pipeline: Pipeline, catalog) -> str | None:
    with mlflow.start_run() as run:
        hooks.before_pipeline_run(pipeline=pipeline, catalog=catalog)
        hooks.before_node_run()
        hooks.before_node_run()  # tagged once; a second node changes nothing
    return mlflow.get_run(run.info.run_id).data.tags.get("oof_scores_honest")


def test_stored_report_says_whether_selection_read_the_cv_test_windows():
    assert stored_selection_honesty({"cv_test_dates_unseen": True}) is True
    assert stored_selection_honesty({"cv_test_dates_unseen": False, "ic_scope": "dev"}) is False
    # an older report without the flag: its scope's name says it, as for the registry
    assert stored_selection_honesty({"ic_scope": "training dates of the first purged fold"})
    assert stored_selection_honesty({"ic_scope": "development dates"}) is False
    assert stored_selection_honesty(None) is None


def test_a_scoring_layer_run_alone_is_tagged_from_the_stored_selection(tmp_path, caplog):
    base = _layer_pipeline("base_models", "feature_spec", "base_oof_predictions")
    hooks = OofHonestyHooks()
    with sqlite_tracking(tmp_path):
        optimistic = DataCatalog({"feature_selection_report": MemoryDataset(
            {"cv_test_dates_unseen": False,
             "ic_scope": "union of the purged folds' training dates"})})
        with caplog.at_level(logging.WARNING):
            assert _tag_after_run(hooks, base, optimistic) == "false"
        (record,) = [r for r in caplog.records if "oof_honesty" in r.name]
        assert "scored dates of the CV test windows (union of the purged folds' training " \
               "dates)" in record.getMessage()
        assert "out-of-fold scores are optimistic" in record.getMessage()

        caplog.clear()
        honest = DataCatalog({"feature_selection_report": MemoryDataset(
            {"cv_test_dates_unseen": True, "ic_scope": "pre_cv"})})
        assert _tag_after_run(hooks, base, honest) == "true"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        # no stored report (a fresh project): nothing to say
        assert _tag_after_run(hooks, base, DataCatalog({})) is None


def test_runs_that_select_or_do_not_score_out_of_fold_are_left_alone(tmp_path):
    stored = DataCatalog({"feature_selection_report": MemoryDataset(
        {"cv_test_dates_unseen": False, "ic_scope": "dev"})})
    hooks = OofHonestyHooks()
    selecting = _layer_pipeline("feature_engineering", "model_input", "feature_selection_report") \
        + _layer_pipeline("base_models", "feature_selection_report", "base_oof_predictions")
    data_only = _layer_pipeline("data_processing", "raw_panel", "primary_panel")
    with sqlite_tracking(tmp_path):
        assert _tag_after_run(hooks, selecting, stored) is None  # its own node tags this run
        assert _tag_after_run(hooks, data_only, stored) is None
