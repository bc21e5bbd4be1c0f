"""base_models pipeline in memory on synthetic inputs, plus MLflow logging of trials and models."""

import importlib.metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from bma_quant.core.evaluation import metrics
from bma_quant.core.models import tuning
from bma_quant.pipelines.base_models import nodes
from bma_quant.pipelines.base_models.model_dataset import LearnerModelDataset, LoggedLearner
from tests.pipelines.base_models.synthetic_inputs import build_inputs
from tests.support import CONF, project_params, run_pipeline

LEARNERS = ["elastic_net", "xgboost", "lightgbm", "alpha_composite"]
INPUTS = ("model_input", "sample_weights", "date_split", "cv_folds")
# Small budgets: the test is about wiring and behaviour, not about search quality.
FAST = {"base_models": {"n_jobs": 1, "tuning": {"storage": None, "n_trials": 3, "timeout": None,
                                                "show_progress_bar": False}}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("base_models"), n_tickers=40, n_days=700)


def _run(inputs, overrides=FAST):
    return run_pipeline("base_models", {k: inputs[k] for k in INPUTS}, overrides)


@pytest.fixture(scope="module")
def outputs(inputs):
    return _run(inputs)


def test_every_learner_succeeds_and_outputs_follow_the_contract(inputs, outputs):
    split = inputs["date_split"]
    status = outputs["base_model_status"]
    assert {n: s["status"] for n, s in status.items()} == dict.fromkeys(LEARNERS, "ok")
    assert set(outputs["base_models"]) == set(LEARNERS)

    oof = outputs["base_oof_predictions"]
    assert list(oof.columns) == ["date", "ticker", "model", "fold", "prediction"]
    assert oof["prediction"].dtype == np.float32 and set(oof["model"]) == set(LEARNERS)
    folds = inputs["cv_folds"]
    assert set(folds["stage"]) == {"tuning", "oof"}
    # Nested selection: out-of-fold rows only on the out-of-fold folds (no trial scored there).
    test_fold_of = folds[(folds["role"] == "test") & (folds["stage"] == "oof")].set_index(
        "date")["fold"]
    assert (oof["date"].map(test_fold_of) == oof["fold"]).all()  # only test-fold rows, right fold
    mi = inputs["model_input"]
    expected_rows = mi["date"].isin(test_fold_of.index).sum()
    assert (oof.groupby("model").size() == expected_rows).all()
    assert oof["date"].max() <= pd.Timestamp(split["dev_end"])

    test = outputs["base_test_predictions"]
    assert list(test.columns) == ["date", "ticker", "model", "prediction"]
    assert test["date"].min() >= pd.Timestamp(split["test_start"])
    assert (test.groupby("model").size() == mi["date"].between(split["test_start"],
                                                               split["test_end"]).sum()).all()

    # Every refit model predicts from the selected feature columns (scikit-learn API).
    features = inputs["feature_names"]
    rows = mi[mi["date"] >= pd.Timestamp(split["test_start"])]
    for name, model in outputs["base_models"].items():
        from_model = np.asarray(model.predict(rows[features]), dtype=np.float32)
        stored = test[test["model"] == name]["prediction"].to_numpy()
        np.testing.assert_allclose(from_model, stored, rtol=1e-5, atol=1e-6)


def test_metrics_scores_importance_and_best_params(outputs):
    metrics_logged = outputs["base_models_metrics"]
    for name in LEARNERS:
        for key in ("oof_rank_ic_mean", "oof_rank_ic_std", "oof_ic_mean", "n_trials",
                    "tuning_truncated", "failed"):
            assert f"{name}.{key}" in metrics_logged, f"{name}.{key}"
        assert metrics_logged[f"{name}.failed"]["value"] == 0.0
        assert metrics_logged[f"{name}.tuning_truncated"]["value"] == 0.0
    # no wall-clock figure among the metrics: the same config and data give the same metrics
    assert not [k for k in metrics_logged if "seconds" in k]
    assert "fit_seconds" in outputs["base_model_status"]["xgboost"]["timings"]
    for name in ("elastic_net", "xgboost", "lightgbm"):  # tuned: objective and honest score
        assert f"{name}.tuning_objective" in metrics_logged
        assert f"{name}.tuning_objective_median" in metrics_logged
        assert (metrics_logged[f"{name}.tuning_objective"]["value"]
                >= metrics_logged[f"{name}.tuning_objective_median"]["value"])
    assert metrics_logged["xgboost.n_trials"]["value"] == 3
    assert metrics_logged["alpha_composite.n_trials"]["value"] == 0  # not tuned
    scores = outputs["base_fold_scores"]
    assert set(scores["model"]) == set(LEARNERS)
    for name in LEARNERS:
        mean = scores.loc[scores["model"] == name, "rank_ic"].mean()
        assert metrics_logged[f"{name}.oof_rank_ic_mean"]["value"] == pytest.approx(mean)
    importance = outputs["base_feature_importance"]
    assert list(importance.columns) == ["model", "feature", "importance", "share", "kind"]
    assert importance.groupby("model")["share"].sum().round(6).eq(1.0).all()
    best = outputs["base_models_best_params"]
    assert {"xgboost.max_depth", "lightgbm.num_leaves", "elastic_net.alpha"} <= set(best)
    trials = outputs["base_optuna_trials"]
    assert set(trials["model"]) == {"elastic_net", "xgboost", "lightgbm"}


def test_every_complete_trial_keeps_its_tuning_fold_predictions(inputs, outputs):
    trial_oof = outputs["base_trial_oof_predictions"]
    assert list(trial_oof.columns) == ["date", "ticker", "model", "trial", "fold", "prediction"]
    folds = inputs["cv_folds"]
    tuning_test = folds[(folds["role"] == "test") & (folds["stage"] == "tuning")]
    assert set(trial_oof["fold"]) == set(tuning_test["fold"])
    assert trial_oof["date"].isin(tuning_test["date"]).all()
    trials = outputs["base_optuna_trials"]
    complete = trials[trials["state"] == "COMPLETE"]
    assert (set(map(tuple, trial_oof[["model", "trial"]].drop_duplicates().to_numpy()))
            == set(zip(complete["model"], complete["number"], strict=True)))
    # Each trial's stored predictions reproduce its objective (mean tuning-fold RankIC).
    for (model, number), part in trial_oof.groupby(["model", "trial"]):
        scored = part.merge(inputs["model_input"][["date", "ticker", "label"]],
                            on=["date", "ticker"])
        per_fold = [metrics.mean_rank_ic(f, "prediction", "label")
                    for _, f in scored.groupby("fold")]
        value = complete.loc[(complete["model"] == model) & (complete["number"] == number),
                             "value"].iloc[0]
        assert np.mean(per_fold) == pytest.approx(value, abs=1e-5)


def test_planted_signal_is_found_by_every_learner(inputs, outputs):
    oof = outputs["base_oof_predictions"].merge(inputs["model_input"], on=["date", "ticker"])
    true_rank_ic = metrics.mean_rank_ic(oof[oof["model"] == "xgboost"], "signal_1", "label")
    assert true_rank_ic > 0.1
    for name in LEARNERS:
        rank_ic = metrics.mean_rank_ic(oof[oof["model"] == name], "prediction", "label")
        assert 0.5 * true_rank_ic < rank_ic < true_rank_ic + 0.03, (name, rank_ic)


def test_a_learner_forced_to_fail_leaves_the_others_intact(inputs, outputs):
    broken = {"base_models": {**FAST["base_models"], "defaults": {
        **project_params()["base_models"]["defaults"],
        "elastic_net": {"alpha": -1.0, "l1_ratio": 0.5}}}}
    broken["base_models"]["tuning"] = {**FAST["base_models"]["tuning"], "enabled": False}
    result = _run(inputs, broken)
    status = result["base_model_status"]
    assert status["elastic_net"]["status"] == "failed"
    assert "alpha" in status["elastic_net"]["error"]
    assert "Traceback" in status["elastic_net"]["traceback"]
    assert result["base_models_metrics"]["elastic_net.failed"]["value"] == 1.0
    assert result["base_models_metrics"]["n_failed"]["value"] == 1.0
    assert set(result["base_models"]) == {"xgboost", "lightgbm", "alpha_composite"}
    assert "elastic_net" not in set(result["base_oof_predictions"]["model"])
    assert result["base_elastic_net_logged_model"].model is None  # nothing for MLflow to log
    # The others are untouched by the failure: same predictions as a run where they are alone.
    alone = _run(inputs, {"base_models": {**broken["base_models"],
                                          "learners": ["xgboost", "lightgbm", "alpha_composite"]}})
    pd.testing.assert_frame_equal(result["base_oof_predictions"], alone["base_oof_predictions"])
    assert alone["base_model_status"].keys() == {"xgboost", "lightgbm", "alpha_composite"}


def test_the_pipeline_fails_clearly_when_no_learner_succeeds(inputs):
    bad = {"base_models": {**FAST["base_models"], "learners": ["elastic_net"],
                           "defaults": {"elastic_net": {"alpha": -1.0}}}}
    bad["base_models"]["tuning"] = {**FAST["base_models"]["tuning"], "enabled": False}
    with pytest.raises(Exception, match=r"No base learner succeeded \(elastic_net failed: "
                                        r".*base_models.learners"):
        _run(inputs, bad)


def test_an_unknown_learner_name_is_refused_before_any_training(inputs):
    with pytest.raises(Exception, match="random_forest.*registered"):
        _run(inputs, {"base_models": {**FAST["base_models"], "learners": ["random_forest"]}})


def test_tuning_disabled_trains_the_defaults(inputs):
    off = {"base_models": {**FAST["base_models"], "learners": ["lightgbm"]}}
    off["base_models"]["tuning"] = {**FAST["base_models"]["tuning"], "enabled": False}
    result = _run(inputs, off)
    defaults = project_params()["base_models"]["defaults"]["lightgbm"]
    assert result["base_model_status"]["lightgbm"]["best_params"] == defaults
    assert result["base_models_metrics"]["lightgbm.n_trials"]["value"] == 0
    assert result["base_optuna_trials"].empty


def test_same_seed_gives_the_same_best_params_and_predictions(inputs, outputs):
    again = _run(inputs)
    assert again["base_models_best_params"] == outputs["base_models_best_params"]
    pd.testing.assert_frame_equal(again["base_oof_predictions"], outputs["base_oof_predictions"])
    pd.testing.assert_frame_equal(again["base_test_predictions"],
                                  outputs["base_test_predictions"])


@pytest.fixture
def mlflow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # MLflow 3.17's load gate
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("base_models_test")
    with mlflow.start_run() as run:
        yield run
    # tests/conftest.py resets the tracking URI and the active experiment after the test


def test_trials_are_nested_mlflow_runs_and_models_load_back_with_a_signature(inputs,
                                                                            mlflow_run, caplog):
    params = {**project_params()["base_models"], **FAST["base_models"], "learners": LEARNERS}
    params["tuning"] = {**project_params()["base_models"]["tuning"],
                        **FAST["base_models"]["tuning"], "n_trials": 2,
                        "storage": "sqlite:///optuna.db"}
    temporal = project_params()["temporal"]
    training_inputs = nodes.prepare_training_inputs(
        *(inputs[k] for k in INPUTS), params)
    catalog = yaml.safe_load((CONF / "catalog_base_models.yml").read_text())
    flavours = {"elastic_net": "mlflow.sklearn", "xgboost": "mlflow.xgboost",
                "lightgbm": "mlflow.lightgbm", "alpha_composite": "mlflow.sklearn"}
    for name, flavour in flavours.items():
        result, logged = nodes.train_learner(name, training_inputs, params, temporal)
        assert result["status"] == "ok" and isinstance(logged, LoggedLearner)
        dataset = LearnerModelDataset(flavor=flavour, save_args={
            "name": f"base_{name}", **catalog[f"base_{name}_logged_model"]["save_args"]})
        assert catalog[f"base_{name}_logged_model"]["flavor"] == flavour
        dataset.save(logged)
        loaded = dataset.load()
        assert type(loaded) is type(result["model"])
        example = logged.input_example
        np.testing.assert_allclose(loaded.predict(example), result["model"].predict(example),
                                   rtol=1e-6)
        info = mlflow.models.get_model_info(dataset.model_uri)
        assert info.signature is not None
        assert info.signature.inputs.input_names() == list(example.columns)
        # requirements are given per flavour, pinned (not inferred in a subprocess)
        pins = Path(mlflow.pyfunc.get_model_dependencies(dataset.model_uri)).read_text()
        library = {"xgboost": "xgboost", "lightgbm": "lightgbm"}.get(name, "scikit-learn")
        assert f"{library}=={importlib.metadata.version(library)}" in pins
    # A failed learner logs nothing and does not raise; one nobody asked for is not reported.
    LearnerModelDataset(flavor="mlflow.sklearn", save_args={"name": "base_failed"}).save(
        LoggedLearner("failed", None))
    assert "failed did not succeed" in caplog.text
    LearnerModelDataset(flavor="mlflow.sklearn", save_args={"name": "base_unlisted"}).save(
        LoggedLearner("unlisted", None, skipped=True))
    assert "unlisted" not in caplog.text

    client = mlflow.tracking.MlflowClient()
    children = client.search_runs(
        [mlflow_run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{mlflow_run.info.run_id}'")
    by_learner = pd.Series([c.data.tags.get("learner") for c in children]).value_counts()
    assert by_learner.to_dict() == {"elastic_net": 2, "xgboost": 2, "lightgbm": 2}
    child = children[0]
    assert "tuning_rank_ic_mean" in child.data.metrics
    history = client.get_metric_history(child.info.run_id, "fold_rank_ic")
    folds = inputs["cv_folds"]
    n_tuning = folds.loc[folds["stage"] == "tuning", "fold"].nunique()
    assert sorted(m.step for m in history) == list(range(n_tuning))  # tuning folds only
    assert child.data.tags["mlflow.runName"].split("-trial-")[0] in flavours


def test_a_pruned_trial_run_logs_its_folds_but_no_mean_objective(tmp_path):
    """Optuna gives a pruned trial its last fold's RankIC as its value: logged as
    `tuning_rank_ic_mean`, it sorted a pruned trial above the chosen one in the MLflow UI."""
    import optuna

    from tests.support import sqlite_tracking

    def objective(trial):
        trial.suggest_float("alpha", 0.0, 1.0)
        trial.report(0.05, 0)
        if trial.number == 1:
            raise optuna.TrialPruned()
        trial.report(0.01, 1)
        return 0.03

    with sqlite_tracking(tmp_path), mlflow.start_run() as parent:
        callbacks = nodes._trial_callbacks("lightgbm")
        study = optuna.create_study(direction="maximize")
        study.optimize(objective, n_trials=2, callbacks=callbacks)
        client = mlflow.tracking.MlflowClient()
        children = {c.data.tags["mlflow.runName"]: c for c in client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
        complete, pruned = children["lightgbm-trial-0"], children["lightgbm-trial-1"]
        assert complete.data.metrics["tuning_rank_ic_mean"] == pytest.approx(0.03)
        assert "tuning_rank_ic_mean" not in pruned.data.metrics
        assert [m.value for m in client.get_metric_history(pruned.info.run_id,
                                                           "fold_rank_ic")] == [0.05]
        assert "alpha" in pruned.data.params


def test_a_tuning_timeout_that_cuts_a_study_stops_the_run(inputs, mlflow_run):
    """DESIGN §3: a wall-clock cap never decides results. A study the tuning timeout stops
    before its budget stops the run (it failed only that learner, so which learners the chain
    kept depended on the machine's speed); a run the cap did not touch is tagged reproducible;
    a study that ran fewer trials than its budget (a shared study's) is tagged not."""
    params = {**project_params()["base_models"], **FAST["base_models"],
              "learners": ["elastic_net", "lightgbm"]}
    params["tuning"] = {**project_params()["base_models"]["tuning"],
                        **FAST["base_models"]["tuning"]}
    temporal = project_params()["temporal"]
    training_inputs = nodes.prepare_training_inputs(*(inputs[k] for k in INPUTS), params)

    def train(name, timeout):
        tuned = {**params, "tuning": {**params["tuning"], "n_trials": 2, "timeout": timeout}}
        return nodes.train_learner(name, training_inputs, tuned, temporal)[0]

    untouched = train("elastic_net", 3600.0)
    assert untouched["metrics"]["n_trials"] == 2 and not untouched["metrics"]["tuning_truncated"]
    nodes._tag_run([untouched])
    assert mlflow.get_run(mlflow_run.info.run_id).data.tags["reproducible"] == "true"

    with pytest.raises(tuning.TuningTimedOut, match=r"base_models\.tuning\.timeout.*0 of 2"):
        train("lightgbm", 0.0)  # 0 s: stopped before its first trial

    cut_short = {**untouched, "metrics": {**untouched["metrics"], "tuning_truncated": 1.0}}
    nodes._tag_run([cut_short])
    tags = mlflow.get_run(mlflow_run.info.run_id).data.tags
    assert tags["reproducible"] == "false"
    assert tags["reproducible.reason"] == ("the study of elastic_net ran fewer trials than "
                                           "base_models.tuning.n_trials")


def test_a_learner_with_constant_predictions_is_degenerate_not_ok(inputs):
    # a penalty this large shrinks every ElasticNet coefficient to zero: one value per date
    shrunk = {"base_models": {**FAST["base_models"], "learners": ["elastic_net", "lightgbm"],
                              "defaults": {**project_params()["base_models"]["defaults"],
                                           "elastic_net": {"alpha": 1.0e6, "l1_ratio": 0.5}}}}
    shrunk["base_models"]["tuning"] = {**FAST["base_models"]["tuning"], "enabled": False}
    result = _run(inputs, shrunk)
    status = result["base_model_status"]["elastic_net"]
    assert status["status"] == "degenerate" and "constant predictions" in status["error"]
    assert result["base_model_status"]["lightgbm"]["status"] == "ok"
    logged = result["base_models_metrics"]
    assert logged["elastic_net.degenerate"]["value"] == 1.0
    assert logged["lightgbm.degenerate"]["value"] == 0.0
    assert logged["n_degenerate"]["value"] == 1.0 and logged["n_failed"]["value"] == 0.0
    assert set(result["base_models"]) == {"lightgbm"}  # later layers leave it out
    assert "elastic_net" not in set(result["base_oof_predictions"]["model"])


def test_a_degenerate_learners_trials_are_still_reported_and_counted(inputs, monkeypatch):
    """Its final model is left out, but its trials were tried: they stay in the trials table and
    the trial predictions, which the luck statistics count as configurations."""
    train = nodes.train_learner

    def degenerate_elastic_net(name, *args):
        result, logged = train(name, *args)
        if name == "elastic_net":  # as train_learner marks a constant final model
            result = {**result, "status": "degenerate", "error": "constant predictions"}
            logged = LoggedLearner(name, None)
        return result, logged

    monkeypatch.setattr(nodes, "train_learner", degenerate_elastic_net)
    result = _run(inputs)
    assert result["base_model_status"]["elastic_net"]["status"] == "degenerate"
    assert "elastic_net" not in result["base_models"]
    assert "elastic_net" not in set(result["base_oof_predictions"]["model"])
    trials = result["base_optuna_trials"]
    assert (trials["model"] == "elastic_net").sum() == FAST["base_models"]["tuning"]["n_trials"]
    assert "elastic_net" in set(result["base_trial_oof_predictions"]["model"])


def test_a_learner_whose_every_trial_is_constant_is_degenerate_with_its_trials_kept(inputs):
    """Every trial stopped for constant predictions: the defaults are trained (constant too),
    the learner is degenerate (not failed), its trials and counts are reported."""
    base = project_params()["base_models"]
    shrunk = {"base_models": {
        **FAST["base_models"], "learners": ["elastic_net", "lightgbm"],
        "defaults": {**base["defaults"], "elastic_net": {"alpha": 1.0e6, "l1_ratio": 0.5}},
        "tuning": {**FAST["base_models"]["tuning"], "learners": ["elastic_net"],
                   "search_space": {**base["tuning"]["search_space"], "elastic_net": {
                       "alpha": {"type": "float", "low": 1.0e5, "high": 1.0e6, "log": True}}}}}}
    result = _run(inputs, shrunk)
    status = result["base_model_status"]["elastic_net"]
    assert status["status"] == "degenerate"
    n_trials = FAST["base_models"]["tuning"]["n_trials"]
    assert status["metrics"]["n_trials"] == status["metrics"]["n_trials_constant"] == n_trials
    assert result["base_models_metrics"]["n_failed"]["value"] == 0.0
    trials = result["base_optuna_trials"]
    assert (trials["model"] == "elastic_net").sum() == n_trials
    assert set(result["base_models"]) == {"lightgbm"}


def test_tuning_workers_sample_with_their_own_seed_and_fit_with_the_runs(monkeypatch):
    """A worker's stored trial value must be the score of the model the run trains: only the
    sampler's seed moves with the worker number."""
    from bma_quant.core.models import tuning as tuning_lib
    from bma_quant.pipelines.base_models import nodes as base_nodes

    seen = {}
    monkeypatch.setattr(tuning_lib, "tune_learner",
                        lambda *args, **kwargs: seen.update(kwargs) or "result")
    params = {"seed": 42, "n_jobs": 1, "tuning": {"n_trials": 3, "study_name": None}}
    inputs = type("Inputs", (), {"tuning_cache": None})()
    base_nodes._tune_study("lightgbm", inputs, params, {}, {}, 3, [], True, params["tuning"],
                           "nightly-lightgbm")
    assert seen["seed"] == 42 and seen["sampler_seed"] == 45
