"""The busy-machine hint: a training run beside another busy process says that its spinning
learner threads lose their cores there, and which settings to change; it samples nothing where
no layer trains threaded learners or where it is turned off."""

import logging
from types import SimpleNamespace

from bma_quant.run_hooks.busy_machine import (
    BusyMachineHooks,
    busy_machine_hint,
    threaded_settings,
)

PARAMS = {"base_models": {"n_jobs": 2}, "regime_models": {"n_jobs": 2},
          "run": {"busy_machine": {"sample_seconds": 0.3, "busy_cores": 0.5}}}


def _pipeline(*names):
    return SimpleNamespace(nodes=[SimpleNamespace(name=n) for n in names])


def _run(params, pipeline, share, caplog):
    samples = []

    def cpu_share(seconds):
        samples.append(seconds)
        return share

    hooks = BusyMachineHooks(cpu_share=cpu_share, cpu_count=lambda: 2)
    hooks.after_context_created(SimpleNamespace(params=params))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bma_quant.progress"):
        hooks.before_pipeline_run(pipeline)
    return samples, caplog.text


def test_the_threaded_layers_of_the_run_are_named_with_their_settings():
    nodes = ["data_processing.clean_panel", "base_models.train_lightgbm"]
    assert threaded_settings(PARAMS, nodes) == {"base_models.n_jobs": 2}
    assert threaded_settings(PARAMS, [*nodes, "regime_models.train_regime_models"]) == {
        "base_models.n_jobs": 2, "regime_models.n_jobs": 2}
    assert threaded_settings({**PARAMS, "base_models": {"n_jobs": 1}}, nodes) == {}
    assert threaded_settings(PARAMS, ["data_processing.clean_panel"]) == {}
    # evaluation's CPCV refits the base learners with their threads
    assert threaded_settings(PARAMS, ["evaluation.cpcv"]) == {"base_models.n_jobs": 2}
    # as training reads them: "4" is 4 threads, -1 every core
    assert threaded_settings({"base_models": {"n_jobs": "4"}}, nodes) == {"base_models.n_jobs": 4}
    assert threaded_settings({"base_models": {"n_jobs": -1}}, nodes, 8) == {
        "base_models.n_jobs": 8}
    assert threaded_settings({"base_models": None}, nodes) == {}


def test_the_hint_names_the_busy_cores_and_the_overrides():
    threads = {"base_models.n_jobs": 2, "regime_models.n_jobs": 2}
    hint = busy_machine_hint(0.8, 2, 0.5, threads)
    assert "other processes keep 1.6 of its 2 cores busy" in hint
    assert "(base_models.n_jobs 2, regime_models.n_jobs 2)" in hint
    assert '--params "base_models.n_jobs=1,regime_models.n_jobs=1"' in hint
    assert busy_machine_hint(0.2, 2, 0.5, threads) is None  # 0.4 cores: an idle machine's noise
    assert busy_machine_hint(0.9, 2, 0.5, {}) is None
    # a large machine: 30 busy cores of 64 leave the two threads plenty
    assert busy_machine_hint(30 / 64, 64, 0.5, threads) is None
    assert "keep 63.0 of its 64 cores busy" in busy_machine_hint(63 / 64, 64, 0.5, threads)
    assert busy_machine_hint(2.4 / 4, 4, 0.5, threads) is None  # 1.6 idle of the 2 needed
    assert busy_machine_hint(2.6 / 4, 4, 0.5, threads) is not None
    # more threads than cores on an idle machine: not busy
    assert busy_machine_hint(0.0, 1, 0.5, {"base_models.n_jobs": 2}) is None
    assert busy_machine_hint(0.1, 2, 0.5, {"base_models.n_jobs": 4}) is None
    assert busy_machine_hint(0.9, 2, 0.5, {"base_models.n_jobs": 4}) is not None


def test_a_training_run_on_a_busy_machine_is_told_once_before_its_first_node(caplog):
    training = _pipeline("data_processing.clean_panel", "base_models.train_lightgbm")
    samples, text = _run(PARAMS, training, 0.85, caplog)
    assert samples == [0.3]
    assert "the machine is busy before this run starts: other processes keep 1.7 of its 2" in text
    samples, text = _run(PARAMS, training, 0.1, caplog)  # idle: a sample, no word
    assert samples == [0.3] and "busy" not in text


def test_nothing_is_sampled_without_threaded_learners_or_when_off(caplog):
    assert _run(PARAMS, _pipeline("data_processing.clean_panel", "stacking.fit"), 1.0, caplog) == ([], "")
    single = {**PARAMS, "base_models": {"n_jobs": 1}, "regime_models": {"n_jobs": 1}}
    assert _run(single, _pipeline("base_models.train_lightgbm"), 1.0, caplog) == ([], "")
    off = {**PARAMS, "run": {"busy_machine": {"sample_seconds": None, "busy_cores": 0.5}}}
    assert _run(off, _pipeline("base_models.train_lightgbm"), 1.0, caplog) == ([], "")
    # a value of the wrong kind is the pre-flight's to refuse: the hook neither raises nor samples
    for wrong in (True, -1, "on", {"sample_seconds": "soon", "busy_cores": 0.5}):
        assert _run({**PARAMS, "run": {"busy_machine": wrong}},
                    _pipeline("base_models.train_lightgbm"), 1.0, caplog)[1] == ""
