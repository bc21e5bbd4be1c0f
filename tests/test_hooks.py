"""Run-level hooks: per-node time and memory, the memory guard, the run summary."""

import json
import re
import time
from types import SimpleNamespace

import pytest

from bma_quant import hooks
from bma_quant.hooks import MemoryLimitExceeded, RunHealthHooks
from bma_quant.run_hooks.memory_use import MemoryGauge
from bma_quant.run_hooks.run_tags import config_hash, short_fingerprint


class _Catalog:
    def __init__(self, data):
        self._data = data

    def exists(self, name):
        return name in self._data

    def load(self, name):
        return self._data[name]


def _memory(percent):
    return SimpleNamespace(percent=percent)


@pytest.fixture
def health(tmp_path):
    h = RunHealthHooks()
    h._project_path = tmp_path
    h._gauge = MemoryGauge(cgroups=[], own_footprint=False)  # the machine's share: patched
    h._memory.update({"target_usage": 0.70, "max_threshold": 0.80, "sample_seconds": 0.01})
    h.before_pipeline_run()
    return h


def test_node_time_and_peak_memory_are_recorded_and_summarised(health, tmp_path):
    """The peak is sampled while the node runs: 200 MB written and freed before the node ends
    shows in its peak, not only what is resident at its start or end."""
    import numpy as np
    import psutil

    node = SimpleNamespace(name="align_and_clean")
    health._node_layer = {"align_and_clean": "data_processing"}
    before_mb = psutil.Process().memory_info().rss / 2**20
    health.before_node_run(node)
    started = time.perf_counter()
    blob = np.ones(200 * 2**20 // 8)  # written, so resident (a large array: freed to the system)
    time.sleep(0.3)  # many 0.01 s samples
    del blob
    after_mb = psutil.Process().memory_info().rss / 2**20
    health.after_node_run(node)
    elapsed = time.perf_counter() - started
    stats = health.node_stats["align_and_clean"]
    assert after_mb < before_mb + 100  # the blob is gone at the node's end
    assert stats["peak_rss_mb"] > before_mb + 150
    assert 0.3 <= stats["seconds"] <= elapsed + 1.0
    health.after_pipeline_run(_Catalog({"base_model_status": {
        "lightgbm": {"status": "ok"}, "xgboost": {"status": "failed"}}}))
    summary = json.loads((tmp_path / "data/08_reporting/run_summary.json").read_text())
    assert summary["status"] == "success"
    assert summary["layers"]["data_processing"]["nodes"] == 1
    assert summary["models"]["base_models"] == {"succeeded": ["lightgbm"], "failed": ["xgboost"]}


def test_memory_above_max_threshold_stops_the_run_cleanly(health, monkeypatch):
    monkeypatch.setattr(hooks.psutil, "virtual_memory", lambda: _memory(91.0))
    with pytest.raises(MemoryLimitExceeded, match="91% passed memory.max_threshold 80%"):
        health.before_node_run(SimpleNamespace(name="train_lightgbm"))


def test_memory_guard_reads_a_containers_limit(health, monkeypatch, tmp_path):
    """A container limited below the machine's memory is killed at its limit: the guard stops the
    run on the container's share even while the machine shows little used."""
    folder = tmp_path / "cgroup"
    folder.mkdir()
    (folder / "memory.max").write_text(f"{4 * 2**30}\n")
    (folder / "memory.current").write_text(f"{int(3.8 * 2**30)}\n")
    (folder / "memory.stat").write_text(f"anon 1\nfile {int(0.2 * 2**30)}\n")
    from bma_quant.run_hooks.memory_use import limited_cgroups
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/\n")
    (folder / "cgroup.controllers").write_text("memory\n")
    cgroups = limited_cgroups(folder, proc, machine_total=64 * 2**30)
    health._gauge = MemoryGauge(cgroups)
    monkeypatch.setattr(hooks.psutil, "virtual_memory", lambda: _memory(10.0))
    with pytest.raises(MemoryLimitExceeded,
                       match=r"container's limit \(4.0 GiB\) 90% passed memory.max_threshold"):
        health.before_node_run(SimpleNamespace(name="train_lightgbm"))


def test_memory_above_target_warns_but_runs(health, monkeypatch, caplog):
    monkeypatch.setattr(hooks.psutil, "virtual_memory", lambda: _memory(75.0))
    node = SimpleNamespace(name="build_features")
    health.before_node_run(node)
    health.after_node_run(node)
    assert "above memory.target_usage" in caplog.text


def test_failed_node_is_counted(health, tmp_path, caplog):
    node = SimpleNamespace(name="train_xgboost")
    health.before_node_run(node)
    health.on_node_error(RuntimeError("boom"), node)
    with caplog.at_level("INFO"):
        health.on_pipeline_error(RuntimeError("boom\nsecond line"), _Catalog({}))
    # the console line names the error's type; its message is printed once, by the error itself
    (line,) = [r.getMessage() for r in caplog.records if "run summary" in r.getMessage()]
    assert line.startswith("run summary: failed (RuntimeError),") and "boom" not in line
    assert not (tmp_path / "data/08_reporting/run_summary.json").exists()  # the last good one stays
    summary = json.loads((tmp_path / "data/08_reporting/run_summary.failed.json").read_text())
    assert summary["node_failures"] == {"train_xgboost": "RuntimeError: boom"}
    assert summary["status"].startswith("failed")


def test_a_successful_run_removes_an_earlier_failed_runs_summary(health, tmp_path, caplog):
    reporting = tmp_path / "data/08_reporting"
    reporting.mkdir(parents=True)
    (reporting / "run_summary.failed.json").write_text(json.dumps({"mlflow_run_id": "abc123"}))
    (reporting / "run_health.failed.csv").write_text("node\n")
    with caplog.at_level("INFO"):
        health.after_pipeline_run(_Catalog({}))
    assert (reporting / "run_summary.json").is_file()
    assert not (reporting / "run_summary.failed.json").exists()
    assert not (reporting / "run_health.failed.csv").exists()
    assert "kept in MLflow run abc123" in caplog.text


def test_a_signal_during_a_save_is_summarised_as_the_interruption(health, tmp_path):
    from kedro.io import DatasetError

    from bma_quant.run_hooks.interrupts import RunInterrupted

    try:
        try:
            raise RunInterrupted("run interrupted by SIGINT")
        except RunInterrupted as error:
            raise DatasetError("cv_layout: Failed while saving data to dataset") from error
    except DatasetError as wrapped:
        health.on_pipeline_error(wrapped, _Catalog({}))
    summary = json.loads((tmp_path / "data/08_reporting/run_summary.failed.json").read_text())
    assert summary["status"] == "failed: RunInterrupted: run interrupted by SIGINT"


def test_fingerprint_and_config_hash_are_stable(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("date,close\n")
    first = short_fingerprint(path)
    assert re.fullmatch(r"[0-9a-f]{16}", first)  # the sha256 prefix the tags and registry show
    path.write_text("date,close\n")  # rewritten, same bytes: same fingerprint
    assert short_fingerprint(path) == first
    path.write_text("date,close\n2024-01-02,1\n")
    assert short_fingerprint(path) != first
    assert config_hash({"a": 1, "b": {"c": 2}}) == config_hash({"b": {"c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_preflight_hook_warns_once_about_an_unreachable_date_gate(caplog):
    import logging

    import pandas as pd

    from bma_quant.run_hooks.preflight import PreflightHooks
    from tests.core.test_preflight import _gated

    hook = PreflightHooks()
    hook._params = _gated(250)
    dates = pd.bdate_range("2018-01-01", periods=800)
    raw = pd.DataFrame({"date": dates, "ticker": "A", "close": 1.0})
    raw = pd.concat([raw.assign(ticker=t) for t in "ABCDEF"], ignore_index=True)
    hook.before_pipeline_run({"pipeline_names": ["data_processing"]})
    with caplog.at_level(logging.WARNING):
        hook.after_node_run({"raw_panel": raw})
        hook.after_node_run({"raw_panel": raw})
    warnings = [r for r in caplog.records if "can never pass" in r.getMessage()]
    assert len(warnings) == 1 and "min_test_dates" in warnings[0].getMessage()
