"""Memory and rows of data_processing + feature_engineering on a survivorship-free panel.

A CRSP-like universe lists and delists names through the sample: here 2,000 synthetic OHLCV names
(five independent markets of 400 names over 7,300 business days, 1995-2023), each kept for one
random window of 150-1,200 days, about 190 names on a date and 1.4 M rows. Every layer works on
date x ever-listed-name matrices, 7,300 x 2,000 here, so what a step holds per name and date
decides its memory. Each pipeline runs in memory (tests.support.run_pipeline) with the default
parameters (`periods.dev_start: null`, equal-weighted market), timed and sampled for peak RSS.
Rewrites only the `survivorship_free` section of benchmarks/results.md.

Run: .venv/bin/python benchmarks/bench_survivorship_free.py
(BENCH_SIZE=small: 5 x 60 names over 1,500 days, prints the section without writing results.md)
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from _common import SMALL, NodeTimer, machine_line, publish

from bma_quant.core.data.synthetic import generate_synthetic_market
from tests.support import run_pipeline

SECTION = "survivorship_free"
BLOCKS, NAMES, DAYS = (5, 60, 1500) if SMALL else (5, 400, 7300)
LISTED_DAYS = (100, 400) if SMALL else (150, 1201)  # each name's listed window, in dates
SEED = 7


def survivorship_free_panel() -> pd.DataFrame:
    """Five independent synthetic markets, each name kept for one random listed window."""
    rng = np.random.default_rng(SEED)
    parts = []
    for block in range(BLOCKS):
        panel = generate_synthetic_market(NAMES, DAYS, seed=100 + block, start="1995-01-02",
                                          ohlcv=True).panel
        panel = panel[["date", "ticker", "open", "high", "low", "close", "volume", "sector"]]
        panel["ticker"] = panel["ticker"].astype(str) + f"_{block}"
        for _, rows in panel.groupby("ticker", sort=False):
            length = int(rng.integers(*LISTED_DAYS))
            start = int(rng.integers(0, len(rows) - length))
            parts.append(rows.iloc[start:start + length])
    return pd.concat(parts, ignore_index=True).sort_values(["date", "ticker"])


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    panel = survivorship_free_panel()
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="bench_survivorship_")) / "prices.parquet"
    panel.to_parquet(path, index=False)
    build_seconds = time.perf_counter() - started
    per_date = panel.groupby("date").size()
    overrides = {"data": {"raw_path": str(path), "index_path": None, "true_regimes_path": None},
                 "periods": {"dev_start": None}}
    timed = NodeTimer(echo=True)
    dp = timed("data_processing", run_pipeline, "data_processing", {}, overrides)
    inputs = {k: dp[k] for k in ("primary_panel", "market", "date_split", "cv_folds", "labels")}
    fe = timed("feature_engineering", run_pipeline, "feature_engineering", inputs, overrides)
    lines = [
        f"## survivorship-free panel: data_processing + feature_engineering "
        f"({BLOCKS * NAMES:,} names over {DAYS:,} dates)",
        "",
        f"{machine_line('at the end')}. Panel: {len(panel):,} rows, "
        f"{panel['ticker'].nunique():,} names, {per_date.size:,} dates, "
        f"{per_date.median():.0f} names on the median date (max {per_date.max()}); built in "
        f"{build_seconds:.0f} s. Each pipeline in memory, the default parameters; peak RSS is "
        "the whole process (the panel and the pipelines' outputs stay in memory).",
        "",
        *timed.table(),
        "",
        f"Rows stored: primary_panel {len(dp['primary_panel']):,}, features "
        f"{len(fe['features']):,} x {fe['features'].shape[1] - 2} columns, model_input "
        f"{len(fe['model_input']):,}.",
    ]
    publish(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
