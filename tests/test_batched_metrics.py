"""The batched metrics-history dataset logs what kedro-mlflow's dataset logs, in few batches."""

import mlflow
import pytest
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from bma_quant.datasets import BatchedMetricsHistoryDataset, mlflow_metrics
from tests.support import sqlite_tracking

BATCH = 7  # the batch limit in these tests (MLflow's own is 1000: the plugin's one-by-one
#            reference would then take ~10 s)
# more values than one batch holds, single values and a history with steps
DATA = {
    **{f"m{i}": {"value": i / 7, "step": 0} for i in range(BATCH + 5)},
    "curve": [{"value": 0.1 * s, "step": s} for s in range(12)],
}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    # one store for the module (its creation takes seconds); every test reads its own runs only
    with sqlite_tracking(tmp_path_factory.mktemp("mlflow")):
        yield


def logged(dataset_type) -> dict:
    with mlflow.start_run() as run:
        dataset_type(prefix="layer").save(DATA)
    client = MlflowClient()
    keys = client.get_run(run.info.run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in keys}


def test_same_metrics_as_the_plugin_dataset_in_batches(tracking, monkeypatch):
    expected = logged(MlflowMetricsHistoryDataset)
    assert mlflow_metrics.MAX_METRICS_PER_BATCH == MAX_METRICS_PER_BATCH  # MLflow's limit
    monkeypatch.setattr(mlflow_metrics, "MAX_METRICS_PER_BATCH", BATCH)
    calls = []
    original = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch",
                        lambda self, run_id, **kw: calls.append(len(kw["metrics"]))
                        or original(self, run_id, **kw))
    assert logged(BatchedMetricsHistoryDataset) == expected
    assert len(expected) == BATCH + 6
    assert expected["layer.curve"] == [(s, 0.1 * s) for s in range(12)]
    assert calls == [BATCH, BATCH, BATCH, 3]  # 24 values in four transactions, not 24


def test_loads_back_like_the_plugin_dataset(tracking):
    with mlflow.start_run():
        dataset = BatchedMetricsHistoryDataset(prefix="layer")
        dataset.save({"a": {"value": 1.5, "step": 0}})
        loaded = dataset.load()
    assert loaded == {"layer.a": {"value": 1.5, "step": 0}}


def test_a_value_that_is_not_a_number_is_refused_by_name(tracking):
    from kedro.io.core import DatasetError

    with mlflow.start_run(), pytest.raises(DatasetError, match="metric 'layer.a': value must be "
                                                               "a number, got '1.5'"):
        BatchedMetricsHistoryDataset(prefix="layer").save({"a": {"value": "1.5", "step": 0}})


def test_logging_deactivated_logs_nothing(tracking, monkeypatch):
    calls = []
    monkeypatch.setattr(MlflowClient, "log_batch", lambda *a, **k: calls.append(1))
    with mlflow.start_run():
        dataset = BatchedMetricsHistoryDataset(prefix="layer")
        dataset._logging_activated = False
        dataset.save({"a": {"value": 1.0, "step": 0}})
    assert calls == []
