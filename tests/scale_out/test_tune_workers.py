"""Scale-out on a real PostgreSQL server (issue 15 part 4): two tuning worker processes fill one
Optuna study within its budget and without duplicated trials, the next `kedro run --pipelines
base_models` trains with the best trial found, and that run logs to an MLflow tracking server whose backend store is the same
PostgreSQL server."""

import json
import subprocess
import sys
import time
import urllib.request

import mlflow
import optuna
import pytest

from tests.e2e.project_copy import KEDRO, copy_trained_project, kedro_env, kedro_run
from tests.scale_out.postgres import PostgresServer, free_port

pytestmark = [pytest.mark.scale_out, pytest.mark.e2e]

BUDGET = 6
STUDY = "shared"
SMOKE = ("--env", "smoke")


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


class _MlflowServer:
    """An MLflow tracking server process, started but perhaps not yet answering."""

    def __init__(self, process: subprocess.Popen, uri: str, log_path) -> None:
        self.process, self.uri, self.log_path = process, uri, log_path

    def ready(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.uri
            except OSError:
                assert self.process.poll() is None, self.log_path.read_text()
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(1)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """Started here, waited for by `scaled` after its local runs: its start-up (imports, the
    schema migration) overlaps them."""
    port = free_port()
    artifacts = tmp_path_factory.mktemp("mlflow_artifacts")
    log_path = artifacts.parent / "mlflow_server.log"
    # the server's log goes to a file: an unread pipe fills up and blocks the server
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(KEDRO.parent / "mlflow"), "server", "--backend-store-uri",
         postgres.create_database("mlflow"), "--artifacts-destination", str(artifacts),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        stdout=log, stderr=subprocess.STDOUT, text=True)
    yield _MlflowServer(process, f"http://127.0.0.1:{port}", log_path)
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def scaled(postgres, mlflow_server, smoke_market, tmp_path_factory):
    project = copy_trained_project(smoke_market, tmp_path_factory.mktemp("scale_out"))
    storage = postgres.create_database("optuna")
    params = (f"base_models.tuning.storage={storage},base_models.tuning.study_name={STUDY},"
              f"base_models.tuning.n_trials={BUDGET}")
    result = kedro_run(project, *SMOKE, "--pipelines", "data_processing,feature_engineering",
                       "--params", params)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    env = kedro_env(project, {"PYTHONPATH": str(project / "src")})
    workers = subprocess.run(
        [sys.executable, "-m", "bma_quant.tune_worker", "--workers", "2", *SMOKE,
         "--learners", "elastic_net", "--params", params],
        cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert workers.returncode == 0, workers.stdout[-3000:] + workers.stderr[-3000:]
    study = optuna.load_study(study_name=f"{STUDY}-elastic_net", storage=storage)
    after_workers = study.trials
    # a server on a busy 2-core machine may answer slowly: MLflow's own patient defaults here
    # (the bounded retries of mlflow_connection are tested in tests/test_mlflow_connection.py)
    env.update(MLFLOW_TRACKING_URI=mlflow_server.ready(), MLFLOW_HTTP_REQUEST_TIMEOUT="120",
               MLFLOW_HTTP_REQUEST_MAX_RETRIES="5")
    # the layer that reads the study, as a researcher reruns it after the workers; the rest of the
    # chain is covered by the e2e tests (and would double this module's time)
    run = subprocess.run([str(KEDRO), "run", *SMOKE, "--pipelines", "base_models", "--params",
                          params], cwd=project, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return {"project": project, "storage": storage, "after_workers": after_workers,
            "study": optuna.load_study(study_name=f"{STUDY}-elastic_net", storage=storage)}


def _finished(trials):
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in trials if t.state in done]


def test_two_workers_fill_one_study_within_the_budget_without_duplicates(scaled):
    finished = _finished(scaled["after_workers"])
    assert len(finished) == BUDGET  # counted across both workers
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == len(params)  # each worker samples with its own seed
    over = [t for t in scaled["after_workers"] if t.user_attrs.get("over_budget")]
    assert len(over) <= 2  # at most one closed trial per worker, never run
    # the run had nothing left to run: the study is as the workers left it
    assert len(_finished(scaled["study"].trials)) == BUDGET


def test_the_training_run_uses_the_best_trial_of_the_shared_study(scaled):
    status = json.loads((scaled["project"] / "data/08_reporting/base_model_status.json")
                        .read_text())["elastic_net"]
    best = scaled["study"].best_trial
    assert {k: status["best_params"][k] for k in best.params} == best.params
    assert status["metrics"]["tuning_objective"] == pytest.approx(best.value)
    assert status["metrics"]["tuning_shared_study"] == 1
    assert status["study_name"] == f"{STUDY}-elastic_net"


def test_the_run_logs_to_an_mlflow_server_backed_by_postgresql(scaled, mlflow_server, postgres):
    import psycopg

    mlflow.set_tracking_uri(mlflow_server.ready())
    runs = mlflow.search_runs(experiment_names=["bma_quant"],
                              filter_string="tags.pipelines = 'base_models'")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["tags.reproducible"] == "false" and "shared study" in run["tags.reproducible.reason"]
    assert run["metrics.base_models.elastic_net.n_trials"] == BUDGET
    with psycopg.connect(postgres.url("mlflow")) as connection:
        stored = connection.execute("SELECT status FROM runs WHERE run_uuid = %s",
                                    (run["run_id"],)).fetchone()
    assert stored == ("FINISHED",)


def test_workers_refuse_stored_inputs_built_with_other_data_parameters(scaled):
    """Workers tune on the stored folds: with another test period than the one they were built
    with, they would feed trials scored on other folds into the shared study."""
    project = scaled["project"]
    env = kedro_env(project, {"PYTHONPATH": str(project / "src")})
    workers = subprocess.run(
        [sys.executable, "-m", "bma_quant.tune_worker", "--workers", "1", *SMOKE,
         "--learners", "elastic_net", "--params", "periods.test_fraction=0.4"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert workers.returncode == 1
    assert "tune workers not started: the stored data_processing outputs this run reads were " \
           "built from other data or parameters (stored -> this run: periods.test_fraction: " \
           in workers.stderr
