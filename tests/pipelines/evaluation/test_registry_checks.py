"""The registry step refuses a chain that does not reproduce the pipeline's test predictions,
and names why; the promotion candidate carries the development score that decides it."""

from bma_quant.pipelines.evaluation.registry_nodes import (
    _registry_candidate,
    _reproduction_mismatch,
)


def test_a_reproducing_chain_passes_and_each_kind_of_mismatch_is_named():
    same = {"rows_matched": 100, "rows_pipeline": 100, "max_abs_diff": 1e-7}
    assert _reproduction_mismatch(same, 1e-4) is None
    missing = {**same, "rows_matched": 90}
    assert _reproduction_mismatch(missing, 1e-4) == "it predicts 90 of the pipeline's 100 test rows"
    off = {**same, "max_abs_diff": 0.02, "largest_diffs": ["C142@2023-11-30 0.02"]}
    reason = _reproduction_mismatch(off, 1e-4)
    assert reason.startswith("max |diff| 0.02 > 0.0001 (largest: C142@2023-11-30 0.02)")
    assert "warm-up" in reason
    nothing = {"rows_matched": 0, "rows_pipeline": 0, "max_abs_diff": 0.0}
    assert _reproduction_mismatch(nothing, 1e-4) is not None  # no rows is no reproduction


def test_a_dev_start_that_cut_the_history_is_named_as_the_cause():
    """The pipeline's features started at dev_start, the chain's warm-up read the file from
    before it: the reason says so instead of listing the usual suspects."""
    import pandas as pd

    from bma_quant.pipelines.evaluation.registry_nodes import _cut_history_cause

    class Chain:
        data_start, warmup_days = None, 672

    raw = pd.DataFrame({"date": pd.bdate_range("2020-01-30", periods=5)})
    cause = _cut_history_cause(Chain(), raw, {"dev_start": "2021-06-01"})
    assert cause.startswith("periods.dev_start (2021-06-01) is the likely cause: the chain's "
                            "warm-up of 672 dates reads the file from 2020-01-30")
    off = {"rows_matched": 100, "rows_pipeline": 100, "max_abs_diff": 0.2, "largest_diffs": []}
    assert _reproduction_mismatch(off, 1e-4, cause).endswith("set it earlier (or null)")
    assert _cut_history_cause(Chain(), raw, {"dev_start": "2019-01-02"}) is None  # inside
    Chain.data_start = "2020-01-30"  # the pipeline had the file's whole history
    assert _cut_history_cause(Chain(), raw, {"dev_start": "2021-06-01"}) is None


def test_the_candidate_carries_gates_test_period_and_development_score():
    gates = {"passed": False, "failed": ["rank_ic"],
             "test_period": {"test_start": "2021-01-04", "test_end": "2022-12-30"}}
    split = {"dev_start": "2010-01-04", "dev_end": "2020-12-31",
             "test_start": "2021-01-04", "test_end": "2022-12-30"}
    candidate = _registry_candidate(gates, {"value": 0.031, "folds": "abc"}, split)
    assert (candidate.gates_passed, candidate.failed_gates) == (False, ("rank_ic",))
    assert (candidate.test_start, candidate.test_end) == ("2021-01-04", "2022-12-30")
    assert (candidate.metric, candidate.value) == ("stacking.final.oos_rank_ic", 0.031)
    assert (candidate.dev_start, candidate.dev_end, candidate.folds) == (
        "2010-01-04", "2020-12-31", "abc")


def test_the_chain_names_the_run_that_fitted_its_base_learners(monkeypatch):
    """After layers run alone, the run that built the chain (evaluation) is not the one that
    fitted the models: each learner carries its fitting run's id, and the chain records it."""
    from types import SimpleNamespace

    import mlflow

    from bma_quant.pipelines.base_models.nodes import FITTED_IN_RUN, _stamp_fitting_run
    from bma_quant.pipelines.evaluation.registry_nodes import _fitting_run

    models = {"a": SimpleNamespace(), "b": SimpleNamespace(), "c": object()}
    monkeypatch.setattr(mlflow, "active_run", lambda: None)
    _stamp_fitting_run(models)  # no active run: nothing said
    assert _fitting_run(models) is None
    monkeypatch.setattr(mlflow, "active_run",
                        lambda: SimpleNamespace(info=SimpleNamespace(run_id="run-1")))
    _stamp_fitting_run(models)  # an object that takes no attribute is left unnamed
    assert _fitting_run(models) == "run-1"
    setattr(models["b"], FITTED_IN_RUN, "run-2")
    assert _fitting_run(models) is None  # two runs: not one answer
    assert _fitting_run({"c": object()}) is None
