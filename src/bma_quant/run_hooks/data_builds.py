"""Which data build every layer's stored outputs come from, checked when a layer runs alone.

A data build is what data_processing's outputs were made from: the data and index files (size and
SHA-256) and the parameter values data_processing reads, as recorded in
`data_quality_report.json` (core.data.provenance). Before any node runs:

- The stored data_processing outputs a run reads (it does not rebuild them) must match this
  run's files and parameters: a data file replaced in place, another test period or fold layout
  is refused naming everything that differs (it failed late, "fold 0 has no trainable rows", or
  mixed data).
- Every other training layer whose stored outputs the run reads must stand on the stored build.
  A successful run records, in `data_builds.json` (promoted with its outputs), the build of each
  layer it ran whole (a layer run in part keeps its build only if that is the same; else it is
  marked mixed); `--pipelines data_processing` with a new test period followed by `--pipelines
  evaluation` would otherwise score models trained on what are now test dates. A run that
  rebuilds data_processing is checked as soon as its new report exists.
- A run that rewrites some data_processing outputs but not the report (`--to-nodes` short of
  it) is refused: later layers could no longer tell what their data was built from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from bma_quant.core.data import preflight, provenance
from bma_quant.core.data.provenance import shown
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
MIXED = "mixed"  # a layer whose stored outputs come from two builds (run in part)
# outputs a partial data_processing run may write without the report (metrics go to MLflow)
NOT_STORED_DATA = {"data_processing_metrics"}


def _layer(node) -> str | None:
    return node.namespace.split(".")[0] if node.namespace else None


def _registered_nodes(layer: str) -> set[str] | None:
    """The node names of a registered layer (None outside a configured project)."""
    try:
        from kedro.framework.project import pipelines

        registered = pipelines.get(layer)
    except Exception:  # no project configured (unit tests) or a registry that fails to load
        return None
    return None if registered is None else {node.name for node in registered.nodes}


class DataBuildHooks:
    def __init__(self, staging=None, params: dict | None = None,
                 project_path: Path | None = None) -> None:
        self._staging = staging
        self._params: dict[str, Any] = dict(params or {})  # else from the Kedro context
        self._project_path = Path(project_path or Path.cwd())
        self._record: dict | None = None  # the data build this run's layers stand on
        self._complete: set[str] = set()  # training layers this run runs whole
        self._partial: set[str] = set()  # ... and in part
        self._read_layers: set[str] = set()  # layers whose stored outputs this run reads

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = dict(context.params)
        self._project_path = Path(context.project_path)

    # ------------------------------------------------------------------ recorded builds
    def _builds_file(self) -> Path:
        return self._project_path / DATA_BUILDS_PATH

    def _recorded(self) -> dict:
        try:
            recorded = json.loads(self._builds_file().read_text())
        except (OSError, ValueError):
            return {"layers": {}, "builds": {}}
        if not isinstance(recorded, dict) or not isinstance(recorded.get("layers"), dict):
            return {"layers": {}, "builds": {}}
        return {"layers": recorded["layers"], "builds": recorded.get("builds") or {}}

    def _refuse_mixed(self, recorded: dict) -> None:
        mixed = [layer for layer in sorted(self._read_layers)
                 if recorded["layers"].get(layer) == MIXED]
        if mixed:
            raise preflight.PreflightError(
                f"the stored outputs of {', '.join(mixed)} that this run reads come from two "
                f"data builds (run in part after the data changed): run {' and '.join(mixed)} "
                f"whole, or the whole chain (`kedro run`)")

    def _check_layers_built_on(self, record: dict) -> None:
        """The stored outputs of other layers this run reads stand on the build `record`."""
        build = provenance.build_id(record)
        recorded = self._recorded()
        self._refuse_mixed(recorded)
        stale = {layer: recorded["layers"][layer] for layer in sorted(self._read_layers)
                 if recorded["layers"].get(layer, build) != build}
        if not stale:
            return
        differences = sorted({change for built in stale.values()
                              for change in provenance.build_differences(
                                  recorded["builds"].get(built, {}), record)})
        raise preflight.PreflightError(
            f"the stored outputs of {', '.join(stale)} that this run reads were built on other "
            f"data_processing outputs than the stored ones ({'; '.join(differences[:8])}): run "
            f"data_processing again with the values those layers were built with, or the whole "
            f"chain with these (`kedro run`, with the same --env and --params)")

    # ------------------------------------------------------------------ stored data build
    def _resolved(self, path: str) -> Path:
        path = Path(path)
        return (path if path.is_absolute() else self._project_path / path).resolve()

    def _file_problem(self, source: dict, key: str) -> str | None:
        """What is wrong with one data file of the stored build against this run's."""
        name = f"data.{key}_path"
        if f"{key}_path" not in source:  # written before this was recorded
            return None
        stored, current = source[f"{key}_path"], preflight.lookup(self._params, name) or None
        recorded = source.get(f"{key}_file")
        if key == "raw" and (stored is None or current is None):
            return None
        if stored is None or current is None:
            return None if stored == current else f"{name} was {shown(stored)}, is {shown(current)}"
        if self._resolved(stored) == self._resolved(str(current)):
            if provenance.same_file_content(recorded, self._resolved(str(current))):
                return None
            return (f"{current} changed after they were built from it (then "
                    f"{(recorded or {}).get('bytes')} bytes, sha256 "
                    f"{str((recorded or {}).get('sha256'))[:12]}...)")
        current_file = provenance.file_fingerprint(self._resolved(str(current))) or {}
        if recorded and all(current_file.get(k) == recorded.get(k) for k in ("bytes", "sha256")):
            return None  # the same bytes under another name
        return f"{name} was {shown(stored)}, is {shown(current)}"

    def _check_stored_build(self, report: dict) -> None:
        source = report.get("source") or {}
        problems = [p for p in (self._file_problem(source, key)
                                for key in provenance.BUILD_FILES) if p]
        if isinstance(report.get("settings"), dict):
            problems += provenance.changed_settings(report["settings"],
                                                    provenance.panel_settings(self._params))
        if problems:
            raise preflight.PreflightError(
                f"the stored data_processing outputs this run reads were built from other data "
                f"or parameters ({'; '.join(problems[:8])}{'; ...' if len(problems) > 8 else ''})"
                f": run the whole chain on these (`kedro run`), or pass the stored values (and "
                f"the same --env)")

    # ------------------------------------------------------------------ the run's shape
    def _survey(self, pipeline: Pipeline, owners: dict[str, str]) -> tuple[set, set]:
        """Set the layers run whole / in part and the layers read; return (inputs, outputs) of
        the run's training nodes (inference scores new data with a trained chain on purpose)."""
        nodes = [node for node in pipeline.nodes if _layer(node) in TRAINING_CHAIN]
        training = Pipeline(nodes)
        layers = {_layer(node) for node in nodes}
        ran = {node.name for node in nodes}
        self._complete = {layer for layer in layers
                          if (_registered_nodes(layer) or ran) <= ran}
        self._partial = layers - self._complete
        inputs = set(training.inputs())
        self._read_layers = ({owners[name] for name in inputs if name in owners}
                             & set(TRAINING_CHAIN)) - self._complete
        return inputs, {output for node in nodes for output in node.outputs}

    def check(self, pipeline: Pipeline, catalog) -> None:
        """Every check possible before the run (also callable without Kedro's hook manager)."""
        owners = catalog_owners(self._project_path)
        inputs, outputs = self._survey(pipeline, owners)
        self._record = None
        data_outputs = {name for name, owner in owners.items() if owner == DATA_LAYER}
        rebuilds = QUALITY_REPORT in outputs
        rewritten = sorted(data_outputs & outputs - NOT_STORED_DATA - {QUALITY_REPORT})
        if rewritten and not rebuilds:
            raise preflight.PreflightError(
                f"this run rewrites data_processing output(s) ({', '.join(rewritten)}) but not "
                f"{QUALITY_REPORT}, which records what they were built from: run data_processing "
                f"whole, or add data_processing.{QUALITY_REPORT} to --to-nodes / --nodes")
        self._refuse_mixed(self._recorded())  # whatever the data, such outputs are unusable
        # a report made by a partial data_processing run describes stored outputs: checked too
        reads_data = bool(({PRIMARY_PANEL} | data_outputs) & inputs)
        if (rebuilds and DATA_LAYER in self._complete) or not (reads_data or self._read_layers):
            return
        try:
            report = catalog.load(QUALITY_REPORT) if catalog.exists(QUALITY_REPORT) else None
        except Exception:  # an unreadable report: the layers will say what is wrong
            report = None
        if not isinstance(report, dict):
            return
        if reads_data:
            self._check_stored_build(report)
        self._record = provenance.build_record(report)
        if self._record is not None:
            self._check_layers_built_on(self._record)

    # ------------------------------------------------------------------ hooks
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

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        report = outputs.get(QUALITY_REPORT)
        if isinstance(report, dict):  # this run rebuilt the data: later layers stand on it
            self._record = provenance.build_record(report)
            if self._record is not None:
                self._check_layers_built_on(self._record)

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Record the build of every layer this run ran (promoted with the outputs)."""
        if self._record is None or not (self._complete or self._partial):
            return
        build = provenance.build_id(self._record)
        recorded = self._recorded()
        layers = dict(recorded["layers"])
        layers.update(dict.fromkeys(self._complete, build))
        for layer in self._partial:  # its other outputs keep the build they were made on
            if layers.get(layer, build) != build:
                layers[layer] = MIXED
        builds = {**recorded["builds"], build: self._record}
        builds = {key: value for key, value in builds.items() if key in layers.values()}
        path = self._builds_file()
        staged = getattr(self._staging, "current", None)
        if staged is not None:
            path = staged.path_for(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"layers": layers, "builds": builds}, indent=2,
                                   sort_keys=True))
