"""Whether a run's out-of-fold scores are honest, said by every run that scores out of fold.

Feature selection with `selection.ic_scope` fold_train or dev scores factors on dates of the CV
test windows: every out-of-fold score after it (base, regime, ensemble, the development score) is
optimistic. The feature_engineering node says so and tags its run `oof_scores_honest`; a later
layer run alone (`kedro run --pipelines base_models`) reads the stored features in its own MLflow
run, which this hook tags and warns about from the stored selection report.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from bma_quant.core.evaluation.promotion import OOF_HONEST
from bma_quant.core.features.selection import selection_left_cv_unread
from bma_quant.run_hooks.data_builds import _layer

logger = logging.getLogger(__name__)

SELECTION_REPORT = "feature_selection_report"
# layers whose metrics include out-of-fold scores of the selected features
SCORING_LAYERS = frozenset({"base_models", "regime_models", "stacking", "evaluation"})


def stored_selection_honesty(report: dict[str, Any] | None) -> bool | None:
    """True / False: the stored selection left the CV test windows unread / read them (as the
    registry's champion comparison reads it); None: no report."""
    if not isinstance(report, dict):
        return None
    return selection_left_cv_unread(report)


class OofHonestyHooks:
    def __init__(self) -> None:
        self._honest: bool | None = None

    @hook_impl
    def before_pipeline_run(self, pipeline=None, catalog=None) -> None:
        self._honest = None
        if pipeline is None or catalog is None:
            return
        if SELECTION_REPORT in pipeline.all_outputs():
            return  # the selection runs here: its node tags and warns
        if not {_layer(node) for node in pipeline.nodes} & SCORING_LAYERS:
            return
        try:
            report = catalog.load(SELECTION_REPORT) if catalog.exists(SELECTION_REPORT) else None
        except Exception as exc:  # an unreadable report: the layers that read it say so
            logger.debug("could not read %s: %s", SELECTION_REPORT, exc)
            return
        self._honest = stored_selection_honesty(report)
        if self._honest is False:
            logger.warning("the stored features' selection scored dates of the CV test windows "
                           "(%s): this run's out-of-fold scores are optimistic, and it cannot "
                           "become the registry's champion (selection.ic_scope pre_cv keeps them "
                           "honest)", report.get("ic_scope"))

    @hook_impl
    def before_node_run(self) -> None:
        if self._honest is None:
            return
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.set_tag(OOF_HONEST, "true" if self._honest else "false")
            self._honest = None  # once per run
