"""Which parameters every stored dataset was made with, checked when a layer runs alone.

A dataset's lineage is the value of every parameter read by the nodes that made it, back through
the stored datasets they read (a run's own outputs carry it forward within the run). A successful
run records the lineage of each stored dataset it wrote in `layer_lineage.json` (promoted with its
outputs). Before a run, each stored dataset it reads but does not rewrite must have been made with
this run's values of those parameters: a changed `feature_engineering.selection.min_features`
followed by `--pipelines base_models` would otherwise train on the old features and log the new
value. data_processing's own parameters and files are the data build's (run_hooks/data_builds.py)
and are left out here; inference scores new data with a trained chain on purpose and is not held.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from bma_quant.core.data import preflight
from bma_quant.core.data.provenance import shown
from bma_quant.pipeline_registry import TRAINING_CHAIN
from bma_quant.run_hooks.data_builds import DATA_LAYER, _layer, _stored
from bma_quant.run_hooks.preflight import catalog_owners
from bma_quant.run_hooks.stored_records import StoredRecordHooks

logger = logging.getLogger(__name__)

LINEAGE_PATH = Path("data") / "08_reporting" / "layer_lineage.json"
# Keys that change how a run shows its work or how fast, not what it computes (the threads:
# README "Reproducibility", the same metrics on 1 and 2).
IGNORED_LAST_KEYS = frozenset({"show_progress_bar", "n_jobs"})


def flat_parameters(prefix: str, value: Any) -> dict[str, Any]:
    """Dotted key -> JSON value of every leaf under `prefix` (lists and empty mappings are
    leaves: a section emptied is a value, as one set to null is)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flat_parameters(f"{prefix}.{key}", inner))
        return out
    return {prefix: json.loads(json.dumps(value, default=str))}


# A lineage key naming a parameter section a node read (its value: true), so a key added to
# that section later is known to be one the dataset would have read
READ_PREFIX = "~read:"


def node_parameters(node, params: dict[str, Any]) -> dict[str, Any]:
    """The flattened values of the `params:` inputs a node reads, and the sections themselves
    (READ_PREFIX keys)."""
    out: dict[str, Any] = {}
    for name in node.inputs:
        if name.startswith("params:"):
            path = name[len("params:"):]
            out.update(flat_parameters(path, preflight.lookup(params, path)))
            out[f"{READ_PREFIX}{path}"] = True
    return out


def lineage_differences(made_with: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """`key was X, is Y` for every recorded key whose value this run's parameters change. A key
    only one side has counts too (a factor family's windows added to conf, or removed: the
    later layers would read features made without them), unless its value there is null or
    empty, as unset; where the other side has a value at a section above it, the section is
    what changed (set to null or replaced by a value, or a value replaced by a section:
    `search_space.lightgbm: null` turns tuning off)."""
    read = tuple(k[len(READ_PREFIX):] for k in made_with if k.startswith(READ_PREFIX))
    made_with = {k: v for k, v in made_with.items() if not k.startswith(READ_PREFIX)}
    current: dict[str, Any] = {}
    for key in made_with:
        top = key.split(".", 1)[0]
        if top not in current:
            current.update(flat_parameters(top, params.get(top)) if top in params else {})
    for section in read:  # a section whose keys were all removed is still read
        top = section.split(".", 1)[0]
        if not any(k.startswith(f"{top}.") or k == top for k in current):
            current.update(flat_parameters(top, params.get(top)) if top in params else {})
    changes = {key: f"{key} was {shown(value)}, is {shown(current[key])}"
               for key, value in made_with.items()
               if key in current and current[key] != value}
    changes.update(_reshaped(made_with, current, read))
    return [text for key, text in sorted(changes.items())
            if key.rsplit(".", 1)[-1] not in IGNORED_LAST_KEYS]


def _value_above(key: str, flat: dict[str, Any]) -> str | None:
    """The longest proper prefix of `key` that is a leaf of `flat`, if any."""
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in flat:
            return prefix
    return None


def _under(flat: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) + 1:]: v for k, v in flat.items() if k.startswith(f"{prefix}.")}


def _reshaped(made_with: dict[str, Any], current: dict[str, Any],
              read: tuple[str, ...] = ()) -> dict[str, str]:
    """The changes `lineage_differences` finds among keys only one side has: a key this run
    adds counts only inside a section the record's nodes read (`read`; records written before
    those were kept: inside the open sections, preflight.OPEN_SECTIONS), not the rest of its
    top-level section."""
    out: dict[str, str] = {}
    for key, value in made_with.items():
        if key in current:
            continue
        above = _value_above(key, current)
        if above is not None:
            out[above] = (f"{above} was {shown(_under(made_with, above))}, "
                          f"is {shown(current[above])}")
        elif not _as_unset(value):
            out[key] = f"{key} was {shown(value)}, is not set"
    for key, value in current.items():
        if key in made_with or key in out:  # a section whose keys the loop above compared
            continue
        above = _value_above(key, made_with)
        if above is not None:
            out[above] = (f"{above} was {shown(made_with[above])}, "
                          f"is {shown(_under(current, above))}")
        elif not _as_unset(value) and _was_read(key, read):  # null or {}: as unset
            out[key] = f"{key} was not set, is {shown(value)}"
    return out


def _was_read(key: str, read: tuple[str, ...]) -> bool:
    sections = read or preflight.OPEN_SECTIONS
    return any(key == s or key.startswith(f"{s}.") for s in sections)


def _as_unset(value: Any) -> bool:
    # [] is a value: `x_windows: []` turns a factor family off (its default is on)
    return value is None or value == {}


class LayerLineageHooks(StoredRecordHooks):
    def __init__(self, staging=None, params: dict | None = None,
                 project_path: Path | None = None) -> None:
        super().__init__(staging, params, project_path)
        self._recorded: dict[str, dict] = {}  # dataset -> lineage, from earlier runs
        self._lineage: dict[str, dict] = {}  # dataset -> lineage, made in this run
        self._written: set[str] = set()  # stored datasets this run wrote
        self._files: set[str] = set()  # the run's outputs that land in files

    # ------------------------------------------------------------------ record file
    def _file(self) -> Path:
        return self._project_path / LINEAGE_PATH

    def _load(self) -> dict[str, dict]:
        try:
            stored = json.loads(self._file().read_text())
        except (OSError, ValueError):
            return {}
        lineages, datasets = stored.get("lineages") or {}, stored.get("datasets") or {}
        return {name: lineages[key] for name, key in datasets.items() if key in lineages}

    # ------------------------------------------------------------------ the check
    def check(self, pipeline: Pipeline, catalog) -> None:
        """Refuse reading a stored dataset made with other values of this run's parameters."""
        self._recorded, self._lineage, self._written = self._load(), {}, set()
        nodes = [n for n in pipeline.nodes if _layer(n) in TRAINING_CHAIN]
        # decided now: staging later replaces the run's outputs in the catalog
        self._files = {n for node in nodes for n in node.outputs if _stored(n, catalog)}
        reads = sorted(n for n in Pipeline(nodes).inputs() if _stored(n, catalog)) if nodes else []
        stale: dict[str, list[str]] = {}
        for name in reads:
            changes = lineage_differences(self._recorded.get(name) or {}, self._params)
            if changes:
                stale[name] = changes
        if not stale:
            return
        owners = catalog_owners(self._project_path)
        layers = [layer for layer in TRAINING_CHAIN
                  if layer in {owners.get(name) for name in stale}]
        named = ", ".join(f"{name} ({owners.get(name, '?')})" for name in list(stale)[:6])
        changes = sorted({change for found in stale.values() for change in found})
        raise preflight.PreflightError(
            f"stored outputs this run reads were made with other parameter values ({named}"
            f"{' ...' if len(stale) > 6 else ''}; {'; '.join(changes[:8])}"
            f"{' ...' if len(changes) > 8 else ''}): run the layers that made them again with "
            f"these values (`kedro run --pipelines {','.join(layers)}` and the layers after "
            "them), or pass the values they were made with")

    # ------------------------------------------------------------------ the record
    @hook_impl
    def after_node_run(self, node) -> None:
        layer = _layer(node)
        if layer not in TRAINING_CHAIN:
            return
        lineage = {} if layer == DATA_LAYER else node_parameters(node, self._params)
        for name in node.inputs:
            if not name.startswith("params:"):
                lineage.update(self._lineage.get(name, self._recorded.get(name)) or {})
        for name in node.outputs:
            self._lineage[name] = lineage
            if name in self._files:
                self._written.add(name)

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Record the lineage of every stored dataset this run wrote (promoted with them)."""
        if not self._written:
            return
        lineages: dict[str, dict] = {}
        datasets: dict[str, str] = {}
        for name, lineage in {**self._recorded,
                              **{n: self._lineage[n] for n in self._written}}.items():
            key = hashlib.sha256(json.dumps(lineage, sort_keys=True).encode()).hexdigest()[:16]
            lineages[key], datasets[name] = lineage, key
        self._write_record(LINEAGE_PATH, {"datasets": dict(sorted(datasets.items())),
                                          "lineages": lineages}, indent=1)
