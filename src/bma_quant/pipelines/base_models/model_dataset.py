"""MLflow logging of one refit learner, with its flavour and a signature, from the catalog.

kedro-mlflow's `MlflowModelTrackingDataset` logs whatever the node returns with static
`save_args`, which cannot hold a signature computed from the data, and it cannot skip a learner
that failed (Kedro refuses to save None). `LearnerModelDataset` extends it: the node returns a
`LoggedLearner` (the fitted estimator, or None if the learner failed, plus a few input rows);
the signature is inferred from those rows and the estimator's predictions, and a failed learner
is skipped with a log line, so one failure never stops the others from being logged.

Choice of flavour (conf/base/catalog_base_models.yml): `mlflow.sklearn` for the ElasticNet
pipeline and alpha_composite, `mlflow.xgboost` / `mlflow.lightgbm` for the scikit-learn wrappers
(both load back as an `XGBRegressor` / `LGBMRegressor`). The scikit-learn and LightGBM entries use
`serialization_format: cloudpickle`: MLflow 3.17's default, skops, refuses the custom
`AlphaComposite` and numpy dtypes; loading them back needs MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true
(MLflow's gate on every pickled model) and, for those two, `bma_quant` importable (the
ElasticNet pipeline's `MedianImputer`, `AlphaComposite`; the registered chain ships the package
as code). XGBoost models are stored in XGBoost's own format. A learner
added later without a catalog entry falls back to the `base_{learner}_logged_model` pattern
(mlflow.sklearn, which pickles any scikit-learn-API estimator). The pip requirements are given per
flavour (`serving.requirements.learner_pip_requirements`) instead of inferred by MLflow, which
loads each model in a subprocess (3-4 s per learner).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd
from kedro_mlflow.io.models import MlflowModelTrackingDataset

from bma_quant.serving.requirements import learner_pip_requirements

logger = logging.getLogger(__name__)


@dataclass
class LoggedLearner:
    """What a learner node hands to the catalog for MLflow: model None = nothing to log."""

    name: str
    model: Any | None
    input_example: pd.DataFrame | None = None
    skipped: bool = False  # not listed in base_models.learners: nothing to log, nothing to say


class LearnerModelDataset(MlflowModelTrackingDataset):
    """MlflowModelTrackingDataset that infers a signature and skips failed learners."""

    def _save(self, learner: LoggedLearner) -> None:
        if not isinstance(learner, LoggedLearner):  # a bare model: plain kedro-mlflow behaviour
            super()._save(learner)
            return
        if learner.model is None and learner.skipped:
            return
        if learner.model is None:
            logger.warning("base_models: %s did not succeed; no model logged", learner.name)
            return
        self._save_args.setdefault("pip_requirements", learner_pip_requirements(self._flavor))
        if self._logging_activated and learner.input_example is not None:
            from mlflow.models import infer_signature

            example = learner.input_example
            self._save_args["signature"] = infer_signature(
                example, pd.Series(learner.model.predict(example), name="prediction")
            )
        super()._save(learner.model)
