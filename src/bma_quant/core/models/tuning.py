"""Optuna tuning of one base learner over the purged folds (DESIGN §5.1, seed §2.3.1).

Objective: mean RankIC over the tuning folds (the earliest purged walk-forward folds; DESIGN §3
nested selection: the out-of-fold predictions that later layers learn from come from the later
folds, which no trial was scored on). Each trial reports its fold RankICs one by one to a
MedianPruner, so a clearly worse trial stops early. The TPE sampler is seeded; with n_jobs=1 the
same seed, data and trial budget give the same trials on any machine. The budget is a trial count;
`timeout` is only an optional guard: when it stops a study before its budget the learner's tuning
fails (`TuningTimedOut`) rather than choosing from however many trials this machine ran.

Framework-free: callbacks (e.g. the MLflow nested-run callback) are passed in by the caller.
Storage is whatever Optuna accepts (None = in memory, or an RDB URL such as
`sqlite:///data/06_models/optuna_base_models.db`); the caller gives each study a unique name (a
run identifier in it) and the study is created with load_if_exists=False, so reruns never mix
trials into an old study.

Shared studies (`shared=True`, scale-out): several processes (tuning workers, then the training
run) fill one named study in an RDB storage such as PostgreSQL. The trial budget is counted across
them by trial number (unique and ordered in the storage): a process asks for a trial and runs it
only if its number is below the budget; a trial asked past the budget is closed at once as FAIL
(user attribute `over_budget`) and the process stops, so COMPLETE + PRUNED trials never exceed the
budget. Each process samples with its own sampler seed (otherwise they would propose the same
values) and fits with the same model seed. The trial order then depends on timing: results are not
reproducible in that mode. A shared study records what its trials were scored on (data, folds,
settings: `study_identity`) and a process scoring on anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd

from bma_quant.core.models.progress import TrialProgressBar
from bma_quant.core.models.training import CVResult, FoldCache, cross_validate

logger = logging.getLogger(__name__)

# The objective's name: in the study (optuna-dashboard's axis) and as the trials' MLflow metric.
OBJECTIVE_NAME = "tuning_rank_ic_mean"
# user attribute of a trial stopped because its predictions ranked nothing: the fold it was on
CONSTANT_ATTR = "constant_on_fold"
# user attribute of a study: what its trials were scored on (study_identity)
IDENTITY_ATTR = "tuning_identity"
# how long a process joining a shared study waits for its creator to record the identity
IDENTITY_WAIT_SECONDS = 10.0


def suggest_params(trial: optuna.Trial, space: dict[str, dict]) -> dict[str, Any]:
    """Sample one value per entry of a search space written in parameters, e.g.
    {max_depth: {type: int, low: 2, high: 8}, learning_rate: {type: float, low: 0.01,
    high: 0.3, log: true}, booster: {type: categorical, choices: [gbtree, dart]}}."""
    params = {}
    for name, spec in (space or {}).items():
        kind = spec.get("type", "float")
        if kind == "float":
            params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                               log=bool(spec.get("log", False)),
                                               step=spec.get("step"))
        elif kind == "int":
            params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                             log=bool(spec.get("log", False)),
                                             step=int(spec.get("step", 1)))
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(spec["choices"]))
        else:
            raise ValueError(f"search space entry {name!r}: unknown type {kind!r}")
    return params


def _in_space(value: Any, spec: dict) -> bool:
    kind = spec.get("type", "float")
    if kind == "categorical":
        return value in list(spec["choices"])
    try:
        return float(spec["low"]) <= float(value) <= float(spec["high"])
    except (TypeError, ValueError):
        return False


def default_trial(defaults: dict, space: dict, learner: str = "") -> dict:
    """The defaults restricted to the search space (enqueued as trial 0 so tuning never ends
    below the seed's configuration on the same folds). A default outside its search range is
    left to the sampler in trial 0, and said: the configuration the user wrote is not tried."""
    outside = {k: v for k, v in defaults.items()
               if k in (space or {}) and not _in_space(v, space[k])}
    if outside:
        logger.warning(
            "base_models.defaults%s: %s outside the search range (base_models.tuning."
            "search_space): trial 0 samples %s instead of trying the default", f".{learner}"
            if learner else "", ", ".join(f"{k} = {v!r}" for k, v in outside.items()),
            "them" if len(outside) > 1 else "it")
    return {k: defaults[k] for k, spec in (space or {}).items()
            if k in defaults and k not in outside}


# Optuna creates its tables when a storage is first opened: two studies opened at once on a new
# SQLite file (learners trained side by side by Kedro's ThreadRunner) both issue CREATE TABLE and
# one fails. Opening storages one at a time within a process avoids that; processes sharing a
# study (tune workers) create the tables first with prepare_storage.
_STORAGE_LOCK = threading.Lock()


def prepare_storage(url: str) -> None:
    """Create Optuna's tables in `url` if they are missing (idempotent)."""
    with _STORAGE_LOCK:
        optuna.storages.RDBStorage(url)


def create_study(
    study_name: str | None,
    *,
    seed: int,
    storage: str | None = None,
    sampler: dict | None = None,
    pruner: dict | None = None,
    load_if_exists: bool = False,
) -> optuna.Study:
    sampler_cfg = dict(sampler or {})
    pruner_cfg = dict(pruner or {})
    if isinstance(storage, str):
        with _STORAGE_LOCK:
            storage = optuna.storages.RDBStorage(storage)
    return optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        load_if_exists=load_if_exists,
        sampler=optuna.samplers.TPESampler(
            seed=int(seed),
            n_startup_trials=int(sampler_cfg.get("n_startup_trials", 5)),
            multivariate=bool(sampler_cfg.get("multivariate", True)),
        ),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=int(pruner_cfg.get("n_startup_trials", 3)),
            n_warmup_steps=int(pruner_cfg.get("n_warmup_steps", 0)),
        )
        if pruner_cfg.get("enabled", True)
        else optuna.pruners.NopPruner(),
    )


OVER_BUDGET = "over_budget"


def open_shared_study(study_name: str, *, seed: int, storage: str, sampler: dict | None = None,
                      pruner: dict | None = None, first_trial: dict | None = None,
                      identity: str | None = None) -> optuna.Study:
    """Create the named study, or join it when another process already did. Only its creator
    records `identity` (what its trials are scored on: `study_identity`) and then enqueues
    `first_trial` (the defaults), so both happen once however many processes join; creation is
    the storage's atomic step, so no two processes both record theirs."""
    kwargs = {"seed": seed, "storage": storage, "sampler": sampler, "pruner": pruner}
    try:
        study = create_study(study_name, **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        return create_study(study_name, **kwargs, load_if_exists=True)
    if identity is not None:
        study.set_user_attr(IDENTITY_ATTR, identity)
    if first_trial:
        study.enqueue_trial(first_trial)
    return study


def run_trials_to_budget(study: optuna.Study, objective: Callable[[optuna.Trial], float],
                         budget: int, callbacks: Sequence[Callable] = ()) -> list[int]:
    """Ask, run and tell trials until the study's trial numbers reach `budget` (counted across
    every process sharing the study); returns the numbers of the trials run here."""
    ran: list[int] = []
    while True:
        trial = study.ask()
        if trial.number >= int(budget):
            trial.set_user_attr(OVER_BUDGET, True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return ran
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except Exception:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        else:
            frozen = study.tell(trial, value)
        ran.append(trial.number)
        for callback in callbacks:
            callback(study, frozen)


def wait_for_other_trials(study: optuna.Study, wait_seconds: float, poll: float = 1.0) -> None:
    """Let trials still running in other processes finish (at most `wait_seconds`: a worker
    that died leaves its trial RUNNING for ever); the best is chosen among the complete ones.
    0: no wait and nothing said (a tuning worker chooses nothing: it warned of "choosing among
    the complete ones" after 0 s)."""
    if float(wait_seconds) <= 0:
        return
    deadline = time.monotonic() + float(wait_seconds)
    running = optuna.trial.TrialState.RUNNING
    while any(t.state == running for t in budget_trials(study)):
        if time.monotonic() > deadline:
            logger.warning("%s: trials still running after %.0f s; choosing among the complete "
                           "ones", study.study_name, wait_seconds)
            return
        time.sleep(poll)


def budget_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials without those closed for being past the budget."""
    return [t for t in study.trials if not t.user_attrs.get(OVER_BUDGET)]


@dataclass
class TuningResult:
    best_params: dict  # full parameter set (defaults updated with the best trial's values)
    best_value: float
    n_trials: int
    n_complete: int
    n_pruned: int
    trials: pd.DataFrame
    study_name: str | None
    truncated: bool  # fewer than n_trials in the budget (a shared study's numbers taken earlier)
    # Each complete trial's predictions on the tuning folds (trial number -> CVResult), kept so
    # every configuration tried can be scored again (trial accounting, overfitting statistics).
    trial_predictions: dict[int, CVResult]
    shared: bool = False  # trials came from several processes (scale-out): not reproducible
    n_constant: int = 0  # of the pruned: stopped because their predictions ranked nothing

    @property
    def objective_median(self) -> float:
        """Median objective of the complete trials: how much the best one stands out."""
        values = self.trials.loc[self.trials["state"] == "COMPLETE", "value"]
        return float(values.median()) if len(values) else math.nan




class StudyMismatch(ValueError):
    """A named study holds trials scored on other data, folds or settings than this run's."""


class TuningTimedOut(RuntimeError):
    """The tuning timeout stopped a study before its trial budget: the parameters chosen would
    depend on how many trials this machine ran, so none are chosen (the run stops)."""


def study_identity(cache: FoldCache, defaults: dict, space: dict, *, seed: int,
                   min_names: int) -> str:
    """What a trial's value depends on besides its sampled parameters: the tuning folds' rows and
    target (``FoldCache.fingerprint``), the learner's defaults, the search space, the model seed
    and the RankIC's minimum names (16 hex digits). A shared study's trials are comparable only
    between processes with the same identity."""
    blob = json.dumps({"folds": cache.fingerprint, "defaults": defaults, "space": space,
                       "seed": int(seed), "min_names": int(min_names)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_study_identity(study: optuna.Study, identity: str, name: str,
                         wait_seconds: float = IDENTITY_WAIT_SECONDS) -> None:
    """Refuse a shared study whose recorded identity is not `identity`: joining it would choose
    parameters by values scored on other rows (the out-of-fold scores after them would read folds
    the choice was made on). Its creator records the identity before any trial exists; a study
    without one is either being created this instant (no trial yet: waited for, at most
    `wait_seconds`) or was filled by a version that did not record one (refused)."""
    deadline = time.monotonic() + float(wait_seconds)
    recorded = study.user_attrs.get(IDENTITY_ATTR)
    while recorded is None:
        if study.trials or time.monotonic() > deadline:
            # read again: the creator may have recorded it, then enqueued a trial, since the
            # read above (it records before any trial exists, so this read is final)
            recorded = study.user_attrs.get(IDENTITY_ATTR) or "none recorded"
            break
        time.sleep(0.2)
        recorded = study.user_attrs.get(IDENTITY_ATTR)
    if recorded != identity:
        raise StudyMismatch(
            f"{name}: the Optuna study {study.study_name!r} holds trials scored on other data, "
            f"tuning folds or settings (its identity {recorded}, this run's {identity}: the "
            "features, labels, weights, cv / periods layout, target transform, max_train_rows, "
            "defaults, search space or seed differ). Joining it would choose parameters by "
            "values scored on other rows. Set another base_models.tuning.study_name, or delete "
            f"the study (optuna delete-study --study-name {study.study_name} --storage ...).")


def _open_study(cache: FoldCache, name: str, first: dict | None, *, shared: bool, seed: int,
                storage: str | None, study_name: str | None, sampler: dict | None,
                pruner: dict | None, identity: str) -> optuna.Study:
    """The learner's study: its own (the defaults enqueued first) or the one shared with tuning
    workers, labelled with what it was about (readable in optuna-dashboard next to its trials).
    `seed`: the sampler's."""
    if shared:
        if not (storage and study_name):
            raise ValueError(f"{name}: a shared study needs base_models.tuning.storage and "
                             "base_models.tuning.study_name")
        study = open_shared_study(study_name, seed=seed, storage=storage, sampler=sampler,
                                  pruner=pruner, first_trial=first, identity=identity)
        check_study_identity(study, identity, name)
    else:
        study = create_study(study_name, seed=seed, storage=storage, sampler=sampler,
                             pruner=pruner)
        if first:
            study.enqueue_trial(first)
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2, stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE_NAME])
    if not shared:  # this run's own study: it holds nothing else
        study.set_user_attr(IDENTITY_ATTR, identity)
    study.set_user_attr("learner", name)
    study.set_user_attr("data_fingerprint", cache.data.fingerprint)
    study.set_user_attr("n_rows", int(len(cache.data.label)))
    study.set_user_attr("n_tuning_folds", len(cache.folds))
    return study


def _fold_objective(cache: FoldCache, name: str, defaults: dict, space: dict,
                    predictions: dict[int, CVResult], *, seed: int, n_jobs: int,
                    min_names: int) -> Callable[[optuna.Trial], float]:
    """Mean tuning-fold RankIC of a trial's parameters; each fold's RankIC goes to the pruner as
    it comes, and the trial's predictions are kept in `predictions` (trial number -> CVResult).
    A trial whose predictions rank nothing on a fold (all equal on every date: the RankIC is
    undefined, not 0) is stopped as pruned, so it is never the best: where every real trial
    scores below 0 it would otherwise win with its 0 and leave the learner constant."""

    def objective(trial: optuna.Trial) -> float:
        params = {**defaults, **suggest_params(trial, space)}

        def report(k: int, rank_ic: float, constant: bool) -> None:
            if constant:  # no value reported: TPE ranks such a trial below every scored one
                trial.set_user_attr(CONSTANT_ATTR, k)
                raise optuna.TrialPruned(f"fold {k}: constant predictions rank nothing")
            trial.report(rank_ic, step=k)
            if trial.should_prune():
                raise optuna.TrialPruned(f"fold {k}: RankIC {rank_ic:.4f} below the median")

        result = cross_validate(cache, name, params, seed=seed, n_jobs=n_jobs,
                                min_names=min_names, on_fold=report, full_scores=False)
        trial.set_user_attr("fold_rank_ic", [round(v, 6) for v in result.scores["rank_ic"]])
        predictions[trial.number] = result
        return result.rank_ic_mean

    return objective


def _study_result(study: optuna.Study, name: str, defaults: dict, *, n_trials: int,
                  timeout: float | None, shared: bool, study_name: str | None,
                  predictions: dict[int, CVResult]) -> TuningResult:
    """The finished study as a TuningResult (trials table, best parameters, counts)."""
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration",
                                           "user_attrs"))
    # a named objective comes out as value_<name>: keep the table's `value` column
    trials = trials.rename(columns={f"value_{OBJECTIVE_NAME}": "value"})
    if shared and "user_attrs_" + OVER_BUDGET in trials:
        trials = trials[trials["user_attrs_" + OVER_BUDGET].isna()].reset_index(drop=True)
    counted = budget_trials(study)
    states = [t.state for t in counted]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    constant = sum(CONSTANT_ATTR in t.user_attrs for t in counted)
    n_pruned = states.count(optuna.trial.TrialState.PRUNED)
    finished = sum(state.is_finished() for state in states)  # an enqueued trial waits unrun
    # a shared study runs to its budget without the timeout (a dead worker's trial can be left
    # RUNNING): only this process's own study can have been cut by the clock
    if timeout is not None and not shared and finished < int(n_trials):
        raise TuningTimedOut(
            f"{name}: the {float(timeout):g} s tuning timeout (base_models.tuning.timeout) "
            f"stopped the study after {finished} of {int(n_trials)} trial(s): parameters chosen "
            "from the trials a machine finishes in time would differ between machines, so none "
            "are. Raise it, lower n_trials (the budget, a count) or set it to null")
    if complete == 0:
        if not constant:
            raise RuntimeError(f"{name}: no Optuna trial completed ({finished} ran)")
        # every trial ranked nothing (or was pruned beside those that did not): the learner
        # trains its defaults, which the layer then reports degenerate if they are constant too
        logger.warning("%s: no Optuna trial completed: %d of %d stopped because their "
                       "predictions were constant on a tuning fold (the search space's penalties "
                       "shrink the model to its intercept on these data); the defaults are used",
                       name, constant, len(states))
        return TuningResult(best_params=dict(defaults), best_value=math.nan,
                            n_trials=len(states), n_complete=0, n_pruned=n_pruned,
                            trials=trials, study_name=study_name,
                            truncated=len(states) < int(n_trials),
                            trial_predictions=predictions, shared=shared, n_constant=constant)
    best_trial = study.best_trial
    truncated = len(states) < int(n_trials)
    if truncated:  # a shared study whose budget grew after trials over the old one ran
        logger.warning("%s: %d of %d trials ran within the shared study's budget (trial numbers "
                       "were taken by trials over an earlier, smaller budget)", name,
                       len(states), int(n_trials))
    logger.info("%s: best mean tuning-fold RankIC %.4f at trial %d of %d (%d pruned%s)", name,
                best_trial.value, best_trial.number, len(states), n_pruned,
                f", {constant} of them for constant predictions" if constant else "")
    return TuningResult(
        best_params={**defaults, **best_trial.params},
        best_value=float(best_trial.value),
        n_trials=len(states),
        n_complete=complete,
        n_pruned=n_pruned,
        trials=trials,
        study_name=study_name,
        truncated=truncated,
        trial_predictions=predictions,
        shared=shared,
        n_constant=constant,
    )


def tune_learner(
    cache: FoldCache,
    name: str,
    defaults: dict,
    space: dict,
    *,
    n_trials: int,
    timeout: float | None,
    seed: int,
    sampler_seed: int | None = None,
    n_jobs: int = 1,
    min_names: int = 5,
    storage: str | None = None,
    study_name: str | None = None,
    sampler: dict | None = None,
    pruner: dict | None = None,
    callbacks: Sequence[Callable] = (),
    show_progress_bar: bool = False,
    enqueue_defaults: bool = True,
    shared: bool = False,
    wait_seconds: float = 600.0,
    rescore: bool = True,
) -> TuningResult:
    """Tune `name` on the cached (tuning) folds; maximise the mean fold RankIC.

    `timeout` (seconds, None = off) is a guard only: a study it stops before `n_trials` raises
    `TuningTimedOut`.
    `shared`: join the named study in `storage` and run trials until the budget is reached across
    every process (tuning workers); complete trials run elsewhere are scored again on the same
    tuning folds, so every configuration tried has its predictions (trial accounting; a worker
    passes `rescore=False` and `wait_seconds=0`).
    `seed`: the models'; `sampler_seed` (None: `seed`): the TPE sampler's, which each worker of a
    shared study sets apart so they do not propose the same values, while every process scores a
    configuration with the same model seed (a stored value is then the score of the model trained
    with it). A shared study records what its trials were scored on and refuses a process that
    scores on something else (`check_study_identity`)."""
    if int(n_trials) < 1:
        raise ValueError(f"{name}: base_models.tuning.n_trials must be >= 1, got {n_trials}")
    first = default_trial(defaults, space, name) if enqueue_defaults else None
    identity = study_identity(cache, defaults, space, seed=seed, min_names=min_names)
    study = _open_study(cache, name, first, shared=shared,
                        seed=seed if sampler_seed is None else sampler_seed, storage=storage,
                        study_name=study_name, sampler=sampler, pruner=pruner, identity=identity)
    predictions: dict[int, CVResult] = {}
    objective = _fold_objective(cache, name, defaults, space, predictions, seed=seed,
                                n_jobs=n_jobs, min_names=min_names)
    # a shared study's budget counts every process's trials: no bar (each worker printed one
    # that counted only its own)
    bar = TrialProgressBar(name, int(n_trials)) if show_progress_bar and not shared else None
    try:
        _run_study(study, objective, name, cache, defaults, predictions, n_trials=n_trials,
                   timeout=timeout, callbacks=[*callbacks, *([bar] if bar else [])],
                   shared=shared, wait_seconds=wait_seconds, rescore=rescore, seed=seed,
                   n_jobs=n_jobs, min_names=min_names)
    finally:
        if bar is not None:
            bar.close()
    return _study_result(study, name, defaults, n_trials=n_trials, timeout=timeout,
                         shared=shared, study_name=study_name, predictions=predictions)


def _run_study(study: optuna.Study, objective: Callable, name: str, cache: FoldCache,
               defaults: dict, predictions: dict[int, CVResult], *, n_trials: int,
               timeout: float | None, callbacks: list, shared: bool, wait_seconds: float,
               rescore: bool, seed: int, n_jobs: int, min_names: int) -> None:
    if shared:
        run_trials_to_budget(study, objective, int(n_trials), callbacks)
        wait_for_other_trials(study, wait_seconds)
        for trial in budget_trials(study) if rescore else []:
            if trial.state == optuna.trial.TrialState.COMPLETE and trial.number not in predictions:
                predictions[trial.number] = cross_validate(
                    cache, name, {**defaults, **trial.params}, seed=seed, n_jobs=n_jobs,
                    min_names=min_names, full_scores=False)
    else:
        study.optimize(objective, n_trials=int(n_trials), timeout=timeout, n_jobs=1,
                       callbacks=callbacks, show_progress_bar=False, gc_after_trial=False)
