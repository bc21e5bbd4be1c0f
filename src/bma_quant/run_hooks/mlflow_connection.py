"""A tracking server that does not answer fails the run in about 30 s with one clear error.

MLflow's HTTP client retries 7 times with a doubling back-off (about 4.5 minutes against a closed
port) before kedro-mlflow's own error. Before kedro-mlflow connects (this hook runs first), the
retry count, back-off and per-request timeout are set from `mlflow_connection` in
conf/base/parameters_run.yml through MLflow's environment variables (a variable already set in
the environment wins), and an HTTP tracking URI is probed once so an unreachable server is named.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

# parameter key -> MLflow environment variable
ENV_VARS = {
    "max_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "backoff_factor": "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "backoff_jitter": "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "timeout_seconds": "MLFLOW_HTTP_REQUEST_TIMEOUT",
}


class MlflowServerUnreachable(RuntimeError):
    """The configured MLflow tracking server did not answer within the bounded retries."""


def apply_connection_settings(settings: Mapping[str, Any] | None,
                              environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set MLflow's HTTP retry variables from `settings` unless already set; the values in force."""
    for key, value in (settings or {}).items():
        if key not in ENV_VARS:
            raise ValueError(f"mlflow_connection.{key}: unknown key; known: {sorted(ENV_VARS)}")
        if value is not None:
            environ.setdefault(ENV_VARS[key], str(value))
    return {var: environ[var] for var in ENV_VARS.values() if var in environ}


def probe_tracking_server(uri: str) -> None:
    """One cheap request to an http(s) tracking URI; MlflowServerUnreachable when it fails."""
    if not uri.startswith(("http://", "https://")):
        return  # a local store (sqlite, file) has nothing to wait for
    from mlflow.tracking import MlflowClient

    start = time.monotonic()
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:
        detail = str(exc).splitlines()[0][:300]
        status = re.search(r"error code (\d{3})", str(exc))
        if status:  # something listens there, but it is not an MLflow server (or not this path)
            what = (f"answered HTTP {status.group(1)} to an MLflow API request: is an MLflow "
                    "tracking server at this address and path?")
        else:
            what = (f"did not answer ({os.environ.get(ENV_VARS['max_retries'], '?')} retries, "
                    f"{time.monotonic() - start:.0f} s; bounded by mlflow_connection.* in "
                    "conf/base/parameters_run.yml)")
        raise MlflowServerUnreachable(
            f"MLflow tracking server {uri} {what}: {detail}. Start the server, or point "
            "MLFLOW_TRACKING_URI at a reachable one (unset it for the local sqlite:///mlflow.db)."
        ) from None


def tracking_uri(config_loader) -> str | None:
    """server.mlflow_tracking_uri of mlflow.yml, read the way kedro-mlflow reads it."""
    if "mlflow" not in config_loader.config_patterns:
        config_loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
    try:
        return ((config_loader["mlflow"] or {}).get("server") or {}).get("mlflow_tracking_uri")
    except Exception:  # no mlflow.yml: kedro-mlflow uses its defaults (a local store)
        return None


class MlflowConnectionHooks:
    @hook_impl(tryfirst=True)  # before kedro-mlflow's after_context_created connects
    def after_context_created(self, context) -> None:
        settings = apply_connection_settings(context.params.get("mlflow_connection"))
        logger.debug("MLflow HTTP settings: %s", settings)
        uri = tracking_uri(context.config_loader)
        if uri:
            probe_tracking_server(str(uri))
