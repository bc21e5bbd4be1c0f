"""Optuna tuning over the purged folds: search spaces, determinism, pruning, storage, callbacks."""

import time

import numpy as np
import optuna
import pandas as pd
import pytest

from bma_quant.core.models import training, tuning
from tests.core.test_models import FEATURES, synthetic_dev

LGBM_DEFAULTS = {"n_estimators": 40, "num_leaves": 31, "learning_rate": 0.1}
LGBM_SPACE = {
    "num_leaves": {"type": "int", "low": 4, "high": 64, "log": True},
    "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
    "min_child_samples": {"type": "int", "low": 20, "high": 1000, "log": True},
}


@pytest.fixture(scope="module")
def frame_and_folds():
    return synthetic_dev(0.02, n_tickers=40, n_days=600, seed=21)


def _cache(frame_and_folds):
    frame, folds = frame_and_folds
    data = training.LearningSet.from_arrays(frame[FEATURES], frame["label"], None, frame["date"],
                                            tickers=frame["ticker"])
    return training.FoldCache(data, folds)


def _tune(frame_and_folds, name="lightgbm", defaults=LGBM_DEFAULTS, space=LGBM_SPACE, **kwargs):
    options = {"n_trials": 6, "timeout": None, "seed": 42, "n_jobs": 1} | kwargs
    return tuning.tune_learner(_cache(frame_and_folds), name, defaults, space, **options)


def test_suggest_params_reads_the_search_space_from_parameters():
    space = {
        "depth": {"type": "int", "low": 2, "high": 8},
        "rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
        "freq": {"type": "categorical", "choices": [0, 1]},
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = tuning.suggest_params(study.ask(), space)
        assert isinstance(params["depth"], int) and 2 <= params["depth"] <= 8
        assert 1e-3 <= params["rate"] <= 1.0 and params["freq"] in (0, 1)
    with pytest.raises(ValueError, match="unknown type"):
        tuning.suggest_params(study.ask(), {"x": {"type": "uniform", "low": 0, "high": 1}})


def test_default_trial_keeps_only_defaults_inside_the_space(caplog):
    """A default outside its range is left to the sampler in trial 0, and said (the run went on
    without trying the configuration written)."""
    space = {"a": {"type": "float", "low": 0.1, "high": 1.0},
             "b": {"type": "int", "low": 1, "high": 3},
             "c": {"type": "categorical", "choices": ["x", "y"]}}
    with caplog.at_level("WARNING"):
        kept = tuning.default_trial({"a": 0.5, "b": 7, "c": "y", "d": 1}, space, "lightgbm")
    assert kept == {"a": 0.5, "c": "y"}
    assert ("base_models.defaults.lightgbm: b = 7 outside the search range (base_models.tuning."
            "search_space): trial 0 samples it instead") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        tuning.default_trial({"a": 0.5, "d": 1}, space, "lightgbm")
    assert "outside the search range" not in caplog.text


def test_same_seed_gives_the_same_best_params_and_predictions(frame_and_folds):
    first = _tune(frame_and_folds)
    again = _tune(frame_and_folds)
    assert first.best_params == again.best_params
    assert first.best_value == again.best_value
    np.testing.assert_array_equal(first.trials["value"].to_numpy(),
                                  again.trials["value"].to_numpy())
    assert first.trial_predictions.keys() == again.trial_predictions.keys()
    for number, result in first.trial_predictions.items():
        np.testing.assert_array_equal(result.prediction,
                                      again.trial_predictions[number].prediction)
    other = _tune(frame_and_folds, seed=7)
    assert other.trials["params_num_leaves"].tolist() != first.trials["params_num_leaves"].tolist()


def test_trial_zero_is_the_defaults_and_the_best_is_never_below_it(frame_and_folds):
    result = _tune(frame_and_folds, n_trials=5)
    assert result.trials.loc[0, "params_num_leaves"] == LGBM_DEFAULTS["num_leaves"]
    assert result.trials.loc[0, "params_learning_rate"] == LGBM_DEFAULTS["learning_rate"]
    assert result.best_value >= result.trials.loc[0, "value"]
    assert result.best_params["n_estimators"] == LGBM_DEFAULTS["n_estimators"]  # untuned key kept
    assert set(LGBM_SPACE) <= set(result.best_params)


def test_objective_is_mean_fold_rank_ic_and_every_complete_trial_keeps_its_predictions(
        frame_and_folds):
    result = _tune(frame_and_folds, n_trials=4)
    cache = _cache(frame_and_folds)
    recomputed = training.cross_validate(cache, "lightgbm", result.best_params, seed=42, n_jobs=1)
    complete = result.trials.loc[result.trials["state"] == "COMPLETE", "number"]
    assert sorted(result.trial_predictions) == sorted(complete)
    best = int(result.trials.loc[result.trials["value"].idxmax(), "number"])
    np.testing.assert_allclose(result.trial_predictions[best].prediction,
                               recomputed.prediction, atol=1e-6)
    assert result.best_value == pytest.approx(recomputed.scores["rank_ic"].mean())
    fold_values = result.trials.loc[result.trials["value"].idxmax(), "user_attrs_fold_rank_ic"]
    assert np.mean(fold_values) == pytest.approx(result.best_value, abs=1e-5)


def test_median_pruner_stops_bad_trials_fold_by_fold(frame_and_folds):
    # alpha far above the useful range zeroes every ElasticNet coefficient: RankIC 0 per fold.
    space = {"alpha": {"type": "float", "low": 1e-4, "high": 10.0, "log": True}}
    result = _tune(frame_and_folds, name="elastic_net", defaults={"alpha": 1e-3}, space=space,
                   n_trials=14, sampler={"n_startup_trials": 14},
                   pruner={"n_startup_trials": 2, "n_warmup_steps": 1})
    assert result.n_pruned > 0
    assert result.n_complete + result.n_pruned == result.n_trials == 14
    pruned = result.trials[result.trials["state"] == "PRUNED"]
    # Stopped before the last fold: no complete list of fold RankICs (Optuna keeps the last
    # reported fold value as a pruned trial's value).
    assert pruned["user_attrs_fold_rank_ic"].isna().all()
    assert result.best_value > 0.1 and result.best_params["alpha"] < 1.0


def test_the_pruner_sees_each_folds_rank_ic_as_it_is(frame_and_folds):
    """What a trial reports per fold is that fold's RankIC (higher is better, as the study's
    direction): a sign slip would prune the good trials and keep the bad."""
    seen = []
    _tune(frame_and_folds, n_trials=4, callbacks=[lambda study, trial: seen.append(trial)])
    complete = [t for t in seen if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for trial in complete:
        folds = trial.user_attrs["fold_rank_ic"]
        reported = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
        assert reported == pytest.approx(folds, abs=1e-6)  # the attribute is rounded to 6 digits
        assert trial.value == pytest.approx(np.mean(reported))
        assert trial.value > 0.05  # the planted signal: positive RankIC, not its negative


def test_sqlite_storage_keeps_a_fresh_named_study_per_run(frame_and_folds, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = _tune(frame_and_folds, n_trials=3, storage=storage, study_name="lightgbm-run1")
    loaded = optuna.load_study(study_name="lightgbm-run1", storage=storage)
    assert len(loaded.trials) == 3 and loaded.best_value == pytest.approx(result.best_value)
    assert loaded.user_attrs["learner"] == "lightgbm"
    # The same name again is refused rather than mixing trials into the old study.
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        _tune(frame_and_folds, n_trials=1, storage=storage, study_name="lightgbm-run1")
    _tune(frame_and_folds, n_trials=2, storage=storage, study_name="lightgbm-run2")
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {"lightgbm-run1", "lightgbm-run2"}


def test_callbacks_see_every_trial_and_a_timeout_that_cuts_the_budget_chooses_nothing(
        frame_and_folds):
    """The timeout is a guard, not a budget: parameters chosen from the trials a machine
    finished in time would differ between machines (they were returned, flagged truncated)."""
    seen = []
    full = _tune(frame_and_folds, n_trials=3,
                 callbacks=[lambda study, trial: seen.append(trial.number)])
    assert seen == [0, 1, 2]
    assert not full.truncated
    assert not _tune(frame_and_folds, n_trials=3, timeout=3600).truncated  # not reached
    seen.clear()
    with pytest.raises(tuning.TuningTimedOut, match=r"stopped the study after \d+ of 200 "
                                                    r"trial\(s\).*lower n_trials"):
        _tune(frame_and_folds, n_trials=200, timeout=0.5,
              callbacks=[lambda study, trial: seen.append(trial.number)])
    assert 1 <= len(seen) < 200  # some trials completed before the clock stopped the study


def test_the_trial_budget_is_a_count_whatever_the_machine_speed(frame_and_folds, monkeypatch):
    """A slow machine (a sleep per fold report) runs the same trials to the same result when no
    timeout is set: the budget is a count, so results do not depend on speed."""
    fast = _tune(frame_and_folds, n_trials=4)
    original = optuna.trial.Trial.report

    def slow_report(self, value, step):
        time.sleep(0.05)
        return original(self, value, step)

    monkeypatch.setattr(optuna.trial.Trial, "report", slow_report)
    slow = _tune(frame_and_folds, n_trials=4)
    assert slow.n_trials == fast.n_trials == 4 and not slow.truncated
    assert slow.best_params == fast.best_params and slow.best_value == fast.best_value


def test_a_timeout_that_leaves_no_completed_trial_says_so(frame_and_folds):
    """A timeout reached before the first trial (0 s: the check precedes every trial) leaves the
    learner without tuned parameters because of the clock: the error names the setting."""
    with pytest.raises(tuning.TuningTimedOut, match=r"base_models\.tuning\.timeout.*0 of 3"):
        _tune(frame_and_folds, n_trials=3, timeout=0.0)


def test_a_zero_trial_budget_is_refused(frame_and_folds):
    with pytest.raises(ValueError, match="n_trials"):
        _tune(frame_and_folds, n_trials=0)


def test_a_learner_whose_every_trial_raises_is_an_error(frame_and_folds):
    with pytest.raises(Exception, match="alpha"):
        _tune(frame_and_folds, name="elastic_net", defaults={"alpha": -1.0},
              space={"l1_ratio": {"type": "float", "low": 0.1, "high": 1.0}}, n_trials=2)


def test_stored_study_names_its_objective_learner_and_data(frame_and_folds, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    _tune(frame_and_folds, n_trials=1, storage=storage, study_name="lightgbm-named")
    study = optuna.load_study(study_name="lightgbm-named", storage=storage)
    assert study.metric_names == [tuning.OBJECTIVE_NAME] == ["tuning_rank_ic_mean"]
    attrs = study.user_attrs
    data = _cache(frame_and_folds).data
    assert attrs["learner"] == "lightgbm" and attrs["n_rows"] == len(data.label)
    assert attrs["data_fingerprint"] == data.fingerprint and len(data.fingerprint) == 16


def test_data_fingerprint_changes_with_any_training_row(frame_and_folds):
    frame, _ = frame_and_folds

    def fingerprint(f):
        return training.LearningSet.from_arrays(f[FEATURES], f["label"], None, f["date"],
                                                tickers=f["ticker"]).fingerprint

    base = fingerprint(frame)
    assert fingerprint(frame.copy()) == base
    nudged = frame.copy()
    nudged.loc[nudged.index[7], FEATURES[0]] += 1e-3
    assert fingerprint(nudged) != base
    assert fingerprint(frame.iloc[:-1]) != base


def test_shared_study_budget_is_counted_across_processes(tmp_path):
    """Two handles on one stored study (as two workers): the creator enqueues the defaults once,
    trials stop at the budget, the trial asked past it is closed as over_budget, never run."""
    from bma_quant.core.models import tuning as tuning_lib

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    opened = [tuning_lib.open_shared_study("s-lgbm", seed=seed, storage=storage,
                                           first_trial={"x": 0.5}) for seed in (1, 2)]
    ran_values = []

    def objective(trial):
        value = tuning_lib.suggest_params(trial, space)["x"]
        ran_values.append(value)
        return -abs(value - 0.3)

    first = tuning_lib.run_trials_to_budget(opened[0], objective, budget=3)
    second = tuning_lib.run_trials_to_budget(opened[1], objective, budget=3)
    assert first == [0, 1, 2] and second == []
    trials = opened[1].trials
    assert trials[0].params == {"x": 0.5}  # the defaults, enqueued once by the creator
    assert [t.user_attrs.get("over_budget") for t in trials] == [None, None, None, True, True]
    assert len(tuning_lib.budget_trials(opened[1])) == 3 and len(ran_values) == 3


def test_a_worker_that_waits_for_nobody_says_nothing(tmp_path, caplog):
    """A tuning worker (wait 0) chooses nothing: it warned "trials still running after 0 s;
    choosing among the complete ones". The process that chooses still says so after its wait."""
    from bma_quant.core.models import tuning as tuning_lib

    study = tuning_lib.open_shared_study("w-lgbm", seed=1, storage=f"sqlite:///{tmp_path / 'w.db'}",
                                         first_trial=None)
    study.ask()  # another process's trial, still running
    with caplog.at_level("WARNING"):
        tuning_lib.wait_for_other_trials(study, 0)
    assert "still running" not in caplog.text
    with caplog.at_level("WARNING"):
        tuning_lib.wait_for_other_trials(study, 0.05, poll=0.01)
    assert "w-lgbm: trials still running after 0 s" in caplog.text


def test_default_pruner_saves_the_second_tuning_fold_of_a_bad_trial(frame_and_folds, monkeypatch):
    """With the project's pruner settings and 2 tuning folds, a pruned trial stops after its
    first fold: pruning saves fits instead of only discarding finished trials."""
    from tests.support import project_params

    frame, folds = frame_and_folds
    tuning_params = project_params()["base_models"]["tuning"]
    data = training.LearningSet.from_arrays(frame[FEATURES], frame["label"], None, frame["date"],
                                            tickers=frame["ticker"])
    cache = training.FoldCache(data, folds[:2])
    fits = []
    original = training.FoldCache.fit_predict_fold

    def counted(self, name, params, k, seed, n_jobs):
        fits.append(k)
        return original(self, name, params, k, seed, n_jobs)

    monkeypatch.setattr(training.FoldCache, "fit_predict_fold", counted)
    space = {"alpha": {"type": "float", "low": 1e-4, "high": 10.0, "log": True}}
    result = tuning.tune_learner(cache, "elastic_net", {"alpha": 1e-3}, space, n_trials=14,
                                 timeout=None, seed=42, n_jobs=1,
                                 sampler={"n_startup_trials": 14},
                                 pruner=tuning_params["pruner"])
    assert result.n_pruned > 0
    assert len(fits) == 2 * result.n_complete + result.n_pruned


def test_studies_opened_at_once_on_a_new_sqlite_file_all_succeed(tmp_path):
    """Learners trained side by side (ThreadRunner) open their studies on the same new SQLite file
    at the same moment: Optuna's table creation must not make one of them fail."""
    import threading

    for attempt in range(3):
        url = f"sqlite:///{tmp_path}/optuna_{attempt}.db"
        barrier, errors, names = threading.Barrier(4), [], []

        def open_study(i, url=url, barrier=barrier, errors=errors, names=names):
            barrier.wait()
            try:
                names.append(tuning.create_study(f"learner-{i}", seed=i, storage=url).study_name)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(exc))

        threads = [threading.Thread(target=open_study, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(names) == [f"learner-{i}" for i in range(4)]
        stored = optuna.get_all_study_names(storage=url)
        assert sorted(stored) == sorted(names)


def test_the_progress_bar_counts_trials_and_attaches_no_log_handler(frame_and_folds, capsys,
                                                                     monkeypatch):
    """Optuna's own bar added a handler to Optuna's logger during the study and put Optuna's
    stderr handler back after it: its warnings printed twice, one with a trial's whole traceback.
    The project's bar is a trial callback and leaves Optuna's logging as it was."""
    import logging

    from tqdm.auto import tqdm

    from bma_quant.core.models import progress

    # drawn as on a terminal (the captured stderr is not one)
    monkeypatch.setattr(progress, "tqdm", lambda *a, **k: tqdm(*a, **{**k, "disable": False}))

    optuna_logger = logging.getLogger("optuna")
    before = list(optuna_logger.handlers)
    result = _tune(frame_and_folds, n_trials=3, show_progress_bar=True)
    assert result.n_trials == 3
    assert optuna_logger.handlers == before
    err = capsys.readouterr().err
    assert "lightgbm" in err and "3/3" in err and "best trial" in err


def test_a_shared_study_shows_no_progress_bar(frame_and_folds, tmp_path, capsys):
    """A shared study's budget counts every process's trials: a bar per worker counted only its
    own (2/6 at the end), so shared studies and tuning workers show none."""
    result = _tune(frame_and_folds, n_trials=2, show_progress_bar=True, shared=True,
                   storage=f"sqlite:///{tmp_path / 'shared.db'}", study_name="s-lightgbm",
                   wait_seconds=0.0)
    assert result.n_trials == 2 and result.shared
    assert "trial/s" not in capsys.readouterr().err


def test_a_trial_whose_predictions_rank_nothing_is_never_the_best():
    """Where every real trial scores below 0 (the signal flips after the training dates), an
    ElasticNet shrunk to its intercept would win with a RankIC of 0 and leave the learner
    constant. Such a trial is stopped as pruned, marked with the fold, and the best is the
    best trial that ranks the names."""
    frame, folds = synthetic_dev(0.05, n_tickers=40, n_days=600, seed=21)
    folds = folds[:2]
    frame = frame.copy()
    flipped = frame["date"] >= folds[0].test_dates[0]
    frame.loc[flipped, "label"] = -frame.loc[flipped, "label"]
    cache = _cache((frame, folds))
    space = {"alpha": {"type": "float", "low": 1e-5, "high": 1.0, "log": True}}
    result = tuning.tune_learner(cache, "elastic_net",
                                 {"alpha": 1e-4, "l1_ratio": 0.5, "max_iter": 5000}, space,
                                 n_trials=12, timeout=None, seed=42, n_jobs=1)
    trials = result.trials
    constant = trials["user_attrs_" + tuning.CONSTANT_ATTR].notna()
    assert constant.any() and (trials.loc[constant, "params_alpha"] > 0.1).all()
    assert (trials.loc[constant, "state"] == "PRUNED").all()
    assert result.n_constant == constant.sum() and result.n_pruned >= result.n_constant
    assert result.best_value < 0  # a real trial, below 0, not a constant's 0
    assert result.best_value == trials.loc[trials["state"] == "COMPLETE", "value"].max()
    assert result.best_params["alpha"] < 0.1
    assert not (set(result.trial_predictions) & set(trials.loc[constant, "number"]))

    # every trial constant: no best trial, the defaults are returned (the layer then reports
    # the learner degenerate if they are constant too), the trials and counts kept
    everything_constant = {"alpha": {"type": "float", "low": 0.5, "high": 1.0}}
    shrunk = tuning.tune_learner(cache, "elastic_net", {"alpha": 0.7, "l1_ratio": 0.5},
                                 everything_constant, n_trials=3, timeout=None, seed=42,
                                 n_jobs=1)
    assert shrunk.best_params == {"alpha": 0.7, "l1_ratio": 0.5}
    assert np.isnan(shrunk.best_value) and shrunk.n_complete == 0
    assert shrunk.n_constant == shrunk.n_pruned == shrunk.n_trials == len(shrunk.trials) == 3
    assert shrunk.trial_predictions == {}


def test_one_name_a_date_is_not_taken_for_constant_predictions():
    """A fold whose dates hold one name each ranks nothing whatever the model: scored 0, not a
    constant model; two or more names with equal predictions are."""
    dates = pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-02"])
    data = training.LearningSet.from_arrays(
        pd.DataFrame({"x": [1.0, 2.0, 3.0]}), pd.Series([0.1, 0.2, 0.3]), None,
        pd.Series(dates), tickers=pd.Series(["A", "A", "B"]))
    fold = training.FoldCache(data, [])
    fold.rows = [(np.array([], dtype=int), np.array([0]))]  # one date, one name
    assert fold.fold_score(0, np.array([0.5]), 5) == (0.0, False)
    fold.rows = [(np.array([], dtype=int), np.array([1, 2]))]  # one date, two equal scores
    assert fold.fold_score(0, np.array([0.5, 0.5]), 2) == (0.0, True)
    assert fold.fold_score(0, np.array([0.4, 0.5]), 2)[1] is False


def test_a_shared_study_tuned_on_other_rows_is_refused_and_its_own_is_joined(frame_and_folds,
                                                                            tmp_path):
    """A named study is joined only by a process scoring on the same folds, data and settings:
    a later run with another fold layout would otherwise choose by values scored on other rows
    (and run no trial: the budget is spent)."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    options = {"n_trials": 3, "shared": True, "storage": storage, "study_name": "s-lightgbm",
               "wait_seconds": 0.0}
    first = _tune(frame_and_folds, **options)
    again = _tune(frame_and_folds, **options)  # the same rows: joined, nothing left to run
    assert again.best_params == first.best_params and again.best_value == first.best_value
    frame, folds = frame_and_folds
    with pytest.raises(tuning.StudyMismatch, match="holds trials scored on other data, tuning "
                                                   "folds or settings") as refused:
        _tune((frame, folds[1:]), **options)  # another fold layout
    assert "Set another base_models.tuning.study_name" in str(refused.value)
    with pytest.raises(tuning.StudyMismatch):
        _tune(frame_and_folds, **options, seed=7)  # models fitted with another seed
    with pytest.raises(tuning.StudyMismatch):
        _tune(frame_and_folds, **options, space={**LGBM_SPACE, "num_leaves": {
            "type": "int", "low": 4, "high": 16}})
    # another sampler seed (a tuning worker) scores on the same rows with the same models
    assert _tune(frame_and_folds, **options, sampler_seed=43).best_value == first.best_value


def test_a_study_filled_before_identities_were_recorded_is_refused(frame_and_folds, tmp_path):
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    old = tuning.open_shared_study("s-lightgbm", seed=1, storage=storage)
    old.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(tuning.StudyMismatch, match="its identity none recorded"):
        _tune(frame_and_folds, n_trials=3, shared=True, storage=storage,
              study_name="s-lightgbm", wait_seconds=0.0)


def test_the_fold_cache_fingerprint_follows_rows_target_and_layout(frame_and_folds):
    frame, folds = frame_and_folds
    data = training.LearningSet.from_arrays(frame[FEATURES], frame["label"], None, frame["date"],
                                            tickers=frame["ticker"])
    base = training.FoldCache(data, folds).fingerprint
    assert training.FoldCache(data, folds).fingerprint == base
    assert training.FoldCache(data, folds[:-1]).fingerprint != base
    assert training.FoldCache(data, folds, max_train_rows=2000).fingerprint != base
    zscored = training.LearningSet.from_arrays(frame[FEATURES], frame["label"], None,
                                               frame["date"], tickers=frame["ticker"],
                                               target_transform="zscore")
    assert training.FoldCache(zscored, folds).fingerprint != base


def test_a_joiner_waits_for_the_creator_to_record_the_identity(tmp_path):
    """Creation is atomic, recording the identity the creator's next step: a process joining in
    between waits for it (instead of recording its own or refusing a study still empty)."""
    import threading

    storage = f"sqlite:///{tmp_path / 'race.db'}"
    created = tuning.create_study("s-x", seed=0, storage=storage)  # identity not recorded yet
    joined = tuning.create_study("s-x", seed=1, storage=storage, load_if_exists=True)
    timer = threading.Timer(0.5, created.set_user_attr, (tuning.IDENTITY_ATTR, "abc"))
    timer.start()
    tuning.check_study_identity(joined, "abc", "x", wait_seconds=10)
    timer.join()
    with pytest.raises(tuning.StudyMismatch, match="its identity abc, this run's other"):
        tuning.check_study_identity(joined, "other", "x", wait_seconds=10)
    # a creator that died before recording: refused once the wait is over
    empty = tuning.create_study("s-y", seed=0, storage=storage)
    with pytest.raises(tuning.StudyMismatch, match="none recorded"):
        tuning.check_study_identity(empty, "abc", "y", wait_seconds=0.3)


def test_a_joiner_that_sees_the_first_trial_reads_the_identity_again():
    """The creator records the identity, then enqueues a trial: both can land between a joiner's
    two reads (identity, then trials); the joiner then reads the identity again, not refuses."""
    from types import SimpleNamespace

    class _Study:
        study_name = "s-z"
        reads = 0

        @property
        def user_attrs(self):
            self.reads += 1
            return {} if self.reads == 1 else {tuning.IDENTITY_ATTR: "abc"}

        trials = [SimpleNamespace(number=0)]  # already enqueued by the creator

    tuning.check_study_identity(_Study(), "abc", "x", wait_seconds=10)


def test_the_trial_bar_is_drawn_on_a_terminal_only(monkeypatch):
    """Redirected to a file (`make run > log`), every redraw of the bar was a carriage return
    inside one endless line."""
    import io

    from bma_quant.core.models.progress import TrialProgressBar

    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", stream)
    bar = TrialProgressBar("lightgbm", 3)
    bar.bar.update(1)
    bar.close()
    assert bar.bar.disable and stream.getvalue() == ""
