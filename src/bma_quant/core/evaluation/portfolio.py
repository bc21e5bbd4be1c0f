"""Target portfolio weights for one date from model scores (framework-free).

The book is the one the evaluation backtest scores (``core.evaluation.backtest``): names are bucketed into
quantiles of their score (``core.evaluation.metrics.quantile_labels``, ``n_quantiles`` = best), the long side
holds the top quantile and, for ``long_short``, the short side the bottom one, equal weight within a
side. Constraints:

- ``gross_exposure``: sum of |weights|. ``long_short`` puts half on each side (net zero);
  ``long_only`` puts all of it on the long side.
- ``max_weight``: cap on |weight| per name (None: none below the gross exposure). When the
  quantile is too small to hold its side's budget under the cap, the side widens to the
  next-best names (equal weight over the ceil(budget / max_weight) best), never past the middle
  quantile; if even the whole half cannot hold it, every name of the half sits at the cap and
  the shortfall is reported.
- ``sector_neutral`` (when a ``sector`` column is given): quantiles and budgets per sector, each
  sector's budget proportional to its number of names, so every sector's net weight is zero
  (``long_short``) or its weight equals its share of the equal-weighted universe (``long_only``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bma_quant.core.evaluation.metrics import quantile_labels

STYLES = ("long_short", "long_only")
SECTOR = "sector"


@dataclass(frozen=True)
class PortfolioRule:
    style: str = "long_short"
    n_quantiles: int = 5
    gross_exposure: float = 1.0
    max_weight: float | None = None  # None: no cap below the gross exposure
    sector_neutral: bool = True

    def __post_init__(self) -> None:
        if self.max_weight is None:
            object.__setattr__(self, "max_weight", float(self.gross_exposure))
        if self.style not in STYLES:
            raise ValueError(f"portfolio.style must be one of {STYLES}, got {self.style!r}")
        if int(self.n_quantiles) < 2:
            raise ValueError(f"portfolio.n_quantiles must be >= 2, got {self.n_quantiles}")
        if not (self.gross_exposure > 0 and math.isfinite(self.gross_exposure)):
            raise ValueError(f"portfolio.gross_exposure must be > 0, got {self.gross_exposure}")
        if not (self.max_weight > 0 and math.isfinite(self.max_weight)):
            raise ValueError(f"portfolio.max_weight must be > 0, got {self.max_weight}")
        # no weight exceeds the gross exposure: a cap above it binds nothing
        object.__setattr__(self, "max_weight", min(float(self.max_weight),
                                                   float(self.gross_exposure)))

    @classmethod
    def from_params(cls, params: dict, default_quantiles: int = 5) -> PortfolioRule:
        """``n_quantiles`` null (or absent) takes ``default_quantiles``: inference passes the
        quantiles the chain's evaluation backtest was scored with."""
        quantiles = params.get("n_quantiles")
        return cls(style=str(params.get("style", "long_short")),
                   n_quantiles=int(default_quantiles if quantiles is None else quantiles),
                   gross_exposure=float(params.get("gross_exposure", 1.0)),
                   # null: no cap below the gross exposure (the evaluation backtest's book)
                   max_weight=(None if params.get("max_weight") is None
                               else float(params["max_weight"])),
                   sector_neutral=bool(params.get("sector_neutral", True)))


def _side_weights(scores: pd.Series, quantile: pd.Series, budget: float, cap: float,
                  top: bool, n_quantiles: int) -> pd.Series:
    """Equal weights (positive) on one side of one bucket, widened under the cap."""
    middle = (n_quantiles + 1) / 2.0
    core = quantile == (n_quantiles if top else 1)
    half = quantile > middle if top else quantile < middle
    if budget <= 0 or not core.any():
        return pd.Series(0.0, index=scores.index)
    order = scores[half].sort_values(ascending=not top, kind="stable").index
    n_names = max(int(core.sum()), min(math.ceil(budget / cap - 1e-12), len(order)))
    held = order[:n_names].union(core[core].index)
    weight = min(budget / len(held), cap)
    return pd.Series(np.where(scores.index.isin(held), weight, 0.0), index=scores.index)


def target_weights(scores: pd.DataFrame, rule: PortfolioRule,
                   score_col: str = "score") -> tuple[pd.DataFrame, dict]:
    """(frame with ``quantile`` and ``weight`` added, summary) for one date's ``scores``
    (``ticker``, ``score_col`` and optionally ``sector``). Names without a finite score get no
    quantile and zero weight."""
    if scores["ticker"].duplicated().any():
        raise ValueError("target_weights needs one row per ticker (one date)")
    frame = scores.reset_index(drop=True).copy()
    valid = np.isfinite(frame[score_col].to_numpy(dtype=np.float64, na_value=np.nan))
    by_sector = rule.sector_neutral and SECTOR in frame and frame[SECTOR].notna().any()
    buckets = (frame[SECTOR].astype(str).where(frame[SECTOR].notna(), "unknown") if by_sector
               else pd.Series("all", index=frame.index))
    grouped = pd.DataFrame({"date": buckets, "score": frame[score_col]})
    frame["quantile"] = quantile_labels(grouped, "score", rule.n_quantiles).astype("Int64")
    weights = pd.Series(0.0, index=frame.index)
    n_total = int(valid.sum())
    sides = 2 if rule.style == "long_short" else 1
    for _, rows in frame.loc[valid].groupby(buckets[valid], sort=True):
        budget = rule.gross_exposure * len(rows) / n_total / sides
        q = rows["quantile"].astype(float)
        long = _side_weights(rows[score_col], q, budget, rule.max_weight, True, rule.n_quantiles)
        if rule.style == "long_only":
            weights.loc[rows.index] = long
            continue
        short = _side_weights(rows[score_col], q, budget, rule.max_weight, False,
                              rule.n_quantiles)
        held = min(long.sum(), short.sum())  # both sides equal: the bucket's net stays zero
        long = long * (held / long.sum()) if long.sum() > 0 else long
        short = short * (held / short.sum()) if short.sum() > 0 else short
        weights.loc[rows.index] = long - short
    frame["weight"] = weights.to_numpy()
    gross = float(np.abs(frame["weight"]).sum())
    summary = {
        "style": rule.style,
        "sector_neutral": bool(by_sector),
        "gross_target": rule.gross_exposure,
        "gross": gross,
        "net": float(frame["weight"].sum()),
        "max_abs_weight": float(np.abs(frame["weight"]).max()) if len(frame) else 0.0,
        "n_long": int((frame["weight"] > 0).sum()),
        "n_short": int((frame["weight"] < 0).sum()),
        "shortfall": max(0.0, rule.gross_exposure - gross),
    }
    return frame, summary
