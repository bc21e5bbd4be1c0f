"""MLflow bookkeeping of a run beyond parameters and metrics: the input data set (the run's
Datasets column) and system metrics (CPU, memory, disk over time) of the parent run only.

Every function here is a no-op without an active run and never fails a run (a warning instead).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pandas as pd

from bma_quant.run_hooks.run_identity import data_stem

logger = logging.getLogger(__name__)

INPUT_CONTEXT = "training"  # MLflow's dataset context of the raw panel
SCHEMA_SAMPLE_ROWS = 1000  # MLflow infers the schema from these rows, not the whole panel


def _panel_dataset(frame: pd.DataFrame, source, name: str, digest: str | None):
    """An MLflow pandas dataset whose schema is inferred from a sample (the whole 1.26M-row panel
    took 20 s) and whose profile counts the whole frame."""
    from mlflow.data.pandas_dataset import PandasDataset

    class PanelDataset(PandasDataset):
        @property
        def profile(self):
            return {"num_rows": int(len(frame)), "num_elements": int(frame.size)}

    return PanelDataset(df=frame.head(SCHEMA_SAMPLE_ROWS), source=source, name=name,
                        digest=digest)


def log_input_panel(frame: pd.DataFrame | None, path: Path, fingerprint: str | None,
                    context: str = INPUT_CONTEXT) -> bool:
    """Log the input panel as an MLflow dataset: its schema and row count when the frame is in
    memory (the raw panel a run read), else the file alone; source = the file, digest = the
    file fingerprint the run is tagged with (same file, same digest)."""
    import mlflow

    if mlflow.active_run() is None:
        return False
    try:
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        name = data_stem(path)
        with warnings.catch_warnings():  # a local path matches two source types: either is fine
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(path))
        if frame is not None:
            dataset = _panel_dataset(frame, source, name, fingerprint)
        else:
            dataset = MetaDataset(source, name=name, digest=fingerprint)
        mlflow.log_input(dataset, context=context)
        return True
    except Exception as exc:  # tracking must never fail a run
        logger.warning("could not log the input data set %s to MLflow: %s", path, exc)
        return False


class SystemMetrics:
    """MLflow system metrics (``system/cpu_utilization_percentage``, ``system/system_memory_usage
    _megabytes``, ...) sampled for one run. Started on the parent run only, so the nested Optuna
    trial runs do not each start a sampler."""

    def __init__(self, sampling_seconds: float) -> None:
        self._sampling_seconds = float(sampling_seconds)
        self._monitor = None

    def start(self, run_id: str) -> None:
        if self._monitor is not None:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(run_id, sampling_interval=self._sampling_seconds)
            self._monitor.start()
        except Exception as exc:  # psutil missing, unsupported platform: the run goes on
            logger.warning("MLflow system metrics are off: %s", exc)
            self._monitor = None

    def stop(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        try:
            monitor.finish()
        except Exception as exc:
            logger.warning("could not stop MLflow system metrics: %s", exc)
