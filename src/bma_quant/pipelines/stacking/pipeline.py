"""stacking: out-of-fold base and regime predictions -> ensembles, nested OOS choice, `final`."""

from kedro.pipeline import Node, Pipeline

from bma_quant.pipelines.stacking import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.prepare_ensemble_inputs,
                ["base_oof_predictions", "base_test_predictions", "regime_oof_predictions",
                 "regime_test_predictions", "base_model_status", "labels", "cv_folds",
                 "date_split", "params:stacking"],
                ["stacking_design", "stacking_test_inputs", "stacking_model_info"],
                name="prepare_ensemble_inputs",
            ),
            Node(
                nodes.select_ensemble,
                ["stacking_design", "fold_regimes", "cv_folds", "date_split",
                 "stacking_model_info", "params:stacking", "params:temporal"],
                ["ensemble_oof_predictions", "stacking_selection"],
                name="select_ensemble",
            ),
            Node(
                nodes.fit_ensembles,
                ["stacking_design", "stacking_test_inputs", "regimes", "date_split",
                 "stacking_model_info", "stacking_selection", "params:stacking",
                 "params:temporal"],
                ["ensemble_test_predictions", "ensemble_weights", "ensemble",
                 "ensemble_meta_learner", "stacking_fit_info"],
                name="fit_ensembles",
            ),
            Node(
                nodes.report_stacking,
                ["stacking_model_info", "stacking_selection", "stacking_fit_info",
                 "ensemble_weights"],
                ["ensemble_report", "stacking_metrics"],
                name="report_stacking",
            ),
        ],
        tags=["stacking"],
    )
