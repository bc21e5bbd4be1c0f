"""evaluation nodes: the test period, the gates, plots and the overfitting assessment; unpack
parameters, call core, return data. The serving chain and the registry: registry_nodes.py."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from bma_quant.core.data.cv import OOF, folds_from_table
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.evaluation import (
    backtest,
    backtest_panel,
    cpcv,
    gates,
    overfitting,
    plots,
    static_plots,
    test_period,
    trial_accounting,
)
from bma_quant.core.models import training
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics
from bma_quant.run_hooks.interrupts import interruption_in

logger = logging.getLogger(__name__)


PREDICTION_COLUMNS = ["date", "ticker", "model", "prediction"]
# cv.scheme: the chain's folds are always walk-forward (stacking's nested selection fits on
# earlier folds); "combinatorial" adds the CPCV paths analysis to evaluation.
CV_SCHEMES = ("walk_forward", "combinatorial")


def collect_test_predictions(
    base_test_predictions: pd.DataFrame,
    regime_test_predictions: pd.DataFrame,
    ensemble_test_predictions: pd.DataFrame,
) -> pd.DataFrame:
    """Every layer's test predictions in one long frame (date, ticker, model, prediction)."""
    frames = [f[PREDICTION_COLUMNS] for f in (base_test_predictions, regime_test_predictions,
                                             ensemble_test_predictions) if f is not None and len(f)]
    if not frames:
        raise ValueError("no test predictions to evaluate: every upstream layer is empty")
    out = pd.concat(frames, ignore_index=True)
    duplicated = out.duplicated(["date", "ticker", "model"])
    if duplicated.any():
        raise ValueError(
            f"{int(duplicated.sum())} duplicate (date, ticker, model) test prediction rows, e.g. "
            f"{out.loc[duplicated, ['date', 'ticker', 'model']].head(3).to_dict('records')}"
        )
    return out


def _development_returns(primary_panel: pd.DataFrame, date_split: dict,
                         config: test_period.EvaluationConfig) -> pd.DataFrame:
    """What a holder earns per row up to dev_end (books formed near the end of development are
    held only until then, never into the test), with positions frozen where a close is no trade."""
    held = backtest.holding_returns(backtest_panel.backtest_panel(primary_panel, config),
                                    config.max_frozen_days)
    return test_period.restrict_to_period(held, None, date_split["dev_end"])


def evaluate_test_period(
    test_predictions: pd.DataFrame,
    labels: pd.DataFrame,
    primary_panel: pd.DataFrame,
    regimes: pd.DataFrame,
    date_split: dict,
    params: dict,
    temporal: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The comparison table (model x scope) and the series behind the plots."""
    config = test_period.EvaluationConfig.from_params(params, temporal,
                                                      date_split.get("dates_per_year"))
    panel = backtest_panel.backtest_panel(primary_panel, config, report=True)
    result = test_period.evaluate_predictions(
        test_predictions, labels, panel, regimes,
        config, test_start=date_split["test_start"], test_end=date_split["test_end"],
    )
    overall = result.table[result.table["scope"] == test_period.ALL_SCOPE]
    for row in overall.itertuples():
        logger.info("test %-18s rank_ic %+.4f  ic %+.4f  sharpe %+.2f  ir %+.2f  max_dd %.1f%%",
                    row.model, row.rank_ic, row.ic, row.sharpe, row.ir, 100 * row.max_drawdown)
    _warn_wiped_out(overall, config)
    _warn_implausible(overall, (params.get("metrics") or {}).get("implausible_rank_ic"))
    _log_untraded_positions(result.daily_returns)
    return (result.table, result.daily_ic, result.daily_returns, result.quantile_returns,
            result.ic_decay)


def _warn_implausible(overall: pd.DataFrame, bound: float | None) -> None:
    """Test RankICs no real market gives (a noisy copy of future returns in a user column
    made a pure-noise market's champion with 0.32): the leak audit drops the copies it can tell,
    this says when something it could not got through."""
    if bound is None:
        return
    high = overall.loc[overall["rank_ic"].abs() > float(bound)]
    if len(high):
        logger.warning(
            "test period: RankIC %s beyond +-evaluation.metrics.implausible_rank_ic (%g): no real "
            "market's cross-section is that predictable; look for look-ahead in the file (a "
            "user column made from future returns, dates stamped after the close they describe) "
            "before trusting these figures (feature_engineering's leak_report.json names what "
            "the audit could tell)", ", ".join(f"{m} {v:+.3f}" for m, v in
                                              zip(high["model"], high["rank_ic"], strict=True)),
            float(bound))


def _warn_wiped_out(overall: pd.DataFrame, config: test_period.EvaluationConfig) -> None:
    """A drawdown beyond 100 % means the compounded book went below zero wealth (costs or
    losses above the capital): its return, Sharpe and drawdown describe no real portfolio."""
    gone = overall.loc[overall["max_drawdown"] > 1.0, "model"].astype(str).tolist()
    if gone:
        logger.warning("test period: the long-short book of %s loses more than its capital "
                       "(max drawdown above 100 %%; evaluation.backtest.cost_bps %g): its "
                       "returns, Sharpe and drawdown describe no real portfolio", ", ".join(gone),
                       config.cost_bps)


def _log_untraded_positions(daily: pd.DataFrame, model: str = "final") -> None:
    """How often `model`'s book could not trade as it wanted at a rebalance: a held name whose
    close was no trade (kept frozen, or sold at its last price past
    evaluation.backtest.max_frozen_days), and trades a price-limit lock stopped."""
    if daily.empty or "frozen_weight" not in daily:
        return
    book = daily[daily["model"] == model]
    frozen, closed = book["frozen_weight"], book["closed_untraded_weight"]
    if (frozen > 0).any() or (closed > 0).any():
        logger.info("test %s: at %d rebalance(s) held names whose close was no trade were kept "
                    "frozen (largest gross weight %.1f%%); at %d, names without a trade for more "
                    "than evaluation.backtest.max_frozen_days dates were sold at their last price "
                    "(largest %.1f%%): evaluation_daily_returns, frozen_weight and "
                    "closed_untraded_weight", model, int((frozen > 0).sum()), 100 * frozen.max(),
                    int((closed > 0).sum()), 100 * closed.max())
    locked = book["locked_weight"] if "locked_weight" in book else pd.Series(dtype=float)
    if (locked > 0).any():
        logger.info("test %s: at %d rebalance(s) a price-limit lock stopped trades (a buy at a "
                    "limit-up close, a sale at a limit-down one; largest %.1f%% gross weight): "
                    "evaluation_daily_returns, locked_weight", model, int((locked > 0).sum()),
                    100 * locked.max())


def apply_gates(
    evaluation_table: pd.DataFrame, overfitting_report: dict, base_model_status: dict,
    date_split: dict, params: dict, temporal: dict | None = None
) -> dict[str, Any]:
    """Production-readiness gate report of the gated model (default ``final``), with the
    optional overfitting gates (``max_pbo``, ``min_deflated_sharpe``) when set."""
    spec = params["gates"]
    model, scope = str(spec.get("model", "final")), str(spec.get("scope", "all"))
    rows = evaluation_table[(evaluation_table["model"] == model)
                            & (evaluation_table["scope"] == scope)]
    metrics = {} if rows.empty else rows.iloc[0].to_dict()
    metrics.update(_overfitting_gate_metrics(overfitting_report, model))
    base = gates.DEFAULT_CHECKS if spec.get("checks") is None else spec["checks"]
    # a gate set to null (conf/local: `ic: null`) is dropped
    checks = {**{k: v for k, v in base.items() if v is not None},
              **gates.overfitting_checks(spec)}
    report = gates.evaluate_gates(metrics, checks, model=model, scope=scope)
    if rows.empty:
        report["note"] = f"model {model!r} has no test predictions: every check fails"
    status = base_model_status or {}
    report["base_models"] = {
        "ok": sorted(n for n, s in status.items() if (s or {}).get("status") == "ok"),
        "failed": sorted(n for n, s in status.items()
                         if (s or {}).get("status") not in ("ok", "degenerate")),
        "degenerate": sorted(n for n, s in status.items()
                             if (s or {}).get("status") == "degenerate"),
    }
    report["test_period"] = {k: date_split.get(k) for k in ("test_start", "test_end")}
    # what the test metrics and the gates ran under: the registry records it, and a model that
    # failed its gates is not made champion by a rerun under other settings
    # (a null written out as the value it stands for: the same settings either way)
    report["settings"] = {**test_period.resolved_settings(params, temporal,
                                                          date_split.get("dates_per_year")),
                          "gates": {**{k: v for k, v in spec.items() if k != "headline_metrics"},
                                    "checks": checks}}
    # what the registry description shows and the champion comparison reads
    report["headline"] = {m: _plain(metrics.get(m)) for m in spec.get("headline_metrics") or ()}
    logger.info("%s", gates.format_gate_report(report))
    return report


def _plain(value: Any) -> float | int | None:
    """A JSON number (numpy scalars unwrapped), None for missing or not finite."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _overfitting_gate_metrics(report: dict, model: str) -> dict[str, float | None]:
    """The values the overfitting gates compare: PBO and the gated model's deflated Sharpe."""
    pbo = (report.get("pbo") or {}).get("pbo")
    deflated = (report.get("deflated_sharpe") or {}).get(model) or {}
    return {"pbo": pbo, "deflated_sharpe": deflated.get("deflated_sharpe")}


def evaluation_metrics(evaluation_table: pd.DataFrame, gate_report: dict, params: dict,
                       temporal: dict, date_split: dict) -> dict:
    """``evaluation.<model>.test_<metric>`` (+ per-regime ones and the gate verdicts) and the
    settings the figures were computed with once resolved (``evaluation.periods_per_year``,
    ``rebalance_days``, ``nw_lag``, ``decay_max_horizon``: null in the conf means "the label
    horizon", which the run's MLflow params show as None)."""
    values = test_period.metric_values(
        evaluation_table, test_period.LOGGED_METRICS, params.get("log_regime_metrics") or ()
    )
    config = test_period.EvaluationConfig.from_params(params, temporal,
                                                      date_split.get("dates_per_year"))
    values.update({"periods_per_year": float(config.periods_per_year),
                   "rebalance_days": float(config.rebalance_days),
                   "nw_lag": float(config.nw_lag),
                   "decay_max_horizon": float(max(config.decay_horizons))})
    model = gate_report["model"]
    values[f"{model}.gates_passed"] = float(gate_report["passed"])
    for check in gate_report["checks"]:
        values[f"{model}.gate_{check['name']}_passed"] = float(check["passed"])
    return as_mlflow_metrics(values)


def make_plots(
    evaluation_table: pd.DataFrame,
    daily_ic: pd.DataFrame,
    daily_returns: pd.DataFrame,
    quantile_returns: pd.DataFrame,
    feature_importance: pd.DataFrame,
    params: dict,
):
    """The five evaluation figures, each returned twice: a matplotlib drawing saved as PNG
    (MLflow's image view) and the interactive plotly figure saved as JSON (kedro-viz).

    The importance table comes through the catalog, so a chain run plots this run's (staged)
    table, never an earlier run's file."""
    options = params.get("plots", {}) or {}
    models = options.get("models")
    figures = [
        plots.cumulative_ic_figure(daily_ic, models),
        plots.equity_curve_figure(daily_returns, models, options.get("highlight", "final")),
        plots.quantile_returns_figure(quantile_returns, models),
        plots.ic_by_regime_figure(evaluation_table),
        plots.feature_importance_figure(
            feature_importance,
            int(options.get("top_features", 25)),
        ),
    ]
    return tuple(f for figure in figures
                 for f in (static_plots.to_matplotlib(figure), figure))


# ------------------------------------------------------------------------------------------
# How much of the result is luck: trial accounting, deflated Sharpe, PBO, CPCV paths
# ------------------------------------------------------------------------------------------


def _daily_returns_by_model(daily_returns: pd.DataFrame) -> dict[str, np.ndarray]:
    return {str(model): part.sort_values("date")["long_short"].to_numpy(np.float64)
            for model, part in daily_returns.groupby("model", sort=True)}


def assess_overfitting(
    base_trial_oof_predictions: pd.DataFrame | None,
    base_oof_predictions: pd.DataFrame,
    regime_oof_predictions: pd.DataFrame,
    ensemble_oof_predictions: pd.DataFrame,
    primary_panel: pd.DataFrame,
    date_split: dict,
    evaluation_daily_returns: pd.DataFrame,
    base_model_status: dict,
    params: dict,
    temporal: dict,
):
    """Count the configurations tried, backtest each on its development-period out-of-fold
    predictions, and report the deflated Sharpe ratio of every model on the test period and the
    probability of backtest overfitting (report, configurations table, logits plot, metrics)."""
    config = test_period.EvaluationConfig.from_params(params, temporal,
                                                      date_split.get("dates_per_year"))
    spec = params.get("overfitting") or {}
    if base_trial_oof_predictions is None or base_trial_oof_predictions.empty:
        # expected when no learner was tuned (tuning off, or no tuned learner listed)
        tuned = _ran_trials(base_model_status)
        (logger.warning if tuned else logger.info)(
            "overfitting: no Optuna trial out-of-fold predictions (base_trial_oof_predictions "
            "is empty%s): only the learners, regime variants and ensemble methods are counted",
            f", though {tuned} trial(s) ran" if tuned
            else ": no tuned learner succeeded, or none is tuned")
    predictions = trial_accounting.configuration_predictions(
        base_trial_oof_predictions, base_oof_predictions, regime_oof_predictions,
        ensemble_oof_predictions, tuple(spec.get("exclude_models") or ("final",)))
    predictions = test_period.restrict_to_period(predictions, date_split["dev_start"],
                                                date_split["dev_end"])
    returns = _development_returns(primary_panel, date_split, config)
    config_returns = trial_accounting.configuration_returns(predictions, returns, config)
    assessment = overfitting.assess_overfitting(
        config_returns, _daily_returns_by_model(evaluation_daily_returns),
        n_blocks=int(spec.get("n_blocks", 16)),
        min_block_dates=int(spec.get("min_block_dates", 20)),
        n_pruned_trials=_pruned_trials(base_model_status))
    report = assessment.report(config.periods_per_year)
    report["configurations_by_source"] = (
        predictions.groupby("source")["configuration"].nunique().astype(int).to_dict())
    for note in assessment.notes:
        # PBO on the largest group sharing a window is the method working as designed (the
        # tuning trials and the out-of-fold models are scored on different dates): info only
        log = logger.info if note.startswith("PBO over the") else logger.warning
        log("overfitting: %s", note)
    final = report["deflated_sharpe"].get("final", {})
    logger.info("overfitting: %d configurations (%s) and %d pruned trials; final: PSR %.3f, "
                "DSR %.3f; PBO %s", assessment.n_configurations,
                report["configurations_by_source"], assessment.n_pruned_trials,
                final.get("probabilistic_sharpe", math.nan),
                final.get("deflated_sharpe", math.nan),
                f"{assessment.pbo.pbo:.3f}" if assessment.pbo else "n/a")
    table = _configurations_table(predictions, config_returns, assessment, config)
    figure = plots.pbo_logits_figure(assessment.pbo.splits if assessment.pbo else None,
                                     assessment.pbo.pbo if assessment.pbo else None)
    metrics = as_mlflow_metrics(assessment.metrics(config.periods_per_year))
    return report, table, static_plots.to_matplotlib(figure), figure, metrics


def _ran_trials(base_model_status: dict | None) -> int:
    """Optuna trials the learners' studies ran (0: no learner was tuned)."""
    return sum(int(((entry or {}).get("metrics") or {}).get("n_trials") or 0)
               for entry in (base_model_status or {}).values())


def _pruned_trials(base_model_status: dict | None) -> int:
    """Optuna trials the learners' studies pruned: tried, but stopped before their predictions
    existed, so they are configurations without returns."""
    total = 0
    for entry in (base_model_status or {}).values():
        value = ((entry or {}).get("metrics") or {}).get("n_trials_pruned")
        if value is not None and math.isfinite(float(value)):
            total += int(value)
    return total


def _configurations_table(predictions: pd.DataFrame, config_returns: pd.DataFrame,
                          assessment: overfitting.OverfittingAssessment,
                          config: test_period.EvaluationConfig) -> pd.DataFrame:
    """One row per configuration with its development Sharpe (annualised) and PBO membership."""
    table = trial_accounting.configuration_table(predictions)
    sharpe = overfitting.per_period_sharpes(config_returns) * math.sqrt(config.periods_per_year)
    table["dev_sharpe"] = table["configuration"].map(sharpe).astype(float)
    table["in_pbo"] = table["configuration"].isin(assessment.pbo_configurations)
    return table


def combinatorial_paths(
    model_input: pd.DataFrame,
    sample_weights: pd.DataFrame,
    primary_panel: pd.DataFrame,
    date_split: dict,
    cv_folds: pd.DataFrame,
    base_model_status: dict,
    cv_params: dict,
    temporal: dict,
    base_params: dict,
    params: dict,
) -> tuple[pd.DataFrame, dict]:
    """With ``cv.scheme: combinatorial``: refit every base learner that succeeded, with its chosen
    parameters, on each combinatorial purged split of the development period, and score the
    assembled out-of-sample paths (RankIC, long-short Sharpe). Only the out-of-fold dates are
    tested (the parameters were chosen by scores on the tuning folds' dates; earlier dates train
    every split). Off (empty table, no metrics) with ``walk_forward``, the default."""
    scheme = str(cv_params.get("scheme", "walk_forward"))
    if scheme not in CV_SCHEMES:
        raise ValueError(f"cv.scheme must be one of {CV_SCHEMES}, got {scheme!r}")
    columns = ["model", cpcv.PATH, *cpcv.PATH_SCORES, "n_dates"]
    if scheme == "walk_forward":
        return pd.DataFrame(columns=columns), {}
    spec = cv_params.get("combinatorial") or {}
    splitter = cpcv.CombinatorialPurgedSplit(int(spec.get("n_groups", 6)),
                                             int(spec.get("n_test_groups", 2)),
                                             TemporalConfig.from_params(temporal))
    dev = (date_split["dev_start"], date_split["dev_end"])
    inputs = training.training_inputs(
        model_input, sample_weights, dev=dev, test=(date_split["test_start"],
                                                    date_split["test_end"]),
        folds=[], features=base_params.get("features"),
        target_transform=training.TargetTransform.from_params(base_params))
    oof = folds_from_table(cv_folds, stage=OOF) if cv_folds is not None and len(cv_folds) else []
    test_from = min(f.test_dates.min() for f in oof) if oof else None
    splits = splitter.split_dates(inputs.data.dates, test_from=test_from)
    config = test_period.EvaluationConfig.from_params(params, temporal,
                                                      date_split.get("dates_per_year"))
    returns = _development_returns(primary_panel, date_split, config)
    options = params.get("cpcv") or {}
    wanted = options.get("learners")
    tables, metrics = [], {}
    for name, status in sorted((base_model_status or {}).items()):
        if (status or {}).get("status") != "ok" or (wanted and name not in wanted):
            continue
        chosen = status.get("best_params") or (base_params.get("defaults") or {}).get(name) or {}
        outcome = training.run_guarded(
            name, cpcv.learner_paths, inputs.data, splits, name, dict(chosen),
            seed=int(base_params["seed"]), n_jobs=int(base_params["n_jobs"]),
            min_names=int(base_params.get("min_names", 5)),
            max_train_rows=base_params.get("max_train_rows"))
        if interruption_in(outcome.exception) is not None:
            raise outcome.exception  # a stop, not a failed learner
        if not outcome.ok:  # one learner failing leaves the others' paths (DESIGN §5)
            logger.error("cpcv %s failed: %s\n%s", name, outcome.error, outcome.traceback)
            metrics[f"cpcv.{name}.failed"] = 1.0
            continue
        scores = cpcv.score_paths(outcome.value, returns, config).assign(model=name)
        tables.append(scores)
        quantiles = cpcv.path_quantiles(scores, list(options.get("quantiles", [0.05, 0.5, 0.95])))
        metrics.update({f"cpcv.{name}.{k}": v for k, v in quantiles.items()})
        logger.info("cpcv %s: %d splits, %d paths, RankIC %s, Sharpe %s", name,
                    len(splits.folds), splits.n_paths,
                    [round(v, 4) for v in scores["rank_ic"]],
                    [round(v, 2) for v in scores["sharpe"]])
    table = pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(
        columns=columns)
    return table, as_mlflow_metrics(metrics)
