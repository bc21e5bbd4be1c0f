"""Benchmark of the regime_models pipeline on a 500 x 2520 synthetic panel.

Upstream: the synthetic market (planted signal whose effect flips sign in bear markets, 15 pure
noise factors) -> data_processing (in memory) for the panel, market, labels, date split and CV
folds. model_input is the 16 synthetic factor columns plus the label (a stand-in for
feature_engineering's selection, so only regime_models is timed), with unit sample weights and no
tuned base_models parameters. Each regime_models node is called in order with the project's
parameters, timed (wall seconds) and sampled for peak resident memory. Rewrites only the
`regime_models` section of benchmarks/results.md.

Run: .venv/bin/python benchmarks/bench_regime_models.py
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

from bma_quant.core.regimes import detection_accuracy  # noqa: E402
from bma_quant.core.synthetic import generate_synthetic_market  # noqa: E402
from bma_quant.pipelines.regime_models import nodes  # noqa: E402
from tests.support import project_params, run_pipeline  # noqa: E402

N_TICKERS, N_DAYS, SEED, N_NOISE = 500, 2520, 0, 15
MULTIPLIERS = {"bull": 1.0, "neutral": 0.5, "bear": -1.0}
RESULTS = ROOT / "benchmarks" / "results.md"
SECTION = "regime_models"


class PeakRss:
    """Samples this process's resident memory in a thread while a block runs."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak = interval, 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self):
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def synthetic_inputs() -> tuple[dict, pd.DataFrame]:
    market = generate_synthetic_market(n_tickers=N_TICKERS, n_days=N_DAYS, seed=SEED,
                                       n_noise_factors=N_NOISE,
                                       regime_signal_multipliers=MULTIPLIERS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.parquet"
        market.panel.to_parquet(path)
        upstream = run_pipeline("data_processing", {}, {
            "data": {"raw_path": str(path), "index_path": None},
            "periods": {"dev_start": None}})
    features = ["signal_1", *[f"noise_{k}" for k in range(1, N_NOISE + 1)]]
    model_input = upstream["primary_panel"][["date", "ticker", *features]].merge(
        upstream["labels"], on=["date", "ticker"])
    model_input[[*features, "label"]] = model_input[[*features, "label"]].astype(np.float32)
    dev_end = pd.Timestamp(upstream["date_split"]["dev_end"])
    dev_dates = model_input.loc[model_input["date"] <= dev_end, "date"].unique()
    data = {
        "primary_panel": upstream["primary_panel"], "market": upstream["market"],
        "date_split": upstream["date_split"], "cv_folds": upstream["cv_folds"],
        "model_input": model_input,
        "sample_weights": pd.DataFrame({"date": dev_dates, "weight": 1.0}),
        "base_model_status": {},
    }
    return data, market.regimes


def run_nodes(data: dict, params: dict, fear_greed: dict):
    timings = []

    def timed(name, fn, *args):
        with PeakRss() as rss:
            start = time.perf_counter()
            out = fn(*args)
            seconds = time.perf_counter() - start
        timings.append((name, seconds, rss.peak / 2**20))
        return out

    inputs = timed("build_detector_inputs", nodes.build_detector_inputs, data["primary_panel"],
                   data["market"], fear_greed)
    regimes, detector, detection = timed("detect_regimes", nodes.detect_regimes, inputs,
                                         data["date_split"], params)
    oof, test, model, training = timed(
        "train_regime_models", nodes.train_regime_models, data["model_input"],
        data["sample_weights"], data["cv_folds"], data["date_split"], inputs, regimes, detector,
        data["base_model_status"], params, fear_greed)
    timed("regime_timeline", nodes.regime_timeline, regimes, data["market"], data["date_split"],
          params)
    report, metrics = timed("regime_report", nodes.regime_report, detection, training)
    return timings, {"regimes": regimes, "oof": oof, "test": test, "report": report,
                     "metrics": {k: v["value"] for k, v in metrics.items()}}


def write_section(text: str) -> None:
    start, end = f"<!-- {SECTION} -->", f"<!-- /{SECTION} -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n\n"
    if start in current and end in current:
        head, rest = current.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        current = head + block + ("\n" + tail if tail else "")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(current)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    data, true_regimes = synthetic_inputs()
    upstream_seconds = time.perf_counter() - t0
    all_params = project_params()
    params = all_params["regime_models"]
    timings, out = run_nodes(data, params, all_params["feature_engineering"]["fear_greed"])
    m, report = out["metrics"], out["report"]
    model = report["training"]["model"]
    learner = report["training"]["learner"]
    lines = [
        f"## regime_models ({N_TICKERS} tickers x {N_DAYS} days, synthetic)",
        "",
        f"Date: {dt.date.today().isoformat()}; machine: {os.cpu_count()} cores (nproc), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; detector {params['detector']} "
        f"(used: {report['detection']['detector']}), per-fold detector refits "
        f"{params['refit_detector_per_fold']}, learner {learner} (n_jobs {params['n_jobs']}), "
        f"combine {params['combine']}, global comparison {params['compare_global']}; 1-minute "
        f"load average at the end {os.getloadavg()[0]:.1f} (other jobs share the machine).",
        f"Inputs: {len(data['model_input']):,} model_input rows x "
        f"{data['model_input'].shape[1] - 3} features (synthetic factors standing in for "
        f"feature_engineering; signal multipliers {MULTIPLIERS}), "
        f"{data['cv_folds']['fold'].nunique()} folds; upstream (synthetic market + "
        f"data_processing) took {upstream_seconds:.1f} s.",
        "",
        "| node | wall s | peak RSS MiB |",
        "|---|---:|---:|",
        *[f"| {name} | {seconds:.2f} | {rss:.0f} |" for name, seconds, rss in timings],
        f"| **total** | {sum(t[1] for t in timings):.2f} | {max(t[2] for t in timings):.0f} |",
        "",
        f"Regimes: bull {m['share_bull']:.2f}, neutral {m['share_neutral']:.2f}, bear "
        f"{m['share_bear']:.2f}, {m['switches']:.0f} switches, mean spell "
        f"{m['mean_duration_days']:.1f} days; agreement with the true chain "
        f"{detection_accuracy(out['regimes'], true_regimes):.2f}; fold detector fallbacks "
        f"{m['fold_detector_fallbacks']:.0f}.",
        f"Out-of-fold RankIC: {model} {m[f'{model}.cv_rank_ic_mean']:.4f} vs global_{learner} "
        f"{m.get(f'global_{learner}.cv_rank_ic_mean', float('nan')):.4f}; "
        + ", ".join(f"{r} {m.get(f'{model}.{r}.cv_rank_ic_mean', float('nan')):.4f} / "
                    f"{m.get(f'global_{learner}.{r}.cv_rank_ic_mean', float('nan')):.4f}"
                    for r in ("bull", "neutral", "bear"))
        + " (regime / global by regime).",
    ]
    text = "\n".join(lines)
    write_section(text)
    print(text)


if __name__ == "__main__":
    main()
