"""The registry step refuses a chain that does not reproduce the pipeline's test predictions,
and names why; the promotion candidate carries the development score that decides it."""

from bma_quant.pipelines.evaluation.nodes import _registry_candidate, _reproduction_mismatch


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
