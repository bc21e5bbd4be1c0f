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
        assert len(console.filters) == 1 and other.filters == []
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


def test_optuna_trial_lines_reach_the_project_handlers_not_its_own(caplog):
    """Optuna printed '[I ...] Trial N finished ...' to stderr through its own handler on every
    trial; routed, its INFO records reach the root handlers (info.log keeps them; the console
    handler, at WARNING, drops them)."""
    import optuna

    optuna_logger = logging.getLogger("optuna")
    try:
        logging_filters.route_optuna_records()
        assert optuna_logger.propagate  # and Optuna's own stderr handler is gone
        assert not [h for h in optuna_logger.handlers if type(h) is logging.StreamHandler]
        with caplog.at_level(logging.INFO):
            study = optuna.create_study()
            study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
        assert "Trial 0 finished" in caplog.text
    finally:  # leave Optuna as other tests expect it
        optuna.logging.disable_propagation()
        optuna.logging.enable_default_handler()
