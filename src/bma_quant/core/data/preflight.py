"""Pre-flight checks: everything about a run that can be refused before any output is written.

Each check raises `PreflightError` (a ValueError) with one message naming the parameter and the
value that is wrong. The run-level hook calls them before the first node (parameters, learner
names) and right after the raw panel is read (universe size, dates for the CV layout).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bma_quant.core.data import cv, price_grid, split
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


# parameters that may also be a mapping {user column: value}, each value checked by its bound
PER_COLUMN = {"processing.factor_ffill_limit"}

# The domains of the parameters whose out-of-range values would otherwise fail deep in a layer.
# A missing parameter is not checked here (the layer that needs it says so).
BOUNDS = (
    Bound("periods.test_fraction", 0.0, 1.0, low_open=True, high_open=True),
    Bound("cv.n_splits", 1),
    Bound("cv.min_train_days", 1),
    Bound("processing.coverage_threshold", 0.0, 1.0, low_open=True),
    Bound("processing.ffill_limit", 0),
    Bound("processing.factor_ffill_limit", 0),
    Bound("processing.max_calendar_gap_days", 1),
    Bound("processing.long_absence_days", 1),
    Bound("processing.eligibility.min_price", 0.0),
    Bound("processing.eligibility.min_dollar_volume", 0.0),
    Bound("processing.eligibility.dollar_volume_days", 1),
    Bound("processing.late_column_days", 1),
    Bound("processing.split_detection.max_abs_return", 0.0, low_open=True),
    Bound("processing.split_detection.tolerance", 0.0, 1.0, high_open=True),
    Bound("processing.split_detection.confirm_days", 0),
    Bound("processing.strict_active_days", 1),
    Bound("processing.stale.mask_after", 1),  # null: never; 0 read as off, so refused
    Bound("processing.split_detection.unit_tolerance", 0.0, 1.0, high_open=True),
    Bound("processing.split_detection.report_tolerance", 0.0, 1.0, high_open=True),
    Bound("processing.split_detection.max_gap_days", 1),
    Bound("processing.split_detection.market_min_names", 1),
    Bound("processing.split_detection.market_min_share", 0.0, 1.0, low_open=True),
    Bound("memory.target_usage", 0.0, 1.0, low_open=True),
    Bound("memory.max_threshold", 0.0, 1.0, low_open=True),
    Bound("run.timeout_seconds", 0.0, low_open=True),
    Bound("run.interrupt_grace_seconds", 0.0, low_open=True),
    Bound("run.busy_machine.sample_seconds", 0.0, 5.0, low_open=True),  # null: off
    Bound("run.busy_machine.busy_cores", 0.0),
    Bound("base_models.tuning.timeout", 0.0, low_open=True),  # null: no cap
    Bound("base_models.tuning.n_trials", 1),
    Bound("evaluation.backtest.n_quantiles", 2),
    Bound("evaluation.metrics.nw_lag", 0),  # null: the horizon; 0: no overlap correction
    Bound("evaluation.metrics.decay_max_horizon", 1),  # null: the horizon
    Bound("evaluation.metrics.implausible_rank_ic", 0.0, 1.0, low_open=True),
    Bound("evaluation.backtest.cost_bps", 0.0),
    Bound("evaluation.backtest.periods_per_year", 0.0, low_open=True),
    Bound("evaluation.backtest.rebalance_days", 1),  # null: the horizon
    Bound("evaluation.backtest.max_frozen_days", 0),  # null: frozen however long
    Bound("evaluation.backtest.spread_cost.window", 2),
    Bound("evaluation.backtest.spread_cost.min_dates", 1),
    Bound("evaluation.backtest.spread_cost.cap_bps", 0.0),
    Bound("base_models.max_train_rows", 1),
    Bound("base_models.tuning.max_train_rows", 1),
    Bound("base_models.seed", 0),
    Bound("regime_models.max_train_rows", 1),
    Bound("regime_models.seed", 0),
    Bound("regime_models.min_samples_per_regime", 1),  # <= 0: every regime fitted on any rows
    # the leak audit's counts and thresholds (refused inside its node, after earlier layers ran)
    Bound("feature_engineering.leak_audit.prefix_cuts", 0),
    Bound("feature_engineering.leak_audit.compare_days", 1),
    Bound("feature_engineering.leak_audit.date_stride", 1),
    Bound("feature_engineering.leak_audit.atol", 0.0),
    Bound("feature_engineering.leak_audit.rtol", 0.0),
    Bound("feature_engineering.leak_audit.edge_days", 1),
    Bound("feature_engineering.leak_audit.edge_scan_days", 1),
    Bound("feature_engineering.leak_audit.edge_scan_factor", 1.0),
    Bound("feature_engineering.leak_audit.min_dates", 1),
    Bound("feature_engineering.leak_audit.max_future_ic", 0.0, 1.0, low_open=True),
    Bound("feature_engineering.leak_audit.spike_ratio", 1.0),
    Bound("feature_engineering.leak_audit.mirror_share", 0.0, 1.0, low_open=True),
    Bound("feature_engineering.leak_audit.max_edge_ic", 0.0, 1.0, low_open=True),  # null: off
    Bound("feature_engineering.leak_audit.max_long_ic", 0.0, 1.0, low_open=True),  # null: off
    Bound("feature_engineering.leak_audit.long_min_windows", 1),
    Bound("feature_engineering.leak_audit.min_spike_tstat", 0.0),
    Bound("feature_engineering.leak_audit.min_edge_tstat", 0.0),
    Bound("regime_models.hmm.stay_prior", 0.0, 1.0, low_open=True, high_open=True),
    Bound("regime_models.smoothing.min_duration_days", 0),
    Bound("regime_models.rules.net_vote_share", 0.0, 1.0),  # > 1: a vote no date reaches
    Bound("registry.max_reproduction_diff", 0.0),
    Bound("registry.reproduction_dates", 1),  # null: every test date (0 read as null silently)
    Bound("stacking.bma.bootstrap_draws", 0),
    Bound("stacking.bma.block_dates", 1),
    Bound("stacking.selection.n_validation_folds", 1),  # 0 would leave no out-of-fold score
    Bound("cv.combinatorial.n_groups", 2),
    Bound("cv.combinatorial.n_test_groups", 1),
    Bound("stacking.regime.shrinkage_dates", 0),
    Bound("cv.n_tuning_folds", 0),
    Bound("feature_engineering.selection.max_features", 1),
    Bound("feature_engineering.selection.min_features", 0),  # 0: no refill below the gate
    Bound("feature_engineering.factors.momentum_long", 1),
    Bound("feature_engineering.factors.momentum_skip", 0),
    Bound("feature_engineering.factors.reversal_beta_window", 2),  # a beta needs two returns
    Bound("feature_engineering.factors.min_periods_share", 0.0, 1.0, low_open=True),
    Bound("feature_engineering.factors.amihud_min_traded_share", 0.0, 1.0, low_open=True),
    Bound("temporal.prediction_horizon_days", 1),
    Bound("temporal.execution_delay_days", 0),
    Bound("temporal.cv_gap_days", 0),
    Bound("temporal.cv_embargo_days", 0),
    Bound("base_models.target_zscore_clip", 0.0, low_open=True),
    Bound("regime_models.target_zscore_clip", 0.0, low_open=True),
    Bound("temporal.max_lookback_days", 1),
    Bound("inference.history_days", 0),  # 0 / null: every date of the file
    Bound("inference.stale_after_days", 0),
    Bound("inference.portfolio.n_quantiles", 2),
    Bound("inference.portfolio.gross_exposure", 0.0, low_open=True),
    Bound("inference.portfolio.max_weight", 0.0, low_open=True),
    Bound("evaluation.plots.top_features", 1),
    Bound("processing.eligibility.window_days", 1),
    Bound("processing.eligibility.min_history_days", 0),
    Bound("processing.eligibility.relist_after_days", 1),  # null: no relisting
    Bound("cv.max_train_days", 1),  # null: expanding
    Bound("regime_models.hmm.n_iter", 1),
    Bound("regime_models.misnamed_min_tstat", 0.0),  # null: no check
    Bound("regime_models.hmm.covariance_floor", 0.0),
    Bound("regime_models.hmm.min_state_share", 0.0, 1.0, high_open=True),
    Bound("stacking.elastic_net.alpha", 0.0),
    Bound("stacking.elastic_net.l1_ratio", 0.0, 1.0),
    Bound("stacking.elastic_net.max_iter", 1),
    Bound("feature_engineering.selection.fallback_features", 1),
    Bound("feature_engineering.selection.redundancy_threshold", 0.0, 1.0, low_open=True),
    Bound("feature_engineering.selection.leak_threshold", 0.0, 1.0, low_open=True),
    Bound("feature_engineering.selection.min_abs_tstat", 0.0),
    Bound("feature_engineering.selection.min_ic_dates", 1),
    Bound("feature_engineering.selection.min_factor_ic_dates", 1),
    Bound("processing.index_jump_warning", 0.0, low_open=True),  # null: off
    Bound("regime_models.hmm.tol", 0.0, low_open=True),
    Bound("regime_models.hmm.kmeans_inits", 1),
    Bound("regime_models.leak_audit.atol", 0.0),
    Bound("regime_models.leak_audit.rtol", 0.0),
    Bound("evaluation.backtest.limit_locks.grid.window", 1),
    Bound("evaluation.backtest.limit_locks.grid.min_closes", 1),
    Bound("evaluation.backtest.limit_locks.grid.on_share", 0.0, 1.0, low_open=True),
    Bound("registry.typical_names_dates", 1),
    Bound("registry.thin_cross_section_share", 0.0, 1.0),
    Bound("feature_engineering.selection.min_variance", 0.0),
    Bound("feature_engineering.selection.rolling_window", 2),
    Bound("feature_engineering.selection.timed_ic_window", 1),
    Bound("feature_engineering.selection.redundancy_sample_rows", 1),
    *(Bound(f"feature_engineering.fear_greed.{w}", 2) for w in (
        "momentum_window", "breadth_window", "high_low_window", "volatility_window",
        "volatility_baseline_window", "normalisation_window")),
    Bound("feature_engineering.fear_greed.min_periods_share", 0.0, 1.0, low_open=True),
)
# Parameters that take one of a few words (dotted path -> allowed values). Literals, so that this
# module imports no learner library; a test checks them against the constants the layers use.
TARGET_TRANSFORMS = ("rank", "zscore", "raw")
ENSEMBLE_METHODS = ("stacking", "regime_stacking", "bma", "equal_weight", "ic_weight")
REGIME_LABELS = ("bull", "neutral", "bear")
# The regime detector's evidence (core.regimes.detection.detector_inputs with
# core.regimes.regime_evidence.EVIDENCE_COLUMNS): what the HMM and the context features can read.
REGIME_EVIDENCE = ("market_return", "market_level", "fear_greed", "trend", "volatility",
                   "dispersion", "breadth", "perf_momentum", "perf_reversal",
                   "perf_low_volatility")
CHOICES = {
    "data.layout": ("auto", "long", "wide"),
    "cv.scheme": ("walk_forward", "combinatorial"),
    "cv.window": ("expanding", "sliding"),
    "feature_engineering.transforms.method": ("rank", "zscore", "none"),
    "feature_engineering.transforms.small_sector_fallback": ("whole_date", "raw"),
    "feature_engineering.selection.ic_scope": ("pre_cv", "fold_train", "dev"),
    "base_models.target_transform": TARGET_TRANSFORMS,
    "regime_models.target_transform": TARGET_TRANSFORMS,
    "regime_models.detector": ("rules", "markov", "hmm"),
    "regime_models.combine": ("route", "blend"),
    "regime_models.training": ("hard", "soft"),
    "regime_models.markov.state_order_by": ("mean", "volatility"),
    "regime_models.hmm.order_column": REGIME_EVIDENCE,
    "stacking.meta_learner": ("elastic_net", "lightgbm"),
    "stacking.standardisation": ("rank", "zscore"),
    "stacking.fallback_method": ENSEMBLE_METHODS,
    "inference.model_source": ("local", "registry"),
    "inference.portfolio.style": ("long_short", "long_only"),
    # the evaluation table's scopes: every test date, or one regime's
    "evaluation.gates.scope": ("all", *REGIME_LABELS),
}
# What a gate or the champion comparison can read: the evaluation table's metric columns and the
# overfitting assessment's (a test checks the table's columns against this list).
GATE_METRICS = ("ic", "rank_ic", "icir", "rank_icir", "ic_tstat", "rank_ic_tstat", "hit_rate",
                "rank_hit_rate",
                "n_dates", "sharpe", "ir", "annual_return", "cagr", "annual_volatility",
                "max_drawdown", "turnover", "n_rebalances", "n_days", "pbo", "deflated_sharpe")
GATE_OPERATORS = (">", ">=", "<", "<=")
GATE_KEYS = ("metric", "op", "threshold")
# Lists whose every item must come from a fixed set: path -> (allowed, may be empty).
SUBSETS = {
    "stacking.methods": (ENSEMBLE_METHODS, False),
    "stacking.regime.regimes": (REGIME_LABELS, False),
    "regime_models.hmm.columns": (REGIME_EVIDENCE, False),
    "regime_models.context_features.columns": (REGIME_EVIDENCE, True),  # []: probabilities only
}
# Parameters that must be lists (a bare word would be read letter by letter).
LISTS = ("stacking.methods", "stacking.regime.regimes", "regime_models.hmm.columns",
         "regime_models.context_features.columns", "base_models.learners",
         "base_models.tuning.learners", "feature_engineering.lags.candidates",
         "feature_engineering.ewm.halflife_candidates")
# Lists of window lengths (trading days): every item a whole number >= 1 (a window of 0 is a
# constant, a negative one reads the future).
WINDOW_LISTS_UNDER = "feature_engineering.factors"
LAG_LIST = "feature_engineering.lags.candidates"  # whole numbers of days >= 0
HALFLIFE_LIST = "feature_engineering.ewm.halflife_candidates"  # numbers >= 0 (0: no smoothing)

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


def find_leaves(params: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    """The dotted path of every leaf (a value that is not a non-empty mapping)."""
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from find_leaves(value, f"{path}.")
        else:
            yield path


def check_parameters(params: Mapping[str, Any], said: Collection[str] = ()) -> None:
    """Numeric parameters in range, temporal config leak-free, min_names large enough. `said`:
    paths whose value another check already refused (of the wrong kind): not named twice."""
    problems = [
        problem for bound in BOUNDS
        if bound.path not in said and (value := lookup(params, bound.path)) is not None
        and not (bound.path in PER_COLUMN and isinstance(value, Mapping))
        and (problem := bound.violation(value)) is not None
    ]
    limits = lookup(params, "processing.factor_ffill_limit")
    if isinstance(limits, Mapping):  # one limit per user column
        problems += [problem for name, value in limits.items() if value is not None and (
            problem := Bound(f"processing.factor_ffill_limit.{name}", 0).violation(value))]
    problems += [
        problem for path, value in find_keys(params, ("min_names",)).items()
        if (problem := Bound(path, MIN_NAMES_FLOOR).violation(value)) is not None
    ]
    target, cap = lookup(params, "memory.target_usage"), lookup(params, "memory.max_threshold")
    if not problems and target is not None and cap is not None and target > cap:
        problems.append(f"memory.target_usage ({target}) must not exceed memory.max_threshold ({cap})")
    problems += (_choice_problems(params) + _list_problems(params) + _shape_problems(params)
                 + _gate_problems(params) + _search_space_problems(params)
                 + _evidence_problems(params) + _window_problems(params)
                 + _learner_argument_problems(params))
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


SEARCH_TYPES = ("float", "int", "categorical")  # core.models.tuning.suggest_params


def _search_space_problems(params: Mapping[str, Any]) -> list[str]:
    """Each Optuna search-space entry: a known type with its bounds (a typo failed that learner
    mid-run, and the run went on without it)."""
    spaces = lookup(params, "base_models.tuning.search_space")
    problems: list[str] = []
    for learner, space in (spaces or {}).items() if isinstance(spaces, Mapping) else ():
        for name, spec in (space or {}).items() if isinstance(space, Mapping) else ():
            path = f"base_models.tuning.search_space.{learner}.{name}"
            if not isinstance(spec, Mapping):
                problems.append(f"{path} must be a mapping with a type, got {spec!r}")
                continue
            kind = spec.get("type", "float")
            if kind not in SEARCH_TYPES:
                problems.append(f"{path}.type must be one of {', '.join(SEARCH_TYPES)}, "
                                f"got {kind!r}")
            elif kind == "categorical":
                if not isinstance(spec.get("choices"), list | tuple) or not spec["choices"]:
                    problems.append(f"{path}.choices must be a non-empty list")
            else:
                low, high = spec.get("low"), spec.get("high")
                if not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in (low, high)):
                    problems.append(f"{path} needs numbers low and high, got {low!r}, {high!r}")
                elif low > high:
                    problems.append(f"{path}: low ({low}) must not exceed high ({high})")
                elif spec.get("log") and low <= 0:
                    problems.append(f"{path}: low ({low}) must be > 0 with log: true")
    return problems


# sections of learner arguments: (path, learner) where learner None = one section per learner
LEARNER_ARGUMENT_SECTIONS = (("base_models.defaults", None),
                             ("base_models.tuning.search_space", None),
                             ("regime_models.learner_params", None),
                             ("stacking.elastic_net", "elastic_net"),
                             ("stacking.lightgbm", "lightgbm"))


def _sample_value(spec: Any) -> Any:
    """A value a search-space entry can take (its low, or first choice), or None."""
    if not isinstance(spec, Mapping):
        return None
    choices = spec.get("choices")
    return choices[0] if isinstance(choices, list | tuple) and choices else spec.get("low")


def _search_bound(spec: Any, last: bool) -> Any:
    """A search-space entry's high (or last choice) when `last`, else `_sample_value`."""
    if not last or not isinstance(spec, Mapping):
        return _sample_value(spec)
    choices = spec.get("choices")
    return choices[-1] if isinstance(choices, list | tuple) and choices else spec.get("high")


def _learner_argument_problems(params: Mapping[str, Any]) -> list[str]:
    """Learner arguments the library behind the learner does not read (a misspelt `max_dept`
    was dropped with a warning per fit, `num_leavs` without a word, a tuned `num_leavs`
    searched a dimension that changes nothing; `alpah` failed ElasticNet inside its node), and
    values it refuses (`max_depth: -5` failed XGBoost inside its node and the run registered
    a chain without it); a search space's lows and highs are both tried."""
    import difflib

    from bma_quant.core.models.learner_arguments import (
        known_arguments,
        refused_values,
        unknown_arguments,
    )

    problems: list[str] = []
    for path, fixed in LEARNER_ARGUMENT_SECTIONS:
        section = lookup(params, path)
        if not isinstance(section, Mapping):
            continue
        groups = {fixed: section} if fixed else section
        for learner, arguments in groups.items():
            if not isinstance(arguments, Mapping):
                continue
            where = path if fixed else f"{path}.{learner}"
            searched = path.endswith("search_space")
            values = ({k: _sample_value(v) for k, v in arguments.items()}
                      if searched else dict(arguments))
            unknown = unknown_arguments(str(learner), values)
            for name in unknown:
                close = difflib.get_close_matches(name, known_arguments(str(learner)), 2)
                problems.append(f"{where}.{name} is not an argument {learner} reads"
                                + (f" (did you mean {' or '.join(close)}?)" if close else ""))
            if unknown:
                continue
            for bound in (False, True) if searched else (False,):
                tried = ({k: _search_bound(v, bound) for k, v in arguments.items()}
                         if searched else values)
                refused = refused_values(str(learner), {k: v for k, v in tried.items()
                                                        if v is not None},
                                         stacking=path.startswith("stacking."))
                if refused:
                    side = (" (its " + ("highs" if bound else "lows") + ")") if searched else ""
                    problems.append(f"{where}{side}: {learner} refuses a value: {refused}")
                    break
    return problems


EVIDENCE_SECTIONS = ("regime_models.evidence",
                     "feature_engineering.factors.factor_performance_params")


def _evidence_problems(params: Mapping[str, Any]) -> list[str]:
    """The regime evidence's windows (core.regimes.regime_evidence.EvidenceParams), named with
    their section (they failed at the node that builds the evidence)."""
    from bma_quant.core.regimes.regime_evidence import EvidenceParams

    problems = []
    for path in EVIDENCE_SECTIONS:
        section = lookup(params, path)
        if isinstance(section, Mapping):
            try:
                EvidenceParams.from_params(section)
            except (ValueError, TypeError) as error:
                problems.append(f"{path}: {error}")
    return problems


def _window_problems(params: Mapping[str, Any]) -> list[str]:
    """A sliding training window shorter than the first fold's (cv.min_train_days) trains on
    fewer dates than the layout promises (5 dates ran and registered a model); a price grid
    needing more closes than its window holds is read for no name (no limit price rounded to
    its tick, unsaid)."""
    problems = []
    window, longest = lookup(params, "cv.window"), lookup(params, "cv.max_train_days")
    shortest = lookup(params, "cv.min_train_days")
    if window == "sliding" and isinstance(longest, int | float) and isinstance(
            shortest, int | float) and longest < shortest:
        problems.append(f"cv.max_train_days ({longest}) must be >= cv.min_train_days "
                        f"({shortest}) with cv.window: sliding")
    grid = "evaluation.backtest.limit_locks.grid"
    locks = lookup(params, "evaluation.backtest.limit_locks")
    grid_read = isinstance(locks, Mapping) and locks.get("enabled", True) is not False \
        and locks.get("price_step") is None  # else no grid is read: its values do not matter
    closes, needed = lookup(params, f"{grid}.window"), lookup(params, f"{grid}.min_closes")
    closes = price_grid.GRID_WINDOW if closes is None else closes  # LimitLocks' defaults
    needed = price_grid.GRID_MIN_CLOSES if needed is None else needed
    if grid_read and isinstance(closes, int | float) and isinstance(needed, int | float) \
            and needed > closes:
        problems.append(f"{grid}.min_closes ({needed}) must not exceed {grid}.window ({closes}): "
                        "no name could have that many closes in the window, so none would get a "
                        "price grid")
    return problems


def _choice_problems(params: Mapping[str, Any]) -> list[str]:
    def listed(values) -> str:
        return ", ".join(repr(c) for c in values)

    problems = [
        f"{path} must be one of {listed(choices)}, got {value!r}"
        for path, choices in CHOICES.items()
        if (value := lookup(params, path)) is not None and value not in choices
    ]
    positive = lookup(params, "stacking.elastic_net.positive")
    if positive is not None and positive is not True:
        problems.append(f"stacking.elastic_net.positive must be true, got {positive!r}: the "
                        "stacking weights are its coefficients, non-negative and normalised to "
                        "sum to one (a negative weight would bet against a model)")
    problems += [f"{path} must be a list (e.g. [{value}]), got {value!r}" for path in LISTS
                 if (value := lookup(params, path)) is not None
                 and not isinstance(value, list | tuple)]
    for path, (choices, may_be_empty) in SUBSETS.items():
        value = lookup(params, path)
        if not isinstance(value, list | tuple):
            continue
        unknown = [v for v in value if v not in choices]
        if unknown or (not value and not may_be_empty):
            problems.append(f"{path} must list {'' if may_be_empty else 'one or more '}of "
                            f"{listed(choices)}, got {list(value)!r}")
        elif len(set(map(str, value))) < len(value):  # a method twice: duplicate rows, late
            twice = sorted({str(v) for v in value if list(map(str, value)).count(str(v)) > 1})
            problems.append(f"{path} lists {', '.join(twice)} more than once: each once, got "
                            f"{list(value)!r}")
    return problems


def _whole(value: Any, low: int) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) and value >= low


def _list_problems(params: Mapping[str, Any]) -> list[str]:
    """Window lists of the factor library (items >= 1) and lag / half-life candidates (>= 0)."""
    problems = []
    factors = lookup(params, WINDOW_LISTS_UNDER)
    lists = {f"{WINDOW_LISTS_UNDER}.{k}": (v, 1) for k, v in (factors or {}).items()
             if k.endswith("_windows")}
    lists[LAG_LIST] = (lookup(params, LAG_LIST), 0)
    for path, (value, low) in lists.items():
        if isinstance(value, list | tuple) and any(not _whole(v, low) for v in value):
            problems.append(f"{path} must list whole numbers >= {low}, got {value!r}")
    halflives = lookup(params, HALFLIFE_LIST)
    if isinstance(halflives, list | tuple) and any(
            isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in halflives):
        problems.append(f"{HALFLIFE_LIST} must list numbers >= 0, got {halflives!r}")
    return problems


PERIOD_DATES = ("periods.test_start", "periods.dev_start")


def _iso_date_problem(value: Any) -> str | None:
    """Why ``value`` is no YYYY-MM-DD date (02/01/2020 would be read either way), None if it is
    one or null (YAML gives an unquoted 2020-01-02 as a date object)."""
    if value is None or isinstance(value, datetime.date):
        return None
    text = str(value).strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return f"{value!r}"
    try:
        datetime.date.fromisoformat(text)
    except ValueError as error:
        return f"{value!r} ({error})"
    return None


def _shape_problems(params: Mapping[str, Any]) -> list[str]:
    """Parameters whose parts must agree: winsorising quantiles, CSCV blocks, search ranges."""
    problems = []
    winsorise = lookup(params, "feature_engineering.transforms.winsorise")
    if winsorise is not None and not (
            isinstance(winsorise, list | tuple) and len(winsorise) == 2
            and all(isinstance(q, int | float) and not isinstance(q, bool) for q in winsorise)
            and 0 <= winsorise[0] < winsorise[1] <= 1):
        problems.append("feature_engineering.transforms.winsorise must be [low, high] with "
                        f"0 <= low < high <= 1, got {winsorise!r}")
    periods = lookup(params, "periods")
    if isinstance(periods, Mapping) and periods.get("test_start") is None \
            and periods.get("test_fraction") is None:
        problems.append("periods.test_start and periods.test_fraction are both null: set one "
                        "(the first test date, or the share of dates to test on)")
    for key in PERIOD_DATES:
        problem = _iso_date_problem(lookup(params, key))
        if problem:
            problems.append(f"{key} must be a date written YYYY-MM-DD (or null), got {problem}")
    problems += _fold_count_problems(params)
    groups, tested = (lookup(params, f"cv.combinatorial.{k}") for k in ("n_groups", "n_test_groups"))
    if _whole(groups, 2) and _whole(tested, 1) and tested >= groups:
        problems.append(f"cv.combinatorial.n_test_groups ({tested}) must be below "
                        f"cv.combinatorial.n_groups ({groups}): every split trains on the groups "
                        "it does not test")
    long, skip = (lookup(params, f"feature_engineering.factors.momentum_{k}")
                  for k in ("long", "skip"))
    if _whole(long, 1) and _whole(skip, 0) and skip >= long:
        problems.append(f"feature_engineering.factors.momentum_skip ({skip}) must be below "
                        f"momentum_long ({long}): the momentum factor is the return from "
                        "momentum_long rows back to momentum_skip rows back (12-1 months: 252 "
                        "and 21 daily rows)")
    blocks = lookup(params, "evaluation.overfitting.n_blocks")
    if blocks is not None and not (_whole(blocks, 2) and blocks % 2 == 0):
        problems.append("evaluation.overfitting.n_blocks must be an even whole number >= 2 (CSCV "
                        f"splits the blocks in halves), got {blocks!r}")
    return problems


def _fold_count_problems(params: Mapping[str, Any]) -> list[str]:
    """Enough folds for what the run does: tuning needs a tuning fold, and the later layers two
    out-of-fold folds (one to fit the ensembles on, one to score them). A champion needs
    cv.CHAMPION_OOF_FOLDS (`few_oof_fold_warnings` says so on the layout the dates get)."""
    problems = []
    if lookup(params, "cv.window") == "sliding" and not lookup(params, "cv.max_train_days"):
        problems.append("cv.window is sliding but cv.max_train_days is not set: a sliding "
                        "window needs its length (training dates per fold)")
    splits, tuning = lookup(params, "cv.n_splits"), lookup(params, "cv.n_tuning_folds")
    if not (_whole(splits, 1) and _whole(tuning, 0)):
        return problems  # the bounds say what else is wrong
    spaces = lookup(params, "base_models.tuning.search_space") or {}
    tuned = [n for n in lookup(params, "base_models.tuning.learners") or [] if spaces.get(n)]
    if lookup(params, "base_models.tuning.enabled") and tuned and tuning == 0:
        problems.append(f"base_models.tuning is enabled for {', '.join(tuned)} but "
                        "cv.n_tuning_folds is 0: the trials need a tuning fold of their own "
                        "(set cv.n_tuning_folds >= 1, or base_models.tuning.enabled: false)")
    if splits - tuning < 2:
        problems.append(f"cv.n_splits ({splits}) minus cv.n_tuning_folds ({tuning}) leaves "
                        f"{splits - tuning} out-of-fold fold(s): the ensembles need 2 (one to "
                        "fit on, one to score; a champion needs 3), else no out-of-fold score "
                        f"exists; set cv.n_splits >= {tuning + cv.CHAMPION_OOF_FOLDS}")
    return problems


def _gate_problems(params: Mapping[str, Any]) -> list[str]:
    """Gates that could never pass because they name a metric, operator or model that does not
    exist (a typo would otherwise fail every run's gates without saying why)."""
    problems = []
    metrics = ", ".join(GATE_METRICS)
    for name, spec in (lookup(params, "evaluation.gates.checks") or {}).items():
        if spec is None:  # a gate set to null is dropped
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"evaluation.gates.checks.{name} must be a mapping of metric, op, "
                            f"threshold (or null to drop it), got {spec!r}")
            continue
        extra = sorted(set(map(str, spec)) - set(GATE_KEYS))
        if extra:
            problems.append(f"evaluation.gates.checks.{name} has unknown key(s) "
                            f"{', '.join(extra)} (a gate has {', '.join(GATE_KEYS)})")
        threshold = spec.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            problems.append(f"evaluation.gates.checks.{name}.threshold must be a number, got "
                            f"{threshold!r}")
        metric, op = spec.get("metric", name), spec.get("op", ">")
        if metric not in GATE_METRICS:
            problems.append(f"evaluation.gates.checks.{name}.metric {metric!r} is not a metric "
                            f"of the evaluation ({metrics})")
        if op not in GATE_OPERATORS:
            problems.append(f"evaluation.gates.checks.{name}.op must be one of "
                            f"{', '.join(GATE_OPERATORS)}, got {op!r}")
    value = lookup(params, "evaluation.gates.headline_metrics")
    unknown = [m for m in ([value] if isinstance(value, str) else value or [])
               if m not in GATE_METRICS]
    if unknown:
        problems.append(f"evaluation.gates.headline_metrics: {', '.join(map(repr, unknown))} is "
                        f"not a metric of the evaluation ({metrics})")

    def names(path: str, default=()) -> list:
        value = lookup(params, path)
        return list(value) if isinstance(value, list | tuple) else list(default)

    model = lookup(params, "evaluation.gates.model")
    learner = lookup(params, "regime_models.learner")
    models = {"final", *names("stacking.methods", ENSEMBLE_METHODS),
              *names("base_models.learners"),
              *([f"regime_{learner}"] if isinstance(learner, str) else [])}
    if model is not None and model not in models:
        problems.append(f"evaluation.gates.model must be one of the run's models "
                        f"({', '.join(sorted(models))}), got {model!r}")
    return problems


# Sections whose keys are open-ended (library arguments, search ranges, generator arguments,
# per-run read options): any key below them is legitimate.
OPEN_SECTIONS = ("base_models.defaults", "base_models.tuning.search_space",
                 "evaluation.gates.checks",  # user-named gates (their contents are checked)
                 "regime_models.learner_params", "stacking.elastic_net", "stacking.lightgbm",
                 "inference.data", "synthetic")


def unknown_parameters(params: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, list[str]]:
    """Dotted paths set in `params` that the project's own parameter files (`known`) do not
    have, outside OPEN_SECTIONS: misspelt keys, which the layers would silently not read.
    Maps each to the close names its section does have."""
    import difflib

    found: dict[str, list[str]] = {}

    def walk(given: Mapping[str, Any], reference: Mapping[str, Any], prefix: str) -> None:
        for key, value in given.items():
            path = f"{prefix}{key}"
            if any(path == s or path.startswith(f"{s}.") for s in OPEN_SECTIONS) \
                    or str(key).startswith("_"):  # OmegaConf's private keys (`_trials: 3`)
                continue
            if key not in reference:
                found[path] = (difflib.get_close_matches(str(key), list(map(str, reference)), 3)
                               or _same_key_elsewhere(str(key), known))
            elif isinstance(value, Mapping) and isinstance(reference[key], Mapping) \
                    and reference[key]:
                walk(value, reference[key], f"{path}.")

    walk(params, known, "")
    return found


def _same_key_elsewhere(key: str, known: Mapping[str, Any]) -> list[str]:
    """The full path of the key (or of a near-identical one) in another section, when the
    project has it in one place only: a key set under the wrong section (`periods.cv_gap_days`
    for `temporal.cv_gap_days`). A name used in several sections (`enabled`, `alpha`) suggests
    nothing: any pick could send the user to the wrong setting."""
    import difflib

    places: dict[str, list[str]] = {}

    def walk(section: Mapping[str, Any], prefix: str) -> None:
        for name, value in section.items():
            path = f"{prefix}{name}"
            if any(path == s or path.startswith(f"{s}.") for s in OPEN_SECTIONS):
                continue
            places.setdefault(str(name), []).append(path)
            if isinstance(value, Mapping):
                walk(value, f"{path}.")

    walk(known, "")
    names = [key] if key in places else difflib.get_close_matches(key, sorted(places), 1, 0.85)
    return places[names[0]] if names and len(places[names[0]]) == 1 else []


def unknown_read_keys(params: Mapping[str, Any], read_keys: Sequence[str]) -> dict[str, list[str]]:
    """Keys of `inference.data` (an open section of per-run read options) that are not read
    options, each with the close read keys."""
    import difflib

    given = lookup(params, "inference.data")
    if not isinstance(given, Mapping):
        return {}
    return {f"inference.data.{key}": difflib.get_close_matches(str(key), list(read_keys), 3)
            for key in given if key not in read_keys and not str(key).startswith("_")}


def refused_unknown(unknown: Mapping[str, list[str]], read_by_conf: set[str]
                    ) -> dict[str, list[str]]:
    """The unknown parameters a run is refused for: all of them, typed on the command line
    (`--params`) or set in a conf file (conf/local), except keys typed for a conf file's
    `${runtime_params:...}` (`read_by_conf`): no layer reads a misspelt key."""
    return {path: close for path, close in unknown.items() if path not in read_by_conf}


def describe_unknown(path: str, close: list[str]) -> str:
    return path + (f" (did you mean {' / '.join(close)}?)" if close else "")


def _some_keys(section: Mapping[str, Any], shown: int = 4) -> str:
    keys = list(map(str, section))
    return ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")


def mapping_problems(params: Mapping[str, Any], known: Mapping[str, Any]) -> list[str]:
    """Sections the project's parameter files define as mappings but `params` sets to a single
    value (`cv: 5` in conf/local): every layer reading one of its keys would fail deep inside."""
    problems = []

    def walk(given: Mapping[str, Any], reference: Mapping[str, Any], prefix: str) -> None:
        for key, value in given.items():
            expected = reference.get(key)
            if not (isinstance(expected, Mapping) and expected):
                continue
            if isinstance(value, Mapping):
                walk(value, expected, f"{prefix}{key}.")
            elif value is not None:
                problems.append(f"{prefix}{key} must be a mapping of {_some_keys(expected)}, "
                                f"got {value!r}")

    walk(params, known, "")
    return problems


# Parameters whose conf/base value is not null but that take null, with the meaning their
# comment in conf/base gives ("null = off", "null = never", ...). Any other parameter set to null
# is refused: the layers would read None as a number or a section and fail far from the cause.
NULLABLE = (
    "data.index_path", "periods.dev_start", "periods.test_fraction",
    "processing.eligibility.relist_after_days", "processing.strict_active_days",
    "processing.max_calendar_gap_days", "processing.late_column_days",
    "processing.long_absence_days", "processing.split_detection.report_tolerance",
    "processing.split_detection.max_gap_days", "processing.split_detection.market_min_names",
    "processing.stale.mask_after", "processing.index_jump_warning",
    "evaluation.backtest.max_frozen_days", "registry.reproduction_dates",
    "feature_engineering.transforms.winsorise", "feature_engineering.leak_audit.max_edge_ic",
    "feature_engineering.leak_audit.max_long_ic",
    "inference.stale_after_days", "run.timeout_seconds", "run.interrupt_grace_seconds",
    "run.busy_machine.sample_seconds", "run.busy_machine.busy_cores",
    "base_models.max_train_rows", "base_models.tuning.max_train_rows",  # null = every row
    "regime_models.max_train_rows", "base_models.tuning.storage",  # storage null = in memory
    "regime_models.misnamed_min_tstat",  # null = no naming check
    "evaluation.metrics.implausible_rank_ic",  # null = no warning
)
# Parameters whose conf/base value is null, so it shows no kind: the kind they take when set, as
# an example value (0 a whole number, 0.0 a number, "" text, [] a list). A wrong kind failed deep
# (`tuning.timeout: abc` failed every tuned learner inside Optuna, and the run still succeeded).
KIND_WHEN_SET = {
    "evaluation.backtest.rebalance_days": 0, "cv.max_train_days": 0,
    "inference.history_days": 0, "evaluation.metrics.nw_lag": 0,
    "evaluation.metrics.decay_max_horizon": 0, "inference.portfolio.n_quantiles": 0,
    "evaluation.backtest.periods_per_year": 0.0,
    "base_models.tuning.timeout": 0.0, "evaluation.backtest.limit_locks.price_step": 0.0,
    "evaluation.gates.max_pbo": 0.0, "evaluation.gates.min_deflated_sharpe": 0.0,
    "stacking.selection.min_t_stat": 0.0, "processing.eligibility.min_price": 0.0,
    "processing.eligibility.min_dollar_volume": 0.0, "inference.portfolio.max_weight": 0.0,
    "base_models.features": [], "evaluation.plots.models": [], "evaluation.cpcv.learners": [],
    "base_models.tuning.study_name": "", "data.delimiter": "", "data.thousands": "",
    "data.true_regimes_path": "",
    "registry.model_name": "", "inference.model_uri": "", "run_name": "",
    "stacking.selection.default_method": "",
}
# Open sections whose keys, when conf/base has them, must not be null either (the generator's
# arguments: each has a value and none means "off").
NULL_REFUSED_SECTIONS = ("synthetic",)
# Whole-number conf/base values that also take fractions (durations, rates, thresholds).
FRACTIONAL_SUFFIXES = ("_seconds", "_factor", ".threshold", ".periods_per_year")


def _below_open_section(path: str) -> bool:
    """Inside an open section (a library argument, one user-named gate): null has a meaning
    there (the library's default, a dropped gate)."""
    return any(path.startswith(f"{s}.") for s in OPEN_SECTIONS
               if s not in NULL_REFUSED_SECTIONS)


def _kind_problem(path: str, value: Any, default: Any) -> str | None:
    """Why `value` is not of the kind conf/base gives `path` (`default`), None if it is."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"{path} must be true or false, got {value!r}"
    if isinstance(default, int) and not path.endswith(FRACTIONAL_SUFFIXES):
        hint = (f" (write {int(value)}: 1e3 or {int(value)}.0 reads as a fraction)"
                if isinstance(value, float) and value.is_integer() else "")
        return None if number and isinstance(value, int) else (
            f"{path} must be a whole number, got {value!r}{hint}")
    if isinstance(default, int | float):
        return None if number else f"{path} must be a number, got {value!r}"
    if isinstance(default, str):  # an unquoted YAML date is a date
        return None if isinstance(value, str | datetime.date) else (
            f"{path} must be text, got {value!r}")
    if isinstance(default, list):
        return None if isinstance(value, list | tuple) else f"{path} must be a list, got {value!r}"
    return None


def value_kind_problems(params: Mapping[str, Any], known: Mapping[str, Any]) -> list[str]:
    """Parameters whose value is not of the kind the project's own parameter files (`known`)
    give them: true / false, a whole number, a number, text or a list, and null only where
    conf/base says what null means (NULLABLE, a null default, inside an open section). Without
    this, `enabled: maybe` reads as true, 5.5 folds as 5, and `stacking.bma: null` or an
    `abc` count fails deep in a layer with a traceback that names no parameter."""
    problems: list[str] = []

    def walk(given: Mapping[str, Any], reference: Mapping[str, Any], prefix: str) -> None:
        for key, value in given.items():
            if key not in reference:
                continue  # unknown keys are named by unknown_parameters
            path, default = f"{prefix}{key}", reference[key]
            if isinstance(default, Mapping) and default:
                if isinstance(value, Mapping):
                    walk(value, default, f"{path}.")
                elif value is None and not _below_open_section(path):
                    off = (" (to turn it off, set its `enabled: false`)" if "enabled" in default
                           else " (to drop one gate, set it to null)"
                           if path == "evaluation.gates.checks" else "")
                    problems.append(f"{path} must be a mapping of {_some_keys(default)}, "
                                    f"got null{off}")
                continue  # a single value for a mapping: mapping_problems says so
            if value is None:
                if default is not None and path not in NULLABLE \
                        and not _below_open_section(path):
                    comma = (" (`--params` splits its values at commas, so `data.decimal=,` "
                             "gives none: set it in conf/local/parameters.yml)"
                             if path == "data.decimal" else "")
                    problems.append(f"{path} must not be null (conf/base: {default!r}){comma}")
                continue
            kind = KIND_WHEN_SET.get(path) if default is None else default
            if kind is not None and (problem := _kind_problem(path, value, kind)):
                problems.append(problem)

    walk(params, known, "")
    return problems


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


def check_spread_cost_columns(columns: Iterable[str], params: Mapping[str, Any]) -> None:
    """`evaluation.backtest.spread_cost` estimates spreads from high and low: refuse a panel
    without them before anything is trained (the backtest would stop at the very end)."""
    if not lookup(params, "evaluation.backtest.spread_cost.enabled"):
        return
    missing = [c for c in ("high", "low") if c not in set(columns)]
    if missing:
        raise PreflightError(
            "evaluation.backtest.spread_cost.enabled estimates each name's bid-ask spread from "
            f"its high and low prices, but the panel has no {' or '.join(missing)} column: give "
            "a file with them or set evaluation.backtest.spread_cost.enabled: false")


def check_universe(n_tickers: int, params: Mapping[str, Any]) -> None:
    """The panel has at least as many names as the largest per-date requirement in parameters."""
    needs = {path: int(v) for path, v in find_keys(params, UNIVERSE_KEYS).items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
    if not needs:
        return
    short = sorted(((path, need) for path, need in needs.items() if n_tickers < need),
                   key=lambda kv: (-kv[1], kv[0]))
    if short:  # every one at once: lowering them one run at a time took nine runs
        named = ", ".join(f"{path} ({need})" for path, need in short)
        raise PreflightError(
            f"The panel has {n_tickers} ticker(s) but {len(short)} parameter(s) need more names "
            f"per date: {named}; give a wider universe or lower "
            f"{'that parameter' if len(short) == 1 else 'them'}."
        )


def _check_period_dates(calendar: pd.DatetimeIndex, periods: Mapping[str, Any]) -> None:
    """periods.dev_start / test_start inside the panel's dates and in order, each named when
    not (the split would otherwise report "not enough dates" for a date set past the data)."""
    if not len(calendar):
        return
    first, last = calendar.min(), calendar.max()
    named = {key: pd.Timestamp(periods[key]) for key in ("dev_start", "test_start")
             if periods.get(key) is not None}
    problems = [f"periods.{key} ({day.date()}) is after the panel's last date ({last.date()})"
                for key, day in named.items() if day > last]
    if "test_start" in named and named["test_start"] <= first:
        problems.append(f"periods.test_start ({named['test_start'].date()}) leaves no date "
                        f"before it (the panel starts {first.date()})")
    advice = "Set the dates inside the data." if problems else ""
    if len(named) == 2 and named["test_start"] <= named["dev_start"]:
        problems.append(f"periods.test_start ({named['test_start'].date()}) is not after "
                        f"periods.dev_start ({named['dev_start'].date()})")
        advice = " ".join([advice, "The test period follows development: set periods.test_start "
                           "after periods.dev_start (or periods.dev_start earlier, or null)."])
    if problems:
        raise PreflightError(f"The panel's dates run {first.date()}..{last.date()}: "
                             + "; ".join(problems) + ". " + advice.strip())


def check_cv_layout(dates, params: Mapping[str, Any]) -> None:
    """The dates split into development | gap | test and the development dates hold the purged
    folds, with the same functions data_processing uses (core.data.split, core.data.cv): a short panel
    passes when its layout scales down to the floor (`cv.short_panel`)."""
    calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    _check_period_dates(calendar, params["periods"])
    folds, dev = _walk_forward_folds(calendar, params)
    _check_scorable_test_dates(calendar, params)
    _check_combinatorial_groups(folds, dev, params)


def _check_combinatorial_groups(folds: list, dev: pd.DatetimeIndex,
                                params: Mapping[str, Any]) -> None:
    """With `cv.scheme: combinatorial`, the out-of-fold dates hold `cv.combinatorial.n_groups`
    groups wider than the purge: the evaluation's path split, refused here instead of at its
    node after every learner was trained (core.evaluation.cpcv)."""
    cv_params = params["cv"]
    if str(cv_params.get("scheme", "walk_forward")) != "combinatorial":
        return
    from bma_quant.core.data.cv import OOF
    from bma_quant.core.evaluation.cpcv import CombinatorialPurgedSplit

    spec = cv_params.get("combinatorial") or {}
    oof = [f for f in folds if getattr(f, "stage", None) == OOF and len(f.test_dates)]
    try:
        CombinatorialPurgedSplit(int(spec.get("n_groups", 6)), int(spec.get("n_test_groups", 2)),
                                 TemporalConfig.from_params(params["temporal"])).split_dates(
            dev, test_from=min(f.test_dates.min() for f in oof) if oof else None)
    except ValueError as exc:
        raise PreflightError(f"cv.scheme combinatorial: {exc}") from None


def _check_scorable_test_dates(calendar: pd.DatetimeIndex, params: Mapping[str, Any]) -> None:
    """A test period no longer than the label span has no labelled date: every test figure
    would be NaN, and the run replaced the last one's evaluation and registered a chain on a
    reproduction check of one date."""
    temporal = TemporalConfig.from_params(params["temporal"])
    dates_split = _split_or_none(calendar, params["periods"], temporal)
    if dates_split is None or int(dates_split["test_dates"]) > temporal.label_span:
        return
    raise PreflightError(
        f"The test period ({dates_split['test_start']}..{dates_split['test_end']}) has "
        f"{dates_split['test_dates']} date(s), and the last {temporal.label_span} (d + h) have no "
        "label yet: no test date can be scored. Lengthen it (periods.test_fraction / "
        "periods.test_start) to more than that")


def _walk_forward_folds(calendar: pd.DatetimeIndex, params: Mapping[str, Any]) -> tuple[list, pd.DatetimeIndex]:
    """The chain's folds (cv_folds) on these dates and the development dates they cover; a
    PreflightError naming the settings when the dates cannot hold them."""
    temporal = TemporalConfig.from_params(params["temporal"])
    periods, cv_params = params["periods"], params["cv"]
    try:
        dates_split = split.split_dates(
            calendar, gap_days=temporal.cv_gap_days,
            test_fraction=split.configured_test_fraction(periods),
            test_start=periods.get("test_start"), dev_start=periods.get("dev_start"),
        )
        dev = calendar[(calendar >= pd.Timestamp(dates_split["dev_start"]))
                       & (calendar <= pd.Timestamp(dates_split["dev_end"]))]
        requested, floor, adapt = cv.layout_params(cv_params)
        layout, _ = cv.fit_cv_layout(len(dev), requested, temporal.cv_gap_days, floor, adapt)
        folds = cv.assign_stages(cv.PurgedWalkForwardSplit(
            n_splits=layout.n_splits, temporal=temporal, min_train_days=layout.min_train_days,
            window=cv_params["window"], max_train_days=cv_params.get("max_train_days"),
        ).date_folds(dev), layout.n_tuning_folds, gap=temporal.cv_gap_days)
    except ValueError as exc:
        raise PreflightError(
            f"The panel's {len(calendar)} dates ({calendar.min().date()}..{calendar.max().date()}) "
            f"are not enough for the split and CV layout (periods.*, cv.n_splits="
            f"{cv_params['n_splits']}, cv.min_train_days={cv_params['min_train_days']}): "
            + _with_dev_start_hint(str(exc), calendar, periods.get("dev_start"))
        ) from exc
    return folds, dev


def stale_fold_warnings(dates, params: Mapping[str, Any]) -> list[str]:
    """An embargo (temporal.cv_embargo_days) long enough to drop a whole earlier test window
    from later folds' training: those folds learn from dates at least a test window older than
    their test dates (the purge alone leaves cv_gap_days), so the out-of-fold predictions the later
    layers learn from come from stale models. Valid (a choice), but said: it reads like a
    safety margin and costs the folds their newest history."""
    if any(lookup(params, key) is None for key in ("periods", "temporal", "cv")):
        return []
    calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    try:
        folds, dev = _walk_forward_folds(calendar, params)
    except PreflightError:
        return []  # check_cv_layout refuses these dates with its own message
    position = pd.Series(np.arange(len(dev)), index=dev)
    gap = TemporalConfig.from_params(params["temporal"]).cv_gap_days
    stale = {}
    for fold in folds:
        if len(fold.train_dates) and len(fold.test_dates):
            lag = int(position[fold.test_dates[0]] - position[fold.train_dates[-1]])
            # an embargo shorter than the previous window less the purge never moves the last
            # training date; one at least that long drops the rest of that window
            if lag > gap + 1:
                stale[fold.fold] = lag
    if not stale:
        return []
    worst = max(stale, key=stale.get)
    return [f"temporal.cv_embargo_days ({lookup(params, 'temporal.cv_embargo_days')}) drops whole "
            f"earlier test windows from later folds' training: {len(stale)} of {len(folds)} folds "
            f"train on nothing newer than {stale[worst]} dates before their test window (fold "
            f"{worst}; the purge alone leaves {gap + 1}), so the out-of-fold predictions the later "
            "layers learn from come from stale models. An embargo shorter than a test window "
            "less cv_gap_days keeps their newest history."]


def few_oof_fold_warnings(dates, params: Mapping[str, Any]) -> list[str]:
    """The layout these dates get (short panels scale it down) with fewer out-of-fold folds than
    the walk-forward ensemble choice needs to be scored: the run trains and tests, but `final`
    (the default gated model) has no honest development score, so the registry can never make
    it champion."""
    if any(lookup(params, key) is None for key in ("periods", "temporal", "cv")):
        return []
    if (lookup(params, "evaluation.gates.model") or "final") != "final":
        return []  # another gated model is scored on its own out-of-fold folds
    calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    try:
        folds, _ = _walk_forward_folds(calendar, params)
    except (PreflightError, ValueError):
        return []  # check_cv_layout refuses these dates with its own message
    n_oof = sum(fold.stage == cv.OOF for fold in folds)
    if n_oof >= cv.CHAMPION_OOF_FOLDS:
        return []
    n_tuning = len(folds) - n_oof
    requested = lookup(params, "cv.n_splits") - (lookup(params, "cv.n_tuning_folds") or 0)
    advice = (f"set cv.n_splits >= {n_tuning + cv.CHAMPION_OOF_FOLDS}"
              if requested < cv.CHAMPION_OOF_FOLDS else
              "the panel is too short for more once the layout is scaled down to "
              "cv.short_panel.floor: give a longer panel or lower cv.short_panel.floor.min_test_days")
    return [f"the CV layout on these dates has {n_oof} out-of-fold fold(s) ({len(folds)} folds, "
            f"{n_tuning} for tuning): the first is scored with equal weights (no earlier "
            "out-of-fold rows to fit an ensemble on), so the walk-forward ensemble choice needs "
            f"{cv.CHAMPION_OOF_FOLDS} (a stand-in, one to choose on, one to score). This run "
            "will have no stacking.final.oos_rank_ic and the registry cannot make its model "
            f"champion (inference.model_source: registry serves the champion); {advice}"]


def _with_dev_start_hint(message: str, calendar: pd.DatetimeIndex, dev_start) -> str:
    """When periods.dev_start leaves dates out, the count the folds see is not the panel's: say so
    (the default dev_start suits the shipped sample, not every file)."""
    before = int((calendar < pd.Timestamp(dev_start)).sum()) if dev_start else 0
    if not before:
        return message
    return (message.rstrip(". ") + f". periods.dev_start ({dev_start}) leaves out the panel's first {before} dates: "
            "an earlier one (or null) gives the split and the folds more")


# generator argument -> the temporal parameter it must equal for the planted signal to fit the label
SYNTHETIC_TIMING = {"synthetic.horizon": "temporal.prediction_horizon_days",
                    "synthetic.execution_delay": "temporal.execution_delay_days"}


def synthetic_timing_warnings(params: Mapping[str, Any],
                              file_timing: Mapping[str, Any] | None = None) -> list[str]:
    """A synthetic market planted for another horizon or delay than the labels measure: not an
    error (a mismatch can be the experiment), but said, since the planted signal then pays over
    other days than the label's window. `file_timing`: the values a generated file records
    (a run on the file; else this run's `synthetic.*`, for a run that generates it)."""
    warnings = []
    for generator, temporal in SYNTHETIC_TIMING.items():
        planted = (file_timing or {}).get(generator) if file_timing is not None \
            else lookup(params, generator)
        labelled = lookup(params, temporal)
        if planted is not None and labelled is not None and planted != labelled:
            what = (f"the data file was generated with {generator} = {planted}, but {temporal} "
                    f"is {labelled}" if file_timing is not None else
                    f"{generator} ({planted}) differs from {temporal} ({labelled})")
            warnings.append(f"{what}: the planted signal pays over other days than the label "
                            "window measures; set both to one value unless the mismatch is the "
                            "experiment")
    return warnings


def _split_or_none(calendar: pd.DatetimeIndex, periods: Mapping[str, Any],
                   temporal: TemporalConfig) -> dict | None:
    """The development | gap | test split data_processing makes, None when it cannot be made."""
    try:
        return split.split_dates(
            calendar, gap_days=temporal.cv_gap_days,
            test_fraction=split.configured_test_fraction(periods),
            test_start=periods.get("test_start"), dev_start=periods.get("dev_start"))
    except ValueError:
        return None


def cut_history_warnings(dates, params: Mapping[str, Any]) -> list[str]:
    """periods.dev_start cuts the file's earlier dates off the pipeline (no feature history
    before it), and the dates from it to the registry's checked test dates are fewer than the
    chain's warm-up can be: the pipeline's features there started at dev_start, the chain's read
    the full warm-up, so the reproduction check fails and the model is not registered (said at
    the end of a whole run, so said before it)."""
    from bma_quant.core.features.warmup import largest_chain_warmup_days

    periods, registry = lookup(params, "periods"), lookup(params, "registry") or {}
    if not isinstance(periods, Mapping) or not periods.get("dev_start") \
            or not registry.get("enabled", True) or lookup(params, "temporal") is None:
        return []
    calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    dev_start = pd.Timestamp(periods["dev_start"])
    if not (calendar < dev_start).any():
        return []  # nothing before it: the pipeline had the file's whole history
    temporal = TemporalConfig.from_params(params["temporal"])
    dates_split = _split_or_none(calendar, periods, temporal)
    if dates_split is None:
        return []  # check_cv_layout refuses this split with its own message
    test = calendar[(calendar >= pd.Timestamp(dates_split["test_start"]))
                    & (calendar <= pd.Timestamp(dates_split["test_end"]))]
    last = registry.get("reproduction_dates")
    checked_start = test[-int(last)] if last and len(test) > int(last) else test[0]
    history = int(((calendar >= dev_start) & (calendar < checked_start)).sum())
    try:
        warmup = largest_chain_warmup_days(params)
    except (KeyError, TypeError, ValueError):
        return []  # a feature or processing setting the layers will refuse by name
    if history >= warmup:
        return []
    return [f"periods.dev_start ({dev_start.date()}) leaves {history} dates of history before "
            f"the test dates the registry checks (from {checked_start.date()}), and the chain "
            f"may need up to {warmup} (its warm-up: longest feature window, lags, smoothing, "
            "registry.warmup_extra_days): the pipeline's features there start at dev_start, the "
            "chain's read the file's earlier dates, so the reproduction check is likely to fail "
            "and the model not to be registered. Set periods.dev_start earlier (or null)."]


# metric of the evaluation table that counts scored test dates (the `min_test_dates` gate's)
TEST_DATES_METRIC = "n_dates"


def contradictory_settings(params: Mapping[str, Any]) -> list[str]:
    """Pairs of settings of which one silently wins, as messages: not errors (each value is
    valid alone), but said before anything is trained."""
    warnings = []
    most, least = (lookup(params, f"feature_engineering.selection.{k}_features")
                   for k in ("max", "min"))
    if isinstance(most, int) and isinstance(least, int) and least > most:
        warnings.append(f"feature_engineering.selection.min_features ({least}) is above "
                        f"max_features ({most}): at most {most} factors are kept")
    learners, tuned = lookup(params, "base_models.learners"), lookup(params, "base_models.tuning.learners")
    if lookup(params, "base_models.tuning.enabled") and isinstance(learners, list) \
            and isinstance(tuned, list):
        untrained = [str(n) for n in tuned if n not in learners]
        if untrained:
            warnings.append(f"base_models.tuning.learners names {', '.join(untrained)}, which "
                            "base_models.learners does not train: not tuned")
    regime_learner = lookup(params, "regime_models.learner")
    if isinstance(learners, list) and isinstance(regime_learner, str) \
            and regime_learner not in learners and lookup(params, "regime_models.use_tuned_params"):
        warnings.append(f"regime_models.learner ({regime_learner}) is not among "
                        "base_models.learners: the regime layer trains it on its "
                        "regime_models.learner_params (use_tuned_params finds no tuned ones) and, "
                        "with compare_global, fits its global comparison itself")
    return warnings


def few_rebalance_warnings(dates, params: Mapping[str, Any]) -> list[str]:
    """A test period too short for two rebalances at evaluation.backtest.rebalance_days: the
    backtest holds one book, and its Sharpe (which the gates may judge) says little."""
    if lookup(params, "periods") is None or lookup(params, "temporal") is None:
        return []
    temporal = TemporalConfig.from_params(params["temporal"])
    every = lookup(params, "evaluation.backtest.rebalance_days") or temporal.horizon_days
    calendar = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    dates_split = _split_or_none(calendar, params["periods"], temporal)
    if dates_split is None or not isinstance(every, int | float):
        return []
    scored = max(0, int(dates_split["test_dates"]) - temporal.label_span)
    if scored >= 2 * every:
        return []
    return [f"evaluation.backtest.rebalance_days ({every:g}) leaves the test period "
            f"({dates_split['test_start']}..{dates_split['test_end']}, {scored} scored dates) "
            "fewer than two rebalances: the backtest holds one book, and its Sharpe, turnover "
            "and the gates that read them say little"]


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
    _check_period_dates(calendar, periods)
    dates_split = _split_or_none(calendar, periods, temporal)
    if dates_split is None:
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
