"""Which data build every layer's stored outputs come from, checked when a layer runs alone.

A data build is what data_processing's outputs were made from: the data, index and known-regime
files (size and SHA-256) and the parameter values data_processing reads, as recorded in
`data_quality_report.json` (core.data.provenance). Two checks, before any node runs:

- The stored data_processing outputs a run reads (it does not rebuild them) must match this
  run's files and parameters: a data file replaced in place, another test period or fold layout
  is refused naming what differs (it failed late, "fold 0 has no trainable rows", or mixed data).
- Every other layer whose stored outputs the run reads must have been built on the stored data
  build. A successful run records its build for each layer it ran in `data_builds.json` (promoted
  with the outputs); `--pipelines data_processing` with a new test period followed by
  `--pipelines evaluation` would otherwise score models trained on what are now test dates.
  When the run rebuilds data_processing itself, the check runs as soon as the new report exists.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from bma_quant.core.data import preflight, provenance
from bma_quant.pipeline_registry import TRAINING_CHAIN
from bma_quant.run_hooks.preflight import (
    PRIMARY_PANEL,
    QUALITY_REPORT,
    catalog_owners,
    write_refusal,
)

logger = logging.getLogger(__name__)

DATA_BUILDS_PATH = Path("data") / "08_reporting" / "data_builds.json"
DATA_LAYER = "data_processing"
# the data files of a build, by the `data.<key>_path` parameter that names them
FILES = ("raw", "index", "true_regimes")


def shown(value: Any) -> str:
    """A parameter value as `--params` and the YAML files write it (null, not None)."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


class DataBuildHooks:
    def __init__(self, staging=None, params: dict | None = None,
                 project_path: Path | None = None) -> None:
        self._staging = staging
        self._params: dict[str, Any] = dict(params or {})  # else from the Kedro context
        self._project_path = Path(project_path or Path.cwd())
        self._build: str | None = None  # the data build this run's layers stand on
        self._layers_run: set[str] = set()
        self._read_layers: set[str] = set()  # layers whose stored outputs this run reads
        self._pipelines = ""

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = dict(context.params)
        self._project_path = Path(context.project_path)

    # ------------------------------------------------------------------ recorded builds
    def _builds_file(self) -> Path:
        return self._project_path / DATA_BUILDS_PATH

    def _recorded_builds(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._builds_file().read_text()))
        except (OSError, ValueError, TypeError):
            return {}

    def _check_layers_built_on(self, build: str) -> None:
        """The stored outputs of other layers this run reads were built on `build`."""
        recorded = self._recorded_builds()
        stale = sorted(layer for layer in self._read_layers
                       if layer in recorded and recorded[layer] != build)
        if stale:
            raise preflight.PreflightError(
                f"the stored outputs of {', '.join(stale)} that this run reads were built on "
                f"other data_processing outputs (another data file or data_processing "
                f"parameters) than the ones it uses: run the whole chain (`kedro run`) so every "
                f"layer stands on the same data")

    # ------------------------------------------------------------------ stored data build
    def _resolved(self, path: str) -> Path:
        path = Path(path)
        return (path if path.is_absolute() else self._project_path / path).resolve()

    def _check_stored_file(self, source: dict, key: str) -> None:
        """One data file of the stored build against this run's `data.<key>_path`."""
        name = f"data.{key}_path"
        if f"{key}_path" not in source:  # written before this was recorded
            return
        stored, current = source[f"{key}_path"], preflight.lookup(self._params, name) or None
        if key == "raw" and (stored is None or current is None):
            return
        if (stored is None) != (current is None) or (
                stored is not None and self._resolved(stored) != self._resolved(str(current))):
            raise preflight.PreflightError(
                f"the stored outputs this run reads were built from {name} = {shown(stored)}, "
                f"but {name} is {shown(current)}: run the chain on it (`kedro run`), or pass "
                f"--params {name}={shown(stored)} (and the same --env) to go on with them")
        if stored is not None and not provenance.same_file_content(
                source.get(f"{key}_file"), self._resolved(str(current))):
            recorded = source.get(f"{key}_file") or {}
            raise preflight.PreflightError(
                f"{current} changed after the stored outputs this run reads were built from it "
                f"(then {recorded.get('bytes')} bytes, sha256 {str(recorded.get('sha256'))[:12]}"
                f"...): run the whole chain again on the new file (`kedro run`)")

    def _check_stored_build(self, report: dict) -> None:
        source = report.get("source") or {}
        for key in FILES:
            self._check_stored_file(source, key)
        if isinstance(report.get("settings"), dict):
            changes = provenance.changed_settings(report["settings"],
                                                  provenance.panel_settings(self._params))
            if changes:
                shown_changes = "; ".join(changes[:8]) + ("; ..." if len(changes) > 8 else "")
                raise preflight.PreflightError(
                    f"the stored data_processing outputs this run reads were built with other "
                    f"parameters ({shown_changes}): run the whole chain with these parameters "
                    f"(`kedro run`), or pass the stored values")

    # ------------------------------------------------------------------ hooks
    def check(self, pipeline, catalog) -> None:
        """Both checks for a run about to start (also callable without Kedro's hook manager)."""
        owners = catalog_owners(self._project_path)
        inputs = set(pipeline.inputs())
        layers = {node.namespace.split(".")[0] for node in pipeline.nodes if node.namespace}
        # training layers only: inference scores new data with a trained chain on purpose
        self._layers_run = layers & set(TRAINING_CHAIN)
        self._read_layers = set()
        if layers <= set(TRAINING_CHAIN):
            self._read_layers = ({owners[name] for name in inputs if name in owners}
                                 & set(TRAINING_CHAIN)) - layers
        self._build = None
        rebuilds = QUALITY_REPORT in pipeline.outputs()
        reads_data = bool(({PRIMARY_PANEL} | {n for n, o in owners.items() if o == DATA_LAYER})
                          & inputs)
        if rebuilds or not (reads_data or self._read_layers):
            return
        try:
            report = catalog.load(QUALITY_REPORT) if catalog.exists(QUALITY_REPORT) else None
        except Exception:  # an unreadable report: the layers will say what is wrong
            report = None
        if not isinstance(report, dict):
            return
        if reads_data:
            self._check_stored_build(report)
        self._build = provenance.build_id(report)
        if self._build is not None:
            self._check_layers_built_on(self._build)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline=None,
                            catalog=None) -> None:
        self._pipelines = ",".join(run_params.get("pipeline_names") or ["__default__"])
        if pipeline is None or catalog is None:
            return
        try:
            self.check(pipeline, catalog)
        except preflight.PreflightError as error:
            write_refusal(self._project_path, error, self._pipelines)
            raise

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        report = outputs.get(QUALITY_REPORT)
        if isinstance(report, dict):  # this run rebuilt the data: later layers stand on it
            self._build = provenance.build_id(report)
            if self._build is not None:
                self._check_layers_built_on(self._build)

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Record the build for every layer this run ran (promoted with the outputs)."""
        if self._build is None or not self._layers_run:
            return
        builds = {**self._recorded_builds(), **dict.fromkeys(sorted(self._layers_run),
                                                              self._build)}
        path = self._builds_file()
        staged = getattr(self._staging, "current", None)
        if staged is not None:
            path = staged.path_for(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(builds, indent=2, sort_keys=True))
