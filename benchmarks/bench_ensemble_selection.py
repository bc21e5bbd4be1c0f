"""Which rule should pick `final`? (issue 12) Per-date RankIC of every candidate, offline.

The stacking layer scores every ensemble method walk-forward on the out-of-fold rows (each fold's
methods fitted only on earlier folds) and picks `final` from those scores. How the pick is made
(how many folds, which candidates, how much evidence a switch needs) decides whether `final`
keeps up with the best single model on markets it was not tuned on. This script runs the default
chain once per generator seed (the hard regime market of `bench_regime_quality.py`, or its
no-regime control) and stores, per seed:

- ``oof``: per-date RankIC of every single model (base and regime) and every ensemble method on
  the out-of-fold dates, with the fold and whether the methods were fitted there;
- ``test``: per-date RankIC of the same on the test period.

Selection rules are then replayed on those series without rerunning anything (`--rules`): each
rule sees only the out-of-fold scores and names a candidate; its test RankIC is read off. A rule
is chosen on development seeds and only then checked on held-out seeds named before the run.

    .venv/bin/python benchmarks/bench_ensemble_selection.py collect --seeds 11 12 13 14
    .venv/bin/python benchmarks/bench_ensemble_selection.py rules --seeds 11 12 13 14
    .venv/bin/python benchmarks/bench_ensemble_selection.py      # both, seeds 11-14 (make bench)

Series are stored per panel size and seed in benchmarks/.selection_cache/ (not versioned); the
figures of benchmarks/results.md ("ensemble selection") are written there by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
from bench_regime_quality import REGIME_FACTOR_MARKET, no_regime_market, run_chain

from bma_quant.core.evaluation.metrics import daily_ic

CACHE = Path(__file__).resolve().parent / ".selection_cache"
METHODS = ("stacking", "regime_stacking", "bma", "equal_weight", "ic_weight")


def _daily(frame: pd.DataFrame, model_col: str, pred_col: str, extra: list[str]) -> pd.DataFrame:
    parts = []
    for model, part in frame.groupby(model_col, sort=False):
        ic = daily_ic(part, pred_col, "label", method="spearman", min_names=5)
        keys = part.drop_duplicates("date").set_index("date")[extra] if extra else None
        out = pd.DataFrame({"date": ic.index, "model": str(model), "ic": ic.to_numpy()})
        if keys is not None:
            out = out.join(keys, on="date")
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def collect(seed: int, control: bool, tickers: int, days: int) -> None:
    overrides: dict = {"periods": {"dev_start": None},
                       "base_models": {"tuning": {"show_progress_bar": False}}}
    options = no_regime_market() if control else dict(REGIME_FACTOR_MARKET)
    _, out, _ = run_chain(tickers, days, seed, options, overrides)
    design, labels = out["stacking_design"], out["labels"]
    models = out["stacking_model_info"]["models"]
    singles = design.melt(id_vars=["date", "ticker", "fold", "label"], value_vars=models,
                          var_name="model", value_name="prediction")
    ensembles = out["ensemble_oof_predictions"].merge(
        labels[["date", "ticker", "label"]], on=["date", "ticker"])
    ensembles = ensembles[ensembles["model"] != "final"]
    fitted = {(r["method"], r["fold"]): r["fitted"]
              for r in out["stacking_selection"]["fold_scores"]}
    oof = pd.concat([_daily(singles, "model", "prediction", ["fold"]),
                     _daily(ensembles, "model", "prediction", ["fold"])], ignore_index=True)
    oof["fitted"] = [fitted.get((m, f), True) for m, f in zip(oof["model"], oof["fold"],
                                                             strict=True)]
    test = pd.concat([out["base_test_predictions"], out["regime_test_predictions"],
                      out["ensemble_test_predictions"]], ignore_index=True)
    test = test[test["model"] != "final"].merge(labels[["date", "ticker", "label"]],
                                                 on=["date", "ticker"])
    CACHE.mkdir(exist_ok=True)
    stem = f"{tickers}x{days}_{seed}"
    oof.to_parquet(CACHE / f"oof_{stem}.parquet")
    _daily(test, "model", "prediction", []).to_parquet(CACHE / f"test_{stem}.parquet")
    (CACHE / f"meta_{stem}.json").write_text(json.dumps({
        "seed": seed, "control": control, "tickers": tickers, "days": days,
        "chosen": out["ensemble_report"]["chosen"], "models": models}))
    print(f"seed {seed}: chosen {out['ensemble_report']['chosen']}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", choices=["collect", "rules", "all"], default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14])
    parser.add_argument("--control", action="store_true", help="the no-regime market")
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--days", type=int, default=2520)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.action in ("collect", "all"):
        for seed in args.seeds:
            collect(seed, args.control, args.tickers, args.days)
    if args.action in ("rules", "all"):
        from selection_rules import report
        print(report(CACHE, [f"{args.tickers}x{args.days}_{seed}" for seed in args.seeds]))


if __name__ == "__main__":
    main()
