"""Benchmark of the stacking pipeline on a 500 x 2520 synthetic panel.

Upstream: the synthetic market -> data_processing (in memory) for labels, date split and CV folds.
Base and regime predictions are synthesised from the planted signal (stand-ins for trained
learners, so only stacking is timed): four base models reading signal_1 with different noise and
scales, one reading the pure noise factor noise_1, and a regime model that reads the signal only
in bull markets. Each stacking node is then called in order, timed (wall seconds) and sampled for
peak resident memory. Rewrites only the `stacking` section of benchmarks/results.md.

Run: .venv/bin/python benchmarks/bench_stacking.py
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

from bma_quant.core.synthetic import generate_synthetic_market  # noqa: E402
from bma_quant.pipelines.stacking import nodes  # noqa: E402
from tests.support import project_params, run_pipeline  # noqa: E402

N_TICKERS, N_DAYS, SEED = 500, 2520, 0
RESULTS = ROOT / "benchmarks" / "results.md"
SECTION = "stacking"


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


def synthetic_inputs() -> dict:
    market = generate_synthetic_market(n_tickers=N_TICKERS, n_days=N_DAYS, seed=SEED)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.parquet"
        market.panel.to_parquet(path)
        upstream = run_pipeline("data_processing", {}, {
            "data": {"raw_path": str(path), "index_path": None},
            "periods": {"dev_start": None}})
    panel = upstream["primary_panel"][["date", "ticker", "signal_1", "noise_1"]].dropna()
    rng = np.random.default_rng(SEED)
    regime_of_date = market.regimes.set_index("date")["regime"]
    bull = (panel["date"].map(regime_of_date) == "bull").to_numpy()
    n = len(panel)
    signal = panel["signal_1"].to_numpy()
    base_specs = {  # name: (noise sd, scale)
        "elastic_net": (2.0, 0.01), "xgboost": (3.0, 1.0), "lightgbm": (2.5, 0.02),
        "alpha_composite": (4.0, 1.0),
    }
    frames = [panel[["date", "ticker"]].assign(
        model=name, prediction=scale * (signal + sd * rng.standard_normal(n)))
        for name, (sd, scale) in base_specs.items()]
    frames.append(panel[["date", "ticker"]].assign(model="noise_model",
                                                   prediction=panel["noise_1"].to_numpy()))
    base = pd.concat(frames, ignore_index=True).astype({"prediction": "float32"})
    regime = panel[["date", "ticker"]].assign(
        model="regime_lightgbm",
        prediction=(np.where(bull, signal, 0.0) + 2.0 * rng.standard_normal(n)).astype("float32"))

    folds = upstream["cv_folds"].query("role == 'test'")[["date", "fold"]]
    test_start = pd.Timestamp(upstream["date_split"]["test_start"])

    def split(frame):
        oof = frame.merge(folds, on="date")[["date", "ticker", "model", "fold", "prediction"]]
        return oof, frame[frame["date"] >= test_start].reset_index(drop=True)

    base_oof, base_test = split(base)
    regime_oof, regime_test = split(regime)
    regimes = market.regimes.copy()
    for r in ("bull", "neutral", "bear"):
        regimes[f"p_{r}"] = np.where(regimes["regime"] == r, 0.8, 0.1)
    regimes["fear_greed"] = 0.0
    status = {m: {"status": "ok", "error": None, "best_params": {}} for m in base_specs}
    status["noise_model"] = {"status": "ok", "error": None, "best_params": {}}
    return {
        "base_oof": base_oof, "base_test": base_test, "regime_oof": regime_oof,
        "regime_test": regime_test, "status": status, "labels": upstream["labels"],
        "regimes": regimes, "cv_folds": upstream["cv_folds"], "date_split": upstream["date_split"],
    }


def run_nodes(data: dict, params: dict) -> tuple[list[tuple[str, float, float]], dict]:
    timings = []

    def timed(name, fn, *args):
        with PeakRss() as rss:
            start = time.perf_counter()
            out = fn(*args)
            seconds = time.perf_counter() - start
        timings.append((name, seconds, rss.peak / 2**20))
        return out

    design, test_inputs, info = timed(
        "prepare_ensemble_inputs", nodes.prepare_ensemble_inputs, data["base_oof"],
        data["base_test"], data["regime_oof"], data["regime_test"], data["status"],
        data["labels"], data["cv_folds"], data["date_split"], params)
    oof_predictions, selection = timed(
        "select_ensemble", nodes.select_ensemble, design, data["regimes"], data["cv_folds"],
        data["date_split"], info, params)
    test, weights, _, _, fit_info = timed(
        "fit_ensembles", nodes.fit_ensembles, design, test_inputs, data["regimes"],
        data["date_split"], info, selection, params)
    report, _ = timed("report_stacking", nodes.report_stacking, info, selection, fit_info,
                      weights)
    return timings, {"report": report, "weights": weights, "oof_rows": len(oof_predictions),
                     "test_rows": len(test), "design_rows": len(design)}


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
    data = synthetic_inputs()
    upstream_seconds = time.perf_counter() - t0
    params = project_params()["stacking"]
    baseline_mib = psutil.Process().memory_info().rss / 2**20
    load_average = os.getloadavg()[0]
    timings, out = run_nodes(data, params)
    report = out["report"]
    scores = report["selection"]["oos_rank_ic"]
    lines = [
        f"## stacking ({N_TICKERS} tickers x {N_DAYS} days, synthetic)",
        "",
        f"Date: {dt.date.today().isoformat()}; machine: {os.cpu_count()} cores (nproc), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; 1-minute load average at start "
        f"{load_average:.1f} (other jobs share the cores); meta-learner "
        f"{params['meta_learner']}, standardisation {params['standardisation']}, "
        f"{params['bma']['bootstrap_draws']} Bayesian-bootstrap draws.",
        f"Inputs: {len(report['models'])} models ({', '.join(report['models'])}; predictions "
        "synthesised from the planted signal, not trained learners), "
        f"{out['design_rows']:,} out-of-fold rows, {report['test_rows']:,} test input rows; "
        f"upstream (synthetic market + data_processing) took {upstream_seconds:.1f} s. "
        f"Peak RSS is the whole process: {baseline_mib:.0f} MiB before the first node "
        "(inputs and upstream frames held in memory).",
        "",
        "| node | wall s | peak RSS MiB |",
        "|---|---:|---:|",
        *[f"| {name} | {seconds:.2f} | {rss:.0f} |" for name, seconds, rss in timings],
        f"| **total** | {sum(t[1] for t in timings):.2f} | {max(t[2] for t in timings):.0f} |",
        "",
        "Nested OOS RankIC (last "
        f"{len(report['selection']['validation_folds'])} folds): "
        + ", ".join(f"{m} {s:.4f}" for m, s in scores.items())
        + f"; chosen: **{report['chosen']}**.",
    ]
    text = "\n".join(lines)
    write_section(text)
    print(text)
    print(out["weights"].to_string())


if __name__ == "__main__":
    main()
