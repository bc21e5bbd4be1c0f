"""feature_engineering: panel -> factor library -> leak audit -> lag / decay choices -> robust
selection."""

from kedro.pipeline import Node, Pipeline

from bma_quant.pipelines.feature_engineering import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.build_features,
                ["primary_panel", "market", "params:feature_engineering"],
                ["features", "factor_catalog"],
                name="build_features",
            ),
            Node(
                nodes.audit_leaks,
                [
                    "primary_panel",
                    "market",
                    "features",
                    "factor_catalog",
                    "date_split",
                    "cv_folds",
                    "params:feature_engineering",
                    "params:temporal",
                ],
                ["leak_report", "leak_audit_table"],
                name="audit_leaks",
            ),
            Node(
                nodes.select,
                [
                    "features",
                    "labels",
                    "date_split",
                    "cv_folds",
                    "factor_catalog",
                    "leak_report",
                    "params:feature_engineering",
                    "params:temporal",
                ],
                ["feature_spec", "feature_selection_report", "factor_ic_table"],
                name="select_features",
            ),
            Node(
                nodes.make_model_input,
                ["features", "labels", "feature_spec"],
                ["model_input", "model_input_stats"],
                name="make_model_input",
            ),
            Node(
                nodes.make_sample_weights,
                ["primary_panel", "date_split", "params:feature_engineering.sample_weights"],
                "sample_weights",
                name="make_sample_weights",
            ),
            Node(
                nodes.feature_metrics,
                ["feature_selection_report", "factor_ic_table", "model_input_stats", "leak_report"],
                "feature_engineering_metrics",
                name="feature_engineering_metrics",
            ),
        ],
        tags=["feature_engineering"],
    )
