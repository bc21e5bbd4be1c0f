"""Trial accounting: every configuration a run tried, and its development-period returns.

A configuration is one thing the run could have reported as its result: each Optuna trial of each
tuned learner (scored on the development folds it was tuned on), each base learner that was not
tuned, each regime variant and each ensemble method. ``final`` is a copy of the chosen ensemble
method, not a configuration of its own. A tuned learner's out-of-fold predictions are its best
trial's parameters again, so once its trials are known they stand for it.

Each configuration's out-of-fold predictions become daily long-short returns through the project's
own backtest (``core.evaluation.backtest``), with the evaluation's quantiles, rebalancing and costs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bma_quant.core.data.universe import TRADABLE
from bma_quant.core.evaluation.backtest import (
    Tradability,
    long_short_backtest,
    tradable_pivot,
)
from bma_quant.core.evaluation.costs import COST_RATE
from bma_quant.core.evaluation.limit_locks import LIMIT_LOCK
from bma_quant.core.evaluation.test_period import EvaluationConfig

CONFIGURATION = "configuration"
SOURCES = ("trial", "base", "regime", "ensemble")
PREDICTION_KEYS = ["date", "ticker", "model", "prediction"]
TRIAL_KEYS = [*PREDICTION_KEYS, "trial"]


def _has_rows(frame: pd.DataFrame | None) -> bool:
    return frame is not None and len(frame) > 0


def _require(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing} (has {list(frame.columns)})")


def trial_name(model: str, trial: int) -> str:
    return f"{model}#trial{int(trial)}"


def _check_unique(part: pd.DataFrame, keys: list[str], name: str) -> None:
    duplicated = part.duplicated(keys)
    if duplicated.any():
        raise ValueError(
            f"{int(duplicated.sum())} duplicate ({', '.join(keys)}) out-of-fold rows in {name}, "
            f"e.g. {part.loc[duplicated, keys].head(3).to_dict('records')}"
        )


def configuration_predictions(
    trial_oof: pd.DataFrame | None,
    base_oof: pd.DataFrame | None,
    regime_oof: pd.DataFrame | None,
    ensemble_oof: pd.DataFrame | None,
    exclude_models: tuple[str, ...] = ("final",),
) -> pd.DataFrame:
    """All configurations' out-of-fold predictions, long: date, ticker, configuration, source,
    model, prediction. Any input may be None or empty (that source then counts nothing).

    `configuration` and `source` are categoricals over every configuration (millions of rows on a
    large panel: one code per row instead of one string)."""
    columns = ["date", "ticker", CONFIGURATION, "source", "model", "prediction"]
    trials = pairs = None
    tuned: set[str] = set()
    if _has_rows(trial_oof):
        _require(trial_oof, TRIAL_KEYS, "base_trial_oof_predictions")
        trials = trial_oof[TRIAL_KEYS]
        _check_unique(trials, ["date", "ticker", "model", "trial"], "base_trial_oof_predictions")
        tuned = set(trials["model"].unique())
        pairs = trials[["model", "trial"]].drop_duplicates()
    others = []
    for frame, source, name in ((base_oof, "base", "base_oof_predictions"),
                                (regime_oof, "regime", "regime_oof_predictions"),
                                (ensemble_oof, "ensemble", "ensemble_oof_predictions")):
        if not _has_rows(frame):
            continue
        _require(frame, PREDICTION_KEYS, name)
        keep = ~frame["model"].isin(set(exclude_models) | (tuned if source == "base" else set()))
        rows = frame.loc[keep, PREDICTION_KEYS]
        _check_unique(rows, ["date", "ticker", "model"], name)
        others.append((rows, source))
    trial_names = [] if pairs is None else [
        trial_name(m, t) for m, t in zip(pairs["model"], pairs["trial"], strict=True)]
    names = list(dict.fromkeys([*trial_names, *(str(m) for rows, _ in others
                                                for m in rows["model"].unique())]))
    parts = []
    if trials is not None:
        # rows' (model, trial) pair in order of first appearance = the order of `pairs`
        codes = trials.groupby(["model", "trial"], sort=False).ngroup().to_numpy()
        parts.append(trials.drop(columns="trial").assign(**{
            CONFIGURATION: pd.Categorical.from_codes(codes, categories=names),
            "source": pd.Categorical(["trial"], categories=SOURCES).repeat(
                len(trials))}))
    for rows, source in others:
        parts.append(rows.assign(**{
            CONFIGURATION: pd.Categorical(rows["model"].astype(str), categories=names),
            "source": pd.Categorical([source], categories=SOURCES).repeat(len(rows))}))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def configuration_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: configuration, source, model, first and last date, dates."""
    grouped = predictions.groupby(CONFIGURATION, sort=True)
    return pd.DataFrame({
        "source": grouped["source"].first(),
        "model": grouped["model"].first(),
        "first_date": grouped["date"].min(),
        "last_date": grouped["date"].max(),
        "n_dates": grouped["date"].nunique(),
    }).rename_axis(CONFIGURATION).reset_index()


def _rebalance_rows(predictions: pd.DataFrame, rebalance_days: int, min_names: int = 0
                    ) -> tuple[pd.DataFrame, dict[str, pd.DatetimeIndex]]:
    """Each configuration's valid rows on its own rebalance dates (``backtest.rebalance_dates``
    of its valid dates), and those dates: the only rows its backtest trades on, about one in
    ``rebalance_days``, taken for all configurations at once instead of inside each backtest.
    A configuration's date with fewer than ``min_names`` valid names is not traded, as in the
    test period's backtest (``test_period.thin_cross_sections``)."""
    prediction = predictions["prediction"].to_numpy(dtype=np.float64)
    rows = predictions.loc[np.isfinite(prediction) & predictions["date"].notna().to_numpy(),
                           ["date", "ticker", "prediction", CONFIGURATION]]
    config_codes, configs = pd.factorize(rows[CONFIGURATION])
    date_codes, dates = pd.factorize(rows["date"], sort=True)
    n_dates = max(len(dates), 1)
    keys = config_codes.astype(np.int64) * n_dates + date_codes
    pairs, names = np.unique(keys, return_counts=True)  # by configuration, then by date
    if (names < min_names).any():
        pairs = pairs[names >= min_names]
        wide_enough = np.isin(keys, pairs)
        rows, keys = rows[wide_enough], keys[wide_enough]
    first_of_config = np.searchsorted(pairs // n_dates, pairs // n_dates, side="left")
    signal = pairs[(np.arange(len(pairs)) - first_of_config) % rebalance_days == 0]
    bounds = np.searchsorted(signal // n_dates, np.arange(len(configs) + 1))
    signal_dates = {configs[c]: pd.DatetimeIndex(dates[signal[bounds[c]:bounds[c + 1]] % n_dates])
                    for c in range(len(configs))}
    return rows[np.isin(keys, signal)], signal_dates


def configuration_returns(
    predictions: pd.DataFrame, returns: pd.DataFrame, config: EvaluationConfig
) -> pd.DataFrame:
    """Daily net long-short returns of every configuration (rows = dates, columns =
    configurations; NaN where a configuration holds no book). ``returns``: long (date, ticker,
    ret_1d and optionally tradable: then `backtest.holding_returns`, cost_rate and limit_lock),
    already cut to the period the books may be held in."""
    series = {}
    wide = returns.pivot(index="date", columns="ticker", values="ret_1d")  # once, not per config
    # the frozen cells are derived once for every configuration
    tradable = (Tradability.from_frame(tradable_pivot(returns), config.max_frozen_days)
                if TRADABLE in returns else None)
    rates = (returns.pivot(index="date", columns="ticker", values=COST_RATE)
             if COST_RATE in returns else None)
    locks = (returns.pivot(index="date", columns="ticker", values=LIMIT_LOCK)
             if LIMIT_LOCK in returns else None)
    names = predictions.groupby(CONFIGURATION, sort=True, observed=True).size().index
    rows, signal_dates = _rebalance_rows(predictions, config.rebalance_days,
                                         max(int(config.min_names), int(config.n_quantiles)))
    parts = dict(iter(rows.groupby(CONFIGURATION, sort=False, observed=True)))
    for name in names:
        result = long_short_backtest(
            parts.get(name, rows.iloc[:0])[["date", "ticker", "prediction"]], wide,
            rebalance_days=config.rebalance_days, n_quantiles=config.n_quantiles,
            cost_bps=config.cost_bps, execution_delay=config.execution_delay,
            periods_per_year=config.periods_per_year, signal_dates=signal_dates.get(name),
            tradable=tradable, max_frozen_days=config.max_frozen_days, cost_rates=rates,
            locks=locks,
        )
        series[name] = result.daily["long_short"]
    if not series:
        return pd.DataFrame(index=pd.DatetimeIndex([], name="date"))
    return pd.DataFrame(series).sort_index().rename_axis("date")


def longest_shared_window(returns: pd.DataFrame) -> int:
    """The most dates any window of a configuration's own dates that another configuration also
    covers holds (0 when no two configurations share a date): what `min_dates` could be."""
    covered = returns.notna().to_numpy()
    longest = 0
    for j in range(covered.shape[1]):
        window = covered[:, j]
        if window.sum() > longest and covered[window].all(axis=0).sum() >= 2:
            longest = int(window.sum())
    return longest


def common_window(returns: pd.DataFrame, min_dates: int) -> pd.DataFrame:
    """The largest set of configurations that share a window of dates, on those dates.

    Candidate windows are the configurations' own date sets; a window's members are the
    configurations with a return on every date of it. The window with the most members wins (the
    longer one on ties); windows shorter than ``min_dates`` are not candidates. Empty when none
    qualifies."""
    covered = returns.notna().to_numpy()
    if covered.size == 0:
        return returns.iloc[:0, :0]
    best: tuple[int, int] | None = None
    best_rows = best_members = None
    seen = set()
    for j in range(covered.shape[1]):
        window = covered[:, j]
        key = np.packbits(window).tobytes()
        if key in seen or window.sum() < min_dates:
            continue
        seen.add(key)
        members = covered[window].all(axis=0)
        score = (int(members.sum()), int(window.sum()))
        if best is None or score > best:
            best, best_rows, best_members = score, window, members
    if best is None:
        return returns.iloc[:0, :0]
    return returns.loc[best_rows, returns.columns[best_members]]
