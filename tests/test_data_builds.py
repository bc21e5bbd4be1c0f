"""A layer run alone stands on the data its stored inputs were built from (run_hooks/data_builds)."""

import copy
import json
import os

import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline

from bma_quant.core.data import provenance
from bma_quant.core.data.preflight import PreflightError
from bma_quant.run_hooks.data_builds import DATA_BUILDS_PATH, DataBuildHooks

PARAMS = {"data": {"raw_path": "prices.csv", "index_path": "index.csv", "layout": "auto"},
          "periods": {"test_fraction": 0.2, "dev_start": None},
          "cv": {"n_splits": 5, "scheme": "walk_forward"},
          "temporal": {"prediction_horizon_days": 10, "max_lookback_days": 252},
          "processing": {"strict_mode": True}}


def _identity(*inputs):
    return inputs[0]


def _node(inputs, outputs, layer, name):
    return Node(_identity, inputs, outputs, name=name, namespace=layer)


@pytest.fixture
def project(tmp_path):
    """A project folder with its data files, catalog owners and a stored report of PARAMS."""
    (tmp_path / "prices.csv").write_text("date,ticker,close\n2020-01-02,A,10\n")
    (tmp_path / "index.csv").write_text("date,level\n2020-01-02,100\n")
    (tmp_path / "conf/base").mkdir(parents=True)
    (tmp_path / "conf/base/catalog_data_processing.yml").write_text(
        "primary_panel: {}\ncv_folds: {}\nlabels: {}\ndata_quality_report: {}\n")
    (tmp_path / "conf/base/catalog_base_models.yml").write_text("base_oof_predictions: {}\n")
    write_report(tmp_path, PARAMS)
    return tmp_path


def write_report(root, params):
    """data_quality_report.json as data_processing writes it for `params`."""
    data = params["data"]
    report = {"source": {"raw_path": data["raw_path"],
                         "raw_file": provenance.file_fingerprint(root / data["raw_path"]),
                         "index_path": data["index_path"],
                         "index_file": provenance.file_fingerprint(
                             root / data["index_path"] if data["index_path"] else None)},
              "settings": provenance.panel_settings(params)}
    (root / "data_quality_report.json").write_text(json.dumps(report))
    return report


def hooks_for(root, params=PARAMS):
    return DataBuildHooks(params=copy.deepcopy(params), project_path=root)


STORED = ("cv_folds", "primary_panel", "labels", "model_input", "base_oof_predictions", "table")


def catalog(root):
    """The datasets of these tests as a project declares them (files; the rest in memory)."""
    config = {name: {"type": "pandas.ParquetDataset", "filepath": str(root / f"{name}.parquet")}
              for name in STORED}
    config["data_quality_report"] = {"type": "json.JSONDataset",
                                     "filepath": str(root / "data_quality_report.json")}
    config["true_regimes"] = {"type": "pandas.ParquetDataset",
                              "filepath": str(root / "true_regimes.parquet")}
    return DataCatalog.from_config(config)


READS_FOLDS = Pipeline([_node(["cv_folds"], "model_input", "feature_engineering", "fe")])


def test_stored_data_outputs_of_another_file_content_or_parameters_are_refused(project):
    """Another file, the same path with new content, or another test period: refused naming
    every difference at once (it failed late with "fold 0 has no trainable rows", or mixed data
    sets); the same bytes under another name and evaluation-only keys go on."""
    hooks_for(project).check(READS_FOLDS, catalog(project))  # as stored

    relaxed = copy.deepcopy(PARAMS)
    relaxed["cv"]["scheme"] = "combinatorial"  # evaluation only
    relaxed["temporal"]["max_lookback_days"] = 300  # features and serving warm-up only
    (project / "copy.csv").write_bytes((project / "prices.csv").read_bytes())
    relaxed["data"]["raw_path"] = str(project / "copy.csv")  # the same bytes elsewhere
    hooks_for(project, relaxed).check(READS_FOLDS, catalog(project))

    changed = copy.deepcopy(PARAMS)
    changed["periods"]["test_fraction"] = 0.3
    changed["cv"]["n_splits"] = 4
    changed["data"]["index_path"] = None
    changed["data"]["raw_path"] = "other.csv"
    with pytest.raises(PreflightError, match=r"built from other data or parameters \(stored -> "
                                             r"this run: data.raw_path was prices.csv, is other.csv; data.index_path "
                                             r"was index.csv, is null; cv.n_splits: 5 -> 4; "
                                             r"periods.test_fraction: 0.2 -> 0.3\)"):
        hooks_for(project, changed).check(READS_FOLDS, catalog(project))

    before = (project / "prices.csv").stat().st_mtime_ns
    (project / "prices.csv").write_text("date,ticker,close\n2020-01-02,A,11\n")  # same size
    os.utime(project / "prices.csv", ns=(before + 10**9,) * 2)
    with pytest.raises(PreflightError, match=r"prices.csv changed after they were built from it "
                                             r"\(then 34 bytes"):
        hooks_for(project).check(READS_FOLDS, catalog(project))


def test_folds_made_before_the_tuning_purge_are_refused(project):
    """Stored cv_folds whose last tuning window reaches the first out-of-fold one (made by an
    older version) would tune on labels the honest scores read: a layer run alone refuses them."""
    report = write_report(project, PARAMS)
    layout = {"n_splits": 5, "min_train_days": 756, "n_tuning_folds": 2, "adapted": 0}
    (project / "data_quality_report.json").write_text(json.dumps({**report, "cv_layout": layout}))
    with pytest.raises(PreflightError, match="cv_folds: made by an older version"):
        hooks_for(project).check(READS_FOLDS, catalog(project))
    layout["tuning_purge_days"] = 11
    (project / "data_quality_report.json").write_text(json.dumps({**report, "cv_layout": layout}))
    hooks_for(project).check(READS_FOLDS, catalog(project))


def test_a_run_that_rebuilds_the_data_is_not_held_to_the_stored_report(project):
    """Also when a later node of the run reads the new report (`--pipelines
    data_processing,evaluation`: the report is then no output of the whole run)."""
    rebuilds = Pipeline([
        _node(["raw_panel"], "primary_panel", "data_processing", "finalise"),
        _node(["primary_panel"], "data_quality_report", "data_processing", "report"),
        _node(["primary_panel", "data_quality_report"], "table", "evaluation", "evaluate")])
    changed = copy.deepcopy(PARAMS)
    changed["periods"]["test_fraction"] = 0.3
    hooks_for(project, changed).check(rebuilds, catalog(project))


def test_rewriting_data_outputs_without_the_report_must_reproduce_them(project):
    """`--to-nodes data_processing.make_cv_folds` (or any `--to-nodes` of a later layer)
    rewrites the folds but not the report that says what they were built from: fine with the
    recorded data and parameters (they come out the same), refused with others."""
    partial = Pipeline([_node(["raw_panel"], "cv_folds", "data_processing", "folds"),
                        _node(["cv_folds"], "model_input", "feature_engineering", "fe")])
    hooks_for(project).check(partial, catalog(project))
    changed = copy.deepcopy(PARAMS)
    changed["cv"]["n_splits"] = 3
    with pytest.raises(PreflightError, match=r"rewrites data_processing output\(s\) \(cv_folds\) "
                                             r"but not data_quality_report with other data or "
                                             r"parameters than it records \(stored -> this "
                                             r"run: cv.n_splits: 5 -> 3\)"):
        hooks_for(project, changed).check(partial, catalog(project))
    metrics_only = Pipeline([_node(["raw_panel"], ["true_regimes", "dp_metrics"],
                                   "data_processing", "truth")])
    hooks_for(project, changed).check(metrics_only, catalog(project))  # nothing of a build


def _record_builds(root, datasets, params=PARAMS):
    """data_builds.json as runs on `params` that wrote `datasets` leave it."""
    record = provenance.build_record(write_report(root, params))
    build = provenance.build_id(record)
    path = root / DATA_BUILDS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    recorded = json.loads(path.read_text()) if path.exists() else {"datasets": {}, "builds": {}}
    recorded["datasets"].update(dict.fromkeys(datasets, build))
    recorded["builds"][build] = record
    path.write_text(json.dumps(recorded))
    return build


EVALUATION = Pipeline([_node(["base_oof_predictions", "primary_panel"], "table", "evaluation",
                             "evaluate")])
MOVED = {**PARAMS, "periods": {**PARAMS["periods"], "test_fraction": 0.3}}


def test_a_dataset_made_on_another_data_build_is_refused_naming_it_and_the_difference(
        project, caplog):
    """`--pipelines data_processing` with a new test period, then `--pipelines evaluation`: the
    stored base models were trained on the old split (on what are now test dates)."""
    _record_builds(project, ["primary_panel"])
    with caplog.at_level("WARNING"):
        hooks_for(project).check(EVALUATION, catalog(project))  # not recorded: said, goes on
    assert ("1 stored dataset(s) this run reads have no recorded data build "
            "(base_oof_predictions)") in caplog.text
    _record_builds(project, ["base_oof_predictions"])
    _record_builds(project, ["primary_panel", "data_quality_report"], MOVED)
    with pytest.raises(PreflightError, match=r"stored outputs this run reads were made on other "
                                             r"data_processing outputs than the stored ones "
                                             r"\(base_models: base_oof_predictions\) "
                                             r"\(made on -> stored: periods.test_fraction: "
                                             r"0.2 -> 0.3\)"):
        hooks_for(project, MOVED).check(EVALUATION, catalog(project))
    with pytest.raises(PreflightError, match=r"\(stored -> this run: periods.test_fraction: "
                                             r"0.3 -> 0.2\): run the "
                                             r"whole chain .*; and stored outputs this run "
                                             r"reads were made on other"):
        hooks_for(project).check(EVALUATION, catalog(project))  # both problems in one refusal
    with_inference = Pipeline([*EVALUATION.nodes,
                               _node(["chain"], "latest", "inference", "predict")])
    with pytest.raises(PreflightError, match="base_oof_predictions"):
        hooks_for(project, MOVED).check(with_inference, catalog(project))
    # inference alone scores new data with the trained chain: never held to the build
    hooks_for(project, MOVED).check(Pipeline([_node(["base_oof_predictions"], "latest",
                                                    "inference", "predict")]), catalog(project))


def test_a_run_records_the_build_of_what_it_wrote_and_the_rest_keeps_its_own(project):
    """`--nodes` / `--to-nodes`: outputs a run did not rewrite keep the build they were made
    on, so a later read of them is refused, and of the rewritten ones is not."""
    old = _record_builds(project, ["base_oof_predictions", "table", "labels"])
    new = _record_builds(project, ["primary_panel", "data_quality_report"], MOVED)
    hooks = hooks_for(project, MOVED)
    run = Pipeline([_node(["primary_panel"], "model_input", "feature_engineering", "fe")])
    hooks.check(run, catalog(project))
    hooks.after_pipeline_run()
    recorded = json.loads((project / DATA_BUILDS_PATH).read_text())
    assert recorded["datasets"] == {"base_oof_predictions": old, "table": old, "labels": old,
                                    "primary_panel": new, "data_quality_report": new,
                                    "model_input": new}
    assert set(recorded["builds"]) == {old, new}
    hooks_for(project, MOVED).check(Pipeline([_node(["model_input"], "x", "base_models", "b")]),
                                    catalog(project))
    with pytest.raises(PreflightError, match=r"\(data_processing: labels\)"):
        hooks_for(project, MOVED).check(Pipeline([_node(["labels"], "x", "base_models", "b")]),
                                        catalog(project))


def test_a_run_that_rebuilds_the_data_stops_when_its_new_report_disagrees(project):
    _record_builds(project, ["base_oof_predictions"])
    rebuilds = Pipeline([
        _node(["raw_panel"], "data_quality_report", "data_processing", "report"),
        *EVALUATION.nodes])
    hooks = hooks_for(project, MOVED)
    hooks.check(rebuilds, catalog(project))  # the new build is not known before the report
    with pytest.raises(PreflightError, match="base_models: base_oof_predictions"):
        hooks.after_node_run({"data_quality_report": write_report(project, MOVED)})


def test_a_key_conf_base_does_not_define_is_no_part_of_a_build(project):
    """A misspelt key (`cv.n_split`, warned about by the pre-flight) is read by no layer: adding
    it in conf/local after data_processing, or building the data with it, must not refuse a
    layer run alone. A key conf/base defines still does."""
    import yaml

    (project / "conf/base/parameters_data_processing.yml").write_text(yaml.safe_dump(PARAMS))
    misspelt = copy.deepcopy(PARAMS)
    misspelt["cv"]["n_split"] = 4
    misspelt["processing"]["eligibility"] = {"window_dayz": 60}
    _record_builds(project, ["primary_panel", "base_oof_predictions"])
    hooks_for(project, misspelt).check(EVALUATION, catalog(project))  # added after the build

    _record_builds(project, ["primary_panel", "data_quality_report"], misspelt)  # built with it
    hooks_for(project).check(EVALUATION, catalog(project))
    hooks_for(project, misspelt).check(EVALUATION, catalog(project))

    changed = copy.deepcopy(misspelt)
    changed["cv"]["n_splits"] = 4
    with pytest.raises(PreflightError, match=r"stored -> this run: cv.n_splits: 5 -> 4\)"):
        hooks_for(project, changed).check(EVALUATION, catalog(project))


def test_a_parameter_added_after_the_data_was_built_counts_as_its_default(project):
    """A report written before a parameter existed (processing.split_detection.report_tolerance
    came later) was built as its default builds: every layer run alone on data built before
    the upgrade was refused ("<unset> -> 0.1"), with no stored value to pass."""
    import yaml

    upgraded = copy.deepcopy(PARAMS)
    upgraded["processing"]["split_detection"] = {"tolerance": 0.02, "report_tolerance": 0.1}
    (project / "conf/base/parameters_data_processing.yml").write_text(yaml.safe_dump(upgraded))
    older = copy.deepcopy(PARAMS)
    older["processing"]["split_detection"] = {"tolerance": 0.02}  # before the new key
    _record_builds(project, ["primary_panel", "data_quality_report", "base_oof_predictions"],
                   older)
    hooks_for(project, upgraded).check(EVALUATION, catalog(project))
    hooks_for(project, upgraded).check(READS_FOLDS, catalog(project))

    changed = copy.deepcopy(upgraded)
    changed["processing"]["split_detection"]["report_tolerance"] = 0.2
    with pytest.raises(PreflightError, match=r"processing.split_detection.report_tolerance: "
                                             r"0.1 -> 0.2"):
        hooks_for(project, changed).check(EVALUATION, catalog(project))
