"""Fold loop, out-of-fold predictions, refit on the development period, failure capture.

Rows are long (date, ticker) observations. Training rows of a fold are those on the fold's train
dates with a finite target and a positive sample weight; test rows are every row on its test dates
(a missing label only means the row is not scored). Sample weights are rescaled to mean 1 inside
every training set: time-decay weights computed from the end of the development period would
otherwise be tiny in early folds and silently disable splits (min_child_weight, min_sum_hessian).

The model is trained on a per-date cross-sectional transform of the label (`target_transform`):
the objective and every reported score is a cross-sectional correlation, so the level and scale of
a date's returns carry no information worth fitting, and ranks keep fat-tailed days from dominating.
Scores are always computed against the raw label.

Public entry points reused by other layers: `fit_predict_folds` and `refit`.
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from bma_quant.core.data.cv import OOF, TUNING, DateFold, folds_of_stage
from bma_quant.core.data.preflight import PreflightError
from bma_quant.core.evaluation import metrics
from bma_quant.core.models.learners import (
    build_native_matrix,
    get_learner,
    native_fit_predict,
    predict_float32,
)

TARGET_TRANSFORMS = ("rank", "zscore", "raw")


@dataclass(frozen=True)
class TargetTransform:
    """The per-date label transform a learner is fitted on: `method` (one of TARGET_TRANSFORMS)
    and, for "zscore", the |z| at which the scores are clipped (`target_zscore_clip`)."""

    method: str = "rank"
    zscore_clip: float = 5.0

    @classmethod
    def of(cls, value: str | TargetTransform) -> TargetTransform:
        """A transform from its method name (the default clip) or itself."""
        return value if isinstance(value, TargetTransform) else cls(str(value))

    @classmethod
    def from_params(cls, params: dict) -> TargetTransform:
        """From a layer's parameters (`target_transform`, `target_zscore_clip`)."""
        return cls(str(params.get("target_transform", "rank")),
                   float(params.get("target_zscore_clip", 5.0)))


def cross_sectional_target(label, dates, method: str | TargetTransform = "rank") -> np.ndarray:
    """Per-date transform of the label, NaN kept: centred percentile ranks in (-0.5, 0.5)
    ("rank"), z-scores clipped at +-zscore_clip ("zscore") or the label itself ("raw")."""
    transform = TargetTransform.of(method)
    values = pd.Series(np.asarray(label, dtype=np.float64))
    if transform.method == "raw":
        return values.to_numpy(np.float32)
    groups = values.groupby(np.asarray(dates))
    if transform.method == "rank":
        out = (groups.rank(method="average") - 0.5) / groups.transform("count") - 0.5
    elif transform.method == "zscore":
        std = groups.transform("std").replace(0.0, np.nan)
        clip = transform.zscore_clip
        out = ((values - groups.transform("mean")) / std).clip(-clip, clip)
    else:
        raise ValueError(f"target_transform must be one of {TARGET_TRANSFORMS}, got "
                         f"{transform.method!r}")
    return out.to_numpy(np.float32)


def normalised_weights(weight: np.ndarray) -> np.ndarray:
    """Weights rescaled to mean 1 (the relative decay is what matters)."""
    weight = np.asarray(weight, dtype=np.float64)
    mean = weight.mean() if weight.size else 1.0
    return (weight / mean if mean > 0 else np.ones_like(weight)).astype(np.float32)


@dataclass
class LearningSet:
    """Development rows as arrays: float32 features, raw label, training target, weight, keys."""

    X: np.ndarray
    label: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    dates: np.ndarray
    tickers: np.ndarray | None
    feature_names: list[str]

    @classmethod
    def from_arrays(cls, X, y, weights, dates, *, tickers=None, target_transform: str | TargetTransform = "rank"
                    ) -> LearningSet:
        names = list(X.columns) if isinstance(X, pd.DataFrame) else [f"f{i}" for i in range(
            np.shape(X)[1])]
        features = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
        label = np.asarray(y, dtype=np.float64)
        dates = pd.DatetimeIndex(dates).to_numpy()
        weight = np.ones(len(label)) if weights is None else np.asarray(weights, np.float64)
        if not (len(features) == len(label) == len(dates) == len(weight)):
            raise ValueError("X, y, weights and dates must have the same number of rows")
        return cls(
            X=features,
            label=label,
            target=cross_sectional_target(label, dates, target_transform),
            weight=np.nan_to_num(weight, nan=0.0),
            dates=dates,
            tickers=None if tickers is None else np.asarray(tickers, dtype=object),
            feature_names=names,
        )

    @cached_property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of the rows, keys, labels, weights and feature names: two
        studies with the same fingerprint were tuned on the same data."""
        digest = hashlib.sha256("\x1f".join(self.feature_names).encode())
        for array in (self.X, self.label, self.weight, self.dates.astype("datetime64[ns]")):
            digest.update(np.ascontiguousarray(array).tobytes())
        if self.tickers is not None:
            digest.update("\x1f".join(map(str, self.tickers)).encode())
        return digest.hexdigest()[:16]

    def trainable(self, rows: np.ndarray) -> np.ndarray:
        """The subset of `rows` usable for fitting: finite target and positive weight."""
        keep = np.isfinite(self.target[rows]) & (self.weight[rows] > 0)
        return rows[keep]


@dataclass
class CVResult:
    """Out-of-fold predictions (one per test row) and per-fold scores of one learner."""

    fold_of_row: np.ndarray  # fold of each OOF row
    rows: np.ndarray  # positions in the LearningSet
    prediction: np.ndarray
    scores: pd.DataFrame

    @property
    def rank_ic_mean(self) -> float:
        return float(self.scores["rank_ic"].mean())


def thin_training_dates(rows: np.ndarray, dates: np.ndarray, max_rows: int | None) -> np.ndarray:
    """`rows` cut to at most about `max_rows` by keeping every k-th training date (whole dates,
    so each kept cross-section stays complete; adjacent dates' h-day labels overlap, so little
    information is lost). None or a large enough limit keeps every row."""
    if not max_rows or len(rows) <= max_rows:
        return rows
    stride = math.ceil(len(rows) / int(max_rows))
    row_dates = dates[rows]
    kept = np.unique(row_dates)[::stride]
    return rows[np.isin(row_dates, kept)]


class FoldCache:
    """Fold row positions and per-fold binned matrices, shared by every trial and the final CV.

    Native matrices (LightGBM Dataset, XGBoost QuantileDMatrix, ElasticNet's scaled matrix) are
    built on first use for each (fold, kind, binning) and kept, so tuning does not re-bin the same
    training rows per trial. `max_train_rows` thins each fold's training dates (tuning on a large
    panel); test rows are never thinned."""

    def __init__(self, data: LearningSet, folds: list[DateFold], max_train_rows: int | None = None):
        self.data = data
        self.folds = list(folds)
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []
        for fold in self.folds:
            train = np.flatnonzero(np.isin(data.dates, fold.train_dates.to_numpy()))
            test = np.flatnonzero(np.isin(data.dates, fold.test_dates.to_numpy()))
            train = thin_training_dates(data.trainable(train), data.dates, max_train_rows)
            self.rows.append((train, test))
        self._weights: dict[int, np.ndarray] = {}
        self._native: dict[tuple, Any] = {}

    @cached_property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of the data (``LearningSet.fingerprint``), the training target
        (its transform) and every fold's training and test rows (layout, purge, thinning): two
        caches with the same fingerprint score a configuration alike."""
        digest = hashlib.sha256(self.data.fingerprint.encode())
        digest.update(np.ascontiguousarray(self.data.target).tobytes())
        for train, test in self.rows:
            digest.update(np.int64(len(train)).tobytes() + np.asarray(train, np.int64).tobytes())
            digest.update(np.int64(len(test)).tobytes() + np.asarray(test, np.int64).tobytes())
        return digest.hexdigest()[:16]

    def train_weight(self, k: int) -> np.ndarray:
        if k not in self._weights:
            self._weights[k] = normalised_weights(self.data.weight[self.rows[k][0]])
        return self._weights[k]

    def native_matrix(self, kind: str, k: int, params: dict):
        binning = tuple(sorted((key, str(v)) for key, v in params.items() if "bin" in key))
        key = (kind, k, binning)
        if key not in self._native:
            train = self.rows[k][0]
            self._native[key] = build_native_matrix(
                kind, self.data.X[train], self.data.target[train], self.train_weight(k), params
            )
        return self._native[key]

    def fit_predict_fold(self, name: str, params: dict, k: int, seed: int, n_jobs: int
                         ) -> np.ndarray:
        learner = get_learner(name)
        train, test = self.rows[k]
        if len(train) == 0:
            raise ValueError(f"fold {k} has no trainable rows")
        X_test = self.data.X[test]
        if learner.native:
            matrix = self.native_matrix(learner.native, k, params)
            return np.asarray(native_fit_predict(name, params, matrix, X_test, seed, n_jobs),
                              dtype=np.float32)
        estimator = learner.build(dict(params), int(seed), int(n_jobs))
        learner.fit(estimator, self.data.X[train], self.data.target[train], self.train_weight(k),
                    self.data.dates[train])
        return predict_float32(estimator, X_test)

    def fold_rank_ic(self, k: int, prediction: np.ndarray, min_names: int) -> float:
        """Mean daily RankIC of a fold's test predictions; 0 when undefined (e.g. constant)."""
        value = self._fold_rank_ic(k, prediction, min_names)
        return 0.0 if not math.isfinite(value) else value

    def _fold_rank_ic(self, k: int, prediction: np.ndarray, min_names: int) -> float:
        test = self.rows[k][1]
        frame = pd.DataFrame({"date": self.data.dates[test], "prediction": prediction,
                              "label": self.data.label[test]})
        return metrics.mean_rank_ic(frame, "prediction", "label", min_names)

    def fold_score(self, k: int, prediction: np.ndarray, min_names: int) -> tuple[float, bool]:
        """(RankIC, constant): the fold's mean daily RankIC (0 when undefined) and whether its
        predictions rank nothing, all equal on every date (an ElasticNet shrunk to its
        intercept, a model of date-level features only): no model, not one that scored 0. A
        fold too thin to score (fewer than `min_names` names a date) is not constant."""
        value = self._fold_rank_ic(k, prediction, min_names)
        if math.isfinite(value):
            return value, False
        dates = self.data.dates[self.rows[k][1]]
        finite = np.isfinite(np.asarray(prediction, dtype=np.float64))
        # one name a date has nothing to rank whatever the model: not taken for constant
        ranked = pd.Series(dates[finite]).value_counts().max() >= 2 if finite.any() else False
        return 0.0, bool(ranked and metrics.constant_cross_sections(prediction, dates))

    def free(self, kind: str | None = None) -> None:
        """Drop the binned matrices of one kind (all kinds when None)."""
        for key in [k for k in self._native if kind is None or k[0] == kind]:
            del self._native[key]


def cross_validate(
    cache: FoldCache,
    name: str,
    params: dict,
    *,
    seed: int = 0,
    n_jobs: int = 1,
    min_names: int = 5,
    nw_lag: int = 10,
    on_fold: Callable[[int, float, bool], None] | None = None,
    full_scores: bool = True,
) -> CVResult:
    """Fit on every fold's training rows, predict its test rows, score them.

    `on_fold(k, rank_ic, constant)` is called after each fold (Optuna reporting; it may raise
    to prune); `constant`: the fold's predictions rank nothing (``FoldCache.fold_score``).
    With full_scores=False only the RankIC is computed per fold (the tuning objective); the rest
    can be added later with `add_full_scores`."""
    parts, folds_of, scores = [], [], []
    for k, fold in enumerate(cache.folds):
        start = time.perf_counter()
        prediction = cache.fit_predict_fold(name, params, k, seed, n_jobs)
        seconds = time.perf_counter() - start
        train, test = cache.rows[k]
        rank_ic, constant = cache.fold_score(k, prediction, min_names)
        scores.append({"model": name, "fold": fold.fold, "n_train": len(train),
                       "n_test": len(test), "rank_ic": rank_ic, "fit_seconds": seconds})
        parts.append(prediction)
        folds_of.append(np.full(len(test), fold.fold, dtype=np.int32))
        if on_fold is not None:
            on_fold(k, rank_ic, constant)
    result = CVResult(
        fold_of_row=np.concatenate(folds_of) if folds_of else np.empty(0, np.int32),
        rows=np.concatenate([test for _, test in cache.rows]) if cache.rows else np.empty(0, int),
        prediction=np.concatenate(parts) if parts else np.empty(0, np.float32),
        scores=pd.DataFrame(scores),
    )
    return add_full_scores(cache, result, min_names, nw_lag) if full_scores else result


FULL_SCORE_KEYS = ("ic", "icir", "rank_icir", "rank_ic_tstat", "hit_rate", "n_dates")


def add_full_scores(cache: FoldCache, result: CVResult, min_names: int = 5, nw_lag: int = 10
                    ) -> CVResult:
    """Per-fold IC, ICIR, Newey-West t-stat and hit rate next to the RankIC (DESIGN §4)."""
    rows = []
    for k, (_, test) in enumerate(cache.rows):
        in_fold = result.fold_of_row == cache.folds[k].fold
        frame = pd.DataFrame({"date": cache.data.dates[test],
                              "prediction": result.prediction[in_fold],
                              "label": cache.data.label[test]})
        full = metrics.prediction_scores(frame, "prediction", "label", min_names, nw_lag)
        rows.append({key: full[key] for key in FULL_SCORE_KEYS})
    scores = pd.concat([result.scores.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    return CVResult(result.fold_of_row, result.rows, result.prediction, scores)


def oof_frame(data: LearningSet, result: CVResult, name: str, trial: int | None = None
              ) -> pd.DataFrame:
    """Long out-of-fold predictions: date, ticker, model, [trial,] fold, prediction."""
    frame = pd.DataFrame({"date": data.dates[result.rows]})
    if data.tickers is not None:
        frame["ticker"] = data.tickers[result.rows]
    frame["model"] = name
    if trial is not None:
        frame["trial"] = np.int32(trial)
    frame["fold"] = result.fold_of_row
    frame["prediction"] = result.prediction.astype(np.float32)
    return frame


def date_weights(dates, sample_weights: pd.DataFrame | None) -> tuple[np.ndarray, int]:
    """(each row's time-decay weight from its date, how many dates have none). A date without a
    weight gets 0: its rows are not trained on (every layer alike). None: every weight 1."""
    dates = pd.DatetimeIndex(dates)
    if sample_weights is None:
        return np.ones(len(dates)), 0
    by_date = sample_weights.groupby("date")["weight"].mean()
    weight = by_date.reindex(dates).to_numpy(np.float64)
    missing_rows = ~np.isfinite(weight)
    return np.where(missing_rows, 0.0, weight), int(dates[missing_rows].nunique())


def fit_predict_folds(
    learner_name: str,
    params: dict,
    X,
    y,
    weights,
    dates,
    folds: list[DateFold],
    *,
    tickers=None,
    seed: int = 0,
    n_jobs: int = 1,
    target_transform: str | TargetTransform = "rank",
    min_names: int = 5,
    nw_lag: int = 10,
    max_train_rows: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Out-of-fold predictions and per-fold scores of one learner with fixed parameters.

    X: features (DataFrame or array, rows aligned with y, weights, dates[, tickers]).
    `max_train_rows`: each fold's training dates thinned as `FoldCache` does (None: every row).
    Returns (oof: date, [ticker], model, fold, prediction; scores: one row per fold)."""
    data = LearningSet.from_arrays(X, y, weights, dates, tickers=tickers,
                                   target_transform=target_transform)
    cache = FoldCache(data, folds, max_train_rows)
    result = cross_validate(cache, learner_name, params, seed=seed, n_jobs=n_jobs,
                            min_names=min_names, nw_lag=nw_lag)
    return oof_frame(data, result, learner_name), result.scores


def refit(
    learner_name: str,
    params: dict,
    X_dev,
    y_dev,
    w_dev=None,
    *,
    dates=None,
    seed: int = 0,
    n_jobs: int = 1,
    target_transform: str | TargetTransform = "rank",
    max_train_rows: int | None = None,
):
    """The learner fitted on all development rows (finite target, positive weight), or on every
    k-th date of them beyond `max_train_rows` rows (`thin_training_dates`; needs `dates`).

    `dates` is needed for a per-date target transform and by alpha_composite; with dates=None the
    target must be "raw". Keep X_dev a DataFrame so the estimator records the feature names."""
    return refit_weightings(learner_name, params, X_dev, y_dev, [w_dev], dates=dates, seed=seed,
                            n_jobs=n_jobs, target_transform=target_transform,
                            max_train_rows=max_train_rows)[0]


def refit_weightings(
    learner_name: str,
    params: dict,
    X_dev,
    y_dev,
    weight_sets: list,
    *,
    dates=None,
    seed: int = 0,
    n_jobs: int = 1,
    target_transform: str | TargetTransform = "rank",
    max_train_rows: int | None = None,
) -> list:
    """`refit` once per weight vector in `weight_sets` (None = equal weights), each result the
    same as its own `refit` call. The target transform, and when every vector keeps the same rows
    the row selection and the learner's weight-free preprocessing (`Learner.fit_weightings`),
    are computed once: regime soft training fits one model per regime on the same rows."""
    if dates is None and TargetTransform.of(target_transform).method != "raw":
        raise ValueError(f"refit with target_transform={target_transform!r} needs dates")
    label = np.asarray(y_dev, dtype=np.float64)
    row_dates = pd.DatetimeIndex(dates).to_numpy() if dates is not None else None
    target = (cross_sectional_target(label, row_dates, target_transform)
              if row_dates is not None else label.astype(np.float32))
    weights = [np.ones(len(label)) if w is None else np.nan_to_num(np.asarray(w, float))
               for w in weight_sets]
    keeps = [_refit_rows(target, w, row_dates, max_train_rows) for w in weights]
    learner = get_learner(learner_name)
    if all(np.array_equal(keeps[0], keep) for keep in keeps[1:]):
        groups = [list(range(len(weights)))]
    else:
        groups = [[i] for i in range(len(weights))]
    fitted: dict[int, Any] = {}
    for members in groups:
        keep = keeps[members[0]]
        X_fit = X_dev[keep] if isinstance(X_dev, pd.DataFrame) else np.asarray(X_dev)[keep]
        if isinstance(X_fit, pd.DataFrame):
            X_fit = X_fit.astype(np.float32)
        estimators = [learner.build(dict(params), int(seed), int(n_jobs)) for _ in members]
        results = learner.fit_each_weighting(
            estimators, X_fit, target[keep], [normalised_weights(weights[i][keep]) for i in members],
            None if row_dates is None else row_dates[keep])
        fitted.update(zip(members, results, strict=True))
    return [fitted[i] for i in range(len(weights))]


def _refit_rows(target: np.ndarray, weight: np.ndarray, row_dates, max_train_rows) -> np.ndarray:
    """Rows a refit trains on: a finite target and a positive weight, thinned to every k-th date
    beyond `max_train_rows`."""
    keep = np.isfinite(target) & (weight > 0)
    if row_dates is not None and max_train_rows:
        kept_rows = thin_training_dates(np.flatnonzero(keep), row_dates, max_train_rows)
        keep = np.zeros(len(keep), dtype=bool)
        keep[kept_rows] = True
    return keep


# ---------------------------------------------------------------------------------------------
# Failure capture (seed §6: one learner failing must not stop the others)
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What running one guarded step produced: its value, or the error and traceback."""

    name: str
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    exception: BaseException | None = None  # the caught error, for a caller to re-raise (a stop)

    @property
    def ok(self) -> bool:
        return self.error is None


class NoBaseModelSucceeded(RuntimeError):
    """Every enabled base learner failed or predicted a constant (DESIGN §5: the run fails only
    then). Each learner's own traceback was logged when it failed; this error says what to change."""

    @classmethod
    def from_statuses(cls, statuses: list[dict]) -> NoBaseModelSucceeded:
        """statuses: {"name", "status" ("failed" | "degenerate"), "error"} per enabled learner."""
        if not statuses:
            return cls("No base learner succeeded: base_models.learners enables none; list at "
                       "least one of the registered learners.")
        detail = "; ".join(f"{s['name']} {s['status']}: {s['error']}" for s in statuses)
        advice = []
        if any(s["status"] == "failed" for s in statuses):
            advice.append("each failed learner's traceback is in the log above and in info.log")
        for s in statuses:
            if s["status"] == "degenerate":
                advice.append(f"loosen the penalty in base_models.defaults.{s['name']} (or tune "
                              "it: base_models.tuning)")
        advice.append("add another learner to base_models.learners")
        return cls(f"No base learner succeeded ({detail}). To fix: {'; '.join(advice)}.")


def run_guarded(name: str, fn: Callable[..., Any], *args, **kwargs) -> Outcome:
    """Run fn; an exception becomes a failed Outcome (type, message, traceback) instead of
    propagating. KeyboardInterrupt and SystemExit still propagate."""
    start = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - recording every learner failure is the point
        return Outcome(name, error=f"{type(exc).__name__}: {exc}",
                       traceback=traceback.format_exc(), seconds=time.perf_counter() - start,
                       exception=exc)
    return Outcome(name, value=value, seconds=time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# From the model_input / sample_weights / date_split / cv_folds datasets to arrays
# ---------------------------------------------------------------------------------------------

KEY_COLUMNS = ("date", "ticker", "label")


@dataclass
class TrainingInputs:
    """Development rows with their folds, and the test-period rows to predict after the refit.

    `tuning_cache` holds the tuning folds (Optuna scores trials there only), `cache` the
    out-of-fold folds (predictions that later layers learn from; nested selection, DESIGN §3)."""

    data: LearningSet
    cache: FoldCache
    tuning_cache: FoldCache
    test_X: np.ndarray
    test_dates: np.ndarray
    test_tickers: np.ndarray
    missing_weight_dates: int = 0
    max_train_rows: int | None = None  # out-of-fold folds and the refit (see thin_training_dates)

    @property
    def feature_names(self) -> list[str]:
        return self.data.feature_names

    def dev_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.data.X, columns=self.feature_names, copy=False)

    def test_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.test_X, columns=self.feature_names, copy=False)


def training_inputs(
    model_input: pd.DataFrame,
    sample_weights: pd.DataFrame | None,
    dev: tuple[str, str],
    test: tuple[str, str],
    folds: list[DateFold],
    *,
    features: list[str] | None = None,
    target_transform: str | TargetTransform = "rank",
    tuning_max_train_rows: int | None = None,
    max_train_rows: int | None = None,
) -> TrainingInputs:
    """Split model_input into development rows (with weights and fold caches) and test rows.
    `tuning_max_train_rows` thins the tuning folds' training dates, `max_train_rows` those of the
    out-of-fold folds (and is kept for the refit; see `thin_training_dates`).

    features=None uses every column but date, ticker and label (feature_engineering's selection).
    A development date without a sample weight gets weight 0 (not trained on) and is counted."""
    names = list(features) if features else [c for c in model_input.columns
                                             if c not in KEY_COLUMNS]
    absent = [n for n in names if n not in model_input.columns or n in KEY_COLUMNS]
    if absent:
        offered = [c for c in model_input.columns if c not in KEY_COLUMNS]
        raise PreflightError(f"base_models.features names {', '.join(map(repr, absent))}, which "
                         f"model_input does not offer as a feature (it has: "
                         f"{', '.join(offered[:12])}{' ...' if len(offered) > 12 else ''}); "
                         "null uses every selected feature")
    frame = model_input.sort_values(["date", "ticker"], kind="stable")
    dates = pd.DatetimeIndex(frame["date"])
    in_dev = (dates >= pd.Timestamp(dev[0])) & (dates <= pd.Timestamp(dev[1]))
    in_test = (dates >= pd.Timestamp(test[0])) & (dates <= pd.Timestamp(test[1]))
    dev_rows = frame.loc[in_dev]
    weight, missing = date_weights(dev_rows["date"], sample_weights)
    data = LearningSet.from_arrays(dev_rows[names], dev_rows["label"], weight, dev_rows["date"],
                                   tickers=dev_rows["ticker"].to_numpy(object),
                                   target_transform=target_transform)
    test_rows = frame.loc[in_test]
    return TrainingInputs(
        data=data,
        cache=FoldCache(data, folds_of_stage(folds, OOF), max_train_rows),
        tuning_cache=FoldCache(data, folds_of_stage(folds, TUNING), tuning_max_train_rows),
        test_X=np.ascontiguousarray(test_rows[names].to_numpy(np.float32)),
        test_dates=test_rows["date"].to_numpy(),
        test_tickers=test_rows["ticker"].to_numpy(object),
        missing_weight_dates=missing,
        max_train_rows=max_train_rows,
    )
