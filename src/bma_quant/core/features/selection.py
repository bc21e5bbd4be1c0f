"""Lag choice, EWM choice, rolling IC / IC-IR, variance and redundancy filters, leak guard and the
degraded mode of feature selection (seed §2.2.1-2.2.3, DESIGN §3).

Everything here is fitted on development dates only: the caller passes `scope_dates` (the union of
the purged folds' training dates, or the development dates) and the folds; rows at other dates
never enter a statistic. All work is on date x ticker matrices.

Daily RankIC is computed in batch on the wide matrices: each side is ranked across names on its
date (over its own valid names), and the RankIC is the Pearson correlation of the two rank
vectors over the names valid on both sides, on dates with at least `min_names` such names. When
both sides are valid on the same names (the usual case on a cleaned grid) this is exactly
Spearman's correlation, i.e. `core.evaluation.metrics.daily_ic(method="spearman")`; the batch form avoids
re-sorting the label for every (factor, lag, half-life) candidate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bma_quant.core.data.cv import DateFold
from bma_quant.core.evaluation.metrics import ic_summary
from bma_quant.core.features.decay import ewm_smooth
from bma_quant.core.features.factors import MARKET_FAMILY, USER_FAMILY
from bma_quant.core.features.transforms import row_ranks

logger = logging.getLogger(__name__)

# A variance below this fraction of the sum of squares is rounding dust (constant cross-section).
CONSTANT_RTOL = 1e-12


@dataclass(frozen=True)
class SelectionConfig:
    lag_candidates: tuple[int, ...] = (0, 1, 2, 5)
    ewm_enabled: bool = True
    ewm_halflife_candidates: tuple[float, ...] = (0.0, 5.0, 10.0)  # 0 = no smoothing
    ewm_evaluation_stride: int = 5  # evaluate half-lives on every k-th scope date (speed)
    ic_scope: str = "pre_cv"  # pre_cv | fold_train | dev
    min_names: int = 5
    min_ic_dates: int = 60
    min_factor_ic_dates: int = 20  # a factor with a RankIC on fewer dates is not judged
    rolling_window: int = 252
    nw_lag: int = 10
    min_variance: float = 1e-6
    min_abs_tstat: float = 3.0  # multiple testing over factors, lags and half-lives
    min_features: int = 10  # below this, refill from the best insignificant factors
    redundancy_threshold: float = 0.95
    redundancy_sample_rows: int = 200_000
    max_features: int = 20
    fallback_features: int = 12
    leak_threshold: float = 0.3
    include_market_context: bool = True
    # Timed IC (regime-conditional factors): see `timed_rank_ic`.
    timed_ic: bool = True
    timed_ic_window: int = 63  # dates of the trailing mean IC whose sign times the factor
    timed_ic_min_share: float = 0.5  # of those dates that must have an IC
    timed_ic_gap: int = 11  # label span d + h: an IC at u is known at u + gap (set from temporal)

    @classmethod
    def from_params(
        cls, selection: Mapping, lags: Mapping, ewm: Mapping, nw_lag: int,
        label_span: int | None = None,
    ) -> SelectionConfig:
        s = dict(selection)
        if s.get("ic_scope", "pre_cv") not in {"pre_cv", "fold_train", "dev"}:
            raise ValueError(
                f"selection.ic_scope must be pre_cv, fold_train or dev, got {s['ic_scope']!r}"
            )
        candidates = tuple(int(k) for k in lags.get("candidates", cls.lag_candidates))
        if not candidates or min(candidates) < 0:
            raise ValueError(f"lags.candidates must be non-negative integers, got {candidates}")
        return cls(
            lag_candidates=candidates,
            ewm_enabled=bool(ewm.get("enabled", cls.ewm_enabled)),
            ewm_halflife_candidates=tuple(
                float(h) for h in ewm.get("halflife_candidates", cls.ewm_halflife_candidates)
            ),
            ewm_evaluation_stride=int(ewm.get("evaluation_stride", cls.ewm_evaluation_stride)),
            ic_scope=str(s.get("ic_scope", cls.ic_scope)),
            min_names=int(s.get("min_names", cls.min_names)),
            min_ic_dates=int(s.get("min_ic_dates", cls.min_ic_dates)),
            min_factor_ic_dates=int(s.get("min_factor_ic_dates", cls.min_factor_ic_dates)),
            rolling_window=int(s.get("rolling_window", cls.rolling_window)),
            nw_lag=int(nw_lag),
            min_variance=float(s.get("min_variance", cls.min_variance)),
            min_abs_tstat=float(s.get("min_abs_tstat", cls.min_abs_tstat)),
            min_features=int(s.get("min_features", cls.min_features)),
            redundancy_threshold=float(s.get("redundancy_threshold", cls.redundancy_threshold)),
            redundancy_sample_rows=int(s.get("redundancy_sample_rows", cls.redundancy_sample_rows)),
            max_features=int(s.get("max_features", cls.max_features)),
            fallback_features=int(s.get("fallback_features", cls.fallback_features)),
            leak_threshold=float(s.get("leak_threshold", cls.leak_threshold)),
            include_market_context=bool(
                s.get("include_market_context", cls.include_market_context)
            ),
            timed_ic=bool(s.get("timed_ic", cls.timed_ic)),
            timed_ic_window=_positive(s, "timed_ic_window", cls.timed_ic_window),
            timed_ic_min_share=float(s.get("timed_ic_min_share", cls.timed_ic_min_share)),
            timed_ic_gap=int(label_span) if label_span is not None else int(nw_lag) + 1,
        )


def _positive(params: Mapping, key: str, default: int) -> int:
    value = int(params.get(key, default))
    if value < 1:
        raise ValueError(f"selection.{key} must be a positive integer, got {value}")
    return value


@dataclass
class SelectionResult:
    selected: list[str]
    lags: dict[str, int]
    halflives: dict[str, float]
    degraded: bool
    leak_suspects: list[str]
    table: pd.DataFrame
    report: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Batch RankIC on wide matrices
# --------------------------------------------------------------------------------------------


def rowwise_corr(x: np.ndarray, y: np.ndarray, min_names: int) -> np.ndarray:
    """Pearson correlation of each row of x with the same row of y over jointly finite cells;
    NaN for rows with fewer than `min_names` such cells or no spread on either side."""
    both = np.isfinite(x) & np.isfinite(y)
    n = both.sum(axis=1).astype(np.float64)
    x0 = np.where(both, x, 0.0)
    y0 = np.where(both, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sx, sy = x0.sum(axis=1), y0.sum(axis=1)
        sxx = np.einsum("ij,ij->i", x0, x0)
        syy = np.einsum("ij,ij->i", y0, y0)
        cxy = np.einsum("ij,ij->i", x0, y0) - sx * sy / n
        cxx = sxx - sx * sx / n
        cyy = syy - sy * sy / n
        corr = cxy / np.sqrt(cxx * cyy)
    flat = (cxx <= CONSTANT_RTOL * sxx) | (cyy <= CONSTANT_RTOL * syy)
    corr[(n < max(min_names, 2)) | flat | ~np.isfinite(corr)] = np.nan
    return np.clip(corr, -1.0, 1.0)


def lagged_rows(values: np.ndarray, rows: np.ndarray, lag: int) -> np.ndarray:
    """values[rows - lag] (NaN where rows - lag < 0): a factor observed `lag` dates earlier."""
    source = rows - int(lag)
    out = np.full((len(rows), values.shape[1]), np.nan, dtype=np.float64)
    ok = source >= 0
    out[ok] = values[source[ok]]
    return out


def daily_rank_ic(
    factor_ranks: np.ndarray, label_ranks: np.ndarray, rows: np.ndarray, lag: int, min_names: int
) -> np.ndarray:
    """RankIC at each of `rows` between the factor lagged by `lag` dates and the label."""
    return rowwise_corr(lagged_rows(factor_ranks, rows, lag), label_ranks[rows], min_names)


def apply_lag(values: np.ndarray, lag: int) -> np.ndarray:
    """Shift a date x ticker matrix down by `lag` rows (value at t is the value at t - lag)."""
    if lag == 0:
        return values
    out = np.full_like(values, np.nan)
    out[lag:] = values[:-lag]
    return out


def timed_rank_ic(
    ic: np.ndarray, rows: np.ndarray, n_dates: int, gap: int, window: int, min_count: int
) -> np.ndarray:
    """The factor's daily RankIC at each of `rows` times the sign of its own trailing mean RankIC
    over the `window` calendar dates ending `gap` dates earlier (whose labels were known at the
    row's date: gap = d + h), over the rows given; NaN where fewer than `min_count` such ICs
    exist or their mean is 0.

    A factor whose payoff flips with a persistent market state has a mean IC near 0 but a large
    positive mean timed IC (betting on its recent sign pays); a factor that never predicts has a
    mean timed IC near 0, since its IC at s is unrelated to what was known at s."""
    rows = np.asarray(rows, dtype=np.int64)
    full = np.full(n_dates, np.nan)
    full[rows] = ic
    finite = np.isfinite(full)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, full, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    stop = np.clip(rows - gap + 1, 0, n_dates)  # exclusive: the window ends at row - gap
    start = np.clip(stop - window, 0, n_dates)
    count = counts[stop] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        trailing = (sums[stop] - sums[start]) / count
    sign = np.sign(trailing)
    sign[(count < max(1, min_count)) | ~np.isfinite(trailing) | (sign == 0)] = np.nan
    return np.asarray(ic, dtype=np.float64) * sign


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def _positions(dates: pd.DatetimeIndex, subset) -> np.ndarray:
    return np.flatnonzero(dates.isin(pd.DatetimeIndex(subset)))


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _abs_or_minus(value: float) -> float:
    return abs(value) if math.isfinite(value) else -1.0


class _Ranker:
    """Ranks of the model-visible values of each factor (cached), re-ranked unless they already
    are per-date ranks (then Pearson on them equals Pearson on their ranks up to tail ties)."""

    def __init__(self, already_ranks: bool):
        self.already_ranks = already_ranks

    def __call__(self, values: np.ndarray, smoothed: bool) -> np.ndarray:
        if self.already_ranks and not smoothed:
            return values.astype(np.float64)
        return row_ranks(values)


def smoothed_values(
    values: np.ndarray, halflife: float, weight_cache: dict | None = None
) -> np.ndarray:
    """The model-visible smoothed factor (float32): causal EWM when halflife > 0."""
    if not halflife:
        return values
    return ewm_smooth(values, halflife, weight_cache)


def _timed(ic: np.ndarray, rows: np.ndarray, n_dates: int, config: SelectionConfig,
           stride: int = 1) -> np.ndarray:
    """Timed RankIC of a daily IC series on `rows` (NaN everywhere when the criterion is off);
    `stride` > 1 when only every k-th date has an IC (the window then holds fewer of them)."""
    if not config.timed_ic:
        return np.full(len(rows), np.nan)
    min_count = math.ceil(config.timed_ic_min_share * config.timed_ic_window / max(1, stride))
    return timed_rank_ic(ic, rows, n_dates, config.timed_ic_gap, config.timed_ic_window,
                         min_count)


def _choice_score(mean_ic: float, timed_mean: float) -> float:
    """What the lag and half-life choices maximise: |mean RankIC|, or the mean timed RankIC when
    larger (a regime-conditional factor), so neither criterion's factors get a random lag."""
    return max(_abs_or_minus(mean_ic), timed_mean if math.isfinite(timed_mean) else -1.0)


def _choose_halflife(
    values: np.ndarray,
    label_ranks: np.ndarray,
    rows: np.ndarray,
    config: SelectionConfig,
    ranker: _Ranker,
    weight_cache: dict,
) -> tuple[float, dict[float, float], dict[float, float], np.ndarray]:
    """Half-life (0 = none) with the best choice score at lag 0 on every k-th scope date; also
    returns the mean and timed-mean RankIC per half-life and the chosen smoothed matrix."""
    candidates = sorted({float(h) for h in config.ewm_halflife_candidates} | {0.0})
    if not config.ewm_enabled or candidates == [0.0]:
        return 0.0, {}, {}, values
    stride = max(1, config.ewm_evaluation_stride)
    sample = rows[::stride]
    scores: dict[float, float] = {}
    timed: dict[float, float] = {}
    smoothed: dict[float, np.ndarray] = {}
    for halflife in candidates:
        smoothed[halflife] = smoothed_values(values, halflife, weight_cache)
        ranks = ranker(smoothed[halflife][sample], smoothed=bool(halflife))
        ic = rowwise_corr(ranks, label_ranks[sample], config.min_names)
        scores[halflife] = _mean(ic)
        timed[halflife] = _mean(_timed(ic, sample, values.shape[0], config, stride))
    best = max(candidates, key=lambda h: (_choice_score(scores[h], timed[h]), -h))
    return best, scores, timed, smoothed[best]


def _redundancy_order(
    order: list[str], matrices: dict[str, np.ndarray], rows: np.ndarray, config: SelectionConfig
) -> tuple[list[str], dict[str, str]]:
    """Greedy redundancy filter: walk `order` (best first), drop a factor whose |corr| with an
    already kept one exceeds the threshold. Correlations are pooled over sampled scope rows."""
    if len(order) < 2:
        return list(order), {}
    n_names = next(iter(matrices.values())).shape[1]
    max_rows = max(1, config.redundancy_sample_rows // max(1, n_names))
    sample = rows[np.linspace(0, len(rows) - 1, min(len(rows), max_rows)).astype(np.int64)]
    pooled = np.column_stack(
        [
            np.nan_to_num(matrices[name][sample].astype(np.float64).ravel(), nan=0.0)
            for name in order
        ]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(pooled, rowvar=False)
    corr = np.nan_to_num(corr, nan=0.0)
    kept_idx: list[int] = []
    dropped: dict[str, str] = {}
    for i, name in enumerate(order):
        clash = [j for j in kept_idx if abs(corr[i, j]) > config.redundancy_threshold]
        if clash:
            partner = order[clash[0]]
            dropped[name] = f"redundant with {partner} (|corr| = {abs(corr[i, clash[0]]):.3f})"
        else:
            kept_idx.append(i)
    return [order[i] for i in kept_idx], dropped


@dataclass
class _IcScope:
    """The development rows the selection scores on, per fold when `fold_train`, and its name."""

    rows: np.ndarray
    fold_rows: list[np.ndarray]
    name: str
    # True when no CV test window is among the scored dates: out-of-fold scores downstream are
    # then honest (the champion comparison needs it)
    before_cv: bool = False


def _ic_scope(dates: pd.DatetimeIndex, dev_dates: Sequence, folds: Sequence[DateFold],
              ic_scope: str) -> _IcScope:
    dev_rows = _positions(dates, dev_dates)
    if ic_scope == "pre_cv" and folds:
        # Only the first fold's training dates: every later CV test window is unseen by the
        # selection, so out-of-fold scores downstream are not inflated by it.
        first = pd.DatetimeIndex(folds[0].train_dates).intersection(pd.DatetimeIndex(dev_dates))
        rows = _positions(dates, first)
        return _IcScope(rows, [rows],
                        "training dates of the first purged fold (before any CV test window)",
                        before_cv=True)
    if ic_scope == "fold_train" and folds:
        train_union = pd.DatetimeIndex(np.unique(np.concatenate([f.train_dates for f in folds])))
        rows = _positions(dates, train_union.intersection(pd.DatetimeIndex(dev_dates)))
        return _IcScope(rows, [_positions(dates, f.train_dates) for f in folds],
                        "union of the purged folds' training dates")
    return _IcScope(dev_rows, [dev_rows], "development dates")


def scope_rows(dates: pd.DatetimeIndex, dev_dates: Sequence, folds: Sequence[DateFold],
               ic_scope: str) -> np.ndarray:
    """Row positions in `dates` of the development dates the selection (and the leak audit's
    future-return profile) may score on (`SelectionConfig.ic_scope`)."""
    return _ic_scope(pd.DatetimeIndex(dates), dev_dates, folds, ic_scope).rows


def _lag_scores(ranks, label_ranks, scope: _IcScope, config: SelectionConfig):
    """Daily RankIC per lag candidate, its mean, the lag score (mean over folds' means) and the
    daily timed RankIC."""
    lag_scores, lag_means, ic_by_lag, timed_by_lag = {}, {}, {}, {}
    for k in config.lag_candidates:
        ic = daily_rank_ic(ranks, label_ranks, scope.rows, k, config.min_names)
        ic_by_lag[k] = ic
        timed_by_lag[k] = _timed(ic, scope.rows, ranks.shape[0], config)
        lag_means[k] = _mean(ic)
        if len(scope.fold_rows) > 1:
            ic_series = pd.Series(ic, index=scope.rows)
            fold_means = [_mean(ic_series.reindex(fr).to_numpy()) for fr in scope.fold_rows]
            lag_scores[k] = (
                float(np.nanmean(fold_means)) if np.isfinite(fold_means).any() else math.nan
            )
        else:
            lag_scores[k] = lag_means[k]
    return lag_scores, lag_means, ic_by_lag, timed_by_lag


def _ic_row(ic: pd.Series, timed: pd.Series, lag: int, halflife: float, lag_means: dict,
            lag_scores: dict, lag_timed: dict, ewm_scores: dict, ewm_timed: dict,
            config: SelectionConfig) -> dict:
    """The selection table's IC columns for one factor at its chosen lag and half-life."""
    summary = ic_summary(ic, config.nw_lag)
    timed_summary = ic_summary(timed, config.nw_lag)
    rolling = ic.rolling(config.rolling_window, min_periods=config.rolling_window // 2).mean()
    rolling = rolling.dropna()
    sign = np.sign(summary["mean"]) if math.isfinite(summary["mean"]) else 0.0
    return {
        "lag": lag,
        "halflife": halflife,
        "rank_ic_mean": summary["mean"],
        "rank_ic_std": summary["std"],
        "rank_icir": summary["icir"],
        "rank_ic_tstat": summary["tstat"],
        "rank_hit_rate": summary["hit_rate"],  # share of dates with RankIC > 0
        "n_dates": summary["n_dates"],
        "timed_ic_mean": timed_summary["mean"],
        "timed_icir": timed_summary["icir"],
        "timed_ic_tstat": timed_summary["tstat"],
        "timed_ic_n_dates": timed_summary["n_dates"],
        "rolling_ic_min": float(rolling.min()) if len(rolling) else math.nan,
        "rolling_ic_max": float(rolling.max()) if len(rolling) else math.nan,
        "rolling_ic_sign_stability": float((np.sign(rolling) == sign).mean())
        if len(rolling) and sign
        else math.nan,
        **{f"rank_ic_lag_{k}": lag_means[k] for k in config.lag_candidates},
        **{f"lag_score_{k}": lag_scores[k] for k in config.lag_candidates},
        **{f"rank_ic_halflife_{h:g}": s for h, s in ewm_scores.items()},
        **({f"timed_ic_lag_{k}": lag_timed[k] for k in config.lag_candidates}
           if config.timed_ic else {}),
        **({f"timed_ic_halflife_{h:g}": s for h, s in ewm_timed.items()}
           if config.timed_ic else {}),
    }


@dataclass
class _Scorer:
    """What scoring one factor needs besides the factor: label ranks, scope, caches."""

    dates: pd.DatetimeIndex
    scope: _IcScope
    label_ranks: np.ndarray
    config: SelectionConfig
    ranker: _Ranker
    weight_cache: dict = field(default_factory=dict)

    @property
    def rank_window(self) -> tuple[int, int]:
        rows = self.scope.rows
        if not len(rows):
            return 0, 0
        return max(0, int(rows.min()) - max(self.config.lag_candidates)), int(rows.max()) + 1

    def score(self, values: np.ndarray) -> tuple[dict, np.ndarray, int, float]:
        """(table row, smoothed values, lag, half-life) of one factor."""
        config, scope = self.config, self.scope
        halflife, ewm_scores, ewm_timed, effective = _choose_halflife(
            values, self.label_ranks, scope.rows, config, self.ranker, self.weight_cache
        )
        lo, hi = self.rank_window
        ranks = np.full(values.shape, np.nan)  # ranks only where a lag candidate reads them
        ranks[lo:hi] = self.ranker(effective[lo:hi], smoothed=bool(halflife))
        lag_scores, lag_means, ic_by_lag, timed_by_lag = _lag_scores(
            ranks, self.label_ranks, scope, config)
        lag_timed = {k: _mean(v) for k, v in timed_by_lag.items()}
        lag = max(config.lag_candidates,
                  key=lambda k: (_choice_score(lag_scores[k], lag_timed[k]), -k))
        ic = pd.Series(ic_by_lag[lag], index=self.dates[scope.rows])
        timed = pd.Series(timed_by_lag[lag], index=ic.index)
        row = _ic_row(ic, timed, lag, halflife, lag_means, lag_scores, lag_timed, ewm_scores,
                      ewm_timed, config)
        if len(scope.fold_rows) > 1:
            for i, fr in enumerate(scope.fold_rows):
                row[f"fold_{i}_rank_ic"] = _mean(ic.reindex(self.dates[fr]).to_numpy())
        finite = [abs(v) for v in lag_means.values() if math.isfinite(v)]
        row["max_abs_rank_ic"] = max(finite) if finite else 0.0
        return row, effective, lag, halflife


def _gate_reason(row: dict, degraded: bool, config: SelectionConfig) -> str | None:
    """Why a scored factor is dropped before ranking (too few IC dates, leak guard, flat,
    insignificant), or None."""
    n_dates = row.get("n_dates", config.min_factor_ic_dates)
    if not degraded and 0 < n_dates < config.min_factor_ic_dates:
        # a mean of one or two daily RankICs is no evidence either way: it read as a look-ahead
        # (0.82 on 2 dates), or passed the t-stat gate on two close values
        return (f"a RankIC on {n_dates} development date(s) only, fewer than feature_engineering."
                f"selection.min_factor_ic_dates ({config.min_factor_ic_dates}): too few to "
                "judge it")
    if not degraded and row["max_abs_rank_ic"] > config.leak_threshold:
        return (f"suspected look-ahead: |development RankIC| = {row['max_abs_rank_ic']:.3f} > "
                f"{config.leak_threshold}")
    if not degraded and row.get("n_dates", 1) == 0:
        # a column that starts after the scope (it was "insignificant: t-stat = nan")
        return ("no RankIC on any date of the selection's scope (feature_engineering."
                f"selection.ic_scope: {config.ic_scope}): no values there, fewer than "
                f"{config.min_names} names with one on each date, or no spread across them")
    if not row["variance"] > config.min_variance:
        return f"variance {row['variance']:.3g} <= min_variance {config.min_variance:g}"
    tstat = abs(row.get("rank_ic_tstat", math.nan))
    timed = row.get("timed_ic_tstat", math.nan)
    if not degraded and not (tstat >= config.min_abs_tstat or timed >= config.min_abs_tstat):
        # the timed RankIC is named only when it was computed (selection.timed_ic)
        timed_text = (f" and timed RankIC t-stat = {timed:.2f}"
                      if config.timed_ic and math.isfinite(timed) else "")
        return (f"insignificant: |RankIC t-stat| = {tstat:.2f}{timed_text} < "
                f"{config.min_abs_tstat}")
    return None


def _timed_only(row: dict, config: SelectionConfig) -> bool:
    """Passes the significance gate by its timed RankIC alone (a regime-conditional factor)."""
    return (not abs(row.get("rank_ic_tstat", math.nan)) >= config.min_abs_tstat
            and row.get("timed_ic_tstat", math.nan) >= config.min_abs_tstat)


def _rounded(value: float, digits: int = 10) -> float:
    """`value` to `digits` significant digits (non-finite values unchanged)."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def _ranking_score(row: dict) -> float:
    """Order of the significant factors: |IC-IR|, or the timed IC-IR when larger."""
    timed = row.get("timed_icir", math.nan)
    return max(_abs_or_minus(row.get("rank_icir", math.nan)),
               timed if math.isfinite(timed) else -1.0)


def _refill_below_significance(selected: list[str], per_ticker: list[str], drop: dict,
                               score: dict, visible: dict, fit_rows: np.ndarray,
                               wanted: int, config: SelectionConfig) -> list[str]:
    """Too few significant factors: refill from the best factors that failed only the
    significance gate (never leak suspects, flat or redundant ones), and say so."""
    insignificant = [n for n in per_ticker if drop.get(n, "").startswith("insignificant")]
    refill = sorted(insignificant, key=lambda n: (-score[n], n))
    candidates, _ = _redundancy_order(selected + refill, visible, fit_rows, config)
    filled = [n for n in candidates if n not in selected][: wanted - len(selected)]
    if filled:
        target = (f"selection.min_features = {wanted}" if wanted == config.min_features else
                  f"{wanted} (selection.min_features = {config.min_features}, capped by "
                  "selection.max_features)")
        logger.warning(
            "only %d factor(s) pass |t| >= %g (mean or timed RankIC); kept %d more below the "
            "significance gate to reach %s: %s",
            len(selected), config.min_abs_tstat, len(filled), target, ", ".join(filled),
        )
    return filled


@dataclass
class _Scored:
    """Per-factor outcome of scoring: table rows, chosen lag / half-life, model-visible values and
    the gate that dropped a factor (if any)."""

    rows: list[dict] = field(default_factory=list)
    lags: dict[str, int] = field(default_factory=dict)
    halflives: dict[str, float] = field(default_factory=dict)
    visible: dict[str, np.ndarray] = field(default_factory=dict)
    drop: dict[str, str] = field(default_factory=dict)


def _degraded_reason(label: np.ndarray, scope, features: Mapping[str, np.ndarray],
                     per_ticker: list[str], config: SelectionConfig) -> tuple[str | None, int]:
    """Why ICs cannot be estimated on the scope (None when they can), and the IC date count.
    A name counts on a date when it has a label and a factor value there: labels exist for names
    out of the cross-section too (a price floor, a short history), whose factors are empty."""
    scored = np.isfinite(label[scope.rows])
    if per_ticker:
        valued = np.zeros_like(scored)
        for name in per_ticker:
            valued |= np.isfinite(np.asarray(features[name])[scope.rows])
        scored &= valued
    label_valid = scored.sum(axis=1)
    n_ic_dates = int((label_valid >= config.min_names).sum())
    max_names = int(label_valid.max()) if label_valid.size else 0
    if n_ic_dates >= config.min_ic_dates and per_ticker:
        return None, n_ic_dates
    return (f"IC cannot be estimated: {n_ic_dates} development date(s) with >= {config.min_names} "
            f"labelled names in the cross-section (need {config.min_ic_dates}; at most "
            f"{max_names} names on a date: a short history, or a rule that keeps names out such "
            "as processing.eligibility.min_price?)", n_ic_dates)


def _warn_leak_suspects(suspects: list[str], rows: list[dict], families: Mapping[str, str],
                        threshold: float) -> None:
    """Name the factors the leak guard dropped, with what to check: a column of the file may be
    computed by its vendor with later data; a computed factor passed the leak audit, so a real
    effect on a short development period is the likelier cause."""
    ic_of = {r["factor"]: r.get("max_abs_rank_ic", math.nan) for r in rows}
    user = [n for n in suspects if families[n] == USER_FAMILY]
    computed = [n for n in suspects if n not in user]
    advice = []
    if user:
        advice.append("A column of the file (" + ", ".join(user) + ") may be computed with data "
                      "after its date: ask how it is built before trusting it")
    if computed:
        advice.append(("a" if user else "A") + " factor the project computes ("
                      + ", ".join(computed) + ") passed the "
                      "leak audit, so on a short development period a real effect can reach the "
                      "threshold: raise it if you trust the factor")
    logger.warning(
        "leak guard: dropped %d factor(s) whose |mean RankIC| with the label on the selection's "
        "development dates is above feature_engineering.selection.leak_threshold (%g; suspected "
        "look-ahead): %s. %s", len(suspects), threshold,
        ", ".join(f"{n} ({ic_of[n]:.2f})" for n in suspects), "; ".join(advice))


def names_present(features: Mapping[str, np.ndarray], names: Sequence[str],
                  rows: np.ndarray) -> np.ndarray:
    """Columns (names) with a value of any of `names`' factors on `rows`. The grid holds every
    name of the file, those listed only later too: counted on the fit rows (as zeros in the
    variance, as missing in the coverage, in the redundancy sample's width) they would make the
    development-period choice depend on names that appear after it."""
    present = np.zeros(next(iter(features.values())).shape[1], dtype=bool)
    for name in names:
        present |= np.isfinite(features[name][rows]).any(axis=0)
    return present


def _score_factors(features, families, per_ticker, scorer, fit_rows, degraded,
                   config: SelectionConfig) -> _Scored:
    """Lag and half-life per factor (when ICs exist), its variance and coverage on `fit_rows`
    over the names present there (`names_present`), and the significance / leak / variance
    gate."""
    out = _Scored()
    present = names_present(features, per_ticker, fit_rows) if per_ticker else None
    for name in per_ticker:
        values = features[name]
        if scorer is None:
            row, effective, lag, halflife = {}, values, 0, 0.0
        else:
            row, effective, lag, halflife = scorer.score(values)
        lagged = apply_lag(effective, lag)
        dev_values = lagged[fit_rows][:, present].astype(np.float64)
        row = {"factor": name, "family": families[name], **row, "lag": lag, "halflife": halflife,
               "variance": float(np.var(np.nan_to_num(dev_values, nan=0.0)))
               if dev_values.size else 0.0,
               "coverage": float(np.isfinite(dev_values).mean()) if dev_values.size else 0.0}
        out.lags[name], out.halflives[name] = lag, halflife
        # only the rows (and names) the filters read: less memory
        out.visible[name] = lagged[fit_rows][:, present]
        gate = _gate_reason(row, degraded, config)
        if gate:
            out.drop[name] = gate
        out.rows.append(row)
    return out


def family_round_robin(eligible: Sequence[str], rows: Sequence[dict]) -> list[str]:
    """Degraded mode's order (no IC to rank by): one factor of each family in turn (families in
    the order they were built), within a family the best-covered first, then in build order.
    Without evidence of what pays, a spread over families (trend, volatility, volume, ...) is
    the least arbitrary choice; the variance of rank-transformed factors, the former order, is
    the same for all but their coverage. Coverage is compared at 10 significant digits, so the
    order does not depend on float sums' last bits."""
    position = {name: k for k, name in enumerate(eligible)}
    by_family: dict[str, list[dict]] = {}
    for row in rows:
        if row["factor"] in position:
            by_family.setdefault(row["family"], []).append(row)
    queues = [sorted(members, key=lambda r: (-_rounded(r["coverage"]), position[r["factor"]]))
              for members in by_family.values()]
    order: list[str] = []
    for depth in range(max((len(q) for q in queues), default=0)):
        order += [q[depth]["factor"] for q in queues if depth < len(q)]
    return order


def _choose(scored: _Scored, per_ticker: list[str], fit_rows, degraded,
            config: SelectionConfig) -> tuple[list[str], list[str]]:
    """Per-ticker factors ranked, de-duplicated, cut to the limit and refilled to min_features;
    returns (selected, filled below significance) and records every drop in scored.drop."""
    eligible = [n for n in per_ticker if n not in scored.drop]
    if degraded:
        order = family_round_robin(eligible, scored.rows)
        score: dict[str, float] = {}
        limit = config.fallback_features
    else:
        # Scores equal but for rounding (float sums differ in their last bits with the summation
        # order, which varies with the CPU and the array's layout) tie, and ties go by name: the
        # same choice on every machine.
        score = {r["factor"]: _rounded(_ranking_score(r)) for r in scored.rows}
        order = sorted(eligible, key=lambda n: (-score[n], n))
        limit = config.max_features
    kept, redundant = _redundancy_order(order, scored.visible, fit_rows, config)
    scored.drop.update(redundant)
    selected = kept[:limit]
    for name in kept[limit:]:
        scored.drop[name] = f"beyond the top {limit}"
    filled: list[str] = []
    wanted = min(config.min_features, limit)
    if not degraded and len(selected) < wanted:
        filled = _refill_below_significance(selected, per_ticker, scored.drop, score,
                                            scored.visible, fit_rows, wanted, config)
        for name in filled:
            scored.drop.pop(name)
        selected += filled
    return selected, filled


def select_features(
    features: Mapping[str, np.ndarray],
    families: Mapping[str, str],
    label: np.ndarray,
    dates: pd.DatetimeIndex,
    dev_dates: Sequence,
    folds: Sequence[DateFold],
    config: SelectionConfig,
    values_are_ranks: bool = False,
) -> SelectionResult:
    """Choose half-lives and lags, score, filter and select factors on development dates.

    features: name -> transformed date x ticker matrix (float32) on calendar `dates`;
    label: date x ticker forward-return matrix on the same grid; dev_dates: the development
    dates; folds: purged walk-forward folds (their training dates define the IC scope when
    `ic_scope` is `fold_train`)."""
    dates = pd.DatetimeIndex(dates)
    dev_rows = _positions(dates, dev_dates)
    scope = _ic_scope(dates, dev_dates, folds, config.ic_scope)
    label = np.asarray(label, dtype=np.float64)
    per_ticker = [n for n in features if families[n] != MARKET_FAMILY]
    market_names = [n for n in features if families[n] == MARKET_FAMILY]
    reason, n_ic_dates = _degraded_reason(label, scope, features, per_ticker, config)
    degraded = reason is not None
    if degraded:
        logger.warning("feature selection in degraded mode: %s", reason)
    scorer = None if degraded else _Scorer(dates, scope, row_ranks(label), config,
                                           _Ranker(values_are_ranks))
    # Variance, coverage and redundancy are choices too: fitted on the IC scope's rows (with the
    # default pre_cv scope, never on the CV test windows whose out-of-fold scores the next layers
    # learn from; `fold_train` and `dev` reach into them, for the IC choices as well).
    fit_rows = scope.rows if len(scope.rows) else dev_rows
    scored = _score_factors(features, families, per_ticker, scorer, fit_rows, degraded, config)
    leak_suspects = [n for n in per_ticker
                     if scored.drop.get(n, "").startswith("suspected look-ahead")]
    # scored.visible holds the fit rows only: the filters read them in that order
    selected, filled = _choose(scored, per_ticker, np.arange(len(fit_rows)), degraded, config)
    for name in market_names:
        scored.lags[name], scored.halflives[name] = 0, 0.0
        if config.include_market_context:
            selected.append(name)
        else:
            scored.drop[name] = "market context (constant across names on a date): not IC-ranked"
    if leak_suspects:
        _warn_leak_suspects(leak_suspects, scored.rows, families, config.leak_threshold)
    table = pd.DataFrame(scored.rows)
    if len(table):
        table["status"] = [
            "selected" if n in selected else f"dropped: {scored.drop.get(n, 'not selected')}"
            for n in table["factor"]
        ]
        table["selected"] = table["factor"].isin(selected)
    report = _selection_report(features, scored, selected, filled, market_names, leak_suspects,
                               scope, n_ic_dates, reason, config)
    return SelectionResult(
        selected=list(selected),
        lags={n: int(scored.lags[n]) for n in selected},
        halflives={n: float(scored.halflives[n]) for n in selected},
        degraded=degraded,
        leak_suspects=leak_suspects,
        table=table,
        report=report,
    )


def nothing_selected(result: SelectionResult, families: Mapping[str, str],
                     config: SelectionConfig):
    """A PreflightError when the selection kept no per-ticker factor (None otherwise): the
    market-context factors (one value per date) cannot rank names, so every learner would be
    degenerate. The feature_engineering node raises it; a study of the gates may not."""
    from bma_quant.core.data.preflight import PreflightError

    per_ticker = [n for n in families if families[n] != MARKET_FAMILY]
    if not per_ticker or any(families.get(n) != MARKET_FAMILY for n in result.selected):
        return None
    if not (result.report or {}).get("ic_dates"):
        # no date of the scope has min_names names with a label: no threshold can help
        return PreflightError(
            f"feature selection kept none of the {len(per_ticker)} per-ticker factors: no date of "
            f"its scope ({(result.report or {}).get('ic_scope')}) has "
            f"feature_engineering.selection.min_names ({config.min_names}) names with a value "
            "and a label, so every factor scored nothing. On a short panel the first fold's "
            "training dates may all fall before any name has processing.eligibility."
            "min_history_days of history: lower that (or cv.min_train_days' floor, "
            "cv.short_panel.floor.min_train_days, above it), or give the panel more history")
    table = result.table
    status = dict(zip(table["factor"], table["status"], strict=True)) if len(table) else {}
    examples = "; ".join(f"{n}: {status.get(n, 'not selected').removeprefix('dropped: ')}"
                         for n in per_ticker[:3])
    return PreflightError(
        f"feature selection kept none of the {len(per_ticker)} per-ticker factors (e.g. "
        f"{examples}{' ...' if len(per_ticker) > 3 else ''}) and "
        f"feature_engineering.selection.min_features is {config.min_features}, so nothing is "
        "refilled: the models would see only market-wide factors, which cannot rank names on a "
        "date. Lower selection.min_abs_tstat (or the other thresholds named) or set "
        "min_features >= 1")


def selection_left_cv_unread(report: dict) -> bool:
    """Did the selection of `report` (its selection report) leave every CV test window unread
    (the default `pre_cv` scope)? Then the out-of-fold scores after it are honest."""
    if "cv_test_dates_unseen" in report:
        return bool(report["cv_test_dates_unseen"])
    # a report written before the flag existed: the default scope's name says it
    return str(report.get("ic_scope", "")).startswith("training dates of the first purged fold")


def _selection_report(features, scored: _Scored, selected, filled, market_names, leak_suspects,
                      scope: _IcScope, n_ic_dates: int, reason: str | None,
                      config: SelectionConfig) -> dict:
    degraded = reason is not None
    return {
        "mode": "degraded" if degraded else "full",
        "degraded_reason": reason,
        "ic_scope": scope.name,
        # no choice here read a CV test window (the champion comparison trusts out-of-fold
        # scores only then)
        "cv_test_dates_unseen": bool(scope.before_cv and len(scope.rows)),
        "ic_dates": n_ic_dates,
        "min_names": config.min_names,
        "factors_built": len(features),
        "factors_per_ticker": len(features) - len(market_names),
        "market_context_factors": market_names,
        "selected": list(selected),
        "factors_kept": len(selected),
        "significant": [n for n in selected if n not in filled and n not in market_names],
        "significant_by_timed_ic_only": [
            r["factor"] for r in scored.rows
            if r["factor"] in selected and r["factor"] not in filled and not degraded
            and _timed_only(r, config)
        ],
        "filled_below_significance": filled,
        "lags": {n: int(scored.lags[n]) for n in selected},
        "ewm_halflives": {n: float(scored.halflives[n]) for n in selected},
        "leak_suspects": {r["factor"]: float(r["max_abs_rank_ic"]) for r in scored.rows
                          if r["factor"] in leak_suspects},
        "leak_threshold": config.leak_threshold,
        "dropped": {n: scored.drop[n] for n in features
                    if n in scored.drop and n not in selected},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
    }
