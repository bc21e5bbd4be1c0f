"""Which way of training the regime layer? (issue 12) Variants compared on development seeds.

For each generator seed (development seeds, not the benchmark's 101-103 / 201-202) a
`REGIME_FACTOR_MARKET` panel runs through data_processing -> feature_engineering -> base_models
once (in memory, project parameters); then only regime_models is rerun per variant, and the
test-period mean RankIC of `regime_<learner>` is printed next to the global learner's:

- hard_blend: one model per regime on its labelled rows, blended by filtered probabilities (default)
- soft_blend: each regime's model on every row, weighted by that regime's probability
- hard_route: each date predicted by its labelled regime's model only
- hard_blend_noctx: the default without the context features (p_* and the evidence columns)
- hmm_all_evidence: the detector's HMM on all seven evidence columns with 20-day factor
  performance (the default before the detector was chosen by agreement on these seeds)
- elastic_net_blend / elastic_net_route / xgboost_blend: the default with another per-regime
  learner (its tuned base_models parameters); a linear model per regime blended by the filtered
  probabilities is a linear model whose factor payoffs move with the state

Each cell also shows the detector's best-match agreement with the true regimes on test dates.

Run: .venv/bin/python benchmarks/bench_regime_variants.py [--tickers 500 --days 2520 --seeds 11 12]
     [--variants hard_blend hmm_all_evidence]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (project root on sys.path, telemetry off)
from bench_regime_quality import USER_COLUMNS

from bma_quant.core.data.split import dates_in
from bma_quant.core.data.synthetic import REGIME_FACTOR_MARKET, generate_synthetic_market
from bma_quant.core.evaluation.metrics import mean_rank_ic
from bma_quant.core.regimes.detection import detection_agreement
from tests.support import deep_update, run_pipeline

VARIANTS = {
    "hard_blend": {},
    "soft_blend": {"training": "soft"},
    "hard_route": {"combine": "route"},
    "hard_blend_noctx": {"context_features": {"enabled": False}},
    "hmm_all_evidence": {"hmm": {"columns": ["trend", "volatility", "dispersion", "breadth",
                                             "perf_momentum", "perf_reversal",
                                             "perf_low_volatility"]},
                         "evidence": {"performance_window": 20}},
    "elastic_net_blend": {"learner": "elastic_net"},
    "elastic_net_route": {"learner": "elastic_net", "combine": "route"},
    "elastic_net_soft": {"learner": "elastic_net", "training": "soft"},
    "elastic_net_untuned": {"learner": "elastic_net", "use_tuned_params": False},
    "xgboost_blend": {"learner": "xgboost"},
}


def base_layers(n_tickers: int, n_days: int, seed: int, overrides: dict) -> dict:
    market = generate_synthetic_market(n_tickers, n_days, seed=seed, **dict(REGIME_FACTOR_MARKET))
    out: dict = {"generator_regimes": market.regimes}  # for the agreement only; no layer reads it
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.parquet"
        market.panel[USER_COLUMNS].to_parquet(path)
        layer_overrides = deep_update(overrides, {
            "data": {"raw_path": str(path), "index_path": None},
            "base_models": {"tuning": {"storage": f"sqlite:///{tmp}/optuna.db"}}})
        out.update(run_pipeline("data_processing", {}, layer_overrides))
        for layer in ("feature_engineering", "base_models"):
            needed = importlib.import_module(f"bma_quant.pipelines.{layer}").create_pipeline()
            out.update(run_pipeline(layer, {k: v for k, v in out.items() if k in needed.inputs()},
                                    layer_overrides))
    return out


def test_rank_ic(predictions, labels, model: str) -> float:
    rows = predictions[predictions["model"] == model].merge(labels, on=["date", "ticker"])
    return mean_rank_ic(rows, "prediction", "label", 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--days", type=int, default=2520)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    variants = {name: VARIANTS[name] for name in args.variants}
    logging.basicConfig(level=logging.WARNING)
    overrides = {"periods": {"dev_start": None},
                 "base_models": {"tuning": {"show_progress_bar": False}}}
    regime_pipeline = importlib.import_module("bma_quant.pipelines.regime_models").create_pipeline()
    print("| seed | global lightgbm | global elastic_net | global xgboost | "
          + " | ".join(variants) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(variants))
    for seed in args.seeds:
        out = base_layers(args.tickers, args.days, seed, overrides)
        cells = [f"{test_rank_ic(out['base_test_predictions'], out['labels'], learner):.4f}"
                 for learner in ("lightgbm", "elastic_net", "xgboost")]
        for variant in variants.values():
            start = time.perf_counter()
            inputs = {k: v for k, v in out.items() if k in regime_pipeline.inputs()}
            result = run_pipeline("regime_models", inputs,
                                  deep_update(overrides, {"regime_models": variant}))
            learner = variant.get("learner", "lightgbm")
            score = test_rank_ic(result["regime_test_predictions"], out["labels"],
                                 f"regime_{learner}")
            regimes = result["regimes"]
            test = regimes[dates_in(out["date_split"], "test", regimes["date"])]
            dev = regimes[dates_in(out["date_split"], "dev", regimes["date"])]
            agreement = detection_agreement(test, out["generator_regimes"],
                                            matched_on=dev)["best_match_accuracy"]
            cells.append(f"{score:.4f} (agreement {agreement:.2f}, "
                         f"{time.perf_counter() - start:.0f} s)")
        print(f"| {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
