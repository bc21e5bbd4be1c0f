"""inference: trained chain (or registered model) + the panel it was trained on -> scores, ranks,
quantiles and target portfolio weights for the last available date.
Run with `kedro run --pipelines inference`."""

from kedro.pipeline import Node, Pipeline

from bma_quant.pipelines.inference import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.load_model, "params:inference", "inference_model", name="load_model"),
            Node(nodes.describe_served, ["inference_model", "params:inference"],
                 "inference_served", name="describe_served"),
            Node(nodes.load_latest_panel, ["inference_model", "params:inference"],
                 "inference_panel", name="load_latest_panel"),
            Node(nodes.predict_latest, ["inference_panel", "inference_model", "params:inference"],
                 ["latest_predictions", "inference_metrics"], name="predict_latest"),
        ],
        tags=["inference"],
    )
