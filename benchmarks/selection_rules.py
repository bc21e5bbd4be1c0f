"""Replay rules that pick `final` on stored per-date RankIC series (bench_ensemble_selection.py).

A rule sees only the out-of-fold series of the folds where the ensemble methods were fitted on
earlier folds, and names one candidate; its test RankIC is then read off the test series.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bma_quant.core.ensemble.selection import SelectionRule

METHODS = ["stacking", "regime_stacking", "bma", "equal_weight", "ic_weight"]
HORIZON = 10  # label overlap in dates: Newey-West lag of the daily RankIC differences


def fitted_folds(oof: pd.DataFrame) -> list[int]:
    return sorted(int(f) for f in oof.loc[oof["fitted"] & oof["model"].isin(METHODS), "fold"]
                  .unique())


def make_rule(candidates: str, last: int | None, default: str | None = None,
              min_t: float | None = None) -> Callable:
    """The project's SelectionRule on the stored series: `candidates` "methods" or "all"
    (methods and single models), the last `last` fitted folds (None = all)."""
    rule = SelectionRule(default, min_t, HORIZON)

    def choose(oof: pd.DataFrame, singles: list[str]) -> str:
        names = METHODS + singles if candidates == "all" else METHODS
        folds = fitted_folds(oof)
        daily = oof[oof["model"].isin(names)].rename(columns={"model": "method", "ic": "rank_ic"})
        daily = daily.assign(order=daily["method"].map(names.index)).sort_values(
            ["fold", "order", "date"], kind="stable")  # first listed wins ties, as in the chain
        return rule.choose(daily, folds[-last:] if last else folds)[0]
    return choose


RULES: dict[str, Callable] = {
    "top score, last 2 folds (default)": make_rule("methods", 2),
    "methods, all fitted folds": make_rule("methods", None),
    "methods + singles, last 2": make_rule("all", 2),
    "methods + singles, all": make_rule("all", None),
    **{f"bma unless t>{z} (methods, all)": make_rule("methods", None, "bma", z)
       for z in (1.0, 2.0)},
    **{f"bma unless t>{z} (methods, last 2)": make_rule("methods", 2, "bma", z)
       for z in (1.0, 2.0)},
    **{f"stacking unless t>{z} (methods, all)": make_rule("methods", None, "stacking", z)
       for z in (1.0, 2.0)},
}


def replay(cache: Path, stem: str) -> dict:
    """The picks of every rule for one stored seed (`stem` = <tickers>x<days>_<seed>)."""
    oof = pd.read_parquet(cache / f"oof_{stem}.parquet")
    test = pd.read_parquet(cache / f"test_{stem}.parquet").groupby("model")["ic"].mean()
    meta = json.loads((cache / f"meta_{stem}.json").read_text())
    singles = [m for m in meta["models"]]
    best_single = max(singles, key=lambda m: test.get(m, -np.inf))
    picks = {name: rule(oof, singles) for name, rule in RULES.items()}
    return {"seed": meta["seed"], "chosen_in_run": meta["chosen"], "test": test.to_dict(),
            "best_single": best_single, "picks": picks}


def report(cache: Path, stems: list[str]) -> str:
    rows = [replay(cache, s) for s in stems]
    lines = ["| rule | " + " | ".join(str(r["seed"]) for r in rows) + " | met | mean |",
             "|---|" + "---|" * (len(rows) + 2)]
    for name in RULES:
        cells, met, values = [], 0, []
        for r in rows:
            pick = r["picks"][name]
            value = r["test"][pick]
            gap = value - r["test"][r["best_single"]]
            met += gap >= -0.002
            values.append(value)
            cells.append(f"{pick} {value:.4f} ({gap:+.4f})")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {met}/{len(rows)} | "
                     f"{np.mean(values):.4f} |")
    lines.append("| best single | " + " | ".join(
        f"{r['best_single']} {r['test'][r['best_single']]:.4f}" for r in rows) + " | | |")
    lines.append("| every method on test | " + " | ".join(
        ", ".join(f"{m} {r['test'][m]:.4f}" for m in METHODS) for r in rows) + " | | |")
    return "\n".join(lines)
