"""regime_models nodes: unpack parameters, call core, return data."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bma_quant.core.data import listings
from bma_quant.core.data.cv import OOF, DateFold, folds_from_table
from bma_quant.core.data.split import dates_in
from bma_quant.core.evaluation import static_plots
from bma_quant.core.evaluation.metrics import prediction_scores
from bma_quant.core.features import leak_audit
from bma_quant.core.features.fear_greed import fear_greed_index
from bma_quant.core.models import training
from bma_quant.core.models.training import TargetTransform
from bma_quant.core.regimes import detection, regime_learning
from bma_quant.core.regimes.regime_evidence import regime_evidence
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics
from bma_quant.pipelines.regime_models.model_dataset import LoggedRegimeModel
from bma_quant.pipelines.regime_models.plots import regime_timeline_figure

logger = logging.getLogger(__name__)

KEYS = ("date", "ticker")


def _min_duration(params: dict) -> int:
    smoothing = params["smoothing"]
    return int(smoothing["min_duration_days"]) if smoothing.get("enabled", True) else 1


def build_detector_inputs(
    primary_panel: pd.DataFrame, market: pd.DataFrame, fear_greed_params: dict | None,
    params: dict | None = None,
) -> pd.DataFrame:
    """Market return and level, the causal fear-greed composite (feature_engineering's
    parameters, so the detector and the learners see the same index) and the market-wide regime
    evidence (`core.regimes.regime_evidence`: trend, volatility, dispersion, breadth, trailing factor
    performance), by date."""
    close_wide = listings.close_by_listing(primary_panel)  # a reused code: two companies
    fear_greed = fear_greed_index(close_wide, market, fear_greed_params or {})
    evidence = regime_evidence(close_wide, market, (params or {}).get("evidence"))
    return detection.detector_inputs(market, fear_greed, evidence)


def detect_regimes(
    detector_inputs: pd.DataFrame, date_split: dict, params: dict
) -> tuple[pd.DataFrame, detection.DetectorFit, dict]:
    """Fit the detector on development dates, label every date causally."""
    fit = detection.fit_detector(params["detector"], params, detector_inputs,
                               date_split["dev_end"], _min_duration(params))
    labels = fit.detector.detect(detector_inputs)
    table = detection.regime_table(labels, detector_inputs)
    dev = dates_in(date_split, "dev", table["date"])
    audit = _audit_labels(fit.detector, detector_inputs, labels, np.flatnonzero(dev), params)
    summary = {
        "requested_detector": fit.requested,
        "detector": fit.detector.name,
        "detector_fallback": fit.fallback,
        "detector_error": fit.error,
        "min_duration_days": _min_duration(params),
        "all_dates": detection.regime_stats(table),
        "development": detection.regime_stats(table[dev]),
        "test": detection.regime_stats(table[dates_in(date_split, "test", table["date"])]),
        "detector_state": _detector_state(fit.detector),
        "development_market_return": detection.regime_market_returns(table[dev],
                                                                     detector_inputs),
        "leak_audit": audit,
    }
    _warn_single_regime(summary)
    if params.get("misnamed_min_tstat") is not None:
        _warn_misnamed_regimes(summary, float(params["misnamed_min_tstat"]))
    stats = summary["all_dates"]
    logger.info("regimes (%s): bull %.0f%%, neutral %.0f%%, bear %.0f%%, %d switches",
                fit.detector.name, 100 * stats["share_bull"], 100 * stats["share_neutral"],
                100 * stats["share_bear"], stats["switches"])
    return table, fit, summary


def _warn_single_regime(summary: dict) -> None:
    """A detector that gives every development date one label tells the learners nothing (a
    minimum duration longer than every raw spell, thresholds no date reaches): say so, since the
    run goes on with one regime."""
    shares = {r: summary["development"][f"share_{r}"] for r in detection.REGIMES}
    only = [r for r, share in shares.items() if share == 1.0]
    if only:
        logger.warning(
            "regime detector %r labels every development date %r (regime_models.smoothing."
            "min_duration_days %d): whatever reads the labels (routed regime models, "
            "regime_stacking's per-regime weights, per-regime scores) sees one regime, though "
            "soft training and blending still read the filtered probabilities; check the "
            "detector's parameters (a shorter minimum duration, its thresholds)",
            summary["detector"], only[0], summary["min_duration_days"])
        return
    test = {r: summary["test"][f"share_{r}"] for r in detection.REGIMES}
    if summary["test"]["spells"] and (only := [r for r, share in test.items() if share == 1.0]):
        logger.warning(
            "regime detector %r labels every test date %r, though its development dates hold "
            "several regimes (%s): the regime-aware models route and weight the whole test "
            "period as one state. The evidence may have moved to values the fit never saw "
            "(a universe that grew or changed, a calmer market), or the states describe an "
            "early stretch of the history only; see regime_models_report.json",
            summary["detector"], only[0],
            ", ".join(f"{r} {100 * share:.0f}%" for r, share in shares.items()))


def _warn_misnamed_regimes(summary: dict, min_tstat: float) -> None:
    """Regime names read as market direction; when the development dates called `bear` saw the
    market rise on average (or `bull` fall), beyond noise, the states differ in something else
    (volatility, which factors paid) and per-regime scores must be read as states, not as up
    and down markets."""
    returns = summary["development_market_return"]
    wrong = detection.misnamed_regimes(returns, min_tstat)
    if wrong:
        logger.warning(
            "regime detector %r: on development dates the market's mean daily return was %s: "
            "%s moved against %s name (the names rank the states by regime_models.%s, not by "
            "direction), so read bull / neutral / bear in per-regime scores and weights as "
            "states, not as up and down markets (detection.development_market_return in "
            "regime_models_report.json; regime_models.misnamed_min_tstat)", summary["detector"],
            ", ".join(f"{r} {100 * v['mean']:+.3f}% (t {v['tstat']:+.1f})"
                      for r, v in returns.items() if np.isfinite(v["mean"])),
            " and ".join(repr(r) for r in wrong), "their" if len(wrong) > 1 else "its",
            _ordering_parameter(summary["detector"]))


def _ordering_parameter(detector: str) -> str:
    """The parameter that orders a detector's states into bull / neutral / bear."""
    return {"hmm": "hmm.order_column", "markov": "markov.state_order_by"}.get(
        detector, "rules.trend_quantiles")


class RegimeLeakError(RuntimeError):
    """The fitted detector's labels at t changed when later dates were added (look-ahead)."""


def _audit_labels(detector: detection.RegimeDetector, inputs: pd.DataFrame, labels: pd.DataFrame,
                  dev_rows: np.ndarray, params: dict) -> dict:
    """Run-time prefix audit of the regime labels (DESIGN §3): the fitted detector run on the
    inputs cut at a few development dates must give the same labels and probabilities on the
    dates before each cut as on the whole series. A mismatch stops the run (`fail_on_leak`)."""
    audit_params = dict(params.get("leak_audit") or {})
    fail = bool(audit_params.pop("fail_on_leak", True))
    config = leak_audit.LeakAuditConfig.from_params(audit_params)
    ordered = inputs.sort_index()
    cuts = leak_audit.cut_rows(dev_rows, config.prefix_cuts, earliest=config.compare_days)
    table = leak_audit.audit_regime_labels(
        labels, lambda stop: detector.detect(ordered.iloc[:stop]), cuts, config)
    flagged = table[table["prefix_mismatches"] > 0]
    result = {"cuts": [str(pd.Timestamp(labels["date"].iloc[c]).date()) for c in cuts],
              "compare_days": config.compare_days, "suspects": flagged.index.tolist(),
              "columns": table.reset_index().to_dict(orient="records")}
    if len(flagged):
        message = (f"regime detector {detector.name!r}: {', '.join(flagged.index)} at dates before "
                   f"a cut differ from the full computation (look-ahead of up to "
                   f"{int(flagged['lookahead_days'].max())} day(s)); regime labels must be causal")
        if fail:
            raise RegimeLeakError(message)
        logger.error(message)
    return result


def _detector_state(detector: detection.RegimeDetector) -> dict:
    """The fitted numbers worth reading in the report (thresholds or state moments)."""
    if isinstance(detector, detection.RulesDetector):
        return {"thresholds": {k: list(v) for k, v in detector.thresholds.items()},
                "vote_threshold": detector.vote_threshold}
    if isinstance(detector, detection.HmmDetector):
        order = detector.state_order
        return {
            "columns": list(detector.columns),
            "state_means_standardised": {
                r: dict(zip(detector.columns, map(float, detector.model.means[order[k]]),
                            strict=True)) for k, r in enumerate(detection.REGIMES)},
            "transition": detector.model.transition[np.ix_(order, order)].tolist(),
            "fit_share": dict(zip(detection.REGIMES, map(float, detector.state_shares),
                                  strict=True)),
            "log_likelihood": detector.model.log_likelihood,
            "em_iterations": detector.model.n_iter,
        }
    if isinstance(detector, detection.MarkovDetector):
        return {
            "daily_mean": dict(zip(detection.REGIMES, map(float, detector.state_means), strict=True)),
            "daily_vol": dict(zip(detection.REGIMES, map(float, detector.state_vols), strict=True)),
            "fit_share": dict(zip(detection.REGIMES, map(float, detector.state_shares), strict=True)),
            "log_likelihood": detector.log_likelihood,
        }
    return {}


def _learning_config(params: dict, base_model_status: dict | None) -> tuple[
        regime_learning.RegimeLearningConfig, str]:
    """The learner's parameters: defaults, overridden by base_models' tuned ones when present."""
    learner = params["learner"]
    learner_params = dict((params.get("learner_params") or {}).get(learner) or {})
    source = "default"
    status = (base_model_status or {}).get(learner) or {}
    if params.get("use_tuned_params", True) and status.get("status") == "ok" \
            and status.get("best_params"):
        learner_params.update(status["best_params"])
        source = "base_models"
    config = regime_learning.RegimeLearningConfig(
        learner=learner,
        params=learner_params,
        min_samples_per_regime=int(params["min_samples_per_regime"]),
        combine=params["combine"],
        min_stability_weight=float(params["min_stability_weight"]),
        seed=int(params["seed"]),
        n_jobs=int(params["n_jobs"]),
        target_transform=TargetTransform.from_params(params),
        context_columns=_context_columns(params),
        max_train_rows=params.get("max_train_rows"),
        training=params.get("training", "hard"),
    )
    return config, source


def _context_columns(params: dict) -> tuple[str, ...]:
    """Regimes-table columns every regime model sees: p_* and the listed market context."""
    context = params.get("context_features") or {}
    if not context.get("enabled", False):
        return ()
    probabilities = detection.PROBABILITY_COLUMNS if context.get("probabilities", True) else ()
    return (*probabilities, *context.get("columns", ()))


def train_regime_models(
    model_input: pd.DataFrame,
    sample_weights: pd.DataFrame,
    cv_folds: pd.DataFrame,
    date_split: dict,
    detector_inputs: pd.DataFrame,
    regime_table: pd.DataFrame,
    detector_fit: detection.DetectorFit,
    base_model_status: dict | None,
    base_oof_predictions: pd.DataFrame | None,
    params: dict,
    fear_greed_params: dict | None = None,
    base_model_params: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, regime_learning.RegimeAwareModel, dict, pd.DataFrame]:
    """Out-of-fold predictions on the shared out-of-fold folds (each fold with its own detector),
    the model refit on all development rows, test predictions routed (or blended) by each test
    date's regime, and every fold's regime table (`fold_regimes`, for stacking)."""
    config, params_source = _learning_config(params, base_model_status)
    features = [c for c in model_input.columns if c not in (*KEYS, "label")]
    dev = model_input.loc[dates_in(date_split, "dev", model_input["date"])].reset_index(drop=True)
    test = model_input.loc[dates_in(date_split, "test", model_input["date"])]
    test = test.reset_index(drop=True)
    weights, missing = training.date_weights(dev["date"], sample_weights)
    if missing:  # as base_models: such rows are not trained on (they were given the median)
        logger.warning("regime_models: %d development dates have no sample weight and are not "
                       "trained on", missing)
    trained_label = dev["label"].where(weights > 0)  # scored out of fold all the same
    # Out-of-fold folds only: the tuned parameters were chosen on the tuning folds.
    folds = folds_from_table(cv_folds, stage=OOF)
    logger.info("%s: %d development rows, %d test rows, %d features, %d folds, params from %s",
                config.model_name, len(dev), len(test), len(features), len(folds), params_source)

    fold_regimes = _FoldRegimes(params, detector_inputs)
    compare_global = bool(params.get("compare_global", True))
    reused = _base_global_predictions(dev, base_oof_predictions, config.learner, params_source) \
        if compare_global and _same_training_rows(params, base_model_params) else None
    cv = regime_learning.cross_validate_regime_models(
        dev[features], trained_label, weights, dev["date"], folds, fold_regimes, config,
        compare_global=compare_global, global_predictions=reused,
    )
    oof = cv.oof
    oof["date"] = dev["date"].to_numpy()[oof["row"]]
    oof["ticker"] = dev["ticker"].to_numpy()[oof["row"]]
    oof["label"] = dev["label"].to_numpy()[oof["row"]]

    model = regime_learning.fit_regime_models(dev[features], trained_label, weights,
                                              dev["date"], regime_table, config)
    if not model.estimators:
        logger.warning("regime_models: %s", regime_learning.no_regime_model_message(
            model.training_rows, config.min_samples_per_regime, config.training == "soft"))
    model.detector = detector_fit.detector
    model.fear_greed_params = dict(fear_greed_params or {})
    model.evidence_params = dict(params.get("evidence") or {})
    test_prediction = model.predict(test, regime_table) if len(test) else pd.Series(dtype=float)

    oof_predictions = _prediction_frame(oof, config.model_name, with_fold=True)
    test_predictions = _prediction_frame(
        test[list(KEYS)].assign(prediction=test_prediction.to_numpy()), config.model_name,
        with_fold=False,
    )
    summary = _regime_summary(config, params_source, cv, fold_regimes.detectors, model,
                              _row_shares(test["date"], regime_table),
                              _cv_scores(oof, config, int(params["min_names"])))
    return oof_predictions, test_predictions, model, summary, fold_regimes.table()


class _FoldRegimes:
    """Each out-of-fold fold's regimes as seen by a detector fitted on that fold's training dates
    only. Every fold's table is kept (up to the fold's last test date) so stacking's walk-forward
    uses the same causal view (`fold_regimes`)."""

    def __init__(self, params: dict, detector_inputs: pd.DataFrame):
        self.params = params
        self.detector_inputs = detector_inputs
        self.detectors: dict[int, dict] = {}
        self.tables: list[pd.DataFrame] = []

    def __call__(self, fold: DateFold) -> pd.DataFrame:
        fit = detection.fit_detector(self.params["detector"], self.params, self.detector_inputs,
                                     fold.train_dates.max(), _min_duration(self.params))
        self.detectors[fold.fold] = {"detector": fit.detector.name, "fallback": fit.fallback}
        table = detection.regime_table(fit.detector.detect(self.detector_inputs),
                                       self.detector_inputs)
        seen = table[table["date"] <= fold.test_dates.max()]
        self.tables.append(seen.assign(fold=np.int32(fold.fold)))
        return table

    def table(self) -> pd.DataFrame:
        return pd.concat(self.tables, ignore_index=True)[
            ["fold", "date", "regime", *detection.PROBABILITY_COLUMNS]]


def _regime_summary(config: regime_learning.RegimeLearningConfig, params_source: str,
                    cv: regime_learning.RegimeCVResult, fold_detectors: dict,
                    model: regime_learning.RegimeAwareModel, test_regime_shares: dict,
                    cv_scores: dict) -> dict:
    return {
        "model": config.model_name,
        "learner": config.learner,
        "learner_params": dict(config.params),
        "params_source": params_source,
        "combine": config.combine,
        "context_columns": list(config.context_columns),
        "min_samples_per_regime": config.min_samples_per_regime,
        "folds": cv.folds,
        "fold_detectors": fold_detectors,
        "final_train_rows": model.training_rows,
        "final_fallback_regimes": model.fallback_regimes,
        "test_regime_shares": test_regime_shares,
        "cv": cv_scores,
    }


def _same_training_rows(params: dict, base_model_params: dict | None) -> bool:
    """base_models' out-of-fold fits trained on the rows, features, target and seed the
    comparison would (same max_train_rows, every feature, same target transform and seed): only
    then are their predictions the global model the regime layer is compared with; otherwise the
    comparison refits it (logged)."""
    if base_model_params is None:
        return True
    differs = [key for key, same in (
        ("max_train_rows", base_model_params.get("max_train_rows") == params.get("max_train_rows")),
        ("features", not base_model_params.get("features")),
        ("target_transform", TargetTransform.from_params(base_model_params)
         == TargetTransform.from_params(params)),
        ("seed", base_model_params.get("seed") == params.get("seed"))) if not same]
    if differs:
        logger.info("regime_models: base_models.%s differs from the regime layer's: the global "
                    "comparison refits its learner instead of reusing base_models' out-of-fold "
                    "predictions", " and ".join(differs))
    return not differs


def _base_global_predictions(dev: pd.DataFrame, base_oof: pd.DataFrame | None, learner: str,
                             params_source: str) -> np.ndarray | None:
    """base_models' own out-of-fold predictions of the learner, aligned to the development rows,
    when they are the same model the comparison would refit (tuned parameters, same folds);
    None (refit) otherwise."""
    if base_oof is None or params_source != "base_models":
        return None
    part = base_oof[base_oof["model"] == learner]
    if part.empty:
        return None
    by_key = part.set_index(["date", "ticker"])["prediction"]
    keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(dev["date"]), dev["ticker"].astype(str)])
    by_key.index = pd.MultiIndex.from_arrays([pd.DatetimeIndex(by_key.index.get_level_values(0)),
                                              by_key.index.get_level_values(1).astype(str)])
    logger.info("global_%s comparison: base_models' out-of-fold predictions (no refit)", learner)
    return by_key.reindex(keys).to_numpy(np.float64)


def _row_shares(dates: pd.Series, regime_table: pd.DataFrame) -> dict[str, float]:
    if len(dates) == 0:
        return {}
    labels, _ = regime_learning.regimes_of_rows(dates, regime_table)
    return {r: float((labels == r).mean()) for r in detection.REGIMES}


def _cv_scores(oof: pd.DataFrame, config, min_names: int) -> dict:
    """Out-of-fold RankIC of the regime-aware and the plain global model, overall and by regime."""
    columns = {config.model_name: "prediction"}
    if "global_prediction" in oof:
        columns[f"global_{config.learner}"] = "global_prediction"
    by_regime = regime_learning.per_regime_rank_ic(oof, list(columns.values()), "label",
                                                   min_names)
    scores = {}
    for name, column in columns.items():
        overall = prediction_scores(oof, column, "label", min_names)
        scores[name] = {
            "oof_rank_ic_mean": by_regime["all"][column],
            "oof_ic_mean": overall["ic"],
            "oof_rank_icir": overall["rank_icir"],
            "oof_hit_rate": overall["hit_rate"],
            **{f"{r}.oof_rank_ic_mean": by_regime[r][column] for r in detection.REGIMES},
        }
    return scores


def _prediction_frame(frame: pd.DataFrame, model_name: str, with_fold: bool) -> pd.DataFrame:
    columns = ["date", "ticker", "model", *(["fold"] if with_fold else []), "prediction"]
    out = frame.assign(model=model_name)
    out["prediction"] = out["prediction"].astype(np.float32)
    if with_fold:
        out["fold"] = out["fold"].astype("int32")
    out = out[columns].sort_values(list(KEYS), kind="stable").reset_index(drop=True)
    out["date"] = pd.DatetimeIndex(out["date"]).astype("datetime64[ns]")
    out["ticker"] = out["ticker"].astype(str)
    return out


def regime_timeline(regime_table: pd.DataFrame, market: pd.DataFrame, date_split: dict,
                    detection_summary: dict):
    """The timeline as an interactive plotly figure (kedro-viz) and as a PNG drawing (MLflow),
    titled with the detector that labelled the dates (after a fallback, not the one asked for)."""
    # forward-filtered; the detector is fitted on development dates, so only test dates are
    # out of sample (the out-of-fold layers use per-fold detectors)
    fallback = (f", in place of {detection_summary['requested_detector']}"
                if detection_summary.get("detector_fallback") else "")
    title = (f"Market regimes ({detection_summary['detector']} detector{fallback}, filtered; "
             "fitted on development dates)")
    figure = regime_timeline_figure(regime_table, market, date_split, title=title)
    return figure, static_plots.to_matplotlib(figure)


def detector_agreement(regime_table: pd.DataFrame, true_regimes: pd.DataFrame,
                       date_split: dict) -> dict:
    """`regime_models.detector_agreement*` on the test dates when the panel's true regimes are
    known (synthetic markets): same label, label permutation chosen on the development dates
    (held out: the maximum over permutations on the test dates themselves is above chance for a
    detector that knows nothing), mean probability of the true regime. No truth: no metric
    (never a made-up number)."""
    if true_regimes is None or true_regimes.empty:
        return {}
    test = regime_table[dates_in(date_split, "test", regime_table["date"])]
    dev = regime_table[dates_in(date_split, "dev", regime_table["date"])]
    truth = true_regimes.assign(date=pd.DatetimeIndex(true_regimes["date"]))
    if not pd.DatetimeIndex(test["date"]).isin(truth["date"]).any():
        raise ValueError("true_regimes (data.true_regimes_path) share no test date with the "
                         "panel: is it the truth of another market?")
    dev_known = pd.DatetimeIndex(dev["date"]).isin(truth["date"]).any()
    agreement = detection.detection_agreement(test, truth, matched_on=dev if dev_known else test)
    logger.info("detector agreement with the true regimes on %d test dates: %.2f (labels "
                "matched on %s dates: %.2f)", len(test), agreement["accuracy"],
                "development" if dev_known else "the test", agreement["best_match_accuracy"])
    return as_mlflow_metrics({
        "detector_agreement": agreement["accuracy"],
        "detector_agreement_best_match": agreement["best_match_accuracy"],
        "detector_agreement_probability": agreement.get("probability"),
        "detector_agreement_best_match_probability": agreement.get("best_match_probability"),
    })


def regime_report(detection_summary: dict, training_summary: dict) -> tuple[dict, dict]:
    """The JSON report and the `regime_models.*` metrics."""
    report = {"detection": detection_summary, "training": training_summary}
    stats = detection_summary["all_dates"]
    metrics: dict[str, float] = {
        **{f"share_{r}": stats[f"share_{r}"] for r in detection.REGIMES},
        "switches": stats["switches"],
        "mean_duration_days": stats["mean_duration_days"],
        **{f"{period}.share_{r}": detection_summary[key][f"share_{r}"]
           for period, key in (("dev", "development"), ("test", "test"))
           for r in detection.REGIMES},
        "detector_markov": float(detection_summary["detector"] == "markov"),
        "leak_suspects": float(len((detection_summary.get("leak_audit") or {}).get("suspects", []))),
        "detector_fallback": float(detection_summary["detector_fallback"]),
        "fold_detector_fallbacks": float(sum(
            f["fallback"] for f in training_summary["fold_detectors"].values())),
    }
    model = training_summary["model"]
    for name, scores in training_summary["cv"].items():
        metrics.update({f"{name}.{key}": value for key, value in scores.items()})
    for regime in detection.REGIMES:
        metrics[f"{model}.{regime}.train_rows"] = training_summary["final_train_rows"][regime]
        metrics[f"{model}.{regime}.fallback"] = float(
            regime in training_summary["final_fallback_regimes"])
    global_name = f"global_{training_summary['learner']}"
    if global_name in training_summary["cv"]:
        metrics[f"{model}.oof_rank_ic_gain"] = (
            training_summary["cv"][model]["oof_rank_ic_mean"]
            - training_summary["cv"][global_name]["oof_rank_ic_mean"]
        )
    return report, as_mlflow_metrics(metrics)


def log_regime_model(regime_model, model_input: pd.DataFrame, regimes: pd.DataFrame,
                     params: dict) -> LoggedRegimeModel:
    """The fitted model and a few example rows (features with their date's regime state) for
    its MLflow pyfunc model and signature (pipelines/regime_models/model_dataset.py)."""
    rows = model_input.head(int(params.get("signature_rows", 200)))
    return LoggedRegimeModel(regime_model,
                             regime_learning.regime_model_frame(regime_model, rows, regimes))
