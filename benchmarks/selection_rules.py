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

from bma_quant.core.evaluation.metrics import newey_west_tstat

METHODS = ["stacking", "regime_stacking", "bma", "equal_weight", "ic_weight"]
HORIZON = 10  # label overlap in dates: Newey-West lag of the daily RankIC differences


def fold_means(oof: pd.DataFrame, candidates: list[str], last: int | None) -> pd.Series:
    """Mean over the (last `last`) fitted folds of each candidate's per-fold mean RankIC."""
    folds = sorted(oof.loc[oof["fitted"] & oof["model"].isin(METHODS), "fold"].unique())
    window = folds[-last:] if last else folds
    part = oof[oof["fold"].isin(window) & oof["model"].isin(candidates)]
    per_fold = part.groupby(["model", "fold"])["ic"].mean().unstack("fold")
    return per_fold.mean(axis=1).reindex(candidates)


def argmax_first(scores: pd.Series) -> str:
    scores = scores.dropna()
    return str(scores.index[int(np.argmax(scores.to_numpy()))])


def rule_best(candidates: str, last: int | None) -> Callable:
    def rule(oof: pd.DataFrame, singles: list[str]) -> str:
        names = METHODS + singles if candidates == "all" else METHODS
        return argmax_first(fold_means(oof, names, last))
    return rule


def rule_prior(default: str, z: float, candidates: str, last: int | None) -> Callable:
    """`default` unless the best other candidate beats it with a Newey-West t above z."""
    def rule(oof: pd.DataFrame, singles: list[str]) -> str:
        names = METHODS + singles if candidates == "all" else METHODS
        scores = fold_means(oof, names, last)
        best = argmax_first(scores)
        if best == default:
            return default
        folds = sorted(oof.loc[oof["fitted"] & oof["model"].isin(METHODS), "fold"].unique())
        window = folds[-last:] if last else folds
        part = oof[oof["fold"].isin(window)].pivot_table(index="date", columns="model",
                                                         values="ic")
        diff = (part[best] - part[default]).to_numpy()
        return best if newey_west_tstat(diff, HORIZON) > z else default
    return rule


RULES: dict[str, Callable] = {
    "methods, last 2 folds (current)": rule_best("methods", 2),
    "methods, all fitted folds": rule_best("methods", None),
    "methods + singles, last 2": rule_best("all", 2),
    "methods + singles, all": rule_best("all", None),
    **{f"bma unless t>{z} (methods, all)": rule_prior("bma", z, "methods", None)
       for z in (1.0, 2.0)},
    **{f"bma unless t>{z} (methods, last 2)": rule_prior("bma", z, "methods", 2)
       for z in (1.0, 2.0)},
    **{f"stacking unless t>{z} (methods, all)": rule_prior("stacking", z, "methods", None)
       for z in (1.0, 2.0)},
}


def replay(cache: Path, seed: int) -> dict:
    oof = pd.read_parquet(cache / f"oof_{seed}.parquet")
    test = pd.read_parquet(cache / f"test_{seed}.parquet").groupby("model")["ic"].mean()
    meta = json.loads((cache / f"meta_{seed}.json").read_text())
    singles = [m for m in meta["models"]]
    best_single = max(singles, key=lambda m: test.get(m, -np.inf))
    picks = {name: rule(oof, singles) for name, rule in RULES.items()}
    return {"seed": seed, "chosen_in_run": meta["chosen"], "test": test.to_dict(),
            "best_single": best_single, "picks": picks}


def report(cache: Path, seeds: list[int]) -> str:
    rows = [replay(cache, s) for s in seeds]
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
