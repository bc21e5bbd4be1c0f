"""Log the chain as a pyfunc model, register it and set the champion / challenger alias.

One registered model per data set (``bma_quant-<data file stem>`` by default). A version becomes
``champion`` only when its gates pass and its development out-of-fold score beats the current
champion's on the same development folds (``core.evaluation.promotion``; the test period decides
no choice between runs); otherwise it becomes ``challenger`` and the champion keeps its alias. Each version carries a description (data, test period, gates, headline metrics, why it
is or is not the champion) and tags for the next comparison.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.types import ColSpec, DataType, Schema

from bma_quant.core.evaluation import promotion
from bma_quant.run_hooks import registrations as pending
from bma_quant.serving.chain import MARKET_LEVEL, PredictionChain
from bma_quant.serving.pyfunc import CHAIN_ARTIFACT, BmaQuantChain, to_model_input
from bma_quant.serving.requirements import chain_pip_requirements

logger = logging.getLogger(__name__)


def current_alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    """Version number holding ``alias``, or None (no such model or alias); any other registry
    error is raised (`registrations.alias_version`)."""
    return pending.alias_version(client, model_name, alias)


def with_optional_columns(signature: ModelSignature, optional: list[str]) -> ModelSignature:
    """Declare the optional ``market_level`` input column (signature enforcement drops columns
    the schema does not name, and the chain reads the index level from it when present) and mark
    `optional` columns (ones the chain does not read) as not required."""
    columns = [ColSpec(c.type, c.name, required=c.name not in optional)
               for c in signature.inputs.inputs if c.name != MARKET_LEVEL]
    columns.append(ColSpec(DataType.double, MARKET_LEVEL, required=False))
    return ModelSignature(inputs=Schema(columns), outputs=signature.outputs,
                          params=signature.params)


def log_and_register(
    chain: PredictionChain,
    gate_report: dict,
    sample_input: pd.DataFrame,
    sample_output: pd.DataFrame,
    *,
    model_name: str,
    candidate: promotion.Candidate,
    data_path: str | None = None,
    data_fingerprint: str | None = None,
    artifact_name: str = "bma_quant_chain",
    champion_alias: str = "champion",
    challenger_alias: str = "challenger",
    code_paths: list[str] | None = None,
    name_from_file: bool = False,
) -> dict[str, Any]:
    """Log ``chain`` to the active MLflow run, register it as a new version of ``model_name`` and
    alias it: champion when ``candidate`` passes its gates and beats the current champion on the
    same development folds (core.evaluation.promotion.decide), else challenger.

    Requires an active run (the caller checks). Returns what happened, JSON-serialisable."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register needs an active MLflow run")
    info = _log_chain(chain, sample_input, sample_output, artifact_name, code_paths)
    client = MlflowClient()
    previous = current_alias_version(client, model_name, champion_alias)
    champion_tags = (client.get_model_version(model_name, previous).tags
                     if previous is not None else None)
    decision = promotion.decide(candidate, champion_tags, previous,
                                _version_tags(client, model_name) if candidate.gates_passed
                                else None)
    if name_from_file:
        _warn_other_file_same_name(_version_tags(client, model_name), candidate, model_name,
                                   previous, data_path)
    alias = champion_alias if decision.promote else challenger_alias
    replaced = previous if decision.promote else current_alias_version(client, model_name,
                                                                       challenger_alias)
    # a run that fails or is stopped later takes its version (and the alias it moved) back;
    # recorded before the version is made, found then by the run's id: a run stopped inside
    # register_model had made a version it never heard of, and nothing took it back
    pending.add(functools.partial(pending.unregister_run, client, model_name, alias, replaced,
                                  run.info.run_id),
                record={"name": model_name, "version": None, "alias": alias,
                        "replaced": replaced, "run_id": run.info.run_id,
                        "tracking_uri": mlflow.get_tracking_uri(),
                        "registry_uri": mlflow.get_registry_uri()})
    with mlflow_notices_to_info_log(capture_stderr=True):  # only MLflow's prints here
        version = mlflow.register_model(info.model_uri, model_name)
    client.set_registered_model_alias(model_name, alias, version.version)
    _describe_version(client, model_name, version.version, gate_report, candidate, decision,
                      data_path=data_path, data_fingerprint=data_fingerprint)
    if decision.promote and previous is not None:
        pending.mark_replaced(client, model_name, str(previous), str(version.version))
    champion = version.version if decision.promote else previous
    logger.info(
        "registered %s version %s as %s (champion: %s): %s", model_name, version.version, alias,
        champion if champion is not None else "none", decision.reason,
    )
    return {
        "registered": True,
        "model_name": model_name,
        "version": str(version.version),
        "alias": alias,
        "model_uri": f"models:/{model_name}/{version.version}",
        "alias_uri": f"models:/{model_name}@{alias}",
        "logged_model_uri": info.model_uri,
        "run_id": run.info.run_id,
        "gates_passed": candidate.gates_passed,
        "promoted": decision.promote,
        "promotion_reason": decision.reason,
        "compare_metric": candidate.metric,
        "compare_value": candidate.value,
        "champion_version": None if champion is None else str(champion),
        "previous_champion_version": previous,
    }


def _version_tags(client: MlflowClient, model_name: str) -> dict[str, dict[str, str]]:
    """Every registered version of ``model_name`` -> its tags ({} for a new model)."""
    quoted = model_name.replace("'", "\\'")
    try:
        found = client.search_model_versions(f"name='{quoted}'")
    except MlflowException as error:  # only "no such model" is an answer (alias_version)
        if pending.not_found(error):
            return {}
        raise
    return {str(v.version): dict(v.tags or {}) for v in found}


def _from_another_file(tags: dict, candidate: promotion.Candidate, data_path) -> str | None:
    """The path a version was trained on when it is another file with other contents (the same
    file named otherwise, or a copy with the same contents, is not); else None."""
    theirs = tags.get("data_path")
    if theirs in (None, "None"):
        return None
    same_path = Path(theirs).resolve() == Path(str(data_path)).resolve()
    same_data = tags.get(promotion.DATA) == str(candidate.data_fingerprint)
    return None if same_path or same_data else theirs


def _warn_other_file_same_name(versions: dict[str, dict], candidate: promotion.Candidate,
                               model_name: str, champion: str | None, data_path) -> None:
    """One registered model per file *name* (``name_from_file``): prices.csv in two folders
    share it. Said when its champion, or else any version, came from another path with other
    contents (`versions`: version -> tags)."""
    if data_path is None:
        return
    others = {version: path for version, tags in versions.items()
              if (path := _from_another_file(tags, candidate, data_path)) is not None}
    if not others:
        return
    if champion is not None and str(champion) in others:
        logger.warning("registered model %s: its champion (version %s) was trained on %s, this "
                       "run on %s, a file of the same name with other contents; they share this "
                       "model, but their scores are never compared: set registry.model_name to "
                       "keep their versions apart", model_name, champion, others[str(champion)],
                       data_path)
        return
    listed = sorted(others, key=int)
    logger.warning("registered model %s: version(s) %s were trained on %s, this run on %s, a "
                   "file of the same name with other contents; they share this model (and its "
                   "champion, once one is chosen), but their scores are never compared: set "
                   "registry.model_name to keep their versions apart", model_name,
                   ", ".join(listed), ", ".join(sorted(set(others.values()))), data_path)


# MLflow's own output while a model is logged and registered. A progress bar as it reads the
# logged files back, "Successfully registered model" / "Created version" printed to stderr, and a
# warning that no input example was given: an example would be a whole warm-up of prices, and the
# signature documents the input. They go to info.log (the "mlflow" logger); the run's own line
# says what was registered.
NO_INPUT_EXAMPLE = r".*An input example was not provided when logging the model"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def mlflow_notices_to_info_log(capture_stderr: bool = False):
    previous = os.environ.get(PROGRESS_BAR_ENV)
    os.environ.setdefault(PROGRESS_BAR_ENV, "false")  # a user's own choice stands
    printed = io.StringIO()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NO_INPUT_EXAMPLE, category=UserWarning)
            with contextlib.redirect_stderr(printed) if capture_stderr else \
                    contextlib.nullcontext():
                yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        for line in printed.getvalue().splitlines():
            if line.strip():
                logging.getLogger("mlflow").info(line.strip())


def _log_chain(chain: PredictionChain, sample_input: pd.DataFrame, sample_output: pd.DataFrame,
               artifact_name: str, code_paths: list[str] | None):
    """Log the pickled chain as a pyfunc model of the active run (signature from the samples)."""
    sample = to_model_input(sample_input)
    signature = with_optional_columns(
        infer_signature(sample, sample_output, params={"last_date_only": False}),
        chain.unused_columns(sample.columns))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain.pkl"
        with open(path, "wb") as handle:
            pickle.dump(chain, handle, protocol=pickle.HIGHEST_PROTOCOL)
        with mlflow_notices_to_info_log():
            return mlflow.pyfunc.log_model(
                name=artifact_name,
                python_model=BmaQuantChain(),
                artifacts={CHAIN_ARTIFACT: str(path)},
                signature=signature,
                pip_requirements=chain_pip_requirements(),
                code_paths=[p for p in (code_paths or []) if Path(p).exists()] or None,
            )


def _describe_version(client: MlflowClient, model_name: str, version: str, gate_report: dict,
                      candidate: promotion.Candidate, decision, *, data_path: str | None,
                      data_fingerprint: str | None) -> None:
    """Tag the new version with its gates, metrics, data and the champion decision, and write
    its description."""
    tags = {"gates": gate_report.get("verdict", "fail"), **candidate.tags(),
            "data_path": str(data_path), "data_fingerprint": str(data_fingerprint),
            "champion_decision": decision.reason}
    if gate_report.get("failed"):
        tags["failed_gates"] = ",".join(gate_report["failed"])
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    client.update_model_version(model_name, version, description=(
        promotion.version_description(
            data_path=data_path, data_fingerprint=data_fingerprint, candidate=candidate,
            headline=gate_report.get("headline") or {}, model=gate_report.get("model", "final"),
            decision=decision, settings=gate_report.get("settings"))))
