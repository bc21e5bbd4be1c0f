"""Benchmark of the stacking pipeline on a 500 x 2520 synthetic panel.

Upstream: the synthetic market -> data_processing (in memory) for labels, date split and CV folds.
Base and regime predictions are synthesised from the planted signal (stand-ins for trained
learners, so only stacking is timed): four base models reading signal_1 with different noise and
scales, one reading the pure noise factor noise_1, and a regime model that reads the signal only
in bull markets. Each stacking node is then called in order, timed (wall seconds) and sampled for
peak resident memory. Rewrites only the `stacking` section of benchmarks/results.md.

Run: .venv/bin/python benchmarks/bench_stacking.py
(BENCH_SIZE=small: 60 x 600 days, prints the section without writing results.md)
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import psutil
from _common import N_DAYS, N_TICKERS, NodeTimer, machine_line, publish, synthetic_upstream

from bma_quant.pipelines.stacking import nodes
from tests.support import project_params

SEED = 0
SECTION = "stacking"


def synthetic_inputs() -> dict:
    market, upstream = synthetic_upstream(N_TICKERS, N_DAYS, SEED)
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
    # one detector per fold in the chain; here every fold "detects" the true regimes
    fold_ids = sorted(upstream["cv_folds"]["fold"].unique())
    fold_regimes = pd.concat([regimes.assign(fold=f) for f in fold_ids], ignore_index=True)
    status = {m: {"status": "ok", "error": None, "best_params": {}} for m in base_specs}
    status["noise_model"] = {"status": "ok", "error": None, "best_params": {}}
    return {
        "base_oof": base_oof, "base_test": base_test, "regime_oof": regime_oof,
        "regime_test": regime_test, "status": status, "labels": upstream["labels"],
        "regimes": regimes, "fold_regimes": fold_regimes, "cv_folds": upstream["cv_folds"],
        "date_split": upstream["date_split"],
    }


def run_nodes(data: dict, params: dict, temporal: dict) -> tuple[NodeTimer, dict]:
    timed = NodeTimer()

    design, test_inputs, info = timed(
        "prepare_ensemble_inputs", nodes.prepare_ensemble_inputs, data["base_oof"],
        data["base_test"], data["regime_oof"], data["regime_test"], data["status"],
        data["labels"], data["cv_folds"], data["date_split"], params)
    oof_predictions, selection = timed(
        "select_ensemble", nodes.select_ensemble, design, data["fold_regimes"], data["cv_folds"],
        data["date_split"], info, params, temporal)
    test, weights, _, _, fit_info = timed(
        "fit_ensembles", nodes.fit_ensembles, design, test_inputs, data["regimes"],
        data["date_split"], info, selection, params, temporal)
    report, _ = timed("report_stacking", nodes.report_stacking, info, selection, fit_info,
                      weights)
    return timed, {"report": report, "weights": weights, "oof_rows": len(oof_predictions),
                   "test_rows": len(test), "design_rows": len(design)}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    data = synthetic_inputs()
    upstream_seconds = time.perf_counter() - t0
    project = project_params()
    params = project["stacking"]
    baseline_mib = psutil.Process().memory_info().rss / 2**20
    machine = machine_line("at start")
    timings, out = run_nodes(data, params, project["temporal"])
    report = out["report"]
    scores = report["selection"]["oos_rank_ic"]
    lines = [
        f"## stacking ({N_TICKERS} tickers x {N_DAYS} days, synthetic)",
        "",
        f"{machine}; meta-learner {params['meta_learner']}, standardisation "
        f"{params['standardisation']}, {params['bma']['bootstrap_draws']} Bayesian-bootstrap draws.",
        f"Inputs: {len(report['models'])} models ({', '.join(report['models'])}; predictions "
        "synthesised from the planted signal, not trained learners), "
        f"{out['design_rows']:,} out-of-fold rows, {report['test_rows']:,} test input rows; "
        f"upstream (synthetic market + data_processing) took {upstream_seconds:.1f} s. "
        f"Peak RSS is the whole process: {baseline_mib:.0f} MiB before the first node "
        "(inputs and upstream frames held in memory).",
        "",
        *timings.table(),
        "",
        "Nested OOS RankIC (last "
        f"{len(report['selection']['validation_folds'])} folds): "
        + ", ".join(f"{m} {s:.4f}" for m, s in scores.items())
        + f"; chosen: **{report['chosen']}**.",
    ]
    publish(SECTION, "\n".join(lines))
    print(out["weights"].to_string())


if __name__ == "__main__":
    main()
