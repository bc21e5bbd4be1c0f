"""Benchmark of the feature_engineering pipeline on a 500 x 2520 synthetic OHLCV panel.

Upstream: the synthetic market (planted signal_1, a short-term reversal, three noise factors,
sectors) -> data_processing in memory for the primary panel, labels, market, date split and CV
folds. Each feature_engineering node is then called in order, timed (wall seconds) and sampled for
peak resident memory. Rewrites only the `feature_engineering` section of benchmarks/results.md.
Target (2-core machine): whole pipeline under 20 s and under 3 GB.

Run: .venv/bin/python benchmarks/bench_feature_engineering.py
(BENCH_SIZE=small: 60 x 600 days, prints the section without writing results.md)
"""

from __future__ import annotations

import logging
import time

from _common import N_DAYS, N_TICKERS, NodeTimer, machine_line, publish, synthetic_upstream

from bma_quant.pipelines.feature_engineering import nodes
from tests.support import project_params

SEED = 0
SECTION = "feature_engineering"


def upstream_inputs() -> dict:
    _, upstream = synthetic_upstream(N_TICKERS, N_DAYS, SEED, reversal_strength=0.3)
    return {k: upstream[k] for k in ("primary_panel", "labels", "market", "date_split", "cv_folds")}


def run_nodes(data: dict, params: dict) -> tuple[NodeTimer, dict]:
    fe, temporal = params["feature_engineering"], params["temporal"]
    timed = NodeTimer()

    features, catalog = timed(
        "build_features", nodes.build_features, data["primary_panel"], data["market"], fe
    )
    leak_report, _ = timed(
        "audit_leaks",
        nodes.audit_leaks,
        data["primary_panel"],
        data["market"],
        features,
        catalog,
        data["date_split"],
        data["cv_folds"],
        fe,
        temporal,
    )
    spec, report, table = timed(
        "select_features",
        nodes.select,
        features,
        data["labels"],
        data["date_split"],
        data["cv_folds"],
        catalog,
        leak_report,
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
        fe["sample_weights"],
    )
    metrics = timed(
        "feature_engineering_metrics", nodes.feature_metrics, report, table, stats, leak_report
    )
    return timed, {
        "report": report,
        "metrics": metrics,
        "model_input": model_input,
        "features": features,
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    data = upstream_inputs()
    upstream_seconds = time.perf_counter() - t0
    machine = machine_line("at start")
    timings, out = run_nodes(data, project_params())
    report = out["report"]
    lines = [
        f"## feature_engineering ({N_TICKERS} tickers x {N_DAYS} days, synthetic OHLCV)",
        "",
        f"{machine}; CPU s = this process's CPU time. Target: < 20 s, < 3 GB.",
        f"Inputs: {len(data['primary_panel']):,} panel rows; upstream (synthetic market + "
        f"data_processing) took {upstream_seconds:.1f} s.",
        "",
        *timings.table(cpu=True),
        "",
        f"Factors built {report['factors_built']}, kept {report['factors_kept']} "
        f"({report['mode']} mode; {len(report['significant'])} pass the significance gate); "
        f"leak suspects {out['metrics']['leak_suspects']['value']:g} (leak audit: "
        f"{len(report['leak_audit_dropped'])}); model_input "
        f"{len(out['model_input']):,} rows x {len(report['selected'])} features.",
        f"Selected: {', '.join(report['selected'])}.",
    ]
    publish(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
