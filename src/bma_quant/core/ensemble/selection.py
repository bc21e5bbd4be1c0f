"""Which ensemble method becomes `final`: nested out-of-sample selection (seed §2.4.2).

Every method is scored walk-forward on the out-of-fold dates (fitted only on earlier folds). Its
score is the mean over the last ``n_validation`` fitted folds of its per-fold mean RankIC, and
the top score becomes `final`. ``SelectionRule`` can add a prior: keep a default method unless
the top-scoring one beats it with evidence, a Newey-West t-statistic (lag = the label horizon,
whose windows overlap) of their daily RankIC difference above ``min_t_stat``. Off by default:
measured on development and held-out generator seeds and on the S&P sample, it did not earn its
place (benchmarks/results.md, "ensemble selection").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bma_quant.core.evaluation.metrics import newey_west_tstat

FALLBACK_METHOD = "equal_weight"
METHOD, FOLD, DATE, RANK_IC = "method", "fold", "date", "rank_ic"


def choose_method(oos_rank_ic: dict[str, float], fallback: str = FALLBACK_METHOD) -> str:
    """The method with the best nested out-of-sample RankIC (first listed wins ties); the
    fallback when no method has a finite score."""
    finite = {m: s for m, s in oos_rank_ic.items() if s is not None and math.isfinite(s)}
    if not finite:
        return fallback
    return max(finite, key=finite.get)


def fold_mean_scores(daily: pd.DataFrame, folds: list[int],
                     methods: list[str] | None = None) -> dict[str, float]:
    """Per method (in `methods` order, default: first appearance, so ties go to the first
    listed): the mean over `folds` of its per-fold mean daily RankIC. Folds where a method has no
    valid date do not count for it; a method with none at all scores NaN."""
    part = daily[daily[FOLD].isin(folds)]
    order = list(methods) if methods is not None else list(dict.fromkeys(part[METHOD]))
    scores = {}
    for method in order:
        rows = part[part[METHOD] == method]
        per_fold = [rows.loc[rows[FOLD] == fold, RANK_IC].mean() for fold in folds
                    if (rows[FOLD] == fold).any()]
        scores[str(method)] = float(pd.Series(per_fold, dtype=np.float64).mean())
    return scores


@dataclass(frozen=True)
class SelectionRule:
    """Top mean validation RankIC, but ``default_method`` stays unless the top method's daily
    RankIC advantage over it has a Newey-West t-stat (lag ``nw_lag``) above ``min_t_stat``.
    ``default_method`` or ``min_t_stat`` None: the top score alone decides."""

    default_method: str | None = None
    min_t_stat: float | None = None
    nw_lag: int = 10
    fallback: str = FALLBACK_METHOD

    @classmethod
    def from_params(cls, selection: dict, nw_lag: int, fallback: str = FALLBACK_METHOD,
                    methods: list[str] | None = None) -> SelectionRule:
        """From `stacking.selection`; refuses a half-set prior or a default that is not one of
        `methods` (the configured ensemble methods), which would otherwise be ignored."""
        default, t = selection.get("default_method"), selection.get("min_t_stat")
        if default is not None and methods is not None and default not in methods:
            raise ValueError(f"stacking.selection.default_method {default!r} is not one of "
                             f"stacking.methods {list(methods)}")
        if (default is None) != (t is None):
            raise ValueError(
                "stacking.selection: default_method and min_t_stat are set together (a prior) "
                f"or both null (the top score alone); got default_method={default!r}, "
                f"min_t_stat={t!r}")
        return cls(default, None if t is None else float(t), int(nw_lag), fallback)

    def choose(self, daily: pd.DataFrame, folds: list[int], methods: list[str] | None = None
               ) -> tuple[str, dict]:
        """The method for the dates after `folds`, judged on `folds` only; and why."""
        scores = fold_mean_scores(daily, folds, methods)
        best = choose_method(scores, self.fallback)
        info = {"top_method": best, "scores": scores, "default_method": self.default_method,
                "t_stat_vs_default": math.nan}
        default_score = scores.get(self.default_method, math.nan) if self.default_method else \
            math.nan
        if (self.min_t_stat is None or best == self.default_method
                or not math.isfinite(default_score)):
            return best, info
        part = daily[daily[FOLD].isin(folds) & daily[METHOD].isin([best, self.default_method])]
        wide = part.pivot_table(index=DATE, columns=METHOD, values=RANK_IC)
        t = newey_west_tstat((wide[best] - wide[self.default_method]).to_numpy(), self.nw_lag)
        info["t_stat_vs_default"] = t
        return (best if t > self.min_t_stat else self.default_method), info


def nested_final_score(daily: pd.DataFrame, fitted_folds: list[int], n_validation: int,
                       rule: SelectionRule | None = None, methods: list[str] | None = None,
                       choice_end: Mapping[int, pd.Timestamp] | None = None,
                       ) -> tuple[float, list[int]]:
    """Walk-forward replay of the choice: at each fitted fold after the first, the method `rule`
    picks on the (at most `n_validation`) earlier fitted folds, scored on that fold. Returns the
    mean of those scores (a fold where the pick has no valid date counts as NaN and is left out
    of the mean) and the folds they come from.

    ``choice_end`` ({fold: last date}): the choice for a fold reads daily RankICs up to that
    date only, its last purged training date. The earlier fold's last dates have labels that
    overlap the scored fold's first ones: a pick scored on them would leak into its score."""
    return picks_score(daily, nested_picks(daily, fitted_folds, n_validation, rule, methods,
                                           choice_end))


def picks_score(daily: pd.DataFrame, picks: Mapping[int, str]) -> tuple[float, list[int]]:
    """Mean over the folds of each fold's pick's score there ({fold: method}; NaN scores left
    out), and the folds."""
    picked = [(fold, fold_mean_scores(daily, [fold], [chosen])[chosen])
              for fold, chosen in picks.items()]
    values = [v for _, v in picked if math.isfinite(v)]
    return (float(np.mean(values)) if values else math.nan), [f for f, _ in picked]


def nested_picks(daily: pd.DataFrame, fitted_folds: list[int], n_validation: int,
                 rule: SelectionRule | None = None, methods: list[str] | None = None,
                 choice_end: Mapping[int, pd.Timestamp] | None = None) -> dict[int, str]:
    """{fold: the method `rule` picks for it on the earlier fitted folds} for every fitted fold
    after the first (``nested_final_score``'s choices: the `final` rows out of fold)."""
    rule = rule or SelectionRule()
    folds = sorted(int(f) for f in fitted_folds)
    picks = {}
    for j, fold in enumerate(folds[1:], start=1):
        seen = daily if choice_end is None or fold not in choice_end else \
            daily[pd.to_datetime(daily[DATE]) <= pd.Timestamp(choice_end[fold])]
        picks[fold], _ = rule.choose(seen, folds[max(0, j - max(n_validation, 1)):j], methods)
    return picks
