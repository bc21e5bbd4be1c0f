"""`make serve` on a trained smoke project: the registered chain answers a posted panel slice with
the inference pipeline's predictions, a too-short slice with a 400 and a message, and the logged
model's requirements cover every distribution the chain imports.

The session's one smoke training run (tests/e2e/conftest.py); the server runs from the test's
venv with only the system directories on PATH, as a user's shell outside an activated venv."""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.project_copy import kedro_env, kedro_run

pytestmark = pytest.mark.e2e

VENV = Path(sys.executable).parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def project(smoke_project):
    """The session's trained smoke project (tests/e2e/conftest.py), plus an inference run."""
    result = kedro_run(smoke_project, "--env", "smoke", "--pipelines", "inference")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return smoke_project


@pytest.fixture(scope="module")
def server(project):
    port = _free_port()
    env = {**kedro_env(project), "PATH": "/usr/bin:/bin"}  # no venv on PATH
    env.pop("VIRTUAL_ENV", None)
    log = open(project / "serve.log", "w")
    # -o: never reinstall the venv the tests run in, whatever the copied pyproject's mtime
    process = subprocess.Popen(
        ["make", "serve", f"VENV={VENV}", "-o", f"{VENV}/.installed", f"SERVE_PORT={port}"],
        cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # model load takes a few seconds on a busy machine
            if process.poll() is not None:
                pytest.fail((project / "serve.log").read_text()[-4000:])
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("server did not answer /ping: " + (project / "serve.log").read_text())
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


def _post(url: str, frame: pd.DataFrame) -> tuple[int, dict]:
    body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False)),
            "params": {"last_date_only": True}}
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _slice(project: Path, n_dates: int) -> pd.DataFrame:
    """The last n_dates of the synthetic panel with the index level, as a user would post it."""
    raw = pd.read_parquet(project / "data/01_raw/synthetic_prices.parquet")
    index = pd.read_parquet(project / "data/01_raw/synthetic_index.parquet")
    dates = sorted(raw["date"].unique())[-n_dates:]
    frame = raw.loc[raw["date"].isin(dates)].merge(
        index.rename(columns={"level": "market_level"}), on="date", how="left")
    return frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d"))


def _warmup(project: Path) -> int:
    chain = pickle.loads((project / "data/06_models/prediction_chain.pkl").read_bytes())
    return chain.warmup_days


def test_served_predictions_equal_the_inference_pipeline(project, server):
    status, answer = _post(server, _slice(project, _warmup(project) + 1))
    assert status == 200, answer
    served = pd.DataFrame(answer["predictions"])
    latest = pd.read_parquet(project / "data/07_model_output/latest_predictions.parquet")
    assert len(served) == len(latest) == latest["ticker"].nunique()
    both = latest.merge(served.assign(date=pd.to_datetime(served["date"])),
                        on=["date", "ticker"])
    assert len(both) == len(latest)
    assert (both["score"] - both["prediction"]).abs().max() < 1e-5
    registration = json.loads((project / "data/08_reporting/model_registration.json").read_text())
    assert (latest["model_version"] == registration["version"]).all()


def test_too_short_history_is_a_400_with_the_lookback(project, server):
    warmup = _warmup(project)
    status, answer = _post(server, _slice(project, warmup - 5))
    assert status == 400
    assert f"lookback of {warmup} trading dates" in answer["message"]
    # MLflow's scoring server puts the frame first; the README tells users where the reason is
    assert "Error: cannot score this panel: too little history" in answer["message"]


def test_logged_requirements_cover_what_the_chain_imports(project):
    registration = json.loads((project / "data/08_reporting/model_registration.json").read_text())
    chain_dir = next(path.parent for path in (project / "mlruns").rglob("MLmodel")
                     if "python_model" in path.read_text())  # the pyfunc chain, not a learner
    pins = {_normalise(line.split("==")[0])
            for line in (chain_dir / "requirements.txt").read_text().splitlines() if line.strip()}
    assert {"xgboost", "lightgbm", "statsmodels"} <= pins, pins
    assert "bma-quant" not in pins  # ships as code; pip could not fetch it
    # every third-party distribution a fresh process imports to load the chain and predict
    script = (
        "import pickle, sys, importlib.metadata as md, pandas as pd\n"
        f"chain = pickle.load(open(r'{project}/data/06_models/prediction_chain.pkl', 'rb'))\n"
        f"chain.predict(pd.read_parquet(r'{project}/data/01_raw/synthetic_prices.parquet'))\n"
        "dists = md.packages_distributions()\n"
        "roots = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
        "print(sorted({d for r in roots for d in dists.get(r, [])}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True,
                            text=True, env=kedro_env(project), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {_normalise(name) for name in
                json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"'))}
    # the project itself ships as code; the rest comes with a pinned distribution
    missing = imported - _with_dependencies(pins) - {"bma-quant"}
    assert not missing, (missing, registration["model_uri"])


def _normalise(name: str) -> str:
    """PEP 503 name: typing_inspect, Typing.Inspect and typing-inspect are one distribution."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _with_dependencies(names: set[str]) -> set[str]:
    """names and everything they require, transitively (as pip would install them)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    seen, todo = set(), [_normalise(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(_normalise(Requirement(r).name) for r in requires(name) or [])
        except PackageNotFoundError:
            continue
    return seen
