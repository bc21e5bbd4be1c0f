"""Registering the pyfunc chain: champion / challenger aliases, and a fresh-process reload that
reproduces the pipeline's final test predictions."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.tracking import fluent

from bma_quant.pipelines.evaluation import nodes
from tests.serving.upstream import build_chain, build_upstream
from tests.support import PROJECT_ROOT, project_params

REGISTRY = {**project_params()["registry"], "code_path": str(PROJECT_ROOT / "src" / "bma_quant")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    datasets, overrides = build_upstream(tmp, n_days=600)
    chain = build_chain(datasets, overrides)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    previous_uri = mlflow.get_tracking_uri()
    previous_experiment = fluent._active_experiment_id
    previous_env = os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("registry_test")
    yield datasets, overrides, chain, uri, tmp
    # leave no active experiment of the tmp store behind for later tests
    mlflow.set_tracking_uri(previous_uri)
    fluent._active_experiment_id = previous_experiment
    if previous_env is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = previous_env


def _register(datasets, overrides, chain, passed):
    report = {"passed": passed, "verdict": "pass" if passed else "fail",
              "failed": [] if passed else ["sharpe"]}
    with mlflow.start_run():
        return nodes.register_model(chain, report, datasets["ensemble_test_predictions"],
                                    datasets["date_split"], overrides["data"], REGISTRY)


def test_champion_then_failing_challenger_keeps_champion(setup):
    datasets, overrides, chain, uri, tmp = setup
    first = _register(datasets, overrides, chain, passed=True)
    assert first["registered"] and first["alias"] == "champion" and first["version"] == "1"
    assert first["reproduction"]["max_abs_diff"] < 1e-5
    second = _register(datasets, overrides, chain, passed=False)
    assert second["alias"] == "challenger" and second["version"] == "2"
    assert second["champion_version"] == "1" and second["previous_champion_version"] == "1"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("bma_quant", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("bma_quant", "challenger").version) == "2"
    assert client.get_model_version("bma_quant", "2").tags["gates"] == "fail"
    third = _register(datasets, overrides, chain, passed=True)
    champion = client.get_model_version_by_alias("bma_quant", "champion")
    assert str(champion.version) == third["version"]


def test_champion_loads_in_a_fresh_process_and_reproduces(setup):
    datasets, overrides, chain, uri, tmp = setup
    split = datasets["date_split"]
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    raw_slice = nodes.test_slice(raw, split, chain.warmup_days)
    raw_slice.assign(date=raw_slice["date"].dt.strftime("%Y-%m-%d")).to_parquet(tmp / "in.parquet")
    script = (
        "import mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/bma_quant@champion')\n"
        f"x = pd.read_parquet(r'{tmp / 'in.parquet'}')\n"
        f"m.predict(x).to_parquet(r'{tmp / 'out.parquet'}')\n"
        f"m.predict(x, params={{'last_date_only': True}}).to_parquet(r'{tmp / 'last.parquet'}')\n"
        "spec = {c.name: c.required for c in m.metadata.get_input_schema().inputs}\n"
        "assert spec['market_level'] is False and spec['close'] is True, spec\n"
        "m.predict(x.assign(market_level=100.0))  # the optional index column is accepted\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = pd.read_parquet(tmp / "out.parquet")
    expected = datasets["ensemble_test_predictions"].query("model == 'final'")
    merged = expected.merge(predicted, on=["date", "ticker"], suffixes=("", "_served"))
    assert len(merged) == len(expected) > 0
    assert (merged["prediction"] - merged["prediction_served"]).abs().max() < 1e-5
    last = pd.read_parquet(tmp / "last.parquet")
    assert last["date"].nunique() == 1 and last["date"].iloc[0] == predicted["date"].max()


def test_no_active_run_registers_nothing(setup):
    datasets, overrides, chain, uri, tmp = setup
    assert mlflow.active_run() is None
    out = nodes.register_model(chain, {"passed": True}, datasets["ensemble_test_predictions"],
                               datasets["date_split"], overrides["data"], REGISTRY)
    assert out["registered"] is False and "no active MLflow run" in out["reason"]
    assert Path(tmp / "mlflow.db").exists()


def test_a_chain_that_cannot_predict_is_not_registered(setup):
    datasets, overrides, chain, uri, tmp = setup

    class FittedOnOtherFeatures:
        feature_names_in_ = ["something_else"]

        def predict(self, X):  # pragma: no cover - never reached
            raise AssertionError

    broken = copy.copy(chain)
    broken.base_models = {"elastic_net": FittedOnOtherFeatures()}
    with mlflow.start_run():
        out = nodes.register_model(broken, {"passed": True}, datasets["ensemble_test_predictions"],
                                   datasets["date_split"], overrides["data"], REGISTRY)
    assert out["registered"] is False
    assert "StaleChainError" in out["reason"] and "something_else" in out["reason"]
