"""Regime-specific models with a stability-weighted global fallback (DESIGN §5.2; seed §2.3.2).

For each regime with at least `min_samples_per_regime` labelled training rows, one learner is
trained on that regime's rows only (regimes are market-wide, so a regime's rows are the rows of its
dates). A regime with fewer rows (or none) is served by a *fallback*: the global learner trained on
all rows with regime-stability sample weights, the probability the detector gives to the regime
each row's date was labelled with (floored), times the time-decay weight. A row's prediction comes
from the model of its date's regime (`combine="route"`) or is the probability-weighted mix of every
regime's model by the filtered probabilities (`combine="blend"`, soft).

Context features (`context_columns`, issue 12): every model also sees its date's regime
probabilities p_* and the market-wide evidence columns carried in the regimes table (trend,
volatility, dispersion, breadth, trailing factor performance; `core.regimes.regime_evidence`), so trees can
learn how a factor's payoff depends on the state. They come from the same regimes table as the
labels: in cross-validation that is the fold's own detector, fitted on the fold's training dates,
so out-of-fold predictions see nothing fitted on later dates.

Cross-validation uses the shared purged folds: fold k's models are trained on fold k's training
rows only, with the regimes a detector fitted on fold k's training dates gives (see
`cross_validate_regime_models`), and predict fold k's test rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bma_quant.core.data.cv import DateFold
from bma_quant.core.evaluation.metrics import mean_rank_ic
from bma_quant.core.features.fear_greed import fear_greed_index
from bma_quant.core.models import learners, training
from bma_quant.core.regimes.detection import (
    PROBABILITY_COLUMNS,
    REGIMES,
    RegimeDetector,
    detector_inputs,
    regime_table,
)
from bma_quant.core.regimes.regime_evidence import regime_evidence

logger = logging.getLogger(__name__)

COMBINE_MODES = ("route", "blend")
TRAINING_MODES = ("hard", "soft")


@dataclass(frozen=True)
class RegimeLearningConfig:
    learner: str = "lightgbm"
    params: Mapping[str, Any] = field(default_factory=dict)
    min_samples_per_regime: int = 300
    combine: str = "route"
    min_stability_weight: float = 0.05
    seed: int = 0
    n_jobs: int = 1
    target_transform: str | training.TargetTransform = "rank"  # per-date label transform fitted on
    context_columns: tuple[str, ...] = ()  # regimes-table columns added to every model's features
    max_train_rows: int | None = None  # every k-th training date beyond this many rows
    # hard: regime r's model trains on the rows labelled r; soft: on every row, weighted by the
    # filtered probability of r (floored at min_stability_weight), so an unsure date still
    # teaches each model in proportion and no model loses the other regimes' rows entirely
    training: str = "hard"

    def __post_init__(self):
        if self.combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {self.combine!r}")
        if self.training not in TRAINING_MODES:
            raise ValueError(f"training must be one of {TRAINING_MODES}, got {self.training!r}")
        if not 0.0 <= self.min_stability_weight <= 1.0:
            raise ValueError(
                f"min_stability_weight must be in [0, 1], got {self.min_stability_weight}"
            )
        learners.get_learner(self.learner)  # unknown learner names fail before any training

    @property
    def model_name(self) -> str:
        return f"regime_{self.learner}"


# ---------------------------------------------------------------------------------------------
# Learner adapter (base_models' registry and training loop)
# ---------------------------------------------------------------------------------------------


def fit_learner(config: RegimeLearningConfig, X: pd.DataFrame, y, weights, dates):
    """`config.learner` fitted like base_models fits it (`core.models.training.refit`: per-date target
    transform, weights rescaled to mean 1, rows without a label skipped)."""
    return training.refit(config.learner, dict(config.params), X, y, weights, dates=dates,
                          seed=config.seed, n_jobs=config.n_jobs,
                          target_transform=config.target_transform)


def fit_learner_weightings(config: RegimeLearningConfig, X: pd.DataFrame, y, weight_sets: list,
                           dates) -> list:
    """`fit_learner` once per weight vector on the same rows, sharing the work that does not
    depend on the weights (`training.refit_weightings`)."""
    return training.refit_weightings(config.learner, dict(config.params), X, y, weight_sets,
                                     dates=dates, seed=config.seed, n_jobs=config.n_jobs,
                                     target_transform=config.target_transform)


# ---------------------------------------------------------------------------------------------
# Regimes of rows
# ---------------------------------------------------------------------------------------------


def regimes_of_rows(row_dates, regimes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(regime label per row, (n_rows, 3) regime probabilities per row) by each row's date.

    A date missing from `regimes` is an error: every date must have a causal regime."""
    table = regimes.set_index("date")
    row_dates = pd.DatetimeIndex(row_dates)
    position = table.index.get_indexer(row_dates)
    if (position < 0).any():
        missing = row_dates[position < 0].unique()[:5]
        raise KeyError(f"no regime for dates {[str(d.date()) for d in missing]}")
    labels = table["regime"].to_numpy().astype(str)[position]
    probabilities = table[list(PROBABILITY_COLUMNS)].to_numpy(dtype=np.float64)[position]
    return labels, probabilities


def with_context(
    X: pd.DataFrame, row_dates, regimes: pd.DataFrame, context_columns
) -> pd.DataFrame:
    """X plus each row's date's `context_columns` from the regimes table (one value per date)."""
    if not context_columns:
        return X
    missing = [c for c in context_columns if c not in regimes.columns]
    if missing:
        raise KeyError(f"context columns {missing} are not in the regimes table "
                       f"(columns: {list(regimes.columns)})")
    table = regimes.set_index("date")[list(context_columns)]
    position = table.index.get_indexer(pd.DatetimeIndex(row_dates))
    if (position < 0).any():
        raise KeyError("rows without a regime date: cannot add context features")
    values = table.to_numpy(dtype=np.float32)[position]
    context = pd.DataFrame(values, columns=[f"ctx_{c}" for c in context_columns], index=X.index)
    return pd.concat([X, context], axis=1)


def stability_weights(labels: np.ndarray, probabilities: np.ndarray, floor: float) -> np.ndarray:
    """Probability of each row's own (smoothed) regime, floored: rows of settled regimes count
    more than rows around a switch."""
    column = {r: k for k, r in enumerate(REGIMES)}
    own = probabilities[np.arange(len(labels)), [column[r] for r in labels]]
    return np.maximum(np.nan_to_num(own, nan=0.0), floor)


# ---------------------------------------------------------------------------------------------
# The fitted regime-aware model
# ---------------------------------------------------------------------------------------------


@dataclass
class RegimeAwareModel:
    """Per-regime estimators plus the stability-weighted fallback, and the detector behind them.

    `predict(rows, regimes)`: rows have `date` and the feature columns; regimes is the `regimes`
    dataset (date, regime, p_bull, p_neutral, p_bear) covering those dates. For new data,
    `detect(inputs)` gives the regimes from `core.regimes.detection.detector_inputs(market, fear_greed)`.
    """

    learner: str
    feature_names: list[str]
    estimators: dict[str, Any]  # regimes with their own model
    fallback: Any | None  # global model with stability weights, for the other regimes
    combine: str = "route"
    detector: RegimeDetector | None = None
    fear_greed_params: dict | None = None
    training_rows: dict[str, int] = field(default_factory=dict)
    context_columns: tuple[str, ...] = ()
    evidence_params: dict | None = None

    @property
    def name(self) -> str:
        return f"regime_{self.learner}"

    @property
    def fallback_regimes(self) -> list[str]:
        return [r for r in REGIMES if r not in self.estimators]

    def model_for(self, regime: str):
        return self.estimators.get(regime, self.fallback)

    def detect(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """Regimes from `core.regimes.detection.detector_inputs(market, fear_greed)` with the fitted
        detector (thresholds / Markov parameters stay those of the development period)."""
        if self.detector is None:
            raise RuntimeError("this RegimeAwareModel has no detector")
        return self.detector.detect(inputs)

    def regimes_for(self, close_wide: pd.DataFrame, market: pd.DataFrame) -> pd.DataFrame:
        """The `regimes` table for new data: date x ticker closes and the `market` frame."""
        fear_greed = fear_greed_index(close_wide, market, self.fear_greed_params or {})
        evidence = regime_evidence(close_wide, market, self.evidence_params or {})
        inputs = detector_inputs(market, fear_greed, evidence)
        return regime_table(self.detect(inputs), inputs)

    def predict(self, rows: pd.DataFrame, regimes: pd.DataFrame) -> pd.Series:
        labels, probabilities = regimes_of_rows(rows["date"], regimes)
        X = with_context(rows[self.feature_names], rows["date"], regimes, self.context_columns)
        out = np.zeros(len(rows), dtype=np.float64)
        if self.combine == "route":
            for regime in REGIMES:
                mask = labels == regime
                if mask.any():
                    out[mask] = learners.predict_float32(self.model_for(regime), X[mask])
        else:
            cache: dict[int, np.ndarray] = {}  # fallback regimes share one model: predict once
            for k, regime in enumerate(REGIMES):
                estimator = self.model_for(regime)
                if id(estimator) not in cache:
                    cache[id(estimator)] = learners.predict_float32(estimator, X).astype(
                        np.float64)
                out += np.nan_to_num(probabilities[:, k]) * cache[id(estimator)]
        return pd.Series(out, index=rows.index, name="prediction")


def regime_input_columns(model: RegimeAwareModel) -> list[str]:
    """The regimes-table columns `model.predict` reads besides the features."""
    return ["regime", *PROBABILITY_COLUMNS,
            *[c for c in model.context_columns if c not in PROBABILITY_COLUMNS]]


STATE_PREFIX = "state_"  # regime columns in the one-frame input (a context column can share a
# feature's name, e.g. fear_greed, with other values: the feature is lagged / smoothed)


def regime_model_frame(model: RegimeAwareModel, rows: pd.DataFrame,
                       regimes: pd.DataFrame) -> pd.DataFrame:
    """One frame for the model alone (its MLflow pyfunc input): model_input rows (date, ticker,
    features) with their date's regime columns, each named `state_<column>`."""
    columns = [c for c in regime_input_columns(model) if c in regimes]
    state = (regimes[["date", *columns]].drop_duplicates("date", keep="last")
             .rename(columns={c: STATE_PREFIX + c for c in columns}))
    frame = rows[["date", "ticker", *model.feature_names]].merge(state, on="date", how="left")
    return frame.reset_index(drop=True)


def split_regime_model_frame(model: RegimeAwareModel, frame: pd.DataFrame
                             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`regime_model_frame` back to (rows, regimes) for `model.predict`."""
    state = [STATE_PREFIX + c for c in regime_input_columns(model) if STATE_PREFIX + c in frame]
    regimes = (frame[["date", *state]].drop_duplicates("date", keep="last")
               .rename(columns=lambda c: c.removeprefix(STATE_PREFIX) if c != "date" else c))
    return frame.drop(columns=state), regimes


def fit_regime_models(
    X: pd.DataFrame,
    y,
    weights,
    row_dates,
    regimes: pd.DataFrame,
    config: RegimeLearningConfig,
) -> RegimeAwareModel:
    """Fit one learner per regime with enough labelled rows, and the fallback if any lacks them.

    Rows with a missing label are ignored; `weights` are the time-decay sample weights. Beyond
    `config.max_train_rows` labelled rows every k-th date is kept (`training.thin_training_dates`)."""
    y = np.asarray(y, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    row_dates = pd.DatetimeIndex(row_dates)
    labelled = np.zeros(len(y), dtype=bool)
    # thinned before the split by regime, so every regime keeps the same dates' share
    labelled[training.thin_training_dates(np.flatnonzero(np.isfinite(y)), row_dates.to_numpy(),
                                          config.max_train_rows)] = True
    labels, probabilities = regimes_of_rows(row_dates, regimes)
    feature_names = list(X.columns)
    X = with_context(X, row_dates, regimes, config.context_columns)
    if config.training == "soft":
        estimators, counts = _fit_soft(X, y, weights, row_dates, labelled, probabilities, config)
    else:
        estimators, counts = _fit_hard(X, y, weights, row_dates, labelled, labels, config)
    fallback = None
    if len(estimators) < len(REGIMES):
        rows = np.flatnonzero(labelled)
        stability = stability_weights(labels[rows], probabilities[rows],
                                      config.min_stability_weight)
        fallback = fit_learner(config, X.iloc[rows], y[rows], weights[rows] * stability,
                               row_dates[rows])
    return RegimeAwareModel(
        learner=config.learner,
        feature_names=feature_names,
        estimators=estimators,
        fallback=fallback,
        combine=config.combine,
        training_rows=counts,
        context_columns=tuple(config.context_columns),
    )


def _fit_hard(X, y, weights, row_dates, labelled, labels, config: RegimeLearningConfig):
    """One model per regime on the rows labelled with it (regimes with too few rows: none)."""
    counts = {r: int((labelled & (labels == r)).sum()) for r in REGIMES}
    estimators = {}
    for regime in REGIMES:
        if counts[regime] < config.min_samples_per_regime:
            logger.info("regime %s: %d rows < %d, served by the fallback model", regime,
                        counts[regime], config.min_samples_per_regime)
            continue
        rows = np.flatnonzero(labelled & (labels == regime))
        estimators[regime] = fit_learner(config, X.iloc[rows], y[rows], weights[rows],
                                         row_dates[rows])
    if not estimators:
        _warn_no_regime_model(counts, config)
    return estimators, counts


def no_regime_model_message(counts: Mapping[str, int], min_samples: int, soft: bool) -> str:
    """Every regime below the row minimum: the regime-aware model is the fallback alone."""
    what = "probability mass in rows" if soft else "labelled rows"
    return (f"no regime has min_samples_per_regime ({min_samples}) rows ({what}: "
            + ", ".join(f"{r} {n}" for r, n in counts.items())
            + "): every prediction comes from the fallback model, so the regime-aware model adds "
              "nothing; lower regime_models.min_samples_per_regime")


def _warn_no_regime_model(counts: dict[str, int], config: RegimeLearningConfig) -> None:
    # INFO here (once per fold); regime_models' node warns once, on the refit
    logger.info(no_regime_model_message(counts, config.min_samples_per_regime,
                                        config.training == "soft"))


def _fit_soft(X, y, weights, row_dates, labelled, probabilities, config: RegimeLearningConfig):
    """One model per regime on every labelled row, weighted by that regime's filtered probability
    (floored); a regime whose probability mass is below min_samples_per_regime rows gets none."""
    rows = np.flatnonzero(labelled)
    counts, regime_weights = {}, {}
    for k, regime in enumerate(REGIMES):
        share = np.nan_to_num(probabilities[rows, k], nan=0.0)
        counts[regime] = int(round(share.sum()))  # effective rows of the regime
        if counts[regime] < config.min_samples_per_regime:
            logger.info("regime %s: probability mass of %d rows < %d, served by the fallback "
                        "model", regime, counts[regime], config.min_samples_per_regime)
            continue
        regime_weights[regime] = weights[rows] * np.maximum(share, config.min_stability_weight)
    if not regime_weights:
        _warn_no_regime_model(counts, config)
        return {}, counts
    fitted = fit_learner_weightings(config, X.iloc[rows], y[rows], list(regime_weights.values()),
                                    row_dates[rows])
    return dict(zip(regime_weights, fitted, strict=True)), counts


# ---------------------------------------------------------------------------------------------
# Cross-validation on the shared purged folds
# ---------------------------------------------------------------------------------------------


@dataclass
class RegimeCVResult:
    """Out-of-fold rows (positions into the development rows) and per-fold facts."""

    oof: pd.DataFrame  # row, fold, regime, prediction, global_prediction (if compared)
    folds: list[dict]


def cross_validate_regime_models(
    X: pd.DataFrame,
    y,
    weights,
    row_dates,
    folds: list[DateFold],
    fold_regimes: Callable[[DateFold], pd.DataFrame],
    config: RegimeLearningConfig,
    compare_global: bool = True,
    global_predictions: np.ndarray | None = None,
) -> RegimeCVResult:
    """Regime-aware out-of-fold predictions on `folds` (and the plain global model's, to compare).

    `fold_regimes(fold)` returns the regimes for all dates as seen by a detector fitted on that
    fold's training dates only; fold k's models see fold k's training rows only. The global model
    is base_models' own fold loop (`core.models.training.fit_predict_folds`) with the same parameters
    and training rows (each fold thinned to `config.max_train_rows` as the regime models are);
    `global_predictions` (one per row of X, e.g. base_models' own out-of-fold predictions of the
    same learner and parameters) is used instead of refitting it when given."""
    y = np.asarray(y, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    row_dates = pd.DatetimeIndex(row_dates)
    parts, fold_facts = [], []
    for fold in folds:
        train = np.flatnonzero(row_dates.isin(fold.train_dates))
        test = np.flatnonzero(row_dates.isin(fold.test_dates))
        if len(test) == 0:
            continue
        regimes = fold_regimes(fold)
        model = fit_regime_models(X.iloc[train], y[train], weights[train], row_dates[train],
                                  regimes, config)
        test_rows = X.iloc[test].assign(date=row_dates[test])
        labels, _ = regimes_of_rows(row_dates[test], regimes)
        parts.append(
            pd.DataFrame(
                {
                    "row": test,
                    "fold": np.int32(fold.fold),
                    "regime": labels,
                    "prediction": model.predict(test_rows, regimes).to_numpy(),
                }
            )
        )
        fold_facts.append(
            {
                "fold": fold.fold,
                "train_rows": dict(model.training_rows),
                "fallback_regimes": model.fallback_regimes,
                "test_regime_shares": {r: float((labels == r).mean()) for r in REGIMES},
            }
        )
        logger.info("fold %d: regime models for %s, fallback for %s (train rows %s)", fold.fold,
                    sorted(model.estimators), model.fallback_regimes, model.training_rows)
    if not parts:
        raise ValueError("no fold has test rows among the given development rows")
    oof = pd.concat(parts, ignore_index=True)
    if compare_global and global_predictions is not None:
        oof["global_prediction"] = np.asarray(global_predictions, np.float64)[oof["row"].to_numpy()]
    elif compare_global:
        row_ids = np.arange(len(y))  # passed as "tickers" so predictions map back to rows
        global_oof, _ = training.fit_predict_folds(
            config.learner, dict(config.params), X, y, weights, row_dates, folds,
            tickers=row_ids, seed=config.seed, n_jobs=config.n_jobs,
            target_transform=config.target_transform, max_train_rows=config.max_train_rows,
        )
        by_row = pd.Series(global_oof["prediction"].to_numpy(np.float64),
                           index=global_oof["ticker"].to_numpy(np.int64))
        oof["global_prediction"] = by_row.reindex(oof["row"].to_numpy()).to_numpy()
    return RegimeCVResult(oof=oof, folds=fold_facts)


def per_regime_rank_ic(
    frame: pd.DataFrame, pred_cols: list[str], label_col: str = "label", min_names: int = 5
) -> dict[str, dict[str, float]]:
    """{regime: {pred_col: mean RankIC over that regime's dates}} and an `all` entry."""
    out: dict[str, dict[str, float]] = {}
    for scope in ("all", *REGIMES):
        part = frame if scope == "all" else frame[frame["regime"] == scope]
        out[scope] = {
            col: (mean_rank_ic(part, col, label_col, min_names) if len(part) else math.nan)
            for col in pred_cols
        }
    return out
