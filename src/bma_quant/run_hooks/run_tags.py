"""What a run is, in MLflow: its tags (git commit and state, config hash, data file and its
fingerprint, pipelines, runner, command), its name, its input data set and its system metrics.

The tags are set on the run kedro-mlflow starts, at the first node; MLflow is only touched when a
run is active, so the hook also works with MLflow disabled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from bma_quant.core.data import provenance
from bma_quant.run_hooks import run_identity, tracking

logger = logging.getLogger(__name__)
# the console view of a run (conf/logging.yml shows this logger at INFO)
progress = logging.getLogger("bma_quant.progress")

DEFAULT_SYSTEM_METRICS = {"enabled": True, "sampling_seconds": 10.0}
RAW_PANEL = "raw_panel"  # the in-memory panel data_processing reads: logged as the run's input
INFERENCE_PANEL = "inference_panel"  # the panel an inference run scores (its file in attrs)


def _git_commit(project_path: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_path, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _git_dirty(project_path: Path) -> str:
    """"true" when tracked files of src/ or conf/ differ from the commit (the run's code or
    parameters are not the commit's), "false" when not, "unknown" outside git."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                              "src", "conf"], cwd=project_path, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return "true" if out.stdout.strip() else "false"


def code_hash(package: Path | None = None) -> str:
    """First 16 hex digits of a sha256 over the project package's Python files (paths and
    contents): two runs with the same tag ran the same code, committed or not (`git_dirty`
    says only that some file differs from the commit, so two experiments on edited code looked
    alike in MLflow)."""
    root = package or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def short_fingerprint(path: Path) -> str:
    """The first 16 hex digits of a file's sha256 (core.data.provenance.file_fingerprint): the
    run's data_fingerprint tag, the MLflow dataset digest and the registry's data identity."""
    return provenance.file_fingerprint(path)["sha256"][:16]


def config_hash(params: dict[str, Any]) -> str:
    """Stable hash of the resolved parameters: two runs with the same hash had the same config
    (labels such as ``run_name`` left out)."""
    params = {k: v for k, v in params.items() if k not in run_identity.LABEL_PARAMS}
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def last_part(dataset_name: str) -> str:
    """``raw_panel`` of ``raw_panel`` or of a namespaced ``data_processing.raw_panel``."""
    return dataset_name.rsplit(".", 1)[-1]


class RunTagsHooks:
    """Tags, name, input data set and system metrics of the run's MLflow run."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.run_id: str | None = None  # the MLflow run the tags went to
        self._tags_logged = False
        self._run_name_override: str | None = None
        self._data_path: Path | None = None
        self._params: dict[str, Any] = {}
        self._reads_raw_panel = False  # the pipeline has the node that loads the raw panel
        self._system_cfg = dict(DEFAULT_SYSTEM_METRICS)
        self._system_metrics: tracking.SystemMetrics | None = None
        self._project_path = Path.cwd()

    @hook_impl
    def after_context_created(self, context) -> None:
        params = context.params
        self._system_cfg.update(params.get("system_metrics", {}) or {})
        self._run_name_override = params.get("run_name") or None
        self._project_path = Path(context.project_path)
        self._params = params
        self.tags = {"git_commit": _git_commit(self._project_path),
                     "git_dirty": _git_dirty(self._project_path),
                     "code_hash": code_hash(),
                     "config_hash": config_hash(params)}
        self._set_data_tags((params.get("data", {}) or {}).get("raw_path"))

    def _set_data_tags(self, raw_path: str | None) -> None:
        """data_path and data_fingerprint tags of the panel the run reads."""
        self._data_path = None
        if raw_path:
            path = Path(raw_path) if Path(raw_path).is_absolute() else self._project_path / raw_path
            self.tags["data_fingerprint"] = short_fingerprint(path) if path.is_file() else "missing"
            self.tags["data_path"] = str(raw_path)
            self._data_path = path if path.is_file() else None

    def _tag_scored_data(self, source: str | None) -> None:
        """A registry model's inference run knows its data once the model is loaded: tag it
        then (the run's tags were set before its first node)."""
        if not source:
            return
        self._set_data_tags(source)
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.set_tags({k: self.tags[k] for k in ("data_path", "data_fingerprint")
                             if k in self.tags})

    def _drop_data_tags(self) -> None:
        for key in ("data_path", "data_fingerprint"):
            self.tags.pop(key, None)
        self._data_path = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline=None) -> None:
        names = run_identity.in_flow_order(
            run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"])
        self.tags["pipelines"] = ",".join(n for n in names if n) or "__default__"
        if run_params.get("pipeline_names"):
            # kedro-mlflow's tag of Kedro's run_params, in the order of a Python set (it moved
            # with PYTHONHASHSEED): rewritten in flow order
            self.tags["pipeline_names"] = str([n for n in names if n])
        runner = run_identity.runner_name(run_params.get("runner"))
        if runner:
            self.tags["runner"] = runner  # kedro-mlflow tags the object's repr
        command = run_identity.cli_command(sys.argv)
        if command:  # kedro-mlflow's tag leaves out --env, --params and --runner
            self.tags["kedro_command"] = command
        ran = [n for n in names if n]
        data_label = None
        if ran == ["inference"]:  # scores the chain's data, not params:data
            scored = run_identity.inference_data_path(self._params, self._project_path)
            if scored:
                self._set_data_tags(scored)
            else:  # a registry model: params:data says nothing about what it scores
                self._drop_data_tags()
                data_label = run_identity.registry_model_label(self._params, self._project_path)
        elif ran == ["synthetic_data"]:  # writes a market; reads no data file
            self._drop_data_tags()
        self.tags["mlflow.runName"] = run_identity.run_name(
            names, self.tags.get("data_path"), self.tags.get("config_hash"),
            self._run_name_override, data_label=data_label)
        progress.info("run %s: %d nodes", self.tags["mlflow.runName"],
                      len(pipeline.nodes) if pipeline is not None else 0)
        self._reads_raw_panel = pipeline is not None and any(
            last_part(name) == RAW_PANEL for name in pipeline.all_outputs())
        self._tags_logged = False
        self.run_id = None

    def _log_tags_once(self) -> None:
        if self._tags_logged:
            return
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.set_tags(self.tags)
            self.run_id = mlflow.active_run().info.run_id
            self._tags_logged = True
            if self._system_cfg.get("enabled"):
                self._system_metrics = tracking.SystemMetrics(
                    float(self._system_cfg["sampling_seconds"]))
                self._system_metrics.start(self.run_id)
            if self._data_path is not None and not self._reads_raw_panel:
                # no node of this run loads the panel into memory: log the file alone
                tracking.log_input_panel(None, self._data_path, self.tags.get("data_fingerprint"))

    def _stop_system_metrics(self) -> None:
        if self._system_metrics is not None:
            self._system_metrics.stop()
            self._system_metrics = None

    @hook_impl
    def before_node_run(self) -> None:
        self._log_tags_once()

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any] | None = None) -> None:
        for name, value in (outputs or {}).items():
            if last_part(name) == RAW_PANEL and self._data_path is not None:
                tracking.log_input_panel(value, self._data_path, self.tags.get("data_fingerprint"))
            if last_part(name) == INFERENCE_PANEL and "data_path" not in self.tags:
                self._tag_scored_data(getattr(value, "attrs", {}).get("source_path"))

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._stop_system_metrics()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._stop_system_metrics()
