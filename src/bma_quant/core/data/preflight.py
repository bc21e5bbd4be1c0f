"""Pre-flight checks: everything about a run that can be refused before any output is written.

Each check raises `PreflightError` (a ValueError) with one message naming the parameter and the
value that is wrong. The run-level hook calls them before the first node (parameters, learner
names) and right after the raw panel is read (universe size, dates for the CV layout).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bma_quant.core.data import cv, split
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.ensemble.selection import SelectionRule


class PreflightError(ValueError):
    """A run refused before it writes anything."""


@dataclass(frozen=True)
class Bound:
    """Valid domain of one numeric parameter, addressed by its dotted path."""

    path: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: the value must be > low (not >=)
    high_open: bool = False

    def violation(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{self.path} must be a number, got {value!r}"
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        if low_ok and high_ok:
            return None
        lo = "" if self.low is None else f"{'(' if self.low_open else '['}{self.low:g}"
        hi = "" if self.high is None else f"{self.high:g}{')' if self.high_open else ']'}"
        domain = (f"in {lo}, {hi}" if lo and hi else f"{'>' if self.low_open else '>='} {self.low:g}"
                  if lo else f"{'<' if self.high_open else '<='} {self.high:g}")
        return f"{self.path} must be {domain}, got {value!r}"


# The domains of the parameters whose out-of-range values would otherwise fail deep in a layer.
# A missing parameter is not checked here (the layer that needs it says so).
BOUNDS = (
    Bound("periods.test_fraction", 0.0, 1.0, low_open=True, high_open=True),
    Bound("cv.n_splits", 1),
    Bound("cv.min_train_days", 1),
    Bound("processing.coverage_threshold", 0.0, 1.0, low_open=True),
    Bound("processing.ffill_limit", 0),
    Bound("processing.split_detection.max_abs_return", 0.0, low_open=True),
    Bound("processing.split_detection.tolerance", 0.0, 1.0, high_open=True),
    Bound("processing.split_detection.confirm_days", 0),
    Bound("processing.strict_active_days", 1),
    Bound("processing.split_detection.unit_tolerance", 0.0, 1.0, high_open=True),
    Bound("memory.target_usage", 0.0, 1.0, low_open=True),
    Bound("memory.max_threshold", 0.0, 1.0, low_open=True),
    Bound("run.timeout_seconds", 0.0, low_open=True),
    Bound("base_models.tuning.n_trials", 1),
    Bound("evaluation.backtest.n_quantiles", 2),
    Bound("evaluation.backtest.cost_bps", 0.0),
    Bound("inference.history_days", 1),
    Bound("inference.portfolio.n_quantiles", 2),
    Bound("inference.portfolio.gross_exposure", 0.0, low_open=True),
    Bound("inference.portfolio.max_weight", 0.0, low_open=True),
)
# Parameters that take one of a few words (dotted path -> allowed values).
CHOICES = {
    "cv.window": ("expanding", "sliding"),
    "inference.model_source": ("local", "registry"),
    "inference.portfolio.style": ("long_short", "long_only"),
}

# Parameters that say how many names a date needs; the largest one binds the universe size.
UNIVERSE_KEYS = ("min_names", "n_quantiles")
MIN_NAMES_FLOOR = 2  # a cross-sectional correlation needs two names


def lookup(params: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None when any part is missing."""
    node: Any = params
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def find_keys(params: Mapping[str, Any], keys: Iterable[str], prefix: str = "") -> dict[str, Any]:
    """Every leaf whose key is one of `keys`, by dotted path (e.g. `evaluation.metrics.min_names`)."""
    keys = tuple(keys)
    found: dict[str, Any] = {}
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found.update(find_keys(value, keys, f"{path}."))
        elif key in keys:
            found[path] = value
    return found


def check_parameters(params: Mapping[str, Any]) -> None:
    """Numeric parameters in range, temporal config leak-free, min_names large enough."""
    problems = [
        problem for bound in BOUNDS
        if (value := lookup(params, bound.path)) is not None
        and (problem := bound.violation(value)) is not None
    ]
    problems += [
        problem for path, value in find_keys(params, ("min_names",)).items()
        if (problem := Bound(path, MIN_NAMES_FLOOR).violation(value)) is not None
    ]
    target, cap = lookup(params, "memory.target_usage"), lookup(params, "memory.max_threshold")
    if not problems and target is not None and cap is not None and target > cap:
        problems.append(f"memory.target_usage ({target}) must not exceed memory.max_threshold ({cap})")
    problems += [
        f"{path} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
        for path, choices in CHOICES.items()
        if (value := lookup(params, path)) is not None and value not in choices
    ]
    if problems:
        raise PreflightError("Invalid parameter(s): " + "; ".join(problems))
    if lookup(params, "temporal") is not None:
        try:
            TemporalConfig.from_params(params["temporal"])
        except ValueError as exc:
            raise PreflightError(f"Invalid parameter(s): temporal: {exc}") from exc
    selection = lookup(params, "stacking.selection")
    if selection is not None:
        try:  # a half-set or misspelt prior would otherwise be ignored after hours of training
            SelectionRule.from_params(selection, nw_lag=1,
                                      methods=lookup(params, "stacking.methods"))
        except ValueError as exc:
            raise PreflightError(f"Invalid parameter(s): {exc}") from exc


def check_learners(requested: Mapping[str, Any], known: Iterable[str]) -> None:
    """Every learner named in parameters is registered; `requested` maps parameter path -> name(s)."""
    known = sorted(known)
    for path, names in requested.items():
        if names is None:
            continue
        listed = [names] if isinstance(names, str) else list(names)
        if path == "base_models.learners" and not listed:
            raise PreflightError("base_models.learners is empty: name at least one learner")
        unknown = [n for n in listed if n not in known]
        if unknown:
            raise PreflightError(
                f"{path}: unknown learner(s) {', '.join(map(repr, unknown))}; registered: {known}"
            )


def check_universe(n_tickers: int, params: Mapping[str, Any]) -> None:
    """The panel has at least as many names as the largest per-date requirement in parameters."""
    needs = {path: int(v) for path, v in find_keys(params, UNIVERSE_KEYS).items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
    if not needs:
        return
    path, need = max(needs.items(), key=lambda kv: kv[1])
    if n_tickers < need:
        raise PreflightError(
            f"The panel has {n_tickers} ticker(s) but {path} needs at least {need} names per date; "
            "give a wider universe or lower that parameter."
        )


def check_cv_layout(dates, params: Mapping[str, Any]) -> None:
    """The dates split into development | gap | test and the development dates hold the purged
    folds, with the same functions data_processing uses (core.data.split, core.data.cv): a short panel
    passes when its layout scales down to the floor (`cv.short_panel`)."""
    temporal = TemporalConfig.from_params(params["temporal"])
    periods, cv_params = params["periods"], params["cv"]
    calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    try:
        dates_split = split.split_dates(
            calendar, gap_days=temporal.cv_gap_days, test_fraction=float(periods["test_fraction"]),
            test_start=periods.get("test_start"), dev_start=periods.get("dev_start"),
        )
        dev = calendar[(calendar >= pd.Timestamp(dates_split["dev_start"]))
                       & (calendar <= pd.Timestamp(dates_split["dev_end"]))]
        requested, floor, adapt = cv.layout_params(cv_params)
        layout, _ = cv.fit_cv_layout(len(dev), requested, temporal.cv_gap_days, floor, adapt)
        cv.PurgedWalkForwardSplit(
            n_splits=layout.n_splits, temporal=temporal, min_train_days=layout.min_train_days,
            window=cv_params["window"], max_train_days=cv_params.get("max_train_days"),
        ).date_folds(dev)
    except ValueError as exc:
        raise PreflightError(
            f"The panel's {len(calendar)} dates ({calendar.min().date()}..{calendar.max().date()}) "
            f"are not enough for the split and CV layout (periods.*, cv.n_splits="
            f"{cv_params['n_splits']}, cv.min_train_days={cv_params['min_train_days']}): {exc}"
        ) from exc


# metric of the evaluation table that counts scored test dates (the `min_test_dates` gate's)
TEST_DATES_METRIC = "n_dates"


def unreachable_test_date_gates(dates, params: Mapping[str, Any]) -> list[str]:
    """Gates on the number of scored test dates that this split can never pass, as messages.

    The last d + h test dates have no label, so at most ``test_dates - (d + h)`` dates are
    scored; a gate asking for more always fails, whatever the models do. Not an error (the run
    still measures the models), but said before anything is trained."""
    checks = lookup(params, "evaluation.gates.checks") or {}
    gated = {name: spec for name, spec in checks.items()
             if isinstance(spec, Mapping) and spec.get("metric") == TEST_DATES_METRIC}
    if not gated or lookup(params, "periods") is None or lookup(params, "temporal") is None:
        return []
    temporal = TemporalConfig.from_params(params["temporal"])
    periods = params["periods"]
    calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    try:
        dates_split = split.split_dates(
            calendar, gap_days=temporal.cv_gap_days, test_fraction=float(periods["test_fraction"]),
            test_start=periods.get("test_start"), dev_start=periods.get("dev_start"))
    except ValueError:
        return []  # check_cv_layout refuses this split with its own message
    scorable = max(0, int(dates_split["test_dates"]) - temporal.label_span)
    warnings = []
    for name, spec in gated.items():
        op, threshold = str(spec.get("op", ">=")), float(spec["threshold"])
        if (scorable >= threshold) if op == ">=" else (scorable > threshold):
            continue
        warnings.append(
            f"evaluation.gates.checks.{name} needs {TEST_DATES_METRIC} {op} {threshold:g}, but the "
            f"test period ({dates_split['test_start']}..{dates_split['test_end']}, "
            f"{dates_split['test_dates']} dates, the last {temporal.label_span} without a label) "
            f"can score at most {scorable}: the gates can never pass. Lengthen the test period "
            f"(periods.test_fraction / periods.test_start) or lower the threshold.")
    return warnings
