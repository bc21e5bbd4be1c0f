"""Pre-flight checks: one clear error naming the parameter, before anything is written."""

import copy
import re

import pandas as pd
import pytest

from bma_quant.core.data import preflight
from bma_quant.core.data.preflight import PreflightError

PARAMS = {
    "temporal": {"prediction_horizon_days": 10, "execution_delay_days": 1, "cv_gap_days": 11,
                 "cv_embargo_days": 3, "max_lookback_days": 252},
    "cv": {"n_splits": 3, "min_train_days": 200, "window": "expanding", "max_train_days": None},
    "periods": {"test_fraction": 0.25, "test_start": None, "dev_start": None},
    "base_models": {"learners": ["lightgbm"], "min_names": 5, "tuning": {"n_trials": 3}},
    "evaluation": {"metrics": {"min_names": 5}, "backtest": {"n_quantiles": 5, "cost_bps": 10.0}},
    "memory": {"target_usage": 0.7, "max_threshold": 0.8},
    "inference": {"model_source": "local", "history_days": None,
                  "portfolio": {"style": "long_short", "n_quantiles": 5, "gross_exposure": 1.0,
                                "max_weight": 0.1}},
}


def _with(path, value):
    params = copy.deepcopy(PARAMS)
    node = params
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return params


def test_valid_parameters_pass():
    preflight.check_parameters(PARAMS)
    preflight.check_learners({"base_models.learners": ["lightgbm"]}, ["lightgbm", "xgboost"])


@pytest.mark.parametrize("path, value, message", [
    ("periods.test_fraction", 1.5, "periods.test_fraction must be in (0, 1), got 1.5"),
    ("cv.n_splits", 0, "cv.n_splits must be >= 1, got 0"),
    ("evaluation.backtest.cost_bps", -1.0, "evaluation.backtest.cost_bps must be >= 0"),
    ("base_models.min_names", 1, "base_models.min_names must be >= 2, got 1"),
    ("memory.target_usage", 0.9, "memory.target_usage (0.9) must not exceed memory.max_threshold"),
    ("cv.window", "rolling", "cv.window must be one of 'expanding', 'sliding', got 'rolling'"),
    ("inference.model_source", "foo", "inference.model_source must be one of 'local', 'registry'"),
    ("inference.portfolio.style", "short", "inference.portfolio.style must be one of"),
    ("inference.portfolio.n_quantiles", 0, "inference.portfolio.n_quantiles must be >= 2, got 0"),
    ("inference.history_days", -5, "inference.history_days must be >= 1, got -5"),
    ("inference.history_days", "abc", "inference.history_days must be a number, got 'abc'"),
    ("temporal.cv_gap_days", 5, "temporal:"),
    ("cv.n_splits", "three", "cv.n_splits must be a number"),
])
def test_out_of_range_parameter_is_named(path, value, message):
    with pytest.raises(PreflightError, match=re.escape(message)):
        preflight.check_parameters(_with(path, value))


def test_a_half_set_or_misspelt_selection_prior_is_refused():
    stacking = {"methods": ["stacking", "bma"], "selection": {"n_validation_folds": 2,
                                                              "default_method": None,
                                                              "min_t_stat": None}}
    preflight.check_parameters({**PARAMS, "stacking": stacking})
    both = copy.deepcopy(stacking)
    both["selection"].update(default_method="bma", min_t_stat=1.0)
    preflight.check_parameters({**PARAMS, "stacking": both})
    half = copy.deepcopy(stacking)
    half["selection"]["default_method"] = "bma"
    with pytest.raises(PreflightError, match="default_method and min_t_stat are set together"):
        preflight.check_parameters({**PARAMS, "stacking": half})
    typo = copy.deepcopy(both)
    typo["selection"]["default_method"] = "bmaa"
    with pytest.raises(PreflightError, match=r"default_method 'bmaa' is not one of "
                                             r"stacking.methods \['stacking', 'bma'\]"):
        preflight.check_parameters({**PARAMS, "stacking": typo})


def test_unknown_learner_is_named_with_the_registered_ones():
    with pytest.raises(PreflightError, match=r"base_models.learners: unknown learner\(s\) 'catboost'"):
        preflight.check_learners({"base_models.learners": ["lightgbm", "catboost"]},
                                 ["lightgbm", "xgboost"])
    with pytest.raises(PreflightError, match="regime_models.learner: unknown learner"):
        preflight.check_learners({"regime_models.learner": "svm"}, ["lightgbm"])
    with pytest.raises(PreflightError, match="base_models.learners is empty"):
        preflight.check_learners({"base_models.learners": []}, ["lightgbm"])


def test_universe_smaller_than_the_binding_min_names_is_refused():
    preflight.check_universe(5, PARAMS)
    params = _with("evaluation.metrics.min_names", 8)
    with pytest.raises(PreflightError,
                       match=r"1 ticker\(s\) but evaluation.metrics.min_names needs at least 8"):
        preflight.check_universe(1, params)


def test_too_few_dates_for_the_cv_layout_is_refused():
    preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=600), PARAMS)
    with pytest.raises(PreflightError, match=r"80 dates .* cv.min_train_days=200"):
        preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=80), PARAMS)


def _gated(threshold, op=">="):
    params = copy.deepcopy(PARAMS)
    params["evaluation"]["gates"] = {"checks": {
        "min_test_dates": {"metric": "n_dates", "op": op, "threshold": threshold},
        "sharpe": {"metric": "sharpe", "op": ">", "threshold": 1.0}}}
    return params


def test_a_test_period_too_short_for_the_date_gate_is_warned_about():
    dates = pd.bdate_range("2018-01-01", periods=800)  # test: 25 % = 200 dates, 189 labelled
    (message,) = preflight.unreachable_test_date_gates(dates, _gated(250))
    assert "evaluation.gates.checks.min_test_dates needs n_dates >= 250" in message
    assert "200 dates" in message and "at most 189" in message
    # 189 is exactly reachable with >=, not with >
    assert preflight.unreachable_test_date_gates(dates, _gated(189)) == []
    assert len(preflight.unreachable_test_date_gates(dates, _gated(189, ">"))) == 1
    # no date gate, nothing to say
    assert preflight.unreachable_test_date_gates(dates, PARAMS) == []


def test_the_shipped_default_split_can_pass_its_date_gate():
    from tests.support import project_params

    params = project_params()
    dates = pd.bdate_range(params["periods"]["dev_start"] or "1995-01-02", "2022-12-28")
    assert preflight.unreachable_test_date_gates(dates, params) == []


def test_preflight_agrees_with_the_short_panel_adaptation():
    params = _with("cv.short_panel", {"adapt": True, "floor": {"min_train_days": 63,
                                                               "min_test_days": 21,
                                                               "n_oof_folds": 2}})
    params["cv"].update(n_splits=5, min_train_days=756, n_tuning_folds=2)
    preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=300), params)  # adapts
    with pytest.raises(PreflightError, match="at least 137 development dates"):
        preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=150), params)
    params["cv"]["short_panel"]["adapt"] = False
    with pytest.raises(PreflightError, match="cv.short_panel.adapt: true"):
        preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=300), params)
