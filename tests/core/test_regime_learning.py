"""Regime-specific models: a sign-flipping signal is learned per regime; fallbacks; routing."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.cv import PurgedWalkForwardSplit
from bma_quant.core.data.labels import forward_return_labels
from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.evaluation.metrics import mean_rank_ic
from bma_quant.core.models.learners import predict_float32
from bma_quant.core.regimes import regime_learning as L
from bma_quant.core.regimes.detection import PROBABILITY_COLUMNS, REGIMES

FEATURES = ["signal_1", "noise_1", "noise_2", "noise_3"]
PARAMS = {"n_estimators": 60, "num_leaves": 15, "learning_rate": 0.05, "min_child_samples": 50}


def _config(**overrides) -> L.RegimeLearningConfig:
    return L.RegimeLearningConfig(**{"learner": "lightgbm", "params": PARAMS,
                                     "min_samples_per_regime": 300, "n_jobs": 1, **overrides})


def _one_hot(dates, labels) -> pd.DataFrame:
    table = pd.DataFrame({"date": pd.DatetimeIndex(dates), "regime": list(labels)})
    for regime, column in zip(REGIMES, PROBABILITY_COLUMNS, strict=True):
        table[column] = (table["regime"] == regime).astype(float)
    return table


@pytest.fixture(scope="module")
def flipped():
    """Signal pays in bull, is useless in neutral and pays the other way in bear."""
    sm = generate_synthetic_market(
        40, 900, seed=3, signal_strength=0.05, ohlcv=False, regime_stay_probability=0.99,
        regime_signal_multipliers={"bull": 1.0, "neutral": 0.0, "bear": -1.0},
    )
    close = sm.panel.pivot(index="date", columns="ticker", values="close")
    labels = forward_return_labels(close, 10, 1).stack(future_stack=True).rename("label")
    rows = sm.panel[["date", "ticker", *FEATURES]].merge(labels.reset_index(),
                                                          on=["date", "ticker"])
    rows[FEATURES] = rows[FEATURES].astype(np.float32)
    dates = pd.DatetimeIndex(rows["date"].unique())
    dev = rows[rows["date"] <= dates[720]].reset_index(drop=True)
    held_out = rows[rows["date"] >= dates[732]].dropna(subset=["label"]).reset_index(drop=True)
    regimes = _one_hot(sm.regimes["date"], sm.regimes["regime"])  # oracle detector
    return sm, dev, held_out, regimes


def test_regime_models_beat_global_model_when_signal_flips_sign(flipped):
    sm, dev, held_out, regimes = flipped
    config = _config()
    folds = PurgedWalkForwardSplit(3, TemporalConfig(), min_train_days=250).date_folds(dev["date"])
    weights = np.ones(len(dev))
    cv = L.cross_validate_regime_models(dev[FEATURES], dev["label"], weights, dev["date"],
                                        folds, lambda fold: regimes, config)
    oof = cv.oof.assign(date=dev["date"].to_numpy()[cv.oof["row"]],
                        label=dev["label"].to_numpy()[cv.oof["row"]])
    scores = L.per_regime_rank_ic(oof, ["prediction", "global_prediction"])
    assert scores["all"]["prediction"] > scores["all"]["global_prediction"] + 0.05
    assert scores["bear"]["prediction"] > 0.05 > scores["bear"]["global_prediction"]
    # Same purged folds as the shared splitter: every fold's test rows, nothing else.
    assert set(oof["fold"]) == {f.fold for f in folds}
    assert set(oof["date"]) == set().union(*(set(f.test_dates) for f in folds))

    # Refit on all development rows, then the held-out period after a purge gap.
    model = L.fit_regime_models(dev[FEATURES], dev["label"], weights, dev["date"], regimes,
                                config)
    assert set(model.estimators) == set(REGIMES) and model.fallback is None
    global_model = L.fit_learner(config, dev[FEATURES], dev["label"], weights, dev["date"])
    scored = held_out.assign(regime_aware=model.predict(held_out, regimes).to_numpy(),
                             global_=global_model.predict(held_out[FEATURES]))
    assert mean_rank_ic(scored, "regime_aware") > mean_rank_ic(scored, "global_") + 0.05


def test_small_and_empty_regimes_fall_back_to_stability_weighted_global_model(flipped):
    _, dev, held_out, _ = flipped
    dates = pd.DatetimeIndex(dev["date"].unique())
    # bear: 5 dates x 40 names = 200 rows < 300; neutral: no dates at all in development.
    labels = np.where(np.arange(len(dates)) < 5, "bear", "bull")
    probabilities = _one_hot(dates, labels)
    probabilities.loc[10:210, ["p_bull", "p_bear"]] = [0.3, 0.7]  # unsettled dates
    test_dates = pd.DatetimeIndex(held_out["date"].unique())
    test_regimes = _one_hot(test_dates, np.resize(["bull", "neutral", "bear"], len(test_dates)))
    regimes = pd.concat([probabilities, test_regimes], ignore_index=True)

    model = L.fit_regime_models(dev[FEATURES], dev["label"], np.ones(len(dev)), dev["date"],
                                regimes, _config())
    assert model.training_rows == {"bull": len(dev) - 200, "neutral": 0, "bear": 200}
    assert set(model.estimators) == {"bull"} and model.fallback is not None
    assert model.fallback_regimes == ["neutral", "bear"]

    prediction = model.predict(held_out, regimes).to_numpy()
    test_labels, _ = L.regimes_of_rows(held_out["date"], regimes)
    fallback = model.fallback.predict(held_out[FEATURES])
    bull = model.estimators["bull"].predict(held_out[FEATURES])
    routed_to_fallback = np.isin(test_labels, ["neutral", "bear"])
    np.testing.assert_allclose(prediction[routed_to_fallback], fallback[routed_to_fallback])
    np.testing.assert_allclose(prediction[~routed_to_fallback], bull[~routed_to_fallback])
    assert not np.allclose(fallback, bull)

    # The fallback is the global learner with stability weights: each row weighted by the
    # probability of its own regime (0.3 on the unsettled dates), not every row alike.
    row_labels, row_probabilities = L.regimes_of_rows(dev["date"], regimes)
    stability = L.stability_weights(row_labels, row_probabilities, _config().min_stability_weight)
    assert np.isclose(stability, 0.3).sum() == 201 * 40
    X = L.with_context(dev[FEATURES], pd.DatetimeIndex(dev["date"]), regimes,
                       _config().context_columns)
    weighted = L.fit_learner(_config(), X, dev["label"], stability, dev["date"])
    unweighted = L.fit_learner(_config(), X, dev["label"], np.ones(len(dev)), dev["date"])
    np.testing.assert_allclose(fallback, weighted.predict(held_out[FEATURES]), rtol=1e-6)
    assert np.abs(fallback - unweighted.predict(held_out[FEATURES])).max() > 1e-4


@pytest.mark.parametrize("training", ["hard", "soft"])
def test_no_regime_with_enough_rows_is_said(flipped, caplog, training):
    """A minimum above every regime's rows leaves the fallback alone: said per fit (INFO; the
    regime_models node warns once, on its refit), with what was counted."""
    _, dev, _, regimes = flipped
    config = _config(min_samples_per_regime=10**7, training=training)
    with caplog.at_level("INFO"):
        model = L.fit_regime_models(dev[FEATURES], dev["label"], np.ones(len(dev)), dev["date"],
                                    regimes, config)
    assert model.estimators == {} and model.fallback is not None
    counted = "probability mass in rows" if training == "soft" else "labelled rows"
    assert f"no regime has min_samples_per_regime (10000000) rows ({counted}: bull " in caplog.text


def test_stability_weights_are_the_floored_probability_of_the_own_regime():
    labels = np.array(["bull", "bear", "neutral", "bull"])
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.0, 0.01, 0.99],
                              [0.01, 0.99, 0.0]])
    weights = L.stability_weights(labels, probabilities, floor=0.05)
    np.testing.assert_allclose(weights, [0.9, 0.5, 0.05, 0.05])


def test_blend_mixes_regime_models_by_probability_and_model_pickles(flipped):
    _, dev, held_out, regimes = flipped
    soft = regimes.copy()
    soft[list(PROBABILITY_COLUMNS)] = 0.5 * soft[list(PROBABILITY_COLUMNS)] + 0.5 / 3
    blended = L.fit_regime_models(dev[FEATURES], dev["label"], np.ones(len(dev)), dev["date"],
                                  soft, _config(combine="blend"))
    X = held_out[FEATURES]
    _, probabilities = L.regimes_of_rows(held_out["date"], soft)
    expected = sum(probabilities[:, k] * predict_float32(blended.estimators[r], X)
                   for k, r in enumerate(REGIMES))
    np.testing.assert_allclose(blended.predict(held_out, soft).to_numpy(), expected, rtol=1e-6)

    restored = pickle.loads(pickle.dumps(blended))
    np.testing.assert_array_equal(restored.predict(held_out, soft).to_numpy(),
                                  blended.predict(held_out, soft).to_numpy())
    assert restored.name == "regime_lightgbm"


def test_rows_without_a_regime_and_bad_settings_are_refused(flipped):
    _, dev, _, regimes = flipped
    with pytest.raises(KeyError, match="no regime"):
        L.regimes_of_rows(dev["date"], regimes.iloc[10:])
    with pytest.raises(ValueError, match="combine"):
        _config(combine="vote")
    with pytest.raises(KeyError, match="Unknown learner"):
        _config(learner="catboost")


def test_soft_training_weights_every_row_by_its_regime_probability(flipped):
    """With certain (one-hot) probabilities and no floor, soft training sees exactly the hard
    subsets (zero-weight rows are not trained on): the same models. With a floor every model
    sees every row, and the flipped signal is still learned per regime."""
    _, dev, held_out, regimes = flipped
    weights = np.ones(len(dev))
    hard = L.fit_regime_models(dev[FEATURES], dev["label"], weights, dev["date"], regimes,
                               _config(min_stability_weight=0.0))
    soft = L.fit_regime_models(dev[FEATURES], dev["label"], weights, dev["date"], regimes,
                               _config(min_stability_weight=0.0, training="soft"))
    np.testing.assert_allclose(soft.predict(held_out, regimes), hard.predict(held_out, regimes))
    # with time-decay sample weights too: soft training multiplies them, as hard training uses them
    from bma_quant.core.features.decay import time_decay_weights

    decay = time_decay_weights(dev["date"], 120.0).set_index("date")["weight"]
    aged = dev["date"].map(decay).to_numpy()
    hard = L.fit_regime_models(dev[FEATURES], dev["label"], aged, dev["date"], regimes,
                               _config(min_stability_weight=0.0))
    soft = L.fit_regime_models(dev[FEATURES], dev["label"], aged, dev["date"], regimes,
                               _config(min_stability_weight=0.0, training="soft"))
    np.testing.assert_allclose(soft.predict(held_out, regimes), hard.predict(held_out, regimes))
    assert not np.allclose(hard.predict(held_out, regimes), L.fit_regime_models(
        dev[FEATURES], dev["label"], weights, dev["date"], regimes,
        _config(min_stability_weight=0.0)).predict(held_out, regimes))  # the weights matter
    floored = L.fit_regime_models(dev[FEATURES], dev["label"], weights, dev["date"], regimes,
                                  _config(training="soft", combine="blend"))
    assert set(floored.estimators) == set(REGIMES) and floored.fallback is None
    scored = held_out.assign(prediction=floored.predict(held_out, regimes).to_numpy())
    bear = scored[scored["date"].map(regimes.set_index("date")["regime"]) == "bear"]
    assert mean_rank_ic(bear, "prediction") > 0.05
    with pytest.raises(ValueError, match="training must be one of"):
        _config(training="mixture")


def test_the_regime_models_pyfunc_input_carries_each_rows_regime_state(flipped, tmp_path):
    """Logged to MLflow on its own, the regime model takes one frame (features plus the date's
    regime columns) and predicts what it predicts from (rows, regimes); saved and loaded back as
    a pyfunc model with its signature it does too."""
    import mlflow

    from bma_quant.serving.regime_pyfunc import RegimeModelPyfunc

    _, dev, held_out, regimes = flipped
    rng = np.random.default_rng(0)
    soft = regimes.copy()
    soft[list(PROBABILITY_COLUMNS)] = 0.5 * soft[list(PROBABILITY_COLUMNS)] + 0.5 / 3
    # a context column that is also a feature, with other values (a feature is lagged/smoothed)
    soft["fear_greed"] = rng.uniform(0, 100, len(soft))
    dev = dev.assign(fear_greed=rng.uniform(0, 100, len(dev)).astype(np.float32))
    held_out = held_out.assign(fear_greed=rng.uniform(0, 100, len(held_out)).astype(np.float32))
    features = [*FEATURES, "fear_greed"]
    model = L.fit_regime_models(dev[features], dev["label"], np.ones(len(dev)), dev["date"],
                                soft, _config(combine="blend", context_columns=("fear_greed",)))
    frame = L.regime_model_frame(model, held_out, soft)
    assert list(frame.columns) == ["date", "ticker", *features, "state_regime",
                                   *(f"state_{c}" for c in PROBABILITY_COLUMNS),
                                   "state_fear_greed"]
    expected = model.predict(held_out, soft).to_numpy()
    np.testing.assert_array_equal(RegimeModelPyfunc(model).predict(None, frame).to_numpy(),
                                  expected)
    signature = mlflow.models.infer_signature(frame.head(50), pd.Series(expected[:50]))
    mlflow.pyfunc.save_model(tmp_path / "regime", python_model=RegimeModelPyfunc(model),
                             signature=signature)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "regime"))
    np.testing.assert_allclose(np.asarray(loaded.predict(frame)).ravel(), expected, rtol=1e-6)


def test_each_folds_rows_carry_that_folds_own_regimes(flipped):
    """The out-of-fold `regime` column (per-regime scores in the report) is read from the fold's
    own detector, fitted on its training dates, never a later fold's."""
    _, dev, _, regimes = flipped
    folds = PurgedWalkForwardSplit(3, TemporalConfig(), min_train_days=250).date_folds(dev["date"])

    def fold_regimes(fold):  # a different labelling per fold, to tell them apart
        label = REGIMES[fold.fold % 3]
        return _one_hot(regimes["date"], [label] * len(regimes))

    cv = L.cross_validate_regime_models(dev[FEATURES], dev["label"], np.ones(len(dev)),
                                        dev["date"], folds, fold_regimes,
                                        _config(min_samples_per_regime=10))
    for fold, part in cv.oof.groupby("fold"):
        assert set(part["regime"]) == {REGIMES[int(fold) % 3]}
    assert cv.oof["fold"].nunique() == len(folds) >= 2


def test_the_refitted_global_comparison_trains_on_the_regime_models_thinned_rows(flipped):
    """With `max_train_rows` the regime models see every k-th training date; the global model
    they are compared with (refitted here, no base_models predictions) sees the same dates, not
    every row: otherwise `oof_rank_ic_gain` compares a thinned model with a whole one."""
    from bma_quant.core.models import training

    _, dev, _, regimes = flipped
    folds = PurgedWalkForwardSplit(3, TemporalConfig(), min_train_days=250).date_folds(dev["date"])
    config = _config(max_train_rows=3_000, min_samples_per_regime=10)
    cv = L.cross_validate_regime_models(dev[FEATURES], dev["label"], np.ones(len(dev)),
                                        dev["date"], folds, lambda fold: regimes, config)

    def global_oof(max_train_rows):
        oof, _ = training.fit_predict_folds(
            "lightgbm", PARAMS, dev[FEATURES], dev["label"], np.ones(len(dev)), dev["date"],
            folds, tickers=np.arange(len(dev)), seed=config.seed, n_jobs=1,
            max_train_rows=max_train_rows)
        return pd.Series(oof["prediction"].to_numpy(np.float64),
                         index=oof["ticker"].to_numpy()).reindex(cv.oof["row"]).to_numpy()

    np.testing.assert_array_equal(cv.oof["global_prediction"].to_numpy(), global_oof(3_000))
    assert not np.allclose(cv.oof["global_prediction"].to_numpy(), global_oof(None))
