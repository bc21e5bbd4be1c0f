"""The inference pipeline: pickled chain + the panel it was trained on -> last-date scores, ranks,
quantiles, target weights and the model version, with no data parameters repeated."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from tests.serving.upstream import build_chain, build_upstream
from tests.support import run_pipeline


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inference")
    datasets, overrides = build_upstream(tmp, n_days=500)
    chain = build_chain(datasets, overrides)
    path = tmp / "chain.pkl"
    path.write_bytes(pickle.dumps(chain))
    return datasets, overrides, chain, path, tmp


def _inference(chain_path, registration=None, **inference):
    # no `data` override: params:data still names the shipped S&P file, the chain knows better
    params = {"inference": {"chain_path": str(chain_path), "history_days": 200,
                            "registration_path": str(registration) if registration else None,
                            **inference}}
    out = run_pipeline("inference", {}, params)
    # the run's data tags name the file it scored (hooks.py reads it from the panel's attrs)
    assert out["inference_panel"].attrs["source_path"].endswith(".parquet")
    return out["latest_predictions"]


def test_latest_predictions_use_the_chains_training_data(trained):
    datasets, overrides, chain, path, tmp = trained
    assert chain.training_data["raw_path"] == overrides["data"]["raw_path"]
    latest = _inference(path)
    assert list(latest.columns) == ["date", "ticker", "score", "rank", "quantile", "weight",
                                    "sector", "model_name", "model_version"]
    last_date = datasets["primary_panel"]["date"].max()
    assert (latest["date"] == last_date).all()
    assert len(latest) == datasets["primary_panel"]["ticker"].nunique()
    assert sorted(latest["rank"]) == list(range(1, len(latest) + 1))
    assert latest["score"].is_monotonic_decreasing
    test = datasets["ensemble_test_predictions"]
    expected = test.query("model == 'final' and date == @last_date")
    merged = expected.merge(latest, on=["date", "ticker"])
    assert len(merged) == len(latest)
    assert (merged["prediction"] - merged["score"]).abs().max() < 1e-5
    assert (latest["model_version"] == "unregistered").all()


def test_weights_follow_the_portfolio_rule(trained):
    *_, path, _ = trained
    # 5 sectors of 8 names: per sector quintiles hold 2 names a side, 0.1 a side: 0.05 per name
    latest = _inference(path, portfolio={"sector_neutral": True})
    assert latest.groupby("sector")["weight"].sum().abs().max() < 1e-12
    assert latest["weight"].abs().sum() == pytest.approx(1.0)
    longs = latest.loc[latest["weight"] > 0]
    assert (longs["quantile"] == 5).all() and np.allclose(longs["weight"], 0.05)
    assert len(longs) == 10 and set(latest.loc[latest["weight"] < 0, "quantile"]) == {1}
    # whole cross-section, long only, cap 0.08: the 8-name quintile widens to the 13 best names
    capped = _inference(path, portfolio={"style": "long_only", "max_weight": 0.08,
                                         "sector_neutral": False})
    assert capped["weight"].min() == 0 and capped["weight"].max() <= 0.08
    assert capped["weight"].sum() == pytest.approx(1.0)
    assert sorted(capped.loc[capped["weight"] > 0, "rank"]) == list(range(1, 14))


def test_the_book_defaults_to_the_quantiles_the_chains_backtest_traded(trained, tmp_path,
                                                                         caplog):
    """A chain scored on terciles serves terciles unless told otherwise; told otherwise, it says
    the evaluation run's Sharpe describes another book. sector_neutral without sectors is said."""
    import dataclasses

    *_, chain, _, _ = trained
    assert chain.backtest_quantiles == 5  # the evaluation default, stored by the chain
    tercile = tmp_path / "tercile.pkl"
    tercile.write_bytes(pickle.dumps(dataclasses.replace(chain, backtest_quantiles=3)))
    latest = _inference(tercile, portfolio={"sector_neutral": False})
    assert latest["quantile"].max() == 3
    assert len(latest.loc[latest["weight"] > 0]) == (latest["quantile"] == 3).sum()
    assert "backtested" not in caplog.text
    _inference(tercile, portfolio={"n_quantiles": 5, "sector_neutral": False})
    assert ("inference.portfolio.n_quantiles is 5 but the chain's test period was backtested "
            "with evaluation.backtest.n_quantiles 3") in caplog.text


def test_sector_neutral_without_sectors_is_said(caplog):
    from bma_quant.core.evaluation.portfolio import PortfolioRule
    from bma_quant.pipelines.inference.nodes import _warn_unsectored_neutral

    scores = pd.DataFrame({"ticker": list("ABCDEF"), "score": np.arange(6.0)})
    _warn_unsectored_neutral(scores, PortfolioRule(sector_neutral=True))
    assert "sector_neutral is true but the panel has no sector column" in caplog.text
    caplog.clear()
    _warn_unsectored_neutral(scores.assign(sector="X"), PortfolioRule(sector_neutral=True))
    _warn_unsectored_neutral(scores, PortfolioRule(sector_neutral=False))
    assert "sector_neutral" not in caplog.text


def test_registered_version_is_named(trained):
    *_, path, tmp = trained
    registration = tmp / "model_registration.json"
    registration.write_text(json.dumps({"registered": True, "model_name": "bma_quant_prices",
                                        "version": "7", "model_uri": "models:/bma_quant_prices/7"}))
    latest = _inference(path, registration)
    assert (latest["model_name"] == "bma_quant_prices").all()
    assert (latest["model_version"] == "7").all()


def test_too_short_history_names_the_missing_lookback(trained):
    *_, chain, path, _ = trained
    with pytest.raises(Exception, match=rf"inference.history_days \({chain.warmup_days - 10}\) "
                                        rf"keeps too few dates: the chain needs "
                                        rf"{chain.warmup_days} trading dates of warm-up"):
        _inference(path, history_days=chain.warmup_days - 10)


def test_other_data_can_be_named_in_inference_params(trained, tmp_path):
    datasets, overrides, chain, path, _ = trained
    import pandas as pd

    raw = pd.read_parquet(overrides["data"]["raw_path"])
    cut = raw.loc[raw["date"] < raw["date"].max()]
    cut.to_parquet(tmp_path / "cut.parquet")
    latest = _inference(path, data={"raw_path": str(tmp_path / "cut.parquet")})
    assert (latest["date"] == cut["date"].max()).all()


def test_a_file_appended_without_volume_is_warned_about(caplog):
    """Closes-only rows appended to a vendor file: the volume factors read missing values on
    the scored date and the scores move (by up to 0.38 in a helper's trial); the run said
    nothing."""
    from bma_quant.serving.slice_checks import SliceChecks

    dates = pd.bdate_range("2021-01-04", periods=30)
    clean = pd.DataFrame({"date": np.repeat(dates, 3), "ticker": list("ABC") * 30,
                          "close": 10.0, "volume": 1000.0, "open": 10.0})
    clean.loc[clean["date"] >= dates[-5], "volume"] = np.nan  # closes only from here on
    with caplog.at_level("WARNING"):
        SliceChecks._warn_missing_bar_columns(None, clean, dates[-1:])  # the slice as given
    assert ("the panel has volume on earlier dates but for no name on 1 scored date(s) (e.g. "
            f"{dates[-1].date()})") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        SliceChecks._warn_missing_bar_columns(None, clean.fillna(1.0), dates[-1:])
        SliceChecks._warn_missing_bar_columns(None, clean.drop(columns="volume"), dates[-1:])
    assert "for no name on" not in caplog.text


def test_the_appended_day_checks_read_the_slice_as_given_not_the_filled_one(
        trained, tmp_path, monkeypatch):
    """The carry-forward fills a day (up to its fill limit) of appended closes-only rows from
    the day before: the checks read the filled panel and said nothing for the commonest case,
    today's row appended with its close alone."""
    from bma_quant.serving.chain import PredictionChain

    _, overrides, _, path, _ = trained
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    last = raw.loc[raw["date"] == raw["date"].max()].copy()
    last["date"] = last["date"] + pd.offsets.BDay(1)
    last[["signal_1", "noise_1"]] = np.nan
    pd.concat([raw, last], ignore_index=True).to_parquet(tmp_path / "appended.parquet")
    seen = {}
    for check in ("_warn_missing_bar_columns", "_warn_carried_user_factors"):
        monkeypatch.setattr(PredictionChain, check,
                            lambda self, given, scored, *_, check=check: seen.update(
                                {check: given.loc[given["date"].isin(scored)]}))
    latest = _inference(path, data={"raw_path": str(tmp_path / "appended.parquet")})
    assert (latest["date"] == last["date"].iloc[0]).all()  # scored on yesterday's factors
    for rows in seen.values():
        assert len(rows) == len(last) and rows["signal_1"].isna().all()  # not carried
    assert set(seen) == {"_warn_missing_bar_columns", "_warn_carried_user_factors"}


def test_a_daily_user_factor_missing_on_the_scored_date_is_warned_about(caplog):
    """...but a factor updated monthly or quarterly, carried by design, is not named."""
    from types import SimpleNamespace

    from bma_quant.serving.slice_checks import SliceChecks

    dates = pd.bdate_range("2021-01-04", periods=30)
    given = pd.DataFrame({"date": np.repeat(dates, 2), "ticker": ["A", "B"] * 30,
                          "close": 10.0, "vendor": 1.0, "quarterly": np.nan})
    given.loc[given["date"] == dates[-1], "vendor"] = np.nan  # appended with closes only
    given.loc[given["date"] == dates[3], "quarterly"] = 2.0
    spec = SimpleNamespace(selected=["ret_5", "user_vendor", "quarterly"],
                           families={"ret_5": "return", "user_vendor": "user",
                                     "quarterly": "user"})
    checks = SimpleNamespace(feature_spec=spec)
    with caplog.at_level("WARNING"):
        SliceChecks._warn_carried_user_factors(checks, given, dates[-1:])
    assert ("the panel gives user_vendor for some name on every earlier date but for none on 1 "
            f"scored date(s) (e.g. {dates[-1].date()})") in caplog.text
    assert "quarterly" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        SliceChecks._warn_carried_user_factors(checks, given, dates[-2:-1])
    assert caplog.text == ""
    # over a range: a date the fill did not reach is the median check's, not called carried
    given.loc[given["date"] >= dates[-8], "vendor"] = np.nan
    clean = given.copy()
    clean.loc[clean["date"].isin(dates[-8:-3]), "vendor"] = 1.0  # filled 5 dates
    with caplog.at_level("WARNING"):
        SliceChecks._warn_carried_user_factors(checks, given, dates[-10:], clean)
    assert "for none on 5 scored date(s)" in caplog.text


def test_missing_chain_says_what_to_run(tmp_path):
    with pytest.raises(Exception, match="kedro run"):
        _inference(tmp_path / "none.pkl")


@pytest.mark.parametrize("content", [b"garbage\n", b"\x80\x05\x95"])
def test_a_damaged_chain_file_says_so(tmp_path, content):
    """An overwritten or truncated chain failed with pickle's own words ("invalid literal for
    int() with base 10: 'arbage'") in a traceback."""
    from bma_quant.serving.model_source import ModelSourceError, load_local

    path = tmp_path / "prediction_chain.pkl"
    path.write_bytes(content)
    with pytest.raises(ModelSourceError, match=r"cannot be read as a fitted chain .* damaged or "
                                               r"holds something else. Run `kedro run`"):
        load_local(path, None)
    # a chain of other code (a module this version lacks) is not called damaged
    import pickle
    import sys
    import types

    gone = types.ModuleType("a_module_this_version_lacks")
    exec("class Chain:\n    pass\n", gone.__dict__)
    sys.modules[gone.__name__] = gone
    try:
        path.write_bytes(pickle.dumps(gone.Chain()))
    finally:
        del sys.modules[gone.__name__]
    with pytest.raises(ModelSourceError, match=r"was pickled by other code \(ModuleNotFoundError"):
        load_local(path, None)


def test_the_registry_source_defaults_to_the_champion_of_the_last_run_data_set(tmp_path):
    import json

    from bma_quant.serving.model_source import champion_uri

    report = tmp_path / "model_registration.json"
    report.write_text(json.dumps({"model_name": "bma_quant-my_prices", "version": "3"}))
    assert champion_uri(report) == "models:/bma_quant-my_prices@champion"
    with pytest.raises(ValueError, match="inference.model_uri"):
        champion_uri(tmp_path / "missing.json")


def test_a_model_uri_beside_the_local_source_is_said_to_be_unused(tmp_path, caplog):
    """`inference.model_uri=models:/x@champion` under the default `model_source: local` served
    the local chain without a word (a uri naming no model as well)."""
    from bma_quant.serving.model_source import load_inference_model

    with caplog.at_level("WARNING"), pytest.raises(Exception, match="kedro run"):
        load_inference_model({"model_source": "local", "chain_path": str(tmp_path / "none.pkl"),
                              "model_uri": "models:/nonexistent@champion"})
    assert ("inference.model_uri (models:/nonexistent@champion) is not served: "
            "inference.model_source is 'local'") in caplog.text


def test_registry_inference_says_when_the_last_run_is_not_the_champion(tmp_path, caplog):
    """The smoke and the full synthetic market share a file name, so one registered model: the
    full run, tested on another period, stays @challenger and the champion is the smoke chain.
    Inference then scores with the champion as documented, and says so naming both ways out."""
    import json

    from bma_quant.serving.model_source import warn_if_last_run_not_champion

    report = tmp_path / "model_registration.json"
    report.write_text(json.dumps({
        "model_name": "bma_quant-synthetic_prices", "registered": True, "version": "2",
        "alias": "challenger", "promotion_reason": "not comparable with champion version 1"}))
    with caplog.at_level("WARNING"):
        assert warn_if_last_run_not_champion(report)
    assert ("registered bma_quant-synthetic_prices version 2 as @challenger, not @champion "
            "(not comparable with champion version 1)") in caplog.text
    assert "models:/bma_quant-synthetic_prices/2" in caplog.text
    report.write_text(json.dumps({"model_name": "m", "registered": True, "version": "3",
                                  "alias": "champion"}))
    assert not warn_if_last_run_not_champion(report)
    # registry off, or the chain failed its reproduction check: the champion is an older run's
    report.write_text(json.dumps({"model_name": "m", "registered": False,
                                  "reason": "registry.enabled is false"}))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert warn_if_last_run_not_champion(report)
    assert "registered no chain (registry.enabled is false)" in caplog.text


def test_names_priced_on_the_scored_date_without_a_score_are_named(caplog):
    from bma_quant.serving.unscored import warn_unscored as _warn_unscored

    day = pd.Timestamp("2023-02-22")
    raw = pd.DataFrame({"date": [day] * 3 + [day - pd.Timedelta(days=1)],
                        "ticker": ["AAA", "NEWCO", "BBB", "OLD"], "close": [1.0, 2.0, 3.0, 4.0]})
    scores = pd.DataFrame({"date": [day, day], "ticker": ["AAA", "BBB"], "score": [0.1, -0.1]})
    with caplog.at_level("WARNING"):
        _warn_unscored(raw, scores, ["AAA", "BBB", "SEASONING", "OLD"])
    # NEWCO, outside the training universe, is named by the chain itself (as when served), not
    # again here, nor taken for a name not yet in the cross-section
    assert "NEWCO" not in caplog.text
    # OLD traded the day before and has no close on the scored date: named, not scored
    assert "1 name(s) that traded lately have no close on 2023-02-22 and get no score" \
        in caplog.text
    caplog.clear()
    raw.loc[1, "ticker"] = "SEASONING"
    with caplog.at_level("WARNING"):
        _warn_unscored(raw, scores, ["AAA", "BBB", "SEASONING", "OLD"])
    assert "1 name(s) with a close on 2023-02-22 get no score (not in the cross-section" \
        in caplog.text and "SEASONING" in caplog.text
    caplog.clear()
    scored = pd.concat([scores, scores.head(1).assign(ticker="OLD")])  # no close on the day
    with caplog.at_level("WARNING"):
        _warn_unscored(raw, scored, ["AAA", "BBB", "SEASONING", "OLD"])
    assert "1 name(s) have no close on 2023-02-22 and are scored from their last close" \
        in caplog.text and "OLD" in caplog.text

    caplog.clear()
    halted = pd.concat([raw.assign(volume=100.0), pd.DataFrame(
        {"date": [day - pd.Timedelta(days=1), day], "ticker": ["HALT", "HALT"],
         "close": [5.0, 5.0], "volume": [100.0, 0.0]})], ignore_index=True)
    with caplog.at_level("WARNING"):  # a suspension is named as one, not as unseasoned
        _warn_unscored(halted, scores, ["AAA", "BBB", "SEASONING", "OLD", "HALT"])
    assert "1 name(s) have volume 0 and the close of the day before on 2023-02-22: not traded " \
        "(a suspension), so not scored" in caplog.text and "HALT" in caplog.text
    assert "SEASONING" in caplog.text and "HALT" not in caplog.text.split("(not in the cross")[1]
    caplog.clear()
    halted.loc[halted["ticker"] == "HALT", "volume"] = 0.0  # its positive volumes: before the file
    with caplog.at_level("WARNING"):
        _warn_unscored(halted, scores, ["AAA", "BBB", "SEASONING", "OLD", "HALT"],
                       first_volume={"HALT": "2020-01-02"})  # from training
    assert "not traded (a suspension), so not scored" in caplog.text and "HALT" in caplog.text
    caplog.clear()
    halted.loc[halted["ticker"] == "HALT", "close"] = [5.0, 5.1]  # a quote: the close moved
    with caplog.at_level("WARNING"):
        _warn_unscored(halted, scores, ["AAA", "BBB", "SEASONING", "OLD", "HALT"],
                       first_volume={"HALT": "2020-01-02"})
    assert "HALT" in caplog.text.split("(not in the cross")[1]  # traded by default: unseasoned
    caplog.clear()
    with caplog.at_level("WARNING"):
        _warn_unscored(halted, scores, ["AAA", "BBB", "SEASONING", "OLD", "HALT"],
                       first_volume={"HALT": "2020-01-02"}, moves=True)
    assert "1 name(s) have volume 0 on 2023-02-22: not traded (a suspension, or a quote" \
        in caplog.text and "HALT" not in caplog.text.split("(not in the cross")[1]


def test_a_partial_last_day_is_named_when_an_earlier_date_is_scored(trained, tmp_path, caplog):
    """The file ends on a day only a few names have traded yet: the strict date filter drops it
    and the previous date is scored, which the user must be told."""
    datasets, overrides, chain, path, _ = trained
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    last = raw["date"].max()
    partial = pd.concat([raw, raw[raw["date"] == last].head(3).assign(
        date=last + pd.Timedelta(days=1))], ignore_index=True)
    partial.to_parquet(tmp_path / "partial.parquet")
    with caplog.at_level("WARNING"):
        latest = _inference(path, data={"raw_path": str(tmp_path / "partial.parquet")})
    assert (latest["date"] == last).all()
    n_last = raw.loc[raw["date"] == last, "ticker"].nunique()
    expected = (f"the panel's last date {(last + pd.Timedelta(days=1)).date()} is not scored: "
                f"only 3 names have a close on it, against {n_last} on {last.date()}, which is "
                "scored instead")
    assert expected in caplog.text


def test_a_short_book_names_the_sectors_too_small_for_quantiles(caplog):
    """Sectors of 28, 4, 3, 2, 2 and 1 names in quintiles: the 4- and 3-name sectors hold a
    long and a short name each (half as many names as quantiles or fewer hold nothing, README);
    the warning named them among the sectors that hold nothing (fewer names than quantiles)."""
    from bma_quant.core.evaluation.portfolio import PortfolioRule, target_weights
    from bma_quant.pipelines.inference.nodes import _warn_shortfall

    sizes = {"Tech": 28, "Financials": 4, "Health": 3, "Energy": 2, "Materials": 2,
             "Utilities": 1}
    sectors = [name for name, n in sizes.items() for _ in range(n)]
    scores = pd.DataFrame({"date": pd.Timestamp("2024-01-05"),
                           "ticker": [f"T{i:02d}" for i in range(len(sectors))],
                           "score": np.linspace(-1, 1, len(sectors)), "sector": sectors})
    rule = PortfolioRule.from_params({"style": "long_short", "n_quantiles": 5,
                                      "gross_exposure": 1.0, "max_weight": None,
                                      "sector_neutral": True})
    book, summary = target_weights(scores, rule)
    held = book.groupby("sector")["weight"].apply(lambda w: w.abs().sum())
    assert held["Financials"] > 0 and held["Health"] > 0
    with caplog.at_level("WARNING"):
        _warn_shortfall(book, rule, summary)
    assert "3 sector(s) too small for 5 quantiles hold nothing (Energy, Materials, Utilities)" \
        in caplog.text


def test_a_book_on_too_few_names_says_why(caplog):
    """Four names and quintiles: a book of one name a side, which evaluation never traded; one
    name: no book at all, and the reason is the names, not a max_weight that is not set."""
    from bma_quant.core.evaluation.portfolio import PortfolioRule
    from bma_quant.pipelines.inference.nodes import _warn_shortfall, _warn_thin_book

    rule = PortfolioRule.from_params({"style": "long_short", "n_quantiles": 5,
                                      "gross_exposure": 1.0, "max_weight": None})
    four = pd.DataFrame({"date": pd.Timestamp("2024-01-05"), "ticker": list("ABCD"),
                         "score": range(4)})
    with caplog.at_level("WARNING"):
        _warn_thin_book(four, rule)
        _warn_thin_book(pd.concat([four, four.assign(ticker=list("EFGH"))]), rule)
    assert caplog.text.count("fewer than n_quantiles") == 1
    assert "only 4 name(s) are scored on 2024-01-05" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        _warn_shortfall(four.head(1), rule, {"gross": 0.0})
    assert "1 scored name(s) cannot fill its side(s)" in caplog.text and "max_weight" not in \
        caplog.text


def test_a_cap_that_widens_the_book_beyond_its_quantiles_is_said(caplog):
    """20 names in quintiles: 4 per side hold 0.125 each, over a 0.1 cap, so each side takes a
    fifth name: not the book the evaluation backtest scored."""
    from bma_quant.core.evaluation.portfolio import PortfolioRule, target_weights
    from bma_quant.pipelines.inference.nodes import _warn_widened

    scores = pd.DataFrame({"ticker": [f"T{i:02d}" for i in range(20)], "score": range(20)})
    for cap, warned in ((0.1, True), (0.125, False)):
        rule = PortfolioRule.from_params({"style": "long_short", "n_quantiles": 5,
                                          "gross_exposure": 1.0, "max_weight": cap})
        book, summary = target_weights(scores, rule)
        caplog.clear()
        with caplog.at_level("WARNING"):
            _warn_widened(book, rule)
        assert summary["n_long"] == (5 if warned else 4)
        assert ("holds 2 name(s) beyond its extreme quantiles" in caplog.text) is warned
        assert ("max_weight: 0.125 or more holds that book" in caplog.text) is warned


def test_scoring_long_after_the_training_data_ended_is_said(caplog):
    from bma_quant.pipelines.inference.nodes import _warn_stale

    with caplog.at_level("WARNING"):
        _warn_stale(pd.Timestamp("2023-06-30"), "2023-03-31", 92)  # 91 days: fine
        assert caplog.text == ""
        _warn_stale(pd.Timestamp("2024-03-29"), "2023-03-31", 92)
        _warn_stale(pd.Timestamp("2030-01-02"), None, 92)  # a chain pickled before data_end
    assert "scoring 2024-03-29, 364 days after the chain's training data ended (2023-03-31)" \
        in caplog.text


def test_a_hole_in_the_calendar_of_the_scored_history_is_refused(trained, tmp_path):
    """No date at all for six weeks inside the scored date's warm-up: its rolling features would
    span the hole, as training refuses; a hole before the warm-up does not matter."""
    datasets, overrides, chain, path, _ = trained
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    dates = pd.DatetimeIndex(sorted(raw["date"].unique()))
    start = dates[-40]
    holed = raw.loc[(raw["date"] <= start) | (raw["date"] > start + pd.Timedelta(days=42))]
    holed.to_parquet(tmp_path / "holed.parquet")
    with pytest.raises(Exception, match=rf"no date in {start.date()} \.\. .*among "
                                        rf"the dates scored or their {chain.warmup_days}-date "
                                        "warm-up"):
        _inference(path, data={"raw_path": str(tmp_path / "holed.parquet")})
    early = dates[5]
    old_hole = raw.loc[(raw["date"] <= early) | (raw["date"] > early + pd.Timedelta(days=42))]
    old_hole.to_parquet(tmp_path / "old_hole.parquet")
    # the whole file as history: only the last date and its warm-up are scored, so a hole
    # before them does not matter (it was refused when every date of the slice was scored)
    latest = _inference(path, data={"raw_path": str(tmp_path / "old_hole.parquet")},
                        history_days=len(dates))
    assert (latest["date"] == dates[-1]).all()
    assert len(dates) - 30 > chain.warmup_days + 5  # the hole is before the warm-up


def test_split_moves_in_the_scored_slice_are_said_as_in_training(trained, tmp_path, caplog):
    """A name halved on one of the slice's last dates (split or crash: not yet confirmed) gets
    no score and is named; a held x10 on a +3 % day, left alone, is named as data_processing
    names it; a repaired split is named too. Nothing of this was said at inference before."""
    datasets, overrides, chain, path, _ = trained
    raw = pd.read_parquet(overrides["data"]["raw_path"])
    dates = np.sort(raw["date"].unique())
    names = sorted(raw["ticker"].unique())
    prices = [c for c in ("open", "high", "low", "close") if c in raw]
    late, near, split, early, seven = names[:5]

    def scale(ticker, start, factor, end=None):
        rows = (raw["ticker"] == ticker) & (raw["date"] >= dates[start])
        if end is not None:
            rows &= raw["date"] < dates[end]
        level = raw.loc[(raw["ticker"] == ticker) & (raw["date"] == dates[start - 1]), "close"]
        first = (raw["ticker"] == ticker) & (raw["date"] == dates[start])
        # the day of the move: exactly the ratio (plus the day's own move for `near`)
        raw.loc[rows, prices] = raw.loc[rows, prices] * factor
        raw.loc[first, prices] = float(level.iloc[0]) * factor * (1.03 if ticker == near else 1.0)

    scale(late, len(dates) - 2, 0.5)
    scale(near, len(dates) - 40, 0.1)
    scale(split, len(dates) - 60, 0.5)
    scale(early, len(dates) - chain.warmup_days - 5, 0.5)  # before the last date's history
    scale(seven, len(dates) - 30, 1 / 7)  # a 7:1 split, a ratio the config does not list
    raw.to_parquet(tmp_path / "moves.parquet")
    with caplog.at_level("WARNING"):
        _inference(path, data={"raw_path": str(tmp_path / "moves.parquet")})
    # out of the cross-section on its last two dates (this test chain's stand-in feature spec
    # does not filter on it; the project's FeatureSpec drops such rows)
    cleaned = chain.cleaner.clean(raw)
    assert not cleaned.loc[cleaned["ticker"] == late, "eligible"].tail(2).any()
    said = caplog.text
    assert "moved near a split ratio within the data's last" in said and f"{late}@" in said
    assert f"{near}@" in said and "were not repaired" in said
    assert f"repaired 1 suspected unadjusted split(s): {split}@" in said
    assert f"{early}@" not in said  # a split the scored date's features do not read
    assert "match no configured split ratio" in said and f"{seven}@" in said and "(7:1 split?)" in said


def test_a_holiday_row_copied_from_the_day_before_is_named():
    """Every close of a date equals the day before's: a closed market's copied row. Training
    warns about such dates; a slice's such date the training data does not have is named (the
    chain's calendar check, in inference and in a served request alike). A real day is not."""
    from bma_quant.serving.slice_checks import flat_dates_warning

    days = pd.to_datetime(["2019-10-31", "2019-11-01", "2019-11-04"])
    raw = pd.DataFrame({"date": np.repeat(days, 3), "ticker": ["A", "B", "C"] * 3,
                        "close": [10.0, 20, 30, 10.5, 19.5, 30.2, 10.5, 19.5, 30.2]})
    close = raw.pivot(index="date", columns="ticker", values="close")
    assert "no name's price moved on 1 date(s) the chain's training data does not have " \
        "(2019-11-04" in flat_dates_warning(close, days[1:], "the panel")
    assert flat_dates_warning(close, days[:2], "the panel") is None


def test_a_local_chain_that_failed_its_reproduction_check_is_warned_about(trained, tmp_path,
                                                                          caplog):
    """The training run refused to register the chain (it did not reproduce the pipeline's test
    predictions): scoring with it locally says so; a chain left unregistered for another reason
    (registry off) does not."""
    import json

    from bma_quant.serving.model_source import load_local

    *_, path, _ = trained
    report = tmp_path / "registration.json"
    report.write_text(json.dumps({"registered": False, "reason": "chain does not reproduce the "
                                  "test predictions: max |diff| 0.02 > 0.0001"}))
    with caplog.at_level("WARNING"):
        load_local(path, report)
    assert "failed its reproduction check" in caplog.text and "max |diff| 0.02" in caplog.text
    caplog.clear()
    report.write_text(json.dumps({"registered": False, "reason": "registry.enabled is false"}))
    with caplog.at_level("WARNING"):
        load_local(path, report)
    assert caplog.text == ""


def test_the_data_source_is_the_chains_own_or_inference_data_never_params_data(tmp_path,
                                                                               monkeypatch):
    from types import SimpleNamespace

    from bma_quant.pipelines.inference.nodes import describe_served, inference_data_source
    from bma_quant.serving.model_source import InferenceModel

    card = {"model_source": "local", "model_name": "bma_quant-x", "model_version": "3",
            "model_uri": "models:/bma_quant-x/3"}
    chain = SimpleNamespace(training_data={"raw_path": "trained.csv", "index_path": "idx.csv"},
                            label_target="5d return after 1d delay", training_run_id="abc",
                            data_end="2022-12-28")
    model = InferenceModel(chain, card)
    monkeypatch.chdir(tmp_path)
    # the chain's own file gone: named as the chain's, with the setting to give another
    with pytest.raises(ValueError, match=r"the file the chain was trained on, raw_path "
                                         r"trained.csv \(recorded in bma_quant-x version 3\), is "
                                         r"not there any more: set inference.data.raw_path"):
        inference_data_source(model, {})
    (tmp_path / "trained.csv").write_text("date,ticker,close\n")
    (tmp_path / "idx.csv").write_text("date,level\n")
    assert inference_data_source(model, {})["raw_path"] == "trained.csv"
    # `--params "inference.data.raw_path="`: empty, as null, is the chain's own file
    assert inference_data_source(model, {"data": {"raw_path": ""}})["raw_path"] == "trained.csv"
    newer = {"data": {"raw_path": "newer.csv"}}
    assert inference_data_source(model, newer) == {"raw_path": "newer.csv",
                                                   "index_path": "idx.csv"}
    served = describe_served(model, newer)
    assert served == {**card, "training_run_id": "abc", "models_run_id": None,
                      "label_target": "5d return after 1d delay",
                      "training_data_end": "2022-12-28", "data_path": "newer.csv",
                      "index_path": "idx.csv"}
    # a chain that does not record its data (pickled by an older version) asks for the file
    old = InferenceModel(SimpleNamespace(), card)
    with pytest.raises(ValueError, match="set inference.data.raw_path"):
        inference_data_source(old, {})
    assert describe_served(old, newer)["label_target"] is None


def test_a_uri_not_found_suggests_only_versions_and_aliases_that_exist():
    """Versions 1 (@champion) and 2 without an alias: the suggestion names those (it named
    @challenger, which no version had)."""
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException

    from bma_quant.serving.model_source import _registered_versions

    class Client:
        def search_model_versions(self, query):
            return [SimpleNamespace(version="1"), SimpleNamespace(version="2")]

        def get_registered_model(self, name):
            return SimpleNamespace(aliases={"champion": "1"})

    said = _registered_versions(Client(), "m", MlflowException("no alias prod"))
    assert "has version(s) 1 @champion, 2." in said
    assert "e.g. models:/m@champion or models:/m/2," in said and "challenger" not in said
