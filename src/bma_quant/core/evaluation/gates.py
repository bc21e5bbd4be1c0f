"""Production-readiness gates (seed sections 3.2 and 9.3, DESIGN section 4).

A gate is one comparison of an evaluation metric with a threshold, e.g. ``ic > 0.02``. The
report lists every check with its value, threshold and verdict; the model passes only when every
check passes. A missing or non-finite metric fails its check (an undefined Sharpe is not a good
one), so a degenerate model can never slip through.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

# The seed's targets (section 9.3) plus a minimum sample size; `parameters_evaluation.yml` holds
# the values actually used.
DEFAULT_CHECKS: dict[str, dict[str, Any]] = {
    "ic": {"metric": "ic", "op": ">", "threshold": 0.02},
    "ir": {"metric": "ir", "op": ">", "threshold": 0.5},
    "sharpe": {"metric": "sharpe", "op": ">", "threshold": 1.0},
    "max_drawdown": {"metric": "max_drawdown", "op": "<", "threshold": 0.20},
    "min_test_dates": {"metric": "n_dates", "op": ">=", "threshold": 250},
}

# Optional gates on how much of the result is luck (core.evaluation.overfitting), off unless a threshold is
# set: parameter name -> the check it adds.
OVERFITTING_GATES: dict[str, dict[str, str]] = {
    "max_pbo": {"metric": "pbo", "op": "<="},
    "min_deflated_sharpe": {"metric": "deflated_sharpe", "op": ">="},
}


def overfitting_checks(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The checks of the overfitting gates whose threshold ``spec`` sets (null = off)."""
    return {name: {**check, "threshold": float(spec[name])}
            for name, check in OVERFITTING_GATES.items() if spec.get(name) is not None}


@dataclass(frozen=True)
class GateCheck:
    """One check: ``value <op> threshold``; ``passed`` is False for a missing/non-finite value."""

    name: str
    metric: str
    op: str
    threshold: float
    value: float | None
    passed: bool


def check_gate(name: str, spec: Mapping[str, Any], metrics: Mapping[str, Any]) -> GateCheck:
    """Evaluate one gate spec ``{"metric", "op", "threshold"}`` against a metric dict."""
    op = str(spec.get("op", ">"))
    if op not in OPERATORS:
        raise ValueError(f"gate {name!r}: op must be one of {sorted(OPERATORS)}, got {op!r}")
    metric = str(spec.get("metric", name))
    threshold = float(spec["threshold"])
    raw = metrics.get(metric)
    value = float(raw) if raw is not None else math.nan
    passed = math.isfinite(value) and bool(OPERATORS[op](value, threshold))
    return GateCheck(
        name=name,
        metric=metric,
        op=op,
        threshold=threshold,
        value=value if math.isfinite(value) else None,
        passed=passed,
    )


def evaluate_gates(
    metrics: Mapping[str, Any],
    checks: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    model: str = "final",
    scope: str = "all",
) -> dict[str, Any]:
    """The gate report of one model's metrics (JSON-serialisable).

    Keys: ``model``, ``scope``, ``passed`` (all checks pass), ``verdict`` ("pass"/"fail"),
    ``failed`` (names of failed checks) and ``checks`` (one dict per check, in spec order).
    """
    specs = DEFAULT_CHECKS if checks is None else checks
    if not specs:
        raise ValueError("at least one gate check is required")
    results = [check_gate(name, spec, metrics) for name, spec in specs.items()]
    passed = all(c.passed for c in results)
    return {
        "model": model,
        "scope": scope,
        "passed": passed,
        "verdict": "pass" if passed else "fail",
        "failed": [c.name for c in results if not c.passed],
        "checks": [asdict(c) for c in results],
    }


def format_gate_report(report: Mapping[str, Any]) -> str:
    """One line per check, for logs: ``[PASS] sharpe: 1.23 > 1`` ."""
    lines = [f"gates for {report['model']} ({report['scope']}): {report['verdict'].upper()}"]
    for check in report["checks"]:
        value = "n/a" if check["value"] is None else f"{check['value']:.4g}"
        mark = "PASS" if check["passed"] else "FAIL"
        lines.append(
            f"  [{mark}] {check['name']}: {value} {check['op']} {check['threshold']:g}"
        )
    return "\n".join(lines)
