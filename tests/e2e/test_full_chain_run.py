"""The whole training chain and inference with `kedro run --env smoke` in a temporary copy.

The smoke environment (conf/smoke) runs every pipeline on a small synthetic market with small
tuning budgets; this checks the layers fit together on disk and in MLflow, as a user runs them."""

import json
import re
import shutil
import textwrap

import pandas as pd
import pytest

from tests.e2e.notebook import execute_notebook
from tests.e2e.project_copy import (
    PROJECT_ROOT,
    copy_trained_project,
    kedro_env,
    kedro_run,
    mlflow_runs,
)
from tests.e2e.smoke_chain import CONSOLE

pytestmark = pytest.mark.e2e

LAYERS = ("data_processing", "feature_engineering", "base_models", "regime_models", "stacking",
          "evaluation")


# Injected into the second run's interpreter: every Optuna fold report sleeps, as on a slow or busy
# machine. With the trial budget a count (no timeout), the results must not change.
SLOW_MACHINE = textwrap.dedent("""
    import time
    import optuna.trial

    _report = optuna.trial.Trial.report

    def _slow_report(self, value, step):
        time.sleep(1.0)
        return _report(self, value, step)

    optuna.trial.Trial.report = _slow_report
""")




@pytest.fixture(scope="module")
def project(smoke_project):
    return smoke_project  # trained once per session (tests/conftest.py)


@pytest.fixture(scope="module")
def slow_project(project, tmp_path_factory):
    """base_models retrained in a copy of the trained project on a "slower machine". Optuna is
    the only part of the chain whose work could depend on time (a timeout would end it after
    fewer trials), and every later layer is a function of the stored outputs (see
    test_one_layer_reruns_alone_from_disk): equal base_models outputs mean equal chains."""
    root = tmp_path_factory.mktemp("slow_chain")
    hook = root / "slow_machine"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_MACHINE)
    slow = copy_trained_project(project, root)
    result = kedro_run(slow, "--env", "smoke", "--pipelines", "base_models",
                       env={"PYTHONPATH": str(hook)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return slow


def _chain_run(project):
    runs = mlflow_runs(project)
    return runs[runs["tags.pipelines"] == "__default__"].iloc[0]


# what base_models writes that does not record durations (trial tables and status do)
BASE_MODEL_OUTPUTS = ("data/07_model_output/base_oof_predictions.parquet",
                      "data/07_model_output/base_test_predictions.parquet",
                      "data/07_model_output/base_trial_oof_predictions.parquet")


def test_a_slower_machine_gives_the_same_metrics(project, slow_project):
    fast = _chain_run(project)
    runs = mlflow_runs(slow_project)
    slow = runs[runs["tags.pipelines"] == "base_models"].iloc[0]
    keys = [c for c in fast.index if c.startswith("metrics.base_models.")
            and not c.endswith(("_seconds", ".duration", "_s"))]
    assert len(keys) > 20
    differ = {k: (fast[k], slow[k]) for k in keys
              if not (pd.isna(fast[k]) and pd.isna(slow[k])) and fast[k] != slow[k]}
    assert not differ
    assert fast["tags.reproducible"] == slow["tags.reproducible"] == "true"
    for path in BASE_MODEL_OUTPUTS:
        pd.testing.assert_frame_equal(pd.read_parquet(project / path),
                                      pd.read_parquet(slow_project / path))
    # The slowdown was really there: every trial of the slow run took at least its 1 s sleep.
    trials = pd.read_csv(slow_project / "data/08_reporting/base_optuna_trials.csv")
    assert (pd.to_timedelta(trials["duration"]) >= pd.Timedelta(seconds=1)).all()


def test_default_run_logs_every_layer_to_one_mlflow_run(project):
    runs = mlflow_runs(project)
    chain = runs[runs["tags.pipelines"] == "__default__"]
    assert len(chain) == 1
    run = chain.iloc[0]
    assert run["status"] == "FINISHED"
    for metric in ("data_processing.rows_out", "feature_engineering.factors_kept",
                   "feature_engineering.leak_suspects",
                   "base_models.lightgbm.oof_rank_ic_mean", "base_models.xgboost.oof_rank_ic_mean",
                   "base_models.elastic_net.oof_rank_ic_mean",
                   "regime_models.regime_elastic_net.oof_rank_ic_mean",
                   "stacking.final.oos_rank_ic", "evaluation.final.test_rank_ic",
                   "evaluation.final.test_sharpe", "evaluation.lightgbm.test_ic",
                   "evaluation.registry.reproduction_max_abs_diff"):
        assert pd.notna(run.get(f"metrics.{metric}")), metric
    # the smoke market's true regimes are known (data.true_regimes_path): agreement is logged
    assert 0.0 <= run["metrics.regime_models.detector_agreement_best_match"] <= 1.0
    summary = json.loads((project / "data/08_reporting/run_summary.json").read_text())
    assert summary["status"] == "success"
    assert set(LAYERS) <= set(summary["layers"])
    leak_report = json.loads((project / "data/08_reporting/leak_report.json").read_text())
    assert leak_report["suspects"] == {} and leak_report["prefix_cut_dates"]


def test_planted_signal_is_found_on_held_out_dates(project):
    table = pd.read_csv(project / "data/08_reporting/evaluation_table.csv")
    final = table[(table["model"] == "final") & (table["scope"] == "all")].iloc[0]
    # the synthetic market plants a signal with daily RankIC ~0.17 against the label
    assert final["rank_ic"] > 0.05
    gates = json.loads((project / "data/08_reporting/gate_report.json").read_text())
    assert {c["name"] for c in gates["checks"]} >= {"ic", "ir", "sharpe", "max_drawdown"}


def test_chain_is_registered_and_inference_uses_it(project):
    registration = json.loads((project / "data/08_reporting/model_registration.json").read_text())
    assert registration["registered"]
    assert registration["alias"] in {"champion", "challenger"}
    assert registration["reproduction"]["max_abs_diff"] < 1e-4
    # --params data.raw_path naming another file than the chain's is refused (it was ignored:
    # the chain's file scored), naming the setting that scores it; the chain's own passes
    result = kedro_run(project, "--env", "smoke", "--pipelines", "inference", "--params",
                       "data.raw_path=data/01_raw/sp500_prices.csv.gz")
    assert result.returncode == 1
    assert ('To score data/01_raw/sp500_prices.csv.gz: --params "inference.data.raw_path='
            'data/01_raw/sp500_prices.csv.gz"') in result.stderr
    assert "Traceback" not in result.stderr
    result = kedro_run(project, "--env", "smoke", "--pipelines", "inference", "--params",
                       "data.raw_path=data/01_raw/synthetic_prices.parquet")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    latest = pd.read_parquet(project / "data/07_model_output/latest_predictions.parquet")
    prices = pd.read_parquet(project / "data/01_raw/synthetic_prices.parquet")
    assert latest["date"].nunique() == 1
    assert pd.Timestamp(latest["date"].iloc[0]) == pd.Timestamp(prices["date"].max())
    assert latest["score"].notna().all() and len(latest) == prices["ticker"].nunique()
    # and the MLflow run says which panel it scored
    runs = mlflow_runs(project)
    run = runs[runs["tags.pipelines"] == "inference"].iloc[0]
    assert run["tags.mlflow.runName"].startswith("inference · synthetic_prices · ")
    assert run["tags.data_path"] == "data/01_raw/synthetic_prices.parquet"
    # its params name the chain it served, not the conf's data (which names another file)
    assert run.get("params.data.raw_path") is None or pd.isna(run.get("params.data.raw_path"))
    assert run["params.served.data_path"] == "data/01_raw/synthetic_prices.parquet"
    assert run["params.served.model_version"] == registration["version"]
    assert run["params.served.training_run_id"] == registration["run_id"]
    # the whole chain ran in one run: it also fitted the base learners
    assert run["params.served.models_run_id"] == registration["run_id"]
    assert run["params.served.label_target"] == "10d return after 1d delay"
    served = json.loads((project / "data/08_reporting/inference_served.json").read_text())
    assert served["model_name"] == registration["model_name"]


def test_one_layer_reruns_alone_from_disk(project):
    before = (project / "data/07_model_output/ensemble_test_predictions.parquet").read_bytes()
    result = kedro_run(project, "--env", "smoke", "--pipelines", "stacking")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = (project / "data/07_model_output/ensemble_test_predictions.parquet").read_bytes()
    assert pd.read_parquet(pd.io.common.BytesIO(before)).equals(
        pd.read_parquet(pd.io.common.BytesIO(after)))  # same inputs, same seed: same ensemble


def _refused_leaving(project, kept: str, pipeline: str, params: str, pattern: str) -> None:
    """`--pipelines <pipeline> --params <params>` (smoke env) fails with a message matching
    `pattern` and leaves the stored file `kept` as it was."""
    stored = project / kept
    before = stored.read_bytes()
    result = kedro_run(project, "--env", "smoke", "--pipelines", pipeline, "--params", params)
    assert result.returncode != 0
    assert re.search(pattern, result.stdout + result.stderr), result.stdout[-3000:]
    assert stored.read_bytes() == before


def test_a_layer_alone_with_another_test_period_than_its_stored_inputs_is_refused(project):
    """The stored folds and panel were split with the smoke test period: a layer run alone with
    another one is refused before any node, naming the parameter (it failed late or mixed the
    two), and the stored outputs are left as they were."""
    _refused_leaving(project, "data/05_model_input/model_input.parquet", "feature_engineering",
                     "periods.test_fraction=0.35",
                     r"built from other data or parameters \(stored -> this run: "
                     r"periods.test_fraction: [0-9.]+ -> 0.35\)")


def test_a_layer_alone_on_features_made_with_other_values_is_refused(project):
    """A feature_engineering parameter changed and base_models run alone trained on the stored
    features while logging the new value: refused before any node, naming the value."""
    _refused_leaving(project, "data/08_reporting/base_model_status.json", "base_models",
                     "feature_engineering.selection.min_features=3",
                     r"made with other parameter values \(model_input \(feature_engineering\)"
                     r".*feature_engineering.selection.min_features was \d+, is 3")


def test_a_layer_alone_on_outputs_of_an_older_data_build_is_refused(project, tmp_path):
    """data_processing rerun alone with a new test period, then evaluation alone with it too:
    the stored models were trained on the old split (some of their training dates are test dates
    now), so evaluation is refused, naming the layers. (In a copy: the shared project keeps its
    consistent layers.)"""
    moved_project = copy_trained_project(project, tmp_path)
    moved = kedro_run(moved_project, "--env", "smoke", "--pipelines", "data_processing",
                      "--params", "periods.test_fraction=0.35")
    assert moved.returncode == 0, moved.stdout[-3000:] + moved.stderr[-3000:]
    _refused_leaving(moved_project, "data/08_reporting/evaluation_table.csv", "evaluation",
                     "periods.test_fraction=0.35",
                     r"stored outputs this run reads were made on other data_processing "
                     r"outputs than the stored ones \(.*base_models: .*base_oof_predictions")


def test_chain_run_is_readable_in_mlflow(project):
    import mlflow
    from mlflow import MlflowClient

    run = _chain_run(project)
    assert run["tags.mlflow.runName"].startswith("__default__ · synthetic_prices · ")
    assert run["tags.runner"] == "SequentialRunner"
    assert not [c for c in run.index if c.startswith("metrics.run_health.")]
    assert [c for c in run.index if c.startswith("metrics.system/")]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        client = MlflowClient()
        inputs = client.get_run(run["run_id"]).inputs.dataset_inputs
        plots = {a.path for a in client.list_artifacts(run["run_id"], "plots")}
        top = {a.path for a in client.list_artifacts(run["run_id"])}
    finally:
        mlflow.set_tracking_uri(previous)
    assert [i.dataset.name for i in inputs] == ["synthetic_prices"]
    assert inputs[0].dataset.digest == run["tags.data_fingerprint"]
    assert "plots/equity_curve.png" in plots and "plots/regime_timeline.png" in plots
    assert not [p for p in plots if p.endswith(".html")]
    assert "run_health.csv" in top


def test_console_shows_progress_and_the_log_file_the_detail(project):
    console = CONSOLE[project].splitlines()
    shown = "\n".join(console[:120])
    counters = [re.search(r"\[\s*(\d+)/(\d+)\] ", line) for line in console]
    counters = [(int(m.group(1)), int(m.group(2))) for m in counters if m]
    n_nodes = counters[-1][1] if counters else 0
    assert n_nodes > 30 and [k for k, _ in counters] == list(range(1, n_nodes + 1)), shown
    assert all(any(f"{layer} done: " in line for line in console) for layer in LAYERS), shown
    assert len(console) < 3 * n_nodes, shown  # progress and warnings, not the INFO detail
    assert sum(1 for _ in (project / "info.log").open()) > 5 * n_nodes


def test_notebook_runs_against_the_trained_project(project):
    (project / "notebooks").mkdir(exist_ok=True)
    notebook = project / "notebooks" / "explore_outputs.ipynb"
    shutil.copy(PROJECT_ROOT / "notebooks" / "explore_outputs.ipynb", notebook)
    env = kedro_env(project)
    env.pop("MLFLOW_TRACKING_URI")  # the project's mlflow.yml must find the root's store
    result = execute_notebook(notebook, cwd=project / "notebooks", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "NOTEBOOK OK: 4 code cells" in result.stdout
    assert not (project / "notebooks" / "mlflow.db").exists()
    assert (project / "mlflow.db").exists()
