"""synthetic_data: the node and the pipeline produce the four raw datasets from params:synthetic."""

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.pipelines.synthetic_data import create_pipeline
from bma_quant.pipelines.synthetic_data.nodes import generate_synthetic_panel

PARAMETERS_FILE = Path(__file__).parents[3] / "conf" / "base" / "parameters_synthetic_data.yml"
OUTPUTS = [
    "synthetic_prices",
    "synthetic_index",
    "synthetic_regimes",
    "synthetic_expected_returns",
]


def _small_params() -> dict:
    params = yaml.safe_load(PARAMETERS_FILE.read_text())["synthetic"]
    return {**params, "n_tickers": 8, "n_days": 120, "seed": 3}


def test_parameters_file_sets_every_generator_argument():
    generator_arguments = set(inspect.signature(generate_synthetic_market).parameters)
    assert set(yaml.safe_load(PARAMETERS_FILE.read_text())["synthetic"]) == generator_arguments


def test_node_returns_panel_index_regimes_and_expected_returns():
    prices, index, regimes, expected = generate_synthetic_panel(_small_params())

    assert len(prices) == 8 * 120
    bars = {"date", "ticker", "open", "high", "low", "close", "volume", "sector", "signal_1"}
    assert bars <= set(prices.columns)
    assert list(index.columns) == ["date", "level"] and len(index) == 120
    assert list(regimes.columns) == ["date", "regime"] and len(regimes) == 120
    assert list(expected.columns) == ["date", "ticker", "expected_return"]
    assert (index["date"].to_numpy() == prices["date"].unique()).all()
    # A thin wrapper: the same parameters give the same data as the core generator.
    pd.testing.assert_frame_equal(prices, generate_synthetic_market(**_small_params()).panel)


def test_pipeline_runs_on_a_memory_catalog():
    catalog = DataCatalog({"params:synthetic": MemoryDataset(_small_params())})
    SequentialRunner().run(create_pipeline(), catalog)

    prices = catalog.load("synthetic_prices")
    assert len(prices) == 8 * 120
    assert np.isfinite(prices["close"]).all() and (prices["close"] > 0).all()
    for name in OUTPUTS:
        assert not catalog.load(name).empty, name
