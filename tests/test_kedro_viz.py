"""kedro-viz: every catalog entry sits in a layer, the layers follow the data flow (kedro-viz
drops them all on a cycle), plot datasets preview, and each pipeline is one namespace block."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import plotly.graph_objects as go
import pytest
import yaml
from kedro.framework.project import configure_project
from kedro.io import CatalogConfigResolver
from kedro.pipeline import Pipeline
from kedro_viz.services.layers import sort_layers

from tests.e2e.project_copy import KEDRO, copy_project, kedro_env
from tests.support import CONF

LAYERS = ("raw", "intermediate", "primary", "feature", "model_input", "models", "model_output",
          "reporting")


def _catalog() -> dict:
    config = {}
    for path in sorted(CONF.glob("catalog_*.yml")):
        config.update(yaml.safe_load(path.read_text()))
    return config


def _viz(entry: dict) -> dict:
    return (entry.get("metadata") or {}).get("kedro-viz") or {}


def _pipelines() -> dict[str, Pipeline]:
    configure_project("bma_quant")
    from bma_quant.pipeline_registry import register_pipelines

    return register_pipelines()


def test_every_catalog_entry_has_a_layer():
    missing = {name: _viz(entry).get("layer") for name, entry in _catalog().items()
               if _viz(entry).get("layer") not in LAYERS}
    assert not missing


def test_plot_json_datasets_preview():
    plots = {name: entry for name, entry in _catalog().items()
             if entry.get("type") in ("plotly.JSONDataset", "plotly.PlotlyDataset")}
    assert plots
    assert all(_viz(entry).get("preview") is True for entry in plots.values())


def test_layers_follow_the_data_flow():
    """kedro-viz's own layer sort finds no cycle in the graph it draws: every node and dataset,
    plus one node per namespace block joining the block's inputs to its outputs."""
    resolver = CatalogConfigResolver(_catalog())
    everything = sum(_pipelines().values(), Pipeline([]))
    nodes, dependencies = {}, {}

    def link(source, target):
        nodes.setdefault(source, SimpleNamespace(layer=None))
        nodes.setdefault(target, SimpleNamespace(layer=None))
        dependencies.setdefault(source, set()).add(target)
        dependencies.setdefault(target, set())

    for dataset in everything.datasets():
        entry = resolver.resolve_pattern(dataset) or {}
        nodes[dataset] = SimpleNamespace(layer=_viz(entry).get("layer"))
        dependencies[dataset] = set()
    for node in everything.nodes:
        for dataset in node.inputs:
            link(dataset, node.name)
        for dataset in node.outputs:
            link(node.name, dataset)
    for namespace in {node.namespace for node in everything.nodes}:
        block = everything.only_nodes_with_namespaces([namespace])
        outputs = block.outputs() | ((everything - block).inputs() & block.all_outputs())
        for dataset in block.inputs():
            link(dataset, f"block:{namespace}")
        for dataset in outputs:
            link(f"block:{namespace}", dataset)
    order = sort_layers(nodes, dependencies)
    assert order == list(LAYERS)  # the in-memory hand-overs have layers too (raw_panel, ...)


def test_each_pipeline_is_one_namespace_and_keeps_its_dataset_names():
    pipelines = _pipelines()
    from kedro.framework.project import find_pipelines

    for name, plain in find_pipelines(raise_errors=True).items():
        if name == "__default__":
            continue
        block = pipelines[name]
        assert {node.namespace for node in block.nodes} == {name}
        assert block.all_inputs() == plain.all_inputs()
        assert block.all_outputs() == plain.all_outputs()


@pytest.mark.e2e
def test_kedro_viz_build_draws_one_block_per_pipeline(tmp_path):
    project = copy_project(tmp_path)
    plot = project / "data/08_reporting/plots/equity_curve.json"
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_text(go.Figure(go.Scatter(x=[0, 1], y=[1, 2])).to_json())
    result = subprocess.run([str(KEDRO), "viz", "build", "--include-previews"], cwd=project,
                            env=kedro_env(project), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    graph = json.loads((project / "build/api/main").read_text())
    chain = ("data_processing", "feature_engineering", "base_models", "regime_models",
             "stacking", "evaluation")
    assert set(chain) <= set(graph["modular_pipelines"])
    tasks = [n for n in graph["nodes"] if n["type"] == "task"]
    assert len(tasks) > 30
    for task in tasks:
        assert task["modular_pipelines"] == [task["full_name"].split(".")[0]], task
    assert graph["layers"][-1] == "reporting"  # layers are on (no cycle)
    root = {child["id"] for child in graph["modular_pipelines"]["__root__"]["children"]}
    assert {n["id"] for n in tasks}.isdisjoint(root)  # every node is inside a block
    equity = next(n for n in graph["nodes"] if n["name"] == "evaluation_plot_equity_curve")
    preview = json.loads((project / "build/api/nodes" / equity["id"]).read_text())
    assert preview["preview_type"] == "PlotlyPreview" and preview["preview"]["data"]
