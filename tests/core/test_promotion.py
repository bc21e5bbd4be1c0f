"""Champion promotion: gates AND a better development out-of-fold score on the same development
period (never the test period); one registered model per data set."""

from bma_quant.core.evaluation import promotion
from bma_quant.core.evaluation.promotion import Candidate, decide, development_score

METRIC = "stacking.final.oos_rank_ic"


def _candidate(value, passed=True, dev=("2010-01-04", "2019-12-31"), metric=METRIC,
               test=("2020-01-02", "2021-12-31"), folds="f1", data="c53d48144df45993",
               honest=True, target="10d return after 1d delay", served="p1"):
    return Candidate(passed, () if passed else ("sharpe",), test[0], test[1], metric, value,
                     dev[0], dev[1], folds, data_fingerprint=data, oof_honest=honest,
                     target=target, served=served)


def _champion(value, **kwargs):
    return _candidate(value, **kwargs).tags()


def test_first_passing_version_becomes_champion_a_failing_one_never():
    assert decide(_candidate(0.01), None).promote
    # no score: no champion (no later version could be compared with it)
    assert not decide(_candidate(None), None).promote
    failing = decide(_candidate(0.5, passed=False), None)
    assert not failing.promote and failing.reason == "gates failed: sharpe"


def test_champion_moves_only_when_beaten_on_the_same_development_period():
    assert decide(_candidate(0.06), _champion(0.05), "3").promote
    tie = decide(_candidate(0.05), _champion(0.05), "3")
    assert not tie.promote and "does not beat champion version 3's 0.05" in tie.reason
    other = decide(_candidate(0.5), _champion(0.05, dev=("2009-01-02", "2019-12-31")), "3")
    assert not other.promote and "2009-01-02" in other.reason and "differs" in other.reason
    model = decide(_candidate(0.5, metric="base_models.lightgbm.oof_rank_ic_mean"),
                   _champion(0.05), "3")
    assert not model.promote and f"compared on {METRIC}" in model.reason
    # other folds are other dates: a score on easier folds must not win
    folds = decide(_candidate(0.5, folds="f2"), _champion(0.05), "3")
    assert not folds.promote and "another CV fold layout" in folds.reason


def test_a_champion_chosen_on_the_test_period_is_replaced_by_the_first_passing_version():
    """Champions registered before the development comparison carry no development tags: they
    would block every later version; the first version that passes its gates replaces it."""
    legacy = {"test_start": "2020-01-02", "test_end": "2021-12-31", "compare_metric": "rank_ic",
              "compare_value": "0.2"}
    decision = decide(_candidate(0.01), legacy, "7")
    assert decision.promote and "champion version 7 was registered by an earlier" in decision.reason
    assert not decide(_candidate(0.5, passed=False), legacy, "7").promote
    # development tags without the fold layout (registered between the two changes)
    without_folds = {k: v for k, v in _champion(0.5).items() if k != "compare_folds"}
    assert decide(_candidate(0.01), without_folds, "8").promote


def test_a_score_from_another_version_of_the_data_file_is_not_comparable():
    """Same file name, same periods and folds, other contents (a column re-drawn, prices
    revised): the scores were measured on other data."""
    decision = decide(_candidate(0.5, data="2fc7618738c3ce29"), _champion(0.05), "3")
    assert not decision.promote
    assert "another version of the data file" in decision.reason
    assert "2fc7618738c3ce29" in decision.reason and "c53d48144df45993" in decision.reason


def test_a_score_against_another_label_is_not_comparable():
    """A RankIC against 5-day returns is not one against 10-day returns: the same folds and
    data, but another target (temporal.prediction_horizon_days), so no comparison."""
    decision = decide(_candidate(0.5, target="5d return after 1d delay"), _champion(0.05), "2")
    assert not decision.promote and "ranks another label" in decision.reason


def test_a_score_that_selection_read_is_never_compared_or_promoted():
    """`ic_scope: dev` or `fold_train` score factors on the CV test windows: the out-of-fold
    score is optimistic (in the reviewer's smoke run 0.153 against 0.146 honest, with a worse
    test RankIC), so it must neither beat an honest champion nor become the first one."""
    for champion in (_champion(0.05), None):
        decision = decide(_candidate(0.5, honest=False), champion, "1")
        assert not decision.promote and "not out of fold" in decision.reason
    assert _candidate(0.5, honest=False).tags()["oof_scores_honest"] == "false"
    # a champion registered before the flag existed is replaced by the first passing version
    unflagged = {k: v for k, v in _champion(0.5).items() if k != "oof_scores_honest"}
    assert decide(_candidate(0.01), unflagged, "9").promote


def test_the_test_period_decides_nothing_between_runs():
    """Two versions on the same data: the better development score wins whatever their test
    periods say (the test figures stay out-of-sample for every version)."""
    later_test = _candidate(0.06, test=("2020-06-01", "2021-12-31"))
    assert decide(later_test, _champion(0.05), "2").promote


def test_a_missing_score_never_replaces_a_champion():
    for value in (None, float("nan")):
        decision = decide(_candidate(value), _champion(0.05), "4")
        assert not decision.promote and "no development out-of-fold score" in decision.reason
    # a champion without a finite value is beaten by any finite one on the same period
    assert decide(_candidate(-0.01), _champion(None), "1").promote


def test_development_score_of_each_kind_of_gated_model():
    selection = {"final_nested_rank_ic": 0.031, "oos_rank_ic": {"bma": 0.028, "stacking": 0.03}}
    status = {"lightgbm": {"metrics": {"oof_rank_ic_mean": 0.025}}, "xgboost": {"metrics": {}}}
    assert development_score("final", selection, status) == (METRIC, 0.031)
    assert development_score("bma", selection, status) == ("stacking.bma.oos_rank_ic", 0.028)
    assert development_score("lightgbm", selection, status) == (
        "base_models.lightgbm.oof_rank_ic_mean", 0.025)
    assert development_score("xgboost", selection, status)[1] is None
    assert development_score("regime_elastic_net", None, None)[1] is None
    assert development_score("final", {"final_nested_rank_ic": float("nan")}, None)[1] is None
    regime_cv = {"regime_elastic_net": {"oof_rank_ic_mean": 0.04}}
    assert development_score("regime_elastic_net", selection, status, regime_cv) == (
        "regime_models.regime_elastic_net.oof_rank_ic_mean", 0.04)


def test_the_fold_fingerprint_tells_fold_layouts_apart():
    import pandas as pd

    folds = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=4), "fold": [0, 0, 1, 1],
                          "role": ["train", "test", "train", "test"]})
    assert promotion.folds_fingerprint(folds) == promotion.folds_fingerprint(folds[::-1])
    assert promotion.folds_fingerprint(folds) != promotion.folds_fingerprint(
        folds.assign(fold=[0, 1, 1, 1]))
    assert promotion.folds_fingerprint(None) is None


def test_registered_model_name_per_data_set():
    assert promotion.registered_model_name("bma_quant", "sp500_prices") == "bma_quant-sp500_prices"
    assert promotion.registered_model_name("bma_quant", "my data (v2)") == "bma_quant-my_data_v2"
    assert promotion.registered_model_name("bma_quant", None) == "bma_quant"
    assert promotion.registered_model_name("bma_quant", "x", "team") == "team"


def test_description_names_data_period_gates_and_metrics():
    candidate = _candidate(0.0312)
    text = promotion.version_description(
        data_path="data/01_raw/p.csv", data_fingerprint="abc", candidate=candidate,
        headline={"rank_ic": 0.0312, "n_dates": 480}, model="final",
        decision=decide(candidate, None))
    assert "`data/01_raw/p.csv` (sha256 prefix abc)" in text and "2020-01-02 .. 2021-12-31" in text
    assert f"2010-01-04 .. 2019-12-31 ({METRIC} 0.0312" in text
    assert "gates on `final`: pass" in text and "rank_ic 0.0312, n_dates 480" in text
    assert "champion: yes" in text


def _version(value, gates, settings="s1", **kwargs):
    return {**_candidate(value, **kwargs).tags(), "gates": gates, "gate_settings": settings}


def test_a_model_that_failed_its_gates_is_not_champion_after_the_evaluation_changed():
    """Version 1 failed its gates; the same model (data, folds, development score) rerun with a
    lower cost or a looser threshold passes: not champion, whoever holds the alias. Another
    model, or an earlier pass of the same one, changes nothing."""
    retry = Candidate(True, (), "2020-01-02", "2021-12-31", METRIC, 0.05, "2010-01-04",
                      "2019-12-31", "f1", data_fingerprint="c53d48144df45993", oof_honest=True,
                      target="10d return after 1d delay", gate_settings="s2", served="p1")
    versions = {"1": _version(0.05, "fail", "s1"), "2": _version(0.04, "pass")}
    for champion in (None, _champion(0.01)):
        decision = decide(retry, champion, "2", versions)
        assert not decision.promote
        assert "version 1 holds the same model" in decision.reason
        assert "under other evaluation settings" in decision.reason
    assert "under the same settings" in decide(
        retry, None, None, {"1": _version(0.05, "fail", "s2")}).reason
    assert "before the evaluation settings were recorded" in decide(
        retry, None, None, {"1": {**_version(0.05, "fail"), "gate_settings": "None"}}).reason
    # a different model (another score, other data) or a pass before: decided as usual
    assert decide(retry, None, None, {"1": _version(0.0501, "fail")}).promote
    assert decide(retry, None, None, {"1": _version(0.05, "fail", data="other")}).promote
    assert decide(retry, None, None, {"1": _version(0.05, "pass")}).promote
    # another served model with the same development score (another stacking method: the
    # walk-forward pick scored is the same) is another model; a version registered before the
    # served predictions were tagged is judged on the rest
    assert decide(retry, None, None, {"1": _version(0.05, "fail", served="p2")}).promote
    assert not decide(retry, None, None, {"1": {**_version(0.05, "fail"),
                                                "served_predictions": "None"}}).promote
    assert decide(retry, _champion(0.01), "1", {"1": _version(0.01, "pass")}).promote
    # the settings are recorded with the version, and readable in its description
    assert retry.tags()["gate_settings"] == "s2"
    settings = {"backtest": {"cost_bps": 10.0, "max_frozen_days": 21}, "metrics": {"min_names": 5}}
    assert promotion.settings_text(settings) == (
        "backtest cost_bps 10.0, max_frozen_days 21; metrics min_names 5")
    assert promotion.gate_settings_fingerprint(settings) != promotion.gate_settings_fingerprint(
        {**settings, "backtest": {"cost_bps": 5.0, "max_frozen_days": 21}})
    assert promotion.gate_settings_fingerprint(None) is None


def test_the_served_predictions_fingerprint_reads_the_predictions_not_their_order():
    import pandas as pd

    frame = pd.DataFrame({"date": pd.to_datetime(["2021-01-04"] * 2 + ["2021-01-05"] * 2),
                          "ticker": ["A", "B"] * 2, "model": "final",
                          "prediction": [0.1, -0.2, 0.3, 0.0]})
    same = promotion.predictions_fingerprint(frame)
    assert same == promotion.predictions_fingerprint(frame.iloc[::-1])
    assert same != promotion.predictions_fingerprint(frame.assign(prediction=[0.1, -0.2, 0.3, 1e-3]))
    assert promotion.predictions_fingerprint(frame.iloc[:0]) is None
