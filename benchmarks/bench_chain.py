"""The whole `__default__` chain in a fresh `kedro run` process on synthetic OHLCV panels.

Per size (S 100 x 1000, M 500 x 2520, L 2000 x 2520; tickers x days): a temporary copy of the
project, the generator's panel as its raw data, default parameters (tuning on, the default trial
budget), one `kedro run`. Reported: total and per-pipeline wall time (the run summary), the child
process's CPU time and peak RSS, trials run per learner, test RankIC of `final` and `lightgbm`.
A single-LightGBM reference (17 simple price / volume factors, one fit with early stopping on a
purged validation window, load to prediction) runs on the M panel in this script, so the chain /
reference ratio survives a noisy machine. Results go to benchmarks/results.md (section `chain`) and to the MLflow experiment
`benchmarks` of the project's tracking store.

    .venv/bin/python benchmarks/bench_chain.py                 # S, M, L
    CHAIN_SIZES=S,M .venv/bin/python benchmarks/bench_chain.py
    CHAIN_PROJECT=/path/to/other/checkout ...                  # time another version of the chain
    CHAIN_EXTRA_PARAMS="base_models.tuning.timeout=null" ...   # extra --params for every size
    CHAIN_SEED=2025 ...                                        # another generator seed

S cannot hold the default 756-day first training window: it runs with cv.min_train_days=252.
BENCH_SIZE=small (a quick check that the script works): S only, its reference on S, nothing
written to results.md or MLflow.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (project root on sys.path, telemetry off)
import numpy as np
import pandas as pd
import psutil
from _common import ROOT, SMALL, machine_line, write_section

from bma_quant.core.data.synthetic import generate_synthetic_market
from tests.e2e import project_copy

SIZES = {"S": (100, 1000), "M": (500, 2520), "L": (2000, 2520)}
SEED = int(os.environ.get("CHAIN_SEED", 2024))  # 2024: a market no test uses
SIZE_PARAMS = {"S": {"cv.min_train_days": 252}}
EXTRA_PARAMS = dict(item.split("=", 1) for item in
                    os.environ.get("CHAIN_EXTRA_PARAMS", "").split(",") if "=" in item)
LAYERS = ("data_processing", "feature_engineering", "base_models", "regime_models", "stacking",
          "evaluation")


class TreeMonitor:
    """Peak RSS of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.process, self.interval, self.peak = psutil.Process(pid), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                return

    def stop(self):
        self._stop.set()
        self._thread.join()


def write_panel(project: Path, n_tickers: int, n_days: int) -> Path:
    market = generate_synthetic_market(n_tickers=n_tickers, n_days=n_days, seed=SEED, ohlcv=True)
    path = project / "data/01_raw/bench_prices.parquet"
    market.panel.to_parquet(path)
    return path


def run_chain(size: str, source: Path) -> dict:
    n_tickers, n_days = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        project_copy.PROJECT_ROOT = source
        project = project_copy.copy_project(Path(tmp))
        panel = write_panel(project, n_tickers, n_days)
        params = {"data.raw_path": str(panel.relative_to(project)), "data.index_path": "null",
                  "periods.dev_start": "null", **SIZE_PARAMS.get(size, {}), **EXTRA_PARAMS}
        args = ["run", "--params", ",".join(f"{k}={v}" for k, v in params.items())]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        process = subprocess.Popen([str(project_copy.KEDRO), *args], cwd=project,
                                   env=project_copy.kedro_env(project),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        monitor = TreeMonitor(process.pid)
        output, _ = process.communicate()
        wall = time.perf_counter() - start
        monitor.stop()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if process.returncode != 0:
            raise RuntimeError(f"{size}: kedro run failed\n{output[-4000:]}")
        summary = json.loads((project / "data/08_reporting/run_summary.json").read_text())
        status = json.loads((project / "data/08_reporting/base_model_status.json").read_text())
        registration = json.loads((project / "data/08_reporting/model_registration.json")
                                  .read_text())
        table = pd.read_csv(project / "data/08_reporting/evaluation_table.csv")
        overall = table[table["scope"] == "all"].set_index("model")["rank_ic"]
        return {
            "size": size, "tickers": n_tickers, "days": n_days, "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_rss_gib": monitor.peak / 2**30,
            "layers_s": {name: _layer_seconds(summary, name) for name in LAYERS},
            "trials": {name: s.get("metrics", {}).get("n_trials") for name, s in status.items()},
            "test_rank_ic": {m: float(overall[m]) for m in ("final", "lightgbm") if m in overall},
            # the serving chain reproduced the test predictions and was registered
            "registered": bool(registration.get("registered")),
        }


def _layer_seconds(summary: dict, layer: str) -> float | None:
    entry = (summary.get("layers") or {}).get(layer)
    if isinstance(entry, dict):
        for key in ("seconds", "wall_seconds", "wall_s"):
            if key in entry:
                return float(entry[key])
    return None


LABEL_END = 11  # the reference's label: close(t+1) -> close(t+11), as the chain's d = 1, h = 10


def lightgbm_reference(n_tickers: int, n_days: int) -> dict:
    """One LightGBM on 17 simple factors with early stopping on a purged validation window:
    parquet load to test prediction."""
    import lightgbm as lgb

    from bma_quant.core.evaluation import metrics

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.parquet"
        generate_synthetic_market(n_tickers=n_tickers, n_days=n_days, seed=SEED,
                                  ohlcv=True).panel.to_parquet(path)
        start = time.perf_counter()
        panel = pd.read_parquet(path, columns=["date", "ticker", "close", "high", "low", "volume"])
        wide = {c: panel.pivot(index="date", columns="ticker", values=c) for c in
                ("close", "high", "low", "volume")}
        close, ret = wide["close"], wide["close"].pct_change(fill_method=None)
        factors = {}
        for w in (1, 5, 10, 20, 60, 120):
            factors[f"ret_{w}"] = close / close.shift(w) - 1
        for w in (5, 20, 60):
            factors[f"vol_{w}"] = ret.rolling(w).std()
            factors[f"ma_{w}"] = close / close.rolling(w).mean() - 1
        for w in (5, 20):
            factors[f"volume_{w}"] = wide["volume"] / wide["volume"].rolling(w).mean() - 1
        factors["range"] = (wide["high"] - wide["low"]) / close
        factors["max_20"] = close / close.rolling(20).max() - 1
        factors["min_20"] = close / close.rolling(20).min() - 1
        label = close.shift(-LABEL_END) / close.shift(-1) - 1
        frame = pd.concat({k: v.stack() for k, v in {**factors, "label": label}.items()}, axis=1)
        frame = frame.dropna(subset=list(factors)).reset_index()
        dates = np.sort(frame["date"].unique())
        cut, valid_cut = int(0.8 * len(dates)), int(0.65 * len(dates))
        # purged: no training label reaches the validation dates, no validation label the test
        # dates (a label read at t ends LABEL_END dates later)
        train = frame[(frame["date"] < dates[valid_cut - LABEL_END]) & frame["label"].notna()]
        valid = frame[(frame["date"] >= dates[valid_cut])
                      & (frame["date"] < dates[cut - LABEL_END]) & frame["label"].notna()]
        test = frame[frame["date"] >= dates[cut]]
        names = list(factors)
        model = lgb.LGBMRegressor(n_estimators=500, learning_rate=0.05, num_leaves=31,
                                  n_jobs=2, verbose=-1, random_state=0)
        model.fit(train[names], train["label"], eval_X=(valid[names],), eval_y=(valid["label"],),
                  callbacks=[lgb.early_stopping(30, verbose=False)])
        test = test.assign(prediction=model.predict(test[names]))
        seconds = time.perf_counter() - start
        rank_ic = metrics.mean_rank_ic(test.dropna(subset=["label"]), "prediction", "label")
    return {"wall_s": seconds, "test_rank_ic": float(rank_ic), "n_factors": len(names)}


def log_to_mlflow(results: list[dict], reference: dict, label: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{ROOT / 'mlflow.db'}")
    mlflow.set_experiment("benchmarks")
    for r in results:
        with mlflow.start_run(run_name=f"chain-{r['size']}-{label}"):
            mlflow.log_params({"size": r["size"], "tickers": r["tickers"], "days": r["days"],
                               "source": label, "generator_seed": SEED})
            values = {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
                      "peak_rss_gib": r["peak_rss_gib"],
                      **{f"layer.{k}_s": v for k, v in r["layers_s"].items() if v is not None},
                      **{f"trials.{k}": v for k, v in r["trials"].items() if v is not None},
                      **{f"test_rank_ic.{k}": v for k, v in r["test_rank_ic"].items()}}
            if r["size"] == "M":
                values["reference_lightgbm_s"] = reference["wall_s"]
                values["ratio_to_reference"] = r["wall_s"] / reference["wall_s"]
            mlflow.log_metrics(values)


def markdown(results: list[dict], reference: dict, label: str) -> str:
    lines = [
        "## Whole chain (`kedro run`, `__default__`, fresh process, synthetic OHLCV)",
        "",
        f"{machine_line('at the end')}; chain source: {label}; generator seed {SEED}; default "
        "parameters (S: cv.min_train_days 252).",
        "",
        "| size | tickers x days | wall s | CPU s | peak RSS GiB | "
        + " | ".join(LAYERS) + " | trials | test RankIC final / lightgbm | registered |",
        "|---|---|---:|---:|---:|" + "---:|" * len(LAYERS) + "---|---|---|",
    ]
    for r in results:
        layers = " | ".join("" if r["layers_s"][k] is None else f"{r['layers_s'][k]:.1f}"
                            for k in LAYERS)
        trials = ", ".join(f"{k} {v}" for k, v in r["trials"].items() if v)
        ic = " / ".join(f"{r['test_rank_ic'].get(m, float('nan')):.4f}"
                        for m in ("final", "lightgbm"))
        lines.append(f"| {r['size']} | {r['tickers']} x {r['days']} | {r['wall_s']:.1f} | "
                     f"{r['cpu_s']:.1f} | {r['peak_rss_gib']:.2f} | {layers} | {trials} | {ic} | "
                     f"{'yes' if r['registered'] else 'no'} |")
    by_size = {r["size"]: r for r in results}
    lines += ["", f"Single-LightGBM reference on the M panel ({reference['n_factors']} factors, "
              f"early stopping, load to prediction): {reference['wall_s']:.1f} s, test RankIC "
              f"{reference['test_rank_ic']:.4f}."]
    if "M" in by_size:
        lines.append(f"M chain / reference: {by_size['M']['wall_s'] / reference['wall_s']:.1f}x.")
    if "M" in by_size and "L" in by_size:
        lines.append(f"L / M wall time: {by_size['L']['wall_s'] / by_size['M']['wall_s']:.2f}.")
    return "\n".join(lines)


def main() -> int:
    default = "S" if SMALL else "S,M,L"
    sizes = [s.strip() for s in os.environ.get("CHAIN_SIZES", default).split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"CHAIN_SIZES: unknown size(s) {unknown}; choose from {sorted(SIZES)}")
    source = Path(os.environ.get("CHAIN_PROJECT", ROOT)).resolve()
    label = "this checkout" if source == ROOT else str(source)
    if EXTRA_PARAMS:
        label += f" with {EXTRA_PARAMS}"
    results = []
    for size in sizes:
        print(f"== chain {size} {SIZES[size]}", flush=True)
        results.append(run_chain(size, source))
        print(json.dumps(results[-1], indent=1), flush=True)
    reference = lightgbm_reference(*SIZES["S" if SMALL else "M"])
    print("reference", reference, flush=True)
    text = markdown(results, reference, label)
    if SMALL:
        print("(BENCH_SIZE=small: results.md and MLflow not written)")
    else:
        section = ("chain" if source == ROOT and SEED == 2024 and not EXTRA_PARAMS
                   else "chain-other")
        write_section(section, text)
        log_to_mlflow(results, reference, label)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
