"""Test support: run project pipelines in memory (no files, no MLflow) with the project's parameters.

`run_pipeline("data_processing", {"params:data": ...}, inputs)` runs a registered pipeline with a
catalog of MemoryDatasets: parameters come from conf/base (overridable per test), inputs are frames,
and every output (including those the real catalog sends to MLflow) is returned in a dict.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from pathlib import Path
from typing import Any

import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF = PROJECT_ROOT / "conf" / "base"


def project_params() -> dict[str, Any]:
    """All conf/base/parameters*.yml merged, as Kedro would load them."""
    params: dict[str, Any] = {}
    for path in sorted(CONF.glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()) or {})
    return params


def deep_update(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


class _KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so tests can read intermediate outputs."""

    def _release(self) -> None:
        pass


def _param_inputs(pipeline, params: dict) -> dict[str, Any]:
    values = {}
    for name in pipeline.inputs():
        if name == "parameters":
            values[name] = params
        elif name.startswith("params:"):
            node = params
            for part in name[len("params:"):].split("."):
                node = node[part]
            values[name] = node
    return values


def run_pipeline(name: str, inputs: dict[str, Any], overrides: dict | None = None,
                 runner=None) -> dict[str, Any]:
    """Run pipeline `name` in memory and return all its outputs (and pass-through inputs);
    `runner` defaults to Kedro's SequentialRunner."""
    params = deep_update(project_params(), overrides or {})
    pipeline = importlib.import_module(f"bma_quant.pipelines.{name}").create_pipeline()
    data = {**_param_inputs(pipeline, params), **inputs}
    missing = sorted(n for n in pipeline.inputs() if n not in data)
    if missing:
        raise KeyError(f"pipeline {name} needs inputs {missing}")
    catalog = DataCatalog({k: _KeptDataset(v, copy_mode="assign") for k, v in data.items()})
    produced = sorted(pipeline.all_outputs())
    for out in produced:
        catalog[out] = _KeptDataset(copy_mode="assign")
    (runner or SequentialRunner()).run(pipeline, catalog)
    return {out: catalog.load(out) for out in produced}


@contextlib.contextmanager
def sqlite_tracking(folder: Path):
    """MLflow pointed at a fresh SQLite store in `folder` for the block; any run left active is
    ended and the previous tracking URI restored afterwards."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{Path(folder) / 'mlflow.db'}")
    try:
        yield
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


# The start of a `kedro run` that registered a model version, for a script run in a subprocess (the
# test then kills or interrupts it): an MLflow run, a staging folder named argv[4], a version of
# model argv[2] registered (journaled for clean-up) and, when argv[5] is not "-", moved to that
# alias (replacing version 1). argv[1] is the project folder, argv[3] the tracking URI.
REGISTERING_RUN_SCRIPT = """
import os, signal, sys, threading, time
from pathlib import Path
import mlflow
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from mlflow import MlflowClient
from bma_quant.run_hooks.staging import StagingHooks
from bma_quant.serving import registry

project, name, alias = Path(sys.argv[1]), sys.argv[2], sys.argv[5]
mlflow.set_tracking_uri(sys.argv[3])
run = mlflow.start_run()  # kedro-mlflow's before_pipeline_run, called before the staging hook
staging = StagingHooks()
staging._project_path = project
staging.before_pipeline_run({"run_id": sys.argv[4]}, Pipeline([]), DataCatalog())
client = MlflowClient()
mlflow.log_text("chain", "model/chain.txt")
version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
registry.pending.add(lambda: "in memory only", record={
    "name": name, "version": version.version, "alias": None if alias == "-" else alias,
    "replaced": None if alias == "-" else "1", "run_id": run.info.run_id,
    "tracking_uri": mlflow.get_tracking_uri(), "registry_uri": mlflow.get_registry_uri()})
if alias != "-":
    client.set_registered_model_alias(name, alias, version.version)
"""
