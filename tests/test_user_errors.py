"""A refused input ends the process with its message; a bug keeps its traceback."""

import sys

import pytest

from bma_quant.core.data.schema import DataValidationError
from bma_quant.core.models.tuning import TuningTimedOut
from bma_quant.hooks import MemoryLimitExceeded
from bma_quant.run_hooks import user_errors
from bma_quant.serving.model_source import ModelSourceError


@pytest.fixture
def hook(monkeypatch):
    calls = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: calls.append(args))
    user_errors.install()
    user_errors.install()  # twice: wrapped once
    return sys.excepthook, calls


@pytest.mark.parametrize("error", [DataValidationError("column 'close': must be numeric"),
                                   ModelSourceError("no registered model 'x'"),
                                   MemoryLimitExceeded("System memory use 91% passed "
                                                       "memory.max_threshold 80%"),
                                   # a guard that stops the run, as run.timeout_seconds does
                                   TuningTimedOut("lightgbm: the 60 s tuning timeout stopped "
                                                  "the study after 4 of 10 trial(s)")])
def test_a_users_error_prints_one_block(hook, capsys, monkeypatch, error):
    monkeypatch.delenv(user_errors.TRACEBACK_ENV, raising=False)
    excepthook, calls = hook
    excepthook(type(error), error, None)
    err = capsys.readouterr().err
    assert calls == [] and f"{type(error).__name__}: {error}" in err
    assert user_errors.TRACEBACK_ENV in err and "Traceback" not in err


def test_a_run_refused_for_another_says_nothing_was_run(hook, capsys, monkeypatch):
    from bma_quant.run_hooks.staging import AnotherRunInProgress

    monkeypatch.delenv(user_errors.TRACEBACK_ENV, raising=False)
    excepthook, _ = hook
    error = AnotherRunInProgress("Another kedro run is running in this project folder")
    excepthook(type(error), error, None)
    err = capsys.readouterr().err
    assert "(no node ran, no output was touched;" in err and "stopped on this input" not in err


def test_a_bug_or_the_traceback_switch_keeps_the_full_traceback(hook, capsys, monkeypatch):
    excepthook, calls = hook
    bug = KeyError("close")
    excepthook(KeyError, bug, None)
    assert calls == [(KeyError, bug, None)]
    monkeypatch.setenv(user_errors.TRACEBACK_ENV, "0")  # off, like unset
    excepthook(DataValidationError, DataValidationError("bad"), None)
    assert len(calls) == 1
    monkeypatch.setenv(user_errors.TRACEBACK_ENV, "1")
    refused = DataValidationError("bad")
    excepthook(DataValidationError, refused, None)
    assert calls[-1] == (DataValidationError, refused, None)
    assert "Traceback" not in capsys.readouterr().err


def test_an_unknown_pipeline_name_lists_the_projects_pipelines(monkeypatch):
    """Kedro imports only the folders `--pipelines` names; a typo is not a broken import."""
    from bma_quant import pipeline_registry

    def kedro_find(raise_errors):  # what find_pipelines raises for a folder that does not exist
        raise ImportError("An error occurred while importing the 'bma_quant.pipelines.foo' "
                          "module.")

    monkeypatch.setattr(pipeline_registry, "find_pipelines", kedro_find)
    with pytest.raises(pipeline_registry.UnknownPipelineError,
                       match=r"no pipeline 'foo': the project's pipelines are base_models, "
                             r"data_processing, evaluation"):
        pipeline_registry.register_pipelines()
    assert user_errors.is_user_error(pipeline_registry.UnknownPipelineError("x"))

    def broken(raise_errors):  # an existing folder that fails to import keeps its traceback
        raise ImportError("An error occurred while importing the 'bma_quant.pipelines.stacking' "
                          "module.")

    monkeypatch.setattr(pipeline_registry, "find_pipelines", broken)
    with pytest.raises(ImportError, match="stacking"):
        pipeline_registry.register_pipelines()


def test_kedros_own_error_for_an_unknown_pipeline_is_recognised(monkeypatch):
    """The same through Kedro 1.7's find_pipelines asked for a folder that does not exist."""
    from kedro.framework.project import configure_project, find_pipelines

    from bma_quant import pipeline_registry

    configure_project("bma_quant")
    monkeypatch.setattr(pipeline_registry, "find_pipelines", lambda raise_errors: find_pipelines(
        raise_errors=raise_errors, pipelines_to_find=["nosuch"]))
    with pytest.raises(pipeline_registry.UnknownPipelineError, match="no pipeline 'nosuch'"):
        pipeline_registry.register_pipelines()


def test_a_run_stopped_by_a_signal_ends_in_one_block(hook, capsys, monkeypatch):
    """Ctrl-C ended in a framework traceback through pluggy and Kedro, also when Kedro wrapped
    the interruption in a DatasetError (the signal landed in a save)."""
    from kedro.io.core import DatasetError

    from bma_quant.run_hooks.interrupts import RunInterrupted

    monkeypatch.delenv(user_errors.TRACEBACK_ENV, raising=False)
    excepthook, calls = hook
    stop = RunInterrupted("run interrupted by SIGINT")
    try:
        raise DatasetError("Failed while saving data to dataset") from stop
    except DatasetError as wrapped:
        excepthook(DatasetError, wrapped, None)
    err = capsys.readouterr().err
    assert calls == [] and "RunInterrupted: run interrupted by SIGINT" in err
    assert "nothing of this run was promoted" in err and "Traceback" not in err


def test_an_interrupted_trial_shows_no_traceback_on_the_console_but_keeps_it_in_the_log():
    """Optuna logs 'Trial 8 failed ... RunInterrupted' from a child logger with the traceback of
    wherever the signal landed; through real logging, the console shows the message only and
    info.log keeps the traceback. A real failure keeps its traceback on the console too."""
    import io
    import logging

    import optuna

    from bma_quant import logging_filters
    from bma_quant.run_hooks.interrupts import RunInterrupted

    console_text, file_text = io.StringIO(), io.StringIO()
    console, info_file = logging.StreamHandler(console_text), logging.StreamHandler(file_text)
    console.set_name("console")
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(console)
    root.addHandler(info_file)
    try:
        logging_filters.install()
        logging_filters.route_optuna_records()  # as a run sets it up (not left to other tests)
        child = logging.getLogger("optuna.study._optimize")
        for error in (RunInterrupted("run interrupted by SIGINT"), ValueError("bad input")):
            try:
                raise error
            except Exception:
                child.warning("Trial 8 failed because of the following error: %r", error,
                              exc_info=True)
    finally:  # leave Optuna as other tests expect it
        root.removeHandler(console)
        root.removeHandler(info_file)
        optuna.logging.disable_propagation()
        optuna.logging.enable_default_handler()
    shown, logged = console_text.getvalue(), file_text.getvalue()
    assert "WARNING Trial 8 failed because of the following error: RunInterrupted" in shown
    assert shown.count("Traceback") == 1 and "ValueError: bad input" in shown
    assert logged.count("Traceback") == 2 and "RunInterrupted: run interrupted" in logged


def test_a_params_value_yaml_cannot_read_says_to_quote_it(hook, capsys, monkeypatch):
    """Kedro reads each --params value as YAML before the project runs: `op=>=` is a YAML block
    scalar's start, and the user saw an 18-frame traceback."""
    import click
    from kedro.framework.cli.utils import _split_params

    monkeypatch.delenv(user_errors.TRACEBACK_ENV, raising=False)
    excepthook, calls = hook
    context = click.Context(click.Command("run"))
    option = click.Option(["--params"])
    with pytest.raises(Exception) as raised:
        _split_params(context, option, "evaluation.gates.checks.sharpe.op=>=")
    excepthook(raised.type, raised.value, raised.tb)
    err = capsys.readouterr().err
    assert calls == [] and "A --params value could not be read" in err
    assert "op='>='" in err and "Traceback" not in err
    assert _split_params(context, option, "evaluation.gates.checks.sharpe.op='>='") == {
        "evaluation": {"gates": {"checks": {"sharpe": {"op": ">="}}}}}
    other = ValueError("not from --params")  # a YAML error elsewhere is not this one
    excepthook(ValueError, other, raised.tb)
    assert calls[-1][1] is other


def test_an_environment_that_is_not_a_folder_is_named_with_the_ones_there(hook, capsys,
                                                                           monkeypatch, tmp_path):
    """`kedro run --env smok` ended in Kedro's 30-line traceback of MissingConfigException."""
    from kedro.config import MissingConfigException

    monkeypatch.delenv(user_errors.TRACEBACK_ENV, raising=False)
    for name in ("base", "local", "smoke"):
        (tmp_path / "conf" / name).mkdir(parents=True)
    missing = tmp_path / "conf" / "smok"
    error = MissingConfigException("Given configuration path either does not exist or is not a "
                                   f"valid directory: {missing}")
    excepthook, calls = hook
    excepthook(type(error), error, None)
    err = capsys.readouterr().err
    assert calls == [] and "Traceback" not in err
    assert (f"No configuration environment 'smok': {missing} is not a folder. --env names a "
            f"folder of {tmp_path / 'conf'} (base, local, smoke)") in err
    other = MissingConfigException("No files of YAML or JSON format found in x")
    excepthook(type(other), other, None)
    assert calls  # another config error keeps its traceback
