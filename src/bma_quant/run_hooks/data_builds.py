"""Which data build every stored dataset was made on, checked when a layer runs alone.

A data build is what data_processing's outputs were made from: the data and index files (size and
SHA-256) and the parameter values data_processing reads, as recorded in
`data_quality_report.json` (core.data.provenance). Before any node runs:

- The stored data_processing outputs a run reads (it does not rebuild them) must match this
  run's files and parameters: a data file replaced in place, another test period or fold layout
  is refused naming everything that differs (it failed late, "fold 0 has no trainable rows", or
  mixed data).
- Every stored dataset a run reads must have been made on the stored build. A successful run
  records the build of each dataset it wrote in `data_builds.json` (promoted with its outputs):
  `--pipelines data_processing` with a new test period followed by `--pipelines evaluation` would
  otherwise score models trained on what are now test dates; with `--nodes` / `--to-nodes` the
  datasets a run did not rewrite keep their build. A run that rebuilds data_processing is checked
  as soon as its new report exists.
- A run that rewrites data_processing outputs without the report (`--to-nodes` short of it)
  must reproduce them: the same files and parameters as the report records.
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
    base_parameters,
    catalog_owners,
)
from bma_quant.run_hooks.stored_records import StoredRecordHooks

logger = logging.getLogger(__name__)

DATA_BUILDS_PATH = Path("data") / "08_reporting" / "data_builds.json"
DATA_LAYER = "data_processing"
NOT_IN_BUILD = {"true_regimes"}  # stored, but only scored against: no part of a data build


def _layer(node) -> str | None:
    return node.namespace.split(".")[0] if node.namespace else None


def _has_file(config: Any) -> bool:
    """Whether a dataset config (or one it wraps) writes a local file."""
    if not isinstance(config, dict):
        return False
    return isinstance(config.get("filepath"), str) or any(
        _has_file(value) for value in config.values() if isinstance(value, dict))


def _stored(name: str, catalog) -> bool:
    """Whether a dataset lands in a file that is part of a data build (not MLflow-only metrics,
    not in-memory hand-overs, not parameters, not the known regimes)."""
    if name in NOT_IN_BUILD or name.startswith("params:") or name == "parameters":
        return False
    try:
        config = catalog.config_resolver.resolve_pattern(name)
    except Exception:  # a catalog without a config resolver: count it
        return True
    return _has_file(config)


def stored_outputs(node, catalog) -> set[str]:
    """The outputs of a node that land in files of a data build."""
    return {name for name in node.outputs if _stored(name, catalog)}


class DataBuildHooks(StoredRecordHooks):
    def __init__(self, staging=None, params: dict | None = None,
                 project_path: Path | None = None) -> None:
        super().__init__(staging, params, project_path)
        self._record: dict | None = None  # the data build this run's layers stand on
        self._reads: set[str] = set()  # stored datasets this run reads (its training nodes)
        self._writes: set[str] = set()  # ... and writes
        self._owners: dict[str, str] = {}  # dataset -> the layer whose catalog declares it

    def _defined(self) -> dict | None:
        """The build settings conf/base defines: a key it lacks is read by no layer (warned
        about by the pre-flight as misspelt) and must not make a build differ. None without
        conf/base (every key compared)."""
        base = base_parameters(self._project_path)
        return provenance.panel_settings(base) if base else None

    def _build_record(self, report: dict) -> dict | None:
        return provenance.build_record(report, self._defined())

    # ------------------------------------------------------------------ recorded builds
    def _builds_file(self) -> Path:
        return self._project_path / DATA_BUILDS_PATH

    def _recorded(self) -> dict:
        try:
            recorded = json.loads(self._builds_file().read_text())
        except (OSError, ValueError):
            return {"datasets": {}, "builds": {}}
        if not isinstance(recorded, dict) or not isinstance(recorded.get("datasets"), dict):
            return {"datasets": {}, "builds": {}}
        return {"datasets": recorded["datasets"], "builds": recorded.get("builds") or {}}

    def _check_reads_built_on(self, record: dict) -> None:
        """The stored datasets this run reads were made on the build `record`."""
        build = provenance.build_id(record)
        recorded = self._recorded()
        unrecorded = sorted(self._reads - set(recorded["datasets"]))
        if unrecorded:  # written before builds were recorded, or data_builds.json removed
            logger.warning(
                "%d stored dataset(s) this run reads have no recorded data build (%s%s): they "
                "cannot be checked against the stored data; a whole `kedro run` records them",
                len(unrecorded), ", ".join(unrecorded[:6]), ", ..." if len(unrecorded) > 6 else "")
        defined = self._defined()

        def same_build(built: str) -> bool:  # also a record made with keys no layer reads
            other = recorded["builds"].get(built)
            return built == build or (isinstance(other, dict) and record == {
                **other, "settings": provenance.comparable_settings(other.get("settings") or {},
                                                                    defined)})

        stale = {name: recorded["datasets"][name] for name in sorted(self._reads)
                 if not same_build(recorded["datasets"].get(name, build))}
        if not stale:
            return
        by_layer: dict[str, list[str]] = {}
        for name in stale:
            by_layer.setdefault(self._owners.get(name, "?"), []).append(name)
        named = "; ".join(f"{layer}: {', '.join(names)}" for layer, names in by_layer.items())
        differences = sorted({change for built in set(stale.values())
                              for change in provenance.build_differences(
                                  recorded["builds"].get(built, {}), record, defined)})
        raise preflight.PreflightError(
            f"stored outputs this run reads were made on other data_processing outputs than the "
            f"stored ones ({named}) (made on -> stored: {'; '.join(differences)}): run those "
            f"layers again on the stored data, data_processing again with the values they were "
            f"made with, or the whole chain (`kedro run`, with the same --env and --params)")

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

    def _stored_build_problems(self, report: dict) -> list[str]:
        """How this run's data files and parameters differ from the stored report's."""
        source = report.get("source") or {}
        problems = [p for p in (self._file_problem(source, key)
                                for key in provenance.BUILD_FILES) if p]
        layout = report.get("cv_layout")
        if (isinstance(layout, dict) and layout.get("n_tuning_folds")
                and "tuning_purge_days" not in layout):
            problems.append("cv_folds: made by an older version, whose last tuning window was "
                            "not purged before the first out-of-fold one")
        if isinstance(report.get("settings"), dict):
            defined = self._defined()
            problems += provenance.changed_settings(
                provenance.comparable_settings(report["settings"], defined),
                provenance.comparable_settings(provenance.panel_settings(self._params), defined))
        return problems

    # ------------------------------------------------------------------ the run's shape
    def _survey(self, pipeline: Pipeline, catalog) -> set[str]:
        """The stored datasets the run's training nodes read and write (inference scores new
        data with a trained chain on purpose); returns the free inputs."""
        nodes = [node for node in pipeline.nodes if _layer(node) in TRAINING_CHAIN]
        inputs = set(Pipeline(nodes).inputs())
        self._reads = {name for name in inputs if _stored(name, catalog)}
        self._writes = {name for node in nodes for name in stored_outputs(node, catalog)}
        return inputs

    def check(self, pipeline: Pipeline, catalog) -> None:
        """Every check possible before the run (also callable without Kedro's hook manager):
        every problem found is named in one refusal."""
        self._owners = catalog_owners(self._project_path)
        inputs = self._survey(pipeline, catalog)
        self._record = None
        data_outputs = {name for name, owner in self._owners.items() if owner == DATA_LAYER}
        rebuilds = QUALITY_REPORT in self._writes
        # rewriting data outputs without the report is fine only if they come out as recorded
        rewritten = sorted((data_outputs & self._writes) - {QUALITY_REPORT})
        reads_data = bool(({PRIMARY_PANEL} | data_outputs) & inputs) or bool(rewritten)
        if not (reads_data or self._reads) or (rebuilds and not self._reads):
            return
        try:
            report = catalog.load(QUALITY_REPORT) if catalog.exists(QUALITY_REPORT) else None
        except Exception:  # an unreadable report: the layers will say what is wrong
            report = None
        if not isinstance(report, dict):
            if rewritten and not rebuilds:
                raise preflight.PreflightError(self._rewrite_message(rewritten, []))
            return
        if rebuilds:  # the new build is known when the new report is made (after_node_run)
            return
        problems = self._stored_build_problems(report) if reads_data else []
        self._record = self._build_record(report)
        messages = []
        if problems and rewritten:
            messages.append(self._rewrite_message(rewritten, problems))
        elif problems:
            messages.append(
                f"the stored data_processing outputs this run reads were built from other data "
                f"or parameters (stored -> this run: {'; '.join(problems)}): run the whole chain "
                f"on these (`kedro run`), or pass the stored values (and the same --env)")
        if self._record is not None:
            try:
                self._check_reads_built_on(self._record)
            except preflight.PreflightError as error:
                messages.append(str(error))
        if messages:
            raise preflight.PreflightError("; and ".join(messages))

    @staticmethod
    def _rewrite_message(rewritten: list[str], problems: list[str]) -> str:
        why = (f" with other data or parameters than it records (stored -> this run: "
               f"{'; '.join(problems)})") if problems else ""
        return (f"this run rewrites data_processing output(s) ({', '.join(rewritten)}) but not "
                f"{QUALITY_REPORT}{why}, so later layers could not tell what they stand on: "
                f"run data_processing whole (`--pipelines data_processing`) or the whole chain")

    # ------------------------------------------------------------------ hooks
    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        report = outputs.get(QUALITY_REPORT)
        if isinstance(report, dict):  # this run rebuilt the data: what it reads must match
            self._record = self._build_record(report)
            if self._record is not None:
                self._check_reads_built_on(self._record)

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Record the build of every stored dataset this run wrote (promoted with them)."""
        if self._record is None or not self._writes:
            return
        build = provenance.build_id(self._record)
        recorded = self._recorded()
        datasets = {**recorded["datasets"], **dict.fromkeys(self._writes, build)}
        builds = {**recorded["builds"], build: self._record}
        builds = {key: value for key, value in builds.items() if key in datasets.values()}
        self._write_record(DATA_BUILDS_PATH, {"datasets": dict(sorted(datasets.items())),
                                              "builds": builds}, indent=2)
