"""Where inference gets its model: the local pickled chain or a registered MLflow model.

Either way the result carries the ``PredictionChain`` (its ``training_data`` says which panel it
was trained on) and a card naming the model and version used, so the predictions a user acts on
say where they came from.
"""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bma_quant.serving.chain import PredictionChain

logger = logging.getLogger(__name__)

LOCAL_UNREGISTERED = "unregistered"


class ModelSourceError(ValueError):
    """The model inference is told to use does not exist (no chain file, no such alias)."""


@dataclass
class InferenceModel:
    chain: PredictionChain
    card: dict[str, Any]  # model_source, model_name, model_version, model_uri
    pyfunc: Any | None = None  # the registered pyfunc model (registry source)

    def predict_last_date(self, raw: pd.DataFrame) -> pd.DataFrame:
        """(date, ticker, prediction) of the final ensemble on the slice's last scored date."""
        if self.pyfunc is not None:  # the same path `mlflow models serve` takes
            from mlflow.exceptions import MlflowException

            from bma_quant.serving.pyfunc import to_model_input

            try:
                out = self.pyfunc.predict(to_model_input(raw), params={"last_date_only": True})
            except MlflowException as error:
                # the server's 400 wraps the chain's own refusal (too little history, no
                # training ticker, ...): here it is the run's input error, said in one block
                if is_input_error(error.__cause__):
                    raise error.__cause__ from None
                raise
        else:
            out = self.chain.predict(raw, last_date_only=True)
        out = out.assign(date=pd.to_datetime(out["date"]))
        return out.loc[out["date"] == out["date"].max()].reset_index(drop=True)


def is_input_error(error: BaseException) -> bool:
    from bma_quant.core.data.schema import DataValidationError
    from bma_quant.serving.chain import ChainInputError

    return isinstance(error, (ChainInputError, DataValidationError))


def load_local(chain_path: str | Path, registration_path: str | Path | None) -> InferenceModel:
    """The chain the evaluation pipeline pickled; its registered name and version from the
    registration report of the same run (``unregistered`` when it was not registered)."""
    path = Path(chain_path)
    if not path.is_file():
        raise ModelSourceError(
            f"no fitted chain at {path}: run `kedro run` (the evaluation pipeline writes it) or "
            "set inference.model_source: registry"
        )
    try:
        with open(path, "rb") as handle:
            chain = pickle.load(handle)
    except (ModuleNotFoundError, AttributeError) as error:  # a class this code lacks
        raise ModelSourceError(
            f"{path} was pickled by other code ({type(error).__name__}: "
            f"{str(error).strip()[:200]}): score it with the version of the project that "
            "trained it, or run `kedro run` to train a chain with this one") from None
    except Exception as error:  # noqa: BLE001 - any other unpickling failure: a bad file
        # a truncated or overwritten file failed with pickle's own words ("invalid literal
        # for int() with base 10")
        raise ModelSourceError(
            f"{path} cannot be read as a fitted chain ({type(error).__name__}: "
            f"{str(error).strip()[:200]}): the file is damaged or holds something else. Run "
            "`kedro run` to write it again, or set inference.model_source: registry") from None
    registration = {}
    if registration_path and Path(registration_path).is_file():
        registration = json.loads(Path(registration_path).read_text())
    registered = bool(registration.get("registered"))
    if not registered and str(registration.get("reason", "")).startswith("chain "):
        # the same run's check found that this chain does not score as the pipeline did
        logger.warning("the local chain failed its reproduction check when it was trained (%s): "
                       "its scores may differ from the pipeline's test predictions; fix the "
                       "cause and retrain before relying on them", registration.get("reason"))
    card = {
        "model_source": "local",
        "model_name": registration.get("model_name", "bma_quant") if registered
        else f"local:{path.name}",
        "model_version": str(registration["version"]) if registered else LOCAL_UNREGISTERED,
        "model_uri": registration.get("model_uri") if registered else str(path),
    }
    return InferenceModel(chain, card)


def registry_version(model_uri: str) -> tuple[str, str]:
    """(name, version number) behind ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
    ``models:/<name>/latest`` or ``models:/<name>/<stage>``: the number, so predictions name the
    version they came from even after later versions are registered."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    rest = model_uri[len("models:/"):] if model_uri.startswith("models:/") else ""
    name, alias = rest.split("@", 1) if "@" in rest else (rest.partition("/")[0], None)
    version = None if alias is not None else rest.partition("/")[2]
    if not name or (alias is not None and not alias) or (alias is None and (
            not version or "/" in version)):
        raise ModelSourceError(
            f"inference.model_uri must be models:/<name>@<alias> or models:/<name>/<version> "
            f"(a number, latest or a stage), got {model_uri!r}")
    client = MlflowClient()
    try:
        if alias is not None:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        if version.isdigit():
            client.get_model_version(name, version)
            return name, version
        if version.lower() == "latest":
            found = client.search_model_versions(f"name = '{name}'")
        else:  # a stage (MLflow's older way of labelling versions; deprecated, still served)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                found = client.get_latest_versions(name, stages=[version])
        if found:
            return name, str(max(int(v.version) for v in found))
        error: Exception = MlflowException(f"no version of {name!r} in stage {version!r}")
    except MlflowException as caught:
        error = caught
    raise ModelSourceError(
        f"inference.model_uri {model_uri}: {_registered_versions(client, name, error)}")


def _registered_versions(client, name: str, error: Exception) -> str:
    """What the registry holds under ``name``, to say which URI would work."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
        aliases = dict(client.get_registered_model(name).aliases or {}) if versions else {}
    except Exception:  # the registry itself is unreachable: its own message says why
        return str(error)
    if not versions:
        return (f"no registered model {name!r} in this tracking store (a training run registers "
                "one per data set when its chain reproduces the test predictions)")
    by_version: dict[str, list[str]] = {}
    for alias, number in aliases.items():
        by_version.setdefault(str(number), []).append(alias)
    listed = ", ".join(
        f"{v.version}" + "".join(f" @{a}" for a in sorted(by_version.get(str(v.version), [])))
        for v in sorted(versions, key=lambda v: int(v.version)))
    newest = max(versions, key=lambda v: int(v.version)).version
    example = " or ".join([*(f"models:/{name}@{a}" for a in sorted(aliases)[:2]),
                           f"models:/{name}/{newest}"])
    return (f"not found; {name!r} has version(s) {listed}. A version becomes @champion only when "
            f"its gates pass (model_registration.json says why not): use one of these, e.g. "
            f"{example}, or inference.model_source: local")


def load_registered(model_uri: str) -> InferenceModel:
    import mlflow

    name, version = registry_version(model_uri)
    logger.info("predicting with the registered model %s (%s version %s)", model_uri, name,
                version)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")  # the version the card names
    chain = pyfunc.unwrap_python_model().chain
    card = {"model_source": "registry", "model_name": name, "model_version": version,
            "model_uri": model_uri}
    return InferenceModel(chain, card, pyfunc)


def champion_uri(registration_path: str | Path | None) -> str:
    """`models:/<name>@champion` for the registered model of the last training run (names are
    per data set, so the name comes from that run's registration report)."""
    path = Path(registration_path) if registration_path else None
    if path is None or not path.is_file():
        raise ModelSourceError(
            "inference.model_uri is null and there is no registration report "
            f"({registration_path}) to name the registered model: run the training chain first or "
            "set inference.model_uri: models:/<name>@champion")
    name = json.loads(path.read_text()).get("model_name")
    if not name:
        raise ModelSourceError(f"{path} names no registered model: set inference.model_uri")
    return f"models:/{name}@champion"


def warn_if_last_run_not_champion(registration_path: str | Path) -> bool:
    """Say when the last training run's chain is not the champion inference will use (its
    gates failed, it did not beat the champion, or it was developed on another period: the same
    file name with other data). True if warned."""
    report = json.loads(Path(registration_path).read_text())
    if not report.get("registered"):
        # registry off, or the chain failed its reproduction check: the champion is older
        logger.warning(
            "the last training run registered no chain (%s): inference uses the champion of an "
            "earlier run, not the last run's model (inference.model_source: local scores with "
            "that one)", report.get("reason", "see model_registration.json"))
        return True
    if report.get("alias") == "champion":
        return False
    name, version = report.get("model_name"), report.get("version")
    logger.warning(
        "the last training run registered %s version %s as @%s, not @champion (%s): inference "
        "uses the champion, another chain; models:/%s/%s (inference.model_uri) or "
        "inference.model_source: local scores with the last run's", name, version,
        report.get("alias"), report.get("promotion_reason", "see model_registration.json"),
        name, version)
    return True


def load_inference_model(inference: dict) -> InferenceModel:
    source = inference.get("model_source", "local")
    if source == "registry":
        uri = inference.get("model_uri")
        if not uri:
            uri = champion_uri(inference.get("registration_path"))
            warn_if_last_run_not_champion(inference.get("registration_path"))
        return load_registered(uri)
    if source != "local":
        raise ModelSourceError(
            f"inference.model_source must be 'local' or 'registry', got {source!r}")
    if inference.get("model_uri"):  # it was ignored without a word
        logger.warning(
            "inference.model_uri (%s) is not served: inference.model_source is 'local', which "
            "serves %s; set inference.model_source=registry to serve the registered model",
            inference["model_uri"], inference["chain_path"])
    return load_local(inference["chain_path"], inference.get("registration_path"))
