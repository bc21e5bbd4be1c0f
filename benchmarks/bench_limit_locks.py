"""What keeping the backtests from trading across closes locked at a daily price limit changes.

A synthetic OHLCV market (the project's generator) is turned into a market with daily price
limits of +-10 %: the traded close follows the latent one (the generator's close, plus rare news
jumps of 15-40 %) by at most 10 % a day, so a large move takes several limit days to reach, and
each day the price is held at its limit trades at one price (open = high = low = close) on a
tenth of the volume. The panel goes through the real data_processing pipeline (in memory,
default parameters); two predictions on the eligible rows are backtested with the evaluation
defaults, with and without `evaluation.backtest.limit_locks`:

- the generator's planted signal (`signal_1`);
- the last one-day return (one-day momentum): what a model learns in such a market, where a name
  locked at its limit keeps moving the same way on the next days, and what cannot be bought
  there.

Rewrites only the `limit_locks` section of benchmarks/results.md.
Run: .venv/bin/python benchmarks/bench_limit_locks.py (BENCH_SIZE=small: prints only)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from _common import SMALL, machine_line, ohlcv_market, processed_panel, publish

from bma_quant.core.evaluation.backtest import holding_returns, long_short_backtest
from bma_quant.core.evaluation.limit_locks import LIMIT_LOCK, limit_locks
from bma_quant.core.evaluation.test_period import EvaluationConfig
from tests.support import project_params

SECTION = "limit_locks"
N_TICKERS, N_DAYS = (60, 800) if SMALL else (300, 2000)
SEED = 37
SIGNAL_STRENGTH = 0.005  # as in bench_suspensions: a Sharpe nearer a real signal's
LIMIT = 0.10
JUMPS_PER_NAME_YEAR = 1.0  # news jumps, Poisson
JUMP_SIZE = (0.15, 0.40)  # absolute log size, uniform, either sign
WARM_UP = 300  # dates before the first backtested signal (the universe needs history)


def limit_market(panel: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, int]:
    """The panel as a market with +-LIMIT daily price limits (module docstring). Returns the
    panel and the number of closes held at a limit."""
    wide = {c: panel.pivot(index="date", columns="ticker", values=c)
            for c in ("open", "high", "low", "close", "volume")}
    latent = np.log(wide["close"].to_numpy())
    jumps = rng.random(latent.shape) < JUMPS_PER_NAME_YEAR / 252
    sizes = rng.uniform(*JUMP_SIZE, latent.shape) * rng.choice([-1.0, 1.0], latent.shape)
    latent = latent + np.cumsum(np.where(jumps, sizes, 0.0), axis=0)
    traded = np.empty_like(latent)
    traded[0] = np.exp(latent[0])
    for t in range(1, len(traded)):
        traded[t] = np.clip(np.exp(latent[t]), traded[t - 1] * (1 - LIMIT),
                            traded[t - 1] * (1 + LIMIT))
    held = ~np.isclose(traded, np.exp(latent), rtol=1e-12, atol=0)
    scale = traded / wide["close"].to_numpy()
    previous = np.vstack([traded[:1], traded[:-1]])
    bounds = (previous * (1 - LIMIT), previous * (1 + LIMIT))
    bars = {"close": traded}
    for field in ("open", "high", "low"):
        scaled = np.clip(wide[field].to_numpy() * scale, *bounds)
        bars[field] = np.where(held, traded, scaled)
    bars["high"] = np.maximum.reduce([bars["high"], bars["open"], bars["close"]])
    bars["low"] = np.minimum.reduce([bars["low"], bars["open"], bars["close"]])
    bars["volume"] = np.where(held, 0.1, 1.0) * wide["volume"].to_numpy()
    index = wide["close"].index
    long = pd.concat({f: pd.DataFrame(v, index, wide["close"].columns).stack()
                      for f, v in bars.items()}, axis=1).rename_axis(["date", "ticker"])
    out = long.reset_index().merge(panel[["date", "ticker", "sector"]], on=["date", "ticker"])
    return out, int(held.sum())


def eligible_predictions(primary: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """`values` (date, ticker, prediction) on the eligible rows, from date WARM_UP on."""
    rows = primary.loc[primary["eligible"], ["date", "ticker"]]
    preds = rows.merge(values, on=["date", "ticker"], how="left").dropna()
    first = np.sort(primary["date"].unique())[WARM_UP]
    return preds.loc[preds["date"] >= first]


def lock_column(primary: pd.DataFrame, min_move: float) -> pd.DataFrame:
    """(date, ticker, limit_lock) as the evaluation node derives it."""
    wide = {c: primary.pivot(index="date", columns="ticker", values=c)
            for c in ("open", "high", "low", "close")}
    traded = primary.pivot(index="date", columns="ticker", values="tradable").astype(float) > 0
    locks = limit_locks(wide["close"].where(traded), wide["high"], wide["low"], wide["open"],
                        min_move=min_move)
    long = locks.stack(future_stack=True).rename(LIMIT_LOCK).reset_index()
    return long.set_axis(["date", "ticker", LIMIT_LOCK], axis=1)


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    market, base, folder = ohlcv_market(N_TICKERS, N_DAYS, SEED, SIGNAL_STRENGTH)
    limited, n_held = limit_market(base, np.random.default_rng(SEED))
    primary = processed_panel(limited, folder)
    params = project_params()
    config = EvaluationConfig.from_params(params["evaluation"], params["temporal"])
    rule = config.limit_locks
    locks = lock_column(primary, rule.min_move)
    held = holding_returns(primary, config.max_frozen_days)
    with_locks = held.merge(locks, on=["date", "ticker"], how="left")
    kwargs = dict(rebalance_days=config.rebalance_days, n_quantiles=config.n_quantiles,
                  cost_bps=config.cost_bps, execution_delay=config.execution_delay,
                  periods_per_year=config.periods_per_year,
                  max_frozen_days=config.max_frozen_days)
    predictions = {
        "planted signal (`signal_1`)": market.panel[["date", "ticker", "signal_1"]].rename(
            columns={"signal_1": "prediction"}),
        "last one-day return": primary[["date", "ticker", "ret_1d"]].rename(
            columns={"ret_1d": "prediction"}),
    }
    lines = [
        f"## limit_locks: no trade across a close locked at a daily price limit "
        f"({N_TICKERS} names x {N_DAYS} dates)",
        "",
        f"{machine_line('at the end')}. `benchmarks/bench_limit_locks.py`: generator seed {SEED}, "
        f"signal_strength {SIGNAL_STRENGTH}, daily limits +-{LIMIT:.0%}, news jumps of "
        f"{JUMP_SIZE[0]:.0%}-{JUMP_SIZE[1]:.0%} ({JUMPS_PER_NAME_YEAR:g} a name a year); "
        f"{n_held:,} closes held at a limit; data_processing with the default parameters; the "
        f"rule (`min_move` {rule.min_move:g}) marks {int((locks[LIMIT_LOCK] > 0).sum()):,} closes "
        f"locked up and {int((locks[LIMIT_LOCK] < 0).sum()):,} down. Backtests of two predictions "
        f"on the eligible rows, from date {WARM_UP} on, evaluation defaults (rebalance every "
        f"{config.rebalance_days} dates, quintiles, {config.cost_bps:g} bps).",
        "",
        "| prediction | backtest | Sharpe | annual return | turnover | max drawdown | trades a lock stopped (mean gross weight per rebalance) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, values in predictions.items():
        preds = eligible_predictions(primary, values)
        for label, returns in (("trades at every close (before)", held),
                               ("no trade across a lock (default)", with_locks)):
            result = long_short_backtest(preds, returns, **kwargs)
            s = result.summary
            first_days = result.daily["turnover"] > 0
            kept = result.daily.loc[first_days, "locked_weight"].mean()
            lines.append(f"| {name} | {label} | {s['sharpe']:.3f} | {s['annual_return']:.4f} | "
                         f"{s['turnover']:.4f} | {s['max_drawdown']:.4f} | {kept:.4f} |")
    publish(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
