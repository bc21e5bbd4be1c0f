"""run_summary.json (seed §4.1): per-layer timings, peak memory, model counts, failures.

A successful run's summary is promoted with its outputs to `data/08_reporting/run_summary.json`; a
failed or interrupted run writes `run_summary.failed.json` beside it and leaves the last good
summary as it was; the next successful run removes that file with its promotion (the failed run's
MLflow artifacts keep it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

SUMMARY_PATH = Path("data") / "08_reporting" / "run_summary.json"
FAILED_SUMMARY_PATH = SUMMARY_PATH.with_name("run_summary.failed.json")
# per-node seconds and memory, one row per node (an MLflow artifact, not per-node metrics)
HEALTH_TABLE_PATH = SUMMARY_PATH.with_name("run_health.csv")
FAILED_HEALTH_TABLE_PATH = SUMMARY_PATH.with_name("run_health.failed.csv")
HEALTH_COLUMNS = ["node", "layer", "status", "seconds", "peak_rss_mb", "max_system_memory_share",
                  "error"]

# status dataset per layer, written by the layers themselves
_STATUS_DATASETS = (("base_models", "base_model_status"),
                    ("regime_models", "regime_model_status"),
                    ("stacking", "ensemble_report"))


def model_counts(catalog) -> dict[str, Any]:
    """Succeeded / failed learners per layer, from the status datasets the layers write."""
    counts = {}
    for layer, dataset in _STATUS_DATASETS:
        try:
            if not catalog.exists(dataset):
                continue
            status = catalog.load(dataset)
        except Exception:  # a layer that did not run has nothing to count
            continue
        if layer == "stacking":
            counts[layer] = {k: status[k] for k in ("chosen", "methods") if k in status}
            continue
        ok = sorted(k for k, v in status.items() if isinstance(v, dict) and v.get("status") == "ok")
        failed = sorted(k for k, v in status.items()
                        if isinstance(v, dict) and v.get("status") == "failed")
        counts[layer] = {"succeeded": ok, "failed": failed}
        degenerate = sorted(k for k, v in status.items()
                            if isinstance(v, dict) and v.get("status") == "degenerate")
        if degenerate:  # trained, but its predictions are constant (no ranking)
            counts[layer]["degenerate"] = degenerate
    return counts


def layer_totals(node_stats: dict[str, dict[str, float]],
                 node_layer: dict[str, str]) -> dict[str, dict[str, float]]:
    layers: dict[str, dict[str, float]] = {}
    for node_name, stats in node_stats.items():
        layer = layers.setdefault(node_layer.get(node_name, "other"),
                                  {"seconds": 0.0, "peak_rss_mb": 0.0, "nodes": 0})
        layer["seconds"] += stats.get("seconds", 0.0)
        layer["peak_rss_mb"] = max(layer["peak_rss_mb"], stats.get("peak_rss_mb", 0.0))
        layer["nodes"] += 1
    return layers


def health_table(node_stats: dict[str, dict[str, float]], node_layer: dict[str, str],
                 failures: dict[str, str]) -> pd.DataFrame:
    """One row per node run, in run order: layer, ok / failed, seconds, peak memory, error."""
    rows = [{"node": name, "layer": node_layer.get(name, "other"),
             "status": "failed" if name in failures else "ok", **stats,
             "error": failures.get(name)}
            for name, stats in node_stats.items()]
    return pd.DataFrame(rows).reindex(columns=HEALTH_COLUMNS)


def write_health_table(path: Path, node_stats: dict[str, dict[str, float]],
                       node_layer: dict[str, str], failures: dict[str, str],
                       mlflow_run_id: str | None) -> None:
    """The health table as CSV, logged to the run's MLflow artifacts; never fails a run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        health_table(node_stats, node_layer, failures).to_csv(path, index=False)
        if mlflow_run_id:
            from mlflow.tracking import MlflowClient

            MlflowClient().log_artifact(mlflow_run_id, str(path))
    except Exception as exc:  # the health table must never fail a run
        logger.warning("could not write %s: %s", path.name, exc)


def write_summary(path: Path, summary: dict[str, Any], mlflow_run_id: str | None) -> None:
    """Write the summary as JSON and log it to the run's MLflow artifacts; never fails a run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2, default=str))
        if mlflow_run_id:
            from mlflow.tracking import MlflowClient

            MlflowClient().log_artifact(mlflow_run_id, str(path))
    except Exception as exc:  # the summary must never fail a run
        logger.warning("could not write %s: %s", path.name, exc)


def stale_failure_run(path: Path) -> str | None:
    """The MLflow run id an earlier failed run's summary names (None if unreadable)."""
    try:
        return json.loads(path.read_text()).get("mlflow_run_id")
    except (OSError, ValueError, AttributeError):
        return None
