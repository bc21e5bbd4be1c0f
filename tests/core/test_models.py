"""Base learners: registry, estimators, native fold path, weights, known answers (core only)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from bma_quant.core.data.cv import PurgedWalkForwardSplit
from bma_quant.core.data.labels import forward_return_labels
from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.evaluation import metrics
from bma_quant.core.models import learners, training

FEATURES = ["signal_1", "noise_1", "noise_2", "noise_3", "ret_5d", "ret_20d"]
DEFAULTS = {
    "elastic_net": {"alpha": 0.01, "l1_ratio": 0.5},
    "xgboost": {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1},
    "lightgbm": {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1},
    "alpha_composite": {},
}
# Known-answer defaults: the trees regularised as tuning would pick them (one planted signal
# among noise columns), so the check is about finding the signal, not about untuned overfitting.
KNOWN_ANSWER = {
    **DEFAULTS,
    "xgboost": {"n_estimators": 100, "max_depth": 2, "learning_rate": 0.05,
                "min_child_weight": 50.0},
    "lightgbm": {"n_estimators": 100, "num_leaves": 4, "learning_rate": 0.05,
                 "min_child_samples": 200},
}


def synthetic_dev(signal_strength=0.02, n_tickers=50, n_days=700, seed=11):
    """Development rows (date, ticker, label, features) and purged folds from the generator."""
    market = generate_synthetic_market(n_tickers, n_days, seed=seed,
                                       signal_strength=signal_strength, ohlcv=False)
    panel = market.panel
    close = panel.pivot(index="date", columns="ticker", values="close")
    frame = panel[["date", "ticker", "signal_1", "noise_1", "noise_2", "noise_3"]]
    label = forward_return_labels(close, 10, 1).stack(future_stack=True).rename("label")
    frame = frame.merge(label.reset_index(), on=["date", "ticker"])
    for window in (5, 20):
        ret = np.log(close).diff(window).stack(future_stack=True).rename(f"ret_{window}d")
        frame = frame.merge(ret.reset_index(), on=["date", "ticker"])
    frame[FEATURES] = frame[FEATURES].astype(np.float32)
    frame = frame.dropna(subset=["label"]).sort_values(["date", "ticker"]).reset_index(drop=True)
    folds = PurgedWalkForwardSplit(4, TemporalConfig(), min_train_days=200).date_folds(
        frame["date"].unique())
    return frame, folds


@pytest.fixture(scope="module")
def planted():
    return synthetic_dev(0.02)


@pytest.fixture(scope="module")
def noise():
    return synthetic_dev(0.0, seed=12)


def _oof(name, frame, folds, params=None, weights=None, seed=42):
    return training.fit_predict_folds(
        name, params if params is not None else DEFAULTS[name], frame[FEATURES], frame["label"],
        weights, frame["date"], folds, tickers=frame["ticker"], seed=seed, n_jobs=1)


def _oof_rank_ic(oof, frame):
    merged = oof.merge(frame[["date", "ticker", "label"]], on=["date", "ticker"])
    return metrics.mean_rank_ic(merged, "prediction", "label")


def test_registry_maps_parameter_names_to_estimators():
    assert set(learners.LEARNERS) >= {"elastic_net", "xgboost", "lightgbm", "alpha_composite"}
    assert type(learners.build_estimator("xgboost", {"max_depth": 3})).__name__ == "XGBRegressor"
    assert learners.build_estimator("xgboost", {}).get_params()["tree_method"] == "hist"
    lgbm = learners.build_estimator("lightgbm", {"num_leaves": 7}, seed=3, n_jobs=1)
    assert lgbm.get_params()["deterministic"] is True and lgbm.random_state == 3
    enet = learners.build_estimator("elastic_net", {"alpha": 0.5})
    assert [name for name, _ in enet.steps] == ["impute", "scale", "model"]
    assert enet.named_steps["model"].alpha == 0.5
    with pytest.raises(KeyError, match="registered"):
        learners.get_learner("random_forest")


def test_adding_a_learner_is_one_registry_entry(planted):
    frame, folds = planted
    learners.register_learner(learners.Learner(
        "ridge", lambda p, seed, n_jobs: make_pipeline(SimpleImputer(), Ridge(**p)),
        lambda est, X, y, w, dates: est.fit(X, y, ridge__sample_weight=w),
        lambda est, names: np.abs(est[-1].coef_), importance_kind="abs_coef"))
    try:
        oof, scores = _oof("ridge", frame, folds, params={"alpha": 1.0})
        assert set(oof["model"]) == {"ridge"} and len(scores) == len(folds)
        assert _oof_rank_ic(oof, frame) > 0.05
    finally:
        del learners.LEARNERS["ridge"]


@pytest.mark.parametrize("name", ["xgboost", "lightgbm", "elastic_net"])
def test_native_fold_path_trains_the_same_model_as_the_refit_wrapper(planted, name):
    frame, folds = planted
    params = dict(DEFAULTS[name])
    if name != "elastic_net":
        params.update(subsample=0.8, colsample_bytree=0.7)
    if name == "lightgbm":
        params["subsample_freq"] = 1
    data = training.LearningSet.from_arrays(frame[FEATURES], frame["label"], None, frame["date"])
    cache = training.FoldCache(data, folds)
    native = cache.fit_predict_fold(name, params, 1, seed=5, n_jobs=1)
    train, test = cache.rows[1]
    wrapper = training.refit(name, params, frame[FEATURES].iloc[train], frame["label"].iloc[train],
                             None, dates=frame["date"].iloc[train], seed=5, n_jobs=1)
    np.testing.assert_allclose(native, wrapper.predict(frame[FEATURES].iloc[test]), atol=1e-6)
    # The binned matrix is built once per fold and reused by later fits.
    matrix = cache.native_matrix(learners.get_learner(name).native, 1, params)
    other = {"alpha": 0.05} if name == "elastic_net" else {"learning_rate": 0.05}
    cache.fit_predict_fold(name, {**params, **other}, 1, seed=5, n_jobs=1)
    assert cache.native_matrix(learners.get_learner(name).native, 1, params) is matrix


@pytest.mark.parametrize("name", ["elastic_net", "alpha_composite", "lightgbm", "xgboost"])
def test_a_row_gets_the_same_float32_prediction_in_any_batch(planted, name):
    # The registry's reproduction check compares the chain's predictions on a serving slice with
    # the pipeline's on the whole test frame; the ensemble's per-date ranks turn one ulp into a
    # rank flip, so every row must come out bit-identical whatever else is in the batch.
    frame, _ = planted
    X = frame[FEATURES].astype(np.float32)
    model = training.refit(name, dict(DEFAULTS[name]), X, frame["label"], None,
                           dates=frame["date"], seed=1, n_jobs=1)
    whole = learners.predict_float32(model, X)
    for start, stop in ((0, 1001), (7, len(X)), (len(X) - 333, len(X))):
        part = learners.predict_float32(model, X.iloc[start:stop])
        assert part.dtype == np.float32
        np.testing.assert_array_equal(part, whole[start:stop])


def test_elastic_net_imputer_and_scaler_are_fitted_on_the_training_rows_only(planted):
    frame, folds = planted
    # A trending column makes training-fold statistics differ clearly from full-sample ones.
    X = frame[FEATURES].assign(day=(frame["date"] - frame["date"].min()).dt.days.astype("float32"))
    data = training.LearningSet.from_arrays(X, frame["label"], None, frame["date"])
    train = training.FoldCache(data, folds).rows[0][0]
    assert not np.isin(frame["date"].iloc[train], folds[0].test_dates).any()
    fitted = training.refit("elastic_net", DEFAULTS["elastic_net"], X.iloc[train],
                            frame["label"].iloc[train], dates=frame["date"].iloc[train])
    X_train = X.iloc[train]
    # ret_20d is NaN on the first dates: the imputer's medians come from the training rows.
    np.testing.assert_allclose(fitted.named_steps["impute"].statistics_,
                               X_train.median().to_numpy(), rtol=1e-5, atol=1e-8)
    scaler = fitted.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, X_train.fillna(X_train.median()).mean(),
                               rtol=1e-4, atol=1e-6)
    assert scaler.mean_[-1] < 0.5 * X["day"].mean()


@pytest.mark.parametrize("name", ["elastic_net", "xgboost", "lightgbm", "alpha_composite"])
def test_sample_weights_are_used_and_only_their_relative_size_matters(planted, name):
    frame, _ = planted
    X, y, dates = frame[FEATURES], frame["label"], frame["date"]
    age = (dates.max() - dates).dt.days.to_numpy()
    decay = 0.5 ** (age / 60.0)
    params = KNOWN_ANSWER[name]
    unweighted = training.refit(name, params, X, y, None, dates=dates, seed=1, n_jobs=1)
    weighted = training.refit(name, params, X, y, decay, dates=dates, seed=1, n_jobs=1)
    scaled = training.refit(name, params, X, y, decay * 1e-6, dates=dates, seed=1, n_jobs=1)
    head = X.head(200)
    assert not np.allclose(weighted.predict(head), unweighted.predict(head))
    np.testing.assert_allclose(weighted.predict(head), scaled.predict(head), rtol=1e-4,
                               atol=1e-6)


def test_weights_of_zero_exclude_rows_from_training(planted):
    frame, _ = planted
    X, y, dates = frame[FEATURES], frame["label"], frame["date"]
    first_half = (dates < dates.median()).to_numpy()
    half = training.refit("elastic_net", DEFAULTS["elastic_net"], X, y,
                          first_half.astype(float), dates=dates)
    subset = training.refit("elastic_net", DEFAULTS["elastic_net"], X[first_half], y[first_half],
                            dates=dates[first_half])
    np.testing.assert_allclose(half.predict(X.head(50)), subset.predict(X.head(50)), atol=1e-6)


def test_training_target_is_a_per_date_transform_of_the_label():
    dates = np.repeat(pd.to_datetime(["2020-01-02", "2020-01-03"]).to_numpy(), 3)
    label = np.array([0.01, 0.03, np.nan, -5.0, 2.0, 7.0])
    rank = training.cross_sectional_target(label, dates, "rank")
    np.testing.assert_allclose(rank[:2], [-0.25, 0.25])
    assert np.isnan(rank[2])
    np.testing.assert_allclose(rank[3:], [-1 / 3, 0.0, 1 / 3], atol=1e-7)
    z = training.cross_sectional_target(label, dates, "zscore")
    np.testing.assert_allclose(z[3:].mean(), 0.0, atol=1e-6)
    # the clip is a parameter (target_zscore_clip): 1.0 caps the low outlier's z of -1.05
    clipped = training.cross_sectional_target(
        label, dates, training.TargetTransform.from_params({"target_transform": "zscore",
                                                            "target_zscore_clip": 1.0}))
    np.testing.assert_allclose(clipped[3], -1.0)
    np.testing.assert_allclose(clipped[4:], z[4:])
    assert z[3] < -1.0
    np.testing.assert_allclose(training.cross_sectional_target(label, dates, "raw"), label,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="target_transform"):
        training.cross_sectional_target(label, dates, "winsor")
    with pytest.raises(ValueError, match="needs dates"):
        training.refit("elastic_net", {}, np.zeros((6, 1)), label)


def test_alpha_composite_weights_factors_by_their_ic_ir(planted):
    frame, _ = planted
    X = frame[FEATURES].assign(neg_signal=-frame["signal_1"])
    fitted = training.refit("alpha_composite", {}, X, frame["label"], dates=frame["date"])
    weights = dict(zip(X.columns, fitted.coef_, strict=True))
    assert weights["signal_1"] > 0 and weights["neg_signal"] < 0
    assert weights["signal_1"] == pytest.approx(-weights["neg_signal"])
    assert max(abs(weights[c]) for c in ("noise_1", "noise_2", "noise_3")) < weights["signal_1"]
    assert np.abs(fitted.coef_).sum() == pytest.approx(1.0)
    # Thresholding removes the weak factors; NaN inputs count as the factor's mean.
    sparse = training.refit("alpha_composite", {"min_icir": 0.5}, X, frame["label"],
                            dates=frame["date"])
    assert set(np.array(X.columns)[sparse.coef_ != 0]) == {"signal_1", "neg_signal"}
    row = X.head(1).copy()
    row.iloc[0, :] = np.nan
    assert sparse.predict(row)[0] == pytest.approx(0.0)


def test_feature_importance_is_gain_for_trees_and_abs_coef_for_elastic_net(planted):
    frame, _ = planted
    for name, kind in [("elastic_net", "abs_coef"), ("xgboost", "total_gain"),
                       ("lightgbm", "gain"), ("alpha_composite", "abs_icir_weight")]:
        fitted = training.refit(name, KNOWN_ANSWER[name], frame[FEATURES], frame["label"],
                                dates=frame["date"], n_jobs=1)
        table = learners.feature_importance(name, fitted, FEATURES)
        assert sorted(table["feature"]) == sorted(FEATURES)
        assert (table["kind"] == kind).all() and (table["importance"] >= 0).all()
        assert table["share"].sum() == pytest.approx(1.0)
        assert table["feature"].iloc[0] == "signal_1", name


@pytest.mark.parametrize("name", ["elastic_net", "xgboost", "lightgbm", "alpha_composite"])
def test_planted_signal_is_found_out_of_fold(planted, name):
    frame, folds = planted
    oof, scores = _oof(name, frame, folds, params=KNOWN_ANSWER[name])
    true_rank_ic = metrics.mean_rank_ic(frame[frame["date"].isin(oof["date"])], "signal_1",
                                        "label")
    rank_ic = _oof_rank_ic(oof, frame)
    assert true_rank_ic > 0.1
    assert rank_ic > 0.6 * true_rank_ic, (name, rank_ic, true_rank_ic)
    assert rank_ic < true_rank_ic + 0.03
    assert (scores["rank_ic"] > 0).all()


@pytest.mark.parametrize("name", ["elastic_net", "xgboost", "lightgbm", "alpha_composite"])
def test_pure_noise_scores_near_zero_out_of_fold(noise, name):
    frame, folds = noise
    oof, _ = _oof(name, frame, folds, params=KNOWN_ANSWER[name])
    # Zero skill: daily RankIC std ~ 1/sqrt(50 names), ~40 independent 10-day windows -> the
    # mean's standard error is ~0.02; the planted signal scores ~0.15 on the same design.
    assert abs(_oof_rank_ic(oof, frame)) < 0.05


def test_oof_predictions_cover_exactly_the_test_fold_rows(planted):
    frame, folds = planted
    oof, scores = _oof("lightgbm", frame, folds)
    assert list(oof.columns) == ["date", "ticker", "model", "fold", "prediction"]
    assert oof["prediction"].dtype == np.float32
    test_dates = {d: f.fold for f in folds for d in f.test_dates}
    expected = frame[frame["date"].isin(list(test_dates))]
    assert len(oof) == len(expected)
    assert not oof.duplicated(["date", "ticker"]).any()
    assert (oof["date"].map(test_dates) == oof["fold"]).all()
    assert list(scores["fold"]) == [f.fold for f in folds]
    assert {"rank_ic", "ic", "n_train", "n_test", "fit_seconds"} <= set(scores.columns)


def test_same_seed_gives_the_same_predictions(planted):
    frame, folds = planted
    params = {**KNOWN_ANSWER["xgboost"], "subsample": 0.7}
    first, _ = _oof("xgboost", frame, folds, params=params, seed=3)
    again, _ = _oof("xgboost", frame, folds, params=params, seed=3)
    other, _ = _oof("xgboost", frame, folds, params=params, seed=4)
    np.testing.assert_array_equal(first["prediction"], again["prediction"])
    assert not np.array_equal(first["prediction"], other["prediction"])


def test_run_guarded_records_a_failure_instead_of_raising():
    def boom():
        raise ValueError("bad alpha")

    failed = training.run_guarded("elastic_net", boom)
    assert not failed.ok and failed.error == "ValueError: bad alpha"
    assert "boom" in failed.traceback
    ok = training.run_guarded("x", lambda a: a + 1, 1)
    assert ok.ok and ok.value == 2


def test_tuning_folds_can_be_thinned_to_whole_dates_and_test_rows_never_are(planted):
    frame, folds = planted
    data = training.LearningSet.from_arrays(frame[FEATURES], frame["label"], None, frame["date"])
    full = training.FoldCache(data, folds)
    thin = training.FoldCache(data, folds, max_train_rows=3000)
    for (train, test), (thin_train, thin_test) in zip(full.rows, thin.rows, strict=True):
        np.testing.assert_array_equal(test, thin_test)
        assert set(thin_train) <= set(train)
        if len(train) > 3000:
            assert len(thin_train) <= 3000 + 50  # whole dates: at most one date's names over
            kept = pd.Series(data.dates[thin_train]).value_counts()
            every = pd.Series(data.dates[train]).value_counts()
            assert (kept == every.reindex(kept.index)).all()  # each kept date is complete
        else:
            np.testing.assert_array_equal(train, thin_train)
    assert training.thin_training_dates(full.rows[0][0], data.dates, None) is full.rows[0][0]


@pytest.mark.parametrize("learner", ["elastic_net", "xgboost"])
def test_refit_weightings_equal_one_refit_per_weighting(learner):
    """Regime soft training fits one model per weighting of the same rows in one call; each
    model must be the one its own refit gives (ElasticNet shares its weight-free imputer and
    scaler), also when one weighting drops rows (then it is fitted apart)."""
    rng = np.random.default_rng(5)
    n_dates, n_names = 60, 40
    dates = np.repeat(pd.date_range("2020-01-01", periods=n_dates, freq="B"), n_names)
    X = pd.DataFrame(rng.normal(size=(len(dates), 4)).astype(np.float32), columns=list("abcd"))
    X.iloc[rng.random(len(dates)) < 0.05, 1] = np.nan
    y = X["a"].fillna(0).to_numpy() * 0.1 + rng.normal(size=len(dates))
    y[rng.random(len(y)) < 0.05] = np.nan
    shares = rng.dirichlet(np.ones(3), size=len(dates))
    same_rows = [np.maximum(shares[:, k], 0.05) for k in range(3)]
    params = {"alpha": 0.01, "l1_ratio": 0.5} if learner == "elastic_net" else {
        "n_estimators": 20, "max_depth": 3}
    for weight_sets in (same_rows, [*same_rows[:2], np.where(shares[:, 2] > 0.2, 1.0, 0.0)]):
        together = training.refit_weightings(learner, params, X, y, weight_sets, dates=dates)
        for weight, model in zip(weight_sets, together, strict=True):
            alone = training.refit(learner, params, X, y, weight, dates=dates)
            np.testing.assert_array_equal(learners.predict_float32(model, X),
                                          learners.predict_float32(alone, X))
            if learner == "elastic_net":
                np.testing.assert_array_equal(model.named_steps["model"].coef_,
                                              alone.named_steps["model"].coef_)
                assert list(model.feature_names_in_) == list("abcd")


def test_base_models_features_naming_an_absent_column_is_refused_by_name():
    import pandas as pd

    from bma_quant.core.data.preflight import PreflightError
    from bma_quant.core.models.training import training_inputs

    frame = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=4), "ticker": "A",
                          "f1": 1.0, "label": 0.0})
    with pytest.raises(PreflightError, match=r"base_models.features names 'nosuchcol', 'label', "
                                             r"which model_input does not offer as a feature "
                                             r"\(it has: f1\)"):
        training_inputs(frame, None, dev=("2020-01-01", "2020-01-06"),
                        test=("2020-01-06", "2020-01-06"), folds=[],
                        features=["f1", "nosuchcol", "label"])


@pytest.mark.parametrize("with_weights", [False, True])
def test_development_rows_end_on_dev_end_and_test_rows_start_on_test_start(with_weights):
    """The purge gap between development and test is in neither (its labels reach into the test
    period): with sample weights or without them, whose zeros would otherwise hide it."""
    import pandas as pd

    from bma_quant.core.models.training import training_inputs

    dates = pd.bdate_range("2020-01-01", periods=30)
    frame = pd.DataFrame({"date": np.repeat(dates, 2), "ticker": ["A", "B"] * 30,
                          "f1": np.arange(60.0), "label": np.tile([0.01, -0.01], 30)})
    weights = pd.DataFrame({"date": dates, "weight": 1.0}) if with_weights else None
    inputs = training_inputs(frame, weights, dev=(str(dates[0].date()), str(dates[17].date())),
                             test=(str(dates[24].date()), str(dates[29].date())), folds=[])
    assert pd.DatetimeIndex(inputs.data.dates).max() == dates[17]
    assert len(inputs.data.dates) == 36 and inputs.data.weight.min() == 1.0
    assert pd.DatetimeIndex(inputs.test_dates).min() == dates[24] and len(inputs.test_dates) == 12


def test_rows_without_weight_or_target_are_not_trained_on():
    """A date of weight 0 (no sample weight: a purge gap, a date the decay left out) and a row
    without a label take no part in a fit (nor in min_child_samples' counts)."""
    import pandas as pd

    from bma_quant.core.models.training import LearningSet

    X = pd.DataFrame({"f1": np.arange(6.0)})
    data = LearningSet.from_arrays(X, [0.1, np.nan, 0.3, 0.4, 0.5, 0.6],
                                   [1.0, 1.0, 0.0, 1.0, 2.0, 1.0],
                                   pd.bdate_range("2020-01-01", periods=6).repeat(1),
                                   target_transform="raw")
    np.testing.assert_array_equal(data.trainable(np.arange(6)), [0, 3, 4, 5])


def test_float32_predictions_come_from_float64_features():
    """A linear model on float32 features: predict_float32 is predict on float64 features,
    rounded once (float32 dot products vary with the batch), so a row scores the same alone as
    in a batch."""
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from bma_quant.core.models.learners import predict_float32

    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.standard_normal((2000, 40)).astype(np.float32),
                     columns=[f"f{i}" for i in range(40)])
    model = LinearRegression().fit(X.astype(np.float64), rng.standard_normal(2000))
    batch = predict_float32(model, X)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch, model.predict(X.astype(np.float64)).astype(np.float32))
    alone = np.concatenate([predict_float32(model, X.iloc[[i]]) for i in range(0, 2000, 97)])
    np.testing.assert_array_equal(alone, batch[::97])

def test_no_base_model_succeeded_says_what_to_change():
    from bma_quant.run_hooks.user_errors import is_user_error

    error = training.NoBaseModelSucceeded.from_statuses([
        {"name": "elastic_net", "status": "degenerate", "error": "constant predictions"},
        {"name": "xgboost", "status": "failed", "error": "ValueError: bad"}])
    message = str(error)
    assert "elastic_net degenerate: constant predictions" in message
    assert "xgboost failed: ValueError: bad" in message
    assert "base_models.defaults.elastic_net" in message and "info.log" in message
    assert "base_models.defaults.xgboost" not in message  # a failure is no penalty to loosen
    # a summary of failures each logged with its traceback: shown as one block, not a stack
    assert is_user_error(error)
    assert "enables none" in str(training.NoBaseModelSucceeded.from_statuses([]))
