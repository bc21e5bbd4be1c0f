"""`kedro run --pipelines data_processing` in a temporary copy: MLflow run, metrics, bad input."""

import json

import pandas as pd
import pytest

from tests.e2e.project_copy import copy_project, kedro_run, mlflow_runs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("dp"))
    result = kedro_run(project, "--pipelines", "data_processing")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project


def test_run_is_recorded_with_metrics_params_and_tags(project):
    runs = mlflow_runs(project)
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    for metric in ("rows_in", "rows_out", "tickers", "dates", "coverage", "missing_days",
                   "suspected_splits", "stale_streaks", "dropped_tickers", "eligible_names_min",
                   "eligible_names_median", "eligible_names_max", "late_listings", "delistings"):
        assert f"metrics.data_processing.{metric}" in runs.columns, metric
    assert run["metrics.data_processing.tickers"] == 20
    # the shipped names all trade from 1990: every one is in the cross-section from dev_start on
    assert run["metrics.data_processing.eligible_names_min"] == 20
    split = json.loads((project / "data/03_primary/date_split.json").read_text())
    for key in ("dev_start", "dev_end", "test_start", "test_end"):
        assert run[f"params.split.{key}"] == split[key]
    assert run["params.temporal.prediction_horizon_days"] == "10"
    for tag in ("tags.git_commit", "tags.data_fingerprint", "tags.config_hash", "tags.pipelines"):
        assert isinstance(run[tag], str) and run[tag], tag
    report = project / "data/08_reporting/data_quality_report.json"
    assert json.loads(report.read_text())["tickers"] == 20
    artifacts = list((project / "mlruns").rglob("data_quality_report.json"))
    assert artifacts, "the data-quality report is an MLflow artifact"


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (lambda f: f.drop(columns="close"), "missing required column(s): close"),
        (lambda f: pd.concat([f, f.iloc[[5]]]), "duplicate (date, ticker)"),
        (lambda f: f.assign(close=f["close"].where(f.index != 7, -3.0)), "price must be > 0"),
        (lambda f: f.assign(close=f["close"].astype(str).where(f.index != 9, "12,5x")),
         "must be numeric"),
    ],
    ids=["missing-close", "duplicates", "negative-price", "text-in-numeric"],
)
def test_bad_input_fails_clearly_and_keeps_previous_outputs(project, corrupt, expected):
    outputs = sorted((project / "data/03_primary").glob("*"))
    before = {p: p.read_bytes() for p in outputs}
    long = pd.read_parquet(project / "data/03_primary/panel.parquet")[["date", "ticker", "close"]]
    bad = corrupt(long.head(200).reset_index(drop=True))
    bad_path = project / "data/01_raw/bad.csv"
    bad.to_csv(bad_path, index=False)
    result = kedro_run(project, "--pipelines", "data_processing", "--params",
                       "data.raw_path=data/01_raw/bad.csv,data.index_path=null")
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    assert {p: p.read_bytes() for p in outputs} == before
    # the user's error ends the output, not a traceback through click and Kedro's runner
    assert "Traceback" not in result.stderr
    assert "DataValidationError: Input data rejected" in result.stderr
    assert result.stderr.rstrip().endswith("BMA_QUANT_TRACEBACK=1 for the full traceback)")


def test_a_tiny_time_budget_stops_the_run_between_nodes_and_changes_nothing(project):
    outputs = sorted((project / "data").glob("0[2-8]_*/*.*"))
    before = {p: p.read_bytes() for p in outputs if ".failed." not in p.name}
    result = kedro_run(project, "--pipelines", "data_processing", "--params",
                       "run.timeout_seconds=0.3")
    assert result.returncode != 0
    assert "run.timeout_seconds = 0.3 passed" in result.stdout + result.stderr
    assert {p: p.read_bytes() for p in before} == before
    failed = json.loads((project / "data/08_reporting/run_summary.failed.json").read_text())
    assert "RunTimeBudgetExceeded" in failed["status"]
    finished = {name.split(".")[-1] for name in failed["nodes"]}  # <pipeline>.<node>
    assert finished <= {n.name.split(".")[-1] for n in _pipeline_nodes()}  # what finished, timed
    run = mlflow_runs(project).iloc[0]
    assert run["status"] == "FAILED" and run["tags.stopped_by"] == "run.timeout_seconds"


def _pipeline_nodes():
    from bma_quant.pipelines.data_processing import create_pipeline

    return create_pipeline().nodes
