"""Benchmark of the evaluation pipeline on a 500 x 2520 synthetic panel.

Upstream: the synthetic market -> data_processing (in memory); the fitted upstream objects are the
light stand-ins of tests/serving/fakes.py (a momentum + planted-signal feature spec, two linear
base models, a regime-scaled model, a z-score-mean ensemble), so only evaluation is timed: the
comparison table (5 models x 4 scopes, backtest, IC decay over 1..10), gates, metrics, plots,
the chain build and the chain's reproduction of the final test predictions from the raw file,
and (separately) logging + registering the pyfunc model in a throwaway SQLite MLflow store.
Rewrites only the `evaluation` section of benchmarks/results.md.

Run: .venv/bin/python benchmarks/bench_evaluation.py
(BENCH_SIZE=small: 60 x 600 days, prints the section without writing results.md)
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from _common import N_DAYS, N_TICKERS, ROOT, NodeTimer, machine_line, publish

from bma_quant.pipelines.evaluation import nodes, registry_nodes
from tests.serving.upstream import build_upstream
from tests.support import deep_update, project_params

SEED = 0
SECTION = "evaluation"


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_evaluation_"))
    started = time.perf_counter()
    data, overrides = build_upstream(tmp, n_tickers=N_TICKERS, n_days=N_DAYS, seed=SEED,
                                     signal_strength=0.03)
    overrides["temporal"]["max_lookback_days"] = 252
    upstream_seconds = time.perf_counter() - started
    params = deep_update(project_params(), overrides)
    ev, temporal, registry = params["evaluation"], params["temporal"], params["registry"]
    timed = NodeTimer()

    preds = timed("collect_test_predictions", nodes.collect_test_predictions,
                  data["base_test_predictions"], data["regime_test_predictions"],
                  data["ensemble_test_predictions"])
    table, daily_ic, daily_returns, quantiles, _ = timed(
        "evaluate_test_period", nodes.evaluate_test_period, preds, data["labels"],
        data["primary_panel"], data["regimes"], data["date_split"], ev, temporal)
    overfitting = timed("assess_overfitting", nodes.assess_overfitting,
                        data["base_trial_oof_predictions"], data["base_oof_predictions"],
                        data["regime_oof_predictions"], data["ensemble_oof_predictions"],
                        data["primary_panel"], data["date_split"], daily_returns,
                        data["base_model_status"], ev, temporal)[0]
    report = timed("apply_gates", nodes.apply_gates, table, overfitting,
                   data["base_model_status"], data["date_split"], ev)
    timed("evaluation_metrics", nodes.evaluation_metrics, table, report, ev, temporal,
          data["date_split"])
    timed("make_plots", nodes.make_plots, table, daily_ic, daily_returns, quantiles,
          data["base_feature_importance"], ev)
    development = timed("development_score", registry_nodes.development_score, data["ensemble_report"],
                        data["base_model_status"], data["regime_models_report"],
                        data["cv_folds"], data["feature_selection_report"],
                        data["date_split"], ev, temporal)
    chain = timed("build_prediction_chain", registry_nodes.build_prediction_chain,
                  data["feature_spec"], data["base_models"], data["regime_model"],
                  data["ensemble"], data["primary_panel"], data["regimes"],
                  data["data_quality_report"], params["data"], params["processing"], temporal,
                  registry)
    registration = timed("register_model (reproduction check, no MLflow run)",
                         registry_nodes.register_model, chain, report, data["ensemble_test_predictions"],
                         development, data["date_split"], params["data"], registry)

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    # artifacts beside the throw-away store: the default root is ./mlruns of the project
    mlflow.create_experiment("bench_evaluation", artifact_location=(tmp / "artifacts").as_uri())
    mlflow.set_experiment("bench_evaluation")

    def register_with_run():
        with mlflow.start_run():
            return registry_nodes.register_model(chain, report, data["ensemble_test_predictions"],
                                        development, data["date_split"], params["data"],
                                        {**registry, "code_path": str(ROOT / "src" / "bma_quant")})

    registered = timed("register_model (with MLflow run: log + register)", register_with_run)
    split = data["date_split"]
    final = table.query("model == 'final' and scope == 'all'").iloc[0]
    lines = [
        f"## evaluation ({N_TICKERS} tickers x {N_DAYS} days, synthetic)",
        "",
        f"{machine_line('at the end')}.",
        f"Inputs: {preds['model'].nunique()} models, {len(preds):,} test prediction rows "
        f"({split['test_start']}..{split['test_end']}), comparison table of {len(table)} rows "
        f"(model x scope); upstream (synthetic market + data_processing + stand-in upstream "
        f"models) took {upstream_seconds:.1f} s.",
        "",
        *timed.table(total_label="**total without the MLflow registration**",
                     left_out_of_total="with MLflow"),
        "",
        f"final: test RankIC {final['rank_ic']:.4f}, Sharpe {final['sharpe']:.2f}, "
        f"max drawdown {final['max_drawdown']:.1%}; gates: **{report['verdict']}**; chain "
        f"reproduction max |diff| {registration['reproduction']['max_abs_diff']:.2e} over "
        f"{registration['reproduction']['rows_matched']:,} rows; registered version "
        f"{registered.get('version')} as {registered.get('alias')}.",
    ]
    publish(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
