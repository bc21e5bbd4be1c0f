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


def test_optuna_prints_no_trial_lines_also_with_its_progress_bar(capsys):
    """Optuna printed '[I ...] Trial N finished ...' on every trial; its progress bar also puts
    its own stderr handler back when a study ends, so the routing is repeated after each study
    (as the base_models node does). Warnings still reach the project's handlers."""
    import optuna

    optuna_logger = logging.getLogger("optuna")
    try:
        for _ in range(2):
            logging_filters.route_optuna_records()
            study = optuna.create_study()
            study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2,
                           show_progress_bar=True)
        logging_filters.route_optuna_records()
        out = capsys.readouterr()
        assert "Trial 0 finished" not in out.out + out.err
        assert optuna_logger.propagate
        assert not [h for h in optuna_logger.handlers if type(h) is logging.StreamHandler]
        assert optuna_logger.isEnabledFor(logging.WARNING)
    finally:  # leave Optuna as other tests expect it
        optuna.logging.set_verbosity(optuna.logging.INFO)
        optuna.logging.disable_propagation()
        optuna.logging.enable_default_handler()
