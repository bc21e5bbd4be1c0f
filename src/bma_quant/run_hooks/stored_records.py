"""What the hooks that vet stored datasets share: the project and parameters they read, a
refusal before the first node, and a record file promoted with the run's outputs.

DataBuildHooks (the data a stored dataset was built on) and LayerLineageHooks (the parameter
values it was made with) subclass it and define `check(pipeline, catalog)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from bma_quant.core.data import preflight
from bma_quant.run_hooks.preflight import write_refusal


class StoredRecordHooks:
    def __init__(self, staging=None, params: dict | None = None,
                 project_path: Path | None = None) -> None:
        self._staging = staging
        self._params: dict[str, Any] = dict(params or {})  # else from the Kedro context
        self._project_path = Path(project_path or Path.cwd())

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = dict(context.params)
        self._project_path = Path(context.project_path)

    def check(self, pipeline, catalog) -> None:
        """Raise PreflightError when the run must not start (subclasses)."""
        raise NotImplementedError

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline=None,
                            catalog=None) -> None:
        if pipeline is None or catalog is None:
            return
        try:
            self.check(pipeline, catalog)
        except preflight.PreflightError as error:
            write_refusal(self._project_path, error,
                          ",".join(run_params.get("pipeline_names") or ["__default__"]))
            raise

    def _write_record(self, relative: Path, payload: dict, indent: int) -> None:
        """Write a record file into the run's staging folder (promoted only if the run
        succeeds), or in place without staging."""
        path = self._project_path / relative
        staged = getattr(self._staging, "current", None)
        if staged is not None:
            path = staged.path_for(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=indent, sort_keys=True))
