"""A layer run alone reads stored datasets made with this run's parameter values
(run_hooks/layer_lineage.py)."""

import copy
import json

import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline

from bma_quant.core.data.preflight import PreflightError
from bma_quant.run_hooks.layer_lineage import LINEAGE_PATH, LayerLineageHooks, flat_parameters

PARAMS = {"data": {"raw_path": "prices.csv"},
          "feature_engineering": {"selection": {"min_features": 10}, "lags": [0, 1]},
          "base_models": {"n_trials": 10, "tuning": {"show_progress_bar": True}},
          "regime_models": {"learner": "elastic_net"},
          "evaluation": {"cost_bps": 10}}
STORED = ("primary_panel", "model_input", "base_oof_predictions", "regime_oof_predictions",
          "ensemble", "table")


def _identity(*inputs):
    return inputs[0]


def _node(inputs, outputs, layer, name):
    return Node(_identity, inputs, outputs, name=name, namespace=layer)


CHAIN = Pipeline([
    _node(["params:data"], "primary_panel", "data_processing", "dp"),
    _node(["primary_panel", "params:feature_engineering"], "model_input",
          "feature_engineering", "fe"),
    _node(["model_input", "params:base_models"], "base_oof_predictions", "base_models", "bm"),
    _node(["model_input", "params:regime_models"], "regime_oof_predictions", "regime_models",
          "rm"),
    _node(["base_oof_predictions", "regime_oof_predictions"], "ensemble", "stacking", "st"),
    _node(["ensemble", "params:evaluation"], "table", "evaluation", "ev"),
])


@pytest.fixture
def project(tmp_path):
    (tmp_path / "conf/base").mkdir(parents=True)
    for layer, names in (("feature_engineering", ["model_input"]),
                         ("base_models", ["base_oof_predictions"]),
                         ("regime_models", ["regime_oof_predictions"])):
        (tmp_path / f"conf/base/catalog_{layer}.yml").write_text(
            "".join(f"{n}: {{}}\n" for n in names))
    return tmp_path


def catalog(root):
    return DataCatalog.from_config({name: {"type": "pandas.ParquetDataset",
                                           "filepath": str(root / f"{name}.parquet")}
                                    for name in STORED})


def run(root, pipeline, params):
    """The hook's part of a successful run (no staging: written in place)."""
    hooks = LayerLineageHooks(params=copy.deepcopy(params), project_path=root)
    hooks.before_pipeline_run({"pipeline_names": ["x"]}, pipeline, catalog(root))
    for node in pipeline.nodes:
        hooks.after_node_run(node)
    hooks.after_pipeline_run()


def _changed(**changes):
    params = copy.deepcopy(PARAMS)
    for path, value in changes.items():
        layer, *keys = path.split("__")
        node = params[layer]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return params


def test_a_later_layer_does_not_train_on_features_made_with_other_values(project):
    """Changing a feature_engineering parameter and running base_models alone trained on the old
    features while MLflow logged the new value: refused, naming the dataset, the value it was
    made with and the layers to run; run with the old values, it goes on."""
    run(project, CHAIN, PARAMS)
    recorded = json.loads((project / LINEAGE_PATH).read_text())
    model_input = recorded["lineages"][recorded["datasets"]["model_input"]]
    assert model_input == {"feature_engineering.selection.min_features": 10,
                           "feature_engineering.lags": [0, 1],  # no data_processing keys
                           "~read:feature_engineering": True}  # the section the node read
    base_only = CHAIN.only_nodes_with_namespaces(["base_models"])
    run(project, base_only, PARAMS)
    with pytest.raises(PreflightError, match=r"made with other parameter values \(model_input "
                                             r"\(feature_engineering\); feature_engineering."
                                             r"selection.min_features was 10, is 3\): run the "
                                             r"layers that made them again with these values "
                                             r"\(`kedro run --pipelines feature_engineering`"):
        run(project, base_only, _changed(feature_engineering__selection__min_features=3))


def test_stale_lineage_reaches_through_layers_and_spares_what_does_not_matter(project):
    """features rebuilt with new values and base_models rerun, regime_models not: stacking alone
    is refused for the regime predictions only; evaluation-only and display-only keys and
    parameters an upgrade added do not count."""
    run(project, CHAIN, PARAMS)
    new = _changed(feature_engineering__selection__min_features=3)
    run(project, CHAIN.only_nodes_with_namespaces(["feature_engineering", "base_models"]), new)
    stacking = CHAIN.only_nodes_with_namespaces(["stacking"])
    with pytest.raises(PreflightError, match=r"\(regime_oof_predictions \(regime_models\); "
                                             r"feature_engineering.selection.min_features was 10, "
                                             r"is 3\)"):
        run(project, stacking, new)
    run(project, CHAIN.only_nodes_with_namespaces(["regime_models"]), new)
    run(project, stacking, new)  # every input made with the new value now
    shown = _changed(feature_engineering__selection__min_features=3,
                     base_models__tuning__show_progress_bar=False, evaluation__cost_bps=5)
    shown["feature_engineering"]["added_off"] = None  # a setting added switched off
    shown["base_models"]["n_jobs"] = 1  # threads: the same predictions
    run(project, stacking, shown)
    # a factor family's windows added to the conf: base_models' inputs were made without them
    added = copy.deepcopy(shown)
    added["feature_engineering"]["factors"] = {"sharpe_windows": [20, 60]}
    with pytest.raises(PreflightError, match=r"feature_engineering.factors.sharpe_windows was "
                                             r"not set, is \[20, 60\]"):
        run(project, stacking, added)


def test_parameters_flatten_to_dotted_json_leaves():
    assert flat_parameters("a", {"b": {"c": (1, 2)}, "d": None}) == {"a.b.c": [1, 2], "a.d": None}


def test_a_section_set_to_null_or_reshaped_is_a_change():
    """`search_space.lightgbm=null` turns LightGBM's tuning off: one side had leaf keys, the
    other one value at the section, and nothing was compared, so stacking ran on untuned
    predictions with the tuned config's hash. A section emptied, a value made a section, and a
    tuned dimension or learner argument added or removed count too, as does any key added or
    removed with a value (a factor family's windows); one added null does not."""
    from bma_quant.run_hooks.layer_lineage import lineage_differences

    space = {"num_leaves": {"type": "int", "low": 4, "high": 64}}
    params = {"base_models": {"n_trials": 10, "tuning": {"search_space": {"lightgbm": space}},
                              "defaults": {"lightgbm": {"num_leaves": 31}}}}
    made = {**flat_parameters("base_models", params["base_models"]), "~read:base_models": True}

    def differences(**changes):
        new = copy.deepcopy(params)
        for path, value in changes.items():
            *keys, last = path.split("__")
            node = new["base_models"]
            for key in keys:
                node = node[key]
            if value is KeyError:
                del node[last]
            else:
                node[last] = value
        return lineage_differences(made, new)

    assert differences() == []
    (null,) = differences(tuning__search_space__lightgbm=None)
    assert null.startswith("base_models.tuning.search_space.lightgbm was {") and "num_leaves" \
        in null and null.endswith(", is null")
    assert len(differences(tuning__search_space__lightgbm={})) == 1
    assert len(differences(defaults=None)) == 1
    assert differences(defaults__lightgbm__max_depth=3) == [
        "base_models.defaults.lightgbm.max_depth was not set, is 3"]
    (emptied,) = differences(defaults__lightgbm__num_leaves=KeyError)
    assert emptied.startswith("base_models.defaults.lightgbm was {") and emptied.endswith(
        "is {}")
    # the other way round: stored tuned with null, now tuned
    untuned = copy.deepcopy(params)
    untuned["base_models"]["tuning"]["search_space"]["lightgbm"] = None
    assert len(lineage_differences(flat_parameters("base_models", untuned["base_models"]),
                                   params)) == 1
    assert differences(added_off=None) == []
    assert differences(added_windows=[]) == ["base_models.added_windows was not set, is []"]
    assert differences(added_on=1) == ["base_models.added_on was not set, is 1"]
    # a key added outside the sections the record's nodes read is none of its business, and a
    # record written before the read sections were kept compares added keys in open ones only
    narrow = {k: v for k, v in made.items() if k.startswith("base_models.defaults")}
    narrow["~read:base_models.defaults"] = True
    new = copy.deepcopy(params)
    new["base_models"]["added_on"] = 1
    assert lineage_differences(narrow, new) == []
    old_record = flat_parameters("base_models", params["base_models"])
    assert lineage_differences(old_record, new) == []
    new["base_models"]["defaults"]["lightgbm"]["max_depth"] = 3
    assert lineage_differences(old_record, new) == [
        "base_models.defaults.lightgbm.max_depth was not set, is 3"]
    (removed,) = lineage_differences({**made, "base_models.dropped": [20]}, params)
    assert removed == "base_models.dropped was [20], is not set"
