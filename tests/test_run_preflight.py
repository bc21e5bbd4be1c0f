"""A layer run alone before anything wrote its inputs is refused up front, naming them."""

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pandas import ParquetDataset

from bma_quant.core.data.preflight import PreflightError
from bma_quant.run_hooks.preflight import (
    PreflightHooks,
    catalog_owners,
    check_data_files,
    check_inference_data_params,
    check_inputs_exist,
    check_runner,
)


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
                                             r"base_models\)\. Run data_processing, "
                                             r"feature_engineering, base_models first \(`kedro "
                                             r"run --pipelines data_processing,feature_engineering,"
                                             r"base_models`\) or the whole chain once"):
        check_inputs_exist(pipeline, catalog, owners)
    import pandas as pd
    for name in ("missing", "labels"):
        pd.DataFrame({"a": [1]}).to_parquet(tmp_path / f"{name}.parquet")
    check_inputs_exist(pipeline, catalog, owners)  # both there now: nothing to say


def test_a_data_file_that_is_not_there_is_refused_naming_its_parameter(tmp_path, monkeypatch):
    """Before an MLflow run starts: the parameter, the path and where relative paths start; a
    folder (a partitioned export) is said to be one. Layers that read no file are not held."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prices.csv").write_text("date,ticker,close\n")
    (tmp_path / "parts").mkdir()
    reads = Pipeline([Node(_identity, ["params:data", "params:temporal"], ["raw", "index"],
                           name="data_processing.load_raw_data")])
    check_data_files(reads, {"data": {"raw_path": "prices.csv", "index_path": None}})
    with pytest.raises(PreflightError, match=r"data\.raw_path = nope\.parquet is not there "
                                             r"\(relative paths start at .*\); data\.index_path = "
                                             r"parts is a folder"):
        check_data_files(reads, {"data": {"raw_path": "nope.parquet", "index_path": "parts"}})
    with pytest.raises(PreflightError, match=r'--params "data\.index_path=\.\.\."'):
        check_data_files(reads, {"data": {"raw_path": "prices.csv", "index_path": "nope.csv"}})
    scores = Pipeline([Node(_identity, ["model", "params:inference"], "panel",
                            name="inference.load_latest_panel")])
    check_data_files(scores, {"inference": {"data": {"raw_path": None}}})  # the chain's data
    with pytest.raises(PreflightError, match=r"inference\.data\.raw_path = parts is a folder"):
        check_data_files(scores, {"inference": {"data": {"raw_path": "parts"}}})
    other = Pipeline([Node(_identity, ["labels", "params:x"], "out", name="stacking.x")])
    check_data_files(other, {"data": {"raw_path": "nope.parquet"}})


def test_a_data_file_given_to_an_inference_run_as_data_star_is_refused_with_its_key(
        tmp_path, monkeypatch):
    """`kedro run --pipelines inference --params data.raw_path=today.csv` scored the chain's
    training file without a word: refused, naming inference.data.raw_path. The chain's own file
    (the same --params given to every layer) passes."""
    monkeypatch.chdir(tmp_path)
    chain = {"raw_path": "data/prices.csv", "layout": "auto"}  # what the chain reads
    with pytest.raises(PreflightError, match=r'--params data\.raw_path, data\.layout: inference '
                       r'does not read data\.\*.*trained on \(data/prices\.csv\).*To score '
                       r'today\.csv: --params "inference\.data\.raw_path=today\.csv,inference\.'
                       r'data\.layout=wide"'):
        check_inference_data_params({"data": {"raw_path": "today.csv", "layout": "wide"}}, chain)
    check_inference_data_params({}, chain)
    check_inference_data_params({"inference": {"data": {"raw_path": "today.csv"}}}, chain)
    check_inference_data_params({"data": {"min_history_days": 5}}, chain)  # not a read key
    check_inference_data_params({"data": {"raw_path": "./data/../data/prices.csv"}}, chain)
    check_inference_data_params({"data": {"raw_path": str(tmp_path / "data/prices.csv")}},
                                chain)
    # the same --params for every layer, and inference.data naming the file to score: passes
    # (it was compared with inference.data's file, and the advice undid the user's choice)
    check_inference_data_params({"data": {"raw_path": "data/prices.csv"}}, chain,
                                {"raw_path": "today.csv"})
    check_inference_data_params({"data": {"raw_path": "other.csv"}}, chain,
                                {"raw_path": "today.csv"})  # inference.data said what to read
    check_inference_data_params({"data": {"raw_path": "today.csv"}}, {})  # an old chain


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
    with pytest.raises(PreflightError, match=r"cv.n_split \(did you mean n_splits\?\)"):
        hooks.before_pipeline_run({"pipeline_names": ["x"]})
    # every problem of the settings in one message: a misspelt key beside a wrong kind
    hooks._params = {"cv": {"n_split": 3, "n_splits": "ten", "window": "expanding"}}
    with pytest.raises(PreflightError, match=r"(?s)Invalid parameter.*n_splits.*\n"
                                             r"Unknown parameter.*cv.n_split "):
        hooks.before_pipeline_run({"pipeline_names": ["x"]})
    # a value of the wrong kind is named once (its range check said "a number" beside "a whole
    # number"); a bool for a count is refused as a PreflightError too
    for value, said in (("abc", "'abc'"), (True, "True")):
        hooks._params = {"cv": {"n_splits": value, "window": "expanding"}}
        with pytest.raises(PreflightError) as refused:
            hooks.before_pipeline_run({"pipeline_names": ["x"]})
        assert str(refused.value).count("cv.n_splits must be") == 1, str(refused.value)
        assert f"cv.n_splits must be a whole number, got {said}" in str(refused.value)
    hooks._params = {"cv": 5}
    with pytest.raises(PreflightError, match="cv must be a mapping of n_splits, window"):
        hooks.before_pipeline_run({"pipeline_names": ["x"]})
    assert (tmp_path / "data" / "08_reporting" / "run_summary.failed.json").is_file()


def test_a_misspelt_key_that_picks_the_data_or_typed_on_the_command_line_is_refused(tmp_path,
                                                                                    caplog):
    """data.raw_pth trained on the default file, overwriting outputs, after one warning line: a
    key that decides which file is read, or one the user typed with --params, is refused."""
    base = tmp_path / "conf" / "base"
    base.mkdir(parents=True)
    (base / "parameters_x.yml").write_text(
        "data:\n  raw_path: a.csv\ncv:\n  n_splits: 5\ninference:\n  data: {}\n")
    hooks = PreflightHooks()
    hooks._project_path = tmp_path
    for params, typed, refused in (
            ({"data": {"raw_path": "a.csv", "raw_pth": "mine.csv"}}, {}, "data.raw_pth"),
            ({"inference": {"data": {"raw_pth": "x.csv"}}}, {}, "inference.data.raw_pth"),
            ({"cv": {"n_splits": 5, "n_split": 3}}, {"cv": {"n_split": 3}}, "cv.n_split")):
        hooks._params, hooks._typed = params, typed
        with pytest.raises(PreflightError, match=rf"Unknown parameter\(s\).*{refused} \(did "
                                                 r"you mean (raw_path|n_splits)"):
            hooks.before_pipeline_run({"pipeline_names": ["x"]})
    # set in conf/local (not typed): refused as well (it was only warned about, and the run
    # went on with the default and overwrote the outputs)
    hooks._params, hooks._typed = {"cv": {"n_splits": 5, "n_split": 3}}, {}
    with pytest.raises(PreflightError, match=r"Unknown parameter\(s\).*cv.n_split \(did you "
                                             r"mean n_splits\?\)"):
        hooks.before_pipeline_run({"pipeline_names": ["x"]})
    hooks._params = {"cv": {"n_splits": 5, "_n": 3}}  # a helper key for interpolation
    hooks.before_pipeline_run({"pipeline_names": ["x"]})
    hooks._params = {"inference": {"data": {"raw_path": "b.csv", "decimal": ","}}}
    hooks.before_pipeline_run({"pipeline_names": ["x"]})  # read options are known keys
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "conf" / "local" / "catalog.yml").write_text(
        "x:\n  filepath: ${runtime_params:bucket, data}/${runtime_params:store.root}/x.csv\n")
    for typed in ({"bucket": "s3"}, {"store": {"root": "b"}}):  # read by Kedro's resolver
        hooks._params = hooks._typed = typed
        hooks.before_pipeline_run({"pipeline_names": ["x"]})  # not refused
    hooks._params = hooks._typed = {"store": {"rot": "b"}}  # beside the key read: a typo
    with pytest.raises(PreflightError, match=r"Unknown parameter\(s\).*store"):
        hooks.before_pipeline_run({"pipeline_names": ["x"]})
    hooks._params = hooks._typed = {"inference": {"data": {"_root": "/mnt"}}}  # a helper key
    hooks.before_pipeline_run({"pipeline_names": ["x"]})


def test_a_layer_run_alone_checks_the_stored_panel_against_the_name_counts():
    """`--pipelines evaluation` with n_quantiles above the stored panel's names: refused on
    loading the panel, as a full run is on reading the raw file."""
    import pandas as pd

    hooks = PreflightHooks()
    hooks._params = {"evaluation": {"backtest": {"n_quantiles": 100}}}
    panel = pd.DataFrame({"date": pd.to_datetime(["2020-01-02"] * 3), "ticker": ["A", "B", "C"]})
    hooks.after_dataset_loaded("labels", panel)  # other datasets: not checked
    with pytest.raises(PreflightError, match=r"3 ticker.*1 parameter\(s\) need more names per date: "
                                             r"evaluation.backtest.n_quantiles \(100\)"):
        hooks.after_dataset_loaded("primary_panel", panel)
    hooks.after_dataset_loaded("primary_panel", panel)  # once per run


def test_undeclared_in_memory_inputs_name_the_nodes_that_make_them():
    """`--from-nodes` after a node whose output is not in the catalog (an implicit in-memory
    dataset): refused, naming where to start."""
    pipeline = Pipeline([Node(_identity, ["regime_detector", "params:x"], "out")])
    with pytest.raises(PreflightError, match=r"regime_detector \(never saved\)"):
        check_inputs_exist(pipeline, DataCatalog({}), {})


def test_parallel_runner_is_refused_in_one_sentence():
    """Kedro's own refusal is a traceback listing every unpicklable dataset; the project says
    why in one error (and its node hooks would not run in the workers anyway)."""

    class Unpicklable(DataCatalog):
        def validate_catalog(self):
            raise AttributeError("The following datasets cannot be used with multiprocessing: "
                                 "['evaluation_table', 'ensemble_report', 'base_fold_scores', "
                                 "'gate_report']")

    with pytest.raises(PreflightError, match=r"ParallelRunner cannot run this project: its "
                                             r"MLflow artifact and metric datasets "
                                             r"\(evaluation_table, ensemble_report, "
                                             r"base_fold_scores, \.\.\.\) cannot be pickled"):
        check_runner("<kedro.runner.parallel_runner.ParallelRunner object at 0x7f>",
                     Unpicklable())
    with pytest.raises(PreflightError, match=r"cannot run this project: Kedro runs no node "
                                             r"hooks in its workers"):
        check_runner("ParallelRunner", DataCatalog())  # no dataset list to name
    check_runner("<kedro.runner.thread_runner.ThreadRunner object at 0x7f>", Unpicklable())
    check_runner("", None)  # the default runner


def test_a_run_on_a_generated_file_is_told_its_planted_horizon(tmp_path):
    """The generator records its horizon and delay in the Parquet file; a run reading it with
    another label horizon is warned, a run that generates compares its own parameters."""
    from types import SimpleNamespace

    import pandas as pd

    from bma_quant.pipelines.synthetic_data.nodes import generate_synthetic_panel
    from bma_quant.run_hooks.preflight import synthetic_timing_messages
    from tests.support import project_params

    params = project_params()
    panel, *_ = generate_synthetic_panel({**params["synthetic"], "n_tickers": 5, "n_days": 80})
    path = tmp_path / "synthetic_prices.parquet"
    panel.to_parquet(path)
    params["data"]["raw_path"] = str(path)
    training = SimpleNamespace(nodes=[SimpleNamespace(name="data_processing.load_raw_data")])
    generating = SimpleNamespace(nodes=[
        SimpleNamespace(name="synthetic_data.generate_synthetic_panel")])
    assert synthetic_timing_messages(training, params) == []
    params["temporal"]["prediction_horizon_days"] = 5
    [message] = synthetic_timing_messages(training, params)
    assert message.startswith("the data file was generated with synthetic.horizon = 10")
    assert synthetic_timing_messages(generating, params)[0].startswith(
        "synthetic.horizon (10) differs")
    pd.DataFrame({"a": [1]}).to_parquet(path)  # a user's file: nothing recorded, nothing said
    assert synthetic_timing_messages(training, params) == []


def test_a_cleaned_panel_too_short_for_the_split_names_the_strict_date_filter():
    """Names trading on disjoint dates: the strict filter kept almost no date and the refusal
    blamed periods.dev_start; it now says the file had the dates and the filter dropped them."""
    from pathlib import Path
    from types import SimpleNamespace

    import pandas as pd

    from bma_quant.run_hooks.preflight import base_parameters

    hooks = PreflightHooks()
    hooks._params = base_parameters(Path(__file__).resolve().parents[1])
    hooks._params["periods"] = {**hooks._params["periods"], "dev_start": None, "test_start": None}
    dates = pd.bdate_range("2000-01-03", periods=3000)
    raw = pd.DataFrame({"date": dates.repeat(20), "ticker": [f"T{i}" for i in range(20)] * 3000})
    hooks.after_node_run({"raw_panel": raw})  # the file's dates pass
    kept = pd.DataFrame(1.0, index=dates[:40], columns=[f"T{i}" for i in range(20)])
    with pytest.raises(PreflightError, match=r"The file has 3000 dates; data_processing kept 40: "
                                             r"processing.strict_mode"):
        hooks.after_node_run({"clean_panel": SimpleNamespace(close=kept)})


def test_a_generated_markets_index_or_regimes_beside_other_prices_is_stopped(tmp_path):
    """`--env smoke` with a file of one's own: the smoke index and regimes are the synthetic
    market's. Refused when the prices record another generated market, warned about when they
    record none; the same market's files pass, also cut shorter."""
    from types import SimpleNamespace

    from bma_quant.pipelines.synthetic_data.nodes import generate_synthetic_panel
    from bma_quant.run_hooks.preflight import companion_file_messages
    from tests.support import project_params

    params = project_params()
    small = {**params["synthetic"], "n_tickers": 5, "n_days": 80}

    def generated(folder: str, seed: int) -> dict[str, str]:
        panel, index, regimes, _ = generate_synthetic_panel({**small, "seed": seed})
        (tmp_path / folder).mkdir()
        paths = {"raw_path": tmp_path / folder / "prices.parquet",
                 "index_path": tmp_path / folder / "index.parquet",
                 "true_regimes_path": tmp_path / folder / "regimes.parquet"}
        for frame, key in ((panel, "raw_path"), (index, "index_path"),
                           (regimes, "true_regimes_path")):
            frame.to_parquet(paths[key])
        return {key: str(path) for key, path in paths.items()}

    one, other = generated("one", 1), generated("other", 2)
    training = SimpleNamespace(nodes=[SimpleNamespace(name="data_processing.load_raw_data")])
    params["data"].update(one)
    assert companion_file_messages(training, params) == []
    shorter = tmp_path / "one" / "shorter.parquet"  # the same market, fewer dates
    prices = pd.read_parquet(one["raw_path"])
    prices[prices["date"] < prices["date"].max()].to_parquet(shorter)
    params["data"]["raw_path"] = str(shorter)
    assert companion_file_messages(training, params) == []
    params["data"]["raw_path"] = other["raw_path"]
    with pytest.raises(PreflightError, match=r"data.index_path .* is generated market \w+'s, but "
                                             r"data.raw_path .* is generated market \w+'s"):
        companion_file_messages(training, params)
    own = tmp_path / "own.csv"  # a file of one's own: no record of a market
    prices.to_csv(own, index=False)
    params["data"]["raw_path"] = str(own)
    messages = companion_file_messages(training, params)
    assert len(messages) == 2 and "records no generated market" in messages[0]
    assert "the detector will be scored against another market's regimes" in messages[1]
    params["data"].update(index_path=None, true_regimes_path=None)
    assert companion_file_messages(training, params) == []
    # generated prices given alone, beside the default env's index of another market
    own_index = tmp_path / "index.csv"
    pd.read_parquet(one["index_path"]).to_csv(own_index, index=False)
    params["data"].update(raw_path=one["raw_path"], index_path=str(own_index))
    [message] = companion_file_messages(training, params)
    assert message.startswith(f"data.raw_path ({one['raw_path']}) is generated market ")
    assert "data.index_path" in message and "records no generated market" in message


def test_a_catalog_entry_no_pipeline_uses_is_named_with_the_close_dataset(caplog):
    """`primary_panl:` in conf/local/catalog.yml was ignored without a word (the dataset it meant
    kept its base settings). The project's own catalog names only datasets its pipelines use."""
    from bma_quant.config_loader import ProjectConfigLoader
    from bma_quant.run_hooks.preflight import PreflightHooks, unused_catalog_entries

    conf = Path(__file__).resolve().parents[1] / "conf"
    catalog = ProjectConfigLoader(conf_source=str(conf), base_env="base",
                                  default_run_env="local")["catalog"]
    assert unused_catalog_entries(catalog) == []
    typo = {**catalog, "primary_panl": {"type": "pandas.ParquetDataset", "filepath": "x.pq"},
            "{name}_metric": {"type": "kedro_mlflow.io.metrics.MlflowMetricDataset"},
            "_csv": {"type": "pandas.CSVDataset"}}
    assert unused_catalog_entries(typo) == [("primary_panl", "primary_panel")]
    with caplog.at_level("WARNING"):
        PreflightHooks().after_catalog_created(typo)
    assert ("the catalog defines 'primary_panl', which no pipeline reads or writes: its settings "
            "are ignored (did you mean 'primary_panel'?)") in caplog.text
