"""Log a dict as MLflow run parameters through the catalog (kedro-mlflow has metric and artifact
datasets but none for params computed by a node, such as the date split)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset


class MlflowParamsDataset(AbstractDataset[dict, dict]):
    """Saves {name: value} as params of the active MLflow run (prefixed), and as a JSON file so the
    values can be loaded back without MLflow."""

    def __init__(self, filepath: str, prefix: str | None = None, metadata: dict | None = None):
        self._filepath = Path(filepath)
        self._prefix = prefix
        self.metadata = metadata

    def _save(self, data: dict[str, Any]) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        self._filepath.write_text(json.dumps(data, indent=2, default=str))
        import mlflow

        if mlflow.active_run() is not None:
            name = (lambda k: f"{self._prefix}.{k}") if self._prefix else str
            mlflow.log_params({name(k): v for k, v in data.items()})

    def _load(self) -> dict[str, Any]:
        return json.loads(self._filepath.read_text())

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "prefix": self._prefix}
