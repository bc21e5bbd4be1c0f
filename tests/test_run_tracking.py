"""What a run looks like in MLflow: its name, a readable runner tag, the input data set, per-node
health as a table artifact (not metrics) and system metrics."""

import time
from types import SimpleNamespace

import kedro.framework.project  # noqa: F401  (configures logging on import: before caplog)
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from bma_quant.hooks import RunHealthHooks
from bma_quant.run_hooks import run_identity
from bma_quant.run_hooks.run_tags import RunTagsHooks, short_fingerprint
from tests.support import sqlite_tracking


def test_data_stem_drops_every_suffix():
    assert run_identity.data_stem("data/01_raw/sp500_prices.csv.gz") == "sp500_prices"
    assert run_identity.data_stem("/x/my.panel.parquet") == "my"
    assert run_identity.data_stem(None) is None


def test_run_name_from_pipelines_data_and_config_unless_overridden():
    name = run_identity.run_name(["feature_engineering", "base_models"],
                                 "data/01_raw/sp500_prices.csv.gz", "3f2a1b9c77aa01ee")
    assert name == "feature_engineering+base_models · sp500_prices · 3f2a1b9c"
    assert run_identity.run_name([], None, None) == "__default__"
    assert run_identity.run_name(["__default__"], "x.csv", "ab", override="my idea") == "my idea"


def test_pipelines_are_named_in_the_order_data_flows_through_them():
    typed = {"evaluation", "regime_models", "stacking"}  # Kedro passes a set
    assert run_identity.in_flow_order(typed) == ["regime_models", "stacking", "evaluation"]
    assert run_identity.in_flow_order(["inference", "synthetic_data", "mine", "base_models"]) == [
        "synthetic_data", "base_models", "inference", "mine"]


def test_runner_name_is_the_class_name_whatever_kedro_passes():
    class SequentialRunner:
        pass

    repr_ = "<kedro.runner.sequential_runner.SequentialRunner object at 0x7f3a2b1c>"
    assert run_identity.runner_name(repr_) == "SequentialRunner"
    assert run_identity.runner_name(SequentialRunner()) == "SequentialRunner"
    assert run_identity.runner_name(SequentialRunner) == "SequentialRunner"
    assert run_identity.runner_name("ParallelRunner") == "ParallelRunner"


@pytest.fixture
def tracking(tmp_path):
    with sqlite_tracking(tmp_path):
        yield mlflow.create_experiment("tracking_test")


class _RunHooks:
    """The run's tags hook and its health hook, called as Kedro calls them."""

    def __init__(self):
        self.tags = RunTagsHooks()
        self.health = RunHealthHooks(run_tags=self.tags)

    @property
    def _tags(self):
        return self.tags.tags

    def after_context_created(self, context):
        self.tags.after_context_created(context)
        self.health.after_context_created(context)

    def before_pipeline_run(self, run_params, pipeline=None):
        self.tags.before_pipeline_run(run_params, pipeline)
        self.health.before_pipeline_run(pipeline)

    def before_node_run(self, node):
        self.tags.before_node_run()
        self.health.before_node_run(node)

    def after_node_run(self, node, outputs=None):
        self.health.after_node_run(node)
        self.tags.after_node_run(outputs)

    def on_node_error(self, error, node):
        self.health.on_node_error(error, node)

    def after_pipeline_run(self, catalog):
        self.tags.after_pipeline_run()
        self.health.after_pipeline_run(catalog)

    def on_pipeline_error(self, error, catalog):
        self.tags.on_pipeline_error()
        self.health.on_pipeline_error(error, catalog)


def _hooks(tmp_path, raw, params):
    raw_path = tmp_path / "my_prices.csv"
    raw.to_csv(raw_path, index=False)
    hooks = _RunHooks()
    context = SimpleNamespace(project_path=tmp_path, params={
        "data": {"raw_path": str(raw_path)},
        "memory": {"sample_seconds": 0.01},
        "system_metrics": {"enabled": True, "sampling_seconds": 0.05},
        **params})
    hooks.after_context_created(context)
    return hooks, raw_path


def _wait_for_a_system_metric_sample(hooks, timeout=60.0):
    """MLflow's monitor logs a sample only if the run is still RUNNING when it looks: polled, not
    slept for (a fixed sleep raced the monitor thread on a loaded machine)."""
    system = hooks.tags._system_metrics
    monitor = system._monitor if system is not None else None
    deadline = time.monotonic() + timeout
    while monitor is not None and monitor._logging_step == 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def _run(hooks, experiment, raw, reads_raw_panel=True):
    pipeline = SimpleNamespace(nodes=[SimpleNamespace(name="load_raw_data")], all_outputs=lambda: (
        {"data_processing.raw_panel", "clean_panel"} if reads_raw_panel else {"labels"}))
    runner = "<kedro.runner.sequential_runner.SequentialRunner object at 0x7f00>"
    hooks.before_pipeline_run({"pipeline_names": ["data_processing"], "runner": runner}, pipeline)
    run = mlflow.start_run(experiment_id=experiment, run_name="data_processing")
    mlflow.set_tag("runner", runner)  # what kedro-mlflow logs from run_params
    node = SimpleNamespace(name="load_raw_data")
    hooks.before_node_run(node)
    started = time.monotonic()
    _wait_for_a_system_metric_sample(hooks)
    time.sleep(max(0.0, 0.3 - (time.monotonic() - started)))  # a node of at least 0.3 s
    hooks.after_node_run(node, {"data_processing.raw_panel": raw} if reads_raw_panel else {})
    mlflow.end_run()
    hooks.after_pipeline_run(SimpleNamespace(exists=lambda name: False))
    return MlflowClient().get_run(run.info.run_id)


RAW = pd.DataFrame({"date": ["2020-01-02", "2020-01-03"], "ticker": ["A", "A"],
                    "close": [10.0, 10.5]})


def test_run_is_named_tagged_and_logs_its_input_and_health_table(tmp_path, tracking, caplog):
    hooks, raw_path = _hooks(tmp_path, RAW, {})
    with caplog.at_level("INFO", logger="bma_quant.progress"):
        run = _run(hooks, tracking, RAW)
    progress = [r.getMessage() for r in caplog.records if r.name == "bma_quant.progress"]
    assert any(line.startswith("[1/1] other") and "load_raw_data" in line
               for line in progress), progress
    assert "other done: " in progress[-2], progress  # the layer's last node, then the summary
    config = run.data.tags["config_hash"][:8]
    assert run.info.run_name == f"data_processing · my_prices · {config}"
    assert run.data.tags["runner"] == "SequentialRunner"
    assert run.data.tags["pipeline_names"] == "['data_processing']"
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert dataset.name == "my_prices" and dataset.digest == short_fingerprint(raw_path)
    assert str(raw_path) in dataset.source and '"num_rows": 2' in dataset.profile
    metrics = run.data.metrics
    assert not [k for k in metrics if k.startswith("run_health.")]
    assert [k for k in metrics if k.startswith("system/")], metrics
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert "run_health.csv" in artifacts and "run_summary.json" in artifacts
    table = pd.read_csv(tmp_path / "data/08_reporting/run_health.csv")
    assert table.loc[0, "node"] == "load_raw_data" and table.loc[0, "status"] == "ok"
    assert table.loc[0, "seconds"] >= 0.3


def test_run_name_parameter_overrides_and_a_run_without_the_loader_logs_the_file(
        tmp_path, tracking):
    hooks, raw_path = _hooks(tmp_path, RAW, {"run_name": "lower costs"})
    run = _run(hooks, tracking, RAW, reads_raw_panel=False)
    assert run.info.run_name == "lower costs"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == short_fingerprint(raw_path)
    assert dataset_input.dataset.source_type == "local"


def test_failed_run_writes_its_own_health_table(tmp_path):
    hooks, _ = _hooks(tmp_path, RAW, {})
    hooks.before_pipeline_run({"pipeline_names": ["data_processing"]})
    node = SimpleNamespace(name="load_raw_data")
    hooks.before_node_run(node)
    hooks.on_node_error(ValueError("bad close"), node)
    hooks.on_pipeline_error(ValueError("bad close"), SimpleNamespace(exists=lambda name: False))
    assert not (tmp_path / "data/08_reporting/run_health.csv").exists()
    table = pd.read_csv(tmp_path / "data/08_reporting/run_health.failed.csv")
    assert table.loc[0, "status"] == "failed" and "bad close" in table.loc[0, "error"]


def test_a_synthetic_market_run_is_not_named_or_tagged_after_the_data_file(tmp_path):
    """`--pipelines synthetic_data` writes a market and reads no data file: named
    `synthetic_data · <config>` without params:data's file (it said sp500_prices)."""
    hooks, _ = _hooks(tmp_path, RAW, {})
    pipeline = SimpleNamespace(nodes=[SimpleNamespace(name="generate")], all_outputs=lambda: {
        "synthetic_prices"})
    hooks.before_pipeline_run({"pipeline_names": ["synthetic_data"]}, pipeline)
    config = hooks._tags["config_hash"][:8]
    assert hooks._tags["mlflow.runName"] == f"synthetic_data · {config}"
    assert "data_path" not in hooks._tags and "data_fingerprint" not in hooks._tags


def test_a_registry_inference_run_is_named_after_the_model_it_scores_with(tmp_path):
    """It was named `inference · <config>`: params:data says nothing about a registered model's
    data, but the model URI (or the last run's champion) says what scored."""
    import json

    pipeline = SimpleNamespace(nodes=[SimpleNamespace(name="predict")], all_outputs=lambda: {
        "latest_predictions"})
    named = {}
    for uri in ("models:/bma_quant-my_prices@challenger", "models:/bma_quant-my_prices/3", None):
        hooks, _ = _hooks(tmp_path, RAW, {"inference": {
            "model_source": "registry", "model_uri": uri,
            "registration_path": "data/08_reporting/model_registration.json"}})
        (tmp_path / "data/08_reporting").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data/08_reporting/model_registration.json").write_text(
            json.dumps({"model_name": "bma_quant-my_prices", "version": "3"}))
        hooks.before_pipeline_run({"pipeline_names": ["inference"]}, pipeline)
        named[uri] = hooks._tags["mlflow.runName"].rsplit(" · ", 1)[0]
        assert "data_path" not in hooks._tags
    assert named == {"models:/bma_quant-my_prices@challenger":
                     "inference · bma_quant-my_prices@challenger",
                     "models:/bma_quant-my_prices/3": "inference · bma_quant-my_prices v3",
                     None: "inference · bma_quant-my_prices@champion"}
    local, _ = _hooks(tmp_path, RAW, {"inference": {  # a local chain: no registry label
        "model_source": "local", "chain_path": "data/06_models/missing.pkl",
        "registration_path": "data/08_reporting/model_registration.json"}})
    local.before_pipeline_run({"pipeline_names": ["inference"]}, pipeline)
    assert "bma_quant-my_prices" not in local._tags["mlflow.runName"]
    assert run_identity.registry_model_label({"inference": {
        "model_source": "registry", "model_uri": "models:/m/latest"}}, tmp_path) == "m/latest"



def test_a_registry_inference_run_is_tagged_with_the_data_it_scored(tmp_path, tracking):
    """The registered model names its data only once loaded: the scored panel's file becomes the
    run's data_path / data_fingerprint tags (there were none; params:data named another file)."""
    hooks, _ = _hooks(tmp_path, RAW, {"inference": {
        "model_source": "registry", "model_uri": "models:/m@champion"}})
    pipeline = SimpleNamespace(nodes=[SimpleNamespace(name="predict")], all_outputs=lambda: {
        "latest_predictions"})
    hooks.before_pipeline_run({"pipeline_names": ["inference"]}, pipeline)
    assert "data_path" not in hooks._tags
    scored = tmp_path / "scored.csv"
    RAW.to_csv(scored, index=False)
    panel = RAW.copy()
    panel.attrs["source_path"] = str(scored)
    with mlflow.start_run(experiment_id=tracking) as run:
        node = SimpleNamespace(name="inference.load_latest_panel")
        hooks.before_node_run(node)
        hooks.after_node_run(node, {"inference_panel": panel})
    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags["data_path"] == str(scored) and tags["data_fingerprint"] not in ("", "missing")


def test_a_run_on_edited_code_is_tagged_dirty(tmp_path):
    """git_commit alone named the commit of a run whose src/ had been edited."""
    import subprocess

    from bma_quant.run_hooks.run_tags import _git_dirty

    assert _git_dirty(tmp_path) == "unknown"  # not a repository
    run = {"cwd": tmp_path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "src"], **run)
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "c"], **run)
    assert _git_dirty(tmp_path) == "false"
    (tmp_path / "src" / "m.py").write_text("x = 2\n")
    assert _git_dirty(tmp_path) == "true"


def test_runs_on_differently_edited_code_carry_different_code_hashes(tmp_path):
    """Two experiments on edited code had the same git_commit, git_dirty=true and config hash:
    nothing in MLflow told them apart. code_hash reads the package's Python files."""
    from bma_quant.run_hooks.run_tags import code_hash

    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "factors.py").write_text("SHIFT = 5\n")
    first = code_hash(tmp_path)
    assert len(first) == 16 and code_hash(tmp_path) == first
    (tmp_path / "core" / "factors.py").write_text("SHIFT = 4\n")
    assert code_hash(tmp_path) != first
    (tmp_path / "core" / "notes.txt").write_text("not code")
    assert code_hash(tmp_path) == code_hash(tmp_path)
    assert len(code_hash()) == 16  # the project's own package


def test_the_command_tag_is_the_command_line_that_ran():
    """kedro-mlflow's kedro_command tag left out --env and --params."""
    assert run_identity.cli_command(["/x/.venv/bin/kedro", "run", "--env", "smoke", "--params",
                                     "a.b=1,c=x y"]) == "kedro run --env smoke --params 'a.b=1,c=x y'"
    assert run_identity.cli_command(["pytest", "-q"]) is None
    assert run_identity.cli_command(["/x/site-packages/kedro/__main__.py", "run", "--params",
                                     "a=1"]) == "kedro run --params a=1"
