"""base_models nodes: unpack parameters, call core, return data.

One node per learner (`train_<learner>`): tune with Optuna, out-of-fold predictions, refit on the
whole development period, test-period predictions. Each runs under `run_guarded`, so a learner that
raises comes back as a failed result and the other learners go on; `collect_base_models` fails,
with every learner's error in the message, only when none succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from bma_quant import logging_filters
from bma_quant.core.data import cv
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.evaluation.metrics import constant_cross_sections
from bma_quant.core.models import learners, training, tuning
from bma_quant.pipelines.base_models.model_dataset import LoggedLearner
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics
from bma_quant.run_hooks.interrupts import interruption_in

logger = logging.getLogger(__name__)


def prepare_training_inputs(
    model_input: pd.DataFrame,
    sample_weights: pd.DataFrame,
    date_split: dict,
    cv_folds: pd.DataFrame,
    params: dict,
) -> training.TrainingInputs:
    """Development rows as float32 arrays with the shared purged folds, and the test rows."""
    for name in params.get("learners") or []:
        learners.get_learner(name)  # an unknown name fails here, listing the registered ones
    inputs = training.training_inputs(
        model_input,
        sample_weights,
        dev=(date_split["dev_start"], date_split["dev_end"]),
        test=(date_split["test_start"], date_split["test_end"]),
        folds=cv.folds_from_table(cv_folds),
        features=params.get("features"),
        target_transform=training.TargetTransform.from_params(params),
        tuning_max_train_rows=(params.get("tuning") or {}).get("max_train_rows"),
        max_train_rows=params.get("max_train_rows"),
    )
    tuned = _tuned_learners(params)
    if tuned and not inputs.tuning_cache.folds:
        raise ValueError(
            f"base_models.tuning is enabled for {', '.join(tuned)} but cv.n_tuning_folds is 0: "
            "trials need tuning folds that the out-of-fold predictions do not use (nested "
            "selection). Set cv.n_tuning_folds >= 1 or base_models.tuning.enabled: false.")
    if inputs.missing_weight_dates:
        logger.warning("base_models: %d development dates have no sample weight and are not "
                       "trained on", inputs.missing_weight_dates)
    logger.info("base_models: %d development rows, %d test rows, %d features, %d tuning folds, "
                "%d out-of-fold folds", len(inputs.data.label), len(inputs.test_X),
                len(inputs.feature_names), len(inputs.tuning_cache.folds),
                len(inputs.cache.folds))
    return inputs


# ---------------------------------------------------------------------------------------------
# Optuna trials as nested MLflow runs (only when kedro-mlflow has a run active)
# ---------------------------------------------------------------------------------------------


_CALLBACK_IMPORT = threading.Lock()


def _trial_callbacks(name: str) -> list:
    import mlflow

    if mlflow.active_run() is None:
        return []
    # From the submodule, one node at a time: the package's lazy attribute lookup is not safe
    # when two learners' nodes ask for it at once (ThreadRunner: "cannot import name
    # 'MLflowCallback'").
    with _CALLBACK_IMPORT:
        import optuna
        from optuna_integration.mlflow import MLflowCallback

    class TrialRunCallback(MLflowCallback):
        """optuna-integration's callback (params, objective, state) plus each fold's RankIC as
        the metric history `fold_rank_ic` (step = fold) and a readable run name. A trial stopped
        before its last fold logs no objective: Optuna gives it its last fold's RankIC as its
        value, which under the mean's name sorted a pruned trial above the chosen one."""

        def __call__(self, study, trial):
            self._complete = trial.state == optuna.trial.TrialState.COMPLETE
            super().__call__(study, trial)

        def _log_metrics(self, values):
            if self._complete:
                super()._log_metrics(values)

        def _set_tags(self, trial, study):
            super()._set_tags(trial, study)
            mlflow.set_tags({"mlflow.runName": f"{name}-trial-{trial.number}",
                             "learner": name})
            for step, value in sorted(trial.intermediate_values.items()):
                mlflow.log_metric("fold_rank_ic", value, step=step)

    with warnings.catch_warnings():  # deprecated in Optuna 4.9, kept until 6.0; the team's choice
        warnings.simplefilter("ignore", FutureWarning)
        return [TrialRunCallback(metric_name=tuning.OBJECTIVE_NAME, create_experiment=False,
                                 mlflow_kwargs={"nested": True})]


def shared_study_name(name: str, tuning_cfg: dict) -> str | None:
    """<tuning.study_name>-<learner> when tuning.study_name is set (a study shared with tuning
    workers, see bma_quant.tune_worker), else None."""
    base = tuning_cfg.get("study_name")
    return f"{base}-{name}" if base else None


def _study_name(name: str) -> str:
    """<learner>-<run id>: the MLflow run id when there is one, else a UTC timestamp."""
    import mlflow

    run = mlflow.active_run()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{name}-{run.info.run_id[:12]}-{stamp}" if run is not None else f"{name}-{stamp}"


def _storage(url: str | None) -> str | None:
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return url or None


# ---------------------------------------------------------------------------------------------
# One learner
# ---------------------------------------------------------------------------------------------


def tune(name: str, inputs: training.TrainingInputs, params: dict, defaults: dict,
         space: dict, seed_offset: int = 0, callbacks: list | None = None,
         worker: bool = False) -> tuning.TuningResult:
    """The Optuna study of one learner, scored on the tuning folds only. With
    tuning.study_name set it joins the study shared with tuning workers (each worker samples
    with seed + its `seed_offset` and fits with `seed`; a `worker` neither waits for the others
    nor rescores their trials: the training run does)."""
    tuning_cfg = params["tuning"]
    shared_name = shared_study_name(name, tuning_cfg)
    try:
        return _tune_study(name, inputs, params, defaults, space, seed_offset, callbacks, worker,
                           tuning_cfg, shared_name)
    finally:  # Optuna's progress bar restores its own handler when a study ends
        logging_filters.route_optuna_records()


def _tune_study(name: str, inputs: training.TrainingInputs, params: dict, defaults: dict,
                space: dict, seed_offset: int, callbacks: list | None, worker: bool,
                tuning_cfg: dict, shared_name: str | None) -> tuning.TuningResult:
    return tuning.tune_learner(
        inputs.tuning_cache, name, defaults, space,
        n_trials=int(tuning_cfg["n_trials"]), timeout=tuning_cfg.get("timeout"),
        seed=int(params["seed"]), sampler_seed=int(params["seed"]) + int(seed_offset),
        n_jobs=int(params["n_jobs"]),
        min_names=int(params.get("min_names", 5)),
        storage=_storage(tuning_cfg.get("storage")),
        study_name=shared_name or _study_name(name),
        sampler=tuning_cfg.get("sampler"), pruner=tuning_cfg.get("pruner"),
        callbacks=_trial_callbacks(name) if callbacks is None else callbacks,
        show_progress_bar=bool(tuning_cfg.get("show_progress_bar", False)),
        enqueue_defaults=bool(tuning_cfg.get("enqueue_defaults", True)),
        shared=shared_name is not None,
        wait_seconds=0.0 if worker else float(tuning_cfg.get("shared_wait_seconds", 600)),
        rescore=not worker,
    )


def _tuned_learners(params: dict) -> list[str]:
    """The learners Optuna tunes: listed in tuning.learners and with a search space."""
    tuning_cfg = params.get("tuning") or {}
    if not tuning_cfg.get("enabled"):
        return []
    spaces = tuning_cfg.get("search_space") or {}
    return [n for n in tuning_cfg.get("learners") or [] if spaces.get(n)]


def _trial_frames(name: str, inputs: training.TrainingInputs, result: tuning.TuningResult
                  ) -> pd.DataFrame:
    """Every complete trial's tuning-fold predictions (date, ticker, model, trial, fold,
    prediction): what each configuration tried would have earned."""
    parts = [training.oof_frame(inputs.data, cv_result, name, trial=number)
             for number, cv_result in sorted(result.trial_predictions.items())]
    return _concat(parts, TRIAL_COLUMNS)


def _tune_or_defaults(name: str, inputs: training.TrainingInputs, params: dict):
    """(best params, study name, trials table, trials' tuning-fold predictions, tuning metrics):
    an Optuna study on the tuning folds for a tuned learner, its defaults otherwise."""
    defaults = dict((params.get("defaults") or {}).get(name) or {})
    if name not in _tuned_learners(params):
        return (defaults, None, pd.DataFrame(), pd.DataFrame(columns=TRIAL_COLUMNS),
                {"n_trials": 0, "tuning_truncated": 0.0})
    space = ((params.get("tuning") or {}).get("search_space") or {}).get(name) or {}
    result = tune(name, inputs, params, defaults, space)
    tuning_metrics = {
        "n_trials": result.n_trials,
        "n_trials_pruned": result.n_pruned,
        "n_trials_constant": result.n_constant,
        "tuning_objective": result.best_value,
        "tuning_objective_median": result.objective_median,
        "tuning_truncated": float(result.truncated),
        "tuning_shared_study": float(result.shared),
    }
    learner_kind = learners.get_learner(name).native
    if learner_kind:
        inputs.tuning_cache.free(learner_kind)
    return (result.best_params, result.study_name, result.trials.assign(model=name),
            _trial_frames(name, inputs, result), tuning_metrics)


def _train(name: str, inputs: training.TrainingInputs, params: dict, nw_lag: int) -> dict:
    """Tune on the tuning folds, predict the out-of-fold folds with the chosen parameters
    (nested selection: no trial was scored there), refit on all development dates, predict test."""
    seed, n_jobs = int(params["seed"]), int(params["n_jobs"])
    min_names = int(params.get("min_names", 5))
    timings: dict[str, float] = {}
    start = time.perf_counter()
    best_params, study, trials, trial_oof, tuning_metrics = _tune_or_defaults(name, inputs, params)
    timings["tune_seconds"] = time.perf_counter() - start

    cache = inputs.cache
    cv_result = training.cross_validate(cache, name, best_params, seed=seed, n_jobs=n_jobs,
                                        min_names=min_names, nw_lag=nw_lag)
    learner_kind = learners.get_learner(name).native
    if learner_kind:
        cache.free(learner_kind)  # the binned matrices are not needed by the refit
    for row in cv_result.scores.itertuples():
        logger.info("%s fold %d: out-of-fold RankIC %.4f (%d train / %d test rows)", name,
                    row.fold, row.rank_ic, row.n_train, row.n_test)

    refit_start = time.perf_counter()
    data = inputs.data
    estimator = training.refit(name, best_params, inputs.dev_frame(), data.label, data.weight,
                               dates=data.dates, seed=seed, n_jobs=n_jobs,
                               target_transform=training.TargetTransform.from_params(params),
                               max_train_rows=inputs.max_train_rows)
    timings["refit_seconds"] = time.perf_counter() - refit_start
    test_frame = inputs.test_frame()
    test_predictions = pd.DataFrame({
        "date": inputs.test_dates, "ticker": inputs.test_tickers, "model": name,
        "prediction": learners.predict_float32(estimator, test_frame),
    })
    fold_rank_ic = cv_result.scores["rank_ic"]
    # constant predictions on every date (out-of-fold or test) rank nothing: degenerate
    degenerate = (constant_cross_sections(cv_result.prediction, data.dates[cv_result.rows])
                  or constant_cross_sections(test_predictions["prediction"],
                                             test_predictions["date"]))
    return {
        "best_params": best_params,
        "study_name": study,
        "oof": training.oof_frame(data, cv_result, name),
        "trial_oof": trial_oof,
        "test": test_predictions,
        "model": estimator,
        "scores": cv_result.scores,
        "importance": learners.feature_importance(name, estimator, inputs.feature_names)
        .assign(model=name),
        "trials": trials,
        "input_example": test_frame.head(int(params.get("input_example_rows", 5))),
        "timings": timings,
        # Only figures that the same config and data reproduce on any machine (no seconds).
        "metrics": {
            **tuning_metrics,
            "oof_rank_ic_mean": float(fold_rank_ic.mean()),
            "oof_rank_ic_std": float(fold_rank_ic.std(ddof=1)) if len(fold_rank_ic) > 1 else None,
            "oof_ic_mean": float(cv_result.scores["ic"].mean()),
            "n_oof_folds": len(fold_rank_ic),
            "degenerate": float(degenerate),
        },
    }


def train_learner(name: str, inputs: training.TrainingInputs, params: dict, temporal: dict
                  ) -> tuple[dict, LoggedLearner]:
    """Train one learner; never raises: a failure is returned as status "failed" with its
    traceback, a learner not listed in `base_models.learners` as status "skipped"."""
    if name not in (params.get("learners") or []):
        return ({"name": name, "status": "skipped", "error": None},
                LoggedLearner(name, None, skipped=True))
    nw_lag = TemporalConfig.from_params(temporal).horizon_days
    outcome = training.run_guarded(name, _train, name, inputs, params, nw_lag)
    if interruption_in(outcome.exception) is not None \
            or isinstance(outcome.exception, tuning.StudyMismatch | tuning.TuningTimedOut):
        # Ctrl-C / SIGTERM, a shared study tuned on other rows, or the tuning timeout (which
        # learners the run keeps would depend on the machine's speed): the run stops (no
        # learner failure to train around)
        raise outcome.exception
    if not outcome.ok:
        logger.error("base_models: %s failed after %.1fs: %s\n%s", name, outcome.seconds,
                     outcome.error, outcome.traceback)
        return ({"name": name, "status": "failed", "error": outcome.error,
                 "traceback": outcome.traceback, "timings": {"fit_seconds": outcome.seconds}},
                LoggedLearner(name, None))
    result = {"name": name, "status": "ok", "error": None, **outcome.value}
    result["timings"]["fit_seconds"] = outcome.seconds
    if result["metrics"]["degenerate"]:
        # not used by later layers (a constant has no ranking), reported as such, not as ok
        result["status"] = "degenerate"
        result["error"] = ("constant predictions on every date (RankIC undefined): "
                           "e.g. a penalty that shrinks every coefficient to zero")
        logger.warning("base_models: %s is degenerate: %s; later layers leave it out", name,
                       result["error"])
        return result, LoggedLearner(name, None)
    logger.info("base_models: %s ok in %.1fs, out-of-fold RankIC %.4f", name, outcome.seconds,
                result["metrics"]["oof_rank_ic_mean"])
    return result, LoggedLearner(name, result["model"], result["input_example"])


def make_train_learner(name: str):
    """train_learner bound to one learner name, as a named function for its Kedro node."""

    def train(inputs, params, temporal):
        return train_learner(name, inputs, params, temporal)

    train.__name__ = train.__qualname__ = f"train_{name}"
    train.__doc__ = f"Tune, cross-validate and refit {name} (see train_learner)."
    return train


# ---------------------------------------------------------------------------------------------
# Collect
# ---------------------------------------------------------------------------------------------

OOF_COLUMNS = ["date", "ticker", "model", "fold", "prediction"]
TRIAL_COLUMNS = ["date", "ticker", "model", "trial", "fold", "prediction"]
TEST_COLUMNS = ["date", "ticker", "model", "prediction"]


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def _tag_run(results: list[dict]) -> None:
    """Per-learner status tags, and `reproducible: false` when a study's trials came from a
    shared study (their order depends on timing; DESIGN §3 reproducibility) or it ran fewer
    than its budget."""
    import mlflow

    if mlflow.active_run() is None:
        return
    truncated = [r["name"] for r in results
                 if (r.get("metrics") or {}).get("tuning_truncated")]
    shared = [r["name"] for r in results
              if (r.get("metrics") or {}).get("tuning_shared_study")]
    mlflow.set_tags({f"base_models.{r['name']}.status": r["status"] for r in results})
    mlflow.set_tag("reproducible", "false" if truncated or shared else "true")
    reasons = ([f"the study of {', '.join(truncated)} ran fewer trials than "
                "base_models.tuning.n_trials"] if truncated else []) \
        + ([f"trials of {', '.join(shared)} came from a shared study (tuning workers): their "
            "order depends on timing"] if shared else [])
    if reasons:
        mlflow.set_tag("reproducible.reason", "; ".join(reasons))


FITTED_IN_RUN = "fitted_in_run"  # attribute of a fitted base learner: its MLflow run's id


def _stamp_fitting_run(models: dict) -> None:
    """Each fitted learner carries the id of the MLflow run that fitted it (a chain built by a
    later evaluation-only run still names it: `PredictionChain.models_run_id`)."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return
    for model in models.values():
        try:
            setattr(model, FITTED_IN_RUN, run.info.run_id)
        except (AttributeError, TypeError):  # an object without a __dict__: not named
            pass


def collect_base_models(*results: dict):
    """Gather the learners' results into the base_models datasets, metrics and best params."""
    results = list(results)
    active = [r for r in results if r["status"] != "skipped"]
    ok = [r for r in active if r["status"] == "ok"]
    _tag_run(active)
    if not ok:
        raise training.NoBaseModelSucceeded.from_statuses(active)

    oof = _concat([r["oof"] for r in ok], OOF_COLUMNS)
    oof = oof.sort_values(["date", "ticker", "model"], kind="stable").reset_index(drop=True)
    test = _concat([r["test"] for r in ok], TEST_COLUMNS)
    test = test.sort_values(["date", "ticker", "model"], kind="stable").reset_index(drop=True)
    scores = _concat([r["scores"] for r in ok], ["model", "fold"])
    importance = _concat([r["importance"] for r in ok], ["model", "feature"])
    importance = importance[["model", "feature", "importance", "share", "kind"]]
    # a degenerate learner's trials were tried all the same: reported, and counted in the luck
    # statistics' number of configurations (its final model is what later layers leave out)
    tried = [r for r in active if r["status"] in ("ok", "degenerate")]
    trials = _concat([r["trials"] for r in tried], ["model", "number"])
    trial_oof = _concat([r["trial_oof"] for r in tried], TRIAL_COLUMNS)[TRIAL_COLUMNS]
    trial_oof = trial_oof.sort_values(["model", "trial", "date", "ticker"], kind="stable")

    status = {
        r["name"]: {
            "status": r["status"],
            "error": r.get("error"),
            "best_params": r.get("best_params", {}),
            "study_name": r.get("study_name"),
            "metrics": r.get("metrics", {}),
            "timings": r.get("timings", {}),
            "traceback": r.get("traceback"),
        }
        for r in active
    }
    metrics: dict[str, float | None] = {
        "n_succeeded": len(ok),
        "n_failed": sum(r["status"] == "failed" for r in active),
        "n_degenerate": sum(r["status"] == "degenerate" for r in active),
    }
    for r in active:
        metrics[f"{r['name']}.failed"] = float(r["status"] == "failed")
        if r["status"] in ("ok", "degenerate"):
            metrics.update({f"{r['name']}.{k}": v for k, v in r["metrics"].items()})
    best_params = {f"{r['name']}.{k}": v for r in ok for k, v in r["best_params"].items()}
    base_models = {r["name"]: r["model"] for r in ok}
    _stamp_fitting_run(base_models)
    logger.info("base_models: %d of %d learners succeeded: %s", len(ok), len(active),
                ", ".join(f"{r['name']} {r['metrics']['oof_rank_ic_mean']:.4f}" for r in ok))
    return (oof, test, base_models, status, scores, importance, trials,
            trial_oof.reset_index(drop=True), best_params, as_mlflow_metrics(metrics))
