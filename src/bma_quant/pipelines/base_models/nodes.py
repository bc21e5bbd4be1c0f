"""base_models nodes: unpack parameters, call core, return data.

One node per learner (`train_<learner>`): tune with Optuna, out-of-fold predictions, refit on the
whole development period, test-period predictions. Each runs under `run_guarded`, so a learner that
raises comes back as a failed result and the other learners go on; `collect_base_models` fails,
with every learner's error in the message, only when none succeeded.
"""

from __future__ import annotations

import logging
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bma_quant.core import cv, models, training, tuning
from bma_quant.core.temporal import TemporalConfig
from bma_quant.pipelines.base_models.model_dataset import LoggedLearner
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics

logger = logging.getLogger(__name__)


class NoBaseModelSucceeded(RuntimeError):
    """Raised when every enabled base learner failed (DESIGN §5: the run fails only then)."""


def prepare_training_inputs(
    model_input: pd.DataFrame,
    sample_weights: pd.DataFrame,
    date_split: dict,
    cv_folds: pd.DataFrame,
    params: dict,
) -> training.TrainingInputs:
    """Development rows as float32 arrays with the shared purged folds, and the test rows."""
    for name in params.get("learners") or []:
        models.get_learner(name)  # an unknown name fails here, listing the registered ones
    inputs = training.training_inputs(
        model_input,
        sample_weights,
        dev=(date_split["dev_start"], date_split["dev_end"]),
        test=(date_split["test_start"], date_split["test_end"]),
        folds=cv.folds_from_table(cv_folds),
        features=params.get("features"),
        target_transform=params.get("target_transform", "rank"),
    )
    if inputs.missing_weight_dates:
        logger.warning("base_models: %d development dates have no sample weight and are not "
                       "trained on", inputs.missing_weight_dates)
    logger.info("base_models: %d development rows, %d test rows, %d features, %d folds",
                len(inputs.data.label), len(inputs.test_X), len(inputs.feature_names),
                len(inputs.cache.folds))
    return inputs


# ---------------------------------------------------------------------------------------------
# Optuna trials as nested MLflow runs (only when kedro-mlflow has a run active)
# ---------------------------------------------------------------------------------------------


def _trial_callbacks(name: str) -> list:
    import mlflow

    if mlflow.active_run() is None:
        return []
    from optuna_integration import MLflowCallback

    class TrialRunCallback(MLflowCallback):
        """optuna-integration's callback (params, objective, state) plus each fold's RankIC as
        the metric history `fold_rank_ic` (step = fold) and a readable run name."""

        def _set_tags(self, trial, study):
            super()._set_tags(trial, study)
            mlflow.set_tags({"mlflow.runName": f"{name}-trial-{trial.number}",
                             "learner": name})
            for step, value in sorted(trial.intermediate_values.items()):
                mlflow.log_metric("fold_rank_ic", value, step=step)

    with warnings.catch_warnings():  # deprecated in Optuna 4.9, kept until 6.0; the team's choice
        warnings.simplefilter("ignore", FutureWarning)
        return [TrialRunCallback(metric_name="cv_rank_ic_mean", create_experiment=False,
                                 mlflow_kwargs={"nested": True})]


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


def _train(name: str, inputs: training.TrainingInputs, params: dict, nw_lag: int) -> dict:
    seed, n_jobs = int(params["seed"]), int(params["n_jobs"])
    min_names = int(params.get("min_names", 5))
    defaults = dict((params.get("defaults") or {}).get(name) or {})
    tuning_cfg = params.get("tuning") or {}
    space = (tuning_cfg.get("search_space") or {}).get(name) or {}
    tune = bool(tuning_cfg.get("enabled")) and name in (tuning_cfg.get("learners") or []) and space
    cache = inputs.cache
    start = time.perf_counter()
    trials = pd.DataFrame()
    cv_result = None
    if tune:
        result = tuning.tune_learner(
            cache, name, defaults, space,
            n_trials=int(tuning_cfg["n_trials"]), timeout=tuning_cfg.get("timeout"),
            seed=seed, n_jobs=n_jobs, min_names=min_names,
            storage=_storage(tuning_cfg.get("storage")), study_name=_study_name(name),
            sampler=tuning_cfg.get("sampler"), pruner=tuning_cfg.get("pruner"),
            callbacks=_trial_callbacks(name),
            show_progress_bar=bool(tuning_cfg.get("show_progress_bar", False)),
            enqueue_defaults=bool(tuning_cfg.get("enqueue_defaults", True)),
        )
        best_params, n_trials, study = result.best_params, result.n_trials, result.study_name
        trials = result.trials.assign(model=name)
        if result.best_cv is not None:
            cv_result = training.add_full_scores(cache, result.best_cv, min_names, nw_lag)
    else:
        best_params, n_trials, study = defaults, 0, None
    tune_seconds = time.perf_counter() - start
    if cv_result is None:
        cv_result = training.cross_validate(cache, name, best_params, seed=seed, n_jobs=n_jobs,
                                            min_names=min_names, nw_lag=nw_lag)
    learner_kind = models.get_learner(name).native
    if learner_kind:
        cache.free(learner_kind)  # the binned matrices are not needed by the refit
    for row in cv_result.scores.itertuples():
        logger.info("%s fold %d: RankIC %.4f (%d train / %d test rows)", name, row.fold,
                    row.rank_ic, row.n_train, row.n_test)

    refit_start = time.perf_counter()
    data = inputs.data
    estimator = training.refit(name, best_params, inputs.dev_frame(), data.label, data.weight,
                               dates=data.dates, seed=seed, n_jobs=n_jobs,
                               target_transform=params.get("target_transform", "rank"))
    refit_seconds = time.perf_counter() - refit_start
    test_frame = inputs.test_frame()
    test_predictions = pd.DataFrame({
        "date": inputs.test_dates, "ticker": inputs.test_tickers, "model": name,
        "prediction": np.asarray(estimator.predict(test_frame), dtype=np.float32),
    })
    fold_rank_ic = cv_result.scores["rank_ic"]
    return {
        "best_params": best_params,
        "study_name": study,
        "oof": training.oof_frame(data, cv_result, name),
        "test": test_predictions,
        "model": estimator,
        "scores": cv_result.scores,
        "importance": models.feature_importance(name, estimator, inputs.feature_names)
        .assign(model=name),
        "trials": trials,
        "input_example": test_frame.head(int(params.get("input_example_rows", 5))),
        "metrics": {
            "cv_rank_ic_mean": float(fold_rank_ic.mean()),
            "cv_rank_ic_std": float(fold_rank_ic.std(ddof=1)) if len(fold_rank_ic) > 1 else None,
            "cv_ic_mean": float(cv_result.scores["ic"].mean()),
            "n_trials": n_trials,
            "tune_seconds": tune_seconds,
            "refit_seconds": refit_seconds,
        },
    }


def train_learner(name: str, inputs: training.TrainingInputs, params: dict, temporal: dict
                  ) -> tuple[dict, LoggedLearner]:
    """Train one learner; never raises: a failure is returned as status "failed" with its
    traceback, a learner not listed in `base_models.learners` as status "skipped"."""
    if name not in (params.get("learners") or []):
        return {"name": name, "status": "skipped", "error": None}, LoggedLearner(name, None)
    nw_lag = TemporalConfig.from_params(temporal).horizon_days
    outcome = training.run_guarded(name, _train, name, inputs, params, nw_lag)
    if not outcome.ok:
        logger.error("base_models: %s failed after %.1fs: %s\n%s", name, outcome.seconds,
                     outcome.error, outcome.traceback)
        return ({"name": name, "status": "failed", "error": outcome.error,
                 "traceback": outcome.traceback, "fit_seconds": outcome.seconds},
                LoggedLearner(name, None))
    result = {"name": name, "status": "ok", "error": None, **outcome.value}
    result["metrics"]["fit_seconds"] = outcome.seconds
    logger.info("base_models: %s ok in %.1fs, CV RankIC %.4f", name, outcome.seconds,
                result["metrics"]["cv_rank_ic_mean"])
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
TEST_COLUMNS = ["date", "ticker", "model", "prediction"]


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def _tag_failures(results: list[dict]) -> None:
    import mlflow

    if mlflow.active_run() is None:
        return
    mlflow.set_tags({f"base_models.{r['name']}.status": r["status"] for r in results})


def collect_base_models(*results: dict):
    """Gather the learners' results into the base_models datasets, metrics and best params."""
    results = list(results)
    active = [r for r in results if r["status"] != "skipped"]
    ok = [r for r in active if r["status"] == "ok"]
    _tag_failures(active)
    if not ok:
        detail = "; ".join(f"{r['name']}: {r['error']}" for r in active) or "none enabled"
        raise NoBaseModelSucceeded(f"No base learner succeeded ({detail}).")

    oof = _concat([r["oof"] for r in ok], OOF_COLUMNS)
    oof = oof.sort_values(["date", "ticker", "model"], kind="stable").reset_index(drop=True)
    test = _concat([r["test"] for r in ok], TEST_COLUMNS)
    test = test.sort_values(["date", "ticker", "model"], kind="stable").reset_index(drop=True)
    scores = _concat([r["scores"] for r in ok], ["model", "fold"])
    importance = _concat([r["importance"] for r in ok], ["model", "feature"])
    importance = importance[["model", "feature", "importance", "share", "kind"]]
    trials = _concat([r["trials"] for r in ok], ["model", "number"])

    status = {
        r["name"]: {
            "status": r["status"],
            "error": r.get("error"),
            "best_params": r.get("best_params", {}),
            "study_name": r.get("study_name"),
            "metrics": r.get("metrics", {"fit_seconds": r.get("fit_seconds")}),
            "traceback": r.get("traceback"),
        }
        for r in active
    }
    metrics: dict[str, float | None] = {
        "n_succeeded": len(ok),
        "n_failed": len(active) - len(ok),
    }
    for r in active:
        metrics[f"{r['name']}.failed"] = float(r["status"] != "ok")
        if r["status"] == "ok":
            metrics.update({f"{r['name']}.{k}": v for k, v in r["metrics"].items()})
        else:
            metrics[f"{r['name']}.fit_seconds"] = r.get("fit_seconds")
    best_params = {f"{r['name']}.{k}": v for r in ok for k, v in r["best_params"].items()}
    base_models = {r["name"]: r["model"] for r in ok}
    logger.info("base_models: %d of %d learners succeeded: %s", len(ok), len(active),
                ", ".join(f"{r['name']} {r['metrics']['cv_rank_ic_mean']:.4f}" for r in ok))
    return (oof, test, base_models, status, scores, importance, trials, best_params,
            as_mlflow_metrics(metrics))
