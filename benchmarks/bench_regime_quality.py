"""Does the regime-aware path earn its place? (issue 12) The whole default chain on held-out seeds.

For each generator seed (none of them used by a test or any tuning), a synthetic market in the hard
regime mode (`core.data.synthetic.REGIME_FACTOR_MARKET`: which price factor pays switches with a latent
3-state regime that shows only mildly in the index) is run through data_processing ->
feature_engineering -> base_models -> regime_models -> stacking in memory, with the project's
parameters. The pipeline sees only what a user's file would have: date, ticker, sector, OHLCV
(the generator's signal / noise columns are dropped). Printed per seed, on the test period:

- ceiling: one LightGBM per TRUE regime (base_models' tuned lightgbm parameters, the same
  model_input features and development rows), each test row predicted by its date's true regime:
  what knowing the state is worth; when the regime layer's learner is another one, that
  learner's own ceiling (one per true regime, its parameters as the regime layer takes them) too;
- lightgbm (global, base_models), regime_<learner>, final (the chosen ensemble), the best single
  model;
- detector agreement with the truth on the test dates (same label; best label permutation);
- regime_<learner> / ceiling and regime_<learner> / lightgbm.

Then a control market without regimes (the same payoffs in every state: the mean over states), two
seeds, so the regime path's difference from the global model there can be read against the noise.

Run: .venv/bin/python benchmarks/bench_regime_quality.py [--tickers 200 --days 1500
     --seeds 101 102 103 --control-seeds 201 202 --trials 3 --write]
`--write` rewrites the `regime_quality` section of benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine_line, write_section

from bma_quant.core.data.split import dates_in
from bma_quant.core.data.synthetic import REGIME_FACTOR_MARKET, REGIMES, generate_synthetic_market
from bma_quant.core.evaluation.metrics import mean_rank_ic
from bma_quant.core.models import training
from bma_quant.core.regimes.detection import detection_agreement
from tests.support import deep_update, project_params, run_pipeline

USER_COLUMNS = ["date", "ticker", "sector", "open", "high", "low", "close", "volume"]
SECTION = "regime_quality"
# The ceiling and global reference: LightGBM (per true regime; global, base_models). When
# the regime layer uses another learner, its own per-true-regime ceiling is reported beside it.
CEILING_LEARNER = "lightgbm"


def no_regime_market() -> dict:
    """The hard mode's payoffs averaged over the states and one index drift / vol: no regime."""
    options = dict(REGIME_FACTOR_MARKET)
    options["factor_payoffs"] = {
        name: dict.fromkeys(REGIMES, float(np.mean(list(payoff.values()))))
        for name, payoff in REGIME_FACTOR_MARKET["factor_payoffs"].items()}
    options["market_drift"] = dict.fromkeys(REGIMES, 0.0002)
    options["market_vol"] = dict.fromkeys(REGIMES, 0.010)
    return options


def run_chain(n_tickers: int, n_days: int, seed: int, market_options: dict, overrides: dict):
    market = generate_synthetic_market(n_tickers, n_days, seed=seed, **market_options)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.parquet"
        market.panel[USER_COLUMNS].to_parquet(path)
        data_overrides = deep_update(overrides, {
            "data": {"raw_path": str(path), "index_path": None}})
        out.update(run_pipeline("data_processing", {}, data_overrides))
    timings = {}
    with tempfile.TemporaryDirectory() as studies:  # Optuna studies in a throwaway file
        overrides = deep_update(overrides, {"base_models": {"tuning": {
            "storage": f"sqlite:///{studies}/optuna.db"}}})
        for layer in ("feature_engineering", "base_models", "regime_models", "stacking"):
            start = time.perf_counter()
            needed = importlib.import_module(f"bma_quant.pipelines.{layer}").create_pipeline()
            inputs = {k: v for k, v in out.items() if k in needed.inputs()}
            out.update(run_pipeline(layer, inputs, overrides))
            timings[layer] = time.perf_counter() - start
    return market, out, timings


def ceiling_predictions(out: dict, true_regimes: pd.DataFrame, params: dict,
                        learner: str) -> pd.DataFrame:
    """One `learner` per TRUE regime on the development rows, test rows routed by true regime.

    Parameters as the regime layer takes them: regime_models' defaults for the learner, overridden
    by base_models' tuned ones when its status is ok."""
    model_input, split = out["model_input"], out["date_split"]
    features = [c for c in model_input.columns if c not in ("date", "ticker", "label")]
    status = out["base_model_status"].get(learner) or {}
    tuned = status.get("best_params") if status.get("status") == "ok" else None
    learner_params = {**(params["regime_models"]["learner_params"].get(learner) or {}),
                      **(tuned or {})}
    truth = true_regimes.set_index("date")["regime"]
    dev = model_input.loc[dates_in(split, "dev", model_input["date"])]
    test = model_input.loc[dates_in(split, "test", model_input["date"])].copy()
    weights = out["sample_weights"].set_index("date")["weight"]
    test["prediction"] = np.nan
    for regime in REGIMES:
        rows = dev[truth.reindex(dev["date"]).to_numpy() == regime]
        target = test["date"].map(truth).to_numpy() == regime
        if rows.empty or not target.any():
            continue
        model = training.refit(learner, learner_params, rows[features], rows["label"],
                               weights.reindex(rows["date"]).fillna(1.0).to_numpy(),
                               dates=rows["date"], seed=42, n_jobs=2)
        test.loc[target, "prediction"] = model.predict(test.loc[target, features])
    return test[["date", "ticker", "label", "prediction"]]


def test_scores(out: dict, ceilings: dict[str, pd.DataFrame], min_names: int
                ) -> dict[str, float]:
    labels = out["labels"]
    scores = {f"ceiling_{learner}": mean_rank_ic(ceiling, "prediction", "label", min_names)
              for learner, ceiling in ceilings.items()}
    frames = [out["base_test_predictions"], out["regime_test_predictions"],
              out["ensemble_test_predictions"]]
    for frame in frames:
        merged = frame.merge(labels, on=["date", "ticker"])
        for model, part in merged.groupby("model"):
            scores[str(model)] = mean_rank_ic(part, "prediction", "label", min_names)
    return scores


def measure(args, seed: int, market_options: dict, overrides: dict, params: dict) -> dict:
    start = time.perf_counter()
    market, out, timings = run_chain(args.tickers, args.days, seed, market_options, overrides)
    learners = dict.fromkeys([CEILING_LEARNER, params["regime_models"]["learner"]])
    ceilings = {learner: ceiling_predictions(out, market.regimes, params, learner)
                for learner in learners}
    scores = test_scores(out, ceilings, int(params["regime_models"]["min_names"]))
    regimes = out["regimes"]
    # the label permutation is chosen on development dates, scored on the test dates
    agreement = detection_agreement(
        regimes[dates_in(out["date_split"], "test", regimes["date"])], market.regimes,
        matched_on=regimes[dates_in(out["date_split"], "dev", regimes["date"])])
    return {"seed": seed, "scores": scores, "agreement": agreement, "timings": timings,
            "chosen": out["ensemble_report"]["chosen"],
            "selection": out["ensemble_report"]["selection"]["oos_rank_ic"],
            "seconds": time.perf_counter() - start}


def table(rows: list[dict], learner: str) -> list[str]:
    regime, glob = f"regime_{learner}", CEILING_LEARNER
    ceiling, own = f"ceiling_{CEILING_LEARNER}", f"ceiling_{learner}"
    own_cols = [own] if own != ceiling else []
    header = (f"| seed | ceiling ({glob} per true regime) | "
              + "".join(f"ceiling ({learner} per true regime) | " for _ in own_cols)
              + f"{glob} | {regime} | final (chosen) | best single | agreement (label / best "
              f"match) | {regime} / ceiling | {regime} / {glob} | chain s |")
    lines = [header, "|---|" + "---:|" * (9 + len(own_cols))]
    for row in rows:
        s = row["scores"]
        singles = {k: v for k, v in s.items()
                   if not k.startswith("ceiling") and k != "final" and not k.endswith(
                       ("stacking", "bma", "equal_weight", "ic_weight"))}
        best = max(singles, key=singles.get)
        a = row["agreement"]
        lines.append(
            f"| {row['seed']} | {s[ceiling]:.4f} | "
            + "".join(f"{s[c]:.4f} | " for c in own_cols)
            + f"{s[glob]:.4f} | {s[regime]:.4f} | "
            f"{s['final']:.4f} ({row['chosen']}) | {singles[best]:.4f} ({best}) | "
            f"{a['accuracy']:.2f} / {a['best_match_accuracy']:.2f} | "
            f"{s[regime] / s[ceiling]:.2f} | {s[regime] / s[glob]:.2f} | "
            f"{sum(row['timings'].values()):.0f} |")
    mean = {k: np.mean([r["scores"][k] for r in rows])
            for k in (ceiling, *own_cols, glob, regime, "final")}
    lines.append(
        f"| **mean** | {mean[ceiling]:.4f} | " + "".join(f"{mean[c]:.4f} | " for c in own_cols)
        + f"{mean[glob]:.4f} | {mean[regime]:.4f} | "
        f"{mean['final']:.4f} | | | {mean[regime] / mean[ceiling]:.2f} | "
        f"{mean[regime] / mean[glob]:.2f} | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=200)
    parser.add_argument("--days", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    parser.add_argument("--control-seeds", type=int, nargs="*", default=[201, 202])
    parser.add_argument("--trials", type=int, default=None,
                        help="Optuna trials per learner (default: the project's)")
    parser.add_argument("--write", action="store_true", help="rewrite results.md's section")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    overrides: dict = {"periods": {"dev_start": None}}
    if args.trials is not None:
        overrides["base_models"] = {"tuning": {"n_trials": args.trials,
                                               "show_progress_bar": False}}
    params = deep_update(project_params(), overrides)
    learner = params["regime_models"]["learner"]
    rows, control = [], []
    for seed in args.seeds:
        rows.append(measure(args, seed, dict(REGIME_FACTOR_MARKET), overrides, params))
        print(rows[-1], file=sys.stderr, flush=True)
    for seed in args.control_seeds:
        control.append(measure(args, seed, no_regime_market(), overrides, params))
        print(control[-1], file=sys.stderr, flush=True)
    lines = [
        f"## regime quality: the whole chain on held-out regime markets ({args.tickers} tickers "
        f"x {args.days} days)",
        "",
        f"{machine_line('at the end')}. Generator: `REGIME_FACTOR_MARKET` (hard regime mode), "
        f"seeds {args.seeds}; Optuna trials per learner: "
        f"{args.trials if args.trials is not None else 'project default'}; detector "
        f"{params['regime_models']['detector']}, combine {params['regime_models']['combine']}, "
        f"context features {params['regime_models']['context_features']['enabled']}. "
        "Test-period mean RankIC; agreement on test dates.",
        "",
        *table(rows, learner),
    ]
    if control:
        lines += ["", f"Control market without regimes (same payoffs in every state), seeds "
                      f"{args.control_seeds}:", "", *table(control, learner)]
    text = "\n".join(lines)
    if args.write:
        write_section(SECTION, text)
    print(text)


if __name__ == "__main__":
    main()
