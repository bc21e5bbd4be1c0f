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
    "cv": {"n_splits": 3, "min_train_days": 200, "window": "expanding", "max_train_days": None,
           "scheme": "walk_forward"},
    "periods": {"test_fraction": 0.25, "test_start": None, "dev_start": None},
    "base_models": {"learners": ["lightgbm"], "min_names": 5, "seed": 42, "max_train_rows": 10,
                    "tuning": {"n_trials": 3, "max_train_rows": 10, "search_space": {
                        "elastic_net": {"alpha": {"type": "float", "low": 1e-4, "high": 0.1}}}}},
    "evaluation": {"metrics": {"min_names": 5}, "overfitting": {"n_blocks": 16},
                   "gates": {"model": "final", "headline_metrics": ["rank_ic", "max_drawdown"],
                             "checks": {"ic": {"metric": "ic", "op": ">", "threshold": 0.02}}},
                   "backtest": {"n_quantiles": 5, "cost_bps": 10.0, "periods_per_year": 252}},
    "memory": {"target_usage": 0.7, "max_threshold": 0.8},
    "stacking": {"methods": ["stacking", "bma"], "regime": {"regimes": ["bull", "bear"]}},
    "regime_models": {"detector": "hmm", "target_transform": "rank",
                      "hmm": {"stay_prior": 0.95, "columns": ["perf_momentum"]}},
    "feature_engineering": {"factors": {"ma_windows": [5, 20], "return_windows": [1, 5]},
                            "lags": {"candidates": [0, 1]},
                            "ewm": {"halflife_candidates": [0, 5]},
                            "transforms": {"winsorise": [0.01, 0.99]}},
    "registry": {"max_reproduction_diff": 1e-4},
    "inference": {"model_source": "local", "history_days": None,
                  "portfolio": {"style": "long_short", "n_quantiles": 5, "gross_exposure": 1.0,
                                "max_weight": 0.1}},
}


def _with(path, value):
    params = copy.deepcopy(PARAMS)
    node = params
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return params


def test_valid_parameters_pass():
    preflight.check_parameters(PARAMS)
    preflight.check_learners({"base_models.learners": ["lightgbm"]}, ["lightgbm", "xgboost"])


@pytest.mark.parametrize("path, value, message", [
    ("periods.test_fraction", 1.5, "periods.test_fraction must be in (0, 1), got 1.5"),
    ("cv.n_splits", 0, "cv.n_splits must be >= 1, got 0"),
    ("base_models.target_zscore_clip", 0, "target_zscore_clip must be > 0, got 0"),
    ("evaluation.backtest.rebalance_days", 0, "rebalance_days must be >= 1, got 0"),  # null: h
    ("stacking.selection.n_validation_folds", 0, "n_validation_folds must be >= 1, got 0"),
    ("registry.reproduction_dates", 0, "reproduction_dates must be >= 1, got 0"),  # null: all
    ("regime_models.rules.net_vote_share", 1.5, "net_vote_share must be in [0, 1], got 1.5"),
    ("cv.combinatorial", {"n_groups": 6, "n_test_groups": 6},
     "cv.combinatorial.n_test_groups (6) must be below cv.combinatorial.n_groups (6)"),
    ("feature_engineering.factors", {"momentum_long": 13, "momentum_skip": 21},
     "feature_engineering.factors.momentum_skip (21) must be below momentum_long (13)"),
    ("regime_models.hmm.kmeans_inits", 0, "regime_models.hmm.kmeans_inits must be >= 1, got 0"),
    ("regime_models.hmm.tol", -1, "regime_models.hmm.tol must be > 0, got -1"),
    ("regime_models.leak_audit.atol", -1, "regime_models.leak_audit.atol must be >= 0, got -1"),
    ("evaluation.backtest.limit_locks.grid.on_share", 1.5,
     "evaluation.backtest.limit_locks.grid.on_share must be in (0, 1], got 1.5"),
    ("registry.thin_cross_section_share", 2, "registry.thin_cross_section_share must be in [0, 1]"),
    ("feature_engineering.selection.min_factor_ic_dates", 0,
     "feature_engineering.selection.min_factor_ic_dates must be >= 1, got 0"),
    ("feature_engineering.factors.reversal_beta_window", 1,
     "feature_engineering.factors.reversal_beta_window must be >= 2, got 1"),
    ("evaluation.backtest.cost_bps", -1.0, "evaluation.backtest.cost_bps must be >= 0"),
    ("base_models.min_names", 1, "base_models.min_names must be >= 2, got 1"),
    ("memory.target_usage", 0.9, "memory.target_usage (0.9) must not exceed memory.max_threshold"),
    ("cv.window", "rolling", "cv.window must be one of 'expanding', 'sliding', got 'rolling'"),
    ("inference.model_source", "foo", "inference.model_source must be one of 'local', 'registry'"),
    ("inference.portfolio.style", "short", "inference.portfolio.style must be one of"),
    ("inference.portfolio.n_quantiles", 0, "inference.portfolio.n_quantiles must be >= 2, got 0"),
    ("inference.history_days", -5, "inference.history_days must be >= 0, got -5"),
    ("stacking.methods", "bma", "stacking.methods must be a list (e.g. [bma]), got 'bma'"),
    ("base_models.learners", "lightgbm", "base_models.learners must be a list"),
    ("feature_engineering.ewm.halflife_candidates", [0, -2.5], "halflife_candidates must list "
                                                               "numbers >= 0"),
    ("base_models.tuning.search_space.elastic_net.alpha", {"low": 1.0, "high": 0.1},
     "search_space.elastic_net.alpha: low (1.0) must not exceed high (0.1)"),  # type omitted
    ("inference.history_days", "abc", "inference.history_days must be a number, got 'abc'"),
    ("evaluation.backtest.periods_per_year", 0, "periods_per_year must be > 0, got 0"),
    ("base_models.max_train_rows", -5, "base_models.max_train_rows must be >= 1, got -5"),
    ("base_models.tuning.max_train_rows", -5, "tuning.max_train_rows must be >= 1, got -5"),
    ("regime_models.hmm.stay_prior", 1.5, "regime_models.hmm.stay_prior must be in (0, 1)"),
    ("registry.max_reproduction_diff", -1, "max_reproduction_diff must be >= 0, got -1"),
    ("temporal.prediction_horizon_days", "abc", "temporal.prediction_horizon_days must be a number"),
    ("base_models.seed", "abc", "base_models.seed must be a number, got 'abc'"),
    ("regime_models.detector", "kmeans", "regime_models.detector must be one of 'rules', "),
    ("stacking.methods", [], "stacking.methods must list one or more of 'stacking'"),
    ("stacking.methods", ["stacking", "foo"], "stacking.methods must list one or more of"),
    ("stacking.regime.regimes", ["bull", "foo"], "stacking.regime.regimes must list one or more"),
    ("regime_models.target_transform", "ranks", "regime_models.target_transform must be one of"),
    ("regime_models.hmm.columns", ["perf_momentum", "perf_revrsal"],
     "regime_models.hmm.columns must list one or more of 'market_return'"),
    ("cv.scheme", "foo", "cv.scheme must be one of 'walk_forward', 'combinatorial', got 'foo'"),
    ("stacking.elastic_net.positive", False,
     "stacking.elastic_net.positive must be true, got False: the stacking weights"),
    ("feature_engineering.factors.ma_windows", [-5], "factors.ma_windows must list whole numbers "
                                                     ">= 1, got [-5]"),
    ("feature_engineering.factors.return_windows", [0, 5], "return_windows must list whole"),
    ("feature_engineering.lags.candidates", [0, -1], "lags.candidates must list whole numbers >= 0"),
    ("feature_engineering.factors.min_periods_share", 1.5,
     "feature_engineering.factors.min_periods_share must be in (0, 1], got 1.5"),
    ("feature_engineering.factors.amihud_min_traded_share", 0.0,
     "feature_engineering.factors.amihud_min_traded_share must be in (0, 1], got 0.0"),
    ("feature_engineering.transforms.winsorise", [0.99, 0.01], "winsorise must be [low, high]"),
    ("evaluation.overfitting.n_blocks", 7, "n_blocks must be an even whole number >= 2"),
    ("evaluation.gates.model", "foo", "evaluation.gates.model must be one of the run's models"),
    ("evaluation.gates.checks.ic.metric", "icc", "checks.ic.metric 'icc' is not a metric"),
    ("evaluation.gates.checks.ic.op", "=>", "evaluation.gates.checks.ic.op must be one of"),
    ("evaluation.gates.headline_metrics", ["rank_ic", "foo"],
     "evaluation.gates.headline_metrics: 'foo' is not a metric"),
    ("evaluation.gates.checks.ic.threshhold", 0.5, "checks.ic has unknown key(s) threshhold"),
    ("evaluation.gates.checks.ic.threshold", "0.5x", "checks.ic.threshold must be a number"),
    ("evaluation.gates.checks.ic", 0.02, "evaluation.gates.checks.ic must be a mapping"),
    ("periods.test_fraction", None, "periods.test_start and periods.test_fraction are both null"),
    ("periods.test_start", "2020-13-01",
     "periods.test_start must be a date written YYYY-MM-DD (or null), got '2020-13-01' (month"),
    ("periods.test_start", "02/01/2020", "periods.test_start must be a date written YYYY-MM-DD"),
    ("periods.dev_start", "1995", "periods.dev_start must be a date written YYYY-MM-DD"),
    ("base_models.tuning.search_space.elastic_net.alpha.low", 1.0,
     "search_space.elastic_net.alpha: low (1.0) must not exceed high (0.1)"),
    ("temporal.cv_gap_days", 5, "temporal:"),
    ("cv.n_splits", "three", "cv.n_splits must be a number"),
    ("processing.factor_ffill_limit", {"eps": -1},
     "processing.factor_ffill_limit.eps must be >= 0, got -1"),
    ("processing.ffill_limit", {"x": 1}, "processing.ffill_limit must be a number"),
    ("evaluation.plots.top_features", -1, "evaluation.plots.top_features must be >= 1, got -1"),
    # found by a probe: each failed mid-run with a traceback, or ran with a silent result
    ("evaluation.gates.scope", "allx", "evaluation.gates.scope must be one of 'all', 'bull'"),
    ("base_models.tuning.search_space.xgboost.max_depth.type", "intx",
     "search_space.xgboost.max_depth.type must be one of float, int, categorical, got 'intx'"),
    ("base_models.tuning.search_space.elastic_net.alpha",
     {"type": "float", "low": -1.0, "high": 0.1, "log": True},
     "search_space.elastic_net.alpha: low (-1.0) must be > 0 with log: true"),
    ("regime_models.hmm.n_iter", 0, "regime_models.hmm.n_iter must be >= 1, got 0"),
    ("regime_models.evidence.trend_window", -5,
     "regime_models.evidence: evidence: windows and min_cross_section must be >= 2"),
    ("feature_engineering.factors.factor_performance_params.min_cross_section", 1,
     "feature_engineering.factors.factor_performance_params: evidence: windows"),
    ("stacking.elastic_net.alpha", -5, "stacking.elastic_net.alpha must be >= 0, got -5"),
    ("feature_engineering.selection.fallback_features", 0,
     "feature_engineering.selection.fallback_features must be >= 1, got 0"),
    ("feature_engineering.selection.redundancy_threshold", -5,
     "feature_engineering.selection.redundancy_threshold must be in (0, 1], got -5"),
    ("processing.eligibility.window_days", -5,
     "processing.eligibility.window_days must be >= 1, got -5"),
    ("feature_engineering.fear_greed.momentum_window", 0,
     "feature_engineering.fear_greed.momentum_window must be >= 2, got 0"),
])
def test_out_of_range_parameter_is_named(path, value, message):
    with pytest.raises(PreflightError, match=re.escape(message)):
        preflight.check_parameters(_with(path, value))


@pytest.mark.parametrize("path, value", [
    ("feature_engineering.sample_weights.half_life_days", 0),  # <= 0 / null: equal weights
    ("feature_engineering.sample_weights.half_life_days", None),
    ("feature_engineering.ewm.halflife_candidates", [0, 2.5, 5]),
    ("feature_engineering.selection.min_features", 0),  # no refill below the gate
    ("regime_models.context_features.columns", []),  # probabilities only
    ("evaluation.backtest.rebalance_days", None),
    ("inference.history_days", 0),
    ("cv.n_tuning_folds", 0),
    ("cv.scheme", "combinatorial"),
    ("base_models.max_train_rows", None),
    ("base_models.max_train_rows", 3e5),
    ("feature_engineering.transforms.winsorise", None),
    ("stacking.methods", ["bma"]),
    ("evaluation.gates.checks.cagr", {"metric": "cagr", "op": ">", "threshold": 0.0}),
    ("evaluation.gates.checks.ic", None),  # dropped
    ("processing.factor_ffill_limit", {"book_to_market": 70, "revision": None}),
])
def test_valid_edge_values_pass(path, value):
    params = copy.deepcopy(PARAMS)
    for section in ("sample_weights", "selection", "ewm"):
        params["feature_engineering"].setdefault(section, {})
    params["regime_models"].setdefault("context_features", {})
    params["cv"].setdefault("n_tuning_folds", 1)
    params["inference"].setdefault("history_days", None)
    preflight.check_parameters(_with_new(params, path, value))


def _with_new(params, path, value):
    node = params
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return params


def test_too_few_folds_for_the_tuning_or_the_ensemble_choice_are_refused_up_front():
    """n_splits 2 with 1 tuning fold leaves one out-of-fold fold: no walk-forward ensemble
    choice, no honest score, a first champion no later version could be compared with; tuning
    with no tuning fold failed after feature engineering with a traceback."""
    params = _with("cv.n_splits", 2)
    params["cv"]["n_tuning_folds"] = 1
    with pytest.raises(PreflightError, match=r"leaves 1 out-of-fold fold\(s\).*n_splits >= 4"):
        preflight.check_parameters(params)
    params = _with("cv.n_tuning_folds", 0)
    params["base_models"]["tuning"].update(enabled=True, learners=["elastic_net"])
    with pytest.raises(PreflightError, match="tuning is enabled for elastic_net but "
                                             "cv.n_tuning_folds is 0"):
        preflight.check_parameters(params)
    params["base_models"]["tuning"]["enabled"] = False
    preflight.check_parameters(params)
    # a sliding window without its length was reported as "not enough dates for the split"
    with pytest.raises(PreflightError, match="sliding but cv.max_train_days is not set"):
        preflight.check_parameters(_with("cv.window", "sliding"))
    sliding = _with("cv.window", "sliding")
    sliding["cv"]["max_train_days"] = 500
    preflight.check_parameters(sliding)


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
    typo["selection"]["min_t_stat"] = None  # the typo is named first, not the half-set prior
    with pytest.raises(PreflightError, match=r"default_method 'bmaa' is not one of"):
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
                       match=r"1 ticker\(s\) but \d+ parameter\(s\) need more names per "
                             r"date: evaluation.metrics.min_names \(8\), "):
        preflight.check_universe(1, params)


def test_too_few_dates_for_the_cv_layout_is_refused():
    preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=600), PARAMS)
    with pytest.raises(PreflightError, match=r"80 dates .* cv.min_train_days=200"):
        preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=80), PARAMS)


@pytest.mark.parametrize("periods", [{"test_fraction": 0.001}, {"test_start": -11}])
def test_a_test_period_without_a_labelled_date_is_refused(periods):
    """`periods.test_fraction=0.001` (one test date) was warned about only when a gate counted
    test dates; the run replaced the evaluation and registered a chain checked on one date.
    The last d + h = 11 test dates have no label: a test period of at most 11 is refused; 12
    passes."""
    dates = pd.bdate_range("2020-01-01", periods=600)
    params = copy.deepcopy(PARAMS)
    given = dict(periods)
    if "test_start" in given:
        given = {"test_fraction": None, "test_start": str(dates[given["test_start"]].date())}
    params["periods"] = {**params["periods"], **given}
    with pytest.raises(PreflightError, match=r"the last 11 \(d \+ h\) have no label yet: no test "
                                             r"date can be scored"):
        preflight.check_cv_layout(dates, params)
    params["periods"] = {**params["periods"], "test_fraction": None,
                         "test_start": str(dates[-12].date())}
    preflight.check_cv_layout(dates, params)


def test_combinatorial_groups_the_out_of_fold_dates_cannot_hold_are_refused_up_front():
    """`cv.scheme: combinatorial` with 14 groups (or a 20-day horizon's wider purge) on a short
    panel failed at the evaluation's path split, node 26 of 42, after every learner was
    trained; refused before the run now, naming the setting. The default 6 groups pass."""
    dates = pd.bdate_range("2020-01-01", periods=900)
    params = copy.deepcopy(PARAMS)
    params["cv"] = {**params["cv"], "scheme": "combinatorial",
                    "combinatorial": {"n_groups": 6, "n_test_groups": 2}}
    preflight.check_cv_layout(dates, params)
    params["cv"]["combinatorial"]["n_groups"] = 40
    with pytest.raises(PreflightError, match=r"cv.scheme combinatorial: Not enough dates for 40 "
                                             r"combinatorial groups: \d+ dates from .* fewer "
                                             r"cv.combinatorial.n_groups"):
        preflight.check_cv_layout(dates, params)


def test_too_few_dates_after_dev_start_names_dev_start_not_only_the_panel():
    """600 dates are enough; a dev_start 520 dates in leaves 80: the error says dev_start did it."""
    dates = pd.bdate_range("2020-01-01", periods=600)
    params = copy.deepcopy(PARAMS)
    params["periods"] = {**params["periods"], "dev_start": str(dates[520].date())}
    with pytest.raises(PreflightError, match=rf"periods.dev_start \({dates[520].date()}\) leaves "
                                             r"out the panel's first 520 dates: an earlier one"):
        preflight.check_cv_layout(dates, params)


def test_period_dates_outside_the_data_are_named_not_called_too_few_dates():
    dates = pd.bdate_range("2020-01-01", periods=600)  # ..2022-04-19
    for periods, said in (
            ({"dev_start": "2025-01-02"}, r"periods.dev_start \(2025-01-02\) is after the "
                                          r"panel's last date \(2022-04-19\)"),
            ({"test_start": "2030-01-02"}, r"periods.test_start \(2030-01-02\) is after"),
            ({"test_start": "2019-06-03"}, r"periods.test_start \(2019-06-03\) leaves no date"),
            ({"dev_start": "2021-01-04", "test_start": "2020-06-01"},
             r"periods.test_start \(2020-06-01\) is not after periods.dev_start \(2021-01-04\)"
             r"\. The test period follows development: set periods.test_start after")):
        params = copy.deepcopy(PARAMS)
        params["periods"] = {**params["periods"], **periods}
        with pytest.raises(PreflightError, match=said) as refused:
            preflight.check_cv_layout(dates, params)
        # the advice fits the problem: dates in the data are not told to go inside it
        assert ("inside the data" in str(refused.value)) == ("is not after" not in said)


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
    with pytest.raises(PreflightError, match="at least 170 development dates"):
        preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=150), params)
    params["cv"]["short_panel"]["adapt"] = False
    with pytest.raises(PreflightError, match="cv.short_panel.adapt: true"):
        preflight.check_cv_layout(pd.bdate_range("2020-01-01", periods=300), params)


def test_the_allowed_words_are_the_ones_the_layers_accept():
    """preflight keeps literal copies (it must not import the learner libraries): the same
    values as the constants the layers check against, and the project's parameters pass."""
    from bma_quant.core.ensemble.combiners import METHODS
    from bma_quant.core.features import transforms
    from bma_quant.core.models.training import TARGET_TRANSFORMS
    from bma_quant.core.regimes.regime_learning import COMBINE_MODES, TRAINING_MODES
    from bma_quant.pipelines.evaluation.nodes import CV_SCHEMES
    from tests.support import project_params

    choices = preflight.CHOICES
    assert preflight.ENSEMBLE_METHODS == METHODS
    assert preflight.TARGET_TRANSFORMS == TARGET_TRANSFORMS
    assert choices["feature_engineering.transforms.method"] == transforms.METHODS
    assert choices["regime_models.combine"] == COMBINE_MODES
    assert choices["regime_models.training"] == TRAINING_MODES
    assert choices["cv.scheme"] == CV_SCHEMES
    from bma_quant.core.regimes.detection import REGIMES
    from bma_quant.core.regimes.regime_evidence import EVIDENCE_COLUMNS
    assert preflight.REGIME_LABELS == REGIMES
    assert set(EVIDENCE_COLUMNS) <= set(preflight.REGIME_EVIDENCE)
    preflight.check_parameters(project_params())


def test_misspelt_keys_are_found_with_the_names_they_were_meant_to_be():
    known = {"cv": {"n_splits": 5, "window": "expanding"},
             "base_models": {"defaults": {"lightgbm": {"num_leaves": 31}}},
             "temporal": {"prediction_horizon_days": 10}}
    given = {"cv": {"n_split": 3, "window": "expanding"},
             "base_models": {"defaults": {"lightgbm": {"max_depth": 4}}},  # open: library args
             "temporal": {"prediction_horizon": 5}, "foo": {"bar": 1},
             "_trials": 3}  # an OmegaConf private key for interpolation: not a parameter
    assert preflight.unknown_parameters(given, known) == {
        "cv.n_split": ["n_splits"], "temporal.prediction_horizon": ["prediction_horizon_days"],
        "foo": []}
    import yaml

    from tests.support import PROJECT_ROOT, project_params
    shipped = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters*.yml")):
        shipped.update(yaml.safe_load(path.read_text()))
    smoke = yaml.safe_load((PROJECT_ROOT / "conf" / "smoke" / "parameters.yml").read_text())
    assert preflight.unknown_parameters(project_params(), shipped) == {}
    assert preflight.unknown_parameters(smoke, shipped) == {}


def test_a_section_set_to_one_value_is_refused_by_name():
    known = {"cv": {"n_splits": 5, "window": "expanding"}, "run_name": None}
    assert preflight.mapping_problems({"cv": 5, "run_name": "x"}, known) == [
        "cv must be a mapping of n_splits, window, got 5"]
    assert preflight.mapping_problems({"cv": {"n_splits": 3}}, known) == []


def test_a_value_of_the_wrong_kind_or_an_unmeant_null_is_refused_by_name():
    """Each of these ran (or failed deep in a layer with a traceback naming no parameter):
    `enabled: maybe` read as true, 5.5 folds as 5, a null section crashed the stacking layer."""
    from tests.support import deep_update, project_params

    known = project_params()
    assert preflight.value_kind_problems(known, known) == []
    bad = deep_update(known, {
        "base_models": {"tuning": {"enabled": "maybe", "n_trials": 3}},
        "cv": {"n_splits": 5.5, "min_train_days": 1e3},
        "regime_models": {"smoothing": None, "min_samples_per_regime": "abc"},
        "stacking": {"bma": None, "methods": "bma"},
        "evaluation": {"backtest": {"cost_bps": 2, "rebalance_days": 2.5},
                       "gates": {"checks": {"ic": None}}},
        "periods": {"dev_start": None, "test_start": "2020-01-02"},
        "run": {"timeout_seconds": 90.5},
        "processing": {"stale": {"mask_after": None}, "ffill_limit": None},
    })
    assert preflight.value_kind_problems(bad, known) == [
        "base_models.tuning.enabled must be true or false, got 'maybe'",
        "cv.n_splits must be a whole number, got 5.5",
        "cv.min_train_days must be a whole number, got 1000.0 (write 1000: 1e3 or 1000.0 reads "
        "as a fraction)",
        "processing.ffill_limit must not be null (conf/base: 5)",
        "evaluation.backtest.rebalance_days must be a whole number, got 2.5",
        "regime_models.smoothing must be a mapping of enabled, min_duration_days, got null (to "
        "turn it off, set its `enabled: false`)",
        "regime_models.min_samples_per_regime must be a whole number, got 'abc'",
        "stacking.methods must be a list, got 'bma'",
        "stacking.bma must be a mapping of bootstrap_draws, block_dates, seed, got null",
    ]  # a whole cost, fractional seconds, a dropped gate and documented nulls pass
    decimal = preflight.value_kind_problems(
        deep_update(known, {"data": {"decimal": None}}), known)
    assert decimal == ["data.decimal must not be null (conf/base: '.') (`--params` splits its "
                       "values at commas, so `data.decimal=,` gives none: set it in "
                       "conf/local/parameters.yml)"]
    for path in preflight.NULLABLE:  # each names a parameter conf/base has, not null there
        assert preflight.lookup(known, path) is not None, path
    for path in preflight.KIND_WHEN_SET:  # each a parameter conf/base leaves null
        parent, _, key = path.rpartition(".")
        assert key in (preflight.lookup(known, parent) if parent else known), path
        assert preflight.lookup(known, path) is None, path
    nulls = deep_update(known, {
        "base_models": {"tuning": {"timeout": "abc", "study_name": 5}, "features": 5},
        "evaluation": {"gates": {"max_pbo": "abc"}, "plots": {"models": 5}},
        "run_name": 5, "synthetic": {"n_tickers": None, "factor_payoffs": None}})
    assert preflight.value_kind_problems(nulls, known) == [
        "base_models.features must be a list, got 5",
        "base_models.tuning.timeout must be a number, got 'abc'",
        "base_models.tuning.study_name must be text, got 5",
        "evaluation.gates.max_pbo must be a number, got 'abc'",
        "evaluation.plots.models must be a list, got 5",
        "run_name must be text, got 5",
        "synthetic.n_tickers must not be null (conf/base: 200)",
    ]  # synthetic.factor_payoffs is null in conf/base: null is its "off"


def test_a_test_start_needs_no_test_fraction():
    params = copy.deepcopy(PARAMS)
    params["periods"].update(test_start="2019-01-02", test_fraction=None)
    preflight.check_parameters(params)
    dates = pd.bdate_range("2015-01-01", "2020-12-31")
    from bma_quant.core.data.split import configured_test_fraction, split_dates
    assert configured_test_fraction(params["periods"]) is None
    assert split_dates(dates, 11, None, "2019-01-02")["test_start"] == "2019-01-02"


def test_a_synthetic_market_planted_for_another_horizon_is_named():
    from tests.support import deep_update, project_params

    params = project_params()
    assert preflight.synthetic_timing_warnings(params) == []  # shipped: both 10, both 1
    warnings = preflight.synthetic_timing_warnings(
        deep_update(params, {"synthetic": {"horizon": 5}}))
    assert warnings == [
        "synthetic.horizon (5) differs from temporal.prediction_horizon_days (10): the planted "
        "signal pays over other days than the label window measures; set both to one value "
        "unless the mismatch is the experiment"]


def test_a_dev_start_leaving_less_history_than_the_chain_warm_up_is_named():
    """The pipeline's features start at dev_start, the registered chain's read the full warm-up:
    with fewer dates between them and the checked test dates the reproduction check fails at
    the very end of the run, so it is said at the start."""
    from tests.support import project_params

    params = project_params()
    dates = pd.bdate_range("2015-01-01", "2022-12-30")
    late = copy.deepcopy(params)
    late["periods"].update(dev_start="2021-06-01", test_fraction=0.2)
    warnings = preflight.cut_history_warnings(dates, late)
    assert len(warnings) == 1 and warnings[0].startswith("periods.dev_start (2021-06-01) leaves")
    from bma_quant.core.features.warmup import largest_chain_warmup_days

    assert f"may need up to {largest_chain_warmup_days(late)}" in warnings[0]
    assert largest_chain_warmup_days(late) == 812  # fear-greed 504 + lag 5 + 24 half-lives of 10 + 63
    for periods in ({"dev_start": "2016-01-04"}, {"dev_start": None}):  # history enough / all
        early = copy.deepcopy(params)
        early["periods"].update(test_fraction=0.2, **periods)
        assert preflight.cut_history_warnings(dates, early) == []
    late["registry"]["enabled"] = False  # nothing is registered: nothing to fail
    assert preflight.cut_history_warnings(dates, late) == []


def _documented_nulls(text: str) -> set[str]:
    """Dotted paths of the keys whose comment says what null means ("null = ...", "(null: off)",
    "off = null"): the key line's own comment, the comment lines aligned under it (a deep '#'),
    and the comment block just above it."""
    import re

    said = re.compile(r"null\s*[=:)]|=\s*null|\(null")
    comments: dict[str, list[str]] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            block, last = [], None
        elif stripped.startswith("#"):
            if last is not None and line.index("#") >= 20:  # aligned under a key's comment
                comments[last].append(stripped)
            else:
                block.append(stripped)
        elif match := re.match(r"(\s*)([A-Za-z_]\w*):", line):
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            last = ".".join(k for _, k in stack)
            comments[last] = [line.partition("#")[2], *block]
            block = []
    return {path for path, text in comments.items() if said.search(" ".join(text))}


def test_every_null_conf_base_documents_is_accepted():
    """A documented `null = ...` that pre-flight refused would be a regression (it refused
    base_models.max_train_rows: null = every row): each such key is NULLABLE or null by default."""
    from tests.support import CONF, project_params

    known = project_params()
    documented = set().union(*(_documented_nulls(path.read_text())
                               for path in sorted(CONF.glob("parameters*.yml"))))
    assert {"base_models.max_train_rows", "processing.stale.mask_after",
            "run.timeout_seconds"} <= documented  # the parser finds the three comment styles
    refused = sorted(p for p in documented
                     if preflight.lookup(known, p) is not None and p not in preflight.NULLABLE)
    assert refused == []


def test_a_file_generated_for_another_horizon_is_named_by_what_it_records():
    from tests.support import project_params

    params = project_params()
    planted = {"synthetic.horizon": 10, "synthetic.execution_delay": 1}
    assert preflight.synthetic_timing_warnings(params, planted) == []
    params["temporal"]["prediction_horizon_days"] = 5
    assert preflight.synthetic_timing_warnings(params, planted) == [
        "the data file was generated with synthetic.horizon = 10, but "
        "temporal.prediction_horizon_days is 5: the planted signal pays over other days than the "
        "label window measures; set both to one value unless the mismatch is the experiment"]


def test_settings_of_which_one_silently_wins_are_said():
    from tests.support import deep_update, project_params

    shipped = project_params()
    assert preflight.contradictory_settings(shipped) == []
    both = deep_update(shipped, {"feature_engineering": {"selection": {"min_features": 30,
                                                                        "max_features": 5}}})
    assert preflight.contradictory_settings(both) == [
        "feature_engineering.selection.min_features (30) is above max_features (5): at most 5 "
        "factors are kept"]
    fewer = deep_update(shipped, {"base_models": {"learners": ["elastic_net", "lightgbm"]}})
    assert preflight.contradictory_settings(fewer) == [
        "base_models.tuning.learners names xgboost, which base_models.learners does not train: "
        "not tuned"]
    untuned = deep_update(fewer, {"base_models": {"tuning": {"enabled": False}}})
    assert preflight.contradictory_settings(untuned) == []
    composite = deep_update(shipped, {"base_models": {"learners": ["alpha_composite"],
                                                      "tuning": {"enabled": False}}})
    assert preflight.contradictory_settings(composite) == [
        "regime_models.learner (elastic_net) is not among base_models.learners: the regime layer "
        "trains it on its regime_models.learner_params (use_tuned_params finds no tuned ones) and, "
        "with compare_global, fits its global comparison itself"]
    own = deep_update(composite, {"regime_models": {"use_tuned_params": False}})
    assert preflight.contradictory_settings(own) == []  # its own parameters, asked for


def test_a_test_period_shorter_than_two_rebalances_is_warned_about():
    dates = pd.bdate_range("2018-01-01", periods=800)  # test: 200 dates, 189 scored
    assert preflight.few_rebalance_warnings(dates, PARAMS) == []  # every 10 days (the horizon)
    params = copy.deepcopy(PARAMS)
    params["evaluation"]["backtest"]["rebalance_days"] = 100
    (message,) = preflight.few_rebalance_warnings(dates, params)
    assert "rebalance_days (100) leaves the test period" in message
    assert "189 scored dates) fewer than two rebalances" in message
    params["evaluation"]["backtest"]["rebalance_days"] = 94
    assert preflight.few_rebalance_warnings(dates, params) == []


def test_an_embargo_that_drops_whole_test_windows_from_later_training_is_warned_about():
    # 800 dates: 589 development dates, folds' test windows of 126 dates after 200 + 11
    dates = pd.bdate_range("2018-01-01", periods=800)
    assert preflight.stale_fold_warnings(dates, PARAMS) == []  # embargo 3: newest history kept
    # up to test window - gap (115) the third fold still trains on the date before its purge
    assert preflight.stale_fold_warnings(dates, _with("temporal.cv_embargo_days", 114)) == []
    (message,) = preflight.stale_fold_warnings(dates, _with("temporal.cv_embargo_days", 115))
    assert message.startswith("temporal.cv_embargo_days (115) drops whole earlier test windows")
    assert "1 of 3 folds train on nothing newer than 127 dates before their test window " \
           "(fold 2; the purge alone leaves 12)" in message
    (message,) = preflight.stale_fold_warnings(dates, _with("temporal.cv_embargo_days", 500))
    assert "1 of 3 folds train on nothing newer than 127 dates" in message  # fold 1's window gone
    # windows of unequal length (the last ones get the spare dates): a fold whose previous
    # window was shorter than its own is stale too
    for n in (801, 802, 803, 805):
        uneven = pd.bdate_range("2018-01-01", periods=n)
        (message,) = preflight.stale_fold_warnings(uneven, _with("temporal.cv_embargo_days", 400))
        assert "1 of 3 folds train on nothing newer than 12" in message, n  # 127 or 128
    # dates that cannot hold the folds: check_cv_layout's own error, not a second message
    assert preflight.stale_fold_warnings(dates[:150], PARAMS) == []


def test_a_key_set_in_the_wrong_section_is_named_with_its_section():
    from bma_quant.core.data.preflight import describe_unknown, unknown_parameters

    known = {"temporal": {"cv_gap_days": 10, "horizon": 10},
             "cv": {"n_splits": 5}, "periods": {"dev_start": None}, "evaluation": {"cost_bps": 5}}
    found = unknown_parameters({"periods": {"cv_gap_days": 5}, "cv": {"n_split": 3},
                                "evaluation": {"cv_gap_dayz": 1}, "temporal": {"zzqq": 1}},
                               known)
    assert describe_unknown("periods.cv_gap_days", found["periods.cv_gap_days"]) == \
        "periods.cv_gap_days (did you mean temporal.cv_gap_days?)"
    assert found["cv.n_split"] == ["n_splits"]  # its own section first
    assert found["evaluation.cv_gap_dayz"] == ["temporal.cv_gap_days"]
    assert found["temporal.zzqq"] == []
    # a name in several sections suggests none of them (any pick could be the wrong setting)
    known["cv"]["horizon"] = 5
    assert unknown_parameters({"periods": {"horizon": 1}}, known)["periods.horizon"] == []


def test_a_sliding_window_shorter_than_the_first_folds_is_refused():
    params = _with_new(_with("cv.window", "sliding"), "cv.max_train_days", 5)
    with pytest.raises(PreflightError, match=re.escape(
            "cv.max_train_days (5) must be >= cv.min_train_days")):
        preflight.check_parameters(params)
    preflight.check_parameters(_with_new(_with("cv.window", "sliding"), "cv.max_train_days",
                                         10_000))


def test_a_price_grid_needing_more_closes_than_its_window_is_refused():
    """min_closes 20 (the default) over a 10-close window: no name ever got a grid, so no limit
    price was rounded to its tick, and nothing said so."""
    params = _with("evaluation.backtest.limit_locks.grid.window", 10)
    with pytest.raises(PreflightError, match=re.escape(
            "evaluation.backtest.limit_locks.grid.min_closes (20) must not exceed "
            "evaluation.backtest.limit_locks.grid.window (10)")):
        preflight.check_parameters(params)
    preflight.check_parameters(_with("evaluation.backtest.limit_locks.grid.window", 20))
    # where no grid is read (the rule off, or one price_step for every name) its values are moot
    for path, value in (("enabled", False), ("price_step", 0.01)):
        params = _with("evaluation.backtest.limit_locks.grid.window", 10)
        params["evaluation"]["backtest"]["limit_locks"][path] = value
        preflight.check_parameters(params)


def test_a_layout_whose_ensemble_choice_cannot_be_scored_is_warned_about():
    """Two out-of-fold folds run (the first gets equal weights, the second the first
    walk-forward choice) but nothing scores that choice: no development score, so the model can
    never be champion. Said before training, on the layout the dates actually get."""
    dates = pd.bdate_range("2018-01-01", periods=800)
    one_tuning = _with_new(copy.deepcopy(PARAMS), "cv.n_tuning_folds", 1)
    (message,) = preflight.few_oof_fold_warnings(dates, one_tuning)  # 3 folds: 1 + 2
    assert message.startswith("the CV layout on these dates has 2 out-of-fold fold(s) (3 "
                              "folds, 1 for tuning)")
    assert "the registry cannot make its model champion" in message
    assert message.endswith("set cv.n_splits >= 4")
    assert preflight.few_oof_fold_warnings(dates, _with_new(
        _with("cv.n_splits", 4), "cv.n_tuning_folds", 1)) == []
    # a requested layout with three, scaled down on a short panel: the panel is the cause
    short = _with_new(_with("cv.n_splits", 5), "cv.n_tuning_folds", 1)
    short["cv"]["short_panel"] = {"adapt": True}
    (message,) = preflight.few_oof_fold_warnings(pd.bdate_range("2018-01-01", periods=250),
                                                 short)
    assert "has 2 out-of-fold fold(s)" in message and "give a longer panel" in message
    # 400 dates: 289 development dates keep 3 (a scaled layout does from 266)
    assert preflight.few_oof_fold_warnings(pd.bdate_range("2018-01-01", periods=400),
                                           short) == []
    assert preflight.few_oof_fold_warnings(dates[:150], one_tuning) == []  # refused elsewhere
    # a gated base learner or ensemble method is scored on its own folds: it can be champion
    lightgbm = _with_new(copy.deepcopy(one_tuning), "evaluation.gates.model", "lightgbm")
    assert preflight.few_oof_fold_warnings(dates, lightgbm) == []


def test_evaluation_lags_and_quantiles_are_range_and_kind_checked():
    """nw_lag -3 was taken as 0 (a t-stat 2.3x too high), decay_max_horizon -2 ended in a
    traceback, and inference n_quantiles 2.5 was served as 2."""
    from tests.support import project_params

    for path, value, message in (
            ("evaluation.metrics.nw_lag", -3, "nw_lag must be >= 0"),
            ("evaluation.metrics.decay_max_horizon", -2, "decay_max_horizon must be >= 1"),
            ("processing.stale.mask_after", 0, "mask_after must be >= 1")):
        with pytest.raises(PreflightError, match=re.escape(message)):
            preflight.check_parameters(_with_new(copy.deepcopy(PARAMS), path, value))
    preflight.check_parameters(_with_new(copy.deepcopy(PARAMS), "evaluation.metrics.nw_lag", 0))
    (problem,) = preflight.value_kind_problems(
        {"inference": {"portfolio": {"n_quantiles": 2.5}}}, project_params())
    assert problem.startswith("inference.portfolio.n_quantiles")


def test_a_learner_argument_the_library_does_not_read_is_refused_with_the_close_name():
    """Misspelt learner arguments ran: ElasticNet's `alpah` failed inside its node (the learner
    dropped), XGBoost's `max_dept` warned on every fit, LightGBM's `num_leavs` said nothing (a
    tuned one searched a dimension that changes nothing). Each library is asked, so native names
    and aliases pass; the shipped settings pass."""
    from tests.support import project_params

    params = project_params()
    preflight.check_parameters(params)
    bad = copy.deepcopy(params)
    bad["base_models"]["defaults"]["elastic_net"]["alpah"] = 0.5
    bad["base_models"]["defaults"]["xgboost"].update(max_dept=2, eta=0.1)
    bad["base_models"]["defaults"]["lightgbm"].update(num_leavs=3, min_data_in_leaf=5)
    bad["base_models"]["tuning"]["search_space"]["lightgbm"]["num_leavs"] = {
        "type": "int", "low": 4, "high": 64}
    bad["stacking"]["lightgbm"]["num_leavs"] = 3
    bad["regime_models"]["learner_params"]["elastic_net"] = {"l1_ratoi": 0.5}
    with pytest.raises(PreflightError) as refused:
        preflight.check_parameters(bad)
    text = str(refused.value)
    for path in ("base_models.defaults.elastic_net.alpah", "base_models.defaults.xgboost.max_dept",
                 "base_models.defaults.lightgbm.num_leavs",
                 "base_models.tuning.search_space.lightgbm.num_leavs",
                 "stacking.lightgbm.num_leavs", "regime_models.learner_params.elastic_net.l1_ratoi"):
        assert f"{path} is not an argument" in text
    assert "(did you mean alpha?)" in text and "xgboost.eta" not in text
    assert "min_data_in_leaf" not in text


def test_a_learner_value_the_library_refuses_is_refused_before_the_run():
    """`max_depth: -5`, `num_leaves: 1` and `l1_ratio: 7` among the defaults failed each learner
    inside its node; the run went on with the others (or the equal-weight fallback) and
    registered the chain. With tuning on, a bad search bound failed trials. Each library's probe
    fit names the value now, for the defaults, the regime learner, the stacking learners and a
    search space's lows and highs; the shipped settings pass."""
    from tests.support import project_params

    bad = project_params()
    bad["base_models"]["defaults"]["xgboost"]["max_depth"] = -5
    bad["base_models"]["defaults"]["lightgbm"]["num_leaves"] = 1
    bad["base_models"]["defaults"]["elastic_net"]["l1_ratio"] = 7
    bad["base_models"]["tuning"]["search_space"]["lightgbm"]["learning_rate"] = {
        "type": "float", "low": 0.01, "high": 2.0, "log": True}
    bad["base_models"]["tuning"]["search_space"]["xgboost"]["subsample"] = {
        "type": "float", "low": 0.5, "high": 1.5}
    bad["stacking"]["lightgbm"]["num_leaves"] = 0
    bad["regime_models"]["learner_params"]["elastic_net"] = {"alpha": -1.0}
    with pytest.raises(PreflightError) as refused:
        preflight.check_parameters(bad)
    text = str(refused.value)
    for expected in (
            "base_models.defaults.xgboost: xgboost refuses a value: value -5 for Parameter "
            "max_depth should be greater equal to 0",
            "base_models.defaults.lightgbm: lightgbm refuses a value: Check failed: "
            "(num_leaves) > (1)",
            "base_models.defaults.elastic_net: elastic_net refuses a value: The 'l1_ratio' "
            "parameter of ElasticNet must be a float in the range [0.0, 1.0]. Got 7 instead.",
            "base_models.tuning.search_space.xgboost (its highs): xgboost refuses a value: "
            "value 1.5 for Parameter subsample exceed bound [0,1]",
            "stacking.lightgbm: lightgbm refuses a value: Check failed: (num_leaves) > (1)",
            "regime_models.learner_params.elastic_net: elastic_net refuses a value: The 'alpha'"):
        assert expected in text
    assert "search_space.lightgbm" not in text  # a learning rate of 2 is allowed
    # as the project builds the learner: its own seed and histogram layout clash with a user's
    clash = project_params()
    clash["base_models"]["defaults"]["lightgbm"]["force_col_wise"] = True
    clash["base_models"]["defaults"]["xgboost"]["random_state"] = 7
    with pytest.raises(PreflightError) as refused:
        preflight.check_parameters(clash)
    assert "`force_col_wise` and `force_row_wise`" in str(refused.value)
    assert "multiple values for keyword argument 'random_state'" in str(refused.value)
    # one value per feature cannot be judged on the probe's three: not refused
    per_feature = project_params()
    per_feature["base_models"]["defaults"]["lightgbm"]["monotone_constraints"] = [1] + [0] * 19
    per_feature["base_models"]["defaults"]["xgboost"]["monotone_constraints"] = (
        "(" + ",".join(["1"] + ["0"] * 19) + ")")
    preflight.check_parameters(per_feature)


def test_a_registered_learners_misspelt_argument_is_refused_before_the_run():
    """A learner added with `register_learner` (the documented way) was not asked: `alpah`
    failed it inside its node, and the run ended in success without it."""
    from sklearn.linear_model import Ridge

    from bma_quant.core.models import learners
    from tests.support import project_params

    learners.register_learner(learners.Learner(
        "ridge", lambda params, seed, n_jobs: Ridge(**params), learners._fit_plain,
        lambda fitted, names: abs(fitted.coef_)))
    try:
        params = project_params()
        params["base_models"]["defaults"]["ridge"] = {"alpha": 2.0}
        preflight.check_parameters(params)
        params["base_models"]["defaults"]["ridge"] = {"alpah": 2.0}
        with pytest.raises(PreflightError, match=r"base_models.defaults.ridge: ridge refuses a "
                                                 r"value: .*unexpected keyword argument 'alpah'"):
            preflight.check_parameters(params)
    finally:
        learners.LEARNERS.pop("ridge", None)


def test_valid_settings_the_name_probe_read_without_their_context_pass():
    """The name probe left the wrapper's own arguments out: `quantile_alpha` under
    `objective: reg:quantileerror` (read as a misspelt reg_alpha) and `rate_drop` under
    `booster: dart` were refused; a learner of the user's that needs dates to fit (its own
    `fit` routes them) was refused as a "value". All pass now."""
    from sklearn.linear_model import Ridge

    from bma_quant.core.models import learners
    from tests.support import project_params

    def needs_dates(estimator, X, y, sample_weight, dates):
        if dates is None:
            raise ValueError("dates are required")
        return estimator.fit(X, y)

    learners.register_learner(learners.Learner(
        "dated_ridge", lambda params, seed, n_jobs: Ridge(**params), needs_dates,
        lambda fitted, names: abs(fitted.coef_)))
    try:
        params = project_params()
        params["base_models"]["defaults"]["xgboost"].update(objective="reg:quantileerror",
                                                            quantile_alpha=0.5)
        params["base_models"]["defaults"]["dated_ridge"] = {"alpha": 2.0}
        preflight.check_parameters(params)
        del params["base_models"]["defaults"]["xgboost"]["quantile_alpha"]
        params["base_models"]["defaults"]["xgboost"].update(booster="dart", rate_drop=0.1,
                                                            objective="reg:squarederror")
        preflight.check_parameters(params)
    finally:
        learners.LEARNERS.pop("dated_ridge", None)


@pytest.mark.parametrize("path, value", [
    ("feature_engineering.leak_audit.prefix_cuts", -1),
    ("feature_engineering.leak_audit.mirror_share", 0.0),
    ("regime_models.min_samples_per_regime", -5),
])
def test_leak_audit_and_regime_counts_out_of_range_are_refused_before_the_run(path, value):
    """prefix_cuts -1 failed at the audit's node with a traceback (after data_processing ran);
    min_samples_per_regime -5 ran to success and fitted every regime on any number of rows."""
    from tests.support import project_params

    params = project_params()
    section = params
    *keys, last = path.split(".")
    for key in keys:
        section = section[key]
    section[last] = value
    with pytest.raises(PreflightError, match=re.escape(path)):
        preflight.check_parameters(params)


@pytest.mark.parametrize("path, value", [
    ("stacking.methods", ["bma", "bma", "equal_weight"]),
    ("stacking.regime.regimes", ["bull", "bull", "bear"]),
])
def test_a_choice_listed_twice_is_refused_naming_it(path, value):
    """`stacking.methods: [bma, bma, ...]` ran 37 nodes and failed in the overfitting assessment
    on duplicate rows; `regimes: [bull, bull, bear]` failed in the stacking report with a
    TypeError naming no setting."""
    from tests.support import project_params

    params = project_params()
    section = params
    *keys, last = path.split(".")
    for key in keys:
        section = section[key]
    section[last] = value
    with pytest.raises(PreflightError, match=re.escape(f"{path} lists {value[0]} more than once")):
        preflight.check_parameters(params)
