"""A run completes or changes nothing: failed, interrupted and refused `kedro run`s in a copy.

Each bad run reads *different* data from the good run before it, so an output it wrote would
change bytes; every earlier output and run_summary.json must stay byte-identical."""

import json
import signal
import subprocess
import time

import pandas as pd
import pytest

from tests.e2e.project_copy import KEDRO, copy_trained_project, kedro_env, kedro_run, mlflow_runs

pytestmark = pytest.mark.e2e

SMOKE = ("--env", "smoke")
# data_processing writes (staged) first, then feature_engineering runs: a "later layer"
TWO_LAYERS = ("--pipelines", "data_processing,feature_engineering")
OTHER_DATA = "data.raw_path=data/01_raw/shorter.parquet"
FAILED_SUMMARY = "data/08_reporting/run_summary.failed.json"


def _outputs(project):
    """Every file under data/02..08 (what a run may write), by relative path, with its bytes."""
    return {
        str(p.relative_to(project)): p.read_bytes()
        for p in sorted((project / "data").glob("0[2-8]_*/**/*"))
        if p.is_file() and p.name not in {".gitkeep", "run_summary.failed.json", "run_health.failed.csv"}
    }


@pytest.fixture(scope="module")
def project(smoke_market, tmp_path_factory):
    project = copy_trained_project(smoke_market, tmp_path_factory.mktemp("atomic"))
    result = kedro_run(project, *SMOKE, *TWO_LAYERS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    prices = pd.read_parquet(project / "data/01_raw/synthetic_prices.parquet")
    last = prices["date"].drop_duplicates().sort_values().iloc[-40]
    prices[prices["date"] < last].to_parquet(project / "data/01_raw/shorter.parquet")
    assert json.loads((project / "data/08_reporting/run_summary.json").read_text())[
        "status"] == "success"
    return project


def _run_folders(project) -> list:
    """Staging folders under data/.staging (the project's run lock file is not one)."""
    return [p for p in (project / "data/.staging").glob("*") if p.is_dir()]


def _assert_unchanged(project, before):
    assert _outputs(project) == before
    assert not _run_folders(project), "staging folder left behind"


def test_failing_node_in_a_later_layer_changes_nothing(project):
    before = _outputs(project)
    # settings the pre-flight cannot judge (they depend on the data): no factor reaches a
    # t-stat of 1000 and nothing is refilled, so feature_engineering's node fails after
    # data_processing has run
    failing = project / "conf" / "smoke" / "parameters_failing.yml"
    failing.write_text("feature_engineering:\n  selection:\n    min_abs_tstat: 1000\n"
                       "    min_features: 0\n")
    try:
        result = kedro_run(project, *SMOKE, *TWO_LAYERS, "--params", OTHER_DATA)
    finally:
        failing.unlink()
    assert result.returncode != 0
    assert "feature selection kept none of the" in result.stdout + result.stderr
    _assert_unchanged(project, before)
    failed = json.loads((project / FAILED_SUMMARY).read_text())
    assert failed["status"].startswith("failed: PreflightError")
    assert failed["node_failures"]  # the failing feature_engineering node, with its error
    assert mlflow_runs(project).iloc[0]["status"] == "FAILED"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_changes_nothing_and_is_killed_in_mlflow(project, signum):
    before = _outputs(project)
    n_runs = len(mlflow_runs(project))
    assert not _run_folders(project), "a staging folder from another run"
    process = subprocess.Popen(
        [str(KEDRO), "run", *SMOKE, *TWO_LAYERS, "--params", OTHER_DATA], cwd=project,
        env=kedro_env(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # interrupt once data_processing has written its (staged) outputs, early in
    # feature_engineering (waiting for a later output raced the end of the run on a loaded machine)
    deadline = time.monotonic() + 600
    while not any((project / "data/.staging").glob("*/data/03_primary/cv_folds.parquet")):
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signum)
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # not left running into the next test
        process.kill()
        pytest.fail("the interrupted run did not end: " + process.communicate()[0][-6000:])
    assert process.returncode != 0, output[-3000:]
    _assert_unchanged(project, before)
    runs = mlflow_runs(project)
    assert len(runs) == n_runs + 1
    assert runs.iloc[0]["status"] == "KILLED", output[-3000:]
    assert "interrupted by " + signal.Signals(signum).name in (project / FAILED_SUMMARY).read_text()


def test_a_node_that_exits_the_process_fails_the_run_and_changes_nothing(project):
    """SystemExit from a node passes Kedro's error hooks by: the run is still failed through them
    at exit (MLflow's own exit handler would have ended it FINISHED)."""
    before = _outputs(project)
    nodes = project / "src/bma_quant/pipelines/feature_engineering/nodes.py"
    source = nodes.read_text()
    # the selection node, after build_features has staged its outputs
    nodes.write_text(source + "\n\ndef select(*args, **kwargs):\n    raise SystemExit(3)\n")
    try:
        result = kedro_run(project, *SMOKE, *TWO_LAYERS, "--params", OTHER_DATA)
    finally:
        nodes.write_text(source)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # failed, whatever status the node exited with
    assert "The process ended in node 'feature_engineering.select_features' before the run finished" in output, \
        output[-3000:]
    _assert_unchanged(project, before)
    failed = json.loads((project / FAILED_SUMMARY).read_text())
    assert failed["status"].startswith("failed: RunEndedWithoutHooks")
    runs = mlflow_runs(project)
    assert runs.iloc[0]["status"] == "FAILED"
    assert failed["mlflow_run_id"] == runs.iloc[0]["run_id"]


@pytest.mark.parametrize("params, message", [
    ("data.raw_path=data/01_raw/one_ticker.parquet", "1 ticker(s) but"),
    ("regime_models.learner=svm", "regime_models.learner: unknown learner(s) 'svm'"),
], ids=["one-ticker", "unknown-learner"])
def test_preflight_refusal_writes_nothing(project, params, message):
    prices = pd.read_parquet(project / "data/01_raw/synthetic_prices.parquet")
    prices[prices["ticker"] == prices["ticker"].iloc[0]].to_parquet(
        project / "data/01_raw/one_ticker.parquet")
    before = _outputs(project)
    n_runs = len(mlflow_runs(project))
    result = kedro_run(project, *SMOKE, "--params", params)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    _assert_unchanged(project, before)
    assert message in (project / FAILED_SUMMARY).read_text()
    if "learner" in params:  # refused before kedro-mlflow starts a run
        assert len(mlflow_runs(project)) == n_runs
