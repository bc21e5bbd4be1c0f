"""base_models: purged walk-forward CV, Optuna-tuned base learners, out-of-fold predictions.

model_input, sample_weights, date_split, cv_folds
  -> prepare_training_inputs -> train_<learner> (one node per registered learner, each guarded)
  -> collect_base_models -> base_oof_predictions, base_test_predictions, base_models,
     base_model_status, base_fold_scores, base_feature_importance, base_optuna_trials,
     base_trial_oof_predictions, base_models_best_params, base_models_metrics
Each train_<learner> node also writes `base_<learner>_logged_model` (the refit learner logged to MLflow
with its flavour and signature; nothing for a learner that failed or is not enabled).
"""

from kedro.pipeline import Node, Pipeline

from bma_quant.core.models.learners import LEARNERS
from bma_quant.pipelines.base_models import nodes


def create_pipeline(**kwargs) -> Pipeline:
    learner_nodes = [
        Node(
            nodes.make_train_learner(name),
            ["base_models_training_inputs", "params:base_models", "params:temporal"],
            [f"base_learner_result_{name}", f"base_{name}_logged_model"],
            name=f"train_{name}",
        )
        for name in LEARNERS
    ]
    return Pipeline(
        [
            Node(
                nodes.prepare_training_inputs,
                ["model_input", "sample_weights", "date_split", "cv_folds", "params:base_models"],
                "base_models_training_inputs",
                name="prepare_training_inputs",
            ),
            *learner_nodes,
            Node(
                nodes.collect_base_models,
                [f"base_learner_result_{name}" for name in LEARNERS],
                [
                    "base_oof_predictions",
                    "base_test_predictions",
                    "base_models",
                    "base_model_status",
                    "base_fold_scores",
                    "base_feature_importance",
                    "base_optuna_trials",
                    "base_trial_oof_predictions",
                    "base_models_best_params",
                    "base_models_metrics",
                ],
                name="collect_base_models",
            ),
        ],
        tags=["base_models"],
    )
