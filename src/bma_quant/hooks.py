"""Run-level concerns (DESIGN §7): per-node time and memory, a memory guard, run tags and name,
the input data set and system metrics in MLflow, failures.

Staging of outputs, pre-flight checks, interrupts and the summary file live in `bma_quant.run_hooks`.

Kept out of the nodes so that every pipeline gets them for free. MLflow is only touched when a run is
active (kedro-mlflow starts it), so the hooks also work with MLflow disabled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from kedro.framework.hooks import hook_impl

from bma_quant.core.data import provenance
from bma_quant.run_hooks import run_identity, tracking
from bma_quant.run_hooks.interrupts import interruption_in
from bma_quant.run_hooks.staging import StagingHooks
from bma_quant.run_hooks.summary import (
    FAILED_HEALTH_TABLE_PATH,
    FAILED_SUMMARY_PATH,
    HEALTH_TABLE_PATH,
    SUMMARY_PATH,
    layer_totals,
    model_counts,
    stale_failure_run,
    write_health_table,
    write_summary,
)

logger = logging.getLogger(__name__)
# One short line per node and per layer: the console view of a run (conf/logging.yml shows this
# logger at INFO and everything else from WARNING; info.log has the full detail).
progress = logging.getLogger("bma_quant.progress")

DEFAULT_MEMORY = {"target_usage": 0.70, "max_threshold": 0.80, "sample_seconds": 0.2}
DEFAULT_SYSTEM_METRICS = {"enabled": True, "sampling_seconds": 10.0}
RAW_PANEL = "raw_panel"  # the in-memory panel data_processing reads: logged as the run's input
INFERENCE_PANEL = "inference_panel"  # the panel an inference run scores (its file in attrs)


class MemoryLimitExceeded(RuntimeError):
    """Raised between nodes when system memory use passes `memory.max_threshold`."""


class _RssSampler:
    """Samples this process's resident memory in a thread while a node runs (its peak, not its end)."""

    def __init__(self, interval: float):
        self._interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self.max_system_share = psutil.virtual_memory().percent / 100.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)
            self.max_system_share = max(self.max_system_share, psutil.virtual_memory().percent / 100.0)

    def start(self) -> _RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.peak = max(self.peak, self._process.memory_info().rss)


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


class RunHealthHooks:
    """Timing, memory and failure accounting for every node of a run."""

    def __init__(self, staging: StagingHooks | None = None) -> None:
        self._staging = staging  # where a successful run's summary is staged
        self._samplers: dict[str, _RssSampler] = {}
        self._starts: dict[str, float] = {}
        self._memory = dict(DEFAULT_MEMORY)
        self._tags: dict[str, str] = {}
        self._tags_logged = False
        self._run_name_override: str | None = None
        self._data_path: Path | None = None
        self._params: dict[str, Any] = {}
        self._reads_raw_panel = False  # the pipeline has the node that loads the raw panel
        self._system_cfg = dict(DEFAULT_SYSTEM_METRICS)
        self._system_metrics: tracking.SystemMetrics | None = None
        self._run_id: str | None = None
        self._project_path = Path.cwd()
        self._node_layer: dict[str, str] = {}
        self._n_nodes = 0
        self._layer_left: dict[str, int] = {}  # nodes of each layer still to run
        self._started = time.perf_counter()
        self.node_stats: dict[str, dict[str, float]] = {}
        self.failures: dict[str, str] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        route_library_logs()
        params = context.params
        self._memory.update(params.get("memory", {}) or {})
        self._system_cfg.update(params.get("system_metrics", {}) or {})
        self._run_name_override = params.get("run_name") or None
        project_path = Path(context.project_path)
        self._project_path = project_path
        self._params = params
        self._tags = {"git_commit": _git_commit(project_path),
                      "git_dirty": _git_dirty(project_path), "config_hash": config_hash(params)}
        self._set_data_tags((params.get("data", {}) or {}).get("raw_path"))

    def _set_data_tags(self, raw_path: str | None) -> None:
        """data_path and data_fingerprint tags of the panel the run reads."""
        self._data_path = None
        if raw_path:
            path = Path(raw_path) if Path(raw_path).is_absolute() else self._project_path / raw_path
            self._tags["data_fingerprint"] = short_fingerprint(path) if path.is_file() else "missing"
            self._tags["data_path"] = str(raw_path)
            self._data_path = path if path.is_file() else None

    def _tag_scored_data(self, source: str | None) -> None:
        """A registry model's inference run knows its data once the model is loaded: tag it
        then (the run's tags were set before its first node)."""
        if not source:
            return
        self._set_data_tags(source)
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.set_tags({k: self._tags[k] for k in ("data_path", "data_fingerprint")
                             if k in self._tags})

    def _drop_data_tags(self) -> None:
        for key in ("data_path", "data_fingerprint"):
            self._tags.pop(key, None)
        self._data_path = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline=None) -> None:
        names = run_identity.in_flow_order(
            run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"])
        self._tags["pipelines"] = ",".join(n for n in names if n) or "__default__"
        runner = run_identity.runner_name(run_params.get("runner"))
        if runner:
            self._tags["runner"] = runner  # kedro-mlflow tags the object's repr
        command = run_identity.cli_command(sys.argv)
        if command:  # kedro-mlflow's tag leaves out --env, --params and --runner
            self._tags["kedro_command"] = command
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
        self._tags["mlflow.runName"] = run_identity.run_name(
            names, self._tags.get("data_path"), self._tags.get("config_hash"),
            self._run_name_override, data_label=data_label)
        self._n_nodes = len(pipeline.nodes) if pipeline is not None else 0
        progress.info("run %s: %d nodes", self._tags["mlflow.runName"], self._n_nodes)
        self._reads_raw_panel = pipeline is not None and any(
            _last_part(name) == RAW_PANEL for name in pipeline.all_outputs())
        self._tags_logged = False
        self._run_id = None
        self._started = time.perf_counter()
        self.node_stats.clear()
        self.failures.clear()
        self._node_layer = self._layers_of_nodes()
        self._layer_left = {}
        for node in (pipeline.nodes if pipeline is not None else ()):
            layer = self._node_layer.get(node.name, "other")
            self._layer_left[layer] = self._layer_left.get(layer, 0) + 1

    @staticmethod
    def _layers_of_nodes() -> dict[str, str]:
        """node name -> the pipeline (layer) it belongs to, for per-layer timings."""
        from kedro.framework.project import pipelines

        from bma_quant.pipeline_registry import TRAINING_CHAIN

        layers = {}
        try:
            for name in (*TRAINING_CHAIN, "inference", "synthetic_data"):
                if name in pipelines:
                    layers.update({n.name: name for n in pipelines[name].nodes})
        except Exception as exc:  # the summary must never fail a run
            logger.debug("could not map nodes to layers: %s", exc)
        return layers

    def _log_tags_once(self) -> None:
        if self._tags_logged:
            return
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.set_tags(self._tags)
            self._run_id = mlflow.active_run().info.run_id
            self._tags_logged = True
            if self._system_cfg.get("enabled"):
                self._system_metrics = tracking.SystemMetrics(
                    float(self._system_cfg["sampling_seconds"]))
                self._system_metrics.start(self._run_id)
            if self._data_path is not None and not self._reads_raw_panel:
                # no node of this run loads the panel into memory: log the file alone
                tracking.log_input_panel(None, self._data_path, self._tags.get("data_fingerprint"))

    def _stop_system_metrics(self) -> None:
        if self._system_metrics is not None:
            self._system_metrics.stop()
            self._system_metrics = None

    def _check_memory(self, where: str) -> None:
        share = psutil.virtual_memory().percent / 100.0
        if share > float(self._memory["max_threshold"]):
            raise MemoryLimitExceeded(
                f"System memory use {share:.0%} passed memory.max_threshold "
                f"{float(self._memory['max_threshold']):.0%} {where}; stopping the run cleanly. "
                "Reduce the panel (tickers, dates) or the number of features, or raise the threshold."
            )
        if share > float(self._memory["target_usage"]):
            logger.warning(
                "System memory use %.0f%% is above memory.target_usage %.0f%% %s",
                share * 100, float(self._memory["target_usage"]) * 100, where,
            )

    @hook_impl
    def before_node_run(self, node) -> None:
        self._log_tags_once()
        self._check_memory(f"before node '{node.name}'")
        self._starts[node.name] = time.perf_counter()
        self._samplers[node.name] = _RssSampler(float(self._memory["sample_seconds"])).start()

    def _finish(self, node) -> dict[str, float]:
        sampler = self._samplers.pop(node.name, None)
        elapsed = time.perf_counter() - self._starts.pop(node.name, time.perf_counter())
        stats = {"seconds": elapsed}
        if sampler is not None:
            sampler.stop()
            stats["peak_rss_mb"] = sampler.peak / 2**20
            stats["max_system_memory_share"] = sampler.max_system_share
        self.node_stats[node.name] = stats
        return stats

    @hook_impl
    def after_node_run(self, node, outputs: dict[str, Any] | None = None) -> None:
        stats = self._finish(node)
        self._report_progress(node.name, stats)
        for name, value in (outputs or {}).items():
            if _last_part(name) == RAW_PANEL and self._data_path is not None:
                tracking.log_input_panel(value, self._data_path, self._tags.get("data_fingerprint"))
            if _last_part(name) == INFERENCE_PANEL and "data_path" not in self._tags:
                self._tag_scored_data(getattr(value, "attrs", {}).get("source_path"))
        if stats.get("max_system_memory_share", 0) > float(self._memory["target_usage"]):
            logger.warning(
                "node %s pushed system memory to %.0f%% (target %.0f%%)", node.name,
                stats["max_system_memory_share"] * 100, float(self._memory["target_usage"]) * 100,
            )
        self._check_memory(f"after node '{node.name}'")

    def _report_progress(self, node_name: str, stats: dict[str, float]) -> None:
        """``[12/38] base_models  train_lightgbm  7.8 s  527 MB``, and a line when the last node
        of a layer is done (Kedro interleaves independent nodes of different layers)."""
        layer = self._node_layer.get(node_name, "other")
        progress.info("[%*d/%d] %-19s %-32s %6.1f s %6.0f MB", len(str(self._n_nodes or 1)),
                      len(self.node_stats), self._n_nodes, layer, node_name, stats["seconds"],
                      stats.get("peak_rss_mb", 0))
        self._layer_left[layer] = self._layer_left.get(layer, 1) - 1
        if self._layer_left[layer] == 0:
            seconds = sum(s.get("seconds", 0.0) for n, s in self.node_stats.items()
                          if self._node_layer.get(n, "other") == layer)
            progress.info("%s done: %.1f s", layer, seconds)

    @hook_impl
    def on_node_error(self, error: Exception, node) -> None:
        self._finish(node)
        self.failures[node.name] = f"{type(error).__name__}: {error}"

    @hook_impl
    def after_pipeline_run(self, catalog) -> None:
        # written into the staging folder: promoted with the run's outputs, last
        staged = self._staging.current if self._staging is not None else None
        path, health = (self._project_path / SUMMARY_PATH, self._project_path / HEALTH_TABLE_PATH)
        stale = [self._project_path / FAILED_SUMMARY_PATH,
                 self._project_path / FAILED_HEALTH_TABLE_PATH]
        if staged:
            path, health = staged.path_for(path), staged.path_for(health)
        self._stop_system_metrics()
        self._write_summary(catalog, "success", path, health)
        # an earlier failed run's summary would read as this run's outcome; MLflow keeps it
        if stale[0].is_file():
            earlier = stale_failure_run(stale[0])
            logger.info("removing the earlier failed run's %s (kept in MLflow run %s)",
                        stale[0].name, earlier or "unknown")
        if staged:
            staged.retire_after_promotion(*stale)
        else:
            for file in stale:
                file.unlink(missing_ok=True)

    @hook_impl
    def on_pipeline_error(self, error: Exception, catalog) -> None:
        self._stop_system_metrics()
        error = interruption_in(error) or error  # a signal during a save arrives as DatasetError
        # the console line names the error's type only: its message is printed once, by the error
        self._write_summary(catalog, f"failed: {type(error).__name__}: {error}",
                            self._project_path / FAILED_SUMMARY_PATH,
                            self._project_path / FAILED_HEALTH_TABLE_PATH,
                            headline=f"failed ({type(error).__name__})")

    def _write_summary(self, catalog, status: str, path: Path, health_path: Path,
                       headline: str | None = None) -> None:
        summary = {
            "status": status,
            "pipelines": self._tags.get("pipelines"),
            "wall_seconds": time.perf_counter() - self._started,
            "layers": layer_totals(self.node_stats, self._node_layer),
            "nodes": self.node_stats,
            "node_failures": self.failures,
            "models": model_counts(catalog),
            "tags": self._tags,
            "mlflow_run_id": self._run_id,
        }
        # per-node time and memory: a table artifact, not ~100 metrics of the run
        write_health_table(health_path, self.node_stats, self._node_layer, self.failures,
                           self._run_id)
        write_summary(path, summary, self._run_id)
        progress.info("run summary: %s, %.1f s, %d nodes, %d failed -> %s", headline or status,
                    summary["wall_seconds"], len(self.node_stats), len(self.failures),
                    self._project_path / (SUMMARY_PATH if status == "success"
                                          else FAILED_SUMMARY_PATH))


def route_library_logs() -> None:
    """Send Optuna's and MLflow's records through the root logger (conf/logging.yml: warnings
    on the console, everything in info.log) instead of their own stderr handlers, which print
    every trial and every MLflow INFO line on the console."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    mlflow_logger = logging.getLogger("mlflow")
    for handler in list(mlflow_logger.handlers):
        mlflow_logger.removeHandler(handler)
    mlflow_logger.propagate = True


def _last_part(dataset_name: str) -> str:
    """``raw_panel`` of ``raw_panel`` or of a namespaced ``data_processing.raw_panel``."""
    return dataset_name.rsplit(".", 1)[-1]
