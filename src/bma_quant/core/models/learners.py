"""Base learners (seed §2.3.1, §2.4.1): a registry from the names used in parameters to estimators.

Every learner is a scikit-learn-API estimator (`fit(X, y, sample_weight)`, `predict(X)`), so the
refit models can be pickled, logged with an MLflow flavour and used as `model.predict(X[selected])`.
Gradient-boosted learners also have a *native* fold path: the binned training matrix (LightGBM
`Dataset`, XGBoost `QuantileDMatrix`) is built once per fold and reused by every Optuna trial,
with parameters taken from the same wrapper so the native booster and the refit wrapper train the
same model (a test checks they predict identically). ElasticNet's fold path likewise keeps each
fold's imputed and standardised training matrix (kind "scaled").

Adding a learner is one `register_learner(Learner(...))` call plus its defaults and search space in
`conf/base/parameters_base_models.yml`; the pre-flight then probes its arguments with its own
`build` (core.models.learner_arguments), and it is listed after the built-in models in the
evaluation table.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import ElasticNet
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from bma_quant.core.evaluation.metrics import daily_rank_ic_columns
from bma_quant.core.models.imputation import MedianImputer

# ---------------------------------------------------------------------------------------------
# The classic quant baseline: factors combined with weights from their development IC-IR
# ---------------------------------------------------------------------------------------------


class AlphaComposite(RegressorMixin, BaseEstimator):
    """Linear alpha signal: standardised factors weighted by their IC-IR (seed §2.4.1).

    For every factor the daily cross-sectional RankIC with the target is computed over the training
    dates; its IC-IR (mean / std, weighted by the dates' sample weights) is the factor's weight,
    normalised so the absolute weights sum to one. Factors with |IC-IR| below `min_icir` get weight
    zero. The prediction is sum_j w_j * z_j with z_j the factor standardised by training-set mean
    and std (missing values count as the mean). No optimiser, no overfitting knobs: the baseline
    the ML learners have to beat.
    """

    def __init__(self, min_icir: float = 0.0, min_names: int = 5):
        self.min_icir = min_icir
        self.min_names = min_names

    def fit(self, X, y, sample_weight=None, dates=None):
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        y = np.asarray(y, dtype=np.float64)
        self.mean_ = np.nanmean(X, axis=0)
        std = np.nanstd(X, axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        # Without dates the whole sample is one cross-section (pooled rank correlation).
        row_dates = (
            pd.DatetimeIndex(dates) if dates is not None else pd.DatetimeIndex(np.zeros(len(y)))
        )
        weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        date_weight = pd.Series(weights).groupby(row_dates.to_numpy()).mean()
        ic_table = daily_rank_ic_columns(row_dates, X, y, min_names=self.min_names)
        icir = np.zeros(X.shape[1])
        for j in range(X.shape[1]):
            ic = ic_table.iloc[:, j].dropna()
            icir[j] = _weighted_icir(ic.to_numpy(), date_weight.reindex(ic.index).to_numpy())
        icir[np.abs(icir) < self.min_icir] = 0.0
        total = np.abs(icir).sum()
        self.icir_ = icir
        self.coef_ = icir / total if total > 0 else icir
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        z = np.nan_to_num((X - self.mean_) / self.scale_, nan=0.0)
        return z @ self.coef_


def _weighted_icir(ic: np.ndarray, weight: np.ndarray) -> float:
    weight = np.nan_to_num(weight, nan=0.0)
    if len(ic) < 2 or weight.sum() <= 0:
        return 0.0
    mean = np.average(ic, weights=weight)
    std = np.sqrt(np.average((ic - mean) ** 2, weights=weight))
    return float(mean / std) if std > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Learner:
    """How to build, fit and explain one base learner.

    build(params, seed, n_jobs) -> unfitted scikit-learn-API estimator.
    fit(estimator, X, y, sample_weight, dates) -> fitted estimator (routes weights / dates).
    importance(fitted, feature_names) -> one non-negative number per feature.
    native: "xgboost" / "lightgbm" for learners whose fold fits reuse a binned matrix, else None.
    fit_weightings(estimators, X, y, sample_weights, dates) -> fitted estimators, one per weight
    vector on the same rows; None = `fit` once per vector (see `fit_each_weighting`).
    """

    name: str
    build: Callable[[dict, int, int], Any]
    fit: Callable[[Any, Any, np.ndarray, np.ndarray, Any], Any]
    importance: Callable[[Any, list[str]], np.ndarray]
    native: str | None = None
    importance_kind: str = "gain"
    fit_weightings: Callable[[list, Any, np.ndarray, list, Any], list] | None = None

    def fit_each_weighting(self, estimators: list, X, y, sample_weights: list, dates) -> list:
        """Fit estimators[i] with sample_weights[i] on the same rows X, y."""
        if self.fit_weightings is not None and len(estimators) > 1:
            return self.fit_weightings(estimators, X, y, sample_weights, dates)
        return [self.fit(e, X, y, w, dates)
                for e, w in zip(estimators, sample_weights, strict=True)]


LEARNERS: dict[str, Learner] = {}


def register_learner(learner: Learner) -> Learner:
    LEARNERS[learner.name] = learner
    return learner


def predict_float32(estimator, X) -> np.ndarray:
    """`estimator.predict(X)` from float64 features, returned as float32.

    A linear model's float32 dot products depend on the batch (BLAS blocking and alignment), so
    one row can differ by an ulp between the pipeline's test frame and a serving slice, and a
    per-date rank downstream turns that ulp into a rank flip. In float64 the batch effect is far
    below float32 rounding, so each row's float32 prediction is the same in any batch. Trees see
    the same values (float32 -> float64 is exact)."""
    X64 = X.astype(np.float64) if isinstance(X, pd.DataFrame) else np.asarray(X, np.float64)
    return np.asarray(estimator.predict(X64), dtype=np.float32)


def get_learner(name: str) -> Learner:
    try:
        return LEARNERS[name]
    except KeyError:
        raise KeyError(f"Unknown learner {name!r}; registered: {sorted(LEARNERS)}") from None


def build_estimator(name: str, params: dict, seed: int = 0, n_jobs: int = 1):
    return get_learner(name).build(dict(params or {}), int(seed), int(n_jobs))


# --- ElasticNet: median imputation and standardisation fitted on the training rows ----------


def _build_elastic_net(params: dict, seed: int, n_jobs: int) -> Pipeline:
    return Pipeline(
        [
            ("impute", MedianImputer()),
            ("scale", StandardScaler()),
            ("model", ElasticNet(random_state=seed, **params)),
        ]
    )


def _fit_elastic_net(estimator, X, y, sample_weight, dates):
    return estimator.fit(X, y, model__sample_weight=sample_weight)


def _fit_elastic_net_weightings(estimators, X, y, sample_weights, dates):
    """The imputer and scaler take no weights: fitted once (on the first pipeline's copies) and
    shared, so each further weighting fits only its ElasticNet, on the same matrix the pipeline's
    own fit would have passed it (regime soft training: one weighting per regime)."""
    first = estimators[0]
    preprocess = Pipeline(first.steps[:-1])
    scaled = preprocess.fit_transform(X)
    fitted = []
    for estimator, weight in zip(estimators, sample_weights, strict=True):
        estimator.steps[:-1] = [(name, copy.deepcopy(step)) for name, step in preprocess.steps]
        estimator.steps[-1][1].fit(scaled, y, sample_weight=weight)
        fitted.append(estimator)
    return fitted


@dataclass
class ScaledMatrix:
    """A fold's training rows after the ElasticNet pipeline's imputer and scaler (which have no
    tuned parameters), kept so every trial fits only the ElasticNet itself."""

    preprocess: Pipeline
    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray


def _scaled_matrix(X: np.ndarray, y: np.ndarray, weight: np.ndarray) -> ScaledMatrix:
    preprocess = Pipeline([("impute", MedianImputer()),
                           ("scale", StandardScaler())])
    scaled = np.asfortranarray(preprocess.fit_transform(X), dtype=np.float64)
    return ScaledMatrix(preprocess, scaled, np.asarray(y, np.float64), np.asarray(weight))


def _elastic_net_importance(estimator, names):
    return np.abs(estimator.named_steps["model"].coef_).astype(float)


# --- XGBoost (hist) --------------------------------------------------------------------------


def _build_xgboost(params: dict, seed: int, n_jobs: int) -> xgb.XGBRegressor:
    return xgb.XGBRegressor(**{"tree_method": "hist", **params}, random_state=seed, n_jobs=n_jobs)


def _fit_plain(estimator, X, y, sample_weight, dates):
    return estimator.fit(X, y, sample_weight=sample_weight)


def _xgboost_importance(estimator, names):
    gain = estimator.get_booster().get_score(importance_type="total_gain")
    # The booster names features f0.. when fitted on arrays, by column name on frames.
    return np.array([gain.get(n, gain.get(f"f{i}", 0.0)) for i, n in enumerate(names)], float)


# --- LightGBM ----------------------------------------------------------------------------------

# Fixed so that fold fits through the native API and the refit wrapper behave the same:
# no feature pre-filtering (min_child_samples may be tuned on an already binned Dataset).
# The histogram layout is forced, because LightGBM otherwise picks it by timing both (a
# machine-dependent choice); row-wise, because on a few dozen dense factors it builds the
# histograms about 1.5-1.9x faster than col-wise (benchmarks/results.md, "Eighth round").
LIGHTGBM_FIXED = {"deterministic": True, "force_row_wise": True, "verbose": -1,
                  "feature_pre_filter": False}
LIGHTGBM_DATASET_KEYS = ("max_bin", "min_data_in_bin", "subsample_for_bin", "feature_pre_filter")


def _build_lightgbm(params: dict, seed: int, n_jobs: int) -> lgb.LGBMRegressor:
    return lgb.LGBMRegressor(**{**params, **LIGHTGBM_FIXED}, random_state=seed, n_jobs=n_jobs)


def _lightgbm_importance(estimator, names):
    return estimator.booster_.feature_importance(importance_type="gain").astype(float)


# --- alpha_composite ---------------------------------------------------------------------------


def _build_alpha_composite(params: dict, seed: int, n_jobs: int) -> AlphaComposite:
    return AlphaComposite(**params)


def _fit_alpha_composite(estimator, X, y, sample_weight, dates):
    return estimator.fit(X, y, sample_weight=sample_weight, dates=dates)


def _alpha_composite_importance(estimator, names):
    return np.abs(estimator.coef_).astype(float)


# ElasticNet on median-imputed, standardised features
register_learner(Learner("elastic_net", _build_elastic_net, _fit_elastic_net,
                         _elastic_net_importance, native="scaled", importance_kind="abs_coef",
                         fit_weightings=_fit_elastic_net_weightings))
# XGBoost and LightGBM, histogram trees on matrices binned once per fold (below)
register_learner(Learner("xgboost", _build_xgboost, _fit_plain, _xgboost_importance,
                         native="xgboost", importance_kind="total_gain"))
register_learner(Learner("lightgbm", _build_lightgbm, _fit_plain, _lightgbm_importance,
                         native="lightgbm", importance_kind="gain"))
# the factors weighted by their development IC-IR
register_learner(Learner("alpha_composite", _build_alpha_composite, _fit_alpha_composite,
                         _alpha_composite_importance, importance_kind="abs_icir_weight"))


# ---------------------------------------------------------------------------------------------
# Native training on matrices binned once per fold
# ---------------------------------------------------------------------------------------------


def build_native_matrix(kind: str, X: np.ndarray, y: np.ndarray, weight: np.ndarray,
                        params: dict) -> Any:
    """The binned training matrix of a fold, reused across trials (bins do not depend on the
    tuned parameters; `max_bin` and LightGBM's dataset keys are fixed per run)."""
    if kind == "xgboost":
        return xgb.QuantileDMatrix(X, label=y, weight=weight, max_bin=int(params.get("max_bin") or 256))
    if kind == "scaled":
        return _scaled_matrix(X, y, weight)
    if kind == "lightgbm":
        dataset_params = {k: params[k] for k in LIGHTGBM_DATASET_KEYS if k in params}
        dataset_params.update(feature_pre_filter=False, verbose=-1)
        return lgb.Dataset(X, label=y, weight=weight, params=dataset_params,
                           free_raw_data=True).construct()
    raise ValueError(f"no native matrix for {kind!r}")


def native_fit_predict(name: str, params: dict, matrix: Any, X_test: np.ndarray, seed: int,
                       n_jobs: int) -> np.ndarray:
    """Train on a prebuilt binned matrix with the wrapper's own parameters; predict X_test."""
    learner = get_learner(name)
    estimator = learner.build(dict(params), int(seed), int(n_jobs))
    if learner.native == "xgboost":
        booster = xgb.train(estimator.get_xgb_params(), matrix,
                            num_boost_round=estimator.get_num_boosting_rounds())
        return booster.inplace_predict(X_test)
    if learner.native == "lightgbm":
        booster = lgb.train(_lightgbm_native_params(estimator), matrix,
                            num_boost_round=int(estimator.n_estimators))
        return booster.predict(X_test, num_threads=int(n_jobs))
    if learner.native == "scaled":
        # The Gram matrix (features x features) makes coordinate descent cost independent of the
        # rows: on correlated factors a small alpha otherwise takes minutes per fit. Same
        # solution as the wrapper's fit (a test checks it).
        model = estimator.named_steps["model"].set_params(precompute=True)
        model.fit(matrix.X, matrix.y, sample_weight=matrix.weight)
        return model.predict(matrix.preprocess.transform(X_test))
    raise ValueError(f"learner {name!r} has no native path")


def _lightgbm_native_params(estimator: lgb.LGBMRegressor) -> dict:
    """The parameters LGBMRegressor.fit would pass to lgb.train (aliases are accepted natively)."""
    params = estimator.get_params()
    for key in ("n_estimators", "importance_type", "class_weight"):
        params.pop(key, None)
    params["objective"] = params.get("objective") or "regression"
    return params


def feature_importance(name: str, estimator, feature_names: list[str]) -> pd.DataFrame:
    """(feature, importance, share) of a fitted learner, largest first."""
    learner = get_learner(name)
    values = np.asarray(learner.importance(estimator, list(feature_names)), dtype=float)
    total = values.sum()
    frame = pd.DataFrame(
        {
            "feature": list(feature_names),
            "importance": values,
            "share": values / total if total > 0 else np.zeros_like(values),
            "kind": learner.importance_kind,
        }
    )
    return frame.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
