"""What freezing positions at closes that are not trades changes in a backtest.

A synthetic OHLCV market (the project's generator) gets suspensions the way vendors export them:
each name has a few of 3-40 dates, during which its file shows either the last close with volume
0 (a copied close) or no rows; the latent price moves on, so the first close back jumps. The
panel goes through the real data_processing pipeline (in memory, default parameters), and the
generator's planted signal (`signal_1`, what a model would learn to use), on the eligible rows,
is backtested with the project's quantile long-short backtest (evaluation defaults) in four
ways:

- no suspensions: the same market without them (what the signal earns when everything trades);
- sold at the copied close: `ret_1d` and no `tradable` (the backtest before positions were frozen:
  a held name that is suspended on a rebalance date leaves the book at a price nobody could
  trade at, and the jump at reopening is missed);
- frozen (default): `backtest.holding_returns` and `tradable`, `max_frozen_days` 21;
- frozen, no bound: `max_frozen_days` null.

Rewrites only the `suspensions` section of benchmarks/results.md.
Run: .venv/bin/python benchmarks/bench_suspensions.py (BENCH_SIZE=small: prints only)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from _common import SMALL, machine_line, ohlcv_market, processed_panel, publish

from bma_quant.core.evaluation.backtest import holding_returns, long_short_backtest
from bma_quant.core.evaluation.test_period import EvaluationConfig
from tests.support import project_params

SECTION = "suspensions"
N_TICKERS, N_DAYS = (60, 800) if SMALL else (300, 2000)
SEED = 31
SIGNAL_STRENGTH = 0.005  # a quarter of the generator's default: a Sharpe nearer a real signal's
SUSPENSIONS_PER_NAME = 1.5  # Poisson mean over the sample
LENGTH = (3, 41)  # dates, uniform
WARM_UP = 300  # dates before the first backtested signal (the universe needs history)


def suspend(panel: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, int, int]:
    """The panel with suspensions: per name a Poisson number of windows; in each, the rows either
    repeat the last close with volume 0 (a copied close) or are missing. Returns (panel, windows,
    suspended dates)."""
    dates = np.sort(panel["date"].unique())
    out = panel.sort_values(["ticker", "date"]).reset_index(drop=True)
    drop = np.zeros(len(out), dtype=bool)
    windows = days = 0
    for rows in out.groupby("ticker", sort=False).groups.values():
        rows = np.asarray(rows)
        for _ in range(rng.poisson(SUSPENSIONS_PER_NAME)):
            length = int(rng.integers(*LENGTH))
            start = int(rng.integers(WARM_UP // 2, len(dates) - length - 1))
            window = rows[start:start + length]
            if rng.random() < 0.5:
                last = out.loc[rows[start - 1], "close"]
                out.loc[window, ["open", "high", "low", "close"]] = last
                out.loc[window, "volume"] = 0.0
            else:
                drop[window] = True
            windows += 1
            days += length
    out = out[~drop].sort_values(["date", "ticker"]).reset_index(drop=True)
    return out, windows, days


def signal_predictions(primary: pd.DataFrame, signal: pd.DataFrame) -> pd.DataFrame:
    """The planted signal on the eligible rows, from date WARM_UP on."""
    rows = primary.loc[primary["eligible"], ["date", "ticker"]]
    preds = rows.merge(signal, on=["date", "ticker"], how="left")
    first = np.sort(primary["date"].unique())[WARM_UP]
    return preds.rename(columns={"signal_1": "prediction"}).loc[lambda f: f["date"] >= first]


def held_names_untradable(result, tradable: pd.DataFrame) -> tuple[int, int]:
    """(held positions at a later trade, of which untradable at its close)."""
    books = result.weights
    trades = books.drop_duplicates("date")[["date", "trade_date"]].to_numpy()
    held = untradable = 0
    for (previous, _), (_, trade) in zip(trades[:-1], trades[1:], strict=True):
        names = books.loc[(books["date"] == previous) & (books["long_short"] != 0), "ticker"]
        at = tradable.reindex(index=[trade], columns=names).fillna(False).to_numpy(dtype=bool)
        held += len(names)
        untradable += int((~at).sum())
    return held, untradable


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    market, base, folder = ohlcv_market(N_TICKERS, N_DAYS, SEED, SIGNAL_STRENGTH)
    signal = market.panel[["date", "ticker", "signal_1"]]
    suspended, windows, days = suspend(base, np.random.default_rng(SEED))
    config = EvaluationConfig.from_params(project_params()["evaluation"],
                                          project_params()["temporal"])
    clean = processed_panel(base, folder)
    primary = processed_panel(suspended, folder)
    kwargs = dict(rebalance_days=config.rebalance_days, n_quantiles=config.n_quantiles,
                  cost_bps=config.cost_bps, execution_delay=config.execution_delay,
                  periods_per_year=config.periods_per_year)
    cases = {
        "no suspensions": long_short_backtest(
            signal_predictions(clean, signal), clean[["date", "ticker", "ret_1d"]],
            **kwargs),
    }
    preds = signal_predictions(primary, signal)
    cases["sold at the copied close (before)"] = long_short_backtest(
        preds, primary[["date", "ticker", "ret_1d"]], **kwargs)
    for label, bound in (("frozen, max_frozen_days 21 (default)", config.max_frozen_days),
                         ("frozen, max_frozen_days null", None)):
        cases[label] = long_short_backtest(preds, holding_returns(primary, bound),
                                           max_frozen_days=bound, **kwargs)
    tradable = primary.pivot(index="date", columns="ticker", values="tradable")
    held, untradable = held_names_untradable(cases["frozen, max_frozen_days 21 (default)"],
                                             tradable.astype(np.float64) > 0)
    lines = [
        f"## suspensions: positions frozen at closes that are not trades "
        f"({N_TICKERS} names x {N_DAYS} dates)",
        "",
        f"{machine_line('at the end')}. `benchmarks/bench_suspensions.py`: generator seed "
        f"{SEED}, signal_strength {SIGNAL_STRENGTH}, {windows} suspensions over {days:,} name-dates (3-40 dates each, half of them "
        "a copied close with volume 0, half missing rows); data_processing with the default "
        f"parameters; {int((~primary['tradable']).sum()):,} rows of primary_panel are no trade. "
        "Backtest of the generator's planted signal (`signal_1`) on the eligible rows, from date "
        f"{WARM_UP} on, evaluation defaults (rebalance every {config.rebalance_days} dates, "
        f"quintiles, {config.cost_bps:g} bps). Of the {held:,} positions held into a later "
        f"rebalance, {untradable:,} could not be traded at its close.",
        "",
        "| backtest | Sharpe | annual return | CAGR | turnover | max drawdown |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, result in cases.items():
        s = result.summary
        lines.append(f"| {label} | {s['sharpe']:.3f} | {s['annual_return']:.4f} | "
                     f"{s['cagr']:.4f} | {s['turnover']:.4f} | {s['max_drawdown']:.4f} |")
    publish(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
