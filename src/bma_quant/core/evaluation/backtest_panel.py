"""The panel columns every test-period and development backtest reads (core.evaluation.backtest):
closes and daily returns, whether each close is a trade, each close locked at a daily price limit
(core.evaluation.limit_locks) and each name's one-way cost rate from its estimated bid-ask spread
(core.evaluation.costs), as the evaluation parameters ask."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bma_quant.core.data import price_grid, universe
from bma_quant.core.evaluation import backtest, costs, limit_locks
from bma_quant.core.evaluation.test_period import EvaluationConfig

logger = logging.getLogger(__name__)


def backtest_columns(primary_panel: pd.DataFrame) -> list[str]:
    """What the test-period evaluation reads of the panel: the closes (IC decay, and what a holder
    earns) and, where data_processing wrote it, whether each close is a trade."""
    tradable = [universe.TRADABLE] if universe.TRADABLE in primary_panel else []
    return ["date", "ticker", "close", "ret_1d", *tradable]


def backtest_panel(primary_panel: pd.DataFrame, config: EvaluationConfig,
                    report: bool = False) -> pd.DataFrame:
    """The panel's backtest columns and, with `evaluation.backtest.spread_cost`, each row's
    one-way cost rate from the name's estimated bid-ask spread (core.evaluation.costs); with
    `evaluation.backtest.limit_locks` and high and low prices, each close locked at a daily
    price limit (core.evaluation.limit_locks), where there is one (`report`: say how many)."""
    panel = with_limit_locks(primary_panel[backtest_columns(primary_panel)], primary_panel,
                              config.limit_locks, report)
    spread = config.spread_cost
    if not spread.enabled:
        return panel
    missing = [c for c in ("high", "low") if c not in primary_panel]
    if missing:
        raise ValueError(f"evaluation.backtest.spread_cost.enabled needs high and low prices; "
                         f"the panel has no {' or '.join(missing)} column (set it to false)")
    wide = traded_ohlc(primary_panel, ("close", "high", "low"))
    estimate = costs.close_high_low_spread(wide["close"], wide["high"], wide["low"],
                                           spread.window, spread.min_dates)
    if not estimate.notna().to_numpy().any():
        logger.warning("evaluation.backtest.spread_cost: no name has a spread estimate (high and "
                       "low missing, or fewer than min_dates traded dates in any window): every "
                       "trade pays the flat cost_bps only")
    rates = costs.one_way_cost_rates(estimate, config.cost_bps, spread.cap_bps)
    long = rates.stack(future_stack=True).rename(costs.COST_RATE).reset_index()
    long.columns = ["date", "ticker", costs.COST_RATE]
    return panel.merge(long, on=["date", "ticker"], how="left")


def traded_ohlc(primary_panel: pd.DataFrame, fields) -> dict[str, pd.DataFrame]:
    """(date x ticker) prices of `fields`, the close NaN where it is no trade."""
    wide = {c: primary_panel.pivot(index="date", columns="ticker", values=c) for c in fields}
    if universe.TRADABLE in primary_panel:
        traded = backtest.tradable_pivot(primary_panel).reindex_like(wide["close"])
        wide["close"] = wide["close"].where(traded.fillna(False).astype(bool))
    return wide


def with_limit_locks(panel: pd.DataFrame, primary_panel: pd.DataFrame,
                      rule: limit_locks.LimitLocks, report: bool = False) -> pd.DataFrame:
    """`panel` with a `limit_lock` column when the rule is on, the panel has high and low, and
    some close is locked (none: the panel as it was, so a market without limits costs nothing)."""
    if not rule.enabled:
        return panel
    if not {"high", "low"} <= set(primary_panel.columns):
        if report and "ret_1d" in primary_panel:
            _hint_capped_moves(primary_panel["ret_1d"].to_numpy(np.float64, na_value=np.nan),
                               rule)
        return panel
    if not rule.close_at_extreme and not limit_locks.may_have_one_price_bars(
            *(primary_panel[c].to_numpy(dtype=np.float64, na_value=np.nan)
              for c in ("high", "low", "close"))):
        return panel
    fields = ("close", "high", "low", *(["open"] if "open" in primary_panel else []))
    wide = traded_ohlc(primary_panel, fields)
    listing = (primary_panel.pivot(index="date", columns="ticker", values=universe.LISTED_FROM)
               if universe.LISTED_FROM in primary_panel else None)
    # each name's grid at each date, from its trailing traded closes (a split-rescaled past
    # is on its own grid, or on none: no allowance)
    step = (price_grid.price_steps(wide["close"].to_numpy(dtype=np.float64, na_value=np.nan),
                                   rule.grid_window, rule.grid_min_closes, rule.grid_on_share)
            if rule.price_step is None else rule.price_step)
    options = dict(min_move=rule.min_move, listing=listing, step=step)
    locks = limit_locks.limit_locks(wide["close"], wide["high"], wide["low"], wide.get("open"),
                                    close_at_extreme=rule.close_at_extreme, **options)
    values = locks.to_numpy()
    if not values.any():
        return panel
    if report:
        sealed = 0
        if not rule.close_at_extreme:  # what the wider rule would add: a hint, not a default
            wider = limit_locks.limit_locks(wide["close"], wide["high"], wide["low"],
                                            wide.get("open"), close_at_extreme=True, **options)
            sealed = int(((wider.to_numpy() != 0) & (values == 0)).sum())
        _report_limit_locks(values, step, rule, sealed)
    long = locks.stack(future_stack=True).rename(limit_locks.LIMIT_LOCK).reset_index()
    long.columns = ["date", "ticker", limit_locks.LIMIT_LOCK]
    return panel.merge(long, on=["date", "ticker"], how="left")


def _hint_capped_moves(returns: np.ndarray, rule: limit_locks.LimitLocks) -> None:
    """A close-only panel whose daily moves pile up at a level and stop (a daily price limit):
    its locked closes cannot be told, so every backtest may buy at a limit-up close."""
    capped = limit_locks.capped_moves(returns, rule.min_move)
    if capped is not None:
        level, count = capped
        logger.warning(
            "%d daily moves of the panel pile up just %s %+.1f%% and few pass it: a market "
            "with daily price limits? Without high and low prices no close can be taken as "
            "locked at its limit (evaluation.backtest.limit_locks), so every backtest may buy at "
            "a limit-up close no one could buy at; give the file high and low (and open)", count,
            "below" if level > 0 else "above", 100 * level)


def _report_limit_locks(values: np.ndarray, step, rule: limit_locks.LimitLocks,
                        sealed: int) -> None:
    """The run's log line on the locks found, and a hint when closes at the day's high or low
    after such moves were left out (`close_at_extreme` off)."""
    steps = np.unique(np.atleast_1d(step))
    logger.info("limit locks: %d closes of the panel (development and test dates) %s %.1f%% or "
                "more (less half the name's price step: %s) above the previous traded close, %d "
                "as far below (evaluation.backtest.limit_locks): every backtest makes no buy at "
                "the first and no sale at the second", int((values > 0).sum()),
                "at the day's high" if rule.close_at_extreme else "traded at one price",
                100 * rule.min_move, ", ".join(f"{x:g}" for x in steps[:4])
                + (" ..." if len(steps) > 4 else ""), int((values < 0).sum()))
    if sealed:
        logger.info("limit locks: %d more closes sat at the day's high (low) at least min_move "
                    "above (below) the previous traded close without trading at one price all "
                    "day. Where min_move is every name's daily limit they are sealed at it: "
                    "evaluation.backtest.limit_locks.close_at_extreme: true takes them as locked. "
                    "Not where boards have larger limits (a close at the high short of the "
                    "name's limit can be traded) or where there are none", sealed)
