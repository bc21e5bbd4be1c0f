"""stacking pipeline, run in memory: contracts, fallback, no test-period fitting, known answers."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.ensemble import combiners
from bma_quant.core.evaluation.metrics import mean_rank_ic
from bma_quant.pipelines.stacking import nodes
from tests.core.test_ensemble import make_inputs
from tests.support import run_pipeline

logging.getLogger("kedro").setLevel(logging.WARNING)

METHODS = ["stacking", "regime_stacking", "bma", "equal_weight", "ic_weight"]
EMPTY_OOF = pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"), "ticker": pd.Series(dtype=str),
                          "model": pd.Series(dtype=str), "fold": pd.Series(dtype="int32"),
                          "prediction": pd.Series(dtype="float32")})
EMPTY_TEST = EMPTY_OOF.drop(columns="fold")


def _catalog(data: dict, oof=None, test=None, regime_oof=None, regime_test=None, status=None):
    return {
        "base_oof_predictions": data["oof"] if oof is None else oof,
        "base_test_predictions": data["test"] if test is None else test,
        "regime_oof_predictions": EMPTY_OOF if regime_oof is None else regime_oof,
        "regime_test_predictions": EMPTY_TEST if regime_test is None else regime_test,
        "base_model_status": data["status"] if status is None else status,
        "labels": data["labels"],
        "regimes": data["regimes"],
        "fold_regimes": data.get("fold_regimes", _per_fold(data["regimes"], data["cv_folds"])),
        "cv_folds": data["cv_folds"],
        "date_split": data["date_split"],
    }


def _per_fold(regimes: pd.DataFrame, cv_folds: pd.DataFrame) -> pd.DataFrame:
    """The same regime labels as each fold's own detector table (a stand-in for regime_models)."""
    return pd.concat([regimes.assign(fold=k) for k in sorted(cv_folds["fold"].unique())],
                     ignore_index=True)


@pytest.fixture(scope="module")
def data():
    return make_inputs(n_tickers=40, n_days=700, seed=7)


@pytest.fixture(scope="module")
def outputs(data):
    return run_pipeline("stacking", _catalog(data))


def test_outputs_follow_the_contract(outputs, data):
    test_start = pd.Timestamp(data["date_split"]["test_start"])
    oof, test = outputs["ensemble_oof_predictions"], outputs["ensemble_test_predictions"]
    assert list(oof.columns) == ["date", "ticker", "model", "fold", "prediction"]
    assert list(test.columns) == ["date", "ticker", "model", "prediction"]
    assert set(oof["model"]) == set(test["model"]) == {*METHODS, "final"}
    assert oof["prediction"].dtype == test["prediction"].dtype == np.float32
    assert (oof["date"] < test_start).all() and (test["date"] >= test_start).all()
    assert oof[["date", "ticker", "model"]].equals(
        oof[["date", "ticker", "model"]].sort_values(["date", "ticker", "model"]))
    # Every out-of-fold (date, ticker) gets one equal-weight prediction; every other method one
    # on the folds it was fitted on (the first fold's stand-in is equal_weight, stored once).
    report = outputs["ensemble_report"]
    n_pairs = data["oof"][["date", "ticker"]].drop_duplicates().shape[0]
    assert (oof["model"] == "equal_weight").sum() == n_pairs
    fitted = {(r["method"], r["fold"]) for r in report["selection"]["fold_scores"] if r["fitted"]}
    unfitted_folds = {r["fold"] for r in report["selection"]["fold_scores"] if not r["fitted"]}
    assert unfitted_folds  # the first out-of-fold fold has nothing earlier to fit on
    for method in set(METHODS) - {"equal_weight"}:
        rows = oof[oof["model"] == method]
        assert set(zip(rows["model"], rows["fold"], strict=True)) <= fitted
        assert not set(rows["fold"]) & unfitted_folds

    chosen = report["chosen"]
    assert chosen in METHODS and report["fallback"] is None
    # the ensembles are fitted with the CV purge between blocks of dates (bma's calibration)
    assert outputs["ensemble"].combiner.params["purge_dates"] == 11  # temporal.cv_gap_days
    final = test[test["model"] == "final"]["prediction"].to_numpy()
    assert np.array_equal(final, test[test["model"] == chosen]["prediction"].to_numpy())
    # out of fold, `final` is each fold's walk-forward pick (made on earlier folds only): the
    # series stacking.final.oos_rank_ic scores, not the pick made on these same folds
    nested = oof[oof["model"] == "final"]
    picks = report["selection"]["final_nested_picks"]
    assert sorted(nested["fold"].unique()) == report["selection"]["final_nested_folds"]
    assert sorted(int(k) for k in picks) == report["selection"]["final_nested_folds"]
    for fold, method in picks.items():
        picked = oof[(oof["model"] == method) & (oof["fold"] == int(fold))]["prediction"]
        assert np.array_equal(nested[nested["fold"] == int(fold)]["prediction"].to_numpy(),
                              picked.to_numpy())

    metrics = outputs["stacking_metrics"]
    assert ({f"{m}.oos_rank_ic" for m in METHODS}
            | {"final.oos_rank_ic", "final.selection_rank_ic"} <= set(metrics))
    # The chosen method is the top score; its own score on the same folds is the (optimistic)
    # selection score.
    selection = report["selection"]
    top = max(METHODS, key=lambda m: metrics[f"{m}.oos_rank_ic"]["value"])
    assert selection["top_method"] == top
    assert chosen == top  # the default rule: the top score alone (no prior)
    assert metrics["final.selection_rank_ic"]["value"] == pytest.approx(
        report["selection"]["oos_rank_ic"][chosen])
    # `final.oos_rank_ic` is the walk-forward choice's score on a later fold.
    assert report["selection"]["final_nested_folds"] == [2, 3, 4]  # folds 1-4 fitted
    assert metrics["final.oos_rank_ic"]["value"] == pytest.approx(
        report["selection"]["final_nested_rank_ic"])
    assert report["selection"]["validation_folds"] == [3, 4]

    weights = outputs["ensemble_weights"]
    assert list(weights.columns) == ["method", "regime", "model", "weight"]
    assert (weights["weight"] >= 0).all()
    assert np.allclose(weights.groupby(["method", "regime"])["weight"].sum(), 1.0)
    assert set(weights.loc[weights["method"] == "regime_stacking", "regime"]) == {
        "all", "bull", "neutral", "bear"}
    noise = weights[(weights["model"] == "noise") & weights["method"].isin(["stacking", "bma"])]
    assert (noise["weight"] < 0.05).all()

    fitted = outputs["ensemble"]
    assert isinstance(fitted, combiners.FittedEnsemble) and fitted.method == chosen
    again = fitted.combine(data["test"], data["regimes"])
    final_test = test[test["model"] == "final"].reset_index(drop=True)
    assert np.allclose(again["prediction"], final_test["prediction"])
    meta_learner = outputs["ensemble_meta_learner"]
    assert meta_learner.model.coef_.min() >= 0
    assert list(meta_learner.input_example.columns) == data["models"]


def test_ensembles_beat_the_best_single_model_out_of_sample(outputs, data):
    labelled = outputs["ensemble_test_predictions"].merge(data["labels"], on=["date", "ticker"])
    final_ic = mean_rank_ic(labelled[labelled["model"] == "final"])
    base = data["test"].merge(data["labels"], on=["date", "ticker"])
    best_single = max(mean_rank_ic(base[base["model"] == m]) for m in data["models"])
    assert final_ic > best_single


def test_a_default_method_prior_is_kept_unless_the_top_method_beats_it_clearly(outputs, data):
    top = outputs["ensemble_report"]["selection"]["top_method"]
    default = next(m for m in METHODS if m != top)
    runs = {t: run_pipeline("stacking", _catalog(data), {"stacking": {"selection": {
        "default_method": default, "min_t_stat": t}}}) for t in (1e9, -1e9)}
    strict, loose = (runs[t]["ensemble_report"]["selection"] for t in (1e9, -1e9))
    # no evidence is enough: the default; any evidence is enough: the top score, as without prior
    assert strict["chosen"] == default and loose["chosen"] == top
    assert strict["top_method"] == loose["top_method"] == top
    assert strict["t_stat_vs_default"] == pytest.approx(loose["t_stat_vs_default"])
    assert np.isfinite(strict["t_stat_vs_default"])
    assert runs[1e9]["stacking_metrics"]["final.t_stat_vs_default"]["value"] == pytest.approx(
        strict["t_stat_vs_default"])
    # `final` follows the choice
    final = runs[1e9]["ensemble_test_predictions"]
    assert np.array_equal(final.loc[final["model"] == "final", "prediction"].to_numpy(),
                          final.loc[final["model"] == default, "prediction"].to_numpy())


def test_test_period_data_cannot_change_anything_fitted(outputs, data):
    """By construction: poison every test-period prediction and label (the noise model becomes a
    perfect test-period predictor); weights, meta-learner, choice and OOF rows stay identical."""
    test_start = pd.Timestamp(data["date_split"]["test_start"])
    labels = data["labels"].copy()
    in_test = labels["date"] >= test_start
    labels.loc[in_test, "label"] = np.random.default_rng(0).standard_normal(in_test.sum())
    poisoned_test = data["test"].merge(labels, on=["date", "ticker"])
    poisoned_test["prediction"] = np.where(poisoned_test["model"] == "noise",
                                           poisoned_test["label"], -poisoned_test["prediction"])
    poisoned = run_pipeline("stacking", _catalog({**data, "labels": labels},
                                                 test=poisoned_test.drop(columns="label")))
    pd.testing.assert_frame_equal(poisoned["ensemble_weights"], outputs["ensemble_weights"])
    pd.testing.assert_frame_equal(poisoned["ensemble_oof_predictions"],
                                  outputs["ensemble_oof_predictions"])
    assert poisoned["ensemble_report"]["selection"] == outputs["ensemble_report"]["selection"]
    assert np.array_equal(poisoned["ensemble_meta_learner"].model.coef_,
                          outputs["ensemble_meta_learner"].model.coef_)


def test_out_of_fold_input_with_a_test_period_row_is_refused(data):
    leaked = data["oof"].copy()
    leaked.loc[leaked.index[-1], "date"] = pd.Timestamp(data["date_split"]["test_start"])
    with pytest.raises(combiners.TestPeriodLeakError):
        run_pipeline("stacking", _catalog(data, oof=leaked))


def test_the_fallback_named_is_the_one_configured(data, caplog):
    """stacking.fallback_method: bma below min_base_models ran bma, but the log and the report
    said "equal-weight fallback"."""
    with caplog.at_level(logging.WARNING, logger="bma_quant.pipelines.stacking.nodes"):
        out = run_pipeline("stacking", _catalog(data), {"stacking": {
            "min_base_models": 10, "fallback_method": "bma"}})
    assert any("bma fallback (stacking.fallback_method)" in r.getMessage()
               for r in caplog.records)
    assert out["ensemble_report"]["chosen"] == "bma"
    assert "bma fallback" in out["ensemble_report"]["fallback"]


def test_one_model_left_runs_the_equal_weight_fallback_and_says_so(data, caplog):
    status = {**data["status"], "lightgbm": {"status": "failed", "error": "boom"},
              "noise": {"status": "failed", "error": "boom"}}
    with caplog.at_level(logging.WARNING, logger="bma_quant.pipelines.stacking.nodes"):
        out = run_pipeline("stacking", _catalog(data, status=status))
    assert any("equal_weight fallback" in r.getMessage() for r in caplog.records)
    report = out["ensemble_report"]
    assert report["chosen"] == "equal_weight" and "equal_weight fallback" in report["fallback"]
    assert report["models"] == ["elastic_net"] and set(report["skipped"]) == {"lightgbm", "noise"}
    assert set(out["ensemble_test_predictions"]["model"]) == {"equal_weight", "final"}
    assert out["stacking_metrics"]["stacking_enabled"]["value"] == 0.0
    assert "stacking.oos_rank_ic" not in out["stacking_metrics"]
    weights = out["ensemble_weights"]
    assert weights[["method", "model", "weight"]].values.tolist() == [
        ["equal_weight", "elastic_net", 1.0]]
    assert isinstance(out["ensemble_meta_learner"].model, combiners.FixedWeightRegressor)
    # an "ensemble" of one model is that model, and the report, log and metrics say so
    assert report["final_identical_to"] == "elastic_net"
    assert out["stacking_metrics"]["final.identical_to_member"]["value"] == 1.0
    assert any("ranks the names exactly as elastic_net" in r.message for r in caplog.records)


def test_a_real_mix_is_not_reported_as_one_member(outputs):
    assert outputs["ensemble_report"]["final_identical_to"] is None
    assert outputs["stacking_metrics"]["final.identical_to_member"]["value"] == 0.0


def test_no_model_succeeded_is_a_clear_error(data):
    status = {m: {"status": "failed", "error": "x"} for m in data["status"]}
    with pytest.raises(RuntimeError, match="no base or regime model succeeded"):
        run_pipeline("stacking", _catalog(data, status=status))


def test_regime_model_predictions_are_combined(data):
    regime = make_inputs(n_tickers=40, n_days=700, seed=7,
                         models={"regime_lightgbm": (1.0, 1.0, 1.0, 0.0)})
    out = run_pipeline("stacking", _catalog(data, regime_oof=regime["oof"],
                                            regime_test=regime["test"]))
    assert "regime_lightgbm" in out["ensemble_report"]["models"]
    assert "regime_lightgbm" in set(out["ensemble_weights"]["model"])
    no_regime = run_pipeline("stacking", _catalog(data, regime_oof=regime["oof"],
                                                  regime_test=regime["test"]),
                             {"stacking": {"include_regime_models": False}})
    assert "regime_lightgbm" not in no_regime["ensemble_report"]["models"]
    # min_base_models counts base models (DESIGN 5.3): one base learner beside the regime model
    # is the fallback (it ran every method over the pair)
    one = {**data["status"], "lightgbm": {"status": "failed", "error": "boom"},
           "noise": {"status": "failed", "error": "boom"}}
    single = run_pipeline("stacking", _catalog(data, regime_oof=regime["oof"],
                                               regime_test=regime["test"], status=one))
    report = single["ensemble_report"]
    assert report["models"] == ["elastic_net", "regime_lightgbm"]
    assert not report["stacking_enabled"] and report["n_base_models"] == 1
    assert report["chosen"] == "equal_weight" and "only 1 base model(s)" in report["fallback"]


def test_known_answer_on_a_synthetic_market(tmp_path):
    """Upstream datasets from data_processing on a synthetic market: a model reading the planted
    signal gets the weight, a model reading a pure noise factor gets little.

    noise_1 is AR(1) with persistence 0.97, so on 40 names x ~340 out-of-fold dates its in-sample
    RankIC is spuriously ~0.01-0.02 (few independent dates); ElasticNet then keeps a small
    coefficient, while the i.i.d. noise model of the unit tests gets ~0."""
    market = generate_synthetic_market(n_tickers=40, n_days=700, seed=11, signal_strength=0.04)
    path = tmp_path / "prices.parquet"
    market.panel.to_parquet(path)
    upstream = run_pipeline("data_processing", {}, {
        "data": {"raw_path": str(path), "index_path": None},
        "periods": {"dev_start": None, "test_fraction": 0.2, "test_start": None},
        "cv": {"min_train_days": 200}})
    panel = upstream["primary_panel"]
    test_start = pd.Timestamp(upstream["date_split"]["test_start"])
    folds = upstream["cv_folds"].query("role == 'test'")[["date", "fold"]]
    predictions = pd.concat([
        panel[["date", "ticker"]].assign(model="elastic_net", prediction=panel["signal_1"]),
        panel[["date", "ticker"]].assign(model="xgboost", prediction=panel["noise_1"]),
    ]).astype({"prediction": "float32"})
    oof = predictions.merge(folds, on="date")[["date", "ticker", "model", "fold", "prediction"]]
    regimes = market.regimes.assign(**{f"p_{r}": lambda f, r=r: (f["regime"] == r) * 1.0
                                       for r in ("bull", "neutral", "bear")})
    data = {"oof": oof, "test": predictions[predictions["date"] >= test_start],
            "status": {m: {"status": "ok"} for m in ("elastic_net", "xgboost")},
            "labels": upstream["labels"], "regimes": regimes, "cv_folds": upstream["cv_folds"],
            "date_split": upstream["date_split"]}
    out = run_pipeline("stacking", _catalog(data))
    weights = out["ensemble_weights"]
    w = weights[weights["regime"] == "all"].pivot(index="model", columns="method",
                                                   values="weight")
    assert w.loc["xgboost", "bma"] < 0.01
    assert (w.loc["xgboost", ["stacking", "regime_stacking", "ic_weight"]] < 0.2).all()
    assert (w.loc["elastic_net", ["stacking", "regime_stacking", "ic_weight"]] > 0.8).all()
    assert out["stacking_metrics"]["final.oos_rank_ic"]["value"] > 0.03


def _meta_learners(outputs, data) -> dict:
    """The pipeline's ElasticNet meta-learner, a LightGBM one and the fallback's fixed weights."""
    from bma_quant.pipelines.base_models.model_dataset import LoggedLearner

    example = outputs["ensemble_meta_learner"].input_example
    design = combiners.build_design(data["oof"], data["labels"], data["folds"], data["models"])
    params = {"meta_learner": "lightgbm",
              "lightgbm": {"n_estimators": 20, "num_leaves": 7, "verbose": -1, "n_jobs": 1}}
    lightgbm = combiners.fit_ensemble("stacking", design, None, params,
                                     data["date_split"]["test_start"], data["models"])
    equal = combiners.fit_ensemble("equal_weight", design, None, {},
                                  data["date_split"]["test_start"], data["models"])
    return {
        "elastic_net": outputs["ensemble_meta_learner"],
        "lightgbm": LoggedLearner("m", combiners.meta_learner_estimator({"stacking": lightgbm}),
                                  example),
        "fixed": LoggedLearner("m", combiners.meta_learner_estimator({"equal_weight": equal}),
                               example),
    }


def test_catalog_logs_the_meta_learner_weights_and_metrics_to_mlflow(outputs, data, tmp_path,
                                                                     monkeypatch):
    """The catalog entries of conf/base/catalog_stacking.yml, saved inside an MLflow run; every
    kind of meta-learner loads back (skops trusted types) with a signature."""
    import mlflow
    import yaml
    from kedro.io import DataCatalog

    from tests.support import CONF

    monkeypatch.chdir(tmp_path)  # relative data/ paths of the catalog land in tmp_path
    entries = yaml.safe_load((CONF / "catalog_stacking.yml").read_text())
    names = ["ensemble_meta_learner", "ensemble_weights", "ensemble_report", "stacking_metrics"]
    catalog = DataCatalog.from_config({name: entries[name] for name in names})
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as run:
            for name in names[1:]:
                catalog.save(name, outputs[name])
        client = mlflow.MlflowClient()
        logged = client.get_run(run.info.run_id)
        assert logged.data.metrics["stacking.final.oos_rank_ic"] == pytest.approx(
            outputs["stacking_metrics"]["final.oos_rank_ic"]["value"])
        # the served method is a run tag, so runs can be filtered on it
        report = outputs["ensemble_report"]
        with mlflow.start_run() as tagged:
            nodes.report_stacking({k: report[k] for k in ("methods", "models",
                                                          "stacking_enabled")},
                                  report["selection"], report["fit"], outputs["ensemble_weights"])
        found = mlflow.search_runs(filter_string=f"tags.`{nodes.FINAL_METHOD_TAG}` = "
                                                 f"'{report['chosen']}'", output_format="list")
        assert [r.info.run_id for r in found] == [tagged.info.run_id]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"ensemble_weights.csv", "ensemble_report.json"} <= artifacts

        for kind, learner in _meta_learners(outputs, data).items():
            with mlflow.start_run():
                catalog.save("ensemble_meta_learner", learner)
            model = mlflow.last_logged_model()
            assert model.name == "ensemble_meta_learner"
            loaded = mlflow.sklearn.load_model(model.model_uri)
            example = learner.input_example
            assert np.allclose(loaded.predict(example), learner.model.predict(example)), kind
            info = mlflow.models.get_model_info(model.model_uri)
            assert [c.name for c in info.signature.inputs.inputs] == list(example.columns)
    finally:
        mlflow.set_tracking_uri(previous)


def test_one_out_of_fold_fold_and_no_equal_weight_method_falls_back_and_fits_it(data):
    """With a single out-of-fold fold nothing is fitted walk-forward, so the choice falls back
    to equal_weight, which is not among `stacking.methods` here: it is fitted all the same
    (fit_ensembles failed with a KeyError), and `final` is it on the test period."""
    folds = data["cv_folds"][data["cv_folds"]["fold"] == 0]
    catalog = {**_catalog({**data, "cv_folds": folds})}
    out = run_pipeline("stacking", catalog, {"stacking": {"methods": ["bma"]}})
    assert out["ensemble_report"]["chosen"] == "equal_weight"
    test = out["ensemble_test_predictions"]
    final = test[test["model"] == "final"]["prediction"].to_numpy()
    assert len(final) and np.array_equal(
        final, test[test["model"] == "equal_weight"]["prediction"].to_numpy())
