"""Test-period evaluation: every model x scope (all dates, each regime) in one comparison table.

Built on ``core.evaluation.metrics`` (IC family) and ``core.evaluation.backtest`` (quantile long-short book). The test
period (date_split ``test_start..test_end``) is never used in fitting; only its predictions are
scored here.

Per-regime scopes use the ``regimes`` label at each prediction date:
- IC metrics: the daily IC series restricted to dates labelled with the regime;
- portfolio metrics: the single full-period backtest, each held day attributed to the regime of
  the signal date of the book held that day (a book formed in a bull market counts as bull for
  its whole holding period), so every holding period belongs to exactly one regime. Sharpe, IR,
  annual return and volatility use those days' returns; max drawdown is that of the concatenated
  days; turnover is the mean over the rebalances whose signal date is in the regime.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bma_quant.core.data.universe import TRADABLE
from bma_quant.core.evaluation.backtest import (
    DAILY_COLUMNS,
    BacktestResult,
    annualised_sharpe,
    compounded_annual_return,
    holding_returns,
    long_short_backtest,
    max_drawdown,
)
from bma_quant.core.evaluation.costs import COST_RATE, SpreadCost
from bma_quant.core.evaluation.limit_locks import LIMIT_LOCK, LimitLocks
from bma_quant.core.evaluation.metrics import (
    DATE,
    TICKER,
    daily_ic,
    forward_return_grids,
    ic_decay,
    ic_summary,
    quantile_mean_returns,
)

MODEL = "model"
SCOPE = "scope"
ALL_SCOPE = "all"
REGIME_ORDER = ("bull", "neutral", "bear")

IC_COLUMNS = ("ic", "rank_ic", "icir", "rank_icir", "ic_tstat", "rank_ic_tstat", "hit_rate",
              "rank_hit_rate", "n_dates")
PORTFOLIO_COLUMNS = ("sharpe", "ir", "annual_return", "cagr", "annual_volatility",
                     "max_drawdown", "turnover", "n_rebalances", "n_days")
TABLE_COLUMNS = (MODEL, SCOPE, *IC_COLUMNS, *PORTFOLIO_COLUMNS)
# The metrics logged to MLflow as `evaluation.<model>.test_<metric>` (the list).
LOGGED_METRICS = ("ic", "rank_ic", "icir", "rank_icir", "ic_tstat", "rank_ic_tstat", "hit_rate",
                  "rank_hit_rate", "sharpe", "ir", "annual_return", "cagr", "max_drawdown", "turnover")
# Upstream model names in display order; any other name found in the predictions follows them.
MODEL_ORDER = ("elastic_net", "xgboost", "lightgbm", "alpha_composite", "regime_elastic_net",
               "regime_xgboost", "regime_lightgbm", "stacking", "regime_stacking", "bma",
               "equal_weight", "ic_weight", "final")

logger = logging.getLogger(__name__)


# dates a year of daily exchange bars (about 252); a file outside this range is weekly,
# monthly, a seven-day calendar or has weekends in it
DAILY_EXCHANGE_DATES_PER_YEAR = (200.0, 300.0)
EXCHANGE_PERIODS_PER_YEAR = 252


def annualisation_periods(configured: float | None, dates_per_year: float | None) -> int:
    """Rows a year that annualised figures (Sharpe, returns, volatility) assume:
    ``evaluation.backtest.periods_per_year`` when set; null = 252 on daily exchange bars, the
    file's own dates a year otherwise (365 on a seven-day calendar, 52 on weekly bars)."""
    if configured is not None:
        return int(configured)
    if dates_per_year is None or daily_exchange_bars(dates_per_year):
        return EXCHANGE_PERIODS_PER_YEAR
    return max(1, int(round(dates_per_year)))


def daily_exchange_bars(dates_per_year: float) -> bool:
    """A file's rate of dates is that of daily exchange bars (about 252 a year)."""
    low, high = DAILY_EXCHANGE_DATES_PER_YEAR
    return low <= dates_per_year <= high


@dataclass(frozen=True)
class EvaluationConfig:
    """Metric and backtest settings (DESIGN section 4 defaults, h = 10)."""

    min_names: int = 5
    nw_lag: int = 10
    rebalance_days: int = 10
    n_quantiles: int = 5
    cost_bps: float = 10.0
    execution_delay: int = 1
    periods_per_year: int = 252
    decay_horizons: tuple[int, ...] = tuple(range(1, 11))
    max_frozen_days: int | None = 21  # a position without a trade is frozen this long at most
    # per-name costs from estimated bid-ask spreads (core.evaluation.costs); off: cost_bps only
    spread_cost: SpreadCost = field(default_factory=SpreadCost)
    # no trade across a close locked at a daily price limit (core.evaluation.limit_locks)
    limit_locks: LimitLocks = field(default_factory=LimitLocks)

    @classmethod
    def from_params(cls, params: dict, temporal: dict | None = None,
                    dates_per_year: float | None = None) -> EvaluationConfig:
        """From ``params:evaluation`` (keys ``metrics`` and ``backtest``) and ``params:temporal``.

        ``nw_lag``, ``rebalance_days`` and ``decay_horizons`` default to the label horizon h, the
        execution delay to ``temporal.execution_delay_days``, ``periods_per_year`` to
        ``annualisation_periods`` of the file's ``dates_per_year`` (date_split)."""
        temporal = temporal or {}
        horizon = int(temporal.get("prediction_horizon_days", 10))
        metrics = params.get("metrics", {}) or {}
        book = params.get("backtest", {}) or {}
        max_decay = metrics.get("decay_max_horizon") or horizon
        return cls(
            min_names=int(metrics.get("min_names", 5)),
            nw_lag=int(horizon if metrics.get("nw_lag") is None else metrics["nw_lag"]),
            rebalance_days=int(book.get("rebalance_days") or horizon),
            n_quantiles=int(book.get("n_quantiles", 5)),
            cost_bps=float(book.get("cost_bps", 10.0)),
            execution_delay=int(temporal.get("execution_delay_days", 1)),
            periods_per_year=annualisation_periods(book.get("periods_per_year"),
                                                   dates_per_year),
            decay_horizons=tuple(range(1, int(max_decay) + 1)),
            max_frozen_days=(None if book.get("max_frozen_days", 21) is None
                             else int(book.get("max_frozen_days", 21))),
            spread_cost=SpreadCost.from_params(book.get("spread_cost")),
            limit_locks=LimitLocks.from_params(book.get("limit_locks")),
        )


def resolved_settings(params: dict, temporal: dict | None = None,
                      dates_per_year: float | None = None) -> dict:
    """``params:evaluation``'s ``backtest`` and ``metrics`` with the values a null stands for
    written out (``rebalance_days``, ``nw_lag``, ``decay_max_horizon``: the horizon h;
    ``periods_per_year``: see ``annualisation_periods``), as ``EvaluationConfig.from_params``
    reads them: what the registry records and fingerprints, so a null and the value it means
    are the same settings."""
    config = EvaluationConfig.from_params(params, temporal, dates_per_year)
    backtest = {**(params.get("backtest") or {}), "rebalance_days": config.rebalance_days,
                "periods_per_year": config.periods_per_year}
    metrics = {**(params.get("metrics") or {}), "nw_lag": config.nw_lag,
               "decay_max_horizon": max(config.decay_horizons)}
    return {"backtest": backtest, "metrics": metrics}


@dataclass
class EvaluationResult:
    """The comparison table plus the series the plots need (all long frames)."""

    table: pd.DataFrame  # TABLE_COLUMNS, one row per (model, scope)
    daily_ic: pd.DataFrame  # date, model, ic, rank_ic
    # date, model, regime, long_short, ..., excess, turnover, equity, drawdown
    daily_returns: pd.DataFrame
    quantile_returns: pd.DataFrame  # model, quantile, mean_label
    # model, horizon, ic, rank_ic, n_dates
    ic_decay: pd.DataFrame = field(default_factory=pd.DataFrame)

    def metrics_of(self, model: str, scope: str = ALL_SCOPE) -> dict[str, float]:
        """One row of the table as {metric: value}; empty when the row is absent."""
        rows = self.table[(self.table[MODEL] == model) & (self.table[SCOPE] == scope)]
        if rows.empty:
            return {}
        row = rows.iloc[0]
        return {col: float(row[col]) for col in (*IC_COLUMNS, *PORTFOLIO_COLUMNS)}


def ordered_models(names: Iterable[str], order: Sequence[str] = MODEL_ORDER) -> list[str]:
    """Known upstream names in pipeline order, then the others alphabetically. In MODEL_ORDER
    a learner the order does not know (a `register_learner` of the user's) sits with the base
    learners, its `regime_` model with the regime ones, both before the ensemble methods and
    `final` (it came after `final`)."""
    names = set(names)
    known = [n for n in order if n in names]
    others = sorted(names - set(known))
    if tuple(order) != MODEL_ORDER:
        return known + others
    ensembles = MODEL_ORDER[MODEL_ORDER.index("stacking"):]
    singles = [n for n in known if n not in ensembles]
    return ([n for n in singles if not n.startswith("regime_")]
            + [n for n in others if not n.startswith("regime_")]
            + [n for n in singles if n.startswith("regime_")]
            + [n for n in others if n.startswith("regime_")]
            + [n for n in known if n in ensembles])


def restrict_to_period(frame: pd.DataFrame, start, end) -> pd.DataFrame:
    """Rows with start <= date <= end (None = open)."""
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= frame[DATE] >= pd.Timestamp(start)
    if end is not None:
        keep &= frame[DATE] <= pd.Timestamp(end)
    return frame.loc[keep]


def regime_by_date(regimes: pd.DataFrame | None) -> pd.Series:
    """``regimes`` (date, regime, ...) -> Series regime indexed by date (empty when absent)."""
    if regimes is None or regimes.empty or "regime" not in regimes:
        return pd.Series(dtype=object, index=pd.DatetimeIndex([], name=DATE), name="regime")
    series = regimes.drop_duplicates(DATE, keep="last").set_index(DATE)["regime"].astype(object)
    return series.sort_index()


def _ic_rows(ic: pd.Series, rank_ic: pd.Series, nw_lag: int,
             gaps_in_time: bool = False) -> dict[str, float]:
    pearson = ic_summary(ic, nw_lag, gaps_in_time)
    spearman = ic_summary(rank_ic, nw_lag, gaps_in_time)
    return {
        "ic": pearson["mean"],
        "rank_ic": spearman["mean"],
        "icir": pearson["icir"],
        "rank_icir": spearman["icir"],
        "ic_tstat": pearson["tstat"],
        "rank_ic_tstat": spearman["tstat"],
        "hit_rate": pearson["hit_rate"],
        "rank_hit_rate": spearman["hit_rate"],
        "n_dates": spearman["n_dates"],
    }


def book_signal_dates(result: BacktestResult) -> pd.Series:
    """For each held day of the backtest, the signal date of the book held that day.

    A book traded at the close of ``trade_date`` is held from the next day until the next trade,
    so day s holds the book with the last trade_date strictly before s."""
    if result.daily.empty or result.weights.empty:
        return pd.Series(pd.NaT, index=result.daily.index, name="signal_date")
    books = result.weights[[DATE, "trade_date"]].drop_duplicates().sort_values("trade_date")
    trade_dates = pd.DatetimeIndex(books["trade_date"])
    position = trade_dates.searchsorted(result.daily.index, side="left") - 1
    signal = np.where(position >= 0, books[DATE].to_numpy()[np.maximum(position, 0)],
                      np.datetime64("NaT"))
    return pd.Series(pd.DatetimeIndex(signal), index=result.daily.index, name="signal_date")


def portfolio_summary(
    daily: pd.DataFrame, first_day_of_book: np.ndarray, periods_per_year: int,
    initial_day: pd.Timestamp | None = None,
) -> dict[str, float]:
    """Backtest summary metrics of a subset of held days (``daily`` as in BacktestResult)."""
    net = daily["long_short"].to_numpy(dtype=np.float64)
    excess = daily["excess"].to_numpy(dtype=np.float64)
    turnover = daily["turnover"].to_numpy(dtype=np.float64)[first_day_of_book]
    if daily.index.size and daily.index[0] == initial_day:
        turnover = turnover[1:]  # the build from an empty book is reported apart (as in backtest)
    n = net.size
    return {
        "sharpe": annualised_sharpe(net, periods_per_year),
        "ir": annualised_sharpe(excess, periods_per_year),
        "annual_return": float(net.mean() * periods_per_year) if n else math.nan,
        "cagr": compounded_annual_return(net, periods_per_year),
        "annual_volatility": (
            float(net.std(ddof=1) * math.sqrt(periods_per_year)) if n > 1 else math.nan
        ),
        "max_drawdown": max_drawdown(net),
        "turnover": float(turnover.mean()) if turnover.size else math.nan,
        "n_rebalances": int(first_day_of_book.sum()),
        "n_days": int(n),
    }


def evaluate_model(
    frame: pd.DataFrame,
    returns: pd.DataFrame,
    regimes: pd.Series,
    config: EvaluationConfig,
) -> tuple[list[dict], pd.DataFrame, pd.DataFrame, pd.Series]:
    """Rows (scope all + one per regime present), daily IC, daily backtest, quantile returns.

    ``frame``: one model's test rows (date, ticker, prediction, label); ``returns``: long (date,
    ticker, ret_1d) from the first test date on; ``regimes``: regime by date (may be empty).
    """
    ic = daily_ic(frame, method="pearson", min_names=config.min_names)
    rank_ic = daily_ic(frame, method="spearman", min_names=config.min_names)
    # a date too thin to score an IC is not traded either: a "quintile" book of 4 names gave a
    # Sharpe beside an IC that was undefined
    traded = frame.loc[~frame[DATE].isin(thin_cross_sections(frame, config))]
    result = long_short_backtest(
        traded[[DATE, TICKER, "prediction"]],
        returns,
        rebalance_days=config.rebalance_days,
        n_quantiles=config.n_quantiles,
        cost_bps=config.cost_bps,
        execution_delay=config.execution_delay,
        periods_per_year=config.periods_per_year,
        max_frozen_days=config.max_frozen_days,
    )
    rows = [{SCOPE: ALL_SCOPE, **_ic_rows(ic, rank_ic, config.nw_lag), **result.summary}]

    daily = result.daily.copy()
    signal = book_signal_dates(result)
    first_day = (signal != signal.shift(1)).to_numpy() & signal.notna().to_numpy()
    initial_day = daily.index[first_day][0] if first_day.any() else None
    daily["regime"] = signal.map(regimes).to_numpy() if len(regimes) else None
    present = set(regimes.reindex(frame[DATE].unique()).dropna()) if len(regimes) else set()
    for regime in ordered_models(present, REGIME_ORDER):
        dates = regimes.index[regimes == regime]
        held = (daily["regime"] == regime).to_numpy()
        rows.append(
            {
                SCOPE: regime,
                # the other regimes' dates stay as gaps: the t-stat's lags count dates
                **_ic_rows(ic.where(ic.index.isin(dates)),
                           rank_ic.where(rank_ic.index.isin(dates)), config.nw_lag,
                           gaps_in_time=True),
                **portfolio_summary(daily.loc[held], first_day[held], config.periods_per_year,
                                    initial_day=initial_day),
            }
        )
    daily_ic_frame = pd.DataFrame({"ic": ic, "rank_ic": rank_ic}).rename_axis(DATE).reset_index()
    quantiles = quantile_mean_returns(traded, n_quantiles=config.n_quantiles)
    return rows, daily_ic_frame, daily.rename_axis(DATE).reset_index(), quantiles


def thin_cross_sections(frame: pd.DataFrame, config: EvaluationConfig) -> pd.Index:
    """Dates with fewer predicted names than an IC (`min_names`) or the quantile book
    (`n_quantiles`) needs."""
    names = frame.loc[frame["prediction"].notna(), DATE].value_counts(sort=False)
    return names.index[names < max(int(config.min_names), int(config.n_quantiles))]


def _warn_thin_test_dates(thin: dict[str, int], n_dates: dict[str, int],
                          config: EvaluationConfig) -> None:
    """One warning naming the model with the most thin test dates (each model's own are left
    out of its metrics)."""
    if not thin or max(thin.values()) == 0:
        return
    model = max(thin, key=lambda m: (thin[m], m == "final"))
    others = sorted(m for m, count in thin.items() if count and m != model)
    logger.warning(
        "%d of %d test date(s) have fewer than %d predicted names (model %s%s): they are "
        "neither scored (IC needs evaluation.metrics.min_names) nor traded (the backtest needs "
        "evaluation.backtest.n_quantiles); %s", thin[model], n_dates[model],
        max(int(config.min_names), int(config.n_quantiles)), model,
        f"; also {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}" if others else "",
        "no test metric is defined: the test period needs a wider cross-section"
        if thin[model] == n_dates[model] else "the metrics cover the other dates")


def _warn_flat_books(flat: dict[str, tuple[int, int]], config: EvaluationConfig) -> None:
    """One warning naming the models whose long-short book held nothing on some rebalances
    (tied predictions left the top or the bottom quantile empty): their Sharpe counts those
    periods as flat, not as the ranking's."""
    hit = {model: counts for model, counts in flat.items() if counts[0]}
    if not hit:
        return
    logger.warning(
        "the long-short book of %s held nothing on some test rebalances: tied predictions left "
        "the top or bottom of evaluation.backtest.n_quantiles (%d) empty, and one leg alone "
        "would be a bet on the market (a model with few distinct prediction values, such as "
        "shallow trees on a small universe); its long-short book is flat until the next "
        "rebalance (the long-only book holds its leg)",
        ", ".join(f"{model} ({n} of {total})" for model, (n, total) in list(hit.items())[:6])
        + (", ..." if len(hit) > 6 else ""), int(config.n_quantiles))


def evaluate_predictions(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    panel: pd.DataFrame,
    regimes: pd.DataFrame | None,
    config: EvaluationConfig,
    *,
    test_start=None,
    test_end=None,
    with_decay: bool = True,
) -> EvaluationResult:
    """Score every model of ``predictions`` (date, ticker, model, prediction) on the test period.

    ``labels``: (date, ticker, label); ``panel``: (date, ticker, close, ret_1d and optionally
    tradable: the backtest then holds ``holding_returns`` and freezes positions) for the backtest
    and IC decay; ``regimes``: (date, regime) or None for the overall scope only. Rows outside
    ``test_start..test_end`` are ignored, so out-of-fold rows can never be scored by mistake.
    """
    preds = restrict_to_period(predictions, test_start, test_end)
    preds = preds.loc[np.isfinite(preds["prediction"].to_numpy(dtype=np.float64))]
    merged = preds[[DATE, TICKER, MODEL, "prediction"]].merge(
        labels[[DATE, TICKER, "label"]], on=[DATE, TICKER], how="left"
    )
    # what a holder earns is measured on the whole panel: a gap may start before the test period
    held = (holding_returns(panel, config.max_frozen_days)
            if TRADABLE in panel and "close" in panel else panel)
    returns = restrict_to_period(held[[c for c in (DATE, TICKER, "ret_1d", TRADABLE, COST_RATE,
                                                   LIMIT_LOCK) if c in held]], test_start, None)
    test_panel = restrict_to_period(panel, test_start, None)
    regime_series = regime_by_date(regimes)

    rows, ic_frames, daily_frames, quantile_frames, decay_frames = [], [], [], [], []
    forward = (forward_return_grids(test_panel[[DATE, TICKER, "close"]],
                                    list(config.decay_horizons), config.execution_delay)
               if with_decay and "close" in test_panel else None)
    thin, n_dates, flat = {}, {}, {}
    for model in ordered_models(merged[MODEL].unique()):
        frame = merged.loc[merged[MODEL] == model].drop(columns=MODEL)
        thin[model] = len(thin_cross_sections(frame, config))
        n_dates[model] = frame[DATE].nunique()
        model_rows, ic_frame, daily, quantiles = evaluate_model(
            frame, returns, regime_series, config
        )
        rows += [{MODEL: model, **row} for row in model_rows]
        flat[model] = (int(model_rows[0].get("flat_rebalances", 0)),
                       int(model_rows[0]["n_rebalances"]))
        ic_frames.append(ic_frame.assign(model=model))
        daily_frames.append(daily.assign(model=model))
        quantile_frames.append(
            quantiles.rename_axis("quantile").reset_index().assign(model=model)
        )
        if forward is not None:
            decay = ic_decay(frame, None, list(config.decay_horizons), config.execution_delay,
                             config.min_names, forward=forward)
            decay_frames.append(decay.reset_index().assign(model=model))

    _warn_thin_test_dates(thin, n_dates, config)
    _warn_flat_books(flat, config)
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return EvaluationResult(
        table=table,
        daily_ic=_concat(ic_frames, [DATE, MODEL, "ic", "rank_ic"]),
        daily_returns=_concat(
            daily_frames,
            [DATE, MODEL, "regime", *DAILY_COLUMNS],
        ),
        quantile_returns=_concat(quantile_frames, [MODEL, "quantile", "mean_label"]),
        ic_decay=_concat(decay_frames, [MODEL, "horizon", "ic", "rank_ic", "n_dates"]),
    )


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def metric_values(
    table: pd.DataFrame,
    metrics: Sequence[str] = LOGGED_METRICS,
    regime_metrics: Sequence[str] = (),
) -> dict[str, float]:
    """``{<model>.test_<metric>: value}`` for scope all, plus
    ``<model>.test_<regime>_<metric>`` for the regime scopes and ``regime_metrics``."""
    out: dict[str, float] = {}
    for row in table.to_dict("records"):
        scope = row[SCOPE]
        if scope == ALL_SCOPE:
            out.update({f"{row[MODEL]}.test_{m}": row[m] for m in metrics})
        else:
            out.update({f"{row[MODEL]}.test_{scope}_{m}": row[m] for m in regime_metrics})
    return out
