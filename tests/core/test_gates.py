"""Production-readiness gates: pass, fail, missing values and the report's shape."""

import json
import math

import pytest

from bma_quant.core.evaluation.gates import (
    DEFAULT_CHECKS,
    check_gate,
    evaluate_gates,
    format_gate_report,
)

GOOD = {"ic": 0.05, "ir": 0.9, "sharpe": 1.6, "max_drawdown": 0.12, "n_dates": 400}


def test_all_checks_pass_on_good_metrics():
    report = evaluate_gates(GOOD)
    assert report["passed"] and report["verdict"] == "pass" and report["failed"] == []
    assert [c["name"] for c in report["checks"]] == list(DEFAULT_CHECKS)
    json.dumps(report)  # JSON-serialisable as written to gate_report.json


# (metric, value on the seed's threshold, a value just on the passing side, check name): the
# strict checks fail on the threshold itself, min_test_dates one date below it
BOUNDARIES = [("ic", 0.02, 0.0201, "ic"), ("ir", 0.5, 0.501, "ir"),
              ("sharpe", 1.0, 1.001, "sharpe"), ("max_drawdown", 0.2, 0.199, "max_drawdown"),
              ("n_dates", 249, 250, "min_test_dates")]


@pytest.mark.parametrize("metric, value, inside, failed", BOUNDARIES)
def test_each_threshold_fails_at_the_boundary(metric, value, inside, failed):
    report = evaluate_gates({**GOOD, metric: value})
    assert not report["passed"] and report["failed"] == [failed]
    check = next(c for c in report["checks"] if c["name"] == failed)
    assert check["value"] == pytest.approx(value) and not check["passed"]
    assert evaluate_gates({**GOOD, metric: inside})["passed"]  # just past the line passes


def test_missing_or_nan_metric_fails():
    report = evaluate_gates({**GOOD, "sharpe": math.nan, "ir": None})
    assert set(report["failed"]) == {"sharpe", "ir"}
    assert next(c for c in report["checks"] if c["name"] == "sharpe")["value"] is None


def test_custom_checks_and_bad_operator():
    checks = {"rank": {"metric": "rank_ic", "op": ">=", "threshold": 0.01}}
    assert evaluate_gates({"rank_ic": 0.01}, checks)["passed"]
    with pytest.raises(ValueError, match="op must be"):
        check_gate("x", {"metric": "ic", "op": "!=", "threshold": 0}, {"ic": 1})
    with pytest.raises(ValueError):
        evaluate_gates(GOOD, {})


def test_format_lists_every_check():
    text = format_gate_report(evaluate_gates({**GOOD, "sharpe": 0.5}))
    assert "FAIL" in text and "[FAIL] sharpe: 0.5 > 1" in text and text.count("[PASS]") == 4


def test_overfitting_gates_are_off_unless_a_threshold_is_set():
    from bma_quant.core.evaluation.gates import overfitting_checks

    assert overfitting_checks({"max_pbo": None, "min_deflated_sharpe": None}) == {}
    checks = overfitting_checks({"max_pbo": 0.5, "min_deflated_sharpe": 0.95})
    report = evaluate_gates({"pbo": 0.6, "deflated_sharpe": 0.97}, checks)
    assert report["failed"] == ["max_pbo"]
    assert evaluate_gates({"pbo": 0.5, "deflated_sharpe": None}, checks)["failed"] == [
        "min_deflated_sharpe"]  # not computed is not a pass
