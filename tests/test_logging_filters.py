"""MLflow's notices about the project's chosen model formats stay out of the console."""

import logging

from bma_quant import logging_filters


def _record(name, message, level=logging.WARNING):
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_the_console_handler_drops_only_mlflows_format_notices():
    console = logging.StreamHandler()
    console.set_name("console")
    other = logging.StreamHandler()
    other.set_name("info_file")
    root = logging.getLogger()
    root.addHandler(console)
    root.addHandler(other)
    try:
        logging_filters.install()
        logging_filters.install()  # once per handler, however often settings are imported
        assert len(console.filters) == 2 and other.filters == []
        notice = ("Saving scikit-learn models in the pickle or cloudpickle format requires "
                  "exercising caution because these formats rely on ...")
        assert not console.filter(_record("mlflow.sklearn", notice))
        assert not console.filter(_record("mlflow.pyfunc", "Passing a Python object as "
                                          "`python_model` causes it to be serialized using "
                                          "CloudPickle, it requires ..."))
        assert console.filter(_record("mlflow.pyfunc", "Failed to enforce schema"))
        assert console.filter(_record("bma_quant.x", notice))  # ours always pass
        assert other.filter(_record("mlflow.sklearn", notice))  # info.log keeps everything
    finally:
        root.removeHandler(console)
        root.removeHandler(other)


def test_a_warning_the_console_showed_in_the_run_is_not_shown_again():
    """A check that runs per fold or per recomputation said the same thing six times; the
    console says it once a run (info.log keeps every record)."""
    repeats = logging_filters.RepeatedWarnings()
    floor = "at most 8 name(s) have a return on any date, fewer than min_cross_section (10)"
    assert repeats.filter(_record("bma_quant.core.regimes.regime_evidence", floor))
    assert not repeats.filter(_record("bma_quant.core.regimes.regime_evidence", floor))
    assert repeats.filter(_record("bma_quant.core.regimes.regime_evidence", floor + "!"))
    assert repeats.filter(_record("bma_quant.other", floor))  # another logger's own say
    errors = [_record("bma_quant.x", "failed", logging.ERROR) for _ in range(2)]
    assert all(repeats.filter(r) for r in errors)  # errors are never held back
    bad = logging.LogRecord("bma_quant.z", logging.WARNING, __file__, 1, "%d", (None,), None)
    assert repeats.filter(bad)  # a bad format is the handler's to report, not a crash here
    logging_filters._REPEATS.add(repeats)  # as install() registers a console's own
    assert repeats.filter(_record("bma_quant.y", "once a run"))
    assert not repeats.filter(_record("bma_quant.y", "once a run"))
    logging_filters.new_run()
    assert repeats.filter(_record("bma_quant.y", "once a run"))
    assert repeats.filter(_record("bma_quant.core.regimes.regime_evidence", floor))


def test_optuna_trial_lines_reach_info_log_not_the_console(capsys):
    """Optuna printed '[I ...] Trial N finished ...' to stderr on every trial through its own
    handler. Routed, its records reach the project's handlers (the INFO file keeps them, the
    console handler at WARNING drops them), also after something restored Optuna's handler (its
    progress bar does when a study ends: routing runs again after each study)."""
    import io

    import optuna

    optuna_logger = logging.getLogger("optuna")
    info_file = logging.StreamHandler(io.StringIO())
    info_file.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(info_file)
    try:
        for _ in range(2):
            logging_filters.route_optuna_records()
            study = optuna.create_study()
            study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
            optuna.logging.enable_default_handler()  # as Optuna's own bar does at its end
        logging_filters.route_optuna_records()
        out = capsys.readouterr()
        assert "Trial 0 finished" not in out.out + out.err
        assert info_file.stream.getvalue().count("Trial 0 finished") == 2
        assert optuna_logger.propagate
        assert not [h for h in optuna_logger.handlers if type(h) is logging.StreamHandler]
    finally:  # leave Optuna as other tests expect it
        root.removeHandler(info_file)
        optuna.logging.disable_propagation()
        optuna.logging.enable_default_handler()


def test_kedros_node_failure_line_is_dropped_for_a_user_error_only():
    """A refused input is said once, at the end of the run: Kedro's "Node ... failed with error"
    line (logged inside its `except`) is left out of the console for it, kept for a bug."""
    from bma_quant.core.data.schema import DataValidationError

    notices = logging_filters.InfoLogOnlyNotices()
    record = _record("kedro.pipeline.node", "Node %s failed with error: \n%s", logging.ERROR)
    try:
        raise DataValidationError("Input file not found: x.csv")
    except DataValidationError:
        assert not notices.filter(record)
    try:
        raise ValueError("a bug")
    except ValueError:
        assert notices.filter(record)
    assert notices.filter(record)  # outside any handler
    hint = _record("kedro.runner", "No nodes ran. Repeat the previous command to attempt a new "
                                   "run.")
    setup = _record("mlflow.store.db.utils", "Creating initial MLflow database tables...",
                    logging.INFO)
    assert not notices.filter(hint) and not notices.filter(setup)


def test_no_untyped_predict_notice_at_start_and_other_warnings_still_show(tmp_path, monkeypatch):
    """kedro-mlflow's KedroPipelineModel made MLflow print a yellow 'Add type hints' warning at
    the top of every run; importing the settings must not, and any other warning raised during
    the quiet import is still shown."""
    import subprocess
    import sys
    import warnings

    start = subprocess.run([sys.executable, "-c", "import bma_quant.settings"],
                           capture_output=True, text=True, check=True)
    assert logging_filters.UNTYPED_PREDICT_NOTICE not in start.stderr

    (tmp_path / "noisy_module_for_test.py").write_text(
        "import warnings\n"
        "warnings.warn('something else', UserWarning)\n"
        f"warnings.warn('\\033[33m{logging_filters.UNTYPED_PREDICT_NOTICE} ...', UserWarning)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = warnings.showwarning
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        logging_filters.import_without_untyped_predict_notice("noisy_module_for_test")
    assert [str(w.message) for w in shown] == ["something else"]
    assert warnings.showwarning is before
