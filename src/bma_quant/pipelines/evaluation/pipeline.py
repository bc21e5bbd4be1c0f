"""evaluation: test-period comparison table, how much of it is luck (deflated Sharpe, PBO,
optional CPCV paths), gates, plots, and the registered pyfunc chain."""

from kedro.pipeline import Node, Pipeline

from bma_quant.pipelines.evaluation import nodes, registry_nodes

PLOTS = ("cumulative_ic", "equity_curve", "quantile_returns", "ic_by_regime",
         "feature_importance")


def create_pipeline(**kwargs) -> Pipeline:
    plot_outputs = [name for plot in PLOTS
                    for name in (f"evaluation_plot_{plot}_png", f"evaluation_plot_{plot}")]
    return Pipeline(
        [
            Node(nodes.collect_test_predictions,
                 ["base_test_predictions", "regime_test_predictions", "ensemble_test_predictions"],
                 "evaluation_test_predictions", name="collect_test_predictions"),
            Node(nodes.evaluate_test_period,
                 ["evaluation_test_predictions", "labels", "primary_panel", "regimes",
                  "date_split", "params:evaluation", "params:temporal"],
                 ["evaluation_table", "evaluation_daily_ic", "evaluation_daily_returns",
                  "evaluation_quantile_returns", "evaluation_ic_decay"],
                 name="evaluate_test_period"),
            Node(nodes.assess_overfitting,
                 ["base_trial_oof_predictions", "base_oof_predictions", "regime_oof_predictions",
                  "ensemble_oof_predictions", "primary_panel", "date_split",
                  "evaluation_daily_returns", "base_model_status", "params:evaluation",
                  "params:temporal"],
                 ["overfitting_report", "evaluation_configurations",
                  "evaluation_plot_pbo_logits_png", "evaluation_plot_pbo_logits",
                  "evaluation_overfitting_metrics"],
                 name="assess_overfitting"),
            Node(nodes.combinatorial_paths,
                 ["model_input", "sample_weights", "primary_panel", "date_split", "cv_folds",
                  "base_model_status", "params:cv", "params:temporal", "params:base_models",
                  "params:evaluation"],
                 ["evaluation_cpcv_paths", "evaluation_cpcv_metrics"],
                 name="combinatorial_paths"),
            Node(nodes.apply_gates,
                 ["evaluation_table", "overfitting_report", "base_model_status", "date_split",
                  "params:evaluation", "params:temporal"],
                 "gate_report", name="apply_gates"),
            Node(nodes.evaluation_metrics,
                 ["evaluation_table", "gate_report", "params:evaluation", "params:temporal",
                  "date_split"], "evaluation_metrics",
                 name="evaluation_metrics"),
            Node(nodes.make_plots,
                 ["evaluation_table", "evaluation_daily_ic", "evaluation_daily_returns",
                  "evaluation_quantile_returns", "base_feature_importance", "params:evaluation"],
                 plot_outputs, name="make_plots"),
            Node(registry_nodes.build_prediction_chain,
                 ["feature_spec", "base_models", "regime_model", "ensemble", "primary_panel",
                  "regimes", "data_quality_report", "params:data", "params:processing",
                  "params:temporal", "params:registry", "params:base_models",
                  "params:evaluation", "date_split"],
                 "prediction_chain", name="build_prediction_chain"),
            Node(registry_nodes.development_score,
                 ["ensemble_report", "base_model_status", "regime_models_report", "cv_folds",
                  "feature_selection_report", "date_split", "params:evaluation",
                  "params:temporal"],
                 "development_score", name="development_score"),
            Node(registry_nodes.register_model,
                 ["prediction_chain", "gate_report", "ensemble_test_predictions",
                  "development_score", "date_split", "params:data", "params:registry"],
                 "model_registration", name="register_model"),
            Node(registry_nodes.reproduction_metrics, "model_registration", "registry_metrics",
                 name="reproduction_metrics"),
        ],
        tags=["evaluation"],
    )
