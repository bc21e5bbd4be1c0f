"""data_processing: raw file -> validated, aligned, repaired panel, labels, market, split, folds."""

from kedro.pipeline import Node, Pipeline

from bma_quant.pipelines.data_processing import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.load_raw_data, ["params:data", "params:temporal"],
                 ["raw_panel", "market_index"], name="load_raw_data"),
            Node(nodes.load_true_regimes, "params:data", "true_regimes",
                 name="load_true_regimes"),
            Node(nodes.align_and_clean, ["raw_panel", "params:processing", "params:periods",
                                         "params:evaluation.backtest.periods_per_year"],
                 ["clean_panel", "cleaning_log"], name="align_and_clean"),
            Node(nodes.make_date_split, ["clean_panel", "params:temporal", "params:periods"],
                 ["date_split", "date_split_params"], name="make_date_split"),
            Node(nodes.finalise_panel, ["clean_panel", "date_split", "params:processing"],
                 ["primary_panel", "finalise_log"], name="finalise_panel"),
            Node(nodes.make_labels, ["primary_panel", "params:temporal", "clean_panel"],
                 "labels", name="make_labels"),
            Node(nodes.make_market, ["primary_panel", "market_index", "params:processing"],
                 "market",
                 name="make_market"),
            Node(nodes.make_cv_folds,
                 ["date_split", "primary_panel", "params:temporal", "params:cv"],
                 ["cv_folds", "cv_layout"], name="make_cv_folds"),
            Node(nodes.data_quality_report,
                 ["cleaning_log", "finalise_log", "date_split", "primary_panel", "market",
                  "cv_layout", "params:data", "params:temporal", "params:processing",
                  "params:periods", "params:cv"],
                 ["data_quality_report", "data_processing_metrics"], name="data_quality_report"),
        ],
        tags=["data_processing"],
    )
