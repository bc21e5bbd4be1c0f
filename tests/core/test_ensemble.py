"""core.ensemble.combiners and core.ensemble.model_averaging: weights, guards, regimes, pseudo-BMA, selection."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from bma_quant.core.data import cv, split
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.ensemble import combiners, model_averaging
from bma_quant.core.ensemble.selection import SelectionRule, fold_mean_scores

REGIMES = ("bull", "neutral", "bear")
PARAMS = {
    "standardisation": "rank",
    "zscore_clip": 5.0,
    "meta_learner": "elastic_net",
    "elastic_net": {"alpha": 0.01, "l1_ratio": 0.5, "positive": True, "max_iter": 5000},
    "lightgbm": {"n_estimators": 50, "learning_rate": 0.1, "num_leaves": 7,
                 "min_child_samples": 200, "random_state": 0, "n_jobs": 1, "verbose": -1},
    "regime": {"regimes": list(REGIMES), "shrinkage_dates": 126, "min_regime_dates": 20},
    "bma": {"bootstrap_draws": 500, "seed": 0},
    "selection": {"n_validation_folds": 2, "min_fit_dates": 20, "min_names": 5},
}
DEFAULT_MODELS = {
    # name: (signal loading, noise sd, scale, offset): different scales on purpose
    "elastic_net": (1.0, 1.0, 0.01, 0.0),
    "lightgbm": (1.0, 1.5, 3.0, 5.0),
    "noise": (0.0, 1.0, 1.0, 0.0),
}


def make_inputs(
    n_tickers: int = 40,
    n_days: int = 700,
    seed: int = 0,
    models: dict | None = None,
    regime_loadings: dict | None = None,
    signal_to_label: float = 0.25,
) -> dict:
    """Stacking inputs with a known answer.

    label = signal_to_label * s + idiosyncratic noise + a common daily shock; model m predicts
    scale * (loading * s + noise_sd * e_m) + offset, where ``regime_loadings[m][regime]`` replaces
    the loading on dates of that regime. Regimes follow a persistent chain with soft probabilities.
    """
    rng = np.random.default_rng(seed)
    models = models or DEFAULT_MODELS
    dates = pd.bdate_range("2012-01-02", periods=n_days)
    tickers = [f"T{i:03d}" for i in range(n_tickers)]
    grid = pd.MultiIndex.from_product([dates, tickers], names=["date", "ticker"]).to_frame(
        index=False)
    n = len(grid)
    signal = rng.standard_normal(n)
    common = np.repeat(rng.standard_normal(n_days), n_tickers)
    label = 0.03 * (signal_to_label * signal + rng.standard_normal(n) + common)
    labels = grid.assign(label=label)

    state, chain = 0, []
    for _ in range(n_days):  # persistent three-state chain
        if rng.random() > 0.97:
            state = int(rng.integers(3))
        chain.append(REGIMES[state])
    regimes = pd.DataFrame({"date": dates, "regime": chain})
    for r in REGIMES:
        regimes[f"p_{r}"] = np.where(regimes["regime"] == r, 0.8, 0.1)
    regimes["fear_greed"] = 0.0
    regime_of_row = np.repeat(np.array(chain), n_tickers)

    date_split = split.split_dates(dates, gap_days=11, test_fraction=0.2)
    dev = dates[dates <= pd.Timestamp(date_split["dev_end"])]
    folds = cv.PurgedWalkForwardSplit(5, TemporalConfig(), min_train_days=150).date_folds(dev)
    fold_of = pd.Series({d: f.fold for f in folds for d in f.test_dates})

    oof, test = [], []
    for name, (loading, noise_sd, scale, offset) in models.items():
        load = np.full(n, float(loading))
        for regime, value in (regime_loadings or {}).get(name, {}).items():
            load[regime_of_row == regime] = value
        raw = scale * (load * signal + noise_sd * rng.standard_normal(n)) + offset
        frame = grid.assign(model=name, prediction=raw.astype(np.float32))
        fold = frame["date"].map(fold_of)
        oof.append(frame[fold.notna()].assign(fold=fold[fold.notna()].astype(np.int32)))
        test.append(frame[frame["date"] >= pd.Timestamp(date_split["test_start"])])
    oof_frame = pd.concat(oof, ignore_index=True)[["date", "ticker", "model", "fold",
                                                   "prediction"]]
    return {
        "oof": oof_frame,
        "test": pd.concat(test, ignore_index=True),
        "labels": labels,
        "regimes": regimes,
        # one detector per fold (here the same labels, so tests can compare with `regimes`)
        "fold_regimes": pd.concat([regimes.assign(fold=f.fold) for f in folds],
                                  ignore_index=True),
        "folds": folds,
        "cv_folds": cv.folds_table(folds),
        "date_split": date_split,
        "status": {m: {"status": "ok", "error": None, "best_params": {}} for m in models},
        "models": list(models),
    }


@pytest.fixture(scope="module")
def inputs():
    return make_inputs()


@pytest.fixture(scope="module")
def design(inputs):
    return combiners.build_design(inputs["oof"], inputs["labels"], inputs["folds"],
                                 inputs["models"])


def _fit(method, design, inputs, params=PARAMS, models=None):
    return combiners.fit_ensemble(method, design, inputs["regimes"], params,
                                 inputs["date_split"]["test_start"], models or inputs["models"])


# ---------------------------------------------------------------------------------- standardise


@pytest.mark.parametrize("method", ["rank", "zscore"])
def test_standardise_per_date_is_scale_free_and_unit_variance(method):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"date": np.repeat(pd.bdate_range("2020-01-01", periods=4), 30),
                          "a": rng.standard_normal(120)})
    frame["b"] = 100.0 * frame["a"] + 7.0  # same ordering, other scale
    frame.loc[3, "a"] = np.nan
    z = combiners.standardise_per_date(frame, ["a", "b"], method)
    stats = z.groupby(frame["date"]).agg(["mean", "std"])
    assert np.allclose(stats[("b", "mean")], 0.0, atol=1e-12)
    assert np.allclose(stats[("b", "std")], 1.0)
    assert np.isnan(z.loc[3, "a"])
    # Monotone within a date, and invariant to an affine change of scale.
    first = frame["date"] == frame["date"].iloc[50]
    assert (np.argsort(z.loc[first, "b"].to_numpy()) ==
            np.argsort(frame.loc[first, "b"].to_numpy())).all()
    assert np.allclose(z.loc[first, "a"], z.loc[first, "b"])


def test_standardise_constant_date_is_no_view():
    frame = pd.DataFrame({"date": pd.Timestamp("2020-01-01"), "a": [1.0, 1.0, 1.0]})
    assert (combiners.standardise_per_date(frame, ["a"], "zscore")["a"] == 0).all()


# ---------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("method", ["stacking", "regime_stacking", "bma"])
def test_pure_noise_model_gets_near_zero_weight(method, design, inputs):
    table = _fit(method, design, inputs).combiner.weights()
    noise = table.loc[table["model"] == "noise", "weight"]
    assert (noise < 0.05).all(), table
    signal = table.loc[table["model"] != "noise", "weight"]
    assert signal.groupby(table["regime"]).sum().min() > 0.9


def test_lightgbm_meta_learner_ignores_noise(design, inputs):
    fitted = _fit("stacking", design, inputs, {**PARAMS, "meta_learner": "lightgbm"})
    weights = fitted.combiner.weights().set_index("model")["weight"]
    assert weights["noise"] < 0.2 and weights.sum() == pytest.approx(1.0)
    assert weights["elastic_net"] > weights["noise"] and weights["lightgbm"] > weights["noise"]


@pytest.mark.parametrize("method", combiners.METHODS)
def test_weights_are_non_negative_and_sum_to_one(method, design, inputs):
    table = _fit(method, design, inputs).combiner.weights()
    assert (table["weight"] >= 0).all()
    assert np.allclose(table.groupby("regime")["weight"].sum(), 1.0)
    assert set(table["model"]) == set(inputs["models"])


def test_stacking_weights_are_the_normalised_non_negative_coefficients(design, inputs):
    combiner = _fit("stacking", design, inputs).combiner
    coef = combiner.estimator.coef_
    assert (coef >= 0).all()
    assert np.allclose(combiner.weights()["weight"], coef / coef.sum())


def test_ic_weights_fall_back_to_equal_when_no_model_has_positive_ic(inputs):
    models = ["elastic_net", "lightgbm"]
    flipped = inputs["oof"][inputs["oof"]["model"].isin(models)]
    flipped = flipped.assign(prediction=-flipped["prediction"])  # both anti-predictive
    design = combiners.build_design(flipped, inputs["labels"], inputs["folds"], models)
    fitted = _fit("ic_weight", design, inputs, models=models)
    assert (fitted.combiner.rank_ic_ < 0).all()
    assert np.allclose(fitted.combiner.weights()["weight"], 0.5)
    assert any("equal weights" in note for note in fitted.notes)


def test_ic_weights_are_proportional_to_positive_rank_ic(design, inputs):
    combiner = _fit("ic_weight", design, inputs).combiner
    positive = np.clip(combiner.rank_ic_, 0, None)
    assert np.allclose(combiner.weights()["weight"], positive / positive.sum())


# ---------------------------------------------------------------------------------- regimes


@pytest.fixture(scope="module")
def regime_inputs():
    # lightgbm carries the signal only in bull markets, elastic_net only in bear markets.
    return make_inputs(
        n_tickers=40, n_days=900, seed=4,
        models={"elastic_net": (0.5, 1.0, 1.0, 0.0), "lightgbm": (0.5, 1.0, 1.0, 0.0)},
        regime_loadings={"lightgbm": {"bull": 1.5, "bear": 0.0},
                         "elastic_net": {"bull": 0.0, "bear": 1.5}},
    )


def test_regime_weights_are_learned_per_regime(regime_inputs):
    design = combiners.build_design(regime_inputs["oof"], regime_inputs["labels"],
                                   regime_inputs["folds"], regime_inputs["models"])
    fitted = _fit("regime_stacking", design, regime_inputs)
    table = fitted.combiner.weights()
    w = table.pivot(index="regime", columns="model", values="weight")
    assert w.loc["bull", "lightgbm"] > 0.6 > w.loc["bear", "lightgbm"]
    assert w.loc["bear", "elastic_net"] > 0.6 > w.loc["bull", "elastic_net"]
    check = combiners.seed_regime_rule_check(table.assign(method="regime_stacking"))
    assert check["lightgbm"]["weighs_more_in_bull"] is True
    assert check["elastic_net"]["weighs_more_in_bear"] is True

    # Shrinkage: an enormous prior weight pulls every regime onto the global weights.
    shrunk_params = {**PARAMS, "regime": {**PARAMS["regime"], "shrinkage_dates": 1e9}}
    shrunk = _fit("regime_stacking", design, regime_inputs, shrunk_params).combiner
    assert np.allclose(shrunk.regime_weights_, shrunk.global_weights_, atol=1e-5)
    # Too few dates: the regime keeps the global weights.
    sparse_params = {**PARAMS, "regime": {**PARAMS["regime"], "min_regime_dates": 10**6}}
    sparse = _fit("regime_stacking", design, regime_inputs, sparse_params).combiner
    assert np.allclose(sparse.regime_weights_, sparse.global_weights_)
    assert sparse.raw_weights_ == {}


def test_regime_weights_are_blended_by_probabilities(regime_inputs):
    design = combiners.build_design(regime_inputs["oof"], regime_inputs["labels"],
                                   regime_inputs["folds"], regime_inputs["models"])
    combiner = _fit("regime_stacking", design, regime_inputs).combiner
    rows = design[design["date"] == design["date"].iloc[0]]
    date = rows["date"].iloc[0]
    z = rows[combiner.models].to_numpy()
    probs = np.array([0.5, 0.2, 0.3])
    regimes = pd.DataFrame({"date": [date], "regime": ["bull"],
                            **{f"p_{r}": [p] for r, p in zip(REGIMES, probs, strict=True)}})
    expected = z @ (probs @ combiner.regime_weights_)
    assert np.allclose(combiner.predict(rows, regimes), expected)
    # A date without regime probabilities uses the global weights.
    assert np.allclose(combiner.predict(rows, regimes.iloc[:0]), z @ combiner.global_weights_)


# ---------------------------------------------------------------------------------- leakage


@pytest.mark.parametrize("method", combiners.METHODS)
def test_every_fit_refuses_a_test_period_row(method, design, inputs):
    test_start = pd.Timestamp(inputs["date_split"]["test_start"])
    leaked = pd.concat([design, design.iloc[[-1]].assign(date=test_start)], ignore_index=True)
    with pytest.raises(combiners.TestPeriodLeakError, match="test start"):
        _fit(method, leaked, inputs)


def test_walk_forward_trains_only_on_earlier_purged_folds(design, inputs, monkeypatch):
    seen = []
    original = combiners.Combiner.fit

    def spy(self, data, regimes, test_start):
        seen.append(pd.DatetimeIndex(data["date"].unique()))
        return original(self, data, regimes, test_start)

    monkeypatch.setattr(combiners.Combiner, "fit", spy)
    result = combiners.walk_forward_ensembles(design, inputs["folds"], inputs["fold_regimes"],
                                             ["equal_weight"], inputs["models"], PARAMS,
                                             inputs["date_split"]["test_start"])
    folds = sorted(inputs["folds"], key=lambda f: f.fold)
    assert len(seen) == len(folds) - 1  # the first fold has nothing earlier
    for fold, dates in zip(folds[1:], seen, strict=True):
        assert dates.max() < fold.test_dates.min()
        assert dates.isin(fold.train_dates).all()  # purged and embargoed per cv_folds
    assert result.validation_folds == [folds[-2].fold, folds[-1].fold]


def test_the_walk_forward_choice_reads_each_folds_purged_dates_only(design, inputs,
                                                                     monkeypatch):
    """The replay of the ensemble choice for fold k sees the daily scores up to fold k's last
    purged training date, never the earlier fold's last dates whose labels reach fold k."""
    seen = []
    original = combiners.SelectionRule.choose

    def spy(self, daily, folds, methods=None):
        seen.append((list(folds), pd.to_datetime(daily["date"]).max()))
        return original(self, daily, folds, methods)

    monkeypatch.setattr(combiners.SelectionRule, "choose", spy)
    result = combiners.walk_forward_ensembles(design, inputs["folds"], inputs["fold_regimes"],
                                             ["stacking", "bma"], inputs["models"], PARAMS,
                                             inputs["date_split"]["test_start"])
    by_fold = {f.fold: f for f in inputs["folds"]}
    replays = seen[1:]  # seen[0]: the choice of `final` on the validation folds
    assert result.final_nested_folds and len(replays) == len(result.final_nested_folds)
    for scored, (_, last_read) in zip(result.final_nested_folds, replays, strict=True):
        assert last_read <= by_fold[scored].train_dates.max()


def test_more_validation_folds_than_fitted_ones_is_said(design, inputs, caplog):
    params = {**PARAMS, "selection": {**PARAMS["selection"], "n_validation_folds": 10}}
    with caplog.at_level("WARNING"):
        result = combiners.walk_forward_ensembles(
            design, inputs["folds"], inputs["fold_regimes"], ["stacking", "bma"],
            inputs["models"], params, inputs["date_split"]["test_start"])
    n = len(result.validation_folds)
    assert 0 < n < 10
    assert f"n_validation_folds is 10 but only {n} fold(s)" in caplog.text
    assert any("n_validation_folds is 10" in note for note in result.notes)


def test_walk_forward_predictions_match_a_refit_on_earlier_folds(design, inputs):
    result = combiners.walk_forward_ensembles(design, inputs["folds"], inputs["fold_regimes"],
                                             ["stacking", "bma", "equal_weight"],
                                             inputs["models"], PARAMS,
                                             inputs["date_split"]["test_start"])
    folds = sorted(inputs["folds"], key=lambda f: f.fold)
    # first fold: nothing earlier to fit on, every method is the equal-weight stand-in, which
    # is stored once, as equal_weight (no method's series holds copies of another's)
    first = result.predictions[result.predictions["fold"] == folds[0].fold]
    assert set(first["model"]) == {"equal_weight"}
    first_scores = result.scores[result.scores["fold"] == folds[0].fold]
    assert not first_scores["fitted"].any() and len(first_scores) == 3
    last = folds[-1]
    train = design[(design["fold"] < last.fold) & design["date"].isin(last.train_dates)]
    refit = _fit("stacking", train, inputs).combiner
    rows = design[design["fold"] == last.fold]
    got = result.predictions.query("model == 'stacking' and fold == @last.fold")["prediction"]
    assert np.allclose(got.to_numpy(), refit.predict(rows, None), atol=1e-5)
    scores = result.scores.set_index(["method", "fold"])["rank_ic"]
    assert result.oos_rank_ic["bma"] == pytest.approx(
        np.mean([scores[("bma", k)] for k in result.validation_folds]))


def test_walk_forward_gives_each_fold_its_own_detector_and_refuses_a_global_one(
        design, inputs, monkeypatch):
    seen = []
    original = combiners.Combiner.fit

    def spy(self, data, regimes, test_start):
        seen.append(sorted(set(regimes["fold"])))
        return original(self, data, regimes, test_start)

    monkeypatch.setattr(combiners.Combiner, "fit", spy)
    folds = sorted(inputs["folds"], key=lambda f: f.fold)
    combiners.walk_forward_ensembles(design, folds, inputs["fold_regimes"], ["regime_stacking"],
                                    inputs["models"], PARAMS, inputs["date_split"]["test_start"])
    assert seen == [[f.fold] for f in folds[1:]]
    with pytest.raises(ValueError, match="one detector per fold"):
        combiners.walk_forward_ensembles(design, folds, inputs["regimes"], ["regime_stacking"],
                                        inputs["models"], PARAMS,
                                        inputs["date_split"]["test_start"])


def _daily_scores(per_fold: list[tuple[str, int, float]], dates_per_fold: int = 4,
                  wiggle: float = 0.0) -> pd.DataFrame:
    """Daily RankICs whose per-fold means are `per_fold` (+-wiggle around the mean per date)."""
    rows = []
    for method, fold, mean in per_fold:
        for d in range(dates_per_fold):
            rows.append((method, fold, pd.Timestamp("2020-01-01") + pd.Timedelta(
                days=fold * 100 + d), mean + wiggle * (1 if d % 2 else -1)))
    return pd.DataFrame(rows, columns=["method", "fold", "date", "rank_ic"])


def test_nested_final_score_uses_only_earlier_folds_for_the_choice():
    # "a" wins fold 1, "b" wins folds 2 and 3: the walk-forward choice takes "a" at fold 2 (by
    # fold 1) and "b" at fold 3 (by folds 1-2 mean: a 0.05, b 0.065).
    daily = _daily_scores([("a", 1, 0.10), ("b", 1, 0.03), ("a", 2, 0.00), ("b", 2, 0.10),
                           ("a", 3, 0.01), ("b", 3, 0.20)])
    value, folds = combiners.nested_final_score(daily, [1, 2, 3], n_validation=2)
    assert folds == [2, 3]
    assert value == pytest.approx((0.00 + 0.20) / 2)
    # with a one-fold window the choice at fold 3 is by fold 2 alone: still "b"
    assert combiners.nested_final_score(daily, [1, 2, 3], n_validation=1)[0] == \
        pytest.approx(0.1)
    # the optimistic figure (best method's own mean on the same folds) is higher
    assert value < daily[daily["method"] == "b"]["rank_ic"].mean() + 1e-12


def test_nested_choice_reads_no_date_whose_label_reaches_the_scored_fold():
    """Fold 1's last dates (label windows overlapping fold 2's) favour "a"; the rest favour "b".
    The choice for fold 2 may read fold 1 only up to fold 2's last purged training date."""
    daily = _daily_scores([("a", 1, 0.0), ("b", 1, 0.02), ("a", 2, 0.0), ("b", 2, 0.05)],
                          dates_per_fold=8)
    fold1 = daily["fold"] == 1
    last_dates = daily.loc[fold1, "date"].sort_values().unique()[-3:]
    late = fold1 & daily["date"].isin(last_dates)
    daily.loc[late & (daily["method"] == "a"), "rank_ic"] = 0.5   # "a" by its overlap alone
    leaky, _ = combiners.nested_final_score(daily, [1, 2], n_validation=1)
    assert leaky == pytest.approx(0.0)                            # picks "a"
    purged, _ = combiners.nested_final_score(daily, [1, 2], n_validation=1,
                                             choice_end={2: last_dates[0] - pd.Timedelta(days=1)})
    assert purged == pytest.approx(0.05)                          # picks "b"


def test_selection_rule_keeps_the_default_unless_the_evidence_is_strong():
    # b tops a by 0.002 on dates whose daily scores swing by 0.05: noise, the default stays
    noisy = _daily_scores([("a", 1, 0.030), ("b", 1, 0.032), ("a", 2, 0.030), ("b", 2, 0.032)],
                          dates_per_fold=30)
    rng = np.random.default_rng(0)
    noisy["rank_ic"] += rng.normal(0, 0.05, len(noisy))
    rule = SelectionRule(default_method="a", min_t_stat=1.0, nw_lag=10)
    top = combiners.choose_method(fold_mean_scores(noisy, [1, 2]))
    chosen, info = rule.choose(noisy, [1, 2])
    assert (chosen, info["top_method"]) == ("a", top) and top == "b"
    assert abs(info["t_stat_vs_default"]) < 1.0
    # the same top method with a steady lead of 0.02 on every date replaces the default
    steady = _daily_scores([("a", 1, 0.01), ("b", 1, 0.03), ("a", 2, 0.01), ("b", 2, 0.03)],
                           dates_per_fold=30, wiggle=0.001)
    steady.loc[steady["method"] == "b", "rank_ic"] += np.resize([0.0, 0.004, -0.002], 60)
    chosen, info = rule.choose(steady, [1, 2])
    assert chosen == "b" and info["t_stat_vs_default"] > 1.0
    # no t-stat threshold (or no default): the top score alone decides, as before
    assert SelectionRule().choose(noisy, [1, 2])[0] == "b"
    assert SelectionRule("a", None).choose(noisy, [1, 2])[0] == "b"
    # a default that was not scored (not among the methods) cannot be kept
    assert SelectionRule("zzz", 1.0).choose(noisy, [1, 2])[0] == "b"
    # no validation folds: the fallback
    assert SelectionRule("a", 1.0).choose(noisy, [])[0] == "equal_weight"


def test_choose_method_picks_the_best_finite_score():
    assert combiners.choose_method({"stacking": 0.02, "bma": 0.03, "ic_weight": np.nan}) == "bma"
    assert combiners.choose_method({"stacking": np.nan}) == "equal_weight"


# ---------------------------------------------------------------------------------- pseudo-BMA


def test_calibrated_loglik_is_the_gaussian_density_of_the_heldout_rows():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((400, 2))
    y = 0.5 * z[:, 0] + rng.standard_normal(400)
    blocks = np.repeat([0, 1], 200)
    got = model_averaging.calibrated_gaussian_loglik(z, y, blocks)
    fit = blocks == 1
    slope, intercept = np.polyfit(z[fit, 0], y[fit], 1)
    resid = y[fit] - intercept - slope * z[fit, 0]
    sd = np.sqrt(resid @ resid / (fit.sum() - 2))
    expected = norm.logpdf(y[~fit], intercept + slope * z[~fit, 0], sd)
    assert np.allclose(got[~fit, 0], expected)
    assert got[:, 0].sum() > got[:, 1].sum()  # the informative model has the higher elpd


def test_a_model_ranking_the_wrong_way_round_earns_no_bma_weight():
    """The weights multiply the predictions as served: a model whose predictions run against the
    label (IC -0.3 here, beside one at +0.1) was scored by the size of its calibrated slope, not
    its sign, took nearly all the weight and made the ensemble rank upside down. Its slope is
    floored at 0: it scores as a model that knows nothing, and the right-way model wins."""
    rng = np.random.default_rng(7)
    n = 2000
    signal = rng.standard_normal(n)
    y = signal + rng.standard_normal(n)
    z = np.column_stack([-signal + 0.5 * rng.standard_normal(n),
                         0.15 * signal + rng.standard_normal(n)])
    assert np.corrcoef(z[:, 0], y)[0, 1] < -0.3 < 0 < np.corrcoef(z[:, 1], y)[0, 1]
    blocks = np.repeat([0, 1], n // 2)
    pointwise = model_averaging.calibrated_gaussian_loglik(z, y, blocks)
    dates = np.repeat(np.arange(100), n // 100)
    weights, elpd = model_averaging.pseudo_bma_weights(
        model_averaging.loglik_by_date(pointwise, dates), bootstrap_draws=500, seed=0)
    assert weights[1] > 0.5 and elpd[1] > elpd[0]  # was: weight 1.0 on the wrong-way model
    # the wrong-way model's density is the label's own (intercept and variance only)
    for block in (0, 1):
        fit = blocks != block
        sd = np.sqrt(((y[fit] - y[fit].mean()) ** 2).sum() / (fit.sum() - 2))
        assert np.allclose(pointwise[~fit, 0], norm.logpdf(y[~fit], y[fit].mean(), sd))


def test_calibration_leaves_out_the_dates_whose_labels_reach_the_held_block():
    """Blocks are CV folds, adjacent in time: the first dates after a held block (and the last
    ones before it) have labels overlapping its rows'. With a purge they take no part in its
    calibration: the same as calibrating without those rows at all."""
    rng = np.random.default_rng(5)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=60).to_numpy(), 10)
    blocks = np.repeat([0, 1, 2], 200)  # 20 dates each
    z = rng.standard_normal((600, 2))
    y = 0.4 * z[:, 0] + rng.standard_normal(600)
    z[200:230, 0] += 5.0  # block 1's first 3 dates: far from the rest
    purged = model_averaging.calibrated_gaussian_loglik(z, y, blocks, dates, purge_dates=3)
    held = blocks == 0
    keep = np.ones(600, dtype=bool)
    keep[200:230] = False  # within 3 dates after block 0's last date
    alone = model_averaging.calibrated_gaussian_loglik(z[keep], y[keep], blocks[keep])
    assert np.allclose(purged[held], alone[held[keep]])
    assert not np.allclose(model_averaging.calibrated_gaussian_loglik(z, y, blocks)[held],
                           purged[held])
    with pytest.raises(model_averaging.TooFewCalibrationRows):  # a purge longer than a block
        model_averaging.calibrated_gaussian_loglik(z, y, blocks, dates, purge_dates=25)


def test_bma_on_too_short_a_history_for_its_purge_weighs_equally_and_says_so(design):
    """Two adjacent blocks of a few dates (a first walk-forward fold, a short panel): the purge
    would leave a block nothing, and a calibration without it would read labels overlapping the
    held rows': equal weights, and a note why."""
    dates = sorted(design["date"].unique())[:16]
    rows = design[design["date"].isin(dates)].copy()
    rows["fold"] = np.where(rows["date"] < dates[8], 0, 1)
    models = [c for c in ("elastic_net", "lightgbm") if c in rows]
    combiner = combiners.make_combiner("bma", models, {**PARAMS, "purge_dates": 11})
    combiner.fit(rows, None, pd.Timestamp("2100-01-01"))
    assert any("equal weights" in note for note in combiner.notes)
    assert np.allclose(combiner.weights_, 1.0 / len(models))
    assert set(combiner.info()["elpd"].values()) == {None}


def test_pseudo_bma_weights():
    loglik = np.array([[0.0, -1.0], [0.0, -1.0]])
    weights, elpd = model_averaging.pseudo_bma_weights(loglik, bootstrap_draws=0)
    assert np.allclose(elpd, [0.0, -2.0])
    assert np.allclose(weights, np.exp([0, -2]) / np.exp([0, -2]).sum())
    # Two equally good models with noisy per-date scores share the weight under pseudo-BMA+.
    rng = np.random.default_rng(0)
    tied = rng.normal(0, 1, (300, 2))
    tied[:, 1] = tied[::-1, 0]
    weights, _ = model_averaging.pseudo_bma_weights(tied, bootstrap_draws=2000, seed=1)
    assert weights.sum() == pytest.approx(1.0)
    assert 0.3 < weights[0] < 0.7
    same_seed, _ = model_averaging.pseudo_bma_weights(tied, bootstrap_draws=2000, seed=1)
    assert np.array_equal(weights, same_seed)


def test_bma_resamples_blocks_of_dates_whose_labels_overlap():
    """Dates closer than the label horizon share returns: one Dirichlet weight per date made
    the elpd look surer than it is and collapsed the weights onto one model. Blocks of
    `block_dates` spread them (1 = the dates, bit for bit the old weights), and the stacking
    layer's default block is the purge."""
    rng = np.random.default_rng(4)
    shocks = rng.normal(0, 1, (400 + 9, 2))
    # 10-date moving sums: each date's score overlaps its 9 neighbours', as h = 10 labels do
    loglik = np.stack([np.convolve(shocks[:, m], np.ones(10), "valid") for m in (0, 1)], axis=1)
    loglik[:, 0] += 0.15  # model 0 slightly better per date
    dates, _ = model_averaging.pseudo_bma_weights(loglik, 2000, seed=3)
    blocks, elpd = model_averaging.pseudo_bma_weights(loglik, 2000, seed=3, block_dates=10)
    assert dates[0] > blocks[0] > 0.5 and np.allclose(elpd, loglik.sum(axis=0))
    same, _ = model_averaging.pseudo_bma_weights(loglik, 2000, seed=3, block_dates=1)
    assert np.array_equal(same, dates)
    # a short history: fewer than two blocks are resampled date by date (one block was plain
    # softmax, the most collapsed weights); the leftover dates join the last whole block
    short = loglik[:15]
    np.testing.assert_array_equal(
        model_averaging.pseudo_bma_weights(short, 500, seed=3, block_dates=10)[0],
        model_averaging.pseudo_bma_weights(short, 500, seed=3)[0])
    merged, _ = model_averaging.pseudo_bma_weights(loglik[:25], 500, seed=3, block_dates=10)
    two = np.stack([loglik[:10].sum(axis=0), loglik[10:25].sum(axis=0)])
    alpha = np.random.default_rng(3).dirichlet(np.ones(2), size=500)
    from scipy.special import softmax
    np.testing.assert_allclose(merged, softmax(2 * np.einsum("dt,tm->dm", alpha, two),
                                               axis=1).mean(axis=0))
    assert combiners._bootstrap_block({}, 11) == 11
    assert combiners._bootstrap_block({"block_dates": 1}, 11) == 1


# ---------------------------------------------------------------------------------- fitted ensemble


def test_fitted_ensemble_combines_raw_predictions_and_survives_pickle(design, inputs):
    fitted = _fit("regime_stacking", design, inputs)
    restored = pickle.loads(pickle.dumps(fitted))
    out = restored.combine(inputs["test"], inputs["regimes"])
    assert list(out.columns) == ["date", "ticker", "prediction"]
    assert len(out) == inputs["test"][["date", "ticker"]].drop_duplicates().shape[0]
    assert out["prediction"].dtype == np.float32 and out["prediction"].notna().all()
    # Rescaling a model's raw predictions changes nothing: combination is per-date standardised.
    rescaled = inputs["test"].assign(prediction=lambda f: np.where(
        f["model"] == "lightgbm", 1000.0 * f["prediction"] - 3.0, f["prediction"]))
    again = restored.combine(rescaled, inputs["regimes"])
    assert np.allclose(out["prediction"], again["prediction"], atol=1e-5)
    labelled = out.merge(inputs["labels"], on=["date", "ticker"])
    from bma_quant.core.evaluation.metrics import mean_rank_ic

    assert mean_rank_ic(labelled) > 0.1


def test_meta_learner_for_logging(design, inputs):
    fitted = {"stacking": _fit("stacking", design, inputs)}
    assert combiners.meta_learner_estimator(fitted) is fitted["stacking"].combiner.estimator
    fallback = {"equal_weight": _fit("equal_weight", design, inputs)}
    estimator = combiners.meta_learner_estimator(fallback)
    assert isinstance(estimator, combiners.FixedWeightRegressor)
    assert np.allclose(estimator.predict(np.eye(3)), 1 / 3)


def test_usable_models_skips_failed_and_missing(inputs):
    status = {**inputs["status"], "noise": {"status": "failed", "error": "boom"}}
    models, skipped = combiners.usable_models(inputs["oof"], inputs["test"], status)
    assert models == ["elastic_net", "lightgbm"]
    assert "boom" in skipped["noise"]
    no_test = inputs["test"][inputs["test"]["model"] != "lightgbm"]
    models, skipped = combiners.usable_models(inputs["oof"], no_test, inputs["status"])
    assert "lightgbm" not in models and "test" in skipped["lightgbm"]


def test_identical_member_finds_an_ensemble_that_is_one_of_its_members():
    rng = np.random.default_rng(3)
    dates = np.repeat(pd.bdate_range("2021-01-04", periods=20).to_numpy(), 8)
    wide = pd.DataFrame({"date": dates, "ticker": np.tile(list("ABCDEFGH"), 20),
                         "a": rng.normal(size=160), "b": rng.normal(size=160)})
    scale = np.repeat(rng.uniform(0.5, 2.0, 20), 8)  # a different positive scale per date
    all_on_b = (scale * wide["b"] + 0.3).astype(np.float32)  # stored as float32
    assert combiners.identical_member(wide, all_on_b, ["a", "b"]) == "b"
    mix = 0.6 * wide["b"] + 0.4 * wide["a"]
    assert combiners.identical_member(wide, mix, ["a", "b"]) is None
    # nearly all the weight on b: the same order of names on every date, so the same books and
    # RankIC (the reviewer's bma with 0.9974 on elastic_net, whose flag said 0)
    spaced = wide.assign(b=np.concatenate([rng.permutation(8) / 3.0 for _ in range(20)]))
    nearly_all_on_b = 0.9974 * spaced["b"] + 0.0026 * spaced["a"]
    assert combiners.identical_member(spaced, nearly_all_on_b, ["a", "b"]) == "b"
    # b missing on a few rows: compared on the rows where both exist
    gappy = wide.assign(b=wide["b"].where(np.arange(160) % 17 != 0))
    assert combiners.identical_member(gappy, all_on_b, ["a", "b"]) == "b"
    assert combiners.identical_member(wide, -wide["a"], ["a", "b"]) is None  # reversed: not a copy
    assert combiners.identical_member(wide, np.zeros(160), ["a", "b"]) is None


def test_pseudo_bma_weights_do_not_depend_on_the_blas_thread_count():
    """A threaded BLAS product sums in a thread-dependent order (the S&P run's weights moved in
    the 14th digit with one thread): the bootstrap product is a fixed-order einsum."""
    import json
    import os
    import subprocess
    import sys

    script = ("import json, numpy as np\n"
              "from bma_quant.core.ensemble.model_averaging import pseudo_bma_weights\n"
              "ll = np.random.default_rng(1).normal(-1, 0.3, size=(1800, 5))\n"
              "print(json.dumps(pseudo_bma_weights(ll, 1000, 0)[0].tolist()))")
    weights = []
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True)
        weights.append(json.loads(out.stdout))
    assert weights[0] == weights[1]


def test_fold_mean_scores_average_the_folds_not_the_pooled_dates():
    """Fold 1 has 4 dates at RankIC 0.1, fold 2 has 8 at 0.0: the score is the mean of the two
    fold means, 0.05 (pooling the 12 dates would give 0.033); a fold outside `folds` and a
    method without rows in a fold do not count."""
    from bma_quant.core.ensemble.selection import FOLD, METHOD, RANK_IC

    rows = [(1, "a", 0.1)] * 4 + [(2, "a", 0.0)] * 8 + [(3, "a", 1.0)] * 5 + [(2, "b", 0.2)] * 3
    daily = pd.DataFrame(rows, columns=[FOLD, METHOD, RANK_IC])
    scores = fold_mean_scores(daily, [1, 2])
    assert scores == {"a": pytest.approx(0.05), "b": pytest.approx(0.2)}


def test_bma_weights_read_the_per_date_target_not_the_raw_label(inputs):
    """Each date's labels scaled and shifted (a volatile day, a market move) leave the target,
    the per-date standardised label, and so the BMA weights and elpd, unchanged; calibrated on
    the raw label they would move."""
    base = combiners.build_design(inputs["oof"], inputs["labels"], inputs["folds"],
                                  inputs["models"])
    labels = inputs["labels"].copy()
    codes = pd.factorize(labels["date"])[0]
    labels["label"] = labels["label"] * (1.0 + (codes % 7)) + 0.01 * (codes % 5)
    moved = combiners.build_design(inputs["oof"], labels, inputs["folds"], inputs["models"])
    np.testing.assert_allclose(moved["target"], base["target"], atol=1e-12)
    first, second = (_fit("bma", d, inputs).combiner for d in (base, moved))
    np.testing.assert_allclose(first.weights_, second.weights_, atol=1e-12)
    np.testing.assert_allclose(first.elpd_, second.elpd_, rtol=1e-9)
