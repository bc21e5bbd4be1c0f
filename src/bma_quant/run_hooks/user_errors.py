"""A refused input ends `kedro run` with its message, not a 70-line framework traceback.

Errors that describe the user's file, parameters or request (bad data, a parameter out of range,
too little history, an unreachable tracking server, ...) are already written with what is wrong
and what to do; the stack through click, Kedro's runner and the node adds nothing for the user.
`install()` replaces `sys.excepthook` so that such an error, left uncaught at the top of the
process, prints one block: the error type and its message (exit status 1 as before). Any other
exception, a bug, keeps its full traceback; `BMA_QUANT_TRACEBACK=1` shows it for every error.
The run's own failure handling (MLflow FAILED, staged outputs discarded, run_summary.failed.json)
has already happened when the hook runs.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

TRACEBACK_ENV = "BMA_QUANT_TRACEBACK"


def _user_error_types() -> tuple[type[BaseException], ...]:
    # imported here: the hook must not make `settings` import pandas-heavy modules eagerly
    from bma_quant.config_loader import ConfigFileError
    from bma_quant.core.data.cv import CVLayoutError
    from bma_quant.core.data.preflight import PreflightError
    from bma_quant.core.data.schema import DataValidationError
    from bma_quant.core.data.temporal import TemporalConfigError
    from bma_quant.core.models.training import NoBaseModelSucceeded
    from bma_quant.core.models.tuning import StudyMismatch, TuningTimedOut
    from bma_quant.hooks import MemoryLimitExceeded
    from bma_quant.pipeline_registry import UnknownPipelineError
    from bma_quant.run_hooks.mlflow_connection import MlflowServerUnreachable
    from bma_quant.run_hooks.staging import AnotherRunInProgress, OutputFolderNotWritable
    from bma_quant.run_hooks.time_budget import RunTimeBudgetExceeded
    from bma_quant.serving.chain import ChainInputError, StaleChainError
    from bma_quant.serving.model_source import ModelSourceError

    return (DataValidationError, PreflightError, TemporalConfigError, CVLayoutError,
            ChainInputError, StaleChainError, ModelSourceError, MlflowServerUnreachable,
            OutputFolderNotWritable, RunTimeBudgetExceeded, UnknownPipelineError,
            MemoryLimitExceeded, StudyMismatch, TuningTimedOut, ConfigFileError,
            AnotherRunInProgress, NoBaseModelSucceeded)


def is_user_error(error: BaseException) -> bool:
    """A refused input, or a run stopped by Ctrl-C / SIGTERM (also when it reached the top
    wrapped in Kedro's DatasetError): its stack says nothing the message does not."""
    try:
        from bma_quant.run_hooks.interrupts import interruption_in

        return isinstance(error, _user_error_types()) or interruption_in(error) is not None
    except Exception:  # a broken import must not hide the original error
        return False


def short_report(error: BaseException) -> str:
    from bma_quant.run_hooks.interrupts import interruption_in

    stop = interruption_in(error)
    if stop is not None:
        return (f"\n{type(stop).__name__}: {stop}\n\n(nothing of this run was promoted; set "
                f"{TRACEBACK_ENV}=1 for the full traceback)\n")
    from bma_quant.run_hooks.staging import AnotherRunInProgress

    why = ("no node ran, no output was touched" if isinstance(error, AnotherRunInProgress)
           else "the run stopped on this input")
    return (f"\n{type(error).__name__}: {error}\n\n({why}; set "
            f"{TRACEBACK_ENV}=1 for the full traceback)\n")


def _raised_reading_params(error: BaseException, tb: TracebackType | None) -> bool:
    """A YAML error from Kedro's reading of `--params` (it parses each value as YAML: `op=>=`
    starts a YAML block scalar), before any of the project's code ran."""
    if type(error).__module__.split(".")[0] != "yaml":
        return False
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_split_params":
            return True
        tb = tb.tb_next
    return False


def params_report(error: BaseException) -> str:
    detail = " ".join(str(error).split())
    return ("\nA --params value could not be read: Kedro reads each value as YAML, and a value "
            "that starts with a YAML sign (>, |, *, &, !, %, @, `, a quote or a bracket) must be "
            "quoted inside the argument, e.g. --params \"evaluation.gates.checks.sharpe.op='>='\" "
            f"(YAML said: {detail}).\n\n(set {TRACEBACK_ENV}=1 for the full traceback)\n")


def _missing_environment(error: BaseException) -> str | None:
    """The folder `--env X` names does not exist (Kedro's MissingConfigException for conf/X):
    the folder's path, else None."""
    if type(error).__name__ != "MissingConfigException":
        return None
    text = str(error)
    marker = "does not exist or is not a valid directory: "
    return text.split(marker, 1)[1].strip() if marker in text else None


def environment_report(folder: str) -> str:
    from pathlib import Path

    conf = Path(folder).parent
    known = sorted(p.name for p in conf.iterdir() if p.is_dir()) if conf.is_dir() else []
    return (f"\nNo configuration environment {Path(folder).name!r}: {folder} is not a folder. "
            f"--env names a folder of {conf} ({', '.join(known) or 'none found'}).\n\n"
            f"(nothing ran; set {TRACEBACK_ENV}=1 for the full traceback)\n")


def _traceback_wanted() -> bool:
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _make_hook(previous):
    def hook(kind: type[BaseException], error: BaseException,
             tb: TracebackType | None) -> None:
        if _traceback_wanted():
            previous(kind, error, tb)
        elif _raised_reading_params(error, tb):
            sys.stderr.write(params_report(error))
        elif (folder := _missing_environment(error)) is not None:
            sys.stderr.write(environment_report(folder))
        elif is_user_error(error):
            sys.stderr.write(short_report(error))
        else:
            previous(kind, error, tb)

    hook.bma_quant_user_errors = True  # installed once, however often settings is imported
    return hook


def install() -> None:
    if not getattr(sys.excepthook, "bma_quant_user_errors", False):
        sys.excepthook = _make_hook(sys.excepthook)
