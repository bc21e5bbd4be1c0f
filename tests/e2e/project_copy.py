"""Helpers for end-to-end tests: a temporary copy of the project and `kedro run` inside it."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEDRO = Path(sys.executable).parent / "kedro"
_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "mlruns", "mlflow.db", "__pycache__", ".pytest_cache", ".ruff_cache",
    "*.egg-info", "benchmarks", "notebooks", ".viz",
)


_EMPTY_STORE: list[Path] = []  # one migrated, empty MLflow SQLite store per test process


def _empty_mlflow_store() -> Path:
    """An MLflow SQLite store with its tables made and nothing logged, created once (in a
    process of its own, whose working folder is the store's: its default experiment points
    there). Creating the tables costs every fresh `kedro run` about 2 s; a copy costs nothing."""
    if not _EMPTY_STORE:
        folder = Path(tempfile.mkdtemp(prefix="bma_quant_empty_store_"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        store = folder / "mlflow.db"
        subprocess.run([sys.executable, "-c", "from mlflow import MlflowClient; MlflowClient("
                        f"'sqlite:///{store}').search_experiments()"],
                       cwd=folder, check=True, capture_output=True, timeout=300)
        _EMPTY_STORE.append(store)
    return _EMPTY_STORE[0]


def _with_empty_mlflow_store(project: Path) -> Path:
    shutil.copyfile(_empty_mlflow_store(), project / "mlflow.db")
    return project


def copy_project(dest: Path) -> Path:
    """Copy code, conf and the shipped raw data (not outputs, stores or the venv) to dest, with
    an empty MLflow store."""
    target = dest / "project"
    shutil.copytree(PROJECT_ROOT, target, ignore=_IGNORE)
    for folder in (target / "data").iterdir():
        if folder.name != "01_raw":
            for item in folder.iterdir():
                if item.name != ".gitkeep":
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
    return _with_empty_mlflow_store(target)


def copy_trained_project(source: Path, dest: Path) -> Path:
    """Copy a project copy with its data (raw files and every stored output) to dest, but not its
    MLflow store: the copy logs to its own (an experiment's artifact folder is an absolute path
    into the source)."""
    target = dest / "project"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "mlruns", "mlflow.db", "__pycache__", ".staging", "*.log"))
    return _with_empty_mlflow_store(target)


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
