"""An unreachable MLflow tracking server fails fast (about 30 s at most) with a clear error."""

import socket
import time
from types import SimpleNamespace

import pytest

from bma_quant.run_hooks import mlflow_connection as mc
from tests.support import project_params


@pytest.fixture
def closed_port():
    """A port bound but not listening for the whole test: connections are refused, and no other
    process (a test worker's server) can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class FakeConfigLoader(dict):
    config_patterns: dict = {}


@pytest.fixture
def clean_env(monkeypatch):
    for var in mc.ENV_VARS.values():  # restored (unset) after the test
        monkeypatch.setenv(var, "0")
        monkeypatch.delenv(var)


def test_settings_become_mlflow_environment_variables_unless_already_set():
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
    applied = mc.apply_connection_settings({"max_retries": 2, "timeout_seconds": 8}, environ)
    assert applied == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
    with pytest.raises(ValueError, match="mlflow_connection.retries: unknown key"):
        mc.apply_connection_settings({"retries": 2}, {})


def test_closed_port_fails_within_the_bound_with_a_clear_error(clean_env, closed_port):
    params = {"mlflow_connection": project_params()["mlflow_connection"]}
    uri = f"http://127.0.0.1:{closed_port}"
    context = SimpleNamespace(params=params, config_loader=FakeConfigLoader(
        mlflow={"server": {"mlflow_tracking_uri": uri}}))
    start = time.monotonic()
    with pytest.raises(mc.MlflowServerUnreachable) as err:
        mc.MlflowConnectionHooks().after_context_created(context)
    elapsed = time.monotonic() - start
    assert elapsed < 30  # MLflow's defaults take about 4.5 minutes here
    message = str(err.value)
    assert f"MLflow tracking server {uri} did not answer (2 retries" in message
    assert "mlflow_connection.*" in message and "MLFLOW_TRACKING_URI" in message


def test_a_local_store_is_not_probed(clean_env, monkeypatch):
    import mlflow.tracking

    asked = []
    monkeypatch.setattr(mlflow.tracking, "MlflowClient",
                        lambda **kwargs: asked.append(kwargs) or pytest.fail("probed"))
    context = SimpleNamespace(params={}, config_loader=FakeConfigLoader(
        mlflow={"server": {"mlflow_tracking_uri": "sqlite:///nowhere/mlflow.db"}}))
    mc.MlflowConnectionHooks().after_context_created(context)  # no client made, no error
    assert asked == []
    with pytest.raises(pytest.fail.Exception, match="probed"):  # the same hook probes http
        mc.probe_tracking_server("http://127.0.0.1:1")


def test_a_server_that_answers_but_is_no_mlflow_server_is_not_called_silent(clean_env):
    """A web server answering 404 at the URI was reported as one that 'did not answer'."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            self.send_error(404)

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(mc.MlflowServerUnreachable) as err:
            mc.probe_tracking_server(uri)
    finally:
        server.shutdown()
    message = str(err.value)
    assert f"MLflow tracking server {uri} answered HTTP 404 to an MLflow API request" in message
    assert "did not answer" not in message
