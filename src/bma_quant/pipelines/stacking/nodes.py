"""stacking nodes: unpack parameters, call core.ensemble.combiners, return data."""

from __future__ import annotations

import logging
import math

import pandas as pd

from bma_quant.core.data.cv import OOF, folds_from_table
from bma_quant.core.ensemble import combiners
from bma_quant.core.ensemble.selection import SelectionRule
from bma_quant.pipelines.base_models.model_dataset import LoggedLearner
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["date", "ticker", "model", "prediction"]
# the run tag naming the ensemble method `final` serves (filterable in the MLflow UI)
FINAL_METHOD_TAG = "stacking.final.method"


def _enabled_methods(n_models: int, params: dict) -> tuple[list[str], bool]:
    """All configured methods with at least `min_base_models` models, else only the fallback."""
    enabled = n_models >= int(params["min_base_models"])
    methods = list(params["methods"]) if enabled else [params["fallback_method"]]
    return methods, enabled


def prepare_ensemble_inputs(
    base_oof_predictions: pd.DataFrame,
    base_test_predictions: pd.DataFrame,
    regime_oof_predictions: pd.DataFrame,
    regime_test_predictions: pd.DataFrame,
    base_model_status: dict,
    labels: pd.DataFrame,
    cv_folds: pd.DataFrame,
    date_split: dict,
    params: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Collect the models that succeeded, align their out-of-fold predictions on (date, ticker)
    with the labels and folds (standardised per date), and their test predictions."""
    models, skipped = combiners.usable_models(base_oof_predictions, base_test_predictions,
                                             base_model_status)
    n_base = len(models)  # min_base_models counts these (DESIGN 5.3), not the regime models
    oof_parts, test_parts = [base_oof_predictions], [base_test_predictions]
    if params["include_regime_models"]:
        regime_models, regime_skipped = combiners.usable_models(regime_oof_predictions,
                                                               regime_test_predictions)
        models += [m for m in regime_models if m not in models]
        skipped.update(regime_skipped)
        oof_parts.append(regime_oof_predictions)
        test_parts.append(regime_test_predictions)
    if not models:
        raise RuntimeError(f"stacking: no base or regime model succeeded ({skipped}); "
                           "there is nothing to combine.")
    oof = pd.concat([p[PREDICTION_COLUMNS] for p in oof_parts], ignore_index=True)
    oof = oof[oof["model"].isin(models)]
    # The inputs themselves must be development rows: refuse rather than silently drop.
    combiners.assert_development_only(oof["date"], date_split["test_start"])
    test = pd.concat([p[PREDICTION_COLUMNS] for p in test_parts], ignore_index=True)
    test = test[test["model"].isin(models)].reset_index(drop=True)
    design = combiners.build_design(oof, labels, folds_from_table(cv_folds, stage=OOF), models,
                                   params["standardisation"], float(params["zscore_clip"]))
    methods, enabled = _enabled_methods(n_base, params)
    if not enabled:
        logger.warning("stacking: only %d base model(s) succeeded (%s) < min_base_models %d: "
                       "%s fallback (stacking.fallback_method) over %s", n_base,
                       models[:n_base], params["min_base_models"], methods[0], models)
    for name, reason in skipped.items():
        logger.warning("stacking: model %s left out: %s", name, reason)
    model_info = {"models": models, "n_base_models": n_base, "skipped": skipped,
                  "stacking_enabled": enabled,
                  "methods": methods, "oof_rows": int(len(design)), "test_rows": int(len(test))}
    return design, test, model_info


def _finite_or_none(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def select_ensemble(
    design: pd.DataFrame,
    fold_regimes: pd.DataFrame,
    cv_folds: pd.DataFrame,
    date_split: dict,
    model_info: dict,
    params: dict,
    temporal: dict,
) -> tuple[pd.DataFrame, dict]:
    """Walk-forward out-of-sample predictions of every method (regimes from each fold's own
    detector), nested validation scores, the chosen method (stacking.selection's rule on the last
    `n_validation_folds` folds) and the walk-forward score of that choice."""
    params = _with_purge(params, temporal)
    rule = SelectionRule.from_params(params.get("selection", {}),
                                     nw_lag=int(temporal["prediction_horizon_days"]),
                                     fallback=params["fallback_method"],
                                     methods=params.get("methods"))
    result = combiners.walk_forward_ensembles(
        design, folds_from_table(cv_folds, stage=OOF), fold_regimes, model_info["methods"],
        model_info["models"], params, date_split["test_start"], rule)
    chosen = result.chosen
    logger.info("stacking: chosen %s (top score %s; default %s, t-stat against it %s); "
                "RankIC of each method on the validation folds (the chosen one's: the choice's "
                "own, optimistic) %s", chosen, result.choice.get("top_method"), rule.default_method,
                _finite_or_none(result.choice.get("t_stat_vs_default")),
                {m: round(s, 5) for m, s in result.oos_rank_ic.items()})
    selection = {
        "chosen": chosen,
        "top_method": result.choice.get("top_method"),
        "default_method": rule.default_method,
        "min_t_stat": rule.min_t_stat,
        "t_stat_vs_default": _finite_or_none(result.choice.get("t_stat_vs_default")),
        "oos_rank_ic": result.oos_rank_ic,
        "final_nested_rank_ic": result.final_nested_rank_ic,
        "final_nested_folds": result.final_nested_folds,
        # which method each of those folds' walk-forward choice took (the `final` rows out of fold)
        "final_nested_picks": {str(k): v for k, v in result.final_picks.items()},
        "validation_folds": result.validation_folds,
        "fold_scores": result.scores.to_dict(orient="records"),
        "notes": result.notes,
    }
    return combiners.with_nested_final(result.predictions, result.final_picks), selection


def _with_purge(params: dict, temporal: dict) -> dict:
    """The stacking parameters with the purge the ensemble fits apply between blocks of dates
    (`temporal.cv_gap_days`, as between CV folds)."""
    return {**params, combiners.PURGE_DATES_KEY: int(temporal["cv_gap_days"])}


def fit_ensembles(
    design: pd.DataFrame,
    test_predictions: pd.DataFrame,
    regimes: pd.DataFrame,
    date_split: dict,
    model_info: dict,
    selection: dict,
    params: dict,
    temporal: dict,
):
    """Refit every method on all out-of-fold rows, predict the test period, and return the test
    predictions, the weights table, the chosen ensemble, the meta-learner and fit details."""
    params = _with_purge(params, temporal)
    # the chosen method is the fallback (equal_weight) when no fold could score the enabled
    # ones: it is fitted too, enabled or not
    methods = list(dict.fromkeys([*model_info["methods"], selection["chosen"]]))
    fitted = {
        method: combiners.fit_ensemble(method, design, regimes, params, date_split["test_start"],
                                      model_info["models"])
        for method in methods
    }
    # Every method shares the models and the standardisation: standardise the test rows once.
    standardised = next(iter(fitted.values())).standardise(test_predictions)
    parts = [f.combine_standardised(standardised, regimes).assign(model=name)
             for name, f in fitted.items()]
    test = pd.concat(parts, ignore_index=True)[PREDICTION_COLUMNS]
    test = combiners.with_final(test, selection["chosen"])
    weights = combiners.weights_table(fitted)
    fit_info = {name: f.combiner.info() for name, f in fitted.items()}
    ranks = combiners.member_ranks(standardised, model_info["models"])
    for name, part in zip(fitted, parts, strict=True):
        # an ensemble that ranks names as one member does is that member: say so
        fit_info[name]["identical_to"] = combiners.identical_member(
            standardised, part["prediction"], model_info["models"], ranks)
    # The meta-learner's inputs are the per-date standardised predictions, one column per model.
    example = design[model_info["models"]].head(5).fillna(0.0)
    meta_learner = LoggedLearner("ensemble_meta_learner", combiners.meta_learner_estimator(fitted),
                                 example)
    return test, weights, fitted[selection["chosen"]], meta_learner, fit_info


def report_stacking(
    model_info: dict, selection: dict, fit_info: dict, weights: pd.DataFrame
) -> tuple[dict, dict]:
    """The ensemble report (JSON artifact) and the `stacking.*` metrics."""
    chosen = selection["chosen"]
    identical_to = (fit_info.get(chosen) or {}).get("identical_to")
    if identical_to:
        logger.warning("stacking: the chosen ensemble %s ranks the names exactly as %s does on "
                       "every test date (its weight sits on that member): final adds nothing to "
                       "%s", chosen, identical_to, identical_to)
    report = {
        "chosen": chosen,
        "final_identical_to": identical_to,
        "fallback": None if model_info["stacking_enabled"] else (
            f"only {model_info.get('n_base_models', len(model_info['models']))} base model(s) "
            "succeeded: "
            f"{model_info['methods'][0]} fallback"),
        **model_info,
        "selection": selection,
        "fit": fit_info,
        "weights": weights.to_dict(orient="records"),
        "seed_regime_rule": combiners.seed_regime_rule_check(weights),
    }
    values = {f"{m}.oos_rank_ic": s for m, s in selection["oos_rank_ic"].items()}
    # The chosen method's own score is a choice among several on the same folds (optimistic): it
    # is logged as the selection score; `final.oos_rank_ic` is the walk-forward choice's score.
    values["final.selection_rank_ic"] = selection["oos_rank_ic"].get(chosen)
    # the top-scoring method's Newey-West t-stat against the default (NaN: it is the default)
    values["final.t_stat_vs_default"] = selection.get("t_stat_vs_default")
    values["final.oos_rank_ic"] = selection.get("final_nested_rank_ic")
    values["final.identical_to_member"] = float(identical_to is not None)
    values.update({f"{m}.identical_to_member": float(bool((info or {}).get("identical_to")))
                   for m, info in fit_info.items()})
    values["n_models"] = len(model_info["models"])
    values["stacking_enabled"] = float(model_info["stacking_enabled"])
    values["n_validation_folds"] = len(selection["validation_folds"])
    _tag_chosen_method(chosen)
    return report, as_mlflow_metrics(values)


def _tag_chosen_method(chosen: str) -> None:
    """The method `final` serves, as a run tag: runs can be filtered and compared on it in the
    MLflow UI (a metric cannot hold a name; the ensemble report artifact is not searchable)."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tag(FINAL_METHOD_TAG, chosen)
