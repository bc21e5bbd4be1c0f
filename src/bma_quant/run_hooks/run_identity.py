"""What a run is, in words: its MLflow run name and a readable runner name.

A run is named from what it did, so runs compare at a glance in the MLflow UI:
``<pipelines> · <data file stem> · <config hash>`` (e.g. ``__default__ · sp500_prices · 3f2a1b9c``);
the ``run_name`` parameter overrides it.
"""

from __future__ import annotations

import json
import pickle
import re
import shlex
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

CONFIG_HASH_CHARS = 8  # enough to tell configurations apart in a list of runs
# parameters that label a run without changing what it computes (left out of the config hash)
LABEL_PARAMS = ("run_name",)
# Kedro passes str(runner) in run_params, e.g. "<kedro.runner.sequential_runner.SequentialRunner
# object at 0x7f...>"
_OBJECT_REPR = re.compile(r"^<(?:[\w]+\.)*(\w+) object at 0x[0-9a-fA-F]+>$")


def data_stem(path: str | PurePath | None) -> str | None:
    """The data file's name without its suffixes: ``data/01_raw/sp500_prices.csv.gz`` ->
    ``sp500_prices``; None without a path."""
    if not path:
        return None
    name = PurePath(str(path)).name
    return name.split(".", 1)[0] or name


def in_flow_order(pipelines: Sequence[str]) -> list[str]:
    """Pipeline names in the order data flows through them (Kedro passes `--pipelines` as a set):
    synthetic_data, the training chain's layers, inference; any other name after them."""
    from bma_quant.pipeline_registry import TRAINING_CHAIN

    flow = ("synthetic_data", *TRAINING_CHAIN, "inference")
    named = [p for p in dict.fromkeys(pipelines) if p]
    return sorted(named, key=lambda p: flow.index(p) if p in flow else len(flow))


def run_name(pipelines: Sequence[str], data_path: str | PurePath | None,
             config_hash: str | None, override: str | None = None,
             data_label: str | None = None) -> str:
    """``override`` when given, else the pipelines, the data file stem (or ``data_label``) and
    the short config hash, joined by `` · ``."""
    if override:
        return str(override)
    parts = ["+".join(p for p in pipelines if p) or "__default__",
             data_label or data_stem(data_path), (config_hash or "")[:CONFIG_HASH_CHARS] or None]
    return " · ".join(p for p in parts if p)


def runner_name(runner: Any) -> str | None:
    """The runner's class name (``SequentialRunner``), whether Kedro passes the class name, the
    object's repr, the runner object or its class."""
    if runner is None:
        return None
    if isinstance(runner, str):
        match = _OBJECT_REPR.match(runner.strip())
        return match.group(1) if match else runner
    cls = runner if isinstance(runner, type) else type(runner)
    return cls.__name__


def inference_data_path(params: dict, project_path: Path) -> str | None:
    """The panel an inference run scores: ``inference.data.raw_path`` when given, else the training
    data the local chain records (``params:data`` names the shipped sample, not what the chain was
    trained on); None when neither is known (a registry model: its node logs what it read)."""
    inference = params.get("inference") or {}
    explicit = (inference.get("data") or {}).get("raw_path")
    if explicit:
        return str(explicit)
    if inference.get("model_source", "local") != "local" or not inference.get("chain_path"):
        return None
    path = Path(inference["chain_path"])
    path = path if path.is_absolute() else project_path / path
    try:
        with open(path, "rb") as handle:
            training = getattr(pickle.load(handle), "training_data", None) or {}
    except Exception:  # no chain yet: the inference node says so
        return None
    return training.get("raw_path")


def registry_model_label(params: dict, project_path: Path) -> str | None:
    """What a registry-sourced inference run scores with, for its name: ``<name>@<alias>`` or
    ``<name> v<version>`` from ``inference.model_uri``, else the champion of the last training
    run's data set (its registration report); None when neither is known."""
    inference = params.get("inference") or {}
    if inference.get("model_source", "local") != "registry":
        return None
    uri = inference.get("model_uri")
    if not uri:
        report = inference.get("registration_path")
        path = Path(report) if report else None
        if path is not None and not path.is_absolute():
            path = project_path / path
        try:
            name = json.loads(path.read_text()).get("model_name") if path else None
        except (OSError, ValueError):
            return None
        return f"{name}@champion" if name else None
    rest = str(uri).removeprefix("models:/")
    name, _, version = rest.partition("/")
    return f"{name} v{version}" if version.isdigit() else rest


def cli_command(argv: list[str]) -> str | None:
    """The `kedro ...` command line of a run started from the CLI (None otherwise: a notebook or
    a test starts sessions without one)."""
    started = Path(argv[0]) if argv else None
    # `kedro ...` or `python -m kedro ...` (argv[0] is then kedro's __main__.py)
    if started is None or not (started.name == "kedro" or (started.name == "__main__.py"
                                                           and started.parent.name == "kedro")):
        return None
    return shlex.join(["kedro", *argv[1:]])
