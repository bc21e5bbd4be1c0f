"""Ensembles of base-model predictions (DESIGN §5.3; seed §2.3.3, §2.4.2, §4.2).

Every method combines per-date standardised predictions (predictions of different models are on
different scales): ``rank`` = per-date normal scores Phi^-1((rank - 0.5) / n), or ``zscore`` =
per-date (x - mean) / std clipped at +-clip; both are then exactly z-scored per date. The fit
target is the label standardised the same way.

Methods (``METHODS``):
- ``stacking``: a meta-learner on the standardised predictions; ElasticNet with non-negative
  coefficients by default (weights = coefficients / their sum), LightGBM as the alternative.
- ``regime_stacking``: non-negative ElasticNet weights fitted per regime (rows whose date has
  that regime label), shrunk toward the global weights, w_r = (n_r w_r_raw + k w_all) / (n_r + k)
  with n_r the regime's dates and k = ``shrinkage_dates``; at date t the weights are blended by
  the regime probabilities, w_t = sum_r p_r(t) w_r.
- ``bma``: pseudo-Bayesian model averaging (see ``model_averaging``).
- ``equal_weight`` and ``ic_weight`` (w proportional to max(mean RankIC, 0)): the seed's fallbacks.

Nothing here may see the test period: every ``Combiner.fit`` first calls
``assert_development_only`` and raises ``TestPeriodLeakError`` for any row dated on or after
``test_start``. Nested out-of-sample selection (``walk_forward_ensembles``) fits each method on
the out-of-fold rows of folds before k that are in fold k's purged training dates and scores it
on fold k.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtri
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import ElasticNet

from bma_quant.core.data.cv import DateFold
from bma_quant.core.ensemble import model_averaging
from bma_quant.core.ensemble.selection import (  # noqa: F401  (re-exported)
    FALLBACK_METHOD,
    SelectionRule,
    choose_method,
    nested_final_score,
    nested_picks,
    picks_score,
)
from bma_quant.core.evaluation import metrics

logger = logging.getLogger(__name__)

METHODS = ("stacking", "regime_stacking", "bma", "equal_weight", "ic_weight")
# set by the stacking nodes from `temporal.cv_gap_days`: dates a held block's labels reach
PURGE_DATES_KEY = "purge_dates"
FINAL = "final"
ALL_REGIMES = "all"
DATE, TICKER, MODEL, FOLD, PREDICTION = "date", "ticker", "model", "fold", "prediction"
LABEL, TARGET = "label", "target"


class TestPeriodLeakError(ValueError):
    """An ensemble fit was given rows from the test period."""


def assert_development_only(dates, test_start) -> None:
    """Raise ``TestPeriodLeakError`` if any date is on or after ``test_start``."""
    dates = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
    start = pd.Timestamp(test_start)
    leaked = dates >= start
    if leaked.any():
        raise TestPeriodLeakError(
            f"ensemble fit received {int(leaked.sum())} row(s) dated on or after the test start "
            f"{start.date()} (first {dates[leaked].min().date()}): ensemble weights and "
            "meta-learners are fitted on development out-of-fold rows only."
        )


# --------------------------------------------------------------------------------------------
# Standardisation and design frames
# --------------------------------------------------------------------------------------------


def standardise_per_date(
    frame: pd.DataFrame, columns: list[str], method: str = "rank", clip: float = 5.0
) -> pd.DataFrame:
    """Per-date standardised copies of ``columns`` (same index); NaN stays NaN.

    A date where a column is constant (or has one value) gets 0: no cross-sectional view.
    """
    if method not in {"rank", "zscore"}:
        raise ValueError(f"standardisation must be 'rank' or 'zscore', got {method!r}")
    values = frame[columns].astype(np.float64)
    values = values.where(np.isfinite(values))
    dates = frame[DATE].to_numpy()
    if method == "rank":
        grouped = values.groupby(dates, sort=False)
        ranks = grouped.rank(method="average")
        counts = grouped.transform("count")
        values = pd.DataFrame(ndtri(((ranks - 0.5) / counts).to_numpy()), index=frame.index,
                              columns=columns)
    grouped = values.groupby(dates, sort=False)
    mean, std = grouped.transform("mean"), grouped.transform("std")
    z = (values - mean) / std
    z = z.where(std > 0, 0.0).where(values.notna())
    if method == "zscore" and clip:
        z = z.clip(-clip, clip)
    return z


def _as_wide(predictions: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Long (date, ticker, model, prediction) -> wide (date, ticker, <models>) on the union."""
    part = predictions.loc[predictions[MODEL].isin(models), [DATE, TICKER, MODEL, PREDICTION]]
    duplicated = part.duplicated([DATE, TICKER, MODEL])
    if duplicated.any():
        raise ValueError("predictions have duplicate (date, ticker, model) rows, e.g. "
                         f"{part[duplicated].head(3).to_dict(orient='records')}")
    wide = part.set_index([DATE, TICKER, MODEL])[PREDICTION].unstack(MODEL)
    wide = wide.reindex(columns=models).reset_index()
    wide.columns.name = None
    return wide.sort_values([DATE, TICKER], kind="stable").reset_index(drop=True)


def usable_models(
    oof_predictions: pd.DataFrame,
    test_predictions: pd.DataFrame,
    status: dict | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Models to combine, in order of appearance, and the reason each other one is left out.

    A model is used when its status (if given) is "ok" and it has finite out-of-fold and test
    predictions."""
    skipped: dict[str, str] = {}
    for name, entry in (status or {}).items():
        if str((entry or {}).get("status", "failed")).lower() != "ok":
            skipped[name] = f"status {entry.get('status') if entry else None}: " + str(
                (entry or {}).get("error"))
    oof_ok = oof_predictions.loc[np.isfinite(oof_predictions[PREDICTION].astype(float)), MODEL]
    test_ok = test_predictions.loc[np.isfinite(test_predictions[PREDICTION].astype(float)), MODEL]
    models = []
    for name in pd.unique(pd.concat([oof_predictions[MODEL], test_predictions[MODEL]])):
        if name in skipped:
            continue
        if status is not None and name not in status:
            skipped[name] = "not in the model status"
        elif not (oof_ok == name).any():
            skipped[name] = "no finite out-of-fold predictions"
        elif not (test_ok == name).any():
            skipped[name] = "no finite test predictions"
        else:
            models.append(str(name))
    return models, skipped


def build_design(
    oof_predictions: pd.DataFrame,
    labels: pd.DataFrame,
    folds: list[DateFold],
    models: list[str],
    standardisation: str = "rank",
    clip: float = 5.0,
) -> pd.DataFrame:
    """Out-of-fold design frame: date, ticker, fold, label, target, <standardised models>.

    Rows are the (date, ticker) pairs where any model has an out-of-fold prediction and the date
    is in a fold's test window (the fold comes from ``cv_folds``, shared by all layers).
    """
    wide = _as_wide(oof_predictions, models)
    fold_of_date = pd.Series(
        np.concatenate([np.full(len(f.test_dates), f.fold) for f in folds]).astype(np.int64),
        index=pd.DatetimeIndex(np.concatenate([f.test_dates.to_numpy() for f in folds])),
    )
    fold = wide[DATE].map(fold_of_date)
    wide = wide[fold.notna()].copy()
    wide.insert(2, FOLD, fold[fold.notna()].astype(np.int64))
    wide = wide.merge(labels[[DATE, TICKER, LABEL]], on=[DATE, TICKER], how="left")
    wide[models] = standardise_per_date(wide, models, standardisation, clip)
    wide[TARGET] = standardise_per_date(wide, [LABEL], standardisation, clip)[LABEL]
    return wide


# --------------------------------------------------------------------------------------------
# Combiners
# --------------------------------------------------------------------------------------------


class FixedWeightRegressor(RegressorMixin, BaseEstimator):
    """A scikit-learn regressor with fixed non-negative weights: prediction = X @ weights.

    Logged as the meta-learner when stacking is disabled (fewer than ``min_base_models``), so the
    model logged always is the linear combination actually used.
    """

    def __init__(self, weights=None):
        self.weights = weights

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.coef_ = np.asarray(
            self.weights if self.weights is not None else np.full(X.shape[1], 1 / X.shape[1]),
            dtype=np.float64,
        )
        self.intercept_ = 0.0
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return np.asarray(X, dtype=np.float64) @ self.coef_


def _filled(data: pd.DataFrame, models: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Standardised prediction matrix with NaN -> 0 (no view = cross-sectional mean), and the
    mask of rows where at least one model has a prediction."""
    z = data[models].to_numpy(dtype=np.float64)
    present = np.isfinite(z)
    return np.where(present, z, 0.0), present.any(axis=1)


def _linear(data: pd.DataFrame, models: list[str], weights: np.ndarray) -> np.ndarray:
    z, any_present = _filled(data, models)
    weights = np.asarray(weights, dtype=np.float64)
    out = (z * weights).sum(axis=1) if weights.ndim == 2 else z @ weights
    return np.where(any_present, out, np.nan)


def _equal(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


def meta_elastic_net(elastic_net: dict) -> ElasticNet:
    """The stacking ElasticNet of `stacking.elastic_net`: non-negative, and on a precomputed
    Gram matrix (coordinate descent on M x M instead of n x M, n >> M)."""
    return ElasticNet(**{"positive": True, "precompute": True, **elastic_net})


def meta_lightgbm(lightgbm: dict):
    """The stacking LightGBM of `stacking.lightgbm`, with the base learners' fixed settings:
    deterministic, histogram layout not chosen by timing (a machine-dependent choice)."""
    from lightgbm import LGBMRegressor

    from bma_quant.core.models.learners import LIGHTGBM_FIXED

    return LGBMRegressor(**{**lightgbm, **LIGHTGBM_FIXED})


def _nonnegative_weights(
    data: pd.DataFrame, models: list[str], elastic_net: dict
) -> tuple[np.ndarray, ElasticNet | None]:
    """Non-negative ElasticNet of the target on the standardised predictions, coefficients
    normalised to sum to one; (weights, estimator) or (NaN weights, None) if all are zero."""
    z = pd.DataFrame(_filled(data, models)[0], columns=models)  # named inputs for the signature
    estimator = meta_elastic_net(elastic_net).fit(z, data[TARGET].to_numpy())
    coef = np.clip(estimator.coef_, 0.0, None)
    if not coef.sum() > 0:
        return np.full(len(models), np.nan), None
    return coef / coef.sum(), estimator


class Combiner:
    """Base class: ``fit`` on development out-of-fold rows only, ``predict`` any rows.

    ``data`` frames are design frames (date, ticker, [fold, label, target], <standardised
    models>); ``regimes`` is the regimes table (date, regime, p_<regime>...) or None.
    """

    name = "combiner"

    def __init__(self, models: list[str], params: dict | None = None):
        self.models = list(models)
        self.params = dict(params or {})
        self.notes: list[str] = []

    def fit(self, data: pd.DataFrame, regimes: pd.DataFrame | None, test_start) -> Combiner:
        assert_development_only(data[DATE], test_start)
        rows = data[np.isfinite(data[TARGET].to_numpy(dtype=np.float64))]
        if rows.empty:
            raise ValueError(f"{self.name}: no out-of-fold rows with a label to fit on")
        self._fit(rows, regimes)
        return self

    def _fit(self, rows: pd.DataFrame, regimes: pd.DataFrame | None) -> None:
        raise NotImplementedError

    def predict(self, data: pd.DataFrame, regimes: pd.DataFrame | None) -> np.ndarray:
        return _linear(data, self.models, self.weights_)

    def weights(self) -> pd.DataFrame:
        """The learned weights: (regime, model, weight)."""
        return pd.DataFrame({"regime": ALL_REGIMES, MODEL: self.models,
                             "weight": np.asarray(self.weights_, dtype=np.float64)})

    def info(self) -> dict:
        return {"notes": list(self.notes)}


class EqualWeight(Combiner):
    name = "equal_weight"

    def _fit(self, rows, regimes) -> None:
        self.weights_ = _equal(len(self.models))


class ICWeight(Combiner):
    """w_m proportional to max(mean out-of-fold RankIC_m, 0); equal weights if none is positive."""

    name = "ic_weight"

    def _fit(self, rows, regimes) -> None:
        min_names = int(self.params.get("selection", {}).get("min_names", 5))
        self.rank_ic_ = np.array(
            [metrics.mean_rank_ic(rows, m, TARGET, min_names) for m in self.models])
        positive = np.nan_to_num(np.clip(self.rank_ic_, 0.0, None))
        if positive.sum() > 0:
            self.weights_ = positive / positive.sum()
        else:
            self.weights_ = _equal(len(self.models))
            self.notes.append("no model has a positive out-of-fold RankIC: equal weights")

    def info(self) -> dict:
        rank_ic = dict(zip(self.models, map(float, self.rank_ic_), strict=True))
        return {**super().info(), "rank_ic": rank_ic}


class Stacking(Combiner):
    """Meta-learner on standardised predictions: non-negative ElasticNet or LightGBM.

    ``weights_`` are the normalised ElasticNet coefficients, or LightGBM's normalised gain
    importances (a share of use, not a linear weight).
    """

    name = "stacking"

    def _fit(self, rows, regimes) -> None:
        kind = self.params.get("meta_learner", "elastic_net")
        self.meta_learner = kind
        if kind == "elastic_net":
            weights, estimator = _nonnegative_weights(rows, self.models,
                                                      self.params.get("elastic_net", {}))
            if estimator is None:
                self.notes.append("all ElasticNet coefficients are zero: equal weights used")
                weights = _equal(len(self.models))
                estimator = FixedWeightRegressor(weights).fit(rows[self.models])
            self.weights_, self.estimator = weights, estimator
        elif kind == "lightgbm":
            z, _ = _filled(rows, self.models)
            estimator = meta_lightgbm(self.params.get("lightgbm", {}))
            estimator.fit(pd.DataFrame(z, columns=self.models), rows[TARGET].to_numpy())
            gain = estimator.booster_.feature_importance(importance_type="gain")
            self.weights_ = gain / gain.sum() if gain.sum() > 0 else _equal(len(self.models))
            self.estimator = estimator
        else:
            raise ValueError(f"meta_learner must be 'elastic_net' or 'lightgbm', got {kind!r}")

    def predict(self, data, regimes) -> np.ndarray:
        z, any_present = _filled(data, self.models)
        features = pd.DataFrame(z, columns=self.models)
        return np.where(any_present, self.estimator.predict(features), np.nan)

    def info(self) -> dict:
        out = {**super().info(), "meta_learner": self.meta_learner}
        if self.meta_learner == "elastic_net":
            coef = map(float, self.estimator.coef_)
            out["coefficients"] = dict(zip(self.models, coef, strict=True))
            out["intercept"] = float(self.estimator.intercept_)
        return out


def _regime_probabilities(
    dates: pd.Series, regimes: pd.DataFrame | None, names: list[str]
) -> np.ndarray:
    """(n, R) regime probabilities of each row's date, rows normalised to one; NaN if unknown."""
    out = np.full((len(dates), len(names)), np.nan)
    if regimes is None or regimes.empty:
        return out
    columns = [f"p_{r}" for r in names]
    missing = [c for c in columns if c not in regimes.columns]
    if missing:
        raise KeyError(f"regimes table lacks probability columns {missing}")
    table = regimes.drop_duplicates(DATE).set_index(DATE)[columns].astype(np.float64)
    probs = table.reindex(pd.DatetimeIndex(dates)).to_numpy()
    total = probs.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = probs / total
    probs[~(np.isfinite(total[:, 0]) & (total[:, 0] > 0))] = np.nan
    return probs


class RegimeStacking(Combiner):
    """Per-regime non-negative ElasticNet weights, shrunk to the global ones, blended by p_r(t)."""

    name = "regime_stacking"

    def _fit(self, rows, regimes) -> None:
        config = self.params.get("regime", {})
        self.regime_names = list(config.get("regimes", ["bull", "neutral", "bear"]))
        shrinkage = float(config.get("shrinkage_dates", 126))
        min_dates = int(config.get("min_regime_dates", 20))
        elastic_net = self.params.get("elastic_net", {})
        global_w, _ = _nonnegative_weights(rows, self.models, elastic_net)
        if not np.isfinite(global_w).all():
            self.notes.append("all global ElasticNet coefficients are zero: equal global weights")
            global_w = _equal(len(self.models))
        self.global_weights_ = global_w
        labels = pd.Series(np.nan, index=rows.index, dtype=object)
        if regimes is not None and not regimes.empty:
            label_of_date = regimes.drop_duplicates(DATE).set_index(DATE)["regime"]
            labels = rows[DATE].map(label_of_date)
        self.regime_dates_, self.raw_weights_, shrunk = {}, {}, []
        for regime in self.regime_names:
            part = rows[(labels == regime).to_numpy()]
            n_dates = int(part[DATE].nunique())
            self.regime_dates_[regime] = n_dates
            raw = None
            if n_dates >= min_dates:
                raw, _ = _nonnegative_weights(part, self.models, elastic_net)
                if not np.isfinite(raw).all():
                    self.notes.append(f"{regime}: all coefficients zero, global weights used")
                    raw = None
            if raw is None:
                if n_dates < min_dates:
                    self.notes.append(
                        f"{regime}: {n_dates} dates < min_regime_dates {min_dates}: global weights")
                shrunk.append(global_w)
                continue
            self.raw_weights_[regime] = raw
            shrunk.append((n_dates * raw + shrinkage * global_w) / (n_dates + shrinkage))
        self.regime_weights_ = np.vstack(shrunk)  # (R, M)

    def predict(self, data, regimes) -> np.ndarray:
        probs = _regime_probabilities(data[DATE], regimes, self.regime_names)
        row_weights = probs @ self.regime_weights_
        unknown = ~np.isfinite(row_weights).all(axis=1)
        row_weights[unknown] = self.global_weights_
        return _linear(data, self.models, row_weights)

    def weights(self) -> pd.DataFrame:
        parts = [super().weights()]  # regime "all": the global weights
        for regime, w in zip(self.regime_names, self.regime_weights_, strict=True):
            parts.append(pd.DataFrame({"regime": regime, MODEL: self.models, "weight": w}))
        return pd.concat(parts, ignore_index=True)

    @property
    def weights_(self) -> np.ndarray:
        return self.global_weights_

    def info(self) -> dict:
        return {
            **super().info(),
            "regime_dates": self.regime_dates_,
            "unshrunk_weights": {r: dict(zip(self.models, map(float, w), strict=True))
                                 for r, w in self.raw_weights_.items()},
        }


def _bootstrap_block(config: dict, purge: int) -> int:
    """`stacking.bma.block_dates`, or (null) the purge: dates within cv_gap_days of each other
    have overlapping labels."""
    given = config.get("block_dates")
    return max(1, int(purge if given is None else given))


class PseudoBMA(Combiner):
    """Pseudo-BMA(+) weights from held-out calibrated Gaussian log-likelihoods (model_averaging)."""

    name = "bma"

    def _fit(self, rows, regimes) -> None:
        config = self.params.get("bma", {})
        z = rows[self.models].to_numpy(dtype=np.float64)
        complete = np.isfinite(z).all(axis=1)
        rows, z = rows[complete], z[complete]
        if rows[DATE].nunique() < 2:
            raise ValueError("bma needs at least two dates where every model has a prediction")
        dates = rows[DATE].to_numpy()
        folds = rows[FOLD].to_numpy() if FOLD in rows else np.zeros(len(rows), dtype=np.int64)
        blocks = model_averaging.heldout_blocks(folds, dates)
        # the dates whose labels overlap a held block's are left out of its calibration
        purge = int(self.params.get(PURGE_DATES_KEY) or 0)
        try:
            pointwise = model_averaging.calibrated_gaussian_loglik(
                z, rows[TARGET].to_numpy(), blocks, dates, purge)
        except model_averaging.TooFewCalibrationRows:
            if not purge:
                raise
            # a short history (a first walk-forward fold, a short panel): the purge would leave
            # a block nothing to be calibrated on, and calibrating without it would score each
            # block on rows whose labels overlap its own; no honest evidence, equal weights
            self.notes.append(f"too few dates to leave {purge} purge dates around each block: "
                              "equal weights (a calibration without the purge would read "
                              "labels overlapping the held rows')")
            n_models = len(self.models)
            self.weights_ = np.full(n_models, 1.0 / n_models)
            self.elpd_ = np.full(n_models, np.nan)
            self.n_rows_, self.n_dates_ = int(len(rows)), int(rows[DATE].nunique())
            return
        by_date = model_averaging.loglik_by_date(pointwise, dates)
        self.weights_, self.elpd_ = model_averaging.pseudo_bma_weights(
            by_date, int(config.get("bootstrap_draws", 1000)), int(config.get("seed", 0)),
            _bootstrap_block(config, purge))
        self.n_rows_, self.n_dates_ = int(len(rows)), int(by_date.shape[0])

    def info(self) -> dict:
        # None: not calibrated (equal weights on too short a history)
        elpd = {m: float(v) if np.isfinite(v) else None
                for m, v in zip(self.models, self.elpd_, strict=True)}
        return {**super().info(), "elpd": elpd, "n_rows": self.n_rows_, "n_dates": self.n_dates_}


COMBINERS: dict[str, type[Combiner]] = {
    c.name: c for c in (Stacking, RegimeStacking, PseudoBMA, EqualWeight, ICWeight)
}


def make_combiner(method: str, models: list[str], params: dict) -> Combiner:
    if method not in COMBINERS:
        raise ValueError(f"unknown ensemble method {method!r}; choose from {sorted(COMBINERS)}")
    return COMBINERS[method](models, params)


# --------------------------------------------------------------------------------------------
# The fitted ensemble (pickled, applied by inference to new base predictions)
# --------------------------------------------------------------------------------------------


@dataclass
class FittedEnsemble:
    """A method fitted on all development out-of-fold rows, with its standardisation."""

    method: str
    combiner: Combiner
    standardisation: str = "rank"
    clip: float = 5.0
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return self.combiner.models

    def combine(self, predictions_long: pd.DataFrame, regimes: pd.DataFrame | None = None
                ) -> pd.DataFrame:
        """Base predictions (date, ticker, model, prediction) -> date, ticker, prediction.

        A model missing for a row counts as no view (0 after standardisation)."""
        return self.combine_standardised(self.standardise(predictions_long), regimes)

    def standardise(self, predictions_long: pd.DataFrame) -> pd.DataFrame:
        """Long base predictions -> wide (date, ticker, <models>) standardised per date."""
        absent = sorted(set(self.models) - set(predictions_long[MODEL].unique()))
        if absent:
            logger.warning("ensemble %s: no predictions of %s; they count as no view",
                           self.method, absent)
        wide = _as_wide(predictions_long, self.models)
        wide[self.models] = standardise_per_date(wide, self.models, self.standardisation,
                                                 self.clip)
        return wide

    def combine_standardised(self, wide: pd.DataFrame, regimes: pd.DataFrame | None = None
                             ) -> pd.DataFrame:
        """``combine`` for a frame already returned by ``standardise``."""
        prediction = self.combiner.predict(wide, regimes)
        return pd.DataFrame({DATE: wide[DATE].to_numpy(), TICKER: wide[TICKER].to_numpy(),
                             PREDICTION: prediction.astype(np.float32)})


def fit_ensemble(
    method: str, design: pd.DataFrame, regimes: pd.DataFrame | None, params: dict, test_start,
    models: list[str],
) -> FittedEnsemble:
    combiner = make_combiner(method, models, params).fit(design, regimes, test_start)
    return FittedEnsemble(method, combiner, params.get("standardisation", "rank"),
                          float(params.get("zscore_clip", 5.0)), list(combiner.notes))


# --------------------------------------------------------------------------------------------
# Nested out-of-sample selection (seed §2.4.2)
# --------------------------------------------------------------------------------------------


@dataclass
class WalkForwardResult:
    # date, ticker, model, fold, prediction: each method on the folds where it was fitted (the
    # equal-weight stand-in of unfitted folds is `equal_weight` itself)
    predictions: pd.DataFrame
    scores: pd.DataFrame  # method, fold, rank_ic, fitted (False = equal-weight stand-in)
    validation_folds: list[int]
    oos_rank_ic: dict[str, float]  # per method: its own out-of-sample score (no choice in it)
    notes: list[str]
    # `final` chosen walk-forward: at each fitted fold, the method the selection rule picks on
    # the earlier fitted folds, scored there (NaN with fewer than two fitted folds). The chosen
    # method's `oos_rank_ic` is a choice over methods on the same folds, so it is optimistic.
    final_nested_rank_ic: float = math.nan
    final_nested_folds: list[int] = field(default_factory=list)
    chosen: str = FALLBACK_METHOD  # the rule's pick on the validation folds
    choice: dict = field(default_factory=dict)  # why: top method, t-stat against the default
    daily_scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # method, fold, date, rank_ic
    final_picks: dict[int, str] = field(default_factory=dict)  # {fold: walk-forward pick}


def _fold_regimes(fold_regimes: pd.DataFrame | None, fold: int) -> pd.DataFrame | None:
    """The regime table of the detector fitted on `fold`'s training dates (None if absent)."""
    if fold_regimes is None or fold_regimes.empty:
        return None
    if FOLD not in fold_regimes:
        raise ValueError("fold_regimes needs a `fold` column (one detector per fold): the "
                         "detector fitted through the end of development would leak into CV")
    part = fold_regimes[fold_regimes[FOLD] == fold]
    return part if len(part) else None


def walk_forward_ensembles(
    design: pd.DataFrame,
    folds: list[DateFold],
    fold_regimes: pd.DataFrame | None,
    methods: list[str],
    models: list[str],
    params: dict,
    test_start,
    rule: SelectionRule | None = None,
) -> WalkForwardResult:
    """Out-of-sample ensemble predictions for every fold, and nested validation scores.

    Fold k's rows are predicted by each method fitted on the out-of-fold rows of earlier folds
    whose dates are in fold k's purged, embargoed training dates (from ``cv_folds``); the first
    fold (nothing earlier) and folds with fewer than ``min_fit_dates`` training dates use equal
    weights. Regime-aware methods see fold k's own regime table (``fold_regimes``: a detector
    fitted on fold k's training dates), never the detector fitted through the end of
    development. A method's score is its mean RankIC (against the raw label) over the last
    ``n_validation_folds`` fitted folds; ``rule`` (default: the top score) picks `final` from
    those folds' daily RankICs.
    """
    rule = rule or SelectionRule(fallback=params.get("fallback_method", FALLBACK_METHOD))
    selection = params.get("selection", {})
    min_fit_dates = int(selection.get("min_fit_dates", 20))
    min_names = int(selection.get("min_names", 5))
    n_validation = int(selection.get("n_validation_folds", 2))
    folds = sorted(folds, key=lambda f: f.fold)
    parts, scores, daily, notes = [], [], [], []
    for position, fold in enumerate(folds):
        rows = design[design[FOLD] == fold.fold]
        if rows.empty:
            continue
        train, regimes, fitted = _fold_training(design, fold, position > 0, fold_regimes,
                                                min_fit_dates, notes)
        for method in methods:
            if fitted:
                combiner = make_combiner(method, models, params).fit(train, regimes, test_start)
                prediction = combiner.predict(rows, regimes)
            else:
                prediction = _linear(rows, models, _equal(len(models)))
            score, rank_ic, part = _score_fold_method(rows, prediction, method, fold.fold, fitted,
                                                      min_names)
            scores.append(score)
            # an unfitted fold's methods are all the equal-weight stand-in: stored once, as
            # what it is, so no method's out-of-fold series (nor the luck statistics' count of
            # configurations) holds copies of another's
            if fitted or method == EqualWeight.name:
                parts.append(part)
            if fitted:
                daily.append(rank_ic)
        logger.info("stacking fold %d: %s", fold.fold, ", ".join(
            f"{s['method']}={s['rank_ic']:.4f}" for s in scores[-len(methods):]))
    score_table = pd.DataFrame(scores, columns=["method", FOLD, "fitted", "rank_ic"])
    fitted_folds = sorted(score_table.loc[score_table["fitted"], FOLD].unique())
    validation = [int(k) for k in fitted_folds[-n_validation:]] if n_validation > 0 else []
    if 0 < len(validation) < n_validation:
        notes.append(f"selection.n_validation_folds is {n_validation} but only "
                     f"{len(validation)} fold(s) have earlier out-of-fold data to fit on: the "
                     f"choice is scored on {len(validation)}")
        logger.warning("stacking: %s", notes[-1])
    if not validation:
        notes.append("no fold has earlier out-of-fold data: no nested validation score")
    in_validation = score_table[score_table[FOLD].isin(validation)]
    oos = {m: float(in_validation.loc[in_validation["method"] == m, "rank_ic"].mean())
           for m in methods}
    predictions = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[DATE, TICKER, MODEL, FOLD, PREDICTION])
    daily_scores = pd.concat(daily, ignore_index=True) if daily else pd.DataFrame(
        columns=["method", FOLD, DATE, "rank_ic"])
    chosen, choice = rule.choose(daily_scores, validation, methods)
    picks = nested_picks(daily_scores, fitted_folds, n_validation, rule, methods,
                         choice_end={f.fold: f.train_dates.max() for f in folds
                                     if len(f.train_dates)})
    final_score, final_folds = picks_score(daily_scores, picks)
    if not final_folds:
        notes.append("fewer than two fitted folds: no nested score for the chosen method")
    return WalkForwardResult(predictions, score_table, validation, oos, notes, final_score,
                             final_folds, chosen, choice, daily_scores, picks)


def _fold_training(design: pd.DataFrame, fold: DateFold, has_earlier: bool,
                   fold_regimes: pd.DataFrame | None, min_fit_dates: int, notes: list[str]):
    """Fold k's training rows (earlier folds' out-of-fold rows on its training dates), its own
    regime table, and whether the methods are fitted at all (else: equal weights)."""
    train = design[(design[FOLD] < fold.fold) & design[DATE].isin(fold.train_dates)]
    n_train_dates = int(train[DATE].nunique())
    fitted = has_earlier and n_train_dates >= min_fit_dates
    if not fitted:
        notes.append(f"fold {fold.fold}: {n_train_dates} earlier out-of-fold dates; "
                     "equal weights for every method")
    regimes = _fold_regimes(fold_regimes, fold.fold)
    if fitted and regimes is None and fold_regimes is not None:
        notes.append(f"fold {fold.fold}: no regime table of its own; regime-aware methods "
                     "use their global weights")
    return train, regimes, fitted


def _score_fold_method(rows: pd.DataFrame, prediction: np.ndarray, method: str, fold: int,
                       fitted: bool, min_names: int):
    """A method's fold score, its daily RankIC (method, fold, date, rank_ic) and its
    predictions (date, ticker, model, fold, prediction)."""
    scored = pd.DataFrame({DATE: rows[DATE].to_numpy(), PREDICTION: prediction,
                           LABEL: rows[LABEL].to_numpy()})
    rank_ic = metrics.daily_ic(scored, PREDICTION, LABEL, "spearman", min_names)
    score = {"method": method, FOLD: int(fold), "fitted": fitted,
             "rank_ic": float(rank_ic.mean()) if len(rank_ic) else math.nan}
    daily = pd.DataFrame({"method": method, FOLD: int(fold), DATE: rank_ic.index,
                          "rank_ic": rank_ic.to_numpy()})
    part = pd.DataFrame({
        DATE: rows[DATE].to_numpy(), TICKER: rows[TICKER].to_numpy(), MODEL: method,
        FOLD: rows[FOLD].to_numpy().astype(np.int32),
        PREDICTION: prediction.astype(np.float32)})
    return score, daily, part


def with_nested_final(predictions: pd.DataFrame, picks: Mapping[int, str]) -> pd.DataFrame:
    """Append, as model ``final``, each fold's rows of the method picked for it walk-forward
    (``picks``: {fold: method}, chosen on earlier folds only), so the out-of-fold `final` is the
    series `stacking.final.oos_rank_ic` scores; folds without a pick have no `final` rows."""
    fold_method = pd.Series(picks, dtype=object)
    wanted = predictions[FOLD].map(fold_method)
    final = predictions[predictions[MODEL].eq(wanted)].assign(**{MODEL: FINAL})
    out = pd.concat([predictions, final], ignore_index=True)
    return out.sort_values([DATE, TICKER, MODEL], kind="stable").reset_index(drop=True)


def with_final(predictions: pd.DataFrame, chosen: str) -> pd.DataFrame:
    """Append the chosen method's rows again as model ``final``; sorted by date, ticker, model."""
    final = predictions[predictions[MODEL] == chosen].assign(**{MODEL: FINAL})
    out = pd.concat([predictions, final], ignore_index=True)
    return out.sort_values([DATE, TICKER, MODEL], kind="stable").reset_index(drop=True)


def weights_table(fitted: dict[str, FittedEnsemble]) -> pd.DataFrame:
    """(method, regime, model, weight) of every fitted method."""
    parts = [f.combiner.weights().assign(method=name) for name, f in fitted.items()]
    table = pd.concat(parts, ignore_index=True)
    return table[["method", "regime", MODEL, "weight"]]


def meta_learner_estimator(fitted: dict[str, FittedEnsemble]):
    """The scikit-learn estimator to log as the meta-learner: the stacking meta-learner, or a
    fixed-weight linear model of the fallback's weights when stacking did not run."""
    if "stacking" in fitted:
        return fitted["stacking"].combiner.estimator
    fallback = fitted.get(FALLBACK_METHOD) or next(iter(fitted.values()))
    example = pd.DataFrame(np.zeros((1, len(fallback.models))), columns=fallback.models)
    return FixedWeightRegressor(np.asarray(fallback.combiner.weights_)).fit(example)


def seed_regime_rule_check(weights: pd.DataFrame) -> dict:
    """Does the data back the seed's hand-set rule (LightGBM weighs more in bull markets,
    ElasticNet in bear markets)? Compares the learned regime_stacking weights; empty when the
    method or the models are absent."""
    table = weights[weights["method"] == "regime_stacking"]
    out: dict = {}
    for model, favoured, other in (("lightgbm", "bull", "bear"), ("elastic_net", "bear", "bull")):
        rows = table[table[MODEL] == model].set_index("regime")["weight"]
        if favoured in rows and other in rows:
            out[model] = {f"{favoured}_weight": float(rows[favoured]),
                          f"{other}_weight": float(rows[other]),
                          f"weighs_more_in_{favoured}": bool(rows[favoured] > rows[other])}
    return out


# A combination "is" one member when it ranks every date's names exactly as that member does: the
# books, the RankIC and every quantile return are then the member's (a weight of 0.997 on one
# member does this as surely as 1.0). Ranks are compared to this tolerance (average ranks of ties).
_SAME_RANK = 1e-9


def _date_ranks(dates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` within each date over its finite rows (NaN elsewhere)."""
    return pd.Series(values).groupby(dates).rank(method="average").to_numpy(np.float64)


def member_ranks(wide: pd.DataFrame, members: list[str]) -> dict[str, np.ndarray]:
    """Every member's per-date ranks (``identical_member`` compares each method with them)."""
    dates = wide[DATE].to_numpy()
    return {m: _date_ranks(dates, wide[m].to_numpy(np.float64)) for m in members}


def identical_member(wide: pd.DataFrame, prediction, members: list[str],
                     ranks: Mapping[str, np.ndarray] | None = None) -> str | None:
    """The member that ``prediction`` (rows aligned with ``wide`` from ``standardise``) merely
    reproduces, or None. Reproduces = on every row where both are finite, the two rank the date's
    names in the same order (ties included), and ``prediction`` varies on some date: its weight
    sits on that member, so the ensemble adds nothing to it. ``ranks``: ``member_ranks`` of
    ``wide``, computed once for several predictions."""
    combined = np.asarray(prediction, dtype=np.float64)
    dates = wide[DATE].to_numpy()
    by_date = pd.Series(combined).groupby(dates)
    if not (by_date.max() > by_date.min()).any():
        return None  # ranks nothing
    combined_ranks = _date_ranks(dates, combined)
    for member in members:
        x = wide[member].to_numpy(np.float64)
        ok = np.isfinite(x) & np.isfinite(combined)
        if not ok.any():
            continue
        if np.array_equal(ok, np.isfinite(combined)) and np.array_equal(ok, np.isfinite(x)):
            theirs = (ranks[member] if ranks is not None else _date_ranks(dates, x))[ok]
            ours = combined_ranks[ok]
        else:  # rank both on the rows where both exist
            theirs, ours = _date_ranks(dates[ok], x[ok]), _date_ranks(dates[ok], combined[ok])
        if np.all(np.abs(theirs - ours) <= _SAME_RANK):
            return member
    return None
