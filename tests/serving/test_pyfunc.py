"""The pyfunc wrapper: requests the chain cannot score are the caller's fault (HTTP 400 with a
message), and the logged requirements pin every distribution the chain imports."""

from importlib.metadata import version

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from bma_quant.pipelines.evaluation import registry_nodes
from bma_quant.serving.pyfunc import BmaQuantChain, to_model_input
from bma_quant.serving.requirements import chain_pip_requirements
from tests.serving.upstream import build_chain, build_upstream


@pytest.fixture(scope="module")
def model_and_raw(tmp_path_factory):
    import pandas as pd

    datasets, overrides = build_upstream(tmp_path_factory.mktemp("pyfunc"), n_days=400)
    model = BmaQuantChain()
    model.chain = build_chain(datasets, overrides)
    return model, pd.read_parquet(overrides["data"]["raw_path"])


def _last_dates(raw, n):
    dates = sorted(raw["date"].unique())[-n:]
    return to_model_input(raw.loc[raw["date"].isin(dates)])


def test_enough_history_scores_the_last_date(model_and_raw):
    model, raw = model_and_raw
    warmup = model.chain.warmup_days
    out = model.predict(None, _last_dates(raw, warmup + 1), params={"last_date_only": True})
    assert len(out) == raw["ticker"].nunique() and out["prediction"].notna().all()
    assert (out["date"] == raw["date"].max()).all()


def test_a_served_answer_names_who_it_leaves_out(model_and_raw, monkeypatch):
    """A name with a close on the scored date but no score (unseasoned, a possible split held
    back: S&P's AAPL x100 on the last date) dropped out of a served answer without a word; the
    inference pipeline alone named it (serving.unscored, unit-tested in test_inference). The
    chain now says it for every answer of the last date: the request as sent, its scores."""
    from bma_quant.serving import unscored

    model, raw = model_and_raw
    request = _last_dates(raw, model.chain.warmup_days + 1)
    calls = []
    monkeypatch.setattr(unscored, "warn_unscored",
                        lambda given, scores, *rest: calls.append((given, scores, rest)))
    out = model.predict(None, request, params={"last_date_only": True})
    (given, scores, (universe, _, _)), = calls
    assert scores[["date", "ticker"]].equals(out[["date", "ticker"]])
    assert len(given) == len(request) and universe == model.chain.cleaner.universe
    model.chain.predict(raw.loc[raw["date"].isin(sorted(raw["date"].unique())[-200:])])
    assert len(calls) == 1  # a range of dates (the registry's check) is not an answer


def test_too_little_history_is_a_400_naming_the_lookback(model_and_raw):
    model, raw = model_and_raw
    warmup = model.chain.warmup_days
    with pytest.raises(MlflowException, match=rf"lookback of {warmup} trading dates") as info:
        model.predict(None, _last_dates(raw, warmup), params={"last_date_only": True})
    assert info.value.get_http_status_code() == 400
    assert "add at least 1 earlier date" in info.value.message


def test_unknown_tickers_are_a_400(model_and_raw):
    model, raw = model_and_raw
    request = _last_dates(raw, model.chain.warmup_days + 1).assign(ticker="ZZZ_" + raw["ticker"])
    request = request.drop_duplicates(["date", "ticker"])
    with pytest.raises(MlflowException, match="no ticker of the training universe") as info:
        model.predict(None, request)
    assert info.value.get_http_status_code() == 400


def test_requirements_pin_the_learners_and_statsmodels():
    pins = chain_pip_requirements()
    for name in ("xgboost", "lightgbm", "statsmodels", "scikit-learn", "pandas"):
        assert f"{name}=={version(name)}" in pins
    with pytest.raises(RuntimeError, match="no_such_dist"):
        chain_pip_requirements(("no_such_dist",))


def test_reproduction_slice_still_scores(model_and_raw):
    # the evaluation's reproduction check feeds exactly warmup_days dates before test_start
    model, raw = model_and_raw
    dates = sorted(raw["date"].unique())
    split = {"test_start": dates[-50], "test_end": dates[-1]}
    out = model.chain.predict(registry_nodes.test_slice(raw, split, model.chain.warmup_days))
    assert out["date"].nunique() == 50


def test_warm_up_dates_feed_the_features_but_are_not_predicted(model_and_raw, monkeypatch):
    """Only the dates after the warm-up are predicted, and they get what predicting every date
    of the slice and dropping the warm-up gave (each later step is per row or per date)."""
    import numpy as np
    import pandas as pd

    model, raw = model_and_raw
    chain = model.chain
    request = _last_dates(raw, chain.warmup_days + 5)
    seen = []
    original = type(chain).base_predictions
    monkeypatch.setattr(type(chain), "base_predictions",
                        lambda self, features: seen.append(features["date"]) or
                        original(self, features))
    out = chain.predict_all(request)
    scored = pd.DatetimeIndex(sorted(pd.to_datetime(request["date"]).unique()))[chain.warmup_days:]
    assert sorted(seen[0].unique()) == list(scored)
    assert sorted(out["date"].unique()) == list(scored)

    clean, market_frame = chain.prepare(request)
    every_date = original(chain, chain.features(clean, market_frame))
    every_date = every_date.loc[every_date["date"].isin(scored)]
    regimes = chain.regimes(clean, market_frame)
    regime_layer = chain.regime_predictions(chain.features(clean, market_frame), regimes)
    components = pd.concat([every_date, regime_layer.loc[regime_layer["date"].isin(scored)]]
                           if regime_layer is not None else [every_date], ignore_index=True)
    final = chain.ensemble.combine(components, regimes)
    keys = ["model", "date", "ticker"]
    expected = pd.concat([components, final[["date", "ticker", "prediction"]].assign(
        model=chain.model_name)], ignore_index=True).sort_values(keys).reset_index(drop=True)
    got = out.sort_values(keys).reset_index(drop=True)
    assert got[keys].equals(expected[keys])
    np.testing.assert_array_equal(got["prediction"].to_numpy(), expected["prediction"].to_numpy())


def test_request_dates_are_read_like_a_files(model_and_raw):
    """Day-first dates and UTC offsets that change with daylight saving are read as the file
    loader reads them (the chain's own validation), not refused by a bare pandas parse."""
    import pandas as pd

    model, raw = model_and_raw
    request = _last_dates(raw, model.chain.warmup_days + 1)
    expected = model.predict(None, request, params={"last_date_only": True})
    days = pd.to_datetime(request["date"])
    day_first = request.assign(date=days.dt.strftime("%d/%m/%Y"))
    offsets = request.assign(date=(days + pd.Timedelta(hours=16)).dt.tz_localize(
        "America/New_York").map(lambda t: t.isoformat()))
    for variant in (day_first, offsets):
        out = model.predict(None, variant, params={"last_date_only": True})
        pd.testing.assert_frame_equal(out, expected)


def test_a_partial_last_day_is_named_when_served(model_and_raw, caplog):
    """last_date_only on a request whose last day only a few names have: the previous date's
    scores come back, and the server's log says why."""
    import pandas as pd

    model, raw = model_and_raw
    request = _last_dates(raw, model.chain.warmup_days + 1)
    last = pd.Timestamp(request["date"].max())
    extra = request[request["date"] == request["date"].max()].head(2).assign(
        date=(last + pd.Timedelta(days=1)).strftime("%Y-%m-%d"))
    with caplog.at_level("WARNING"):
        out = model.predict(None, pd.concat([request, extra]), params={"last_date_only": True})
    assert (pd.to_datetime(out["date"]) == last).all()
    assert f"last date {(last + pd.Timedelta(days=1)).date()} is not scored" in caplog.text



def test_a_selected_user_factor_sent_empty_is_named_not_scored_as_a_constant(caplog):
    """The column is there but has no value on the scored date: the chain would impute the
    date's median for every name and rank on the other features alone, without a word (an
    absent column is refused). Refused when the last date alone is scored (inference, serving);
    warned over a range of dates; a factor with some values, or not selected, passes."""
    from types import SimpleNamespace

    import pandas as pd

    from bma_quant.serving.chain import ChainInputError, PredictionChain

    dates = pd.bdate_range("2022-01-03", periods=3)
    clean = pd.DataFrame({"date": dates.repeat(2), "ticker": ["A", "B"] * 3, "eligible": True,
                          "vendor": [1.0, 2.0, None, 3.0, None, None],
                          "unused": [None] * 6})
    spec = SimpleNamespace(selected=["ret_5", "user_vendor", "unused"],
                           families={"ret_5": "return", "user_vendor": "user", "unused": "user"})
    chain = SimpleNamespace(feature_spec=spec)
    spec.selected.remove("unused")
    PredictionChain._check_user_factors(chain, clean, dates[:2], refuse=True)  # B has a value
    with pytest.raises(ChainInputError, match=r"selected user factor\(s\) without a value for "
                                              r"any name: user_vendor on 1 of 1 scored date\(s\) "
                                              r"\(e.g. 2022-01-05\)"):
        PredictionChain._check_user_factors(chain, clean, dates[2:], refuse=True)
    with caplog.at_level("WARNING"):
        PredictionChain._check_user_factors(chain, clean, dates, refuse=False)
    assert "user_vendor on 1 of 3 scored date(s)" in caplog.text


def _with_index(model_and_raw):
    """The fixture's model as if trained with a market index (the mean close), and the last
    warm-up + 1 dates with that level as their `market_level` column."""
    from dataclasses import replace

    model, raw = model_and_raw
    levels = raw.groupby("date", as_index=False)["close"].mean().rename(columns={"close": "level"})
    indexed = BmaQuantChain()
    indexed.chain = replace(model.chain, market_index=levels,
                            data_end=str(raw["date"].max().date()))
    dates = sorted(raw["date"].unique())[-(model.chain.warmup_days + 1):]
    request = raw.loc[raw["date"].isin(dates)].merge(
        levels.rename(columns={"level": "market_level"}), on="date", how="left")
    return indexed, request.reset_index(drop=True), dates


def _stored_until(model, dates, k):
    """The model as if its training data (and stored index) ended before ``dates[k]``."""
    from dataclasses import replace

    stored = model.chain.market_index
    model.chain = replace(model.chain, market_index=stored[stored["date"] < dates[k]],
                          data_end=str(dates[k - 1].date()))
    return model


def test_an_empty_market_level_inside_the_stored_index_gets_the_stored_level(model_and_raw,
                                                                             caplog):
    """Levels left empty on dates the chain's stored index has were carried forward from the
    date before (scores moved by up to 0.2 on the shipped sample, with only the regime
    evidence's "other prices" warning): they are the levels training used."""
    model, request, dates = _with_index(model_and_raw)
    full = model.predict(None, to_model_input(request), params={"last_date_only": True})
    for blank_dates in (dates[-3:-1], dates[-1:], dates[-19:]):
        blank = request.assign(market_level=request["market_level"].mask(
            request["date"].isin(blank_dates)))
        caplog.clear()
        with caplog.at_level("WARNING"):
            out = model.predict(None, to_model_input(blank), params={"last_date_only": True})
        pd.testing.assert_frame_equal(out, full)
        assert "market_level" not in caplog.text and "regime evidence" not in caplog.text


def test_a_scored_date_without_its_market_level_is_a_400(model_and_raw):
    """After the stored index, a NaN level on the scored date was carried forward from the day
    before and scored: the market return read 0 and every score moved. Refused, like later
    dates without the column."""
    model, request, dates = _with_index(model_and_raw)
    model = _stored_until(model, dates, -19)
    model.predict(None, to_model_input(request), params={"last_date_only": True})
    blank = request.assign(market_level=request["market_level"].mask(request["date"] == dates[-1]))
    with pytest.raises(MlflowException, match=rf"'market_level' column has no level on 1 "
                                              rf"date\(s\) .*: {dates[-1].date()}\.") as info:
        model.predict(None, to_model_input(blank), params={"last_date_only": True})
    assert info.value.get_http_status_code() == 400
    weeks = request.assign(market_level=request["market_level"].mask(
        request["date"] >= dates[-19]))  # the last 19 dates without a level
    with pytest.raises(MlflowException, match=r"no level on 19 date\(s\)"):
        model.predict(None, to_model_input(weeks), params={"last_date_only": True})
    # levels sent only from some date after the stored index ends: the dates between are refused
    late_start = request.assign(market_level=request["market_level"].where(
        request["date"] >= dates[-14]))
    with pytest.raises(MlflowException, match=rf"no level on 5 date\(s\) after the stored "
                                              rf"market index ends .* and before its first "
                                              rf"level \({dates[-14].date()}\)"):
        model.predict(None, to_model_input(late_start), params={"last_date_only": True})


def test_missing_market_levels_inside_the_request_are_checked_like_an_index_files(
        model_and_raw, caplog):
    """After the stored index, inside the request's levels a missing one is carried forward, as
    training carries an index file's, and named (one such date moved later scores by up to
    0.94); 19 in a row are also warned about as an index file's run, most dates without a level
    are a 400 (a weekly series?)."""
    model, request, dates = _with_index(model_and_raw)
    model = _stored_until(model, dates, -61)
    gap = request["date"].isin(dates[-60:-41])
    holed = request.assign(market_level=request["market_level"].mask(gap))
    with caplog.at_level("WARNING"):
        out = model.predict(None, to_model_input(holed), params={"last_date_only": True})
    assert (f"has no level on 19 of the panel's {len(dates)} trading days, 19 in a row from "
            f"{dates[-60].date()}") in caplog.text
    assert (f"'market_level' column has no level on 19 date(s) after the stored market index "
            f"ends ({dates[-60].date()}, ") in caplog.text
    carried = holed.assign(market_level=holed["date"].map(
        holed.groupby("date")["market_level"].first().ffill()))
    pd.testing.assert_frame_equal(
        out, model.predict(None, to_model_input(carried), params={"last_date_only": True}))
    caplog.clear()
    one = request.assign(market_level=request["market_level"].mask(request["date"] == dates[-5]))
    with caplog.at_level("WARNING"):
        model.predict(None, to_model_input(one), params={"last_date_only": True})
    assert (f"no level on 1 date(s) after the stored market index ends ({dates[-5].date()})"
            in caplog.text)
    model = _stored_until(model, dates, 1)  # a weekly series over the whole request
    weekly = request.assign(market_level=request["market_level"].where(
        request["date"].isin(dates[::5] + [dates[-1]])))
    with pytest.raises(MlflowException, match=r"'market_level' column has a level on only "
                                              r"\d+% of the panel's") as info:
        model.predict(None, to_model_input(weekly), params={"last_date_only": True})
    assert info.value.get_http_status_code() == 400


def test_a_market_level_no_market_moves_to_is_warned_about(model_and_raw, caplog):
    """A level x100 on the scored date was scored with no word but a generic regime-evidence
    warning: the request's index gets the training file's check, naming the date."""
    model, request, dates = _with_index(model_and_raw)
    spiked = request.assign(market_level=request["market_level"].where(
        request["date"] != dates[-1], request["market_level"] * 100))
    with caplog.at_level("WARNING"):
        model.predict(None, to_model_input(spiked), params={"last_date_only": True})
    assert (f"the slice's market index moves more than processing.index_jump_warning (40%) in a "
            f"day 1 time(s), the largest: {dates[-1].date()} x100" in caplog.text)
    # the chain keeps the bound it was trained with; a chain pickled before it existed reads
    # split_detection's (the rule it was built with); null turns it off
    from dataclasses import replace

    cleaner = model.chain.cleaner
    assert cleaner.index_jump_set and cleaner.index_jump_bound() == 0.4
    old = replace(cleaner, index_jump_set=False, index_jump_warning=None)
    assert old.index_jump_bound() == cleaner.split_detection["max_abs_return"]
    caplog.clear()
    model.chain = replace(model.chain, cleaner=old)
    with caplog.at_level("WARNING"):  # and names that setting, not one the chain never had
        model.predict(None, to_model_input(spiked), params={"last_date_only": True})
    assert "moves more than processing.split_detection.max_abs_return (" in caplog.text
    caplog.clear()
    model.chain = replace(model.chain, cleaner=replace(cleaner, index_jump_warning=None))
    with caplog.at_level("WARNING"):
        model.predict(None, to_model_input(spiked), params={"last_date_only": True})
    assert "moves more than" not in caplog.text


def test_a_market_level_other_than_the_stored_index_is_named(model_and_raw, caplog):
    """Levels 3 % off the trained index on the scored date moved scores by up to 0.4 with only
    the regime evidence's "other prices" warning: the dates that differ are named."""
    model, request, dates = _with_index(model_and_raw)
    with caplog.at_level("WARNING"):
        model.predict(None, to_model_input(request), params={"last_date_only": True})
    assert "differs from the market index the chain was trained with" not in caplog.text
    moved = request.assign(market_level=request["market_level"].where(
        request["date"] != dates[-1], request["market_level"] * 1.03))
    caplog.clear()
    with caplog.at_level("WARNING"):
        model.predict(None, to_model_input(moved), params={"last_date_only": True})
    assert (f"'market_level' differs from the market index the chain was trained with on 1 of "
            f"the {len(dates)} dates both have (e.g. {pd.Timestamp(dates[-1]).date()}:"
            in caplog.text)


def test_a_chain_storing_zoned_index_and_regime_timestamps_reads_them_as_days(model_and_raw,
                                                                             caplog):
    """Chains pickled before stored dates were days may hold zoned timestamps: a request with
    levels was a pandas merge error (a 500) instead of being compared day by day; a level off by
    less than the default print's 6 digits is shown to the digit that differs."""
    from dataclasses import replace

    model, request, dates = _with_index(model_and_raw)
    chain = model.chain
    zoned = chain.market_index.assign(
        date=pd.to_datetime(chain.market_index["date"]).dt.tz_localize("America/New_York"))
    known = chain.known_regimes.assign(
        date=pd.to_datetime(chain.known_regimes["date"]).dt.tz_localize("America/New_York"))
    model.chain = replace(chain, market_index=zoned, known_regimes=known)
    with caplog.at_level("WARNING"):
        model.predict(None, to_model_input(request), params={"last_date_only": True})
    assert "differs from the market index" not in caplog.text
    assert "trading dates are not the training" not in caplog.text
    level = float(request.loc[request["date"] == request["date"].max(), "market_level"].iloc[0])
    nudged = request.assign(market_level=request["market_level"].where(
        request["date"] != dates[-1], level * (1 + 1e-5)))
    caplog.clear()
    with caplog.at_level("WARNING"):
        model.predict(None, to_model_input(nudged), params={"last_date_only": True})
    assert f"{level * (1 + 1e-5):.10g} sent, {level:.10g} in training" in caplog.text


def test_a_market_level_column_without_values_is_not_called_absent(model_and_raw):
    """Every level empty, a date after the training data and its stored index: refused, saying
    the column holds no level (the message said the panel had no such column, though it had one)."""
    from dataclasses import replace

    model, request, dates = _with_index(model_and_raw)
    stored = model.chain.market_index
    model.chain = replace(model.chain, market_index=stored[stored["date"] < dates[-1]],
                          data_end=str(dates[-2].date()))
    empty = request.assign(market_level=float("nan"))
    with pytest.raises(MlflowException, match=r"'market_level' column holds no level") as info:
        model.predict(None, to_model_input(empty), params={"last_date_only": True})
    assert "has no 'market_level' column" not in info.value.message


def test_a_scored_name_without_a_sector_is_named(model_and_raw, caplog):
    """Features demeaned within sectors in training: a name sent without a sector is left out
    of the demeaning (as training leaves a name without one) and its score moves. Named in a
    warning with how it is treated, not refused; a sector missing only on the last date is
    carried forward (point in time) and needs no word."""
    from dataclasses import replace

    model, raw = model_and_raw
    sectored = BmaQuantChain()
    sectored.chain = replace(model.chain,
                             training_sectors=sorted(raw["sector"].astype(str).unique()))
    request = _last_dates(raw, model.chain.warmup_days + 1)
    first = sorted(request["ticker"].unique())[0]
    without = request.assign(sector=request["sector"].where(request["ticker"] != first))
    with caplog.at_level("WARNING"):
        out = sectored.predict(None, without, params={"last_date_only": True})
    assert f"1 scored name(s) have no sector: {first}. Their features are not demeaned" \
        in caplog.text
    assert first in set(out["ticker"])
    caplog.clear()
    last_only = request.assign(sector=request["sector"].where(
        (request["ticker"] != first) | (request["date"] != request["date"].max())))
    with caplog.at_level("WARNING"):
        sectored.predict(None, last_only, params={"last_date_only": True})
    assert "have no sector" not in caplog.text
    # a name training had without a sector too was named there: not again at every request
    sectored.chain = replace(sectored.chain, unsectored_names=[first])
    with caplog.at_level("WARNING"):
        sectored.predict(None, without, params={"last_date_only": True})
    assert "have no sector" not in caplog.text


def test_a_jump_on_the_scored_date_is_named(model_and_raw, caplog):
    """A close x1000 on the last date (a bad print no later close can show yet) is scored as
    given, and named; the other dates' ordinary moves are not."""
    import pandas as pd

    model, raw = model_and_raw
    request = _last_dates(raw, model.chain.warmup_days + 1)
    name, last = sorted(request["ticker"].unique())[0], request["date"].max()
    with caplog.at_level("WARNING"):
        model.predict(None, request, params={"last_date_only": True})
    assert "moved beyond processing.split_detection.max_abs_return" not in caplog.text
    spiked = request.copy()
    at = (spiked["ticker"] == name) & (spiked["date"] == last)
    spiked.loc[at, "close"] = spiked.loc[at, "close"] * 1000
    with caplog.at_level("WARNING"):
        model.predict(None, spiked, params={"last_date_only": True})
    assert (f"1 scored name(s) moved beyond processing.split_detection.max_abs_return on the "
            f"slice's last date: {name}@{pd.Timestamp(last).date()} +") in caplog.text
    # a check over many dates (the registry's reproduction): an earlier date's jump has later
    # closes the split repair reads, so it is not named
    earlier = _last_dates(raw, model.chain.warmup_days + 5)
    before = sorted(earlier["date"].unique())[-3]  # the request's dates are ISO text
    at = (earlier["ticker"] == name) & (earlier["date"] >= before)
    earlier.loc[at, "close"] *= 1.7  # a held +70 % move, no split
    caplog.clear()
    with caplog.at_level("WARNING"):
        scored = model.chain.predict(earlier, first_date=pd.Timestamp(before))
    assert scored["date"].min() == pd.Timestamp(before) and name in set(scored["ticker"])
    assert "moved beyond processing.split_detection.max_abs_return" not in caplog.text


def test_malformed_requests_are_a_400_naming_the_problem(model_and_raw):
    """An empty frame (was: 'no sector column'), one date with two index levels (the first row's
    won: a score set by row order), and dates to score on which no name is in the cross-section
    (a first slice of the file, or every close x100 on the last date: was sklearn's traceback on
    0 rows)."""
    from bma_quant.serving.chain import ChainInputError, PredictionChain

    model, raw = model_and_raw
    request = _last_dates(raw, model.chain.warmup_days + 1)
    with pytest.raises(MlflowException, match="the panel has no rows") as info:
        model.predict(None, request.iloc[:0])
    assert info.value.get_http_status_code() == 400
    levels = request.assign(market_level=100.0)
    levels.loc[levels.index[-1], "market_level"] = 200.0
    levels["date"] = pd.to_datetime(levels["date"])
    with pytest.raises(ChainInputError, match="different levels on one date"):
        PredictionChain._index_from_slice(levels)  # a chain trained with an index reads it
    # a level of 0 or below moved every score without a word (an index file refuses it)
    zero = levels.assign(market_level=100.0)
    zero.loc[zero["date"] == zero["date"].max(), "market_level"] = 0.0
    with pytest.raises(ChainInputError, match=r"'market_level' column must hold positive index "
                                              r"levels: \d+ row\(s\) on 1 date\(s\) hold 0 or less "
                                              r"\(e\.g\. \d{4}-\d\d-\d\d: 0\)"):  # not np.float64(0.0)
        PredictionChain._index_from_slice(zero)
    # a chain trained without one ignores the column (said in a warning), conflicts and all
    assert model.chain.market_index is None
    assert PredictionChain._index_from_slice(levels, check=False)["level"].iloc[-1] == 100.0
    scored = pd.DatetimeIndex([raw["date"].max()])
    none = pd.DataFrame(columns=["date", "ticker", *model.chain.feature_spec.selected])
    with pytest.raises(ChainInputError, match=r"no name is in the cross-section on the date\(s\) "
                                              r"to score .*min_history_days"):
        PredictionChain._check_names_to_score(model.chain, none, scored)
    PredictionChain._check_names_to_score(model.chain, request.head(1), scored)  # one is enough


def test_names_outside_training_and_trained_names_absent_are_named(model_and_raw, caplog):
    """A served request has only the log to say so: a new ticker and one written in another
    case get no score, and a trained name absent from the request moves every other score."""
    model, raw = model_and_raw
    request = _last_dates(raw, model.chain.warmup_days + 1)
    tickers = sorted(request["ticker"].unique())
    renamed = request.assign(ticker=request["ticker"].replace({tickers[0]: tickers[0].lower()}))
    newco = request[request["ticker"] == tickers[1]].assign(ticker="NEWCO")
    with caplog.at_level("WARNING"):
        out = model.predict(None, pd.concat([renamed, newco]), params={"last_date_only": True})
    assert not {"NEWCO", tickers[0].lower()} & set(out["ticker"])
    text = caplog.text
    assert "2 ticker(s) of the request are not in the chain's training universe" in text
    assert f"{tickers[0].lower()} ({tickers[0]}?)" in text
    assert ("1 name(s) of the training panel's last cross-section are absent from the request: "
            f"{tickers[0]}.") in text


def test_integer_columns_are_sent_as_the_signatures_double():
    rows = pd.DataFrame({"date": ["2024-01-02"], "ticker": ["A"], "close": [10],
                         "volume": pd.array([1000], dtype="int64"), "sector": ["x"]})
    sent = to_model_input(rows)
    assert sent["volume"].dtype == "float64" and sent["close"].dtype == "float64"
    assert sent["sector"].tolist() == ["x"] and sent["date"].tolist() == ["2024-01-02"]


def test_codes_that_lost_their_leading_zeros_are_hinted(caplog):
    """A request built from a file that stores A-share codes as numbers sends 1 for 000001:
    no score for it, and the log says which trained code it likely is."""
    from types import SimpleNamespace

    from bma_quant.serving.slice_checks import SliceChecks

    chain = SimpleNamespace(cleaner=SimpleNamespace(universe=["000001", "600519", "AAPL"]),
                            last_names=["000001", "600519"])
    request = pd.DataFrame({"date": ["2024-01-02"] * 3, "ticker": ["1", "600519", "aapl"],
                            "close": [10.0, 1500.0, 190.0]})
    with caplog.at_level("WARNING"):
        SliceChecks._warn_names_outside_training(chain, request)
    assert "only in leading zeros (codes stored as numbers lose them" in caplog.text
    assert "1 (000001?)" in caplog.text and "aapl (AAPL?)" in caplog.text
    assert "600519 (" not in caplog.text
