"""Helpers for end-to-end tests: a temporary copy of the project and `kedro run` inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEDRO = Path(sys.executable).parent / "kedro"
_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "mlruns", "mlflow.db", "__pycache__", ".pytest_cache", ".ruff_cache",
    "*.egg-info", "benchmarks", "notebooks", ".viz",
)


def copy_project(dest: Path) -> Path:
    """Copy code, conf and the shipped raw data (not outputs, stores or the venv) to dest."""
    target = dest / "project"
    shutil.copytree(PROJECT_ROOT, target, ignore=_IGNORE)
    for folder in (target / "data").iterdir():
        if folder.name != "01_raw":
            for item in folder.iterdir():
                if item.name != ".gitkeep":
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
    return target


def copy_trained_project(source: Path, dest: Path) -> Path:
    """Copy a project copy with its data (raw files and every stored output) to dest, but not its
    MLflow store: the copy logs to its own (an experiment's artifact folder is an absolute path
    into the source)."""
    target = dest / "project"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "mlruns", "mlflow.db", "__pycache__", ".staging", "*.log"))
    return target


def kedro_env(project: Path, extra: dict | None = None) -> dict[str, str]:
    """Environment of a `kedro run` in the copy: its own MLflow store, no telemetry prompt."""
    return {
        **os.environ,
        **(extra or {}),
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MPLBACKEND": "Agg",
        "COLUMNS": "200",
    }


def kedro_run(project: Path, *args: str, timeout: int = 900, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(KEDRO), "run", *args], cwd=project, env=kedro_env(project, env),
        capture_output=True, text=True, timeout=timeout,
    )


def mlflow_runs(project: Path):
    """All runs of the project's experiment, newest first (pandas frame from mlflow)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        return mlflow.search_runs(experiment_names=["bma_quant"], order_by=["start_time DESC"])
    finally:
        mlflow.set_tracking_uri(previous)
