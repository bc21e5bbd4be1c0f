"""regime_models: causal regimes (rules or Markov switching + fear-greed) and regime-aware models."""

from kedro.pipeline import Node, Pipeline

from bma_quant.pipelines.regime_models import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.build_detector_inputs,
                 ["primary_panel", "market", "params:feature_engineering.fear_greed",
                  "params:regime_models"],
                 "regime_detector_inputs", name="build_detector_inputs"),
            Node(nodes.detect_regimes,
                 ["regime_detector_inputs", "date_split", "params:regime_models"],
                 ["regimes", "regime_detector", "regime_detection_summary"],
                 name="detect_regimes"),
            Node(nodes.train_regime_models,
                 ["model_input", "sample_weights", "cv_folds", "date_split",
                  "regime_detector_inputs", "regimes", "regime_detector", "base_model_status",
                  "base_oof_predictions",
                  "params:regime_models", "params:feature_engineering.fear_greed",
                  "params:base_models"],
                 ["regime_oof_predictions", "regime_test_predictions", "regime_model",
                  "regime_training_summary", "fold_regimes"],
                 name="train_regime_models"),
            Node(nodes.log_regime_model,
                 ["regime_model", "model_input", "regimes", "params:regime_models"],
                 "regime_logged_model", name="log_regime_model"),
            Node(nodes.regime_timeline,
                 ["regimes", "market", "date_split", "regime_detection_summary"],
                 ["regime_timeline", "regime_timeline_png"],
                 name="regime_timeline"),
            Node(nodes.detector_agreement, ["regimes", "true_regimes", "date_split"],
                 "regime_agreement_metrics", name="detector_agreement"),
            Node(nodes.regime_report,
                 ["regime_detection_summary", "regime_training_summary"],
                 ["regime_models_report", "regime_models_metrics"], name="regime_report"),
        ],
        tags=["regime_models"],
    )
