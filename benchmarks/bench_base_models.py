"""Benchmark of the base_models pipeline on a 500 x 2520 synthetic panel, default tuning budget.

Upstream: the synthetic market -> data_processing (in memory, the real pipeline); features stand in
for feature_engineering (signal_1, the noise columns and two lagged returns, float32) with
half-life sample weights (tests/pipelines/base_models/synthetic_inputs.py). Every base_models node
is then run in order with the project's parameters (Optuna storage in a temporary SQLite file, no
MLflow run), timing each node and sampling peak RSS. Rewrites only the `base_models` section of
benchmarks/results.md.

Run: .venv/bin/python benchmarks/bench_base_models.py
(BENCH_SIZE=small: 60 x 600 days, prints the section without writing results.md)
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from _common import MIN_TRAIN_DAYS, N_DAYS, N_TICKERS, SMALL, NodeTimer, machine_line, publish

from bma_quant.core.evaluation import metrics
from bma_quant.core.models.learners import LEARNERS
from bma_quant.pipelines.base_models import nodes
from tests.pipelines.base_models.synthetic_inputs import build_inputs
from tests.support import project_params

SEED = 0
SECTION = "base_models"
# BENCH_SIZE=small is a quick check that the script runs, not a measurement: a token tuning budget
# (the default budget of 60 s per learner would dominate the run).
SMALL_TUNING = {"n_trials": 2, "timeout": 10}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_base_models_"))
    start = time.perf_counter()
    inputs = build_inputs(tmp, N_TICKERS, N_DAYS, seed=SEED,
                          min_train_days=MIN_TRAIN_DAYS if SMALL else 504, n_splits=5)
    upstream_seconds = time.perf_counter() - start

    all_params = project_params()
    params = dict(all_params["base_models"])
    params["tuning"] = {**params["tuning"], "storage": f"sqlite:///{tmp / 'optuna.db'}",
                        "show_progress_bar": False, **(SMALL_TUNING if SMALL else {})}
    temporal = all_params["temporal"]
    timed = NodeTimer(echo=True)

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
    tuning_cfg = params["tuning"]
    lines = [
        f"## base_models ({N_TICKERS} tickers x {N_DAYS} days, synthetic)",
        "",
        f"{machine_line('at the end')}; n_jobs {params['n_jobs']}; "
        f"{'reduced (BENCH_SIZE=small)' if SMALL else 'default'} tuning budget: "
        f"{tuning_cfg['n_trials']} trials per learner"
        + (f" or {tuning_cfg['timeout']} s (no new trial after the timeout)"
           if tuning_cfg.get("timeout") else " (a count; no time limit)")
        + ", MedianPruner over the folds.",
        f"Inputs: {len(training_inputs.data.label):,} development rows, "
        f"{len(training_inputs.test_X):,} test rows, {len(training_inputs.feature_names)} "
        f"features, {len(training_inputs.cache.folds)} purged folds; upstream (synthetic market "
        f"+ data_processing + stand-in features) took {upstream_seconds:.1f} s.",
        "",
        *timed.table(),
        "",
        "| learner | trials | CV RankIC | tune s | refit s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        m, t = r.get("metrics", {}), r.get("timings", {})
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | failed: {r['error']} | | | |")
            continue
        lines.append(f"| {r['name']} | {m['n_trials']} | {m['oof_rank_ic_mean']:.4f} | "
                     f"{t['tune_seconds']:.1f} | {t['refit_seconds']:.1f} |")
    lines += ["", f"Planted signal_1's own RankIC over the same rows: {true_rank_ic:.4f}."]
    publish(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
