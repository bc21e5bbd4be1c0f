"""synthetic_data: params:synthetic -> synthetic prices, index, regimes and expected returns.

Not part of `__default__`: run it with `kedro run --pipelines synthetic_data`, then point the main
job at its outputs with `--params "data.raw_path=data/01_raw/synthetic_prices.parquet,
data.index_path=data/01_raw/synthetic_index.parquet,data.true_regimes_path=data/01_raw/synthetic_regimes.parquet"`
(the last one only lets regime_models log its detector's agreement with the true regimes).
"""

from kedro.pipeline import Node, Pipeline

from bma_quant.pipelines.synthetic_data import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.generate_synthetic_panel,
                "params:synthetic",
                [
                    "synthetic_prices",
                    "synthetic_index",
                    "synthetic_regimes",
                    "synthetic_expected_returns",
                ],
                name="generate_synthetic_panel",
            ),
        ],
        tags=["synthetic_data"],
    )
