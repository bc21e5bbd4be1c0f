"""A layer run alone before anything wrote its inputs is refused up front, naming them."""

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pandas import ParquetDataset

from bma_quant.core.data.preflight import PreflightError
from bma_quant.run_hooks.preflight import PreflightHooks, check_inputs_exist


def _identity(frame, params):
    return frame


def test_a_layer_whose_inputs_were_never_written_is_refused(tmp_path):
    pipeline = Pipeline([Node(_identity, ["base_oof_predictions", "params:stacking"], "out"),
                         Node(_identity, ["labels", "params:x"], "out2")])
    catalog = DataCatalog({"base_oof_predictions": ParquetDataset(
        filepath=str(tmp_path / "missing.parquet")), "labels": MemoryDataset()})
    owners = {"base_oof_predictions": "base_models", "labels": "data_processing"}
    with pytest.raises(PreflightError, match=r"reads 2 dataset\(s\) no earlier run wrote: "
                                             r"base_oof_predictions \(base_models\), labels "
                                             r"\(data_processing\) \(written by data_processing, "
                                             r"base_models\)\. Run the whole chain once"):
        check_inputs_exist(pipeline, catalog, owners)
    catalog["labels"] = MemoryDataset([1])
    import pandas as pd
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "missing.parquet")
    check_inputs_exist(pipeline, catalog, owners)  # both there now: nothing to say


def test_catalog_files_name_the_layer_that_writes_each_dataset():
    from tests.support import PROJECT_ROOT

    hooks = PreflightHooks()
    hooks._project_path = PROJECT_ROOT
    owners = hooks._catalog_owners()
    assert owners["base_oof_predictions"] == "base_models"
    assert owners["evaluation_table"] == "evaluation"
