"""Registering the pyfunc chain: one registered model per data set, champion only when the gates
pass and the candidate beats the champion on the same test period, a description on every version,
and a fresh-process reload that reproduces the pipeline's final test predictions."""

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.tracking import fluent

from bma_quant.core.evaluation.promotion import registered_model_name
from bma_quant.pipelines.evaluation import registry_nodes
from bma_quant.run_hooks.run_identity import data_stem
from tests.serving.upstream import build_chain, build_upstream
from tests.support import PROJECT_ROOT, project_params

REGISTRY = {**project_params()["registry"], "code_path": str(PROJECT_ROOT / "src" / "bma_quant")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    datasets, overrides = build_upstream(tmp, n_days=600)
    chain = build_chain(datasets, overrides)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    previous_uri = mlflow.get_tracking_uri()
    previous_experiment = fluent._active_experiment_id
    previous_env = os.environ.get("MLFLOW_EXPERIMENT_ID")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("registry_test")
    yield datasets, overrides, chain, uri, tmp
    # leave no active experiment of the tmp store behind for later tests
    mlflow.set_tracking_uri(previous_uri)
    fluent._active_experiment_id = previous_experiment
    if previous_env is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = previous_env


def _name(overrides):
    return registered_model_name("bma_quant", data_stem(overrides["data"]["raw_path"]))


def _register(datasets, overrides, chain, passed, oos_rank_ic=0.05, dev_start=None,
              test_rank_ic=0.05, selection_read_cv=False, data_fingerprint=None, data=None,
              horizon=10, settings=None):
    split = dict(datasets["date_split"])
    if dev_start:
        split["dev_start"] = dev_start
    report = {"passed": passed, "verdict": "pass" if passed else "fail", "model": "final",
              "failed": [] if passed else ["sharpe"],
              "test_period": {k: split[k] for k in ("test_start", "test_end")},
              "headline": {"rank_ic": test_rank_ic, "sharpe": 1.5}}
    if settings is not None:
        report["settings"] = settings
    development = registry_nodes.development_score(
        {"selection": {"final_nested_rank_ic": oos_rank_ic}}, {}, {}, datasets["cv_folds"],
        {"cv_test_dates_unseen": not selection_read_cv}, split, {"gates": {"model": "final"}},
        {**project_params()["temporal"], "prediction_horizon_days": horizon})
    with mlflow.start_run():
        if data_fingerprint:  # the run hook's tag (the data file's sha256 prefix)
            mlflow.set_tag("data_fingerprint", data_fingerprint)
        return registry_nodes.register_model(chain, report, datasets["ensemble_test_predictions"],
                                    development, split, data or overrides["data"], REGISTRY)


def test_champion_moves_only_for_a_better_development_score_never_on_test(setup):
    datasets, overrides, chain, uri, tmp = setup
    name = _name(overrides)
    assert name.startswith("bma_quant-") and name != "bma_quant"  # one model per data set
    first = _register(datasets, overrides, chain, passed=True)
    assert first["registered"] and first["alias"] == "champion" and first["version"] == "1"
    assert first["model_name"] == name
    assert first["reproduction"]["max_abs_diff"] < 1e-5
    checked = REGISTRY["reproduction_dates"]
    assert first["reproduction"]["dates_checked"] == checked  # the last test dates only
    assert first["reproduction"]["rows_matched"] == first["reproduction"]["rows_pipeline"] > 0
    second = _register(datasets, overrides, chain, passed=False, oos_rank_ic=0.09)
    assert second["alias"] == "challenger" and second["version"] == "2"
    assert second["champion_version"] == "1" and second["previous_champion_version"] == "1"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    assert client.get_model_version(name, "2").tags["gates"] == "fail"
    # passes the gates, a far better test RankIC, but does not beat the champion's 0.05 on the
    # development folds: the test period chooses nothing between runs
    worse = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.04,
                      test_rank_ic=0.5)
    assert worse["alias"] == "challenger" and "does not beat" in worse["promotion_reason"]
    # a better value on another development period is not comparable
    other = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.2,
                      dev_start="1999-01-04")
    assert other["alias"] == "challenger" and "development period" in other["promotion_reason"]
    # selection that scored the CV test windows (ic_scope dev / fold_train): never champion
    optimistic = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.3,
                           selection_read_cv=True)
    assert optimistic["alias"] == "challenger"
    assert "not out of fold" in optimistic["promotion_reason"]
    assert client.get_model_version(name, optimistic["version"]).tags[
        "oof_scores_honest"] == "false"
    # another label (5-day returns): its RankIC measures something else
    other_label = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.3, horizon=5)
    assert other_label["alias"] == "challenger"
    assert "ranks another label (10d return" in other_label["promotion_reason"]
    # the same file name with other contents: other data, not comparable
    redrawn = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.3,
                        data_fingerprint="2fc7618738c3ce29")
    assert redrawn["alias"] == "challenger"
    assert "another version of the data file" in redrawn["promotion_reason"]
    better = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.06,
                       test_rank_ic=0.01)
    champion = client.get_model_version_by_alias(name, "champion")
    assert better["alias"] == "champion" and str(champion.version) == better["version"]
    tags = champion.tags
    assert tags["compare_metric"] == "stacking.final.oos_rank_ic"
    assert float(tags["compare_value"]) == 0.06
    assert tags["test_start"] == str(datasets["date_split"]["test_start"])
    description = champion.description
    assert "test period" in description and "stacking.final.oos_rank_ic 0.06" in description
    assert "beats champion version 1" in description and overrides["data"]["raw_path"] in description
    # the replaced champion says so (its description read "champion: yes" beside the new one)
    old = client.get_model_version(name, "1")
    assert old.tags["replaced_by"] == better["version"]
    assert old.description.endswith(f"Replaced as champion by version {better['version']}.")
    # a run that fails later takes its version back: the old champion is itself again
    from bma_quant.run_hooks import registrations

    registrations.unregister(client, name, better["version"], "champion", "1")
    old = client.get_model_version(name, "1")
    assert "replaced_by" not in old.tags and "Replaced as champion" not in old.description
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"


def test_a_model_that_failed_its_gates_is_not_champion_after_a_cheaper_backtest(setup):
    """The run's model fails the Sharpe gate at 10 bps; rerun with only evaluation.backtest
    cost_bps 0 it passes: registered as challenger, with the reason and both versions' settings
    recorded. A better model on the same folds still becomes champion."""
    datasets, overrides, chain, uri, tmp = setup
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'regated.db'}")  # a registry of its own
    mlflow.set_experiment("regated")
    try:
        name = _name(overrides)
        costly = {"backtest": {"cost_bps": 10.0, "n_quantiles": 5}, "metrics": {"min_names": 5}}
        free = {**costly, "backtest": {"cost_bps": 0.0, "n_quantiles": 5}}
        failed = _register(datasets, overrides, chain, passed=False, oos_rank_ic=0.05,
                           settings=costly)
        retry = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.05,
                          settings=free)
        assert retry["alias"] == "challenger" and not retry["promoted"]
        assert (f"version {failed['version']} holds the same model"
                in retry["promotion_reason"])
        assert "under other evaluation settings" in retry["promotion_reason"]
        client = MlflowClient()
        tags = [client.get_model_version(name, v["version"]).tags for v in (failed, retry)]
        assert tags[0]["gate_settings"] != tags[1]["gate_settings"] != "None"
        assert "backtest cost_bps 0.0, n_quantiles 5" in client.get_model_version(
            name, retry["version"]).description
        better = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.06,
                           settings=free)
        assert better["alias"] == "champion"
    finally:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("registry_test")


def test_a_file_of_the_same_name_in_another_folder_never_moves_the_champion(setup, caplog):
    """prices.csv in two folders: one registered model (named from the file name), but the other
    file's score is never compared with the champion's, and the run says so."""
    import shutil

    datasets, overrides, chain, uri, tmp = setup
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'same_name.db'}")  # a registry of its own
    mlflow.set_experiment("same_name")
    name = _name(overrides)
    client = MlflowClient()
    _register(datasets, overrides, chain, passed=True)  # the champion
    champion = client.get_model_version_by_alias(name, "champion").version
    source = Path(overrides["data"]["raw_path"])
    (tmp / "elsewhere").mkdir()
    moved = shutil.copy(source, tmp / "elsewhere" / source.name)
    with caplog.at_level("WARNING"):
        out = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.9,
                        data_fingerprint="0123456789abcdef",
                        data={**overrides["data"], "raw_path": str(moved)})
    assert out["model_name"] == name and out["alias"] == "challenger"
    assert "another version of the data file" in out["promotion_reason"]
    assert client.get_model_version_by_alias(name, "champion").version == champion
    assert "a file of the same name with other contents" in caplog.text
    assert "registry.model_name" in caplog.text


def test_the_same_file_or_the_same_contents_is_no_other_file(tmp_path, caplog, monkeypatch):
    """The warning is for another file: the same file named relatively and absolutely, or a copy
    with the same contents (compared like any other version), says nothing."""
    from bma_quant.core.evaluation.promotion import Candidate
    from bma_quant.serving.registry import _warn_other_file_same_name

    monkeypatch.chdir(tmp_path)
    candidate = Candidate(True, (), None, None, "m", 0.1, data_fingerprint="aaaa", oof_honest=True)
    champion = {"data_path": "data/prices.csv", "data_fingerprint": "bbbb"}
    with caplog.at_level("WARNING"):
        _warn_other_file_same_name({"1": champion}, candidate, "x", "1",
                                   tmp_path / "data/prices.csv")
        _warn_other_file_same_name({"1": {**champion, "data_fingerprint": "aaaa"}}, candidate,
                                   "x", "1", "elsewhere/prices.csv")
    assert caplog.text == ""
    with caplog.at_level("WARNING"):
        _warn_other_file_same_name({"1": champion}, candidate, "x", "1", "elsewhere/prices.csv")
    assert "its champion (version 1) was trained on data/prices.csv" in caplog.text
    # no champion yet (the first file's version failed its gates): said of the versions (it
    # was said only of a champion, and the second file silently shared the model)
    caplog.clear()
    with caplog.at_level("WARNING"):
        _warn_other_file_same_name({"1": champion, "2": {**champion, "data_fingerprint": "aaaa"}},
                                   candidate, "x", None, "elsewhere/prices.csv")
    assert "registered model x: version(s) 1 were trained on data/prices.csv" in caplog.text


def test_an_explicit_model_name_overrides_the_per_data_set_default(setup):
    datasets, overrides, chain, uri, tmp = setup
    split = datasets["date_split"]
    report = {"passed": True, "verdict": "pass", "failed": [], "model": "final",
              "headline": {"rank_ic": 0.1},
              "test_period": {k: split[k] for k in ("test_start", "test_end")}}
    with mlflow.start_run():
        out = registry_nodes.register_model(chain, report, datasets["ensemble_test_predictions"],
                                   {"oof_honest": True, "target": "10d return after 1d delay",
                                    "value": 0.05},
                                   split, overrides["data"], {**REGISTRY, "model_name": "team_model"})
    assert out["model_name"] == "team_model" and out["alias"] == "champion"

def test_reproduction_covers_the_last_test_dates_after_a_full_warmup(setup):
    datasets, overrides, chain, uri, tmp = setup
    split = datasets["date_split"]
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    dates = pd.DatetimeIndex(sorted(raw["date"].unique()))
    test_dates = dates[(dates >= split["test_start"]) & (dates <= split["test_end"])]
    start, end = registry_nodes.checked_period(raw, split, 20)
    assert (start, end) == (test_dates[-20], test_dates[-1])
    assert registry_nodes.checked_period(raw, split, None)[0] == test_dates[0]
    assert registry_nodes.checked_period(raw, split, 10**6)[0] == test_dates[0]
    sliced = registry_nodes.test_slice(raw, split, chain.warmup_days, 20)
    first = dates[dates.searchsorted(start) - chain.warmup_days]
    assert sliced["date"].min() == first and sliced["date"].max() == end


def test_the_warmup_is_counted_on_the_dates_the_cleaner_keeps(setup):
    """Two exchanges' holidays: half the names miss every 15th date, which the strict filter
    drops. Counted on raw dates the slice's warm-up would end after the first checked dates;
    counted on the cleaner's calendar the chain predicts every checked date."""
    datasets, overrides, chain, uri, tmp = setup
    split = datasets["date_split"]
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    dates = pd.DatetimeIndex(sorted(raw["date"].unique()))
    tickers = sorted(raw["ticker"].unique())
    holidays = dates[15::15]
    raw = raw[~(raw["ticker"].isin(tickers[: len(tickers) // 2]) & raw["date"].isin(holidays))]
    kept = chain.cleaner.kept_dates(raw)
    assert not kept.isin(holidays).any() and len(kept) == len(dates) - len(holidays)
    start, end = registry_nodes.checked_period(raw, split, 20)
    checked = set(kept[(kept >= start) & (kept <= end)])
    sliced = registry_nodes.test_slice(raw, split, chain.warmup_days, 20, calendar=kept)
    assert checked <= set(chain.predict(sliced)["date"])
    on_raw_dates = registry_nodes.test_slice(raw, split, chain.warmup_days, 20)
    assert not checked <= set(chain.predict(on_raw_dates)["date"])


def test_a_market_level_column_lines_up_with_the_prices_at_any_time_of_day(setup):
    """Closes stamped 16:00 (or with a time zone) with a market_level column: the market series
    is the one of the same slice stamped at midnight (the days training uses), not a day late."""
    from dataclasses import replace

    datasets, overrides, _, uri, tmp = setup
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    levels = raw.groupby("date", as_index=False)["close"].mean().rename(columns={"close": "level"})
    chain = replace(setup[2], market_index=levels)  # trained with an index
    sliced = registry_nodes.test_slice(raw, datasets["date_split"], chain.warmup_days, 20)
    sliced = sliced.assign(market_level=sliced.groupby("date")["close"].transform("mean") * 1.01)
    plain = chain.prepare(sliced)[1]
    stamped = chain.prepare(sliced.assign(date=sliced["date"] + pd.Timedelta(hours=16)))[1]
    zoned = chain.prepare(sliced.assign(date=sliced["date"].dt.tz_localize("Asia/Tokyo")))[1]
    pd.testing.assert_frame_equal(plain, stamped)
    pd.testing.assert_frame_equal(plain, zoned)
    assert plain["market_return"].notna().sum() > 0


def test_dates_after_training_without_their_index_level_are_refused(setup):
    """A chain trained with an index, sent later dates without a market_level column: the stored
    index stops where training stopped, and carrying its last level forward moved every score
    (served 200 with other predictions). Up to training's last date it is used as training did;
    later dates need their level, or the request is refused naming the column."""
    from dataclasses import replace

    from bma_quant.serving.chain import ChainInputError

    datasets, overrides, _, uri, tmp = setup
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    levels = raw.groupby("date", as_index=False)["close"].mean().rename(columns={"close": "level"})
    end = raw["date"].max()
    chain = replace(setup[2], market_index=levels, data_end=str(end.date()))
    sliced = registry_nodes.test_slice(raw, datasets["date_split"], chain.warmup_days, 20)
    assert len(chain.predict(sliced, last_date_only=True))  # within training's dates: scored
    later = sliced.loc[sliced["date"] == end].assign(date=end + pd.offsets.BDay(1))
    extended = pd.concat([sliced, later], ignore_index=True)
    with pytest.raises(ChainInputError, match=r"no 'market_level' column .*\(1 date"):
        chain.predict(extended, last_date_only=True)
    with_level = extended.merge(levels.rename(columns={"level": "market_level"}), on="date",
                                how="left")
    with_level.loc[with_level["date"] > end, "market_level"] = levels["level"].iloc[-1] * 1.01
    scored = chain.predict(with_level, last_date_only=True)
    assert set(scored["date"]) == {end + pd.offsets.BDay(1)}


def test_a_feature_the_request_cannot_build_is_the_requests_fault(setup):
    """A chain trained with a user column the request lacks (or the input rules now leave out,
    such as 'Adj Close') fails with ChainInputError (HTTP 400 when served), not a bare KeyError."""
    import dataclasses

    from bma_quant.serving.chain import ChainInputError

    class NeedsAdjClose:
        def transform(self, clean, market_frame):
            raise KeyError("FeatureSpec: the panel lacks column(s) the selected features were "
                           "built from: Adj Close (a user factor); give the columns the training "
                           "file had")

    chain = dataclasses.replace(setup[2], feature_spec=NeedsAdjClose())
    with pytest.raises(ChainInputError, match=r"Adj Close \(a user factor\).*retrain the chain"):
        chain.features(pd.DataFrame(), pd.DataFrame())


def test_champion_loads_in_a_fresh_process_and_reproduces(setup):
    datasets, overrides, chain, uri, tmp = setup
    split = datasets["date_split"]
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    raw_slice = registry_nodes.test_slice(raw, split, chain.warmup_days)
    raw_slice.assign(date=raw_slice["date"].dt.strftime("%Y-%m-%d")).to_parquet(tmp / "in.parquet")
    script = (
        "import mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model('models:/{_name(overrides)}@champion')\n"
        f"x = pd.read_parquet(r'{tmp / 'in.parquet'}')\n"
        f"m.predict(x).to_parquet(r'{tmp / 'out.parquet'}')\n"
        f"m.predict(x, params={{'last_date_only': True}}).to_parquet(r'{tmp / 'last.parquet'}')\n"
        "spec = {c.name: c.required for c in m.metadata.get_input_schema().inputs}\n"
        "assert spec['market_level'] is False and spec['close'] is True, spec\n"
        "assert spec['noise_1'] is False, spec  # no selected feature reads it\n"
        "m.predict(x.drop(columns='noise_1'))\n"
        "m.predict(x.assign(market_level=100.0))  # the optional index column is accepted\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = pd.read_parquet(tmp / "out.parquet")
    expected = datasets["ensemble_test_predictions"].query("model == 'final'")
    merged = expected.merge(predicted, on=["date", "ticker"], suffixes=("", "_served"))
    assert len(merged) == len(expected) > 0
    assert (merged["prediction"] - merged["prediction_served"]).abs().max() < 1e-5
    last = pd.read_parquet(tmp / "last.parquet")
    assert last["date"].nunique() == 1 and last["date"].iloc[0] == predicted["date"].max()


def test_registry_inference_on_too_little_history_ends_in_the_chains_own_error(setup):
    """`inference.model_source: registry` scores through the pyfunc model, whose 400-style
    MlflowException wraps the chain's refusal: the run ends in that ChainInputError (one block
    on the console, as with the local chain), not in a 100-line MLflow traceback."""
    from bma_quant.serving.chain import ChainInputError
    from bma_quant.serving.model_source import load_registered

    datasets, overrides, chain, uri, tmp = setup
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # the store the first test registered in
    try:
        model = load_registered(f"models:/{_name(overrides)}@champion")
    finally:
        mlflow.set_tracking_uri(previous)
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    short = raw.loc[raw["date"] >= sorted(raw["date"].unique())[-30]]
    with pytest.raises(ChainInputError, match="too little history"):
        model.predict_last_date(short)


def test_no_active_run_registers_nothing(setup):
    datasets, overrides, chain, uri, tmp = setup
    assert mlflow.active_run() is None
    out = registry_nodes.register_model(chain, {"passed": True}, datasets["ensemble_test_predictions"], {},
                               datasets["date_split"], overrides["data"], REGISTRY)
    assert out["registered"] is False and "no active MLflow run" in out["reason"]
    assert Path(tmp / "mlflow.db").exists()


def test_a_chain_that_cannot_predict_is_not_registered(setup):
    datasets, overrides, chain, uri, tmp = setup

    class FittedOnOtherFeatures:
        feature_names_in_ = ["something_else"]

        def predict(self, X):  # pragma: no cover - never reached
            raise AssertionError

    broken = copy.copy(chain)
    broken.base_models = {"elastic_net": FittedOnOtherFeatures()}
    with mlflow.start_run():
        out = registry_nodes.register_model(broken, {"passed": True}, datasets["ensemble_test_predictions"],
                                   {}, datasets["date_split"], overrides["data"], REGISTRY)
    assert out["registered"] is False
    assert "StaleChainError" in out["reason"] and "something_else" in out["reason"]


def test_a_slice_from_the_training_start_is_scored_without_a_warmup(setup):
    """A panel shorter than the warm-up (or a test period that begins inside it) can still be
    reproduced: a slice that starts where the training panel started has all the history the
    pipeline's features had. The scores equal the same dates scored from a longer slice; a slice
    that starts later with as few dates is still refused."""
    from bma_quant.serving.chain import ChainInputError

    datasets, overrides, chain, uri, tmp = setup
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    dates = pd.DatetimeIndex(sorted(raw["date"].unique()))
    assert chain.data_start == str(datasets["primary_panel"]["date"].min().date())
    n_short = chain.warmup_days - 20
    assert 20 <= n_short < len(dates) - chain.warmup_days - 100
    short = chain.predict(raw[raw["date"] <= dates[n_short - 1]])
    assert short["date"].min() < dates[chain.warmup_days] and short["prediction"].notna().any()
    longer = chain.predict(raw[raw["date"] <= dates[n_short + 80]], first_date=dates[0])
    both = short.merge(longer, on=["date", "ticker"], how="left", suffixes=("", "_longer"))
    assert both["prediction_longer"].notna().sum() == short["prediction"].notna().sum()
    assert (both["prediction"] - both["prediction_longer"]).abs().max() == 0
    # first_date without a complete history: the warm-up still counts before it
    tail = raw[raw["date"] >= dates[10]]
    scored = chain.predict(tail, first_date=dates[20])["date"]
    assert scored.min() == dates[10 + chain.warmup_days]
    with pytest.raises(ChainInputError, match="too little history"):
        chain.predict(raw[(raw["date"] >= dates[10]) & (raw["date"] <= dates[n_short + 9])])
    # a slice that starts before the training panel did is not "complete" either: it needs the
    # warm-up like any other (its cleaning saw history that training's did not)
    from dataclasses import replace
    later_start = replace(chain, data_start=str(dates[10].date()))
    with pytest.raises(ChainInputError, match="too little history"):
        later_start.predict(raw[raw["date"] <= dates[n_short - 1]])


def test_complete_history_needs_the_raw_files_first_date():
    """periods.dev_start after the file's first close: the features started later than the
    cleaning, so no slice can skip the warm-up (data_start None)."""
    from bma_quant.pipelines.evaluation.registry_nodes import _complete_history_start

    primary = pd.DataFrame({"date": pd.to_datetime(["2020-01-06", "2020-01-07"])})
    report = {"first_close": {"A": "2020-01-06", "B": "2020-01-07"}}
    assert _complete_history_start(primary, report) == "2020-01-06"
    assert _complete_history_start(primary, {"first_close": {"A": "2019-01-02"}}) is None
    assert _complete_history_start(primary, {}) is None


def test_an_alias_the_registry_does_not_hold_names_the_versions_it_does(setup):
    """`inference.model_source: registry` on a data set whose runs were only challengers: the
    error lists the versions and aliases there are, not MLflow's bare 'alias not found'."""
    from bma_quant.serving.model_source import ModelSourceError, registry_version

    datasets, overrides, chain, uri, tmp = setup
    _register(datasets, overrides, chain, passed=False)
    name = _name(overrides)
    with pytest.raises(ModelSourceError, match=rf"{name}@nope: not found; '{name}' has "
                                               r"version\(s\) 1.*@challenger"):
        registry_version(f"models:/{name}@nope")
    with pytest.raises(ModelSourceError, match="no registered model 'absent'"):
        registry_version("models:/absent@champion")
    with pytest.raises(ModelSourceError, match=r"has version\(s\) 1"):
        registry_version(f"models:/{name}/999")
    # latest and stages resolve to a number, so predictions name the version they came from
    assert registry_version(f"models:/{name}/latest") == (name, "1")
    client = MlflowClient()
    client.set_registered_model_alias(name, "prod", "1")
    with pytest.raises(ModelSourceError, match=r"Production.*version\(s\) 1 @challenger @prod"):
        registry_version(f"models:/{name}/Production")  # no version in that stage
    for bad in (f"models:/{name}/1/extra", f"models:/{name}", "models:/@champion", "runs:/x/m"):
        with pytest.raises(ModelSourceError, match="must be models:/<name>@<alias>"):
            registry_version(bad)


def test_a_panel_without_the_sectors_training_demeaned_within_is_refused(setup, caplog):
    """Features demeaned within sectors in training: a panel without sectors would change every
    score (refused, naming the column); a label training never saw is named in a warning."""
    from dataclasses import replace

    from bma_quant.serving.chain import ChainInputError

    datasets, overrides, chain, uri, tmp = setup
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    sliced = registry_nodes.test_slice(raw, datasets["date_split"], chain.warmup_days, 3)
    assert chain.training_sectors is None  # the fake feature spec demeans nothing
    chain.predict(sliced.drop(columns="sector"))  # so it needs no sectors
    sectored = replace(chain, training_sectors=sorted(sliced["sector"].astype(str).unique()))
    with pytest.raises(ChainInputError, match="no 'sector' column.*demeaned within 5 sectors"):
        sectored.predict(sliced.drop(columns="sector"))
    first = sorted(sliced["ticker"].unique())[0]
    relabelled = sliced.assign(sector=sliced["sector"].where(sliced["ticker"] != first, "S_NEW"))
    with caplog.at_level("WARNING"):
        sectored.predict(relabelled)
    assert f"not seen in training: S_NEW (1 name(s): {first})" in caplog.text


def test_sectors_a_chain_trained_without_them_would_demean_by_are_ignored(setup, caplog):
    """Neutralisation on, training panel without sectors (training_sectors []): a panel that now
    carries sectors is scored as training scored, not demeaned within them."""
    from dataclasses import replace
    from types import SimpleNamespace

    from bma_quant.pipelines.evaluation.registry_nodes import _neutralised_sectors

    neutralising = SimpleNamespace(transform_config=SimpleNamespace(sector_neutralise=True))
    panel = pd.DataFrame({"date": [1, 1], "ticker": ["A", "B"], "sector": ["X", None]})
    assert _neutralised_sectors(neutralising, panel) == ["X"]
    assert _neutralised_sectors(neutralising, panel.drop(columns="sector")) == []
    off = SimpleNamespace(transform_config=SimpleNamespace(sector_neutralise=False))
    assert _neutralised_sectors(off, panel) is None
    from bma_quant.pipelines.evaluation.registry_nodes import _unsectored_names

    assert _unsectored_names(panel) == ["B"] and _unsectored_names(panel.drop(columns="sector")) == []

    datasets, overrides, chain, uri, tmp = setup
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    sliced = registry_nodes.test_slice(raw, datasets["date_split"], chain.warmup_days, 3)
    without = replace(chain, training_sectors=[])
    assert "sector" in without.unused_columns(list(sliced.columns))
    with caplog.at_level("WARNING"):
        scored = without.prepare(sliced)[0]
    assert "'sector' column is ignored" in caplog.text and "sector" not in scored


def test_part_of_the_universe_and_an_index_training_lacked_are_named(setup, caplog):
    """Scores are ranks within a date: scoring a few of the names is warned about. A market_level
    column sent to a chain trained without an index is ignored (with a warning), not fed to
    market features the models never saw."""
    datasets, overrides, chain, uri, tmp = setup
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    sliced = registry_nodes.test_slice(raw, datasets["date_split"], chain.warmup_days, 3)
    assert chain.market_index is None and chain.typical_names == raw["ticker"].nunique()
    few = sliced[sliced["ticker"].isin(sorted(sliced["ticker"].unique())[:5])]
    with caplog.at_level("WARNING"):
        chain.predict(few)
    # every thin date is counted, not only the first
    dates = np.sort(few["date"].unique())[chain.warmup_days:]
    assert (f"has 5 name(s) in the cross-section against about 40 in training (and "
            f"{len(dates) - 1} more scored date(s) with fewer than 50%, "
            f"{pd.Timestamp(dates[0]).date()}..{pd.Timestamp(dates[-1]).date()})") in caplog.text
    # the share is the chain's, from registry.thin_cross_section_share (5 of 40 is above 10 %)
    assert chain.thin_cross_section_share == 0.5
    caplog.clear()
    import dataclasses

    with caplog.at_level("WARNING"):
        dataclasses.replace(chain, thin_cross_section_share=0.1).predict(few)
    assert "in the cross-section against about" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        with_level = chain.predict(sliced.assign(market_level=1.0 + sliced["close"] * 0.3))
    assert "'market_level' column is ignored" in caplog.text
    pd.testing.assert_frame_equal(with_level, chain.predict(sliced))


def test_a_run_that_fails_after_registering_takes_its_version_back(setup):
    """Ctrl-C (or a failing node) after register_model: the run's outputs are discarded, and so
    is its registry version, with the alias it moved given back; a successful run keeps it."""
    from bma_quant.run_hooks import registrations

    datasets, overrides, chain, uri, tmp = setup
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'undo.db'}")  # a registry of its own
    mlflow.set_experiment("undo")
    name, client = _name(overrides), MlflowClient()
    registrations.forget()
    first = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.05)
    registrations.undo_all()  # the first run fails: nothing of it stays
    assert client.search_registered_models(f"name = '{name}'") == []
    kept = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.05)
    registrations.forget()  # this run succeeds
    better = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.09)
    challenger = _register(datasets, overrides, chain, passed=False)
    assert better["alias"] == "champion" and challenger["alias"] == "challenger"
    undone = registrations.undo_all()  # the second run fails
    assert undone == [f"{name} version 3 (@challenger)",
                      f"{name} version 2 (@champion back on version 1)"]
    versions = {str(v.version) for v in client.search_model_versions(f"name = '{name}'")}
    assert versions == {kept["version"]} and first["version"] == kept["version"] == "1"
    assert str(client.get_model_version_by_alias(name, "champion").version) == kept["version"]


def test_a_run_stopped_inside_register_model_takes_back_the_version_it_never_heard_of(
        setup, monkeypatch):
    """The version row is made inside register_model; a Ctrl-C before it returned left a
    version of a killed run in the registry (served as 'latest'). The undo is recorded first
    and finds the run's versions by its id, in memory and from the journal alike."""
    import json

    from bma_quant.run_hooks import registrations
    from bma_quant.run_hooks.interrupts import RunInterrupted
    from bma_quant.serving import registry

    datasets, overrides, chain, uri, tmp = setup
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'stopped.db'}")
    mlflow.set_experiment("stopped")
    name, client = _name(overrides), MlflowClient()
    registrations.forget()
    kept = _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.05)
    registrations.forget()
    real = registry.mlflow.register_model

    def stopped_after_the_row(*args, **kwargs):
        real(*args, **kwargs)
        raise RunInterrupted("SIGINT")

    monkeypatch.setattr(registry.mlflow, "register_model", stopped_after_the_row)
    journal = tmp / "stopped_journal"
    journal.mkdir(exist_ok=True)
    registrations.journal_to(journal)
    for undo in ("memory", "journal"):
        with pytest.raises(RunInterrupted):
            _register(datasets, overrides, chain, passed=True, oos_rank_ic=0.09)
        assert len(client.search_model_versions(f"name = '{name}'")) == 2
        if undo == "memory":
            (said,) = registrations.undo_all()
            assert said.startswith(f"{name} version 2 (@champion")
        else:  # killed: the next run reads the journal
            registrations.forget()
            record = json.loads((journal / registrations.JOURNAL_FILE).read_text()
                                .splitlines()[-1])
            assert record["version"] is None
            undone, failed = registrations.undo_journal(journal / registrations.JOURNAL_FILE)
            assert failed == 0 and any("version 3" in u for u in undone)
        versions = {str(v.version) for v in client.search_model_versions(f"name = '{name}'")}
        assert versions == {kept["version"]}
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    registrations.journal_to(None)


def test_an_alias_lookup_that_fails_is_not_read_as_no_alias():
    """A Ctrl-C inside the lookup reached us as an MlflowException: read as "no champion", the
    run promoted itself and its undo then deleted the champion's alias."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import (
        INTERNAL_ERROR,
        INVALID_PARAMETER_VALUE,
        RESOURCE_DOES_NOT_EXIST,
    )

    from bma_quant.serving.registry import current_alias_version

    class Registry:
        def __init__(self, error):
            self.error = error

        def get_model_version_by_alias(self, name, alias):
            raise self.error

    missing = [MlflowException("Registered Model with name=m not found",
                               error_code=RESOURCE_DOES_NOT_EXIST),
               MlflowException("Registered model alias champion not found.",
                               error_code=INVALID_PARAMETER_VALUE)]
    for error in missing:
        assert current_alias_version(Registry(error), "m", "champion") is None
    broken = MlflowException("(sqlite3.OperationalError) interrupted", error_code=INTERNAL_ERROR)
    with pytest.raises(MlflowException, match="interrupted"):
        current_alias_version(Registry(broken), "m", "champion")


def test_base_learners_trained_on_a_feature_subset_are_served_on_it(setup):
    """`base_models.features` trains the base learners on a subset of the selected features: the
    chain feeds them that subset (it fed every selected feature and refused as a stale chain)."""
    from bma_quant.serving.chain import StaleChainError

    chain = setup[2]
    selected = list(chain.feature_spec.selected)
    subset = selected[:2]

    class OnSubset:
        feature_names_in_ = subset

        def predict(self, X):
            assert list(X.columns) == subset
            return X.sum(axis=1).to_numpy()

    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(6, len(selected))), columns=selected).assign(
        date=pd.Timestamp("2021-01-04"), ticker=[f"T{i}" for i in range(6)])
    served = dataclasses.replace(chain, base_models={"elastic_net": OnSubset()},
                                 base_features=subset)
    out = served.base_predictions(features)
    np.testing.assert_allclose(out["prediction"], features[subset].sum(axis=1), rtol=1e-6)
    stale = dataclasses.replace(served, base_features=None)
    with pytest.raises(StaleChainError, match="the feature spec selects"):
        stale.base_predictions(features)


def test_a_gated_model_the_chain_does_not_serve_is_not_registered(setup):
    """Gates (and the champion's score) judged `evaluation.gates.model`; a chain serving `final`
    registered on a base learner's figures could become champion on another model's merits."""
    datasets, overrides, chain, uri, tmp = setup
    with mlflow.start_run():
        out = registry_nodes.register_model(chain, {"passed": True, "model": "xgboost"},
                                   datasets["ensemble_test_predictions"], {},
                                   datasets["date_split"], overrides["data"], REGISTRY)
    assert out["registered"] is False
    assert "evaluation.gates.model is 'xgboost'" in out["reason"] and "'final'" in out["reason"]


def test_a_store_refusing_the_replaced_note_does_not_fail_the_registration(caplog):
    """The note on a replaced champion is cosmetic: an error writing it is warned about (it
    escaped log_and_register, failed the run and took the new version back)."""
    from types import SimpleNamespace

    from bma_quant.run_hooks import registrations

    class Refusing:
        def get_model_version(self, name, version):
            return SimpleNamespace(description="champion: yes", tags={})

        def update_model_version(self, *args, **kwargs):
            raise RuntimeError("store is read-only")

        set_model_version_tag = update_model_version

    with caplog.at_level("WARNING"):
        registrations.mark_replaced(Refusing(), "m", "5", "6")
    assert "m version 5 was replaced as champion by version 6, but the note" in caplog.text


def test_a_slice_whose_calendar_or_period_is_not_trainings_is_said(setup, caplog):
    """Served requests scored silently differently (helper's probe): a trading date left out of
    the slice shifted every window (19 of 20 scores moved), a copied holiday row after the
    training data was scored without a word, and development dates were scored as if they were
    forecasts. Each is said now; the plain test slice is not."""
    datasets, overrides, chain, uri, tmp = setup
    split = datasets["date_split"]
    assert chain.development_end == split["dev_end"]
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    sliced = registry_nodes.test_slice(raw, split, chain.warmup_days, 3)
    with caplog.at_level("WARNING"):
        chain.predict(sliced, last_date_only=True)
    assert "not the training data's" not in caplog.text and "in-sample" not in caplog.text
    days = np.sort(sliced["date"].unique())
    caplog.clear()
    with caplog.at_level("WARNING"):
        chain.predict(sliced[sliced["date"] != days[-20]], last_date_only=True)
    assert (f"the cleaned panel's trading dates are not the training data's: 1 missing "
            f"({pd.Timestamp(days[-20]).date()})") in caplog.text
    # a copy of the last day's rows, dated the next business day (after the training data)
    copied = sliced[sliced["date"] == days[-1]].assign(date=days[-1] + pd.offsets.BDay(1))
    caplog.clear()
    with caplog.at_level("WARNING"):
        chain.predict(pd.concat([sliced, copied], ignore_index=True), last_date_only=True)
    assert ("no name's price moved on 1 date(s) the chain's training data does not have "
            f"({(days[-1] + pd.offsets.BDay(1)).date()}") in caplog.text
    # development dates: in-sample scores
    dev_end = pd.Timestamp(split["dev_end"])
    early = raw[raw["date"] <= dev_end]
    caplog.clear()
    with caplog.at_level("WARNING"):
        chain.predict(early, last_date_only=True)
    assert (f"1 scored date(s) ({dev_end.date()}..{dev_end.date()}) fall in the chain's "
            f"development period (to {dev_end.date()})") in caplog.text
