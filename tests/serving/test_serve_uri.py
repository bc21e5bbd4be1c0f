"""`make serve`'s model (bma_quant.serving.serve_uri): the last run's version, else its data
set's champion, else one line saying why (not MLflow's traceback on a missing alias)."""

import json

import mlflow
import pytest
from mlflow import MlflowClient

from bma_quant.serving.model_source import ModelSourceError
from bma_quant.serving.serve_uri import main, served_uri


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    client.create_registered_model("bma_quant-wide")
    (tmp_path / "model").mkdir()
    client.create_model_version("bma_quant-wide", str(tmp_path / "model"))
    client.set_registered_model_alias("bma_quant-wide", "challenger", "1")
    yield tmp_path, client
    mlflow.set_tracking_uri(None)


def _report(folder, **fields):
    path = folder / "model_registration.json"
    path.write_text(json.dumps(fields))
    return path


def test_the_last_runs_version_then_the_champion_then_why_not(store, capsys):
    folder, client = store
    with pytest.raises(ModelSourceError, match="run 'make run' first"):
        served_uri(folder / "absent.json")
    registered = _report(folder, registered=True, model_name="bma_quant-wide",
                         model_uri="models:/bma_quant-wide/1")
    assert served_uri(registered) == ("models:/bma_quant-wide/1", None)
    # gates on another model: nothing registered, and the data set has no champion yet (MLflow
    # ended `mlflow models serve` on the missing alias with a 40-line traceback)
    refused = _report(folder, registered=False, model_name="bma_quant-wide",
                      reason="gates judge elastic_net")
    with pytest.raises(ModelSourceError, match=r"registered no model \(gates judge elastic_net\), "
                                               r"and its data set's model has no champion: .*"
                                               r"version\(s\) 1 @challenger"):
        served_uri(refused)
    assert main([str(refused)]) == 1
    assert "has no champion" in capsys.readouterr().err
    client.set_registered_model_alias("bma_quant-wide", "champion", "1")
    uri, note = served_uri(refused)
    assert uri == "models:/bma_quant-wide@champion" and "bma_quant-wide version 1" in note
    assert main([str(refused)]) == 0
    assert capsys.readouterr().out.strip() == "models:/bma_quant-wide@champion"
    with pytest.raises(ModelSourceError, match=r"registered no model \(registry off\): pass"):
        served_uri(_report(folder, registered=False, reason="registry off"))
