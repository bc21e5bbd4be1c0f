"""inference: latest raw panel -> predictions of the fitted (or registered champion) chain for the
last available date. Run with `kedro run --pipelines inference`."""

from kedro.pipeline import Node, Pipeline

from bma_quant.pipelines.inference import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.load_latest_panel, ["params:data", "params:inference"],
                 "inference_panel", name="load_latest_panel"),
            Node(nodes.predict_latest, ["inference_panel", "params:inference"],
                 ["latest_predictions", "inference_metrics"], name="predict_latest"),
        ],
        tags=["inference"],
    )
