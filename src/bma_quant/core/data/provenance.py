"""What the stored data_processing outputs were built from: the data files (size and content
hash) and the parameter values they depend on. data_quality_report records both; a later layer
run alone on those outputs compares them with its own, so a data file replaced in place or a
changed test period / fold layout is named up front instead of failing minutes later (e.g. "fold 0
has no trainable rows") or, worse, mixing two data sets silently.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# Parameter sections data_processing reads (DESIGN §2-3). Left out: the file paths (compared as
# files), the synthetic truth (scoring only) and cv keys only evaluation reads (combinatorial
# purged CV may be switched on over stored outputs).
PANEL_SECTIONS = ("data", "temporal", "processing", "periods", "cv")
NOT_COMPARED = {"data": ("raw_path", "index_path", "true_regimes_path"),
                "cv": ("scheme", "combinatorial"),
                "temporal": ("max_lookback_days",)}  # the features' and serving warm-up's
_CHUNK = 1 << 20


def file_fingerprint(path: str | Path | None) -> dict | None:
    """Size and SHA-256 of a file (None without a path or for a missing file)."""
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    stat = path.stat()
    return {"bytes": stat.st_size, "sha256": digest.hexdigest(), "modified_ns": stat.st_mtime_ns}


def same_file_content(stored: dict | None, path: str | Path) -> bool:
    """Whether the file at `path` still has the recorded content (a size check first, so an
    appended or truncated file is told without reading it)."""
    if not stored:
        return True  # nothing recorded (outputs written before fingerprints existed)
    path = Path(path)
    if not path.is_file():
        return True  # a missing file is the reading node's error, not a provenance question
    stat = path.stat()
    if stat.st_size != stored.get("bytes"):
        return False
    if stat.st_mtime_ns == stored.get("modified_ns"):  # untouched since: skip reading a big file
        return True
    current = file_fingerprint(path)
    return current is not None and current["sha256"] == stored.get("sha256")


def panel_settings(params: dict) -> dict:
    """The parameter values data_processing's outputs depend on, as JSON values."""
    settings = {}
    for section in PANEL_SECTIONS:
        values = params.get(section)
        if not isinstance(values, dict):
            continue
        skipped = NOT_COMPARED.get(section, ())
        settings[section] = {k: v for k, v in values.items() if k not in skipped}
    return json.loads(json.dumps(settings, default=str, sort_keys=True))


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict):
        flat: dict[str, Any] = {}
        for key, value in values.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: values}


def shown(value: Any) -> str:
    """A parameter value as `--params` and the YAML files write it (null, not None)."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def changed_settings(stored: dict, current: dict) -> list[str]:
    """`key: stored -> current` for every value that differs (a key only one side has counts,
    shown as <unset>), sorted by key."""
    old, new = _flatten(stored), _flatten(current)
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, _UNSET) != new.get(key, _UNSET):
            before = shown(old[key]) if key in old else "<unset>"
            after = shown(new[key]) if key in new else "<unset>"
            changes.append(f"{key}: {before} -> {after}")
    return changes


_UNSET = object()


# the files a data build stands on, by the `data.<key>_path` parameter naming them (the known
# regimes of a synthetic market are only scored against, never learnt from: not part of it)
BUILD_FILES = ("raw", "index")


def defined_settings(settings: dict, defined: dict | None) -> dict:
    """`settings` without the keys `defined` (the same sections from conf/base) lacks, at any
    depth. conf/base defines every key a layer reads, so another key (misspelt: the pre-flight
    warns about it) changes no output and is no part of a data build. None: keep every key."""
    if defined is None:
        return settings
    kept = {}
    for key, value in settings.items():
        if key not in defined:
            continue
        both_mappings = isinstance(value, dict) and isinstance(defined[key], dict)
        kept[key] = defined_settings(value, defined[key]) if both_mappings else value
    return kept


def comparable_settings(settings: dict, defined: dict | None) -> dict:
    """defined_settings, with every key `defined` has that `settings` lacks filled with its
    value there (conf/base's default): a report written before a parameter existed was built as
    its default builds, so adding a parameter does not refuse every stored build."""
    if defined is None:
        return settings
    kept = defined_settings(settings, defined)
    for key, default in defined.items():
        if key not in kept:
            kept[key] = default
        elif isinstance(kept[key], dict) and isinstance(default, dict):
            kept[key] = comparable_settings(kept[key], default)
    return kept


def build_record(report: dict, defined: dict | None = None) -> dict | None:
    """What a data_quality_report says its outputs were built from: the files (by content where
    known: the same file named another way is the same build) and the settings (compared on the
    keys `defined` has: comparable_settings). None for a report written before both were
    recorded."""
    source, settings = report.get("source"), report.get("settings")
    if not isinstance(source, dict) or not isinstance(settings, dict):
        return None
    settings = comparable_settings(settings, defined)
    files = {key: _content(source.get(f"{key}_file")) or source.get(f"{key}_path")
             for key in BUILD_FILES}
    return json.loads(json.dumps({"files": files, "settings": settings}, sort_keys=True,
                                 default=str))


def _content(fingerprint: dict | None) -> dict | None:
    """A fingerprint without its modification time (a copy of the file is the same content)."""
    return None if not fingerprint else {k: fingerprint[k] for k in ("bytes", "sha256")
                                         if k in fingerprint}


def build_id(record: dict | None) -> str | None:
    """A short hash of a build record (build_record): the data build later layers stand on."""
    if record is None:
        return None
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def build_differences(old: dict, new: dict, defined: dict | None = None) -> list[str]:
    """What differs between two build records, for a message (settings: the keys `defined`
    has)."""
    changes = [f"data.{key}_path: another file" for key in BUILD_FILES
               if old.get("files", {}).get(key) != new.get("files", {}).get(key)]
    return changes + changed_settings(comparable_settings(old.get("settings", {}), defined),
                                      comparable_settings(new.get("settings", {}), defined))
