"""Benchmark of the feature_engineering pipeline on a 500 x 2520 synthetic OHLCV panel.

Upstream: the synthetic market (planted signal_1, a short-term reversal, three noise factors,
sectors) -> data_processing in memory for the primary panel, labels, market, date split and CV
folds. Each feature_engineering node is then called in order, timed (wall seconds) and sampled for
peak resident memory. Rewrites only the `feature_engineering` section of benchmarks/results.md.
Target (2-core machine): whole pipeline under 20 s and under 3 GB.

Run: .venv/bin/python benchmarks/bench_feature_engineering.py
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

from bma_quant.core.synthetic import generate_synthetic_market  # noqa: E402
from bma_quant.pipelines.feature_engineering import nodes  # noqa: E402
from tests.support import project_params, run_pipeline  # noqa: E402

N_TICKERS, N_DAYS, SEED = 500, 2520, 0
RESULTS = ROOT / "benchmarks" / "results.md"
SECTION = "feature_engineering"


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


def upstream_inputs() -> dict:
    market = generate_synthetic_market(
        n_tickers=N_TICKERS, n_days=N_DAYS, seed=SEED, reversal_strength=0.3
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.parquet"
        market.panel.to_parquet(path)
        upstream = run_pipeline(
            "data_processing",
            {},
            {"data": {"raw_path": str(path), "index_path": None}, "periods": {"dev_start": None}},
        )
    return {k: upstream[k] for k in ("primary_panel", "labels", "market", "date_split", "cv_folds")}


def run_nodes(data: dict, params: dict) -> tuple[list[tuple[str, float, float, float]], dict]:
    fe, temporal = params["feature_engineering"], params["temporal"]
    timings = []

    def timed(name, fn, *args):
        with PeakRss() as rss:
            start, cpu_start = time.perf_counter(), time.process_time()
            out = fn(*args)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        timings.append((name, seconds, cpu, rss.peak / 2**20))
        return out

    features, catalog = timed(
        "build_features", nodes.build_features, data["primary_panel"], data["market"], fe
    )
    spec, report, table = timed(
        "select_features",
        nodes.select,
        features,
        data["labels"],
        data["date_split"],
        data["cv_folds"],
        catalog,
        fe,
        temporal,
    )
    model_input, stats = timed(
        "make_model_input", nodes.make_model_input, features, data["labels"], spec
    )
    timed(
        "make_sample_weights",
        nodes.make_sample_weights,
        data["primary_panel"],
        data["date_split"],
        fe,
    )
    metrics = timed("feature_engineering_metrics", nodes.feature_metrics, report, table, stats)
    return timings, {
        "report": report,
        "metrics": metrics,
        "model_input": model_input,
        "features": features,
    }


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
    data = upstream_inputs()
    upstream_seconds = time.perf_counter() - t0
    load = os.getloadavg()[0]
    timings, out = run_nodes(data, project_params())
    report = out["report"]
    total = sum(t[1] for t in timings)
    total_cpu = sum(t[2] for t in timings)
    peak = max(t[3] for t in timings)
    lines = [
        f"## feature_engineering ({N_TICKERS} tickers x {N_DAYS} days, synthetic OHLCV)",
        "",
        f"Date: {dt.date.today().isoformat()}; machine: {os.cpu_count()} cores (nproc), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; 1-minute load average at start "
        f"{load:.1f} (other jobs share the cores; CPU s = this process's CPU time). "
        "Target: < 20 s, < 3 GB.",
        f"Inputs: {len(data['primary_panel']):,} panel rows; upstream (synthetic market + "
        f"data_processing) took {upstream_seconds:.1f} s.",
        "",
        "| node | wall s | CPU s | peak RSS MiB |",
        "|---|---:|---:|---:|",
        *[
            f"| {name} | {seconds:.2f} | {cpu:.2f} | {rss:.0f} |"
            for name, seconds, cpu, rss in timings
        ],
        f"| **total** | {total:.2f} | {total_cpu:.2f} | {peak:.0f} |",
        "",
        f"Factors built {report['factors_built']}, kept {report['factors_kept']} "
        f"({report['mode']} mode; {len(report['significant'])} pass the significance gate); "
        f"leak suspects {len(report['leak_suspects'])}; model_input "
        f"{len(out['model_input']):,} rows x {len(report['selected'])} features.",
        f"Selected: {', '.join(report['selected'])}.",
    ]
    text = "\n".join(lines)
    write_section(text)
    print(text)


if __name__ == "__main__":
    main()
