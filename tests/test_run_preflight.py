"""A layer run alone before anything wrote its inputs is refused up front, naming them."""

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pandas import ParquetDataset

from bma_quant.core.data.preflight import PreflightError
from bma_quant.run_hooks.data_builds import DataBuildHooks
from bma_quant.run_hooks.preflight import PreflightHooks, catalog_owners, check_inputs_exist


def _identity(frame, params):
    return frame


def test_a_layer_whose_inputs_were_never_written_is_refused(tmp_path):
    pipeline = Pipeline([Node(_identity, ["base_oof_predictions", "params:stacking"], "out"),
                         Node(_identity, ["labels", "params:x"], "out2")])
    catalog = DataCatalog({"base_oof_predictions": ParquetDataset(
        filepath=str(tmp_path / "missing.parquet")),
        "labels": ParquetDataset(filepath=str(tmp_path / "labels.parquet"))})
    owners = {"base_oof_predictions": "base_models", "labels": "data_processing"}
    with pytest.raises(PreflightError, match=r"reads 2 dataset\(s\) no earlier run wrote: "
                                             r"base_oof_predictions \(base_models\), labels "
                                             r"\(data_processing\) \(written by data_processing, "
                                             r"base_models\)\. Run the whole chain once"):
        check_inputs_exist(pipeline, catalog, owners)
    import pandas as pd
    for name in ("missing", "labels"):
        pd.DataFrame({"a": [1]}).to_parquet(tmp_path / f"{name}.parquet")
    check_inputs_exist(pipeline, catalog, owners)  # both there now: nothing to say


def test_catalog_files_name_the_layer_that_writes_each_dataset():
    from tests.support import PROJECT_ROOT

    owners = catalog_owners(PROJECT_ROOT)
    assert owners["base_oof_predictions"] == "base_models"
    assert owners["evaluation_table"] == "evaluation"


def test_inputs_handed_over_in_memory_say_where_to_start(tmp_path):
    """`--from-nodes` after the node that makes an in-memory input: never saved, so the advice
    is to start at that node, not to run the chain again."""
    pipeline = Pipeline([Node(_identity, ["training_inputs", "params:x"], "out")])
    catalog = DataCatalog({"training_inputs": MemoryDataset()})
    with pytest.raises(PreflightError, match=r"in-memory output\(s\) it needs: training_inputs "
                                             r"\(never saved\): start the run at the node"):
        check_inputs_exist(pipeline, catalog, {})


def test_a_dataset_that_cannot_tell_whether_it_exists_counts_as_present():
    from kedro.io import AbstractDataset

    class RegistryModel(AbstractDataset):  # no _exists: e.g. a model in a registry
        def _load(self):
            return 1

        def _save(self, data):
            pass

        def _describe(self):
            return {}

    pipeline = Pipeline([Node(_identity, ["model", "params:x"], "out")])
    check_inputs_exist(pipeline, DataCatalog({"model": RegistryModel()}), {})


def test_the_hook_refuses_a_section_set_to_one_value_and_names_misspelt_keys(tmp_path, caplog):
    base = tmp_path / "conf" / "base"
    base.mkdir(parents=True)
    (base / "parameters_x.yml").write_text("cv:\n  n_splits: 5\n  window: expanding\n")
    hooks = PreflightHooks()
    hooks._project_path = tmp_path
    hooks._params = {"cv": {"n_split": 3, "window": "expanding"}}
    with caplog.at_level("WARNING"):
        hooks.before_pipeline_run({"pipeline_names": ["x"]})
    assert "parameter cv.n_split is not defined" in caplog.text and "n_splits" in caplog.text
    hooks._params = {"cv": 5}
    with pytest.raises(PreflightError, match="cv must be a mapping of n_splits, window"):
        hooks.before_pipeline_run({"pipeline_names": ["x"]})
    assert (tmp_path / "data" / "08_reporting" / "run_summary.failed.json").is_file()


def test_a_layer_run_alone_checks_the_stored_panel_against_the_name_counts():
    """`--pipelines evaluation` with n_quantiles above the stored panel's names: refused on
    loading the panel, as a full run is on reading the raw file."""
    import pandas as pd

    hooks = PreflightHooks()
    hooks._params = {"evaluation": {"backtest": {"n_quantiles": 100}}}
    panel = pd.DataFrame({"date": pd.to_datetime(["2020-01-02"] * 3), "ticker": ["A", "B", "C"]})
    hooks.after_dataset_loaded("labels", panel)  # other datasets: not checked
    with pytest.raises(PreflightError, match="3 ticker.*n_quantiles needs at least 100"):
        hooks.after_dataset_loaded("primary_panel", panel)
    hooks.after_dataset_loaded("primary_panel", panel)  # once per run


def test_undeclared_in_memory_inputs_name_the_nodes_that_make_them():
    """`--from-nodes` after a node whose output is not in the catalog (an implicit in-memory
    dataset): refused, naming where to start."""
    pipeline = Pipeline([Node(_identity, ["regime_detector", "params:x"], "out")])
    with pytest.raises(PreflightError, match=r"regime_detector \(never saved\)"):
        check_inputs_exist(pipeline, DataCatalog({}), {})


def test_stored_outputs_of_another_data_file_are_not_mixed_in(tmp_path):
    """`--env smoke` outputs, then `--pipelines evaluation` with the default data: refused,
    naming both files (it failed in register_model with an IndexError)."""
    import json

    from kedro_datasets.json import JSONDataset

    report = tmp_path / "data_quality_report.json"
    report.write_text(json.dumps({"source": {"raw_path": "data/01_raw/synthetic_prices.parquet"}}))
    pipeline = Pipeline([Node(_identity, ["primary_panel", "params:x"], "out")])
    catalog = DataCatalog({"data_quality_report": JSONDataset(filepath=str(report))})
    hooks = DataBuildHooks()
    hooks._project_path = tmp_path
    hooks._params = {"data": {"raw_path": "data/01_raw/sp500_prices.csv.gz"}}
    with pytest.raises(PreflightError, match=r"built from data.raw_path = data/01_raw/synthetic_"
                                             r"prices.parquet, but data.raw_path is data/01_raw/"
                                             r"sp500_prices"):
        hooks.check(pipeline, catalog)
    hooks._params = {"data": {"raw_path": str(tmp_path / "data/01_raw/synthetic_prices.parquet")}}
    hooks.check(pipeline, catalog)  # the same file, written another way
    reads_raw = Pipeline([Node(_identity, ["labels", "params:x"], "primary_panel")])
    hooks._params = {"data": {"raw_path": "other.csv"}}
    hooks.check(reads_raw, catalog)  # makes its own panel: nothing to compare


def _stored_report(tmp_path, params):
    """A data_quality_report as data_processing writes it, for the data file in `params`."""
    import json

    from kedro_datasets.json import JSONDataset

    from bma_quant.core.data import provenance

    data = params["data"]
    report = tmp_path / "data_quality_report.json"
    report.write_text(json.dumps({
        "source": {"raw_path": data["raw_path"],
                   "raw_file": provenance.file_fingerprint(tmp_path / data["raw_path"]),
                   "index_path": data.get("index_path"),
                   "index_file": provenance.file_fingerprint(
                       tmp_path / data["index_path"] if data.get("index_path") else None)},
        "settings": provenance.panel_settings(params)}))
    return DataCatalog({"data_quality_report": JSONDataset(filepath=str(report))})


def test_stored_outputs_of_an_earlier_file_content_or_other_parameters_are_refused(tmp_path):
    """The same path with new content, or another test period / fold layout: refused up front
    (it failed late with "fold 0 has no trainable rows" or mixed two data sets)."""
    import copy

    (tmp_path / "prices.csv").write_text("date,ticker,close\n2020-01-02,A,10\n")
    (tmp_path / "index.csv").write_text("date,level\n2020-01-02,100\n")
    params = {"data": {"raw_path": "prices.csv", "index_path": "index.csv", "layout": "auto"},
              "periods": {"test_fraction": 0.2}, "cv": {"n_splits": 5, "scheme": "walk_forward"},
              "temporal": {"prediction_horizon_days": 10}, "processing": {"strict_mode": True}}
    catalog = _stored_report(tmp_path, params)
    (tmp_path / "conf/base").mkdir(parents=True)
    (tmp_path / "conf/base/catalog_data_processing.yml").write_text("cv_folds:\n  type: x\n")
    reads_folds = Pipeline([Node(_identity, ["cv_folds", "params:x"], "out")])
    hooks = DataBuildHooks()
    hooks._project_path = tmp_path
    hooks._params = copy.deepcopy(params)
    hooks.check(reads_folds, catalog)  # as stored: goes on

    hooks._params["cv"]["scheme"] = "combinatorial"  # read by evaluation only: goes on
    hooks.check(reads_folds, catalog)

    hooks._params["periods"]["test_fraction"] = 0.3
    hooks._params["cv"]["n_splits"] = 4
    with pytest.raises(PreflightError, match=r"built with other parameters \(cv.n_splits: 5 -> 4; "
                                             r"periods.test_fraction: 0.2 -> 0.3\)"):
        hooks.check(reads_folds, catalog)
    makes_panel = Pipeline([Node(_identity, ["labels", "params:x"], "data_quality_report")])
    hooks.check(makes_panel, catalog)  # writes its own report: nothing to compare

    hooks._params = copy.deepcopy(params)
    hooks._params["data"]["index_path"] = None
    with pytest.raises(PreflightError, match=r"data.index_path = index.csv, but data.index_path "
                                             r"is null: .* pass --params data.index_path=index.csv"):
        hooks.check(reads_folds, catalog)

    hooks._params = copy.deepcopy(params)
    (tmp_path / "index.csv").write_text("date,level\n2020-01-02,101\n")
    with pytest.raises(PreflightError, match=r"index.csv changed after the stored outputs"):
        hooks.check(reads_folds, catalog)
    (tmp_path / "index.csv").write_text("date,level\n2020-01-02,100\n")
    (tmp_path / "prices.csv").write_text("date,ticker,close\n2020-01-02,A,10\n2020-01-03,A,11\n")
    with pytest.raises(PreflightError, match=r"prices.csv changed after the stored outputs this "
                                             r"run reads were built from it \(then 34 bytes"):
        hooks.check(reads_folds, catalog)


def test_stored_outputs_of_a_layer_built_on_another_data_build_are_refused(tmp_path):
    """`--pipelines data_processing` with a new test period, then `--pipelines evaluation`: the
    stored base-model outputs were trained on the old split, so evaluation would score models on
    what are now their training dates. Refused, naming the layers; a run that rebuilds the data
    itself is stopped as soon as its new report exists."""
    import json

    from kedro_datasets.json import JSONDataset

    from bma_quant.core.data import provenance

    (tmp_path / "conf/base").mkdir(parents=True)
    (tmp_path / "conf/base/catalog_data_processing.yml").write_text("primary_panel: {}\n")
    (tmp_path / "conf/base/catalog_base_models.yml").write_text("base_oof_predictions: {}\n")
    settings = {"periods": {"test_fraction": 0.2}}
    old = {"source": {"raw_path": "p.csv", "raw_file": None}, "settings": settings}
    new = {"source": {"raw_path": "p.csv", "raw_file": None},
           "settings": {"periods": {"test_fraction": 0.3}}}
    report = tmp_path / "data_quality_report.json"
    catalog = DataCatalog({"data_quality_report": JSONDataset(filepath=str(report))})
    evaluation = Pipeline([Node(_identity, ["base_oof_predictions", "params:x"], "out",
                                namespace="evaluation")])
    hooks = DataBuildHooks()
    hooks._project_path = tmp_path
    hooks._params = {"periods": {"test_fraction": 0.3}}
    report.write_text(json.dumps(new))
    hooks.check(evaluation, catalog)  # nothing recorded yet (outputs from before): goes on
    builds = tmp_path / "data/08_reporting/data_builds.json"
    builds.parent.mkdir(parents=True)
    builds.write_text(json.dumps({"base_models": provenance.build_id(old),
                                  "data_processing": provenance.build_id(new)}))
    with pytest.raises(PreflightError, match=r"stored outputs of base_models that this run reads "
                                             r"were built on other data_processing outputs"):
        hooks.check(evaluation, catalog)
    builds.write_text(json.dumps({"base_models": provenance.build_id(new)}))
    hooks.check(evaluation, catalog)
    hooks.after_pipeline_run()  # records evaluation's build next to the others
    assert json.loads(builds.read_text()) == {"base_models": provenance.build_id(new),
                                              "evaluation": provenance.build_id(new)}

    rebuilds = Pipeline([Node(_identity, ["labels", "params:x"], "data_quality_report",
                              namespace="data_processing"), *evaluation.nodes])
    hooks.check(rebuilds, catalog)  # the new build is not known before the report is made
    with pytest.raises(PreflightError, match="stored outputs of base_models"):
        hooks.after_node_run({"data_quality_report": old})
