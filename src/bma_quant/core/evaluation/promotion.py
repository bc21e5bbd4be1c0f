"""When a newly registered model becomes the champion, and what its registry entry says.

A candidate becomes champion only when its gates pass AND it beats the current champion on one
stated test metric of the gated model, measured on the same test period. Two models tested on
different periods (other data, other split) are not comparable: the champion stays and the reason
says so. Higher is better for the compare metric (e.g. ``rank_ic``, ``sharpe``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# version tags that identify what a version was measured on (read back from the champion)
TEST_START, TEST_END = "test_start", "test_end"
COMPARE_METRIC, COMPARE_VALUE = "compare_metric", "compare_value"
# Metrics where a smaller value is the better model (drawdown as a positive loss, trading, luck).
LOWER_IS_BETTER = frozenset({"max_drawdown", "turnover", "pbo", "annual_volatility"})
# characters MLflow model names keep readable in URIs (models:/<name>@champion)
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class Candidate:
    """What a new version was measured on and how well it did."""

    gates_passed: bool
    failed_gates: tuple[str, ...]
    test_start: str | None
    test_end: str | None
    metric: str
    value: float | None

    def tags(self) -> dict[str, str]:
        return {TEST_START: str(self.test_start), TEST_END: str(self.test_end),
                COMPARE_METRIC: self.metric,
                COMPARE_VALUE: "nan" if self.value is None else repr(float(self.value))}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def registered_model_name(prefix: str, data_stem: str | None, explicit: str | None = None) -> str:
    """``explicit`` when given, else ``<prefix>-<data file stem>``: one registered model (and one
    champion) per data set, so a run on another file never replaces this one's champion."""
    if explicit:
        return str(explicit)
    if not data_stem:
        return prefix
    return f"{prefix}-{_UNSAFE.sub('_', data_stem).strip('_') or 'data'}"


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def decide(candidate: Candidate, champion: Mapping[str, str] | None,
           champion_version: str | None = None) -> Decision:
    """Promote ``candidate`` over the champion whose version tags are ``champion`` (None: there
    is no champion)?"""
    if not candidate.gates_passed:
        return Decision(False, "gates failed: " + (", ".join(candidate.failed_gates) or "?"))
    value = _finite(candidate.value)
    if value is None:
        return Decision(False, f"no finite test value of the compare metric {candidate.metric} "
                               f"({candidate.value}; is it in evaluation.gates.headline_metrics?)")
    if champion is None:
        return Decision(True, "gates passed and there is no champion yet")
    label = f"champion version {champion_version}" if champion_version else "the champion"
    period = (str(candidate.test_start), str(candidate.test_end))
    theirs = (champion.get(TEST_START), champion.get(TEST_END))
    if period != theirs:
        return Decision(False, f"not comparable with {label}: test period {period[0]}..{period[1]}"
                               f" differs from its {theirs[0]}..{theirs[1]}")
    if champion.get(COMPARE_METRIC) != candidate.metric:
        return Decision(False, f"not comparable with {label}: it was compared on "
                               f"{champion.get(COMPARE_METRIC)}, this one on {candidate.metric}")
    best = _finite(champion.get(COMPARE_VALUE))
    lower = candidate.metric in LOWER_IS_BETTER
    if best is not None and (value >= best if lower else value <= best):
        return Decision(False, f"gates passed but test {candidate.metric} {value:.4g} does not "
                               f"beat {label}'s {best:.4g}"
                               + (" (lower is better)" if lower else ""))
    shown = "n/a" if best is None else f"{best:.4g}"
    return Decision(True, f"gates passed and test {candidate.metric} {value:.4g} beats {label}'s "
                          f"{shown} on the same test period")


def version_description(*, data_path: str | None, data_fingerprint: str | None,
                        candidate: Candidate, headline: Mapping[str, Any], model: str,
                        decision: Decision) -> str:
    """The registry entry's description (Markdown): data, test period, gates, headline metrics,
    and why it is or is not the champion."""
    metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, int | float) else f"{k} {v}"
                        for k, v in headline.items() if v is not None)
    gates = "pass" if candidate.gates_passed else (
        "fail (" + ", ".join(candidate.failed_gates) + ")")
    return "\n".join([
        f"- data: `{data_path}` (sha256 {data_fingerprint or 'unknown'})",
        f"- test period: {candidate.test_start} .. {candidate.test_end}",
        f"- gates on `{model}`: {gates}",
        f"- test metrics of `{model}`: {metrics or 'none'}",
        f"- champion: {'yes' if decision.promote else 'no'}, {decision.reason}",
    ])
