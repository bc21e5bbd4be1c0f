"""Known regimes of a synthetic market: loaded from `data.true_regimes_path`, never a feature, and
scored against the detector as `regime_models.detector_agreement*` (issue 12, item 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.schema import DataValidationError
from bma_quant.core.data.synthetic import REGIME_FACTOR_MARKET, generate_synthetic_market
from bma_quant.core.features import factors as F
from bma_quant.core.regimes.detection import PROBABILITY_COLUMNS, REGIMES
from bma_quant.pipelines.data_processing.nodes import load_true_regimes
from bma_quant.pipelines.regime_models.nodes import detector_agreement
from bma_quant.pipelines.regime_models.plots import regime_timeline_figure


@pytest.fixture(scope="module")
def market():
    return generate_synthetic_market(30, 300, seed=5, **REGIME_FACTOR_MARKET)


def _split(dates: pd.Series) -> dict:
    cut = len(dates) * 2 // 3
    return {"dev_start": str(dates.iloc[0].date()), "dev_end": str(dates.iloc[cut - 1].date()),
            "test_start": str(dates.iloc[cut].date()), "test_end": str(dates.iloc[-1].date())}


def _detected(truth: pd.DataFrame, rename: dict | None = None) -> pd.DataFrame:
    """A detector table that says the true regime (optionally under other names), one-hot."""
    labels = truth["regime"].map(rename or {}).fillna(truth["regime"])
    table = pd.DataFrame({"date": truth["date"], "regime": labels})
    for regime, column in zip(REGIMES, PROBABILITY_COLUMNS, strict=True):
        table[column] = (labels == regime).astype(float)
    return table


def test_true_regimes_round_trip_and_absent_without_a_path(market, tmp_path):
    path = tmp_path / "synthetic_regimes.parquet"
    market.regimes.to_parquet(path)
    loaded = load_true_regimes({"true_regimes_path": str(path)})
    pd.testing.assert_frame_equal(loaded, market.regimes.reset_index(drop=True),
                                  check_dtype=False)
    assert load_true_regimes({"true_regimes_path": None}).empty
    assert load_true_regimes({}).empty


def test_bad_true_regimes_file_gives_one_clear_error(market, tmp_path):
    bad = market.regimes.copy()
    bad.loc[3, "regime"] = "sideways"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"bad\.csv.*regimes in \['bull'.*; 1 bad "
                                                  r"row\(s\), e.g. line 5: .*'sideways'$"):
        load_true_regimes({"true_regimes_path": str(path)})
    # a repeated date is named with its lines (it said "duplicate dates" only)
    pd.concat([market.regimes, market.regimes.iloc[[7]]]).to_csv(path, index=False)
    day = pd.Timestamp(market.regimes["date"].iloc[7]).date()
    with pytest.raises(DataValidationError, match=rf"1 date\(s\) more than once, e.g. {day} "
                                                  rf"\(lines 9, {len(market.regimes) + 2}\)"):
        load_true_regimes({"true_regimes_path": str(path)})
    market.regimes.rename(columns={"regime": "state"}).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"missing required column\(s\) \['regime'\]"):
        load_true_regimes({"true_regimes_path": str(path)})


def test_agreement_metrics_known_answers(market):
    truth = market.regimes
    split = _split(truth["date"])
    perfect = detector_agreement(_detected(truth), truth, split)
    assert {k: v["value"] for k, v in perfect.items()} == {
        "detector_agreement": 1.0, "detector_agreement_best_match": 1.0,
        "detector_agreement_probability": 1.0,
        "detector_agreement_best_match_probability": 1.0}
    # an unsupervised detector's names are a convention: bull and bear swapped still match best
    swapped = detector_agreement(_detected(truth, {"bull": "bear", "bear": "bull"}), truth, split)
    test = truth[truth["date"] >= pd.Timestamp(split["test_start"])]
    same = test["regime"].eq("neutral").mean()
    assert swapped["detector_agreement"]["value"] == pytest.approx(same)
    assert swapped["detector_agreement_best_match"]["value"] == 1.0


def test_agreement_is_scored_on_test_dates_only(market):
    truth = market.regimes
    split = _split(truth["date"])
    detected = _detected(truth)
    dev = detected["date"] <= pd.Timestamp(split["dev_end"])
    detected.loc[dev, "regime"] = "neutral"  # wrong on development dates: not scored
    assert detector_agreement(detected, truth, split)["detector_agreement"]["value"] == 1.0


def test_the_best_label_match_is_chosen_on_development_dates(market):
    """Names that agree with the truth on the test dates only after a swap the development
    dates do not show are not credited: the permutation is chosen where it is not scored."""
    truth = market.regimes
    split = _split(truth["date"])
    detected = _detected(truth)
    dev = (detected["date"] <= pd.Timestamp(split["dev_end"])).to_numpy()
    swapped = _detected(truth, {"bull": "bear", "bear": "bull"})
    detected.loc[dev, "regime"] = swapped.loc[dev, "regime"]  # named the other way before
    test = truth[truth["date"] >= pd.Timestamp(split["test_start"])]
    metrics = detector_agreement(detected, truth, split)
    assert metrics["detector_agreement"]["value"] == 1.0
    assert metrics["detector_agreement_best_match"]["value"] == pytest.approx(
        test["regime"].eq("neutral").mean())


def test_no_truth_logs_nothing_and_foreign_truth_is_refused(market):
    truth = market.regimes
    split = _split(truth["date"])
    assert detector_agreement(_detected(truth), truth.iloc[:0], split) == {}
    foreign = truth.assign(date=truth["date"] - pd.Timedelta(days=3650))
    with pytest.raises(ValueError, match="share no test date"):
        detector_agreement(_detected(truth), foreign, split)


def test_truth_columns_never_become_factors(market):
    """`user_columns: true` passes numeric panel columns through as factors; the generator's known
    answers (true regime, expected return) must not be among them even if merged into a panel."""
    panel = market.panel.merge(market.expected_return, on=["date", "ticker"]).merge(
        market.regimes, on="date")
    panel["regime_code"] = panel["regime"].map({r: k for k, r in enumerate(REGIMES)})
    config = F.FactorConfig()
    names = F.factor_registry(F.prepare_inputs(panel, None, config), config)
    assert "expected_return" not in names and "regime" not in names
    # an arbitrary numeric column is still a user factor (the pass-through works)
    assert F.factor_registry(F.prepare_inputs(panel, None, config), config)[
        "regime_code"][0] == F.USER_FAMILY


def test_timeline_shows_the_filtered_probabilities(market):
    truth = market.regimes
    detected = _detected(truth)
    detected["fear_greed"] = 50.0
    level = market.market.rename(columns={"level": "market_level"})
    figure = regime_timeline_figure(detected, level, _split(truth["date"]))
    names = [trace.name for trace in figure.data]
    assert set(PROBABILITY_COLUMNS) <= set(names)
    for column in PROBABILITY_COLUMNS:
        trace = next(t for t in figure.data if t.name == column)
        np.testing.assert_array_equal(np.asarray(trace.y, dtype=float), detected[column])
    assert "filtered regime probabilities" in figure.layout.annotations[1].text
