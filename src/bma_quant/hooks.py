"""Run-level health (DESIGN §7): per-node time and memory, a memory guard, failures and the run
summary; the console's progress lines.

The run's MLflow tags, name, input data set and system metrics are `run_hooks.run_tags`; staging of
outputs, pre-flight checks, interrupts and the summary file live in `bma_quant.run_hooks` too.
Kept out of the nodes so that every pipeline gets them for free.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import psutil
from kedro.framework.hooks import hook_impl

from bma_quant.run_hooks.interrupts import interruption_in
from bma_quant.run_hooks.memory_use import MemoryGauge
from bma_quant.run_hooks.run_tags import RunTagsHooks
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


class MemoryLimitExceeded(RuntimeError):
    """Raised between nodes when memory use (the machine's, or the container's against its limit)
    passes `memory.max_threshold`."""


class _RssSampler:
    """Samples this process's resident memory in a thread while a node runs (its peak, not its end),
    and the memory share the guard reads."""

    def __init__(self, interval: float, gauge: MemoryGauge):
        self._interval = interval
        self._gauge = gauge
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self.max_system_share = gauge.read().share
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)
            self.max_system_share = max(self.max_system_share, self._gauge.read().share)

    def start(self) -> _RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.peak = max(self.peak, self._process.memory_info().rss)


class RunHealthHooks:
    """Timing, memory and failure accounting for every node of a run, and its summary (with the
    run's tags and MLflow run id from `run_tags`)."""

    def __init__(self, staging: StagingHooks | None = None,
                 run_tags: RunTagsHooks | None = None) -> None:
        self._staging = staging  # where a successful run's summary is staged
        self._run_tags = run_tags  # the run's tags and MLflow run (None: no MLflow bookkeeping)
        self._samplers: dict[str, _RssSampler] = {}
        self._starts: dict[str, float] = {}
        self._memory = dict(DEFAULT_MEMORY)
        self._gauge: MemoryGauge | None = None  # built at the first check (reads the cgroups once)
        self._project_path = Path.cwd()
        self._node_layer: dict[str, str] = {}
        self._n_nodes = 0
        self._layer_left: dict[str, int] = {}  # nodes of each layer still to run
        self._started = time.perf_counter()
        self.node_stats: dict[str, dict[str, float]] = {}
        self.failures: dict[str, str] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        route_library_logs()  # once Kedro has configured logging
        self._memory.update(context.params.get("memory", {}) or {})
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, pipeline=None) -> None:
        self._n_nodes = len(pipeline.nodes) if pipeline is not None else 0
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

    @property
    def gauge(self) -> MemoryGauge:
        if self._gauge is None:
            self._gauge = MemoryGauge()
        return self._gauge

    def _check_memory(self, where: str) -> None:
        use = self.gauge.read()
        if use.share > float(self._memory["max_threshold"]):
            raise MemoryLimitExceeded(
                f"{use.label} {use.share:.0%} passed memory.max_threshold "
                f"{float(self._memory['max_threshold']):.0%} {where}; stopping the run cleanly. "
                "Reduce the panel (tickers, dates) or the number of features, or raise the threshold."
            )
        if use.share > float(self._memory["target_usage"]):
            logger.warning("%s %.0f%% is above memory.target_usage %.0f%% %s", use.label,
                           use.share * 100, float(self._memory["target_usage"]) * 100, where)

    @hook_impl
    def before_node_run(self, node) -> None:
        self._check_memory(f"before node '{node.name}'")
        self._starts[node.name] = time.perf_counter()
        self._samplers[node.name] = _RssSampler(float(self._memory["sample_seconds"]),
                                                  self.gauge).start()

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
    def after_node_run(self, node) -> None:
        stats = self._finish(node)
        self._report_progress(node.name, stats)
        if stats.get("max_system_memory_share", 0) > float(self._memory["target_usage"]):
            logger.warning(
                "node %s pushed memory use to %.0f%% (target %.0f%%)", node.name,
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
        error = interruption_in(error) or error  # a signal during a save arrives as DatasetError
        # the console line names the error's type only: its message is printed once, by the error
        self._write_summary(catalog, f"failed: {type(error).__name__}: {error}",
                            self._project_path / FAILED_SUMMARY_PATH,
                            self._project_path / FAILED_HEALTH_TABLE_PATH,
                            headline=f"failed ({type(error).__name__})")

    def _write_summary(self, catalog, status: str, path: Path, health_path: Path,
                       headline: str | None = None) -> None:
        tags = self._run_tags.tags if self._run_tags is not None else {}
        run_id = self._run_tags.run_id if self._run_tags is not None else None
        summary = {
            "status": status,
            "pipelines": tags.get("pipelines"),
            "wall_seconds": time.perf_counter() - self._started,
            "layers": layer_totals(self.node_stats, self._node_layer),
            "nodes": self.node_stats,
            "node_failures": self.failures,
            "models": model_counts(catalog),
            "tags": tags,
            "mlflow_run_id": run_id,
        }
        # per-node time and memory: a table artifact, not ~100 metrics of the run
        write_health_table(health_path, self.node_stats, self._node_layer, self.failures, run_id)
        write_summary(path, summary, run_id)
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
