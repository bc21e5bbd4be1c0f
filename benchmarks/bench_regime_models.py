"""Benchmark of the regime_models pipeline on a 500 x 2520 synthetic panel.

Upstream: the synthetic market (planted signal whose effect flips sign in bear markets, 15 pure
noise factors) -> data_processing (in memory) for the panel, market, labels, date split and CV
folds. model_input is the 16 synthetic factor columns plus the label (a stand-in for
feature_engineering's selection, so only regime_models is timed), with unit sample weights and no
tuned base_models parameters. Each regime_models node is called in order with the project's
parameters, timed (wall seconds) and sampled for peak resident memory. Rewrites only the
`regime_models` section of benchmarks/results.md.

Run: .venv/bin/python benchmarks/bench_regime_models.py
(BENCH_SIZE=small: 60 x 600 days, prints the section without writing results.md)
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from _common import N_DAYS, N_TICKERS, NodeTimer, machine_line, publish, synthetic_upstream

from bma_quant.core.regimes.detection import detection_accuracy
from bma_quant.pipelines.regime_models import nodes
from tests.support import project_params

SEED, N_NOISE = 0, 15
MULTIPLIERS = {"bull": 1.0, "neutral": 0.5, "bear": -1.0}
SECTION = "regime_models"


def synthetic_inputs() -> tuple[dict, pd.DataFrame]:
    market, upstream = synthetic_upstream(N_TICKERS, N_DAYS, SEED, n_noise_factors=N_NOISE,
                                          regime_signal_multipliers=MULTIPLIERS)
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


def run_nodes(data: dict, params: dict, fear_greed: dict) -> tuple[NodeTimer, dict]:
    timed = NodeTimer()

    inputs = timed("build_detector_inputs", nodes.build_detector_inputs, data["primary_panel"],
                   data["market"], fear_greed, params)
    regimes, detector, detection = timed("detect_regimes", nodes.detect_regimes, inputs,
                                         data["date_split"], params)
    oof, test, model, training, _ = timed(
        "train_regime_models", nodes.train_regime_models, data["model_input"],
        data["sample_weights"], data["cv_folds"], data["date_split"], inputs, regimes, detector,
        data["base_model_status"], None, params, fear_greed)
    timed("regime_timeline", nodes.regime_timeline, regimes, data["market"], data["date_split"],
          params)
    report, metrics = timed("regime_report", nodes.regime_report, detection, training)
    return timed, {"regimes": regimes, "oof": oof, "test": test, "report": report,
                   "metrics": {k: v["value"] for k, v in metrics.items()}}


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
        f"{machine_line('at the end')}; detector {params['detector']} "
        f"(used: {report['detection']['detector']}; out-of-fold predictions from a detector "
        f"fitted per fold), learner {learner} (n_jobs {params['n_jobs']}), "
        f"combine {params['combine']}, global comparison {params['compare_global']}.",
        f"Inputs: {len(data['model_input']):,} model_input rows x "
        f"{data['model_input'].shape[1] - 3} features (synthetic factors standing in for "
        f"feature_engineering; signal multipliers {MULTIPLIERS}), "
        f"{data['cv_folds']['fold'].nunique()} folds; upstream (synthetic market + "
        f"data_processing) took {upstream_seconds:.1f} s.",
        "",
        *timings.table(),
        "",
        f"Regimes: bull {m['share_bull']:.2f}, neutral {m['share_neutral']:.2f}, bear "
        f"{m['share_bear']:.2f}, {m['switches']:.0f} switches, mean spell "
        f"{m['mean_duration_days']:.1f} days; agreement with the true chain "
        f"{detection_accuracy(out['regimes'], true_regimes):.2f}; fold detector fallbacks "
        f"{m['fold_detector_fallbacks']:.0f}.",
        f"Out-of-fold RankIC: {model} {m[f'{model}.oof_rank_ic_mean']:.4f} vs global_{learner} "
        f"{m.get(f'global_{learner}.oof_rank_ic_mean', float('nan')):.4f}; "
        + ", ".join(f"{r} {m.get(f'{model}.{r}.oof_rank_ic_mean', float('nan')):.4f} / "
                    f"{m.get(f'global_{learner}.{r}.oof_rank_ic_mean', float('nan')):.4f}"
                    for r in ("bull", "neutral", "bear"))
        + " (regime / global by regime; the global learner's out-of-fold predictions come from "
        "base_models, which this timing bench does not run).",
        "A timing bench: its market's regimes move the planted signal_1's payoff, which the "
        "default detector's evidence (the momentum / reversal / low-volatility portfolios' "
        "returns) does not watch, so these quality figures say little; the regime layer's "
        "quality is measured in \"regime quality\" below.",
    ]
    publish(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
